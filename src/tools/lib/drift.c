/* Drifted loads and running plans for the incremental rebalance (drift.h). */
#include "drift.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "workload.h"

void eplb_workload_drift(const float *in, float *out, int64_t count, uint64_t seed, double sigma)
{
    const double pi = 3.14159265358979323846;
    uint64_t state = seed * 0x2545F4914F6CDD1DULL + 1;
    for (int64_t i = 0; i < count; i++) {
        const uint64_t r1 = eplb_workload_next(&state), r2 = eplb_workload_next(&state);
        /* u1 in (0, 1], so the logarithm is finite. */
        const double u1 = (double)((r1 >> 11) + 1) * 0x1p-53;
        const double u2 = (double)(r2 >> 11) * 0x1p-53;
        const double z = sqrt(-2.0 * log(u1)) * cos(2.0 * pi * u2);
        const double drifted = floor((double)in[i] * exp(sigma * z) + 0.5);
        out[i] = drifted <= FLT_MAX ? (float)drifted : in[i];
    }
}

static int compare_floats(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

float eplb_layer_peak_load(const float *w, const int64_t *phy2log, int64_t experts,
                           int64_t replicas, int64_t gpus)
{
    const int64_t spg = replicas / gpus;
    int64_t *count = calloc((size_t)experts, sizeof *count);
    float *u = malloc((size_t)spg * sizeof *u);
    float peak = NAN;
    if (count && u) {
        for (int64_t q = 0; q < replicas; q++)
            count[phy2log[q]]++;
        for (int64_t g = 0; g < gpus; g++) {
            for (int64_t i = 0; i < spg; i++)
                u[i] = w[phy2log[g * spg + i]] / (float)count[phy2log[g * spg + i]];
            qsort(u, (size_t)spg, sizeof *u, compare_floats);
            float load = 0.0f;
            for (int64_t i = 0; i < spg; i++)
                load += u[i];
            if (g == 0 || load > peak)
                peak = load;
        }
    }
    free(count);
    free(u);
    return peak;
}

eplb_status eplb_drifted_previous(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                                  const eplb_options *options, uint64_t seed, double sigma,
                                  int64_t *previous)
{
    const size_t L = (size_t)shape->layers, E = (size_t)shape->experts;
    float *drifted = malloc(L * E * sizeof *drifted);
    int64_t *logcnt = malloc(L * E * sizeof *logcnt);
    eplb_status st = EPLB_ERR_OUT_OF_MEMORY;
    if (drifted && logcnt) {
        eplb_workload_drift(weight, drifted, (int64_t)(L * E), seed, sigma);
        st = eplb_rebalance(ctx, drifted, shape, options, previous, logcnt, NULL, 0, NULL);
    }
    free(drifted);
    free(logcnt);
    return st;
}
