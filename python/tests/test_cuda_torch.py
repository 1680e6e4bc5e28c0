"""CUDA tensors through eplb_rebalance_device: same plans as the CPU path,
outputs on the weight's device, stream semantics. Skipped without a CUDA GPU
or without the cuda backend (run on the GPU machine: docs/python.md)."""
import os
import time

import numpy as np
import pytest

import eplb
from golden_files import Golden, check_plan_consistent, golden_paths

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if not dict((n, a) for n, a, _ in eplb.backends())["cuda"]:
    # A GPU is present but the cuda backend is not: that is a failure to report,
    # unless the package was built without CUDA on purpose.
    if os.environ.get("EPLB_EXPECT_CUDA", "1") == "1":
        pytest.fail("CUDA GPU present but eplb cuda backend unavailable: %s"
                    % dict((n, d) for n, _, d in eplb.backends())["cuda"], pytrace=False)
    pytest.skip("cuda backend not built", allow_module_level=True)

PATHS = golden_paths()
ARGS = (16, 4, 2, 8)
WEIGHT = np.random.default_rng(11).integers(0, 1000, size=(7, 12)).astype(np.float32)


def to_cpu(result):
    return [t.cpu().numpy() for t in result]


def assert_unchecked_plan(result, want):
    """A check=False result: log2phy keeps the width replicas - experts + 1
    (max(logcnt) is not known when the call returns), padded with -1."""
    phy2log, log2phy, logcnt = to_cpu(result)
    np.testing.assert_array_equal(phy2log, want[0])
    np.testing.assert_array_equal(logcnt, want[2])
    width = want[1].shape[2]
    assert log2phy.shape[2] == phy2log.shape[1] - logcnt.shape[1] + 1
    np.testing.assert_array_equal(log2phy[:, :, :width], want[1])
    assert (log2phy[:, :, width:] == -1).all()


@pytest.mark.parametrize("path", PATHS, ids=[os.path.basename(p)[:-4] for p in PATHS])
def test_golden_on_cuda_tensors(path):
    case = Golden(path)
    w = torch.from_numpy(case.weight).cuda()
    result = eplb.rebalance_experts(w, *case.args(), **case.options())
    for t in result:
        assert t.device == w.device and t.dtype == torch.int64 and t.is_contiguous()
    # check=True: log2phy is written at the width the device chose, max(logcnt).
    assert result[1].shape[2] == int(result[2].max())
    phy2log, log2phy, logcnt = to_cpu(result)
    np.testing.assert_array_equal(phy2log, case.phy2log)
    np.testing.assert_array_equal(logcnt, case.logcnt)
    check_plan_consistent(phy2log, log2phy, logcnt, case.experts)
    host = eplb.rebalance_experts(case.weight, *case.args(), backend="cpu", **case.options())
    for got, want in zip((phy2log, log2phy, logcnt), host):
        np.testing.assert_array_equal(got, want)  # log2phy too: same rank order as cpu


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bfloat16"])
def test_dtypes_and_layout(dtype):
    w = WEIGHT % 200
    want = eplb.rebalance_experts(w, *ARGS, backend="cpu")
    t = torch.from_numpy(np.ascontiguousarray(w.T)).cuda().t().to(getattr(torch, dtype))
    for got, x in zip(to_cpu(eplb.rebalance_experts(t, *ARGS)), want):
        np.testing.assert_array_equal(got, x)


def test_nan_on_device_raises_at_check():
    w = torch.from_numpy(WEIGHT).cuda()
    w[3, 4] = float("nan")
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(w, *ARGS)
    assert info.value.status == eplb.Status.INVALID_WEIGHT


def test_nan_unchecked_then_synchronize():
    w = torch.from_numpy(WEIGHT).cuda()
    w[0, 0] = -1.0
    eplb.rebalance_experts(w, *ARGS, check=False)  # returns: the device has not looked yet
    with pytest.raises(eplb.EplbError) as info:
        eplb.synchronize(w.device)
    assert info.value.status == eplb.Status.INVALID_WEIGHT
    # A good plan afterwards succeeds: the error belonged to the last call only.
    good = eplb.rebalance_experts(torch.from_numpy(WEIGHT).cuda(), *ARGS)
    np.testing.assert_array_equal(to_cpu(good)[0],
                                  eplb.rebalance_experts(WEIGHT, *ARGS, backend="cpu")[0])


def test_check_false_does_not_block_the_host():
    # Queue ~0.5 s of GPU work first; a synchronous call (or a host copy) would wait for it.
    w = torch.from_numpy(WEIGHT).cuda()
    torch.cuda.synchronize()
    torch.cuda._sleep(int(1e9))
    start = time.perf_counter()
    result = eplb.rebalance_experts(w, *ARGS, check=False)
    elapsed = time.perf_counter() - start
    eplb.synchronize()
    assert elapsed < 0.1, "check=False call blocked for %.3f s" % elapsed
    np.testing.assert_array_equal(to_cpu(result)[0],
                                  eplb.rebalance_experts(WEIGHT, *ARGS, backend="cpu")[0])


def test_side_stream():
    want = eplb.rebalance_experts(WEIGHT, *ARGS, backend="cpu")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        w = torch.from_numpy(WEIGHT).cuda()
        result = eplb.rebalance_experts(w, *ARGS, check=False)
        eplb.synchronize()
    stream.synchronize()
    assert_unchecked_plan(result, want)
    # Back on the default stream, the same context is reused safely.
    for got, x in zip(to_cpu(eplb.rebalance_experts(w, *ARGS)), want):
        np.testing.assert_array_equal(got, x)


def test_cpu_backend_with_cuda_tensor_rejected():
    with pytest.raises(ValueError, match="cuda backend"):
        eplb.rebalance_experts(torch.from_numpy(WEIGHT).cuda(), *ARGS, backend="cpu")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one GPU")
def test_second_gpu():
    w = torch.from_numpy(WEIGHT).to("cuda:1")
    result = eplb.rebalance_experts(w, *ARGS)
    assert all(t.device == w.device for t in result)
    np.testing.assert_array_equal(to_cpu(result)[0],
                                  eplb.rebalance_experts(WEIGHT, *ARGS, backend="cpu")[0])


def test_log2phy_widths_on_cuda_tensors():
    want = eplb.rebalance_experts(WEIGHT, *ARGS, backend="cpu")
    w = torch.from_numpy(WEIGHT).cuda()
    narrow = eplb.rebalance_experts(w, *ARGS)
    assert narrow[1].shape == want[1].shape and narrow[1].is_contiguous()
    assert_unchecked_plan(eplb.rebalance_experts(w, *ARGS, log2phy_width="redundant"), want)
    unchecked = eplb.rebalance_experts(w, *ARGS, check=False)
    assert all(t.is_contiguous() for t in unchecked)
    assert_unchecked_plan(unchecked, want)
    # The outputs share one allocation, in parts that do not overlap.
    phy2log, log2phy, logcnt = eplb.rebalance_experts(w, *ARGS)
    phy2log.fill_(-5)
    logcnt.fill_(-6)
    np.testing.assert_array_equal(log2phy.cpu().numpy(), want[1])


def test_window_on_cuda_tensors():
    window = torch.from_numpy(np.stack([WEIGHT, WEIGHT % 7]).astype(np.int64)).cuda()
    want = eplb.rebalance_experts(window.sum(dim=0).cpu().numpy(), *ARGS, backend="cpu")
    for got, x in zip(to_cpu(eplb.rebalance_experts(window, *ARGS)), want):
        np.testing.assert_array_equal(got, x)
