"""Writes data/fixtures.json: small cases for the incremental reference's tests,
each with the previous and the fresh plan from the eplb tool and the incremental
plan this reference gives (docs/spec.md section 13), so the tests run without the
tool and a later C implementation has expected outputs to match.

  EPLB_CLI=build/bin/eplb python3 tests/incremental_reference/make_fixtures.py
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import incremental as inc  # noqa: E402
import incremental_inputs as inputs  # noqa: E402

# name, previous loads, new loads, replicas, groups, nodes, gpus, policy. Loads
# are an OLMoE domain, "DOMAIN~" for that domain's drift with seed 2, or
# "v3[ROWS]" / "v3~SEED[ROWS]" for rows of the bench workload (DeepSeek-V3, 256
# experts) and of its drift with that seed.
CASES = [
    ("v3-prefill-drift3-rows5-7", "v3[5,6,7]", "v3~3[5,6,7]", 288, 8, 4, 32, "auto"),
    ("v3-decode-288-drift2-rows0-2", "v3[0,1,2]", "v3~2[0,1,2]", 288, 8, 9, 72, "auto"),
    ("olmoe-arxiv-to-c4-hier", "arxiv", "c4", 80, 4, 2, 8, "auto"),
    ("olmoe-c4-drift-hier", "c4", "c4~", 80, 4, 2, 8, "auto"),
    ("olmoe-github-drift-hier", "github", "github~", 80, 4, 2, 8, "auto"),
    ("olmoe-c4-to-github-global", "c4", "github", 80, 1, 1, 8, "auto"),
    ("olmoe-wikipedia-drift-global", "wikipedia", "wikipedia~", 96, 8, 3, 12, "auto"),
]


def domain_loads(name):
    if name.startswith("v3"):
        head, rows = name[:-1].split("[")
        rows = [int(r) for r in rows.split(",")]
        w = inputs.workload(max(rows) + 1, 256, seed=1)
        if "~" in head:
            w = inputs.drift(w, seed=int(head.split("~")[1]))
        return w[rows]
    with open(os.path.join(HERE, "data", "olmoe-%s.json" % name.rstrip("~"))) as f:
        w = np.array(json.load(f)["logical_count"], dtype=np.float32)
    return inputs.drift(w, seed=2) if name.endswith("~") else w


def build(cli):
    cases = []
    for name, a, b, R, G, N, P, policy in CASES:
        wa, wb = domain_loads(a), domain_loads(b)
        prev = inputs.cli_plan(cli, wa, R, G, N, P, policy)
        fresh = inputs.cli_plan(cli, wb, R, G, N, P, policy)
        out, logcnt, stats = inc.rebalance(wb, np.array(prev["phy2log"]),
                                           np.array(fresh["phy2log"]), P, N, G, policy=policy)
        cases.append({
            "name": name, "previous_loads": a, "new_loads": b,
            "shape": {"replicas": R, "groups": G, "nodes": N, "gpus": P}, "policy": policy,
            "weight": wb.astype(float).tolist(),
            "previous": prev["phy2log"], "fresh": fresh["phy2log"],
            "incremental": out.tolist(), "stats": stats,
        })
    return cases


def main():
    cli = inputs.cli_path()
    if not cli:
        sys.exit("set EPLB_CLI to the eplb tool (build/bin/eplb)")
    cases = build(cli)
    with open(os.path.join(HERE, "data", "fixtures.json"), "w") as f:
        json.dump({"about": "docs/spec.md section 13; written by make_fixtures.py",
                   "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    for c in cases:
        print(c["name"], c["stats"])


if __name__ == "__main__":
    main()
