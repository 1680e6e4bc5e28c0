/* Replication (SPEC section 5) on the device: each extra slot goes to the item
 * with the largest w/cnt (ties: lowest index). One warp per row; item i is
 * owned by lane i % 32, so only the argmax is collective. */
#ifndef EPLB_CUDA_REPLICATE_CUH
#define EPLB_CUDA_REPLICATE_CUH

#include "cuda_teams.cuh"

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

/* The fused kernels' replication; it beats the shared-memory one on the H200
 * runs of docs/benchmarks.md (CUDA, "how it got here"). The same replication
 * with the items' counts and values in registers: lane L owns items
 * L*IPL .. L*IPL+IPL-1 (needs n <= 32*IPL). Each lane's argmax keeps its
 * lowest item on ties and items grow with the lane number, so the lowest lane
 * holding the warp maximum holds the SPEC's item; absent items have key 0 and
 * come after every present one, so they never win a tie. The chain per slot
 * is short: every lane knows before the reduction what its state becomes if
 * it wins (the winner's key becomes the precomputed w / (cnt+1), whose
 * successor w / (cnt+2) is divided speculatively, and its next local
 * maximum); the winner is the lowest lane of the ballot. */
template <int IPL>
static __device__ void eplb_warp_replicate_registers(uint32_t lane, const float *w, uint32_t n,
                                                     uint32_t p, int32_t *phy2mlog, int32_t *phyrank,
                                                     int32_t *cnt_out)
{
    float wt[IPL];
    uint32_t key[IPL], next[IPL];
    int32_t cnt[IPL];
    const uint32_t me = 1u << lane, le = me | (me - 1u);
#pragma unroll
    for (int r = 0; r < IPL; r++) {
        const uint32_t i = lane * IPL + (uint32_t)r;
        wt[r] = i < n ? w[i] : 0.0f;
        cnt[r] = 1;
        /* Values are >= 0; clearing the sign makes -0 equal to +0. Absent items: key 0. */
        key[r] = i < n ? __float_as_uint(wt[r]) & 0x7FFFFFFFu : 0u;
        next[r] = i < n ? __float_as_uint(wt[r] / (float)2) & 0x7FFFFFFFu : 0u;
        if (i < n) {
            phy2mlog[i] = (int32_t)i;
            phyrank[i] = 0;
        }
    }
    /* This lane's largest value (lowest item on ties) and that item's state. */
    uint32_t lkey = key[0], next_m = next[0];
    int32_t cnt_m = cnt[0];
    float wt_m = wt[0];
    int mine = 0;
#pragma unroll
    for (int r = 1; r < IPL; r++)
        if (key[r] > lkey) {
            lkey = key[r];
            mine = r;
            next_m = next[r];
            cnt_m = cnt[r];
            wt_m = wt[r];
        }
    for (uint32_t s = n; s < p; s++) {
        /* If this lane wins: the item's value after next, and the lane's next maximum. */
        const uint32_t after = __float_as_uint(wt_m / (float)(cnt_m + 2)) & 0x7FFFFFFFu;
        uint32_t new_key = mine == 0 ? next_m : key[0];
        int new_mine = 0;
#pragma unroll
        for (int r = 1; r < IPL; r++) {
            const uint32_t kr = mine == r ? next_m : key[r];
            if (kr > new_key) {
                new_key = kr;
                new_mine = r;
            }
        }
        uint32_t after_key = after;
        eplb_cuda_keep(new_key);
        eplb_cuda_keep(new_mine);
        eplb_cuda_keep(after_key);
        const uint32_t best = eplb_warp_reduce<true>(lkey);
        const bool win = eplb_cuda_lowest_vote(lkey == best, le, me);
        if (win) {
            phy2mlog[s] = (int32_t)(lane * IPL + (uint32_t)mine);
            phyrank[s] = cnt_m;
        }
#pragma unroll
        for (int r = 0; r < IPL; r++) {
            const bool mine_r = win && mine == r;
            key[r] = mine_r ? next_m : key[r];
            next[r] = mine_r ? after_key : next[r];
            cnt[r] = mine_r ? cnt_m + 1 : cnt[r];
        }
        lkey = win ? new_key : lkey;
        mine = win ? new_mine : mine;
        /* The state of the new maximum, as selects over the arrays together: a
         * select helper per array unrolls the loop differently (docs/benchmarks.md's kernel). */
        next_m = next[0];
        cnt_m = cnt[0];
        wt_m = wt[0];
#pragma unroll
        for (int r = 1; r < IPL; r++) {
            next_m = mine == r ? next[r] : next_m;
            cnt_m = mine == r ? cnt[r] : cnt_m;
            wt_m = mine == r ? wt[r] : wt_m;
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
        eplb_warp_replicate_registers<1>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else if (n <= 64 && MaxIPL >= 2)
        eplb_warp_replicate_registers<(MaxIPL >= 2 ? 2 : 1)>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else if (n <= 128 && MaxIPL >= 4)
        eplb_warp_replicate_registers<(MaxIPL >= 4 ? 4 : 1)>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else if (n <= 256 && MaxIPL >= 8)
        eplb_warp_replicate_registers<(MaxIPL >= 8 ? 8 : 1)>(lane, w, n, p, phy2mlog, phyrank, cnt);
    else
        eplb_warp_replicate(team, w, n, p, phy2mlog, phyrank, cnt, value);
}

eplb_status eplb_cuda_replicate(eplb_backend *backend, const eplb_plan_job *job);

#endif
