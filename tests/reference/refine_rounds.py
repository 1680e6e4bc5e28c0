"""How many sequential rounds section 10.3's refine search would take if a round weighed the
trades of the row's K heaviest GPUs at once (docs/benchmarks.md, "The refine search in rounds"):
a design question for the CUDA refine of issue 17, whose time is a chain of one step per trade.

The search is replayed exactly (spec17.refine_row, one trade at a time); then, from each trade on,
a round takes the following trades for as long as the j-th trade of the round is made by the
j-th heaviest GPU of the round's start (by load, ties to the lower index) and that GPU was
neither side of an earlier trade of the round. Those trades are the ones a device search that
weighed the K heaviest GPUs' trades at the round's start could keep, recomputing only their
trades with the GPUs the round had already changed; the first one that fails ends the round.

    EPLB_CLI=build/bin/eplb python3 tests/reference/refine_rounds.py [--layers L]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec17  # noqa: E402
import workloads  # noqa: E402

SHAPES = [
    ("v3-prefill", 288, 32, 8, 4, []),
    ("v3-decode-288", 288, 72, 8, 9, []),
    ("v3-decode-320", 320, 64, 8, 8, ["--policy", "global"]),
]
ROUND_SIZES = (2, 3, 4, 8)


def rounds(trace, K):
    """The rounds of at most K steps that a search's steps take, each step given as (the
    row's or domain's GPU loads before it, A, partner): the module's rule. Also used by
    tests/incremental_reference/search_rounds.py for section 13.5's steps."""
    i = count = 0
    while i < len(trace):
        load, A, B = trace[i]
        order = sorted(range(len(load)), key=lambda g: (-float(load[g]), g))
        touched = {A, B}
        j = 1
        while j < K and i + j < len(trace):
            _, Aj, Bj = trace[i + j]
            if Aj != order[j] or Aj in touched:
                break
            touched |= {Aj, Bj}
            j += 1
        i += j
        count += 1
    return count


def table_row(name, traces):
    """A Markdown row: the searches (rows), their steps, the longest, then for each round
    size the rounds they take and the longest search's."""
    cells = []
    for K in ROUND_SIZES:
        counts = [rounds(t, K) for t in traces]
        cells.append("%d, %d" % (sum(counts), max(counts)))
    return "| %s | %d | %d | %d | %s |" % (name, len(traces), sum(len(t) for t in traces),
                                           max(len(t) for t in traces), " | ".join(cells))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=58, help="bench workload layers")
    ap.add_argument("--refine", type=int, default=spec17.REFINE_DEFAULT)
    args = ap.parse_args()
    if not workloads.cli_path():
        sys.exit("set EPLB_CLI to the eplb tool")
    W = workloads.bench_workload(args.layers, 256)
    Wf = np.asarray(W, dtype=spec17.F32)
    print("| case | rows | trades | longest row | " +
          " | ".join("rounds of %d, longest row" % K for K in ROUND_SIZES) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(ROUND_SIZES))
    for name, R, P, G, N, extra in SHAPES:
        plan = spec17.plan_from_json(workloads.seed_plan(W, R, P, G, N, extra)).copy()
        traces = []
        for (l, q0, n, m) in spec17.rows_of(plan):
            traces.append([])
            spec17.refine_row(plan, Wf, l, q0, n, m, args.refine, 1e-5, False, trace=traces[-1])
        print(table_row(name, traces), flush=True)


if __name__ == "__main__":
    main()
