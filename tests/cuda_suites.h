/* What the suites of the cuda stages (test_cuda_refine.c,
 * test_cuda_distinct.c) share: the backend's paths, plan_fused
 * (backends/cuda/cuda_plan_fused.cu, the default), plan_fused with the team
 * refine search where one is compiled for the row (EPLB_TUNE_CUDA_REFINE=team)
 * and the stage kernels one after the other (EPLB_TUNE_CUDA_PATH=stages, and
 * every job plan_fused declines), each checked; and the rows of special sizes
 * for the kernels. The knobs are read when a context is created. Header-only,
 * like harness.h. */
#ifndef EPLB_TESTS_CUDA_SUITES_H
#define EPLB_TESTS_CUDA_SUITES_H

#include "harness.h"
#include "refine_fixture.h"

static const char *const cuda_paths[] = {"fused", "fused-team-refine", "stages"};
#define CUDA_PATHS (sizeof cuda_paths / sizeof cuda_paths[0])

/* Sets the knobs of path cuda_paths[i] (on == 0: unsets them). */
EPLBT_HELPER void cuda_path_knobs(size_t i, int on)
{
    if (!on) {
        unsetenv("EPLB_TUNE_CUDA_PATH");
        unsetenv("EPLB_TUNE_CUDA_REFINE");
        return;
    }
    setenv("EPLB_TUNE_CUDA_PATH", strcmp(cuda_paths[i], "stages") ? "fused" : "stages", 1);
    setenv("EPLB_TUNE_CUDA_REFINE", strcmp(cuda_paths[i], "fused-team-refine") ? "block" : "team",
           1);
}

/* Rows of special sizes: 8192 slots a row, whose state lies beyond 48 KiB,
 * in global memory; two GPUs of 305 slots, 2 * (305^2 + 46360^2) trades per
 * step, numbered in 64 bits. */
static const eplbt_named_shape cuda_wide_row = {"8192 slots on 512 GPUs",
                                                {1, 2048, 8192, 1, 1, 512}, EPLB_POLICY_GLOBAL};
static const eplbt_named_shape cuda_many_trades = {"two GPUs of 305 slots",
                                                   {1, 610, 610, 1, 1, 2}, EPLB_POLICY_GLOBAL};

/* A cuda context on path cuda_paths[i], or a skip as eplbt_open_cuda_or_skip. */
EPLBT_HELPER eplb_context *cuda_on_path_or_skip(size_t i)
{
    cuda_path_knobs(i, 1);
    eplb_context *ctx = eplbt_open_cuda_or_skip();
    cuda_path_knobs(i, 0);
    return ctx;
}

/* The cuda contexts of every path, and the cpu one their plans must equal. */
typedef struct cuda_and_cpu {
    eplb_context *cuda[CUDA_PATHS], *cpu;
} cuda_and_cpu;

EPLBT_HELPER cuda_and_cpu cuda_and_cpu_open(void)
{
    cuda_and_cpu run;
    for (size_t i = 0; i < CUDA_PATHS; i++)
        run.cuda[i] = cuda_on_path_or_skip(i);
    run.cpu = eplbt_context("cpu");
    return run;
}

EPLBT_HELPER void cuda_and_cpu_free(cuda_and_cpu *run)
{
    for (size_t i = 0; i < CUDA_PATHS; i++)
        eplb_context_free(run->cuda[i]);
    eplb_context_free(run->cpu);
}

/* Every fixture of dir, in every integer, on every path (fixtures_match
 * opens its own contexts, which read the path then); at least at_least of
 * them. */
EPLBT_HELPER void expect_fixtures_match_on_every_path(const char *dir, int at_least)
{
    eplb_context_free(eplbt_open_cuda_or_skip());
    for (size_t i = 0; i < CUDA_PATHS; i++) {
        char label[64];
        snprintf(label, sizeof label, "cuda, path %s", cuda_paths[i]);
        cuda_path_knobs(i, 1);
        expect_fixtures_match(label, dir, "cuda", at_least);
        cuda_path_knobs(i, 0);
    }
}

#endif /* EPLB_TESTS_CUDA_SUITES_H */
