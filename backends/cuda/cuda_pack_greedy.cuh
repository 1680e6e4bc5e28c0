/* Stage 2 of balanced packing (SPEC 6.2) on the device: items in visiting
 * order, each into the least-loaded open pack (ties: lowest index). Pack p is
 * owned by team member p % size, so only the argmin is collective. */
#ifndef EPLB_CUDA_PACK_GREEDY_CUH
#define EPLB_CUDA_PACK_GREEDY_CUH

#include "cuda_teams.cuh"

/* order[t * stride] is the item of visiting position t (stride 2 reads the low
 * words of a sorted 64-bit buffer). load and count hold m entries. Leaves
 * load[p] equal to pack p's weights summed in slot order. */
template <class Team>
static __device__ void eplb_team_pack_greedy(const Team &team, const float *w,
                                             const int32_t *order, uint32_t stride, uint32_t n,
                                             uint32_t m, uint32_t k, int32_t *content,
                                             float *load, int32_t *count)
{
    const uint32_t me = team.rank(), size = team.size();
    for (uint32_t p = me; p < m; p += size) {
        load[p] = 0.0f;
        count[p] = 0;
    }
    for (uint32_t t = 0; t < n; t++) {
        uint32_t key = 0xFFFFFFFFu, index = 0xFFFFFFFFu;
        for (uint32_t p = me; p < m; p += size) {
            if ((uint32_t)count[p] < k) {
                const uint32_t kp = eplb_cuda_load_key(load[p]);
                if (kp < key) {
                    key = kp;
                    index = p;
                }
            }
        }
        const uint32_t p = eplb_team_argmin(team, key, index);
        if (p % size == me) {
            const int32_t item = order[(size_t)t * stride];
            content[(size_t)p * k + (uint32_t)count[p]] = item;
            count[p]++;
            load[p] += w[item];
        }
    }
    team.sync();
}

/* The fused kernels' greedy; it beats the team greedy on the H200 runs of
 * docs/benchmarks.md (CUDA, "how it got here"). The same greedy by one warp
 * with the pack state in registers: lane L owns
 * packs L*PPL .. L*PPL+PPL-1 (needs m <= 32*PPL). A full (or absent) pack's
 * key is 0xFFFFFFFF, above every load's bits, +inf included, so the minimum
 * is the SPEC's choice even when open loads overflowed. Each lane's argmin
 * keeps its lowest pack on ties and packs grow with the lane number, so the
 * lowest lane holding the warp minimum holds the lowest such pack. The chain
 * per item is kept short, and exact:
 * - visiting positions t < z, z = the first position of a zero weight (at
 *   most m), go to pack t: packs 0..t-1 then hold positive loads and packs
 *   t.. load 0, so pack t is the lowest least-loaded open pack;
 * - each lane computes before the reduction what its state becomes if it
 *   wins (the FADD, the new key, its next local minimum), so the chain per
 *   item is reduce -> ballot -> lowest-lane test -> select;
 * - items are read two steps ahead so no shared-memory load waits in line.
 * Writes load[0..m) like the team greedy. */
