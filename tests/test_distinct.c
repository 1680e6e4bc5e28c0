/* The distinct option (docs/spec.md section 11) on the cpu backend: plans equal
 * the independent reference's (tests/data/distinct, written by
 * tests/reference/make_distinct_fixtures.py) in every integer, with and
 * without refine; over the random cases a distinct plan is valid under the
 * cap and has no duplicates, and a plan that needed neither cap nor repair is
 * the plan without distinct; shapes that SPEC 11.2 rules out are refused with
 * outputs untouched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "refine_fixture.h"

/* Every fixture: the cpu backend's plan with distinct equals the reference's. */
Test(distinct, cpu_plans_equal_the_reference_fixtures)
{
    expect_fixtures_match("cpu", DISTINCT_FIXTURE_DIR, "cpu", 10);
}

/* ---- properties over the random cases ------------------------------------------ */

typedef struct property_run {
    eplb_context *ctx;
    int planned;       /* cases planned with distinct */
    int refused;       /* cases whose shape SPEC 11.2 rules out */
    int repaired;      /* cases whose plan without distinct had duplicates */
    int untouched;     /* cases that needed no cap and no repair */
} property_run;

/* The GPUs of a row and the slots per GPU, under the policy the case runs. */
static void row_geometry(const eplb_random_case *c, int64_t *row_gpus, int64_t *row_experts)
{
    const eplb_shape *s = &c->shape;
    const int hierarchical = eplb_plan_is_hierarchical(s, c->options.policy);
    *row_gpus = hierarchical ? s->gpus / s->nodes : s->gpus;
    *row_experts = hierarchical ? s->experts / s->nodes : s->experts;
}

static int64_t duplicates_of(const eplb_random_case *c, const int64_t *phy2log)
{
    eplb_evaluation ev;
    eplb_evaluation_init(&ev);
    const eplb_status st = eplb_evaluate(c->weight, &c->shape, c->options.policy, phy2log, &ev,
                                         NULL, NULL, NULL);
    cr_assert_eq(st, EPLB_OK, "%s: eplb_evaluate: %s", c->name, eplb_last_error());
    return ev.duplicates;
}

static void distinct_keeps_promises(const eplb_random_case *c, uint64_t *state, void *arg)
{
    property_run *run = arg;
    static const int32_t refines[] = {0, 0, 1, 256};
    const eplb_shape *s = &c->shape;
    eplb_options options = c->options;
    options.refine = refines[eplb_random_range(state, 0, 3)];
    eplbt_plan plain, distinct;
    eplbt_plan_run(run->ctx, c->name, c->weight, s, &options, &plain);
    options.distinct = 1;
    const eplb_status st = eplbt_plan_try(run->ctx, c->weight, s, &options, &distinct);

    int64_t row_gpus, row_experts;
    row_geometry(c, &row_gpus, &row_experts);
    if (row_experts < s->replicas / s->gpus) {
        cr_assert_eq(st, EPLB_ERR_INVALID_SHAPE, "%s: a row of %lld experts, %lld slots per GPU, "
                     "yet %s", c->name, (long long)row_experts, (long long)(s->replicas / s->gpus),
                     eplb_status_string(st));
        run->refused++;
    } else {
        cr_assert_eq(st, EPLB_OK, "%s distinct refine %d: %s", c->name, (int)options.refine,
                     eplb_context_last_error(run->ctx));
        char why[512];
        cr_assert(eplb_plan_check_options(s, &options, c->weight, distinct.phy2log, distinct.logcnt,
                                          distinct.log2phy, distinct.width, why, sizeof why),
                  "%s distinct refine %d: %s", c->name, (int)options.refine, why);
        cr_assert_eq(duplicates_of(c, distinct.phy2log), 0, "%s distinct refine %d: duplicates",
                     c->name, (int)options.refine);
        int64_t most = 0;
        for (int64_t i = 0; i < s->layers * s->experts; i++)
            most = plain.logcnt[i] > most ? plain.logcnt[i] : most;
        const int64_t had = duplicates_of(c, plain.phy2log);
        run->repaired += had > 0;
        /* Neither cap nor repair had work, so the restore does not run and,
         * without refine, distinct changes nothing. */
        if (had == 0 && most <= row_gpus && options.refine == 0) {
            cr_assert(eplbt_plans_equal(&plain, &distinct),
                      "%s refine %d: a plan without duplicates changed under distinct", c->name,
                      (int)options.refine);
            run->untouched++;
        }
        run->planned++;
    }
    eplbt_plan_free(&plain);
    eplbt_plan_free(&distinct);
}

Test(distinct, plans_are_valid_and_have_no_duplicates)
{
    property_run run = {.ctx = eplbt_context("cpu")};
    const int cases = eplbt_for_each_random_case(11, 4, distinct_keeps_promises, &run);
    eplb_context_free(run.ctx);
    cr_expect_geq(cases, 100);
    cr_expect_gt(run.repaired, 0, "some plans needed the repair");
    cr_expect_gt(run.untouched, 0, "some plans needed nothing");
    cr_log_info("%d cases: %d planned, %d refused by SPEC 11.2, %d repaired, %d untouched", cases,
                run.planned, run.refused, run.repaired, run.untouched);
}

/* ---- refusals ------------------------------------------------------------------ */

/* 8 experts in 2 groups on 2 nodes, 32 slots on 4 GPUs: 8 slots per GPU, so
 * a node's 4 experts cannot fill a GPU (hierarchical), the layer's 8 can
 * (global). */
static const eplb_shape narrow_shape = {.layers = 2, .experts = 8, .replicas = 32, .groups = 2,
                                        .nodes = 2, .gpus = 4};
static const float narrow_weight[16] = {9, 1, 4, 4, 2, 7, 3, 5, 1, 1, 8, 2, 6, 3, 3, 4};

/* Plans the narrow shape; a refusal must leave the outputs untouched. */
static eplb_status plan_untouched(eplb_context *ctx, const eplb_options *o, const char *message_part)
{
    return eplbt_plan_poisoned(ctx, narrow_weight, &narrow_shape, o, 32, message_part);
}

Test(distinct, a_row_with_fewer_experts_than_gpu_slots_is_refused)
{
    eplb_context *ctx;
    cr_assert_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK);
    eplb_options o;
    eplb_options_init(&o);
    cr_expect_eq(o.distinct, 0, "distinct is off by default");
    o.distinct = 1;
    cr_expect_eq(plan_untouched(ctx, &o, "section 11.2"), EPLB_ERR_INVALID_SHAPE, "%s",
                 eplb_context_last_error(ctx));
    o.refine = 256;
    cr_expect_eq(plan_untouched(ctx, &o, "section 11.2"), EPLB_ERR_INVALID_SHAPE, "%s",
                 eplb_context_last_error(ctx));
    /* The same shape under the global policy has 8 experts a row: allowed. */
    o.policy = EPLB_POLICY_GLOBAL;
    cr_expect_eq(plan_untouched(ctx, &o, ""), EPLB_OK, "%s", eplb_context_last_error(ctx));
    o.distinct = 2;
    cr_expect_eq(plan_untouched(ctx, &o, "distinct"), EPLB_ERR_INVALID_ARGUMENT, "%s",
                 eplb_context_last_error(ctx));
    eplb_context_free(ctx);
}

