/* The OpenCL device: discovery, choice and the properties its launch
 * settings need (see opencl_device.h). */
#define _GNU_SOURCE
#include "opencl_device.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- device choice --------------------------------------------------------- */

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

/* Whether s is a non-empty string of decimal digits. */
static int is_index(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

void eplb_opencl_device_string(const eplb_opencl_api *cl, cl_device_id d, cl_device_info what, char *out,
                          size_t len)
{
    char full[2048] = ""; /* PoCL's version string alone is over 100 characters */
    if (cl->clGetDeviceInfo(d, what, sizeof full - 1, full, NULL) != CL_SUCCESS)
        snprintf(full, sizeof full, "?");
    snprintf(out, len, "%s", full);
}

/* Every device of the platforms `want` (EPLB_OPENCL_PLATFORM) selects, all
 * when NULL. */
static eplb_status list_devices(const eplb_opencl_api *cl, const char *want, eplb_opencl_device *dev,
                                int *count, char *error, size_t error_len)
{
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint np = 0;
    cl_int err = cl->clGetPlatformIDs(MAX_PLATFORMS, platforms, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0)) {
        snprintf(error, error_len,
                 "no OpenCL platform: the ICD loader found no driver (.icd files in "
                 "/etc/OpenCL/vendors or $OCL_ICD_VENDORS)");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (err != CL_SUCCESS) {
        snprintf(error, error_len, "clGetPlatformIDs failed: %s", eplb_opencl_error_name(err));
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (np > MAX_PLATFORMS)
        np = MAX_PLATFORMS;
    int n = 0, matched_platforms = 0;
    for (cl_uint p = 0; p < np; p++) {
        char pname[128] = "";
        cl->clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = '\0';
        if (want && *want) {
            if (is_index(want) ? (cl_uint)atoi(want) != p : !strcasestr(pname, want))
                continue;
        }
        matched_platforms++;
        cl_device_id ids[MAX_DEVICES];
        cl_uint nd = 0;
        if (cl->clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, ids, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd && d < MAX_DEVICES && n < MAX_DEVICES; d++) {
            dev[n].platform = platforms[p];
            dev[n].device = ids[d];
            dev[n].type = 0;
            cl->clGetDeviceInfo(ids[d], CL_DEVICE_TYPE, sizeof dev[n].type, &dev[n].type, NULL);
            eplb_opencl_device_string(cl, ids[d], CL_DEVICE_NAME, dev[n].name, sizeof dev[n].name);
            snprintf(dev[n].platform_name, sizeof dev[n].platform_name, "%s", pname);
            n++;
        }
    }
    if (want && *want && matched_platforms == 0) {
        snprintf(error, error_len, "EPLB_OPENCL_PLATFORM=%s matches none of the %u OpenCL platforms",
                 want, (unsigned)np);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (n == 0) {
        snprintf(error, error_len, "no OpenCL device on %s", want && *want ? "the chosen platform"
                                                                            : "any platform");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    *count = n;
    return EPLB_OK;
}

int eplb_opencl_is_accelerator_type(cl_device_type type)
{
    return (type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) != 0;
}

/* Why device d cannot run the kernels bit-exactly, or NULL if it can. */
static const char *unsuitable(const eplb_opencl_api *cl, cl_device_id d, char *why, size_t len)
{
    char version[128];
    eplb_opencl_device_string(cl, d, CL_DEVICE_OPENCL_C_VERSION, version, sizeof version);
    int major = 0, minor = 0;
    if (sscanf(version, "OpenCL C %d.%d", &major, &minor) != 2 || major * 10 + minor < 12) {
        snprintf(why, len, "it offers \"%s\", OpenCL C 1.2 is needed", version);
        return why;
    }
    cl_device_fp_config fp = 0;
    cl->clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    if (!(fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT)) {
        snprintf(why, len, "it lacks CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT, and plans must use "
                           "correctly rounded float division (SPEC section 2)");
        return why;
    }
    if (!(fp & CL_FP_ROUND_TO_NEAREST)) {
        snprintf(why, len, "it does not round float32 to nearest");
        return why;
    }
    cl_bool available = CL_FALSE, compiler = CL_FALSE;
    cl->clGetDeviceInfo(d, CL_DEVICE_AVAILABLE, sizeof available, &available, NULL);
    cl->clGetDeviceInfo(d, CL_DEVICE_COMPILER_AVAILABLE, sizeof compiler, &compiler, NULL);
    if (!available || !compiler) {
        snprintf(why, len, "it is %s", !available ? "not available" : "without an OpenCL C compiler");
        return why;
    }
    return NULL;
}

/* Picks the device: `want` (EPLB_OPENCL_DEVICE, index or name substring)
 * among the listed devices, else the first suitable GPU or accelerator, else
 * the first suitable other device. An explicit choice that is unsuitable is
 * an error. */
eplb_status eplb_opencl_choose_device(const eplb_opencl_api *cl, const char *platform, const char *want,
                                      eplb_opencl_device *chosen, char *error, size_t error_len)
{
    eplb_opencl_device dev[MAX_DEVICES];
    int n = 0;
    eplb_status st = list_devices(cl, platform, dev, &n, error, error_len);
    if (st != EPLB_OK)
        return st;
    char why[256];
    if (want && *want) {
        for (int i = 0; i < n; i++) {
            if (is_index(want) ? atoi(want) != i : !strcasestr(dev[i].name, want))
                continue;
            if (unsuitable(cl, dev[i].device, why, sizeof why)) {
                snprintf(error, error_len, "OpenCL device %d (%s) chosen by EPLB_OPENCL_DEVICE is "
                         "unusable: %s", i, dev[i].name, why);
                return EPLB_ERR_BACKEND_UNAVAILABLE;
            }
            *chosen = dev[i];
            return EPLB_OK;
        }
        int used = snprintf(error, error_len, "EPLB_OPENCL_DEVICE=%s matches none of the devices:", want);
        for (int i = 0; i < n && used > 0 && (size_t)used < error_len; i++)
            used += snprintf(error + used, error_len - (size_t)used, " %d: %s;", i, dev[i].name);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    error[0] = '\0';
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            if (eplb_opencl_is_accelerator_type(dev[i].type) != (pass == 0))
                continue;
            if (!unsuitable(cl, dev[i].device, why, sizeof why)) {
                *chosen = dev[i];
                return EPLB_OK;
            }
            if (!error[0])
                snprintf(error, error_len, "no usable OpenCL device: %s is unusable: %s",
                         dev[i].name, why);
        }
    return EPLB_ERR_BACKEND_UNAVAILABLE;
}

/* ---- properties the launch settings need ----------------------------------- */

size_t eplb_opencl_floor_pow2(size_t v)
{
    size_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

size_t eplb_opencl_max_group(const eplb_opencl_api *cl, cl_device_id device)
{
    size_t max_group = 1;
    cl->clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
    size_t dims[3] = {1, 1, 1};
    cl->clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof dims, dims, NULL);
    if (dims[0] < max_group)
        max_group = dims[0];
    return max_group < 1 ? 1 : max_group;
}

size_t eplb_opencl_compute_units(const eplb_opencl_api *cl, cl_device_id device)
{
    cl_uint units = 1;
    cl->clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    return units;
}

/* CL_DEVICE_WARP_SIZE_NV of cl_nv_device_attribute_query. */
int eplb_opencl_nvidia_warp_of_32(const eplb_opencl_api *cl, cl_device_id device)
{
    size_t len = 0;
    if (cl->clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return 0;
    char *extensions = malloc(len + 1);
    if (!extensions)
        return 0;
    int nvidia = cl->clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, len, extensions, NULL) == CL_SUCCESS;
    extensions[len] = '\0';
    nvidia = nvidia && strstr(extensions, "cl_nv_device_attribute_query") != NULL;
    free(extensions);
    cl_uint warp = 0;
    const cl_device_info warp_size_nv = 0x4003; /* CL_DEVICE_WARP_SIZE_NV (cl_ext.h) */
    return nvidia && cl->clGetDeviceInfo(device, warp_size_nv, sizeof warp, &warp, NULL) == CL_SUCCESS &&
           warp == 32;
}

int eplb_opencl_nvidia_sm(const eplb_opencl_api *cl, cl_device_id device)
{
    cl_uint major = 0, minor = 0; /* CL_DEVICE_COMPUTE_CAPABILITY_{MAJOR,MINOR}_NV */
    if (cl->clGetDeviceInfo(device, 0x4000, sizeof major, &major, NULL) == CL_SUCCESS &&
        cl->clGetDeviceInfo(device, 0x4001, sizeof minor, &minor, NULL) == CL_SUCCESS)
        return (int)(major * 10 + minor);
    return 0;
}
