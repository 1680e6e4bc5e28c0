/* Device time of eplb_rebalance_device on the opencl backend, DeepSeek-V3
 * shapes, data already on the device. Each run is gated behind a user event,
 * so every command of the call is enqueued before the device starts; the
 * device time is from the end of the opening marker to the end of the closing
 * one (CL_QUEUE_PROFILING_ENABLE), i.e. first to last command of the call.
 * Also prints the wall time of the host API (eplb_rebalance) on opencl and
 * cpu, and checks the device plan against the cpu backend's.
 *
 *   eplb_opencl_timing [runs (default 200)] [warm-up runs (default 20)]
 *   EPLB_TIMING_CANDIDATES=C, EPLB_TIMING_ITERS=I, EPLB_TIMING_REFINE=N: options other
 *   than the defaults */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplb/eplb_opencl.h" /* the cl_context and device of an opencl context */
#include "eplb/eplb.h"
#include "opencl_interop.h"
#include "opencl_loader.h"
#include "workload.h"

typedef struct timing_case {
    const char *name;
    eplb_shape shape;
    eplb_policy policy;
} timing_case;

/* The plan in p, n, l was made at the always-sufficient width: plans again
 * with EPLB_LOG2PHY_WIDTH_NEEDED into a second log2phy buffer and checks that
 * the device chose max(logcnt) and wrote the same rows packed at it, leaving
 * the rest of the buffer alone. Returns the number of failures (0 or 1). */
static int check_needed_width(const eplb_opencl_api *cl, eplb_context *ctx,
                              cl_command_queue queue, cl_mem w, const eplb_shape *s,
                              const eplb_options *o, cl_mem p, cl_mem n, cl_mem l)
{
    const size_t LE = (size_t)(s->layers * s->experts);
    const int64_t X = eplb_log2phy_width_max(s);
    int64_t *fixed = malloc(LE * (size_t)X * 8), *packed = malloc(LE * (size_t)X * 8),
            *counts = malloc(LE * 8);
    for (size_t i = 0; i < LE * (size_t)X; i++)
        packed[i] = -7;
    cl_int err;
    cl_context cl_ctx = NULL;
    cl_device_id device = NULL;
    if (eplb_opencl_context_info(ctx, &cl_ctx, &device) != EPLB_OK) {
        printf("  MISMATCH: no cl_context for the needed-width check\n");
        free(fixed);
        free(packed);
        free(counts);
        return 1;
    }
    cl_mem l2 = cl->clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                   LE * (size_t)X * 8, packed, &err);
    cl->clEnqueueReadBuffer(queue, l, CL_TRUE, 0, LE * (size_t)X * 8, fixed, 0, NULL, NULL);
    cl->clEnqueueReadBuffer(queue, n, CL_TRUE, 0, LE * 8, counts, 0, NULL, NULL);
    int64_t width = -7;
    eplb_status st = eplb_rebalance_device(ctx, w, s, o, p, n, l2, EPLB_LOG2PHY_WIDTH_NEEDED, queue);
    if (st == EPLB_OK)
        st = eplb_device_log2phy_width(ctx, queue, &width);
    cl->clEnqueueReadBuffer(queue, l2, CL_TRUE, 0, LE * (size_t)X * 8, packed, 0, NULL, NULL);
    cl->clReleaseMemObject(l2);
    int64_t most = 0;
    for (size_t i = 0; i < LE; i++)
        most = counts[i] > most ? counts[i] : most;
    int ok = st == EPLB_OK && width == most;
    for (size_t row = 0; ok && row < LE; row++)
        for (int64_t r = 0; ok && r < X; r++)
            ok = r < most ? packed[row * (size_t)most + (size_t)r] == fixed[row * (size_t)X + (size_t)r]
                          : fixed[row * (size_t)X + (size_t)r] == -1;
    for (size_t i = LE * (size_t)(most > 0 ? most : 0); ok && i < LE * (size_t)X; i++)
        ok = packed[i] == -7;
    if (ok)
        printf("  log2phy at the width the device chose (%lld) == at width %lld\n",
               (long long)width, (long long)X);
    else
        printf("  MISMATCH: log2phy at the width the device chose (%lld, status %s: %s)\n",
               (long long)width, eplb_status_string(st), eplb_context_last_error(ctx));
    free(fixed);
    free(packed);
    free(counts);
    return ok ? 0 : 1;
}

