/* The public API (include/eplb/eplb.h): argument handling, the status
 * strings, and the life of a context. The work itself is in planner.c,
 * backends are found by registry.c, and the checks of shapes and options are
 * in validation.c, so that this file is the top of the library and nothing
 * else calls into it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "eplb/eplb.h"
#include "incremental.h"
#include "incremental_device.h"
#include "planner.h"
#include "registry.h"

unsigned eplb_version_number(void) { return EPLB_VERSION_NUMBER; }
const char *eplb_version_string(void) { return EPLB_VERSION_STRING; }

const char *eplb_status_string(eplb_status status)
{
    switch (status) {
    case EPLB_OK: return "success";
    case EPLB_ERR_INVALID_ARGUMENT: return "invalid argument";
    case EPLB_ERR_INVALID_SHAPE: return "invalid shape";
    case EPLB_ERR_INVALID_WEIGHT: return "invalid weight (NaN, infinite or negative)";
    case EPLB_ERR_LOG2PHY_TOO_SMALL: return "log2phy width too small";
    case EPLB_ERR_POLICY: return "policy not applicable to this shape";
    case EPLB_ERR_OUT_OF_MEMORY: return "out of memory";
    case EPLB_ERR_BACKEND_UNAVAILABLE: return "backend unavailable";
    case EPLB_ERR_BACKEND_FAILURE: return "backend failure";
    case EPLB_ERR_UNSUPPORTED: return "not supported by this backend";
    case EPLB_ERR_IO: return "input/output error";
    case EPLB_ERR_PARSE: return "malformed input";
    case EPLB_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

eplb_status eplb_context_create(eplb_context **out, const char *backend)
{
    if (!out)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT, "out must not be NULL");
    *out = NULL;
    const char *source = "argument";
    if (!backend) {
        backend = getenv("EPLB_BACKEND");
        source = "EPLB_BACKEND";
    }
    if (!backend || !*backend)
        backend = "auto";

    eplb_backend *instance = NULL;
    int chosen = -1;
    if (strcmp(backend, "auto") == 0) {
        /* Best available: cuda, then opencl on a GPU device (the registry
         * passes over a CPU device before compiling anything), then cpu. */
        char skipped[3072] = "";
        for (int i = 0; i < EPLB_REGISTRY_COUNT && !instance; i++) {
            char why[1024] = "";
            if (eplb_registry_open_for_auto(i, &instance, why, sizeof why) == EPLB_OK)
                chosen = i;
            if (!instance) {
                size_t used = strlen(skipped);
                snprintf(skipped + used, sizeof skipped - used, "%s%s: %s", used ? "; " : "",
                         eplb_registry_name(i), why);
            }
        }
        if (!instance)
            return eplb_thread_fail(EPLB_ERR_BACKEND_UNAVAILABLE, "no backend available: %s",
                                    skipped);
        /* eplb_last_error then says why faster backends were skipped. */
        eplb_thread_fail(EPLB_OK, "%s", skipped);
    } else {
        for (int i = 0; i < EPLB_REGISTRY_COUNT; i++)
            if (strcmp(backend, eplb_registry_name(i)) == 0)
                chosen = i;
        if (chosen < 0)
            return eplb_thread_fail(EPLB_ERR_BACKEND_UNAVAILABLE,
                                    "unknown backend '%s' (from %s): use auto, cpu, opencl or cuda",
                                    backend, source);
        char why[1024] = "";
        eplb_status st = eplb_registry_open(chosen, &instance, why, sizeof why);
        if (st != EPLB_OK)
            return eplb_thread_fail(EPLB_ERR_BACKEND_UNAVAILABLE,
                                    "backend '%s' (from %s) is unavailable: %s", backend, source,
                                    why);
    }

    eplb_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        instance->iface->free(instance);
        return eplb_thread_fail(EPLB_ERR_OUT_OF_MEMORY, "cannot allocate a context");
    }
    ctx->backend = instance;
    ctx->backend_name = eplb_registry_name(chosen);
    if (instance->iface->start)
        instance->iface->start(instance);
    *out = ctx;
    return EPLB_OK;
}

void eplb_context_free(eplb_context *ctx)
{
    if (!ctx)
        return;
    eplb_workspace_release(ctx);
    ctx->backend->iface->free(ctx->backend);
    free(ctx);
}

const char *eplb_context_backend(const eplb_context *ctx) { return ctx ? ctx->backend_name : ""; }

