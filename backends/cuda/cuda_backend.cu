/* The cuda backend module (libeplb_cuda.so): device, memory and stream, and
 * the interface table that points at one file per stage. The CUDA runtime is
 * linked statically, so the module needs only the driver (libcuda.so.1) at
 * run time; without a driver or a device, create() fails with the reason. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_assemble.cuh"
#include "cuda_check_weights.cuh"
#include "cuda_common.cuh"
#include "cuda_group_loads.cuh"
#include "cuda_node_layout.cuh"
#include "cuda_pack_fused.cuh"
#include "cuda_pack_greedy.cuh"
#include "cuda_pack_select.cuh"
#include "cuda_pack_sort.cuh"
#include "cuda_pack_swap.cuh"
#include "cuda_plan_fused.cuh"
#include "cuda_replicate.cuh"
#include "cuda_slot_loads.cuh"

/* Oldest architecture whose PTX the module embeds (see CMakeLists.txt). */
#define EPLB_CUDA_MIN_MAJOR 7
#define EPLB_CUDA_MIN_MINOR 5

/* Makes the instance's device current for one call and restores the caller's. */
struct eplb_cuda_device_scope {
    int previous;
    bool changed;
    explicit eplb_cuda_device_scope(const eplb_cuda_context *ctx) : previous(-1), changed(false)
    {
        if (cudaGetDevice(&previous) == cudaSuccess && previous != ctx->device)
            changed = cudaSetDevice(ctx->device) == cudaSuccess;
    }
    ~eplb_cuda_device_scope()
    {
        if (changed)
            cudaSetDevice(previous);
    }
};

#define EPLB_CUDA_SCOPE(backend) eplb_cuda_device_scope scope_(eplb_cuda_ctx(backend))

static eplb_status cuda_fail(eplb_backend *backend, const char *what, cudaError_t err)
{
    return eplb_backend_error(backend,
                              err == cudaErrorMemoryAllocation ? EPLB_ERR_OUT_OF_MEMORY
                                                               : EPLB_ERR_BACKEND_FAILURE,
                              "%s: %s", what, cudaGetErrorString(err));
}

eplb_status eplb_cuda_scratch(eplb_backend *backend, size_t bytes, void **out)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    if (ctx->scratch_bytes < bytes) {
        /* Freed memory may still be in use by enqueued work: wait for it first. */
        cudaStreamSynchronize(ctx->stream);
        cudaFree(ctx->scratch);
        ctx->scratch = NULL;
        ctx->scratch_bytes = 0;
        cudaError_t err = cudaMalloc(&ctx->scratch, bytes);
        if (err != cudaSuccess)
            return cuda_fail(backend, "scratch allocation", err);
        ctx->scratch_bytes = bytes;
    }
    *out = ctx->scratch;
    return EPLB_OK;
}

static void cuda_free_backend(eplb_backend *backend)
{
    if (!backend)
        return;
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    if (ctx) {
        EPLB_CUDA_SCOPE(backend);
        if (ctx->scratch) {
            cudaDeviceSynchronize();
            cudaFree(ctx->scratch);
        }
    }
    free(ctx);
    free(backend);
}

static const char *cuda_device_name(eplb_backend *backend) { return eplb_cuda_ctx(backend)->name; }

static int cuda_is_accelerator(eplb_backend *backend)
{
    (void)backend;
    return 1;
}

static eplb_status cuda_buffer_alloc(eplb_backend *backend, size_t bytes, void **out)
{
    EPLB_CUDA_SCOPE(backend);
    cudaError_t err = cudaMalloc(out, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                                  "cannot allocate %zu bytes of device memory: %s", bytes,
                                  cudaGetErrorString(err));
    }
    return EPLB_OK;
}

static void cuda_buffer_free(eplb_backend *backend, void *buffer)
{
    if (!buffer)
        return;
    EPLB_CUDA_SCOPE(backend);
    /* cudaFree waits for the device, so enqueued work that uses the buffer ends first. */
    cudaFree(buffer);
}

