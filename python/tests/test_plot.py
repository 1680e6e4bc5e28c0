"""python -m eplb plot: writes a PNG of the figure's fixed size, draws an old
plan beside a new one, computes GPU loads as SPEC section 8 does, and names
what is wrong with bad input. Skipped where matplotlib is not installed."""
import json
import struct
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from cli_helpers import run  # noqa: E402
from eplb import plot  # noqa: E402

LOADS = np.random.default_rng(5).integers(0, 1000, size=(6, 16))
SHAPE = ["-r", "24", "-g", "4", "-n", "2", "-p", "8"]



def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def files(tmp_path, capsys):
    """(loads.npy, eplb plan, DeepSeek-mode plan) as python -m eplb plan writes them."""
    loads = str(tmp_path / "loads.npy")
    np.save(loads, LOADS.astype(np.float32))
    new, old = str(tmp_path / "new.json"), str(tmp_path / "old.json")
    assert run(["plan", "-i", loads] + SHAPE + ["-q", "-o", new], capsys)[0] == 0
    assert run(["plan", "-i", loads] + SHAPE + ["-q", "-c", "1", "-I", "0", "--format",
                                                "sglang", "-o", old], capsys)[0] == 0
    return loads, new, old


def test_plot_writes_a_png_of_the_figure_size(files, tmp_path, capsys):
    loads, new, _ = files
    out = str(tmp_path / "plan.png")
    code, _, err = run(["plot", loads, new, "-o", out], capsys)
    assert code == 0, err
    w, h = plot.SIZE_ONE
    assert png_size(out) == (w * plot.DPI, h * plot.DPI)


def test_plot_previous_beside_new(files, tmp_path, capsys):
    loads, new, old = files
    out = str(tmp_path / "both.png")
    # The SGLang plan file does not say how many GPUs; -p does.
    code, _, err = run(["plot", loads, new, "--previous", old, "-p", "8", "-o", out], capsys)
    assert code == 0, err
    w, h = plot.SIZE_TWO
    assert png_size(out) == (w * plot.DPI, h * plot.DPI)


def test_gpu_loads_split_each_expert_over_its_replicas():
    weight = np.array([[6.0, 2.0, 4.0]])
    phy2log = np.array([[0, 0, 1, 2]])  # expert 0 twice: 3 + 3, 2 + 4
    np.testing.assert_allclose(plot.gpu_loads(weight, phy2log, 2), [[6.0, 6.0]])
    np.testing.assert_allclose(plot.gpu_loads(weight, phy2log, 4), [[3.0, 3.0, 2.0, 4.0]])


def test_sglang_plan_without_gpus_is_refused(files, tmp_path, capsys):
    loads, _, old = files
    code, _, err = run(["plot", loads, old, "-o", str(tmp_path / "x.png")], capsys)
    assert code == 2
    assert "does not say how many GPUs: pass -p/--gpus" in err


@pytest.mark.parametrize("plan, message", [
    ({"phy2log": [list(range(16)) + [0] * 7 + [99]] * 6, "shape": {"gpus": 8}},
     "phy2log[0][23] = 99 is not an expert (0..15)"),
    ({"physical_to_logical_map": [[0] * 24] * 6}, "expert 1 of layer 0 has no slot"),
    ({"phy2log": [[0] * 24] * 5, "shape": {"gpus": 8}}, "has 5 layers, the loads 6"),
    ({"phy2log": [[0] * 24] * 6, "shape": {"gpus": 7}}, "24 slots per layer do not divide"),
    ({"logical_count": [[1]]}, "neither an eplb plan"),
])
def test_bad_plan_gives_a_specific_error(files, tmp_path, capsys, plan, message):
    loads = files[0]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(plan))
    out = tmp_path / "x.png"
    gpus = ["-p", "8"] if "physical_to_logical_map" in plan else []
    code, _, err = run(["plot", loads, str(path), "-o", str(out)] + gpus, capsys)
    assert code == 2
    assert err.startswith("eplb plot: ") and message in err, err
    assert not out.exists()


def test_bad_loads_and_missing_output(files, tmp_path, capsys):
    _, new, _ = files
    code, _, err = run(["plot", str(tmp_path / "absent.npy"), new, "-o",
                        str(tmp_path / "x.png")], capsys)
    assert code == 2 and "cannot open" in err
    code, _, err = run(["plot", files[0], new], capsys)
    assert code == 2 and "-o/--output FILE.png is required" in err


def test_without_matplotlib_says_how_to_install(files, tmp_path, capsys, monkeypatch):
    loads, new, _ = files
    # A None entry makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(["plot", loads, new, "-o", str(tmp_path / "x.png")], capsys)
    assert code == 2
    assert "matplotlib is not installed: pip install 'eplb[plot]'" in err
    assert "apt-get install python3-matplotlib" in err
