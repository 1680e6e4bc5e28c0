/* The planner's asynchronous host-staging branch (src/planner.c:
 * plan_through_staging, and the copies of the incremental device call) on
 * the opencl backend under EPLB_TUNE_OPENCL_STAGING=async. By default only
 * the cuda backend offers the host-staging entries that this branch needs,
 * and CI has no GPU; with the knob, PoCL runs the branch on the CPU. The
 * other opencl suites run under the knob as well (the *_async_staging tests
 * of tests/CMakeLists.txt); this suite adds the host-API cases they leave to
 * the cpu backend (bad weights, a too-narrow log2phy, plans of changing
 * shapes on one context), the incremental device call's outputs read on
 * another queue when it returns, and eplb conformance. Each test sets the
 * knob in its own process (Criterion forks one per test). Skipped (not
 * failed) where no OpenCL device is available, unless
 * EPLB_TEST_REQUIRE_OPENCL=1. */
#include <float.h>
#include <math.h>

#include "cli_run.h"
#include "context.h" /* ctx->backend->iface: which table the knob chose */
#include "harness.h"

#if __has_include(<CL/cl.h>)
#define EPLBT_HAVE_CL 1
#include "../backends/opencl/opencl_loader.c" /* the module's dlopen table: no libOpenCL link */
#include "../backends/opencl/opencl_interop.h"
#include "drift.h"
#endif

static void use_async_staging(void) { setenv("EPLB_TUNE_OPENCL_STAGING", "async", 1); }

/* ---- the knob ------------------------------------------------------------------ */

/* Whether the context's backend offers every entry the planner's
 * asynchronous branch needs (has_async_copies in src/planner.c). */
static int offers_async_staging(const eplb_context *ctx)
{
    const eplb_backend_i *f = ctx->backend->iface;
    return f->host_alloc && f->host_free && f->upload_async && f->download_async &&
           f->synchronize;
}

/* Whether it offers none of the four host-staging entries (today's default). */
static int offers_no_staging(const eplb_context *ctx)
{
    const eplb_backend_i *f = ctx->backend->iface;
    return !f->host_alloc && !f->host_free && !f->upload_async && !f->download_async;
}

Test(opencl_staging, the_knob_chooses_the_interface_table, .timeout = 300)
{
    unsetenv("EPLB_TUNE_OPENCL_STAGING");
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    cr_expect(offers_no_staging(ctx), "unset: the default table must leave host staging NULL");
    eplb_context_free(ctx);

    setenv("EPLB_TUNE_OPENCL_STAGING", "sync", 1);
    ctx = eplbt_context("opencl");
    cr_expect(offers_no_staging(ctx), "sync: the table must leave host staging NULL");
    eplb_context_free(ctx);

    use_async_staging();
    ctx = eplbt_context("opencl");
    cr_expect(offers_async_staging(ctx), "async: the table must offer every host-staging entry");
    eplb_context_free(ctx);
}

Test(opencl_staging, a_value_the_knob_does_not_take_fails_creation)
{
    setenv("EPLB_TUNE_OPENCL_STAGING", "pinned", 1);
    eplb_context *ctx = NULL;
    const eplb_status st = eplb_context_create(&ctx, "opencl");
    if (strstr(eplb_last_error(), "cannot load"))
        cr_skip_test("no opencl module here: %s", eplb_last_error());
    cr_assert_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE, "%s", eplb_last_error());
    const char *refusal = "EPLB_TUNE_OPENCL_STAGING='pinned' is not a value it takes";
    cr_assert(strstr(eplb_last_error(), refusal), "%s", eplb_last_error());
    cr_assert(strstr(eplb_last_error(), "use sync or async"), "%s", eplb_last_error());
}

/* An opencl context that takes the asynchronous branch, or the test skipped. */
static eplb_context *open_async_or_skip(void)
{
    use_async_staging();
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    cr_assert(offers_async_staging(ctx), "EPLB_TUNE_OPENCL_STAGING=async did not take effect");
    return ctx;
}

/* ---- plans through the staging area --------------------------------------------- */

/* DeepSeek-V3's whole shape: the largest staging area of these tests. */
static const eplb_shape v3_shape = {58, 256, 288, 8, 4, 32};

/* Plans without log2phy on ctx and on cpu: the staging branch then brings
 * no slot ranks down, only phy2log; phy2log and logcnt must be equal. */
