/* Shared by every cuda stage: the backend's state, launch helpers, the two
 * kinds of cooperating thread teams (a warp, a block) and the order-preserving
 * float keys that let a min/max reduction keep the SPEC's tie rules. */
#ifndef EPLB_CUDA_COMMON_CUH
#define EPLB_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "backend.h"

/* ---- backend state ------------------------------------------------------ */

typedef struct eplb_cuda_context {
    int device;                 /* device ordinal the instance was opened on */
    cudaStream_t stream;        /* stream of later work (set_stream); NULL: legacy default */
    size_t smem_optin;          /* largest dynamic shared memory per block (opt-in) */
    int sm_count;
    void *scratch;              /* global scratch for stages whose state does not fit on chip */
    size_t scratch_bytes;
    int path;                   /* EPLB_CUDA_PATH: 0 fused (default), 1 pack_fused, 2 stages, 3 fused_prev, 4 fused_layer */
    char name[320];
} eplb_cuda_context;

static inline eplb_cuda_context *eplb_cuda_ctx(eplb_backend *backend)
{
    return (eplb_cuda_context *)backend->context;
}

/* Checks the last launch; a failure becomes a backend error naming the stage. */
static inline eplb_status eplb_cuda_launched(eplb_backend *backend, const char *stage)
{
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return eplb_backend_error(backend, EPLB_ERR_BACKEND_FAILURE, "%s kernel: %s", stage,
                                  cudaGetErrorString(err));
    return EPLB_OK;
}

/* Values of EPLB_CUDA_PATH, read once per instance: every path gives the
 * same plan; the conformance check runs them all. fused_prev is the fused
 * path with the previous lane algorithms (unrolled sort, long greedy chain),
 * kept to time and cross-check the current ones. fused_layer is the fused
 * path without the block per (layer, node) split (one block per layer). */
enum {
    EPLB_CUDA_PATH_FUSED = 0,
    EPLB_CUDA_PATH_PACK_FUSED = 1,
    EPLB_CUDA_PATH_STAGES = 2,
    EPLB_CUDA_PATH_FUSED_PREV = 3,
    EPLB_CUDA_PATH_FUSED_LAYER = 4
};

/* Makes the backend's scratch at least bytes long (grown, never per call once large enough). */
eplb_status eplb_cuda_scratch(eplb_backend *backend, size_t bytes, void **out);

/* Launch shape of a per-packing stage kernel: `teams` packings per block, each
 * with state_bytes of state in shared memory, or in the backend's global
 * scratch (then *global_state is set and *smem is 0) when a block's share
 * would pass 48 KiB. The block count is capped; kernels stride over the rest. */
static inline eplb_status eplb_cuda_packing_launch(eplb_backend *backend, int64_t packings,
                                                   size_t state_bytes, int teams,
                                                   int64_t *blocks, size_t *smem,
                                                   void **global_state)
{
    *global_state = NULL;
    *smem = state_bytes * (size_t)teams;
    if (*smem > 48 * 1024) {
        eplb_status st = eplb_cuda_scratch(backend, state_bytes * (size_t)packings, global_state);
        if (st != EPLB_OK)
            return st;
        *smem = 0;
    }
    *blocks = (packings + teams - 1) / teams;
    if (*blocks > 65535L * 16)
        *blocks = 65535L * 16;
    return EPLB_OK;
}

/* ---- keys ----------------------------------------------------------------- */

