/* The cuda backend's runtime: opening the device, its scratch memory. The
 * CUDA runtime is linked statically, so the module needs only the driver
 * (libcuda.so.1) at run time; without a driver or a device, opening fails
 * with the reason. */
#include <dlfcn.h>
#include <stdio.h>

#include "cuda_runtime.cuh"

/* Oldest architecture whose PTX the module embeds (see CMakeLists.txt). */
#define EPLB_CUDA_MIN_MAJOR 7
#define EPLB_CUDA_MIN_MINOR 5

eplb_status eplb_cuda_fail(eplb_backend *backend, const char *what, cudaError_t err)
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
            return eplb_cuda_fail(backend, "scratch allocation", err);
        ctx->scratch_bytes = bytes;
    }
    *out = ctx->scratch;
    return EPLB_OK;
}

eplb_status eplb_cuda_block_state(eplb_backend *backend, size_t state_bytes, unsigned *blocks,
                                  size_t *smem, unsigned char **global_state)
{
    *smem = state_bytes;
    *global_state = NULL;
    if (state_bytes <= 48 * 1024)
        return EPLB_OK;
    const unsigned most = (unsigned)eplb_cuda_ctx(backend)->sm_count * 4u;
    if (*blocks > most)
        *blocks = most;
    void *scratch = NULL;
    eplb_status st = eplb_cuda_scratch(backend, state_bytes * *blocks, &scratch);
    if (st != EPLB_OK)
        return st;
    *global_state = (unsigned char *)scratch;
    *smem = 0;
    return EPLB_OK;
}

eplb_status eplb_cuda_device_open(eplb_cuda_context *ctx, char *error, size_t error_len)
{
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
    ctx->device = device;
    ctx->stream = NULL;
    ctx->smem_optin = (size_t)optin;
    ctx->sm_count = prop.multiProcessorCount;
    snprintf(ctx->name, sizeof ctx->name, "%s (cuda device %d, sm_%d%d, driver %d.%d)", prop.name,
             device, prop.major, prop.minor, driver_version / 1000, driver_version % 1000 / 10);
    return EPLB_OK;
}

void eplb_cuda_device_close(eplb_cuda_context *ctx)
{
    if (!ctx->scratch)
        return;
    eplb_cuda_device_scope scope(ctx);
    cudaDeviceSynchronize();
    cudaFree(ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
}
