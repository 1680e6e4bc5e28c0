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

#include "harness.h"
#include "refine_fixture.h"

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

/* A cuda context on path paths[i], or a skip as cuda_or_skip. */
static eplb_context *cuda_on_path_or_skip(size_t i)
{
    setenv("EPLB_TUNE_CUDA_PATH", paths[i], 1);
    eplb_context *ctx = cuda_or_skip();
    unsetenv("EPLB_TUNE_CUDA_PATH");
    return ctx;
}

static const int32_t caps[] = {1, 16, 256};
#define CAPS (sizeof caps / sizeof caps[0])

/* The cuda contexts of every path, and the cpu one. */
typedef struct cuda_and_cpu {
    eplb_context *cuda[PATHS], *cpu;
} cuda_and_cpu;

static cuda_and_cpu open_contexts(void)
{
    cuda_and_cpu run;
    for (size_t i = 0; i < PATHS; i++)
        run.cuda[i] = cuda_on_path_or_skip(i);
    run.cpu = eplbt_context("cpu");
    return run;
}

static void free_contexts(cuda_and_cpu *run)
{
    for (size_t i = 0; i < PATHS; i++)
        eplb_context_free(run->cuda[i]);
    eplb_context_free(run->cpu);
}

/* Plans weight with one refine cap on every cuda path and on cpu; the plans
 * must be equal. */
static void expect_same_as_cpu(const cuda_and_cpu *run, const char *name, const float *weight,
                               const eplb_shape *shape, const eplb_options *options)
{
    for (size_t i = 0; i < PATHS; i++) {
        char label[256];
        snprintf(label, sizeof label, "%s, refine %d, path %s", name, (int)options->refine,
                 paths[i]);
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
 * path (the fixtures open their own contexts, which read the path then). */
Test(cuda_refine, fixtures_equal_the_reference, .timeout = 600)
{
    eplb_context_free(cuda_or_skip());
    for (size_t i = 0; i < PATHS; i++) {
        int hierarchical;
        setenv("EPLB_TUNE_CUDA_PATH", paths[i], 1);
        cr_expect_eq(fixtures_match(FIXTURE_DIR, "cuda", &hierarchical), fixture_count(),
                     "path %s", paths[i]);
        unsetenv("EPLB_TUNE_CUDA_PATH");
        cr_expect_geq(hierarchical, 2, "the fixtures cover the hierarchical policy");
    }
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
    cuda_and_cpu run = open_contexts();
    cr_expect_geq(eplbt_for_each_random_case(1718, 3, random_case_same_as_cpu, &run), 108);
    free_contexts(&run);
}

/* DeepSeek-V3's shapes (6 of its 58 layers) on the bench workload and with
 * every weight equal, where every trade ties and the first in trade order
 * must win; then rows of special sizes. */
Test(cuda_refine, named_shapes_plan_as_on_the_cpu_backend, .timeout = 1200)
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
        {"one GPU per row (m = 1)", {3, 64, 96, 4, 4, 4}, EPLB_POLICY_HIERARCHICAL, 256},
        {"one slot per GPU (k = 1)", {3, 64, 96, 8, 4, 96}, EPLB_POLICY_GLOBAL, 256},
        {"two GPUs of one pair each", {4, 4, 4, 1, 1, 2}, EPLB_POLICY_GLOBAL, 256},
        /* 8192 slots a row: the row's state beyond 48 KiB, in global memory. */
        {"8192 slots on 512 GPUs", {1, 2048, 8192, 1, 1, 512}, EPLB_POLICY_GLOBAL, 16},
        /* 2 * (305^2 + 46360^2) trades per step: numbered in 64 bits. */
        {"two GPUs of 305 slots", {1, 610, 610, 1, 1, 2}, EPLB_POLICY_GLOBAL, 1},
    };
    cuda_and_cpu run = open_contexts();
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        eplb_options options;
        float *weight = eplbt_workload_case(&shapes[i].shape, 1, 0, 8, 20, 0, &options);
        options.policy = shapes[i].policy;
        for (int equal = 0; equal < 2; equal++) {
            if (equal)
                for (int64_t j = 0; j < shapes[i].shape.layers * shapes[i].shape.experts; j++)
                    weight[j] = 2.0f;
            for (size_t c = 0; c < CAPS && caps[c] <= shapes[i].most_refine; c++) {
                char label[224];
                options.refine = caps[c];
                snprintf(label, sizeof label, "%s%s", shapes[i].name,
                         equal ? ", equal weights" : "");
                expect_same_as_cpu(&run, label, weight, &shapes[i].shape, &options);
            }
        }
        free(weight);
    }
    free_contexts(&run);
}

/* Distinct (docs/spec.md section 11), whose restore and trade rule this
 * stage also runs, is checked in test_cuda_distinct.c. */
