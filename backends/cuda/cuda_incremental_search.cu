/* The swap search of docs/spec.md section 13.5 for a batch of domains: one
 * block per search, its domain in shared memory (cuda_incremental_search.cuh
 * holds the search itself, which the host test runs too). */
#include "cuda_incremental_search.cuh"
#include "cuda_runtime.cuh"

/* Shared memory a block may take without the per-kernel opt-in. */
#define EPLB_SEARCH_DEFAULT_SHARED (48 * 1024)

__global__ void __launch_bounds__(EPLB_CUDA_SEARCH_THREADS_MAX)
    eplb_cuda_domain_search_kernel(eplb_cuda_search_batch batch)
{
    extern __shared__ __align__(16) unsigned char eplb_search_shared[];
    eplb_block_domain_search(batch, (int32_t)blockIdx.x, eplb_search_shared);
}

/* Whether the batch is one the kernel plans right: a domain shape, every
 * array, and trades that its order bits number. */
static bool eplb_search_batch_valid(const eplb_cuda_search_batch *b)
{
    if (!b || b->searches < 0 || b->domain_slots < 1 || b->slots_per_gpu < 1 ||
        b->domain_slots % b->slots_per_gpu != 0 || b->experts < 1)
        return false;
    if (b->searches == 0)
        return true;
    return b->base && b->cur && b->u && b->target && b->limit && b->moved && b->met &&
           eplb_search_orders_fit(b->domain_slots, b->slots_per_gpu);
}

cudaError_t eplb_cuda_domain_searches(const eplb_cuda_search_batch *batch, cudaStream_t stream)
{
    if (!eplb_search_batch_valid(batch))
        return cudaErrorInvalidValue;
    if (batch->searches == 0)
        return cudaSuccess;
    const int dn = batch->domain_slots, spg = batch->slots_per_gpu;
    const int threads = eplb_cuda_search_threads(dn, spg);
    const size_t bytes = eplb_search_memory_bytes(dn, spg, threads);
    if (bytes > EPLB_SEARCH_DEFAULT_SHARED) {
        /* Large domains need the opt-in, up to what the device has. */
        int device = 0, most = 0;
        cudaError_t err = cudaGetDevice(&device);
        if (err == cudaSuccess)
            err = cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
        if (err != cudaSuccess)
            return err;
        if (bytes > (size_t)most)
            return cudaErrorInvalidValue;
        err = cudaFuncSetAttribute(eplb_cuda_domain_search_kernel,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
        if (err != cudaSuccess)
            return err;
    }
    eplb_cuda_domain_search_kernel<<<(unsigned)batch->searches, (unsigned)threads, bytes, stream>>>(
        *batch);
    return cudaGetLastError();
}

/* ---- the backend's entry (backend.h, domain_searches) ---- */

/* The job's area (backend.h: base, u, target, limit, cur, moved, met, in
 * that order) goes up in one copy and the results (cur, moved, met) come
 * down in one, around the kernel, on the instance's stream; the call
 * returns once they are in the job. A batch the kernel does not take is
 * declined (the library searches on the host), having enqueued nothing. */
eplb_status eplb_cuda_domain_search_job(eplb_backend *backend, const eplb_search_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    if (job->searches == 0)
        return EPLB_OK;
    const int32_t dn = job->domain_slots, spg = job->gpu_slots;
    if (job->searches > INT32_MAX || dn < 1 || spg < 1 || dn % spg != 0 ||
        !eplb_search_orders_fit(dn, spg) ||
        eplb_search_memory_bytes(dn, spg, eplb_cuda_search_threads(dn, spg)) > ctx->smem_optin)
        return EPLB_BACKEND_DECLINED;
    const unsigned char *area = (const unsigned char *)job->base;
    const unsigned char *in_order[7] = {area,
                                        (const unsigned char *)job->u,
                                        (const unsigned char *)job->target,
                                        (const unsigned char *)job->limit,
                                        (const unsigned char *)job->cur,
                                        (const unsigned char *)job->moved,
                                        (const unsigned char *)job->met};
    for (int i = 1; i < 7; i++)
        if (in_order[i] <= in_order[i - 1])
            return eplb_backend_error(backend, EPLB_ERR_INTERNAL,
                                      "domain_searches: the job's arrays are not in one area in "
                                      "the order of backend.h");
    const size_t end = (size_t)((const unsigned char *)(job->met + job->searches) - area);
    const size_t up = (size_t)((const unsigned char *)(job->moved + job->searches) - area);
    const size_t results = (size_t)((const unsigned char *)job->cur - area);
    void *scratch;
    eplb_status st = eplb_cuda_scratch(backend, end, &scratch);
    if (st != EPLB_OK)
        return st;
    unsigned char *device = (unsigned char *)scratch;
    const cudaStream_t stream = ctx->stream;
    cudaError_t err = cudaMemcpyAsync(device, area, up, cudaMemcpyHostToDevice, stream);
    if (err != cudaSuccess)
        return eplb_cuda_fail(backend, "domain_searches upload", err);
    eplb_cuda_search_batch batch;
    batch.searches = (int32_t)job->searches;
    batch.domain_slots = dn;
    batch.slots_per_gpu = spg;
    batch.experts = job->experts;
    batch.base = (const int32_t *)device;
    batch.u = (float *)(device + (in_order[1] - area));
    batch.target = (const float *)(device + (in_order[2] - area));
    batch.limit = (const int32_t *)(device + (in_order[3] - area));
    batch.cur = (int32_t *)(device + results);
    batch.moved = (int32_t *)(device + (in_order[5] - area));
    batch.met = (int32_t *)(device + (in_order[6] - area));
    if ((err = eplb_cuda_domain_searches(&batch, stream)) != cudaSuccess)
        return eplb_backend_error(backend, EPLB_ERR_BACKEND_FAILURE, "domain search kernel: %s",
                                  cudaGetErrorString(err));
    err =
        cudaMemcpyAsync(job->cur, device + results, end - results, cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(stream);
    return err == cudaSuccess ? EPLB_OK : eplb_cuda_fail(backend, "domain_searches download", err);
}
