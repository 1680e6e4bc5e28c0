/* The refine search (SPEC 10) on the device: a block per row. Each iteration
 * finds the row's heaviest GPU A, weighs every one-for-one and two-for-two
 * trade of A with the other GPUs of the row in parallel, and keeps the one
 * with the smallest peak, ties to the first in trade order, through a block
 * reduction of (peak key, trade index). One thread applies it and checks the
 * recomputed loads (step 4), so the sums are those of the cpu backend.
 *
 * eplb_block_refine works on a row held in memory the whole block reads
 * (shared memory, or global scratch for rows too large for it), so that a
 * kernel with the row already on chip can call it too.
 *
 * With distinct (SPEC 11.6) the row also lists each position's expert, and
 * a trade counts only if afterwards neither GPU holds an expert twice; the
 * restore of SPEC 11.5 is this search with a stop load (eplb_block_refine's
 * stop_at). The functions that weigh, allow and apply one trade are
 * __host__ __device__, so that a program on the host can replay the search
 * and compare it with the cpu backend's without a GPU. */
#ifndef EPLB_CUDA_REFINE_CUH
#define EPLB_CUDA_REFINE_CUH

#include "cuda_float_rn.cuh"
#include "cuda_teams.cuh"

/* One row as the search sees it: GPU g's slot at position r is
 * content[g*k + r], that slot's load t[g*k + r]; load[g] is GPU g's load.
 * With distinct, item[g*k + r] is that slot's expert (phy2mlog); without it
 * item is NULL, which is what a row initialized without it gets. */
struct eplb_cuda_refine_row {
    uint32_t m, k;
    int32_t *content;
    float *t;
    float *load;
    int32_t *item;
};

/* The block's shared words: each warp's best trade, and the verdict of the
 * thread that applied the chosen one. */
struct eplb_cuda_refine_votes {
    uint32_t key[32];
    unsigned long long index[32];
    int stop;
};

/* No trade (or no finite peak): above the key of every finite peak. */
#define EPLB_CUDA_REFINE_NONE 0xFFFFFFFFu

/* SPEC 10.2: the larger of the two new loads, one float32 operation at a
 * time. The conditional form matches the cpu backend's, also for an infinite
 * d (it then yields the infinite load, which never wins). */
static __host__ __device__ __forceinline__ float eplb_cuda_trade_peak(float a_load, float b_load,
                                                                      float give_a, float give_b)
{
    const float d = eplb_cuda_sub_rn(give_a, give_b);
    const float new_a = eplb_cuda_sub_rn(a_load, d), new_b = eplb_cuda_add_rn(b_load, d);
    return new_a > new_b ? new_a : new_b;
}

/* GPU g's load: its slot loads summed left to right in position order. */
static __host__ __device__ __forceinline__ float eplb_cuda_refine_gpu_load(const float *t,
                                                                           uint32_t g, uint32_t k)
{
    const float *slots = t + (size_t)g * k;
    float sum = slots[0];
    for (uint32_t r = 1; r < k; r++)
        sum = eplb_cuda_add_rn(sum, slots[r]);
    return sum;
}

/* The positions (lo, hi) of pair i, pairs in lexicographic order. */
template <class Index>
static __host__ __device__ __forceinline__ void eplb_cuda_pair_of(Index i, uint32_t k,
                                                                  uint32_t *lo, uint32_t *hi)
{
    uint32_t first = 0;
    while (i >= (Index)(k - 1 - first)) {
        i -= (Index)(k - 1 - first);
        first++;
    }
    *lo = first;
    *hi = first + 1 + (uint32_t)i;
}

/* The heaviest GPU of the row, the lowest index among equals, in every lane
 * of the calling warp. Keys keep -0 == +0. */
static __device__ __forceinline__ uint32_t eplb_cuda_heaviest_gpu(const float *load, uint32_t m,
                                                                  uint32_t lane)
{
    uint32_t best_key = 0, best = 0xFFFFFFFFu;
    for (uint32_t g = lane; g < m; g += 32) {
        const uint32_t key = eplb_cuda_ordered_bits(load[g]);
        if (best == 0xFFFFFFFFu || key > best_key) {
            best_key = key;
            best = g;
        }
    }
    const uint32_t top = eplb_warp_reduce<true>(best_key);
    return eplb_warp_reduce<false>(best != 0xFFFFFFFFu && best_key == top ? best : 0xFFFFFFFFu);
}

