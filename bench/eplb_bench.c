/* eplb-bench: wall-clock timing of eplb_rebalance (host API) per backend on
 * the DeepSeek-V3 shapes and a scale case, with the plan's quality figures
 * (SPEC section 8) for the chosen options and for DeepSeek's original
 * algorithm (C=1, I=0). Depends on libeplb and eplb_tools only. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "eplb/eplb.h"
#include "plan_check.h"
#include "workload.h"

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

static void *checked_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    if (!p) {
        fprintf(stderr, "eplb-bench: out of memory (%zu x %zu bytes)\n", count, size);
        exit(1);
    }
    return p;
}

/* ---- one measurement ---------------------------------------------------- */

void bench_plan_buffers_free(plan_buffers *b)
{
    void *owned[] = {b->phy2log, b->logcnt, b->log2phy, b->gpu_load};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
    memset(b, 0, sizeof *b);
}

/* eplb_rebalance, or eplb_rebalance_incremental from b->previous. */
static eplb_status rebalance(eplb_context *ctx, const float *weight, const eplb_shape *s,
                             const eplb_options *opt, plan_buffers *b, int64_t *log2phy,
                             int64_t width, int64_t *needed)
{
    if (b->previous)
        return eplb_rebalance_incremental(ctx, weight, s, opt, b->previous, b->phy2log,
                                          b->logcnt, log2phy, width, needed);
    return eplb_rebalance(ctx, weight, s, opt, b->phy2log, b->logcnt, log2phy, width, needed);
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
        eplb_status st = rebalance(ctx, weight, s, opt, b, NULL, 0, &needed);
        if (st != EPLB_OK) {
            fprintf(stderr, "eplb-bench: eplb_rebalance failed: %s: %s\n",
                    eplb_status_string(st), eplb_context_last_error(ctx));
            return 0;
        }
        b->log2phy_width = needed;
        b->log2phy = checked_calloc((size_t)(s->layers * s->experts * needed), sizeof(int64_t));
    }
    eplb_status st = rebalance(ctx, weight, s, opt, b, b->log2phy, b->log2phy_width, NULL);
    if (st != EPLB_OK) {
        fprintf(stderr, "eplb-bench: eplb_rebalance failed: %s: %s\n", eplb_status_string(st),
                eplb_context_last_error(ctx));
        return 0;
    }
    return 1;
}

/* The timings of one plan's calls, sorted, into out; frees t. */
static void summarize(double *t, long n, timing *out)
{
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
}

int bench_time_plan_set(eplb_context *ctx, const float *weight, const eplb_shape *s,
                        const eplb_options *opt, const bench_config *cfg, plan_buffers *b,
                        int count, timing *out)
{
    for (int p = 0; p < count; p++)
        for (long i = 0; i < cfg->warmup || i == 0; i++)
            if (!plan_once(ctx, weight, s, opt, &b[p]))
                return 0;
    long cap = cfg->runs > 64 ? cfg->runs : 64;
    double *t[BENCH_PLAN_SET_MAX] = {0};
    int ok = count >= 1 && count <= BENCH_PLAN_SET_MAX;
    for (int p = 0; ok && p < count; p++)
        ok = (t[p] = checked_calloc((size_t)cap, sizeof *t[p])) != NULL;
    long n = 0;
    double start = now_seconds();
    while (ok) {
        double elapsed = now_seconds() - start;
        int want = n < cfg->runs || (elapsed < cfg->min_time && n < BENCH_MAX_RUNS);
        if (!want || (cfg->max_time > 0 && elapsed >= cfg->max_time && elapsed >= cfg->min_time &&
                      n >= 5))
            break;
        if (n == cap) {
            cap *= 2;
            for (int p = 0; ok && p < count; p++) {
                double *grown = realloc(t[p], (size_t)cap * sizeof *t[p]);
                if (!grown) {
                    fprintf(stderr, "eplb-bench: out of memory for timings\n");
                    ok = 0;
                } else {
                    t[p] = grown;
                }
            }
        }
        /* One call of each plan per round, so that a machine whose speed
         * drifts during the measurement slows every plan alike. */
        for (int p = 0; ok && p < count; p++) {
            double t0 = now_seconds();
            ok = plan_once(ctx, weight, s, opt, &b[p]);
            t[p][n] = (now_seconds() - t0) * 1e3;
        }
        n += ok;
    }
    for (int p = 0; p < count; p++) {
        if (ok)
            summarize(t[p], n, &out[p]);
        else
            free(t[p]);
    }
    return ok;
}

