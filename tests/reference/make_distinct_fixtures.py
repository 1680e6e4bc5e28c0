"""Writes tests/data/distinct/*.txt, the fixtures of tests/test_distinct.c: plans
made with the distinct option (docs/spec.md section 11: cap, repair, restore,
restricted trades), with and without the refine search, by this directory's
reference. Same procedure and file format as make_refine_fixtures.py, whose
write_case does the work; the options line ends with 'distinct 1'.

    PYTHONPATH=python/src EPLB_LIBRARY=BUILD/lib/libeplb.so \\
        python3 tests/reference/make_distinct_fixtures.py [OUTDIR]
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_refine_fixtures as refine_fixtures  # noqa: E402
import workloads  # noqa: E402


def one_hot(layers, experts, seed):
    """A few very hot experts per layer: counts far above the GPUs of a row, so
    the cap frees slots and the repair has repeats to remove."""
    rng = np.random.RandomState(seed)
    w = rng.rand(layers, experts).astype(np.float32) * 10.0
    for l in range(layers):
        hot = rng.choice(experts, size=2, replace=False)
        w[l, hot[0]] = 5000.0 + l
        w[l, hot[1]] = 1500.0
    return w.astype(np.float32)


def hot_ties(layers, experts, seed):
    """Small integer loads with one hot expert per layer: the cap frees slots and
    its choices tie often, so the tie rule (lowest logical expert, not the
    node-major order of a hierarchical plan) decides."""
    w = refine_fixtures.ties(layers, experts, seed) + 1.0
    rng = np.random.RandomState(seed)
    for l in range(layers):
        w[l, rng.randint(experts)] = 64.0
    return w.astype(np.float32)


BENCH = refine_fixtures.BENCH
FRACTIONS = refine_fixtures.fractions(5, 40, 5)

# name, weights, replicas, groups, nodes, gpus, policy, refine, tol
CASES = [
    ("bench-global-288", BENCH, 288, 8, 9, 72, "auto", 0, 1e-5),
    ("bench-global-288-refine", BENCH, 288, 8, 9, 72, "auto", 256, 1e-5),
    ("bench-global-320", BENCH, 320, 8, 8, 64, "global", 0, 1e-5),
    ("bench-hierarchical", BENCH, 288, 8, 4, 32, "auto", 0, 1e-5),
    ("bench-hierarchical-refine", BENCH, 288, 8, 4, 32, "auto", 256, 1e-5),
    ("olmoe-arxiv-global", workloads.olmoe("arxiv"), 80, 1, 1, 16, "auto", 0, 1e-5),
    ("olmoe-github-global-refine", workloads.olmoe("github"), 128, 1, 1, 16, "auto", 256, 1e-5),
    ("olmoe-wide-hierarchical", workloads.olmoe_wide(), 288, 8, 2, 16, "auto", 0, 1e-5),
    ("olmoe-wide-hierarchical-refine", workloads.olmoe_wide(), 288, 8, 2, 16, "auto", 256, 1e-5),
    ("hot-global-cap", one_hot(4, 16, 7), 64, 1, 1, 16, "auto", 0, 1e-5),
    ("hot-global-cap-refine", one_hot(4, 16, 7), 64, 1, 1, 16, "auto", 7, 1e-5),
    ("hot-hierarchical-cap", one_hot(4, 16, 8), 64, 2, 2, 8, "auto", 0, 1e-5),
    ("hot-hierarchical-cap-refine", one_hot(4, 16, 8), 64, 2, 2, 8, "auto", 256, 1e-5),
    ("hot-ties-hierarchical-cap", hot_ties(8, 16, 9), 64, 4, 2, 8, "auto", 0, 1e-5),
    ("ties-global", refine_fixtures.ties(4, 24, 4), 48, 3, 2, 8, "auto", 0, 0.0),
    ("ties-hierarchical-refine", refine_fixtures.ties(4, 16, 3), 32, 4, 2, 8, "auto", 256, 1e-5),
    ("fractions-global-tol", FRACTIONS, 64, 1, 1, 16, "global", 0, 0.5),
]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data", "distinct")
    os.makedirs(outdir, exist_ok=True)
    for case in CASES:
        refine_fixtures.write_case(outdir, *case, distinct=True)


if __name__ == "__main__":
    main()