static void expect_same_as_cpu_without_log2phy(eplb_context *ctx, eplb_context *cpu,
                                               const char *label, const float *w,
                                               const eplb_shape *s, const eplb_options *o)
{
    const size_t LR = (size_t)(s->layers * s->replicas), LE = (size_t)(s->layers * s->experts);
    int64_t *got = malloc((LR + LE) * sizeof *got), *want = malloc((LR + LE) * sizeof *want);
    cr_assert(got && want);
    eplb_status st = eplb_rebalance(ctx, w, s, o, got, got + LR, NULL, 0, NULL);
    cr_assert_eq(st, EPLB_OK, "%s: %s", label, eplb_context_last_error(ctx));
    st = eplb_rebalance(cpu, w, s, o, want, want + LR, NULL, 0, NULL);
    cr_assert_eq(st, EPLB_OK, "%s: %s", label, eplb_context_last_error(cpu));
    cr_expect(memcmp(got, want, (LR + LE) * sizeof *got) == 0,
              "%s without log2phy: phy2log or logcnt differ from cpu", label);
    free(got);
    free(want);
}

/* One context plans shape after shape, small and large, each with new
 * weights: the staging area grows and is reused, and a copy that had not
 * finished when the planner read the area would leave the previous plan's
 * outputs (or none) there, which differ from cpu's. */
Test(opencl_staging, plans_of_changing_shapes_equal_cpu, .timeout = 600)
{
    eplb_context *ctx = open_async_or_skip();
    eplb_context *cpu = eplbt_context("cpu");
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i <= EPLBT_NAMED_SHAPES; i++) {
            const int big = i == EPLBT_NAMED_SHAPES;
            const eplb_shape *s = big ? &v3_shape : &eplbt_named_shapes[i].shape;
            const char *what = big ? "v3 58 layers" : eplbt_named_shapes[i].name;
            eplb_options o;
            float *w = eplbt_workload_case(s, 100 * (uint64_t)round + i, (int64_t)i % 3, 8, 20,
                                           (uint64_t)round, &o);
            if (!big)
                o.policy = eplbt_named_shapes[i].policy;
            o.refine = round == 1 ? 16 : 0; /* the refine stage kernel as well */
            eplbt_expect_same_as_cpu(ctx, cpu, what, w, s, &o);
            expect_same_as_cpu_without_log2phy(ctx, cpu, what, w, s, &o);
            free(w);
        }
    }
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

/* ---- errors leave the caller's outputs untouched ----------------------------------- */

/* DeepSeek-V3's shape with the weights of workload_seed (malloc'd), planned
 * on ctx as on cpu: the staging area then holds a whole plan's outputs,
 * which an output written on error, or read without the wait, would show. */
static float *v3_planned_first(eplb_context *ctx, eplb_context *cpu, uint64_t workload_seed,
                               const char *label)
{
    float *w = malloc(sizeof(float) * (size_t)(v3_shape.layers * v3_shape.experts));
    cr_assert(w);
    eplb_workload_fill(w, v3_shape.layers, v3_shape.experts, workload_seed, 0);
    eplbt_expect_same_as_cpu(ctx, cpu, label, w, &v3_shape, NULL);
    return w;
}

/* A bad weight is found on the host as the weights are copied into the
 * staging area, before anything goes up: the call fails naming it, writes no
 * output byte, and the next plan on the context is right. */
Test(opencl_staging, bad_weights_leave_outputs_untouched, .timeout = 600)
{
    eplb_context *ctx = open_async_or_skip();
    eplb_context *cpu = eplbt_context("cpu");
    const eplb_shape s = v3_shape;
    const int64_t width = eplb_log2phy_width_max(&s);
    float *w = v3_planned_first(ctx, cpu, 4, "before the bad weights");
    const float bad[] = {NAN, -NAN, -1.0f, -FLT_TRUE_MIN, INFINITY, -INFINITY};
    /* The first weight fails in the check's first block, the last one after
     * every earlier block went into the staging area. */
    const struct { size_t layer, expert; const char *named; } at[] = {{0, 0, "weight[0][0]"},
                                                                     {57, 200, "weight[57][200]"}};
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++)
        for (size_t p = 0; p < 2; p++) {
            const size_t index = at[p].layer * 256 + at[p].expert;
            const float good = w[index];
            w[index] = bad[b];
            cr_expect_eq(eplbt_plan_poisoned(ctx, w, &s, NULL, width, at[p].named),
                         EPLB_ERR_INVALID_WEIGHT, "bad value %zu at %s: %s", b, at[p].named,
                         eplb_context_last_error(ctx));
            cr_expect_eq(eplbt_plan_poisoned(ctx, w, &s, NULL, 0, at[p].named),
                         EPLB_ERR_INVALID_WEIGHT, "bad value %zu at %s without log2phy", b,
                         at[p].named);
            w[index] = good;
        }
    free(w);
    free(v3_planned_first(ctx, cpu, 5, "after the bad weights"));
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

