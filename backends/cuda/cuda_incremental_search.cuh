/* The swap search of docs/spec.md section 13.5 on the device: one block per
 * search, the same trades, keys, float32 sums and stops as the host's
 * eplb_domain_search (src/incremental_search.c), so that both plan the same
 * bits.
 *
 * A step of the search is three phases between block barriers:
 *
 * 1. Every warp finds the heaviest GPU A on its own (no barrier needed for
 *    it), the stops are checked, and the block fills the step's tables of
 *    excess (held - base): each slot's expert on A, and each of A's experts
 *    on every GPU, from which each single trade's cost is two lookups.
 * 2. The block weighs the single trades, each thread its share of them, and
 *    reduces (key, order) to the smallest through one 64-bit word per thread
 *    (the key in the upper bits, the trade's place in the spec's order in the
 *    lower ones), so that the tie rule "first in order" is the minimum
 *    itself. The warp holding the winner posts the trade's slots and their
 *    contents after the trade, so that nobody reads the slots while they
 *    are written. Only with no single trade are the double trades weighed,
 *    in the same way.
 * 3. One thread writes the trade; two warps recompute A's and B's loads
 *    (each GPU's slot loads ranked, then summed in ascending order from +0),
 *    and the other threads each slot's own excess on A and B, all reading
 *    the slots as the posted trade leaves them.
 *
 * Every function here compiles for the host too (the CUDA names it uses are
 * then the includer's: tests/host_cuda_incremental_search.cpp runs the block
 * on host threads and compares it with the host search). The kernel and its
 * launcher are in cuda_incremental_search.cu and declared at the end, for
 * nvcc only. */
#ifndef EPLB_CUDA_INCREMENTAL_SEARCH_CUH
#define EPLB_CUDA_INCREMENTAL_SEARCH_CUH

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cuda_float_rn.cuh"

/* One batch of independent domain searches (SPEC 13.5), all arrays in device
 * memory. */
struct eplb_cuda_search_batch {
    int32_t searches;      /* how many searches */
    int32_t domain_slots;  /* dn: slots of each search's domain (a multiple of
                              slots_per_gpu) */
    int32_t slots_per_gpu; /* spg */
    int32_t experts;       /* E: expert ids are 0..E-1 */
    const int32_t *base;   /* [searches][dn] the previous plan's experts on the
                              domain's slots */
    int32_t *cur;          /* [searches][dn] in: the start placement's experts; out: the
                              result */
    float *u;              /* [searches][dn] in: the start's slot loads; out: permuted with cur */
    const float *target;   /* [searches] T */
    const int32_t *limit;  /* [searches] the moves limit (moves of the domain in rel) */
    int32_t *moved;        /* [searches] in: the start's moves (against base); out: the
                              result's */
    int32_t *met;          /* [searches] out: 1 if the search met the target, else 0 */
};

/* The most threads of a search's block (the kernel's launch bound): the
 * planner's domains have a few hundred to a thousand single trades a step,
 * a handful per thread at this width, while wider blocks pay more for each
 * barrier and reduction than they save. */
#ifndef EPLB_CUDA_SEARCH_THREADS_MAX /* a compile-time override, to time other                     \
                                        widths */
#define EPLB_CUDA_SEARCH_THREADS_MAX 256
#endif

/* No candidate trade: above every key, which has class 2 at most. */
#define EPLB_SEARCH_NO_TRADE UINT64_MAX

/* A key as the host's trade_key builds it (src/incremental_search.h), with
 * the class moved down next to the cost's field: the bits it skips are zero
 * on the host, so the order is the same, and the bits left below free hold
 * the trade's order. */
#define EPLB_SEARCH_CLASS_SHIFT 36

/* The bits of a trade's place in the spec's order below the key: a batch
 * whose single or double trades are more than this many is refused. */
#define EPLB_SEARCH_ORDER_BITS 26
#define EPLB_SEARCH_ORDER_MASK ((UINT64_C(1) << EPLB_SEARCH_ORDER_BITS) - 1)

