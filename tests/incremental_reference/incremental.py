"""Independent reference of the incremental rebalance, docs/spec.md section 13.

Written from that section alone, as plainly as possible: one layer at a time,
float32 arithmetic in the order the section states, every tie rule spelled out.
It does not compute a fresh plan itself: the fresh plan (section 13.1) is an
input, read from the eplb CLI's plan JSON.
"""
import numpy as np

F32 = np.float32


class ShapeError(ValueError):
    """The previous plan does not fit the shape of the new loads (section 13.1)."""


def slot_loads(w_layer, phy2log_layer):
    """Section 13.2: each slot's load W[e] / cnt[e] in float32, cnt counted in
    this placement."""
    counts = np.bincount(phy2log_layer, minlength=w_layer.shape[0]).astype(F32)
    e = phy2log_layer
    return (w_layer[e] / counts[e]).astype(F32)


def gpu_load(values):
    """Section 13.2: a GPU's load is the float32 sum of its slot loads taken in
    ascending order of value, so it does not depend on the slots' order."""
    acc = F32(0.0)
    for v in np.sort(np.asarray(values, dtype=F32)):
        acc = F32(acc + v)
    return acc


def gpu_loads(w_layer, phy2log_layer, gpus):
    u = slot_loads(w_layer, phy2log_layer).reshape(gpus, -1)
    return np.array([gpu_load(row) for row in u], dtype=F32)


def multiset_excess(new, old):
    """|new \\ old| for two multisets of expert ids (section 13.3)."""
    a = np.bincount(new, minlength=0)
    b = np.bincount(old, minlength=0)
    n = max(a.shape[0], b.shape[0])
    a = np.pad(a, (0, n - a.shape[0]))
    b = np.pad(b, (0, n - b.shape[0]))
    return int(np.maximum(a - b, 0).sum())


def moved_per_gpu(prev_layer, new_layer, gpus):
    """Section 13.3: per GPU, the slots whose expert the GPU did not hold before."""
    spg = prev_layer.shape[0] // gpus
    return np.array([multiset_excess(new_layer[g * spg:(g + 1) * spg],
                                     prev_layer[g * spg:(g + 1) * spg]) for g in range(gpus)],
                    dtype=np.int64)


def cross_node_moves(prev_layer, new_layer, nodes):
    """Section 13.3: pairs (node, expert) with the expert on the node now and
    nowhere on it before: the transfers that must cross the slower link."""
    rn = prev_layer.shape[0] // nodes
    total = 0
    for n in range(nodes):
        before = set(prev_layer[n * rn:(n + 1) * rn].tolist())
        after = set(new_layer[n * rn:(n + 1) * rn].tolist())
        total += len(after - before)
    return total


def _overlap(a, b):
    """Size of the multiset intersection of two lists of expert ids."""
    ca = {}
    for e in a:
        ca[e] = ca.get(e, 0) + 1
    common = 0
    for e in b:
        if ca.get(e, 0) > 0:
            ca[e] -= 1
            common += 1
    return common


def _greedy_match(overlap):
    """Section 13.4: repeatedly take the unmatched pair (fresh f, previous h) with
    the largest overlap; ties to the lowest f, then the lowest h. Returns
    match[f] = h."""
    k = overlap.shape[0]
    match = [-1] * k
    used_f, used_h = [False] * k, [False] * k
    for _ in range(k):
        best = None
        for f in range(k):
            if used_f[f]:
                continue
            for h in range(k):
                if used_h[h]:
                    continue
                if best is None or overlap[f, h] > overlap[best[0], best[1]]:
                    best = (f, h)
        f, h = best
        match[f] = h
        used_f[f] = used_h[h] = True
    return match


def _place_in_gpu(prev_slots, new_experts):
    """Section 13.4: order a GPU's new experts so that an expert it held before
    keeps its slot. prev_slots: the GPU's previous experts in slot order;
    new_experts: its new experts in their source order. Returns the new slots."""
    remaining = list(new_experts)
    out = [-1] * len(prev_slots)
    for i, e in enumerate(prev_slots):
        if e in remaining:
            remaining.remove(e)     # the first occurrence, in source order
            out[i] = e
    rest = iter(remaining)
    for i in range(len(out)):
        if out[i] < 0:
            out[i] = next(rest)
    return out


