"""refine= of rebalance_experts (docs/spec.md section 10): off by default, True is
256 trades per row, plans equal the reference fixtures of tests/data/refine, bad
values and backends without the stage raise EplbError."""
import os

import numpy as np
import pytest

import eplb

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "refine")


def read_fixture(name):
    """The weights, shape, options and plan of one tests/data/refine file."""
    with open(os.path.join(FIXTURES, name)) as f:
        lines = f.read().split("\n")
    shape = dict(zip(lines[1].split()[0::2], map(int, lines[1].split()[1::2])))
    opts = lines[2].split()
    L, E, R = shape["layers"], shape["experts"], shape["replicas"]
    at = 4
    weight = np.array([[float(x) for x in lines[at + l].split()] for l in range(L)], dtype=np.float32)
    at += L + 1
    phy2log = np.array([[int(x) for x in lines[at + l].split()] for l in range(L)])
    at += L + 1
    logcnt = np.array([[int(x) for x in lines[at + l].split()] for l in range(L)])
    return shape, {"policy": opts[1], "refine": int(opts[3]), "tolerance": float(opts[5])}, weight, \
        phy2log, logcnt


def bench_like(layers=4, experts=64, seed=0):
    rng = np.random.RandomState(seed)
    return (rng.pareto(1.1, size=(layers, experts)) * 100).astype(np.float32)


def max_loads(weight, phy2log, logcnt, gpus):
    per_slot = np.take_along_axis(weight, phy2log, 1) / np.take_along_axis(logcnt, phy2log, 1)
    return per_slot.reshape(weight.shape[0], gpus, -1).sum(axis=2).max(axis=1)


def test_off_by_default_and_true_is_256():
    w = bench_like()
    default = eplb.rebalance_experts(w, 96, 1, 1, 16, backend="cpu")
    off = eplb.rebalance_experts(w, 96, 1, 1, 16, backend="cpu", refine=0)
    on = eplb.rebalance_experts(w, 96, 1, 1, 16, backend="cpu", refine=True)
    cap = eplb.rebalance_experts(w, 96, 1, 1, 16, backend="cpu", refine=256)
    for a, b in zip(default, off):
        assert (a == b).all()
    for a, b in zip(on, cap):
        assert (a == b).all()
    assert (on[2] == default[2]).all()  # refine never changes the replica counts
    assert (max_loads(w, on[0], on[2], 16) <= max_loads(w, default[0], default[2], 16)).all()


def test_parsed_options_keep_true_and_one_apart():
    """rebalance_experts keeps parsed options by their arguments' values and
    types: refine=True (256 trades) after refine=1 (one trade) is not taken for
    it, nor the other way round, and each call gets its own copy."""
    from eplb import rebalance

    def parsed(refine):
        return rebalance._planner_options(None, None, None, 0, 0.2, 1e-5, "auto", refine, False,
                                          0.0, True)

    for order in ((1, True), (True, 1), (1, True)):
        assert [parsed(r).refine for r in order] == [256 if r is True else 1 for r in order]
    first = parsed(True)
    first.policy = 2
    assert parsed(True).policy == 0


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(FIXTURES) if n.endswith(".txt")))
def test_plans_equal_the_reference_fixtures(name):
    shape, opts, weight, phy2log, logcnt = read_fixture(name)
    got, _, cnt = eplb.rebalance_experts(weight, shape["replicas"], shape["groups"], shape["nodes"],
                                         shape["gpus"], policy=opts["policy"],
                                         tolerance=opts["tolerance"], refine=opts["refine"],
                                         backend="cpu")
    assert (got == phy2log).all()
    assert (cnt == logcnt).all()


@pytest.mark.parametrize("bad", [-1, 100001, 2 ** 40])
def test_out_of_range_is_refused(bad):
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(bench_like(), 96, 1, 1, 16, backend="cpu", refine=bad)
    assert info.value.status == eplb.Status.INVALID_ARGUMENT
    assert "refine" in info.value.message


def test_not_a_count_is_a_type_error():
    with pytest.raises(TypeError):
        eplb.rebalance_experts(bench_like(), 96, 1, 1, 16, backend="cpu", refine="yes")


