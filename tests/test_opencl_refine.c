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

/* A GPU's layout on any device: a row's trades shared by a group of 64
 * work-items, reduced through local memory. */
static void use_groups(void) { setenv("EPLB_TUNE_OPENCL_FUSED_WG", "64", 1); }

/* A local-memory budget no row fits: the rows' placement in global scratch. */
static void use_global_memory(void) { setenv("EPLB_TUNE_OPENCL_LOCAL_MEM", "1", 1); }

/* ---- the reference's fixtures ------------------------------------------------- */

/* Plans fixture `file` on ctx; the plan must equal the reference's. Returns
 * whether the fixture plans hierarchically. */
static int check_fixture(eplb_context *ctx, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, file);
    refine_fixture fx;
    fixture_read(path, &fx);
    eplbt_plan got;
    eplbt_plan_alloc(&got, &fx.shape, fx.width);
    const eplb_status st = eplb_rebalance(ctx, fx.weight, &fx.shape, &fx.options, got.phy2log,
                                          got.logcnt, got.log2phy, got.width, NULL);
    cr_assert_eq(st, EPLB_OK, "%s: %s", fx.name, eplb_context_last_error(ctx));
    const size_t L = (size_t)fx.shape.layers, E = (size_t)fx.shape.experts;
    first_difference(got.phy2log, fx.phy2log, L * (size_t)fx.shape.replicas, "phy2log", fx.name);
    first_difference(got.logcnt, fx.logcnt, L * E, "logcnt", fx.name);
    first_difference(got.log2phy, fx.log2phy, L * E * (size_t)fx.width, "log2phy", fx.name);
    const int hierarchical = eplb_plan_is_hierarchical(&fx.shape, fx.options.policy);
    eplbt_plan_free(&got);
    fixture_free(&fx);
    return hierarchical;
}

static void check_every_fixture(void)
{
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    DIR *d = opendir(FIXTURE_DIR);
    cr_assert(d, "cannot open %s", FIXTURE_DIR);
    int checked = 0, hierarchical = 0;
    struct dirent *ent;
    while ((ent = readdir(d)))
        if (strstr(ent->d_name, ".txt")) {
            hierarchical += check_fixture(ctx, ent->d_name);
            checked++;
        }
    closedir(d);
    eplb_context_free(ctx);
    cr_expect_eq(checked, fixture_count());
    cr_expect_geq(hierarchical, 2, "the fixtures cover the hierarchical policy");
    cr_expect_geq(checked - hierarchical, 2, "the fixtures cover the global policy");
}

Test(opencl_refine, fixtures_equal_the_reference) { check_every_fixture(); }

Test(opencl_refine, fixtures_equal_the_reference_in_groups)
{
    use_groups();
    check_every_fixture();
}

Test(opencl_refine, fixtures_equal_the_reference_in_global_memory)
{
    use_global_memory();
    check_every_fixture();
}

Test(opencl_refine, fixtures_equal_the_reference_in_groups_and_global_memory)
{
    use_groups();
    use_global_memory();
    check_every_fixture();
}

/* ---- against the cpu backend ------------------------------------------------------ */

typedef struct against_cpu {
    eplb_context *opencl, *cpu;
} against_cpu;

static const int32_t refine_caps[] = {1, 16, 256};

/* Each random case (every shape kind, k = 1 and one-GPU rows among them,
 * and weight patterns full of ties, zeros, -0 and overflowing sums) with
 * each refine cap. */
static void same_as_cpu(const eplb_random_case *c, uint64_t *state, void *arg)
{
    (void)state;
    const against_cpu *run = arg;
    eplb_options options = c->options;
    for (size_t i = 0; i < sizeof refine_caps / sizeof refine_caps[0]; i++) {
        options.refine = refine_caps[i];
        char label[200];
        snprintf(label, sizeof label, "%s refine %d", c->name, (int)options.refine);
        eplbt_expect_same_as_cpu(run->opencl, run->cpu, label, c->weight, &c->shape, &options);
    }
}

/* DeepSeek-V3's shapes (58 layers of 256 experts would be slow here: 6
 * layers) on the bench workload, and shapes whose rows have one GPU or one
 * slot per GPU, so that the stage has nothing to do. */
static void same_as_cpu_on_named_shapes(const against_cpu *run)
{
    static const struct {
        const char *name;
        eplb_shape shape;
        int policy;
    } cases[] = {
        {"v3 hierarchical 288/8/4/32", {6, 256, 288, 8, 4, 32}, EPLB_POLICY_AUTO},
        {"v3 global 288/72", {6, 256, 288, 8, 4, 72}, EPLB_POLICY_GLOBAL},
        {"v3 global 320/64", {6, 256, 320, 8, 4, 64}, EPLB_POLICY_GLOBAL},
        {"one GPU per node (m = 1)", {3, 64, 96, 4, 4, 4}, EPLB_POLICY_HIERARCHICAL},
        {"one slot per GPU (k = 1)", {3, 64, 96, 8, 4, 96}, EPLB_POLICY_GLOBAL},
        {"two GPUs of two slots", {4, 4, 4, 1, 1, 2}, EPLB_POLICY_GLOBAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eplb_options options;
        float *weight = eplbt_workload_case(&cases[i].shape, 1, 0, 8, 20, 0, &options);
        options.policy = cases[i].policy;
        for (size_t r = 0; r < sizeof refine_caps / sizeof refine_caps[0]; r++) {
            options.refine = refine_caps[r];
            char label[200];
            snprintf(label, sizeof label, "%s refine %d", cases[i].name, (int)options.refine);
            eplbt_expect_same_as_cpu(run->opencl, run->cpu, label, weight, &cases[i].shape, &options);
        }
        /* Equal weights: every trade ties, and the first in trade order must win. */
        for (int64_t j = 0; j < cases[i].shape.layers * cases[i].shape.experts; j++)
            weight[j] = 2.0f;
        options.refine = 256;
        eplbt_expect_same_as_cpu(run->opencl, run->cpu, cases[i].name, weight, &cases[i].shape,
                                 &options);
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
    use_groups();
    check_against_cpu();
}

Test(opencl_refine, plans_equal_the_cpu_backend_in_global_memory, .timeout = 600)
{
    use_groups();
    use_global_memory();
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
    int64_t *phy2log = malloc(610 * sizeof *phy2log), *logcnt = malloc(610 * sizeof *logcnt);
    cr_assert(phy2log && logcnt);
    eplbt_poison(phy2log, 610 * sizeof *phy2log);
    eplbt_poison(logcnt, 610 * sizeof *logcnt);
    const eplb_status st =
        eplb_rebalance(ctx, weight, &shape, &options, phy2log, logcnt, NULL, 0, NULL);
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "%s", eplb_status_string(st));
    cr_expect(strstr(eplb_context_last_error(ctx), "trades per search step"), "%s",
              eplb_context_last_error(ctx));
    cr_expect_eq(eplbt_first_unpoisoned(phy2log, 610 * sizeof *phy2log), -1);
    cr_expect_eq(eplbt_first_unpoisoned(logcnt, 610 * sizeof *logcnt), -1);
    free(phy2log);
    free(logcnt);
    free(weight);
    eplb_context_free(ctx);
}