def relabel(prev_layer, fresh_layer, gpus, nodes):
    """Section 13.4: the fresh layer's GPUs renumbered by a permutation that keeps
    the node structure (nodes = 1 for the global policy) and overlaps the
    previous layer as much as the greedy matching finds."""
    R = prev_layer.shape[0]
    spg = R // gpus
    gpn = gpus // nodes
    rn = R // nodes
    pl = prev_layer.tolist()
    fl = fresh_layer.tolist()
    node_overlap = np.array([[_overlap(fl[a * rn:(a + 1) * rn], pl[b * rn:(b + 1) * rn])
                              for b in range(nodes)] for a in range(nodes)], dtype=np.int64)
    node_match = _greedy_match(node_overlap)
    out = [-1] * R
    for a in range(nodes):
        b = node_match[a]
        gpu_overlap = np.array(
            [[_overlap(fl[(a * gpn + f) * spg:(a * gpn + f + 1) * spg],
                       pl[(b * gpn + h) * spg:(b * gpn + h + 1) * spg])
              for h in range(gpn)] for f in range(gpn)], dtype=np.int64)
        gpu_match = _greedy_match(gpu_overlap)
        for f in range(gpn):
            src = (a * gpn + f) * spg
            dst = (b * gpn + gpu_match[f]) * spg
            out[dst:dst + spg] = _place_in_gpu(pl[dst:dst + spg], fl[src:src + spg])
    return np.array(out, dtype=np.int64)


def _double_cost(cur, held, base, A, B, sa_list, sb_list):
    """The change in moved slots when the experts of sa_list (on A) and sb_list
    (on B) trade GPUs."""
    delta = {}
    for s in sa_list:
        delta[(A, cur[s])] = delta.get((A, cur[s]), 0) - 1
        delta[(B, cur[s])] = delta.get((B, cur[s]), 0) + 1
    for s in sb_list:
        delta[(B, cur[s])] = delta.get((B, cur[s]), 0) - 1
        delta[(A, cur[s])] = delta.get((A, cur[s]), 0) + 1
    change = 0
    for (g, e), dv in delta.items():
        before = held[g, e] - base[g, e]
        change += max(before + dv, 0) - max(before, 0)
    return change


def _double_swap(cur, u, loads, held, base, A, spg, g0, gn, target):
    """Section 13.5, double swaps: two slots of A trade places with two slots of
    one other GPU B. Returns ((sa1, sa2, sb1, sb2), cost) or None."""
    a_slots = list(range(A * spg, (A + 1) * spg))
    best = None
    for B in range(g0, g0 + gn):
        if B == A:
            continue
        b_slots = list(range(B * spg, (B + 1) * spg))
        for i1 in range(spg):
            for i2 in range(i1 + 1, spg):
                sa1, sa2 = a_slots[i1], a_slots[i2]
                da = F32(u[sa1] + u[sa2])
                for j1 in range(spg):
                    for j2 in range(j1 + 1, spg):
                        sb1, sb2 = b_slots[j1], b_slots[j2]
                        db = F32(u[sb1] + u[sb2])
                        if not da > db:
                            continue
                        new_a = F32(F32(loads[A] - da) + db)
                        new_b = F32(F32(loads[B] - db) + da)
                        if new_b <= target:
                            if new_a <= target:
                                key0 = (0, None, max(new_a, new_b))
                            else:
                                key0 = (1, None, new_a)
                        else:
                            d = F32(da - db)
                            change = F32(F32(F32(2.0) * d) * F32(d - F32(loads[A] - loads[B])))
                            if not change < 0:
                                continue
                            key0 = (2, change, None)
                        cost = _double_cost(cur, held, base, A, B, (sa1, sa2), (sb1, sb2))
                        if key0[0] < 2:
                            key = (key0[0], cost, float(key0[2]))
                        else:
                            key = (2, float(key0[1]), cost)
                        if best is None or key < best[0]:
                            best = (key, (sa1, sa2, sb1, sb2), cost)
    if best is None:
        return None
    return best[1], best[2]


