/* The refine search (docs/spec.md section 10) on the cpu backend: plans equal
 * the independent reference's (tests/data/refine, written by
 * tests/reference/make_refine_fixtures.py) in every integer; over the random
 * cases refine keeps plans valid, keeps each row's slots in the row, and never
 * raises a row's maximum GPU load; bad values are refused with outputs
 * untouched. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "refine_fixture.h"

/* Every fixture: the cpu backend's plan with refine equals the reference's. */
Test(refine, cpu_plans_equal_the_reference_fixtures)
{
    expect_fixtures_match("cpu", REFINE_FIXTURE_DIR, "cpu", fixture_count(REFINE_FIXTURE_DIR));
}

/* ---- properties over the random cases ------------------------------------------ */

/* The heaviest GPU load of row `row` (a node of a layer, or the whole layer),
 * as SPEC 10.1 computes it: float32 slot loads summed in position order. */
static float row_max_load(const eplb_random_case *c, const int64_t *phy2log, const int64_t *logcnt,
                          int64_t l, int64_t first_gpu, int64_t gpus)
{
    const eplb_shape *s = &c->shape;
    const int64_t E = s->experts, R = s->replicas, k = R / s->gpus;
    float best = 0.0f;
    for (int64_t g = first_gpu; g < first_gpu + gpus; g++) {
        const int64_t q0 = l * R + g * k;
        float load = c->weight[l * E + phy2log[q0]] / (float)logcnt[l * E + phy2log[q0]];
        for (int64_t r = 1; r < k; r++) {
            const int64_t e = phy2log[q0 + r];
            load += c->weight[l * E + e] / (float)logcnt[l * E + e];
        }
        if (g == first_gpu || load > best)
            best = load;
    }
    return best;
}

static int compare_i64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The multiset of experts on slots [q0, q0 + n) of both plans is the same. */
static int same_experts(const int64_t *a, const int64_t *b, int64_t q0, int64_t n, int64_t *scratch)
{
    memcpy(scratch, a + q0, (size_t)n * sizeof *scratch);
    memcpy(scratch + n, b + q0, (size_t)n * sizeof *scratch);
    qsort(scratch, (size_t)n, sizeof *scratch, compare_i64);
    qsort(scratch + n, (size_t)n, sizeof *scratch, compare_i64);
    return memcmp(scratch, scratch + n, (size_t)n * sizeof *scratch) == 0;
}

typedef struct property_run {
    eplb_context *ctx;
    int refined_rows_lower; /* rows whose maximum refine lowered */
} property_run;

static void refine_keeps_promises(const eplb_random_case *c, uint64_t *state, void *arg)
{
    property_run *run = arg;
    static const int32_t caps[] = {1, 3, 256};
    eplb_options options = c->options;
    const eplb_shape *s = &c->shape;
    eplbt_plan seed, refined;
    eplbt_plan_run(run->ctx, c->name, c->weight, s, &options, &seed);
    options.refine = caps[eplb_random_range(state, 0, 2)];
    char label[sizeof c->name + 32];
    snprintf(label, sizeof label, "%s refine %d", c->name, (int)options.refine);
    eplbt_plan_run(run->ctx, label, c->weight, s, &options, &refined);

    const int hierarchical = eplb_plan_is_hierarchical(s, options.policy);
    eplbt_check_plan(c->name, c->weight, s, hierarchical, refined.phy2log, refined.logcnt,
                     refined.log2phy, refined.width);
    const size_t L = (size_t)s->layers, E = (size_t)s->experts;
    cr_assert(memcmp(seed.logcnt, refined.logcnt, L * E * sizeof *seed.logcnt) == 0,
              "%s: refine changed logcnt", c->name);
    const int64_t rows_per_layer = hierarchical ? s->nodes : 1;
    const int64_t gpus = s->gpus / rows_per_layer, slots = s->replicas / rows_per_layer;
    int64_t *scratch = malloc(2 * (size_t)slots * sizeof *scratch);
    cr_assert(scratch);
    for (int64_t l = 0; l < s->layers; l++)
        for (int64_t n = 0; n < rows_per_layer; n++) {
            const float before = row_max_load(c, seed.phy2log, seed.logcnt, l, n * gpus, gpus);
            const float after = row_max_load(c, refined.phy2log, refined.logcnt, l, n * gpus, gpus);
            cr_assert(!(after > before), "%s refine %d: layer %lld row %lld max load %.9g -> %.9g",
                      c->name, (int)options.refine, (long long)l, (long long)n, (double)before,
                      (double)after);
            run->refined_rows_lower += after < before;
            cr_assert(same_experts(seed.phy2log, refined.phy2log, l * s->replicas + n * slots, slots,
                                   scratch),
                      "%s: refine moved a slot out of layer %lld row %lld", c->name, (long long)l,
                      (long long)n);
        }
    free(scratch);
    eplbt_plan_free(&seed);
    eplbt_plan_free(&refined);
}

Test(refine, never_raises_a_row_maximum_and_keeps_plans_valid)
{
    property_run run = {.ctx = eplbt_context("cpu")};
    const int cases = eplbt_for_each_random_case(17, 4, refine_keeps_promises, &run);
    eplb_context_free(run.ctx);
    cr_expect_geq(cases, 100);
    cr_expect_gt(run.refined_rows_lower, 0, "refine lowered some row's maximum");
}

/* ---- refusals ------------------------------------------------------------------ */

static const eplb_shape small_shape = {.layers = 2, .experts = 8, .replicas = 12, .groups = 2,
                                       .nodes = 1, .gpus = 4};
static const float small_weight[16] = {9, 1, 4, 4, 2, 7, 3, 5, 1, 1, 8, 2, 6, 3, 3, 4};

static void expect_refused_untouched(eplb_context *ctx, const eplb_options *o, eplb_status want,
                                     const char *message_part)
{
    const eplb_status st = eplbt_plan_poisoned(ctx, small_weight, &small_shape, o, 5, message_part);
    cr_assert_eq(st, want, "status %s: %s", eplb_status_string(st), eplb_context_last_error(ctx));
}

Test(refine, out_of_range_values_are_refused)
{
    eplb_context *ctx;
    cr_assert_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK);
    eplb_options o;
    eplb_options_init(&o);
    cr_expect_eq(o.refine, 0, "refine is off by default");
    o.refine = -1;
    expect_refused_untouched(ctx, &o, EPLB_ERR_INVALID_ARGUMENT, "refine");
    o.refine = EPLB_MAX_REFINE + 1;
    expect_refused_untouched(ctx, &o, EPLB_ERR_INVALID_ARGUMENT, "0..100000");
    o.refine = EPLB_MAX_REFINE;
    int64_t phy2log[24], logcnt[16];
    cr_expect_eq(eplb_rebalance(ctx, small_weight, &small_shape, &o, phy2log, logcnt, NULL, 0, NULL),
                 EPLB_OK, "%s", eplb_context_last_error(ctx));
    eplb_context_free(ctx);
}

