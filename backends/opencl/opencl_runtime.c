/* The OpenCL backend's runtime (opencl_runtime.h): an instance's opening
 * and release, the per-process context and program caches, the kernel build
 * on an instance's first plan, memory, command queues and kernel launches.
 * The device is chosen in opencl_device.c, the knobs read in
 * opencl_knobs.c; the stages above are in opencl_pack.c, opencl_glue.c and
 * opencl_fused.c, their kernels in the kernels/ folder. */
#define _GNU_SOURCE
#include "opencl_runtime.h"
#include "opencl_device.h"

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
    [EPLB_CLK_LOG2PHY_WIDTH] = "eplb_log2phy_width",
    [EPLB_CLK_LOG2PHY_AT_WIDTH] = "eplb_log2phy_at_width",
    [EPLB_CLK_PACK_KEYS] = "eplb_pack_keys",
    [EPLB_CLK_PACK_RANK] = "eplb_pack_rank",
    [EPLB_CLK_PACK_HEAPSORT] = "eplb_pack_heapsort",
    [EPLB_CLK_PACK_GREEDY] = "eplb_pack_greedy",
    [EPLB_CLK_PACK_SWAP] = "eplb_pack_swap",
    [EPLB_CLK_PACK_SELECT] = "eplb_pack_select",
    [EPLB_CLK_REFINE] = "eplb_refine",
    [EPLB_CLK_DISTINCT] = "eplb_distinct",
    [EPLB_CLK_PLAN_FUSED] = "eplb_plan_fused",
};

/* ---- per-process caches: a cl_context per device, a program per options ---- */

/* One cl_context per device for the life of the process, so that every eplb
 * context on a device shares it (buffers and queues of one work with all,
 * opencl_interop.h), and one built program per device and build options, so
 * that creating many eplb contexts does not rebuild the kernels. */
typedef struct context_entry {
    cl_device_id device;
    cl_context context;
} context_entry;

typedef struct program_entry {
    cl_device_id device;
    char options[512];
    cl_program program;
} program_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static context_entry contexts[16];
static int contexts_used;
static program_entry programs[16];
static int programs_used;

/* The device's cached cl_context (made on first use), retained for the caller. */
static eplb_status get_context(const eplb_opencl_api *cl, const eplb_opencl_device *d,
                               cl_context *out, char *error, size_t error_len)
{
    eplb_status st = EPLB_OK;
    pthread_mutex_lock(&cache_lock);
    int i = 0;
    while (i < contexts_used && contexts[i].device != d->device)
        i++;
    if (i == contexts_used) {
        cl_int err = CL_SUCCESS;
        cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
        cl_context context = NULL;
        if (contexts_used == (int)(sizeof contexts / sizeof contexts[0])) {
            snprintf(error, error_len, "too many OpenCL devices in one process");
            st = EPLB_ERR_BACKEND_UNAVAILABLE;
        } else if (!(context = cl->clCreateContext(props, 1, &d->device, NULL, NULL, &err))) {
            snprintf(error, error_len, "clCreateContext on %s failed: %s", d->name,
                     eplb_opencl_error_name(err));
            st = EPLB_ERR_BACKEND_UNAVAILABLE;
        } else {
            contexts[i].device = d->device;
            contexts[i].context = context;
            contexts_used++;
        }
    }
    if (st == EPLB_OK) {
        *out = contexts[i].context;
        cl->clRetainContext(*out); /* released by the instance */
    }
    pthread_mutex_unlock(&cache_lock);
    return st;
}

/* Compiles the embedded sources for the instance's device. The compiler's
 * messages reach the caller only inside the error of a failed build. */
