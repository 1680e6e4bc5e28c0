"""Planning from the running plan (docs/spec.md section 13) and distinct GPUs
(section 11) in Python: rebalance_experts(previous=, slack=, distinct=),
eplb.count_moves, and python -m eplb plan --previous/--slack/--distinct, whose
plan files equal the C tool's where $EPLB_CLI names it."""
import json
import os

import numpy as np
import pytest

import eplb
import eplb.cli
from cli_helpers import plan_files_of_both_tools, run

SHAPE = (24, 4, 2, 8)  # replicas, groups, nodes, GPUs
OLD = np.random.default_rng(3).integers(0, 1000, size=(5, 16))
NEW = np.random.default_rng(4).integers(0, 1000, size=(5, 16))


def moved_slots(before, after, gpus):
    """docs/spec.md 13.3's moved_slots, counted here with numpy."""
    layers, replicas = before.shape
    per_gpu = replicas // gpus
    moved = 0
    for l in range(layers):
        for g in range(gpus):
            had = before[l, g * per_gpu:(g + 1) * per_gpu].tolist()
            for e in after[l, g * per_gpu:(g + 1) * per_gpu].tolist():
                if e in had:
                    had.remove(e)
                else:
                    moved += 1
    return moved


def max_load(weight, phy2log, groups=4, nodes=2, gpus=8):
    return eplb.evaluate(weight, phy2log, groups, nodes, gpus).max_load


# ---- rebalance_experts(previous=...) ------------------------------------------

def test_the_fresh_plan_of_the_same_loads_stays():
    phy2log, log2phy, logcnt = eplb.rebalance_experts(OLD, *SHAPE)
    again = eplb.rebalance_experts(OLD, *SHAPE, previous=phy2log)
    np.testing.assert_array_equal(again[0], phy2log)
    np.testing.assert_array_equal(again[2], logcnt)
    # The same slots per expert; ranked in slot order (docs/spec.md 13.6).
    padding = np.iinfo(np.int64).max  # sorts after every slot
    by_slot = np.sort(np.where(log2phy < 0, padding, log2phy), axis=2)
    np.testing.assert_array_equal(again[1], np.where(by_slot == padding, -1, by_slot))
    assert eplb.count_moves(phy2log, again[0], 8, 2) == eplb.Moves(0, 0, 0)


def test_new_loads_move_fewer_slots_within_the_fresh_plans_max():
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    fresh = eplb.rebalance_experts(NEW, *SHAPE)[0]
    phy2log, log2phy, logcnt = eplb.rebalance_experts(NEW, *SHAPE, previous=running)
    moves = eplb.count_moves(running, phy2log, 8, 2)
    assert moves.moved_slots == moved_slots(running, phy2log, 8)
    assert moves.moved_slots < eplb.count_moves(running, fresh, 8, 2).moved_slots
    assert np.all(max_load(NEW, phy2log) <= max_load(NEW, fresh) * (1 + 1e-6))
    # The outputs hold together as a fresh plan's do.
    for l in range(5):
        np.testing.assert_array_equal(np.bincount(phy2log[l], minlength=16), logcnt[l])
        for e in range(16):
            slots = log2phy[l, e][log2phy[l, e] >= 0]
            assert sorted(slots.tolist()) == np.flatnonzero(phy2log[l] == e).tolist()


def test_slack_bounds_the_max_load():
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    fresh = eplb.rebalance_experts(NEW, *SHAPE)[0]
    strict = eplb.rebalance_experts(NEW, *SHAPE, previous=running)[0]
    loose = eplb.rebalance_experts(NEW, *SHAPE, previous=running, slack=0.25)[0]
    assert np.all(max_load(NEW, loose) <= max_load(NEW, fresh) * 1.25 * (1 + 1e-6))
    assert (eplb.count_moves(running, loose, 8).moved_slots
            <= eplb.count_moves(running, strict, 8).moved_slots)