/* The shapes of bench/eplb_bench.c: 58 layers x 256 experts in 8 groups. */
static const timing_case cases[] = {
    {"hierarchical 288/8/4/32", {58, 256, 288, 8, 4, 32}, EPLB_POLICY_AUTO},
    {"global 288/72", {58, 256, 288, 8, 9, 72}, EPLB_POLICY_AUTO},
    {"global 320/64", {58, 256, 320, 8, 8, 64}, EPLB_POLICY_GLOBAL},
};

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void summary(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_double);
    printf("  %-34s median %10.1f us   min %10.1f   p90 %10.1f   (%d runs)\n", what, v[n / 2], v[0],
           v[(n * 9) / 10], n);
}

/* Median wall time of eplb_rebalance (host arrays) on backend. */
static int time_host(const char *backend, const float *weight, const eplb_shape *s,
                     const eplb_options *o, int runs, int warmup, int64_t *phy2log, int64_t *logcnt)
{
    eplb_context *ctx;
    if (eplb_context_create(&ctx, backend) != EPLB_OK) {
        printf("  %s: unavailable: %s\n", backend, eplb_last_error());
        return 1;
    }
    double *t = malloc(sizeof *t * (size_t)runs);
    for (int r = -warmup; r < runs; r++) {
        double t0 = now_us();
        if (eplb_rebalance(ctx, weight, s, o, phy2log, logcnt, NULL, 0, NULL) != EPLB_OK) {
            printf("  %s: eplb_rebalance failed: %s\n", backend, eplb_context_last_error(ctx));
            free(t);
            eplb_context_free(ctx);
            return 1;
        }
        if (r >= 0)
            t[r] = now_us() - t0;
    }
    char what[64];
    snprintf(what, sizeof what, "%s eplb_rebalance wall", backend);
    summary(what, t, runs);
    free(t);
    eplb_context_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    const int runs = argc > 1 ? atoi(argv[1]) : 200;
    const int warmup = argc > 2 ? atoi(argv[2]) : 20;
    char error[512];
    const eplb_opencl_api *cl = eplb_opencl_load(error, sizeof error);
    if (!cl || runs < 1 || warmup < 0) {
        fprintf(stderr, "%s\n", cl ? "usage: eplb_opencl_timing [runs] [warm-up runs]" : error);
        return 2;
    }
    eplb_context *ctx;
    if (eplb_context_create(&ctx, "opencl") != EPLB_OK) {
        fprintf(stderr, "opencl backend unavailable: %s\n", eplb_last_error());
        return 2;
    }
    cl_context cl_ctx;
    cl_device_id cl_dev;
    if (eplb_opencl_context_info(ctx, &cl_ctx, &cl_dev) != EPLB_OK) {
        fprintf(stderr, "eplb_opencl_context_info: %s\n", eplb_last_error());
        return 2;
    }
    printf("device: %s\n", eplb_context_device(ctx));
    cl_int err;
    cl_command_queue queue = cl->clCreateCommandQueue(cl_ctx, cl_dev, CL_QUEUE_PROFILING_ENABLE, &err);
    if (!queue) {
        fprintf(stderr, "clCreateCommandQueue: %s\n", eplb_opencl_error_name(err));
        return 2;
    }
    int failures = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const eplb_shape *s = &cases[c].shape;
        eplb_options o;
        eplb_options_init(&o);
        o.policy = cases[c].policy;
        /* EPLB_TIMING_CANDIDATES / EPLB_TIMING_ITERS: other options, to see
         * what the candidates and the swap search cost. */
        if (getenv("EPLB_TIMING_CANDIDATES"))
            o.candidates = atoi(getenv("EPLB_TIMING_CANDIDATES"));
        if (getenv("EPLB_TIMING_ITERS"))
            o.iterations = atoi(getenv("EPLB_TIMING_ITERS"));
        if (getenv("EPLB_TIMING_REFINE"))
            o.refine = atoi(getenv("EPLB_TIMING_REFINE"));
        const size_t LE = (size_t)(s->layers * s->experts), LR = (size_t)(s->layers * s->replicas);
        const int64_t X = eplb_log2phy_width_max(s);
        float *weight = malloc(LE * sizeof *weight);
        int64_t *phy2log = malloc(LR * 8), *logcnt = malloc(LE * 8), *want_p = malloc(LR * 8),
                *want_c = malloc(LE * 8);
        eplb_workload_fill(weight, s->layers, s->experts, 1, 0);
        printf("%s (%lld layers x %lld experts, %lld slots, %lld GPUs, C=%d, I=%d, refine %d):\n",
               cases[c].name, (long long)s->layers, (long long)s->experts, (long long)s->replicas,
               (long long)s->gpus, (int)o.candidates, (int)o.iterations, (int)o.refine);

        cl_mem w = cl->clCreateBuffer(cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                      LE * sizeof *weight, weight, &err);
        cl_mem p = cl->clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, LR * 8, NULL, &err);
        cl_mem n = cl->clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, LE * 8, NULL, &err);
        cl_mem l = cl->clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, LE * (size_t)X * 8, NULL, &err);
        double *t = malloc(sizeof *t * (size_t)runs);
        for (int r = -warmup; r < runs; r++) {
            cl_event gate = cl->clCreateUserEvent(cl_ctx, &err), first, last;
            cl->clEnqueueMarkerWithWaitList(queue, 1, &gate, &first);
            eplb_status st = eplb_rebalance_device(ctx, w, s, &o, p, n, l, X, queue);
            cl->clEnqueueMarkerWithWaitList(queue, 0, NULL, &last);
            cl->clSetUserEventStatus(gate, CL_COMPLETE);
            cl->clWaitForEvents(1, &last);
            cl_ulong t0 = 0, t1 = 0;
            cl->clGetEventProfilingInfo(first, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL);
            cl->clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
            cl->clReleaseEvent(gate);
            cl->clReleaseEvent(first);
            cl->clReleaseEvent(last);
            if (st != EPLB_OK || eplb_device_status(ctx, queue) != EPLB_OK) {
                printf("  eplb_rebalance_device failed: %s\n", eplb_context_last_error(ctx));
                failures++;
                break;
            }
            if (r >= 0)
                t[r] = (double)(t1 - t0) * 1e-3;
            if (r == runs - 1)
                summary("opencl device time (profiling)", t, runs);
        }
        cl->clEnqueueReadBuffer(queue, p, CL_TRUE, 0, LR * 8, phy2log, 0, NULL, NULL);
        cl->clEnqueueReadBuffer(queue, n, CL_TRUE, 0, LE * 8, logcnt, 0, NULL, NULL);
        failures += check_needed_width(cl, ctx, queue, w, s, &o, p, n, l);
        int host_runs = runs < 50 ? runs : 50;
        failures += time_host("opencl", weight, s, &o, host_runs, warmup ? 3 : 0, want_p, want_c);
        failures += time_host("cpu", weight, s, &o, host_runs, warmup ? 3 : 0, want_p, want_c);
        if (memcmp(phy2log, want_p, LR * 8) != 0 || memcmp(logcnt, want_c, LE * 8) != 0) {
            printf("  MISMATCH: the device plan differs from the cpu backend's\n");
            failures++;
        } else {
            printf("  device plan == cpu plan\n");
        }
        free(t);
        cl->clReleaseMemObject(w);
        cl->clReleaseMemObject(p);
        cl->clReleaseMemObject(n);
        cl->clReleaseMemObject(l);
        free(weight); free(phy2log); free(logcnt); free(want_p); free(want_c);
    }
    eplb_context_free(ctx); /* releases the context's hold on the queue first */
    cl->clReleaseCommandQueue(queue);
    return failures ? 1 : 0;
}
