"""Applies docs/spec.md sections 10 and 11 to a seed plan and prints the result, so a
backend's plan made with --refine / --distinct can be compared with the reference.

    eplb plan -i LOADS.json -r 288 -p 72 -o seed.json
    python3 tests/reference/apply.py seed.json [--weights LOADS.json] [--refine 256] [--distinct] \\
        [-o out.json]

The output holds phy2log, logcnt, log2phy and the figures of sections 8, 11.1 and 12.
The weights default to the seed plan's "input" file (SGLang JSON, a JSON array or .npy).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec17  # noqa: E402


def load_weights(path):
    if path.endswith(".npy"):
        w = np.load(path)
    else:
        with open(path) as f:
            d = json.load(f)
        w = np.array(d["logical_count"] if isinstance(d, dict) else d, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 3:  # SGLang windows: summed over the window axis, as eplb plan does
        w = w.sum(axis=0)
    return w.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seed", help="plan JSON written by eplb plan -o (format eplb-plan v2)")
    ap.add_argument("--weights", help="load file (default: the plan's input)")
    ap.add_argument("--refine", type=int, default=0, help="refine trades per row (0: off)")
    ap.add_argument("--distinct", action="store_true")
    ap.add_argument("--tol", type=float, default=None, help="default: the plan's tolerance")
    ap.add_argument("-o", "--output", default="-")
    args = ap.parse_args()
    with open(args.seed) as f:
        d = json.load(f)
    W = load_weights(args.weights or d["input"])
    tol = args.tol if args.tol is not None else d["options"]["tolerance"]
    seed = spec17.plan_from_json(d)
    plan = spec17.apply_stages(seed, W, refine=args.refine, distinct=args.distinct, tol=tol)
    bal, worst = spec17.balancedness(plan, W)
    out = {
        "shape": plan.shape, "policy": plan.policy, "refine": args.refine, "distinct": args.distinct,
        "phy2log": plan.phy2log.tolist(), "logcnt": plan.logcnt.tolist(), "log2phy": plan.log2phy().tolist(),
        "stats": {"balancedness": bal, "balancedness_min_layer": worst,
                  "duplicates": spec17.duplicates(plan),
                  "balancedness_bound": spec17.balancedness_bound(W, plan.shape, plan.policy)},
    }
    text = json.dumps(out)
    if args.output == "-":
        print(text)
    else:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
