/* The eplb tool: plan statistics on hand-computed cases, the random-case
 * generator, and the built binary end to end (plan, demo, backends,
 * conformance, exit codes). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_run.h"
#include "golden.h"
#include "load_weights.h"
#include "plan_stats.h"
#include "random_case.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif


/* ---- plan statistics ---------------------------------------------------------------- */

/* Layer 0: weights 6 3 2 1, logcnt 2 2 1 1, GPU 0 holds experts 0 1 2, GPU 1 holds 0 1 3:
 * loads 3+1.5+2 = 6.5 and 3+1.5+1 = 5.5, mean 6. Layer 1 is idle (all zero).
 * Layer 2: weights 12 0 0 0, logcnt 3 1 1 1, GPU 0 holds 0 0 1, GPU 1 holds 0 2 3:
 * loads 8 and 4, mean 6. Bounds: layer 0 max(12/2, 3) = 6 (section 5 gives expert 0
 * both spare slots: 6/3 = 2, expert 1 keeps 3); layer 1 0; layer 2 max(6, 12/3) = 6. */
Test(plan_stats, hand_computed_case)
{
    const eplb_shape shape = {3, 4, 6, 1, 1, 2};
    const float weight[] = {6, 3, 2, 1, 0, 0, 0, 0, 12, 0, 0, 0};
    const int64_t phy2log[] = {0, 1, 2, 0, 1, 3, 0, 1, 2, 0, 1, 3, 0, 0, 1, 0, 2, 3};
    const int64_t logcnt[] = {2, 2, 1, 1, 2, 2, 1, 1, 3, 1, 1, 1};
    eplb_plan_stats s;
    double max_load[3], bound[3];
    cr_assert_eq(eplb_plan_stats_compute(weight, &shape, EPLB_POLICY_AUTO, phy2log, logcnt, &s,
                                         max_load, bound),
                 EPLB_OK);
    cr_expect_float_eq(max_load[0], 6.5, 1e-12);
    cr_expect_float_eq(max_load[1], 0.0, 1e-12);
    cr_expect_float_eq(max_load[2], 8.0, 1e-12);
    cr_expect_float_eq(bound[0], 6.0, 1e-12);
    cr_expect_float_eq(bound[1], 0.0, 1e-12);
    cr_expect_float_eq(bound[2], 6.0, 1e-12);
    cr_expect_float_eq(s.mean_load_sum, 12.0, 1e-12);
    cr_expect_float_eq(s.max_load_sum, 14.5, 1e-12);
    cr_expect_float_eq(s.balancedness, 12.0 / 14.5, 1e-12);
    cr_expect_float_eq(s.balancedness_min_layer, 0.75, 1e-12);
    cr_expect_eq(s.min_layer, 2);
    cr_expect_float_eq(s.bound, 12.0, 1e-12);
    cr_expect_float_eq(s.balancedness_bound, 1.0, 1e-12);
    cr_expect_float_eq(s.bound_gap, 14.5 / 12.0 - 1.0, 1e-12);
}

Test(plan_stats, all_idle_plan_is_perfectly_balanced)
{
    const eplb_shape shape = {1, 2, 2, 1, 1, 2};
    const float weight[] = {0, 0};
    const int64_t phy2log[] = {0, 1}, logcnt[] = {1, 1};
    eplb_plan_stats s;
    cr_assert_eq(eplb_plan_stats_compute(weight, &shape, EPLB_POLICY_AUTO, phy2log, logcnt, &s, NULL,
                                         NULL),
                 EPLB_OK);
    cr_expect_eq(s.balancedness, 1.0);
    cr_expect_eq(s.balancedness_min_layer, 1.0);
    cr_expect_eq(s.bound_gap, 0.0);
}

