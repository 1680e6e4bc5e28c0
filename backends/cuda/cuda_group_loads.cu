/* Group loads on the device: one thread per (layer, group), summing left to right. */
#include "cuda_group_loads.cuh"

__global__ void eplb_cuda_group_loads_kernel(const float *weight, float *group_load, int64_t count,
                                             int64_t G, int64_t S, int64_t E)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < count;
         x += (int64_t)gridDim.x * blockDim.x) {
        const float *w = weight + (x / G) * E + (x % G) * S;
        float sum = 0.0f;
        for (int64_t j = 0; j < S; j++)
            sum += w[j];
        group_load[x] = sum;
    }
}

eplb_status eplb_cuda_group_loads(eplb_backend *backend, const eplb_plan_job *job)
{
    const int64_t count = job->layers * job->groups;
    eplb_cuda_group_loads_kernel<<<eplb_cuda_grid_blocks(count, 128), 128, 0,
                                   eplb_cuda_ctx(backend)->stream>>>(
        (const float *)job->weight, (float *)job->group_load, count, job->groups, job->group_size,
        job->experts);
    return eplb_cuda_launched(backend, "group_loads");
}
