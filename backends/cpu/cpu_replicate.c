/* Replication (SPEC section 5): each extra slot goes to the item with the
 * highest weight per replica (ties: lowest index). */
#include <math.h>
#include <stdlib.h>

#include "cpu_stages.h"

/* Max-heap of items ordered by (w/cnt descending, index ascending): its top is
 * exactly the SPEC's choice. */
static inline int heap_before(const float *value, int32_t a, int32_t b)
{
    return value[a] > value[b] || (value[a] == value[b] && a < b);
}

static void sift_down(int32_t *heap, int32_t size, const float *value, int32_t at)
{
    for (;;) {
        int32_t left = 2 * at + 1, best = at;
        if (left < size && heap_before(value, heap[left], heap[best])) best = left;
        if (left + 1 < size && heap_before(value, heap[left + 1], heap[best])) best = left + 1;
        if (best == at) return;
        int32_t t = heap[at]; heap[at] = heap[best]; heap[best] = t;
        at = best;
    }
}

static void replicate_heap(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                           int32_t *phyrank, int32_t *cnt, float *value, int32_t *heap)
{
    for (int32_t i = 0; i < n; i++) {
        value[i] = w[i]; /* w / 1 */
        heap[i] = i;
    }
    for (int32_t i = n / 2 - 1; i >= 0; i--)
        sift_down(heap, n, value, i);
    for (int32_t s = n; s < p; s++) {
        const int32_t i = heap[0];
        phy2mlog[s] = i;
        phyrank[s] = cnt[i];
        cnt[i]++;
        value[i] = w[i] / (float)cnt[i];
        sift_down(heap, n, value, 0); /* the top's value only fell */
    }
}

#if EPLB_CPU_SSE2
#include <emmintrin.h>

/* Items per block of the scan below, and the most items it handles (one bit
 * per block in 64 bits). */
#define EPLB_CPU_REPLICATE_BLOCK 16
#define EPLB_CPU_REPLICATE_SCAN_MAX (64 * EPLB_CPU_REPLICATE_BLOCK)

/* Largest of values[0 .. count) (count a multiple of 4), broadcast. */
static inline __m128 vector_max(const float *values, int32_t count)
{
    __m128 vmax = _mm_loadu_ps(values);
    for (int32_t i = 4; i < count; i += 4)
        vmax = _mm_max_ps(vmax, _mm_loadu_ps(values + i));
    vmax = _mm_max_ps(vmax, _mm_shuffle_ps(vmax, vmax, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_max_ps(vmax, _mm_shuffle_ps(vmax, vmax, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Bit i set where values[i] == target, for values[0 .. count), count <= 64. */
static inline uint64_t equal_bits(const float *values, int32_t count, __m128 target)
{
    uint64_t bits = 0;
    for (int32_t j = 0; j < count; j += 4)
        bits |= (uint64_t)_mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + j), target)) << j;
    return bits;
}

/* The same choices as the heap, by a branch-free search over blocks of 16
 * values and each block's maximum: the first block whose maximum is the
 * overall maximum holds the lowest item with it. value and block_max are
 * padded with -inf (values are >= -0, so padding never wins). */
static void replicate_scan(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                           int32_t *phyrank, int32_t *cnt, float *value, float *block_max)
{
    const int32_t B = EPLB_CPU_REPLICATE_BLOCK;
    const int32_t blocks = (n + B - 1) / B, blocks4 = (blocks + 3) & ~3;
    for (int32_t i = 0; i < blocks * B; i++)
        value[i] = i < n ? w[i] : -(float)INFINITY;
    for (int32_t b = 0; b < blocks4; b++)
        block_max[b] = b < blocks ? _mm_cvtss_f32(vector_max(value + b * B, B)) : -(float)INFINITY;
    for (int32_t s = n; s < p; s++) {
        const __m128 vmax = vector_max(block_max, blocks4);
        const int32_t b = __builtin_ctzll(equal_bits(block_max, blocks4, vmax));
        const int32_t i = b * B + __builtin_ctzll(equal_bits(value + b * B, B, vmax));
        phy2mlog[s] = i;
        phyrank[s] = cnt[i];
        cnt[i]++;
        const float fresh = w[i] / (float)cnt[i];
        /* The block's new maximum from registers, and whole-vector stores of
         * the changed values: the next step's vector loads then forward from
         * stores of the same size instead of waiting for scalar ones. */
        float *block = value + b * B;
        const __m128i lane = _mm_set1_epi32(i - b * B);
        const __m128 vfresh = _mm_set1_ps(fresh);
        __m128 vmax_block = _mm_set1_ps(-(float)INFINITY);
        for (int32_t j = 0; j < B; j += 4) {
            const __m128 here = _mm_castsi128_ps(_mm_cmpeq_epi32(lane, _mm_setr_epi32(j, j + 1, j + 2, j + 3)));
            const __m128 v = _mm_or_ps(_mm_and_ps(here, vfresh), _mm_andnot_ps(here, _mm_loadu_ps(block + j)));
            _mm_storeu_ps(block + j, v);
            vmax_block = _mm_max_ps(vmax_block, v);
        }
        vmax_block = _mm_max_ps(vmax_block, _mm_shuffle_ps(vmax_block, vmax_block, _MM_SHUFFLE(1, 0, 3, 2)));
        vmax_block = _mm_max_ps(vmax_block, _mm_shuffle_ps(vmax_block, vmax_block, _MM_SHUFFLE(2, 3, 0, 1)));
        float *group = block_max + (b & ~3);
        const __m128 at = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_set1_epi32(b & 3), _mm_setr_epi32(0, 1, 2, 3)));
        _mm_storeu_ps(group, _mm_or_ps(_mm_and_ps(at, vmax_block), _mm_andnot_ps(at, _mm_loadu_ps(group))));
    }
}
#endif