Test(plan_stats, inconsistent_plan_leaves_stats_untouched)
{
    const eplb_shape shape = {1, 2, 2, 1, 1, 2};
    const float weight[] = {1, 2};
    const int64_t bad_phy2log[] = {0, 2}, phy2log[] = {0, 1};
    const int64_t logcnt[] = {1, 1}, bad_logcnt[] = {0, 2};
    eplb_plan_stats s, poison;
    memset(&s, 0xA5, sizeof s);
    memset(&poison, 0xA5, sizeof poison);
    cr_expect_eq(eplb_plan_stats_compute(weight, &shape, EPLB_POLICY_AUTO, bad_phy2log, logcnt, &s,
                                         NULL, NULL),
                 EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(eplb_plan_stats_compute(weight, &shape, EPLB_POLICY_AUTO, phy2log, bad_logcnt, &s,
                                         NULL, NULL),
                 EPLB_ERR_INVALID_ARGUMENT);
    const eplb_shape bad_shape = {1, 2, 3, 1, 1, 2}; /* 3 slots on 2 GPUs */
    cr_expect_eq(eplb_plan_stats_compute(weight, &bad_shape, EPLB_POLICY_AUTO, phy2log, logcnt, &s,
                                         NULL, NULL),
                 EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(memcmp(&s, &poison, sizeof s), 0);
}

/* The stats of a golden plan reproduce the golden max_gpu_load per layer. */
Test(plan_stats, golden_max_loads)
{
    eplb_golden g;
    char error[512];
    cr_assert_eq(eplb_golden_read(EPLB_GOLDEN_DIR "/kimi-k2.default.txt", &g, error, sizeof error),
                 EPLB_OK, "%s", error);
    double *max_load = malloc((size_t)g.shape.layers * sizeof *max_load);
    double *bound = malloc((size_t)g.shape.layers * sizeof *bound);
    eplb_plan_stats s;
    cr_assert_eq(eplb_plan_stats_compute(g.weight, &g.shape, g.options.policy, g.phy2log, g.logcnt,
                                         &s, max_load, bound),
                 EPLB_OK);
    for (int64_t l = 0; l < g.shape.layers; l++) {
        cr_expect(fabs(max_load[l] - g.max_gpu_load[l]) <= 1e-6 * g.max_gpu_load[l],
                  "layer %lld: %.9g vs golden %.9g", (long long)l, max_load[l], g.max_gpu_load[l]);
        cr_expect_leq(bound[l], max_load[l] * (1 + 1e-12), "the bound must be below the plan");
    }
    cr_expect(s.balancedness > 0.0 && s.balancedness <= 1.0);
    cr_expect_leq(s.balancedness, s.balancedness_bound + 1e-12);
    free(max_load);
    free(bound);
    eplb_golden_free(&g);
}

/* ---- random cases ------------------------------------------------------------------- */

Test(random_case, valid_deterministic_and_covering_every_kind)
{
    int kinds[EPLB_RANDOM_KINDS] = {0};
    int global_policy = 0, hierarchical_shape = 0, k1 = 0, no_redundancy = 0, zero_layer = 0;
    for (uint64_t i = 0; i < 300; i++) {
        eplb_random_case a, b;
        cr_assert_eq(eplb_random_case_make(42, i, &a), EPLB_OK);
        cr_assert_eq(eplb_random_case_make(42, i, &b), EPLB_OK);
        const eplb_shape *s = &a.shape;
        const char *why = NULL;
        cr_assert_eq(eplb_shape_check(s, &why), EPLB_OK, "%s: %s", a.name, why ? why : "");
        cr_assert_str_eq(a.name, b.name);
        cr_assert_eq(memcmp(&a.options, &b.options, sizeof a.options), 0);
        cr_assert_eq(memcmp(a.weight, b.weight, (size_t)(s->layers * s->experts) * sizeof(float)), 0);
        cr_assert(a.options.candidates >= 1 && a.options.candidates <= 16);
        cr_assert(a.options.iterations >= 0 && a.options.iterations <= 30);
        int hier = s->groups % s->nodes == 0 && a.options.policy != EPLB_POLICY_GLOBAL;
        if (a.options.policy == EPLB_POLICY_HIERARCHICAL)
            cr_assert_eq(s->groups % s->nodes, 0, "%s", a.name);
        if (hier)
            cr_assert_eq(s->gpus % s->nodes, 0, "%s", a.name);
        kinds[a.kind]++;
        global_policy += !hier;
        hierarchical_shape += hier;
        k1 += s->replicas == s->gpus && s->groups == s->nodes;
        no_redundancy += s->replicas == s->experts;
        for (int64_t l = 0; l < s->layers; l++) {
            int zero = 1;
            for (int64_t e = 0; e < s->experts; e++)
                zero &= a.weight[l * s->experts + e] == 0.0f;
            zero_layer += zero;
        }
        eplb_random_case_free(&a);
        eplb_random_case_free(&b);
    }
    for (int k = 0; k < EPLB_RANDOM_KINDS; k++)
        cr_expect_eq(kinds[k], 50, "kind %d", k);
    cr_expect_geq(global_policy, 50);
    cr_expect_gt(hierarchical_shape, 50);
    cr_expect_geq(k1, 50);
    cr_expect_geq(no_redundancy, 50);
    cr_expect_geq(zero_layer, 50);
    eplb_random_case other;
    cr_assert_eq(eplb_random_case_make(43, 0, &other), EPLB_OK);
    eplb_random_case first;
    cr_assert_eq(eplb_random_case_make(42, 0, &first), EPLB_OK);
    cr_expect(strcmp(other.name, first.name) != 0 || other.options.seed != first.options.seed,
              "the seed must change the cases");
    eplb_random_case_free(&other);
    eplb_random_case_free(&first);
}

/* ---- the binary ------------------------------------------------------------------- */

typedef struct run_result {
    int code;
    char out[65536];
    char err[65536];
} run_result;

static void slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

/* Runs `eplb ARGS` through the shell; stdout and stderr captured apart. */
static run_result *run_eplb(const char *args)
{
    static run_result r;
    char cmd[4096], out[512], err[512];
    snprintf(out, sizeof out, "%s/stdout", cli_scratch);
    snprintf(err, sizeof err, "%s/stderr", cli_scratch);
    snprintf(cmd, sizeof cmd, "%s %s >'%s' 2>'%s'", EPLB_CLI, args, out, err);
    int status = system(cmd);
    cr_assert(WIFEXITED(status), "eplb %s did not exit normally", args);
    r.code = WEXITSTATUS(status);
    slurp(out, r.out, sizeof r.out);
    slurp(err, r.err, sizeof r.err);
    unlink(out);
    unlink(err);
    return &r;
}

CLI_SUITE(cli, "/tmp/eplb-test-cli-XXXXXX");

#ifdef EPLB_TOOLS_HAVE_JSON
/* The golden weights as text, 9 digits: exactly the float32 values. */
static void write_text_weights(const char *path, const eplb_golden *g)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int64_t l = 0; l < g->shape.layers; l++)
        for (int64_t e = 0; e < g->shape.experts; e++)
            fprintf(f, "%.9g%s", (double)g->weight[l * g->shape.experts + e],
                    e + 1 < g->shape.experts ? ", " : "\n");
    cr_assert_eq(fclose(f), 0);
}

