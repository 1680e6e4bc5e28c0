"""Inputs for the incremental reference: the benchmark workload, its drift, and
plans from the eplb command-line tool."""
import json
import math
import os
import subprocess
import tempfile

import numpy as np

MASK = (1 << 64) - 1

# The DeepSeek-V3 cases of eplb-bench (docs/benchmarks.md): name, replicas,
# groups, nodes, gpus, policy.
V3_CASES = [
    ("v3-prefill", 288, 8, 4, 32, "auto"),
    ("v3-decode-288", 288, 8, 9, 72, "auto"),
    ("v3-decode-320", 320, 8, 8, 64, "global"),
]


def _next(state):
    """splitmix64, as src/tools/workload.c. Returns (value, new state)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31), state


def workload(layers, experts, seed=1):
    """eplb_workload_fill without dead experts: the benchmark's integer loads."""
    state = (seed * 0x2545F4914F6CDD1D + 1) & MASK
    w = np.empty((layers, experts), dtype=np.float32)
    for l in range(layers):
        for e in range(experts):
            r, state = _next(state)
            u = r >> 44
            tail = ((u * u) >> 20) * u >> 20
            load = 2000 + (r & 1023) + tail // 4
            if ((r >> 20) & 31) == 0:
                load *= 6
            w[l, e] = load
    return w


def drift(weight, seed=2, sigma=0.1):
    """The drift case: each load times exp(sigma * z), z standard normal from
    Box-Muller on a splitmix64 stream (two draws per load, row-major order),
    rounded to the nearest integer, so the result is integer token counts that
    any language reproduces."""
    state = (seed * 0x2545F4914F6CDD1D + 1) & MASK
    out = np.empty(weight.shape, dtype=np.float32)
    flat_in = weight.reshape(-1)
    flat_out = out.reshape(-1)
    for i in range(flat_in.shape[0]):
        r1, state = _next(state)
        r2, state = _next(state)
        u1 = ((r1 >> 11) + 1) * 2.0 ** -53
        u2 = (r2 >> 11) * 2.0 ** -53
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        flat_out[i] = math.floor(float(flat_in[i]) * math.exp(sigma * z) + 0.5)
    return out


def cli_path():
    """The eplb tool: $EPLB_CLI, else None."""
    path = os.environ.get("EPLB_CLI", "")
    return path if path and os.access(path, os.X_OK) else None


def cli_plan(cli, weight, replicas, groups, nodes, gpus, policy="auto", extra=()):
    """Plans weight with the eplb tool on the cpu backend; returns its plan JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "loads.json")
        dst = os.path.join(tmp, "plan.json")
        with open(src, "w") as f:
            json.dump([[float(x) for x in row] for row in weight], f)
        subprocess.run([cli, "plan", "--input", src, "--replicas", str(replicas),
                        "--groups", str(groups), "--nodes", str(nodes), "--gpus", str(gpus),
                        "--policy", policy, "--backend", "cpu", "--quiet",
                        "--output", dst, *extra], check=True)
        with open(dst) as f:
            return json.load(f)
