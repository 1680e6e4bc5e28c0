/* OpenCL interop for eplb_rebalance_device: the cl_context and device of an
 * "opencl" context, so a caller can create its cl_mem buffers and command
 * queue where the backend can use them. Include after <CL/cl.h> is reachable. */
#ifndef EPLB_EPLB_OPENCL_H
#define EPLB_EPLB_OPENCL_H

#include <CL/cl.h>

#include "eplb/eplb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Untyped form (libeplb itself needs no OpenCL headers): *cl_context_out and
 * *cl_device_out receive a cl_context and a cl_device_id.
 * EPLB_ERR_UNSUPPORTED unless the context's backend is "opencl". */
EPLB_EXTERN eplb_status eplb_opencl_native_handles(const eplb_context *ctx, void **cl_context_out,
                                            void **cl_device_out);

/* The cl_context (shared by every opencl context on that device in the
 * process, alive until the process ends) and the device of ctx. Buffers and
 * queues passed to eplb_rebalance_device must belong to that cl_context. */
static inline eplb_status eplb_opencl_context_info(const eplb_context *ctx, cl_context *context,
                                                   cl_device_id *device)
{
    void *c = NULL, *d = NULL;
    eplb_status status = eplb_opencl_native_handles(ctx, &c, &d);
    if (status == EPLB_OK) {
        if (context)
            *context = (cl_context)c;
        if (device)
            *device = (cl_device_id)d;
    }
    return status;
}

#ifdef __cplusplus
}
#endif

#endif /* EPLB_EPLB_OPENCL_H */
