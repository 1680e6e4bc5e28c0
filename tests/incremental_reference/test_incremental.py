"""Tests of the incremental rebalance reference (docs/spec.md section 13).

The hand-made cases and the stored fixtures need only numpy. The random cases
plan with the eplb tool and run where $EPLB_CLI names it (scripts/test.sh sets
it); elsewhere they skip.
"""
import json
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import incremental as inc  # noqa: E402
import incremental_inputs as inputs  # noqa: E402

F32 = np.float32


def layer_max(w_layer, phy2log_layer, gpus):
    return np.max(inc.gpu_loads(np.asarray(w_layer, dtype=F32), np.asarray(phy2log_layer), gpus))


def load_fixtures():
    with open(os.path.join(HERE, "data", "fixtures.json")) as f:
        return json.load(f)["cases"]


# Moves, counted by hand (section 13.3).

def test_moved_slots_ignore_the_slot_an_expert_takes_on_its_gpu():
    prev = np.array([0, 1, 2, 3])
    new = np.array([1, 0, 3, 2])
    assert inc.moved_per_gpu(prev, new, 2).tolist() == [0, 0]


def test_moved_slots_count_each_expert_new_to_a_gpu():
    prev = np.array([0, 0, 1, 2])
    new = np.array([0, 1, 0, 2])
    assert inc.moved_per_gpu(prev, new, 2).tolist() == [1, 1]


def test_moved_slots_are_a_multiset_difference():
    # A second replica of an expert the GPU already holds is a received slot.
    assert inc.moved_per_gpu(np.array([0, 1]), np.array([0, 0]), 1).tolist() == [1]
    # Two replicas become one: nothing to receive.
    assert inc.moved_per_gpu(np.array([0, 0, 1]), np.array([0, 1, 2]), 1).tolist() == [1]


def test_cross_node_moves_count_experts_new_to_a_node():
    # Two nodes of one GPU each: node 0 receives expert 2, node 1 expert 1.
    prev = np.array([0, 1, 2, 3])
    new = np.array([0, 2, 1, 3])
    assert inc.cross_node_moves(prev, new, 2) == 2
    # Node 0's second replica of expert 0 comes from inside the node.
    assert inc.cross_node_moves(np.array([0, 1, 2, 3]), np.array([0, 0, 2, 3]), 2) == 0


def test_max_moved_per_gpu_sums_over_layers():
    w = np.ones((2, 4), dtype=F32)
    prev = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    new = np.array([[0, 2, 1, 3], [0, 3, 2, 1]])
    stats = inc.plan_stats(w, prev, new, 2, 1)
    assert stats["moved_slots"] == 4
    # GPU 0 receives expert 2 in layer 0 and expert 3 in layer 1.
    assert stats["max_moved_per_gpu"] == 2


# Loads (section 13.2).

def test_gpu_load_does_not_depend_on_slot_order():
    values = [F32(16777216.0), F32(1.0), F32(1.0)]
    # Left to right in slot order the two ones are lost; ascending order keeps them.
    left_to_right = F32(F32(values[0] + values[1]) + values[2])
    assert left_to_right == F32(16777216.0)
    assert inc.gpu_load(values) == F32(16777218.0)
    assert inc.gpu_load(values[::-1]) == inc.gpu_load(values)


# The relabelled fresh plan (section 13.4).

def test_relabel_undoes_a_gpu_permutation_and_slot_shuffle():
    prev = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    fresh = np.array([5, 4, 0, 1, 7, 6, 3, 2])   # GPUs 2, 0, 3, 1, each shuffled
    assert inc.relabel(prev, fresh, 4, 1).tolist() == prev.tolist()


def test_relabel_keeps_nodes_whole():
    prev = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    fresh = np.array([4, 5, 7, 6, 1, 0, 2, 3])   # nodes swapped, GPUs inside shuffled
    out = inc.relabel(prev, fresh, 4, 2)
    assert out.tolist() == prev.tolist()
    # Each node of the result holds one fresh node's experts.
    assert sorted(out[:4].tolist()) in (sorted(fresh[:4].tolist()), sorted(fresh[4:].tolist()))


def test_relabel_ties_go_to_the_lowest_gpus():
    prev = np.array([0, 1, 2, 3])
    fresh = np.array([0, 2, 1, 3])                # every overlap is 1
    assert inc.relabel(prev, fresh, 2, 1).tolist() == [0, 2, 1, 3]


# The search and the choice (sections 13.5, 13.6).

def test_one_swap_meets_the_fresh_plans_max():
    w = np.array([[10, 10, 1, 1]], dtype=F32)
    prev = np.array([[0, 1, 2, 3]])               # GPU loads 20 and 2
    fresh = np.array([[0, 2, 1, 3]])              # 11 and 11
    out, logcnt, stats = inc.rebalance(w, prev, fresh, 2, 1, 1)
    # Slot 0 (load 10) trades with slot 2 (load 1): the first pair of class 0.
    assert out.tolist() == [[2, 1, 0, 3]]
    assert logcnt.tolist() == [[1, 1, 1, 1]]
    assert stats["moved_slots"] == 2
    assert stats["domains_by_search"] == 1