def anchored_start(w_layer, prev_layer, relabelled, gpus, domain):
    """Section 13.6, the anchored start of a domain: the relabelled fresh plan's
    experts and replica counts for the domain, each slot keeping the expert it
    held before where it can, the rest placed heaviest first on the least loaded
    GPU with a free slot. Returns the layer with the domain filled."""
    R = prev_layer.shape[0]
    spg = R // gpus
    d0, dn = domain
    g0, gn = d0 // spg, dn // spg
    out = relabelled.copy()               # the other domains, and the counts
    counts = np.bincount(relabelled, minlength=w_layer.shape[0]).astype(F32)
    rest = relabelled[d0:d0 + dn].tolist()
    start = [-1] * dn
    for i in range(dn):                   # keep, slot by slot
        e = int(prev_layer[d0 + i])
        if e in rest:
            rest.remove(e)
            start[i] = e
    load = {}
    for g in range(g0, g0 + gn):
        kept = [w_layer[e] / counts[e] for e in start[(g - g0) * spg:(g - g0 + 1) * spg] if e >= 0]
        load[g] = gpu_load(np.array(kept, dtype=F32))
    rest.sort(key=lambda e: (-(w_layer[e] / counts[e]), e))
    for e in rest:                        # heaviest first, least loaded GPU
        g = min((g for g in range(g0, g0 + gn)
                 if -1 in start[(g - g0) * spg:(g - g0 + 1) * spg]), key=lambda g: (load[g], g))
        i = start.index(-1, (g - g0) * spg)
        start[i] = e
        load[g] = F32(load[g] + F32(w_layer[e] / counts[e]))
    out[d0:d0 + dn] = start
    return out


def _exchange(cur, u, held, A, B, sa, sb):
    """Swaps the experts (and slot loads) of slot sa on GPU A and slot sb on GPU B, keeping
    held (the count of each expert on each GPU) in step."""
    a, b = cur[sa], cur[sb]
    held[A, a] -= 1
    held[B, a] += 1
    held[B, b] -= 1
    held[A, b] += 1
    cur[sa], cur[sb] = b, a
    u[sa], u[sb] = u[sb], u[sa]


def search(w_layer, prev_layer, gpus, domain, target, limit, start=None, trace=None):
    """Section 13.5: swap search from the previous layer (or from start) under the
    new loads, inside one domain (a node's slots for the hierarchical policy, all
    slots for the global one): domain = (first slot, slots). Slots outside it are
    left as they are. limit: the search gives up once more than this many slots
    of the domain have moved. Moves count against prev_layer. Returns (the layer
    with the domain searched, met). trace, unless None, receives each step as
    (the domain's GPU loads before it, A, the partner GPU), GPUs local to the
    domain (search_rounds.py reads it)."""
    R = prev_layer.shape[0]
    E = w_layer.shape[0]
    spg = R // gpus
    d0, dn = domain
    g0, gn = d0 // spg, dn // spg
    cur = (prev_layer if start is None else start).copy()
    u = slot_loads(w_layer, cur)          # counts never change in the search
    loads = np.array([gpu_load(u[g * spg:(g + 1) * spg]) for g in range(gpus)], dtype=F32)
    gpu_of = np.arange(R) // spg
    # held[g, e]: replicas of e on GPU g now; base[g, e]: in the previous plan.
    base = np.zeros((gpus, E), dtype=np.int64)
    np.add.at(base, (gpu_of, prev_layer), 1)
    held = np.zeros((gpus, E), dtype=np.int64)
    np.add.at(held, (gpu_of, cur), 1)
    moved = int(np.maximum(held - base, 0)[g0:g0 + gn].sum())
    others = np.arange(d0, d0 + dn)
    for _ in range(dn):
        A = g0 + int(np.argmax(loads[g0:g0 + gn]))   # first maximum: lowest GPU on ties
        if loads[A] <= target:
            return cur, True
        if moved > limit:
            return cur, False
        sb = others[gpu_of[others] != A]
        B = gpu_of[sb]
        b = cur[sb]
        wb = u[sb]
        best = None                       # (class, cost, value, sa, sb)
        for sa in range(A * spg, (A + 1) * spg):
            a, wa = cur[sa], u[sa]
            new_a = (loads[A] - wa) + wb             # float32, in this order
            new_b = (loads[B] - wb) + wa
            ok = (wa > wb) & (new_b <= target)
            # The change in moved slots: a leaves A and arrives at B, b the reverse.
            cost = (-(held[A, a] > base[A, a]).astype(np.int64)
                    + (held[B, a] >= base[B, a])
                    - (held[B, b] > base[B, b])
                    + (held[A, b] >= base[A, b]))
            finish = new_a <= target
            cls = np.where(finish, 0, 1)
            value = np.where(finish, np.maximum(new_a, new_b), new_a)
            for i in np.flatnonzero(ok):
                key = (int(cls[i]), int(cost[i]), value[i])
                if best is None or key < best[:3]:
                    best = key + (sa, int(sb[i]))
            # When no swap keeps the receiving GPU at or under the target, the
            # swap that lowers the sum of squared loads of the two GPUs most.
            d = wa - wb
            change = (F32(2.0) * d) * (d - (loads[A] - loads[B]))
            ok2 = (wa > wb) & (change < 0)
            for i in np.flatnonzero(ok2):
                key = (2, float(change[i]), int(cost[i]))
                if best is None or key < best[:3]:
                    best = key + (sa, int(sb[i]))
        if best is None:
            pair = _double_swap(cur, u, loads, held, base, A, spg, g0, gn, target)
            if pair is None:
                return cur, False
            (sa1, sa2, sb1, sb2), c = pair
            Bb = gpu_of[sb1]
            if trace is not None:
                trace.append((loads[g0:g0 + gn].copy(), A - g0, int(Bb) - g0))
            for sa, sb in ((sa1, sb1), (sa2, sb2)):
                _exchange(cur, u, held, A, Bb, sa, sb)
            moved += c
            loads[A] = gpu_load(u[A * spg:(A + 1) * spg])
            loads[Bb] = gpu_load(u[Bb * spg:(Bb + 1) * spg])
            continue
        sa, sbest = best[3], best[4]
        c = best[1] if best[0] < 2 else best[2]
        Bb = gpu_of[sbest]
        if trace is not None:
            trace.append((loads[g0:g0 + gn].copy(), A - g0, int(Bb) - g0))
        moved += c
        _exchange(cur, u, held, A, Bb, sa, sbest)
        loads[A] = gpu_load(u[A * spg:(A + 1) * spg])
        loads[Bb] = gpu_load(u[Bb * spg:(Bb + 1) * spg])
    A = g0 + int(np.argmax(loads[g0:g0 + gn]))
    return cur, bool(loads[A] <= target)


