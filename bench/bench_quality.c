/* eplb-bench: the quality figures of a plan (SPEC section 8) and how far
 * its largest load can be from the best possible for its policy (SPEC
 * section 12, through eplb_evaluate). */
#include <math.h>

#include "bench.h"

plan_quality bench_measure_plan(const eplb_shape *s, eplb_policy policy, const float *weight,
                                const int64_t *phy2log, const int64_t *logcnt, double *gpu_load)
{
    plan_quality q = {0.0, 1.0, 0.0, 0};
    int64_t spg = s->replicas / s->gpus;
    double sum_mean = 0.0, sum_max = 0.0;
    for (int64_t l = 0; l < s->layers; l++) {
        const float *w = weight + l * s->experts;
        const int64_t *cnt = logcnt + l * s->experts;
        double total = 0.0, max_load = 0.0;
        for (int64_t g = 0; g < s->gpus; g++) {
            double load = 0.0;
            for (int64_t j = 0; j < spg; j++) {
                int64_t e = phy2log[l * s->replicas + g * spg + j];
                load += (double)w[e] / (double)cnt[e];
            }
            gpu_load[g] = load;
            total += load;
            if (load > max_load)
                max_load = load;
        }
        for (int64_t e = 0; e < s->experts; e++)
            if (cnt[e] > q.max_replicas)
                q.max_replicas = cnt[e];
        double mean = total / (double)s->gpus;
        sum_mean += mean;
        sum_max += max_load;
        double layer = max_load > 0.0 ? mean / max_load : 1.0;
        if (layer < q.min_layer)
            q.min_layer = layer;
    }
    q.balancedness = sum_max > 0.0 ? sum_mean / sum_max : 1.0;
    /* A valid plan always evaluates; NaN would mark a bug in the table. */
    eplb_evaluation evaluation;
    eplb_evaluation_init(&evaluation);
    if (eplb_evaluate(weight, s, policy, phy2log, &evaluation, NULL, NULL, NULL) != EPLB_OK)
        q.bound_ratio = NAN;
    else
        q.bound_ratio = sum_max > 0.0 ? evaluation.bound / sum_max : 1.0;
    return q;
}
