/* Plan statistics: the figures of eplb_evaluate (SPEC sections 8, 11.1 and
 * 12) for a plan whose logcnt is checked against its phy2log. */
#include "plan_stats.h"

#include <stdlib.h>
#include <string.h>

/* Whether every logcnt entry is at least 1 and counts its expert's slots. */
static eplb_status check_logcnt(const eplb_shape *shape, const int64_t *phy2log,
                                const int64_t *logcnt)
{
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    for (int64_t i = 0; i < L * E; i++)
        if (logcnt[i] < 1)
            return EPLB_ERR_INVALID_ARGUMENT;
    int64_t *count = malloc((size_t)E * sizeof *count);
    if (!count)
        return EPLB_ERR_OUT_OF_MEMORY;
    eplb_status status = EPLB_OK;
    for (int64_t l = 0; l < L && status == EPLB_OK; l++) {
        memset(count, 0, (size_t)E * sizeof *count);
        for (int64_t q = 0; q < R; q++) {
            int64_t e = phy2log[l * R + q];
            if (e < 0 || e >= E) {
                status = EPLB_ERR_INVALID_ARGUMENT;
                break;
            }
            count[e]++;
        }
        for (int64_t e = 0; e < E && status == EPLB_OK; e++)
            if (count[e] != logcnt[l * E + e])
                status = EPLB_ERR_INVALID_ARGUMENT;
    }
    free(count);
    return status;
}

eplb_status eplb_plan_stats_compute(const float *weight, const eplb_shape *shape,
                                    eplb_policy policy, const int64_t *phy2log,
                                    const int64_t *logcnt, eplb_plan_stats *stats,
                                    double *max_load, double *bound)
{
    if (!weight || !shape || !phy2log || !logcnt || !stats ||
        eplb_shape_check(shape, NULL) != EPLB_OK)
        return EPLB_ERR_INVALID_ARGUMENT;
    eplb_status status = check_logcnt(shape, phy2log, logcnt);
    if (status != EPLB_OK)
        return status;
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    status = eplb_evaluate(weight, shape, policy, phy2log, &r, max_load, NULL, bound);
    if (status != EPLB_OK)
        return status;
    eplb_plan_stats s;
    memset(&s, 0, sizeof s);
    s.balancedness = r.balancedness;
    s.balancedness_min_layer = r.balancedness_min_layer;
    s.min_layer = r.min_layer;
    s.mean_load_sum = r.mean_load_sum;
    s.max_load_sum = r.max_load_sum;
    s.bound = r.bound;
    /* The plan's own mean load over the bound, which the Python package's
     * plan files reproduce bit for bit (eplb_evaluate divides the weights'). */
    s.balancedness_bound = r.bound > 0.0 ? r.mean_load_sum / r.bound : 1.0;
    s.bound_gap = r.bound_gap;
    s.bound_exact = r.bound_exact;
    s.global_balancedness_bound = r.global_balancedness_bound;
    s.duplicates = r.duplicates;
    *stats = s;
    return EPLB_OK;
}