def rebalance_layer(w_layer, prev_layer, fresh_layer, gpus, nodes, hierarchical, slack=0.0):
    """Sections 13.4 to 13.6 for one layer. Returns (phy2log, domains searched).

    Every domain (a node, or the whole layer for the global policy) is searched
    twice, from the previous plan and from the anchored start, and has three
    options: kept (the first search, if it met the target), anchored (the
    second, if it met the target) and fresh (the relabelled fresh plan). A domain
    whose experts are the same in the previous and the relabelled fresh plan
    takes its option with the fewest moves (ties in that order); the others,
    whose groups changed node, take one option together, by their moves summed."""
    fresh_max = np.max(gpu_loads(w_layer, fresh_layer, gpus))
    target = F32(fresh_max * F32(F32(1.0) + F32(slack)))
    domains = nodes if hierarchical else 1
    relabelled = relabel(prev_layer, fresh_layer, gpus, domains)
    R = prev_layer.shape[0]
    dn = R // domains
    gpd = gpus // domains
    start = relabelled
    for d in range(domains):
        start = anchored_start(w_layer, prev_layer, start, gpus, (d * dn, dn))
    options = []                          # per domain: [(moves or None, layer)] kept, anchored, fresh
    for d in range(domains):
        sl = slice(d * dn, (d + 1) * dn)
        moved_relabel = int(moved_per_gpu(prev_layer[sl], relabelled[sl], gpd).sum())
        row = []
        for origin in (prev_layer, start):
            found, met = search(w_layer, prev_layer, gpus, (d * dn, dn), target, moved_relabel,
                                start=origin)
            row.append((int(moved_per_gpu(prev_layer[sl], found[sl], gpd).sum()) if met else None,
                        found))
        row.append((moved_relabel, relabelled))
        options.append(row)
    out = relabelled.copy()
    searched = 0
    changed = []
    for d in range(domains):
        sl = slice(d * dn, (d + 1) * dn)
        if set(prev_layer[sl].tolist()) != set(relabelled[sl].tolist()):
            changed.append(d)
            continue
        k = min((o for o in range(3) if options[d][o][0] is not None),
                key=lambda o: (options[d][o][0], o))
        out[sl] = options[d][k][1][sl]
        searched += k < 2
    if changed:
        totals = []
        for o in range(3):
            moves = [options[d][o][0] for d in changed]
            totals.append(None if None in moves else sum(moves))
        k = min((o for o in range(3) if totals[o] is not None), key=lambda o: (totals[o], o))
        for d in changed:
            sl = slice(d * dn, (d + 1) * dn)
            out[sl] = options[d][k][1][sl]
            searched += k < 2
    # Options of different domains agree on replica counts unless the previous
    # plan spreads an expert over several domains; then the layer may miss.
    if np.max(gpu_loads(w_layer, out, gpus)) > target:
        return relabelled.copy(), 0
    return out, searched


