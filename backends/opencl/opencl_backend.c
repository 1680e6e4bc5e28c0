/* The OpenCL backend: runtime and device choice, the per-process program
 * cache, memory, command queues and kernel launches. The stages themselves
 * are in opencl_pack.c and opencl_glue.c, their kernels in the kernels/ folder. */
#define _GNU_SOURCE
#include "opencl_backend.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Embedded at build time by cmake/EmbedKernels.cmake. */
extern const char *const eplb_opencl_kernel_sources[];
extern const char *const eplb_opencl_kernel_names[];
extern const unsigned eplb_opencl_kernel_count;

static const char *const kernel_names[EPLB_CLK_COUNT] = {
    [EPLB_CLK_CHECK_WEIGHTS] = "eplb_check_weights",
    [EPLB_CLK_GROUP_LOADS] = "eplb_group_loads",
    [EPLB_CLK_NODE_LAYOUT] = "eplb_node_layout",
    [EPLB_CLK_REPLICATE] = "eplb_replicate",
    [EPLB_CLK_SLOT_LOADS] = "eplb_slot_loads",
    [EPLB_CLK_ASSEMBLE_SLOTS] = "eplb_assemble_slots",
    [EPLB_CLK_ASSEMBLE_EXPERTS] = "eplb_assemble_experts",
    [EPLB_CLK_PACK_KEYS] = "eplb_pack_keys",
    [EPLB_CLK_PACK_RANK] = "eplb_pack_rank",
    [EPLB_CLK_PACK_HEAPSORT] = "eplb_pack_heapsort",
    [EPLB_CLK_PACK_GREEDY] = "eplb_pack_greedy",
    [EPLB_CLK_PACK_SWAP] = "eplb_pack_swap",
    [EPLB_CLK_PACK_SELECT] = "eplb_pack_select",
    [EPLB_CLK_PLAN_FUSED] = "eplb_plan_fused",
};

/* ---- device choice --------------------------------------------------------- */

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

typedef struct device_entry {
    cl_platform_id platform;
    cl_device_id device;
    cl_device_type type;
    char name[256];
    char platform_name[128];
} device_entry;

