/* The OpenCL device: discovery, choice and the launch knobs for it (see
 * opencl_device.h). */
#define _GNU_SOURCE
#include "opencl_device.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- device choice --------------------------------------------------------- */

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

int eplb_opencl_is_index(const char *s)
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

/* Every device of the platforms EPLB_OPENCL_PLATFORM selects (all when unset). */
static eplb_status list_devices(const eplb_opencl_api *cl, eplb_opencl_device *dev, int *count, char *error,
                                size_t error_len)
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
    const char *want = getenv("EPLB_OPENCL_PLATFORM");
    int n = 0, matched_platforms = 0;
    for (cl_uint p = 0; p < np; p++) {
        char pname[128] = "";
        cl->clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = '\0';
        if (want && *want) {
            if (eplb_opencl_is_index(want) ? (cl_uint)atoi(want) != p : !strcasestr(pname, want))
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

/* Picks the device: EPLB_OPENCL_DEVICE (index or name substring) among the
 * listed devices, else the first suitable GPU or accelerator, else the first
 * suitable other device. An explicit choice that is unsuitable is an error. */
eplb_status eplb_opencl_choose_device(const eplb_opencl_api *cl, eplb_opencl_device *chosen, char *error,
                                 size_t error_len)
{
    eplb_opencl_device dev[MAX_DEVICES];
    int n = 0;
    eplb_status st = list_devices(cl, dev, &n, error, error_len);
    if (st != EPLB_OK)
        return st;
    char why[256];
    const char *want = getenv("EPLB_OPENCL_DEVICE");
    if (want && *want) {
        for (int i = 0; i < n; i++) {
            if (eplb_opencl_is_index(want) ? atoi(want) != i : !strcasestr(dev[i].name, want))
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

/* ---- tuning ---------------------------------------------------------------- */

size_t eplb_opencl_floor_pow2(size_t v)
{
    size_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

size_t eplb_opencl_env_size(const char *name, size_t fallback)
{
    const char *s = getenv(name);
    if (!eplb_opencl_is_index(s))
        return fallback;
    long long v = atoll(s);
    return v >= 1 ? (size_t)v : fallback;
}

/* Whether the device is an NVIDIA GPU with 32-lane warps (the inline PTX of
 * kernels/warp_team.cl): CL_DEVICE_WARP_SIZE_NV of cl_nv_device_attribute_query. */
static int nvidia_warp_of_32(const eplb_opencl_api *cl, cl_device_id device)
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

/* Defaults by device type, then EPLB_OPENCL_* overrides, then device limits.
 * GPUs: work-groups cooperate on each row; CPU devices: one work-item per row
 * (no barriers), which is what a CPU core does best. */
void eplb_opencl_choose_tuning(const eplb_opencl_api *cl, const eplb_opencl_device *d, eplb_opencl_tuning *t)
{
    const int gpu = eplb_opencl_is_accelerator_type(d->type);
    t->group_size = eplb_opencl_env_size("EPLB_OPENCL_WG", gpu ? 64 : 1);
    t->items_per_item = eplb_opencl_env_size("EPLB_OPENCL_ITEMS_PER_THREAD", gpu ? 4 : 1 << 20);
    t->element_size = gpu ? 128 : 16;
    const char *sort = getenv("EPLB_OPENCL_SORT");
    t->rank_sort = sort && *sort ? strcmp(sort, "heap") != 0 : gpu;
    size_t max_group = 1;
    cl->clGetDeviceInfo(d->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
    size_t dims[3] = {1, 1, 1};
    cl->clGetDeviceInfo(d->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof dims, dims, NULL);
    if (dims[0] < max_group)
        max_group = dims[0];
    if (max_group < 1)
        max_group = 1;
    t->group_size = eplb_opencl_floor_pow2(t->group_size < max_group ? t->group_size : max_group);
    if (t->group_size > 1024)
        t->group_size = 1024;
    if (t->element_size > max_group)
        t->element_size = eplb_opencl_floor_pow2(max_group);
    const char *path = getenv("EPLB_OPENCL_PATH");
    t->fused = !(path && strcmp(path, "stages") == 0);
    /* GPUs: 256 work-items share a layer's sort and packings; CPU devices:
     * one work-item per layer runs the cpu algorithm. */
    t->fused_group = eplb_opencl_env_size("EPLB_OPENCL_FUSED_WG", gpu ? 256 : 1);
    t->fused_group = eplb_opencl_floor_pow2(t->fused_group < max_group ? t->fused_group : max_group);
    /* EPLB_OPENCL_FUSED_TEAM: 0, a work-item per packing; auto, teams sized
     * by pack count; N, teams of N. Unset: auto on GPUs (NVIDIA H200: global
     * V3 shapes 453/544 us against 768/1025 with 0, hierarchical 190 against
     * 142), 0 on CPU devices (PoCL takes many minutes to compile the teams). */
    const char *team = getenv("EPLB_OPENCL_FUSED_TEAM");
    t->fused_team = eplb_opencl_env_size("EPLB_OPENCL_FUSED_TEAM", 0);
    if (t->fused_team)
        t->fused_team = eplb_opencl_floor_pow2(t->fused_team);
    t->fused_teams = t->fused_team > 0 || (team && strcmp(team, "auto") == 0) ||
                     (gpu && (!team || !*team));
    /* The one-work-item greedy scans the packs on GPUs (a heap's chain of
     * dependent local reads is slower there) and uses a heap beyond 16
     * packs on CPU devices, like the cpu backend. */
    t->greedy_scan_max = (int)eplb_opencl_env_size("EPLB_OPENCL_GREEDY_SCAN_MAX", gpu ? 1 << 30 : 16);
    /* EPLB_OPENCL_WARP=0 keeps the local-memory exchange on NVIDIA devices. */
    const char *warp = getenv("EPLB_OPENCL_WARP");
    t->warp_teams = t->fused_teams && !(warp && strcmp(warp, "0") == 0) && nvidia_warp_of_32(cl, d->device);
    /* EPLB_OPENCL_SHAPED=0 keeps one plan_fused for every shape on NVIDIA. */
    const char *shaped = getenv("EPLB_OPENCL_SHAPED");
    t->shaped = !(shaped && *shaped) ? t->warp_teams
                : strcmp(shaped, "always") == 0 ? 2
                : strcmp(shaped, "0") != 0;
    /* EPLB_OPENCL_SPLIT=N: N groups per layer share a plan's slot packings
     * (opencl_fused.c), 0 or 1: one; unset (-1): by shape. */
    const char *split = getenv("EPLB_OPENCL_SPLIT");
    t->split = !(split && *split) ? -1 : eplb_opencl_is_index(split) ? atoi(split) : 1;
    cl_uint units = 1;
    cl->clGetDeviceInfo(d->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    t->compute_units = units;
    t->nv_sm = 0;
    if (t->warp_teams) {
        cl_uint major = 0, minor = 0; /* CL_DEVICE_COMPUTE_CAPABILITY_{MAJOR,MINOR}_NV */
        if (cl->clGetDeviceInfo(d->device, 0x4000, sizeof major, &major, NULL) == CL_SUCCESS &&
            cl->clGetDeviceInfo(d->device, 0x4001, sizeof minor, &minor, NULL) == CL_SUCCESS)
            t->nv_sm = (int)(major * 10 + minor);
    }
}
