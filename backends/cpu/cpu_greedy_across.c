/* The keyed greedy of SPEC 6.2 across lanes, for 17 to EPLB_CPU_ACROSS_MAX
 * packs with AVX-512 (the global DeepSeek-V3 shapes): eight candidates of a
 * row stepped together, or two rows' eight side by side where a layer is one
 * row. cpu_greedy.c chooses it among the greedy variants. */
#include <string.h>

#include "cpu_stages.h"

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>

/* ---- AVX-512 keyed greedy across lanes, up to 128 packs ---------------------
 * The keys of the keyed greedy (cpu_greedy.c), but each block's minimum kept
 * for the eight lanes side by side (minima[b] holds block b's minimum of
 * every lane), so that one vertical pass finds the chosen pack of all eight
 * candidates at once, the new keys of all eight come from one set of vector
 * operations, and the updated blocks' minima come from one shared
 * reduction. The keyed greedy spends most of each step on horizontal
 * reductions of one lane. */

/* The step table of eight lanes: step_item[8t + j] = order[j][t] and
 * step_weight[8t + j] = w[order[j][t]], eight steps at a time by an 8 x 8
 * transpose of the orders and a gather of their weights instead of 64 loads
 * and stores of each (the greedy across lanes; the vertical greedy's short
 * rows were no faster so). */
EPLB_CPU_TARGET_AVX2 static void step_table(const int32_t *const *order, int32_t n, const float *w,
                                            int32_t *step_item, float *step_weight)
{
    int32_t t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256i r[8], u[8], v[8];
        for (int32_t j = 0; j < 8; j++)
            r[j] = _mm256_loadu_si256((const __m256i *)(order[j] + t));
        for (int32_t j = 0; j < 8; j += 2) {
            u[j] = _mm256_unpacklo_epi32(r[j], r[j + 1]);
            u[j + 1] = _mm256_unpackhi_epi32(r[j], r[j + 1]);
        }
        for (int32_t j = 0; j < 8; j += 4) {
            v[j] = _mm256_unpacklo_epi64(u[j], u[j + 2]);
            v[j + 1] = _mm256_unpackhi_epi64(u[j], u[j + 2]);
            v[j + 2] = _mm256_unpacklo_epi64(u[j + 1], u[j + 3]);
            v[j + 3] = _mm256_unpackhi_epi64(u[j + 1], u[j + 3]);
        }
        /* v[0..3] hold steps t..t+3 of lanes 0-3 (low) and t+4..t+7 (high),
         * v[4..7] the same of lanes 4-7. */
        for (int32_t i = 0; i < 4; i++) {
            const __m256i low = _mm256_permute2x128_si256(v[i], v[i + 4], 0x20);
            const __m256i high = _mm256_permute2x128_si256(v[i], v[i + 4], 0x31);
            _mm256_storeu_si256((__m256i *)(step_item + 8 * (t + i)), low);
            _mm256_storeu_si256((__m256i *)(step_item + 8 * (t + i + 4)), high);
            _mm256_storeu_ps(step_weight + 8 * (t + i), _mm256_i32gather_ps(w, low, 4));
            _mm256_storeu_ps(step_weight + 8 * (t + i + 4), _mm256_i32gather_ps(w, high, 4));
        }
    }
    for (; t < n; t++)
        for (int32_t j = 0; j < EPLB_CPU_LANES; j++) {
            const int32_t item = order[j][t];
            step_item[8 * t + j] = item;
            step_weight[8 * t + j] = w[item];
        }
}

/* Smallest value of each of eight vectors: lane j of the result is the
 * minimum of u[j]. Each merge of two vectors keeps half of each in place
 * with a blend and brings the other halves over with one shuffle, so that
 * only one of its operations needs the shuffle port, which the steps keep
 * busy. The first merges put u[j] in the low half and u[j + 4] in the high
 * half, the second ones every other pair of lanes, the last one each lane. */
