/* The planner's glue stages (SPEC section 4) on OpenCL: weight check, group
 * loads, node layout, replication, slot loads and the outputs
 * (kernels/plan_glue.cl, kernels/replicate.cl). */
#include "opencl_stages.h"

eplb_status eplb_opencl_check_weights(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_mem weight = job->weight, status = job->status;
    const cl_int zero = 0;
    cl_int err = s->cl->clEnqueueFillBuffer(s->handles.queue, status, &zero, sizeof zero, 0,
                                            sizeof zero, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return eplb_backend_error(backend, EPLB_ERR_BACKEND_FAILURE, "clEnqueueFillBuffer failed: %s",
                                  eplb_opencl_error_name(err));
    const cl_ulong count = (cl_ulong)job->layers * (cl_ulong)job->experts;
    return eplb_opencl_run_elements(
        backend, EPLB_CLK_CHECK_WEIGHTS,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(status), EPLB_CL_ARG(count)), (size_t)count);
}

eplb_status eplb_opencl_group_loads(eplb_backend *backend, const eplb_plan_job *job)
{
    cl_mem weight = job->weight, group_load = job->group_load;
    const cl_ulong count = (cl_ulong)job->layers * (cl_ulong)job->groups;
    const cl_long G = job->groups, S = job->group_size, E = job->experts;
    return eplb_opencl_run_elements(
        backend, EPLB_CLK_GROUP_LOADS,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(group_load), EPLB_CL_ARG(count), EPLB_CL_ARG(G),
                     EPLB_CL_ARG(S), EPLB_CL_ARG(E)),
        (size_t)count);
}

eplb_status eplb_opencl_node_layout(eplb_backend *backend, const eplb_plan_job *job)
{
    cl_mem weight = job->weight, pack_of = job->group_pack.pack_of, rank_of = job->group_pack.rank_of;
    cl_mem log2mlog = job->log2mlog, mlog2log = job->mlog2log, node_weight = job->node_weight;
    const cl_ulong count = (cl_ulong)job->layers * (cl_ulong)job->groups;
    const cl_long G = job->groups, S = job->group_size, E = job->experts;
    const cl_long per_node = job->groups / job->nodes;
    const cl_int has_pack = pack_of != NULL;
    return eplb_opencl_run_elements(
        backend, EPLB_CLK_NODE_LAYOUT,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(pack_of), EPLB_CL_ARG(rank_of),
                     EPLB_CL_ARG(log2mlog), EPLB_CL_ARG(mlog2log), EPLB_CL_ARG(node_weight),
                     EPLB_CL_ARG(count), EPLB_CL_ARG(G), EPLB_CL_ARG(S), EPLB_CL_ARG(E),
                     EPLB_CL_ARG(per_node), EPLB_CL_ARG(has_pack)),
        (size_t)count);
}

eplb_status eplb_opencl_replicate(eplb_backend *backend, const eplb_plan_job *job)
{
    cl_mem node_weight = job->node_weight, phy2mlog = job->phy2mlog, phyrank = job->phyrank,
           mlogcnt = job->mlogcnt, status = job->status;
    const cl_int n = (cl_int)job->node_experts, p = (cl_int)job->node_slots;
    /* The width check writes status only over a 0, so a status buffer is needed. */
    const cl_int check_width = job->log2phy != NULL && status != NULL;
    const cl_long width = job->width;
    return eplb_opencl_run_rows(
        backend, EPLB_CLK_REPLICATE,
        EPLB_CL_ARGS(EPLB_CL_ARG(node_weight), EPLB_CL_ARG(phy2mlog), EPLB_CL_ARG(phyrank),
                     EPLB_CL_ARG(mlogcnt), EPLB_CL_ARG(status), EPLB_CL_ARG(n), EPLB_CL_ARG(p),
                     EPLB_CL_ARG(check_width), EPLB_CL_ARG(width)),
        (size_t)(job->layers * job->nodes), (size_t)n);
}

eplb_status eplb_opencl_slot_loads(eplb_backend *backend, const eplb_plan_job *job)
{
    cl_mem node_weight = job->node_weight, phy2mlog = job->phy2mlog, mlogcnt = job->mlogcnt,
           slot_load = job->slot_load;
    const cl_ulong count = (cl_ulong)job->layers * (cl_ulong)job->replicas;
    const cl_long M = job->node_experts, RN = job->node_slots;
    return eplb_opencl_run_elements(
        backend, EPLB_CLK_SLOT_LOADS,
        EPLB_CL_ARGS(EPLB_CL_ARG(node_weight), EPLB_CL_ARG(phy2mlog), EPLB_CL_ARG(mlogcnt),
                     EPLB_CL_ARG(slot_load), EPLB_CL_ARG(count), EPLB_CL_ARG(M), EPLB_CL_ARG(RN)),
        (size_t)count);
}