/* The cpu sort's key order: a float to an unsigned with the same order, -0 == +0. */
static __device__ __forceinline__ uint32_t eplb_cuda_ordered_bits(float key)
{
    if (key == 0.0f)
        return 0x80000000u;
    uint32_t bits = __float_as_uint(key);
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

/* Loads are sums of non-negative weights, never -0 nor NaN: their bits order them. */
static __device__ __forceinline__ uint32_t eplb_cuda_load_key(float load)
{
    return __float_as_uint(load);
}

/* A swap change as a min-key: -0 == +0, NaN above everything (a NaN never wins
 * a strict "<" comparison, so it is never chosen over a number). */
static __device__ __forceinline__ uint32_t eplb_cuda_change_key(float change)
{
    if (change != change)
        return 0xFFFFFFFFu;
    return eplb_cuda_ordered_bits(change);
}

/* ---- teams ---------------------------------------------------------------- */

/* Every member of a team calls every collective; results reach all members. */
struct eplb_warp_team {
    unsigned lane;
    __device__ explicit eplb_warp_team(unsigned lane_) : lane(lane_) {}
    __device__ __forceinline__ unsigned rank() const { return lane; }
    __device__ __forceinline__ unsigned size() const { return 32u; }
    __device__ __forceinline__ void sync() const { __syncwarp(); }
    __device__ __forceinline__ uint32_t min_u32(uint32_t v) const
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        return __reduce_min_sync(0xFFFFFFFFu, v);
#else
        for (int offset = 16; offset > 0; offset >>= 1) {
            uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
            v = o < v ? o : v;
        }
        return v;
#endif
    }
    __device__ __forceinline__ uint32_t max_u32(uint32_t v) const
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        return __reduce_max_sync(0xFFFFFFFFu, v);
#else
        for (int offset = 16; offset > 0; offset >>= 1) {
            uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
            v = o > v ? o : v;
        }
        return v;
#endif
    }
};

/* A whole block; red is 32 words of shared memory owned by the team. */
struct eplb_block_team {
    uint32_t *red;
    __device__ explicit eplb_block_team(uint32_t *red_) : red(red_) {}
    __device__ __forceinline__ unsigned rank() const { return threadIdx.x; }
    __device__ __forceinline__ unsigned size() const { return blockDim.x; }
    __device__ __forceinline__ void sync() const { __syncthreads(); }
    template <bool Max>
    __device__ __forceinline__ uint32_t reduce(uint32_t v) const
    {
        for (int offset = 16; offset > 0; offset >>= 1) {
            uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
            v = Max ? (o > v ? o : v) : (o < v ? o : v);
        }
        if ((threadIdx.x & 31u) == 0)
            red[threadIdx.x >> 5] = v;
        __syncthreads();
        uint32_t r = red[0];
        for (unsigned w = 1; w < (blockDim.x + 31u) / 32u; w++)
            r = Max ? (red[w] > r ? red[w] : r) : (red[w] < r ? red[w] : r);
        __syncthreads(); /* red is reused by the next reduction */
        return r;
    }
    __device__ __forceinline__ uint32_t min_u32(uint32_t v) const { return reduce<false>(v); }
    __device__ __forceinline__ uint32_t max_u32(uint32_t v) const { return reduce<true>(v); }
};

/* True in the lowest lane whose vote is set: its bit is the lowest of the
 * ballot (one mask test, no bit reverse / find-first). le = lanes <= this one. */
static __device__ __forceinline__ bool eplb_cuda_lowest_vote(bool vote, uint32_t le, uint32_t me)
{
    return (__ballot_sync(0xFFFFFFFFu, vote) & le) == me;
}

/* Keeps a value computed here: the compiler would otherwise sink the
 * speculative winner state below the reduction it is meant to overlap. */
template <class T>
static __device__ __forceinline__ void eplb_cuda_keep(T &v)
{
    asm volatile("" : "+r"(v));
}

/* Index of the smallest key, ties to the lowest index (index < 0xFFFFFFFF). */
template <class Team>
static __device__ __forceinline__ uint32_t eplb_team_argmin(const Team &team, uint32_t key,
                                                            uint32_t index)
{
    const uint32_t best = team.min_u32(key);
    return team.min_u32(key == best ? index : 0xFFFFFFFFu);
}

/* Index of the largest key, ties to the lowest index. */
template <class Team>
static __device__ __forceinline__ uint32_t eplb_team_argmax(const Team &team, uint32_t key,
                                                            uint32_t index)
{
    const uint32_t best = team.max_u32(key);
    return team.min_u32(key == best ? index : 0xFFFFFFFFu);
}

static inline size_t eplb_cuda_align(size_t bytes) { return (bytes + 15) & ~(size_t)15; }

static inline __host__ __device__ uint32_t eplb_cuda_pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

#endif /* EPLB_CUDA_COMMON_CUH */