def test_another_planners_placement_is_a_previous_plan():
    """Any placement with every expert on a slot, e.g. experts in slot order."""
    running = np.tile(np.arange(24) % 16, (5, 1))
    phy2log = eplb.rebalance_experts(NEW, 24, 1, 1, 8, previous=running)[0]
    fresh = eplb.rebalance_experts(NEW, 24, 1, 1, 8)[0]
    assert (eplb.count_moves(running, phy2log, 8).moved_slots
            <= eplb.count_moves(running, fresh, 8).moved_slots)


def test_previous_as_a_torch_tensor():
    torch = pytest.importorskip("torch")
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    want = eplb.rebalance_experts(NEW, *SHAPE, previous=running)
    got = eplb.rebalance_experts(torch.from_numpy(NEW), *SHAPE,
                                 previous=torch.from_numpy(running).to(torch.int32))
    for g, w in zip(got, want):
        assert isinstance(g, torch.Tensor) and g.dtype == torch.int64
        np.testing.assert_array_equal(g.numpy(), w)


def test_bad_previous_plans_are_refused():
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    with pytest.raises(ValueError, match=r"previous must be \[layers, num_replicas\] = \[5, 24\]"):
        eplb.rebalance_experts(NEW, *SHAPE, previous=running[:4])
    with pytest.raises(TypeError, match="previous must hold integers"):
        eplb.rebalance_experts(NEW, *SHAPE, previous=running.astype(np.float64))
    broken = running.copy()
    broken[2, 7] = 16
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(NEW, *SHAPE, previous=broken)
    assert info.value.status == eplb.Status.INVALID_ARGUMENT
    missing = running.copy()
    missing[1] = 0
    with pytest.raises(eplb.EplbError, match="no slot for expert"):
        eplb.rebalance_experts(NEW, *SHAPE, previous=missing)


def test_slack_needs_previous_and_a_sane_value():
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    with pytest.raises(ValueError, match="slack needs previous"):
        eplb.rebalance_experts(NEW, *SHAPE, slack=0.1)
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(eplb.EplbError, match="slack must be finite and >= 0"):
            eplb.rebalance_experts(NEW, *SHAPE, previous=running, slack=bad)
    with pytest.raises(TypeError, match="slack must be a real number"):
        eplb.rebalance_experts(NEW, *SHAPE, previous=running, slack=None)


# ---- distinct ---------------------------------------------------------------

def test_distinct_leaves_no_duplicates(backend):
    skewed = NEW.copy()
    skewed[:, 0] *= 50  # expert 0 wants more replicas than a node has GPUs
    plain = eplb.rebalance_experts(skewed, *SHAPE, backend="cpu")[0]
    assert eplb.evaluate(skewed, plain, 4, 2, 8).duplicates > 0
    phy2log = eplb.rebalance_experts(skewed, *SHAPE, backend=backend, distinct=True)[0]
    assert eplb.evaluate(skewed, phy2log, 4, 2, 8).duplicates == 0
    np.testing.assert_array_equal(
        phy2log, eplb.rebalance_experts(skewed, *SHAPE, backend="cpu", distinct=True)[0])
    # Off is the plan of before the option.
    np.testing.assert_array_equal(
        eplb.rebalance_experts(skewed, *SHAPE, backend=backend, distinct=False)[0], plain)


def test_distinct_refuses_rows_too_small_for_it():
    # 2 experts per node, 3 slots per GPU: some GPU would hold an expert twice.
    with pytest.raises(eplb.EplbError) as info:
        eplb.rebalance_experts(np.ones((1, 4)), 12, 2, 2, 4, distinct=True, backend="cpu")
    assert info.value.status == eplb.Status.INVALID_SHAPE


def test_distinct_takes_booleans():
    with pytest.raises(TypeError, match="distinct must be True or False"):
        eplb.rebalance_experts(NEW, *SHAPE, distinct="yes")
    with pytest.raises(eplb.EplbError, match="distinct must be 0 or 1"):
        eplb.rebalance_experts(NEW, *SHAPE, distinct=2)


# ---- count_moves ------------------------------------------------------------

