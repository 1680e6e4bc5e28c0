/* Weight check (SPEC section 2) on the device: 0 or EPLB_ERR_INVALID_WEIGHT into job->status. */
#ifndef EPLB_CUDA_CHECK_WEIGHTS_CUH
#define EPLB_CUDA_CHECK_WEIGHTS_CUH

#include "cuda_runtime.cuh"

/* A weight the SPEC refuses: NaN, infinite or negative (written so that NaN fails too). */
static __device__ __forceinline__ bool eplb_cuda_weight_bad(float w)
{
    return !(w >= 0.0f) || isinf(w);
}

/* Whether any of weight[i], i = first, first + step, ... below count is
 * refused. Four weights per load when the pointer allows it, eight loads in
 * flight per thread: the check is L2 latency bound. The last batch is
 * predicated (zeros pass), so no load waits alone. */
static __device__ __forceinline__ int eplb_cuda_any_weight_bad(const float *weight, int64_t count,
                                                               int64_t first, int64_t step)
{
    int bad = 0;
    int64_t head = 0;
    if (((uintptr_t)weight & 15u) == 0) {
        constexpr int Depth = 8;
        const float4 *w4 = (const float4 *)weight;
        head = count & ~(int64_t)3;
        const int64_t n4 = head / 4;
        for (int64_t i = first; i < n4; i += Depth * step) {
            float4 v[Depth];
#pragma unroll
            for (int j = 0; j < Depth; j++)
                v[j] = i + j * step < n4 ? w4[i + j * step] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int j = 0; j < Depth; j++)
                bad |= eplb_cuda_weight_bad(v[j].x) || eplb_cuda_weight_bad(v[j].y) ||
                       eplb_cuda_weight_bad(v[j].z) || eplb_cuda_weight_bad(v[j].w);
        }
    }
    for (int64_t i = head + first; i < count; i += step)
        bad |= eplb_cuda_weight_bad(weight[i]);
    return bad;
}

eplb_status eplb_cuda_check_weights(eplb_backend *backend, const eplb_plan_job *job);

#endif
