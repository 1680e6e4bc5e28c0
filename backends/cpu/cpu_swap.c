/* Stage 3 of balanced packing (SPEC 6.3): up to I swaps between the heaviest
 * and the lightest pack, each the one that lowers the sum of squared loads most.
 *
 * The SPEC's search looks at all k * k slot pairs. Small packs do exactly that
 * (best_trade); large packs sort their weights and look only near the best
 * pair (best_trade_sorted), so that a step costs about k instead of k * k and
 * a plan's cost stays linear in its slots. Both give the same pair. */
#include <math.h>
#include <string.h>

#include "common/spec_math.h"
#include "cpu_stages.h"

/* The best trade between the heaviest pack's items wa[k] and the lightest's
 * wb[k]: the first (row-major) pair with the smallest change, as a scalar scan
 * with strictly-less updates from pair (0, 0) finds it. */
static float best_trade_scalar(float diff, const float *wa, const float *wb, int32_t k,
                               int32_t *best_a, int32_t *best_b)
{
    float best = eplb_swap_change(diff, wa[0], wb[0]);
    *best_a = 0;
    *best_b = 0;
    for (int32_t sa = 0; sa < k; sa++)
        for (int32_t sb = 0; sb < k; sb++) {
            const float change = eplb_swap_change(diff, wa[sa], wb[sb]);
            if (change < best) {
                best = change;
                *best_a = sa;
                *best_b = sb;
            }
        }
    return best;
}

#if EPLB_CPU_SSE2
#include <emmintrin.h>

/* The same search four pairs at a time: the smallest change first (IEEE
 * single-precision operations, the same as the scalar ones), then the first
 * pair that equals it. -0 == +0 in both. Only for finite inputs (no NaN can
 * arise), which the caller checks. */
static float best_trade(float diff, const float *wa, const float *wb, int32_t k,
                        int32_t *best_a, int32_t *best_b)
{
    if (k < 4)
        return best_trade_scalar(diff, wa, wb, k, best_a, best_b);
    const __m128 vdiff = _mm_set1_ps(diff), two = _mm_set1_ps(2.0f);
    const int32_t k4 = k & ~3;
    float best = eplb_swap_change(diff, wa[0], wb[0]);
    __m128 vbest = _mm_set1_ps(best);
    for (int32_t sa = 0; sa < k; sa++) {
        const __m128 va = _mm_set1_ps(wa[sa]);
        for (int32_t sb = 0; sb < k4; sb += 4) {
            const __m128 d = _mm_sub_ps(va, _mm_loadu_ps(wb + sb));
            vbest = _mm_min_ps(vbest, _mm_mul_ps(_mm_mul_ps(two, d), _mm_add_ps(vdiff, d)));
        }
        for (int32_t sb = k4; sb < k; sb++) {
            const float change = eplb_swap_change(diff, wa[sa], wb[sb]);
            best = change < best ? change : best;
        }
    }
    float lanes[4];
    _mm_storeu_ps(lanes, vbest);
    for (int i = 0; i < 4; i++)
        best = lanes[i] < best ? lanes[i] : best;
    const __m128 target = _mm_set1_ps(best);
    for (int32_t sa = 0; sa < k; sa++) {
        const __m128 va = _mm_set1_ps(wa[sa]);
        for (int32_t sb = 0; sb < k4; sb += 4) {
            const __m128 d = _mm_sub_ps(va, _mm_loadu_ps(wb + sb));
            const __m128 change = _mm_mul_ps(_mm_mul_ps(two, d), _mm_add_ps(vdiff, d));
            const int hits = _mm_movemask_ps(_mm_cmpeq_ps(change, target));
            if (hits) {
                *best_a = sa;
                *best_b = sb + __builtin_ctz((unsigned)hits);
                return best;
            }
        }
        for (int32_t sb = k4; sb < k; sb++)
            if (eplb_swap_change(diff, wa[sa], wb[sb]) == best) {
                *best_a = sa;
                *best_b = sb;
                return best;
            }
    }
    return best_trade_scalar(diff, wa, wb, k, best_a, best_b); /* unreachable */
}
#else
#define best_trade best_trade_scalar
#endif

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>

