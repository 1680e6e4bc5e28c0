/* The vertical greedy of SPEC 6.2 for up to EPLB_CPU_VERTICAL_MAX packs (the
 * hierarchical slot rows): eight candidates of a row at once, a vector lane
 * each, in AVX2 floats or, with AVX-512, in keys that carry each pack's load
 * and count. cpu_greedy.c chooses it among the greedy variants. */
#include <math.h>

#include "cpu_stages.h"

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>
/* ---- AVX2 vertical greedy for up to 16 packs: a vector lane per candidate --
 * Wins over the SSE2 steps on AVX2 and AVX-512 machines up to 16 packs (the
 * hierarchical slot rows; docs/benchmarks.md, round 2).
 * With few packs the whole state of eight candidates fits in a few vectors
 * (pack p's loads of all candidates in one), so each step is a handful of
 * vertical operations per pack instead of a horizontal search per candidate.
 * The lowest pack with the smallest open load is found by blending pack
 * numbers from the last pack to the first. Full packs hold +inf, so this too
 * needs finite row sums. */

/* values[0] = the smallest of values[0 .. V-1] by a pairwise tree of min_op
 * (the other entries are overwritten): the steps' critical path. */
#define EPLB_TREE_MIN(values, V, min_op)                                                           \
    EPLB_CPU_UNROLL_16 for (int32_t stride = 1; stride < (V); stride *= 2)                         \
        EPLB_CPU_UNROLL_16 for (int32_t i = 0; i < (V); i += 2 * stride)                           \
            (values)[i] = min_op((values)[i], (values)[i + stride])

/* The steps of eight candidates over V vectors of packs (V a constant 4, 8
 * or 16, so that every loop unrolls into registers; packs m .. V-1 are
 * padding at +inf, never the minimum while an open pack's load is finite).
 * slot[8t + j] receives the slot that lane j's item of step t takes. */
EPLB_CPU_TARGET_AVX2 static inline __attribute__((always_inline)) void
greedy_vertical_steps(int32_t n, int32_t m, const int32_t V, int32_t k, const float *step_weight,
                      int32_t *slot, float *true_load)
{
    __m256 masked[EPLB_CPU_VERTICAL_MAX], load[EPLB_CPU_VERTICAL_MAX], smallest[EPLB_CPU_VERTICAL_MAX];
    __m256i count[EPLB_CPU_VERTICAL_MAX], candidate[EPLB_CPU_VERTICAL_MAX];
    const __m256i per_pack = _mm256_set1_epi32(k), none = _mm256_set1_epi32(V);
    const __m256 inf = _mm256_set1_ps((float)INFINITY);
    /* Steps t < m go to pack t when every earlier weight is positive (see
     * greedy_keys_avx512); here only when that holds in every lane. */
    __m256 positive = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int32_t t = 0; t < m - 1; t++)
        positive = _mm256_and_ps(positive, _mm256_cmp_ps(_mm256_loadu_ps(step_weight + 8 * t),
                                                         _mm256_setzero_ps(), _CMP_GT_OQ));
    const int32_t start = _mm256_movemask_ps(positive) == 0xFF ? m : 0;
    EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++) {
        /* 0 + w, as the step computes it (-0 becomes +0). */
        const __m256 first = p < m && start ? _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(step_weight + 8 * p))
                                            : _mm256_setzero_ps();
        masked[p] = p < m ? first : inf;
        load[p] = first;
        count[p] = _mm256_set1_epi32(p < m && start ? 1 : 0);
        if (p < m && start)
            _mm256_storeu_si256((__m256i *)(slot + 8 * p), _mm256_set1_epi32(p * k));
    }
    for (int32_t t = start; t < n; t++) {
        const __m256 wt = _mm256_loadu_ps(step_weight + 8 * t);
        /* Pairwise trees: the steps' critical path. */
        EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++)
            smallest[p] = masked[p];
        EPLB_TREE_MIN(smallest, V, _mm256_min_ps);
        const __m256 vmin = smallest[0];
        /* Pack p where its load is the minimum, else V; the smallest wins. */
        EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++)
            candidate[p] = _mm256_castps_si256(_mm256_blendv_ps(
                _mm256_castsi256_ps(none), _mm256_castsi256_ps(_mm256_set1_epi32(p)),
                _mm256_cmp_ps(masked[p], vmin, _CMP_EQ_OQ)));
        EPLB_TREE_MIN(candidate, V, _mm256_min_epi32);
        const __m256i pack = candidate[0];
        __m256i rank = _mm256_setzero_si256();
        EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++) {
            const __m256i here = _mm256_cmpeq_epi32(pack, _mm256_set1_epi32(p));
            rank = _mm256_or_si256(rank, _mm256_and_si256(here, count[p]));
            count[p] = _mm256_sub_epi32(count[p], here);
            load[p] = _mm256_blendv_ps(load[p], _mm256_add_ps(load[p], wt), _mm256_castsi256_ps(here));
            const __m256 full = _mm256_castsi256_ps(_mm256_cmpeq_epi32(count[p], per_pack));
            masked[p] = p < m ? _mm256_blendv_ps(load[p], inf, full) : inf;
        }
        _mm256_storeu_si256((__m256i *)(slot + 8 * t),
                            _mm256_add_epi32(_mm256_mullo_epi32(pack, per_pack), rank));
    }
    /* Loads grew in slot order, as the swap's recomputation sums them. */
    EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++)
        _mm256_storeu_ps(true_load + 8 * p, load[p]);
}

