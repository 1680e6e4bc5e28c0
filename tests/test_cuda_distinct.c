/* The distinct option (docs/spec.md section 11) on the cuda backend: the cap
 * and repair of its distinct stage (backends/cuda/cuda_distinct.cu), then the
 * refine stage's restore (11.5) or restricted search (11.6,
 * backends/cuda/cuda_refine.cu). plan_fused declines distinct jobs, so both
 * paths run these stage kernels; both are checked. Plans equal the reference
 * fixtures (tests/data/distinct) and the cpu backend's on random cases, on
 * DeepSeek-V3's shapes with experts hot enough to be capped, and on rows
 * whose state lives in global memory or whose trades need 64-bit numbers.
 * Skipped (not failed) where the cuda backend is unavailable: no module,
 * driver or GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "refine_fixture.h"

#define DISTINCT_FIXTURE_DIR EPLB_TEST_DATA_DIR "/distinct"

/* Skips without a usable GPU, but fails when the backend opened and then
 * failed its self-test against the cpu backend. */
static eplb_context *cuda_or_skip(void)
{
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cuda") == EPLB_OK)
        return ctx;
    const char *why = eplb_last_error();
    cr_assert(!strstr(why, "self-test"), "cuda backend broken: %s", why);
    cr_skip_test("cuda backend unavailable: %s", why);
    return NULL;
}

/* The two EPLB_TUNE_CUDA_PATH values, read when a context is created. */
static const char *const paths[] = {"fused", "stages"};
#define PATHS (sizeof paths / sizeof paths[0])

typedef struct cuda_and_cpu {
    eplb_context *cuda[PATHS], *cpu;
    int planned, refused;
} cuda_and_cpu;

static cuda_and_cpu open_contexts(void)
{
    cuda_and_cpu run;
    memset(&run, 0, sizeof run);
    for (size_t i = 0; i < PATHS; i++) {
        setenv("EPLB_TUNE_CUDA_PATH", paths[i], 1);
        run.cuda[i] = cuda_or_skip();
        unsetenv("EPLB_TUNE_CUDA_PATH");
    }
    run.cpu = eplbt_context("cpu");
    return run;
}

static void free_contexts(cuda_and_cpu *run)
{
    for (size_t i = 0; i < PATHS; i++)
        eplb_context_free(run->cuda[i]);
    eplb_context_free(run->cpu);
}

/* Plans with distinct on every cuda path and on cpu: the same status, and
 * when it is EPLB_OK the same plan. */
static void expect_same_as_cpu(cuda_and_cpu *run, const char *name, const float *weight,
                               const eplb_shape *shape, eplb_options options, int32_t refine)
{
    options.distinct = 1;
    options.refine = refine;
    eplbt_plan want;
    const eplb_status want_st = eplbt_plan_try(run->cpu, weight, shape, &options, &want);
    for (size_t i = 0; i < PATHS; i++) {
        eplbt_plan got;
        const eplb_status st = eplbt_plan_try(run->cuda[i], weight, shape, &options, &got);
        cr_expect_eq(st, want_st, "%s, refine %d, path %s: status %s, cpu %s: %s", name,
                     (int)refine, paths[i], eplb_status_string(st), eplb_status_string(want_st),
                     eplb_context_last_error(run->cuda[i]));
        if (st == EPLB_OK && want_st == EPLB_OK)
            cr_expect(eplbt_plans_equal(&got, &want), "%s, refine %d, path %s: the plan differs "
                      "from cpu", name, (int)refine, paths[i]);
        eplbt_plan_free(&got);
    }
    eplbt_plan_free(&want);
    if (want_st == EPLB_OK)
        run->planned++;
    else
        run->refused++;
}

static const int32_t refines[] = {0, 1, 256};
#define REFINES (sizeof refines / sizeof refines[0])

/* Every fixture, in every integer, on every path. */
Test(cuda_distinct, fixtures_equal_the_reference, .timeout = 600)
{
    eplb_context_free(cuda_or_skip());
    for (size_t i = 0; i < PATHS; i++) {
        int hierarchical;
        setenv("EPLB_TUNE_CUDA_PATH", paths[i], 1);
        cr_expect_geq(fixtures_match(DISTINCT_FIXTURE_DIR, "cuda", &hierarchical), 10, "path %s",
                      paths[i]);
        unsetenv("EPLB_TUNE_CUDA_PATH");
        cr_expect_geq(hierarchical, 2, "the fixtures cover the hierarchical policy");
    }
}

/* Every shape kind and weight pattern; shapes that SPEC 11.2 rules out are
 * refused alike. */
