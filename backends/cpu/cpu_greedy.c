/* Stage 2 of balanced packing (SPEC 6.2): items in sorted order, each into the
 * least-loaded pack that still has room (ties: lowest pack index).
 *
 * Each variant finds exactly the pack that the SPEC's scan finds; which one
 * runs depends on the pack count m, the vector level and the row's weights:
 *   m > EPLB_CPU_LOCKSTEP_MAX           tournament tree, one candidate at a time
 *   m <= 16, AVX2, finite row sums      vertical: a vector lane per candidate
 *   m <= 128, AVX-512, finite row sums  keyed across lanes: eight candidates a step
 *                                       (two rows' steps side by side where a layer is one
 *                                       row; cpu_greedy_across.c)
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

/* Whether no sum of a row's weights can reach +inf: n times the largest
 * weight stays far below FLT_MAX (the keyed and vertical searches need it). */
static int row_sums_finite(const float *w, int32_t n)
{
    float largest = 0.0f;
    int32_t i = 0;
    /* MAXPS is w > largest ? w : largest lane by lane, NaN weights skipped
     * alike; four running maxima of four lanes instead of one chain of
     * dependent scalar maxima (the compiler keeps the loop scalar). */
    __m128 most[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    for (; i + 16 <= n; i += 16)
        for (int32_t v = 0; v < 4; v++)
            most[v] = _mm_max_ps(_mm_loadu_ps(w + i + 4 * v), most[v]);
    for (; i + 4 <= n; i += 4)
        most[i / 4 % 4] = _mm_max_ps(_mm_loadu_ps(w + i), most[i / 4 % 4]);
    float lane[16];
    for (int32_t v = 0; v < 4; v++)
        _mm_storeu_ps(lane + 4 * v, most[v]);
    for (int32_t j = 0; j < 16; j++)
        largest = lane[j] > largest ? lane[j] : largest;
    for (; i < n; i++)
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
        words = eplb_cpu_greedy_across_words(items) > words ? eplb_cpu_greedy_across_words(items)
                                                             : words;
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
        eplb_cpu_greedy_across(job, &row, 1, first, lanes, &loads, &scratch);
        return;
    }
    if (m > EPLB_CPU_FLAT_MAX && k < EPLB_CPU_KEY_COUNT_LIMIT && eplb_cpu_has_avx512(scratch) &&
        row_sums_finite(w, n)) {
        greedy_keys_avx512(job, row, first, lanes, loads, scratch);
        return;
    }
    if (m <= EPLB_CPU_VERTICAL_MAX && eplb_cpu_has_avx2(scratch) && row_sums_finite(w, n)) {
        eplb_cpu_greedy_vertical(job, &row, 1, first, lanes, &loads, &scratch);
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

int eplb_cpu_greedy_pairs_vertical(const eplb_pack_job *job, const eplb_cpu_settings *settings)
{
#if EPLB_CPU_X86_DISPATCH
    /* The rows that eplb_cpu_greedy_row gives the keyed vertical greedy. */
    if (settings->isa >= EPLB_CPU_ISA_AVX512)
        return job->packs <= EPLB_CPU_FLAT_MAX && job->packs <= EPLB_CPU_VERTICAL_MAX &&
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
        eplb_cpu_greedy_across(job, row, 2, first, lanes, loads, scratch);
        return;
    }
    if (eplb_cpu_greedy_pairs_vertical(job, &scratch[0]->settings) && row_sums_finite(w0, n) &&
        row_sums_finite(w1, n)) {
        eplb_cpu_greedy_vertical(job, row, 2, first, lanes, loads, scratch);
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
