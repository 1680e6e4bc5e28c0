/* eplb_rebalance_incremental_device on the opencl backend, with cl_mem
 * buffers: its plans equal eplb_rebalance_incremental's on the cpu backend
 * (random cases of every kind and a DeepSeek-V3 shape, each from a drifted
 * running plan), on the context's queue and on a caller's; a bad weight, a bad
 * running plan or a too-small log2phy width is its return status and leaves
 * the device outputs untouched; the cpu backend refuses the call. Skipped (not
 * failed) where no OpenCL device is available. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"
#include "eplb/eplb.h"
#include "harness.h"
#include "random_case.h"

#if __has_include(<CL/cl.h>)
#define EPLBT_HAVE_CL 1
#include "../backends/opencl/opencl_loader.c" /* the module's dlopen table: no libOpenCL link */
#include "../backends/opencl/opencl_interop.h"
#include "context.h" /* ctx->backend->context starts with the handles */
#endif

/* A small case to break: 2 layers, 8 experts, 12 slots, 4 GPUs, global. */
static const eplb_shape small_shape = {2, 8, 12, 4, 1, 4};

#ifdef EPLBT_HAVE_CL

/* The inputs of one device call and what the device outputs held after it. */
typedef struct device_call {
    const float *weight;
    const int64_t *previous;
    eplbt_plan out; /* read back from the device buffers */
} device_call;

/* Uploads the inputs, poisons the outputs (harness.h), runs
 * eplb_rebalance_incremental_device on a queue of the caller's (own_queue 0)
 * or the context's (NULL), and reads every output back into call->out. */
static eplb_status run_device(eplb_context *ctx, const eplb_shape *s, const eplb_options *o,
                              int64_t width, int own_queue, device_call *call)
{
    char error[256];
    const eplb_opencl_api *cl = eplb_opencl_load(error, sizeof error);
    cr_assert(cl, "%s", error);
    const eplb_opencl_handles *h = ctx->backend->context;
    const size_t LE = (size_t)(s->layers * s->experts), LR = (size_t)(s->layers * s->replicas);
    const size_t LEX = LE * (size_t)width;
    eplbt_plan_alloc(&call->out, s, width);
    eplbt_poison(call->out.phy2log, LR * 8);
    eplbt_poison(call->out.logcnt, LE * 8);
    eplbt_poison(call->out.log2phy, LEX * 8);
    cl_int err;
    cl_command_queue queue = NULL;
    if (!own_queue) {
        queue = cl->clCreateCommandQueue(h->context, h->device, 0, &err);
        cr_assert(queue, "clCreateCommandQueue: %s", eplb_opencl_error_name(err));
    }
    const cl_mem_flags in = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    const cl_mem_flags inout = CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR;
    cl_mem dw = cl->clCreateBuffer(h->context, in, LE * 4, (void *)call->weight, &err);
    cl_mem dprev = cl->clCreateBuffer(h->context, in, LR * 8, (void *)call->previous, &err);
    cl_mem dp = cl->clCreateBuffer(h->context, inout, LR * 8, call->out.phy2log, &err);
    cl_mem dc = cl->clCreateBuffer(h->context, inout, LE * 8, call->out.logcnt, &err);
    cl_mem dl = cl->clCreateBuffer(h->context, inout, LEX * 8, call->out.log2phy, &err);
    cr_assert(dw && dprev && dp && dc && dl, "clCreateBuffer: %s", eplb_opencl_error_name(err));
    const eplb_status st =
        eplb_rebalance_incremental_device(ctx, dw, s, o, dprev, dp, dc, dl, width, queue);
    cl_command_queue q = queue ? queue : h->queue;
    cl->clEnqueueReadBuffer(q, dp, CL_TRUE, 0, LR * 8, call->out.phy2log, 0, NULL, NULL);
    cl->clEnqueueReadBuffer(q, dc, CL_TRUE, 0, LE * 8, call->out.logcnt, 0, NULL, NULL);
    cl->clEnqueueReadBuffer(q, dl, CL_TRUE, 0, LEX * 8, call->out.log2phy, 0, NULL, NULL);
    cl->clReleaseMemObject(dw);
    cl->clReleaseMemObject(dprev);
    cl->clReleaseMemObject(dp);
    cl->clReleaseMemObject(dc);
    cl->clReleaseMemObject(dl);
    if (queue)
        cl->clReleaseCommandQueue(queue);
    return st;
}