int bench_time_plans(eplb_context *ctx, const float *weight, const eplb_shape *s,
                     const eplb_options *opt, const bench_config *cfg, plan_buffers *b,
                     timing *out)
{
    return bench_time_plan_set(ctx, weight, s, opt, cfg, b, 1, out);
}

/* The process's first plan (--first-plan): its time, then the median of 21
 * repeats of the same call, as the demo reports them. Both calls leave
 * log2phy out (the width is not known before a first plan), so the ratio
 * compares like with like: the first call pays the workspace, the first
 * touch of its pages and, for the cpu backend, the start of the OpenMP
 * threads, unless the backend started them with the context (the cpu
 * backend does), which is why the report gives the context's time (and the
 * probes', which open each backend once) too. The context was created just
 * before and has planned nothing (a GPU backend's self-test, at creation,
 * planned its small case). */
static int time_first_plan(eplb_context *ctx, const bench_case *bc, const eplb_options *options,
                           double probe_ms, double create_ms, uint64_t workload_seed,
                           int markdown)
{
    enum { REPEATS = 21 };
    const eplb_shape *s = &bc->shape;
    eplb_options opt = *options;
    opt.policy = bc->policy;
    float *weight = checked_calloc((size_t)(s->layers * s->experts), sizeof *weight);
    eplb_workload_fill(weight, s->layers, s->experts, workload_seed, 0);
    int64_t *phy2log = checked_calloc((size_t)(s->layers * s->replicas), sizeof(int64_t));
    int64_t *logcnt = checked_calloc((size_t)(s->layers * s->experts), sizeof(int64_t));
    double t[REPEATS + 1];
    eplb_status st = EPLB_OK;
    for (int i = 0; i <= REPEATS && st == EPLB_OK; i++) {
        double t0 = now_seconds();
        st = eplb_rebalance(ctx, weight, s, &opt, phy2log, logcnt, NULL, 0, NULL);
        t[i] = (now_seconds() - t0) * 1e3;
    }
    free(weight);
    free(phy2log);
    free(logcnt);
    if (st != EPLB_OK) {
        fprintf(stderr, "eplb-bench: eplb_rebalance failed: %s: %s\n", eplb_status_string(st),
                eplb_context_last_error(ctx));
        return 0;
    }
    qsort(t + 1, REPEATS, sizeof *t, compare_double);
    const double repeat = t[1 + REPEATS / 2];
    printf("%sfirst plan of the process (%s, C=%d, I=%d): %.3f ms (before it: backend probes "
           "%.3f ms, context creation %.3f ms), "
           "median of %d repeats %.3f ms: %.2fx\n",
           markdown ? "- " : "", bc->name, opt.candidates, opt.iterations, t[0], probe_ms,
           create_ms, REPEATS, repeat, t[0] / repeat);
    return 1;
}

/* Whether ctx's backend has the refine stage: a backend without it refuses
 * a refine plan with EPLB_ERR_UNSUPPORTED (docs/spec.md section 10). */
static int backend_refines(eplb_context *ctx)
{
    static const float weight[4] = {5, 4, 3, 1};
    const eplb_shape shape = {1, 4, 4, 1, 1, 2};
    eplb_options o;
    eplb_options_init(&o);
    o.refine = 1;
    int64_t phy2log[4], logcnt[4];
    return eplb_rebalance(ctx, weight, &shape, &o, phy2log, logcnt, NULL, 0, NULL) !=
           EPLB_ERR_UNSUPPORTED;
}

