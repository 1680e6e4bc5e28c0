/* The OpenCL device an instance runs on: which one (EPLB_OPENCL_PLATFORM,
 * EPLB_OPENCL_DEVICE, else the first usable GPU or accelerator, else the
 * first usable other device) and the launch knobs for it. Only device
 * queries: nothing here creates a context or compiles a kernel, so that
 * auto can learn a device's type cheaply and pass over a CPU device. */
#ifndef EPLB_OPENCL_DEVICE_H
#define EPLB_OPENCL_DEVICE_H

#include "opencl_backend.h"

typedef struct eplb_opencl_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_device_type type;
    char name[256];
    char platform_name[128];
} eplb_opencl_device;

/* Picks the device; on failure writes why (no platform, no device, a
 * non-matching EPLB_OPENCL_* value with the device list, or which
 * capability the devices lack). An explicit choice that is unusable is an
 * error, never a fallback. */
eplb_status eplb_opencl_choose_device(const eplb_opencl_api *cl, eplb_opencl_device *chosen,
                                      char *error, size_t error_len);

/* Defaults by device type, then EPLB_OPENCL_* overrides, then device limits. */
void eplb_opencl_choose_tuning(const eplb_opencl_api *cl, const eplb_opencl_device *d,
                               eplb_opencl_tuning *t);

/* 1 for a GPU or an accelerator, 0 for a CPU device. */
int eplb_opencl_is_accelerator_type(cl_device_type type);

/* A string property of the device, cut to len; "?" when the query fails. */
void eplb_opencl_device_string(const eplb_opencl_api *cl, cl_device_id d, cl_device_info what,
                               char *out, size_t len);

/* Whether s is a non-empty string of decimal digits. */
int eplb_opencl_is_index(const char *s);

/* The largest power of two <= v (1 for v < 2). */
size_t eplb_opencl_floor_pow2(size_t v);

/* The value of environment variable name when it is a positive integer, else fallback. */
size_t eplb_opencl_env_size(const char *name, size_t fallback);

#endif /* EPLB_OPENCL_DEVICE_H */