/* The vertical steps for the pack counts they serve, built twice below. */
EPLB_CPU_TARGET_AVX2 static inline __attribute__((always_inline)) void
greedy_vertical_shapes(int32_t n, int32_t m, int32_t k, const float *step_weight, int32_t *slot,
                       float *true_load)
{
    if (m <= 4)
        greedy_vertical_steps(n, m, 4, k, step_weight, slot, true_load);
    else if (m <= 8)
        greedy_vertical_steps(n, m, 8, k, step_weight, slot, true_load);
    else
        greedy_vertical_steps(n, m, 16, k, step_weight, slot, true_load);
}

EPLB_CPU_TARGET_AVX2 static void greedy_vertical_run_avx2(int32_t n, int32_t m, int32_t k,
                                                          const float *step_weight, int32_t *slot,
                                                          float *true_load)
{
    greedy_vertical_shapes(n, m, k, step_weight, slot, true_load);
}

/* The same steps with AVX-512, on keys: pack p's key in lane j is (load
 * bits << 32 | p << 20 | items in p), as in the keyed greedy, so that one
 * tree of unsigned 64-bit minima gives each lane's least-loaded pack, the
 * lowest on ties, with its load and count: no compare-and-blend pass and no
 * second tree of pack numbers. A full pack's key gets bit 63 (the load's
 * sign bit, clear for every load >= +0), which puts it above every open
 * pack's and keeps its load for the caller. Padding packs hold UINT64_MAX.
 * The load grows by a masked add on the keys' upper halves only, so the
 * lower halves never go through a float operation. */
#define EPLB_CPU_VERTICAL_FULL_BIT (1ull << 63)

/* One row's part of the vertical greedy: its step table (the weights of
 * every step's eight lanes), slots, loads, and its lanes' orders and
 * contents. */
typedef struct {
    float *step_weight, *true_load;
    int32_t *slot;
    const int32_t *order[EPLB_CPU_LANES];
    int32_t *content[EPLB_CPU_LANES];
} vertical_row;

/* Row r's keys before its first step; returns the first step (m where
 * steps t < m go to pack t: every earlier weight positive in every lane,
 * as in greedy_vertical_steps, else 0). */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) int32_t
vertical_keys_init(__m512i *key, const vertical_row *r, int32_t m, const int32_t V, int32_t k, int32_t lanes)
{
    __mmask8 positive = 0xFF;
    for (int32_t t = 0; t < m - 1; t++)
        positive &= _mm256_cmp_ps_mask(_mm256_loadu_ps(r->step_weight + 8 * t), _mm256_setzero_ps(), _CMP_GT_OQ);
    const int32_t start = positive == 0xFF ? m : 0;
    EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++) {
        if (p < m) {
            /* 0 + w, as the step computes it (-0 becomes +0). */
            const __m256 first = start ? _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(r->step_weight + 8 * p))
                                       : _mm256_setzero_ps();
            key[p] = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm256_castps_si256(first)), 32),
                                     _mm512_set1_epi64(((int64_t)p << EPLB_CPU_KEY_PACK_SHIFT) | (start ? 1 : 0)));
            if (start)
                for (int32_t j = 0; j < lanes; j++)
                    r->content[j][p * k] = r->order[j][p];
        } else {
            key[p] = _mm512_set1_epi64(-1);
        }
    }
    return start;
}

