"""A design check of backends/cuda/cuda_refine_team.cuh, run by hand (not by CI:
about a second a row): the team search's decisions, emulated lane by lane and
warp by warp (the trade units each warp weighs, each lane's first smallest
peak, each warp's post of its best trade and of its heaviest GPU other than
A, the winner read from the posts, and the next A taken among A, B and the
posted GPUs), make the same trades as a direct search of
docs/spec.md section 10.3 on random rows, many of them full of ties.

    python3 tests/reference/team_refine_emulation.py [SEED] [ROWS]

Prints "N cases equal", or the first row whose trades differ, and exits 1.
It checks the design, not the CUDA code: eplb_cuda_bench check compares the
code's plans with the cpu backend's on a GPU."""
import itertools, random, sys
import numpy as np
F = np.float32
NONE = 0xFFFFFFFF

def okey(x):
    x = F(x)
    if x == 0: return 0x80000000
    b = int(np.array([x], dtype=F).view(np.uint32)[0])
    return (~b & 0xFFFFFFFF) if b & 0x80000000 else b | 0x80000000

def peak(al, bl, ga, gb):
    d = F(F(ga) - F(gb)); na = F(F(al) - d); nb = F(F(bl) + d)
    return na if na > nb else nb

def load_of(t):
    s = F(t[0])
    for v in t[1:]: s = F(s + F(v))
    return s

def pairs_of(k): return list(itertools.combinations(range(k), 2))

def trades(k):
    P = pairs_of(k)
    return [((sa,), (sb,)) for sa in range(k) for sb in range(k)] + [(pa, pb) for pa in P for pb in P]

def give(t, pos):
    return F(t[pos[0]]) if len(pos) == 1 else F(F(t[pos[0]]) + F(t[pos[1]]))

def apply(t, A, B, pa, pb):
    for x, y in zip(pa, pb):
        t[A][x], t[B][y] = t[B][y], t[A][x]

def spec(t, refine, tol):
    m, k = len(t), len(t[0]); t = [list(r) for r in t]; out = []
    T = trades(k)
    for _ in range(refine):
        load = [load_of(r) for r in t]
        A = max(range(m), key=lambda g: (okey(load[g]), -g))
        if np.isinf(load[A]): break
        best = None
        order = [(B, i) for i in range(k*k) for B in range(m)]
        # trade order: ones (B, sa, sb) over all B, then twos (B, pairs)
        seq = [(B, T[i]) for B in range(m) for i in range(k*k)] + [(B, T[i]) for B in range(m) for i in range(k*k, len(T))]
        for B, (pa, pb) in seq:
            if B == A: continue
            p = peak(load[A], load[B], give(t[A], pa), give(t[B], pb))
            if p < np.inf and (best is None or p < best[0]):
                best = (p, B, pa, pb)
        if best is None or not F(load[A] - best[0]) > tol: break
        p, B, pa, pb = best
        apply(t, A, B, pa, pb)
        na, nb = load_of(t[A]), load_of(t[B])
        if max(na, nb) >= load[A]:
            apply(t, A, B, pa, pb); break
        out.append((A, B, pa, pb))
    return out, t

