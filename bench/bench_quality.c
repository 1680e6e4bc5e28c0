/* eplb-bench: the quality figures of a plan (SPEC section 8) and how far
 * its largest load can be from the best possible. */
#include <math.h>

#include "bench.h"

/* Largest slot load after optimal replication (SPEC section 5 over the whole
 * layer): the smallest t with sum_e max(1, ceil(w_e / t)) <= R, by bisection
 * (kept on the feasible side, so it errs high by at most 1e-12 relative). */
static double replication_bound(const float *w, int64_t experts, int64_t replicas)
{
    double hi = 0.0;
    for (int64_t e = 0; e < experts; e++)
        if (w[e] > hi)
            hi = w[e];
    if (hi == 0.0)
        return 0.0;
    double lo = 0.0;
    for (int step = 0; step < 200 && hi - lo > hi * 1e-12; step++) {
        double t = 0.5 * (lo + hi);
        int64_t need = 0;
        for (int64_t e = 0; e < experts && need <= replicas; e++) {
            double c = ceil((double)w[e] / t);
            need += c < 1.0 ? 1 : (int64_t)c;
        }
        if (need <= replicas)
            hi = t;
        else
            lo = t;
    }
    return hi;
}

plan_quality bench_measure_plan(const eplb_shape *s, const float *weight, const int64_t *phy2log,
                                const int64_t *logcnt, double *gpu_load)
{
    plan_quality q = {0.0, 1.0, 0.0, 0};
    int64_t spg = s->replicas / s->gpus;
    double sum_mean = 0.0, sum_max = 0.0, sum_bound = 0.0;
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
        double bound = replication_bound(w, s->experts, s->replicas);
        if (mean > bound)
            bound = mean;
        sum_mean += mean;
        sum_max += max_load;
        sum_bound += bound;
        double layer = max_load > 0.0 ? mean / max_load : 1.0;
        if (layer < q.min_layer)
            q.min_layer = layer;
    }
    q.balancedness = sum_max > 0.0 ? sum_mean / sum_max : 1.0;
    q.bound_ratio = sum_max > 0.0 ? sum_bound / sum_max : 1.0;
    return q;
}