def test_relabelled_fresh_plan_when_the_search_cannot_meet_the_target():
    # The previous plan gives expert 0 one slot (load 12): with its replica counts
    # no swap reaches the fresh plan's max of 8, so the result is the fresh plan
    # relabelled.
    w = np.array([[12, 2, 2]], dtype=F32)
    prev = np.array([[0, 1, 2, 1]])               # 13 and 3
    fresh = np.array([[0, 1, 0, 2]])              # 8 and 8
    out, logcnt, stats = inc.rebalance(w, prev, fresh, 2, 1, 1)
    # GPU 0 keeps {0, 1}; GPU 1 keeps expert 2 in its slot and receives expert 0.
    assert out.tolist() == [[0, 1, 2, 0]]
    assert logcnt.tolist() == [[2, 1, 1]]
    assert layer_max(w[0], out[0], 2) == F32(8)
    assert stats["moved_slots"] == 1
    # The anchored start (the fresh counts, each slot keeping what it can) is that
    # same placement: it meets the target at once and wins the tie with fresh.
    assert stats["domains_by_search"] == 1
    kept, met = inc.search(w[0], prev[0], 2, (0, 4), F32(8), 4)
    assert not met


def test_anchored_start_keeps_what_it_can_and_places_the_rest_heaviest_first():
    # Node 0 (GPUs 0 and 1, slots 0..3) now holds experts 0, 1, 4 and 5.
    w = np.array([10, 8, 7, 7, 6, 1, 2, 2], dtype=F32)
    prev = np.array([0, 2, 1, 3, 4, 5, 6, 7])
    rel = np.array([4, 1, 5, 0, 2, 3, 6, 7])
    out = inc.anchored_start(w, prev, rel, 4, (0, 4))
    # Slots 0 and 2 keep experts 0 and 1 (GPU loads 10 and 8); expert 4 (6) goes to
    # the lighter GPU 1, then expert 5 (1) to GPU 0, now the lighter one.
    assert out.tolist() == [0, 5, 1, 4, 2, 3, 6, 7]


def test_slack_accepts_fewer_moves():
    w = np.array([[10, 9, 1, 1]], dtype=F32)
    prev = np.array([[0, 1, 2, 3]])               # 19 and 2
    fresh = np.array([[0, 2, 1, 3]])              # 11 and 10
    tight, _, s0 = inc.rebalance(w, prev, fresh, 2, 1, 1)
    assert layer_max(w[0], tight[0], 2) <= F32(11)
    loose, _, s1 = inc.rebalance(w, prev, fresh, 2, 1, 1, slack=1.0)
    assert s1["moved_slots"] == 0 and loose.tolist() == prev.tolist()
    assert s0["moved_slots"] == 2


def test_shape_mismatch_raises():
    w = np.ones((2, 4), dtype=F32)
    good = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    with pytest.raises(inc.ShapeError):
        inc.rebalance(w, good[:1], good, 2, 1, 1)            # one layer short
    with pytest.raises(inc.ShapeError):
        inc.rebalance(w, np.array([[0, 1, 2, 3, 0, 1]] * 2), good, 2, 1, 1)  # slots differ
    with pytest.raises(inc.ShapeError):
        inc.rebalance(w, np.array([[0, 1, 2, 4]] * 2), good, 2, 1, 1)        # expert 4 of 4
    with pytest.raises(inc.ShapeError):
        inc.rebalance(w, np.array([[0, 1, 2, 2]] * 2), good, 2, 1, 1)        # expert 3 lost
    with pytest.raises(inc.ShapeError):
        inc.rebalance(np.ones(4, dtype=F32), good, good, 2, 1, 1)            # loads 1-D
    for slack in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            inc.rebalance(w, good, good, 2, 1, 1, slack=slack)


# Properties every plan must have.

