"""python -m eplb plan: the C tool's options, exit codes and plan files, every
input format (SGLang's .pt with torch), --format sglang. With $EPLB_CLI naming
the C tool (scripts/test.sh sets it), its plan files are compared byte for byte."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import eplb
from cli_helpers import plan_files_of_both_tools, run
from golden_files import check_plan_consistent

LOADS = np.random.default_rng(12).integers(0, 1000, size=(4, 16))
SHAPE = ["-r", "24", "-g", "4", "-n", "2", "-p", "8"]


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "loads.npy"
    np.save(path, LOADS.astype(np.float32))
    return str(path)


def plan_file(path):
    with open(path) as f:
        return json.load(f)


def assert_plan_matches_library(plan, weight, **options):
    phy2log, _, logcnt = eplb.rebalance_experts(weight, 24, 4, 2, 8, **options)
    np.testing.assert_array_equal(plan["phy2log"], phy2log)
    np.testing.assert_array_equal(plan["logcnt"], logcnt)
    # log2phy: each expert's slots, ascending, unpadded.
    for layer, experts in enumerate(plan["log2phy"]):
        for e, slots in enumerate(experts):
            assert slots == sorted(np.flatnonzero(phy2log[layer] == e).tolist())


def test_plan_npy_writes_the_eplb_plan_file(npy, tmp_path, capsys):
    out_path = str(tmp_path / "plan.json")
    code, out, err = run(["plan", "-i", npy] + SHAPE + ["-o", out_path], capsys)
    assert code == 0, err
    assert out.startswith("eplb plan: %s (npy), 4 layers x 16 experts\n" % npy)
    assert "  plan file     %s\n" % out_path in out
    plan = plan_file(out_path)
    assert list(plan) == ["format", "version", "input", "input_format", "shape", "options",
                          "policy", "phy2log", "log2phy", "logcnt", "stats"]
    assert plan["format"] == "eplb-plan v2" and plan["version"] == eplb.library_version
    assert plan["input"] == npy and plan["input_format"] == "npy"
    assert plan["shape"] == dict(layers=4, experts=16, replicas=24, groups=4, nodes=2, gpus=8)
    assert plan["options"] == dict(candidates=8, iterations=20, noise=0.2, tolerance=1e-5,
                                   seed=0, policy="auto")
    assert plan["policy"] == "hierarchical"
    assert_plan_matches_library(plan, LOADS)
    stats = plan["stats"]
    assert 0 < stats["balancedness"] <= stats["balancedness_bound"] <= 1
    assert stats["max_load_sum"] >= stats["bound"] > 0
    assert len(stats["bound_per_layer"]) == len(stats["max_load_per_layer"]) == 4
    assert stats["backend"] in ("cpu", "opencl", "cuda")


@pytest.mark.parametrize("fmt", ["csv", "text", "json-array", "sglang-json-3d"])
def test_plan_other_formats(fmt, tmp_path, capsys):
    path = tmp_path / "loads"
    if fmt == "csv":
        np.savetxt(path, LOADS, fmt="%d", delimiter=",")
        want, weight = "text", LOADS
    elif fmt == "text":
        path.write_text("# loads\n\n" + "\n".join(" \t".join(map(str, r)) for r in LOADS) + "\n")
        want, weight = "text", LOADS
    elif fmt == "json-array":
        path.write_text(json.dumps(LOADS.tolist()))
        want, weight = "json-array", LOADS
    else:
        window = np.stack([LOADS, 2 * LOADS, LOADS % 7])
        path.write_text(json.dumps({"logical_count": window.tolist(), "rank": 0}))
        want, weight = "sglang-json", window.sum(axis=0)
    out_path = str(tmp_path / "plan.json")
    code, _, err = run(["plan", "-q", "-i", str(path)] + SHAPE + ["-o", out_path], capsys)
    assert code == 0, err
    plan = plan_file(out_path)
    assert plan["input_format"] == want
    assert_plan_matches_library(plan, weight)


def test_plan_options_reach_the_planner(npy, tmp_path, capsys):
    out_path = str(tmp_path / "plan.json")
    argv = ["plan", "-q", "-i", npy, "-r", "24", "-g", "4", "-n", "3", "-p", "8", "-c", "3",
            "-I", "5", "-s", "0x2a", "--noise", "0.5", "--tol", "0", "-b", "cpu", "-o", out_path]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    plan = plan_file(out_path)
    assert plan["policy"] == "global"  # 4 groups on 3 nodes
    assert plan["options"] == dict(candidates=3, iterations=5, noise=0.5, tolerance=0.0, seed=42,
                                   policy="auto")
    phy2log = eplb.rebalance_experts(LOADS, 24, 4, 3, 8, candidates=3, iterations=5, seed=42,
                                     noise=0.5, tolerance=0.0)[0]
    np.testing.assert_array_equal(plan["phy2log"], phy2log)


def test_format_sglang(npy, tmp_path, capsys):
    out_path = str(tmp_path / "init.json")
    code, out, err = run(["plan", "-i", npy] + SHAPE + ["-o", out_path, "--format", "sglang"],
                         capsys)
    assert code == 0, err
    assert "(SGLang: physical_to_logical_map)" in out and err == ""
    plan = plan_file(out_path)
    assert list(plan) == ["physical_to_logical_map"]
    np.testing.assert_array_equal(plan["physical_to_logical_map"],
                                  eplb.rebalance_experts(LOADS, 24, 4, 2, 8)[0])


def test_deepseek_is_one_candidate_and_no_swaps_at_its_place(npy, tmp_path, capsys):
    out_path = str(tmp_path / "plan.json")
    code, _, err = run(["plan", "-q", "-i", npy] + SHAPE + ["--deepseek", "-o", out_path], capsys)
    assert code == 0, err
    plan = plan_file(out_path)
    assert (plan["options"]["candidates"], plan["options"]["iterations"]) == (1, 0)
    np.testing.assert_array_equal(plan["phy2log"], eplb.rebalance_experts(
        LOADS, 24, 4, 2, 8, mode="deepseek")[0])
    # A later --candidates still changes it, as in the C tool.
    code, _, err = run(["plan", "-q", "-i", npy] + SHAPE + ["--deepseek", "-c", "3", "-o",
                                                             out_path], capsys)
    assert code == 0, err
    assert (plan_file(out_path)["options"]["candidates"], plan_file(out_path)["options"]
            ["iterations"]) == (3, 0)


def test_format_sglang_notes_a_name_sglang_would_not_read(npy, tmp_path, capsys):
    code, _, err = run(["plan", "-q", "-i", npy] + SHAPE +
                       ["-o", str(tmp_path / "init.txt"), "--format", "sglang"], capsys)
    assert code == 0 and "ends in .json" in err


def test_output_to_standard_output(npy, capsys):
    code, out, err = run(["plan", "-i", npy] + SHAPE + ["-o", "-"], capsys)
    assert code == 0
    assert json.loads(out)["format"] == "eplb-plan v2"
    assert err.startswith("eplb plan: ")  # the summary moved to standard error


def test_replacing_a_plan_keeps_its_mode(npy, tmp_path, capsys):
    out_path = tmp_path / "plan.json"
    out_path.write_text("old")
    os.chmod(out_path, 0o600)
    assert run(["plan", "-q", "-i", npy] + SHAPE + ["-o", str(out_path)], capsys)[0] == 0
    assert stat.S_IMODE(os.stat(out_path).st_mode) == 0o600
    assert plan_file(out_path)["format"] == "eplb-plan v2"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".eplb-")] == []


def test_failed_run_leaves_the_plan_file_alone(npy, tmp_path, capsys):
    out_path = tmp_path / "plan.json"
    out_path.write_text("old")
    code, _, err = run(["plan", "-q", "-i", npy, "-r", "20", "-p", "8", "-o", str(out_path)],
                       capsys)
    assert code == 2 and "replicas must be divisible by gpus" in err
    assert out_path.read_text() == "old"


@pytest.mark.parametrize("argv,message", [
    (["-r", "24", "-p", "8"], "--input is required"),
    (["-i", "X", "-p", "8"], "--replicas is required"),
    (["-i", "X", "-r", "24", "--gpu", "8"],
     "unknown option '--gpu': long options are spelled out in full: --gpus"),
    (["-i", "X", "-r", "24", "-p", "8", "--bogus"], "unknown option '--bogus'"),
    (["-i", "X", "-r", "24", "-p", "8", "extra"], "unexpected argument 'extra'"),
    (["-i", "X", "-r", "24", "-p", "8", "--format", "sglang"], "it needs --output"),
    (["-i", "X", "-r", "24", "-p", "8", "-o", "Y", "--format", "yaml"],
     "bad value 'yaml' for --format"),
    (["-i", "X", "-r", "0", "-p", "8"], "bad value '0' for --replicas: must be in"),
    (["-i", "X", "-r", "24", "-p", "8", "-c", "1025"], "bad value '1025' for --candidates"),
    (["-i", "X", "-r", "24", "-p", "8", "-s", "-1"], "not an unsigned 64-bit integer"),
    (["-i", "X", "-r", "24", "-p", "8", "--noise", "nan"], "must be a finite number >= 0"),
    (["-i", "X", "-r", "24", "-p", "8", "--policy", "best"], "bad value 'best' for --policy"),
    (["-i", "X", "-r", "24", "-p", "8", "-b", "tpu"], "unknown backend 'tpu' (from --backend)"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    code, out, err = run(["plan"] + argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("eplb plan: ") and message in err, err


def test_bad_environment_backend_exits_2(npy, monkeypatch, capsys):
    monkeypatch.setenv("EPLB_BACKEND", "tpu")
    code, _, err = run(["plan", "-i", npy] + SHAPE, capsys)
    assert code == 2 and "(from EPLB_BACKEND)" in err


@pytest.mark.parametrize("content,message", [
    (b"1,2\n3\n", "ragged rows: line 2 has 1 values but line 1 (the first layer) has 2"),
    (b"1,-2\n", "line 1, field 2 is negative (-2); loads must be >= 0"),
    (b"1,nan\n", "line 1, field 2 is NaN"),
    (b"1,,2\n", "line 1, field 2 is empty"),
    (b"1,x\n", "non-numeric token 'x'"),
    (b"1,1e39\n", "beyond the float32 range"),
    (b"", "the file is empty"),
    (b'{"other": 1}', "without 'logical_count'"),
    (b'[[1, true]]', "is true, not a number"),
    (b'[[1, NaN]]', "JSON value NaN"),
    (b'{"logical_count": [1, 2]}', "2-D [layers][experts] or 3-D"),
])
def test_input_errors_exit_2(content, message, tmp_path, capsys):
    path = tmp_path / "loads"
    path.write_bytes(content)
    code, _, err = run(["plan", "-i", str(path), "-r", "4", "-p", "2"], capsys)
    assert code == 2
    assert err.startswith("eplb plan: %s: " % path) and message in err, err


def test_missing_input_exits_2(tmp_path, capsys):
    code, _, err = run(["plan", "-i", str(tmp_path / "none"), "-r", "4", "-p", "2"], capsys)
    assert code == 2 and "cannot open" in err


def test_name_with_control_bytes_is_escaped(tmp_path, capsys):
    path = tmp_path / "a\x1bb.csv"
    path.write_text("1,2\n")
    code, out, _ = run(["plan", "-i", str(path), "-r", "2", "-p", "2"], capsys)
    assert code == 0 and "a\\x1bb.csv" in out and "\x1b" not in out


def test_help(capsys):
    code, out, _ = run(["plan", "--help"], capsys)
    assert code == 0 and out.startswith("usage: python -m eplb plan")
    for option in ("--input", "--replicas", "--groups", "--nodes", "--gpus", "--candidates",
                   "--iters", "--seed", "--noise", "--tol", "--policy", "--backend", "--output",
                   "--format", "--quiet", "--help"):
        assert option in out


def test_python_dash_m(npy):
    result = subprocess.run([sys.executable, "-m", "eplb", "plan", "-q", "-i", npy] + SHAPE +
                            ["-o", "-", "--format", "sglang"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)) == ["physical_to_logical_map"]


# ---- SGLang's .pt dumps ------------------------------------------------------

def test_pt_without_torch_says_how(tmp_path, monkeypatch, capsys):
    path = tmp_path / "dump.pt"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 60)  # torch.save writes a zip
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _, err = run(["plan", "-i", str(path), "-r", "24", "-p", "8"], capsys)
    assert code == 2
    assert "a PyTorch file (torch.save)" in err and "needs torch" in err


def test_pt_dump_of_sglang(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    window = torch.from_numpy(np.stack([LOADS, LOADS // 3, LOADS % 5]))
    path = tmp_path / "expert_distribution_recorder_1_0.pt"
    torch.save({"rank": 0, "logical_count": window}, path)
    out_path = str(tmp_path / "plan.json")
    code, out, err = run(["plan", "-i", str(path)] + SHAPE + ["-o", out_path], capsys)
    assert code == 0, err
    assert "(sglang-pt), 4 layers x 16 experts" in out
    plan = plan_file(out_path)
    assert plan["input_format"] == "sglang-pt"
    assert_plan_matches_library(plan, window.sum(dim=0).numpy())


def test_pt_without_logical_count(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    path = tmp_path / "dump.pt"
    torch.save({"rank": 0}, path)
    code, _, err = run(["plan", "-i", str(path), "-r", "24", "-p", "8"], capsys)
    assert code == 2 and "no 'logical_count'" in err


# ---- the same files as the C tool --------------------------------------------

C_TOOL = os.environ.get("EPLB_CLI")


@pytest.mark.skipif(not C_TOOL, reason="EPLB_CLI does not name the C eplb tool")
@pytest.mark.parametrize("extra", [[], ["-c", "1", "-I", "0"], ["--policy", "global", "-s", "7"],
                                   ["-n", "4", "--noise", "0.35", "--tol", "0.001"],
                                   ["--format", "sglang"], ["--refine"],
                                   ["--refine=3", "--policy", "global"]])
def test_same_plan_file_as_the_c_tool(extra, tmp_path):
    if extra[:1] == ["--format"]:
        usage = subprocess.run([C_TOOL, "plan", "--help"], capture_output=True, text=True).stdout
        if "--format" not in usage:
            pytest.skip("this C tool has no --format yet")
    rng = np.random.default_rng(len(extra))
    weight = (rng.pareto(1.2, size=(9, 48)) * 1000).astype(np.float32)
    weight[3] = 0
    loads = tmp_path / "loads.npy"
    np.save(loads, weight)
    files = plan_files_of_both_tools(C_TOOL, ["-q", "-i", str(loads), "-r", "64", "-g", "6", "-n",
                                              "2", "-p", "16", "-b", "cpu"] + extra, tmp_path)
    assert files[0] == files[1]


def test_consistent_log2phy_in_plan_file(npy, tmp_path, capsys):
    out_path = str(tmp_path / "plan.json")
    assert run(["plan", "-q", "-i", npy] + SHAPE + ["-o", out_path], capsys)[0] == 0
    plan = plan_file(out_path)
    logcnt = np.array(plan["logcnt"])
    width = logcnt.max()
    log2phy = np.array([[slots + [-1] * (width - len(slots)) for slots in layer]
                        for layer in plan["log2phy"]])
    # Ascending slots, as SGLang builds them from physical_to_logical_map.
    check_plan_consistent(np.array(plan["phy2log"]), log2phy, logcnt, 16)
