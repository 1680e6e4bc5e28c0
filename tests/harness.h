/* Shared helpers of the core test suites: plan buffers, contexts of the
 * GPU backends or a skip, the plan invariants of SPEC sections 1, 4 and 5,
 * random cases, the named shapes the GPU suites plan, and output poisoning.
 *
 * Header-only (static functions): every tests/test_*.c is its own executable. */
#ifndef EPLB_TESTS_HARNESS_H
#define EPLB_TESTS_HARNESS_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "golden.h"
#include "plan_check.h"
#include "random_case.h"
#include "workload.h"

/* Not every suite uses every helper. */
#define EPLBT_HELPER static __attribute__((unused))

/* ---- plan buffers ----------------------------------------------------------- */

typedef struct eplbt_plan {
    eplb_shape shape;
    int64_t width;     /* log2phy row width */
    int64_t *phy2log;  /* [L][R] */
    int64_t *logcnt;   /* [L][E] */
    int64_t *log2phy;  /* [L][E][width] */
    int64_t width_needed;
} eplbt_plan;

EPLBT_HELPER void eplbt_plan_alloc(eplbt_plan *p, const eplb_shape *shape, int64_t width)
{
    memset(p, 0, sizeof *p);
    p->shape = *shape;
    p->width = width;
    const size_t L = (size_t)shape->layers, E = (size_t)shape->experts, R = (size_t)shape->replicas;
    p->phy2log = malloc(L * R * sizeof *p->phy2log);
    p->logcnt = malloc(L * E * sizeof *p->logcnt);
    p->log2phy = malloc(L * E * (size_t)(width > 0 ? width : 1) * sizeof *p->log2phy);
    cr_assert(p->phy2log && p->logcnt && p->log2phy, "test harness: out of memory");
}

EPLBT_HELPER void eplbt_plan_free(eplbt_plan *p)
{
    free(p->phy2log);
    free(p->logcnt);
    free(p->log2phy);
    memset(p, 0, sizeof *p);
}

/* Plans with log2phy at the always-sufficient width and returns the status,
 * asserting nothing about it (child processes and threads report it their
 * own way). */
EPLBT_HELPER eplb_status eplbt_plan_try(eplb_context *ctx, const float *weight,
                                        const eplb_shape *shape, const eplb_options *options,
                                        eplbt_plan *p)
{
    eplbt_plan_alloc(p, shape, eplb_log2phy_width_max(shape));
    return eplb_rebalance(ctx, weight, shape, options, p->phy2log, p->logcnt, p->log2phy, p->width,
                          &p->width_needed);
}

/* Plans with log2phy at the always-sufficient width; the plan must succeed. */
EPLBT_HELPER void eplbt_plan_run(eplb_context *ctx, const char *label, const float *weight,
                           const eplb_shape *shape, const eplb_options *options, eplbt_plan *p)
{
    eplb_status st = eplbt_plan_try(ctx, weight, shape, options, p);
    cr_assert_eq(st, EPLB_OK, "%s: eplb_rebalance failed with %s: %s", label,
                 eplb_status_string(st), eplb_context_last_error(ctx));
}

EPLBT_HELPER int eplbt_plans_equal(const eplbt_plan *a, const eplbt_plan *b)
{
    const size_t L = (size_t)a->shape.layers, E = (size_t)a->shape.experts;
    const size_t R = (size_t)a->shape.replicas;
    return a->width == b->width && a->width_needed == b->width_needed &&
           memcmp(a->phy2log, b->phy2log, L * R * sizeof(int64_t)) == 0 &&
           memcmp(a->logcnt, b->logcnt, L * E * sizeof(int64_t)) == 0 &&
           memcmp(a->log2phy, b->log2phy, L * E * (size_t)a->width * sizeof(int64_t)) == 0;
}

/* Plans on ctx and on cpu with the same input; the plans must be equal. */
EPLBT_HELPER void eplbt_expect_same_as_cpu(eplb_context *ctx, eplb_context *cpu, const char *label,
                                           const float *weight, const eplb_shape *shape,
                                           const eplb_options *options)
{
    eplbt_plan got, want;
    eplbt_plan_run(ctx, label, weight, shape, options, &got);
    eplbt_plan_run(cpu, label, weight, shape, options, &want);
    cr_expect(eplbt_plans_equal(&got, &want), "%s (C=%d, I=%d, seed %llu): the %s plan differs "
              "from cpu", label, options ? options->candidates : 8,
              options ? options->iterations : 20,
              options ? (unsigned long long)options->seed : 0ull, eplb_context_backend(ctx));
    eplbt_plan_free(&got);
    eplbt_plan_free(&want);
}

