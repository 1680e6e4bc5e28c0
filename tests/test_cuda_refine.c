/* The refine search (docs/spec.md section 10) on the cuda backend, on both
 * of its paths: inside plan_fused (backends/cuda/cuda_plan_fused.cu, the
 * default) and as the refine stage kernel after the other stage kernels
 * (backends/cuda/cuda_refine.cu, EPLB_TUNE_CUDA_PATH=stages, and every job
 * plan_fused declines). Its plans equal the reference fixtures
 * (tests/data/refine), and the cpu backend's on random cases and on
 * DeepSeek-V3's shapes, with rows whose trades need 64-bit numbers or whose
 * placement lives in global memory. Skipped (not failed) where the cuda
 * backend is unavailable: no module, driver or GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_suites.h"
#include "harness.h"
#include "refine_fixture.h"

static const int32_t caps[] = {1, 16, 256};
#define CAPS (sizeof caps / sizeof caps[0])

/* Plans weight with one refine cap on every cuda path and on cpu; the plans
 * must be equal. */
static void expect_same_as_cpu(const cuda_and_cpu *run, const char *name, const float *weight,
                               const eplb_shape *shape, const eplb_options *options)
{
    for (size_t i = 0; i < CUDA_PATHS; i++) {
        char label[256];
        snprintf(label, sizeof label, "%s, refine %d, path %s", name, (int)options->refine,
                 cuda_paths[i]);
        eplbt_expect_same_as_cpu(run->cuda[i], run->cpu, label, weight, shape, options);
    }
}

/* The same with each refine cap. */
static void expect_caps_same_as_cpu(const cuda_and_cpu *run, const char *name,
                                    const float *weight, const eplb_shape *shape,
                                    eplb_options options)
{
    for (size_t i = 0; i < CAPS; i++) {
        options.refine = caps[i];
        expect_same_as_cpu(run, name, weight, shape, &options);
    }
}

/* Every reference fixture, with its own cap, in every integer, on every
 * path. */
Test(cuda_refine, fixtures_equal_the_reference, .timeout = 600)
{
    expect_fixtures_match_on_every_path(REFINE_FIXTURE_DIR, fixture_count(REFINE_FIXTURE_DIR));
}

/* Every shape kind (k = 1 and one-GPU rows among them) and weight pattern
 * (ties, zeros, -0, sums that overflow to infinity). */
static void random_case_same_as_cpu(const eplb_random_case *c, uint64_t *state, void *arg)
{
    (void)state;
    const cuda_and_cpu *run = arg;
    expect_caps_same_as_cpu(run, c->name, c->weight, &c->shape, c->options);
}

Test(cuda_refine, random_cases_plan_as_on_the_cpu_backend, .timeout = 1200)
{
    cuda_and_cpu run = cuda_and_cpu_open();
    cr_expect_geq(eplbt_for_each_random_case(1718, 3, random_case_same_as_cpu, &run), 108);
    cuda_and_cpu_free(&run);
}

/* A shape on the bench workload, then with every weight equal, where every
 * trade ties and the first in trade order must win; with each cap up to
 * most_refine (the cpu's time on big rows bounds it). */
static void same_as_cpu_on_shape(const cuda_and_cpu *run, const eplbt_named_shape *c,
                                 int32_t most_refine)
{
    eplb_options options;
    float *weight = eplbt_named_shape_case(c, &options);
    for (int equal = 0; equal < 2; equal++) {
        if (equal)
            for (int64_t j = 0; j < c->shape.layers * c->shape.experts; j++)
                weight[j] = 2.0f;
        char label[224];
        snprintf(label, sizeof label, "%s%s", c->name, equal ? ", equal weights" : "");
        for (size_t i = 0; i < CAPS && caps[i] <= most_refine; i++) {
            options.refine = caps[i];
            expect_same_as_cpu(run, label, weight, &c->shape, &options);
        }
    }
    free(weight);
}

/* The named shapes, then rows of special sizes. */
Test(cuda_refine, named_shapes_plan_as_on_the_cpu_backend, .timeout = 1200)
{
    cuda_and_cpu run = cuda_and_cpu_open();
    for (size_t i = 0; i < EPLBT_NAMED_SHAPES; i++)
        same_as_cpu_on_shape(&run, &eplbt_named_shapes[i], 256);
    same_as_cpu_on_shape(&run, &cuda_wide_row, 16);
    same_as_cpu_on_shape(&run, &cuda_many_trades, 1);
    cuda_and_cpu_free(&run);
}

/* Distinct (docs/spec.md section 11), whose restore and trade rule this
 * stage also runs, is checked in test_cuda_distinct.c. */

/* EPLB_TUNE_CUDA_REFINE takes block or team only: another value fails the
 * creation with a message naming the knob, on any machine where the module
 * loads (the knobs are read before the driver is asked anything). */
Test(cuda_refine, an_invalid_refine_search_knob_is_refused)
{
    setenv("EPLB_TUNE_CUDA_REFINE", "bogus", 1);
    eplb_context *ctx = NULL;
    const eplb_status st = eplb_context_create(&ctx, "cuda");
    const char *why = eplb_last_error();
    unsetenv("EPLB_TUNE_CUDA_REFINE");
    cr_expect_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE, "status %d", (int)st);
    cr_expect_null(ctx);
    if (strstr(why, "cannot load") && strstr(why, "libeplb_cuda"))
        cr_skip_test("cuda module not built: %s", why);
    cr_expect(strstr(why, "EPLB_TUNE_CUDA_REFINE") && strstr(why, "'bogus'"), "%s", why);
}
