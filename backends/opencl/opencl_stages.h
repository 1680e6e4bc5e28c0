/* The OpenCL backend's stages, the middle layer: each enqueues its kernels
 * through the runtime (opencl_runtime.h), and the entry table
 * (opencl_backend.c) calls them. */
#ifndef EPLB_OPENCL_STAGES_H
#define EPLB_OPENCL_STAGES_H

#include "opencl_runtime.h"

/* Balanced packing (opencl_pack.c, kernels/pack_*.cl). */
eplb_status eplb_opencl_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_pack_swap(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_pack_select(eplb_backend *backend, const eplb_pack_job *job);

/* The planner's glue (opencl_glue.c, kernels/plan_glue.cl, kernels/replicate.cl). */
eplb_status eplb_opencl_check_weights(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_group_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_node_layout(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_replicate(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_slot_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_assemble(eplb_backend *backend, const eplb_plan_job *job);
/* log2phy at the width the plan needs, after the stages (the interface's
 * log2phy_at_needed_width). */
eplb_status eplb_opencl_log2phy_at_needed_width(eplb_backend *backend, const eplb_plan_job *job);

/* The refine search (SPEC 10), a work-group per row making all of its
 * trades (opencl_refine.c, kernels/refine.cl). */
eplb_status eplb_opencl_refine(eplb_backend *backend, const eplb_plan_job *job);

/* The distinct stage's cap and repair (SPEC 11.3, 11.4), a work-item per
 * row (opencl_distinct.c, kernels/distinct.cl). */
eplb_status eplb_opencl_distinct(eplb_backend *backend, const eplb_plan_job *job);

/* The whole plan in one enqueue, one work-group per layer (or a few) when it
 * fits in local memory (opencl_fused.c, kernels/plan_fused.cl); otherwise,
 * or with EPLB_TUNE_OPENCL_PATH=stages, EPLB_BACKEND_DECLINED: the planner
 * then runs the stages above. */
eplb_status eplb_opencl_plan_fused(eplb_backend *backend, const eplb_plan_job *job);

#endif /* EPLB_OPENCL_STAGES_H */
