/* Swap stage: a warp per packing for small packs, else a block (the k*k pair
 * search and the m-pack argmax then spread over 256 threads). */
#include "cuda_pack_swap.cuh"

struct eplb_cuda_swap_stage {
    template <class Team>
    static __device__ void run(const Team &team, const eplb_pack_job &job, int64_t x,
                               unsigned char *state)
    {
        const uint32_t n = (uint32_t)job.items;
        const float *w = (const float *)job.weight + (x / job.candidates) * n;
        eplb_team_pack_swap(team, w, (uint32_t)job.packs, (uint32_t)job.per_pack, job.iterations,
                            job.tolerance, (int32_t *)job.content + x * n, (float *)state, false);
    }
};

eplb_status eplb_cuda_pack_swap(eplb_backend *backend, const eplb_pack_job *job)
{
    if (job->iterations == 0)
        return EPLB_OK;
    return eplb_cuda_launch_packings<eplb_cuda_swap_stage>(
        backend, job, (size_t)job->packs * sizeof(float),
        job->packs <= 128 && job->per_pack <= 64, "pack_swap");
}