/* Whether every output still holds the poison. */
static int outputs_untouched(const eplbt_plan *p)
{
    const size_t L = (size_t)p->shape.layers, E = (size_t)p->shape.experts;
    const size_t R = (size_t)p->shape.replicas, X = (size_t)p->width;
    return eplbt_first_unpoisoned(p->phy2log, L * R * 8) < 0 &&
           eplbt_first_unpoisoned(p->logcnt, L * E * 8) < 0 &&
           eplbt_first_unpoisoned(p->log2phy, L * E * X * 8) < 0;
}

/* The device call on ctx must give the cpu backend's host-API plan, bit for
 * bit, for weight rebalanced from previous. */
static void expect_same_as_host(eplb_context *ctx, eplb_context *cpu, const char *label,
                                const float *weight, const eplb_shape *s, const eplb_options *o,
                                const int64_t *previous, int own_queue)
{
    const int64_t width = eplb_log2phy_width_max(s);
    eplbt_plan want;
    eplbt_plan_alloc(&want, s, width);
    eplb_status st = eplb_rebalance_incremental(cpu, weight, s, o, previous, want.phy2log,
                                                want.logcnt, want.log2phy, width, NULL);
    cr_assert_eq(st, EPLB_OK, "%s: cpu: %s", label, eplb_context_last_error(cpu));
    device_call call = {.weight = weight, .previous = previous};
    st = run_device(ctx, s, o, width, own_queue, &call);
    cr_assert_eq(st, EPLB_OK, "%s: %s", label, eplb_context_last_error(ctx));
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    cr_expect(memcmp(call.out.phy2log, want.phy2log, L * R * 8) == 0, "%s: phy2log differs", label);
    cr_expect(memcmp(call.out.logcnt, want.logcnt, L * E * 8) == 0, "%s: logcnt differs", label);
    cr_expect(memcmp(call.out.log2phy, want.log2phy, L * E * (size_t)width * 8) == 0,
              "%s: log2phy differs", label);
    eplbt_plan_free(&call.out);
    eplbt_plan_free(&want);
}

typedef struct random_run {
    eplb_context *ctx, *cpu;
    int cases;
} random_run;

/* One random case, rebalanced from the cpu plan of its weights drifted by
 * 0.5, on alternating queues. */
static void check_random_case(const eplb_random_case *c, uint64_t *state, void *arg)
{
    (void)state;
    random_run *run = arg;
    const eplb_shape *s = &c->shape;
    int64_t *previous = malloc((size_t)(s->layers * s->replicas) * sizeof *previous);
    cr_assert(previous);
    cr_assert_eq(eplb_drifted_previous(run->cpu, c->weight, s, &c->options, (uint64_t)run->cases,
                                       0.5, previous),
                 EPLB_OK, "%s: %s", c->name, eplb_context_last_error(run->cpu));
    expect_same_as_host(run->ctx, run->cpu, c->name, c->weight, s, &c->options, previous,
                        run->cases % 2);
    free(previous);
    run->cases++;
}

Test(opencl_incremental, random_cases_equal_the_cpu_host_plan)
{
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    random_run run = {ctx, eplbt_context("cpu"), 0};
    cr_assert_gt(eplbt_for_each_random_case(31, 1, check_random_case, &run), 0);
    eplb_context_free(run.cpu);
    eplb_context_free(ctx);
}

