/* eplb-bench: its cases, options, results and the functions of its files:
 * eplb_bench.c times the plans, bench_options.c reads the command line,
 * bench_quality.c scores a plan, bench_report.c prints and writes the results. */
#ifndef EPLB_BENCH_H
#define EPLB_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <sys/utsname.h>

#include "eplb/eplb.h"

#define BENCH_MAX_CASES 16
#define BENCH_MAX_BACKENDS 8
#define BENCH_MAX_RUNS 1000000

typedef struct bench_case {
    const char *name;
    const char *what;
    eplb_shape shape;
    eplb_policy policy;
} bench_case;

typedef struct bench_config {
    const char *backends[BENCH_MAX_BACKENDS];
    int backend_count;
    const bench_case *cases[BENCH_MAX_CASES];
    int case_count;
    long runs;
    long warmup;
    double min_time;
    double max_time;  /* stop a measurement after this long once 5 runs are in */
    int candidates;
    int iterations;
    uint64_t seed;
    uint64_t workload_seed;
    int baseline;     /* also run C=1, I=0 */
    int refine;       /* > 0: each option set also runs with this refine (SPEC 10) */
    int first_plan;   /* also time the process's first plan and its repeats (cold start) */
    int drift;        /* also plan drifted loads fresh and incrementally (SPEC 13) */
    int markdown;
    const char *json_path;
} bench_config;

/* Quality figures of one plan (SPEC section 8). */
typedef struct plan_quality {
    double balancedness;      /* sum_l mean_g load / sum_l max_g load */
    double min_layer;         /* worst per-layer mean/max */
    double bound_ratio;       /* sum_l floor of the policy (SPEC 12) / sum_l max load; 1.0 = optimal */
    int64_t max_replicas;     /* max(logcnt) */
} plan_quality;

typedef struct timing {
    long runs;
    double median_ms, p10_ms, p90_ms, min_ms, mean_ms;
} timing;

typedef struct bench_result {
    const bench_case *bcase;
    const char *backend;
    int candidates, iterations;
    int refine;               /* the row's refine option (0: off) */
    timing time;
    plan_quality quality;
    int same_as_cpu;          /* 1 identical, 0 differs, -1 not compared */
} bench_result;

/* The outputs of the plans of one measurement; previous set: the plans are
 * incremental from it (eplb_rebalance_incremental). */
typedef struct plan_buffers {
    int64_t *phy2log, *logcnt, *log2phy;
    double *gpu_load;
    int64_t log2phy_width;
    const int64_t *previous;
} plan_buffers;

/* eplb_bench.c: times plans of weight into b (warm-up first) as the table's
 * rows are timed; 0 after printing why a plan failed. */
int bench_time_plans(eplb_context *ctx, const float *weight, const eplb_shape *s,
                     const eplb_options *opt, const bench_config *cfg, plan_buffers *b,
                     timing *out);
/* The same for count plans (at most BENCH_PLAN_SET_MAX) of the same weights,
 * b[p] into out[p], one call of each per round, so that their times are
 * taken in the same moments of the machine. */
#define BENCH_PLAN_SET_MAX 4
int bench_time_plan_set(eplb_context *ctx, const float *weight, const eplb_shape *s,
                        const eplb_options *opt, const bench_config *cfg, plan_buffers *b,
                        int count, timing *out);
void bench_plan_buffers_free(plan_buffers *b);

/* bench_drift.c (--drift): the bench workload drifted by exp(0.1 z) for each
 * DeepSeek-V3 case, planned fresh and incrementally from the workload's own
 * plan on ctx with options (the main rows'); 0 on failure. */
int bench_drift(eplb_context *ctx, const bench_config *cfg, const eplb_options *options);

/* bench_options.c: the command line (exits after --help and --list-cases;
 * returns 0 after printing what is wrong), and the backends to run. */
int bench_parse_args(int argc, char **argv, bench_config *cfg);
int bench_select_backends(bench_config *cfg);

/* bench_quality.c: the quality figures of a valid plan of the policy; gpu_load is [gpus]
 * scratch. */
plan_quality bench_measure_plan(const eplb_shape *s, eplb_policy policy, const float *weight,
                                const int64_t *phy2log, const int64_t *logcnt, double *gpu_load);

/* bench_report.c: what the machine is, and the results as a table and as JSON. */
void bench_cpu_model(char *out, size_t len);
void bench_print_header(const bench_config *cfg, const char *model, long cores,
                        const struct utsname *un);
/* with_refine adds a refine column (eplb-bench --refine). */
void bench_print_table_head(int markdown, int with_refine);
void bench_print_row(const bench_result *r, int markdown, int with_refine);
int bench_write_json(FILE *f, const char *path, const bench_config *cfg, const char *model,
                     long cores, const struct utsname *un, const char *const *devices,
                     const char *const *device_backends, int device_count,
                     const bench_result *results, int count);

#endif