/* Step t of row r on its keys. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
vertical_keys_step(__m512i *key, const vertical_row *r, int32_t t, const int32_t V, int32_t k, int32_t lanes)
{
    const __m512i one = _mm512_set1_epi64(1), count_mask = _mm512_set1_epi64(EPLB_CPU_KEY_COUNT_LIMIT - 1);
    const __m512i last_item = _mm512_set1_epi64(k - 1), full_bit = _mm512_set1_epi64((long long)EPLB_CPU_VERTICAL_FULL_BIT);
    const __m256i per_pack = _mm256_set1_epi32(k), count_mask32 = _mm256_set1_epi32(EPLB_CPU_KEY_COUNT_LIMIT - 1);
    __m512i smallest[EPLB_CPU_VERTICAL_MAX];
    /* The weights in the keys' upper halves, off the critical path. */
    const __m512 wt = _mm512_castsi512_ps(_mm512_slli_epi64(
        _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(r->step_weight + 8 * t))), 32));
    /* Pairwise tree: the steps' critical path. */
    EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++)
        smallest[p] = key[p];
    EPLB_TREE_MIN(smallest, V, _mm512_min_epu64);
    const __m512i chosen = smallest[0];
    const __mmask8 full = _mm512_cmpeq_epi64_mask(_mm512_and_si512(chosen, count_mask), last_item);
    /* Count + 1 in the lower half (no carry: counts stay below 2^20),
     * load + w in the upper one. */
    const __m512i counted = _mm512_add_epi64(chosen, one);
    __m512i next = _mm512_castps_si512(
        _mm512_mask_add_ps(_mm512_castsi512_ps(counted), (__mmask16)0xAAAA, _mm512_castsi512_ps(counted), wt));
    next = _mm512_mask_or_epi64(next, full, next, full_bit);
    /* Keys are distinct (they hold the pack), so equality finds the pack. */
    EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++)
        key[p] = _mm512_mask_mov_epi64(key[p], _mm512_cmpeq_epi64_mask(key[p], chosen), next);
    const __m256i low = _mm512_cvtepi64_epi32(chosen);
    int32_t *slot = r->slot + 8 * t;
    _mm256_storeu_si256((__m256i *)slot,
                        _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(low, EPLB_CPU_KEY_PACK_SHIFT), per_pack),
                                         _mm256_and_si256(low, count_mask32)));
    /* Each lane's item into its slot here, beside the steps' chain of
     * dependent operations, rather than in a pass of its own. */
    for (int32_t j = 0; j < lanes; j++)
        r->content[j][slot[j]] = r->order[j][t];
}

/* The loads of row r, summed in slot order by the steps, from the keys'
 * upper halves. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
vertical_keys_loads(const __m512i *key, const vertical_row *r, const int32_t V)
{
    EPLB_CPU_UNROLL_16 for (int32_t p = 0; p < V; p++)
        _mm256_storeu_si256((__m256i *)(r->true_load + 8 * p),
                            _mm256_and_si256(_mm512_cvtepi64_epi32(_mm512_srli_epi64(key[p], 32)),
                                             _mm256_set1_epi32(0x7FFFFFFF)));
}

/* The keyed steps of S rows (S = 1 or 2) side by side: each row's steps are
 * one chain of dependent operations, and two rows' chains overlap. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
greedy_vertical_keys(int32_t n, int32_t m, const int32_t V, int32_t k, const int32_t S,
                     const vertical_row *r, int32_t lanes)
{
    __m512i key0[EPLB_CPU_VERTICAL_MAX], key1[EPLB_CPU_VERTICAL_MAX];
    const int32_t start0 = vertical_keys_init(key0, &r[0], m, V, k, lanes);
    if (S == 1) {
        for (int32_t t = start0; t < n; t++)
            vertical_keys_step(key0, &r[0], t, V, k, lanes);
        vertical_keys_loads(key0, &r[0], V);
        return;
    }
    const int32_t start1 = vertical_keys_init(key1, &r[1], m, V, k, lanes);
    /* Only while one row's first steps go to pack t does the other step alone. */
    for (int32_t t = start1; t < start0; t++)
        vertical_keys_step(key1, &r[1], t, V, k, lanes);
    for (int32_t t = start0; t < start1; t++)
        vertical_keys_step(key0, &r[0], t, V, k, lanes);
    for (int32_t t = start0 > start1 ? start0 : start1; t < n; t++) {
        vertical_keys_step(key0, &r[0], t, V, k, lanes);
        vertical_keys_step(key1, &r[1], t, V, k, lanes);
    }
    vertical_keys_loads(key0, &r[0], V);
    vertical_keys_loads(key1, &r[1], V);
}

