/* Quality figures of a plan (SPEC section 8), computed in double. */
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
    double bound;                  /* sum_l of the per-layer lower bound on max_g load */
    double balancedness_bound;     /* mean_load_sum / bound: the best balancedness possible */
    double bound_gap;              /* max_load_sum / bound - 1 (0 when bound is 0) */
} eplb_plan_stats;

/* Lower bound on one layer's max GPU load: max(total / gpus, largest slot load
 * after SPEC section 5 replication of all experts to replicas slots). */
double eplb_layer_load_bound(const float *weight, int64_t experts, int64_t replicas, int64_t gpus);

/* Statistics of a plan. max_load and bound (each [layers], may be NULL) receive
 * the per-layer maximum GPU load and lower bound. Returns
 * EPLB_ERR_INVALID_ARGUMENT (stats untouched) when phy2log holds an expert out
 * of range or logcnt an entry below 1, EPLB_ERR_OUT_OF_MEMORY, or EPLB_OK. */
eplb_status eplb_plan_stats_compute(const float *weight, const eplb_shape *shape,
                                    const int64_t *phy2log, const int64_t *logcnt,
                                    eplb_plan_stats *stats, double *max_load, double *bound);

#endif
