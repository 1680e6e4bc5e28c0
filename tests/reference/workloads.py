"""Inputs for the reference: the bench workload and the OLMoE sample, and a seed
plan from the C tool (`eplb plan`) for any weight matrix."""
import json
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
MASK = (1 << 64) - 1


def bench_workload(layers, experts, seed=1, dead_every=0):
    """eplb_workload_fill of src/tools/workload.c (the eplb-bench weights), exactly."""
    state = (seed * 0x2545F4914F6CDD1D + 1) & MASK
    out = np.zeros((layers, experts), dtype=np.float32)
    for l in range(layers):
        for e in range(experts):
            state = (state + 0x9E3779B97F4A7C15) & MASK
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            r = z ^ (z >> 31)
            u = r >> 44
            tail = ((u * u >> 20) * u) >> 20
            load = 2000 + (r & 1023) + tail // 4
            if ((r >> 20) & 31) == 0:
                load *= 6
            if dead_every > 0 and e % dead_every == dead_every - 1:
                load = 0
            out[l, e] = load
    return out


OLMOE_DOMAINS = ("arxiv", "c4", "github", "wikipedia")


def olmoe(domain):
    """One OLMoE routing sample (tests/data/olmoe-*.json, see tests/data/olmoe-SOURCE.md):
    3 layers x 64 experts of real expert counts."""
    with open(os.path.join(DATA, "olmoe-%s.json" % domain)) as f:
        return np.array(json.load(f)["logical_count"], dtype=np.float32)


def olmoe_wide():
    """The four OLMoE domains side by side: 3 layers x 256 experts of real counts, a
    stand-in for a DeepSeek-V3-sized load (each domain's 64 experts as 2 groups of 32)."""
    return np.concatenate([olmoe(d) for d in OLMOE_DOMAINS], axis=1)


def cli_path():
    path = os.environ.get("EPLB_CLI", "")
    return path if path and os.access(path, os.X_OK) else None


def seed_plan(weight, replicas, gpus, groups=1, nodes=1, extra=(), cli=None):
    """The plan `eplb plan` makes for these weights (its JSON as a dict)."""
    cli = cli or cli_path()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "w.json"), os.path.join(tmp, "plan.json")
        with open(src, "w") as f:
            json.dump([[float(x) for x in row] for row in np.asarray(weight, dtype=np.float32)], f)
        cmd = [cli, "plan", "-q", "-i", src, "-o", dst, "-r", str(replicas), "-p", str(gpus),
               "-g", str(groups), "-n", str(nodes), "--backend", "cpu"] + list(extra)
        subprocess.run(cmd, check=True)
        with open(dst) as f:
            return json.load(f)
