/* eplb-bench: its cases and its command line. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

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

/* A whole number in lo..hi for option opt; else says so and returns 0. */
static int parse_long(const char *opt, const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "eplb-bench: %s wants an integer in %ld..%ld, got '%s'\n", opt, lo, hi,
                text);
        return 0;
    }
    *out = v;
    return 1;
}

/* An unsigned 64-bit number for option opt; else says so and returns 0. */
static int parse_u64(const char *opt, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = text[0] == '-' ? 0 : strtoull(text, &end, 10);
    if (text[0] == '-' || errno || end == text || *end) {
        fprintf(stderr, "eplb-bench: %s wants an unsigned integer, got '%s'\n", opt, text);
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

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
            "  --refine[=N]     also run every row with refine N (docs/spec.md section 10;\n"
            "                   alone: 256); a backend without the refine stage skips them\n"
            "  --first-plan     also time the process's first plan (the first backend's\n"
            "                   first case and options) and the median of 21 repeats\n"
            "  --drift          also plan the DeepSeek-V3 cases' loads drifted by exp(0.1 z),\n"
            "                   fresh and incrementally from the undrifted plan (docs/spec.md\n"
            "                   section 13): moves, balancedness and time of both\n"
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

int bench_parse_args(int argc, char **argv, bench_config *cfg)
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
        } else if (!strcmp(a, "--refine") || !strncmp(a, "--refine=", 9)) {
            takes_value = 0;
            cfg->refine = 256;
            char *end = NULL;
            if (a[8] == '=') {
                const long n = strtol(a + 9, &end, 10);
                if (end == a + 9 || *end || n < 1 || n > EPLB_MAX_REFINE) {
                    fprintf(stderr, "eplb-bench: --refine=N needs N in 1..%d\n", EPLB_MAX_REFINE);
                    return 0;
                }
                cfg->refine = (int)n;
            }
        } else if (!strcmp(a, "--first-plan")) {
            cfg->first_plan = 1;
            takes_value = 0;
        } else if (!strcmp(a, "--drift")) {
            cfg->drift = 1;
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
            if (!parse_long(a, v, 1, BENCH_MAX_RUNS, &cfg->runs))
                return 0;
        } else if (!strcmp(a, "--warmup")) {
            if (!parse_long(a, v, 0, BENCH_MAX_RUNS, &cfg->warmup))
                return 0;
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
            if (!parse_long(a, v, 1, EPLB_MAX_CANDIDATES, &n))
                return 0;
            cfg->candidates = (int)n;
        } else if (!strcmp(a, "--iters")) {
            if (!parse_long(a, v, 0, EPLB_MAX_ITERATIONS, &n))
                return 0;
            cfg->iterations = (int)n;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_u64(a, v, &cfg->seed))
                return 0;
        } else if (!strcmp(a, "--workload-seed")) {
            if (!parse_u64(a, v, &cfg->workload_seed))
                return 0;
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
int bench_select_backends(bench_config *cfg)
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
