/* eplb-bench: wall-clock timing of eplb_rebalance (host API) per backend on
 * the DeepSeek-V3 shapes and a scale case, with the plan's quality figures
 * (SPEC section 8) for the chosen options and for DeepSeek's original
 * algorithm (C=1, I=0). Depends on libeplb and eplb_tools only. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "plan_check.h"
#include "workload.h"

#define BENCH_MAX_CASES 16
#define BENCH_MAX_BACKENDS 8
#define BENCH_MAX_RUNS 1000000

typedef struct bench_case {
    const char *name;
    const char *what;
    eplb_shape shape;
    eplb_policy policy;
} bench_case;

/* DeepSeek-V3 (58 MoE layers, 256 experts in 8 groups) as DeepSeek deploys it,
 * plus one far larger problem to show how the planner scales. */
static const bench_case all_cases[] = {
    {"v3-prefill", "DeepSeek-V3 prefill: hierarchical, 4 nodes x 8 GPUs",
     {58, 256, 288, 8, 4, 32}, EPLB_POLICY_AUTO},
    {"v3-decode-288", "DeepSeek-V3 decode: global, 72 GPUs (9 nodes)",
     {58, 256, 288, 8, 9, 72}, EPLB_POLICY_AUTO},
    {"v3-decode-320", "DeepSeek-V3 decode: global, 64 GPUs (8 nodes)",
     {58, 256, 320, 8, 8, 64}, EPLB_POLICY_GLOBAL},
    {"scale", "200 layers x 1024 experts: hierarchical, 16 nodes x 64 GPUs",
     {200, 1024, 8192, 16, 16, 1024}, EPLB_POLICY_AUTO},
};
#define BENCH_CASE_COUNT ((int)(sizeof all_cases / sizeof all_cases[0]))

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
    int markdown;
    const char *json_path;
} bench_config;

/* Quality figures of one plan (SPEC section 8). */
typedef struct plan_quality {
    double balancedness;      /* sum_l mean_g load / sum_l max_g load */
    double min_layer;         /* worst per-layer mean/max */
    double bound_ratio;       /* sum_l lower bound / sum_l max load; 1.0 = provably optimal */
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
    timing time;
    plan_quality quality;
    int same_as_cpu;          /* 1 identical, 0 differs, -1 not compared */
} bench_result;

/* ---- small utilities ---------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between closest ranks (numpy's default) on sorted data. */
static double percentile(const double *sorted, long n, double q)
{
    double pos = q * (double)(n - 1);
    long lo = (long)pos;
    if (lo >= n - 1)
        return sorted[n - 1];
    double frac = pos - (double)lo;
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

static int parse_long(const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int parse_u64(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (text[0] == '-')
        return 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

static void *checked_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    if (!p) {
        fprintf(stderr, "eplb-bench: out of memory (%zu x %zu bytes)\n", count, size);
        exit(1);
    }
    return p;
}

/* CPU model from /proc/cpuinfo ("model name", or "Processor"/"cpu model" on
 * other architectures); "unknown" when absent. */
static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "cpu model", 9) &&
            strncmp(line, "Processor", 9))
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\n")] = '\0';
        if (*v) {
            snprintf(out, len, "%s", v);
            break;
        }
    }
    fclose(f);
}

/* 1-minute load average from /proc/loadavg, or -1: a busy machine explains
 * a wide p10..p90 spread. */
static double load_average(void)
{
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1.0;
        fclose(f);
    }
    return load;
}

/* JSON string literal: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- plan checks and quality ------------------------------------------- */

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