static eplb_status build_program(const eplb_opencl *s, const char *device_name, const char *options,
                                 cl_program *out, char *error, size_t error_len)
{
    const eplb_opencl_api *cl = s->cl;
    cl_int err;
    cl_program program = cl->clCreateProgramWithSource(
        s->handles.context, eplb_opencl_kernel_count, (const char **)eplb_opencl_kernel_sources, NULL,
        &err);
    if (!program) {
        snprintf(error, error_len, "clCreateProgramWithSource failed: %s", eplb_opencl_error_name(err));
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    err = cl->clBuildProgram(program, 1, &s->handles.device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[16384] = "";
        cl->clGetProgramBuildInfo(program, s->handles.device, CL_PROGRAM_BUILD_LOG, sizeof log - 1,
                                  log, NULL);
        log[sizeof log - 1] = '\0';
        /* The registry keeps about 500 characters: the start of the log says most. */
        /* The log first: a long message is cut at its end. */
        snprintf(error, error_len, "building the kernels for %s failed (%s): %s [options: %s]",
                 device_name, eplb_opencl_error_name(err), log[0] ? log : "(no build log)", options);
        cl->clReleaseProgram(program);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    *out = program;
    return EPLB_OK;
}

/* The cached program for the instance's device and options, built on first
 * use. Entries live as long as the process: many eplb contexts share them. */
static eplb_status get_program(const eplb_opencl *s, const char *device_name, const char *options,
                               cl_program *program, char *error, size_t error_len)
{
    eplb_status st = EPLB_OK;
    pthread_mutex_lock(&cache_lock);
    int i = 0;
    while (i < programs_used &&
           !(programs[i].device == s->handles.device && strcmp(programs[i].options, options) == 0))
        i++;
    if (i == programs_used) {
        if (programs_used == (int)(sizeof programs / sizeof programs[0])) {
            snprintf(error, error_len, "too many OpenCL device configurations in one process");
            st = EPLB_ERR_BACKEND_UNAVAILABLE;
        } else {
            st = build_program(s, device_name, options, &programs[i].program, error, error_len);
            if (st == EPLB_OK) {
                programs[i].device = s->handles.device;
                snprintf(programs[i].options, sizeof programs[i].options, "%s", options);
                programs_used++;
            }
        }
    }
    if (st == EPLB_OK)
        *program = programs[i].program;
    pthread_mutex_unlock(&cache_lock);
    return st;
}

/* ---- instance --------------------------------------------------------------- */

void eplb_opencl_close(eplb_opencl *s)
{
    if (!s)
        return;
    const eplb_opencl_api *cl = s->cl;
    for (int k = 0; s->tuning.profile && k < EPLB_CLK_COUNT; k++)
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

static eplb_status cl_fail(eplb_backend *backend, cl_int err, const char *what)
{
    eplb_status st = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                             err == CL_INVALID_BUFFER_SIZE
                         ? EPLB_ERR_OUT_OF_MEMORY
                         : EPLB_ERR_BACKEND_FAILURE;
    return eplb_backend_error(backend, st, "%s failed: %s", what, eplb_opencl_error_name(err));
}

eplb_status eplb_opencl_buffer_alloc(eplb_backend *backend, size_t bytes, void **out)
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

void eplb_opencl_buffer_free(eplb_backend *backend, void *buffer)
{
    /* Released once the commands that use it are done (OpenCL rule). */
    if (buffer)
        eplb_opencl_state(backend)->cl->clReleaseMemObject((cl_mem)buffer);
}

/* A copy from host memory into a buffer, after the work queued before it on
 * the instance's queue; blocking says whether it returns only once the copy
 * is done. */
static eplb_status write_buffer(eplb_backend *backend, void *dst, const void *src_host,
                                size_t bytes, cl_bool blocking)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_int err = s->cl->clEnqueueWriteBuffer(s->handles.queue, (cl_mem)dst, blocking, 0, bytes,
                                             src_host, 0, NULL, NULL);
    return err == CL_SUCCESS ? EPLB_OK : cl_fail(backend, err, "upload (clEnqueueWriteBuffer)");
}

/* A copy from a buffer into host memory, likewise. */
static eplb_status read_buffer(eplb_backend *backend, void *dst_host, const void *src, size_t bytes,
                               cl_bool blocking)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_int err = s->cl->clEnqueueReadBuffer(s->handles.queue, (cl_mem)src, blocking, 0, bytes,
                                            dst_host, 0, NULL, NULL);
    return err == CL_SUCCESS ? EPLB_OK : cl_fail(backend, err, "download (clEnqueueReadBuffer)");
}

eplb_status eplb_opencl_upload(eplb_backend *backend, void *dst, const void *src_host, size_t bytes)
{
    return write_buffer(backend, dst, src_host, bytes, CL_TRUE);
}

eplb_status eplb_opencl_download(eplb_backend *backend, void *dst_host, const void *src, size_t bytes)
{
    return read_buffer(backend, dst_host, src, bytes, CL_TRUE);
}

/* The host-staging entries of EPLB_TUNE_OPENCL_STAGING=async (tests): they
 * let a CPU device run the planner's asynchronous staging branch, which
 * otherwise only the cuda backend takes. The memory is plain malloc'ed host
 * memory, not page-locked: OpenCL copies from any host memory, and on a CPU
 * device pinning would gain nothing. */
eplb_status eplb_opencl_host_alloc(eplb_backend *backend, size_t bytes, void **out)
{
    void *host = malloc(bytes);
    if (!host)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                                  "cannot allocate %zu bytes of host staging memory", bytes);
    *out = host;
    return EPLB_OK;
}