def team(t, refine, tol, W):
    m, k = len(t), len(t[0]); P = k*(k-1)//2; t = [list(r) for r in t]
    sets = (m + 31)//32; chunks = W // sets; assert chunks >= 1
    ones = m*k*k; total = k*k + P*P; pl = pairs_of(k)
    unit_chunk = []; before = 0
    for u in range(k + P):
        unit_chunk.append(before*chunks // total); before += k if u < k else P
    load = [load_of(r) for r in t]
    # first A
    tops = []
    for w in range(sets):
        lanes = [g for g in range(w*32, min(w*32+32, m))]
        if lanes: tops.append(max(lanes, key=lambda g: (okey(load[g]), -g)))
    A = max(tops, key=lambda g: (okey(load[g]), -g)); a_load = load[A]
    out = []
    for it in range(refine):
        if np.isinf(a_load): break
        at = t[A]; ap = [F(F(at[lo]) + F(at[hi])) for lo, hi in pl]
        posts = []
        for w in range(W):
            chunk, st = w // sets, w % sets
            lane_best = []
            for lane in range(32):
                g = st*32 + lane
                best, idx = np.inf, 0
                if chunk < chunks and g < m and g != A:
                    bt = t[g]; bp = [F(F(bt[lo]) + F(bt[hi])) for lo, hi in pl]
                    for u in range(k + P):
                        if unit_chunk[u] != chunk: continue
                        if u < k:
                            for sb in range(k):
                                p = peak(a_load, load[g], at[u], bt[sb])
                                if p < best: best, idx = p, (g*k + u)*k + sb
                        else:
                            i = u - k
                            for j in range(P):
                                p = peak(a_load, load[g], ap[i], bp[j])
                                if p < best: best, idx = p, ones + (g*P + i)*P + j
                key = okey(best) if best < np.inf else NONE
                lane_best.append((key, idx, g))
            wk = min(x[0] for x in lane_best); wi = min(x[1] if x[0] == wk else NONE for x in lane_best)
            # top-2 of chunk 0 lanes other than A
            cand = [(okey(load[g]), g) for g in range(st*32, st*32+32) if chunk == 0 and g < m and g != A]
            tops = sorted(cand, key=lambda x: (-x[0], x[1]))[:1]
            posts.append((wk, wi, tops))
        wk, wi = NONE, NONE
        for w in range(sets*chunks):
            k2, i2, _ = posts[w]
            if k2 != NONE and (k2 < wk or (k2 == wk and i2 < wi)): wk, wi = k2, i2
        if wk == NONE: break
        if wi < ones:
            B = wi // (k*k); r = wi - B*k*k; pa, pb = (r // k,), (r % k,)
        else:
            j = wi - ones; B = j // (P*P); r = j - B*P*P; pa, pb = pl[r // P], pl[r % P]
        p = peak(a_load, load[B], give(t[A], pa), give(t[B], pb))
        if not F(a_load - p) > tol: break
        apply(t, A, B, pa, pb)
        na, nb = load_of(t[A]), load_of(t[B])
        if max(na, nb) >= a_load:
            apply(t, A, B, pa, pb); break
        out.append((A, B, pa, pb))
        load[A], load[B] = na, nb
        nxt = [(okey(na), A), (okey(nb), B)]
        for w in range(sets):
            nxt += posts[w][2]  # B's old load, if posted, loses to its new one
        key, g = max(nxt, key=lambda x: (x[0], -x[1]))
        assert key == okey(load[g])
        A, a_load = g, load[g]
    return out, t

rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
cases = 0
for trial in range(int(sys.argv[2]) if len(sys.argv) > 2 else 300):
    k = rng.randint(2, 8); m = rng.choice([2, 3, 5, 8, 31, 32, 33, 64, 72, 100, 256] if k <= 4 else [2, 3, 8, 32, 40, 72])
    kind = rng.random()
    if kind < 0.4:
        t = [[F(rng.randint(0, 6)) for _ in range(k)] for _ in range(m)]
    elif kind < 0.7:
        t = [[F(rng.choice([0.5, 1.0, 1.5, 2.0, 3.25])) for _ in range(k)] for _ in range(m)]
    else:
        t = [[F(rng.lognormvariate(0, 1)) for _ in range(k)] for _ in range(m)]
    sets = (m + 31)//32
    W = rng.randint(sets, 8)
    refine = rng.choice([1, 16, 256])
    a, ta = spec(t, refine, F(1e-5))
    b, tb = team(t, refine, F(1e-5), W)
    cases += 1
    if a != b or ta != tb:
        print("MISMATCH", k, m, W, refine, len(a), len(b)); sys.exit(1)
print(cases, "cases equal")