/* The golden weights as a float32 .npy, format 1.0. */
static void write_npy_weights(const char *path, const eplb_golden *g)
{
    char header[128];
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': "
                     "(%lld, %lld), }", (long long)g->shape.layers, (long long)g->shape.experts);
    while ((10 + n + 1) % 64)
        header[n++] = ' ';
    header[n++] = '\n';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 255),
                             (unsigned char)(n >> 8)};
    fwrite(pre, 1, sizeof pre, f);
    fwrite(header, 1, (size_t)n, f);
    fwrite(g->weight, sizeof(float), (size_t)(g->shape.layers * g->shape.experts), f);
    cr_assert_eq(fclose(f), 0);
}

static void golden_plan_args(char *buf, size_t len, const eplb_golden *g, const char *input,
                             const char *output)
{
    const eplb_shape *s = &g->shape;
    const eplb_options *o = &g->options;
    snprintf(buf, len, "plan --input '%s' --replicas %lld --groups %lld --nodes %lld --gpus %lld "
             "--candidates %d --iters %d --seed %llu --noise %.9g --tol %.9g --backend cpu "
             "--output '%s'", input, (long long)s->replicas, (long long)s->groups,
             (long long)s->nodes, (long long)s->gpus, o->candidates, o->iterations,
             (unsigned long long)o->seed, (double)o->noise, (double)o->tolerance, output);
}