static int is_index(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static void device_string(const eplb_opencl_api *cl, cl_device_id d, cl_device_info what, char *out,
                          size_t len)
{
    char full[2048] = ""; /* PoCL's version string alone is over 100 characters */
    if (cl->clGetDeviceInfo(d, what, sizeof full - 1, full, NULL) != CL_SUCCESS)
        snprintf(full, sizeof full, "?");
    snprintf(out, len, "%s", full);
}

/* Every device of the platforms EPLB_OPENCL_PLATFORM selects (all when unset). */
static eplb_status list_devices(const eplb_opencl_api *cl, device_entry *dev, int *count, char *error,
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
            device_string(cl, ids[d], CL_DEVICE_NAME, dev[n].name, sizeof dev[n].name);
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

static int is_accelerator_type(cl_device_type type)
{
    return (type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) != 0;
}

/* Why device d cannot run the kernels bit-exactly, or NULL if it can. */
static const char *unsuitable(const eplb_opencl_api *cl, cl_device_id d, char *why, size_t len)
{
    char version[128];
    device_string(cl, d, CL_DEVICE_OPENCL_C_VERSION, version, sizeof version);
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
static eplb_status choose_device(const eplb_opencl_api *cl, device_entry *chosen, char *error,
                                 size_t error_len)
{
    device_entry dev[MAX_DEVICES];
    int n = 0;
    eplb_status st = list_devices(cl, dev, &n, error, error_len);
    if (st != EPLB_OK)
        return st;
    char why[256];
    const char *want = getenv("EPLB_OPENCL_DEVICE");
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
            if (is_accelerator_type(dev[i].type) != (pass == 0))
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

static size_t floor_pow2(size_t v)
{
    size_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

static size_t env_size(const char *name, size_t fallback)
{
    const char *s = getenv(name);
    if (!is_index(s))
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
static void choose_tuning(const eplb_opencl_api *cl, const device_entry *d, eplb_opencl_tuning *t)
{
    const int gpu = is_accelerator_type(d->type);
    t->group_size = env_size("EPLB_OPENCL_WG", gpu ? 64 : 1);
    t->items_per_item = env_size("EPLB_OPENCL_ITEMS_PER_THREAD", gpu ? 4 : 1 << 20);
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
    t->group_size = floor_pow2(t->group_size < max_group ? t->group_size : max_group);
    if (t->group_size > 1024)
        t->group_size = 1024;
    if (t->element_size > max_group)
        t->element_size = floor_pow2(max_group);
    const char *path = getenv("EPLB_OPENCL_PATH");
    t->fused = !(path && strcmp(path, "stages") == 0);
    /* GPUs: 256 work-items share a layer's sort and packings; CPU devices:
     * one work-item per layer runs the cpu algorithm. */
    t->fused_group = env_size("EPLB_OPENCL_FUSED_WG", gpu ? 256 : 1);
    t->fused_group = floor_pow2(t->fused_group < max_group ? t->fused_group : max_group);
    /* EPLB_OPENCL_FUSED_TEAM: 0, a work-item per packing; auto, teams sized
     * by pack count; N, teams of N. Unset: auto on GPUs (NVIDIA H200: global
     * V3 shapes 453/544 us against 768/1025 with 0, hierarchical 190 against
     * 142), 0 on CPU devices (PoCL takes many minutes to compile the teams). */
    const char *team = getenv("EPLB_OPENCL_FUSED_TEAM");
    t->fused_team = env_size("EPLB_OPENCL_FUSED_TEAM", 0);
    if (t->fused_team)
        t->fused_team = floor_pow2(t->fused_team);
    t->fused_teams = t->fused_team > 0 || (team && strcmp(team, "auto") == 0) ||
                     (gpu && (!team || !*team));
    /* The one-work-item greedy scans the packs on GPUs (a heap's chain of
     * dependent local reads is slower there) and uses a heap beyond 16
     * packs on CPU devices, like the cpu backend. */
    t->greedy_scan_max = (int)env_size("EPLB_OPENCL_GREEDY_SCAN_MAX", gpu ? 1 << 30 : 16);
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
    t->split = !(split && *split) ? -1 : is_index(split) ? atoi(split) : 1;
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

/* ---- program cache: one cl_context and program per device and options ------ */

typedef struct program_entry {
    cl_device_id device;
    char options[512];
    cl_context context;
    cl_program program;
} program_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static program_entry cache[16];
static int cache_used;

static eplb_status build_program(const eplb_opencl_api *cl, const device_entry *d, const char *options,
                                 cl_context *out_context, cl_program *out_program, char *error,
                                 size_t error_len)
{
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
    cl_context context = cl->clCreateContext(props, 1, &d->device, NULL, NULL, &err);
    if (!context) {
        snprintf(error, error_len, "clCreateContext on %s failed: %s", d->name,
                 eplb_opencl_error_name(err));
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    cl_program program = cl->clCreateProgramWithSource(
        context, eplb_opencl_kernel_count, (const char **)eplb_opencl_kernel_sources, NULL, &err);
    if (!program) {
        snprintf(error, error_len, "clCreateProgramWithSource failed: %s", eplb_opencl_error_name(err));
        cl->clReleaseContext(context);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    err = cl->clBuildProgram(program, 1, &d->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[16384] = "";
        cl->clGetProgramBuildInfo(program, d->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        log[sizeof log - 1] = '\0';
        /* The registry keeps about 500 characters: the start of the log says most. */
        snprintf(error, error_len, "building the kernels for %s failed (%s, options \"%s\"): %s",
                 d->name, eplb_opencl_error_name(err), options, log[0] ? log : "(no build log)");
        cl->clReleaseProgram(program);
        cl->clReleaseContext(context);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    *out_context = context;
    *out_program = program;
    return EPLB_OK;
}

/* The cached context and program for (device, options), built on first use.
 * Entries live as long as the process: many eplb contexts share them. */
static eplb_status get_program(const eplb_opencl_api *cl, const device_entry *d, const char *options,
                               cl_context *context, cl_program *program, char *error,
                               size_t error_len)
{
    eplb_status st = EPLB_OK;
    pthread_mutex_lock(&cache_lock);
    int i = 0;
    while (i < cache_used && !(cache[i].device == d->device && strcmp(cache[i].options, options) == 0))
        i++;
    if (i == cache_used) {
        if (cache_used == (int)(sizeof cache / sizeof cache[0])) {
            snprintf(error, error_len, "too many OpenCL device configurations in one process");
            st = EPLB_ERR_BACKEND_UNAVAILABLE;
        } else {
            st = build_program(cl, d, options, &cache[i].context, &cache[i].program, error, error_len);
            if (st == EPLB_OK) {
                cache[i].device = d->device;
                snprintf(cache[i].options, sizeof cache[i].options, "%s", options);
                cache_used++;
            }
        }
    }
    if (st == EPLB_OK) {
        *context = cache[i].context;
        *program = cache[i].program;
        cl->clRetainContext(*context); /* released by the instance */
    }
    pthread_mutex_unlock(&cache_lock);
    return st;
}

/* ---- instance --------------------------------------------------------------- */

static void opencl_free(eplb_backend *backend)
{
    if (!backend)
        return;
    eplb_opencl *s = eplb_opencl_state(backend);
    if (s) {
        const eplb_opencl_api *cl = s->cl;
        for (int k = 0; s->profile && k < EPLB_CLK_COUNT; k++)
            if (s->kernel_runs[k])
                fprintf(stderr, "eplb opencl profile: %-24s %8ld runs %12.1f us total %10.1f us each\n",
                        kernel_names[k], s->kernel_runs[k], s->kernel_us[k],
                        s->kernel_us[k] / (double)s->kernel_runs[k]);
        for (int k = 0; k < EPLB_CLK_COUNT; k++)
            if (s->kernel[k])
                cl->clReleaseKernel(s->kernel[k]);
        for (int k = 0; k < EPLB_OPENCL_SHAPED_KERNELS; k++) {
            if (s->shaped[k].kernel)
                cl->clReleaseKernel(s->shaped[k].kernel);
            if (s->shaped[k].program)
                cl->clReleaseProgram(s->shaped[k].program);
        }
        for (int i = 0; i < 4; i++)
            if (s->scratch[i])
                cl->clReleaseMemObject(s->scratch[i]);
        if (s->handles.queue && s->handles.queue != s->own_queue)
            cl->clReleaseCommandQueue(s->handles.queue);
        if (s->own_queue)
            cl->clReleaseCommandQueue(s->own_queue);
        if (s->handles.context)
            cl->clReleaseContext(s->handles.context);
        free(s);
    }
    free(backend);
}

static const char *opencl_device_name(eplb_backend *backend)
{
    return eplb_opencl_state(backend)->name;
}

static int opencl_is_accelerator(eplb_backend *backend)
{
    return is_accelerator_type(eplb_opencl_state(backend)->type);
}

static eplb_status cl_fail(eplb_backend *backend, cl_int err, const char *what)
{
    eplb_status st = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                             err == CL_INVALID_BUFFER_SIZE
                         ? EPLB_ERR_OUT_OF_MEMORY
                         : EPLB_ERR_BACKEND_FAILURE;
    return eplb_backend_error(backend, st, "%s failed: %s", what, eplb_opencl_error_name(err));
}

static eplb_status opencl_buffer_alloc(eplb_backend *backend, size_t bytes, void **out)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_int err = CL_SUCCESS;
    cl_mem mem = s->cl->clCreateBuffer(s->handles.context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!mem) {
        eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes on %s: %s",
                           bytes, s->name, eplb_opencl_error_name(err));
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    *out = mem;
    return EPLB_OK;
}

static void opencl_buffer_free(eplb_backend *backend, void *buffer)
{
    /* Released once the commands that use it are done (OpenCL rule). */
    if (buffer)
        eplb_opencl_state(backend)->cl->clReleaseMemObject((cl_mem)buffer);
}

static eplb_status opencl_upload(eplb_backend *backend, void *dst, const void *src_host, size_t bytes)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_int err = s->cl->clEnqueueWriteBuffer(s->handles.queue, (cl_mem)dst, CL_TRUE, 0, bytes,
                                             src_host, 0, NULL, NULL);
    return err == CL_SUCCESS ? EPLB_OK : cl_fail(backend, err, "upload (clEnqueueWriteBuffer)");
}

static eplb_status opencl_download(eplb_backend *backend, void *dst_host, const void *src, size_t bytes)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_int err = s->cl->clEnqueueReadBuffer(s->handles.queue, (cl_mem)src, CL_TRUE, 0, bytes,
                                            dst_host, 0, NULL, NULL);
    return err == CL_SUCCESS ? EPLB_OK : cl_fail(backend, err, "download (clEnqueueReadBuffer)");
}

/* A caller's queue must belong to this backend's cl_context (its cl_mem
 * buffers too) and run in order: the stages depend on each other. */
static eplb_status opencl_set_stream(eplb_backend *backend, void *stream)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    const eplb_opencl_api *cl = s->cl;
    cl_command_queue queue = stream ? (cl_command_queue)stream : s->own_queue;
    if (queue == s->handles.queue)
        return EPLB_OK;
    if (queue != s->own_queue) {
        cl_context context = NULL;
        cl_command_queue_properties props = 0;
        cl_int err = cl->clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, NULL);
        if (err != CL_SUCCESS)
            return eplb_backend_error(backend, EPLB_ERR_INVALID_ARGUMENT,
                                      "the stream is not a valid cl_command_queue (%s)",
                                      eplb_opencl_error_name(err));
        if (context != s->handles.context)
            return eplb_backend_error(backend, EPLB_ERR_INVALID_ARGUMENT,
                                      "the cl_command_queue belongs to another cl_context: create "
                                      "queues and buffers in the eplb context's own cl_context");
        cl->clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
        if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
            return eplb_backend_error(backend, EPLB_ERR_INVALID_ARGUMENT,
                                      "the cl_command_queue is out of order; eplb needs an in-order queue");
        cl->clRetainCommandQueue(queue);
    }
    if (s->handles.queue != s->own_queue)
        cl->clReleaseCommandQueue(s->handles.queue);
    s->handles.queue = queue;
    return EPLB_OK;
}

static eplb_status opencl_synchronize(eplb_backend *backend)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_int err = s->cl->clFinish(s->handles.queue);
    return err == CL_SUCCESS ? EPLB_OK : cl_fail(backend, err, "clFinish");
}

/* ---- launches ------------------------------------------------------------- */

static eplb_status launch(eplb_backend *backend, eplb_opencl_kernel_id id, cl_kernel kernel,
                          const eplb_opencl_arg *args, int nargs, cl_uint dims,
                          const size_t *global, const size_t *local)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (!kernel)
        kernel = s->kernel[id];
    for (int i = 0; i < nargs; i++) {
        cl_int err = s->cl->clSetKernelArg(kernel, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return eplb_backend_error(backend, EPLB_ERR_INTERNAL, "%s: argument %d: %s",
                                      kernel_names[id], i, eplb_opencl_error_name(err));
    }
    cl_event done = NULL;
    const int profile = s->profile && s->handles.queue == s->own_queue;
    cl_int err = s->cl->clEnqueueNDRangeKernel(s->handles.queue, kernel, dims, NULL, global, local, 0,
                                               NULL, profile ? &done : NULL);
    if (err != CL_SUCCESS)
        return cl_fail(backend, err, kernel_names[id]);
    if (done) {
        cl_ulong start = 0, end = 0;
        s->cl->clWaitForEvents(1, &done);
        s->cl->clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
        s->cl->clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
        s->cl->clReleaseEvent(done);
        s->kernel_us[id] += (double)(end - start) * 1e-3;
        s->kernel_runs[id]++;
    }
    return EPLB_OK;
}

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

eplb_status eplb_opencl_run_elements(eplb_backend *backend, eplb_opencl_kernel_id id,
                                     const eplb_opencl_arg *args, int nargs, size_t count)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (count == 0)
        return EPLB_OK;
    size_t local = s->tuning.element_size;
    if (local > s->kernel_group[id])
        local = s->kernel_group[id];
    size_t global = round_up(count, local);
    return launch(backend, id, NULL, args, nargs, 1, &global, &local);
}

eplb_status eplb_opencl_run_rows(eplb_backend *backend, eplb_opencl_kernel_id id,
                                 const eplb_opencl_arg *args, int nargs, size_t rows, size_t work)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (rows == 0)
        return EPLB_OK;
    const size_t per = s->tuning.items_per_item;
    size_t local = 1;
    while (local < s->kernel_group[id] && local * per < work)
        local *= 2;
    size_t global = rows * local;
    return launch(backend, id, NULL, args, nargs, 1, &global, &local);
}

eplb_status eplb_opencl_run_items(eplb_backend *backend, eplb_opencl_kernel_id id,
                                  const eplb_opencl_arg *args, int nargs, size_t items,
                                  size_t packings)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (items == 0 || packings == 0)
        return EPLB_OK;
    size_t local0 = s->tuning.element_size;
    if (local0 > s->kernel_group[id])
        local0 = s->kernel_group[id];
    while (local0 > 1 && local0 / 2 >= items)
        local0 /= 2; /* short rows: fewer idle work-items */
    const size_t global[2] = {round_up(items, local0), packings};
    const size_t local[2] = {local0, 1};
    return launch(backend, id, NULL, args, nargs, 2, global, local);
}

eplb_status eplb_opencl_run_groups_with(eplb_backend *backend, eplb_opencl_kernel_id id,
                                        cl_kernel kernel, const eplb_opencl_arg *args, int nargs,
                                        size_t groups, size_t local)
{
    if (groups == 0)
        return EPLB_OK;
    const size_t global = groups * local;
    return launch(backend, id, kernel, args, nargs, 1, &global, &local);
}

eplb_status eplb_opencl_run_groups(eplb_backend *backend, eplb_opencl_kernel_id id,
                                   const eplb_opencl_arg *args, int nargs, size_t groups,
                                   size_t local)
{
    return eplb_opencl_run_groups_with(backend, id, NULL, args, nargs, groups, local);
}

eplb_status eplb_opencl_build_kernel(eplb_backend *backend, const char *defines, const char *name,
                                     cl_program *program, cl_kernel *kernel)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    const eplb_opencl_api *cl = s->cl;
    char options[1100];
    snprintf(options, sizeof options, "%s %s", s->options, defines);
    cl_int err;
    *kernel = NULL;
    *program = cl->clCreateProgramWithSource(s->handles.context, eplb_opencl_kernel_count,
                                             (const char **)eplb_opencl_kernel_sources, NULL, &err);
    if (!*program)
        return cl_fail(backend, err, "clCreateProgramWithSource");
    err = cl->clBuildProgram(*program, 1, &s->handles.device, options, NULL, NULL);
    if (err == CL_SUCCESS)
        *kernel = cl->clCreateKernel(*program, name, &err);
    if (!*kernel) {
        cl->clReleaseProgram(*program);
        *program = NULL;
        return cl_fail(backend, err, "building a shape-specific plan_fused");
    }
    return EPLB_OK;
}

static eplb_status scratch(eplb_backend *backend, int which, size_t bytes, int zero_new, cl_mem *out)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (bytes == 0)
        bytes = 1;
    if (zero_new)
        bytes = (bytes + 3) / 4 * 4; /* whole words of the fill's pattern */
    if (s->scratch_bytes[which] < bytes) {
        /* A release waits for the enqueued kernels that still use it. */
        if (s->scratch[which])
            s->cl->clReleaseMemObject(s->scratch[which]);
        s->scratch[which] = NULL;
        s->scratch_bytes[which] = 0;
        void *mem = NULL;
        eplb_status st = opencl_buffer_alloc(backend, bytes, &mem);
        if (st != EPLB_OK)
            return st;
        if (zero_new) { /* queued before any kernel that uses it */
            const cl_int zero = 0;
            const cl_int err = s->cl->clEnqueueFillBuffer(s->handles.queue, (cl_mem)mem, &zero,
                                                          sizeof zero, 0, bytes, 0, NULL, NULL);
            if (err != CL_SUCCESS) {
                s->cl->clReleaseMemObject((cl_mem)mem);
                return cl_fail(backend, err, "clearing a scratch buffer (clEnqueueFillBuffer)");
            }
        }
        s->scratch[which] = mem;
        s->scratch_bytes[which] = bytes;
    }
    *out = s->scratch[which];
    return EPLB_OK;
}