static void random_case_same_as_cpu(const eplb_random_case *c, uint64_t *state, void *arg)
{
    (void)state;
    for (size_t i = 0; i < REFINES; i++)
        expect_same_as_cpu(arg, c->name, c->weight, &c->shape, c->options, refines[i]);
}

Test(cuda_distinct, random_cases_plan_as_on_the_cpu_backend, .timeout = 1200)
{
    cuda_and_cpu run = open_contexts();
    cr_expect_geq(eplbt_for_each_random_case(1719, 3, random_case_same_as_cpu, &run), 108);
    cr_expect_gt(run.planned, 100);
    free_contexts(&run);
}

/* DeepSeek-V3's shapes (6 of its 58 layers) on the bench workload, with a
 * few experts made hot enough for the cap, then rows of special sizes. */
Test(cuda_distinct, named_shapes_plan_as_on_the_cpu_backend, .timeout = 1200)
{
    static const struct {
        const char *name;
        eplb_shape shape;
        eplb_policy policy;
        int32_t most_refine; /* caps above it are not checked (the cpu's time) */
    } shapes[] = {
        {"v3 hierarchical 288/8/4/32", {6, 256, 288, 8, 4, 32}, EPLB_POLICY_AUTO, 256},
        {"v3 global 288/72", {6, 256, 288, 8, 4, 72}, EPLB_POLICY_GLOBAL, 256},
        {"v3 global 320/64", {6, 256, 320, 8, 4, 64}, EPLB_POLICY_GLOBAL, 256},
        {"two GPUs of one pair each", {4, 4, 4, 1, 1, 2}, EPLB_POLICY_GLOBAL, 256},
        /* 8192 slots a row: the row's state beyond 48 KiB, in global memory. */
        {"8192 slots on 512 GPUs", {1, 2048, 8192, 1, 1, 512}, EPLB_POLICY_GLOBAL, 1},
        /* 2 * (305^2 + 46360^2) trades per step: numbered in 64 bits. */
        {"two GPUs of 305 slots", {1, 610, 610, 1, 1, 2}, EPLB_POLICY_GLOBAL, 1},
    };
    cuda_and_cpu run = open_contexts();
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const eplb_shape *s = &shapes[i].shape;
        eplb_options options;
        float *weight = eplbt_workload_case(s, 1, 0, 8, 20, 0, &options);
        options.policy = shapes[i].policy;
        for (int hot = 0; hot < 2; hot++) {
            if (hot)
                for (int64_t l = 0; l < s->layers; l++)
                    for (int64_t e = 0; e < 3 && e < s->experts; e++)
                        weight[l * s->experts + e * 5 % s->experts] *= 60.0f / (float)(e + 1);
            for (size_t c = 0; c < REFINES; c++) {
                /* The restore (refine 0) runs at most its fixed trades on the rows the
                 * stage changed, which these big rows' cap does not make. */
                if (refines[c] > shapes[i].most_refine)
                    continue;
                char label[224];
                snprintf(label, sizeof label, "%s%s", shapes[i].name, hot ? ", hot experts" : "");
                expect_same_as_cpu(&run, label, weight, s, options, refines[c]);
            }
        }
        free(weight);
    }
    free_contexts(&run);
}

/* A plan with distinct has no GPU holding an expert twice; off, the plan is
 * the one of before the option. */
Test(cuda_distinct, no_duplicates_and_off_is_unchanged)
{
    eplb_context *cuda = cuda_or_skip();
    const eplb_shape shape = {2, 16, 24, 4, 1, 8};
    eplb_options options;
    float *weight = eplbt_workload_case(&shape, 1, 0, 8, 20, 0, &options);
    for (int64_t l = 0; l < shape.layers; l++)
        weight[l * shape.experts] *= 50.0f;
    options.policy = EPLB_POLICY_GLOBAL;
    eplbt_plan plain, distinct;
    eplbt_plan_run(cuda, "plain", weight, &shape, &options, &plain);
    options.distinct = 1;
    eplbt_plan_run(cuda, "distinct", weight, &shape, &options, &distinct);
    eplb_evaluation before, after;
    eplb_evaluation_init(&before);
    eplb_evaluation_init(&after);
    cr_assert_eq(eplb_evaluate(weight, &shape, options.policy, plain.phy2log, &before, NULL, NULL,
                               NULL), EPLB_OK);
    cr_assert_eq(eplb_evaluate(weight, &shape, options.policy, distinct.phy2log, &after, NULL,
                               NULL, NULL), EPLB_OK);
    cr_expect_gt(before.duplicates, 0, "these weights have duplicates without distinct");
    cr_expect_eq(after.duplicates, 0);
    eplbt_plan_free(&plain);
    eplbt_plan_free(&distinct);
    free(weight);
    eplb_context_free(cuda);
}