Test(opencl_incremental, deepseek_v3_drift_with_slack_and_refine)
{
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    eplb_context *cpu = eplbt_context("cpu");
    const eplb_shape s = {58, 256, 288, 8, 4, 32};
    eplb_options o;
    float *weight = eplbt_workload_case(&s, 1, 0, 8, 20, 0, &o);
    int64_t *previous = malloc((size_t)(s.layers * s.replicas) * sizeof *previous);
    cr_assert(previous);
    cr_assert_eq(eplb_drifted_previous(cpu, weight, &s, &o, 2, 0.1, previous), EPLB_OK);
    expect_same_as_host(ctx, cpu, "v3 hierarchical", weight, &s, &o, previous, 0);
    o.slack = 0.02f;
    o.refine = 16;
    expect_same_as_host(ctx, cpu, "v3 hierarchical, slack 0.02, refine 16", weight, &s, &o,
                        previous, 1);
    free(previous);
    free(weight);
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

/* The call must fail with want, naming why, and leave every output as it was. */
static void expect_refused(eplb_context *ctx, const float *weight, const int64_t *previous,
                           const eplb_options *o, int64_t width, eplb_status want, const char *why)
{
    device_call call = {.weight = weight, .previous = previous};
    const eplb_status st = run_device(ctx, &small_shape, o, width, 1, &call);
    cr_expect_eq(st, want, "%s: got %s (%s)", why, eplb_status_string(st),
                 eplb_context_last_error(ctx));
    cr_expect(outputs_untouched(&call.out), "%s: the outputs were written", why);
    eplbt_plan_free(&call.out);
}

Test(opencl_incremental, refusals_leave_the_outputs_untouched)
{
    eplb_context *ctx = eplbt_open_opencl_or_skip();
    float weight[16];
    for (int i = 0; i < 16; i++)
        weight[i] = (float)(1 + i % 5);
    int64_t previous[24];
    for (int i = 0; i < 24; i++)
        previous[i] = i % 8;
    eplb_options o;
    eplb_options_init(&o);

    float bad_weight[16];
    memcpy(bad_weight, weight, sizeof weight);
    bad_weight[11] = NAN;
    expect_refused(ctx, bad_weight, previous, &o, 5, EPLB_ERR_INVALID_WEIGHT, "a NaN weight");
    cr_expect(strstr(eplb_context_last_error(ctx), "weight[1][3]"), "%s",
              eplb_context_last_error(ctx));

    int64_t bad_previous[24];
    memcpy(bad_previous, previous, sizeof previous);
    bad_previous[13] = 8;
    expect_refused(ctx, weight, bad_previous, &o, 5, EPLB_ERR_INVALID_ARGUMENT,
                   "an expert id out of range in previous");

    /* Every expert has at least one slot, so a width of 1 is too small for
     * the 12 slots of 8 experts. */
    expect_refused(ctx, weight, previous, &o, 1, EPLB_ERR_LOG2PHY_TOO_SMALL, "log2phy width 1");

    o.distinct = 1;
    expect_refused(ctx, weight, previous, &o, 5, EPLB_ERR_UNSUPPORTED, "distinct");
    o.distinct = 0;
    o.slack = -1.0f;
    expect_refused(ctx, weight, previous, &o, 5, EPLB_ERR_INVALID_ARGUMENT, "a negative slack");

    /* A shape error comes before any copy. */
    eplb_shape broken = small_shape;
    broken.gpus = 5;
    int dummy;
    cr_expect_eq(eplb_rebalance_incremental_device(ctx, &dummy, &broken, NULL, &dummy, &dummy,
                                                   &dummy, &dummy, 5, NULL),
                 EPLB_ERR_INVALID_SHAPE, "%s", eplb_context_last_error(ctx));
    cr_expect_eq(eplb_rebalance_incremental_device(ctx, &dummy, &small_shape, NULL, NULL, &dummy,
                                                   &dummy, &dummy, 5, NULL),
                 EPLB_ERR_INVALID_ARGUMENT);
    eplb_context_free(ctx);
}

#endif /* EPLBT_HAVE_CL */

Test(opencl_incremental, cpu_backend_refuses_the_device_form)
{
    eplb_context *cpu = eplbt_context("cpu");
    int dummy;
    const eplb_status st = eplb_rebalance_incremental_device(
        cpu, &dummy, &small_shape, NULL, &dummy, &dummy, &dummy, &dummy, 5, NULL);
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "%s", eplb_context_last_error(cpu));
    cr_expect(strstr(eplb_context_last_error(cpu), "eplb_rebalance_incremental"), "%s",
              eplb_context_last_error(cpu));
    eplb_context_free(cpu);
}
