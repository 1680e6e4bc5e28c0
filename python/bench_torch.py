#!/usr/bin/env python3
"""Times eplb.rebalance_experts on CUDA tensors next to the seed's PyTorch
implementation (bench/torch_seed_eplb.py, imported by path when present).

Same cases and built-in workload as eplb-bench. Each call is timed with CUDA
events on the current stream (eplb with check=True, so the time includes the
status check that a caller would do); the table shows the median and the
10th / 90th percentiles in milliseconds, and whether eplb's CUDA plan equals
its CPU plan.

    python3 python/bench_torch.py [--runs 50] [--case v3-prefill ...] [--json FILE]
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys

import numpy as np
import torch

import eplb

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SEED_PATH = os.path.join(REPO, "bench", "torch_seed_eplb.py")


def load_seed_module():
    if not os.path.exists(SEED_PATH):
        return None
    spec = importlib.util.spec_from_file_location("torch_seed_eplb", SEED_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_cuda(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)


def summary(times):
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {"median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1],
            "runs": len(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--case", action="append", help="case name (default: the seed's defaults)")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--workload-seed", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        sys.exit("bench_torch.py: no CUDA device")
    seed = load_seed_module()
    if seed is None:
        sys.exit("bench_torch.py: %s not found (it supplies the cases and the workload)"
                 % SEED_PATH)
    cases = args.case or seed.DEFAULT_CASES
    device = torch.device("cuda")
    report = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "eplb": eplb.__version__, "library": eplb.library_path,
              "backends": eplb.backends(), "candidates": args.candidates,
              "iters": args.iters, "cases": {}}
    print("device %s, torch %s, eplb %s" % (report["device"], torch.__version__, eplb.__version__))
    print("%-16s %28s %28s %8s %s" % ("case", "eplb cuda ms (p10/med/p90)",
                                      "seed torch ms (p10/med/p90)", "speedup", "cuda==cpu"))
    for name in cases:
        layers, experts, replicas, groups, nodes, gpus, policy = seed.CASES[name]
        weight_cpu = seed.workload_fill(layers, experts, args.workload_seed)
        weight = weight_cpu.to(device)
        opts = dict(candidates=args.candidates, iterations=args.iters, policy=policy)

        def run_eplb():
            return eplb.rebalance_experts(weight, replicas, groups, nodes, gpus, **opts)

        def run_seed():
            return seed.rebalance_experts(weight, replicas, groups, nodes, gpus,
                                          num_candidates=args.candidates,
                                          num_iters=args.iters, policy=policy)

        ours = summary(time_cuda(run_eplb, args.runs, args.warmup))
        base = summary(time_cuda(run_seed, args.runs, args.warmup))
        cuda_plan = [t.cpu().numpy() for t in run_eplb()]
        cpu_plan = eplb.rebalance_experts(weight_cpu.numpy(), replicas, groups, nodes, gpus,
                                          backend="cpu", **opts)
        same = all(np.array_equal(a, b) for a, b in zip(cuda_plan, cpu_plan))
        speedup = base["median_ms"] / ours["median_ms"]
        report["cases"][name] = {"shape": seed.CASES[name], "eplb_cuda": ours,
                                 "seed_torch": base, "speedup": speedup,
                                 "cuda_equals_cpu": same}
        print("%-16s %9.3f/%8.3f/%8.3f %9.3f/%8.3f/%8.3f %7.1fx %s" % (
            name, ours["p10_ms"], ours["median_ms"], ours["p90_ms"], base["p10_ms"],
            base["median_ms"], base["p90_ms"], speedup, same))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if not all(c["cuda_equals_cpu"] for c in report["cases"].values()):
        sys.exit("bench_torch.py: a CUDA plan differs from the CPU plan")


if __name__ == "__main__":
    main()
