/* Node layout on the device: one thread per (layer, expert) places the expert
 * at its node-major position from the group packing (identity when G == N). */
#include "cuda_node_layout.cuh"

__global__ void eplb_cuda_node_layout_kernel(const float *weight, const int32_t *pack_of,
                                             const int32_t *rank_of, int32_t *log2mlog,
                                             int32_t *mlog2log, float *node_weight, int64_t count,
                                             int64_t E, int64_t G, int64_t S, int64_t per_node)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < count;
         x += (int64_t)gridDim.x * blockDim.x) {
        const int64_t l = x / E, e = x % E, g = e / S, j = e % S;
        const int64_t pack = pack_of ? pack_of[l * G + g] : g;
        const int64_t rank = rank_of ? rank_of[l * G + g] : 0;
        const int64_t pos = (pack * per_node + rank) * S + j;
        log2mlog[l * E + e] = (int32_t)pos;
        mlog2log[l * E + pos] = (int32_t)e;
        node_weight[l * E + pos] = weight[l * E + e];
    }
}

eplb_status eplb_cuda_node_layout(eplb_backend *backend, const eplb_plan_job *job)
{
    const int64_t count = job->layers * job->experts;
    const int identity = job->group_pack.per_pack <= 1;
    eplb_cuda_node_layout_kernel<<<eplb_cuda_grid_blocks(count, 256), 256, 0,
                                   eplb_cuda_ctx(backend)->stream>>>(
        (const float *)job->weight, identity ? NULL : (const int32_t *)job->group_pack.pack_of,
        identity ? NULL : (const int32_t *)job->group_pack.rank_of, (int32_t *)job->log2mlog,
        (int32_t *)job->mlog2log, (float *)job->node_weight, count, job->experts, job->groups,
        job->group_size, job->groups / job->nodes);
    return eplb_cuda_launched(backend, "node_layout");
}
