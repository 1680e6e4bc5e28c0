/* Stage 2 of balanced packing (SPEC 6.2): items in sorted order, each into the
 * least-loaded pack that still has room (ties: lowest pack index). */
#include <math.h>

#include "cpu_backend.h"

/* Tournament tree over the packs: each node holds the pack with the smallest
 * load below it, the left (lower-index) side winning ties, so the root is the
 * SPEC's choice. A full pack's leaf becomes the sentinel m, whose load is
 * +inf: it never beats an open pack with a finite load. Only when every open
 * pack's load has overflowed to +inf can the sentinel reach the root; then a
 * plain scan decides. */
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

#if defined(__SSE2__)
#include <emmintrin.h>

/* Up to this many packs a vector scan of the loads beats the tree
 * (callgrind: 8 packs 44% fewer instructions, 72 packs 50% more). */
#define EPLB_CPU_GREEDY_SCAN_MAX 32
/* Up to this many packs, two levels of vector scans beat the tree
 * (callgrind: 72 packs about 3x fewer instructions). */
#define EPLB_CPU_GREEDY_BLOCKED_MAX 4096

/* Smallest of values[0..count) (count a multiple of 4), as a broadcast vector. */
static inline __m128 vector_min(const float *values, int32_t count)
{
    __m128 vmin = _mm_loadu_ps(values);
    for (int32_t i = 4; i < count; i += 4)
        vmin = _mm_min_ps(vmin, _mm_loadu_ps(values + i));
    vmin = _mm_min_ps(vmin, _mm_shuffle_ps(vmin, vmin, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_min_ps(vmin, _mm_shuffle_ps(vmin, vmin, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* First i with values[i] == target (known to exist), four at a time. */
static inline int32_t first_equal(const float *values, __m128 target)
{
    for (int32_t i = 0;; i += 4) {
        const int hits = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + i), target));
        if (hits)
            return i + __builtin_ctz((unsigned)hits);
    }
}

/* Puts item into the next slot of pack p; masked[p], the pack's true load
 * while it is open, becomes +inf once it is full. */
static inline void place_item(const float *w, int32_t item, int32_t p, int32_t k,
                              int32_t *content, int32_t *count, float *masked)
{
    content[p * k + count[p]] = item;
    count[p]++;
    masked[p] = count[p] == k ? (float)INFINITY : masked[p] + w[item];
}

/* The SPEC's choice by scanning masked loads (full packs and padding hold
 * +inf) four at a time: the smallest value, then its first position. When
 * the smallest is +inf (every open load overflowed) the plain scan decides. */
static void greedy_scan(const float *w, const int32_t *order, int32_t *content, int32_t n,
                        int32_t m, int32_t k, float *masked, int32_t *count)
{
    const int32_t m4 = (m + 3) & ~3;
    for (int32_t p = 0; p < m4; p++)
        masked[p] = p < m ? 0.0f : (float)INFINITY;
    for (int32_t p = 0; p < m; p++)
        count[p] = 0;
    for (int32_t t = 0; t < n; t++) {
        const __m128 vmin = vector_min(masked, m4);
        const int32_t p = _mm_cvtss_f32(vmin) < (float)INFINITY ? first_equal(masked, vmin)
                                                                : first_open_pack(count, m, k);
        place_item(w, order[t], p, k, content, count, masked);
    }
}

/* The same choice over many packs: masked loads in blocks of four, and the
 * minimum of each block. The first block whose minimum is the overall
 * minimum holds the lowest pack index with that load. */
static void greedy_blocked(const float *w, const int32_t *order, int32_t *content, int32_t n,
                           int32_t m, int32_t k, float *masked, float *block_min, int32_t *count)
{
    const int32_t m16 = (m + 15) & ~15, blocks = m16 / 4;
    for (int32_t p = 0; p < m16; p++)
        masked[p] = p < m ? 0.0f : (float)INFINITY;
    for (int32_t b = 0; b < blocks; b++)
        block_min[b] = b * 4 < m ? 0.0f : (float)INFINITY;
    for (int32_t p = 0; p < m; p++)
        count[p] = 0;
    for (int32_t t = 0; t < n; t++) {
        const __m128 vmin = vector_min(block_min, blocks);
        int32_t p;
        if (_mm_cvtss_f32(vmin) < (float)INFINITY) {
            const int32_t b = first_equal(block_min, vmin);
            p = 4 * b + first_equal(masked + 4 * b, vmin);
        } else {
            p = first_open_pack(count, m, k);
        }
        place_item(w, order[t], p, k, content, count, masked);
        const float *q = masked + (p & ~3);
        const float low = q[0] < q[1] ? q[0] : q[1], high = q[2] < q[3] ? q[2] : q[3];
        block_min[p >> 2] = low < high ? low : high;
    }
}
#endif

void eplb_cpu_greedy_one(const eplb_pack_job *job, int64_t row, const int32_t *order,
                         int32_t *content, eplb_cpu_scratch *scratch)
{
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    const float *w = (const float *)job->weight + row * n;
#if defined(__SSE2__)
    if (m <= EPLB_CPU_GREEDY_SCAN_MAX) {
        greedy_scan(w, order, content, n, m, k, scratch->load, scratch->count);
        return;
    }
    if (m <= EPLB_CPU_GREEDY_BLOCKED_MAX) {
        greedy_blocked(w, order, content, n, m, k, scratch->load, scratch->block_min,
                       scratch->count);
        return;
    }
#endif
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

static void greedy_packing(const eplb_pack_job *job, int64_t row, int64_t candidate,
                           eplb_cpu_scratch *scratch)
{
    const int64_t x = row * job->candidates + candidate;
    eplb_cpu_greedy_one(job, row, (const int32_t *)job->order + x * job->items,
                        (int32_t *)job->content + x * job->items, scratch);
}

eplb_status eplb_cpu_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    return eplb_cpu_for_each_packing(backend, job, greedy_packing, "greedy");
}
