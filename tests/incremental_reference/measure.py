"""Measures the incremental reference on drift cases (docs/benchmarks.md, "Issue 18
reference figures"). Needs the eplb tool: EPLB_CLI=build/bin/eplb.

  EPLB_CLI=build/bin/eplb python3 tests/incremental_reference/measure.py [--seeds 2 3 4]

For each DeepSeek-V3 case: the previous plan is eplb's plan of the benchmark
workload; the new loads are that workload drifted (incremental_inputs.drift, one case
per seed); fresh is eplb's plan of the new loads with the same options. For the
OLMoE samples in data/: the previous plan is one domain's, the new loads those
of another domain (a real drift), on 64 experts -> 80 slots on 8 GPUs.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import incremental as inc  # noqa: E402
import incremental_inputs as inputs  # noqa: E402


def one_case(cli, name, prev_w, new_w, R, G, N, P, policy, extra=()):
    prev = np.array(inputs.cli_plan(cli, prev_w, R, G, N, P, policy, extra)["phy2log"])
    fresh_plan = inputs.cli_plan(cli, new_w, R, G, N, P, policy, extra)
    fresh = np.array(fresh_plan["phy2log"])
    hierarchical = fresh_plan["policy"] == "hierarchical"
    w = new_w.astype(np.float32)
    t0 = time.perf_counter()
    out, _, stats = inc.rebalance(w, prev, fresh, P, N, G,
                                  policy="hierarchical" if hierarchical else "global")
    seconds = time.perf_counter() - t0
    L = w.shape[0]
    relabelled = np.stack([inc.relabel(prev[l], fresh[l], P, N if hierarchical else 1)
                           for l in range(L)])
    fresh_stats = inc.plan_stats(w, prev, fresh, P, N)
    relabel_stats = inc.plan_stats(w, prev, relabelled, P, N)
    # With the previous replica counts kept, each GPU above the target must
    # receive a slot, and one more GPU must take its expert: k + 1 moves for a
    # layer with k GPUs above the target (issue 18's floor for a swap search).
    floor = 0
    for l in range(L):
        fmax = np.max(inc.gpu_loads(w[l], fresh[l], P))
        k = int(np.sum(inc.gpu_loads(w[l], prev[l], P) > fmax))
        floor += k + 1 if k else 0
    worse = 0
    for l in range(L):
        if np.max(inc.gpu_loads(w[l], out[l], P)) > np.max(inc.gpu_loads(w[l], fresh[l], P)):
            worse += 1
    slots = L * R
    return {
        "case": name, "slots": slots,
        "moved_fresh": fresh_stats["moved_slots"],
        "moved_relabel": relabel_stats["moved_slots"],
        "moved_incremental": stats["moved_slots"],
        "ratio": stats["moved_slots"] / max(fresh_stats["moved_slots"], 1),
        "floor": floor,
        "max_moved_per_gpu": stats["max_moved_per_gpu"],
        "max_moved_per_gpu_fresh": fresh_stats["max_moved_per_gpu"],
        "cross_fresh": fresh_stats["cross_node_moves"],
        "cross_incremental": stats["cross_node_moves"],
        "bal_before": inc.balancedness(w, prev, P),
        "bal_fresh": fresh_stats["balancedness"],
        "bal_incremental": stats["balancedness"],
        "domains_by_search": stats["domains_by_search"], "domains": L * (N if hierarchical else 1),
        "layers_above_fresh": worse,
        "seconds": seconds,
    }


def print_row(r):
    print("| %s | %d (%.1f%%) | %d (%.1f%%) | %d (%.1f%%) | %.3f | %d (%.3f) | %d / %d | %s / %s | "
          "%.4f | %.4f | %.4f | %d/%d | %d |" % (
              r["case"], r["moved_fresh"], 100.0 * r["moved_fresh"] / r["slots"],
              r["moved_relabel"], 100.0 * r["moved_relabel"] / r["slots"],
              r["moved_incremental"], 100.0 * r["moved_incremental"] / r["slots"], r["ratio"],
              r["floor"], r["floor"] / max(r["moved_fresh"], 1),
              r["max_moved_per_gpu_fresh"], r["max_moved_per_gpu"],
              r["cross_fresh"], r["cross_incremental"],
              r["bal_before"], r["bal_fresh"], r["bal_incremental"],
              r["domains_by_search"], r["domains"], r["layers_above_fresh"]), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[2])
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--json", help="write every row here")
    p.add_argument("--skip-v3", action="store_true")
    args = p.parse_args()
    cli = inputs.cli_path()
    if not cli:
        sys.exit("set EPLB_CLI to the eplb tool (build/bin/eplb)")
    print("| case | moved, fresh | moved, fresh relabelled | moved, incremental | "
          "incr./fresh | floor (/fresh) | max per GPU fresh / incr. | cross-node fresh / incr. | "
          "balancedness before | fresh | incremental | domains by search | layers above fresh |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    if not args.skip_v3:
        base = inputs.workload(58, 256, seed=1)
        for seed in args.seeds:
            new = inputs.drift(base, seed=seed, sigma=args.sigma)
            for name, R, G, N, P, policy in inputs.V3_CASES:
                r = one_case(cli, "%s drift seed %d" % (name, seed), base, new, R, G, N, P, policy)
                rows.append(r)
                print_row(r)
    data = os.path.join(HERE, "data")
    domains = ["arxiv", "c4", "github", "wikipedia"]
    loads = {}
    for d in domains:
        with open(os.path.join(data, "olmoe-%s.json" % d)) as f:
            loads[d] = np.array(json.load(f)["logical_count"], dtype=np.float32)
    for i, a in enumerate(domains):
        b = domains[(i + 1) % len(domains)]
        for name, G, N, policy in (("hier 4g/2n", 4, 2, "auto"), ("global", 1, 1, "auto")):
            r = one_case(cli, "olmoe %s->%s %s" % (a, b, name), loads[a], loads[b],
                         80, G, N, 8, policy)
            rows.append(r)
            print_row(r)
        r = one_case(cli, "olmoe %s drift seed 2" % a, loads[a],
                     inputs.drift(loads[a], seed=2, sigma=args.sigma), 80, 4, 2, 8, "auto")
        rows.append(r)
        print_row(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
