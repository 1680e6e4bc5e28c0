"""The drop-in for DeepSeek's rebalance_experts: log2phy's width, 3-D windows,
groups that do not divide the experts under the global policy, mode="deepseek"."""
import numpy as np
import pytest

import eplb
from eplb import rebalance
from golden_files import check_plan_consistent

ARGS = (16, 4, 2, 8)  # replicas, groups, nodes, gpus
WEIGHT = np.random.default_rng(21).integers(0, 1000, size=(6, 12)).astype(np.float32)


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_log2phy_width_is_max_logcnt():
    phy2log, log2phy, logcnt = eplb.rebalance_experts(WEIGHT, *ARGS)
    assert log2phy.shape == (6, 12, logcnt.max())
    assert log2phy.flags.c_contiguous
    check_plan_consistent(phy2log, log2phy, logcnt, 12)


def test_log2phy_holds_the_redundant_width_prefix():
    # vLLM's width (replicas - experts + 1) holds the same slots, then -1 columns.
    narrow = eplb.rebalance_experts(WEIGHT, *ARGS)
    wide = eplb.rebalance_experts(WEIGHT, *ARGS, log2phy_width="redundant")
    assert wide[1].shape == (6, 12, 16 - 12 + 1)
    width = narrow[1].shape[2]
    np.testing.assert_array_equal(wide[1][:, :, :width], narrow[1])
    assert (wide[1][:, :, width:] == -1).all()
    assert_same((wide[0], wide[2]), (narrow[0], narrow[2]))


def test_skewed_loads_plan_again_at_the_width_needed(monkeypatch):
    # A log2phy too large to allocate at full width is tried narrow first; an
    # expert with more replicas than that first width makes a second call.
    weight = np.ones((3, 8), np.float32)
    weight[:, 2] = 1e6
    want = eplb.rebalance_experts(weight, 64, 1, 1, 8)
    assert want[2].max() > 4
    monkeypatch.setattr(rebalance, "_LOG2PHY_FULL_BYTES", 0)
    monkeypatch.setattr(rebalance, "_LOG2PHY_FIRST_WIDTH", 4)
    assert_same(eplb.rebalance_experts(weight, 64, 1, 1, 8), want)
    monkeypatch.setattr(rebalance, "_LOG2PHY_FIRST_WIDTH", 64)
    assert_same(eplb.rebalance_experts(weight, 64, 1, 1, 8), want)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64])
def test_window_is_summed_over_its_first_axis(dtype):
    window = np.random.default_rng(4).integers(0, 300, size=(5, 6, 12)).astype(dtype)
    want = eplb.rebalance_experts(window.sum(axis=0), *ARGS)
    assert_same(eplb.rebalance_experts(window, *ARGS), want)


def test_window_sum_is_checked_by_the_library():
    window = np.full((2, 1, 12), 3e38, np.float32)  # each finite, the sum beyond float32
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(window, *ARGS)
    assert info.value.status == eplb.Status.INVALID_WEIGHT


@pytest.mark.parametrize("policy", ["auto", "global"])
def test_groups_not_dividing_experts_under_the_global_policy(policy):
    # groups 5 on nodes 2: DeepSeek plans globally and never uses the groups.
    want = eplb.rebalance_experts(WEIGHT, 16, 1, 2, 8, policy="global")
    assert_same(eplb.rebalance_experts(WEIGHT, 16, 5, 2, 8, policy=policy), want)


def test_groups_not_dividing_experts_under_the_hierarchical_policy():
    # groups 5 on nodes 1: DeepSeek plans hierarchically and asserts experts % groups.
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(WEIGHT, 16, 5, 1, 8)
    assert info.value.status == eplb.Status.INVALID_SHAPE
    assert "divisible by groups" in info.value.message


def test_global_policy_plan_unchanged_when_groups_divide():
    # The rewrite applies only where the library would refuse the groups.
    a = eplb.rebalance_experts(WEIGHT, 16, 3, 2, 8)
    b = eplb.rebalance_experts(WEIGHT, 16, 3, 2, 8, policy="global")
    assert_same(a, b)


def test_mode_deepseek_is_one_candidate_no_iterations():
    want = eplb.rebalance_experts(WEIGHT, *ARGS, candidates=1, iterations=0)
    assert_same(eplb.rebalance_experts(WEIGHT, *ARGS, mode="deepseek"), want)


def test_mode_eplb_is_the_default():
    assert_same(eplb.rebalance_experts(WEIGHT, *ARGS, mode="eplb"),
                eplb.rebalance_experts(WEIGHT, *ARGS))
    assert_same(eplb.rebalance_experts(WEIGHT, *ARGS, mode="eplb", candidates=2),
                eplb.rebalance_experts(WEIGHT, *ARGS, candidates=2))


def test_log2phy_width_misuse():
    with pytest.raises(ValueError, match="log2phy_width"):
        eplb.rebalance_experts(WEIGHT, *ARGS, log2phy_width=5)


@pytest.mark.parametrize("kwargs", [dict(mode="deepseek", candidates=1),
                                    dict(mode="deepseek", iterations=0),
                                    dict(mode="DeepSeek"), dict(mode=1)])
def test_mode_misuse(kwargs):
    with pytest.raises(ValueError, match="mode"):
        eplb.rebalance_experts(WEIGHT, *ARGS, **kwargs)
