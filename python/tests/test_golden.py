"""Every golden case of tests/golden/ on every available backend, exactly."""
import os

import numpy as np
import pytest

import eplb
from golden_files import Golden, check_plan_consistent, golden_paths, max_gpu_load

PATHS = golden_paths()


def test_golden_files_found():
    # 13 cases x 4 modes; a missing folder must fail, not skip.
    assert len(PATHS) >= 52


@pytest.mark.parametrize("path", PATHS, ids=[os.path.basename(p)[:-4] for p in PATHS])
def test_golden_case(path, backend):
    case = Golden(path)
    phy2log, log2phy, logcnt = eplb.rebalance_experts(case.weight, *case.args(),
                                                      backend=backend, **case.options())
    for out in (phy2log, log2phy, logcnt):
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(phy2log, case.phy2log)
    np.testing.assert_array_equal(logcnt, case.logcnt)
    check_plan_consistent(phy2log, log2phy, logcnt, case.experts)
    np.testing.assert_allclose(max_gpu_load(case.weight, phy2log, logcnt, case.gpus),
                               case.max_gpu_load, rtol=1e-5)