const char *eplb_context_device(const eplb_context *ctx)
{
    return ctx ? ctx->backend->iface->device_name(ctx->backend) : "";
}

/* The start of every call that plans on a context: a NULL context is refused
 * through the thread's last error (there is no context to hold the message),
 * and the context's last error is cleared, so it names this call's failure or
 * nothing. */
static eplb_status begin_context_call(eplb_context *ctx)
{
    if (!ctx)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT, "context must not be NULL");
    ctx->error[0] = '\0';
    return EPLB_OK;
}

eplb_status eplb_rebalance(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                           const eplb_options *options, int64_t *phy2log, int64_t *logcnt,
                           int64_t *log2phy, int64_t log2phy_width, int64_t *width_needed)
{
    eplb_status st = begin_context_call(ctx);
    if (st != EPLB_OK)
        return st;
    return eplb_plan_host(ctx, weight, shape, options, phy2log, logcnt, log2phy, log2phy_width,
                          width_needed);
}

eplb_status eplb_rebalance_incremental(eplb_context *ctx, const float *weight,
                                       const eplb_shape *shape, const eplb_options *options,
                                       const int64_t *previous, int64_t *phy2log, int64_t *logcnt,
                                       int64_t *log2phy, int64_t log2phy_width,
                                       int64_t *width_needed)
{
    eplb_status st = begin_context_call(ctx);
    if (st != EPLB_OK)
        return st;
    return eplb_incremental_host(ctx, weight, shape, options, previous, phy2log, logcnt, log2phy,
                                 log2phy_width, width_needed);
}

eplb_status eplb_rebalance_incremental_device(eplb_context *ctx, const void *weight,
                                              const eplb_shape *shape,
                                              const eplb_options *options, const void *previous,
                                              void *phy2log, void *logcnt, void *log2phy,
                                              int64_t log2phy_width, void *stream)
{
    eplb_status st = begin_context_call(ctx);
    if (st != EPLB_OK)
        return st;
    return eplb_incremental_device(ctx, weight, shape, options, previous, phy2log, logcnt, log2phy,
                                   log2phy_width, stream);
}

eplb_status eplb_rebalance_device(eplb_context *ctx, const void *weight, const eplb_shape *shape,
                                  const eplb_options *options, void *phy2log, void *logcnt,
                                  void *log2phy, int64_t log2phy_width, void *stream)
{
    eplb_status st = begin_context_call(ctx);
    if (st != EPLB_OK)
        return st;
    return eplb_plan_device(ctx, weight, shape, options, phy2log, logcnt, log2phy, log2phy_width,
                            stream);
}

eplb_status eplb_device_status(eplb_context *ctx, void *stream)
{
    eplb_status st = begin_context_call(ctx);
    return st != EPLB_OK ? st : eplb_plan_device_status(ctx, stream, NULL);
}

eplb_status eplb_device_log2phy_width(eplb_context *ctx, void *stream, int64_t *width)
{
    eplb_status st = begin_context_call(ctx);
    if (st != EPLB_OK)
        return st;
    if (!width)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT, "width must not be NULL");
    return eplb_plan_device_status(ctx, stream, width);
}

int eplb_backend_count(void) { return EPLB_REGISTRY_COUNT; }

const char *eplb_backend_name(int index) { return eplb_registry_name(index); }

int eplb_backend_available(int index, const char **reason)
{
    return eplb_registry_probe(index, reason);
}

/* Declared again here because include/eplb/eplb_opencl.h, which declares it
 * for callers, needs the OpenCL headers, and libeplb is built without them. */
EPLB_EXTERN eplb_status eplb_opencl_native_handles(const eplb_context *ctx, void **cl_context_out,
                                                   void **cl_device_out);

/* The opencl backend's state begins with eplb_opencl_handles
 * (backends/opencl/opencl_interop.h): cl_context, cl_device_id, queue, all
 * pointers, so they are read here without OpenCL headers. */
eplb_status eplb_opencl_native_handles(const eplb_context *ctx, void **cl_context_out,
                                       void **cl_device_out)
{
    if (!ctx || !cl_context_out || !cl_device_out)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT, "context and outputs must not be NULL");
    if (strcmp(ctx->backend_name, "opencl") != 0)
        return eplb_thread_fail(EPLB_ERR_UNSUPPORTED, "the context's backend is %s, not opencl",
                                ctx->backend_name);
    void *const *handles = (void *const *)ctx->backend->context;
    *cl_context_out = handles[0];
    *cl_device_out = handles[1];
    return EPLB_OK;
}
