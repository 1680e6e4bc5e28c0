/* The cuda backend module (libeplb_cuda.so): the interface table, which
 * points at one file per stage, and the instance's creation and release. The
 * runtime (cuda_runtime.cu, cuda_knobs.cu) opens the device and reads the
 * environment; nothing below this file calls back into it. */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_assemble.cuh"
#include "cuda_check_weights.cuh"
#include "cuda_distinct.cuh"
#include "cuda_group_loads.cuh"
#include "cuda_incremental_search.cuh"
#include "cuda_node_layout.cuh"
#include "cuda_pack_greedy.cuh"
#include "cuda_pack_select.cuh"
#include "cuda_pack_sort.cuh"
#include "cuda_pack_swap.cuh"
#include "cuda_plan_fused.cuh"
#include "cuda_refine.cuh"
#include "cuda_replicate.cuh"
#include "cuda_runtime.cuh"
#include "cuda_slot_loads.cuh"

#define EPLB_CUDA_SCOPE(backend) eplb_cuda_device_scope scope_(eplb_cuda_ctx(backend))

/* An instance in one allocation: the interface's header, then the context. */
struct cuda_instance {
    eplb_backend backend;
    eplb_cuda_context ctx;
};

static void cuda_free_backend(eplb_backend *backend)
{
    if (!backend)
        return;
    eplb_cuda_device_close(eplb_cuda_ctx(backend));
    free((cuda_instance *)backend);
}

static const char *cuda_device_name(eplb_backend *backend) { return eplb_cuda_ctx(backend)->name; }

static int cuda_is_accelerator(eplb_backend *backend)
{
    (void)backend;
    return 1;
}

/* A failed allocation of bytes of `what`; such a failure is not sticky, so
 * the runtime's last error is cleared. */
static eplb_status allocation_failed(eplb_backend *backend, size_t bytes, const char *what,
                                     cudaError_t err)
{
    cudaGetLastError();
    return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                              "cannot allocate %zu bytes of %s: %s", bytes, what,
                              cudaGetErrorString(err));
}

static eplb_status cuda_buffer_alloc(eplb_backend *backend, size_t bytes, void **out)
{
    EPLB_CUDA_SCOPE(backend);
    cudaError_t err = cudaMalloc(out, bytes);
    return err == cudaSuccess ? EPLB_OK : allocation_failed(backend, bytes, "device memory", err);
}

static void cuda_buffer_free(eplb_backend *backend, void *buffer)
{
    if (!buffer)
        return;
    EPLB_CUDA_SCOPE(backend);
    /* cudaFree waits for the device, so enqueued work that uses the buffer ends first. */
    cudaFree(buffer);
}

/* A copy on the instance's stream. upload and download wait for it, since
 * the interface lets their caller reuse the host memory at once (pinned
 * memory would otherwise still be read by the copy); the async entries leave
 * the wait to the planner's synchronize, once per plan. */
static eplb_status cuda_copy(eplb_backend *backend, void *dst, const void *src, size_t bytes,
                             cudaMemcpyKind kind, bool wait, const char *what)
{
    EPLB_CUDA_SCOPE(backend);
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, ctx->stream);
    if (err == cudaSuccess && wait)
        err = cudaStreamSynchronize(ctx->stream);
    return err == cudaSuccess ? EPLB_OK : eplb_cuda_fail(backend, what, err);
}

static eplb_status cuda_upload(eplb_backend *backend, void *dst, const void *src_host, size_t bytes)
{
    return cuda_copy(backend, dst, src_host, bytes, cudaMemcpyHostToDevice, true, "upload");
}

static eplb_status cuda_download(eplb_backend *backend, void *dst_host, const void *src, size_t bytes)
{
    return cuda_copy(backend, dst_host, src, bytes, cudaMemcpyDeviceToHost, true, "download");
}

static eplb_status cuda_upload_async(eplb_backend *backend, void *dst, const void *src_host,
                                     size_t bytes)
{
    return cuda_copy(backend, dst, src_host, bytes, cudaMemcpyHostToDevice, false, "upload");
}

static eplb_status cuda_download_async(eplb_backend *backend, void *dst_host, const void *src,
                                       size_t bytes)
{
    return cuda_copy(backend, dst_host, src, bytes, cudaMemcpyDeviceToHost, false, "download");
}

/* Page-locked host memory for the planner's staging area: copies from and to
 * it run as one DMA each, without waiting for the host. Portable, so that it
 * is page-locked for every device's context, not only this instance's. */
static eplb_status cuda_host_alloc(eplb_backend *backend, size_t bytes, void **out)
{
    EPLB_CUDA_SCOPE(backend);
    cudaError_t err = cudaHostAlloc(out, bytes, cudaHostAllocPortable);
    return err == cudaSuccess ? EPLB_OK
                              : allocation_failed(backend, bytes, "page-locked host memory", err);
}

static void cuda_host_free(eplb_backend *backend, void *host)
{
    if (!host)
        return;
    EPLB_CUDA_SCOPE(backend);
    cudaFreeHost(host);
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
    return err == cudaSuccess ? EPLB_OK : eplb_cuda_fail(backend, "synchronize", err);
}