def rebalance(weight, prev, fresh, gpus, nodes, groups, slack=0.0, policy='auto'):
    """The incremental plan of section 13 for every layer.

    weight: [L][E] new loads; prev: [L][R] the running plan's phy2log; fresh:
    [L][R] the fresh plan's phy2log for the same loads and options (section 6).
    Returns (phy2log, logcnt, stats)."""
    if not (np.isfinite(slack) and slack >= 0):
        raise ValueError("slack must be finite and >= 0, not %r" % (slack,))
    w = np.asarray(weight, dtype=np.float64).astype(F32)
    prev = np.asarray(prev, dtype=np.int64)
    fresh = np.asarray(fresh, dtype=np.int64)
    if w.ndim != 2 or prev.ndim != 2 or fresh.ndim != 2:
        raise ShapeError("loads and plans must be two-dimensional")
    L, E = w.shape
    if prev.shape[0] != L:
        raise ShapeError("previous plan has %d layers, the loads %d" % (prev.shape[0], L))
    if prev.shape != fresh.shape:
        raise ShapeError("previous plan has %d slots per layer, the fresh one %d"
                         % (prev.shape[1], fresh.shape[1]))
    R = prev.shape[1]
    hierarchical = (policy == 'hierarchical' or
                    (policy == 'auto' and groups % nodes == 0))
    if R < E or R % gpus or E % groups or (hierarchical and gpus % nodes):
        raise ShapeError("%d slots of %d experts do not fit %d GPUs on %d nodes"
                         % (R, E, gpus, nodes))
    if prev.min() < 0 or prev.max() >= E:
        raise ShapeError("previous plan names an expert outside 0..%d" % (E - 1))
    for l in range(L):
        if np.bincount(prev[l], minlength=E).min() < 1:
            raise ShapeError("previous plan's layer %d leaves an expert without a slot" % l)
    out = np.empty_like(prev)
    searched = 0
    for l in range(L):
        out[l], n = rebalance_layer(w[l], prev[l], fresh[l], gpus, nodes, hierarchical, slack)
        searched += n
    logcnt = np.stack([np.bincount(out[l], minlength=E) for l in range(L)])
    stats = plan_stats(w, prev, out, gpus, nodes)
    stats['domains_by_search'] = searched
    return out, logcnt, stats


def plan_stats(w, prev, new, gpus, nodes):
    """Section 13.3's movement figures and section 8's balancedness, in double."""
    L = w.shape[0]
    moved = np.stack([moved_per_gpu(prev[l], new[l], gpus) for l in range(L)])
    cross = None
    if gpus % nodes == 0:
        cross = sum(cross_node_moves(prev[l], new[l], nodes) for l in range(L))
    return {
        'moved_slots': int(moved.sum()),
        'max_moved_per_gpu': int(moved.sum(axis=0).max()),
        'cross_node_moves': cross,
        'balancedness': balancedness(w, new, gpus),
    }


def balancedness(w, phy2log, gpus):
    """Section 8 in double precision: sum of mean GPU loads / sum of max GPU loads."""
    L, E = w.shape
    mean_sum = max_sum = 0.0
    for l in range(L):
        cnt = np.bincount(phy2log[l], minlength=E).astype(np.float64)
        per_slot = w[l].astype(np.float64)[phy2log[l]] / cnt[phy2log[l]]
        g = per_slot.reshape(gpus, -1).sum(axis=1)
        mean_sum += g.mean()
        max_sum += g.max()
    return mean_sum / max_sum if max_sum > 0 else 1.0
