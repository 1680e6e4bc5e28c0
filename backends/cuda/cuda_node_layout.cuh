/* Node layout (SPEC 4.1, first line of 4.2) on the device: log2mlog, mlog2log, node_weight. */
#ifndef EPLB_CUDA_NODE_LAYOUT_CUH
#define EPLB_CUDA_NODE_LAYOUT_CUH

#include "cuda_runtime.cuh"

eplb_status eplb_cuda_node_layout(eplb_backend *backend, const eplb_plan_job *job);

#endif
