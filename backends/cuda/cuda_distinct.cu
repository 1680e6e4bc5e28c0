/* Distinct stage (SPEC 11.3, 11.4): a block of one thread per row of the
 * slot packing runs eplb_cuda_distinct_row on the row's state, in shared
 * memory when it fits the default amount and in the global scratch (a row's
 * worth per block) otherwise. The restore of SPEC 11.5 is the refine stage's,
 * which reads row_changed and row_seed_max. */
#include "cuda_distinct.cuh"

struct eplb_cuda_distinct_args {
    eplb_plan_job job;             /* the buffers, all on the device */
    unsigned char *global_state;   /* a row's state per block, or NULL: shared memory */
    size_t state_bytes;
};

__global__ void eplb_cuda_distinct_kernel(eplb_cuda_distinct_args a)
{
    extern __shared__ __align__(16) unsigned char eplb_distinct_state[];
    int32_t *status = (int32_t *)a.job.status;
    /* A failed weight check leaves loads that may be NaN: the plan is not
     * written, and the refine stage skips its rows too. */
    if (status && *status != 0)
        return;
    const eplb_pack_job *sp = &a.job.slot_pack;
    unsigned char *bytes = a.global_state
                               ? a.global_state + (size_t)blockIdx.x * a.state_bytes
                               : eplb_distinct_state;
    eplb_cuda_distinct_state s = eplb_cuda_distinct_state_at(
        bytes, (uint32_t)sp->items, (uint32_t)sp->packs, (uint32_t)a.job.node_experts);
    for (int64_t x = blockIdx.x; x < sp->rows; x += gridDim.x) {
        const eplb_cuda_distinct_data d = eplb_cuda_distinct_data_of(&a.job, x);
        if (eplb_cuda_distinct_row(d, s, (int32_t *)a.job.row_changed + x,
                                   (float *)a.job.row_seed_max + x) != 0) {
            /* The cap rules this out (SPEC 11.4); should it happen, the
             * status word keeps assemble from writing the plan and
             * eplb_device_status reports it. */
            if (status)
                atomicCAS(status, 0, (int32_t)EPLB_ERR_INTERNAL);
            ((int32_t *)a.job.row_changed)[x] = 0;
        }
    }
}

eplb_status eplb_cuda_distinct(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    /* The planner runs this stage only on rows that trade (more than one
     * slot per GPU and more than one GPU per row); the check keeps the
     * stage safe on its own. */
    if (!job->distinct || !eplb_plan_rows_trade(job) || sp->rows <= 0)
        return EPLB_OK;
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    eplb_cuda_distinct_args a;
    a.job = *job;
    a.state_bytes = eplb_cuda_align(eplb_cuda_distinct_state_bytes(
        (uint32_t)sp->items, (uint32_t)sp->packs, (uint32_t)job->node_experts));
    unsigned blocks = eplb_cuda_grid_blocks(sp->rows, 1, 65535L * 16);
    size_t smem;
    eplb_status st = eplb_cuda_block_state(backend, a.state_bytes, &blocks, &smem, &a.global_state);
    if (st != EPLB_OK)
        return st;
    eplb_cuda_distinct_kernel<<<blocks, 1, smem, ctx->stream>>>(a);
    return eplb_cuda_launched(backend, "distinct");
}
