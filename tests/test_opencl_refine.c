/* The refine search (docs/spec.md section 10) on the opencl backend
 * (kernels/refine.cl): its plans equal the independent reference's fixtures
 * (tests/data/refine) and the cpu backend's on random cases, with the row's
 * search in one work-item or in a group, its placement in local or global
 * memory. Skipped (not failed) where no OpenCL device is available. Each
 * test runs in its own process, so the knobs a test sets change only it. */
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
    expect_fixtures_match("opencl", REFINE_FIXTURE_DIR, "opencl",
                          fixture_count(REFINE_FIXTURE_DIR));
}

Test(opencl_refine, fixtures_equal_the_reference) { check_every_fixture(); }

Test(opencl_refine, fixtures_equal_the_reference_in_groups)
{
    eplbt_opencl_use_groups();
    check_every_fixture();
}

Test(opencl_refine, fixtures_equal_the_reference_in_global_memory)
{
    eplbt_opencl_use_global_memory();
    check_every_fixture();
}

Test(opencl_refine, fixtures_equal_the_reference_in_groups_and_global_memory)
{
    eplbt_opencl_use_groups();
    eplbt_opencl_use_global_memory();
    check_every_fixture();
}

/* ---- against the cpu backend ------------------------------------------------------ */

typedef struct against_cpu {
    eplb_context *opencl, *cpu;
} against_cpu;

static const int32_t refine_caps[] = {1, 16, 256};

/* Plans with each refine cap on opencl and on cpu; the plans must be equal. */
static void expect_caps_same_as_cpu(const against_cpu *run, const char *name, const float *weight,
                                    const eplb_shape *shape, eplb_options options)
{
    for (size_t i = 0; i < sizeof refine_caps / sizeof refine_caps[0]; i++) {
        options.refine = refine_caps[i];
        char label[200];
        snprintf(label, sizeof label, "%s refine %d", name, (int)options.refine);
        eplbt_expect_same_as_cpu(run->opencl, run->cpu, label, weight, shape, &options);
    }
}

/* Each random case (every shape kind, k = 1 and one-GPU rows among them,
 * and weight patterns full of ties, zeros, -0 and overflowing sums). */
static void same_as_cpu(const eplb_random_case *c, uint64_t *state, void *arg)
{
    (void)state;
    expect_caps_same_as_cpu(arg, c->name, c->weight, &c->shape, c->options);
}

/* The named shapes on the bench workload with each refine cap, then with
 * equal weights, where every trade ties and the first in trade order must
 * win. */
static void same_as_cpu_on_named_shapes(const against_cpu *run)
{
    for (size_t i = 0; i < EPLBT_NAMED_SHAPES; i++) {
        const eplbt_named_shape *c = &eplbt_named_shapes[i];
        eplb_options options;
        float *weight = eplbt_named_shape_case(c, &options);
        expect_caps_same_as_cpu(run, c->name, weight, &c->shape, options);
        for (int64_t j = 0; j < c->shape.layers * c->shape.experts; j++)
            weight[j] = 2.0f;
        options.refine = 256;
        eplbt_expect_same_as_cpu(run->opencl, run->cpu, c->name, weight, &c->shape, &options);
        free(weight);
    }
}

static void check_against_cpu(void)
{
    against_cpu run = {eplbt_open_opencl_or_skip(), eplbt_context("cpu")};
    same_as_cpu_on_named_shapes(&run);
    const int cases = eplbt_for_each_random_case(1717, 2, same_as_cpu, &run);
    cr_expect_geq(cases, 72);
    eplb_context_free(run.opencl);
    eplb_context_free(run.cpu);
}

Test(opencl_refine, plans_equal_the_cpu_backend, .timeout = 600) { check_against_cpu(); }

Test(opencl_refine, plans_equal_the_cpu_backend_in_groups, .timeout = 600)
{
    eplbt_opencl_use_groups();
    check_against_cpu();
}

Test(opencl_refine, plans_equal_the_cpu_backend_in_global_memory, .timeout = 600)
{
    eplbt_opencl_use_groups();
    eplbt_opencl_use_global_memory();
    check_against_cpu();
}

/* ---- refusals ---------------------------------------------------------------------- */

/* A row whose trades per search step outnumber the kernel's 31-bit trade
 * numbers is declined with a specific error, the outputs untouched. Two
 * GPUs of 305 slots: 305^2 + (305 * 304 / 2)^2 trades. */
Test(opencl_refine, a_row_beyond_the_trade_numbers_is_declined)
{
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    const eplb_shape shape = {1, 610, 610, 1, 1, 2};
    eplb_options options;
    float *weight = eplbt_workload_case(&shape, 1, 0, 1, 0, 0, &options);
    options.refine = 1;
    const eplb_status st =
        eplbt_plan_poisoned(ctx, weight, &shape, &options, 0, "trades per search step");
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "%s", eplb_status_string(st));
    free(weight);
    eplb_context_free(ctx);
}
