/* Slot loads (SPEC 4.3) on the device: node_weight / mlogcnt of each slot's item. */
#ifndef EPLB_CUDA_SLOT_LOADS_CUH
#define EPLB_CUDA_SLOT_LOADS_CUH

#include "cuda_runtime.cuh"

eplb_status eplb_cuda_slot_loads(eplb_backend *backend, const eplb_plan_job *job);

#endif