static eplb_status cuda_upload(eplb_backend *backend, void *dst, const void *src_host, size_t bytes)
{
    EPLB_CUDA_SCOPE(backend);
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    cudaError_t err = cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, ctx->stream);
    /* The interface lets the caller reuse the host memory on return (pinned memory would
     * otherwise still be read by the copy). */
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(ctx->stream);
    return err == cudaSuccess ? EPLB_OK : cuda_fail(backend, "upload", err);
}

static eplb_status cuda_download(eplb_backend *backend, void *dst_host, const void *src, size_t bytes)
{
    EPLB_CUDA_SCOPE(backend);
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    cudaError_t err = cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, ctx->stream);
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(ctx->stream);
    return err == cudaSuccess ? EPLB_OK : cuda_fail(backend, "download", err);
}

static eplb_status cuda_set_stream(eplb_backend *backend, void *stream)
{
    eplb_cuda_ctx(backend)->stream = (cudaStream_t)stream;
    return EPLB_OK;
}

static eplb_status cuda_synchronize(eplb_backend *backend)
{
    EPLB_CUDA_SCOPE(backend);
    cudaError_t err = cudaStreamSynchronize(eplb_cuda_ctx(backend)->stream);
    return err == cudaSuccess ? EPLB_OK : cuda_fail(backend, "synchronize", err);
}

/* Every stage runs with the instance's device current. */
#define EPLB_CUDA_STAGE(name, job_type)                                                        \
    static eplb_status cuda_##name(eplb_backend *backend, const job_type *job)                 \
    {                                                                                          \
        EPLB_CUDA_SCOPE(backend);                                                              \
        return eplb_cuda_##name(backend, job);                                                 \
    }
EPLB_CUDA_STAGE(check_weights, eplb_plan_job)
EPLB_CUDA_STAGE(group_loads, eplb_plan_job)
EPLB_CUDA_STAGE(node_layout, eplb_plan_job)
EPLB_CUDA_STAGE(replicate, eplb_plan_job)
EPLB_CUDA_STAGE(slot_loads, eplb_plan_job)
EPLB_CUDA_STAGE(assemble, eplb_plan_job)
EPLB_CUDA_STAGE(pack_sort, eplb_pack_job)
EPLB_CUDA_STAGE(pack_greedy, eplb_pack_job)
EPLB_CUDA_STAGE(pack_swap, eplb_pack_job)
EPLB_CUDA_STAGE(pack_select, eplb_pack_job)
EPLB_CUDA_STAGE(pack_fused, eplb_pack_job)
EPLB_CUDA_STAGE(plan_fused, eplb_plan_job)
#undef EPLB_CUDA_STAGE

static const eplb_backend_i cuda_iface = {
    /* .free            = */ cuda_free_backend,
    /* .device_name     = */ cuda_device_name,
    /* .is_accelerator  = */ cuda_is_accelerator,
    /* .buffer_alloc    = */ cuda_buffer_alloc,
    /* .buffer_free     = */ cuda_buffer_free,
    /* .upload          = */ cuda_upload,
    /* .download        = */ cuda_download,
    /* .set_stream      = */ cuda_set_stream,
    /* .synchronize     = */ cuda_synchronize,
    /* .check_weights   = */ cuda_check_weights,
    /* .group_loads     = */ cuda_group_loads,
    /* .node_layout     = */ cuda_node_layout,
    /* .replicate       = */ cuda_replicate,
    /* .slot_loads      = */ cuda_slot_loads,
    /* .assemble        = */ cuda_assemble,
    /* .pack_sort       = */ cuda_pack_sort,
    /* .pack_greedy     = */ cuda_pack_greedy,
    /* .pack_swap       = */ cuda_pack_swap,
    /* .pack_select     = */ cuda_pack_select,
    /* .pack_fused      = */ cuda_pack_fused,
    /* .plan_fused      = */ cuda_plan_fused,
    /* .host_memory     = */ 0,
};

/* Opens the calling thread's current device (CUDA_VISIBLE_DEVICES and
 * cudaSetDevice choose it), or says why there is none. */
