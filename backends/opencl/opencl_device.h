/* The OpenCL device an instance runs on: which one (EPLB_OPENCL_PLATFORM,
 * EPLB_OPENCL_DEVICE, else the first usable GPU or accelerator, else the
 * first usable other device) and the properties its launch settings need.
 * Only device queries: nothing here creates a context or compiles a kernel,
 * so that auto can learn a device's type cheaply and pass over a CPU device. */
#ifndef EPLB_OPENCL_DEVICE_H
#define EPLB_OPENCL_DEVICE_H

#include <stddef.h>

#include "backend.h"
#include "opencl_loader.h"

typedef struct eplb_opencl_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_device_type type;
    char name[256];
    char platform_name[128];
} eplb_opencl_device;

/* Picks the device: `device` (an index or a name substring, NULL: the
 * first usable GPU or accelerator, else the first usable device) among the
 * devices of the platforms `platform` names (likewise, NULL: all). On
 * failure writes why (no platform, no device, a choice that matches none,
 * with the device list, or which capability the devices lack). An explicit
 * choice that is unusable is an error, never a fallback. */
eplb_status eplb_opencl_choose_device(const eplb_opencl_api *cl, const char *platform,
                                      const char *device, eplb_opencl_device *chosen, char *error,
                                      size_t error_len);

/* 1 for a GPU or an accelerator, 0 for a CPU device. */
int eplb_opencl_is_accelerator_type(cl_device_type type);

/* A string property of the device, cut to len; "?" when the query fails. */
void eplb_opencl_device_string(const eplb_opencl_api *cl, cl_device_id d, cl_device_info what,
                               char *out, size_t len);

/* The largest power of two <= v (1 for v < 2). */
size_t eplb_opencl_floor_pow2(size_t v);

/* The largest work-group the device runs in dimension 0. */
size_t eplb_opencl_max_group(const eplb_opencl_api *cl, cl_device_id device);

/* CL_DEVICE_MAX_COMPUTE_UNITS. */
size_t eplb_opencl_compute_units(const eplb_opencl_api *cl, cl_device_id device);

/* Whether the device is an NVIDIA GPU with 32-lane warps (the inline PTX of
 * kernels/warp_team.cl). */
int eplb_opencl_nvidia_warp_of_32(const eplb_opencl_api *cl, cl_device_id device);

/* An NVIDIA device's compute capability, major * 10 + minor, or 0. */
int eplb_opencl_nvidia_sm(const eplb_opencl_api *cl, cl_device_id device);

#endif /* EPLB_OPENCL_DEVICE_H */
