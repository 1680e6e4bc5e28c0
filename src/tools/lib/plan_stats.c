/* Plan statistics: GPU loads and balancedness from the plan's own logcnt, and
 * the bound of the policy (SPEC section 12) and the duplicates from
 * eplb_evaluate. */
#include "plan_stats.h"

#include <stdlib.h>
#include <string.h>

eplb_status eplb_plan_stats_compute(const float *weight, const eplb_shape *shape,
                                    eplb_policy policy, const int64_t *phy2log,
                                    const int64_t *logcnt, eplb_plan_stats *stats,
                                    double *max_load, double *bound)
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
    double *floor = bound ? bound : malloc((size_t)L * sizeof *floor);
    if (!floor)
        return EPLB_ERR_OUT_OF_MEMORY;
    eplb_evaluation evaluation;
    eplb_evaluation_init(&evaluation);
    eplb_status status =
        eplb_evaluate(weight, shape, policy, phy2log, &evaluation, NULL, NULL, floor);
    if (status != EPLB_OK) {
        if (floor != bound)
            free(floor);
        return status;
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
        s.mean_load_sum += mean;
        s.max_load_sum += worst;
        s.bound += floor[l];
        if (max_load)
            max_load[l] = worst;
    }
    if (floor != bound)
        free(floor);
    s.bound_exact = evaluation.bound_exact;
    s.global_balancedness_bound = evaluation.global_balancedness_bound;
    s.duplicates = evaluation.duplicates;
    s.balancedness = s.max_load_sum > 0.0 ? s.mean_load_sum / s.max_load_sum : 1.0;
    s.balancedness_bound = s.bound > 0.0 ? s.mean_load_sum / s.bound : 1.0;
    s.bound_gap = s.bound > 0.0 ? s.max_load_sum / s.bound - 1.0 : 0.0;
    *stats = s;
    return EPLB_OK;
}