/* Up to this many slots per pack, the lightest pack's weights fill two
 * 256-bit registers. */
#define EPLB_CPU_SWAP_VECTOR_MAX 16

/* 256-bit vectors with AVX-512's mask registers: 512-bit multiplies clock the
 * core down, which slows every other stage (docs/benchmarks.md). */

/* One row of pairs (sa, c) for the eight lanes c of b: each lane keeps its
 * smallest change so far and the first row that reached it, updating on
 * strictly less only, so a later equal change (-0 == +0 included) never
 * replaces it. Lanes outside `lanes` hold +inf, never below a finite change. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
trade_row(__m256 a, __m256 b, __m256 vdiff, __mmask8 lanes, int32_t sa, __m256 *smallest,
          __m256i *first_row)
{
    const __m256 two = _mm256_set1_ps(2.0f), inf = _mm256_set1_ps((float)INFINITY);
    const __m256 d = _mm256_sub_ps(a, b);
    const __m256 change = _mm256_mask_mul_ps(inf, lanes, _mm256_mul_ps(two, d), _mm256_add_ps(vdiff, d));
    const __mmask8 lower = _mm256_cmp_ps_mask(change, *smallest, _CMP_LT_OQ);
    *smallest = _mm256_mask_mov_ps(*smallest, lower, change);
    *first_row = _mm256_mask_mov_epi32(*first_row, lower, _mm256_set1_epi32(sa));
}

/* The row-major position (row * 16 + column) of each lane's first minimum
 * where that minimum is best, else INT32_MAX. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) __m256i
positions_where_best(__m256 smallest, float best, __m256i row, __m256i column)
{
    const __mmask8 holds = _mm256_cmp_ps_mask(smallest, _mm256_set1_ps(best), _CMP_EQ_OQ);
    return _mm256_mask_mov_epi32(_mm256_set1_epi32(INT32_MAX), holds,
                                 _mm256_add_epi32(_mm256_slli_epi32(row, 4), column));
}

/* Eight consecutive numbers from first, one a lane. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) __m256i
lanes_from(int32_t first)
{
    return _mm256_add_epi32(_mm256_set1_epi32(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The same search for 4 to 16 slots per pack in one pass with everything in
 * registers: lane c of a row holds the change of pair (sa, c), computed by
 * the same IEEE operations as eplb_swap_change. The SPEC's pair is, among the
 * lanes whose minimum is the overall minimum, the one with the lowest (row,
 * lane): the first pair in row-major order that equals the minimum, which the
 * SSE2 search finds with a second pass. Finite inputs only. */
