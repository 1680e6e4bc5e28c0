/* The refine search (SPEC 10) on OpenCL: one launch of kernels/refine.cl
 * for the whole job, a work-group per row making all of its trades, so that
 * a plan with refine needs no host round trip per trade. With distinct the
 * same launch keeps to the trades of SPEC 11.6, and with refine 0 it is the
 * restore of SPEC 11.5 on the rows the distinct stage (opencl_distinct.c)
 * changed. The row's placement
 * lives in local memory when it fits, else in global scratch; the kernel's
 * trade numbers must fit 31 bits, and a row with more trades per iteration
 * is declined with an error rather than searched wrongly. */
#include <stdint.h>

#include "opencl_stages.h"

/* The local memory a refine group may take: the device's less the kernel's
 * own (its stop flag), within the tuning's cap (EPLB_TUNE_OPENCL_LOCAL_MEM). */
static size_t local_budget(const eplb_opencl *s)
{
    cl_ulong device = 0, kernel = 0;
    s->cl->clGetDeviceInfo(s->handles.device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof device, &device, NULL);
    s->cl->clGetKernelWorkGroupInfo(s->kernel[EPLB_CLK_REFINE], s->handles.device,
                                    CL_KERNEL_LOCAL_MEM_SIZE, sizeof kernel, &kernel, NULL);
    size_t budget = device > kernel ? (size_t)(device - kernel) : 0;
    if (s->tuning.local_mem_cap && s->tuning.local_mem_cap < budget)
        budget = s->tuning.local_mem_cap;
    return budget;
}

/* One kernel argument held in local memory, bytes long (clSetKernelArg
 * with a NULL value). */
#define LOCAL_ARG(bytes) ((eplb_opencl_arg){(bytes), NULL})

eplb_status eplb_opencl_refine(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int64_t n = sp->items, m = sp->packs, k = sp->per_pack;
    if ((job->refine <= 0 && !job->distinct) || !eplb_plan_rows_trade(job) || sp->rows <= 0)
        return EPLB_OK;
    /* With refine 0 this is distinct's restore (SPEC 11.5): only the rows
     * the distinct stage changed, a fixed number of trades, down to the
     * row's maximum before the cap at best. */
    const cl_int restore = job->refine <= 0, distinct = job->distinct != 0;
    const cl_int refine = restore ? EPLB_DISTINCT_RESTORE_TRADES : job->refine;
    const int64_t pairs = k * (k - 1) / 2;
    const int64_t trades = (m - 1) * (k * k + pairs * pairs);
    if (trades > INT32_MAX - 1)
        return eplb_backend_error(backend, EPLB_ERR_UNSUPPORTED,
                                  "refine on opencl: a row of %lld GPUs with %lld slots each has "
                                  "%lld trades per search step, more than its kernel numbers "
                                  "(2^31 - 2); plan it with the cpu backend",
                                  (long long)m, (long long)k, (long long)trades);
    eplb_status st = eplb_opencl_prepare_kernels(backend);
    if (st != EPLB_OK)
        return st;
    eplb_opencl *s = eplb_opencl_state(backend);

    /* A work-item per unit (one of A's slots or pairs against one partner)
     * at most: more would idle. */
    const int64_t units = (m - 1) * (k + pairs);
    size_t group = s->kernel_group[EPLB_CLK_REFINE];
    while (group > 1 && (int64_t)(group / 2) >= units)
        group /= 2;
    const size_t slot_bytes = (size_t)n * sizeof(cl_int), load_bytes = (size_t)(n + m) * sizeof(cl_float);
    const size_t argmin_bytes = 4 * group * sizeof(cl_uint);
    const cl_int in_local = slot_bytes + load_bytes + argmin_bytes <= local_budget(s);

    cl_mem content_all = NULL, loads_all = NULL;
    if (!in_local) {
        const size_t rows = (size_t)sp->rows;
        st = eplb_opencl_scratch(backend, 0, rows * slot_bytes, &content_all);
        if (st == EPLB_OK)
            st = eplb_opencl_scratch(backend, 1, rows * load_bytes, &loads_all);
        if (st != EPLB_OK)
            return st;
    }
    cl_mem slot_load = job->slot_load, pack_of = sp->pack_of, rank_of = sp->rank_of,
           status = job->status, phy2mlog = job->phy2mlog, row_changed = job->row_changed,
           row_seed_max = job->row_seed_max;
    const cl_int n32 = (cl_int)n, m32 = (cl_int)m, k32 = (cl_int)k;
    const cl_float tolerance = sp->tolerance;
    /* Local buffers cannot be empty: a word each where the row is in global memory. */
    const size_t local_slots = in_local ? slot_bytes : sizeof(cl_int);
    const size_t local_loads = in_local ? load_bytes : sizeof(cl_float);
    return eplb_opencl_run_groups(
        backend, EPLB_CLK_REFINE, NULL,
        EPLB_CL_ARGS(EPLB_CL_ARG(slot_load), EPLB_CL_ARG(pack_of), EPLB_CL_ARG(rank_of),
                     EPLB_CL_ARG(status), EPLB_CL_ARG(content_all), EPLB_CL_ARG(loads_all),
                     LOCAL_ARG(local_slots), LOCAL_ARG(local_loads), LOCAL_ARG(argmin_bytes),
                     EPLB_CL_ARG(phy2mlog), EPLB_CL_ARG(row_changed), EPLB_CL_ARG(row_seed_max),
                     EPLB_CL_ARG(n32), EPLB_CL_ARG(m32), EPLB_CL_ARG(k32), EPLB_CL_ARG(refine),
                     EPLB_CL_ARG(tolerance), EPLB_CL_ARG(in_local), EPLB_CL_ARG(distinct),
                     EPLB_CL_ARG(restore)),
        (size_t)sp->rows, group);
}