EPLB_CPU_TARGET_AVX512VL static inline __m512i min_of_each(const __m512i *u)
{
    __m512i half[4];
    static const int pair[4][2] = {{0, 4}, {2, 6}, {1, 5}, {3, 7}};
    for (int i = 0; i < 4; i++) {
        const __m512i a = u[pair[i][0]], b = u[pair[i][1]];
        half[i] = _mm512_min_epu64(_mm512_mask_blend_epi64(0xF0, a, b),
                                   _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 3, 2)));
    }
    const __m512i pairs = _mm512_setr_epi64(2, 3, 8, 9, 6, 7, 12, 13);
    const __m512i even = _mm512_min_epu64(_mm512_mask_blend_epi64(0xCC, half[0], half[1]),
                                          _mm512_permutex2var_epi64(half[0], pairs, half[1]));
    const __m512i odd = _mm512_min_epu64(_mm512_mask_blend_epi64(0xCC, half[2], half[3]),
                                         _mm512_permutex2var_epi64(half[2], pairs, half[3]));
    const __m512i lanes = _mm512_setr_epi64(1, 8, 3, 10, 5, 12, 7, 14);
    return _mm512_min_epu64(_mm512_mask_blend_epi64(0xAA, even, odd),
                            _mm512_permutex2var_epi64(even, lanes, odd));
}

/* One row's eight lanes: keys (lane j's at key + j * lane_keys), step
 * table, contents, and the first step that searches. */
typedef struct across_row {
    uint64_t *key;
    const int32_t *step_item;
    const float *step_weight;
    int32_t *content[EPLB_CPU_LANES];
    int32_t lanes, start;
} across_row;

/* The blocks' minima of a row's eight lanes, side by side. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
across_minima(const uint64_t *key, size_t lane_keys, const int32_t B, __m512i *minima)
{
    EPLB_CPU_UNROLL_16 for (int32_t b = 0; b < B; b++) {
        __m512i block[EPLB_CPU_LANES];
        for (int32_t j = 0; j < EPLB_CPU_LANES; j++)
            block[j] = _mm512_load_si512(key + j * lane_keys + 8 * b);
        minima[b] = min_of_each(block);
    }
}

/* Searching step t of one row's eight lanes over B blocks (B a constant, so
 * that the blocks' minima stay in registers). */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
