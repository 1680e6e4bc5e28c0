"""SPEC 5 (replication) as a selection instead of a chain of steps.

docs/cuda.md ("What bounds the fused plan") proposes planning the replication
on the GPU as a selection: since each item's values w/1, w/2, ... never
increase (float32 division is monotone in the divisor), the p - n picks of
SPEC 5 are the p - n largest triples (value, item, count) in the order value
descending, item ascending, count ascending, and the slots take them in that
order. This file checks that claim against the sequential steps of the spec,
and checks a threshold search that finds the picks without enumerating every
triple (a search over the value's bits, an item's count found from a double
estimate and exact float32 checks), as a kernel would do it. It also checks
a third form: SPEC 5's steps over the p - n first items in the order (w
descending, index ascending) alone, every item that gets an extra slot being
among them. Nothing in the library uses these: the third form, tried in the
CUDA plan_fused, was slower than the chain it replaced (docs/benchmarks.md,
fifteenth session).
"""

import numpy as np
import pytest

F32 = np.float32


def key(v):
    """The value's order key: its float32 bits with the sign cleared (so -0 == +0)."""
    return int(np.array(v, dtype=F32).view(np.uint32)) & 0x7FFFFFFF


def value(w, c):
    return F32(w) / F32(c)


def spec_replicate(w, p):
    """SPEC 5 step by step: counts, and the item of each extra slot in slot order."""
    cnt = [1] * len(w)
    extra = []
    for _ in range(p - len(w)):
        best = max(range(len(w)), key=lambda i: (key(value(w[i], cnt[i])), -i))
        extra.append(best)
        cnt[best] += 1
    return cnt, extra


def selection_replicate(w, p):
    """The p - n largest triples of every item's values, by enumeration."""
    extra = p - len(w)
    triples = [(-key(value(w[i], c)), i, c) for i in range(len(w)) for c in range(1, extra + 1)]
    picks = sorted(triples)[:extra]
    cnt = [1] * len(w)
    for _, i, _ in picks:
        cnt[i] += 1
    return cnt, [i for _, i, _ in picks]


def count_at_least(w, theta, most):
    """How many c in 1..most have key(w/c) >= theta, and how many float32
    checks the estimate needed: the counts form a prefix of 1..most because
    the keys never increase with c."""
    if theta == 0:
        return most, 0
    v = float(np.array(theta, dtype=np.uint32).view(F32))
    c = min(most, int(float(w) / v)) if v > 0 else most
    checks = 0
    while c < most and key(value(w, c + 1)) >= theta:
        c += 1
        checks += 1
    while c > 0 and key(value(w, c)) < theta:
        c -= 1
        checks += 1
    return c, checks


def threshold_replicate(w, p):
    """The same picks by a search for the largest key theta with at least
    p - n triples at or above it: those above theta are all picked, and the
    rest are the first triples of key theta in (item, count) order."""
    extra = p - len(w)
    if extra == 0:
        return [1] * len(w), [], 0
    lo, hi = 0, 0x7FFFFFFF  # the answer lies in [lo, hi]
    most_checks = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        total = 0
        for x in w:
            n, checks = count_at_least(x, mid, extra)
            total += n
            most_checks = max(most_checks, checks)
        if total >= extra:
            lo = mid
        else:
            hi = mid - 1
    theta = lo
    picks, ties = [], []
    for i, x in enumerate(w):
        above = count_at_least(x, theta + 1, extra)[0] if theta < 0x7FFFFFFF else 0
        at_least = count_at_least(x, theta, extra)[0]
        picks += [(-key(value(x, c)), i, c) for c in range(1, above + 1)]
        ties += [(-theta, i, c) for c in range(above + 1, at_least + 1)]
    picks += ties[:extra - len(picks)]  # ties in (item, count) order
    picks.sort()
    cnt = [1] * len(w)
    for _, i, _ in picks:
        cnt[i] += 1
    return cnt, [i for _, i, _ in picks], most_checks


def rows(seed):
    """Rows with the cases that matter for exactness: ties, zeros, -0,
    subnormals, very large values, one hot item, and plain heavy tails."""
    rng = np.random.default_rng(seed)
    kinds = ["tail", "ties", "zeros", "hot", "tiny", "huge"]
    for t in range(120):
        kind = kinds[t % len(kinds)]
        n = int(rng.integers(1, 40))
        if kind == "tail":
            w = rng.pareto(1.5, n) * 100
        elif kind == "ties":
            w = rng.integers(0, 4, n).astype(float) * 3.0
        elif kind == "zeros":
            w = np.where(rng.random(n) < 0.5, 0.0, rng.random(n))
            w[rng.random(n) < 0.3] = -0.0
        elif kind == "hot":
            w = rng.random(n)
            w[rng.integers(n)] = 1e4
        elif kind == "tiny":
            w = rng.random(n) * 1e-42  # float32 subnormals
        else:
            w = rng.random(n) * 3e38
        w = [F32(x) for x in w]
        p = n + int(rng.integers(0, 3 * n + 2))
        yield w, p


@pytest.mark.parametrize("seed", range(4))
def test_selection_is_the_spec(seed):
    for w, p in rows(seed):
        assert selection_replicate(w, p) == spec_replicate(w, p), (w, p)


@pytest.mark.parametrize("seed", range(4))
def test_threshold_search_is_the_spec(seed):
    worst = 0
    for w, p in rows(seed):
        cnt, extra, checks = threshold_replicate(w, p)
        assert (cnt, extra) == spec_replicate(w, p), (w, p)
        worst = max(worst, checks)
    # The double estimate is off by at most a couple of counts, so a kernel
    # needs only a few float32 checks per item and threshold.
    assert worst <= 2


def listed_replicate(w, p):
    """SPEC 5's steps over the p - n first items in the order (value w/1
    descending, index ascending) alone, as the CUDA plan_fused does for rows
    with many more items than extra slots (cuda_replicate.cuh): every item
    that gets an extra slot is among them."""
    n = len(w)
    extra = p - n
    ranked = sorted(range(n), key=lambda i: (-key(value(w[i], 1)), i))
    listed = sorted(ranked[:extra])
    cnt = [1] * n
    picks = []
    for _ in range(extra):
        best = max(listed, key=lambda i: (key(value(w[i], cnt[i])), -i))
        picks.append(best)
        cnt[best] += 1
    return cnt, picks


@pytest.mark.parametrize("seed", range(4))
def test_the_listed_items_hold_every_pick(seed):
    for w, p in rows(seed):
        if p - len(w) < len(w):
            assert listed_replicate(w, p) == spec_replicate(w, p), (w, p)


def test_the_list_breaks_ties_by_index():
    # Item 0's 10 takes the first extra slot; its 10 / 2 = 5 then ties with
    # items 1 and 3 at 5, and the lowest index, item 0, takes the second; a
    # third extra slot goes to item 1.
    w = [F32(10), F32(5), F32(1), F32(5)]
    assert spec_replicate(w, 6) == ([3, 1, 1, 1], [0, 0])
    assert listed_replicate(w, 6) == spec_replicate(w, 6)
    assert listed_replicate(w, 7) == spec_replicate(w, 7) == ([3, 2, 1, 1], [0, 0, 1])


def test_a_worked_row():
    # Values 6/1, 4/1, 6/2, 4/2 = 6, 4, 3, 2 and 1/1: three extra slots take
    # item 0 (6), item 1 (4), item 0 again (3).
    w = [F32(6), F32(4), F32(1)]
    assert spec_replicate(w, 6) == ([3, 2, 1], [0, 1, 0])
    assert threshold_replicate(w, 6)[:2] == ([3, 2, 1], [0, 1, 0])
