/* eplb_rebalance_incremental_device: the incremental rebalance of SPEC 13 for
 * callers whose weights, running plan and outputs live in device memory.
 *
 * The search of SPEC 13 runs on the host for every backend (incremental.c),
 * so this entry brings the weights and the previous plan down from the
 * caller's stream, plans exactly as eplb_rebalance_incremental does, and puts
 * the outputs back on the same stream. The plan is therefore the host entry's
 * plan bit for bit on every backend; what the device form saves the caller is
 * the copies and the synchronisation around it. Unlike eplb_rebalance_device
 * it returns only once the outputs are written, and it reports every error,
 * the weights' included, through its own status. */
#include <stdlib.h>

#include "context.h"
#include "eplb/eplb.h"
#include "incremental.h"
#include "incremental_device.h"
#include "validation.h"

/* Reports a failed backend copy with the backend's own message. */
static eplb_status copy_failed(eplb_context *ctx, eplb_status status, const char *what)
{
    return eplb_context_fail(ctx, status, "%s backend: %s: %s", ctx->backend_name, what,
                             ctx->backend->error);
}

/* The host copies of one call: inputs brought down, outputs planned into. */
typedef struct host_arrays {
    float *weight;
    int64_t *previous, *phy2log, *logcnt, *log2phy;
} host_arrays;

static void host_arrays_free(host_arrays *a)
{
    free(a->weight);
    free(a->previous);
    free(a->phy2log);
    free(a->logcnt);
    free(a->log2phy);
}

eplb_status eplb_incremental_device(eplb_context *ctx, const void *weight, const eplb_shape *shape,
                                    const eplb_options *options, const void *previous,
                                    void *phy2log, void *logcnt, void *log2phy,
                                    int64_t log2phy_width, void *stream)
{
    eplb_backend *be = ctx->backend;
    const eplb_backend_i *f = be->iface;
    if (!f->set_stream)
        return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                 "the %s backend has no device-pointer API; use "
                                 "eplb_rebalance_incremental",
                                 ctx->backend_name);
    if (!weight || !shape || !previous || !phy2log || !logcnt || !log2phy)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                 "weight, shape, previous, phy2log, logcnt and log2phy must not "
                                 "be NULL");
    /* The shape sizes the copies, so it is checked before any of them; the
     * options and the previous plan are checked by the host entry, before it
     * plans, and nothing reaches the outputs unless it succeeds. */
    const char *why;
    eplb_status st = eplb_shape_check(shape, &why);
    if (st != EPLB_OK)
        return eplb_context_fail(ctx, st, "invalid shape: %s", why);
    if (log2phy_width < 1)
        return eplb_context_fail(ctx, EPLB_ERR_LOG2PHY_TOO_SMALL,
                                 "log2phy width %lld must be >= 1", (long long)log2phy_width);

    const size_t L = (size_t)shape->layers, E = (size_t)shape->experts;
    const size_t R = (size_t)shape->replicas, X = (size_t)log2phy_width;
    host_arrays a = {
        malloc(L * E * sizeof(float)), malloc(L * R * sizeof(int64_t)),
        malloc(L * R * sizeof(int64_t)), malloc(L * E * sizeof(int64_t)),
        malloc(L * E * X * sizeof(int64_t)),
    };
    if (!a.weight || !a.previous || !a.phy2log || !a.logcnt || !a.log2phy) {
        host_arrays_free(&a);
        return eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY,
                                 "cannot allocate host copies of a %zu x %zu plan", L, R);
    }
    /* The downloads wait for the work the caller enqueued on stream before
     * this call, which is how the inputs become ready (as for
     * eplb_rebalance_device). */
    if ((st = f->set_stream(be, stream)) != EPLB_OK ||
        (st = f->download(be, a.weight, weight, L * E * sizeof(float))) != EPLB_OK ||
        (st = f->download(be, a.previous, previous, L * R * sizeof(int64_t))) != EPLB_OK) {
        st = copy_failed(ctx, st, "reading the weights and the previous plan");
        goto done;
    }
    /* The fresh plan inside runs on the backend's own stream, as every host
     * call does; the uploads go back on the caller's. */
    if ((st = eplb_incremental_host(ctx, a.weight, shape, options, a.previous, a.phy2log,
                                    a.logcnt, a.log2phy, log2phy_width, NULL)) != EPLB_OK)
        goto done;
    if ((st = f->set_stream(be, stream)) != EPLB_OK ||
        (st = f->upload(be, phy2log, a.phy2log, L * R * sizeof(int64_t))) != EPLB_OK ||
        (st = f->upload(be, logcnt, a.logcnt, L * E * sizeof(int64_t))) != EPLB_OK ||
        (st = f->upload(be, log2phy, a.log2phy, L * E * X * sizeof(int64_t))) != EPLB_OK)
        st = copy_failed(ctx, st, "writing the plan");
done:
    host_arrays_free(&a);
    return st;
}