static eplb_status cuda_create(eplb_backend **out, char *error, size_t error_len)
{
    *out = NULL;
    /* The runtime would report a missing driver as "insufficient driver": say it plainly. */
    void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!driver) {
        const char *why = dlerror();
        snprintf(error, error_len, "no CUDA driver: cannot load libcuda.so.1 (%s)",
                 why ? why : "not found");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    dlclose(driver);
    int driver_version = 0;
    if (cudaDriverGetVersion(&driver_version) != cudaSuccess || driver_version == 0) {
        snprintf(error, error_len, "no CUDA driver: the driver did not report a version");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (driver_version < CUDART_VERSION) {
        snprintf(error, error_len,
                 "CUDA driver too old: it supports CUDA %d.%d, the module was built with CUDA "
                 "%d.%d (update the driver or rebuild with an older toolkit)",
                 driver_version / 1000, driver_version % 1000 / 10, CUDART_VERSION / 1000,
                 CUDART_VERSION % 1000 / 10);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
        cudaGetLastError();
        snprintf(error, error_len, "no CUDA device");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        snprintf(error, error_len, "CUDA initialisation failed: %s", cudaGetErrorString(err));
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    int device = 0;
    cudaGetDevice(&device);
    cudaDeviceProp prop;
    if ((err = cudaGetDeviceProperties(&prop, device)) != cudaSuccess) {
        snprintf(error, error_len, "cannot query CUDA device %d: %s", device, cudaGetErrorString(err));
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (prop.major * 10 + prop.minor < EPLB_CUDA_MIN_MAJOR * 10 + EPLB_CUDA_MIN_MINOR) {
        snprintf(error, error_len,
                 "CUDA device %d (%s) has compute capability %d.%d; the module needs %d.%d or newer",
                 device, prop.name, prop.major, prop.minor, EPLB_CUDA_MIN_MAJOR, EPLB_CUDA_MIN_MINOR);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    int optin = 0;
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (optin < 48 * 1024)
        optin = 48 * 1024;

    eplb_backend *backend = (eplb_backend *)calloc(1, sizeof *backend);
    eplb_cuda_context *ctx = (eplb_cuda_context *)calloc(1, sizeof *ctx);
    if (!backend || !ctx) {
        free(backend);
        free(ctx);
        snprintf(error, error_len, "cannot allocate the cuda backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    ctx->device = device;
    ctx->stream = NULL;
    ctx->smem_optin = (size_t)optin;
    ctx->sm_count = prop.multiProcessorCount;
    const char *path = getenv("EPLB_CUDA_PATH");
    ctx->path = !path || !*path || !strcmp(path, "fused") ? EPLB_CUDA_PATH_FUSED
                : !strcmp(path, "pack_fused")             ? EPLB_CUDA_PATH_PACK_FUSED
                : !strcmp(path, "fused_prev")             ? EPLB_CUDA_PATH_FUSED_PREV
                : !strcmp(path, "fused_layer")            ? EPLB_CUDA_PATH_FUSED_LAYER
                                                          : EPLB_CUDA_PATH_STAGES;
    snprintf(ctx->name, sizeof ctx->name, "%s (cuda device %d, sm_%d%d, driver %d.%d)", prop.name,
             device, prop.major, prop.minor, driver_version / 1000, driver_version % 1000 / 10);
    backend->api_version = EPLB_BACKEND_API_VERSION;
    backend->iface = &cuda_iface;
    backend->context = ctx;

    eplb_cuda_pack_sort_init(ctx->smem_optin);
    eplb_cuda_pack_fused_init(ctx->smem_optin);
    eplb_cuda_plan_fused_init(ctx->smem_optin);
    if ((err = cudaGetLastError()) != cudaSuccess) {
        snprintf(error, error_len, "CUDA kernel setup failed on %s: %s (no kernel image for "
                 "this device?)", prop.name, cudaGetErrorString(err));
        cuda_free_backend(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    *out = backend;
    return EPLB_OK;
}

static const eplb_backend_module cuda_module = {
    /* .api_version = */ EPLB_BACKEND_API_VERSION,
    /* .name        = */ "cuda",
    /* .create      = */ cuda_create,
};

extern "C" __attribute__((visibility("default"))) const eplb_backend_module *
eplb_backend_module_get(void)
{
    return &cuda_module;
}
