"""Input kinds: numpy dtypes and layouts, Python lists; the result never depends
on how the same float32 values arrive."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import eplb

ARGS = (16, 4, 2, 8)


def make_weight(seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1000, size=(6, 12)).astype(np.float32)


def plan(weight, **kwargs):
    return eplb.rebalance_experts(weight, *ARGS, **kwargs)


def assert_same(a, b):
    for x, y in zip(a, b):
        assert x.dtype == np.int64
        np.testing.assert_array_equal(x, y)


REFERENCE = make_weight()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.int8, np.float64,
                                   np.float16, ">f4", ">i8"])
def test_numeric_dtypes(dtype):
    w = make_weight(2) % 100  # fits int8 and float16 exactly
    assert_same(plan(w.astype(dtype)), plan(w))


def test_float64_rounds_to_float32():
    w64 = REFERENCE.astype(np.float64) + 1e-9  # not representable in float32
    assert_same(plan(w64), plan(w64.astype(np.float32)))


def test_python_lists():
    assert_same(plan(REFERENCE.tolist()), plan(REFERENCE))


@pytest.mark.parametrize("layout", ["fortran", "transposed-view", "strided"])
def test_non_contiguous(layout):
    if layout == "fortran":
        w = np.asfortranarray(REFERENCE)
    elif layout == "transposed-view":
        w = np.ascontiguousarray(REFERENCE.T).T
    else:
        w = np.repeat(REFERENCE, 2, axis=1)[:, ::2]
    assert not w.flags.c_contiguous
    assert_same(plan(w), plan(REFERENCE))


def test_input_left_unchanged():
    w = REFERENCE.copy()
    plan(w)
    np.testing.assert_array_equal(w, REFERENCE)



def test_numpy_input_does_not_import_torch():
    code = textwrap.dedent("""
        import sys, eplb
        eplb.rebalance_experts([[1, 2, 3, 4]], 4, 1, 1, 2)
        assert "torch" not in sys.modules, "torch imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_outputs_are_fresh_arrays():
    a = plan(REFERENCE)
    b = plan(REFERENCE)
    assert not np.shares_memory(a[0], b[0])
