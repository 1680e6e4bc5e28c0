"""Writes tests/data/evaluate-fixtures.txt: placements with their figures as
computed by this folder's reference (spec17.py), for tests/test_evaluate.c to
compare eplb_evaluate with.

Run from the repository root: `python3 tests/reference/make_evaluate_fixtures.py`.
The output depends only on this script and spec17.py (fixed seeds), so running it
again gives the same file.

File format, one case after another, whitespace separated:

    case NAME POLICY L E R G N P
    weight  L*E float32 values (printed with 9 significant digits: exact)
    phy2log L*R integers
    expect  BALANCEDNESS MIN_LAYER_BALANCEDNESS MIN_LAYER BOUND_SUM BALANCEDNESS_BOUND DUPLICATES EXACT
    floor   L values (the per-layer floors F[l])
    max     L values (the per-layer largest GPU loads)

POLICY is the policy eplb_evaluate is asked for (auto, hierarchical, global);
the reference evaluates the policy that auto resolves to.
"""
import os
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import spec17  # noqa: E402
from workloads import bench_workload  # noqa: E402

OUT = os.path.join(HERE, "..", "data", "evaluate-fixtures.txt")


def random_placement(rng, L, E, R):
    """Every expert on at least one slot, the other slots random, shuffled."""
    rows = []
    for _ in range(L):
        row = np.concatenate([np.arange(E), rng.integers(0, E, R - E)])
        rng.shuffle(row)
        rows.append(row)
    return np.array(rows, dtype=np.int64)


def hierarchical_placement(rng, L, E, R, G, N):
    """A placement that follows the hierarchical policy: each node holds the
    experts of G/N groups, chosen at random, and only those."""
    S, gpn, RN = E // G, G // N, R // N
    rows = []
    for _ in range(L):
        groups = rng.permutation(G)
        row = []
        for n in range(N):
            experts = np.concatenate([np.arange(g * S, (g + 1) * S) for g in groups[n * gpn:(n + 1) * gpn]])
            slots = np.concatenate([experts, rng.choice(experts, RN - len(experts))])
            rng.shuffle(slots)
            row.append(slots)
        rows.append(np.concatenate(row))
    return np.array(rows, dtype=np.int64)


def figures(weight, phy2log, shape, policy):
    L, E = weight.shape
    R = phy2log.shape[1]
    logcnt = np.zeros((L, E), dtype=np.int64)
    for l in range(L):
        for e in phy2log[l]:
            logcnt[l, e] += 1
    plan = spec17.Plan(shape, policy, phy2log, logcnt, np.zeros((L, R), dtype=np.int64))
    loads = spec17.gpu_loads(plan, weight)
    mean, worst = loads.mean(axis=1), loads.max(axis=1)
    per_layer = [m / w if w > 0 else 1.0 for m, w in zip(mean, worst)]
    balancedness, min_balance = spec17.balancedness(plan, weight)
    W = np.asarray(weight, dtype=np.float32).astype(np.float64)
    floors, hows = zip(*[spec17.layer_floor(W[l], shape, policy) for l in range(L)])
    return {
        "balancedness": balancedness,
        "min_balance": min_balance,
        "min_layer": int(np.argmin(per_layer)),
        "bound_sum": float(sum(floors)),
        "bound": spec17.balancedness_bound(weight, shape, policy),
        "duplicates": spec17.duplicates(plan),
        "exact": int(all(h == "exhaustive" for h in hows)),
        "floors": floors,
        "max": worst,
    }


def resolve(policy, G, N):
    if policy == "global" or (policy == "auto" and G % N != 0):
        return "global"
    return "hierarchical"


def cases():
    rng = np.random.default_rng(17)
    bench = bench_workload(4, 256, seed=3)
    yield "deepseek-like", "auto", bench[:2], (8, 4, 288, 32), "hierarchical"
    yield "deepseek-like-global", "global", bench[2:4], (8, 4, 288, 32), "random"
    yield "exact-16-groups", "hierarchical", rng.integers(0, 1000, (2, 32)).astype(np.float32), (16, 4, 40, 8), "hierarchical"
    yield "exact-gpn-8", "auto", rng.integers(0, 50, (2, 32)).astype(np.float32), (16, 2, 40, 8), "hierarchical"
    yield "one-group-per-node", "auto", rng.random((2, 16), dtype=np.float32) * 100, (4, 4, 24, 8), "hierarchical"
    yield "relaxed-20-groups", "auto", bench_workload(2, 40, seed=5), (20, 2, 48, 8), "hierarchical"
    yield "relaxed-tail", "hierarchical", rng.pareto(1.2, (2, 64)).astype(np.float32), (32, 4, 80, 16), "random"
    yield "auto-global", "auto", rng.integers(0, 9, (3, 24)).astype(np.float32), (4, 3, 32, 8), "random"
    yield "one-node", "hierarchical", rng.integers(1, 30, (2, 12)).astype(np.float32), (4, 1, 16, 4), "random"
    yield "duplicates-wide-gpus", "global", rng.integers(0, 5, (2, 6)).astype(np.float32), (1, 1, 24, 2), "random"
    zero = rng.integers(0, 7, (3, 8)).astype(np.float32)
    zero[1] = 0
    yield "zero-layer", "auto", zero, (2, 2, 12, 4), "hierarchical"
    yield "spec-11-7", "global", np.array([[10, 1, 1]], dtype=np.float32), (1, 1, 6, 3), [[0, 0, 0, 1, 2, 0]]


def main():
    lines = ["# Made by tests/reference/make_evaluate_fixtures.py from spec17.py; format there."]
    for name, policy, weight, (G, N, R, P), how in cases():
        weight = np.asarray(weight, dtype=np.float32)
        L, E = weight.shape
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        if how == "hierarchical":
            phy2log = hierarchical_placement(rng, L, E, R, G, N)
        elif how == "random":
            phy2log = random_placement(rng, L, E, R)
        else:
            phy2log = np.array(how, dtype=np.int64)
        shape = {"layers": L, "experts": E, "replicas": R, "groups": G, "nodes": N, "gpus": P}
        f = figures(weight, phy2log, shape, resolve(policy, G, N))
        lines.append("case %s %s %d %d %d %d %d %d" % (name, policy, L, E, R, G, N, P))
        lines.append("weight " + " ".join("%.9g" % x for x in weight.ravel()))
        lines.append("phy2log " + " ".join(str(int(x)) for x in phy2log.ravel()))
        lines.append("expect %.17g %.17g %d %.17g %.17g %d %d" % (
            f["balancedness"], f["min_balance"], f["min_layer"], f["bound_sum"], f["bound"],
            f["duplicates"], f["exact"]))
        lines.append("floor " + " ".join("%.17g" % x for x in f["floors"]))
        lines.append("max " + " ".join("%.17g" % x for x in f["max"]))
    with open(OUT, "w") as out:
        out.write("\n".join(lines) + "\n")
    print("wrote", os.path.relpath(OUT))


if __name__ == "__main__":
    main()