/* The keyed steps for the pack counts they serve (the pack's number needs
 * no more than the key's 12 bits above the count), of one row or two. */
EPLB_CPU_TARGET_AVX512VL static void greedy_vertical_run_avx512(int32_t n, int32_t m, int32_t k, int32_t S,
                                                                const vertical_row *r, int32_t lanes)
{
    if (S == 2) {
        if (m <= 4)
            greedy_vertical_keys(n, m, 4, k, 2, r, lanes);
        else if (m <= 8)
            greedy_vertical_keys(n, m, 8, k, 2, r, lanes);
        else
            greedy_vertical_keys(n, m, 16, k, 2, r, lanes);
    } else if (m <= 4) {
        greedy_vertical_keys(n, m, 4, k, 1, r, lanes);
    } else if (m <= 8) {
        greedy_vertical_keys(n, m, 8, k, 1, r, lanes);
    } else {
        greedy_vertical_keys(n, m, 16, k, 1, r, lanes);
    }
}

/* Row `row`'s part: scratch's step table filled from the lanes' orders. */
EPLB_CPU_TARGET_AVX2 static void vertical_begin(const eplb_pack_job *job, int64_t row, int32_t first,
                                                int32_t lanes, eplb_cpu_scratch *scratch, vertical_row *r)
{
    const int32_t n = job->items;
    const float *w = (const float *)job->weight + row * n;
    r->step_weight = scratch->lanes;
    r->true_load = r->step_weight + 8 * (size_t)n;
    r->slot = (int32_t *)(r->true_load + 8 * EPLB_CPU_VERTICAL_MAX);
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++) /* missing lanes repeat lane 0 */
        r->order[j] = scratch->order_row + (int64_t)(first + (j < lanes ? j : 0)) * n;
    for (int32_t t = 0; t < n; t++)
        for (int32_t j = 0; j < EPLB_CPU_LANES; j++)
            r->step_weight[8 * t + j] = w[r->order[j][t]];
    for (int32_t j = 0; j < lanes; j++)
        r->content[j] = scratch->content_row + (int64_t)(first + j) * n;
}

EPLB_CPU_TARGET_AVX2 void eplb_cpu_greedy_vertical(const eplb_pack_job *job, const int64_t *row, int32_t S,
                                                  int32_t first, int32_t lanes,
                                                  float *const *const *loads, eplb_cpu_scratch *const *scratch)
{
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    vertical_row r[2];
    vertical_begin(job, row[0], first, lanes, scratch[0], &r[0]);
    if (S == 2)
        vertical_begin(job, row[1], first, lanes, scratch[1], &r[1]);
    /* The keyed steps place the items themselves; the AVX2 steps leave it
     * to the pass below, and take one row at a time. */
    const int keyed = eplb_cpu_has_avx512(scratch[0]) && k < EPLB_CPU_KEY_COUNT_LIMIT;
    if (keyed)
        greedy_vertical_run_avx512(n, m, k, S, r, lanes);
    for (int32_t i = 0; i < S; i++) {
        if (!keyed)
            greedy_vertical_run_avx2(n, m, k, r[i].step_weight, r[i].slot, r[i].true_load);
        for (int32_t j = 0; j < lanes; j++) {
            if (!keyed)
                for (int32_t t = 0; t < n; t++)
                    r[i].content[j][r[i].slot[8 * t + j]] = r[i].order[j][t];
            for (int32_t p = 0; p < m; p++)
                loads[i][j][p] = r[i].true_load[8 * p + j];
        }
    }
}

size_t eplb_cpu_greedy_vertical_words(int32_t n)
{
    return 16 * (size_t)n + 8 * EPLB_CPU_VERTICAL_MAX;
}
#endif /* EPLB_CPU_X86_DISPATCH */
