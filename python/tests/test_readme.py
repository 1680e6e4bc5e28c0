"""The example of DeepSeek's EPLB README, in every mode of the golden files."""
import os

import numpy as np
import pytest

import eplb
from golden_files import GOLDEN_DIR, Golden, check_plan_consistent

WEIGHT = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
          [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
ARGS = (16, 4, 2, 8)  # replicas, groups, nodes, gpus

# Output printed in DeepSeek's EPLB README for this example.
DEEPSEEK_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                    [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]

MODES = {
    "deepseek": dict(candidates=1, iterations=0),
    "lpt_l2": dict(candidates=1, iterations=20),
    "default": dict(),
    "default-seed7": dict(seed=7),
}


def test_deepseek_published_output():
    phy2log, log2phy, logcnt = eplb.rebalance_experts(WEIGHT, *ARGS, candidates=1, iterations=0)
    np.testing.assert_array_equal(phy2log, DEEPSEEK_PHY2LOG)
    np.testing.assert_array_equal(logcnt, [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1],
                                           [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]])
    assert log2phy.shape == (2, 12, 2)  # max(logcnt), as DeepSeek's
    check_plan_consistent(phy2log, log2phy, logcnt, 12)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_readme_mode_matches_golden(mode, backend):
    case = Golden(os.path.join(GOLDEN_DIR, "readme.%s.txt" % mode))
    np.testing.assert_array_equal(case.weight, np.array(WEIGHT, dtype=np.float32))
    phy2log, log2phy, logcnt = eplb.rebalance_experts(WEIGHT, *ARGS, backend=backend,
                                                      **MODES[mode])
    np.testing.assert_array_equal(phy2log, case.phy2log)
    np.testing.assert_array_equal(logcnt, case.logcnt)
    check_plan_consistent(phy2log, log2phy, logcnt, 12)

