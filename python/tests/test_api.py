"""Package surface: version, backends(), per-thread contexts."""
import threading

import numpy as np

import eplb


def test_version_matches_library():
    assert eplb.__version__ == eplb.library_version


def test_backends_listing():
    listed = eplb.backends()
    assert [name for name, _, _ in listed] == ["cuda", "opencl", "cpu"]
    for name, available, detail in listed:
        assert isinstance(available, bool) and isinstance(detail, str) and detail
    assert dict((n, a) for n, a, _ in listed)["cpu"] is True


def test_explicit_cpu_backend_matches_auto():
    w = np.arange(24, dtype=np.float32).reshape(2, 12)
    a = eplb.rebalance_experts(w, 16, 4, 2, 8, backend="cpu")
    b = eplb.rebalance_experts(w, 16, 4, 2, 8, backend="auto")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_threads_use_own_contexts():
    rng = np.random.default_rng(5)
    weights = [rng.integers(0, 500, size=(8, 12)).astype(np.float32) for _ in range(4)]
    expected = [eplb.rebalance_experts(w, 16, 4, 2, 8) for w in weights]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(20):
                results[i] = eplb.rebalance_experts(weights[i], 16, 4, 2, 8)
        except Exception as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        for x, y in zip(results[i], expected[i]):
            np.testing.assert_array_equal(x, y)


def test_clear_contexts_then_plan_again():
    w = np.ones((1, 4), np.float32)
    first = eplb.rebalance_experts(w, 4, 1, 1, 2)
    eplb.clear_contexts()
    second = eplb.rebalance_experts(w, 4, 1, 1, 2)
    np.testing.assert_array_equal(first[0], second[0])


def test_synchronize_without_device_work_returns():
    eplb.synchronize()  # nothing pending on this thread: returns at once


def test_global_policy_equals_one_group_one_node():
    # SPEC section 3: global is the hierarchical procedure with groups = nodes = 1.
    w = np.random.default_rng(9).integers(0, 900, size=(3, 12)).astype(np.float32)
    a = eplb.rebalance_experts(w, 16, 4, 2, 8, policy="global")
    b = eplb.rebalance_experts(w, 16, 1, 1, 8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