size_t eplb_cpu_replicate_words(int32_t n)
{
    return (size_t)n + 64 + 64;
}

static void replicate_row(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                          int32_t *phyrank, int32_t *cnt, float *value, int32_t *heap)
{
    for (int32_t i = 0; i < n; i++) {
        phy2mlog[i] = i;
        phyrank[i] = 0;
        cnt[i] = 1;
    }
    if (p == n)
        return;
#if EPLB_CPU_SSE2
    if (n <= EPLB_CPU_REPLICATE_SCAN_MAX) {
        replicate_scan(w, n, p, phy2mlog, phyrank, cnt, value,
                       value + ((n + EPLB_CPU_REPLICATE_BLOCK - 1) & ~(EPLB_CPU_REPLICATE_BLOCK - 1)));
        return;
    }
#endif
    replicate_heap(w, n, p, phy2mlog, phyrank, cnt, value, heap);
}

int eplb_cpu_replicate_row(const eplb_plan_job *job, int64_t x, float *value, int32_t *heap)
{
    const int32_t n = (int32_t)job->node_experts, p = (int32_t)job->node_slots;
    int32_t *cnt = (int32_t *)job->mlogcnt + x * n;
    replicate_row((const float *)job->node_weight + x * n, n, p, (int32_t *)job->phy2mlog + x * p,
                  (int32_t *)job->phyrank + x * p, cnt, value, heap);
    int too_wide = 0;
    if (job->log2phy)
        for (int32_t i = 0; i < n; i++)
            too_wide |= cnt[i] > job->width;
    return too_wide;
}

eplb_status eplb_cpu_replicate(eplb_backend *backend, const eplb_plan_job *job)
{
    const int64_t rows = job->layers * job->nodes;
    const int32_t n = (int32_t)job->node_experts, p = (int32_t)job->node_slots;
    int failed = 0, too_wide = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(rows * p * 8)) /* a heap step a slot */
    {
        float *value = malloc(eplb_cpu_replicate_words(n) * sizeof *value);
        int32_t *heap = malloc((size_t)n * sizeof *heap);
        if (!value || !heap) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static) reduction(| : too_wide)
        for (int64_t x = 0; x < rows; x++)
            if (value && heap)
                too_wide |= eplb_cpu_replicate_row(job, x, value, heap);
        free(value);
        free(heap);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "replicate: out of host memory");
    int32_t *status = job->status;
    if (too_wide && status && *status == 0)
        *status = EPLB_ERR_LOG2PHY_TOO_SMALL;
    return EPLB_OK;
}
