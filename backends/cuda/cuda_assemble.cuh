/* Outputs (SPEC 4.4) on the device: phy2log, logcnt, slot_rank / log2phy, unless status is nonzero. */
#ifndef EPLB_CUDA_ASSEMBLE_CUH
#define EPLB_CUDA_ASSEMBLE_CUH

#include "cuda_runtime.cuh"

eplb_status eplb_cuda_assemble(eplb_backend *backend, const eplb_plan_job *job);
/* log2phy at the width the plan needs, after the stages (the interface's
 * log2phy_at_needed_width). */
eplb_status eplb_cuda_log2phy_at_needed_width(eplb_backend *backend, const eplb_plan_job *job);

#endif