EPLB_CPU_TARGET_AVX512VL static float best_trade_avx512(float diff, const float *w,
                                                        const int32_t *a_items,
                                                        const int32_t *b_items, int32_t k,
                                                        int32_t *best_a, int32_t *best_b)
{
    const __mmask8 low_lanes = (__mmask8)(k >= 8 ? 0xFFu : (1u << k) - 1);
    const __mmask8 high_lanes = (__mmask8)(k > 8 ? (1u << (k - 8)) - 1 : 0u);
    const __m256 vdiff = _mm256_set1_ps(diff), inf = _mm256_set1_ps((float)INFINITY);
    /* The lightest pack's weights gathered straight into registers: a
     * vector load of weights just stored one by one would wait for the
     * stores to retire (no store forwarding from several stores). */
    const __m256 zero = _mm256_setzero_ps();
    const __m256 b_low = _mm256_mmask_i32gather_ps(
        zero, low_lanes, _mm256_maskz_loadu_epi32(low_lanes, b_items), w, 4);
    __m256 smallest_low = inf, column_low = inf, column_high = inf;
    __m256i row_low = _mm256_setzero_si256();
    __m256i col_low = _mm256_setzero_si256(), col_high = _mm256_setzero_si256();
    if (k > 8) {
        /* Columns 0-7 by rows as below; columns 8 .. k-1 by columns, a lane
         * per row (rows 0-7, then 8 .. k-1), so that a column beyond the
         * eighth costs two vectors instead of a mostly empty one per row. */
        for (int32_t sa = 0; sa < k; sa++)
            trade_row(_mm256_set1_ps(w[a_items[sa]]), b_low, vdiff, low_lanes, sa, &smallest_low, &row_low);
        const __m256 a_low = _mm256_i32gather_ps(w, _mm256_loadu_si256((const __m256i *)a_items), 4);
        const __m256 a_high = _mm256_mmask_i32gather_ps(
            zero, high_lanes, _mm256_maskz_loadu_epi32(high_lanes, a_items + 8), w, 4);
        for (int32_t sb = 8; sb < k; sb++) {
            const __m256 b = _mm256_set1_ps(w[b_items[sb]]);
            trade_row(a_low, b, vdiff, 0xFF, sb, &column_low, &col_low);
            trade_row(a_high, b, vdiff, high_lanes, sb, &column_high, &col_high);
        }
    } else {
        for (int32_t sa = 0; sa < k; sa++)
            trade_row(_mm256_set1_ps(w[a_items[sa]]), b_low, vdiff, low_lanes, sa, &smallest_low, &row_low);
    }
    __m256 m = _mm256_min_ps(smallest_low, _mm256_min_ps(column_low, column_high));
    __m128 h = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_min_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_min_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(2, 3, 0, 1)));
    const float best = _mm_cvtss_f32(h);
    /* A row block's lanes are columns 0-7; a column block's are rows 0-7 or 8-15. */
    const __m256i p = _mm256_min_epi32(
        positions_where_best(smallest_low, best, row_low, lanes_from(0)),
        _mm256_min_epi32(positions_where_best(column_low, best, lanes_from(0), col_low),
                         positions_where_best(column_high, best, lanes_from(8), col_high)));
    __m128i q = _mm_min_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    q = _mm_min_epi32(q, _mm_shuffle_epi32(q, _MM_SHUFFLE(1, 0, 3, 2)));
    q = _mm_min_epi32(q, _mm_shuffle_epi32(q, _MM_SHUFFLE(2, 3, 0, 1)));
    const int32_t first = _mm_cvtsi128_si32(q);
    *best_a = first >> 4;
    *best_b = first & 15;
    return best;
}
#endif

#if EPLB_CPU_X86_DISPATCH
/* From this many packs the heaviest and lightest are found with vectors. */
#define EPLB_CPU_SWAP_SCAN_MIN 16

