/* Device helpers shared by the stages: the order-preserving float keys that
 * let a min/max reduction keep the SPEC's tie rules, the two kinds of
 * cooperating thread teams (a warp, a block), and the kernel that runs one
 * packing per team. */
#ifndef EPLB_CUDA_TEAMS_CUH
#define EPLB_CUDA_TEAMS_CUH

#include "cuda_runtime.cuh"

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

/* The minimum (or maximum, Max) of v over the 32 lanes of the warp, by shuffles. */
template <bool Max>
static __device__ __forceinline__ uint32_t eplb_cuda_shuffle_reduce(uint32_t v)
{
    for (int offset = 16; offset > 0; offset >>= 1) {
        uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
        v = Max ? (o > v ? o : v) : (o < v ? o : v);
    }
    return v;
}

/* The minimum (or maximum, Max) of v over the 32 lanes of the warp; Ampere
 * and later reduce a warp in one instruction. The register greedy and
 * replication call it directly, not through an eplb_warp_team: a team object
 * there compiles plan_fused to other code than the kernel docs/benchmarks.md timed. */
template <bool Max>
static __device__ __forceinline__ uint32_t eplb_warp_reduce(uint32_t v)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    return Max ? __reduce_max_sync(0xFFFFFFFFu, v) : __reduce_min_sync(0xFFFFFFFFu, v);
#else
    return eplb_cuda_shuffle_reduce<Max>(v);
#endif
}

/* Every member of a team calls every collective; results reach all members. */
struct eplb_warp_team {
    unsigned lane;
    __device__ explicit eplb_warp_team(unsigned lane_) : lane(lane_) {}
    __device__ __forceinline__ unsigned rank() const { return lane; }
    __device__ __forceinline__ unsigned size() const { return 32u; }
    __device__ __forceinline__ void sync() const { __syncwarp(); }
    __device__ __forceinline__ uint32_t min_u32(uint32_t v) const { return eplb_warp_reduce<false>(v); }
    __device__ __forceinline__ uint32_t max_u32(uint32_t v) const { return eplb_warp_reduce<true>(v); }
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
        v = eplb_cuda_shuffle_reduce<Max>(v);
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

/* ---- one packing per team ------------------------------------------------- */

/* Runs Stage::run(team, job, x, state) on every packing x = row * C + c of
 * job, a warp per packing (Warp) or a block; each packing has state_bytes of
 * state in shared memory, or in global_state when that does not fit. */
template <class Stage, bool Warp>
__global__ void eplb_cuda_packings_kernel(eplb_pack_job job, int64_t packings,
                                          unsigned char *global_state, size_t state_bytes)
{
    extern __shared__ __align__(16) unsigned char eplb_packing_state[];
    __shared__ uint32_t red[32];
    const uint32_t teams = Warp ? blockDim.x / 32 : 1, t = Warp ? threadIdx.x / 32 : 0;
    for (int64_t x = blockIdx.x * (int64_t)teams + t; x < packings; x += (int64_t)gridDim.x * teams) {
        unsigned char *state = global_state ? global_state + x * state_bytes
                                            : eplb_packing_state + (size_t)t * state_bytes;
        if (Warp)
            Stage::run(eplb_warp_team(threadIdx.x & 31u), job, x, state);
        else
            Stage::run(eplb_block_team(red), job, x, state);
    }
}

/* Launches Stage over every packing of job: four warps per block, a packing
 * each, when warp is set, else a block of 256 threads per packing. The state
 * goes to the backend's global scratch when a block's share would pass 48 KiB. */
template <class Stage>
static eplb_status eplb_cuda_launch_packings(eplb_backend *backend, const eplb_pack_job *job,
                                             size_t state_bytes, bool warp, const char *stage)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    const int64_t packings = job->rows * job->candidates;
    const int teams = warp ? 4 : 1;
    void *global_state = NULL;
    size_t smem = state_bytes * (size_t)teams;
    if (smem > 48 * 1024) {
        eplb_status st = eplb_cuda_scratch(backend, state_bytes * (size_t)packings, &global_state);
        if (st != EPLB_OK)
            return st;
        smem = 0;
    }
    const unsigned blocks = eplb_cuda_grid_blocks(packings, teams, 65535L * 16);
    if (warp)
        eplb_cuda_packings_kernel<Stage, true><<<blocks, 32 * teams, smem, ctx->stream>>>(
            *job, packings, (unsigned char *)global_state, state_bytes);
    else
        eplb_cuda_packings_kernel<Stage, false><<<blocks, 256, smem, ctx->stream>>>(
            *job, packings, (unsigned char *)global_state, state_bytes);
    return eplb_cuda_launched(backend, stage);
}

#endif /* EPLB_CUDA_TEAMS_CUH */