static plan_quality measure_plan(const eplb_shape *s, const float *weight, const int64_t *phy2log,
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

/* ---- one measurement ---------------------------------------------------- */

typedef struct plan_buffers {
    int64_t *phy2log, *logcnt, *log2phy;
    double *gpu_load;
    int64_t log2phy_width;
} plan_buffers;

static void plan_buffers_free(plan_buffers *b)
{
    free(b->phy2log);
    free(b->logcnt);
    free(b->log2phy);
    free(b->gpu_load);
    memset(b, 0, sizeof *b);
}

/* Runs one plan with log2phy sized to what the plan needs (the width the
 * caller would allocate after a first call). Returns 0 on failure. */
static int plan_once(eplb_context *ctx, const float *weight, const eplb_shape *s,
                     const eplb_options *opt, plan_buffers *b)
{
    if (!b->phy2log) {
        b->phy2log = checked_calloc((size_t)(s->layers * s->replicas), sizeof(int64_t));
        b->logcnt = checked_calloc((size_t)(s->layers * s->experts), sizeof(int64_t));
        b->gpu_load = checked_calloc((size_t)s->gpus, sizeof(double));
        int64_t needed = 0;
        eplb_status st = eplb_rebalance(ctx, weight, s, opt, b->phy2log, b->logcnt, NULL, 0,
                                        &needed);
        if (st != EPLB_OK) {
            fprintf(stderr, "eplb-bench: eplb_rebalance failed: %s: %s\n",
                    eplb_status_string(st), eplb_context_last_error(ctx));
            return 0;
        }
        b->log2phy_width = needed;
        b->log2phy = checked_calloc((size_t)(s->layers * s->experts * needed), sizeof(int64_t));
    }
    eplb_status st = eplb_rebalance(ctx, weight, s, opt, b->phy2log, b->logcnt, b->log2phy,
                                    b->log2phy_width, NULL);
    if (st != EPLB_OK) {
        fprintf(stderr, "eplb-bench: eplb_rebalance failed: %s: %s\n", eplb_status_string(st),
                eplb_context_last_error(ctx));
        return 0;
    }
    return 1;
}

static int time_plans(eplb_context *ctx, const float *weight, const eplb_shape *s,
                      const eplb_options *opt, const bench_config *cfg, plan_buffers *b,
                      timing *out)
{
    for (long i = 0; i < cfg->warmup || i == 0; i++)
        if (!plan_once(ctx, weight, s, opt, b))
            return 0;
    long cap = cfg->runs > 64 ? cfg->runs : 64;
    double *t = checked_calloc((size_t)cap, sizeof *t);
    long n = 0;
    double start = now_seconds();
    for (;;) {
        double elapsed = now_seconds() - start;
        int want = n < cfg->runs || (elapsed < cfg->min_time && n < BENCH_MAX_RUNS);
        if (!want || (cfg->max_time > 0 && elapsed >= cfg->max_time && elapsed >= cfg->min_time &&
                      n >= 5))
            break;
        if (n == cap) {
            cap *= 2;
            double *grown = realloc(t, (size_t)cap * sizeof *t);
            if (!grown) {
                free(t);
                fprintf(stderr, "eplb-bench: out of memory for timings\n");
                return 0;
            }
            t = grown;
        }
        double t0 = now_seconds();
        int ok = plan_once(ctx, weight, s, opt, b);
        double t1 = now_seconds();
        if (!ok) {
            free(t);
            return 0;
        }
        t[n++] = (t1 - t0) * 1e3;
    }
    double sum = 0.0;
    for (long i = 0; i < n; i++)
        sum += t[i];
    qsort(t, (size_t)n, sizeof *t, compare_double);
    out->runs = n;
    out->median_ms = percentile(t, n, 0.5);
    out->p10_ms = percentile(t, n, 0.1);
    out->p90_ms = percentile(t, n, 0.9);
    out->min_ms = t[0];
    out->mean_ms = sum / (double)n;
    free(t);
    return 1;
}

/* ---- output ------------------------------------------------------------- */

static const char *policy_name(const bench_case *c)
{
    if (c->policy == EPLB_POLICY_GLOBAL)
        return "global";
    if (c->policy == EPLB_POLICY_HIERARCHICAL)
        return "hier";
    return c->shape.groups % c->shape.nodes == 0 ? "hier" : "global";
}

static void print_header(const bench_config *cfg, const char *model, long cores,
                         const struct utsname *un)
{
    /* Markdown: a bullet list, so the lines stay apart when rendered. */
    const char *item = cfg->markdown ? "- " : "";
    printf("%seplb-bench %s (spec v%d)\n", item, eplb_version_string(), EPLB_SPEC_VERSION);
    printf("%smachine: %s, %ld logical cores, %s %s %s, load average %.2f at start\n", item,
           model, cores, un->sysname, un->release, un->machine, load_average());
    const char *omp = getenv("OMP_NUM_THREADS");
    printf("%smethod: wall clock (CLOCK_MONOTONIC) around each eplb_rebalance call with log2phy, "
           "%ld warm-up + %ld timed runs%s%s, workload seed %" PRIu64 "\n",
           item, cfg->warmup, cfg->runs, cfg->min_time > 0 ? " (or more, to fill --min-time)" : "",
           cfg->max_time > 0 ? " (fewer, at least 5, past --max-time)" : "", cfg->workload_seed);
    if (omp)
        printf("%sOMP_NUM_THREADS=%s\n", item, omp);
    printf("%sbalancedness = sum_l mean_g load / sum_l max_g load (SPEC 8); bound = sum_l lower "
           "bound / sum_l max load (1 = optimal)\n",
           item);
}

static void print_table_head(int markdown)
{
    if (markdown) {
        printf("| backend | case | policy | C | I | median ms | p10 ms | p90 ms | min ms | runs | "
               "balancedness | worst layer | bound | same as cpu |\n");
        printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    } else {
        printf("%-8s %-14s %-6s %4s %4s %10s %10s %10s %10s %6s %8s %8s %8s %5s\n", "backend",
               "case", "policy", "C", "I", "median_ms", "p10_ms", "p90_ms", "min_ms", "runs",
               "balanced", "worst", "bound", "=cpu");
    }
}

static void print_row(const bench_result *r, int markdown)
{
    const char *same = r->same_as_cpu < 0 ? "-" : r->same_as_cpu ? "yes" : "NO";
    if (markdown)
        printf("| %s | %s | %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %ld | %.4f | %.4f | %.4f | "
               "%s |\n",
               r->backend, r->bcase->name, policy_name(r->bcase), r->candidates, r->iterations,
               r->time.median_ms, r->time.p10_ms, r->time.p90_ms, r->time.min_ms, r->time.runs,
               r->quality.balancedness, r->quality.min_layer, r->quality.bound_ratio, same);
    else
        printf("%-8s %-14s %-6s %4d %4d %10.3f %10.3f %10.3f %10.3f %6ld %8.4f %8.4f %8.4f %5s\n",
               r->backend, r->bcase->name, policy_name(r->bcase), r->candidates, r->iterations,
               r->time.median_ms, r->time.p10_ms, r->time.p90_ms, r->time.min_ms, r->time.runs,
               r->quality.balancedness, r->quality.min_layer, r->quality.bound_ratio, same);
    fflush(stdout);
}

static int write_json(FILE *f, const char *path, const bench_config *cfg, const char *model, long cores,
                      const struct utsname *un, const char *const *devices,
                      const char *const *device_backends, int device_count,
                      const bench_result *results, int count)
{
    fprintf(f, "{\n  \"tool\": \"eplb-bench\",\n  \"eplb_version\": ");
    json_string(f, eplb_version_string());
    fprintf(f, ",\n  \"spec_version\": %d,\n  \"machine\": {\"cpu_model\": ", EPLB_SPEC_VERSION);
    json_string(f, model);
    fprintf(f, ", \"logical_cores\": %ld, \"os\": ", cores);
    json_string(f, un->sysname);
    fprintf(f, ", \"os_release\": ");
    json_string(f, un->release);
    fprintf(f, ", \"arch\": ");
    json_string(f, un->machine);
    fprintf(f, ", \"load_average_at_end\": %.2f", load_average());
    fprintf(f, ", \"omp_num_threads\": ");
    if (getenv("OMP_NUM_THREADS"))
        json_string(f, getenv("OMP_NUM_THREADS"));
    else
        fprintf(f, "null");
    fprintf(f, "},\n  \"method\": {\"clock\": \"CLOCK_MONOTONIC\", \"call\": \"eplb_rebalance\", "
               "\"warmup\": %ld, \"runs\": %ld, \"min_time_s\": %.3f, \"max_time_s\": %.3f, \"workload_seed\": %" PRIu64
               ", \"option_seed\": %" PRIu64 "},\n  \"devices\": [",
            cfg->warmup, cfg->runs, cfg->min_time, cfg->max_time, cfg->workload_seed, cfg->seed);
    for (int i = 0; i < device_count; i++) {
        fprintf(f, "%s\n    {\"backend\": ", i ? "," : "");
        json_string(f, device_backends[i]);
        fprintf(f, ", \"device\": ");
        json_string(f, devices[i]);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"results\": [");
    for (int i = 0; i < count; i++) {
        const bench_result *r = &results[i];
        const eplb_shape *s = &r->bcase->shape;
        fprintf(f, "%s\n    {\"backend\": ", i ? "," : "");
        json_string(f, r->backend);
        fprintf(f, ", \"case\": ");
        json_string(f, r->bcase->name);
        fprintf(f, ", \"policy\": ");
        json_string(f, policy_name(r->bcase));
        fprintf(f,
                ", \"layers\": %" PRId64 ", \"experts\": %" PRId64 ", \"replicas\": %" PRId64
                ", \"groups\": %" PRId64 ", \"nodes\": %" PRId64 ", \"gpus\": %" PRId64
                ", \"candidates\": %d, \"iterations\": %d, \"runs\": %ld, \"median_ms\": %.6f, "
                "\"p10_ms\": %.6f, \"p90_ms\": %.6f, \"min_ms\": %.6f, \"mean_ms\": %.6f, "
                "\"balancedness\": %.6f, \"worst_layer_balancedness\": %.6f, "
                "\"bound_ratio\": %.6f, \"max_logcnt\": %" PRId64 ", \"same_as_cpu\": %s}",
                s->layers, s->experts, s->replicas, s->groups, s->nodes, s->gpus, r->candidates,
                r->iterations, r->time.runs, r->time.median_ms, r->time.p10_ms, r->time.p90_ms,
                r->time.min_ms, r->time.mean_ms, r->quality.balancedness, r->quality.min_layer,
                r->quality.bound_ratio, r->quality.max_replicas,
                r->same_as_cpu < 0 ? "null" : r->same_as_cpu ? "true" : "false");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "eplb-bench: cannot write %s: %s\n", path, strerror(errno));
        return 0;
    }
    return 1;
}