/* The lowest p with load[p] the largest (heaviest, sign 1) or the smallest
 * (lightest, sign -1) of load[0 .. m): the scalar scan's choice, found as
 * the extreme value first, then its first position. Loads are never NaN. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
extremes_avx512(const float *load, int32_t m, int32_t *heavy, int32_t *light)
{
    const __m256 inf = _mm256_set1_ps((float)INFINITY), minus_inf = _mm256_set1_ps(-(float)INFINITY);
    __m256 vmax = minus_inf, vmin = inf;
    for (int32_t p = 0; p < m; p += 8) {
        const __mmask8 valid = m - p >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (m - p)) - 1);
        vmax = _mm256_max_ps(vmax, _mm256_mask_loadu_ps(minus_inf, valid, load + p));
        vmin = _mm256_min_ps(vmin, _mm256_mask_loadu_ps(inf, valid, load + p));
    }
    __m128 hmax = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    __m128 hmin = _mm_min_ps(_mm256_castps256_ps128(vmin), _mm256_extractf128_ps(vmin, 1));
    hmax = _mm_max_ps(hmax, _mm_shuffle_ps(hmax, hmax, _MM_SHUFFLE(1, 0, 3, 2)));
    hmin = _mm_min_ps(hmin, _mm_shuffle_ps(hmin, hmin, _MM_SHUFFLE(1, 0, 3, 2)));
    hmax = _mm_max_ps(hmax, _mm_shuffle_ps(hmax, hmax, _MM_SHUFFLE(2, 3, 0, 1)));
    hmin = _mm_min_ps(hmin, _mm_shuffle_ps(hmin, hmin, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m256 top = _mm256_broadcastss_ps(hmax), bottom = _mm256_broadcastss_ps(hmin);
    int32_t h = -1, l = -1;
    for (int32_t p = 0; p < m && (h < 0 || l < 0); p += 8) {
        const __mmask8 valid = m - p >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (m - p)) - 1);
        const __m256 x = _mm256_maskz_loadu_ps(valid, load + p);
        const unsigned at_top = _mm256_mask_cmp_ps_mask(valid, x, top, _CMP_EQ_OQ);
        const unsigned at_bottom = _mm256_mask_cmp_ps_mask(valid, x, bottom, _CMP_EQ_OQ);
        if (h < 0 && at_top)
            h = p + __builtin_ctz(at_top);
        if (l < 0 && at_bottom)
            l = p + __builtin_ctz(at_bottom);
    }
    *heavy = h;
    *light = l;
}

EPLB_CPU_TARGET_AVX512VL static void extremes_of(const float *load, int32_t m, int32_t *heavy,
                                                 int32_t *light)
{
    extremes_avx512(load, m, heavy, light);
}
#endif

/* ---- the same pair from sorted weights, for large packs ---------------------
 * The change of a pair depends on it only through d = wa - wb (float32), and
 * only pairs with 0 < d < -diff can have a change below zero: elsewhere both
 * factors of (2*d) * (diff + d) have the same sign. A swap needs a change
 * below -tol <= 0, so the search looks at those pairs alone and reports none
 * when no pair qualifies, where the SPEC's search finds a best change that the
 * caller then rejects.
 *
 * In exact arithmetic the change is the parabola 2*d*(diff + d), lowest at
 * d = -diff/2; the float32 change differs from it by two roundings, under a
 * relative 2^-22 (loads below 2^60 keep it from overflowing). So no pair whose
 * parabola value, widened by that bound, lies above the best change found so
 * far can win or tie. With the lightest pack's weights sorted, each weight of
 * the heaviest pack finds the vertex by a binary search and walks outward in
 * both directions until that bound rules out the rest.
 *
 * Ties go to the first pair in row-major order. Equal weights give equal
 * changes, so only the lowest slot holding each distinct weight can be that
 * pair: each pack keeps its distinct weights, each with its lowest slot. */

/* Loads up to this keep every change finite and the rounding bound valid. */
#define EPLB_CPU_SORTED_LOAD_MAX 0x1p60f

/* Up to this many slots per pack, all k * k pairs cost less than sorting. */
#define EPLB_CPU_SWAP_PAIRS_MAX 64

/* One distinct weight: its float32 bits above, its lowest slot below. */
static inline float entry_weight(uint64_t entry)
{
    const uint32_t bits = (uint32_t)(entry >> 32);
    float weight;
    memcpy(&weight, &bits, sizeof weight);
    return weight;
}

static inline int32_t entry_slot(uint64_t entry) { return (int32_t)(uint32_t)entry; }

/* The distinct weights of w[k] in ascending order, each with the lowest slot
 * that holds it, into out; returns how many. Weights are >= 0 (or -0, taken
 * as +0: it gives the same changes), so their bits order them. A stable radix
 * sort over the weight bits keeps equal weights in slot order. */
