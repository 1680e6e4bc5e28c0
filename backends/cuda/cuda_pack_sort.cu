/* Sort stage. A warp per packing (row, candidate) with the fused kernels'
 * register network when the padded row fits 16 entries a lane; else one
 * block per packing: a bitonic sort in shared memory when the padded row fits
 * there, otherwise every item counts the items before it (keys parked in the
 * packing's content row, which greedy rewrites). */
#include "cuda_pack_sort.cuh"

/* The most entries a lane holds in the warp sort: a 128-thread block affords
 * the registers (the fused kernels sort as many in blocks of 256). */
#define EPLB_CUDA_STAGE_SORT_KPL 16

__global__ void eplb_cuda_pack_sort_warp_kernel(eplb_pack_job job, int64_t packings)
{
    const uint32_t n = (uint32_t)job.items, lane = threadIdx.x & 31u;
    const uint32_t npow2 = eplb_cuda_pow2_at_least(n);
    const int64_t teams = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t x = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32; x < packings;
         x += teams) {
        const int64_t row = x / job.candidates;
        const int32_t c = (int32_t)(x % job.candidates);
        eplb_warp_try_sort_in_registers<EPLB_CUDA_STAGE_SORT_KPL>(
            lane, (const float *)job.weight + row * n, n, npow2, job.call, row, c, job.seed,
            job.noise, (int32_t *)job.order + x * n);
    }
}

__global__ void eplb_cuda_pack_sort_kernel(eplb_pack_job job, int64_t packings, uint32_t npow2)
{
    extern __shared__ uint64_t eplb_sort_buf[];
    const uint32_t n = (uint32_t)job.items;
    const eplb_block_team team(NULL); /* sort uses no reductions */
    for (int64_t x = blockIdx.x; x < packings; x += gridDim.x) {
        const int64_t row = x / job.candidates;
        const int32_t c = (int32_t)(x % job.candidates);
        const float *w = (const float *)job.weight + row * n;
        int32_t *order = (int32_t *)job.order + x * n;
        eplb_team_pack_sort(team, w, n, npow2, job.call, row, c, job.seed, job.noise,
                            eplb_sort_buf);
        for (uint32_t t = threadIdx.x; t < n; t += blockDim.x)
            order[t] = (int32_t)(uint32_t)eplb_sort_buf[t];
        __syncthreads();
    }
}

__global__ void eplb_cuda_pack_rank_sort_kernel(eplb_pack_job job, int64_t packings)
{
    const uint32_t n = (uint32_t)job.items;
    for (int64_t x = blockIdx.x; x < packings; x += gridDim.x) {
        const int64_t row = x / job.candidates;
        const int32_t c = (int32_t)(x % job.candidates);
        const float *w = (const float *)job.weight + row * n;
        uint32_t *keys = (uint32_t *)job.content + x * n; /* high words of the entries */
        int32_t *order = (int32_t *)job.order + x * n;
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x)
            keys[i] = (uint32_t)(eplb_cuda_sort_entry(w, i, job.call, row, c, job.seed,
                                                      job.noise) >> 32);
        __syncthreads();
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
            const uint64_t mine = ((uint64_t)keys[i] << 32) | i;
            uint32_t before = 0;
            for (uint32_t j = 0; j < n; j++)
                before += (((uint64_t)keys[j] << 32) | j) < mine;
            order[before] = (int32_t)i;
        }
        __syncthreads();
    }
}


void eplb_cuda_pack_sort_init(size_t smem_optin)
{
    eplb_cuda_allow_smem(eplb_cuda_pack_sort_kernel, smem_optin);
}

eplb_status eplb_cuda_pack_sort(eplb_backend *backend, const eplb_pack_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    const int64_t packings = job->rows * job->candidates;
    const uint32_t npow2 = eplb_cuda_pow2_at_least((uint32_t)job->items);
    const size_t bytes = (size_t)npow2 * sizeof(uint64_t);
    if (eplb_cuda_sort_entries_per_lane(npow2) <= EPLB_CUDA_STAGE_SORT_KPL) {
        /* Four warps a block, a packing each. */
        const unsigned blocks = eplb_cuda_grid_blocks(packings, 4, 65535L * 16);
        eplb_cuda_pack_sort_warp_kernel<<<blocks, 128, 0, ctx->stream>>>(*job, packings);
        return eplb_cuda_launched(backend, "pack_sort");
    }
    const unsigned blocks = eplb_cuda_grid_blocks(packings, 1, 65535L * 16);
    if (bytes <= ctx->smem_optin) {
        const int threads = npow2 >= 2048 ? 1024 : (npow2 >= 512 ? 256 : 64);
        eplb_cuda_pack_sort_kernel<<<blocks, threads, bytes, ctx->stream>>>(*job, packings, npow2);
    } else {
        eplb_cuda_pack_rank_sort_kernel<<<blocks, 1024, 0, ctx->stream>>>(*job, packings);
    }
    return eplb_cuda_launched(backend, "pack_sort");
}
