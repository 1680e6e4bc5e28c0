/* Swap stage: a warp per packing for small packs, else a block (the k*k pair
 * search and the m-pack argmax then spread over 256 threads). */
#include "cuda_pack_swap.cuh"

template <bool Warp>
__global__ void eplb_cuda_pack_swap_kernel(eplb_pack_job job, int64_t packings, float *global_load)
{
    extern __shared__ float eplb_swap_load[];
    __shared__ uint32_t red[32];
    const uint32_t n = (uint32_t)job.items, m = (uint32_t)job.packs, k = (uint32_t)job.per_pack;
    const uint32_t teams = Warp ? blockDim.x / 32 : 1, t = Warp ? threadIdx.x / 32 : 0;
    for (int64_t x = blockIdx.x * (int64_t)teams + t; x < packings; x += (int64_t)gridDim.x * teams) {
        const int64_t row = x / job.candidates;
        float *load = global_load ? global_load + x * m : eplb_swap_load + (size_t)t * m;
        const float *w = (const float *)job.weight + row * n;
        int32_t *content = (int32_t *)job.content + x * n;
        if (Warp)
            eplb_team_pack_swap(eplb_warp_team(threadIdx.x & 31u), w, m, k, job.iterations,
                                job.tolerance, content, load, false);
        else
            eplb_team_pack_swap(eplb_block_team(red), w, m, k, job.iterations, job.tolerance,
                                content, load, false);
    }
}

eplb_status eplb_cuda_pack_swap(eplb_backend *backend, const eplb_pack_job *job)
{
    if (job->iterations == 0)
        return EPLB_OK;
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    const int64_t packings = job->rows * job->candidates;
    const size_t state = (size_t)job->packs * sizeof(float);
    const bool warp = job->packs <= 128 && job->per_pack <= 64;
    const int teams = warp ? 4 : 1;
    float *global_load = NULL;
    size_t smem;
    int64_t blocks;
    eplb_status st = eplb_cuda_packing_launch(backend, packings, state, teams, &blocks, &smem,
                                              (void **)&global_load);
    if (st != EPLB_OK)
        return st;
    if (warp)
        eplb_cuda_pack_swap_kernel<true><<<(unsigned)blocks, 32 * teams, smem, ctx->stream>>>(
            *job, packings, global_load);
    else
        eplb_cuda_pack_swap_kernel<false><<<(unsigned)blocks, 256, smem, ctx->stream>>>(
            *job, packings, global_load);
    return eplb_cuda_launched(backend, "pack_swap");
}