def test_count_moves_counts_as_the_spec_says():
    rng = np.random.default_rng(9)
    before = np.array([rng.permutation(24) % 16 for _ in range(5)])
    after = np.array([rng.permutation(24) % 16 for _ in range(5)])
    moves = eplb.count_moves(before, after, 8, 2)
    assert moves.moved_slots == moved_slots(before, after, 8)
    per_gpu = [moved_slots(before[:, g * 3:g * 3 + 3], after[:, g * 3:g * 3 + 3], 1)
               for g in range(8)]
    assert moves.max_moved_per_gpu == max(per_gpu)
    cross = sum(len(set(after[l, n * 12:n * 12 + 12]) - set(before[l, n * 12:n * 12 + 12]))
                for l in range(5) for n in range(2))
    assert moves.cross_node_moves == cross
    assert eplb.count_moves(before.tolist(), before, 8).moved_slots == 0


def test_count_moves_without_a_node_structure():
    placement = np.tile(np.arange(24) % 16, (2, 1))
    assert eplb.count_moves(placement, placement, 8, 3).cross_node_moves is None


def test_count_moves_refuses_what_is_no_pair_of_placements():
    placement = np.tile(np.arange(24) % 16, (2, 1))
    with pytest.raises(ValueError, match="same shape"):
        eplb.count_moves(placement, placement[:1], 8)
    with pytest.raises(TypeError, match="must hold integers"):
        eplb.count_moves(placement * 1.0, placement, 8)
    negative = placement.copy()
    negative[1, 3] = -1
    with pytest.raises(eplb.EplbError):
        eplb.count_moves(placement, negative, 8)
    with pytest.raises(eplb.EplbError):
        eplb.count_moves(placement, placement, 5)  # 24 slots on 5 GPUs


# ---- python -m eplb plan --previous -------------------------------------------

@pytest.fixture
def loads(tmp_path):
    path = tmp_path / "loads.npy"
    np.save(path, NEW.astype(np.float32))
    return str(path)


def plan_args(loads, *more):
    return ["plan", "-i", loads, "-r", "24", "-g", "4", "-n", "2", "-p", "8"] + list(more)


def running_files(tmp_path):
    """The plan of OLD as an eplb plan file and as SGLang's JSON."""
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    sglang = tmp_path / "running-sglang.json"
    sglang.write_text(json.dumps({"physical_to_logical_map": running.tolist()}))
    old = tmp_path / "old.npy"
    np.save(old, OLD.astype(np.float32))
    eplb_file = tmp_path / "running.json"
    assert eplb.cli.main(plan_args(str(old), "-q", "-o", str(eplb_file))) == 0
    return running, str(eplb_file), str(sglang)


def test_cli_previous_from_eplb_and_sglang_files(loads, tmp_path, capsys):
    running, eplb_file, sglang = running_files(tmp_path)
    capsys.readouterr()
    want = eplb.rebalance_experts(NEW, *SHAPE, previous=running)[0]
    moves = eplb.count_moves(running, want, 8, 2)
    for previous, kind in ((eplb_file, "eplb-plan"), (sglang, "sglang")):
        out_path = tmp_path / "plan.json"
        code, out, err = run(plan_args(loads, "--previous", previous, "-o", str(out_path)), capsys)
        assert code == 0, err
        assert "  previous      %s (%s), slack 0\n" % (previous, kind) in out
        assert ("  moved         %d of 120 slots (%.1f%%), at most %d to one GPU, %d across "
                "nodes\n" % (moves.moved_slots, 100.0 * moves.moved_slots / 120,
                             moves.max_moved_per_gpu, moves.cross_node_moves)) in out
        assert "(eplb_rebalance_incremental, first call" in out
        plan = json.loads(out_path.read_text())
        np.testing.assert_array_equal(plan["phy2log"], want)
        assert plan["previous"] == previous
        assert list(plan).index("previous") == list(plan).index("policy") + 1
        stats = plan["stats"]
        assert (stats["moved_slots"], stats["max_moved_per_gpu"], stats["cross_node_moves"]) == (
            moves.moved_slots, moves.max_moved_per_gpu, moves.cross_node_moves)
        assert "slack" not in plan["options"]


