/* The cuda backend's runtime, the layer under every stage: the instance's
 * state (device, stream, scratch, knobs), the device scope, and the launch
 * helpers. It uses nothing of the stages or of the entry table. */
#ifndef EPLB_CUDA_RUNTIME_CUH
#define EPLB_CUDA_RUNTIME_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "backend.h"
#include "cuda_knobs.cuh"

typedef struct eplb_cuda_context {
    int device;                 /* device ordinal the instance was opened on */
    cudaStream_t stream;        /* stream of later work (set_stream); NULL: legacy default */
    size_t smem_optin;          /* largest dynamic shared memory per block (opt-in) */
    int sm_count;
    void *scratch;              /* global scratch for stages whose state does not fit on chip */
    size_t scratch_bytes;
    eplb_cuda_knobs knobs;      /* the environment, read once at creation */
    char name[320];
} eplb_cuda_context;

static inline eplb_cuda_context *eplb_cuda_ctx(eplb_backend *backend)
{
    return (eplb_cuda_context *)backend->context;
}

/* Opens the calling thread's current device (CUDA_VISIBLE_DEVICES and
 * cudaSetDevice choose it) into ctx, or says why there is none. */
eplb_status eplb_cuda_device_open(eplb_cuda_context *ctx, char *error, size_t error_len);

/* Frees what eplb_cuda_device_open and the stages allocated (not ctx itself). */
void eplb_cuda_device_close(eplb_cuda_context *ctx);

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

/* A failed runtime call as a backend error: out of memory, or a backend failure. */
eplb_status eplb_cuda_fail(eplb_backend *backend, const char *what, cudaError_t err);

/* Checks the last launch; a failure becomes a backend error naming the stage. */
static inline eplb_status eplb_cuda_launched(eplb_backend *backend, const char *stage)
{
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return eplb_backend_error(backend, EPLB_ERR_BACKEND_FAILURE, "%s kernel: %s", stage,
                                  cudaGetErrorString(err));
    return EPLB_OK;
}

/* Makes the backend's scratch at least bytes long (grown, never per call once large enough). */
eplb_status eplb_cuda_scratch(eplb_backend *backend, size_t bytes, void **out);

/* Where the per-block state of a stage that works a row per block goes
 * (state_bytes per block): dynamic shared memory while it fits the default
 * 48 KiB, else the global scratch, a state per block, with *blocks capped at
 * four per multiprocessor so that the scratch stays small. Sets *smem to
 * the dynamic shared memory to launch with and *global_state to the
 * scratch, or NULL for shared memory. */
eplb_status eplb_cuda_block_state(eplb_backend *backend, size_t state_bytes, unsigned *blocks,
                                  size_t *smem, unsigned char **global_state);

/* Blocks of a grid-stride kernel over count elements, at most cap: the
 * kernel's threads stride over the rest. */
static inline unsigned eplb_cuda_grid_blocks(int64_t count, int threads, int64_t cap = 65535)
{
    const int64_t blocks = (count + threads - 1) / threads;
    return (unsigned)(blocks > cap ? cap : blocks);
}

/* Lets kernel use all the shared memory a block may opt into. */
template <class Kernel>
static inline void eplb_cuda_allow_smem(Kernel kernel, size_t smem_optin)
{
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_optin);
}

static inline size_t eplb_cuda_align(size_t bytes) { return (bytes + 15) & ~(size_t)15; }

static inline __host__ __device__ uint32_t eplb_cuda_pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

#endif /* EPLB_CUDA_RUNTIME_CUH */
