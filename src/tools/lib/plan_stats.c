/* Plan statistics: GPU loads, balancedness and the SPEC section 8 lower bound. */
#include "plan_stats.h"

#include <stdlib.h>
#include <string.h>

/* Max-heap of experts keyed by the SPEC section 5 replica load w / cnt in
 * float32, ties to the lowest expert, so the replication is exactly section 5. */
typedef struct heap_item {
    float key;
    int64_t expert;
} heap_item;

static int heap_above(const heap_item *a, const heap_item *b)
{
    return a->key > b->key || (a->key == b->key && a->expert < b->expert);
}

static void heap_sift_down(heap_item *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && heap_above(&h[l], &h[best])) best = l;
        if (r < n && heap_above(&h[r], &h[best])) best = r;
        if (best == i)
            return;
        heap_item t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

static double layer_bound(const float *w, int64_t E, int64_t R, int64_t P, heap_item *heap,
                          int64_t *cnt)
{
    double total = 0.0;
    for (int64_t e = 0; e < E; e++) {
        total += (double)w[e];
        cnt[e] = 1;
        heap[e].key = w[e];
        heap[e].expert = e;
    }
    for (int64_t i = E / 2 - 1; i >= 0; i--)
        heap_sift_down(heap, E, i);
    for (int64_t s = E; s < R; s++) {
        int64_t e = heap[0].expert; /* the section 5 pick: largest w / cnt, lowest index */
        cnt[e]++;
        heap[0].key = w[e] / (float)cnt[e];
        heap_sift_down(heap, E, 0);
    }
    double largest_slot = 0.0;
    for (int64_t e = 0; e < E; e++) {
        double slot = (double)w[e] / (double)cnt[e];
        if (slot > largest_slot)
            largest_slot = slot;
    }
    double even = total / (double)P;
    return even > largest_slot ? even : largest_slot;
}

double eplb_layer_load_bound(const float *weight, int64_t experts, int64_t replicas, int64_t gpus)
{
    heap_item *heap = malloc((size_t)experts * sizeof *heap);
    int64_t *cnt = malloc((size_t)experts * sizeof *cnt);
    double bound = -1.0; /* out of memory */
    if (heap && cnt)
        bound = layer_bound(weight, experts, replicas, gpus, heap, cnt);
    free(heap);
    free(cnt);
    return bound;
}

eplb_status eplb_plan_stats_compute(const float *weight, const eplb_shape *shape,
                                    const int64_t *phy2log, const int64_t *logcnt,
                                    eplb_plan_stats *stats, double *max_load, double *bound)
{
    if (!weight || !shape || !phy2log || !logcnt || !stats || eplb_shape_check(shape, NULL) != EPLB_OK)
        return EPLB_ERR_INVALID_ARGUMENT;
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas, P = shape->gpus;
    const int64_t spg = R / P;
    for (int64_t i = 0; i < L * R; i++)
        if (phy2log[i] < 0 || phy2log[i] >= E)
            return EPLB_ERR_INVALID_ARGUMENT;
    for (int64_t i = 0; i < L * E; i++)
        if (logcnt[i] < 1)
            return EPLB_ERR_INVALID_ARGUMENT;
    heap_item *heap = malloc((size_t)E * sizeof *heap);
    int64_t *cnt = malloc((size_t)E * sizeof *cnt);
    if (!heap || !cnt) {
        free(heap);
        free(cnt);
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    eplb_plan_stats s;
    memset(&s, 0, sizeof s);
    s.balancedness_min_layer = 1.0;
    for (int64_t l = 0; l < L; l++) {
        const float *w = weight + l * E;
        double sum = 0.0, worst = 0.0;
        for (int64_t g = 0; g < P; g++) {
            double load = 0.0;
            for (int64_t q = g * spg; q < (g + 1) * spg; q++) {
                int64_t e = phy2log[l * R + q];
                load += (double)w[e] / (double)logcnt[l * E + e];
            }
            sum += load;
            if (load > worst)
                worst = load;
        }
        double mean = sum / (double)P;
        double layer_balance = worst > 0.0 ? mean / worst : 1.0;
        if (layer_balance < s.balancedness_min_layer) {
            s.balancedness_min_layer = layer_balance;
            s.min_layer = l;
        }
        double b = layer_bound(w, E, R, P, heap, cnt);
        s.mean_load_sum += mean;
        s.max_load_sum += worst;
        s.bound += b;
        if (max_load)
            max_load[l] = worst;
        if (bound)
            bound[l] = b;
    }
    free(heap);
    free(cnt);
    s.balancedness = s.max_load_sum > 0.0 ? s.mean_load_sum / s.max_load_sum : 1.0;
    s.balancedness_bound = s.bound > 0.0 ? s.mean_load_sum / s.bound : 1.0;
    s.bound_gap = s.bound > 0.0 ? s.max_load_sum / s.bound - 1.0 : 0.0;
    *stats = s;
    return EPLB_OK;
}
