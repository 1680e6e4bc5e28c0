/* The whole plan (SPEC sections 2 to 4) in one launch when a layer fits in
 * shared memory: one block per layer (or per layer and node) runs check,
 * group loads, group packing, node layout, replication, slot loads, slot
 * packing, select and assemble. Otherwise it declines the job and the
 * planner runs the stages. */
#ifndef EPLB_CUDA_PLAN_FUSED_CUH
#define EPLB_CUDA_PLAN_FUSED_CUH

#include "cuda_runtime.cuh"

eplb_status eplb_cuda_plan_fused(eplb_backend *backend, const eplb_plan_job *job);
void eplb_cuda_plan_fused_init(size_t smem_optin);

#endif
