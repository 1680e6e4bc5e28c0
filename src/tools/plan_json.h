/* Plan files: the JSON the eplb tool writes (docs/cli.md, "Output file"). */
#ifndef EPLB_TOOLS_PLAN_JSON_H
#define EPLB_TOOLS_PLAN_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/eplb.h"
#include "plan_stats.h"

typedef struct eplb_plan_record {
    const char *input;          /* input file name, or NULL (demo) */
    const char *input_format;   /* "npy", "text", ... or "built-in" */
    eplb_shape shape;
    eplb_options options;       /* as requested (policy may be auto) */
    const char *policy;         /* the policy that ran: "hierarchical" or "global" */
    const char *backend;
    const char *device;
    double plan_us;             /* the eplb_rebalance call, microseconds */
    const int64_t *phy2log;     /* [L][R] */
    const int64_t *logcnt;      /* [L][E] */
    const int64_t *log2phy;     /* [L][E][log2phy_width] */
    int64_t log2phy_width;      /* max(logcnt) */
    eplb_plan_stats stats;
    const double *max_load;     /* [L] */
    const double *bound;        /* [L] */
} eplb_plan_record;

/* Writes the record as JSON to path ("-": standard output) through a
 * temporary file in the same directory renamed over path, so a failure never
 * leaves a partial plan. EPLB_ERR_UNSUPPORTED without jansson, EPLB_ERR_IO
 * with the reason in error on any write failure. */
eplb_status eplb_plan_write_json(const char *path, const eplb_plan_record *record, char *error,
                                 size_t error_len);

#endif
