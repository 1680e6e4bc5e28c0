"""eplb.evaluate: the library's eplb_evaluate from Python, against the fixtures
of the independent reference (tests/data/evaluate-fixtures.txt, made by
tests/reference/make_evaluate_fixtures.py) and on plans of rebalance_experts."""
import os

import numpy as np
import pytest

import eplb

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data",
                        "evaluate-fixtures.txt")


def fixture_cases():
    if not os.path.exists(FIXTURES):
        return []
    words = open(FIXTURES).read().split("\n", 1)[1].split()
    cases, i = [], 0
    while i < len(words):
        assert words[i] == "case"
        name, policy = words[i + 1], words[i + 2]
        L, E, R, G, N, P = map(int, words[i + 3:i + 9])
        i += 9

        def take(word, n, kind):
            nonlocal i
            assert words[i] == word
            values = [kind(x) for x in words[i + 1:i + 1 + n]]
            i += 1 + n
            return values

        weight = np.array(take("weight", L * E, float), dtype=np.float32).reshape(L, E)
        phy2log = np.array(take("phy2log", L * R, int), dtype=np.int64).reshape(L, R)
        expect = take("expect", 7, float)
        floor = take("floor", L, float)
        worst = take("max", L, float)
        cases.append(pytest.param(weight, phy2log, (G, N, P), policy, expect, floor, worst,
                                  id=name))
    return cases


@pytest.mark.parametrize("weight,phy2log,shape,policy,expect,floor,worst", fixture_cases())
def test_agrees_with_the_reference(weight, phy2log, shape, policy, expect, floor, worst):
    r = eplb.evaluate(weight, phy2log, *shape, policy=policy)
    # Rounding only: the reference sums some loads in another order.
    assert r.balancedness == pytest.approx(expect[0], rel=1e-12)
    assert r.balancedness_min_layer == pytest.approx(expect[1], rel=1e-12)
    assert r.min_layer == int(expect[2])
    assert r.bound == pytest.approx(expect[3], rel=1e-12)
    assert r.balancedness_bound == pytest.approx(expect[4], rel=1e-12)
    assert r.duplicates == int(expect[5])
    assert r.bound_exact == bool(expect[6])
    assert r.layer_floor == pytest.approx(floor, rel=1e-12)
    assert r.max_load == pytest.approx(worst, rel=1e-12)


def test_fixtures_are_there():
    assert len(fixture_cases()) >= 12


def test_hierarchical_bound_sees_the_groups():
    # Both heavy experts form one group: one node of three GPUs holds them.
    weight = np.array([[10, 10, 1, 1]], dtype=np.float32)
    r = eplb.evaluate(weight, [[0, 1, 0, 2, 3, 2]], 2, 2, 6)
    assert isinstance(r, eplb.Evaluation)
    assert r.policy == "hierarchical"
    assert r.bound == 10.0
    assert r.balancedness_bound == pytest.approx(22 / 60)
    assert r.global_balancedness_bound == pytest.approx(22 / 30)
    assert r.balancedness == pytest.approx(r.balancedness_bound)
    assert r.mean_load.tolist() == pytest.approx([22 / 6])
    assert r.duplicates == 0
    g = eplb.evaluate(weight, [[0, 1, 0, 2, 3, 2]], 2, 2, 6, policy="global")
    assert g.policy == "global" and g.bound == 5.0


def test_old_plan_on_new_loads_beside_a_fresh_plan():
    rng = np.random.default_rng(3)
    old_loads = rng.pareto(1.5, (4, 64)).astype(np.float32)
    new_loads = rng.pareto(1.5, (4, 64)).astype(np.float32)
    old_plan, _, _ = eplb.rebalance_experts(old_loads, 80, 8, 2, 16)
    fresh, _, _ = eplb.rebalance_experts(new_loads, 80, 8, 2, 16)
    stale = eplb.evaluate(new_loads, old_plan, 8, 2, 16)
    better = eplb.evaluate(new_loads, fresh, 8, 2, 16)
    assert stale.balancedness_bound == better.balancedness_bound
    assert better.balancedness <= better.balancedness_bound * (1 + 1e-9)
    assert stale.balancedness <= better.balancedness
    assert stale.max_load.shape == (4,)


def test_a_window_is_summed():
    rng = np.random.default_rng(1)
    window = rng.integers(0, 100, (3, 2, 8)).astype(np.float32)
    plan = np.tile(np.arange(8), (2, 2))
    assert (eplb.evaluate(window, plan, 1, 1, 4).max_load
            == eplb.evaluate(window.sum(axis=0), plan, 1, 1, 4).max_load).all()


def test_bad_inputs_name_what_is_wrong():
    weight = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(eplb.EplbError, match=r"phy2log\[1\]\[2\] = 4 is not an expert \(0..3\)"):
        eplb.evaluate(weight, [[0, 1, 2, 3], [3, 2, 4, 0]], 1, 1, 2)
    with pytest.raises(eplb.EplbError, match="layer 1 has no slot for expert 0"):
        eplb.evaluate(weight, [[0, 1, 2, 3], [3, 2, 1, 1]], 1, 1, 2)
    with pytest.raises(eplb.EplbError) as bad_shape:
        eplb.evaluate(weight, [[0, 1, 2, 3], [3, 2, 1, 0]], 1, 1, 3)
    assert bad_shape.value.status == eplb.Status.INVALID_SHAPE
    with pytest.raises(eplb.EplbError, match="weight"):
        eplb.evaluate(-weight, [[0, 1, 2, 3], [3, 2, 1, 0]], 1, 1, 2)
    with pytest.raises(TypeError, match="integers"):
        eplb.evaluate(weight, [[0.0, 1, 2, 3], [3, 2, 1, 0]], 1, 1, 2)
    with pytest.raises(ValueError, match="2 layers"):
        eplb.evaluate(weight, [[0, 1, 2, 3]], 1, 1, 2)
    with pytest.raises(ValueError, match="policy"):
        eplb.evaluate(weight, [[0, 1, 2, 3], [3, 2, 1, 0]], 1, 1, 2, policy="best")


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    weight = torch.tensor([[10.0, 10.0, 1.0, 1.0]], dtype=torch.bfloat16)
    r = eplb.evaluate(weight, torch.tensor([[0, 1, 0, 2, 3, 2]]), 2, 2, 6)
    assert r.bound == 10.0