static int32_t sorted_distinct(const float *w, int32_t k, uint64_t *out, uint64_t *spare)
{
    uint32_t histogram[4][256];
    memset(histogram, 0, sizeof histogram);
    for (int32_t s = 0; s < k; s++) {
        uint32_t bits;
        memcpy(&bits, &w[s], sizeof bits);
        bits = bits == 0x80000000u ? 0 : bits;
        out[s] = (uint64_t)bits << 32 | (uint32_t)s;
        for (int digit = 0; digit < 4; digit++)
            histogram[digit][(bits >> (8 * digit)) & 255]++;
    }
    uint64_t *from = out, *to = spare;
    for (int digit = 0; digit < 4; digit++) {
        const int shift = 32 + 8 * digit;
        uint32_t *count = histogram[digit];
        if (count[(from[0] >> shift) & 255] == (uint32_t)k)
            continue; /* every weight has the same byte here */
        uint32_t start = 0;
        for (int b = 0; b < 256; b++) {
            const uint32_t c = count[b];
            count[b] = start;
            start += c;
        }
        for (int32_t s = 0; s < k; s++)
            to[count[(from[s] >> shift) & 255]++] = from[s];
        uint64_t *t = from; from = to; to = t;
    }
    int32_t distinct = 0;
    for (int32_t s = 0; s < k; s++)
        if (distinct == 0 || (from[s] >> 32) != (out[distinct - 1] >> 32))
            out[distinct++] = from[s];
    return distinct;
}

/* A lower bound on the float32 change of any pair with this d, 0 < d < -diff:
 * the parabola in double (within 2^-52 of exact), widened by a relative 2^-20
 * for the two float32 roundings and by an absolute 2^-140 for underflow. */
static inline double change_floor(float diff, float d)
{
    const double parabola = 2.0 * (double)d * ((double)diff + (double)d);
    return parabola + parabola * 0x1p-20 - 0x1p-140;
}

/* The best pair found so far among those with a change below -tol. */
typedef struct trade {
    float change;
    int32_t a, b; /* slots; a < 0 while none is found */
} trade;

static inline void consider(trade *best, float change, int32_t a, int32_t b)
{
    if (best->a < 0 || change < best->change ||
        (change == best->change && (a < best->a || (a == best->a && b < best->b)))) {
        best->change = change;
        best->a = a;
        best->b = b;
    }
}

/* First index of lightest[0 .. count) whose d = wa - weight is below the
 * vertex (2*d < -diff): d falls as the weight rises. */
static int32_t vertex_index(const uint64_t *lightest, int32_t count, float wa, float minus_diff)
{
    int32_t low = 0, high = count;
    while (low < high) {
        const int32_t mid = low + (high - low) / 2;
        if (2.0f * (wa - entry_weight(lightest[mid])) >= minus_diff)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

/* Walks the lightest pack's distinct weights from index `from` to `end` by
 * `step`, while a pair can still pass -tol and beat the best found; the first
 * pair only when first_only. Only pairs with 0 < d < -diff can have a change
 * below zero, so one stop serves both directions from the vertex. */
static inline void walk_from_vertex(trade *best, float diff, float tolerance, float a, int32_t sa,
                                    const uint64_t *lightest, int32_t from, int32_t end,
                                    int32_t step, int first_only)
{
    for (int32_t j = from; j != end; j += step) {
        const float b = entry_weight(lightest[j]);
        const float d = a - b;
        const double limit = best->a < 0 ? -(double)tolerance : (double)best->change;
        if (!(d > 0.0f) || d >= -diff || change_floor(diff, d) > limit)
            break;
        const float change = eplb_swap_change(diff, a, b);
        if (change < -tolerance)
            consider(best, change, sa, entry_slot(lightest[j]));
        if (first_only)
            break;
    }
}

/* Returns 1 and the SPEC's pair when some pair's change is below -tol, else 0.
 * diff < 0 and both packs' loads below EPLB_CPU_SORTED_LOAD_MAX. */
static int best_trade_sorted(float diff, float tolerance, const float *wa, const float *wb,
                             int32_t k, eplb_cpu_scratch *scratch, int32_t *best_a,
                             int32_t *best_b)
{
    uint64_t *heaviest = scratch->sorted_a, *lightest = scratch->sorted_b;
    const int32_t na = sorted_distinct(wa, k, heaviest, scratch->sort_spare);
    const int32_t nb = sorted_distinct(wb, k, lightest, scratch->sort_spare);
    const float minus_diff = -diff;
    trade best = {0.0f, -1, -1};
    /* Two passes: the pairs next to each vertex first, whose changes bound
     * the walks of the second pass tightly from its start. */
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < na; i++) {
            const float a = entry_weight(heaviest[i]);
            const int32_t sa = entry_slot(heaviest[i]);
            const int32_t vertex = vertex_index(lightest, nb, a, minus_diff);
            /* Towards lighter weights of the lightest pack (d rises from the
             * vertex), then towards heavier ones (d falls towards 0). */
            walk_from_vertex(&best, diff, tolerance, a, sa, lightest, vertex - 1, -1, -1, pass == 0);
            walk_from_vertex(&best, diff, tolerance, a, sa, lightest, vertex, nb, 1, pass == 0);
        }
    }
    *best_a = best.a;
    *best_b = best.b;
    return best.a >= 0;
}

