"""Issue 17 figures from the reference (docs/benchmarks.md, "Issue 17 reference
figures"): balancedness of the seed plan, after refine, with distinct, and the
section 12 bound, on the DeepSeek-V3 shapes.

    EPLB_CLI=build/bin/eplb python3 tests/reference/measure.py [--refine N] [--layers L]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec17  # noqa: E402
import workloads  # noqa: E402

# (name, replicas, gpus, groups, nodes, extra CLI options)
SHAPES = [
    ("v3-prefill", 288, 32, 8, 4, []),
    ("v3-decode-288", 288, 72, 8, 9, []),
    ("v3-decode-320", 320, 64, 8, 8, ["--policy", "global"]),
]
# OLMoE's own 64 experts (no groups): global, 9 and 5 slots per GPU.
OLMOE_SHAPES = [
    ("72/8", 72, 8, 1, 1, []),
    ("80/16", 80, 16, 1, 1, []),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--refine", type=int, default=spec17.REFINE_DEFAULT)
    ap.add_argument("--layers", type=int, default=58, help="bench workload layers")
    args = ap.parse_args()
    if not workloads.cli_path():
        sys.exit("set EPLB_CLI to the eplb tool")
    loads = [("bench", workloads.bench_workload(args.layers, 256), SHAPES),
             ("olmoe-x4", workloads.olmoe_wide(), SHAPES)]
    loads += [("olmoe-" + d, workloads.olmoe(d), OLMOE_SHAPES) for d in workloads.OLMOE_DOMAINS]
    print("| load | case | policy | seed | refine | distinct | distinct + refine | duplicates seed "
          "| duplicates distinct | bound | trades per row, mean / max |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lname, W, shapes in loads:
        for name, R, P, G, N, extra in shapes:
            t0 = time.time()
            seed = spec17.plan_from_json(workloads.seed_plan(W, R, P, G, N, extra))
            c = {}
            ref = spec17.apply_stages(seed, W, refine=args.refine, counters=c)
            dis = spec17.apply_stages(seed, W, distinct=True)
            both = spec17.apply_stages(seed, W, refine=args.refine, distinct=True)
            bound = spec17.balancedness_bound(W, seed.shape, seed.policy)
            b = [spec17.balancedness(p, W)[0] for p in (seed, ref, dis, both)]
            rows = len(spec17.rows_of(seed))
            print("| %s | %s | %s | %.4f | %.4f | %.4f | %.4f | %d | %d | %.4f | %.1f / %d |"
                  % (lname, name, seed.policy, b[0], b[1], b[2], b[3], spec17.duplicates(seed),
                     spec17.duplicates(both), bound, c.get("trades", 0) / rows, c.get("max_trades", 0)))
            print("  (%.0f s)" % (time.time() - t0), file=sys.stderr)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