/* The warp's smallest (key, index), lexicographically, in every lane. */
template <class Index>
static __device__ __forceinline__ void eplb_cuda_refine_warp_min(uint32_t *key, Index *index)
{
    const uint32_t best_key = eplb_warp_reduce<false>(*key);
    const bool mine = *key == best_key;
    Index best_index;
    if (sizeof(Index) == 4) {
        best_index = (Index)eplb_warp_reduce<false>(mine ? (uint32_t)*index : 0xFFFFFFFFu);
    } else {
        const uint32_t hi = eplb_warp_reduce<false>(mine ? (uint32_t)((uint64_t)*index >> 32)
                                                         : 0xFFFFFFFFu);
        const uint32_t lo = eplb_warp_reduce<false>(
            mine && (uint32_t)((uint64_t)*index >> 32) == hi ? (uint32_t)*index : 0xFFFFFFFFu);
        best_index = (Index)(((uint64_t)hi << 32) | lo);
    }
    *key = best_key;
    *index = best_index;
}

/* One unit of the weighing: partner b's slot `lo` (one-for-one) or pair
 * (lo, hi) (two-for-two) against every slot or every pair of A, in trade
 * order. Trades are numbered in trade order: one-for-one (b, sa, sb) at
 * (b*k + sa)*k + sb, then two-for-two (b, i, j) at m*k*k + (b*P + i)*P + j
 * (pairs i of A and j of B in lexicographic order, P of them); b runs over
 * every GPU, and the units of b == A are passed over. A unit's trades are
 * first, first + step, ...: the same entry of B against each of A's in turn.
 *
 * Why B's entry and not A's: every lane of a warp then reads the same entry
 * of A at a time (one shared-memory read for the whole warp). The two-for-two
 * units start at a multiple of 32 (eplb_cuda_refine_pair_base), so that no
 * warp's lanes split between the two kinds. */
template <class Index>
struct eplb_cuda_refine_unit {
    Index first;   /* the unit's first trade number, less partner * per_partner */
    uint32_t step; /* k (one-for-one) or P (two-for-two) */
    uint32_t per_partner; /* k*k or P*P: a partner's trades of the unit's kind */
    uint32_t b;    /* the partner's rank among the GPUs other than A; 0xFFFFFFFF: no unit */
    uint32_t lo, hi;
    bool pair;
};

/* Where the two-for-two units start: the one-for-one units (b, sb) come
 * first, (m-1)*k of them (the partners are the GPUs other than A, numbered
 * without A so that no thread weighs A's units for nothing), and the
 * two-for-two units (b, j) from the next multiple of 32, so that no warp
 * weighs both kinds in one round. */
template <class Index>
static __host__ __device__ __forceinline__ Index eplb_cuda_refine_pair_base(uint32_t m, uint32_t k)
{
    return ((Index)(m - 1) * k + 31) / 32 * 32;
}

/* How many unit numbers a row has, the gap before the two-for-two units
 * included (eplb_cuda_refine_unit_of gives no unit there). */
template <class Index>
static __host__ __device__ __forceinline__ Index eplb_cuda_refine_units(uint32_t m, uint32_t k)
{
    return eplb_cuda_refine_pair_base<Index>(m, k) + (Index)(m - 1) * ((Index)k * (k - 1) / 2);
}