template <int PPL>
static __device__ void eplb_warp_pack_greedy_registers(uint32_t lane, const float *w,
                                                       const int32_t *order, uint32_t stride,
                                                       uint32_t n, uint32_t m, uint32_t k,
                                                       int32_t *content, float *load)
{
    float ld[PPL];
    uint32_t cnt[PPL], key[PPL];
    const uint32_t me = 1u << lane, le = me | (me - 1u);
    uint32_t zero_at = m;
    for (uint32_t t = lane; t < m; t += 32)
        if (!(w[order[(size_t)t * stride]] > 0.0f) && t < zero_at)
            zero_at = t;
    const uint32_t z = eplb_warp_team(lane).min_u32(zero_at);
#pragma unroll
    for (int r = 0; r < PPL; r++) {
        const uint32_t p = lane * PPL + (uint32_t)r;
        ld[r] = 0.0f;
        cnt[r] = p < m ? 0u : k; /* absent packs count as full */
        if (p < z) {
            const int32_t item = order[(size_t)p * stride];
            content[(size_t)p * k] = item;
            ld[r] = 0.0f + w[item];
            cnt[r] = 1;
        }
        key[r] = cnt[r] < k ? eplb_cuda_load_key(ld[r]) : 0xFFFFFFFFu;
    }
    /* This lane's least-loaded open pack (lowest on ties) and its state. */
    uint32_t lkey = key[0], cnt_m = cnt[0];
    int mine = 0;
    float ld_m = ld[0];
#pragma unroll
    for (int r = 1; r < PPL; r++)
        if (key[r] < lkey) {
            lkey = key[r];
            mine = r;
            cnt_m = cnt[r];
            ld_m = ld[r];
        }
    int32_t item = z < n ? order[(size_t)z * stride] : 0;
    float weight = w[item];
    int32_t item_next = z + 1 < n ? order[(size_t)(z + 1) * stride] : 0;
    for (uint32_t t = z; t < n; t++) {
        const float weight_next = w[item_next];
        const int32_t item_after = t + 2 < n ? order[(size_t)(t + 2) * stride] : 0;
        /* If this lane wins: its pack's new load and key, and its next minimum. */
        const float won_ld = ld_m + weight;
        const uint32_t won_key = cnt_m + 1 < k ? eplb_cuda_load_key(won_ld) : 0xFFFFFFFFu;
        uint32_t next_key = mine == 0 ? won_key : key[0];
        int next_mine = 0;
#pragma unroll
        for (int r = 1; r < PPL; r++) {
            const uint32_t kr = mine == r ? won_key : key[r];
            if (kr < next_key) {
                next_key = kr;
                next_mine = r;
            }
        }
        uint32_t slot = (lane * PPL + (uint32_t)mine) * k + cnt_m;
        eplb_cuda_keep(next_key);
        eplb_cuda_keep(next_mine);
        eplb_cuda_keep(slot);
        const uint32_t best = eplb_warp_reduce<false>(lkey);
        const bool win = eplb_cuda_lowest_vote(lkey == best, le, me);
        if (win)
            content[slot] = item;
#pragma unroll
        for (int r = 0; r < PPL; r++) {
            const bool mine_r = win && mine == r;
            ld[r] = mine_r ? won_ld : ld[r];
            cnt[r] = mine_r ? cnt_m + 1 : cnt[r];
            key[r] = mine_r ? won_key : key[r];
        }
        lkey = win ? next_key : lkey;
        mine = win ? next_mine : mine;
        /* The state of the new minimum, as selects over the arrays together: a
         * select helper per array unrolls the loop differently (docs/benchmarks.md's kernel). */
        ld_m = ld[0];
        cnt_m = cnt[0];
#pragma unroll
        for (int r = 1; r < PPL; r++) {
            ld_m = mine == r ? ld[r] : ld_m;
            cnt_m = mine == r ? cnt[r] : cnt_m;
        }
        item = item_next;
        weight = weight_next;
        item_next = item_after;
    }
#pragma unroll
    for (int r = 0; r < PPL; r++)
        if (lane * PPL + (uint32_t)r < m)
            load[lane * PPL + (uint32_t)r] = ld[r];
    __syncwarp();
}

/* Greedy with the pack loads in registers when m <= 32*MaxPPL; false when it
 * does not fit. */
template <int MaxPPL>
static __device__ __forceinline__ bool eplb_warp_try_greedy_in_registers(
    uint32_t lane, const float *w, const int32_t *order, uint32_t stride, uint32_t n, uint32_t m,
    uint32_t k, int32_t *content, float *load)
{
    if (m > 32u * MaxPPL)
        return false;
    if (m <= 32)
        eplb_warp_pack_greedy_registers<1>(lane, w, order, stride, n, m, k, content, load);
    else if (m <= 64)
        eplb_warp_pack_greedy_registers<2>(lane, w, order, stride, n, m, k, content, load);
    else if (m <= 96)
        eplb_warp_pack_greedy_registers<3>(lane, w, order, stride, n, m, k, content, load);
    else if constexpr (MaxPPL >= 4) {
        if (m <= 128)
            eplb_warp_pack_greedy_registers<4>(lane, w, order, stride, n, m, k, content, load);
        else if constexpr (MaxPPL >= 8)
            eplb_warp_pack_greedy_registers<8>(lane, w, order, stride, n, m, k, content, load);
    }
    return true;
}

eplb_status eplb_cuda_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);

#endif
