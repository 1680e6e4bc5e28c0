"""Checks of the issue 17 reference (spec17.py) against docs/spec.md sections 10 to 12:
the worked examples, refine never raising a row's maximum, distinct leaving no
duplicate, and the balancedness bound being a true upper bound that equals an
exhaustive search where the spec says it is exact.

Plain cases are built here; where EPLB_CLI names the eplb tool (scripts/test.sh
sets it), the seed plans of the C planner are used as well."""
import itertools
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec17  # noqa: E402
import workloads  # noqa: E402

F32 = np.float32


def shape_of(L, E, R, G, N, P):
    return dict(layers=L, experts=E, replicas=R, groups=G, nodes=N, gpus=P)


def policy_of(shape):
    return "hierarchical" if shape["groups"] % shape["nodes"] == 0 else "global"


def replicate(w, slots):
    """Section 5 in float32: counts, and the expert of each extra slot in order."""
    cnt = [1] * len(w)
    extra = []
    for _ in range(slots - len(w)):
        keys = [F32(w[i]) / F32(cnt[i]) for i in range(len(w))]
        best = max(range(len(w)), key=lambda i: (keys[i], -i))
        extra.append(best)
        cnt[best] += 1
    return cnt, extra


def made_plan(W, shape, rng):
    """A valid plan of the policy with a shuffled slot placement: a stand-in for a seed
    plan with many duplicates and a poor balance, so every stage has work to do."""
    L, E, R, G, N, P = (shape[x] for x in ("layers", "experts", "replicas", "groups", "nodes", "gpus"))
    policy = policy_of(shape)
    if policy == "global":
        G = N = 1
    S, RN = E // G, R // N
    phy2log = np.zeros((L, R), dtype=np.int64)
    logcnt = np.zeros((L, E), dtype=np.int64)
    for l in range(L):
        order = rng.permutation(G)
        for n in range(N):
            groups = order[n * (G // N):(n + 1) * (G // N)]
            experts = [g * S + j for g in groups for j in range(S)]
            cnt, extra = replicate([W[l, e] for e in experts], RN)
            slots = experts + [experts[i] for i in extra]
            slots = [slots[i] for i in rng.permutation(RN)]
            phy2log[l, n * RN:(n + 1) * RN] = slots
            for i, e in enumerate(experts):
                logcnt[l, e] = cnt[i]
    rank = np.zeros_like(phy2log)
    for l in range(L):
        seen = {}
        for q, e in enumerate(phy2log[l]):
            rank[l, q] = seen.get(e, 0)
            seen[e] = rank[l, q] + 1
    return spec17.Plan(shape, policy, phy2log, logcnt, rank)


def random_weights(rng, L, E, kind):
    if kind == "heavy":
        w = rng.pareto(1.5, size=(L, E)) * 1000 + 10
    elif kind == "ties":
        w = rng.choice([0.0, 1.0, 2.0, 4.0], size=(L, E))
    elif kind == "hot":
        w = rng.integers(100, 200, size=(L, E)).astype(float)
        w[:, rng.integers(0, E, size=2)] *= 40
    else:
        w = rng.random((L, E))
    return w.astype(F32)


def check_valid(plan, seed):
    """A plan: counts agree with phy2log, ranks are 0..cnt-1, each expert stays on
    the node (row) the seed plan put it on."""
    L, E = plan.logcnt.shape
    for l in range(L):
        counts = np.bincount(plan.phy2log[l], minlength=E)
        assert (counts == plan.logcnt[l]).all()
        assert (plan.logcnt[l] >= 1).all()
        for e in range(E):
            assert sorted(plan.rank[l][plan.phy2log[l] == e].tolist()) == list(range(counts[e]))
    for (l, q0, n, m) in spec17.rows_of(seed):
        assert set(plan.phy2log[l, q0:q0 + n].tolist()) == set(seed.phy2log[l, q0:q0 + n].tolist())


def row_maxima(plan, W):
    return [spec17.row_max(plan, W, l, q0, n, m) for (l, q0, n, m) in spec17.rows_of(plan)]


# Small shapes, both policies: (L, E, R, G, N, P).
SHAPES = [
    (2, 8, 12, 1, 1, 4),      # global, 3 slots per GPU
    (2, 12, 16, 4, 2, 8),     # hierarchical, 2 nodes of 4 GPUs, 2 slots per GPU
    (2, 16, 24, 4, 2, 4),     # hierarchical, 6 slots per GPU
    (1, 32, 40, 8, 3, 8),     # global (8 % 3 != 0), 5 slots per GPU
    (1, 16, 32, 4, 4, 8),     # hierarchical, 4 nodes of 2 GPUs, 4 slots per GPU
    (1, 64, 96, 32, 4, 16),   # hierarchical with G > 16: the relaxed bound (section 12.4)
    (1, 64, 128, 32, 32, 64),  # G > 16 with one group per node: the exact bound
]
KINDS = ["heavy", "ties", "hot", "uniform"]


# ---- worked examples (docs/spec.md sections 10.3 and 11.4) -------------------------------------

def test_refine_worked_example():
    shape = shape_of(1, 4, 4, 1, 1, 2)
    plan = spec17.Plan(shape, "global", [[0, 1, 2, 3]], [[1, 1, 1, 1]], [[0, 0, 0, 0]])
    W = np.array([[5, 4, 3, 1]], dtype=F32)
    counters = {}
    out = spec17.apply_stages(plan, W, refine=10, counters=counters)
    # Loads 9 and 4: the trades (1, 0, 0) and (1, 1, 1) both leave a peak of 7; the
    # first in trade order wins. Then no trade goes below 7.
    assert out.phy2log.tolist() == [[2, 1, 0, 3]]
    assert counters["trades"] == 1


def test_distinct_worked_example():
    shape = shape_of(1, 3, 6, 1, 1, 3)
    plan = spec17.Plan(shape, "global", [[0, 0, 0, 1, 2, 0]], [[4, 1, 1]], [[0, 1, 2, 0, 0, 3]])
    W = np.array([[10, 1, 1]], dtype=F32)
    out = spec17.apply_stages(plan, W, distinct=True)
    # Cap: expert 0 keeps 3 replicas, its rank-3 slot 5 goes to expert 1 (a tie with
    # expert 2 at 1/1, lowest expert). Repair: slot 1 repeats expert 0 on GPU 0; GPU 2
    # is the only one without expert 0, and both of its slots leave a peak of
    # 4.333333 in float32: the lower slot, 4, wins. The maximum is then below the
    # seed's 5, so the restore makes no trade.
    assert out.phy2log.tolist() == [[0, 2, 0, 1, 0, 1]]
    assert out.logcnt.tolist() == [[3, 2, 1]]
    assert out.log2phy().tolist() == [[[0, 4, 2], [3, 5, -1], [1, -1, -1]]]


def test_distinct_refuses_a_row_with_fewer_experts_than_slots_per_gpu():
    shape = shape_of(1, 4, 16, 2, 2, 2)  # hierarchical: 2 experts per node, 8 slots per GPU
    plan = made_plan(np.ones((1, 4), dtype=F32), shape, np.random.default_rng(0))
    with pytest.raises(ValueError):
        spec17.apply_stages(plan, np.ones((1, 4), dtype=F32), distinct=True)


# ---- properties over random cases --------------------------------------------------------------

def seed_plans_of_every_kind(rng_seed, shape_args):
    """Yields (weights, seed plan) for each weight kind on one shape, drawn from one generator."""
    rng = np.random.default_rng(rng_seed)
    shape = shape_of(*shape_args)
    for kind in KINDS:
        W = random_weights(rng, shape["layers"], shape["experts"], kind)
        yield W, made_plan(W, shape, rng)


@pytest.mark.parametrize("shape_args", SHAPES)
def test_refine_never_raises_a_row_maximum_and_distinct_leaves_no_duplicate(shape_args):
    for W, seed in seed_plans_of_every_kind(17, shape_args):
        before = row_maxima(seed, W)
        refined = spec17.apply_stages(seed, W, refine=64)
        check_valid(refined, seed)
        assert all(a <= b for a, b in zip(row_maxima(refined, W), before))
        assert (refined.logcnt == seed.logcnt).all()
        for refine in (0, 64):
            distinct = spec17.apply_stages(seed, W, refine=refine, distinct=True)
            check_valid(distinct, seed)
            assert spec17.duplicates(distinct) == 0
        again = spec17.apply_stages(seed, W, refine=64, distinct=True)
        assert (again.phy2log == distinct.phy2log).all() and (again.rank == distinct.rank).all()
        # A balanced plan with duplicates: here the repair raises row maxima and the
        # restore (section 11.5) has work; it never raises them further.
        balanced = refined.copy()
        for (l, q0, n, m) in spec17.rows_of(balanced):
            seed_max = spec17.row_max(balanced, W, l, q0, n, m)
            freed = spec17.cap_row(balanced, W, l, q0, n, m)
            if spec17.repair_row(balanced, W, l, q0, n, m) or freed:
                repaired_max = spec17.row_max(balanced, W, l, q0, n, m)
                spec17.refine_row(balanced, W, l, q0, n, m, spec17.REFINE_DEFAULT, 1e-5, True,
                                  stop_at=seed_max)
                assert spec17.row_max(balanced, W, l, q0, n, m) <= repaired_max
        check_valid(balanced, seed)
        assert spec17.duplicates(balanced) == 0
        whole = spec17.apply_stages(refined, W, distinct=True)
        assert (whole.phy2log == balanced.phy2log).all() and (whole.rank == balanced.rank).all()


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_loads_that_overflow_float32_leave_valid_plans():
    # Finite weights whose GPU sums overflow to +inf, as IEEE float32 does (section 10.3).
    rng = np.random.default_rng(4)
    for shape_args in SHAPES[:3]:
        shape = shape_of(*shape_args)
        W = (random_weights(rng, shape["layers"], shape["experts"], "uniform") * F32(3e38)).astype(F32)
        seed = made_plan(W, shape, rng)
        assert not all(np.isfinite(row_maxima(seed, W)))
        for refine, distinct in ((64, False), (0, True), (64, True)):
            plan = spec17.apply_stages(seed, W, refine=refine, distinct=distinct)
            check_valid(plan, seed)
            if distinct:
                assert spec17.duplicates(plan) == 0
            else:
                assert all(a <= b for a, b in zip(row_maxima(plan, W), row_maxima(seed, W)))


def test_cap_gives_every_expert_at_most_one_replica_per_gpu():
    rng = np.random.default_rng(3)
    shape = shape_of(2, 16, 32, 2, 2, 8)  # 4 GPUs per node; a hot expert would get 9 replicas
    W = random_weights(rng, 2, 16, "hot")
    W[:, 0] = 1e6
    seed = made_plan(W, shape, rng)
    assert seed.logcnt.max() > 4
    out = spec17.apply_stages(seed, W, distinct=True)
    assert out.logcnt.max() <= 4 and spec17.duplicates(out) == 0
    check_valid(out, seed)


@pytest.mark.parametrize("shape_args", SHAPES)
def test_bound_is_at_least_every_plans_balancedness(shape_args):
    shape = shape_of(*shape_args)
    for W, seed in seed_plans_of_every_kind(12, shape_args):
        bound = spec17.balancedness_bound(W, shape, seed.policy)
        for plan in (seed, spec17.apply_stages(seed, W, refine=64),
                     spec17.apply_stages(seed, W, refine=64, distinct=True)):
            assert spec17.balancedness(plan, W)[0] <= bound * (1 + 1e-9)


def test_relaxed_floor_never_exceeds_the_exact_one():
    rng = np.random.default_rng(5)
    for (E, R, G, N, P) in [(16, 24, 8, 2, 4), (32, 40, 8, 4, 8), (24, 48, 12, 3, 6), (16, 32, 16, 4, 8)]:
        for kind in KINDS:
            W = random_weights(rng, 1, E, kind)[0].astype(float)
            S, gpn = E // G, G // N
            groups = [list(W[g * S:(g + 1) * S]) for g in range(G)]
            exact = spec17.partition_floor(groups, gpn, R // N, P // N)
            relaxed = spec17.relaxed_floor(groups, gpn, R // N, P // N, E // N, S, N, P)
            assert relaxed <= exact * (1 + 1e-12)


# ---- the bound against exhaustive search -------------------------------------------------------

def best_node_max(w, slots, gpus):
    """The smallest heaviest-GPU load of one node over every replication and placement."""
    k = slots // gpus
    best = float("inf")
    for cnt in itertools.product(range(1, slots - len(w) + 2), repeat=len(w)):
        if sum(cnt) != slots:
            continue
        loads = sorted((w[i] / cnt[i] for i in range(len(w)) for _ in range(cnt[i])), reverse=True)
        best = min(best, best_packing(loads, gpus, k))
    return best


def best_packing(loads, gpus, k):
    best = [float("inf")]
    bins = [0.0] * gpus
    fill = [0] * gpus

    def place(i, worst):
        if worst >= best[0]:
            return
        if i == len(loads):
            best[0] = worst
            return
        tried = set()
        for b in range(gpus):
            if fill[b] == k or (bins[b], fill[b]) in tried:
                continue
            tried.add((bins[b], fill[b]))
            bins[b] += loads[i]
            fill[b] += 1
            place(i + 1, max(worst, bins[b]))
            bins[b] -= loads[i]
            fill[b] -= 1

    place(0, 0.0)
    return best[0]


def exhaustive_layer_max(w, shape, policy):
    """The best maximum GPU load of the policy: every group partition (ordered nodes),
    every replication inside the nodes, every placement."""
    E, R, P, G, N = (shape[x] for x in ("experts", "replicas", "gpus", "groups", "nodes"))
    if policy == "global":
        G = N = 1
    S, gpn = E // G, G // N
    best = float("inf")
    for assign in itertools.product(range(N), repeat=G):
        if any(assign.count(n) != gpn for n in range(N)):
            continue
        worst = 0.0
        for n in range(N):
            experts = [g * S + j for g in range(G) if assign[g] == n for j in range(S)]
            worst = max(worst, best_node_max([float(w[e]) for e in experts], R // N, P // N))
        best = min(best, worst)
    return best


TINY = [
    (4, 4, 4, 2, 4),   # hierarchical, one slot per GPU: the bound is exact
    (4, 6, 4, 2, 6),
    (6, 8, 6, 3, 8),
    (4, 6, 1, 1, 6),   # global, one slot per GPU
    (4, 8, 4, 2, 4),   # two slots per GPU: the bound is a bound
    (6, 8, 3, 1, 4),
    (4, 8, 2, 1, 2),
]


@pytest.mark.parametrize("tiny", TINY)
def test_bound_against_exhaustive_search(tiny):
    E, R, G, N, P = tiny
    shape = shape_of(1, E, R, G, N, P)
    policy = policy_of(shape)
    rng = np.random.default_rng(E * 100 + R)
    for kind in KINDS:
        w = random_weights(rng, 1, E, kind)[0]
        floor, how = spec17.layer_floor(w, shape, policy)
        best = exhaustive_layer_max([float(x) for x in w], shape, policy)
        assert how == "exhaustive"
        assert floor <= best * (1 + 1e-12)
        if R == P:
            assert floor == pytest.approx(best, rel=1e-12)


def test_partition_floor_equals_brute_force_over_assignments():
    rng = np.random.default_rng(9)
    for (G, N, S) in [(4, 2, 2), (6, 3, 1), (6, 2, 2), (8, 4, 1)]:
        w = random_weights(rng, 1, G * S, "heavy")[0].astype(float)
        groups = [list(w[g * S:(g + 1) * S]) for g in range(G)]
        RN, ppn = G * S // N + 2, 2
        brute = min(
            max(spec17.node_floor([x for g in range(G) if a[g] == n for x in groups[g]], RN, ppn)
                for n in range(N))
            for a in itertools.product(range(N), repeat=G)
            if all(a.count(n) == G // N for n in range(N)))
        assert spec17.partition_floor(groups, G // N, RN, ppn) == pytest.approx(brute, rel=1e-15)


# ---- the C planner's seed plans ----------------------------------------------------------------

needs_cli = pytest.mark.skipif(workloads.cli_path() is None, reason="EPLB_CLI not set")


@needs_cli
@pytest.mark.parametrize("case", [
    ("c4", 80, 8, 1, 1, []), ("github", 72, 8, 4, 2, []), ("arxiv", 96, 16, 4, 4, []),
    ("wikipedia", 128, 32, 1, 1, ["--candidates", "1", "--iters", "0"]),
])
def test_cli_seed_plans_on_olmoe_samples(case):
    domain, R, P, G, N, extra = case
    W = workloads.olmoe(domain)
    seed = spec17.plan_from_json(workloads.seed_plan(W, R, P, G, N, extra))
    bound = spec17.balancedness_bound(W, seed.shape, seed.policy)
    b_seed = spec17.balancedness(seed, W)[0]
    refined = spec17.apply_stages(seed, W, refine=spec17.REFINE_DEFAULT)
    distinct = spec17.apply_stages(seed, W, distinct=True)
    check_valid(refined, seed)
    check_valid(distinct, seed)
    assert all(a <= b for a, b in zip(row_maxima(refined, W), row_maxima(seed, W)))
    assert spec17.duplicates(distinct) == 0
    for plan in (seed, refined, distinct):
        assert spec17.balancedness(plan, W)[0] <= bound * (1 + 1e-9)
    assert spec17.balancedness(refined, W)[0] >= b_seed


@needs_cli
@pytest.mark.parametrize("case", [
    (3, 16, 24, 4, 2, 4, []), (2, 32, 40, 8, 3, 8, ["--candidates", "1", "--iters", "0"]),
    (2, 24, 36, 6, 3, 6, ["--seed", "7"]), (2, 64, 80, 1, 1, 16, []),
    (2, 32, 48, 8, 4, 8, ["--policy", "global"]), (1, 64, 96, 32, 4, 16, []),
])
def test_cli_seed_plans_on_random_loads(case):
    L, E, R, G, N, P, extra = case
    rng = np.random.default_rng(L * 1000 + E)
    for kind in KINDS:
        W = random_weights(rng, L, E, kind)
        seed = spec17.plan_from_json(workloads.seed_plan(W, R, P, G, N, extra))
        bound = spec17.balancedness_bound(W, seed.shape, seed.policy)
        plans = [seed]
        for refine, distinct in ((64, False), (0, True), (64, True)):
            plan = spec17.apply_stages(seed, W, refine=refine, distinct=distinct)
            check_valid(plan, seed)
            if refine and not distinct:
                assert all(a <= b for a, b in zip(row_maxima(plan, W), row_maxima(seed, W)))
            if distinct:
                assert spec17.duplicates(plan) == 0
            plans.append(plan)
        for plan in plans:
            assert spec17.balancedness(plan, W)[0] <= bound * (1 + 1e-9)


# ---- section 10.3 written out literally, one trade at a time -----------------------------------

def literal_refine(experts, t, m, k, iterations, tol, distinct):
    """Section 10.3 as the text reads, scalar float32: returns the final experts per slot."""
    experts, t = list(experts), [F32(x) for x in t]
    tol = F32(tol)

    def loads():
        out = []
        for a in range(m):
            acc = t[a * k]
            for r in range(1, k):
                acc = F32(acc + t[a * k + r])
            out.append(acc)
        return out

    def trades(A):
        for B in range(m):
            if B != A:
                for sa in range(k):
                    for sb in range(k):
                        yield B, (sa,), (sb,)
        pairs = list(itertools.combinations(range(k), 2))
        for B in range(m):
            if B != A:
                for pa in pairs:
                    for pb in pairs:
                        yield B, pa, pb

    def apply(A, B, sa, sb):
        for x, y in zip(sa, sb):
            i, j = A * k + x, B * k + y
            experts[i], experts[j] = experts[j], experts[i]
            t[i], t[j] = t[j], t[i]

    for _ in range(iterations):
        load = loads()
        A = max(range(m), key=lambda a: (load[a], -a))
        if not np.isfinite(load[A]):
            break
        best = None
        for B, sa, sb in trades(A):
            if distinct:
                apply(A, B, sa, sb)
                ok = all(len(set(experts[g * k:(g + 1) * k])) == k for g in (A, B))
                apply(A, B, sa, sb)
                if not ok:
                    continue
            gA = t[A * k + sa[0]] if len(sa) == 1 else F32(t[A * k + sa[0]] + t[A * k + sa[1]])
            gB = t[B * k + sb[0]] if len(sb) == 1 else F32(t[B * k + sb[0]] + t[B * k + sb[1]])
            d = F32(gA - gB)
            peak = max(F32(load[A] - d), F32(load[B] + d))
            if np.isfinite(peak) and (best is None or peak < best[0]):
                best = (peak, B, sa, sb)
        if best is None or not F32(load[A] - best[0]) > tol:
            break
        _, B, sa, sb = best
        apply(A, B, sa, sb)
        after = loads()
        if max(after[A], after[B]) >= load[A]:
            apply(A, B, sa, sb)
            break
    return experts


@pytest.mark.parametrize("mk", [(3, 2), (4, 3), (2, 4), (5, 3)])
def test_refine_matches_a_literal_reading_of_section_10_3(mk):
    m, k = mk
    rng = np.random.default_rng(m * 10 + k)
    for trial in range(12):
        E = m * k - rng.integers(0, 3)
        kind = KINDS[trial % len(KINDS)]
        W = random_weights(rng, 1, E, kind)
        shape = shape_of(1, E, m * k, 1, 1, m)
        seed = made_plan(W, shape, rng)
        distinct = trial % 2 == 1
        if distinct and E < k:
            continue
        base = spec17.apply_stages(seed, W, distinct=True) if distinct else seed
        t = [spec17.slot_load(W[0, e], base.logcnt[0, e]) for e in base.phy2log[0]]
        want = literal_refine(base.phy2log[0].tolist(), t, m, k, 64, 1e-5, distinct)
        got = base.copy()
        spec17.refine_row(got, W, 0, 0, m * k, m, 64, 1e-5, distinct)
        assert got.phy2log[0].tolist() == want