/* Checks the plan file against the golden phy2log and logcnt, and its fields. */
static void expect_golden_plan(const char *plan_path, const eplb_golden *g)
{
    json_error_t jerr;
    json_t *root = json_load_file(plan_path, 0, &jerr);
    cr_assert_not_null(root, "%s: %s", plan_path, jerr.text);
    const int64_t L = g->shape.layers, E = g->shape.experts, R = g->shape.replicas;
    json_t *phy2log = json_object_get(root, "phy2log"), *logcnt = json_object_get(root, "logcnt");
    json_t *log2phy = json_object_get(root, "log2phy"), *stats = json_object_get(root, "stats");
    cr_assert(json_is_array(phy2log) && json_is_array(logcnt) && json_is_array(log2phy));
    cr_assert(json_is_object(stats));
    cr_assert_eq((int64_t)json_array_size(phy2log), L);
    for (int64_t l = 0; l < L; l++) {
        json_t *row = json_array_get(phy2log, (size_t)l);
        cr_assert_eq((int64_t)json_array_size(row), R);
        for (int64_t q = 0; q < R; q++)
            cr_assert_eq(json_integer_value(json_array_get(row, (size_t)q)), g->phy2log[l * R + q],
                         "phy2log[%lld][%lld]", (long long)l, (long long)q);
        json_t *crow = json_array_get(logcnt, (size_t)l);
        for (int64_t e = 0; e < E; e++) {
            cr_assert_eq(json_integer_value(json_array_get(crow, (size_t)e)), g->logcnt[l * E + e]);
        }
    }
    /* log2phy is [L][E][logcnt]: each expert's slots, ascending, no padding. */
    cr_assert_eq((int64_t)json_array_size(log2phy), L);
    for (int64_t l = 0; l < L; l++) {
        cr_assert_eq((int64_t)json_array_size(json_array_get(log2phy, (size_t)l)), E);
        for (int64_t e = 0; e < E; e++) {
            json_t *slots = json_array_get(json_array_get(log2phy, (size_t)l), (size_t)e);
            cr_assert_eq((int64_t)json_array_size(slots), g->logcnt[l * E + e],
                         "log2phy[%lld][%lld] is not as long as logcnt", (long long)l,
                         (long long)e);
            int64_t previous = -1;
            for (size_t k = 0; k < json_array_size(slots); k++) {
                int64_t q = json_integer_value(json_array_get(slots, k));
                cr_assert(q > previous && q < R, "log2phy[%lld][%lld][%zu] = %lld", (long long)l,
                          (long long)e, k, (long long)q);
                cr_assert_eq(g->phy2log[l * R + q], e);
                previous = q;
            }
        }
    }
    eplb_plan_stats want;
    cr_assert_eq(eplb_plan_stats_compute(g->weight, &g->shape, g->options.policy, g->phy2log,
                                         g->logcnt, &want, NULL, NULL),
                 EPLB_OK);
    cr_expect_float_eq(json_real_value(json_object_get(stats, "balancedness")), want.balancedness,
                       1e-12);
    cr_expect_float_eq(json_real_value(json_object_get(stats, "bound")), want.bound,
                       1e-9 * want.bound);
    cr_expect_float_eq(json_real_value(json_object_get(stats, "balancedness_min_layer")),
                       want.balancedness_min_layer, 1e-12);
    cr_expect(json_number_value(json_object_get(stats, "plan_us")) > 0.0);
    cr_expect_str_eq(json_string_value(json_object_get(stats, "backend")), "cpu");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(root, "shape"), "replicas")), R);
    json_decref(root);
}
#endif

static void plan_golden_end_to_end(const char *name, int npy)
{
#ifndef EPLB_TOOLS_HAVE_JSON
    (void)name;
    (void)npy;
    cr_skip_test("built without jansson: no plan files");
#else
    char golden_path[1024], input[512], output[512], args[2048], error[512];
    snprintf(golden_path, sizeof golden_path, "%s/%s", EPLB_GOLDEN_DIR, name);
    eplb_golden g;
    cr_assert_eq(eplb_golden_read(golden_path, &g, error, sizeof error), EPLB_OK, "%s", error);
    snprintf(input, sizeof input, "%s/weights.%s", cli_scratch, npy ? "npy" : "csv");
    snprintf(output, sizeof output, "%s/plan.json", cli_scratch);
    if (npy)
        write_npy_weights(input, &g);
    else
        write_text_weights(input, &g);
    golden_plan_args(args, sizeof args, &g, input, output);
    run_result *r = run_eplb(args);
    cr_assert_eq(r->code, 0, "eplb %s\nstdout: %s\nstderr: %s", args, r->out, r->err);
    cr_expect(strstr(r->out, "balancedness"), "summary: %s", r->out);
    cr_expect(strstr(r->out, "backend       cpu"), "summary: %s", r->out);
    expect_golden_plan(output, &g);
    /* Written through a temporary file: nothing else is left in the directory. */
    DIR *d = opendir(cli_scratch);
    struct dirent *ent;
    while ((ent = readdir(d)))
        cr_expect(ent->d_name[0] == '.' || strcmp(ent->d_name, "plan.json") == 0 ||
                      strncmp(ent->d_name, "weights.", 8) == 0,
                  "left behind: %s", ent->d_name);
    closedir(d);
    eplb_golden_free(&g);
#endif
}