across_step(uint64_t *key, size_t lane_keys, const int32_t B, int32_t t, int32_t k,
            const float *step_weight, const int32_t *step_item, int32_t *const *content,
            int32_t lanes, __m512i *minima)
{
    __m512i smallest[EPLB_CPU_ACROSS_MAX / 8];
    /* Keys are worked on as the eight 64-bit lanes they are, and each lane's
     * new key and block go through memory (loads and broadcasts from
     * memory), not lane extractions: fewer operations on the shuffle port,
     * which two rows' steps side by side would otherwise saturate. */
    const __m512i one = _mm512_set1_epi64(1), last = _mm512_set1_epi64(k - 1);
    const __m512i per_pack = _mm512_set1_epi64(k);
    const __m512i count_mask = _mm512_set1_epi64(EPLB_CPU_KEY_COUNT_LIMIT - 1);
    const __m512i pack_mask = _mm512_set1_epi64((1 << (32 - EPLB_CPU_KEY_PACK_SHIFT)) - 1);
    const long long L = (long long)lane_keys;
    const __m512i lane_base = _mm512_setr_epi64(0, L, 2 * L, 3 * L, 4 * L, 5 * L, 6 * L, 7 * L);
    /* A full pack's key gets bit 63, the load's sign bit (clear for every
     * load >= +0): above every open pack's key, and its load kept. */
    const __m512i full_bit = _mm512_set1_epi64(INT64_MIN);
    /* Row r selects lane r of a block. */
    static const uint64_t lane_of[8][8] __attribute__((aligned(64))) = {
        {~0ull}, {0, ~0ull}, {0, 0, ~0ull}, {0, 0, 0, ~0ull}, {0, 0, 0, 0, ~0ull},
        {0, 0, 0, 0, 0, ~0ull}, {0, 0, 0, 0, 0, 0, ~0ull}, {0, 0, 0, 0, 0, 0, 0, ~0ull}};
    uint64_t at[EPLB_CPU_LANES] __attribute__((aligned(64)));
    uint64_t fresh[EPLB_CPU_LANES] __attribute__((aligned(64)));
    uint64_t slot[EPLB_CPU_LANES] __attribute__((aligned(64)));
    /* Pairwise: the steps' critical path. */
    EPLB_CPU_UNROLL_16 for (int32_t b = 0; b < B; b++)
        smallest[b] = minima[b];
    EPLB_CPU_UNROLL_16 for (int32_t stride = 1; stride < B; stride *= 2)
        EPLB_CPU_UNROLL_16 for (int32_t b = 0; b + stride < B; b += 2 * stride)
            smallest[b] = _mm512_min_epu64(smallest[b], smallest[b + stride]);
    const __m512i pack = _mm512_and_si512(_mm512_srli_epi64(smallest[0], EPLB_CPU_KEY_PACK_SHIFT), pack_mask);
    const __m512i filled = _mm512_and_si512(smallest[0], count_mask);
    /* The new key: count + 1 in the low half, the load + the step's
     * weight in the high half (the float add on the odd 32-bit lanes). */
    const __m512i counted = _mm512_add_epi64(smallest[0], one);
    const __m512 weight = _mm512_castsi512_ps(_mm512_slli_epi64(
        _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(step_weight + 8 * t))), 32));
    __m512i new_key = _mm512_castps_si512(_mm512_mask_add_ps(
        _mm512_castsi512_ps(counted), 0xAAAA, _mm512_castsi512_ps(counted), weight));
    new_key = _mm512_mask_or_epi64(new_key, _mm512_cmpeq_epi64_mask(filled, last), new_key, full_bit);
    _mm512_store_si512(at, _mm512_add_epi64(lane_base, pack));
    _mm512_store_si512(fresh, new_key);
    _mm512_store_si512(slot, _mm512_add_epi64(_mm512_mul_epu32(pack, per_pack), filled));
    /* The scalar reads below then come from memory, not from lanes. */
    __asm__("" : "+m"(at), "+m"(fresh), "+m"(slot));
    /* Each lane's item into its slot here, beside the steps' chain of
     * dependent operations, rather than in a pass of its own. */
    for (int32_t j = 0; j < lanes; j++)
        content[j][slot[j]] = step_item[8 * t + j];
    /* Each lane's block of the chosen pack, with its new key. */
    __m512i block[EPLB_CPU_LANES];
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++) {
        uint64_t *where = key + (at[j] & ~(uint64_t)7);
        block[j] = _mm512_ternarylogic_epi64(_mm512_load_si512(lane_of[at[j] & 7]),
                                             _mm512_set1_epi64((long long)fresh[j]),
                                             _mm512_load_si512(where), 0xCA);
        _mm512_store_si512(where, block[j]);
    }
    const __m512i block_min = min_of_each(block);
    const __m512i block_of = _mm512_srli_epi64(pack, 3);
    EPLB_CPU_UNROLL_16 for (int32_t b = 0; b < B; b++)
        minima[b] = _mm512_mask_mov_epi64(
            minima[b], _mm512_cmpeq_epi64_mask(block_of, _mm512_set1_epi64(b)), block_min);
}

