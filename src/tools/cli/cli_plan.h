/* eplb plan and eplb demo: their arguments, shared by the planning code
 * (cli_plan.c) and the terminal summary (cli_summary.c). */
#ifndef EPLB_TOOLS_CLI_PLAN_H
#define EPLB_TOOLS_CLI_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "eplb/eplb.h"
#include "load_weights.h"
#include "plan_stats.h"

/* What --format writes into the plan file. */
typedef enum plan_format {
    PLAN_FORMAT_EPLB,  /* "eplb-plan v2": the plan, its options and statistics */
    PLAN_FORMAT_SGLANG /* {"physical_to_logical_map": ...} and nothing else */
} plan_format;

typedef struct plan_args {
    const char *input;
    const char *previous; /* --previous: the running plan's file, or NULL */
    const char *output;
    const char *backend; /* NULL: EPLB_BACKEND, else auto */
    plan_format format;
    eplb_shape shape;    /* layers and experts come from the input */
    eplb_options options;
    int quiet;
} plan_args;

/* A finished plan, as the summary shows it. */
typedef struct plan_outcome {
    const char *label;        /* the input's name, escaped, or the demo's workload */
    const char *input_format; /* "npy", "text", ... or "built-in" */
    const char *policy;       /* the policy that ran: "hierarchical" or "global" */
    const eplb_plan_stats *stats;
    const double *max_load;   /* [layers] */
    double plan_us;           /* the eplb_rebalance (or _incremental) call */
    const char *previous_label;  /* the --previous file's name, escaped, or NULL */
    const char *previous_format; /* "eplb-plan" or "sglang" */
    const eplb_moves *moves;  /* from the previous plan to this one, or NULL */
    int64_t *phy2log;         /* [layers][replicas]; the demo's repeat timing plans into it again */
    int64_t *logcnt;          /* [layers][experts] */
    double *layer_scratch;    /* [2 * layers], for the per-layer max/mean */
} plan_outcome;

/* Loads the load file path for cmd ("eplb plan", "eplb evaluate"). Returns
 * -1 when loaded, else the exit code after printing why: EPLB_EXIT_FAILURE
 * where this machine ran out of memory, also when that shows as an error
 * opening or reading the file (the machine's failure, not the input's),
 * else EPLB_EXIT_USAGE. */
int eplb_cli_load_weights(const char *cmd, const char *path, eplb_weights *w);

/* The terminal summary of a plan (docs/cli.md, "Terminal summary"). The demo
 * also times repeated calls and plans DeepSeek's way for comparison, on ctx.
 * Write errors show on f. */
void eplb_cli_print_summary(FILE *f, const char *cmd, const plan_args *a, eplb_context *ctx,
                            const float *weight, const plan_outcome *o);

/* The summary's line on what a plan moves from the one before it
 * (docs/spec.md 13.3): the slots whose expert their GPU must receive, the
 * busiest GPU's share, and, with several nodes, the copies that cross them. */
void eplb_cli_print_moves(FILE *f, const eplb_shape *s, const eplb_moves *moves);

#endif