/* Weights of eplb_workload_fill(workload_seed, dead_every) for shape s
 * (malloc'd), and default options but for candidates, iterations and seed. */
EPLBT_HELPER float *eplbt_workload_case(const eplb_shape *s, uint64_t workload_seed,
                                        int64_t dead_every, int32_t candidates, int32_t iterations,
                                        uint64_t seed, eplb_options *o)
{
    float *weight = malloc((size_t)(s->layers * s->experts) * sizeof *weight);
    cr_assert(weight, "test harness: out of memory");
    eplb_workload_fill(weight, s->layers, s->experts, workload_seed, dead_every);
    eplb_options_init(o);
    o->candidates = candidates;
    o->iterations = iterations;
    o->seed = seed;
    return weight;
}

EPLBT_HELPER eplb_context *eplbt_context(const char *backend)
{
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, backend);
    cr_assert_eq(st, EPLB_OK, "eplb_context_create(\"%s\") failed with %s: %s", backend,
                 eplb_status_string(st), eplb_last_error());
    return ctx;
}

/* An opencl context, or the test skipped where OpenCL is absent; fails where
 * it is present and the backend is broken (a failed self-test or kernel
 * build is a defect), and everywhere when EPLB_TEST_REQUIRE_OPENCL=1 (CI
 * machines with PoCL). */
EPLBT_HELPER eplb_context *eplbt_open_opencl_or_skip(void)
{
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "opencl") == EPLB_OK)
        return ctx;
    const char *why = eplb_last_error();
    const char *require = getenv("EPLB_TEST_REQUIRE_OPENCL");
    cr_assert(!strstr(why, "self-test") && !strstr(why, "building the kernels") &&
                  !(require && strcmp(require, "1") == 0),
              "opencl backend broken: %s", why);
    cr_skip_test("opencl backend unavailable: %s", why);
    return NULL;
}

/* A row's trades shared by a group of 64 work-items and reduced through
 * local memory: a GPU's layout, on any device. Like every EPLB_TUNE_ knob,
 * read when a context is created. */
EPLBT_HELPER void eplbt_opencl_use_groups(void) { setenv("EPLB_TUNE_OPENCL_FUSED_WG", "64", 1); }

/* A local-memory budget no row fits: the rows' placement in global scratch. */
EPLBT_HELPER void eplbt_opencl_use_global_memory(void)
{
    setenv("EPLB_TUNE_OPENCL_LOCAL_MEM", "1", 1);
}

/* A cuda context, or the test skipped where the cuda backend is unavailable
 * (no module, driver or GPU); fails where the backend opened and then failed
 * its self-test against the cpu backend. */
EPLBT_HELPER eplb_context *eplbt_open_cuda_or_skip(void)
{
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cuda") == EPLB_OK)
        return ctx;
    const char *why = eplb_last_error();
    cr_assert(!strstr(why, "self-test"), "cuda backend broken: %s", why);
    cr_skip_test("cuda backend unavailable: %s", why);
    return NULL;
}

/* ---- invariants ----------------------------------------------------------------- */

/* The plan checker of the tools (plan_check.h), with the case's label in
 * front of the violation. log2phy may be NULL. Returns NULL, or the first
 * violation found (a static buffer). */
EPLBT_HELPER const char *eplbt_plan_violation(const char *label, const float *weight,
                                              const eplb_shape *s, int hierarchical,
                                              const int64_t *phy2log, const int64_t *logcnt,
                                              const int64_t *log2phy, int64_t width)
{
    static char violation[640];
    char why[512];
    if (eplb_plan_check(s, hierarchical, weight, phy2log, logcnt, log2phy, width, why, sizeof why))
        return NULL;
    snprintf(violation, sizeof violation, "%s: %s", label, why);
    return violation;
}

/* eplbt_plan_violation as a fatal assertion. */
EPLBT_HELPER void eplbt_check_plan(const char *label, const float *weight, const eplb_shape *s,
                                   int hierarchical, const int64_t *phy2log, const int64_t *logcnt,
                                   const int64_t *log2phy, int64_t width)
{
    const char *violation =
        eplbt_plan_violation(label, weight, s, hierarchical, phy2log, logcnt, log2phy, width);
    cr_assert(violation == NULL, "%s", violation);
}

/* SPEC 5 over one whole layer (items in index order): the replica counts the
 * global policy must produce. */
EPLBT_HELPER void eplbt_replicate_reference(const float *w, int64_t n, int64_t p, int64_t *cnt)
{
    for (int64_t i = 0; i < n; i++) cnt[i] = 1;
    for (int64_t s = n; s < p; s++) {
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (w[i] / (float)cnt[i] > w[best] / (float)cnt[best]) best = i;
        cnt[best]++;
    }
}

