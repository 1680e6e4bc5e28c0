/* Replication (SPEC section 5): each extra slot goes to the item with the
 * highest weight per replica (ties: lowest index). */
#include <stdlib.h>

#include "cpu_backend.h"

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

static void replicate_row(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                          int32_t *phyrank, int32_t *cnt, float *value, int32_t *heap)
{
    for (int32_t i = 0; i < n; i++) {
        phy2mlog[i] = i;
        phyrank[i] = 0;
        cnt[i] = 1;
        value[i] = w[i]; /* w / 1 */
        heap[i] = i;
    }
    if (p == n)
        return;
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

eplb_status eplb_cpu_replicate(eplb_backend *backend, const eplb_plan_job *job)
{
    const int64_t rows = job->layers * job->nodes;
    const int32_t n = (int32_t)job->node_experts, p = (int32_t)job->node_slots;
    int failed = 0, too_wide = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(rows * p * 8)) /* a heap step a slot */
    {
        float *value = malloc((size_t)n * sizeof *value);
        int32_t *heap = malloc((size_t)n * sizeof *heap);
        if (!value || !heap) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static) reduction(| : too_wide)
        for (int64_t x = 0; x < rows; x++) {
            if (!value || !heap) continue;
            int32_t *cnt = (int32_t *)job->mlogcnt + x * n;
            replicate_row((const float *)job->node_weight + x * n, n, p,
                          (int32_t *)job->phy2mlog + x * p, (int32_t *)job->phyrank + x * p, cnt,
                          value, heap);
            if (job->log2phy)
                for (int32_t i = 0; i < n; i++)
                    too_wide |= cnt[i] > job->width;
        }
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
