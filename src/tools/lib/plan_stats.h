/* Quality figures of a plan (SPEC section 8), computed in double, with the
 * bound of SPEC section 12 and the duplicates of section 11.1 from
 * eplb_evaluate. */
#ifndef EPLB_TOOLS_PLAN_STATS_H
#define EPLB_TOOLS_PLAN_STATS_H

#include <stdint.h>

#include "eplb/eplb.h"

typedef struct eplb_plan_stats {
    double balancedness;           /* sum_l mean_g load / sum_l max_g load; 1 if all loads are 0 */
    double balancedness_min_layer; /* min over layers of mean_g load / max_g load (1 for idle layers) */
    int64_t min_layer;             /* the layer that attains it (lowest index on ties) */
    double mean_load_sum;          /* sum_l mean_g load[l][g] */
    double max_load_sum;           /* sum_l max_g load[l][g] */
    double bound;                  /* SPEC 12: sum_l of the floor F[l] on max_g load */
    double balancedness_bound;     /* mean_load_sum / bound: no plan of the policy does better */
    double bound_gap;              /* max_load_sum / bound - 1 (0 when bound is 0) */
    int bound_exact;               /* 1: every F[l] exact over group partitions; 0: relaxed */
    double global_balancedness_bound; /* the same bound for the global policy */
    int64_t duplicates;            /* SPEC 11.1: slots whose expert is already on their GPU */
} eplb_plan_stats;

/* Statistics of a plan made under policy (the bound is that policy's; AUTO
 * resolves as the planner does). max_load and bound (each [layers], may be
 * NULL) receive the per-layer maximum GPU load and floor. Returns
 * EPLB_ERR_INVALID_ARGUMENT (stats untouched) when phy2log holds an expert out
 * of range or logcnt an entry that is not its expert's number of slots,
 * another eplb_evaluate error (its message in eplb_last_error),
 * EPLB_ERR_OUT_OF_MEMORY, or EPLB_OK. */
eplb_status eplb_plan_stats_compute(const float *weight, const eplb_shape *shape,
                                    eplb_policy policy, const int64_t *phy2log,
                                    const int64_t *logcnt, eplb_plan_stats *stats,
                                    double *max_load, double *bound);

#endif
