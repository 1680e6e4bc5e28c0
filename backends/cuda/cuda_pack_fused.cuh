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

/* Sort into order[0..n) with the register network when the padded row fits
 * MaxKPL entries per lane (bounded by the kernel's register budget); false
 * when it does not. */
template <int MaxKPL, bool Fast = false>
static __device__ __forceinline__ bool eplb_warp_sort_in_registers(
    uint32_t lane, const float *w, uint32_t n, uint32_t npow2, int32_t call, int64_t row,
    int32_t c, uint64_t seed, float noise, int32_t *order)
{
    const uint32_t kpl = npow2 <= 32 ? 1u : npow2 / 32;
    if (kpl > (uint32_t)MaxKPL)
        return false;
    if constexpr (Fast) {
        if (kpl == 1)
            eplb_warp_pack_sort_loop<1>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 2)
            if (kpl == 2)
                eplb_warp_pack_sort_loop<2>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 4)
            if (kpl == 4)
                eplb_warp_pack_sort_loop<4>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 8)
            if (kpl == 8)
                eplb_warp_pack_sort_loop<8>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 16)
            if (kpl == 16)
                eplb_warp_pack_sort_loop<16>(lane, w, n, call, row, c, seed, noise, order);
    } else {
        if (kpl == 1)
            eplb_warp_pack_sort_regs<1>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 2)
            if (kpl == 2)
                eplb_warp_pack_sort_regs<2>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 4)
            if (kpl == 4)
                eplb_warp_pack_sort_regs<4>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 8)
            if (kpl == 8)
                eplb_warp_pack_sort_regs<8>(lane, w, n, call, row, c, seed, noise, order);
        if constexpr (MaxKPL >= 16)
            if (kpl == 16)
                eplb_warp_pack_sort_regs<16>(lane, w, n, call, row, c, seed, noise, order);
    }
    __syncwarp();
    return true;
}

/* Greedy with the pack loads in registers when m <= 32*MaxPPL; false when
 * it does not fit. */
template <int MaxPPL, bool Fast = false>
static __device__ __forceinline__ bool eplb_warp_greedy_in_registers(
    uint32_t lane, const float *w, const int32_t *order, uint32_t stride, uint32_t n, uint32_t m,
    uint32_t k, int32_t *content, float *load)
{
    if (m > 32u * MaxPPL)
        return false;
    if constexpr (Fast) {
        if (m <= 32)
            eplb_warp_pack_greedy_regs2<1>(lane, w, order, stride, n, m, k, content, load);
        else if (m <= 64)
            eplb_warp_pack_greedy_regs2<2>(lane, w, order, stride, n, m, k, content, load);
        else if (m <= 96)
            eplb_warp_pack_greedy_regs2<3>(lane, w, order, stride, n, m, k, content, load);
        else if constexpr (MaxPPL >= 4) {
            if (m <= 128)
                eplb_warp_pack_greedy_regs2<4>(lane, w, order, stride, n, m, k, content, load);
            else if constexpr (MaxPPL >= 8)
                eplb_warp_pack_greedy_regs2<8>(lane, w, order, stride, n, m, k, content, load);
        }
    } else {
        if (m <= 32)
            eplb_warp_pack_greedy_regs<1>(lane, w, order, stride, n, m, k, content, load);
        else if (m <= 64)
            eplb_warp_pack_greedy_regs<2>(lane, w, order, stride, n, m, k, content, load);
        else if (m <= 96)
            eplb_warp_pack_greedy_regs<3>(lane, w, order, stride, n, m, k, content, load);
        else if constexpr (MaxPPL >= 4) {
            if (m <= 128)
                eplb_warp_pack_greedy_regs<4>(lane, w, order, stride, n, m, k, content, load);
            else if constexpr (MaxPPL >= 8)
                eplb_warp_pack_greedy_regs<8>(lane, w, order, stride, n, m, k, content, load);
        }
    }
    return true;
}

/* One candidate of one packing by one warp; returns its score (max pack load)
 * to every lane. scratch: eplb_cuda_warp_scratch_bytes(n, m) bytes, 16-aligned.
 * MaxKPL, MaxPPL: the largest register sort and greedy the calling kernel's
 * register budget affords (MaxPPL >= 3); larger rows use shared memory. */
template <int MaxKPL, int MaxPPL, bool Fast = false>
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
    /* The item of visiting position t is order[t * stride]. */
    const int32_t *order = (const int32_t *)sorted;
    uint32_t stride = 1;
    if (!eplb_warp_sort_in_registers<MaxKPL, Fast>(team.rank(), w, n, npow2, call, row, c, seed,
                                                   noise, (int32_t *)sorted)) {
        eplb_team_pack_sort(team, w, n, npow2, call, row, c, seed, noise, sorted);
        stride = 2; /* the item is the low word of each sorted entry */
    }
    if (Fast && m == 1) {
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
    if (!eplb_warp_greedy_in_registers<MaxPPL, Fast>(team.rank(), w, order, stride, n, m, k,
                                                     content, load))
        eplb_team_pack_greedy(team, w, order, stride, n, m, k, content, load, count);
    if (iterations > 0)
        eplb_team_pack_swap(team, w, m, k, iterations, tolerance, content, load, true);
    return eplb_team_max_load(team, load, m);
}

/* The interface's pack_fused; falls back to the four stage kernels when a
 * warp's scratch does not fit in shared memory. */
eplb_status eplb_cuda_pack_fused(eplb_backend *backend, const eplb_pack_job *job);
void eplb_cuda_pack_fused_init(size_t smem_optin);

#endif
