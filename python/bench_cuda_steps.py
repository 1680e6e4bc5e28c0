#!/usr/bin/env python3
"""Where the time of eplb.rebalance_experts on CUDA tensors goes (issue 15 item 3).

For the three DeepSeek-V3 cases of bench/torch_seed_eplb.py (its workload,
seed 1): the whole call by CUDA events and by wall clock (median of 300, with
check=True, check=False and log2phy_width="redundant"), the bare
eplb_rebalance_device call by CUDA events (at the redundant width, and at the
width the device chooses with eplb_device_log2phy_width's wait), and the host
(CPU) cost of each
step of the CUDA-tensor path measured alone (mean over 3000 calls, or the
median of 300 single calls where a step must start with the GPU idle).

    python3 python/bench_cuda_steps.py
"""
import ctypes
import os
import statistics
import sys
import time

import torch

import eplb
from eplb import _library, contexts
from eplb import rebalance as rb

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "bench"))
import torch_seed_eplb as seed  # noqa: E402 (found through the path above)

CASES = ("v3-prefill", "v3-decode-288", "v3-decode-320")


def cpu_us(fn, n=3000):
    """Mean host microseconds of fn over n back-to-back calls."""
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter_ns()
    for _ in range(n):
        fn()
    us = (time.perf_counter_ns() - t) / n / 1e3
    torch.cuda.synchronize()
    return us


def idle_us(before, fn, runs=300):
    """Median host microseconds of fn, each call after before() and a wait for the GPU."""
    times = []
    for _ in range(runs):
        before()
        torch.cuda.synchronize()
        t = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t) / 1e3)
    torch.cuda.synchronize()
    return statistics.median(times)


def event_us(fn, runs=300):
    """Median microseconds of fn by CUDA events and by wall clock (to the end event)."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    events, walls = [], []
    for _ in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        t = time.perf_counter_ns()
        a.record()
        fn()
        b.record()
        b.synchronize()
        walls.append((time.perf_counter_ns() - t) / 1e3)
        events.append(a.elapsed_time(b) * 1e3)
    return statistics.median(events), statistics.median(walls)


def main():
    if not torch.cuda.is_available():
        sys.exit("bench_cuda_steps.py: no CUDA device")
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(0)
    print("eplb", eplb.__file__, "library", eplb.library_path)

    def with_device():
        with torch.cuda.device(dev):
            pass

    for name in CASES:
        L, E, R, G, N, P, pol = seed.CASES[name]
        w = seed.workload_fill(L, E, 1).to(dev)
        full = event_us(lambda: rb.rebalance_experts(w, R, G, N, P, policy=pol))
        unchecked = event_us(lambda: rb.rebalance_experts(w, R, G, N, P, policy=pol, check=False))
        redundant = event_us(lambda: rb.rebalance_experts(w, R, G, N, P, policy=pol,
                                                          log2phy_width="redundant"))
        ctx = contexts.cuda_context(torch, 0)
        opts = rb._options(8, 20, 0, 0.2, 1e-5, pol)
        shape = rb._shape(L, E, R, G, N, P)
        width = R - E + 1
        p = torch.empty((L, R), dtype=torch.int64, device=dev)
        c = torch.empty((L, E), dtype=torch.int64, device=dev)
        x = torch.empty((L, E, width), dtype=torch.int64, device=dev)
        s = torch.cuda.current_stream(dev)

        def call():
            return _library.lib.eplb_rebalance_device(
                ctx.handle, w.data_ptr(), ctypes.byref(shape), ctypes.byref(opts), p.data_ptr(),
                c.data_ptr(), x.data_ptr(), width, s.cuda_stream)

        bare = event_us(call)
        chosen = ctypes.c_int64(0)

        def call_needed():
            return _library.lib.eplb_rebalance_device(
                ctx.handle, w.data_ptr(), ctypes.byref(shape), ctypes.byref(opts), p.data_ptr(),
                c.data_ptr(), x.data_ptr(), _library.LOG2PHY_WIDTH_NEEDED, s.cuda_stream)

        def needed_and_width():
            call_needed()
            _library.eplb_device_log2phy_width(ctx.handle, s.cuda_stream, ctypes.byref(chosen))

        bare_needed = event_us(needed_and_width)
        total = L * R + L * E + L * E * width

        def one_allocation():
            out = torch.empty(total, dtype=torch.int64, device=dev)
            return (out.as_strided((L, R), (R, 1), 0),
                    out.as_strided((L, E), (E, 1), L * R),
                    out.as_strided((L, E, 8), (E * 8, 8, 1), L * R + L * E))
        steps = [
            ("_mode_options+_options",
             cpu_us(lambda: rb._options(*rb._mode_options(None, None, None), 0, 0.2, 1e-5, pol))),
            ("_torch_float32", cpu_us(lambda: rb._torch_float32(torch, w))),
            ("_global_without_groups+_shape",
             cpu_us(lambda: (rb._global_without_groups(E, G, N, opts), rb._shape(L, E, R, G, N, P)))),
            ("contexts.cuda_context", cpu_us(lambda: contexts.cuda_context(torch, 0))),
            ("torch.cuda.current_stream", cpu_us(lambda: torch.cuda.current_stream(dev))),
            ("current_stream and !=", cpu_us(lambda: s != torch.cuda.current_stream(dev))),
            ("with torch.cuda.device", cpu_us(with_device)),
            ("3x torch.empty", cpu_us(lambda: (
                torch.empty((L, R), dtype=torch.int64, device=dev),
                torch.empty((L, E), dtype=torch.int64, device=dev),
                torch.empty((L, E, width), dtype=torch.int64, device=dev)))),
            ("1x torch.empty + 3x as_strided", cpu_us(one_allocation)),
            ("eplb_rebalance_device call (CPU)", idle_us(lambda: None, call)),
            ("eplb_device_status, GPU idle",
             idle_us(call, lambda: _library.lib.eplb_device_status(ctx.handle, s.cuda_stream))),
            ("eplb_device_log2phy_width, GPU idle",
             idle_us(call_needed, lambda: _library.eplb_device_log2phy_width(
                 ctx.handle, s.cuda_stream, ctypes.byref(chosen)))),
            ("int(logcnt.max()), GPU idle", idle_us(lambda: None, lambda: int(c.max()))),
            ("log2phy narrow .contiguous()", cpu_us(lambda: x[:, :, :8].contiguous(), 1000)),
        ]
        print("== %s: full call check=True events %.1f us (wall %.1f); check=False %.1f (wall "
              "%.1f); redundant %.1f (wall %.1f); bare device call events %.1f us (wall %.1f); "
              "bare call at the needed width with its wait %.1f us (wall %.1f)"
              % ((name,) + full + unchecked + redundant + bare + bare_needed))
        for step, us in steps:
            print("   %-36s %8.2f us" % (step, us))


if __name__ == "__main__":
    main()
