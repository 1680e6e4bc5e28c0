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

eplb_status eplb_cuda_replicate(eplb_backend *backend, const eplb_plan_job *job);

#endif
