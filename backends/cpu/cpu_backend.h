/* The cpu backend's stages, one file each; OpenMP across rows and candidates.
 * Every loop body handles one row or one (row, candidate) packing, so the
 * result is the same for any thread count. */
#ifndef EPLB_CPU_BACKEND_H
#define EPLB_CPU_BACKEND_H

#include "backend.h"

eplb_status eplb_cpu_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_swap(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_select(eplb_backend *backend, const eplb_pack_job *job);

eplb_status eplb_cpu_group_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_node_layout(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_replicate(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_slot_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_assemble(eplb_backend *backend, const eplb_plan_job *job);

/* Load of pack p of one packing: its items' weights summed in slot order
 * (SPEC 6.3), shared by swap and select. */
static inline float eplb_cpu_pack_load(const float *weight, const int32_t *content, int32_t p,
                                       int32_t per_pack)
{
    float load = 0.0f;
    for (int32_t r = 0; r < per_pack; r++)
        load += weight[content[p * per_pack + r]];
    return load;
}

#endif /* EPLB_CPU_BACKEND_H */
