/* Replication (SPEC section 5) on the device: each extra slot goes to the item
 * with the largest w/cnt (ties: lowest index). One warp per row; item i is
 * owned by lane i % 32, so only the argmax is collective. */
#ifndef EPLB_CUDA_REPLICATE_CUH
#define EPLB_CUDA_REPLICATE_CUH

#include "cuda_common.cuh"

/* value is n floats of scratch (w / cnt of each item). */
static __device__ void eplb_warp_replicate(const eplb_warp_team &team, const float *w, uint32_t n,
                                           uint32_t p, int32_t *phy2mlog, int32_t *phyrank,
                                           int32_t *cnt, float *value)
{
    const uint32_t me = team.rank();
    for (uint32_t i = me; i < n; i += 32) {
        phy2mlog[i] = (int32_t)i;
        phyrank[i] = 0;
        cnt[i] = 1;
        value[i] = w[i]; /* w / 1 */
    }
    for (uint32_t s = n; s < p; s++) {
        uint32_t key = 0, index = 0xFFFFFFFFu;
        for (uint32_t i = me; i < n; i += 32) {
            /* Values are >= 0; clearing the sign makes -0 equal to +0. */
            const uint32_t ki = __float_as_uint(value[i]) & 0x7FFFFFFFu;
            if (index == 0xFFFFFFFFu || ki > key) {
                key = ki;
                index = i;
            }
        }
        const uint32_t i = eplb_team_argmax(team, key, index);
        if (i % 32 == me) {
            phy2mlog[s] = (int32_t)i;
            phyrank[s] = cnt[i];
            cnt[i]++;
            value[i] = w[i] / (float)cnt[i];
        }
    }
    team.sync();
}

/* The same replication with the items' counts and values in registers: lane
 * L owns items L*IPL .. L*IPL+IPL-1 (needs n <= 32*IPL). Each lane's argmax
 * keeps its lowest item on ties and items grow with the lane number, so the
 * lowest lane holding the warp maximum holds the SPEC's item. Absent items
 * have key 0 and come after every present one, so they never win a tie. */
template <int IPL>
static __device__ void eplb_warp_replicate_regs(uint32_t lane, const float *w, uint32_t n,
                                                uint32_t p, int32_t *phy2mlog, int32_t *phyrank,
                                                int32_t *cnt_out)
{
    float wt[IPL];
    uint32_t key[IPL];
    int32_t cnt[IPL];
#pragma unroll
    for (int r = 0; r < IPL; r++) {
        const uint32_t i = lane * IPL + (uint32_t)r;
        wt[r] = i < n ? w[i] : 0.0f;
        cnt[r] = 1;
        /* Values are >= 0; clearing the sign makes -0 equal to +0. */
        key[r] = i < n ? __float_as_uint(wt[r]) & 0x7FFFFFFFu : 0u;
        if (i < n) {
            phy2mlog[i] = (int32_t)i;
            phyrank[i] = 0;
        }
    }
    for (uint32_t s = n; s < p; s++) {
        uint32_t best_key = key[0];
        int mine = 0;
#pragma unroll
        for (int r = 1; r < IPL; r++)
            if (key[r] > best_key) {
                best_key = key[r];
                mine = r;
            }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        const uint32_t best = __reduce_max_sync(0xFFFFFFFFu, best_key);
#else
        const uint32_t best = eplb_warp_team(lane).max_u32(best_key);
#endif
        const uint32_t winner = (uint32_t)__ffs(__ballot_sync(0xFFFFFFFFu, best_key == best)) - 1u;
        if (lane == winner) {
#pragma unroll
            for (int r = 0; r < IPL; r++)
                if (r == mine) {
                    phy2mlog[s] = (int32_t)(lane * IPL + (uint32_t)r);
                    phyrank[s] = cnt[r];
                    cnt[r]++;
                    key[r] = __float_as_uint(wt[r] / (float)cnt[r]) & 0x7FFFFFFFu;
                }
        }
    }
#pragma unroll
    for (int r = 0; r < IPL; r++)
        if (lane * IPL + (uint32_t)r < n)
            cnt_out[lane * IPL + (uint32_t)r] = cnt[r];
    __syncwarp();
}

/* Replication of one row by one warp: in registers when n <= 32*MaxIPL,
 * otherwise with value[] (n floats) in memory. */
template <int MaxIPL>
static __device__ __forceinline__ void eplb_warp_replicate_row(const eplb_warp_team &team,
                                                               const float *w, uint32_t n,
                                                               uint32_t p, int32_t *phy2mlog,
                                                               int32_t *phyrank, int32_t *cnt,
                                                               float *value)
{
    const uint32_t lane = team.rank();
    if (n <= 32)
        eplb_warp_replicate_regs<1>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else if (n <= 64 && MaxIPL >= 2)
        eplb_warp_replicate_regs<(MaxIPL >= 2 ? 2 : 1)>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else if (n <= 128 && MaxIPL >= 4)
        eplb_warp_replicate_regs<(MaxIPL >= 4 ? 4 : 1)>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else if (n <= 256 && MaxIPL >= 8)
        eplb_warp_replicate_regs<(MaxIPL >= 8 ? 8 : 1)>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else
        eplb_warp_replicate(team, w, n, p, phy2mlog, phyrank, cnt, value);
}

eplb_status eplb_cuda_replicate(eplb_backend *backend, const eplb_plan_job *job);

#endif
