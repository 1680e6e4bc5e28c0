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

#include "cuda_suites.h"
#include "harness.h"
#include "refine_fixture.h"

/* The contexts, and how many plans cpu made or refused. */
typedef struct distinct_run {
    cuda_and_cpu contexts;
    int planned, refused;
} distinct_run;

/* Plans with distinct on every cuda path and on cpu: the same status, and
 * when it is EPLB_OK the same plan. */
static void expect_same_as_cpu(distinct_run *run, const char *name, const float *weight,
                               const eplb_shape *shape, eplb_options options, int32_t refine)
{
    const cuda_and_cpu *contexts = &run->contexts;
    options.distinct = 1;
    options.refine = refine;
    eplbt_plan want;
    const eplb_status want_st = eplbt_plan_try(contexts->cpu, weight, shape, &options, &want);
    for (size_t i = 0; i < CUDA_PATHS; i++) {
        eplbt_plan got;
        const eplb_status st = eplbt_plan_try(contexts->cuda[i], weight, shape, &options, &got);
        cr_expect_eq(st, want_st, "%s, refine %d, path %s: status %s, cpu %s: %s", name,
                     (int)refine, cuda_paths[i], eplb_status_string(st),
                     eplb_status_string(want_st), eplb_context_last_error(contexts->cuda[i]));
        if (st == EPLB_OK && want_st == EPLB_OK)
            cr_expect(eplbt_plans_equal(&got, &want), "%s, refine %d, path %s: the plan differs "
                      "from cpu", name, (int)refine, cuda_paths[i]);
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
    expect_fixtures_match_on_every_path(DISTINCT_FIXTURE_DIR, 10);
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
    distinct_run run = {cuda_and_cpu_open(), 0, 0};
    cr_expect_geq(eplbt_for_each_random_case(1719, 3, random_case_same_as_cpu, &run), 108);
    cr_expect_gt(run.planned, 100);
    cuda_and_cpu_free(&run.contexts);
}

/* A shape on the bench workload, then with a few experts made hot enough
 * for the cap; with each refine cap up to most_refine. The restore (refine
 * 0) runs at most its fixed trades on the rows the stage changed, so big
 * rows, which the cap leaves alone, run it and refine 1 only (the cpu's
 * time). */
static void same_as_cpu_on_shape(distinct_run *run, const eplbt_named_shape *c,
                                 int32_t most_refine)
{
    const eplb_shape *s = &c->shape;
    eplb_options options;
    float *weight = eplbt_named_shape_case(c, &options);
    for (int hot = 0; hot < 2; hot++) {
        if (hot)
            for (int64_t l = 0; l < s->layers; l++)
                for (int64_t e = 0; e < 3 && e < s->experts; e++)
                    weight[l * s->experts + e * 5 % s->experts] *= 60.0f / (float)(e + 1);
        char label[224];
        snprintf(label, sizeof label, "%s%s", c->name, hot ? ", hot experts" : "");
        for (size_t i = 0; i < REFINES && refines[i] <= most_refine; i++)
            expect_same_as_cpu(run, label, weight, s, options, refines[i]);
    }
    free(weight);
}

/* The named shapes, then rows of special sizes. */
Test(cuda_distinct, named_shapes_plan_as_on_the_cpu_backend, .timeout = 1200)
{
    distinct_run run = {cuda_and_cpu_open(), 0, 0};
    for (size_t i = 0; i < EPLBT_NAMED_SHAPES; i++)
        same_as_cpu_on_shape(&run, &eplbt_named_shapes[i], 256);
    same_as_cpu_on_shape(&run, &cuda_wide_row, 1);
    same_as_cpu_on_shape(&run, &cuda_many_trades, 1);
    cuda_and_cpu_free(&run.contexts);
}

/* A plan with distinct has no GPU holding an expert twice; off, the plan is
 * the one of before the option. */
Test(cuda_distinct, no_duplicates_and_off_is_unchanged)
{
    eplb_context *cuda = eplbt_open_cuda_or_skip();
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
