/* Balanced packing in one launch: one block per row, one warp per candidate
 * (sort, greedy, swap and score all by that warp), then the block selects. */
#ifndef EPLB_CUDA_PACK_FUSED_CUH
#define EPLB_CUDA_PACK_FUSED_CUH

#include "cuda_runtime.cuh"

/* The interface's pack_fused; declines the job (the planner then runs the
 * four stage kernels) when a warp's scratch does not fit in shared memory,
 * when the rows alone would fill the GPU, or when packs are large. */
eplb_status eplb_cuda_pack_fused(eplb_backend *backend, const eplb_pack_job *job);
void eplb_cuda_pack_fused_init(size_t smem_optin);

#endif
