/* Greedy stage: a warp per packing when the packs fit a warp's share, else a
 * block. Pack loads and counts live in shared memory, or in the backend's
 * global scratch when m is too large for it. */
#include "cuda_pack_greedy.cuh"

template <bool Warp>
__global__ void eplb_cuda_pack_greedy_kernel(eplb_pack_job job, int64_t packings, int2 *global_state)
{
    extern __shared__ int2 eplb_greedy_state[];
    __shared__ uint32_t red[32];
    const uint32_t n = (uint32_t)job.items, m = (uint32_t)job.packs, k = (uint32_t)job.per_pack;
    const uint32_t teams = Warp ? blockDim.x / 32 : 1, t = Warp ? threadIdx.x / 32 : 0;
    for (int64_t x = blockIdx.x * (int64_t)teams + t; x < packings; x += (int64_t)gridDim.x * teams) {
        const int64_t row = x / job.candidates;
        /* load[m] then count[m] in one area of 2m words. */
        int2 *state = global_state ? global_state + x * m : eplb_greedy_state + (size_t)t * m;
        float *load = (float *)state;
        int32_t *count = (int32_t *)state + m;
        const float *w = (const float *)job.weight + row * n;
        const int32_t *order = (const int32_t *)job.order + x * n;
        int32_t *content = (int32_t *)job.content + x * n;
        if (Warp)
            eplb_team_pack_greedy(eplb_warp_team(threadIdx.x & 31u), w, order, 1, n, m, k, content,
                                  load, count);
        else
            eplb_team_pack_greedy(eplb_block_team(red), w, order, 1, n, m, k, content, load, count);
    }
}

eplb_status eplb_cuda_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    const int64_t packings = job->rows * job->candidates;
    const size_t state = (size_t)job->packs * sizeof(int2);
    const bool warp = job->packs <= 128;
    const int teams = warp ? 4 : 1;
    int2 *global_state = NULL;
    size_t smem;
    int64_t blocks;
    eplb_status st = eplb_cuda_packing_launch(backend, packings, state, teams, &blocks, &smem,
                                              (void **)&global_state);
    if (st != EPLB_OK)
        return st;
    if (warp)
        eplb_cuda_pack_greedy_kernel<true><<<(unsigned)blocks, 32 * teams, smem, ctx->stream>>>(
            *job, packings, global_state);
    else
        eplb_cuda_pack_greedy_kernel<false><<<(unsigned)blocks, 256, smem, ctx->stream>>>(
            *job, packings, global_state);
    return eplb_cuda_launched(backend, "pack_greedy");
}