/* Per-layer maximum GPU load as the select stage scores it: float32 slot
 * loads w/cnt summed in slot order (SPEC 6.3/6.4, global policy). */
EPLBT_HELPER float eplbt_max_gpu_load_f32(const float *weight, const eplb_shape *s,
                                    const int64_t *phy2log, const int64_t *logcnt, int64_t l)
{
    const int64_t E = s->experts, R = s->replicas, spg = R / s->gpus;
    float best = 0.0f;
    for (int64_t g = 0; g < s->gpus; g++) {
        float load = 0.0f;
        for (int64_t q = g * spg; q < (g + 1) * spg; q++) {
            const int64_t e = phy2log[l * R + q];
            load += weight[l * E + e] / (float)logcnt[l * E + e];
        }
        if (g == 0 || load > best) best = load;
    }
    return best;
}

/* ---- random cases --------------------------------------------------------------- */

/* A random case of the given kind and weight pattern (random_case.h), which
 * must be valid. */
EPLBT_HELPER void eplbt_random_case(uint64_t *state, eplb_random_kind kind,
                                    eplb_random_weights weights, eplb_random_case *c)
{
    const eplb_status st = eplb_random_case_build(state, kind, weights, c);
    cr_assert_eq(st, EPLB_OK, "random case: %s", eplb_status_string(st));
    const char *why = NULL;
    cr_assert_eq(eplb_shape_check(&c->shape, &why), EPLB_OK, "random case %s has an invalid shape: %s",
                 c->name, why ? why : "");
}

/* What a test does with one random case; state continues the case's stream,
 * for the test's own draws (options, say). */
typedef void eplbt_case_fn(const eplb_random_case *c, uint64_t *state, void *arg);

/* Runs each on `repeats` random cases of every kind and weight pattern, drawn
 * from the stream seeded by seed; returns how many ran. */
EPLBT_HELPER int eplbt_for_each_random_case(uint64_t seed, int repeats, eplbt_case_fn *each,
                                            void *arg)
{
    uint64_t state = seed;
    int cases = 0;
    for (int r = 0; r < repeats; r++)
        for (int kind = 0; kind < EPLB_RANDOM_KINDS; kind++)
            for (int w = 0; w < EPLB_RANDOM_WEIGHT_PATTERNS; w++) {
                eplb_random_case c;
                eplbt_random_case(&state, (eplb_random_kind)kind, (eplb_random_weights)w, &c);
                each(&c, &state, arg);
                eplb_random_case_free(&c);
                cases++;
            }
    return cases;
}

/* ---- named shapes --------------------------------------------------------------- */

/* A shape to plan, the policy to plan it under, and its name in messages. */
typedef struct eplbt_named_shape {
    const char *name;
    eplb_shape shape;
    eplb_policy policy;
} eplbt_named_shape;

/* The bench workload's weights for a named shape (malloc'd), with default
 * options but for 8 candidates, 20 iterations and the shape's policy. */
EPLBT_HELPER float *eplbt_named_shape_case(const eplbt_named_shape *c, eplb_options *o)
{
    float *weight = eplbt_workload_case(&c->shape, 1, 0, 8, 20, 0, o);
    o->policy = c->policy;
    return weight;
}

/* DeepSeek-V3's shapes (6 of its 58 layers, for the tests' time), then rows
 * where a stage has little or nothing to do: one GPU per row (m = 1), one
 * slot per GPU (k = 1), two GPUs of two slots. Every suite that compares a
 * GPU backend's plans with the cpu backend's plans each of them. */
static const eplbt_named_shape eplbt_named_shapes[] = {
    {"v3 hierarchical 288/8/4/32", {6, 256, 288, 8, 4, 32}, EPLB_POLICY_AUTO},
    {"v3 global 288/72", {6, 256, 288, 8, 4, 72}, EPLB_POLICY_GLOBAL},
    {"v3 global 320/64", {6, 256, 320, 8, 4, 64}, EPLB_POLICY_GLOBAL},
    {"one GPU per node (m = 1)", {3, 64, 96, 4, 4, 4}, EPLB_POLICY_HIERARCHICAL},
    {"one slot per GPU (k = 1)", {3, 64, 96, 8, 4, 96}, EPLB_POLICY_GLOBAL},
    {"two GPUs of two slots", {4, 4, 4, 1, 1, 2}, EPLB_POLICY_GLOBAL},
};
#define EPLBT_NAMED_SHAPES (sizeof eplbt_named_shapes / sizeof eplbt_named_shapes[0])