/* Called once per double-trade step (the host test counts them). */
#ifndef EPLB_SEARCH_ON_DOUBLE
#define EPLB_SEARCH_ON_DOUBLE()
#endif

/* ---- float32 in the spec's order -------------------------------------------
 */

/* The host's float_order: float32 onto uint32 in the same order (NaN aside). */
static __host__ __device__ __forceinline__ uint32_t eplb_search_float_order(float v)
{
    uint32_t bits;
#ifdef __CUDA_ARCH__
    bits = __float_as_uint(v);
#else
    memcpy(&bits, &v, sizeof bits);
#endif
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

/* ---- keys ------------------------------------------------------------------
 */

/* The host's near_key: classes 0 (A done) and 1 (A lighter) by cost, then
 * value; value + 0 turns -0 into +0, which compare equal. */
static __host__ __device__ __forceinline__ uint64_t eplb_search_near_key(int cls, int cost,
                                                                         float value)
{
    return (uint64_t)cls << EPLB_SEARCH_CLASS_SHIFT | (uint64_t)(cost + 8) << 32 |
           eplb_search_float_order(eplb_cuda_add_rn(value, 0.0f));
}

/* The host's change_key: class 2 by the change of the sum of squares, then
 * cost. */
static __host__ __device__ __forceinline__ uint64_t eplb_search_change_key(int cost, float change)
{
    return (uint64_t)2 << EPLB_SEARCH_CLASS_SHIFT | (uint64_t)eplb_search_float_order(change) << 4 |
           (uint64_t)(cost + 8);
}

static __host__ __device__ __forceinline__ int eplb_search_key_class(uint64_t key)
{
    return (int)(key >> EPLB_SEARCH_CLASS_SHIFT);
}

static __host__ __device__ __forceinline__ int eplb_search_key_cost(uint64_t key)
{
    return eplb_search_key_class(key) < 2 ? (int)(key >> 32 & 15) - 8 : (int)(key & 15) - 8;
}

/* The host's trade_key: A gives `give` and takes `take`, all float32 in SPEC
 * 13.5's order; new_a = (load_a - give) + take comes as a_without_give +
 * take, gap = load_a - load_b. EPLB_SEARCH_NO_TRADE when the trade is no
 * candidate. */
static __host__ __device__ __forceinline__ uint64_t eplb_search_trade_key(float a_without_give,
                                                                          float load_b, float gap,
                                                                          float give, float take,
                                                                          float target, int cost)
{
    const float new_b = eplb_cuda_add_rn(eplb_cuda_sub_rn(load_b, take), give);
    if (new_b <= target) {
        const float new_a = eplb_cuda_add_rn(a_without_give, take);
        if (new_a <= target)
            return eplb_search_near_key(0, cost, new_a > new_b ? new_a : new_b);
        return eplb_search_near_key(1, cost, new_a);
    }
    const float d = eplb_cuda_sub_rn(give, take);
    const float change = eplb_cuda_mul_rn(eplb_cuda_mul_rn(2.0f, d), eplb_cuda_sub_rn(d, gap));
    return change < 0.0f ? eplb_search_change_key(cost, change) : EPLB_SEARCH_NO_TRADE;
}

/* The key with its cost field at its least: no cost takes a trade below it. */
static __host__ __device__ __forceinline__ uint64_t eplb_search_key_floor(uint64_t key)
{
    return key & ~(eplb_search_key_class(key) < 2 ? (uint64_t)15 << 32 : (uint64_t)15);
}

static __host__ __device__ __forceinline__ int eplb_search_max0(int v)
{
    return v > 0 ? v : 0;
}

/* The host's eplb_search_double_cost: the change of the domain's moves when
 * A's experts a[0], a[1] and B's b[0], b[1] trade GPUs (a[i] with b[i]),
 * from each one's excess (held - base) before the trade on A and on B. Equal
 * experts are merged, so that each (GPU, expert) counts once with its net
 * change. */
static __host__ __device__ __forceinline__ int
eplb_search_double_cost(const int32_t a[2], const int32_t b[2], const int32_t a_on_a[2],
                        const int32_t a_on_b[2], const int32_t b_on_b[2], const int32_t b_on_a[2])
{
    int32_t gpu[8], expert[8], delta[8], before[8];
    for (int i = 0; i < 2; i++) {
        gpu[4 * i] = 0, expert[4 * i] = a[i], delta[4 * i] = -1, before[4 * i] = a_on_a[i];
        gpu[4 * i + 1] = 1, expert[4 * i + 1] = a[i], delta[4 * i + 1] = 1;
        before[4 * i + 1] = a_on_b[i];
        gpu[4 * i + 2] = 1, expert[4 * i + 2] = b[i], delta[4 * i + 2] = -1;
        before[4 * i + 2] = b_on_b[i];
        gpu[4 * i + 3] = 0, expert[4 * i + 3] = b[i], delta[4 * i + 3] = 1;
        before[4 * i + 3] = b_on_a[i];
    }
    int cost = 0;
    for (int i = 0; i < 8; i++) {
        int seen = 0, net = 0;
        for (int j = 0; j < 8; j++)
            if (gpu[j] == gpu[i] && expert[j] == expert[i]) {
                seen |= j < i;
                net += delta[j];
            }
        if (!seen)
            cost += eplb_search_max0(before[i] + net) - eplb_search_max0(before[i]);
    }
    return cost;
}

/* The slots (lo, hi) of pair `index` of a GPU's spg slots, pairs in
 * lexicographic order. */
static __host__ __device__ __forceinline__ void eplb_search_pair_of(int index, int spg, int *lo,
                                                                    int *hi)
{
    int first = 0;
    while (index >= spg - 1 - first) {
        index -= spg - 1 - first;
        first++;
    }
    *lo = first;
    *hi = first + 1 + index;
}

/* ---- the block's memory
 * ------------------------------------------------------ */

/* A warp's best trade: its key (EPLB_SEARCH_NO_TRADE when none), and the
 * slots it changes (A's, then B's) with what they hold after it. */
struct eplb_search_vote {
    uint64_t key;
    int32_t slot[4];
    int32_t expert[4];
    float load[4];
};

/* The search's working memory, in the block's shared memory. */
struct eplb_search_memory {
    eplb_search_vote *votes; /* [2][warps]: single trades, then double trades */
    int32_t *cur, *base;     /* [dn] each slot's expert now and in the previous plan */
    float *u;                /* [dn] each slot's load */
    int32_t *own_excess;     /* [dn] held - base of the slot's expert on its own GPU */
    int32_t *on_a;           /* [dn] held - base of the slot's expert on the step's A */
    int32_t *arrival;        /* [dn] the cost of the slot's expert leaving its GPU for A */
    int32_t *away;           /* [spg][gpus] held - base of A's slot i's expert on GPU B */
    int32_t *departure;      /* [spg][gpus] the cost of A's slot i's expert leaving A
                                for B */
    float *load;             /* [gpus] each GPU's load (SPEC 13.2) */
    float *sorted;           /* [max(dn, 2 * spg)] slot loads in ascending order, per GPU */
};

static __host__ __device__ __forceinline__ size_t eplb_search_sorted_count(int dn, int spg)
{
    return (size_t)(dn > 2 * spg ? dn : 2 * spg);
}

/* The bytes of eplb_search_memory for a domain of dn slots, spg per GPU, and
 * a block of `threads`. */
static __host__ __device__ __forceinline__ size_t eplb_search_memory_bytes(int dn, int spg,
                                                                           int threads)
{
    const size_t warps = (size_t)(threads + 31) / 32;
    return 2 * warps * sizeof(eplb_search_vote) + 8 * (size_t)dn * sizeof(int32_t) +
           (size_t)(dn / spg) * sizeof(float) + eplb_search_sorted_count(dn, spg) * sizeof(float);
}

/* eplb_search_memory laid out from `at` (8-byte aligned). */
static __host__ __device__ __forceinline__ eplb_search_memory
eplb_search_memory_at(unsigned char *at, int dn, int spg, int threads)
{
    eplb_search_memory m;
    const size_t warps = (size_t)(threads + 31) / 32;
    m.votes = (eplb_search_vote *)at;
    int32_t *words = (int32_t *)(at + 2 * warps * sizeof(eplb_search_vote));
    m.cur = words;
    m.base = words + dn;
    m.u = (float *)(words + 2 * (size_t)dn);
    m.own_excess = words + 3 * (size_t)dn;
    m.on_a = words + 4 * (size_t)dn;
    m.arrival = words + 5 * (size_t)dn;
    m.away = words + 6 * (size_t)dn;
    m.departure = words + 7 * (size_t)dn;
    m.load = (float *)(words + 8 * (size_t)dn);
    m.sorted = m.load + dn / spg;
    return m;
}

/* The block width the launcher picks: enough threads for the step's tables
 * (2 * dn entries) and single trades (spg * dn), up to the launch bound. */
static __host__ __device__ __forceinline__ int eplb_cuda_search_threads(int dn, int spg)
{
    const int64_t work = (int64_t)dn * (spg > 2 ? spg : 2);
    const int64_t threads = (work + 31) / 32 * 32;
    return threads < EPLB_CUDA_SEARCH_THREADS_MAX ? (int)threads : EPLB_CUDA_SEARCH_THREADS_MAX;
}

/* The most single and double trades of a step, each numbered in the order
 * of SPEC 13.5 (the double trades over every GPU, A's own included): a batch
 * is taken when both fit in EPLB_SEARCH_ORDER_BITS. */
static __host__ __device__ __forceinline__ int eplb_search_orders_fit(int dn, int spg)
{
    const int64_t pairs = (int64_t)spg * (spg - 1) / 2;
    const int64_t limit = (int64_t)1 << EPLB_SEARCH_ORDER_BITS;
    return (int64_t)spg * dn <= limit && (int64_t)(dn / spg) * pairs * pairs <= limit;
}

/* ---- warp collectives
 * -------------------------------------------------------- */

static __device__ __forceinline__ uint32_t eplb_search_warp_min(uint32_t v)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    for (int offset = 16; offset > 0; offset >>= 1) {
        const uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
        v = o < v ? o : v;
    }
    return v;
#else
    return __reduce_min_sync(0xFFFFFFFFu, v);
#endif
}

