/* Replication stage: one warp per row (l, n), with the row's values and counts
 * in registers when it has at most 256 items (the fused kernels' replication);
 * larger rows keep w / cnt in their slot_load entries, which only the next
 * stage writes. */
#include "cuda_replicate.cuh"

__global__ void eplb_cuda_replicate_kernel(const float *node_weight, int32_t *phy2mlog,
                                           int32_t *phyrank, int32_t *mlogcnt, float *scratch,
                                           int32_t *status, int64_t rows, uint32_t n, uint32_t p,
                                           int64_t width)
{
    const eplb_warp_team team(threadIdx.x & 31u);
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t x = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32; x < rows;
         x += warps) {
        int32_t *cnt = mlogcnt + x * n;
        eplb_warp_replicate_row<8>(team, node_weight + x * n, n, p, phy2mlog + x * p,
                                   phyrank + x * p, cnt, scratch + x * p);
        if (width > 0) {
            int too_wide = 0;
            for (uint32_t i = team.rank(); i < n; i += 32)
                too_wide |= cnt[i] > width;
            if (__any_sync(0xFFFFFFFFu, too_wide) && team.rank() == 0 && status)
                atomicCAS(status, 0, (int32_t)EPLB_ERR_LOG2PHY_TOO_SMALL); /* only over a 0 */
        }
    }
}

eplb_status eplb_cuda_replicate(eplb_backend *backend, const eplb_plan_job *job)
{
    /* A warp per row, four rows per block. */
    const int64_t rows = job->layers * job->nodes;
    eplb_cuda_replicate_kernel<<<eplb_cuda_grid_blocks(rows, 4), 128, 0,
                                 eplb_cuda_ctx(backend)->stream>>>(
        (const float *)job->node_weight, (int32_t *)job->phy2mlog, (int32_t *)job->phyrank,
        (int32_t *)job->mlogcnt, (float *)job->slot_load, (int32_t *)job->status, rows,
        (uint32_t)job->node_experts, (uint32_t)job->node_slots, job->log2phy ? job->width : 0);
    return eplb_cuda_launched(backend, "replicate");
}