/* No wait here: backend.h has the planner leave the memory alone until
 * synchronize has returned, so a copy still running into freed memory would
 * be the planner's bug, for the tests to find rather than for this entry to
 * hide. */
void eplb_opencl_host_free(eplb_backend *backend, void *host)
{
    (void)backend;
    free(host);
}

/* Non-blocking (CL_FALSE) copies on the in-order queue: each runs after the
 * work queued before it and may not have run when this returns, so the host
 * memory must be left alone until eplb_opencl_synchronize (clFinish) has
 * returned. No clFlush either: nothing here hurries a copy along, so that a
 * missing wait shows as wrong data instead of hiding behind a copy that
 * happened to finish early. */
eplb_status eplb_opencl_upload_async(eplb_backend *backend, void *dst, const void *src_host,
                                     size_t bytes)
{
    return write_buffer(backend, dst, src_host, bytes, CL_FALSE);
}

eplb_status eplb_opencl_download_async(eplb_backend *backend, void *dst_host, const void *src,
                                       size_t bytes)
{
    return read_buffer(backend, dst_host, src, bytes, CL_FALSE);
}

/* A caller's queue must belong to this backend's cl_context (its cl_mem
 * buffers too) and run in order: the stages depend on each other. */
eplb_status eplb_opencl_set_stream(eplb_backend *backend, void *stream)
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

eplb_status eplb_opencl_synchronize(eplb_backend *backend)
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
    const int profile = s->tuning.profile && s->handles.queue == s->own_queue;
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

eplb_status eplb_opencl_run_groups(eplb_backend *backend, eplb_opencl_kernel_id id,
                                   cl_kernel kernel, const eplb_opencl_arg *args, int nargs,
                                   size_t groups, size_t local)
{
    if (groups == 0)
        return EPLB_OK;
    const size_t global = groups * local;
    return launch(backend, id, kernel, args, nargs, 1, &global, &local);
}

eplb_status eplb_opencl_build_kernel(eplb_backend *backend, const char *defines, const char *name,
                                     cl_program *program, cl_kernel *kernel)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    char options[1100], error[EPLB_BACKEND_ERROR_LEN];
    snprintf(options, sizeof options, "%s %s", s->options, defines);
    *kernel = NULL;
    const eplb_status st = build_program(s, s->name, options, program, error, sizeof error);
    if (st != EPLB_OK)
        return eplb_backend_error(backend, st, "%s", error);
    cl_int err = CL_SUCCESS;
    *kernel = s->cl->clCreateKernel(*program, name, &err);
    if (!*kernel) {
        s->cl->clReleaseProgram(*program);
        *program = NULL;
        return cl_fail(backend, err, "clCreateKernel of a shape-specific build");
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
        eplb_status st = eplb_opencl_buffer_alloc(backend, bytes, &mem);
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

/* ---- the kernels, built on an instance's first plan ------------------------ */

/* The program's build options. Bit-exact float32: correctly rounded
 * division, no contraction (pragma in every source), no relaxed or fast math. */
static void build_options(const eplb_opencl_tuning *t, char *options, size_t len)
{
    snprintf(options, len,
             "-cl-std=CL1.2 -cl-fp32-correctly-rounded-divide-sqrt -DEPLB_WG=%zu "
             "-DEPLB_ERR_INVALID_WEIGHT=%d -DEPLB_ERR_LOG2PHY_TOO_SMALL=%d -DEPLB_FUSED_TEAMS=%d "
             "-DEPLB_NV_WARP=%d -DEPLB_NV_SM=%d",
             t->group_size, (int)EPLB_ERR_INVALID_WEIGHT, (int)EPLB_ERR_LOG2PHY_TOO_SMALL,
             t->fused_teams, t->warp_teams, t->nv_sm);
}

static void release_kernels(eplb_opencl *s)
{
    for (int k = 0; k < EPLB_CLK_COUNT; k++)
        if (s->kernel[k]) {
            s->cl->clReleaseKernel(s->kernel[k]);
            s->kernel[k] = NULL;
        }
}

/* Builds the program (or takes it from the cache) and makes the instance's
 * kernels, once: on the first plan, which for an instance the registry hands
 * out is its self-test. Creation itself compiles nothing, so that auto can
 * open the backend, see that the device is a CPU and pass over it without a
 * build (a build takes PoCL seconds when its kernel cache is empty). */
eplb_status eplb_opencl_prepare_kernels(eplb_backend *backend)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    const eplb_opencl_api *cl = s->cl;
    if (s->kernel[EPLB_CLK_COUNT - 1]) /* made last: every kernel exists */
        return EPLB_OK;
    char options[512], error[EPLB_BACKEND_ERROR_LEN];
    cl_program program = NULL;
    eplb_status st;
    for (;;) {
        build_options(&s->tuning, options, sizeof options);
        st = get_program(s, s->name, options, &program, error, sizeof error);
        /* A compiler that refuses the inline PTX still gets the portable exchange. */
        if (st == EPLB_OK || !s->tuning.warp_teams)
            break;
        s->tuning.warp_teams = 0;
    }
    if (st != EPLB_OK)
        return eplb_backend_error(backend, st, "%s", error);
    snprintf(s->options, sizeof s->options, "%s", options);
    const cl_device_id device = s->handles.device;
    for (int k = 0; k < EPLB_CLK_COUNT; k++) {
        cl_int err = CL_SUCCESS;
        s->kernel[k] = cl->clCreateKernel(program, kernel_names[k], &err);
        if (!s->kernel[k]) {
            release_kernels(s);
            return eplb_backend_error(backend, EPLB_ERR_BACKEND_UNAVAILABLE,
                                      "clCreateKernel(%s) failed: %s", kernel_names[k],
                                      eplb_opencl_error_name(err));
        }
        size_t most = 1;
        cl->clGetKernelWorkGroupInfo(s->kernel[k], device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most,
                                     &most, NULL);
        size_t want = s->tuning.group_size;
        if (k == EPLB_CLK_CHECK_WEIGHTS || k == EPLB_CLK_GROUP_LOADS || k == EPLB_CLK_NODE_LAYOUT ||
            k == EPLB_CLK_SLOT_LOADS || k == EPLB_CLK_ASSEMBLE_SLOTS || k == EPLB_CLK_ASSEMBLE_EXPERTS ||
            k == EPLB_CLK_PACK_KEYS || k == EPLB_CLK_PACK_RANK || k == EPLB_CLK_PACK_HEAPSORT)
            want = s->tuning.element_size; /* element-wise kernels: not bound by the row group size */
        /* Refine, like plan_fused, gives a whole row's search to one group. */
        if (k == EPLB_CLK_PLAN_FUSED || k == EPLB_CLK_REFINE)
            want = s->tuning.fused_group;
        s->kernel_group[k] = eplb_opencl_floor_pow2(most < want ? most : want);
        if (k == EPLB_CLK_PLAN_FUSED) {
            cl_ulong device_local = 0, kernel_local = 0;
            cl->clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof device_local, &device_local,
                                NULL);
            cl->clGetKernelWorkGroupInfo(s->kernel[k], device, CL_KERNEL_LOCAL_MEM_SIZE,
                                         sizeof kernel_local, &kernel_local, NULL);
            s->local_mem = device_local > kernel_local ? device_local - kernel_local : 0;
            /* A smaller budget, e.g. a GPU's 48 KiB on PoCL (tests). */
            const size_t cap = s->tuning.local_mem_cap;
            if (cap && cap < s->local_mem)
                s->local_mem = cap;
        }
    }
    return EPLB_OK;
}