static __device__ __forceinline__ uint32_t eplb_search_warp_max(uint32_t v)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    for (int offset = 16; offset > 0; offset >>= 1) {
        const uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
        v = o > v ? o : v;
    }
    return v;
#else
    return __reduce_max_sync(0xFFFFFFFFu, v);
#endif
}

/* The warp's smallest 64-bit value, in every lane: upper words first, then
 * the lower words of the lanes holding the smallest upper word. */
static __device__ __forceinline__ uint64_t eplb_search_warp_min64(uint64_t v)
{
    const uint32_t high = eplb_search_warp_min((uint32_t)(v >> 32));
    const uint32_t low =
        eplb_search_warp_min((uint32_t)(v >> 32) == high ? (uint32_t)v : 0xFFFFFFFFu);
    return (uint64_t)high << 32 | low;
}

/* The heaviest GPU (ties: the lowest), in every lane of the calling warp;
 * each warp finds it on its own, so that no barrier is spent on it. Loads
 * plus 0 make -0 and +0 the same key, as they compare equal. */
static __device__ __forceinline__ int eplb_search_heaviest(const float *load, int gpus,
                                                           unsigned lane)
{
    uint32_t best_key = 0, best = 0xFFFFFFFFu;
    for (int g = (int)lane; g < gpus; g += 32) {
        const uint32_t key = eplb_search_float_order(eplb_cuda_add_rn(load[g], 0.0f));
        if (best == 0xFFFFFFFFu || key > best_key) {
            best_key = key;
            best = (uint32_t)g;
        }
    }
    const uint32_t top = eplb_search_warp_max(best_key);
    return (int)eplb_search_warp_min(best != 0xFFFFFFFFu && best_key == top ? best : 0xFFFFFFFFu);
}

