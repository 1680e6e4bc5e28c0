/* eplb_rebalance_incremental_device: the incremental rebalance of SPEC 13 for
 * callers whose weights, running plan and outputs live in device memory.
 *
 * The search of SPEC 13 runs on the host for every backend (incremental.c),
 * so this entry brings the weights and the previous plan down from the
 * caller's stream, plans exactly as eplb_rebalance_incremental does, and puts
 * the plan back on the same stream, where the assemble stage writes the
 * outputs. The plan is therefore the host entry's
 * plan bit for bit on every backend; what the device form saves the caller is
 * the copies and the synchronisation around it. Unlike eplb_rebalance_device
 * it returns only once the outputs are written, and it reports every error,
 * the weights' included, through its own status. */
#include <stdint.h>
#include <stdlib.h>

#include "context.h"
#include "eplb/eplb.h"
#include "incremental.h"
#include "incremental_device.h"
#include "planner.h"

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
    const size_t R = (size_t)shape->replicas;
    /* One host area of the workspace for the weights and the previous plan
     * brought down and the plan made from them. log2phy is built on the
     * device from the plan (planner.h), so its width sizes nothing here.
     * The downloads wait for the work the caller enqueued on stream before
     * this call, which is how the inputs become ready (as for
     * eplb_rebalance_device). */
    const size_t weight_bytes = (L * E * sizeof(float) + 7) / 8 * 8;
    const void *sources[2] = {weight, previous};
    const size_t offsets[2] = {0, weight_bytes};
    const size_t sizes[2] = {L * E * sizeof(float), L * R * sizeof(int64_t)};
    unsigned char *area;
    if ((st = eplb_plan_read_device_buffers(ctx, stream,
                                            weight_bytes + (2 * L * R + L * E) * sizeof(int64_t), 2,
                                            sources, offsets, sizes, &area)) != EPLB_OK)
        return st;
    float *host_weight = (float *)area;
    int64_t *host_previous = (int64_t *)(area + weight_bytes);
    int64_t *host_phy2log = host_previous + L * R, *host_logcnt = host_phy2log + L * R;
    /* The fresh plan inside runs on the backend's own stream, as every host
     * call does; the outputs go back on the caller's. */
    int64_t needed = 0;
    if ((st = eplb_incremental_host(ctx, host_weight, shape, options, host_previous, host_phy2log,
                                    host_logcnt, NULL, 0, &needed)) != EPLB_OK)
        return st;
    if (log2phy_width < needed)
        return eplb_context_fail(ctx, EPLB_ERR_LOG2PHY_TOO_SMALL,
                                 "log2phy width %lld is below the %lld replicas of the most "
                                 "replicated expert; pass a width of at least %lld",
                                 (long long)log2phy_width, (long long)needed, (long long)needed);
    return eplb_plan_write_device_outputs(ctx, shape, host_phy2log, phy2log, logcnt, log2phy,
                                          log2phy_width, stream);
}