def check_plan(w, prev, fresh, out, gpus, nodes, groups, hierarchical):
    L, E = w.shape
    R = prev.shape[1]
    for l in range(L):
        assert np.bincount(out[l], minlength=E).min() >= 1
        # Every layer's max at most the fresh plan's, in section 13.2's float32 ...
        assert layer_max(w[l], out[l], gpus) <= layer_max(w[l], fresh[l], gpus)
    # ... and in double precision up to float32 rounding.
    assert inc.balancedness(w, out, gpus) >= inc.balancedness(w, fresh, gpus) * (1 - 1e-6)
    relabelled = np.stack([inc.relabel(prev[l], fresh[l], gpus, nodes if hierarchical else 1)
                           for l in range(L)])
    moved = inc.plan_stats(w, prev, out, gpus, nodes)["moved_slots"]
    assert moved <= inc.plan_stats(w, prev, relabelled, gpus, nodes)["moved_slots"]
    if hierarchical:
        rn, size = R // nodes, E // groups
        for l in range(L):
            for n in range(nodes):
                before = set(prev[l, n * rn:(n + 1) * rn].tolist())
                here = out[l, n * rn:(n + 1) * rn].tolist()
                for e in set(here) - before:
                    # An expert new to the node came with its whole group.
                    group = range(e // size * size, e // size * size + size)
                    whole = sum(here.count(x) for x in group)
                    assert whole == sum(int((out[l] == x).sum()) for x in group)


@pytest.mark.parametrize("case", load_fixtures(), ids=lambda c: c["name"])
def test_fixture_reproduces_the_stored_incremental_plan(case):
    w = np.array(case["weight"], dtype=F32)
    prev, fresh = np.array(case["previous"]), np.array(case["fresh"])
    s = case["shape"]
    out, _, stats = inc.rebalance(w, prev, fresh, s["gpus"], s["nodes"], s["groups"],
                                  policy=case["policy"])
    assert out.tolist() == case["incremental"]
    # Balancedness is a double-precision figure whose last bits depend on numpy's
    # summation; the moves are exact.
    expected = dict(case["stats"])
    assert stats.pop("balancedness") == pytest.approx(expected.pop("balancedness"), rel=1e-12)
    assert stats == expected
    hierarchical = s["groups"] % s["nodes"] == 0
    check_plan(w, prev, fresh, out, s["gpus"], s["nodes"], s["groups"], hierarchical)


@pytest.mark.parametrize("case", load_fixtures(), ids=lambda c: c["name"])
def test_previous_equal_to_the_fresh_plan_moves_nothing(case):
    w = np.array(case["weight"], dtype=F32)
    fresh = np.array(case["fresh"])
    s = case["shape"]
    out, _, stats = inc.rebalance(w, fresh, fresh, s["gpus"], s["nodes"], s["groups"],
                                  policy=case["policy"])
    assert stats["moved_slots"] == 0 and stats["cross_node_moves"] in (0, None)
    assert out.tolist() == fresh.tolist()


# With the eplb tool: fixtures still match its plans, and random cases.

cli = inputs.cli_path()
needs_cli = pytest.mark.skipif(cli is None, reason="EPLB_CLI not set")


@needs_cli
def test_fixture_plans_are_the_tools_plans():
    import make_fixtures
    for case in load_fixtures():
        w = make_fixtures.domain_loads(case["new_loads"])
        assert w.astype(float).tolist() == case["weight"]
        s = case["shape"]
        fresh = inputs.cli_plan(cli, w, s["replicas"], s["groups"], s["nodes"], s["gpus"],
                                   case["policy"])
        assert fresh["phy2log"] == case["fresh"]


RANDOM_SHAPES = [
    # layers, experts, replicas, groups, nodes, gpus
    (3, 16, 24, 4, 2, 4),
    (3, 16, 20, 4, 3, 4),      # global: 4 % 3 != 0
    (2, 32, 48, 8, 4, 8),
    (2, 24, 36, 1, 1, 6),
    (2, 12, 12, 4, 2, 4),      # no redundant slots
]


@needs_cli
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", RANDOM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_random_cases_meet_the_fresh_max(shape, seed):
    L, E, R, G, N, P = shape
    rng = np.random.default_rng(1000 * seed + E)
    before = np.floor(rng.lognormal(8.0, 1.0, size=(L, E))).astype(F32)
    sigma = (0.1, 0.3, 1.0, 0.1)[seed]
    after = inputs.drift(before, seed=seed + 2, sigma=sigma)
    extra = ("--candidates", "1", "--iters", "0") if seed == 3 else ()
    prev = np.array(inputs.cli_plan(cli, before, R, G, N, P, extra=extra)["phy2log"])
    fresh_plan = inputs.cli_plan(cli, after, R, G, N, P, extra=extra)
    fresh = np.array(fresh_plan["phy2log"])
    hierarchical = fresh_plan["policy"] == "hierarchical"
    out, _, _ = inc.rebalance(after, prev, fresh, P, N, G)
    check_plan(after, prev, fresh, out, P, N, G, hierarchical)
    # A previous plan from elsewhere: slots shuffled across nodes.
    shuffled = np.stack([rng.permutation(row) for row in prev])
    out, _, _ = inc.rebalance(after, shuffled, fresh, P, N, G)
    check_plan(after, shuffled, fresh, out, P, N, G, hierarchical)
    same, _, stats = inc.rebalance(after, fresh, fresh, P, N, G)
    assert stats["moved_slots"] == 0
