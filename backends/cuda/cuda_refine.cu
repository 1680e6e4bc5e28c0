/* Refine stage (SPEC 10): a block per row of the slot packing. The block
 * reads the row's placement from pack_of / rank_of into GPU-major slot lists,
 * runs eplb_block_refine on them and writes pack_of / rank_of back, which
 * assemble then reads as usual. With distinct the lists also carry each
 * slot's expert, so that only the trades of SPEC 11.6 count, and with refine
 * 0 the stage is distinct's restore (SPEC 11.5): only the rows the distinct
 * stage changed, a fixed number of trades, down to the row's maximum before
 * the cap at best. */
#include "cuda_refine.cuh"

/* The most threads of a row's block: a unit each for the DeepSeek-V3 rows
 * (360 to 960 units). An iteration's time is the longest thread's chain of
 * dependent trades, and a layer's rows are few next to the multiprocessors,
 * so the whole block's width goes to one row. */
#ifndef EPLB_CUDA_REFINE_THREADS /* a compile-time override, to time other widths */
#define EPLB_CUDA_REFINE_THREADS 1024
#endif

struct eplb_cuda_refine_args {
    const int32_t *status; /* nonzero: the plan failed, nothing to refine */
    const float *slot_load;
    int32_t *pack_of, *rank_of;
    const int32_t *phy2mlog;     /* each slot's expert (distinct), else NULL */
    const int32_t *row_changed;  /* the restore's rows (refine 0 with distinct), else NULL */
    const float *row_seed_max;   /* the restore's stop loads, with row_changed */
    int64_t rows;
    uint32_t n, m, k;
    int32_t refine;              /* the most trades of a row */
    float tolerance;
    unsigned char *global_state; /* a row's state per block, or NULL: shared memory */
    size_t state_bytes, o_t, o_load, o_item;
};

template <class Index>
__global__ void __launch_bounds__(EPLB_CUDA_REFINE_THREADS)
    eplb_cuda_refine_kernel(eplb_cuda_refine_args a)
{
    extern __shared__ __align__(16) unsigned char eplb_refine_state[];
    __shared__ eplb_cuda_refine_votes votes;
    /* A failed weight check leaves loads that may be NaN: no search on them. */
    if (a.status && *a.status != 0)
        return;
    unsigned char *state =
        a.global_state ? a.global_state + (size_t)blockIdx.x * a.state_bytes : eplb_refine_state;
    const eplb_cuda_refine_row row = {a.m, a.k, (int32_t *)state, (float *)(state + a.o_t),
                                      (float *)(state + a.o_load),
                                      a.phy2mlog ? (int32_t *)(state + a.o_item) : NULL};
    const uint32_t n = a.n, k = a.k;
    for (int64_t x = blockIdx.x; x < a.rows; x += gridDim.x) {
        /* The restore passes over the rows that distinct left as they were
         * (the same word for the whole block, so no barrier is skipped by
         * some threads only). */
        if (a.row_changed && !a.row_changed[x])
            continue;
        int32_t *pack_of = a.pack_of + x * n, *rank_of = a.rank_of + x * n;
        const float *slot_load = a.slot_load + x * n;
        for (uint32_t q = threadIdx.x; q < n; q += blockDim.x)
            row.content[pack_of[q] * k + rank_of[q]] = (int32_t)q;
        __syncthreads();
        for (uint32_t p = threadIdx.x; p < n; p += blockDim.x)
            row.t[p] = slot_load[row.content[p]];
        if (row.item)
            for (uint32_t p = threadIdx.x; p < n; p += blockDim.x)
                row.item[p] = a.phy2mlog[x * n + row.content[p]];
        __syncthreads();
        for (uint32_t g = threadIdx.x; g < a.m; g += blockDim.x)
            row.load[g] = eplb_cuda_refine_gpu_load(row.t, g, k);
        __syncthreads();
        eplb_block_refine<Index>(row, a.refine, a.tolerance, &votes,
                                 a.row_changed ? a.row_seed_max[x] : -INFINITY);
        for (uint32_t p = threadIdx.x; p < n; p += blockDim.x) {
            const int32_t q = row.content[p];
            pack_of[q] = (int32_t)(p / k);
            rank_of[q] = (int32_t)(p % k);
        }
        __syncthreads(); /* the next row reuses the state */
    }
}

eplb_status eplb_cuda_refine(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    if ((job->refine <= 0 && !job->distinct) || !eplb_plan_rows_trade(job))
        return EPLB_OK;
    const bool restore = job->refine <= 0;
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    eplb_cuda_refine_args a;
    a.status = (const int32_t *)job->status;
    a.slot_load = (const float *)job->slot_load;
    a.pack_of = (int32_t *)sp->pack_of;
    a.rank_of = (int32_t *)sp->rank_of;
    a.rows = sp->rows;
    a.n = (uint32_t)sp->items;
    a.m = (uint32_t)sp->packs;
    a.k = (uint32_t)sp->per_pack;
    a.phy2mlog = job->distinct ? (const int32_t *)job->phy2mlog : NULL;
    a.row_changed = restore ? (const int32_t *)job->row_changed : NULL;
    a.row_seed_max = restore ? (const float *)job->row_seed_max : NULL;
    a.refine = restore ? EPLB_DISTINCT_RESTORE_TRADES : job->refine;
    a.tolerance = sp->tolerance;
    a.o_t = eplb_cuda_align((size_t)a.n * sizeof(int32_t));
    a.o_load = a.o_t + eplb_cuda_align((size_t)a.n * sizeof(float));
    a.o_item = a.o_load + eplb_cuda_align((size_t)a.m * sizeof(float));
    a.state_bytes = a.o_item + (job->distinct ? eplb_cuda_align((size_t)a.n * sizeof(int32_t)) : 0);

    /* Every trade of a row must have a number: 32 bits while they fit. */
    const uint64_t k = a.k, pairs = k * (k - 1) / 2;
    const long double trades = (long double)a.m * ((long double)k * k + (long double)pairs * pairs);
    const uint64_t units = eplb_cuda_refine_units<uint64_t>(a.m, a.k);
    const int threads =
        units >= EPLB_CUDA_REFINE_THREADS ? EPLB_CUDA_REFINE_THREADS : (int)((units + 31) / 32 * 32);
    unsigned blocks = eplb_cuda_grid_blocks(a.rows, 1, 65535L * 16);

    /* A row beyond the default shared memory keeps its state in the global
     * scratch, one row's worth per block. */
    size_t smem;
    eplb_status st = eplb_cuda_block_state(backend, a.state_bytes, &blocks, &smem, &a.global_state);
    if (st != EPLB_OK)
        return st;
    if (trades < 4294967296.0L)
        eplb_cuda_refine_kernel<uint32_t><<<blocks, threads, smem, ctx->stream>>>(a);
    else
        eplb_cuda_refine_kernel<unsigned long long><<<blocks, threads, smem, ctx->stream>>>(a);
    return eplb_cuda_launched(backend, "refine");
}