def test_cli_previous_from_an_sglang_pt_file(loads, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    running = eplb.rebalance_experts(OLD, *SHAPE)[0]
    path = tmp_path / "placement.pt"
    torch.save({"physical_to_logical_map": torch.from_numpy(running)}, path)
    out_path = tmp_path / "plan.json"
    code, out, err = run(plan_args(loads, "--previous", str(path), "--slack", "0.05", "-o",
                                   str(out_path)), capsys)
    assert code == 0, err
    assert "  previous      %s (sglang-pt), slack 0.05\n" % path in out
    plan = json.loads(out_path.read_text())
    assert plan["options"]["slack"] == 0.05
    want = eplb.rebalance_experts(NEW, *SHAPE, previous=running, slack=0.05)[0]
    np.testing.assert_array_equal(plan["phy2log"], want)


def test_cli_previous_refusals(loads, tmp_path, capsys):
    running, _, _ = running_files(tmp_path)
    capsys.readouterr()
    bad = running.copy()
    bad[0, 0] = 16

    def sglang(matrix):
        return json.dumps({"physical_to_logical_map": matrix.tolist()})

    cases = [  # file name, its text (None: no such file), what the message says
        ("short.json", sglang(running[:3]), "has 3 layers, the loads of %s 5" % loads),
        ("wide.json", sglang(np.hstack([running, running])),
         "has 48 slots per layer, --replicas is 24"),
        ("broken.json", '{"physical_to_logical_map": [[0, 1,', "invalid JSON"),
        ("loads.json", '{"logical_count": [[1, 2]]}', "not a plan"),
        ("ragged.json", '{"phy2log": [[0, 1], [0]]}',
         '"phy2log"[1] is not an array of 2 entries like row 0'),
        ("reals.json", '{"physical_to_logical_map": [[0.5]]}', "is not an integer"),
        ("absent.json", None, "cannot read the plan"),
        ("no-expert.json", sglang(bad), "planning"),
    ]
    for name, text, wanted in cases:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        out_path = tmp_path / "refused.json"
        code, _, err = run(plan_args(loads, "--previous", str(path), "-o", str(out_path)), capsys)
        assert code == 2, (name, err)
        assert err.startswith("eplb plan: ") and wanted in err, (name, err)
        assert not out_path.exists()


def test_cli_slack_needs_previous(loads, capsys):
    code, _, err = run(plan_args(loads, "--slack", "0.1"), capsys)
    assert code == 2 and "--slack needs --previous" in err
    code, _, err = run(plan_args(loads, "--previous", loads, "--slack", "-1"), capsys)
    assert code == 2 and "bad value '-1' for --slack" in err


def test_cli_distinct(loads, tmp_path, capsys):
    out_path = tmp_path / "plan.json"
    code, out, err = run(plan_args(loads, "--distinct", "-b", "cpu", "-o", str(out_path)), capsys)
    assert code == 0, err
    assert ", distinct\n" in out
    plan = json.loads(out_path.read_text())
    assert plan["options"]["distinct"] is True and plan["stats"]["duplicates"] == 0


C_TOOL = os.environ.get("EPLB_CLI")


@pytest.mark.skipif(not C_TOOL, reason="EPLB_CLI does not name the C eplb tool")
@pytest.mark.parametrize("extra", [["--distinct"], ["--previous", "RUNNING"],
                                   ["--previous", "RUNNING", "--slack", "0.1", "--policy",
                                    "global"],
                                   ["--previous", "RUNNING", "-n", "5"]])
def test_same_plan_file_as_the_c_tool(extra, tmp_path):
    """With 5 nodes the GPUs do not divide among them: cross_node_moves is null."""
    weight = (np.random.default_rng(len(extra)).pareto(1.2, size=(6, 48)) * 1000)
    loads = tmp_path / "loads.npy"
    np.save(loads, weight.astype(np.float32))
    running = tmp_path / "running.json"
    placement = np.tile(np.arange(96) % 48, (6, 1))
    running.write_text(json.dumps({"physical_to_logical_map": placement.tolist()}))
    extra = [str(running) if a == "RUNNING" else a for a in extra]
    files = plan_files_of_both_tools(C_TOOL, ["-q", "-i", str(loads), "-r", "96", "-g", "6", "-n",
                                              "2", "-p", "24", "-b", "cpu"] + extra, tmp_path)
    assert files[0] == files[1]