/* ---- backends ------------------------------------------------------------------- */

/* Runs each on every backend but cpu that can run here, by name; lists the
 * others, with why each is unavailable, in skipped. Returns how many ran. */
EPLBT_HELPER int eplbt_for_each_other_backend(void (*each)(const char *name, void *arg), void *arg,
                                              char *skipped, size_t skipped_len)
{
    int others = 0;
    skipped[0] = '\0';
    for (int i = 0; i < eplb_backend_count(); i++) {
        const char *name = eplb_backend_name(i), *why = NULL;
        cr_assert(name, "eplb_backend_name(%d) is NULL below eplb_backend_count()", i);
        if (strcmp(name, "cpu") == 0) continue;
        if (!eplb_backend_available(i, &why)) {
            const size_t used = strlen(skipped);
            snprintf(skipped + used, skipped_len - used, "%s%s (%s)", used ? "; " : "", name,
                     why ? why : "no reason given");
            continue;
        }
        each(name, arg);
        others++;
    }
    return others;
}

/* ---- golden files ----------------------------------------------------------- */

EPLBT_HELPER int eplbt_compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of the .txt files of tests/golden (full paths); *count receives the size. */
EPLBT_HELPER char **eplbt_golden_list(size_t *count)
{
    DIR *dir = opendir(EPLB_GOLDEN_DIR);
    cr_assert(dir, "cannot open the golden directory %s", EPLB_GOLDEN_DIR);
    size_t n = 0, cap = 64;
    char **names = malloc(cap * sizeof *names);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const size_t len = strlen(entry->d_name);
        if (len < 5 || strcmp(entry->d_name + len - 4, ".txt") != 0) continue;
        if (n == cap) names = realloc(names, (cap *= 2) * sizeof *names);
        names[n] = malloc(sizeof EPLB_GOLDEN_DIR + len + 2);
        sprintf(names[n], "%s/%s", EPLB_GOLDEN_DIR, entry->d_name);
        n++;
    }
    closedir(dir);
    qsort(names, n, sizeof *names, eplbt_compare_names);
    *count = n;
    return names;
}

EPLBT_HELPER void eplbt_golden_list_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}

/* ---- poisoned outputs ------------------------------------------------------------ */

#define EPLBT_POISON 0xA5

EPLBT_HELPER void eplbt_poison(void *p, size_t bytes) { memset(p, EPLBT_POISON, bytes); }

/* Index of the first byte that is not the poison pattern, or -1. */
EPLBT_HELPER long eplbt_first_unpoisoned(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != EPLBT_POISON) return (long)i;
    return -1;
}

/* eplb_rebalance into poisoned outputs, log2phy of the given width (none
 * where width is 0); where the call fails, its message must hold
 * message_part and every output byte must still be poison. Returns the
 * status. */
EPLBT_HELPER eplb_status eplbt_plan_poisoned(eplb_context *ctx, const float *weight,
                                             const eplb_shape *s, const eplb_options *o,
                                             int64_t width, const char *message_part)
{
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    const size_t phy2log_bytes = L * R * sizeof(int64_t), logcnt_bytes = L * E * sizeof(int64_t);
    const size_t log2phy_bytes = L * E * (size_t)width * sizeof(int64_t);
    int64_t *phy2log = malloc(phy2log_bytes), *logcnt = malloc(logcnt_bytes);
    int64_t *log2phy = width > 0 ? malloc(log2phy_bytes) : NULL;
    cr_assert(phy2log && logcnt && (width == 0 || log2phy), "test harness: out of memory");
    eplbt_poison(phy2log, phy2log_bytes);
    eplbt_poison(logcnt, logcnt_bytes);
    if (log2phy)
        eplbt_poison(log2phy, log2phy_bytes);
    const eplb_status st = eplb_rebalance(ctx, weight, s, o, phy2log, logcnt, log2phy, width, NULL);
    if (st != EPLB_OK) {
        const char *message = eplb_context_last_error(ctx);
        cr_expect(strstr(message, message_part), "message '%s' lacks '%s'", message, message_part);
        cr_expect_eq(eplbt_first_unpoisoned(phy2log, phy2log_bytes), -1, "phy2log written");
        cr_expect_eq(eplbt_first_unpoisoned(logcnt, logcnt_bytes), -1, "logcnt written");
        if (log2phy)
            cr_expect_eq(eplbt_first_unpoisoned(log2phy, log2phy_bytes), -1, "log2phy written");
    }
    free(phy2log);
    free(logcnt);
    free(log2phy);
    return st;
}

#endif /* EPLB_TESTS_HARNESS_H */
