/* Stage 2 of balanced packing (SPEC 6.2): items in sorted order, each into the
 * least-loaded pack that still has room (ties: lowest pack index).
 *
 * Each variant finds exactly the pack that the SPEC's scan finds; which one
 * runs depends on the pack count m, the vector level and the row's weights:
 *   m > EPLB_CPU_LOCKSTEP_MAX           tournament tree, one candidate at a time
 *   m <= 16, AVX2, finite row sums      vertical: a vector lane per candidate
 *   m <= 128, AVX-512, finite row sums  keyed across lanes: eight candidates a step
 *                                       (two rows' steps side by side where a layer is one row)
 *   m > 128, AVX-512, finite row sums   keyed: one unsigned 64-bit minimum a step
 *   otherwise                           lockstep scans (SSE2, or portable C)
 * Finite row sums: no open pack's load can reach +inf, which the vertical
 * and keyed searches need; other rows take the lockstep scans. */
#include <math.h>

#include "cpu_stages.h"

/* ---- tournament tree: many packs, one candidate at a time -------------------
 * Chosen beyond EPLB_CPU_LOCKSTEP_MAX packs, where it beats every scan on each
 * machine measured (docs/benchmarks.md, "cpu greedy variants"): a step costs
 * log2(m) comparisons instead of a pass over m loads. Each node holds the
 * pack with the smallest load below it, the left (lower-index) side winning
 * ties, so the root is the SPEC's choice. A full pack's leaf becomes the
 * sentinel m, whose load is +inf: it never beats an open pack with a finite
 * load. Only when every open pack's load has overflowed to +inf can the
 * sentinel reach the root; then a plain scan decides. */
static inline int32_t winner(const float *load, int32_t a, int32_t b)
{
    return load[b] < load[a] ? b : a;
}

static int32_t first_open_pack(const int32_t *count, int32_t m, int32_t k)
{
    for (int32_t p = 0; p < m; p++)
        if (count[p] < k)
            return p;
    return 0; /* unreachable: n == m * k items fill the packs exactly */
}

static void greedy_one(const eplb_pack_job *job, int64_t row, const int32_t *order,
                       int32_t *content, eplb_cpu_scratch *scratch)
{
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    const float *w = (const float *)job->weight + row * n;
    float *load = scratch->load; /* m + 1 entries: the sentinel last */
    int32_t *count = scratch->count, *tree = scratch->tree;
    int32_t leaves = 1;
    while (leaves < m)
        leaves *= 2;
    for (int32_t p = 0; p < m; p++) {
        load[p] = 0.0f;
        count[p] = 0;
    }
    load[m] = (float)INFINITY;
    for (int32_t p = 0; p < leaves; p++)
        tree[leaves + p] = p < m ? p : m;
    for (int32_t node = leaves - 1; node >= 1; node--)
        tree[node] = winner(load, tree[2 * node], tree[2 * node + 1]);

    for (int32_t t = 0; t < n; t++) {
        const int32_t item = order[t];
        int32_t p = tree[1];
        if (p == m)
            p = first_open_pack(count, m, k);
        content[p * k + count[p]] = item;
        count[p]++;
        load[p] += w[item];
        if (count[p] == k)
            tree[leaves + p] = m;
        for (int32_t node = (leaves + p) / 2; node >= 1; node /= 2)
            tree[node] = winner(load, tree[2 * node], tree[2 * node + 1]);
    }
}

/* ---- lockstep greedy: the candidates of a row side by side ------------------
 * One packing's greedy is a chain of dependent steps (each minimum needs the
 * previous step's load), so it is latency-bound. Candidates are independent:
 * stepping EPLB_CPU_LANES of them in turn, with branch-free steps, lets the
 * out-of-order core overlap their chains. Each lane keeps its true loads
 * (load), the loads of open packs with +inf for full ones and padding
 * (masked), and for m > EPLB_CPU_FLAT_MAX the minimum of each block of eight
 * masked loads (block_min). The SSE2 steps are the default where the keyed
 * or vertical search cannot run: 17 to 512 packs without AVX-512 (AVX2-only
 * x86), and rows whose sums could reach +inf; the portable steps are the
 * same choice for machines without SSE2. */

/* The packs' true loads, counts and masks of one lane. */
typedef struct greedy_lane {
    const int32_t *order;
    int32_t *content;
    float *masked, *block_min, *load;
    int32_t *count;
} greedy_lane;

