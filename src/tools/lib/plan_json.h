/* Plan files: the JSON the eplb tool writes (docs/cli.md, "Output file"), in
 * eplb's format or SGLang's. */
#ifndef EPLB_TOOLS_PLAN_JSON_H
#define EPLB_TOOLS_PLAN_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eplb/eplb.h"
#include "plan_stats.h"

typedef struct eplb_plan_record {
    const char *input;          /* input file name, or NULL (demo) */
    const char *input_format;   /* "npy", "text", ... or "built-in" */
    const char *previous;       /* the running plan's file (--previous), or NULL */
    eplb_shape shape;
    eplb_options options;       /* as requested (policy may be auto) */
    const char *policy;         /* the policy that ran: "hierarchical" or "global" */
    const char *backend;
    const char *device;
    double plan_us;             /* the eplb_rebalance call, microseconds */
    const int64_t *phy2log;     /* [L][R] */
    const int64_t *logcnt;      /* [L][E] */
    eplb_plan_stats stats;
    const eplb_moves *moves;    /* from the previous plan, or NULL */
    const double *max_load;     /* [L] */
    const double *bound;        /* [L] */
} eplb_plan_record;

/* Writes the record to f as one line of JSON, the large arrays streamed as
 * they are formatted, so memory stays a few arrays of one layer whatever the
 * plan's size. log2phy is written from phy2log: each expert's slots in
 * ascending order, one list per expert, no padding. name is the file for
 * messages. Returns EPLB_OK; EPLB_ERR_IO when a write fails;
 * EPLB_ERR_OUT_OF_MEMORY; EPLB_ERR_INVALID_ARGUMENT when phy2log does not
 * match logcnt; EPLB_ERR_UNSUPPORTED without jansson. The reason goes into
 * error. */
eplb_status eplb_plan_write_json(FILE *f, const char *name, const eplb_plan_record *record,
                                 char *error, size_t error_len);

/* Writes only {"physical_to_logical_map": phy2log} ([layers][replicas]), the
 * file SGLang's --init-expert-location loads as it is (it passes every key
 * of the file on, so no other key may be there). Streamed like the plan
 * file, and needs no jansson. Returns EPLB_OK, or EPLB_ERR_IO with the reason
 * in error. */
eplb_status eplb_plan_write_sglang(FILE *f, const char *name, const eplb_plan_record *record,
                                   char *error, size_t error_len);

#endif