eplb_status eplb_opencl_assemble(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (!job->status)
        return eplb_backend_error(backend, EPLB_ERR_INTERNAL, "assemble needs a status buffer");
    cl_mem status = job->status, pack_of = job->slot_pack.pack_of, rank_of = job->slot_pack.rank_of;
    cl_mem phy2mlog = job->phy2mlog, phyrank = job->phyrank, mlog2log = job->mlog2log;
    cl_mem mlogcnt = job->mlogcnt, log2mlog = job->log2mlog;
    cl_mem phy2log = job->phy2log, logcnt = job->logcnt, slot_rank = job->slot_rank,
           log2phy = job->log2phy;
    const cl_long N = job->nodes, E = job->experts, R = job->replicas, M = job->node_experts;
    const cl_long RN = job->node_slots, spg = job->gpu_slots, X = log2phy ? job->width : 0;
    const cl_int has_pack = pack_of != NULL, has_slot_rank = slot_rank != NULL,
                 has_log2phy = log2phy != NULL;
    const cl_ulong slots = (cl_ulong)job->layers * (cl_ulong)job->replicas;
    const cl_ulong experts = (cl_ulong)job->layers * (cl_ulong)job->experts;
    /* The two kernels write disjoint entries, so their order does not matter. */
    eplb_status st = eplb_opencl_run_elements(
        backend, EPLB_CLK_ASSEMBLE_SLOTS,
        EPLB_CL_ARGS(EPLB_CL_ARG(status), EPLB_CL_ARG(pack_of), EPLB_CL_ARG(rank_of),
                     EPLB_CL_ARG(phy2mlog), EPLB_CL_ARG(phyrank), EPLB_CL_ARG(mlog2log),
                     EPLB_CL_ARG(phy2log), EPLB_CL_ARG(slot_rank), EPLB_CL_ARG(log2phy),
                     EPLB_CL_ARG(slots), EPLB_CL_ARG(N), EPLB_CL_ARG(E), EPLB_CL_ARG(R), EPLB_CL_ARG(M),
                     EPLB_CL_ARG(RN), EPLB_CL_ARG(spg), EPLB_CL_ARG(X), EPLB_CL_ARG(has_pack),
                     EPLB_CL_ARG(has_slot_rank), EPLB_CL_ARG(has_log2phy)),
        (size_t)slots);
    if (st == EPLB_OK)
        st = eplb_opencl_run_elements(
            backend, EPLB_CLK_ASSEMBLE_EXPERTS,
            EPLB_CL_ARGS(EPLB_CL_ARG(status), EPLB_CL_ARG(mlogcnt), EPLB_CL_ARG(log2mlog),
                         EPLB_CL_ARG(logcnt), EPLB_CL_ARG(log2phy), EPLB_CL_ARG(experts), EPLB_CL_ARG(E),
                         EPLB_CL_ARG(X), EPLB_CL_ARG(has_log2phy)),
            (size_t)experts);
    /* The last stage: hand the batch to the device without waiting for it. */
    if (st == EPLB_OK)
        s->cl->clFlush(s->handles.queue);
    return st;
}

/* The work-items of a group of kernel id, at most 256: eplb_log2phy_width's
 * local array (its EPLB_LOG2PHY_WIDTH_LOCAL) holds that many. */
static size_t log2phy_group(const eplb_opencl *s, eplb_opencl_kernel_id id)
{
    return s->kernel_group[id] < 256 ? s->kernel_group[id] : 256;
}

eplb_status eplb_opencl_log2phy_at_needed_width(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    cl_mem status = job->status, logcnt = job->logcnt, phy2log = job->phy2log,
           slot_rank = job->slot_rank, log2phy = job->log2phy;
    const cl_ulong count = (cl_ulong)job->layers * (cl_ulong)job->experts;
    const cl_long E = job->experts, R = job->replicas;
    eplb_status st = eplb_opencl_run_groups(
        backend, EPLB_CLK_LOG2PHY_WIDTH, NULL,
        EPLB_CL_ARGS(EPLB_CL_ARG(status), EPLB_CL_ARG(logcnt), EPLB_CL_ARG(count)), 1,
        log2phy_group(s, EPLB_CLK_LOG2PHY_WIDTH));
    if (st == EPLB_OK)
        st = eplb_opencl_run_groups(
            backend, EPLB_CLK_LOG2PHY_AT_WIDTH, NULL,
            EPLB_CL_ARGS(EPLB_CL_ARG(status), EPLB_CL_ARG(phy2log), EPLB_CL_ARG(slot_rank),
                         EPLB_CL_ARG(log2phy), EPLB_CL_ARG(E), EPLB_CL_ARG(R)),
            (size_t)job->layers, log2phy_group(s, EPLB_CLK_LOG2PHY_AT_WIDTH));
    if (st == EPLB_OK)
        s->cl->clFlush(s->handles.queue);
    return st;
}