Test(cli, plan_reproduces_hierarchical_golden_from_text) { plan_golden_end_to_end("readme.default.txt", 0); }
Test(cli, plan_reproduces_global_golden_from_npy) { plan_golden_end_to_end("qwen3-global.lpt_l2.txt", 1); }
Test(cli, plan_reproduces_seeded_golden_from_text) { plan_golden_end_to_end("kimi-k2.default-seed7.txt", 0); }

Test(cli, plan_json_input_and_stdout_output)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson");
    run_result *r = run_eplb("plan -i " EPLB_TEST_DATA_DIR "/good-sglang.json -r 12 -p 4 -o -");
    cr_assert_eq(r->code, 0, "%s", r->err);
    cr_expect(strncmp(r->out, "{\"format\":\"eplb-plan v2\"", 24) == 0, "stdout: %.200s", r->out);
    cr_expect(strstr(r->err, "balancedness"), "the summary goes to stderr: %s", r->err);
}

Test(cli, malformed_inputs_exit_2_naming_the_file)
{
    static const char *const files[] = {"bad-ragged.csv", "bad-token.csv", "bad-nan.txt",
                                        "bad-negative.csv", "bad-empty.csv", "bad-fortran.npy",
                                        "bad-float16.npy", "bad-truncated.npy", "bad-header.npy",
                                        "no-such-file.csv"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char args[1024];
        snprintf(args, sizeof args, "plan -i %s/%s -r 8 -p 2", EPLB_TEST_DATA_DIR, files[i]);
        run_result *r = run_eplb(args);
        cr_expect_eq(r->code, 2, "%s: exit %d", files[i], r->code);
        cr_expect(strstr(r->err, files[i]), "%s: stderr '%s' does not name the file", files[i],
                  r->err);
        cr_expect_eq(r->out[0], '\0', "%s: stdout '%s'", files[i], r->out);
    }
}

Test(cli, usage_errors_exit_2)
{
    static const char *const args[] = {
        "",
        "frobnicate",
        "plan -r 8 -p 2",                                               /* no --input */
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -p 2",           /* no --replicas */
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8",           /* no --gpus */
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 3",      /* 8 % 3 */
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 6 -p 2",      /* fewer slots than experts */
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 -g 3", /* 8 % 3 groups */
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 -g 2 -n 4 --policy hierarchical",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 -c 0",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 -c 2x",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 --noise -1",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 --policy best",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 --backend tpu",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 --bogus",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 extra",
        "plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r",
        "demo --input x.csv",
        "backends --all",
        "conformance --random -3",
        "conformance --golden /nonexistent/golden",
    };
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        run_result *r = run_eplb(args[i]);
        cr_expect_eq(r->code, 2, "eplb %s: exit %d, stderr %s", args[i], r->code, r->err);
        cr_expect_neq(r->err[0], '\0', "eplb %s: no message", args[i]);
    }
}

Test(cli, unwritable_output_exits_1)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson");
    run_result *r = run_eplb("plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 "
                             "-o /nonexistent-dir/plan.json");
    cr_expect_eq(r->code, 1);
    cr_expect(strstr(r->err, "cannot write /nonexistent-dir/plan.json"), "%s", r->err);
}

Test(cli, unavailable_backend_exits_1)
{
    run_result *r = run_eplb("plan -i " EPLB_TEST_DATA_DIR "/good-comma.csv -r 8 -p 2 -b cpu");
    cr_assert_eq(r->code, 0, "%s", r->err);
    char args[512];
    snprintf(args, sizeof args, "plan -i %s/good-comma.csv -r 8 -p 2 -b cpu", EPLB_TEST_DATA_DIR);
    setenv("EPLB_TEST_FAIL_BACKEND", "cpu", 1);
    r = run_eplb(args);
    unsetenv("EPLB_TEST_FAIL_BACKEND");
    cr_expect_eq(r->code, 1, "%s", r->err);
    cr_expect(strstr(r->err, "injected"), "%s", r->err);
}

Test(cli, help_and_version)
{
    static const char *const args[] = {"--help", "--version", "plan --help", "demo --help",
                                       "backends --help", "conformance --help"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        run_result *r = run_eplb(args[i]);
        cr_expect_eq(r->code, 0, "eplb %s", args[i]);
        cr_expect(strstr(r->out, i == 1 ? "eplb 0." : "usage: eplb"), "eplb %s: %s", args[i], r->out);
    }
}

