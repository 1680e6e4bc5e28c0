"""Independent reference for docs/spec.md sections 10 to 12 (issue 17): the
distinct stages (replica cap and duplicate repair), the refine search and the
balancedness bound.

Written from docs/spec.md alone. It takes a finished plan (phy2log, logcnt and
the replica rank of each slot, as the seed stages of sections 4 to 6 leave it,
for instance read from `eplb plan`'s JSON) and the weights, and returns the
plan after the new stages. Float32 arithmetic goes through numpy.float32 one
operation at a time (numpy applies no fused multiply-add), and every sum the
spec orders is an explicit loop in that order.
"""
import itertools
import json

import numpy as np

F32 = np.float32
REFINE_DEFAULT = 256  # section 10: the iteration cap `--refine` uses


# ---- plans -------------------------------------------------------------------------------------

class Plan:
    """One plan: shape, policy, phy2log[L][R], logcnt[L][E] and rank[L][R]
    (the replica rank of each slot; log2phy follows from it)."""

    def __init__(self, shape, policy, phy2log, logcnt, rank):
        self.shape = dict(shape)
        self.policy = policy
        self.phy2log = np.array(phy2log, dtype=np.int64)
        self.logcnt = np.array(logcnt, dtype=np.int64)
        self.rank = np.array(rank, dtype=np.int64)

    def copy(self):
        return Plan(self.shape, self.policy, self.phy2log.copy(), self.logcnt.copy(), self.rank.copy())

    def log2phy(self):
        """log2phy[l][e][r]: the slot of expert e with replica rank r, -1 padded."""
        L, E = self.logcnt.shape
        width = int(self.logcnt.max())
        out = np.full((L, E, width), -1, dtype=np.int64)
        for l in range(L):
            for q, e in enumerate(self.phy2log[l]):
                out[l, e, self.rank[l, q]] = q
        return out


def rank_from_log2phy(phy2log, log2phy):
    rank = np.zeros_like(np.asarray(phy2log, dtype=np.int64))
    for l, row in enumerate(log2phy):
        for slots in row:
            for r, q in enumerate(slots):
                if q >= 0:
                    rank[l, q] = r
    return rank


def plan_from_json(path_or_dict):
    """The plan of an `eplb plan -o FILE` JSON file (format eplb-plan v2)."""
    d = path_or_dict
    if not isinstance(d, dict):
        with open(d) as f:
            d = json.load(f)
    phy2log = np.array(d["phy2log"], dtype=np.int64)
    return Plan(d["shape"], d["policy"], phy2log, d["logcnt"], rank_from_log2phy(phy2log, d["log2phy"]))


def rows_of(plan):
    """Section 10.1: the rows of a plan as (layer, first slot, slots, GPUs).
    Hierarchical: one row per node of each layer; global: one row per layer."""
    s = plan.shape
    L, R, P, N = s["layers"], s["replicas"], s["gpus"], s["nodes"]
    if plan.policy == "hierarchical":
        RN, m = R // N, P // N
        return [(l, n * RN, RN, m) for l in range(L) for n in range(N)]
    return [(l, 0, R, P) for l in range(L)]


def slot_load(w, cnt):
    """A replica's load, float32 division (section 4.3)."""
    return F32(w) / F32(cnt)


def pack_loads(t, m, k):
    """Each pack's load: its k slot loads summed left to right in slot order, float32."""
    t = np.asarray(t, dtype=F32).reshape(m, k)
    acc = t[:, 0].copy()
    for r in range(1, k):
        acc = acc + t[:, r]
    return acc


# ---- section 11: distinct ----------------------------------------------------------------------

def duplicates(plan):
    """Section 11.1, stats.duplicates: slots whose expert already has a replica on the same GPU
    (on each GPU, an expert with c slots there counts c - 1)."""
    s = plan.shape
    spg = s["replicas"] // s["gpus"]
    total = 0
    for l in range(s["layers"]):
        for g in range(s["gpus"]):
            on_gpu = plan.phy2log[l, g * spg:(g + 1) * spg]
            total += len(on_gpu) - len(set(on_gpu.tolist()))
    return total


