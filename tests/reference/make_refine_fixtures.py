"""Writes tests/data/refine/*.txt, the fixtures of tests/test_refine.c: plans made
with the refine search (docs/spec.md section 10) by this directory's reference.

Each case takes the seed plan of the C library (refine off, through the Python
package, which returns log2phy by replica rank, so each slot's true rank is
known), applies spec17.apply_stages with refine on, and writes the weights, the
options and the resulting phy2log, logcnt and log2phy. The C test plans the same
weights with refine on and must match every integer.

    PYTHONPATH=python/src EPLB_LIBRARY=BUILD/lib/libeplb.so \\
        python3 tests/reference/make_refine_fixtures.py [OUTDIR]

File format (text, one field per line group):

    # eplb refine fixture v1: NAME (tests/reference/make_refine_fixtures.py)
    layers L experts E replicas R groups G nodes N gpus P
    policy POLICY refine T tol TOL [distinct 1]
    weight          then L lines of E floats (exact float32 values, repr form)
    phy2log         then L lines of R integers
    logcnt          then L lines of E integers
    log2phy X       then L*E lines of X integers (slot of each replica rank, -1 padded)
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spec17  # noqa: E402
import workloads  # noqa: E402

import eplb  # noqa: E402  (the package of python/src, over the library being tested)


def ties(layers, experts, seed):
    """Small integer loads, 0..3: many equal slot loads, so the tie order decides."""
    return np.random.RandomState(seed).randint(0, 4, size=(layers, experts)).astype(np.float32)


def fractions(layers, experts, seed):
    """Heavy-tailed non-integer loads spanning several binades."""
    rng = np.random.RandomState(seed)
    return (rng.pareto(1.2, size=(layers, experts)) * 1000.0 + rng.rand(layers, experts)).astype(np.float32)


BENCH = workloads.bench_workload(58, 256)[:6]

# name, weights, replicas, groups, nodes, gpus, policy, refine, tol
CASES = [
    ("bench-global-288", BENCH, 288, 8, 9, 72, "auto", 256, 1e-5),
    ("bench-global-320", BENCH, 320, 8, 8, 64, "global", 256, 1e-5),
    ("bench-hierarchical", BENCH, 288, 8, 4, 32, "auto", 256, 1e-5),
    ("bench-global-288-cap3", BENCH, 288, 8, 9, 72, "auto", 3, 1e-5),
    ("olmoe-arxiv-global", workloads.olmoe("arxiv"), 80, 1, 1, 16, "auto", 256, 1e-5),
    ("olmoe-wide-hierarchical", workloads.olmoe_wide(), 288, 8, 2, 16, "auto", 256, 1e-5),
    ("ties-hierarchical", ties(4, 16, 3), 32, 4, 2, 8, "auto", 256, 1e-5),
    ("ties-global", ties(4, 24, 4), 48, 3, 2, 8, "auto", 256, 0.0),
    ("fractions-global-tol", fractions(5, 40, 5), 64, 1, 1, 16, "global", 256, 0.5),
]


def write_case(outdir, name, W, R, G, N, P, policy, refine, tol, distinct=False):
    """Plans W with the C library (refine and distinct off), applies the reference's
    sections 10 and 11 and writes the fixture; `distinct` also writes 'distinct 1'
    on the options line (make_distinct_fixtures.py)."""
    W = np.asarray(W, dtype=np.float32)
    L, E = W.shape
    phy2log, log2phy, logcnt = eplb.rebalance_experts(W, R, G, N, P, policy=policy, tolerance=tol,
                                                      backend="cpu")
    hierarchical = policy != "global" and G % N == 0
    shape = {"layers": L, "experts": E, "replicas": R, "groups": G, "nodes": N, "gpus": P}
    seed = spec17.Plan(shape, "hierarchical" if hierarchical else "global", phy2log, logcnt,
                       spec17.rank_from_log2phy(phy2log, log2phy))
    counters = {}
    plan = spec17.apply_stages(seed, W, refine=refine, distinct=distinct, tol=tol, counters=counters)
    l2p = plan.log2phy()
    lines = ["# eplb refine fixture v1: %s (tests/reference/make_refine_fixtures.py)" % name,
             "layers %d experts %d replicas %d groups %d nodes %d gpus %d" % (L, E, R, G, N, P),
             "policy %s refine %d tol %r%s" % (policy, refine, float(np.float32(tol)),
                                               " distinct 1" if distinct else ""),
             "weight"]
    lines += [" ".join(repr(float(x)) for x in row) for row in W]
    lines.append("phy2log")
    lines += [" ".join(str(int(x)) for x in row) for row in plan.phy2log]
    lines.append("logcnt")
    lines += [" ".join(str(int(x)) for x in row) for row in plan.logcnt]
    lines.append("log2phy %d" % l2p.shape[2])
    lines += [" ".join(str(int(x)) for x in l2p[l, e]) for l in range(L) for e in range(E)]
    with open(os.path.join(outdir, name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%-30s trades %5d  balancedness %.4f -> %.4f" % (
        name, counters.get("trades", 0), spec17.balancedness(seed, W)[0],
        spec17.balancedness(plan, W)[0]), end="")
    if distinct:
        print("  duplicates %d -> %d, freed %d, repairs %d, restores %d" % (
            spec17.duplicates(seed), spec17.duplicates(plan), counters.get("freed", 0),
            counters.get("repairs", 0), counters.get("restores", 0)), end="")
    print()


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data", "refine")
    os.makedirs(outdir, exist_ok=True)
    for case in CASES:
        write_case(outdir, *case)


if __name__ == "__main__":
    main()
