/* Weight check on the device: a weight that is NaN, infinite or negative sets
 * job->status to EPLB_ERR_INVALID_WEIGHT; later stages then leave the outputs alone. */
#include "cuda_check_weights.cuh"

__global__ void eplb_cuda_check_weights_kernel(const float *weight, int64_t count, int32_t *status)
{
    const int bad = eplb_cuda_any_weight_bad(weight, count,
                                             blockIdx.x * (int64_t)blockDim.x + threadIdx.x,
                                             (int64_t)gridDim.x * blockDim.x);
    if (__syncthreads_or(bad) && threadIdx.x == 0)
        *status = EPLB_ERR_INVALID_WEIGHT; /* every writer writes the same value */
}

eplb_status eplb_cuda_check_weights(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    cudaError_t err = cudaMemsetAsync(job->status, 0, sizeof(int32_t), ctx->stream);
    if (err != cudaSuccess)
        return eplb_cuda_fail(backend, "check_weights", err);
    const int64_t count = job->layers * job->experts;
    eplb_cuda_check_weights_kernel<<<eplb_cuda_grid_blocks(count, 256, 4L * ctx->sm_count), 256,
                                     0, ctx->stream>>>((const float *)job->weight, count,
                                                       (int32_t *)job->status);
    return eplb_cuda_launched(backend, "check_weights");
}