/* Stage, run with the instance's device current (the interface's entries
 * may be called from a thread whose current device is another). */
template <class Job, eplb_status (*Stage)(eplb_backend *, const Job *)>
static eplb_status on_device(eplb_backend *backend, const Job *job)
{
    EPLB_CUDA_SCOPE(backend);
    return Stage(backend, job);
}

/* The two tables differ in domain_searches alone: EPLB_TUNE_CUDA_SEARCH
 * chooses whether the incremental rebalance's searches run on the device. */
#define CUDA_IFACE(domain_searches_entry)                                                          \
    {                                                                                              \
        /* .free            = */ cuda_free_backend,                                                \
        /* .device_name     = */ cuda_device_name,                                                 \
        /* .is_accelerator  = */ cuda_is_accelerator,                                              \
        /* .buffer_alloc    = */ cuda_buffer_alloc,                                                \
        /* .buffer_free     = */ cuda_buffer_free,                                                 \
        /* .upload          = */ cuda_upload,                                                      \
        /* .download        = */ cuda_download,                                                    \
        /* .set_stream      = */ cuda_set_stream,                                                  \
        /* .synchronize     = */ cuda_synchronize,                                                 \
        /* .check_weights   = */ on_device<eplb_plan_job, eplb_cuda_check_weights>,                \
        /* .group_loads     = */ on_device<eplb_plan_job, eplb_cuda_group_loads>,                  \
        /* .node_layout     = */ on_device<eplb_plan_job, eplb_cuda_node_layout>,                  \
        /* .replicate       = */ on_device<eplb_plan_job, eplb_cuda_replicate>,                    \
        /* .slot_loads      = */ on_device<eplb_plan_job, eplb_cuda_slot_loads>,                   \
        /* .assemble        = */ on_device<eplb_plan_job, eplb_cuda_assemble>,                     \
        /* .pack_sort       = */ on_device<eplb_pack_job, eplb_cuda_pack_sort>,                    \
        /* .pack_greedy     = */ on_device<eplb_pack_job, eplb_cuda_pack_greedy>,                  \
        /* .pack_swap       = */ on_device<eplb_pack_job, eplb_cuda_pack_swap>,                    \
        /* .pack_select     = */ on_device<eplb_pack_job, eplb_cuda_pack_select>,                  \
        /* .distinct        = */ on_device<eplb_plan_job, eplb_cuda_distinct>,                     \
        /* .refine          = */ on_device<eplb_plan_job, eplb_cuda_refine>,                       \
        /* .plan_fused      = */ on_device<eplb_plan_job, eplb_cuda_plan_fused>,                   \
        /* .host_memory     = */ 0,                                                                \
        /* .host_alloc      = */ cuda_host_alloc,                                                  \
        /* .host_free       = */ cuda_host_free,                                                   \
        /* .upload_async    = */ cuda_upload_async,                                                \
        /* .download_async  = */ cuda_download_async,                                              \
        /* .fused_refines   = */ 1, /* plan_fused refines in shared memory */                      \
        /* .start           = */ NULL,                                                             \
        /* .log2phy_at_needed_width = */ on_device<eplb_plan_job, eplb_cuda_log2phy_at_needed_width>, \
        /* .domain_searches = */ domain_searches_entry,                                            \
    }

static const eplb_backend_i cuda_iface_host_search = CUDA_IFACE(NULL);
static const eplb_backend_i cuda_iface_device_search =
    CUDA_IFACE((on_device<eplb_search_job, eplb_cuda_domain_search_job>));

/* Reads the knobs (first, so that a bad value is reported on any machine),
 * opens the calling thread's current device, and lets the kernels that need
 * it use the device's full shared memory. */
static eplb_status cuda_create(eplb_backend **out, char *error, size_t error_len)
{
    *out = NULL;
    eplb_cuda_knobs knobs;
    eplb_status st = eplb_cuda_knobs_read(&knobs, error, error_len);
    if (st != EPLB_OK)
        return st;
    cuda_instance *instance = (cuda_instance *)calloc(1, sizeof *instance);
    if (!instance) {
        snprintf(error, error_len, "cannot allocate the cuda backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    eplb_backend *backend = &instance->backend;
    eplb_cuda_context *ctx = &instance->ctx;
    backend->api_version = EPLB_BACKEND_API_VERSION;
    backend->iface = knobs.domain_search == EPLB_TUNE_CUDA_SEARCH_DEVICE ? &cuda_iface_device_search
                                                                      : &cuda_iface_host_search;
    backend->context = ctx;
    ctx->knobs = knobs;
    if ((st = eplb_cuda_device_open(ctx, error, error_len)) != EPLB_OK) {
        cuda_free_backend(backend);
        return st;
    }
    eplb_cuda_pack_sort_init(ctx->smem_optin);
    eplb_cuda_plan_fused_init(ctx->smem_optin);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(error, error_len, "CUDA kernel setup failed on %s: %s (no kernel image for "
                 "this device?)", ctx->name, cudaGetErrorString(err));
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
