/* Group loads (SPEC 4.1) on the device: each group's weights summed left to right. */
#ifndef EPLB_CUDA_GROUP_LOADS_CUH
#define EPLB_CUDA_GROUP_LOADS_CUH

#include "cuda_runtime.cuh"

eplb_status eplb_cuda_group_loads(eplb_backend *backend, const eplb_plan_job *job);

#endif
