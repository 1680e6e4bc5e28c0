/* Balanced packing in one launch: one block per row, one warp per candidate
 * (sort, greedy, swap and score all by that warp), then the block selects. */
#ifndef EPLB_CUDA_PACK_FUSED_CUH
#define EPLB_CUDA_PACK_FUSED_CUH

#include "cuda_common.cuh"
#include "cuda_pack_greedy.cuh"
#include "cuda_pack_select.cuh"
#include "cuda_pack_sort.cuh"
#include "cuda_pack_swap.cuh"

/* Bytes of one warp's scratch for rows of n items in m packs. */
static inline __host__ __device__ size_t eplb_cuda_warp_scratch_bytes(uint32_t n, uint32_t m)
{
    return (size_t)eplb_cuda_pow2_at_least(n) * sizeof(uint64_t) + 2 * (((size_t)m * 4 + 15) & ~(size_t)15);
}

/* One candidate of one packing by one warp; returns its score (max pack load)
 * to every lane. scratch: eplb_cuda_warp_scratch_bytes(n, m) bytes, 16-aligned. */
static __device__ float eplb_warp_pack_candidate(const eplb_warp_team &team, const float *w,
                                                 uint32_t n, uint32_t m, uint32_t k, int32_t call,
                                                 int64_t row, int32_t c, uint64_t seed,
                                                 float noise, int32_t iterations, float tolerance,
                                                 int32_t *content, unsigned char *scratch)
{
    const uint32_t npow2 = eplb_cuda_pow2_at_least(n);
    uint64_t *sorted = (uint64_t *)scratch;
    float *load = (float *)(scratch + (size_t)npow2 * sizeof(uint64_t));
    int32_t *count = (int32_t *)((unsigned char *)load + (((size_t)m * 4 + 15) & ~(size_t)15));
    eplb_team_pack_sort(team, w, n, npow2, call, row, c, seed, noise, sorted);
    /* Stride 2: the item is the low word of each sorted entry. */
    eplb_team_pack_greedy(team, w, (const int32_t *)sorted, 2, n, m, k, content, load, count);
    if (iterations > 0)
        eplb_team_pack_swap(team, w, m, k, iterations, tolerance, content, load, true);
    return eplb_team_max_load(team, load, m);
}

/* The interface's pack_fused; falls back to the four stage kernels when a
 * warp's scratch does not fit in shared memory. */
eplb_status eplb_cuda_pack_fused(eplb_backend *backend, const eplb_pack_job *job);
void eplb_cuda_pack_fused_init(size_t smem_optin);

#endif
