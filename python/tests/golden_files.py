"""Reads tests/golden/*.txt (SPEC.md section 9) for the Python tests."""
import os

import numpy as np

GOLDEN_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "..", "..", "tests", "golden"))


def golden_paths():
    return sorted(os.path.join(GOLDEN_DIR, name) for name in os.listdir(GOLDEN_DIR)
                  if name.endswith(".txt"))


class Golden:
    """One golden case: dims, options, weight and the expected plan."""

    def __init__(self, path):
        self.name = os.path.basename(path)[:-4]
        with open(path) as f:
            lines = [line.split() for line in f if line.strip()]
        assert lines[0] == ["#", "eplb", "golden", "v1"], path
        dims = self._pairs(lines[1])
        opts = self._pairs(lines[2])
        self.layers, self.experts = int(dims["layers"]), int(dims["experts"])
        self.replicas, self.groups = int(dims["replicas"]), int(dims["groups"])
        self.nodes, self.gpus = int(dims["nodes"]), int(dims["gpus"])
        self.candidates, self.iterations = int(opts["candidates"]), int(opts["iters"])
        self.noise, self.tolerance = float(opts["noise"]), float(opts["tol"])
        self.seed = int(opts["seed"])
        sections = {}
        rows = iter(lines[3:])
        for row in rows:
            name = row[0]
            count = 1 if name == "max_gpu_load" else self.layers
            sections[name] = [next(rows) for _ in range(count)]
        self.weight = np.array(sections["weight"], dtype=np.float64).astype(np.float32)
        self.phy2log = np.array(sections["phy2log"], dtype=np.int64)
        self.logcnt = np.array(sections["logcnt"], dtype=np.int64)
        self.max_gpu_load = np.array(sections["max_gpu_load"][0], dtype=np.float64)
        assert self.weight.shape == (self.layers, self.experts), path
        assert self.phy2log.shape == (self.layers, self.replicas), path
        assert self.logcnt.shape == (self.layers, self.experts), path

    @staticmethod
    def _pairs(words):
        return dict(zip(words[0::2], words[1::2]))

    def args(self):
        return (self.replicas, self.groups, self.nodes, self.gpus)

    def options(self):
        return dict(candidates=self.candidates, iterations=self.iterations, seed=self.seed,
                    noise=self.noise, tolerance=self.tolerance)


def max_gpu_load(weight, phy2log, logcnt, gpus):
    """SPEC section 8 GPU load, per layer (float64: a check, not the contract)."""
    weight = np.asarray(weight, dtype=np.float64)
    layers = weight.shape[0]
    per_slot = np.take_along_axis(weight / logcnt, phy2log, axis=1)
    return per_slot.reshape(layers, gpus, -1).sum(axis=2).max(axis=1)


def check_plan_consistent(phy2log, log2phy, logcnt, experts):
    """Invariants tying the three outputs together, whatever the plan."""
    layers, replicas = phy2log.shape
    assert log2phy.shape == (layers, experts, logcnt.max())  # DeepSeek's width
    assert (logcnt >= 1).all() and (logcnt.sum(axis=1) == replicas).all()
    for layer in range(layers):
        counts = np.bincount(phy2log[layer], minlength=experts)
        assert (counts == logcnt[layer]).all()
        for expert in range(experts):
            n = logcnt[layer, expert]
            slots = log2phy[layer, expert, :n]
            assert sorted(slots) == list(np.flatnonzero(phy2log[layer] == expert))
            assert (log2phy[layer, expert, n:] == -1).all()
