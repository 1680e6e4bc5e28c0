/* pack_fused: sort + greedy + swap + select of every row in one launch. */
#include "cuda_pack_candidate.cuh"
#include "cuda_pack_fused.cuh"

/* MaxThreads bounds the registers per thread, hence the register sort size. */
template <int MaxThreads>
__global__ void __launch_bounds__(MaxThreads, 1)
eplb_cuda_pack_fused_kernel(eplb_pack_job job, uint32_t score_bytes, uint32_t warp_bytes)
{
    extern __shared__ __align__(16) unsigned char eplb_pack_smem[];
    const uint32_t n = (uint32_t)job.items, m = (uint32_t)job.packs, k = (uint32_t)job.per_pack;
    const uint32_t C = (uint32_t)job.candidates, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    float *score = (float *)eplb_pack_smem;
    unsigned char *scratch = eplb_pack_smem + score_bytes + (size_t)warp * warp_bytes;
    const eplb_warp_team team(threadIdx.x & 31u);
    for (int64_t row = blockIdx.x; row < job.rows; row += gridDim.x) {
        const float *w = (const float *)job.weight + row * n;
        int32_t *content = (int32_t *)job.content + row * C * n;
        for (uint32_t c = warp; c < C; c += warps) {
            const float s = eplb_warp_pack_candidate<MaxThreads>(
                team, w, n, m, k, job.call, row, (int32_t)c, job.seed, job.noise, job.iterations,
                job.tolerance, content + (size_t)c * n, scratch);
            if (team.rank() == 0)
                score[c] = s;
        }
        __syncthreads();
        const uint32_t best = eplb_cuda_best_candidate(score, C);
        eplb_team_write_choice(eplb_block_team(NULL), content + (size_t)best * n, n, k,
                               (int32_t *)job.pack_of + row * n, (int32_t *)job.rank_of + row * n);
        __syncthreads();
    }
}

void eplb_cuda_pack_fused_init(size_t smem_optin)
{
    eplb_cuda_allow_smem(eplb_cuda_pack_fused_kernel<256>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_pack_fused_kernel<1024>, smem_optin);
}

eplb_status eplb_cuda_pack_fused(eplb_backend *backend, const eplb_pack_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    /* Reached when a plan is too large for plan_fused. With many rows the
     * stage kernels beat this kernel's one block of up to 8 warps per SM
     * (docs/cuda.md, the scale case): it takes only jobs whose rows alone
     * would not fill the GPU, unless EPLB_TUNE_CUDA_PATH asks for it. */
    const bool many_rows = job->rows >= 4 * (int64_t)ctx->sm_count;
    const int path = ctx->knobs.path;
    if (path == EPLB_TUNE_CUDA_PATH_STAGES || (path != EPLB_TUNE_CUDA_PATH_PACK_FUSED && many_rows))
        return EPLB_BACKEND_DECLINED;
    const size_t score_bytes = eplb_cuda_align((size_t)job->candidates * sizeof(float));
    const size_t warp_bytes = eplb_cuda_warp_scratch_bytes((uint32_t)job->items, (uint32_t)job->packs);
    uint32_t warps = job->candidates < 32 ? (uint32_t)job->candidates : 32u;
    while (warps > 1 && score_bytes + warps * warp_bytes > ctx->smem_optin)
        warps--;
    /* Large packs: the block-wide stage kernels handle their pair search better. */
    const bool fits = score_bytes + warps * warp_bytes <= ctx->smem_optin;
    if (!fits || job->per_pack > 256 || job->packs > 1024)
        return EPLB_BACKEND_DECLINED;
    const size_t smem = score_bytes + warps * warp_bytes;
    const unsigned blocks = eplb_cuda_grid_blocks(job->rows, 1, 65535L * 16);
    const unsigned threads = 32 * warps;
    const uint32_t sb = (uint32_t)score_bytes, wb = (uint32_t)warp_bytes;
    if (warps <= 8)
        eplb_cuda_pack_fused_kernel<256><<<blocks, threads, smem, ctx->stream>>>(*job, sb, wb);
    else
        eplb_cuda_pack_fused_kernel<1024><<<blocks, threads, smem, ctx->stream>>>(*job, sb, wb);
    return eplb_cuda_launched(backend, "pack_fused");
}