/* Unit u: one-for-one units (b, sb) first, then two-for-two units (b, j). */
template <class Index>
static __host__ __device__ __forceinline__ eplb_cuda_refine_unit<Index> eplb_cuda_refine_unit_of(
    Index u, uint32_t m, uint32_t k)
{
    const Index pairs = (Index)k * (k - 1) / 2, one_units = (Index)(m - 1) * k;
    const Index pair_base = eplb_cuda_refine_pair_base<Index>(m, k);
    eplb_cuda_refine_unit<Index> unit;
    if (u < one_units) {
        unit.b = (uint32_t)(u / k);
        unit.lo = unit.hi = (uint32_t)(u - (Index)unit.b * k);
        unit.pair = false;
        unit.step = k;
        unit.per_partner = k * k;
        unit.first = unit.lo;
    } else if (u >= pair_base && u - pair_base < (Index)(m - 1) * pairs) {
        const Index v = u - pair_base;
        unit.b = (uint32_t)(v / pairs);
        const Index j = v - (Index)unit.b * pairs;
        eplb_cuda_pair_of<Index>(j, k, &unit.lo, &unit.hi);
        unit.pair = true;
        unit.step = (uint32_t)pairs;
        unit.per_partner = (uint32_t)(pairs * pairs);
        unit.first = (Index)m * k * k + j;
    } else {
        unit.b = 0xFFFFFFFFu;
        unit.lo = unit.hi = 0;
        unit.pair = false;
        unit.step = 0;
        unit.per_partner = 0;
        unit.first = 0;
    }
    return unit;
}

/* Whether GPU g's experts (items_g, k of them), giving its positions
 * give[0..count-1] away and taking experts take[0..count-1], still hold no
 * expert twice. Every GPU holds each expert at most once when the search
 * starts (the repair saw to it) and after each kept trade, and the taken
 * experts come from one such GPU, so only a kept expert equal to a taken
 * one could repeat. */
static __host__ __device__ __forceinline__ bool eplb_cuda_stays_distinct(
    const int32_t *items_g, uint32_t k, const uint32_t *give, const int32_t *take,
    uint32_t count)
{
    for (uint32_t r = 0; r < k; r++) {
        if (r == give[0] || (count == 2 && r == give[1]))
            continue;
        if (items_g[r] == take[0] || (count == 2 && items_g[r] == take[1]))
            return false;
    }
    return true;
}

/* SPEC 11.6: whether the trade of A's positions a_pos with B's b_pos (count
 * of each) leaves neither GPU holding an expert twice. Always true without
 * distinct (row.item NULL). */
static __host__ __device__ __forceinline__ bool eplb_cuda_refine_allowed(
    const eplb_cuda_refine_row &row, uint32_t a, uint32_t b, const uint32_t *a_pos,
    const uint32_t *b_pos, uint32_t count)
{
    if (!row.item)
        return true;
    const uint32_t k = row.k;
    const int32_t *items_a = row.item + (size_t)a * k, *items_b = row.item + (size_t)b * k;
    const int32_t from_a[2] = {items_a[a_pos[0]], items_a[a_pos[count - 1]]};
    const int32_t from_b[2] = {items_b[b_pos[0]], items_b[b_pos[count - 1]]};
    return eplb_cuda_stays_distinct(items_a, k, a_pos, from_b, count) &&
           eplb_cuda_stays_distinct(items_b, k, b_pos, from_a, count);
}

/* Weighs the trades of one unit into (best, chosen): the unit's first
 * smallest finite peak (its trades come in ascending trade order, so a strict
 * "<" keeps the first of equal peaks), kept if it comes before (best,
 * chosen) in the order (peak, trade number). A thread's units may interleave
 * in trade order (two units of one partner), hence the whole order there. A
 * NaN or infinite peak never passes "< +inf". With distinct, a trade that
 * SPEC 11.6 rules out is passed over, tested only when its peak would be
 * kept. */