/* A log2phy narrower than the plan needs is found on the host after the
 * plan came down: the call fails, reports the width needed, and writes no
 * output byte; at that width it plans as cpu does. A larger plan first
 * leaves its outputs in the staging area, where a missing wait would read
 * them instead of this plan's. */
Test(opencl_staging, narrow_log2phy_leaves_outputs_untouched, .timeout = 600)
{
    eplb_context *ctx = open_async_or_skip();
    eplb_context *cpu = eplbt_context("cpu");
    free(v3_planned_first(ctx, cpu, 6, "a larger plan first"));

    const eplb_shape s = {4, 16, 64, 1, 1, 4}; /* 48 extra slots: some expert gets > 1 */
    float w[4 * 16];
    eplb_workload_fill(w, s.layers, s.experts, 3, 0);
    eplbt_plan want;
    eplbt_plan_run(cpu, "cpu", w, &s, NULL, &want);
    const int64_t needed = want.width_needed;
    eplbt_plan_free(&want);
    cr_assert_geq(needed, 2, "this case needs an expert with 2 replicas");

    int64_t phy2log[4 * 64], logcnt[4 * 16], log2phy[4 * 16 * 64], width_needed = -7;
    eplbt_poison(phy2log, sizeof phy2log);
    eplbt_poison(logcnt, sizeof logcnt);
    eplbt_poison(log2phy, sizeof log2phy);
    const eplb_status st = eplb_rebalance(ctx, w, &s, NULL, phy2log, logcnt, log2phy,
                                          needed - 1, &width_needed);
    cr_expect_eq(st, EPLB_ERR_LOG2PHY_TOO_SMALL, "%s", eplb_context_last_error(ctx));
    cr_expect_eq(width_needed, needed, "width_needed %lld, cpu's %lld", (long long)width_needed,
                 (long long)needed);
    cr_expect_eq(eplbt_first_unpoisoned(phy2log, sizeof phy2log), -1, "phy2log written");
    cr_expect_eq(eplbt_first_unpoisoned(logcnt, sizeof logcnt), -1, "logcnt written");
    cr_expect_eq(eplbt_first_unpoisoned(log2phy, sizeof log2phy), -1, "log2phy written");

    int64_t cpu_phy2log[4 * 64], cpu_logcnt[4 * 16], cpu_log2phy[4 * 16 * 64];
    cr_assert_eq(eplb_rebalance(ctx, w, &s, NULL, phy2log, logcnt, log2phy, needed, NULL), EPLB_OK,
                 "%s", eplb_context_last_error(ctx));
    cr_assert_eq(eplb_rebalance(cpu, w, &s, NULL, cpu_phy2log, cpu_logcnt, cpu_log2phy, needed,
                                NULL), EPLB_OK);
    cr_expect(memcmp(phy2log, cpu_phy2log, sizeof phy2log) == 0, "phy2log differs from cpu");
    cr_expect(memcmp(logcnt, cpu_logcnt, sizeof logcnt) == 0, "logcnt differs from cpu");
    cr_expect(memcmp(log2phy, cpu_log2phy, sizeof(int64_t) * 4 * 16 * (size_t)needed) == 0,
              "log2phy differs from cpu");
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

/* ---- the incremental device call ------------------------------------------------- */

#ifdef EPLBT_HAVE_CL
/* Runs eplb_rebalance_incremental_device on the context's own queue, then
 * reads its outputs into got (poisoned first) on a second queue of the
 * context, which nothing orders after the call's own queue. */
static eplb_status incremental_device_read_elsewhere(eplb_context *ctx, const float *weight,
                                                     const int64_t *previous, const eplb_shape *s,
                                                     const eplb_options *o, eplbt_plan *got)
{
    const size_t LE = (size_t)(s->layers * s->experts), LR = (size_t)(s->layers * s->replicas);
    const size_t LEX = LE * (size_t)got->width;
    eplbt_poison(got->phy2log, LR * 8);
    eplbt_poison(got->logcnt, LE * 8);
    eplbt_poison(got->log2phy, LEX * 8);
    char error[256];
    const eplb_opencl_api *cl = eplb_opencl_load(error, sizeof error);
    cr_assert(cl, "%s", error);
    const eplb_opencl_handles *h = ctx->backend->context;
    cl_int err;
    cl_command_queue reader = cl->clCreateCommandQueue(h->context, h->device, 0, &err);
    cr_assert(reader, "clCreateCommandQueue: %s", eplb_opencl_error_name(err));
    const cl_mem_flags in = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    const cl_mem_flags out = CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR;
    cl_mem buffer[5] = {
        cl->clCreateBuffer(h->context, in, LE * 4, (void *)weight, &err),
        cl->clCreateBuffer(h->context, in, LR * 8, (void *)previous, &err),
        cl->clCreateBuffer(h->context, out, LR * 8, got->phy2log, &err),
        cl->clCreateBuffer(h->context, out, LE * 8, got->logcnt, &err),
        cl->clCreateBuffer(h->context, out, LEX * 8, got->log2phy, &err),
    };
    for (int i = 0; i < 5; i++)
        cr_assert(buffer[i], "clCreateBuffer: %s", eplb_opencl_error_name(err));
    const eplb_status st = eplb_rebalance_incremental_device(
        ctx, buffer[0], s, o, buffer[1], buffer[2], buffer[3], buffer[4], got->width, NULL);
    cl->clEnqueueReadBuffer(reader, buffer[2], CL_TRUE, 0, LR * 8, got->phy2log, 0, NULL, NULL);
    cl->clEnqueueReadBuffer(reader, buffer[3], CL_TRUE, 0, LE * 8, got->logcnt, 0, NULL, NULL);
    cl->clEnqueueReadBuffer(reader, buffer[4], CL_TRUE, 0, LEX * 8, got->log2phy, 0, NULL, NULL);
    for (int i = 0; i < 5; i++)
        cl->clReleaseMemObject(buffer[i]);
    cl->clReleaseCommandQueue(reader);
    return st;
}

/* eplb_rebalance_incremental_device is synchronous (eplb.h): its outputs are
 * written when it returns. Its last copies go up from the staging area
 * without waiting, then assemble writes the outputs, so only the planner's
 * one wait makes that true. Read back on another queue, the outputs must
 * already be the plan that eplb_rebalance_incremental gives on cpu. */
Test(opencl_staging, incremental_device_outputs_are_written_on_return, .timeout = 600)
{
    eplb_context *ctx = open_async_or_skip();
    eplb_context *cpu = eplbt_context("cpu");
    const eplbt_named_shape *c = &eplbt_named_shapes[0];
    const eplb_shape *s = &c->shape;
    eplb_options o;
    float *weight = eplbt_named_shape_case(c, &o);
    int64_t *previous = malloc((size_t)(s->layers * s->replicas) * sizeof *previous);
    cr_assert(previous);
    cr_assert_eq(eplb_drifted_previous(cpu, weight, s, &o, 3, 0.3, previous), EPLB_OK);
    eplbt_plan want, got;
    eplbt_plan_alloc(&want, s, eplb_log2phy_width_max(s));
    eplbt_plan_alloc(&got, s, want.width);
    cr_assert_eq(eplb_rebalance_incremental(cpu, weight, s, &o, previous, want.phy2log,
                                            want.logcnt, want.log2phy, want.width,
                                            &want.width_needed),
                 EPLB_OK, "%s", eplb_context_last_error(cpu));
    cr_assert_eq(incremental_device_read_elsewhere(ctx, weight, previous, s, &o, &got), EPLB_OK,
                 "%s", eplb_context_last_error(ctx));
    got.width_needed = want.width_needed; /* the device call does not report it */
    cr_expect(eplbt_plans_equal(&got, &want), "%s: the device outputs differ from cpu's plan",
              c->name);
    eplbt_plan_free(&got);
    eplbt_plan_free(&want);
    free(previous);
    free(weight);
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}
#endif

/* ---- eplb conformance ------------------------------------------------------------- */

/* Every golden case, the built-in production-sized cases and the random
 * ones (with refine, distinct and incrementally) through the asynchronous
 * branch, each equal to the cpu backend's plan. */
Test(opencl_staging, conformance_passes_with_async_staging, .timeout = 900)
{
    eplb_context_free(open_async_or_skip()); /* skips where opencl is absent */
    cli_make_scratch("/tmp/eplb-opencl-staging-XXXXXX");
    const char *args[] = {"conformance", "--golden", EPLB_GOLDEN_DIR, NULL};
    const char *env[] = {"EPLB_TUNE_OPENCL_STAGING=async", NULL};
    cli_captured r = cli_run_captured(args, env);
    cli_remove_scratch();
    cr_expect_eq(r.code, 0, "eplb conformance exited %d:\n%s\n%s", r.code, r.out, r.err);
    cr_expect(strstr(r.out, "backends: cpu (") && strstr(r.out, ", opencl ("),
              "opencl did not take part:\n%s", r.out);
    cr_expect(strstr(r.out, " passed, 0 failed\n"), "%s", r.out);
    cli_captured_free(&r);
}