/* ---- command line ------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: eplb-bench [options]\n"
            "Times eplb_rebalance per backend and reports plan quality.\n\n"
            "  --backend B      cpu, opencl or cuda (repeatable; default: every available one)\n"
            "  --case NAME      a case below (repeatable; default: all)\n"
            "  --list-cases     print the cases and exit\n"
            "  --runs N         timed runs per measurement (default 50)\n"
            "  --warmup N       untimed runs first (default 5)\n"
            "  --min-time S     keep timing until S seconds have passed (default 0)\n"
            "  --max-time S     stop a measurement after S seconds once 5 runs are in\n"
            "                   (default 20; 0 = no limit)\n"
            "  --candidates C   candidates of the main rows (default 8)\n"
            "  --iters I        swap iterations of the main rows (default 20)\n"
            "  --seed S         option seed (default 0)\n"
            "  --workload-seed S  seed of the built-in workload (default 1)\n"
            "  --no-baseline    skip the C=1, I=0 rows (DeepSeek's original algorithm)\n"
            "  --markdown       print the table as Markdown\n"
            "  --json FILE      also write machine-readable results to FILE\n"
            "  --help           this text\n");
}

static const bench_case *find_case(const char *name)
{
    for (int i = 0; i < BENCH_CASE_COUNT; i++)
        if (!strcmp(all_cases[i].name, name))
            return &all_cases[i];
    return NULL;
}

static int takes_value_option(const char *a)
{
    static const char *const names[] = {"--backend", "--case", "--runs", "--warmup",
                                        "--min-time", "--max-time", "--candidates", "--iters",
                                        "--seed", "--workload-seed", "--json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(a, names[i]))
            return 1;
    return 0;
}

static int parse_args(int argc, char **argv, bench_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->runs = 50;
    cfg->warmup = 5;
    cfg->max_time = 20.0;
    cfg->candidates = 8;
    cfg->iterations = 20;
    cfg->workload_seed = 1;
    cfg->baseline = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        int takes_value = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--list-cases")) {
            for (int c = 0; c < BENCH_CASE_COUNT; c++) {
                const eplb_shape *s = &all_cases[c].shape;
                printf("%-14s L=%" PRId64 " E=%" PRId64 " R=%" PRId64 " G=%" PRId64 " N=%" PRId64
                       " P=%" PRId64 "  %s\n",
                       all_cases[c].name, s->layers, s->experts, s->replicas, s->groups, s->nodes,
                       s->gpus, all_cases[c].what);
            }
            exit(0);
        } else if (!strcmp(a, "--no-baseline")) {
            cfg->baseline = 0;
            takes_value = 0;
        } else if (!strcmp(a, "--markdown")) {
            cfg->markdown = 1;
            takes_value = 0;
        } else if (!takes_value_option(a)) {
            fprintf(stderr, "eplb-bench: unknown option '%s' (see --help)\n", a);
            return 0;
        } else if (!v) {
            fprintf(stderr, "eplb-bench: %s needs a value\n", a);
            return 0;
        } else if (!strcmp(a, "--backend")) {
            if (cfg->backend_count == BENCH_MAX_BACKENDS) {
                fprintf(stderr, "eplb-bench: too many --backend\n");
                return 0;
            }
            cfg->backends[cfg->backend_count++] = v;
        } else if (!strcmp(a, "--case")) {
            const bench_case *c = find_case(v);
            if (!c) {
                fprintf(stderr, "eplb-bench: unknown case '%s' (see --list-cases)\n", v);
                return 0;
            }
            if (cfg->case_count == BENCH_MAX_CASES) {
                fprintf(stderr, "eplb-bench: too many --case\n");
                return 0;
            }
            cfg->cases[cfg->case_count++] = c;
        } else if (!strcmp(a, "--runs")) {
            if (!parse_long(v, 1, BENCH_MAX_RUNS, &n)) {
                fprintf(stderr, "eplb-bench: --runs wants an integer in 1..%d, got '%s'\n",
                        BENCH_MAX_RUNS, v);
                return 0;
            }
            cfg->runs = n;
        } else if (!strcmp(a, "--warmup")) {
            if (!parse_long(v, 0, BENCH_MAX_RUNS, &n)) {
                fprintf(stderr, "eplb-bench: --warmup wants an integer in 0..%d, got '%s'\n",
                        BENCH_MAX_RUNS, v);
                return 0;
            }
            cfg->warmup = n;
        } else if (!strcmp(a, "--min-time") || !strcmp(a, "--max-time")) {
            char *end;
            errno = 0;
            double t = strtod(v, &end);
            if (errno || end == v || *end || !(t >= 0.0 && t <= 3600.0)) {
                fprintf(stderr, "eplb-bench: %s wants seconds in 0..3600, got '%s'\n", a, v);
                return 0;
            }
            if (!strcmp(a, "--min-time"))
                cfg->min_time = t;
            else
                cfg->max_time = t;
        } else if (!strcmp(a, "--candidates")) {
            if (!parse_long(v, 1, EPLB_MAX_CANDIDATES, &n)) {
                fprintf(stderr, "eplb-bench: --candidates wants an integer in 1..%d, got '%s'\n",
                        EPLB_MAX_CANDIDATES, v);
                return 0;
            }
            cfg->candidates = (int)n;
        } else if (!strcmp(a, "--iters")) {
            if (!parse_long(v, 0, EPLB_MAX_ITERATIONS, &n)) {
                fprintf(stderr, "eplb-bench: --iters wants an integer in 0..%d, got '%s'\n",
                        EPLB_MAX_ITERATIONS, v);
                return 0;
            }
            cfg->iterations = (int)n;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_u64(v, &cfg->seed)) {
                fprintf(stderr, "eplb-bench: --seed wants an unsigned integer, got '%s'\n", v);
                return 0;
            }
        } else if (!strcmp(a, "--workload-seed")) {
            if (!parse_u64(v, &cfg->workload_seed)) {
                fprintf(stderr, "eplb-bench: --workload-seed wants an unsigned integer, got '%s'\n",
                        v);
                return 0;
            }
        } else if (!strcmp(a, "--json")) {
            cfg->json_path = v;
        } else {
            fprintf(stderr, "eplb-bench: unknown option '%s' (see --help)\n", a);
            return 0;
        }
        if (takes_value)
            i++;
    }
    if (cfg->case_count == 0)
        for (int c = 0; c < BENCH_CASE_COUNT; c++)
            cfg->cases[cfg->case_count++] = &all_cases[c];
    return 1;
}

/* Resolves the backends to run: the named ones (each must be available), or
 * every available one. */
