/* Greedy stage: a warp per packing when the packs fit a warp's share, else a
 * block. Pack loads and counts live in shared memory, or in the backend's
 * global scratch when m is too large for it. */
#include "cuda_pack_greedy.cuh"

struct eplb_cuda_greedy_stage {
    template <class Team>
    static __device__ void run(const Team &team, const eplb_pack_job &job, int64_t x,
                               unsigned char *state)
    {
        const uint32_t n = (uint32_t)job.items, m = (uint32_t)job.packs, k = (uint32_t)job.per_pack;
        /* load[m] then count[m] in one area of 2m words. */
        float *load = (float *)state;
        int32_t *count = (int32_t *)state + m;
        const float *w = (const float *)job.weight + (x / job.candidates) * n;
        eplb_team_pack_greedy(team, w, (const int32_t *)job.order + x * n, 1, n, m, k,
                              (int32_t *)job.content + x * n, load, count);
    }
};

eplb_status eplb_cuda_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    /* A block per packing spreads the argmin of large pack sets over 256 threads. */
    return eplb_cuda_launch_packings<eplb_cuda_greedy_stage>(
        backend, job, (size_t)job->packs * 2 * sizeof(float), job->packs <= 128, "pack_greedy");
}
