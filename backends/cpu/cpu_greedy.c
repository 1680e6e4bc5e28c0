/* Stage 2 of balanced packing (SPEC 6.2): items in sorted order, each into the
 * least-loaded pack that still has room (ties: lowest pack index). */
#include <stdlib.h>

#include "cpu_backend.h"

/* Min-heap of open packs ordered by (load, index): its top is exactly the
 * SPEC's choice, found in log(m) instead of m steps. */
static inline int heap_before(const float *load, int32_t a, int32_t b)
{
    return load[a] < load[b] || (load[a] == load[b] && a < b);
}

static void heap_sift_down(int32_t *heap, int32_t size, const float *load, int32_t at)
{
    for (;;) {
        int32_t left = 2 * at + 1, best = at;
        if (left < size && heap_before(load, heap[left], heap[best])) best = left;
        if (left + 1 < size && heap_before(load, heap[left + 1], heap[best])) best = left + 1;
        if (best == at) return;
        int32_t t = heap[at]; heap[at] = heap[best]; heap[best] = t;
        at = best;
    }
}

static void greedy_one(const float *w, const int32_t *order, int32_t *content, int32_t n,
                       int32_t m, int32_t k, float *load, int32_t *count, int32_t *heap)
{
    for (int32_t p = 0; p < m; p++) {
        load[p] = 0.0f;
        count[p] = 0;
        heap[p] = p; /* equal loads: index order is already a valid heap */
    }
    int32_t open = m;
    for (int32_t t = 0; t < n; t++) {
        const int32_t item = order[t];
        const int32_t p = heap[0];
        content[p * k + count[p]] = item;
        count[p]++;
        load[p] += w[item];
        if (count[p] == k) {
            heap[0] = heap[--open];
        }
        heap_sift_down(heap, open, load, 0); /* the top's load only grew */
    }
}

eplb_status eplb_cpu_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    const int64_t packings = job->rows * job->candidates;
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    int failed = 0;
#pragma omp parallel
    {
        float *load = malloc((size_t)m * sizeof *load);
        int32_t *count = malloc((size_t)m * sizeof *count);
        int32_t *heap = malloc((size_t)m * sizeof *heap);
        if (!load || !count || !heap) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t x = 0; x < packings; x++) {
            if (!load || !count || !heap) continue;
            const int64_t row = x / job->candidates;
            greedy_one((const float *)job->weight + row * n, (const int32_t *)job->order + x * n,
                       (int32_t *)job->content + x * n, n, m, k, load, count, heap);
        }
        free(load);
        free(count);
        free(heap);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "greedy: out of host memory");
    return EPLB_OK;
}
