/* Stage 4 of balanced packing (SPEC 6.4) on the device: per row, the candidate
 * with the smallest maximum pack load (ties: lowest candidate). */
#ifndef EPLB_CUDA_PACK_SELECT_CUH
#define EPLB_CUDA_PACK_SELECT_CUH

#include "cuda_teams.cuh"

/* Largest of load[0..m) (loads are never NaN nor -0, so bit order is value order). */
template <class Team>
static __device__ __forceinline__ float eplb_team_max_load(const Team &team, const float *load,
                                                           uint32_t m)
{
    uint32_t key = 0;
    for (uint32_t p = team.rank(); p < m; p += team.size()) {
        const uint32_t kp = eplb_cuda_load_key(load[p]);
        key = kp > key ? kp : key;
    }
    return __uint_as_float(team.max_u32(key));
}

/* Lowest c with the smallest score[c]; read by every thread that calls it. */
static __device__ __forceinline__ uint32_t eplb_cuda_best_candidate(const float *score, uint32_t C)
{
    uint32_t best = 0;
    for (uint32_t c = 1; c < C; c++)
        if (score[c] < score[best])
            best = c;
    return best;
}

/* pack_of / rank_of of every item from the chosen content (slot s = pack*k + rank). */
template <class Team>
static __device__ __forceinline__ void eplb_team_write_choice(const Team &team,
                                                              const int32_t *chosen, uint32_t n,
                                                              uint32_t k, int32_t *pack_of,
                                                              int32_t *rank_of)
{
    for (uint32_t s = team.rank(); s < n; s += team.size()) {
        const int32_t item = chosen[s];
        pack_of[item] = (int32_t)(s / k);
        rank_of[item] = (int32_t)(s % k);
    }
}

eplb_status eplb_cuda_pack_select(eplb_backend *backend, const eplb_pack_job *job);

#endif
