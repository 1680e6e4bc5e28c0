/* Balanced packing (SPEC section 6) on OpenCL: sort, greedy, swap, select,
 * one or two enqueues per stage (kernels/pack_*.cl). */
#include "opencl_stages.h"

/* Pack loads (float) and pack counts with a heap (2 ints a pack) of every
 * packing, in scratch. */
static eplb_status pack_scratch(eplb_backend *backend, const eplb_pack_job *job, cl_mem *load,
                                cl_mem *count)
{
    const size_t cells = (size_t)job->rows * (size_t)job->candidates * (size_t)job->packs;
    eplb_status st = eplb_opencl_scratch(backend, 0, cells * sizeof(float), load);
    if (st == EPLB_OK && count)
        st = eplb_opencl_scratch(backend, 1, 2 * cells * sizeof(int32_t), count);
    return st;
}

eplb_status eplb_opencl_pack_sort(eplb_backend *backend, const eplb_pack_job *job)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    const size_t packings = (size_t)job->rows * (size_t)job->candidates;
    /* Keys go into content: greedy overwrites it after the sort has read them. */
    cl_mem weight = job->weight, keys = job->content, order = job->order;
    const cl_int n = job->items, C = job->candidates, call = job->call;
    const cl_float noise = job->noise;
    const cl_ulong seed = job->seed;
    eplb_status st = eplb_opencl_run_items(
        backend, EPLB_CLK_PACK_KEYS,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(keys), EPLB_CL_ARG(n), EPLB_CL_ARG(C),
                     EPLB_CL_ARG(noise), EPLB_CL_ARG(seed), EPLB_CL_ARG(call)),
        (size_t)n, packings);
    if (st != EPLB_OK)
        return st;
    if (s->tuning.rank_sort)
        return eplb_opencl_run_items(backend, EPLB_CLK_PACK_RANK,
                                     EPLB_CL_ARGS(EPLB_CL_ARG(keys), EPLB_CL_ARG(order), EPLB_CL_ARG(n)),
                                     (size_t)n, packings);
    const cl_ulong count = packings;
    return eplb_opencl_run_elements(
        backend, EPLB_CLK_PACK_HEAPSORT,
        EPLB_CL_ARGS(EPLB_CL_ARG(keys), EPLB_CL_ARG(order), EPLB_CL_ARG(n), EPLB_CL_ARG(count)),
        packings);
}

eplb_status eplb_opencl_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    cl_mem load, count;
    eplb_status st = pack_scratch(backend, job, &load, &count);
    if (st != EPLB_OK)
        return st;
    cl_mem weight = job->weight, order = job->order, content = job->content;
    const cl_int n = job->items, m = job->packs, k = job->per_pack, C = job->candidates;
    return eplb_opencl_run_rows(
        backend, EPLB_CLK_PACK_GREEDY,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(order), EPLB_CL_ARG(content), EPLB_CL_ARG(load),
                     EPLB_CL_ARG(count), EPLB_CL_ARG(n), EPLB_CL_ARG(m), EPLB_CL_ARG(k), EPLB_CL_ARG(C)),
        (size_t)job->rows * (size_t)job->candidates, (size_t)m);
}

eplb_status eplb_opencl_pack_swap(eplb_backend *backend, const eplb_pack_job *job)
{
    if (job->iterations == 0)
        return EPLB_OK;
    cl_mem load;
    eplb_status st = pack_scratch(backend, job, &load, NULL);
    if (st != EPLB_OK)
        return st;
    cl_mem weight = job->weight, content = job->content;
    const cl_int n = job->items, m = job->packs, k = job->per_pack, C = job->candidates;
    const cl_int iterations = job->iterations;
    const cl_float tolerance = job->tolerance;
    return eplb_opencl_run_rows(
        backend, EPLB_CLK_PACK_SWAP,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(content), EPLB_CL_ARG(load), EPLB_CL_ARG(n),
                     EPLB_CL_ARG(m), EPLB_CL_ARG(k), EPLB_CL_ARG(C), EPLB_CL_ARG(iterations),
                     EPLB_CL_ARG(tolerance)),
        (size_t)job->rows * (size_t)job->candidates, (size_t)k * (size_t)k);
}

eplb_status eplb_opencl_pack_select(eplb_backend *backend, const eplb_pack_job *job)
{
    cl_mem weight = job->weight, content = job->content, pack_of = job->pack_of,
           rank_of = job->rank_of;
    const cl_int n = job->items, m = job->packs, k = job->per_pack, C = job->candidates;
    /* Work per row: the candidates' scores, each a pass over n items. */
    return eplb_opencl_run_rows(
        backend, EPLB_CLK_PACK_SELECT,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(content), EPLB_CL_ARG(pack_of),
                     EPLB_CL_ARG(rank_of), EPLB_CL_ARG(n), EPLB_CL_ARG(m), EPLB_CL_ARG(k), EPLB_CL_ARG(C)),
        (size_t)job->rows, (size_t)C);
}
