/* Weight check (SPEC section 2) on the device: 0 or EPLB_ERR_INVALID_WEIGHT into job->status. */
#ifndef EPLB_CUDA_CHECK_WEIGHTS_CUH
#define EPLB_CUDA_CHECK_WEIGHTS_CUH

#include "cuda_common.cuh"

eplb_status eplb_cuda_check_weights(eplb_backend *backend, const eplb_plan_job *job);

#endif
