/* The distinct stage (SPEC 11.3 cap, 11.4 repair) on OpenCL: one launch of
 * kernels/distinct.cl for the whole job, a work-item per row, each row's
 * scratch in global memory. The restore of SPEC 11.5 and the trades of 11.6
 * are the refine stage's (opencl_refine.c), which reads the row_changed and
 * row_seed_max this stage writes. */
#include <stdint.h>

#include "opencl_stages.h"

eplb_status eplb_opencl_distinct(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    if (!job->distinct || !eplb_plan_rows_trade(job) || sp->rows <= 0)
        return EPLB_OK;
    eplb_status st = eplb_opencl_prepare_kernels(backend);
    if (st != EPLB_OK)
        return st;
    const size_t rows = (size_t)sp->rows, n = (size_t)sp->items, m = (size_t)sp->packs;
    const size_t M = (size_t)job->node_experts;
    /* Per row: the slots by position, their items, the capped counts and the
     * repair's marks (ints); the slot loads by position and the GPU loads
     * (floats). */
    cl_mem ints_all = NULL, floats_all = NULL;
    st = eplb_opencl_scratch(backend, 0, rows * (2 * n + 2 * M) * sizeof(cl_int), &ints_all);
    if (st == EPLB_OK)
        st = eplb_opencl_scratch(backend, 1, rows * (n + m) * sizeof(cl_float), &floats_all);
    if (st != EPLB_OK)
        return st;
    cl_mem phy2mlog = job->phy2mlog, phyrank = job->phyrank, mlogcnt = job->mlogcnt,
           node_weight = job->node_weight, mlog2log = job->mlog2log, slot_load = job->slot_load,
           pack_of = sp->pack_of, rank_of = sp->rank_of, status = job->status,
           row_changed = job->row_changed, row_seed_max = job->row_seed_max;
    const cl_long rows64 = sp->rows, M64 = job->node_experts, E64 = job->experts,
                  N64 = job->nodes;
    const cl_int n32 = sp->items, m32 = sp->packs, k32 = sp->per_pack;
    /* SPEC 11.4 proves that every repeat has a partner after the cap; a row
     * that finds none sets the plan's status word, as a bad weight does, so
     * that assemble writes nothing and the device path reports it. */
    const cl_int bug = EPLB_ERR_INTERNAL;
    /* Small groups, so that the rows, each a long sequential loop, spread
     * over the compute units instead of filling a few of them. */
    size_t group = eplb_opencl_state(backend)->kernel_group[EPLB_CLK_DISTINCT];
    if (group > 32)
        group = 32;
    return eplb_opencl_run_groups(
        backend, EPLB_CLK_DISTINCT, NULL,
        EPLB_CL_ARGS(EPLB_CL_ARG(phy2mlog), EPLB_CL_ARG(phyrank), EPLB_CL_ARG(mlogcnt),
                     EPLB_CL_ARG(node_weight), EPLB_CL_ARG(mlog2log), EPLB_CL_ARG(slot_load),
                     EPLB_CL_ARG(pack_of), EPLB_CL_ARG(rank_of), EPLB_CL_ARG(status),
                     EPLB_CL_ARG(row_changed), EPLB_CL_ARG(row_seed_max), EPLB_CL_ARG(ints_all),
                     EPLB_CL_ARG(floats_all), EPLB_CL_ARG(rows64), EPLB_CL_ARG(n32),
                     EPLB_CL_ARG(m32), EPLB_CL_ARG(k32), EPLB_CL_ARG(M64), EPLB_CL_ARG(E64),
                     EPLB_CL_ARG(N64), EPLB_CL_ARG(bug)),
        (rows + group - 1) / group, group);
}