eplb_status eplb_opencl_scratch(eplb_backend *backend, int which, size_t bytes, cl_mem *out)
{
    return scratch(backend, which, bytes, 0, out);
}

eplb_status eplb_opencl_zeroed_scratch(eplb_backend *backend, int which, size_t bytes, cl_mem *out)
{
    return scratch(backend, which, bytes, 1, out);
}

static const eplb_backend_i opencl_iface = {
    /* .free            = */ opencl_free,
    /* .device_name     = */ opencl_device_name,
    /* .is_accelerator  = */ opencl_is_accelerator,
    /* .buffer_alloc    = */ opencl_buffer_alloc,
    /* .buffer_free     = */ opencl_buffer_free,
    /* .upload          = */ opencl_upload,
    /* .download        = */ opencl_download,
    /* .set_stream      = */ opencl_set_stream,
    /* .synchronize     = */ opencl_synchronize,
    /* .check_weights   = */ eplb_opencl_check_weights,
    /* .group_loads     = */ eplb_opencl_group_loads,
    /* .node_layout     = */ eplb_opencl_node_layout,
    /* .replicate       = */ eplb_opencl_replicate,
    /* .slot_loads      = */ eplb_opencl_slot_loads,
    /* .assemble        = */ eplb_opencl_assemble,
    /* .pack_sort       = */ eplb_opencl_pack_sort,
    /* .pack_greedy     = */ eplb_opencl_pack_greedy,
    /* .pack_swap       = */ eplb_opencl_pack_swap,
    /* .pack_select     = */ eplb_opencl_pack_select,
    /* .pack_fused      = */ NULL,
    /* .plan_fused      = */ eplb_opencl_plan_fused,
    /* .host_memory     = */ 0,
};