static float max_load(const float *load, int32_t m)
{
    float score = load[0];
    for (int32_t p = 1; p < m; p++)
        score = load[p] > score ? load[p] : score;
    return score;
}

/* Trades slot best_a of pack heavy with slot best_b of pack light. Only the
 * two packs changed; their loads are recomputed in slot order. */
static inline void swap_items(const eplb_pack_job *job, const float *w, int32_t *content,
                              float *load, int32_t heavy, int32_t light, int32_t best_a,
                              int32_t best_b)
{
    const int32_t k = job->per_pack;
    int32_t *a = content + heavy * k, *b = content + light * k;
    const int32_t t = a[best_a];
    a[best_a] = b[best_b];
    b[best_b] = t;
    /* Both sums in one loop, each in slot order: two chains of dependent
     * adds side by side instead of one after the other. */
    float heavy_load = 0.0f, light_load = 0.0f;
    for (int32_t r = 0; r < k; r++) {
        heavy_load += w[a[r]];
        light_load += w[b[r]];
    }
    load[heavy] = heavy_load;
    load[light] = light_load;
}

/* One swap of SPEC 6.3 on one candidate whose pack loads are load[m]:
 * returns 1 if two items traded places (the search goes on), 0 if it stops. */
static inline int swap_step(const eplb_pack_job *job, const float *w, int32_t *content,
                            float *load, eplb_cpu_scratch *scratch)
{
    float *wa = scratch->wa, *wb = scratch->wb;
    const int32_t m = job->packs, k = job->per_pack;
    /* Heaviest and lightest, lowest index on ties, without data-dependent
     * branches: values ride along so no step waits on a reload. */
    int32_t heavy = 0, light = 0;
    float heavy_load = load[0], light_load = load[0];
#if EPLB_CPU_X86_DISPATCH
    if (m >= EPLB_CPU_SWAP_SCAN_MIN && eplb_cpu_has_avx512(scratch)) {
        extremes_of(load, m, &heavy, &light);
        heavy_load = load[heavy];
        light_load = load[light];
    } else
#endif
    for (int32_t p = 1; p < m; p++) {
        const float v = load[p];
        const int more = v > heavy_load, less = v < light_load;
        heavy = more ? p : heavy;
        heavy_load = more ? v : heavy_load;
        light = less ? p : light;
        light_load = less ? v : light_load;
    }
    /* Equal loads leave heavy == light and diff == 0: every change is then
     * 2*d*d >= 0, so no pair can pass the test below and the search stops. */
    if (heavy == light)
        return 0;
    const float diff = light_load - heavy_load;
    int32_t *a = content + heavy * k, *b = content + light * k;
    int32_t best_a, best_b;
#if EPLB_CPU_X86_DISPATCH
    /* Loads far below FLT_MAX keep every change finite (see below); this
     * search reads the weights itself. */
    if (k >= 4 && k <= EPLB_CPU_SWAP_VECTOR_MAX && heavy_load < 1e37f &&
        scratch->settings.swap_search != EPLB_CPU_SWAP_SEARCH_SORTED && eplb_cpu_has_avx512(scratch)) {
        if (!(best_trade_avx512(diff, w, a, b, k, &best_a, &best_b) < -job->tolerance))
            return 0;
        swap_items(job, w, content, load, heavy, light, best_a, best_b);
        return 1;
    }
#endif
    for (int32_t s = 0; s < k; s++) {
        wa[s] = w[a[s]];
        wb[s] = w[b[s]];
    }
    /* The swap search knob (EPLB_TUNE_CPU_SWAP_SEARCH) forces either search at
     * every size, so that tests can compare the two on any plan. */
    const int search = scratch->settings.swap_search;
    if (heavy_load < EPLB_CPU_SORTED_LOAD_MAX && search != EPLB_CPU_SWAP_SEARCH_PAIRS &&
        (k > EPLB_CPU_SWAP_PAIRS_MAX || search == EPLB_CPU_SWAP_SEARCH_SORTED)) {
        if (!best_trade_sorted(diff, job->tolerance, wa, wb, k, scratch, &best_a, &best_b))
            return 0;
    } else {
        /* Loads far below FLT_MAX keep every change finite, so the vector
         * search cannot meet a NaN; otherwise the scalar rule decides. */
        float best;
        if (!(heavy_load < 1e37f))
            best = best_trade_scalar(diff, wa, wb, k, &best_a, &best_b);
        else
            best = best_trade(diff, wa, wb, k, &best_a, &best_b);
        if (!(best < -job->tolerance))
            return 0;
    }
    swap_items(job, w, content, load, heavy, light, best_a, best_b);
    return 1;
}

