"""torch CPU tensors: torch int64 tensors out, same plan as numpy (skipped without torch)."""
import numpy as np
import pytest

import eplb

torch = pytest.importorskip("torch")

ARGS = (16, 4, 2, 8)
WEIGHT = np.random.default_rng(3).integers(0, 1000, size=(5, 12)).astype(np.float32)
EXPECTED = eplb.rebalance_experts(WEIGHT, *ARGS)


def assert_plan(result, device="cpu"):
    assert len(result) == 3
    for got, want in zip(result, EXPECTED):
        assert isinstance(got, torch.Tensor)
        assert got.dtype == torch.int64 and got.device.type == device
        np.testing.assert_array_equal(got.cpu().numpy(), want)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bfloat16", "float16"])
def test_dtypes(dtype):
    w = torch.from_numpy(WEIGHT % 200)  # exact in bfloat16 and float16
    want = eplb.rebalance_experts(WEIGHT % 200, *ARGS)
    got = eplb.rebalance_experts(w.to(getattr(torch, dtype)), *ARGS)
    for g, x in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), x)


def test_float32_tensor():
    assert_plan(eplb.rebalance_experts(torch.from_numpy(WEIGHT.copy()), *ARGS))


def test_requires_grad_and_non_contiguous():
    w = torch.from_numpy(np.ascontiguousarray(WEIGHT.T)).t().requires_grad_(True)
    assert not w.is_contiguous()
    assert_plan(eplb.rebalance_experts(w, *ARGS))


def test_int64_loads_like_vllm():
    # vLLM passes the summed int64 expert-load window.
    assert_plan(eplb.rebalance_experts(torch.from_numpy(WEIGHT.astype(np.int64)), *ARGS))


def test_bad_values_raise_eplb_error():
    w = torch.from_numpy(WEIGHT.copy())
    w[2, 3] = float("nan")
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(w, *ARGS)
    assert info.value.status == eplb.Status.INVALID_WEIGHT


@pytest.mark.parametrize("w", [torch.zeros(12), torch.zeros(1, 1, 2, 12)], ids=["1-D", "4-D"])
def test_neither_2d_nor_3d(w):
    with pytest.raises(ValueError, match=r"\[layers, experts\]"):
        eplb.rebalance_experts(w, *ARGS)


@pytest.mark.parametrize("dtype", ["bool", "complex64"])
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match="dtype"):
        eplb.rebalance_experts(torch.zeros(2, 12, dtype=getattr(torch, dtype)), *ARGS)


def test_meta_device_rejected():
    with pytest.raises(ValueError, match="device"):
        eplb.rebalance_experts(torch.zeros(2, 12, device="meta"), *ARGS)
