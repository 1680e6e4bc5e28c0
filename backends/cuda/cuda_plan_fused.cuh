/* The whole plan (SPEC sections 2 to 4) in one launch when a layer fits in
 * shared memory: one block per layer runs check, group loads, group packing,
 * node layout, replication, slot loads, slot packing, select and assemble.
 * Otherwise it declines the job and the planner runs the stage kernels. */
#ifndef EPLB_CUDA_PLAN_FUSED_CUH
#define EPLB_CUDA_PLAN_FUSED_CUH

#include "cuda_common.cuh"

eplb_status eplb_cuda_plan_fused(eplb_backend *backend, const eplb_plan_job *job);
void eplb_cuda_plan_fused_init(size_t smem_optin);

/* 1 if the one-launch kernel takes this job (for tools and tests), with its
 * shared memory and thread count. */
int eplb_cuda_plan_fused_fits(eplb_backend *backend, const eplb_plan_job *job, size_t *smem,
                              unsigned *threads);

#endif