/* The swap search of one candidate (the separate stage). */
static void swap_one(const eplb_pack_job *job, int64_t row, int32_t *content, float *load,
                     eplb_cpu_scratch *scratch)
{
    const float *w = (const float *)job->weight + row * job->items;
    for (int32_t it = 0; it < job->iterations; it++)
        if (!swap_step(job, w, content, load, scratch))
            break;
}

void eplb_cpu_swap_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                       float *const *loads, eplb_cpu_scratch *scratch)
{
    const int32_t n = job->items;
    const float *w = (const float *)job->weight + row * n;
    int32_t *content[EPLB_CPU_LANES];
    int active[EPLB_CPU_LANES];
    for (int32_t j = 0; j < lanes; j++) {
        content[j] = scratch->content_row + (int64_t)(first + j) * n;
        active[j] = 1;
    }
    /* Iteration by iteration across the lanes, so that independent
     * candidates' searches overlap; a lane that stopped stays stopped. */
    for (int32_t it = 0; it < job->iterations; it++) {
        int any = 0;
        for (int32_t j = 0; j < lanes; j++) {
            if (active[j])
                active[j] = swap_step(job, w, content[j], loads[j], scratch);
            any |= active[j];
        }
        if (!any)
            break;
    }
    for (int32_t j = 0; j < lanes; j++) {
#if EPLB_CPU_X86_DISPATCH
        if (job->packs >= EPLB_CPU_SWAP_SCAN_MIN && eplb_cpu_has_avx512(scratch)) {
            int32_t heavy, light;
            extremes_of(loads[j], job->packs, &heavy, &light);
            scratch->score[first + j] = loads[j][heavy];
            continue;
        }
#endif
        scratch->score[first + j] = max_load(loads[j], job->packs);
    }
}

static void swap_packing(const eplb_pack_job *job, int64_t row, int64_t candidate,
                         eplb_cpu_scratch *scratch)
{
    const int64_t x = row * job->candidates + candidate;
    int32_t *content = (int32_t *)job->content + x * job->items;
    float *load = scratch->lane_load;
    for (int32_t p = 0; p < job->packs; p++)
        load[p] = eplb_cpu_pack_load((const float *)job->weight + row * job->items, content, p,
                                     job->per_pack);
    swap_one(job, row, content, load, scratch);
}

eplb_status eplb_cpu_pack_swap(eplb_backend *backend, const eplb_pack_job *job)
{
    if (job->iterations == 0)
        return EPLB_OK;
    return eplb_cpu_for_each_packing(backend, job, swap_packing, "swap");
}
