/* The distinct option (docs/spec.md section 11) on the opencl backend
 * (kernels/distinct.cl for the cap and the repair, kernels/refine.cl for the
 * restore and the trades of 11.6): its plans equal the independent
 * reference's fixtures (tests/data/distinct) and the cpu backend's on random
 * cases and named shapes, with refine 0, 1, 16 and 256, under both policies,
 * with the refine search's row in one work-item or in a group, in local or
 * global memory. Skipped (not failed) where no OpenCL device is available.
 * Each test runs in its own process, so the knobs a test sets change only it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "refine_fixture.h"

/* ---- the reference's fixtures ------------------------------------------------- */

static void check_every_fixture(void)
{
    /* Skips the test where OpenCL is absent, before fixtures_match asserts. */
    eplb_context_free(eplbt_open_opencl_or_skip());
    expect_fixtures_match("opencl", DISTINCT_FIXTURE_DIR, "opencl", 17);
}

Test(opencl_distinct, fixtures_equal_the_reference) { check_every_fixture(); }

Test(opencl_distinct, fixtures_equal_the_reference_in_groups)
{
    eplbt_opencl_use_groups();
    check_every_fixture();
}

Test(opencl_distinct, fixtures_equal_the_reference_in_global_memory)
{
    eplbt_opencl_use_groups();
    eplbt_opencl_use_global_memory();
    check_every_fixture();
}

/* ---- against the cpu backend ------------------------------------------------------ */

typedef struct against_cpu {
    eplb_context *opencl, *cpu;
    int planned;   /* plans compared */
    int refused;   /* plans both backends refused (SPEC 11.2) */
    int capped;    /* plans whose plan without distinct had more replicas than a row's GPUs */
    int repaired;  /* plans whose plan without distinct had a GPU repeat */
} against_cpu;

static const int32_t refines[] = {0, 1, 16, 256};

/* The GPUs of a row under the policy the options choose. */
static int64_t row_gpus(const eplb_shape *s, const eplb_options *o)
{
    return eplb_plan_is_hierarchical(s, o->policy) ? s->gpus / s->nodes : s->gpus;
}

/* Plans with distinct on both backends; both refuse, with the same status,
 * or both plan, the same plan. Counts what the plan without distinct
 * needed of the cap and the repair. */
static void compare(against_cpu *run, const char *label, const float *weight,
                    const eplb_shape *s, eplb_options options)
{
    options.distinct = 0;
    eplbt_plan plain;
    eplb_status st = eplbt_plan_try(run->cpu, weight, s, &options, &plain);
    cr_assert_eq(st, EPLB_OK, "%s: %s", label, eplb_context_last_error(run->cpu));
    options.distinct = 1;
    eplbt_plan got, want;
    const eplb_status got_st = eplbt_plan_try(run->opencl, weight, s, &options, &got);
    const eplb_status want_st = eplbt_plan_try(run->cpu, weight, s, &options, &want);
    cr_assert_eq(got_st, want_st, "%s: opencl %s (%s), cpu %s", label, eplb_status_string(got_st),
                 eplb_context_last_error(run->opencl), eplb_status_string(want_st));
    if (want_st == EPLB_OK) {
        cr_expect(eplbt_plans_equal(&got, &want), "%s (C=%d, I=%d, seed %llu, refine %d): the "
                  "opencl plan with distinct differs from cpu", label, options.candidates,
                  options.iterations, (unsigned long long)options.seed, (int)options.refine);
        int64_t most = 0;
        for (int64_t i = 0; i < s->layers * s->experts; i++)
            most = plain.logcnt[i] > most ? plain.logcnt[i] : most;
        run->capped += most > row_gpus(s, &options);
        eplb_evaluation ev;
        eplb_evaluation_init(&ev);
        cr_assert_eq(eplb_evaluate(weight, s, options.policy, plain.phy2log, &ev, NULL, NULL, NULL),
                     EPLB_OK, "%s: %s", label, eplb_last_error());
        run->repaired += ev.duplicates > 0;
        run->planned++;
    } else {
        cr_expect_eq(want_st, EPLB_ERR_INVALID_SHAPE, "%s: %s", label,
                     eplb_context_last_error(run->cpu));
        run->refused++;
    }
    eplbt_plan_free(&plain);
    eplbt_plan_free(&got);
    eplbt_plan_free(&want);
}

