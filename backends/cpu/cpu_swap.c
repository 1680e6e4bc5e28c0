/* Stage 3 of balanced packing (SPEC 6.3): up to I swaps between the heaviest
 * and the lightest pack, each the one that lowers the sum of squared loads most. */
#include <stdlib.h>

#include "common/spec_math.h"
#include "cpu_backend.h"

static void swap_one(const float *w, int32_t *content, int32_t m, int32_t k, int32_t iterations,
                     float tolerance, float *load)
{
    for (int32_t p = 0; p < m; p++)
        load[p] = eplb_cpu_pack_load(w, content, p, k);
    for (int32_t it = 0; it < iterations; it++) {
        int32_t heavy = 0, light = 0;
        for (int32_t p = 1; p < m; p++) {
            if (load[p] > load[heavy]) heavy = p;
            if (load[p] < load[light]) light = p;
        }
        const float diff = load[light] - load[heavy];
        int32_t *a = content + heavy * k, *b = content + light * k;
        int32_t best_a = 0, best_b = 0;
        float best = eplb_swap_change(diff, w[a[0]], w[b[0]]);
        for (int32_t sa = 0; sa < k; sa++) {
            const float wa = w[a[sa]];
            for (int32_t sb = 0; sb < k; sb++) {
                const float change = eplb_swap_change(diff, wa, w[b[sb]]);
                if (change < best) {
                    best = change;
                    best_a = sa;
                    best_b = sb;
                }
            }
        }
        if (!(best < -tolerance))
            break;
        int32_t t = a[best_a]; a[best_a] = b[best_b]; b[best_b] = t;
        /* Only the two packs changed; their loads are recomputed in slot order. */
        load[heavy] = eplb_cpu_pack_load(w, content, heavy, k);
        load[light] = eplb_cpu_pack_load(w, content, light, k);
    }
}

eplb_status eplb_cpu_pack_swap(eplb_backend *backend, const eplb_pack_job *job)
{
    if (job->iterations == 0)
        return EPLB_OK;
    const int64_t packings = job->rows * job->candidates;
    const int32_t n = job->items, m = job->packs, k = job->per_pack;
    int failed = 0;
#pragma omp parallel
    {
        float *load = malloc((size_t)m * sizeof *load);
        if (!load) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t x = 0; x < packings; x++) {
            if (!load) continue;
            const int64_t row = x / job->candidates;
            swap_one((const float *)job->weight + row * n, (int32_t *)job->content + x * n, m, k,
                     job->iterations, job->tolerance, load);
        }
        free(load);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "swap: out of host memory");
    return EPLB_OK;
}