template <class Index>
static __host__ __device__ __forceinline__ void eplb_cuda_refine_weigh_unit(
    const eplb_cuda_refine_row &row, const eplb_cuda_refine_unit<Index> &unit, uint32_t a,
    float a_load, float *best, Index *chosen)
{
    if (unit.b >= row.m - 1)
        return;
    const uint32_t b = unit.b + (unit.b >= a ? 1u : 0u), k = row.k;
    const float *t_a = row.t + (size_t)a * k, *t_b = row.t + (size_t)b * k;
    const float b_load = row.load[b];
    const uint32_t b_pos[2] = {unit.lo, unit.hi};
    float unit_best = INFINITY;
    Index unit_chosen = 0, index = unit.first + (Index)b * unit.per_partner;
    if (!unit.pair) {
        const float give_b = t_b[unit.lo];
        for (uint32_t sa = 0; sa < k; sa++, index += unit.step) {
            const float peak = eplb_cuda_trade_peak(a_load, b_load, t_a[sa], give_b);
            const uint32_t a_pos[2] = {sa, sa};
            if (peak < unit_best && eplb_cuda_refine_allowed(row, a, b, a_pos, b_pos, 1)) {
                unit_best = peak;
                unit_chosen = index;
            }
        }
    } else {
        const float give_b = eplb_cuda_add_rn(t_b[unit.lo], t_b[unit.hi]);
        for (uint32_t lo_a = 0; lo_a + 1 < k; lo_a++) {
            const float first = t_a[lo_a];
            for (uint32_t hi_a = lo_a + 1; hi_a < k; hi_a++, index += unit.step) {
                const float peak = eplb_cuda_trade_peak(
                    a_load, b_load, eplb_cuda_add_rn(first, t_a[hi_a]), give_b);
                const uint32_t a_pos[2] = {lo_a, hi_a};
                if (peak < unit_best &&
                    eplb_cuda_refine_allowed(row, a, b, a_pos, b_pos, 2)) {
                    unit_best = peak;
                    unit_chosen = index;
                }
            }
        }
    }
    if (unit_best < *best || (unit_best == *best && unit_best < INFINITY && unit_chosen < *chosen)) {
        *best = unit_best;
        *chosen = unit_chosen;
    }
}

/* This thread's best trade of A among its units: `mine` (unit threadIdx.x,
 * decoded once per row, since the units a thread weighs do not change from
 * one iteration to the next), then every blockDim.x-th unit after it. */
template <class Index>
static __device__ __forceinline__ void eplb_cuda_refine_weigh(
    const eplb_cuda_refine_row &row, const eplb_cuda_refine_unit<Index> &mine, uint32_t a,
    float a_load, float *best_peak, Index *best_index)
{
    const Index units = eplb_cuda_refine_units<Index>(row.m, row.k);
    float best = INFINITY;
    Index chosen = 0;
    eplb_cuda_refine_weigh_unit<Index>(row, mine, a, a_load, &best, &chosen);
    for (Index u = (Index)threadIdx.x + blockDim.x; u < units; u += blockDim.x)
        eplb_cuda_refine_weigh_unit<Index>(row, eplb_cuda_refine_unit_of<Index>(u, row.m, row.k),
                                           a, a_load, &best, &chosen);
    *best_peak = best;
    *best_index = chosen;
}

/* SPEC 10.3 steps 3 and 4 for the chosen trade, by one thread: the peak
 * again (the same operations), the tolerance test, then the exchange and the
 * recomputed loads of A and B, undone when the larger is not below A's old
 * load. Returns whether the row goes on. */