/* compare with each refine cap; the label is the name, then what. */
static void compare_each_refine(against_cpu *run, const char *name, const char *what,
                                const float *weight, const eplb_shape *s, eplb_options options)
{
    for (size_t i = 0; i < sizeof refines / sizeof refines[0]; i++) {
        options.refine = refines[i];
        char label[200];
        snprintf(label, sizeof label, "%s%s refine %d", name, what, (int)options.refine);
        compare(run, label, weight, s, options);
    }
}

/* Each random case (every shape kind, k = 1 and one-GPU rows among them,
 * and weight patterns full of ties, zeros, -0 and overflowing sums) with
 * each refine cap, under its own policy and the global one. */
static void same_as_cpu(const eplb_random_case *c, uint64_t *state, void *arg)
{
    (void)state;
    eplb_options options = c->options;
    compare_each_refine(arg, c->name, "", c->weight, &c->shape, options);
    options.policy = EPLB_POLICY_GLOBAL;
    compare_each_refine(arg, c->name, " global", c->weight, &c->shape, options);
}

/* A named shape on the bench workload, then with a hot expert per layer, so
 * that the cap frees slots, then with equal weights, where every partner
 * and every trade ties. Rows of one GPU or one slot per GPU leave the stage
 * nothing to do. */
static void same_as_cpu_on_named_shape(against_cpu *run, const eplbt_named_shape *c)
{
    const eplb_shape *s = &c->shape;
    eplb_options options;
    float *weight = eplbt_named_shape_case(c, &options);
    compare_each_refine(run, c->name, "", weight, s, options);
    for (int64_t l = 0; l < s->layers; l++)
        weight[l * s->experts + l % s->experts] *= 200.0f;
    compare_each_refine(run, c->name, " hot", weight, s, options);
    for (int64_t j = 0; j < s->layers * s->experts; j++)
        weight[j] = 2.0f;
    compare_each_refine(run, c->name, " equal", weight, s, options);
    free(weight);
}

static void same_as_cpu_on_named_shapes(against_cpu *run)
{
    static const eplbt_named_shape few_experts = {"few experts, many slots", {2, 8, 32, 2, 2, 4},
                                                  EPLB_POLICY_GLOBAL};
    for (size_t i = 0; i < EPLBT_NAMED_SHAPES; i++)
        same_as_cpu_on_named_shape(run, &eplbt_named_shapes[i]);
    same_as_cpu_on_named_shape(run, &few_experts);
}

static void check_against_cpu(int repeats)
{
    against_cpu run = {eplbt_open_opencl_or_skip(), eplbt_context("cpu"), 0, 0, 0, 0};
    same_as_cpu_on_named_shapes(&run);
    const int cases = eplbt_for_each_random_case(1711, repeats, same_as_cpu, &run);
    cr_expect_geq(cases, 36 * repeats);
    cr_expect_gt(run.capped, 0, "some plans needed the cap");
    cr_expect_gt(run.repaired, 0, "some plans needed the repair");
    cr_expect_gt(run.refused, 0, "some shapes were too small for distinct");
    cr_log_info("%d random cases: %d plans compared (%d capped, %d repaired), %d refused", cases,
                run.planned, run.capped, run.repaired, run.refused);
    eplb_context_free(run.opencl);
    eplb_context_free(run.cpu);
}

Test(opencl_distinct, plans_equal_the_cpu_backend, .timeout = 900) { check_against_cpu(2); }

Test(opencl_distinct, plans_equal_the_cpu_backend_in_groups, .timeout = 900)
{
    eplbt_opencl_use_groups();
    check_against_cpu(1);
}

Test(opencl_distinct, plans_equal_the_cpu_backend_in_global_memory, .timeout = 900)
{
    eplbt_opencl_use_groups();
    eplbt_opencl_use_global_memory();
    check_against_cpu(1);
}

