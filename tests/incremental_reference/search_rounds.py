"""How many sequential rounds section 13.5's searches would take if a round weighed the trades
of the domain's K heaviest GPUs at once (docs/benchmarks.md, "The incremental search in
rounds"): a design question for moving issue 18's searches to the GPU, where a search is a
chain of one step per trade.

The drift cases are planned exactly as measure.py plans them (the reference's searches, one
step at a time), with each step of every search recorded: the domain's GPU loads before it,
the GPU A that trades and its partner. A round then takes the following steps for as long as
the j-th step of the round is made by the j-th heaviest GPU of the round's start (by load,
ties to the lower index) and that GPU was neither side of an earlier step of the round: the
steps a device search could keep after weighing the K heaviest GPUs' trades at the round's
start, weighing again only their trades with the GPUs the round had already changed.

    EPLB_CLI=build/bin/eplb python3 tests/incremental_reference/search_rounds.py
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import incremental as inc  # noqa: E402
import incremental_inputs as inputs  # noqa: E402

# The counting rule and the table are section 10's (tests/reference/refine_rounds.py).
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from refine_rounds import ROUND_SIZES, table_row  # noqa: E402

STEPS = []  # every search's steps: lists of (domain loads before, A, B), domain-local GPUs

_search = inc.search


def traced_search(*args, **kwargs):
    """inc.search, its steps kept in STEPS."""
    steps = []
    result = _search(*args, trace=steps, **kwargs)
    STEPS.append(steps)
    return result


def main():
    cli = inputs.cli_path()
    if not cli:
        sys.exit("set EPLB_CLI to the eplb tool (build/bin/eplb)")
    base = inputs.workload(58, 256, seed=1)
    new = inputs.drift(base, seed=2, sigma=0.1)
    inc.search = traced_search
    print("| case | searches | steps | longest search | " +
          " | ".join("rounds of %d, longest" % K for K in ROUND_SIZES) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(ROUND_SIZES))
    for name, R, G, N, P, policy in inputs.V3_CASES:
        STEPS.clear()
        prev = np.array(inputs.cli_plan(cli, base, R, G, N, P, policy)["phy2log"])
        fresh_plan = inputs.cli_plan(cli, new, R, G, N, P, policy)
        fresh = np.array(fresh_plan["phy2log"])
        hierarchical = fresh_plan["policy"] == "hierarchical"
        inc.rebalance(new.astype(np.float32), prev, fresh, P, N, G,
                      policy="hierarchical" if hierarchical else "global")
        print(table_row(name + " drift", STEPS), flush=True)


if __name__ == "__main__":
    main()