static int select_backends(bench_config *cfg)
{
    if (cfg->backend_count > 0) {
        for (int i = 0; i < cfg->backend_count; i++) {
            int found = 0;
            for (int b = 0; b < eplb_backend_count(); b++) {
                if (strcmp(eplb_backend_name(b), cfg->backends[i]))
                    continue;
                found = 1;
                const char *reason = NULL;
                if (!eplb_backend_available(b, &reason)) {
                    fprintf(stderr, "eplb-bench: backend %s is not available: %s\n",
                            cfg->backends[i], reason ? reason : "no reason given");
                    return 0;
                }
            }
            if (!found) {
                fprintf(stderr, "eplb-bench: unknown backend '%s' (cpu, opencl, cuda)\n",
                        cfg->backends[i]);
                return 0;
            }
        }
        return 1;
    }
    for (int b = 0; b < eplb_backend_count() && cfg->backend_count < BENCH_MAX_BACKENDS; b++) {
        const char *reason = NULL;
        if (eplb_backend_available(b, &reason))
            cfg->backends[cfg->backend_count++] = eplb_backend_name(b);
        else
            printf("%sskipping backend %s: %s\n", cfg->markdown ? "- " : "",
                   eplb_backend_name(b), reason ? reason : "not available");
    }
    if (cfg->backend_count == 0) {
        fprintf(stderr, "eplb-bench: no backend available\n");
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    bench_config cfg;
    if (!parse_args(argc, argv, &cfg))
        return 2;
    if (eplb_version_number() != EPLB_VERSION_NUMBER) {
        fprintf(stderr, "eplb-bench: built for eplb %s but loaded %s\n", EPLB_VERSION_STRING,
                eplb_version_string());
        return 1;
    }
    /* Opened now so that a bad path fails before minutes of measuring. */
    FILE *json = NULL;
    if (cfg.json_path && !(json = fopen(cfg.json_path, "w"))) {
        fprintf(stderr, "eplb-bench: cannot write %s: %s\n", cfg.json_path, strerror(errno));
        return 1;
    }
    char model[256];
    cpu_model(model, sizeof model);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname un;
    if (uname(&un) != 0)
        memset(&un, 0, sizeof un);
    print_header(&cfg, model, cores, &un);
    if (!select_backends(&cfg)) {
        if (json)
            fclose(json);
        return 1;
    }

    /* Option sets: the chosen one, then DeepSeek's original for comparison. */
    eplb_options opts[2];
    int opt_count = 1;
    eplb_options_init(&opts[0]);
    opts[0].candidates = cfg.candidates;
    opts[0].iterations = cfg.iterations;
    opts[0].seed = cfg.seed;
    if (cfg.baseline && !(cfg.candidates == 1 && cfg.iterations == 0)) {
        opts[1] = opts[0];
        opts[1].candidates = 1;
        opts[1].iterations = 0;
        opt_count = 2;
    }

    int result_cap = cfg.backend_count * cfg.case_count * opt_count;
    bench_result *results = checked_calloc((size_t)result_cap, sizeof *results);
    char devices[BENCH_MAX_BACKENDS][256];
    const char *device_ptrs[BENCH_MAX_BACKENDS], *device_backends[BENCH_MAX_BACKENDS];
    int result_count = 0, failed = 0;

    /* Plans of the cpu backend, to tell whether other backends agree bit for bit. */
    eplb_context *cpu_ref = NULL;
    int need_ref = 0;
    for (int b = 0; b < cfg.backend_count; b++)
        need_ref |= strcmp(cfg.backends[b], "cpu") != 0;
    if (need_ref && eplb_context_create(&cpu_ref, "cpu") != EPLB_OK) {
        fprintf(stderr, "eplb-bench: cpu reference context: %s\n", eplb_last_error());
        cpu_ref = NULL;
    }

    for (int b = 0; b < cfg.backend_count && !failed; b++) {
        eplb_context *ctx = NULL;
        if (eplb_context_create(&ctx, cfg.backends[b]) != EPLB_OK) {
            fprintf(stderr, "eplb-bench: backend %s: %s\n", cfg.backends[b], eplb_last_error());
            failed = 1;
            break;
        }
        snprintf(devices[b], sizeof devices[b], "%s", eplb_context_device(ctx));
        device_ptrs[b] = devices[b];
        device_backends[b] = cfg.backends[b];
        printf(cfg.markdown ? "\n**backend %s**: %s\n\n" : "\nbackend %s: %s\n",
               eplb_context_backend(ctx), devices[b]);
        print_table_head(cfg.markdown);
        for (int c = 0; c < cfg.case_count && !failed; c++) {
            const bench_case *bc = cfg.cases[c];
            const eplb_shape *s = &bc->shape;
            float *weight = checked_calloc((size_t)(s->layers * s->experts), sizeof *weight);
            eplb_workload_fill(weight, s->layers, s->experts, cfg.workload_seed, 0);
            for (int o = 0; o < opt_count && !failed; o++) {
                eplb_options opt = opts[o];
                opt.policy = bc->policy;
                plan_buffers buf = {0};
                bench_result *r = &results[result_count];
                r->bcase = bc;
                r->backend = cfg.backends[b];
                r->candidates = opt.candidates;
                r->iterations = opt.iterations;
                r->same_as_cpu = -1;
                if (!time_plans(ctx, weight, s, &opt, &cfg, &buf, &r->time)) {
                    failed = 1;
                } else {
                    char broken[512];
                    if (!eplb_plan_check(s, eplb_plan_is_hierarchical(s, opt.policy), weight,
                                         buf.phy2log, buf.logcnt, buf.log2phy, buf.log2phy_width,
                                         broken, sizeof broken)) {
                        fprintf(stderr, "eplb-bench: %s on %s gave an invalid plan: %s\n",
                                bc->name, cfg.backends[b], broken);
                        failed = 1;
                    } else {
                        r->quality =
                            measure_plan(s, weight, buf.phy2log, buf.logcnt, buf.gpu_load);
                    }
                    if (!failed && cpu_ref && strcmp(cfg.backends[b], "cpu")) {
                        plan_buffers ref = {0};
                        if (plan_once(cpu_ref, weight, s, &opt, &ref))
                            r->same_as_cpu =
                                !memcmp(ref.phy2log, buf.phy2log,
                                        (size_t)(s->layers * s->replicas) * sizeof(int64_t)) &&
                                !memcmp(ref.logcnt, buf.logcnt,
                                        (size_t)(s->layers * s->experts) * sizeof(int64_t));
                        plan_buffers_free(&ref);
                    }
                    if (!failed) {
                        print_row(r, cfg.markdown);
                        result_count++;
                    }
                }
                plan_buffers_free(&buf);
            }
            free(weight);
        }
        eplb_context_free(ctx);
    }
    eplb_context_free(cpu_ref);

    if (json && failed)
        fclose(json);
    else if (json && !write_json(json, cfg.json_path, &cfg, model, cores, &un, device_ptrs, device_backends,
                    cfg.backend_count, results, result_count))
        failed = 1;
    free(results);
    return failed ? 1 : 0;
}