/* ---- the trade a step applies
 * ---------------------------------------------------- */

/* The chosen trade as every thread holds it: its key (with its order), n
 * slots (2 or 4) and what each holds after the trade. The slots past n are
 * -1, so that the lookups below run over all four with fixed indices and
 * the trade stays in registers. */
struct eplb_search_trade {
    uint64_t key;
    int n;
    int32_t slot[4];
    int32_t expert[4];
    float load[4];
};

/* Slot q's expert (of cur) or load (of u) after the trade, without reading
 * a slot the trade writes (one thread writes them meanwhile): the trade's
 * own value where it writes q, the last of the four where several match. */
template <class T>
static __device__ __forceinline__ T eplb_search_after(const int32_t (&slot)[4], const T (&value)[4],
                                                      const T *now, int q)
{
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int k = 3; k >= 0; k--)
        if (q == slot[k])
            return value[k];
    return now[q];
}

/* The smallest vote of the block's warps (the order makes keys distinct, so
 * the smallest is one trade); its key is EPLB_SEARCH_NO_TRADE when no warp
 * has one. */
static __device__ __forceinline__ eplb_search_trade
eplb_search_read_votes(const eplb_search_vote *votes, int warps, int n)
{
    uint64_t best = EPLB_SEARCH_NO_TRADE;
    int from = 0;
    for (int w = 0; w < warps; w++)
        if (votes[w].key < best) {
            best = votes[w].key;
            from = w;
        }
    eplb_search_trade trade;
    trade.key = best;
    trade.n = n;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int k = 0; k < 4; k++) {
        trade.slot[k] = k < n ? votes[from].slot[k] : -1;
        trade.expert[k] = votes[from].expert[k];
        trade.load[k] = votes[from].load[k];
    }
    return trade;
}

