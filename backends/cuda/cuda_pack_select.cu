/* Select stage: one block per row; candidate scores from slot-order pack loads. */
#include "cuda_pack_select.cuh"
#include "cuda_pack_swap.cuh"

__global__ void eplb_cuda_pack_select_kernel(eplb_pack_job job)
{
    __shared__ uint32_t red[32];
    const eplb_block_team team(red);
    const uint32_t n = (uint32_t)job.items, m = (uint32_t)job.packs, k = (uint32_t)job.per_pack;
    const uint32_t C = (uint32_t)job.candidates;
    for (int64_t row = blockIdx.x; row < job.rows; row += gridDim.x) {
        const float *w = (const float *)job.weight + row * n;
        const int32_t *content = (const int32_t *)job.content + row * C * n;
        uint32_t best_c = 0;
        float best_score = 0.0f;
        for (uint32_t c = 0; c < C; c++) {
            uint32_t key = 0;
            for (uint32_t p = team.rank(); p < m; p += team.size()) {
                const uint32_t kp = eplb_cuda_load_key(eplb_cuda_pack_load(w, content + (size_t)c * n, p, k));
                key = kp > key ? kp : key;
            }
            const float score = __uint_as_float(team.max_u32(key));
            if (c == 0 || score < best_score) {
                best_score = score;
                best_c = c;
            }
        }
        eplb_team_write_choice(team, content + (size_t)best_c * n, n, k,
                               (int32_t *)job.pack_of + row * n, (int32_t *)job.rank_of + row * n);
        __syncthreads();
    }
}

eplb_status eplb_cuda_pack_select(eplb_backend *backend, const eplb_pack_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    eplb_cuda_pack_select_kernel<<<eplb_cuda_grid_blocks(job->rows, 1, 65535L * 16), 256, 0,
                                   ctx->stream>>>(*job);
    return eplb_cuda_launched(backend, "pack_select");
}
