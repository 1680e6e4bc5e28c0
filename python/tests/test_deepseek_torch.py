"""mode="deepseek" against DeepSeek's algorithm in torch (deepseek_reference.py,
stable sorts): phy2log, log2phy (shape and replica order) and logcnt equal,
also on loads with ties. Skipped without torch."""
import numpy as np
import pytest

import eplb

torch = pytest.importorskip("torch")
import deepseek_reference  # noqa: E402  (needs torch)

CASES = {
    # name: (layers, experts, replicas, groups, nodes, gpus)
    "hierarchical": (5, 16, 24, 4, 2, 8),
    "global-groups-not-on-nodes": (5, 12, 16, 3, 2, 4),
    "global-groups-not-dividing-experts": (4, 12, 18, 5, 2, 6),
    "one-node": (3, 32, 40, 8, 1, 8),
    "no-redundancy": (2, 16, 16, 4, 2, 8),
}


def loads(layers, experts, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 5000, size=(layers, experts)).astype(np.int64)
    w[0] = 0                           # a dense layer: every load tied
    w[-1, ::3] = w[-1, 1]              # ties among some experts
    return torch.from_numpy(w)


@pytest.mark.parametrize("name", sorted(CASES))
def test_deepseek_mode_equals_deepseek(name):
    layers, experts, replicas, groups, nodes, gpus = CASES[name]
    weight = loads(layers, experts, seed=len(name))
    want = deepseek_reference.rebalance_experts(weight, replicas, groups, nodes, gpus)
    got = eplb.rebalance_experts(weight, replicas, groups, nodes, gpus, mode="deepseek")
    for label, g, w in zip(("phy2log", "log2phy", "logcnt"), got, want):
        assert g.dtype == torch.int64 and g.device.type == "cpu"
        assert g.shape == w.shape, label
        assert torch.equal(g, w), label


def test_window_like_sglang():
    # SGLang's recorder dumps [window, layers, experts]; DeepSeek is called on the sum.
    window = torch.randint(0, 100, (4, 3, 16), dtype=torch.int64)
    want = deepseek_reference.rebalance_experts(window.sum(dim=0), 24, 4, 2, 8)
    got = eplb.rebalance_experts(window, 24, 4, 2, 8, mode="deepseek")
    for g, w in zip(got, want):
        assert torch.equal(g, w)