/* The searching steps of one row (S = 1), or of two rows side by side. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
across_steps(const across_row *rows, const int32_t S, size_t lane_keys, const int32_t B,
             int32_t n, int32_t k)
{
    /* Each row's state in locals: the steps' stores could alias the rows'. */
    __m512i minima0[EPLB_CPU_ACROSS_MAX / 8], minima1[EPLB_CPU_ACROSS_MAX / 8];
    uint64_t *key0 = rows[0].key;
    const float *weight0 = rows[0].step_weight;
    const int32_t *item0 = rows[0].step_item, lanes = rows[0].lanes;
    int32_t *content0[EPLB_CPU_LANES], *content1[EPLB_CPU_LANES];
    memcpy(content0, rows[0].content, sizeof content0);
    across_minima(key0, lane_keys, B, minima0);
    if (S == 1) {
        for (int32_t t = rows[0].start; t < n; t++)
            across_step(key0, lane_keys, B, t, k, weight0, item0, content0, lanes, minima0);
        return;
    }
    uint64_t *key1 = rows[1].key;
    const float *weight1 = rows[1].step_weight;
    const int32_t *item1 = rows[1].step_item;
    memcpy(content1, rows[1].content, sizeof content1);
    across_minima(key1, lane_keys, B, minima1);
    /* The row that searches first steps alone until the other one does. */
    int32_t t = rows[0].start < rows[1].start ? rows[0].start : rows[1].start;
    for (; t < rows[1].start; t++)
        across_step(key0, lane_keys, B, t, k, weight0, item0, content0, lanes, minima0);
    for (; t < rows[0].start; t++)
        across_step(key1, lane_keys, B, t, k, weight1, item1, content1, lanes, minima1);
    for (; t < n; t++) {
        across_step(key0, lane_keys, B, t, k, weight0, item0, content0, lanes, minima0);
        across_step(key1, lane_keys, B, t, k, weight1, item1, content1, lanes, minima1);
    }
}

/* across_steps for the block counts it is built for. */
EPLB_CPU_TARGET_AVX512VL static void across_steps_of(const across_row *rows, int32_t S,
                                                     size_t lane_keys, int32_t B, int32_t n, int32_t k)
{
    if (B == 4)
        S == 1 ? across_steps(rows, 1, lane_keys, 4, n, k) : across_steps(rows, 2, lane_keys, 4, n, k);
    else if (B == 8)
        S == 1 ? across_steps(rows, 1, lane_keys, 8, n, k) : across_steps(rows, 2, lane_keys, 8, n, k);
    else if (B == 12)
        S == 1 ? across_steps(rows, 1, lane_keys, 12, n, k) : across_steps(rows, 2, lane_keys, 12, n, k);
    else
        S == 1 ? across_steps(rows, 1, lane_keys, 16, n, k) : across_steps(rows, 2, lane_keys, 16, n, k);
}

/* Blocks of eight packs that the steps search: m's, rounded up to one of
 * the four counts across_steps is built for. */
static int32_t across_blocks(int32_t m)
{
    const int32_t blocks = (m + 7) / 8;
    return blocks <= 4 ? 4 : blocks <= 8 ? 8 : blocks <= 12 ? 12 : 16;
}

size_t eplb_cpu_greedy_across_words(int32_t n)
{
    return 24 * (size_t)n + 16 + (size_t)EPLB_CPU_LANES * 16 * (EPLB_CPU_ACROSS_MAX / 8);
}

/* The first `left` of eight lanes, none when left <= 0. */
static inline __mmask8 first_lanes(int32_t left)
{
    return left >= 8 ? (__mmask8)0xFF : left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1);
}

/* Everything before the searching steps of lanes first .. first+lanes-1 of a
 * row: the step table, the keys, and the steps that need no search. */
