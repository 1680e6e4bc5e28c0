/* One candidate of one balanced packing (SPEC 6.1 to 6.3) by one warp: sort,
 * greedy and swap, in registers where the calling kernel's register budget
 * allows. Used by plan_fused. */
#ifndef EPLB_CUDA_PACK_CANDIDATE_CUH
#define EPLB_CUDA_PACK_CANDIDATE_CUH

#include "cuda_pack_greedy.cuh"
#include "cuda_pack_select.cuh"
#include "cuda_pack_sort.cuh"
#include "cuda_pack_swap.cuh"

/* The register-resident rows a kernel of at most MaxThreads threads affords
 * without spilling (the block size bounds each thread's registers: 255 at
 * 256 threads, 64 at 1024): sort entries, greedy packs and replicated items
 * per lane. Larger rows use shared memory. */
template <int MaxThreads>
struct eplb_cuda_register_budget {
    static constexpr int sort_per_lane = MaxThreads <= 256 ? 16 : MaxThreads <= 512 ? 8 : 4;
    static constexpr int packs_per_lane = MaxThreads <= 256 ? 8 : MaxThreads <= 512 ? 4 : 3;
    static constexpr int items_per_lane = MaxThreads <= 256 ? 8 : MaxThreads <= 512 ? 4 : 2;
};

/* Bytes of one warp's scratch for rows of n items in m packs. */
static inline __host__ __device__ size_t eplb_cuda_warp_scratch_bytes(uint32_t n, uint32_t m)
{
    return (size_t)eplb_cuda_pow2_at_least(n) * sizeof(uint64_t) + 2 * (((size_t)m * 4 + 15) & ~(size_t)15);
}

/* One candidate of one packing by one warp; returns its score (max pack load)
 * to every lane. scratch: eplb_cuda_warp_scratch_bytes(n, m) bytes, 16-aligned.
 * MaxThreads: the calling kernel's largest block (eplb_cuda_register_budget). */
template <int MaxThreads>
static __device__ float eplb_warp_pack_candidate(const eplb_warp_team &team, const float *w,
                                                 uint32_t n, uint32_t m, uint32_t k, int32_t call,
                                                 int64_t row, int32_t c, uint64_t seed,
                                                 float noise, int32_t iterations, float tolerance,
                                                 int32_t *content, unsigned char *scratch)
{
    using budget = eplb_cuda_register_budget<MaxThreads>;
    const uint32_t npow2 = eplb_cuda_pow2_at_least(n);
    uint64_t *sorted = (uint64_t *)scratch;
    float *load = (float *)(scratch + (size_t)npow2 * sizeof(uint64_t));
    int32_t *count = (int32_t *)((unsigned char *)load + (((size_t)m * 4 + 15) & ~(size_t)15));
    /* The item of visiting position t is order[t * stride]. */
    const int32_t *order = (const int32_t *)sorted;
    uint32_t stride = 1;
    if (!eplb_warp_try_sort_in_registers<budget::sort_per_lane>(team.rank(), w, n, npow2, call,
                                                                row, c, seed, noise,
                                                                (int32_t *)sorted)) {
        eplb_team_pack_sort(team, w, n, npow2, call, row, c, seed, noise, sorted);
        stride = 2; /* the item is the low word of each sorted entry */
    }
    if (m == 1) {
        /* One pack: it takes the items in visiting order, its load is their
         * sum in that (slot) order, and the swap stops at once (heavy == light). */
        for (uint32_t t = team.rank(); t < n; t += 32)
            content[t] = order[(size_t)t * stride];
        float sum = 0.0f;
        if (team.rank() == 0)
            for (uint32_t t = 0; t < n; t++)
                sum += w[order[(size_t)t * stride]];
        __syncwarp();
        return __shfl_sync(0xFFFFFFFFu, sum, 0);
    }
    if (!eplb_warp_try_greedy_in_registers<budget::packs_per_lane>(team.rank(), w, order, stride,
                                                                   n, m, k, content, load))
        eplb_team_pack_greedy(team, w, order, stride, n, m, k, content, load, count);
    if (iterations > 0)
        eplb_team_pack_swap(team, w, m, k, iterations, tolerance, content, load, true);
    return eplb_team_max_load(team, load, m);
}

#endif