eplb_status eplb_opencl_open(eplb_opencl **out, char *error, size_t error_len)
{
    *out = NULL;
    eplb_opencl_knobs knobs;
    eplb_status st = eplb_opencl_knobs_read(&knobs, error, error_len);
    if (st != EPLB_OK)
        return st;
    const eplb_opencl_api *cl = eplb_opencl_load(error, error_len);
    if (!cl)
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    eplb_opencl_device d;
    st = eplb_opencl_choose_device(cl, knobs.platform, knobs.device, &d, error, error_len);
    if (st != EPLB_OK)
        return st;
    eplb_opencl *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(error, error_len, "cannot allocate the opencl backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    s->cl = cl;
    s->type = d.type;
    s->handles.device = d.device;
    eplb_opencl_choose_tuning(cl, &d, &knobs, &s->tuning);
    char version[32]; /* "OpenCL 3.0 " and the start of the vendor's words */
    eplb_opencl_device_string(cl, d.device, CL_DEVICE_VERSION, version, sizeof version);
    snprintf(s->name, sizeof s->name, "%s (%s, %s)", d.name, d.platform_name, version);
    build_options(&s->tuning, s->options, sizeof s->options);

    st = get_context(cl, &d, &s->handles.context, error, error_len);
    if (st != EPLB_OK) {
        eplb_opencl_close(s);
        return st;
    }
    cl_int err = CL_SUCCESS;
    s->own_queue = cl->clCreateCommandQueue(s->handles.context, d.device,
                                            s->tuning.profile ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (!s->own_queue) {
        snprintf(error, error_len, "clCreateCommandQueue on %s failed: %s", d.name,
                 eplb_opencl_error_name(err));
        eplb_opencl_close(s);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    s->handles.queue = s->own_queue;
    *out = s;
    return EPLB_OK;
}
