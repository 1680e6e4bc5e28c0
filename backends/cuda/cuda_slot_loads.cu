/* Slot loads on the device: one thread per slot, w / cnt with correctly rounded division. */
#include "cuda_slot_loads.cuh"

__global__ void eplb_cuda_slot_loads_kernel(const float *node_weight, const int32_t *phy2mlog,
                                            const int32_t *mlogcnt, float *slot_load,
                                            int64_t count, int64_t M, int64_t RN)
{
    for (int64_t y = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; y < count;
         y += (int64_t)gridDim.x * blockDim.x) {
        const int64_t x = y / RN;
        const int64_t e = phy2mlog[y];
        slot_load[y] = node_weight[x * M + e] / (float)mlogcnt[x * M + e];
    }
}

eplb_status eplb_cuda_slot_loads(eplb_backend *backend, const eplb_plan_job *job)
{
    const int64_t count = job->layers * job->replicas;
    eplb_cuda_slot_loads_kernel<<<eplb_cuda_grid_blocks(count, 256), 256, 0,
                                  eplb_cuda_ctx(backend)->stream>>>(
        (const float *)job->node_weight, (const int32_t *)job->phy2mlog,
        (const int32_t *)job->mlogcnt, (float *)job->slot_load, count, job->node_experts,
        job->node_slots);
    return eplb_cuda_launched(backend, "slot_loads");
}