EPLB_CPU_TARGET_AVX512VL static void across_begin(const eplb_pack_job *job, int64_t row,
                                                  int32_t first, int32_t lanes,
                                                  eplb_cpu_scratch *scratch, across_row *r)
{
    const int32_t n = job->items, m = job->packs, k = job->per_pack, B = across_blocks(m);
    const float *w = (const float *)job->weight + row * n;
    const int32_t *order[EPLB_CPU_LANES];
    int32_t *step_item = (int32_t *)scratch->lanes;
    float *step_weight = (float *)(step_item + 8 * (size_t)n);
    int32_t *slot = (int32_t *)(step_weight + 8 * (size_t)n);
    uint64_t *key = (uint64_t *)(((uintptr_t)(slot + 8 * (size_t)n) + 63) & ~(uintptr_t)63);
    const size_t lane_keys = 8 * (size_t)B;
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++) { /* missing lanes repeat lane 0 */
        order[j] = scratch->order_row + (int64_t)(first + (j < lanes ? j : 0)) * n;
        r->content[j] = j < lanes ? scratch->content_row + (int64_t)(first + j) * n : NULL;
    }
    /* Step t < start goes to pack t with no search (see greedy_keys_avx512):
     * start ends after the first weight of any lane that is not positive. */
    int32_t start = m < n ? m : n;
    step_table(order, n, w, step_item, step_weight);
    for (int32_t t = 0; t < start; t++)
        if (_mm256_cmp_ps_mask(_mm256_loadu_ps(step_weight + 8 * t), _mm256_setzero_ps(), _CMP_GT_OQ) != 0xFF) {
            start = t + 1;
            break;
        }
    /* Each lane's keys eight packs a vector, from its order: pack t < start
     * holds item t (load 0 + its weight, one item), the other packs none;
     * keys beyond the packs' stay at UINT64_MAX, never a minimum. */
    const __m512i one = _mm512_set1_epi64(1), eight = _mm512_set1_epi64(8);
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++) {
        uint64_t *lane_key = key + j * lane_keys;
        __m512i pack = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        for (int32_t b = 0; b < B; b++, pack = _mm512_add_epi64(pack, eight)) {
            const __mmask8 placed = first_lanes(start - 8 * b), open = first_lanes(m - 8 * b);
            const __m256i item = _mm256_maskz_loadu_epi32(placed, order[j] + 8 * b);
            const __m256 load = _mm256_add_ps(
                _mm256_setzero_ps(), _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), placed, item, w, 4));
            const __m512i numbered = _mm512_slli_epi64(pack, EPLB_CPU_KEY_PACK_SHIFT);
            const __m512i keys = _mm512_mask_mov_epi64(_mm512_set1_epi64(-1), open, numbered);
            const __m512i bits = _mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm256_castps_si256(load)), 32);
            _mm512_store_si512(lane_key + 8 * b, _mm512_mask_ternarylogic_epi64(keys, placed, bits, one, 0xFE));
        }
        if (j < lanes)
            for (int32_t t = 0; t < start; t++)
                r->content[j][t * k] = order[j][t];
    }
    r->key = key;
    r->step_item = step_item;
    r->step_weight = step_weight;
    r->lanes = lanes;
    r->start = start;
}

/* The loads from the keys' upper halves: the steps summed each pack's
 * weights in slot order, as SPEC 6.3 recomputes them. */
static void across_end(const across_row *r, int32_t m, size_t lane_keys, float *const *loads)
{
    for (int32_t j = 0; j < r->lanes; j++) {
        const uint64_t *lane_key = r->key + j * lane_keys;
        for (int32_t p = 0; p < m; p++) {
            const uint32_t bits = (uint32_t)(lane_key[p] >> 32) & 0x7FFFFFFFu;
            memcpy(&loads[j][p], &bits, sizeof bits);
        }
    }
}

void eplb_cpu_greedy_across(const eplb_pack_job *job, const int64_t *row, int32_t S, int32_t first,
                            int32_t lanes, float *const *const *loads, eplb_cpu_scratch *const *scratch)
{
    const int32_t B = across_blocks(job->packs);
    across_row r[2] = {0}; /* the second one unused when S = 1 */
    for (int32_t i = 0; i < S; i++)
        across_begin(job, row[i], first, lanes, scratch[i], &r[i]);
    across_steps_of(r, S, 8 * (size_t)B, B, job->items, job->per_pack);
    for (int32_t i = 0; i < S; i++)
        across_end(&r[i], job->packs, 8 * (size_t)B, loads[i]);
}
#endif