template <class Index>
static __host__ __device__ bool eplb_cuda_refine_apply(const eplb_cuda_refine_row &row,
                                                       uint32_t a, float a_load, Index index,
                                                       float tolerance)
{
    const uint32_t k = row.k;
    const Index m = row.m, pairs = (Index)k * (k - 1) / 2, ones = m * k * k;
    uint32_t b, a_pos[2] = {0, 0}, b_pos[2] = {0, 0}, count;
    if (index < ones) {
        b = (uint32_t)(index / ((Index)k * k));
        const Index rest = index - (Index)b * k * k;
        a_pos[0] = (uint32_t)(rest / k);
        b_pos[0] = (uint32_t)(rest - (Index)a_pos[0] * k);
        count = 1;
    } else {
        const Index j = index - ones, per_b = pairs * pairs;
        b = (uint32_t)(j / per_b);
        const Index rest = j - (Index)b * per_b, i = rest / pairs;
        eplb_cuda_pair_of<Index>(i, k, &a_pos[0], &a_pos[1]);
        eplb_cuda_pair_of<Index>(rest - i * pairs, k, &b_pos[0], &b_pos[1]);
        count = 2;
    }
    float *t_a = row.t + (size_t)a * k, *t_b = row.t + (size_t)b * k;
    int32_t *c_a = row.content + (size_t)a * k, *c_b = row.content + (size_t)b * k;
    const float give_a =
        count == 1 ? t_a[a_pos[0]] : eplb_cuda_add_rn(t_a[a_pos[0]], t_a[a_pos[1]]);
    const float give_b =
        count == 1 ? t_b[b_pos[0]] : eplb_cuda_add_rn(t_b[b_pos[0]], t_b[b_pos[1]]);
    const float peak = eplb_cuda_trade_peak(a_load, row.load[b], give_a, give_b);
    if (!(eplb_cuda_sub_rn(a_load, peak) > tolerance))
        return false;
    int32_t *i_a = row.item ? row.item + (size_t)a * k : NULL;
    int32_t *i_b = row.item ? row.item + (size_t)b * k : NULL;
    /* Applied twice, the exchange undoes itself. */
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t s = 0; s < count; s++) {
            const float t = t_a[a_pos[s]];
            t_a[a_pos[s]] = t_b[b_pos[s]];
            t_b[b_pos[s]] = t;
            const int32_t q = c_a[a_pos[s]];
            c_a[a_pos[s]] = c_b[b_pos[s]];
            c_b[b_pos[s]] = q;
            if (i_a) {
                const int32_t e = i_a[a_pos[s]];
                i_a[a_pos[s]] = i_b[b_pos[s]];
                i_b[b_pos[s]] = e;
            }
        }
        if (pass == 1)
            return false;
        const float new_a = eplb_cuda_refine_gpu_load(row.t, a, k);
        const float new_b = eplb_cuda_refine_gpu_load(row.t, b, k);
        /* The peak was an estimate; the recomputed loads decide, so refine
         * never raises the row's maximum. */
        if (!((new_a > new_b ? new_a : new_b) >= a_load)) {
            row.load[a] = new_a;
            row.load[b] = new_b;
            return true;
        }
    }
    return false;
}

/* Up to refine trades on one row (SPEC 10.3), by the whole block. row.load
 * must hold the GPU loads and every thread must see the row (a barrier
 * before the call); on return the row holds the final placement and the
 * block has passed a barrier. Index: an unsigned type that numbers every
 * trade, m*(k^2 + (k(k-1)/2)^2) of them. The row also stops once its
 * heaviest GPU is no heavier than stop_at (SPEC 11.5's M0 in the restore;
 * -inf, never, otherwise). */
template <class Index>
static __device__ void eplb_block_refine(const eplb_cuda_refine_row &row, int32_t refine,
                                         float tolerance, eplb_cuda_refine_votes *votes,
                                         float stop_at = -INFINITY)
{
    const uint32_t lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const uint32_t warps = (blockDim.x + 31u) / 32u;
    const eplb_cuda_refine_unit<Index> mine =
        eplb_cuda_refine_unit_of<Index>((Index)threadIdx.x, row.m, row.k);
    for (int32_t iteration = 0; iteration < refine; iteration++) {
        const uint32_t a = eplb_cuda_heaviest_gpu(row.load, row.m, lane);
        const float a_load = row.load[a];
        if (isinf(a_load) || a_load <= stop_at)
            break;
        float peak;
        Index index;
        eplb_cuda_refine_weigh<Index>(row, mine, a, a_load, &peak, &index);
        uint32_t key = peak < INFINITY ? eplb_cuda_ordered_bits(peak) : EPLB_CUDA_REFINE_NONE;
        eplb_cuda_refine_warp_min<Index>(&key, &index);
        if (lane == 0) {
            votes->key[warp] = key;
            votes->index[warp] = index;
        }
        __syncthreads();
        if (warp == 0) {
            key = lane < warps ? votes->key[lane] : EPLB_CUDA_REFINE_NONE;
            index = lane < warps ? (Index)votes->index[lane] : (Index)0;
            eplb_cuda_refine_warp_min<Index>(&key, &index);
            if (lane == 0)
                votes->stop = key == EPLB_CUDA_REFINE_NONE ||
                              !eplb_cuda_refine_apply<Index>(row, a, a_load, index, tolerance);
        }
        __syncthreads();
        if (votes->stop)
            break;
    }
}

eplb_status eplb_cuda_refine(eplb_backend *backend, const eplb_plan_job *job);

#endif