Test(cli, demo_plans_the_deepseek_shape)
{
    run_result *r = run_eplb("demo --backend cpu");
    cr_assert_eq(r->code, 0, "%s", r->err);
    cr_expect(strstr(r->out, "58 layers x 256 experts"), "%s", r->out);
    cr_expect(strstr(r->out, "288 slots on 32 GPUs"), "%s", r->out);
    cr_expect(strstr(r->out, "policy        hierarchical"), "%s", r->out);
    cr_expect(strstr(r->out, "balancedness  0."), "%s", r->out);
}

Test(cli, backends_lists_every_backend_and_the_auto_pick)
{
    run_result *r = run_eplb("backends");
    cr_assert_eq(r->code, 0, "%s", r->err);
    for (int i = 0; i < eplb_backend_count(); i++) {
        char line[64];
        snprintf(line, sizeof line, "%-8s %s", eplb_backend_name(i),
                 eplb_backend_available(i, NULL) ? "available" : "unavailable");
        cr_expect(strstr(r->out, line), "missing '%s' in:\n%s", line, r->out);
    }
    cr_expect(strstr(r->out, "auto     picks "), "%s", r->out);
}

/* The last line of the output, without its newline. */
static const char *last_line(char *out)
{
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n')
        out[--n] = '\0';
    char *nl = strrchr(out, '\n');
    return nl ? nl + 1 : out;
}

/* The refine reruns that conformance skipped on backends without the stage. */
static long refine_reruns_skipped(const char *out)
{
    const char *line = strstr(out, "\nskipped ");
    long skipped = 0;
    if (line)
        cr_assert_eq(sscanf(line, "\nskipped %ld refine cases", &skipped), 1, "%s", line);
    return skipped;
}

Test(cli, conformance_passes_on_goldens_and_random_cases)
{
    run_result *r = run_eplb("conformance --random 24 --seed 5");
    cr_assert_eq(r->code, 0, "%s\n%s", r->out, r->err);
    int backends = 0;
    for (int i = 0; i < eplb_backend_count(); i++)
        backends += eplb_backend_available(i, NULL);
    char want[64];
    DIR *d = opendir(EPLB_GOLDEN_DIR);
    int goldens = 0;
    struct dirent *ent;
    while ((ent = readdir(d)))
        goldens += strstr(ent->d_name, ".txt") != NULL;
    closedir(d);
    /* Each random case runs again with refine (a backend without the refine
     * stage refuses those reruns, which are skipped, not passed) and again
     * incrementally. */
    const long skipped = refine_reruns_skipped(r->out);
    snprintf(want, sizeof want, "%ld passed, 0 failed",
             (goldens + 4 + 3 * 24) * backends - skipped);
    cr_expect_str_eq(last_line(r->out), want);
}

Test(cli, conformance_reports_a_wrong_golden)
{
    /* A golden copy with phy2log[0][0] changed: every backend must fail on it. */
    char dir[512], src[1024], dst[1024], args[1024];
    snprintf(dir, sizeof dir, "%s/golden", cli_scratch);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(src, sizeof src, "%s/readme.deepseek.txt", EPLB_GOLDEN_DIR);
    snprintf(dst, sizeof dst, "%s/readme.deepseek.txt", dir);
    FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
    cr_assert(in && out);
    char line[65536];
    int after_phy2log = 0;
    while (fgets(line, sizeof line, in)) {
        if (after_phy2log == 1) { /* swap the first slot's expert for one past the last */
            char *space = strchr(line, ' ');
            fprintf(out, "999%s", space);
        } else {
            fputs(line, out);
        }
        if (after_phy2log || strncmp(line, "phy2log", 7) == 0)
            after_phy2log++;
    }
    fclose(in);
    cr_assert_eq(fclose(out), 0);
    snprintf(args, sizeof args, "conformance --golden '%s' --random 2", dir);
    run_result *r = run_eplb(args);
    cr_expect_eq(r->code, 1, "%s", r->out);
    cr_expect(strstr(r->out, "FAIL readme.deepseek.txt [cpu]: phy2log differs from the golden "
                             "file at [0][0] (index 0)"), "%s", r->out);
    const char *last = last_line(r->out);
    int passed = -1, failed = -1;
    cr_expect_eq(sscanf(last, "%d passed, %d failed", &passed, &failed), 2, "%s", last);
    int backends = 0;
    for (int i = 0; i < eplb_backend_count(); i++)
        backends += eplb_backend_available(i, NULL);
    cr_expect_eq(failed, backends);
    /* 4 built-in, 2 random, the 2 random with refine on the backends with
     * the refine stage, and the 2 random incrementally. */
    cr_expect_eq(passed, (4 + 2 + 2 + 2) * backends - refine_reruns_skipped(r->out));
}