/* One level of search covers up to this many packs. */
#define EPLB_CPU_FLAT_MAX 16

static void lane_init(greedy_lane *g, int32_t m, int32_t masked_len, int32_t blocks_len)
{
    for (int32_t p = 0; p < masked_len; p++)
        g->masked[p] = p < m ? 0.0f : (float)INFINITY;
    for (int32_t b = 0; b < blocks_len; b++)
        g->block_min[b] = b * 8 < m ? 0.0f : (float)INFINITY;
    for (int32_t p = 0; p < m; p++) {
        g->load[p] = 0.0f;
        g->count[p] = 0;
    }
}

/* Puts item into the next slot of pack p; masked[p] becomes +inf once the
 * pack is full. Returns the new masked value. */
static inline float lane_place(greedy_lane *g, const float *w, int32_t item, int32_t p, int32_t k)
{
    const int32_t filled = g->count[p];
    g->content[p * k + filled] = item;
    g->count[p] = filled + 1;
    const float load = g->load[p] + w[item];
    g->load[p] = load;
    const float masked = filled + 1 == k ? (float)INFINITY : load;
    g->masked[p] = masked;
    return masked;
}

#if EPLB_CPU_SSE2
#include <emmintrin.h>

/* Smallest of the four lanes, broadcast. */
static inline __m128 vector_min_of(__m128 vmin)
{
    vmin = _mm_min_ps(vmin, _mm_shuffle_ps(vmin, vmin, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_min_ps(vmin, _mm_shuffle_ps(vmin, vmin, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Smallest of values[0..count) (count a multiple of 4), as a broadcast vector. */
static inline __m128 vector_min(const float *values, int32_t count)
{
    __m128 vmin = _mm_loadu_ps(values);
    for (int32_t i = 4; i < count; i += 4)
        vmin = _mm_min_ps(vmin, _mm_loadu_ps(values + i));
    return vector_min_of(vmin);
}

/* Bit i set where values[i] == target, values[0 .. 4*chunks), chunks <= 16. */
static inline uint64_t equal_bits(const float *values, int32_t chunks, __m128 target)
{
    uint64_t bits = 0;
    for (int32_t j = 0; j < chunks; j++)
        bits |= (uint64_t)_mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + 4 * j), target))
                << (4 * j);
    return bits;
}

/* One greedy step of one lane, m <= EPLB_CPU_FLAT_MAX: masked holds 4*chunks values. */
static inline void lane_step_flat(greedy_lane *g, const float *w, int32_t t, int32_t m, int32_t k,
                                  int32_t chunks)
{
    const __m128 vmin = vector_min(g->masked, 4 * chunks);
    int32_t p;
    if (__builtin_expect(_mm_cvtss_f32(vmin) < (float)INFINITY, 1))
        p = __builtin_ctzll(equal_bits(g->masked, chunks, vmin));
    else
        p = first_open_pack(g->count, m, k);
    lane_place(g, w, g->order[t], p, k);
}

/* One greedy step of one lane over blocks of eight packs: the first block
 * whose minimum is the overall minimum holds the lowest pack with it. */
static inline void lane_step_blocked(greedy_lane *g, const float *w, int32_t t, int32_t m, int32_t k,
                                     int32_t block_chunks)
{
    const __m128 vmin = vector_min(g->block_min, 4 * block_chunks);
    if (__builtin_expect(_mm_cvtss_f32(vmin) < (float)INFINITY, 1)) {
        const int32_t b = __builtin_ctzll(equal_bits(g->block_min, block_chunks, vmin));
        /* The block is read before the placement writes to it and its new
         * minimum comes from registers: no store-to-load round trip. */
        const __m128 low = _mm_loadu_ps(g->masked + 8 * b), high = _mm_loadu_ps(g->masked + 8 * b + 4);
        const int32_t r = __builtin_ctz((unsigned)(_mm_movemask_ps(_mm_cmpeq_ps(low, vmin)) |
                                                   _mm_movemask_ps(_mm_cmpeq_ps(high, vmin)) << 4));
        const __m128 masked = _mm_set1_ps(lane_place(g, w, g->order[t], 8 * b + r, k));
        const __m128i at = _mm_set1_epi32(r);
        const __m128 here_low = _mm_castsi128_ps(_mm_cmpeq_epi32(at, _mm_setr_epi32(0, 1, 2, 3)));
        const __m128 here_high = _mm_castsi128_ps(_mm_cmpeq_epi32(at, _mm_setr_epi32(4, 5, 6, 7)));
        const __m128 new_low = _mm_or_ps(_mm_and_ps(here_low, masked), _mm_andnot_ps(here_low, low));
        const __m128 new_high = _mm_or_ps(_mm_and_ps(here_high, masked), _mm_andnot_ps(here_high, high));
        g->block_min[b] = _mm_cvtss_f32(vector_min_of(_mm_min_ps(new_low, new_high)));
    } else {
        const int32_t p = first_open_pack(g->count, m, k);
        lane_place(g, w, g->order[t], p, k);
        g->block_min[p >> 3] = _mm_cvtss_f32(vector_min(g->masked + (p & ~7), 8));
    }
}
#else
/* Portable steps: the same choice by scalar scans (lowest index on ties). */
static inline int32_t first_minimum(const float *values, int32_t count)
{
    int32_t best = 0;
    for (int32_t i = 1; i < count; i++)
        best = values[i] < values[best] ? i : best;
    return best;
}

static inline void lane_step_flat(greedy_lane *g, const float *w, int32_t t, int32_t m, int32_t k,
                                  int32_t chunks)
{
    int32_t p = first_minimum(g->masked, 4 * chunks);
    if (!(g->masked[p] < (float)INFINITY))
        p = first_open_pack(g->count, m, k);
    lane_place(g, w, g->order[t], p, k);
}

static inline void lane_step_blocked(greedy_lane *g, const float *w, int32_t t, int32_t m, int32_t k,
                                     int32_t block_chunks)
{
    const int32_t b = first_minimum(g->block_min, 4 * block_chunks);
    int32_t p = 8 * b + first_minimum(g->masked + 8 * b, 8);
    if (!(g->masked[p] < (float)INFINITY))
        p = first_open_pack(g->count, m, k);
    lane_place(g, w, g->order[t], p, k);
    const float *q = g->masked + (p & ~7);
    float low = q[0];
    for (int32_t i = 1; i < 8; i++)
        low = q[i] < low ? q[i] : low;
    g->block_min[p >> 3] = low;
}
#endif

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>
#include <string.h>

/* ---- AVX-512 keyed greedy: argmin by one unsigned 64-bit minimum ----------
 * Wins over the SSE2 steps on AVX-512 machines from 17 to 512 packs (the
 * global DeepSeek-V3 shapes; docs/benchmarks.md, round 2).
 * Each open pack p has the key (load bits << 32 | p << 20 | items in p): for
 * loads >= +0 the float order is the unsigned order of the bits, so the
 * smallest key is the least-loaded pack and, among equal loads, the lowest
 * index (the SPEC's choice) in one vpminuq reduction, with no
 * compare-and-search pass; the key also holds the pack's load and item
 * count, so that a step reads no other state of the pack. A full pack's key
 * has +inf bits. Valid only while no open pack's load is +inf,
 * which the caller guarantees (row weights far below FLT_MAX / n). Keys sit
 * in blocks of eight (one zmm) with each block's minimum kept aside. */
typedef struct key_lane {
    const int32_t *order;
    int32_t *content;
    uint64_t *key;       /* [8 * blocks], padded with UINT64_MAX, 64-byte aligned */
    uint64_t *block_min; /* [8 * block_vectors], padded with UINT64_MAX */
    float *load;         /* written, never read: the true loads for the caller */
} key_lane;

#define EPLB_CPU_FULL_BITS 0x7F800000u /* +inf */

/* Smallest of eight unsigned 64-bit lanes. */
EPLB_CPU_TARGET_AVX512 static inline uint64_t min_u64x8(__m512i x)
{
    x = _mm512_min_epu64(x, _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(1, 0, 3, 2)));
    x = _mm512_min_epu64(x, _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
    x = _mm512_min_epu64(x, _mm512_shuffle_epi32(x, _MM_PERM_BADC));
    return (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(x));
}

EPLB_CPU_TARGET_AVX512 static inline void key_step(key_lane *g, const float *w, int32_t t,
                                                   int32_t k, int32_t block_vectors)
{
    __m512i bm = _mm512_loadu_si512(g->block_min);
    for (int32_t i = 1; i < block_vectors; i++)
        bm = _mm512_min_epu64(bm, _mm512_loadu_si512(g->block_min + 8 * i));
    const uint64_t smallest = min_u64x8(bm);
    const uint32_t low = (uint32_t)smallest, old_bits = (uint32_t)(smallest >> 32);
    const int32_t p = (int32_t)(low >> EPLB_CPU_KEY_PACK_SHIFT);
    const int32_t filled = (int32_t)(low & (EPLB_CPU_KEY_COUNT_LIMIT - 1));
    const int32_t item = g->order[t];
    g->content[p * k + filled] = item;
    float load;
    memcpy(&load, &old_bits, sizeof load);
    load += w[item];
    g->load[p] = load;
    uint32_t bits;
    memcpy(&bits, &load, sizeof bits);
    bits = filled + 1 == k ? EPLB_CPU_FULL_BITS : bits;
    /* The block's new keys from registers, stored whole (the next load of
     * this block then forwards from one store of the same size). */
    uint64_t *block = g->key + (p & ~7);
    const __m512i keys = _mm512_mask_set1_epi64(_mm512_load_si512(block), (__mmask8)(1u << (p & 7)),
                                                (long long)((uint64_t)bits << 32 | (low + 1)));
    _mm512_store_si512(block, keys);
    g->block_min[p >> 3] = min_u64x8(keys);
}

/* Words (4 bytes) of scratch that one key lane needs for m packs, alignment included. */
static size_t key_lane_words(int32_t m)
{
    const size_t blocks = ((size_t)m + 7) / 8, block_vectors = (blocks + 7) / 8;
    return 16 + 16 * blocks + 16 * block_vectors;
}

EPLB_CPU_TARGET_AVX512 static void greedy_keys_avx512(const eplb_pack_job *job, int64_t row,
                                                      int32_t first, int32_t lanes,
                                                      float *const *loads, eplb_cpu_scratch *scratch)
{
    uint32_t *area = (uint32_t *)scratch->lanes;
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    const float *w = (const float *)job->weight + row * n;
    const int32_t blocks = (m + 7) / 8, block_vectors = (blocks + 7) / 8;
    key_lane lane[EPLB_CPU_LANES];
    int32_t lane_first[EPLB_CPU_LANES];
    for (int32_t j = 0; j < lanes; j++) {
        key_lane *g = &lane[j];
        g->order = scratch->order_row + (int64_t)(first + j) * n;
        g->content = scratch->content_row + (int64_t)(first + j) * n;
        g->key = (uint64_t *)(((uintptr_t)area + 63) & ~(uintptr_t)63);
        g->block_min = g->key + 8 * blocks;
        g->load = loads[j];
        area += key_lane_words(m);
        for (int32_t p = 0; p < 8 * blocks; p++)
            g->key[p] = p < m ? (uint64_t)p << EPLB_CPU_KEY_PACK_SHIFT : UINT64_MAX;
        for (int32_t b = 0; b < 8 * block_vectors; b++)
            g->block_min[b] = b < blocks ? (uint64_t)(8 * b) << EPLB_CPU_KEY_PACK_SHIFT : UINT64_MAX;
        for (int32_t p = 0; p < m; p++)
            g->load[p] = 0.0f;
    }
    /* Step t < m while every earlier item had a positive weight: packs t ..
     * m-1 are the only ones at load 0, so item t goes to pack t (lowest
     * index) with no search. A zero weight leaves its pack at 0 and ends this. */
    int32_t start = n;
    for (int32_t j = 0; j < lanes; j++) {
        key_lane *g = &lane[j];
        int32_t t = 0;
        while (t < m && t < n) {
            const int32_t item = g->order[t];
            const float load = 0.0f + w[item];
            g->content[t * k] = item;
            g->load[t] = load;
            uint32_t bits;
            memcpy(&bits, &load, sizeof bits);
            g->key[t] = (uint64_t)bits << 32 | (uint32_t)t << EPLB_CPU_KEY_PACK_SHIFT | 1u;
            t++;
            if (!(w[item] > 0.0f))
                break;
        }
        for (int32_t b = 0; b < blocks; b++)
            g->block_min[b] = min_u64x8(_mm512_load_si512(g->key + 8 * b));
        start = t < start ? t : start;
        /* Lanes that got further wait here for the others: no step twice. */
        lane_first[j] = t;
    }
    for (int32_t t = start; t < n; t++)
        for (int32_t j = 0; j < lanes; j++)
            if (t >= lane_first[j])
                key_step(&lane[j], w, t, k, block_vectors);
}

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

/* ---- AVX-512 keyed greedy across lanes, up to 128 packs ---------------------
 * The keys of the keyed greedy, but each block's minimum kept for the eight
 * lanes side by side (minima[b] holds block b's minimum of every lane), so
 * that one vertical pass finds the chosen pack of all eight candidates at
 * once, the new keys of all eight come from one set of vector operations,
 * and the updated blocks' minima come from one shared reduction. The keyed
 * greedy spends most of each step on horizontal reductions of one lane. */
#define EPLB_CPU_ACROSS_MAX 128

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

/* Scratch words of the greedy across lanes: items, weights and slots of
 * every step and lane, and eight lanes' keys, alignment included. */
static size_t across_words(int32_t n)
{
    return 24 * (size_t)n + 16 + (size_t)EPLB_CPU_LANES * 16 * (EPLB_CPU_ACROSS_MAX / 8);
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
    /* Keys beyond the packs' stay at UINT64_MAX, never a minimum. */
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++) {
        uint64_t *lane_key = key + j * lane_keys;
        for (int32_t p = 0; p < 8 * B; p++)
            lane_key[p] = p < m ? (uint64_t)p << EPLB_CPU_KEY_PACK_SHIFT : UINT64_MAX;
        for (int32_t t = 0; t < start; t++) {
            const float load = 0.0f + step_weight[8 * t + j];
            uint32_t bits;
            memcpy(&bits, &load, sizeof bits);
            lane_key[t] = (uint64_t)bits << 32 | (uint32_t)t << EPLB_CPU_KEY_PACK_SHIFT | 1u;
            if (j < lanes)
                r->content[j][t * k] = step_item[8 * t + j];
        }
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

/* The greedy across lanes for lanes first .. first+lanes-1 of S rows (S = 1
 * or 2): row[i] with scratch[i], its loads into loads[i]. */
static void greedy_across_rows(const eplb_pack_job *job, const int64_t *row, int32_t S, int32_t first,
                               int32_t lanes, float *const *const *loads, eplb_cpu_scratch *const *scratch)
{
    const int32_t B = across_blocks(job->packs);
    across_row r[2];
    for (int32_t i = 0; i < S; i++)
        across_begin(job, row[i], first, lanes, scratch[i], &r[i]);
    across_steps_of(r, S, 8 * (size_t)B, B, job->items, job->per_pack);
    for (int32_t i = 0; i < S; i++)
        across_end(&r[i], job->packs, 8 * (size_t)B, loads[i]);
}

/* Whether no sum of a row's weights can reach +inf: n times the largest
 * weight stays far below FLT_MAX (the keyed and vertical searches need it). */
static int row_sums_finite(const float *w, int32_t n)
{
    float largest = 0.0f;
    for (int32_t i = 0; i < n; i++)
        largest = w[i] > largest ? w[i] : largest;
    return (double)largest * (double)n < 1e37;
}
#endif

/* Scratch floats that one lane needs for m packs. */
static size_t lane_words(int32_t m)
{
    const size_t masked = ((size_t)m + 31) & ~(size_t)31, blocks = ((size_t)m / 8 + 4) & ~(size_t)3;
    return masked + blocks + 2 * (size_t)m;
}

size_t eplb_cpu_greedy_lanes_words(int32_t items, int32_t packs)
{
    if (packs > EPLB_CPU_LOCKSTEP_MAX)
        return 0;
    size_t words = EPLB_CPU_LANES * lane_words(packs);
#if EPLB_CPU_X86_DISPATCH
    const size_t keyed = EPLB_CPU_LANES * key_lane_words(packs);
    words = keyed > words ? keyed : words;
    if (packs <= EPLB_CPU_ACROSS_MAX)
        words = across_words(items) > words ? across_words(items) : words;
    words = eplb_cpu_greedy_vertical_words(items) > words ? eplb_cpu_greedy_vertical_words(items) : words;
#else
    (void)items;
#endif
    return words;
}

void eplb_cpu_greedy_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                         float *const *loads, eplb_cpu_scratch *scratch)
{
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    const float *w = (const float *)job->weight + row * n;
    if (m > EPLB_CPU_LOCKSTEP_MAX) {
        /* Many packs: one candidate at a time, the true loads recomputed. */
        for (int32_t j = 0; j < lanes; j++) {
            int32_t *content = scratch->content_row + (int64_t)(first + j) * n;
            greedy_one(job, row, scratch->order_row + (int64_t)(first + j) * n, content, scratch);
            for (int32_t p = 0; p < m; p++)
                loads[j][p] = eplb_cpu_pack_load(w, content, p, k);
        }
        return;
    }
#if EPLB_CPU_X86_DISPATCH
    if (eplb_cpu_greedy_pairs_rows(job, &scratch->settings) && row_sums_finite(w, n)) {
        greedy_across_rows(job, &row, 1, first, lanes, &loads, &scratch);
        return;
    }
    if (m > EPLB_CPU_FLAT_MAX && k < EPLB_CPU_KEY_COUNT_LIMIT && eplb_cpu_has_avx512(scratch) &&
        row_sums_finite(w, n)) {
        greedy_keys_avx512(job, row, first, lanes, loads, scratch);
        return;
    }
    if (m <= EPLB_CPU_VERTICAL_MAX && eplb_cpu_has_avx2(scratch) && row_sums_finite(w, n)) {
        eplb_cpu_greedy_vertical(job, row, first, lanes, loads, scratch);
        return;
    }
#endif
    const int32_t masked_len = (m + 31) & ~31, blocks_len = (m / 8 + 4) & ~3;
    greedy_lane lane[EPLB_CPU_LANES];
    float *area = scratch->lanes;
    for (int32_t j = 0; j < lanes; j++) {
        greedy_lane *g = &lane[j];
        g->order = scratch->order_row + (int64_t)(first + j) * n;
        g->content = scratch->content_row + (int64_t)(first + j) * n;
        g->masked = area;
        g->block_min = area + masked_len;
        g->load = loads[j];
        g->count = (int32_t *)(area + masked_len + blocks_len);
        area += lane_words(m);
        lane_init(g, m, masked_len, blocks_len);
    }
    if (m <= EPLB_CPU_FLAT_MAX) {
        const int32_t chunks = (m + 3) / 4;
        for (int32_t t = 0; t < n; t++)
            for (int32_t j = 0; j < lanes; j++)
                lane_step_flat(&lane[j], w, t, m, k, chunks);
    } else {
        const int32_t block_chunks = ((m + 7) / 8 + 3) / 4;
        for (int32_t t = 0; t < n; t++)
            for (int32_t j = 0; j < lanes; j++)
                lane_step_blocked(&lane[j], w, t, m, k, block_chunks);
    }
}

int eplb_cpu_greedy_pairs_rows(const eplb_pack_job *job, const eplb_cpu_settings *settings)
{
#if EPLB_CPU_X86_DISPATCH
    if (settings->isa >= EPLB_CPU_ISA_AVX512)
        return job->packs > EPLB_CPU_FLAT_MAX && job->packs <= EPLB_CPU_ACROSS_MAX &&
               job->per_pack < EPLB_CPU_KEY_COUNT_LIMIT;
#endif
    return (void)job, (void)settings, 0;
}

void eplb_cpu_greedy_row_pair(const eplb_pack_job *job, const int64_t *row, int32_t first,
                              int32_t lanes, float *const *const *loads,
                              eplb_cpu_scratch *const *scratch)
{
#if EPLB_CPU_X86_DISPATCH
    const int32_t n = job->items;
    const float *w0 = (const float *)job->weight + row[0] * n, *w1 = (const float *)job->weight + row[1] * n;
    if (eplb_cpu_greedy_pairs_rows(job, &scratch[0]->settings) && row_sums_finite(w0, n) &&
        row_sums_finite(w1, n)) {
        greedy_across_rows(job, row, 2, first, lanes, loads, scratch);
        return;
    }
#endif
    for (int32_t i = 0; i < 2; i++)
        eplb_cpu_greedy_row(job, row[i], first, lanes, loads[i], scratch[i]);
}

static void greedy_row(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch)
{
    eplb_cpu_use_job_rows(scratch, job, row);
    float *loads[EPLB_CPU_LANES];
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++)
        loads[j] = scratch->lane_load + (size_t)j * (size_t)job->packs;
    for (int32_t first = 0; first < job->candidates; first += EPLB_CPU_LANES) {
        const int32_t left = job->candidates - first;
        eplb_cpu_greedy_row(job, row, first, left < EPLB_CPU_LANES ? left : EPLB_CPU_LANES, loads,
                            scratch);
    }
}

eplb_status eplb_cpu_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    return eplb_cpu_for_each_row(backend, job, greedy_row,
                                 eplb_cpu_greedy_lanes_words(job->items, job->packs), "greedy");
}
