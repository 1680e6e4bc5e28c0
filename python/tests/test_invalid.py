"""Bad input raises a specific error: EplbError from the library for values and
shape rules, TypeError / ValueError for Python-level type and rank problems."""
import math

import numpy as np
import pytest

import eplb
from eplb import EplbError, Status

WEIGHT = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                   [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]], dtype=np.float32)
ARGS = (16, 4, 2, 8)


def expect_status(status, *args, **kwargs):
    with pytest.raises(EplbError) as info:
        eplb.rebalance_experts(*args, **kwargs)
    assert info.value.status == status
    assert info.value.message  # the library's own words, never empty
    return info.value


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, -1e-30])
def test_bad_weight_value(bad, backend):
    w = WEIGHT.copy()
    w[1, 7] = bad
    err = expect_status(Status.INVALID_WEIGHT, w, *ARGS, backend=backend)
    assert "weight" in err.message


def test_float64_overflowing_float32_is_rejected():
    w = WEIGHT.astype(np.float64)
    w[0, 0] = 1e300  # becomes inf in float32
    expect_status(Status.INVALID_WEIGHT, w, *ARGS)


@pytest.mark.parametrize("args", [
    (15, 4, 2, 8),   # replicas % gpus != 0
    (8, 4, 2, 8),    # replicas < experts
    (16, 5, 1, 8),   # experts % groups != 0
    (18, 4, 4, 6),   # hierarchical (groups % nodes == 0) but gpus % nodes != 0
    (16, 0, 2, 8),   # groups < 1
    (16, 4, 0, 8),   # nodes < 1
    (16, 4, 2, 0),   # gpus < 1
    (-16, 4, 2, 8),  # negative replicas
], ids=["replicas-gpus", "replicas-experts", "experts-groups", "gpus-nodes", "groups0",
        "nodes0", "gpus0", "replicas-negative"])
def test_bad_shape(args):
    expect_status(Status.INVALID_SHAPE, WEIGHT, *args)


@pytest.mark.parametrize("weight", [np.zeros((0, 12), np.float32), np.zeros((2, 0), np.float32)],
                         ids=["no-layers", "no-experts"])
def test_empty_weight(weight):
    expect_status(Status.INVALID_SHAPE, weight, *ARGS)


@pytest.mark.parametrize("weight", [WEIGHT[0], WEIGHT[None, None], np.float32(3.0), [1.0, 2.0]],
                         ids=["1-D", "4-D", "scalar", "list-1-D"])
def test_weight_neither_2d_nor_3d(weight):
    with pytest.raises(ValueError, match=r"\[layers, experts\]"):
        eplb.rebalance_experts(weight, *ARGS)


def test_empty_window():
    with pytest.raises(ValueError, match="no step"):
        eplb.rebalance_experts(np.zeros((0, 2, 12), np.float32), *ARGS)


@pytest.mark.parametrize("weight", [WEIGHT.astype(np.complex64), WEIGHT > 50,
                                    WEIGHT.astype(str), WEIGHT.astype(object)],
                         ids=["complex", "bool", "str", "object"])
def test_weight_wrong_dtype(weight):
    with pytest.raises(TypeError, match="dtype"):
        eplb.rebalance_experts(weight, *ARGS)


@pytest.mark.parametrize("kwargs", [dict(candidates=0), dict(candidates=1025),
                                    dict(candidates=1 << 40), dict(iterations=-1),
                                    dict(iterations=100001), dict(noise=-0.1),
                                    dict(noise=math.nan), dict(tolerance=math.inf),
                                    dict(noise=1e39)],
                         ids=["candidates0", "candidates-max", "candidates-huge",
                              "iterations-negative", "iterations-max", "noise-negative",
                              "noise-nan", "tolerance-inf", "noise-overflow"])
def test_bad_option(kwargs):
    expect_status(Status.INVALID_ARGUMENT, WEIGHT, *ARGS, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(seed=-1), dict(seed=1 << 64)], ids=["negative", "huge"])
def test_bad_seed(kwargs):
    with pytest.raises(ValueError, match="seed"):
        eplb.rebalance_experts(WEIGHT, *ARGS, **kwargs)


def test_largest_seed_accepted():
    phy2log, _, _ = eplb.rebalance_experts(WEIGHT, *ARGS, seed=(1 << 64) - 1)
    assert phy2log.shape == (2, 16)


@pytest.mark.parametrize("args", [(16.0, 4, 2, 8), ("16", 4, 2, 8), (16, None, 2, 8)],
                         ids=["float", "str", "none"])
def test_count_not_integer(args):
    with pytest.raises(TypeError, match="integer"):
        eplb.rebalance_experts(WEIGHT, *args)


def test_count_out_of_int64():
    with pytest.raises(ValueError, match="int64"):
        eplb.rebalance_experts(WEIGHT, 1 << 70, 4, 2, 8)


def test_unknown_backend():
    err = expect_status(Status.BACKEND_UNAVAILABLE, WEIGHT, *ARGS, backend="nonesuch")
    assert "nonesuch" in err.message


def test_backend_not_a_string():
    with pytest.raises(TypeError, match="backend"):
        eplb.rebalance_experts(WEIGHT, *ARGS, backend=1)


def test_error_text_names_status():
    err = expect_status(Status.INVALID_SHAPE, WEIGHT, 15, 4, 2, 8)
    assert str(err).startswith("EPLB_ERR_INVALID_SHAPE: ")
    assert isinstance(err.status, Status) and int(err.status) == 2


def test_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        eplb.rebalance_experts(WEIGHT, *ARGS, policy="random")


def test_hierarchical_policy_needs_groups_multiple_of_nodes():
    # groups 4, nodes 3: auto falls back to global, a forced hierarchical plan is refused.
    eplb.rebalance_experts(WEIGHT, 18, 4, 3, 6)
    expect_status(Status.POLICY, WEIGHT, 18, 4, 3, 6, policy="hierarchical")
