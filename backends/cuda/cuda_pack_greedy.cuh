/* Stage 2 of balanced packing (SPEC 6.2) on the device: items in visiting
 * order, each into the least-loaded open pack (ties: lowest index). Pack p is
 * owned by team member p % size, so only the argmin is collective. */
#ifndef EPLB_CUDA_PACK_GREEDY_CUH
#define EPLB_CUDA_PACK_GREEDY_CUH

#include "cuda_common.cuh"

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

eplb_status eplb_cuda_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);

#endif