int main(int argc, char **argv)
{
    bench_config cfg;
    if (!bench_parse_args(argc, argv, &cfg))
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
    bench_cpu_model(model, sizeof model);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname un;
    if (uname(&un) != 0)
        memset(&un, 0, sizeof un);
    bench_print_header(&cfg, model, cores, &un);
    /* Probing opens each backend once, the process's first instances: a
     * first plan's report gives their time with the context's. */
    const double probe_start = now_seconds();
    if (!bench_select_backends(&cfg)) {
        if (json)
            fclose(json);
        return 1;
    }
    const double probe_ms = (now_seconds() - probe_start) * 1e3;

    /* Option sets: the chosen one, then DeepSeek's original for comparison;
     * with --refine each is followed by the same with refine. */
    eplb_options opts[4];
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
    if (cfg.refine > 0) {
        for (int o = opt_count - 1; o >= 0; o--) {
            opts[2 * o] = opts[o];
            opts[2 * o + 1] = opts[o];
            opts[2 * o + 1].refine = cfg.refine;
        }
        opt_count *= 2;
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
        const double create_start = now_seconds();
        if (eplb_context_create(&ctx, cfg.backends[b]) != EPLB_OK) {
            fprintf(stderr, "eplb-bench: backend %s: %s\n", cfg.backends[b], eplb_last_error());
            failed = 1;
            break;
        }
        const double create_ms = (now_seconds() - create_start) * 1e3;
        snprintf(devices[b], sizeof devices[b], "%s", eplb_context_device(ctx));
        device_ptrs[b] = devices[b];
        device_backends[b] = cfg.backends[b];
        printf(cfg.markdown ? "\n**backend %s**: %s\n\n" : "\nbackend %s: %s\n",
               eplb_context_backend(ctx), devices[b]);
        if (cfg.first_plan && b == 0 &&
            !time_first_plan(ctx, cfg.cases[0], &opts[0], probe_ms, create_ms, cfg.workload_seed,
                             cfg.markdown)) {
            eplb_context_free(ctx);
            failed = 1;
            break;
        }
        bench_print_table_head(cfg.markdown, cfg.refine > 0);
        /* A backend without the refine stage refuses it, so its refine rows
         * are left out rather than failing the bench. */
        const int skip_refine = cfg.refine > 0 && !backend_refines(ctx);
        if (skip_refine)
            printf("(refine rows skipped: the %s backend has no refine stage yet)\n",
                   eplb_context_backend(ctx));
        for (int c = 0; c < cfg.case_count && !failed; c++) {
            const bench_case *bc = cfg.cases[c];
            const eplb_shape *s = &bc->shape;
            float *weight = checked_calloc((size_t)(s->layers * s->experts), sizeof *weight);
            eplb_workload_fill(weight, s->layers, s->experts, cfg.workload_seed, 0);
            for (int o = 0; o < opt_count && !failed; o++) {
                eplb_options opt = opts[o];
                opt.policy = bc->policy;
                if (skip_refine && opt.refine > 0)
                    continue;
                plan_buffers buf = {0};
                bench_result *r = &results[result_count];
                r->bcase = bc;
                r->backend = cfg.backends[b];
                r->candidates = opt.candidates;
                r->iterations = opt.iterations;
                r->refine = opt.refine;
                r->same_as_cpu = -1;
                if (!bench_time_plans(ctx, weight, s, &opt, &cfg, &buf, &r->time)) {
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
                            bench_measure_plan(s, opt.policy, weight, buf.phy2log, buf.logcnt,
                                               buf.gpu_load);
                    }
                    if (!failed && cpu_ref && strcmp(cfg.backends[b], "cpu")) {
                        plan_buffers ref = {0};
                        if (plan_once(cpu_ref, weight, s, &opt, &ref))
                            r->same_as_cpu =
                                !memcmp(ref.phy2log, buf.phy2log,
                                        (size_t)(s->layers * s->replicas) * sizeof(int64_t)) &&
                                !memcmp(ref.logcnt, buf.logcnt,
                                        (size_t)(s->layers * s->experts) * sizeof(int64_t));
                        bench_plan_buffers_free(&ref);
                    }
                    if (!failed) {
                        bench_print_row(r, cfg.markdown, cfg.refine > 0);
                        result_count++;
                    }
                }
                bench_plan_buffers_free(&buf);
            }
            free(weight);
        }
        if (cfg.drift && !failed && !bench_drift(ctx, &cfg, &opts[0]))
            failed = 1;
        eplb_context_free(ctx);
    }
    eplb_context_free(cpu_ref);

    if (json && failed)
        fclose(json);
    else if (json && !bench_write_json(json, cfg.json_path, &cfg, model, cores, &un, device_ptrs, device_backends,
                    cfg.backend_count, results, result_count))
        failed = 1;
    free(results);
    return failed ? 1 : 0;
}