static eplb_status opencl_create(eplb_backend **out, char *error, size_t error_len)
{
    *out = NULL;
    const eplb_opencl_api *cl = eplb_opencl_load(error, error_len);
    if (!cl)
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    device_entry d;
    eplb_status st = choose_device(cl, &d, error, error_len);
    if (st != EPLB_OK)
        return st;

    eplb_backend *backend = calloc(1, sizeof *backend);
    eplb_opencl *s = calloc(1, sizeof *s);
    if (!backend || !s) {
        free(backend);
        free(s);
        snprintf(error, error_len, "cannot allocate the opencl backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    backend->api_version = EPLB_BACKEND_API_VERSION;
    backend->iface = &opencl_iface;
    backend->context = s;
    s->cl = cl;
    s->type = d.type;
    s->handles.device = d.device;
    choose_tuning(cl, &d, &s->tuning);
    char version[32]; /* "OpenCL 3.0 " and the start of the vendor's words */
    device_string(cl, d.device, CL_DEVICE_VERSION, version, sizeof version);
    snprintf(s->name, sizeof s->name, "%s (%s, %s)", d.name, d.platform_name, version);

    /* Bit-exact float32: correctly rounded division, no contraction (pragma
     * in every source), no relaxed or fast math. */
    char options[512];
    cl_program program = NULL;
    for (;;) {
        snprintf(options, sizeof options,
                 "-cl-std=CL1.2 -cl-fp32-correctly-rounded-divide-sqrt -DEPLB_WG=%zu "
                 "-DEPLB_ERR_INVALID_WEIGHT=%d -DEPLB_ERR_LOG2PHY_TOO_SMALL=%d -DEPLB_FUSED_TEAMS=%d "
                 "-DEPLB_NV_WARP=%d -DEPLB_NV_SM=%d",
                 s->tuning.group_size, (int)EPLB_ERR_INVALID_WEIGHT, (int)EPLB_ERR_LOG2PHY_TOO_SMALL,
                 s->tuning.fused_teams, s->tuning.warp_teams, s->tuning.nv_sm);
        st = get_program(cl, &d, options, &s->handles.context, &program, error, error_len);
        snprintf(s->options, sizeof s->options, "%s", options);
        /* A compiler that refuses the inline PTX still gets the portable exchange. */
        if (st == EPLB_OK || !s->tuning.warp_teams)
            break;
        s->tuning.warp_teams = 0;
    }
    if (st != EPLB_OK) {
        opencl_free(backend);
        return st;
    }
    cl_int err = CL_SUCCESS;
    const char *profile = getenv("EPLB_OPENCL_PROFILE");
    s->profile = profile && *profile && strcmp(profile, "0") != 0;
    s->own_queue = cl->clCreateCommandQueue(s->handles.context, d.device,
                                            s->profile ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (!s->own_queue) {
        snprintf(error, error_len, "clCreateCommandQueue on %s failed: %s", d.name,
                 eplb_opencl_error_name(err));
        opencl_free(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    s->handles.queue = s->own_queue;
    for (int k = 0; k < EPLB_CLK_COUNT; k++) {
        s->kernel[k] = cl->clCreateKernel(program, kernel_names[k], &err);
        if (!s->kernel[k]) {
            snprintf(error, error_len, "clCreateKernel(%s) failed: %s", kernel_names[k],
                     eplb_opencl_error_name(err));
            opencl_free(backend);
            return EPLB_ERR_BACKEND_UNAVAILABLE;
        }
        size_t most = 1;
        cl->clGetKernelWorkGroupInfo(s->kernel[k], d.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most,
                                     &most, NULL);
        s->kernel_group[k] = floor_pow2(most < s->tuning.group_size ? most : s->tuning.group_size);
        if (k == EPLB_CLK_CHECK_WEIGHTS || k == EPLB_CLK_GROUP_LOADS || k == EPLB_CLK_NODE_LAYOUT ||
            k == EPLB_CLK_SLOT_LOADS || k == EPLB_CLK_ASSEMBLE_SLOTS || k == EPLB_CLK_ASSEMBLE_EXPERTS ||
            k == EPLB_CLK_PACK_KEYS || k == EPLB_CLK_PACK_RANK || k == EPLB_CLK_PACK_HEAPSORT)
            /* element-wise kernels are not bound by the row group size */
            s->kernel_group[k] = floor_pow2(most < s->tuning.element_size ? most : s->tuning.element_size);
        if (k == EPLB_CLK_PLAN_FUSED) {
            s->kernel_group[k] = floor_pow2(most < s->tuning.fused_group ? most : s->tuning.fused_group);
            cl_ulong device_local = 0, kernel_local = 0;
            cl->clGetDeviceInfo(d.device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof device_local,
                                &device_local, NULL);
            cl->clGetKernelWorkGroupInfo(s->kernel[k], d.device, CL_KERNEL_LOCAL_MEM_SIZE,
                                         sizeof kernel_local, &kernel_local, NULL);
            s->local_mem = device_local > kernel_local ? device_local - kernel_local : 0;
            /* EPLB_OPENCL_LOCAL_MEM: a smaller budget, e.g. a GPU's 48 KiB on PoCL (tests). */
            const size_t cap = env_size("EPLB_OPENCL_LOCAL_MEM", 0);
            if (cap && cap < s->local_mem)
                s->local_mem = cap;
        }
    }
    *out = backend;
    return EPLB_OK;
}

static const eplb_backend_module opencl_module = {
    /* .api_version = */ EPLB_BACKEND_API_VERSION,
    /* .name        = */ "opencl",
    /* .create      = */ opencl_create,
};

__attribute__((visibility("default"))) const eplb_backend_module *eplb_backend_module_get(void)
{
    return &opencl_module;
}