/* Posts the warp's smallest (key, order) of `mine`: lane 0 its key, the lane
 * holding it the trade (from its order, by `describe`). */
template <class Describe>
static __device__ __forceinline__ void eplb_search_post(eplb_search_vote *vote, uint64_t mine,
                                                        unsigned lane, const Describe &describe)
{
    const uint64_t best = eplb_search_warp_min64(mine);
    if (lane == 0)
        vote->key = best;
    if (best != EPLB_SEARCH_NO_TRADE && mine == best)
        describe(vote, (int)(best & EPLB_SEARCH_ORDER_MASK));
}

/* ---- the search
 * ------------------------------------------------------------------ */

/* SPEC 13.5 for search `search` of the batch by the whole calling block
 * (blockDim.x a multiple of 32, at most 1024), in `shared`
 * (eplb_search_memory_bytes of the batch's shape and the block's width):
 * eplb_domain_search of the host, bit for bit. */
static __device__ void eplb_block_domain_search(const eplb_cuda_search_batch &batch, int32_t search,
                                                unsigned char *shared)
{
    const int dn = batch.domain_slots, spg = batch.slots_per_gpu, gpus = dn / spg;
    const int t = (int)threadIdx.x, threads = (int)blockDim.x, warps = threads / 32;
    const unsigned lane = threadIdx.x & 31u;
    const int warp = t / 32;
    const eplb_search_memory m = eplb_search_memory_at(shared, dn, spg, threads);
    const size_t first = (size_t)search * (size_t)dn;
    const float target = batch.target[search];
    const int32_t limit = batch.limit[search];
    int32_t moved = batch.moved[search];

    for (int q = t; q < dn; q += threads) {
        m.cur[q] = batch.cur[first + q];
        m.base[q] = batch.base[first + q];
        m.u[q] = batch.u[first + q];
    }
    __syncthreads();
    /* Each slot's own excess, and its load's rank on its GPU (ties by slot),
     * so that the GPU loads are sums in ascending order. */
    for (int q = t; q < dn; q += threads) {
        const int g0 = q - q % spg;
        const int32_t e = m.cur[q];
        const float v = m.u[q];
        int excess = 0, rank = 0;
        for (int j = g0; j < g0 + spg; j++) {
            excess += (m.cur[j] == e) - (m.base[j] == e);
            rank += m.u[j] < v || (m.u[j] == v && j < q);
        }
        m.own_excess[q] = excess;
        m.sorted[g0 + rank] = v;
    }
    __syncthreads();
    for (int g = t; g < gpus; g += threads) {
        float sum = 0.0f;
        for (int r = 0; r < spg; r++)
            sum = eplb_cuda_add_rn(sum, m.sorted[g * spg + r]);
        m.load[g] = sum;
    }
    __syncthreads();

    /* This thread's share of the single trades: trade i * dn + sb (A's slot
     * i with slot sb) for i * dn + sb = t, t + threads, ..., walked by
     * (i, sb, sb's GPU, sb's place on it) without a division per trade. */
    const int singles = spg * dn;
    const int step_i = threads / dn, step_slot = threads % dn;
    const int step_gpu = step_slot / spg, step_place = step_slot % spg;
    const int pairs = spg * (spg - 1) / 2;
    /* The own-excess refresh starts past the two warps that sum the loads. */
    const int refresh_rank = threads > 64 ? (t + threads - 64) % threads : t;

    int met = 0;
    for (int step = 0;; step++) {
        /* Phase 1: the stops, then the step's tables. */
        const int A = eplb_search_heaviest(m.load, gpus, lane);
        const float load_a = m.load[A];
        if (load_a <= target) {
            met = 1;
            break;
        }
        if (step == dn || moved > limit)
            break;
        const int a0 = A * spg;
        for (int k = t; k < 2 * dn; k += threads) {
            if (k < dn) {
                const int32_t e = m.cur[k];
                int excess = 0;
                for (int j = a0; j < a0 + spg; j++)
                    excess += (m.cur[j] == e) - (m.base[j] == e);
                m.on_a[k] = excess;
                m.arrival[k] = (excess >= 0) - (m.own_excess[k] > 0);
            } else {
                const int i = (k - dn) / gpus, B = (k - dn) - i * gpus;
                const int32_t e = m.cur[a0 + i];
                int excess = 0;
                for (int j = B * spg; j < (B + 1) * spg; j++)
                    excess += (m.cur[j] == e) - (m.base[j] == e);
                m.away[k - dn] = excess;
                m.departure[k - dn] = (excess >= 0) - (m.own_excess[a0 + i] > 0);
            }
        }
        __syncthreads();

        /* Phase 2: the best single trade (step 2). */
        uint64_t mine = EPLB_SEARCH_NO_TRADE;
        {
            int i = t / dn, sb = t % dn;
            int B = sb / spg, place = sb % spg;
            for (int p = t; p < singles; p += threads) {
                if (B != A) {
                    const float ua = m.u[a0 + i], ub = m.u[sb];
                    if (ua > ub) {
                        const float load_b = m.load[B];
                        const int cost = m.departure[i * gpus + B] + m.arrival[sb];
                        const uint64_t key = eplb_search_trade_key(
                            eplb_cuda_sub_rn(load_a, ua), load_b, eplb_cuda_sub_rn(load_a, load_b),
                            ua, ub, target, cost);
                        if (key != EPLB_SEARCH_NO_TRADE) {
                            const uint64_t full = key << EPLB_SEARCH_ORDER_BITS | (uint64_t)p;
                            mine = full < mine ? full : mine;
                        }
                    }
                }
                i += step_i;
                sb += step_slot;
                B += step_gpu;
                place += step_place;
                if (place >= spg) {
                    place -= spg;
                    B++;
                }
                if (sb >= dn) {
                    sb -= dn;
                    B -= gpus;
                    i++;
                }
            }
        }
        eplb_search_post(m.votes + warp, mine, lane, [&](eplb_search_vote *vote, int order) {
            const int sa = a0 + order / dn, sb = order % dn;
            vote->slot[0] = sa;
            vote->slot[1] = sb;
            vote->expert[0] = m.cur[sb];
            vote->expert[1] = m.cur[sa];
            vote->load[0] = m.u[sb];
            vote->load[1] = m.u[sa];
        });
        __syncthreads();
        eplb_search_trade trade = eplb_search_read_votes(m.votes, warps, 2);

        if (trade.key == EPLB_SEARCH_NO_TRADE) {
            /* Step 3: the double trades, numbered ((B * pairs) + A's pair) *
             * pairs + B's pair, a unit (B, A's pair) per thread at a time. */
            EPLB_SEARCH_ON_DOUBLE();
            mine = EPLB_SEARCH_NO_TRADE;
            for (int unit = t; unit < gpus * pairs; unit += threads) {
                const int B = unit / pairs, pair_a = unit - B * pairs;
                if (B == A)
                    continue;
                int x1, x2;
                eplb_search_pair_of(pair_a, spg, &x1, &x2);
                const int a1 = a0 + x1, a2 = a0 + x2, b0 = B * spg;
                const float da = eplb_cuda_add_rn(m.u[a1], m.u[a2]);
                const float a_without = eplb_cuda_sub_rn(load_a, da);
                const float load_b = m.load[B], gap = eplb_cuda_sub_rn(load_a, load_b);
                const uint64_t unit_order = (uint64_t)unit * (uint64_t)pairs;
                int pair_b = 0;
                for (int b1 = b0; b1 < b0 + spg; b1++)
                    for (int b2 = b1 + 1; b2 < b0 + spg; b2++, pair_b++) {
                        const float db = eplb_cuda_add_rn(m.u[b1], m.u[b2]);
                        if (!(da > db))
                            continue;
                        const uint64_t order = unit_order + (uint64_t)pair_b;
                        /* The class and loads first, with the cost at its
                         * least: the cost is worth its work only for a
                         * trade that may still beat this thread's best. */
                        const uint64_t bound =
                            eplb_search_trade_key(a_without, load_b, gap, da, db, target, 0);
                        if (bound == EPLB_SEARCH_NO_TRADE ||
                            (eplb_search_key_floor(bound) << EPLB_SEARCH_ORDER_BITS | order) >=
                                mine)
                            continue;
                        const int32_t a[2] = {m.cur[a1], m.cur[a2]}, b[2] = {m.cur[b1], m.cur[b2]};
                        const int32_t a_on_a[2] = {m.on_a[a1], m.on_a[a2]};
                        const int32_t a_on_b[2] = {m.away[x1 * gpus + B], m.away[x2 * gpus + B]};
                        const int32_t b_on_b[2] = {m.own_excess[b1], m.own_excess[b2]};
                        const int32_t b_on_a[2] = {m.on_a[b1], m.on_a[b2]};
                        const int cost =
                            eplb_search_double_cost(a, b, a_on_a, a_on_b, b_on_b, b_on_a);
                        const uint64_t key =
                            eplb_search_trade_key(a_without, load_b, gap, da, db, target, cost);
                        const uint64_t full = key << EPLB_SEARCH_ORDER_BITS | order;
                        mine = full < mine ? full : mine;
                    }
            }
            eplb_search_post(m.votes + warps + warp, mine, lane,
                             [&](eplb_search_vote *vote, int order) {
                                 const int unit = order / pairs, pair_b = order - unit * pairs;
                                 const int B = unit / pairs, pair_a = unit - B * pairs;
                                 int x1, x2, y1, y2;
                                 eplb_search_pair_of(pair_a, spg, &x1, &x2);
                                 eplb_search_pair_of(pair_b, spg, &y1, &y2);
                                 const int q[4] = {a0 + x1, a0 + x2, B * spg + y1, B * spg + y2};
                                 for (int k = 0; k < 4; k++) {
                                     vote->slot[k] = q[k];
                                     vote->expert[k] = m.cur[q[(k + 2) % 4]];
                                     vote->load[k] = m.u[q[(k + 2) % 4]];
                                 }
                             });
            __syncthreads();
            trade = eplb_search_read_votes(m.votes + warps, warps, 4);
            if (trade.key == EPLB_SEARCH_NO_TRADE)
                break;
        }

        /* Phase 3: the trade, and what it changes on A and B. */
        moved += eplb_search_key_cost(trade.key >> EPLB_SEARCH_ORDER_BITS);
        const int gpu_b = (trade.n == 2 ? trade.slot[1] : trade.slot[2]) / spg;
        if (t == threads - 1)
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
            for (int k = 0; k < 4; k++)
                if (k < trade.n) {
                    m.cur[trade.slot[k]] = trade.expert[k];
                    m.u[trade.slot[k]] = trade.load[k];
                }
        for (int which = 0; which < 2; which++) {
            if (warp != which % warps)
                continue;
            const int g0 = (which ? gpu_b : A) * spg;
            float *sorted = m.sorted + which * spg;
            for (int l = (int)lane; l < spg; l += 32) {
                const float v = eplb_search_after(trade.slot, trade.load, m.u, g0 + l);
                int rank = 0;
                for (int j = 0; j < spg; j++) {
                    const float w = eplb_search_after(trade.slot, trade.load, m.u, g0 + j);
                    rank += w < v || (w == v && j < l);
                }
                sorted[rank] = v;
            }
            __syncwarp();
            if (lane == 0) {
                float sum = 0.0f;
                for (int r = 0; r < spg; r++)
                    sum = eplb_cuda_add_rn(sum, sorted[r]);
                m.load[g0 / spg] = sum;
            }
        }
        for (int k = refresh_rank; k < 2 * spg; k += threads) {
            const int g0 = (k < spg ? A : gpu_b) * spg, q = g0 + k % spg;
            const int32_t e = eplb_search_after(trade.slot, trade.expert, m.cur, q);
            int excess = 0;
            for (int j = g0; j < g0 + spg; j++)
                excess +=
                    (eplb_search_after(trade.slot, trade.expert, m.cur, j) == e) - (m.base[j] == e);
            m.own_excess[q] = excess;
        }
        __syncthreads();
    }

    for (int q = t; q < dn; q += threads) {
        batch.cur[first + q] = m.cur[q];
        batch.u[first + q] = m.u[q];
    }
    if (t == 0) {
        batch.moved[search] = moved;
        batch.met[search] = met;
    }
}

/* ---- the launcher (cuda_incremental_search.cu)
 * ---------------------------------- */

#ifdef __CUDACC__
#include <cuda_runtime.h>

#include "backend.h"

/* Runs every search of the batch, a block each, on the stream. Returns
 * cudaErrorInvalidValue, with nothing launched, for a batch it cannot take:
 * a shape that is no domain (dn or spg below 1, dn not a multiple of spg), a
 * missing array, more trades per step than EPLB_SEARCH_ORDER_BITS number, or
 * a domain whose memory passes the device's shared memory per block. */
cudaError_t eplb_cuda_domain_searches(const eplb_cuda_search_batch *batch, cudaStream_t stream);

/* The backend's domain_searches (backend.h): the job's searches through the
 * launcher above, on the instance's stream, its arrays copied up and the
 * results down; EPLB_BACKEND_DECLINED for a job the kernel does not take. */
eplb_status eplb_cuda_domain_search_job(eplb_backend *backend, const eplb_search_job *job);
#endif

#endif /* EPLB_CUDA_INCREMENTAL_SEARCH_CUH */