def check_distinct_shape(plan):
    """Section 11.2: distinct needs at least as many experts per row as slots per GPU."""
    s = plan.shape
    per_row = s["experts"] // s["nodes"] if plan.policy == "hierarchical" else s["experts"]
    if per_row < s["replicas"] // s["gpus"]:
        raise ValueError("distinct: %d experts per row cannot fill %d slots per GPU without a repeat"
                         % (per_row, s["replicas"] // s["gpus"]))


def cap_row(plan, W, l, q0, n, m):
    """Section 11.3: no expert keeps more than m replicas in a row (m = the row's GPUs).
    The replicas of rank >= m are handed, in ascending slot order, to the experts that
    section 5's rule picks among those still below m. Returns the number of slots freed."""
    p2l, rank, cnt = plan.phy2log[l], plan.rank[l], plan.logcnt[l]
    row_experts = sorted(set(p2l[q0:q0 + n].tolist()))
    freed = [q for q in range(q0, q0 + n) if rank[q] >= m]
    if not freed:
        return 0
    c = {e: min(int(cnt[e]), m) for e in row_experts}
    for q in freed:
        best, best_key = -1, None
        for e in row_experts:  # ascending expert: ties go to the lowest
            if c[e] >= m:
                continue
            key = slot_load(W[l, e], c[e])
            if best_key is None or key > best_key:
                best, best_key = e, key
        p2l[q] = best
        rank[q] = c[best]
        c[best] += 1
    for e in row_experts:
        cnt[e] = c[e]
    return len(freed)


def repair_row(plan, W, l, q0, n, m):
    """Section 11.4: while a GPU of the row holds an expert twice, the first such slot
    trades places with the partner slot that keeps the larger of the two GPU loads
    lowest among the trades that lower the row's duplicate count. Returns the trades."""
    k = n // m
    p2l, rank, cnt = plan.phy2log[l], plan.rank[l], plan.logcnt[l]
    trades = 0
    while True:
        s_slot = -1
        for a in range(m):
            seen = set()
            for r in range(k):
                e = int(p2l[q0 + a * k + r])
                if e in seen:
                    s_slot = a * k + r
                    break
                seen.add(e)
            if s_slot >= 0:
                break
        if s_slot < 0:
            return trades
        A = s_slot // k
        t = np.array([slot_load(W[l, p2l[q0 + i]], cnt[p2l[q0 + i]]) for i in range(n)], dtype=F32)
        load = pack_loads(t, m, k)
        e = int(p2l[q0 + s_slot])
        a_others = [int(p2l[q0 + A * k + r]) for r in range(k) if A * k + r != s_slot]
        best, best_peak = -1, None
        for B in range(m):
            if B == A:
                continue
            b_experts = [int(p2l[q0 + B * k + r]) for r in range(k)]
            if e in b_experts:
                continue
            for r in range(k):
                f = b_experts[r]
                if f in a_others and b_experts.count(f) < 2:
                    continue
                d = t[s_slot] - t[B * k + r]
                peak = max(load[A] - d, load[B] + d)
                if best_peak is None or peak < best_peak:
                    best, best_peak = B * k + r, peak
        assert best >= 0, "section 11.4: a partner always exists once section 11.3 has run"
        i, j = q0 + s_slot, q0 + best
        p2l[i], p2l[j] = p2l[j], p2l[i]
        rank[i], rank[j] = rank[j], rank[i]
        trades += 1


# ---- section 10: refine ------------------------------------------------------------------------

def trades_of(k):
    """Section 10.2: the trades between GPU A and another GPU B, in the order that breaks
    ties: first every one-for-one trade (B, sa, sb), then every two-for-two trade
    (B, {sa1 < sa2}, {sb1 < sb2}), the pairs in lexicographic order. Here for one B,
    as lists of (A's positions, B's positions)."""
    ones = [((sa,), (sb,)) for sa in range(k) for sb in range(k)]
    pairs = list(itertools.combinations(range(k), 2))
    twos = [(pa, pb) for pa in pairs for pb in pairs]
    return ones, twos


def trade_sums(t_row, sets):
    """The load a GPU gives away in a trade: one slot's load, or two summed in slot order."""
    if len(sets[0]) == 1:
        return t_row[[s[0] for s in sets]]
    return t_row[[s[0] for s in sets]] + t_row[[s[1] for s in sets]]


def refine_row(plan, W, l, q0, n, m, iterations, tol, distinct, stop_at=None, trace=None):
    """Section 10.3: up to `iterations` times, the heaviest GPU A of the row makes the trade
    (one slot for one, or two for two) with another GPU B that leaves the larger of the
    two loads lowest; ties go to the first trade in section 10.2's order. With
    `stop_at` (section 11.5) the row also stops once A is no heavier than it.
    Returns the number of trades made. trace, unless None, receives each kept trade
    as (the row's GPU loads before it, A, B) (refine_rounds.py reads it)."""
    k = n // m
    if k == 1 or m == 1:
        return 0
    p2l, rank, cnt = plan.phy2log[l], plan.rank[l], plan.logcnt[l]
    experts = p2l[q0:q0 + n].copy().reshape(m, k)
    t = np.array([slot_load(W[l, e], cnt[e]) for e in p2l[q0:q0 + n]], dtype=F32).reshape(m, k)
    tol = F32(tol)
    ones, twos = trades_of(k)
    kinds = [([o[0] for o in ones], [o[1] for o in ones]), ([w[0] for w in twos], [w[1] for w in twos])]
    trades = 0
    for _ in range(iterations):
        load = pack_loads(t, m, k)
        A = int(np.argmax(load))  # first maximum
        if not np.isfinite(load[A]) or (stop_at is not None and load[A] <= stop_at):
            break
        peaks, moves = [], []
        for a_sets, b_sets in kinds:
            if not a_sets:
                continue
            give_a = trade_sums(t[A], a_sets)                               # [moves]
            give_b = np.stack([trade_sums(t[B], b_sets) for B in range(m)])  # [B, moves]
            d = give_a[None, :] - give_b                                     # float32, one op each
            peak = np.maximum(load[A] - d, load[:, None] + d)
            peak[A] = np.inf
            peaks.append(peak.reshape(-1))
            moves += [(B, a_sets[i], b_sets[i]) for B in range(m) for i in range(len(a_sets))]
        peaks = np.concatenate(peaks)
        chosen = None
        for idx in np.argsort(peaks, kind="stable"):  # ascending peak, ties in trade order
            if not np.isfinite(peaks[idx]) or not load[A] - peaks[idx] > tol:
                break
            B, sa, sb = moves[idx]
            if distinct and not keeps_distinct(experts, A, sa, B, sb):
                continue
            chosen = idx
            break
        if chosen is None:
            break
        B, sa, sb = moves[chosen]
        old_max = load[A]
        trade(plan, l, t, experts, q0, k, A, sa, B, sb)
        after = pack_loads(t, m, k)
        if max(after[A], after[B]) >= old_max:
            trade(plan, l, t, experts, q0, k, A, sa, B, sb)  # undone: the row stops (section 10.3 step 4)
            break
        if trace is not None:
            trace.append((load, A, B))
        trades += 1
    return trades


def keeps_distinct(experts, A, sa, B, sb):
    """Section 11.6: after the trade, neither GPU holds an expert twice."""
    new_a = [e for r, e in enumerate(experts[A]) if r not in sa] + [experts[B, r] for r in sb]
    new_b = [e for r, e in enumerate(experts[B]) if r not in sb] + [experts[A, r] for r in sa]
    return len(set(new_a)) == len(new_a) and len(set(new_b)) == len(new_b)


def trade(plan, l, t, experts, q0, k, A, sa, B, sb):
    """Slots sa of GPU A and slots sb of GPU B trade places, position for position:
    expert, replica rank and load. Applied twice, it undoes itself."""
    p2l, rank = plan.phy2log[l], plan.rank[l]
    for x, y in zip(sa, sb):
        i, j = q0 + A * k + x, q0 + B * k + y
        p2l[i], p2l[j] = p2l[j], p2l[i]
        rank[i], rank[j] = rank[j], rank[i]
        t[A, x], t[B, y] = t[B, y], t[A, x]
        experts[A, x], experts[B, y] = experts[B, y], experts[A, x]


# ---- the new stages in order -------------------------------------------------------------------

def apply_stages(seed_plan, weight, refine=0, distinct=False, tol=1e-5, counters=None):
    """Sections 10 and 11 in their order on a seed plan: per row, with distinct the cap
    and the repair (and, without refine, the restoring search of section 11.5); then
    with refine the refine search."""
    plan = seed_plan.copy()
    W = np.asarray(weight, dtype=F32)
    if distinct:
        check_distinct_shape(plan)
    counters = {} if counters is None else counters
    for (l, q0, n, m) in rows_of(plan):
        if distinct:
            seed_max = row_max(plan, W, l, q0, n, m)
            freed = cap_row(plan, W, l, q0, n, m)
            repaired = repair_row(plan, W, l, q0, n, m)
            counters["freed"] = counters.get("freed", 0) + freed
            counters["repairs"] = counters.get("repairs", 0) + repaired
            if (freed or repaired) and not refine:
                restored = refine_row(plan, W, l, q0, n, m, REFINE_DEFAULT, tol, True, stop_at=seed_max)
                counters["restores"] = counters.get("restores", 0) + restored
        if refine:
            r = refine_row(plan, W, l, q0, n, m, refine, tol, distinct)
            counters["trades"] = counters.get("trades", 0) + r
            counters["max_trades"] = max(counters.get("max_trades", 0), r)
    return plan


def row_max(plan, W, l, q0, n, m):
    """The row's heaviest GPU load, float32 slot loads summed in slot order."""
    t = [slot_load(W[l, e], plan.logcnt[l, e]) for e in plan.phy2log[l, q0:q0 + n]]
    return pack_loads(np.array(t, dtype=F32), m, n // m).max()


# ---- section 8 figures and section 12's bound --------------------------------------------------

def gpu_loads(plan, weight):
    """Per layer, each GPU's load in double precision (section 8)."""
    s = plan.shape
    L, P, spg = s["layers"], s["gpus"], s["replicas"] // s["gpus"]
    W = np.asarray(weight, dtype=F32).astype(np.float64)
    out = np.zeros((L, P))
    for l in range(L):
        per_slot = W[l, plan.phy2log[l]] / plan.logcnt[l, plan.phy2log[l]]
        out[l] = per_slot.reshape(P, spg).sum(axis=1)
    return out


def balancedness(plan, weight):
    """Section 8: (balancedness, its smallest per-layer value); a layer or plan with no
    load counts as balanced."""
    loads = gpu_loads(plan, weight)
    mean, worst = loads.mean(axis=1), loads.max(axis=1)
    per_layer = [m / w if w > 0 else 1.0 for m, w in zip(mean, worst)]
    return (float(mean.sum() / worst.sum()) if worst.sum() > 0 else 1.0), float(min(per_layer))


def min_max_replica(w, slots):
    """The smallest possible largest replica load when the weights w share `slots`
    slots, every weight at least one (section 5's greedy in double, which is optimal)."""
    w = [float(x) for x in w]
    if not w:
        return 0.0
    cnt = [1] * len(w)
    import heapq
    heap = [(-x, i) for i, x in enumerate(w)]
    heapq.heapify(heap)
    for _ in range(slots - len(w)):
        _, i = heapq.heappop(heap)
        cnt[i] += 1
        heapq.heappush(heap, (-(w[i] / cnt[i]), i))
    return max(x / c for x, c in zip(w, cnt))


def node_floor(w_node, slots, gpus):
    """Section 12.2: no placement of these experts on one node of `gpus` GPUs and
    `slots` slots has a GPU lighter than this at its heaviest."""
    return max(sum(float(x) for x in w_node) / gpus, min_max_replica(w_node, slots))


def layer_floor(w_layer, shape, policy, exhaustive_limit=16):
    """Section 12: a lower bound on the heaviest GPU load of one layer over every plan
    of the policy. Returns (floor, how) with how 'exhaustive' or 'relaxed'."""
    E, R, P, G, N = shape["experts"], shape["replicas"], shape["gpus"], shape["groups"], shape["nodes"]
    w = [float(x) for x in np.asarray(w_layer, dtype=F32)]
    if policy != "hierarchical" or N == 1:
        return node_floor(w, R, P), "exhaustive"
    S, gpn, RN, ppn, M = E // G, G // N, R // N, P // N, E // N
    groups = [w[g * S:(g + 1) * S] for g in range(G)]
    if G <= exhaustive_limit or gpn == 1:
        return partition_floor(groups, gpn, RN, ppn), "exhaustive"
    return relaxed_floor(groups, gpn, RN, ppn, M, S, N, P), "relaxed"


def partition_floor(groups, gpn, RN, ppn):
    """Section 12.4: min over partitions of the groups into nodes of gpn groups of the
    largest node floor; dynamic programming over the set of groups placed so far."""
    G = len(groups)
    cache = {}

    def node_value(members):
        if members not in cache:
            cache[members] = node_floor([x for g in members for x in groups[g]], RN, ppn)
        return cache[members]

    full = (1 << G) - 1
    # Masks in increasing order of size; each step adds the node holding the lowest free group.
    frontier = {0: 0.0}
    for _ in range(G // gpn):
        nxt = {}
        for mask, val in frontier.items():
            free = [g for g in range(G) if not mask >> g & 1]
            first, rest = free[0], free[1:]
            for others in itertools.combinations(rest, gpn - 1):
                members = (first,) + others
                v = max(val, node_value(members))
                nm = mask | sum(1 << g for g in members)
                if v < nxt.get(nm, float("inf")):
                    nxt[nm] = v
        frontier = nxt
    return frontier[full]


def relaxed_floor(groups, gpn, RN, ppn, M, S, N, P):
    """Section 12.4: a relaxation for many groups. The node holding group g holds
    gpn - 1 other groups, at least the lightest ones, and leaves g's experts at
    most RN - (M - S) slots."""
    sums = [sum(g) for g in groups]
    total = sum(sums)
    floor = total / P
    for g, members in enumerate(groups):
        others = sorted(sums[:g] + sums[g + 1:])[:gpn - 1]
        floor = max(floor, (sums[g] + sum(others)) / ppn, min_max_replica(members, RN - (M - S)))
    return floor


def balancedness_bound(weight, shape, policy):
    """Section 12.1: sum of the layers' mean GPU loads over the sum of their floors."""
    W = np.asarray(weight, dtype=F32).astype(np.float64)
    mean_sum = float((W.sum(axis=1) / shape["gpus"]).sum())
    floors = [layer_floor(W[l], shape, policy)[0] for l in range(W.shape[0])]
    return mean_sum / sum(floors) if sum(floors) > 0 else 1.0
