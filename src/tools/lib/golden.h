/* Golden files (SPEC section 9): the cases that pin every backend's output. */
#ifndef EPLB_TOOLS_GOLDEN_H
#define EPLB_TOOLS_GOLDEN_H

#include <stdint.h>

#include "eplb/eplb.h"

typedef struct eplb_golden {
    eplb_shape shape;
    eplb_options options;
    float *weight;          /* [L][E] */
    int64_t *phy2log;       /* [L][R] */
    int64_t *logcnt;        /* [L][E] */
    double *max_gpu_load;   /* [L] */
} eplb_golden;

/* Reads a golden file; on failure returns EPLB_ERR_IO or EPLB_ERR_PARSE and
 * writes why into error. */
eplb_status eplb_golden_read(const char *path, eplb_golden *out, char *error, size_t error_len);
void eplb_golden_free(eplb_golden *golden);

/* Per-layer maximum GPU load of a plan (SPEC section 8), in double. */
void eplb_plan_max_gpu_load(const float *weight, const eplb_shape *shape, const int64_t *phy2log,
                            const int64_t *logcnt, double *max_load);

#endif
