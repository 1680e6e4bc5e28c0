/* Weight check (SPEC section 2) on the device: 0 or EPLB_ERR_INVALID_WEIGHT into job->status. */
#ifndef EPLB_CUDA_CHECK_WEIGHTS_CUH
#define EPLB_CUDA_CHECK_WEIGHTS_CUH

#include "cuda_runtime.cuh"

/* Whether any of weight[i], i = first, first + step, ... below count is
 * refused (SPEC: NaN, infinite or negative; written so that NaN fails too).
 * Four weights per load when the pointer allows it, eight loads in flight per
 * thread: the check is L2 latency bound. The last batch is predicated (zeros
 * pass), so no load waits alone. The forms below (weight and count by
 * reference, the Index type of the caller's counters, the float4 tail loop
 * that the batches leave empty) are those of the plan_fused kernel timed in
 * docs/benchmarks.md: other forms compile plan_fused differently. */
template <class Index>
static __device__ __forceinline__ int eplb_cuda_any_weight_bad(const float *const &weight,
                                                               const int64_t &count, Index first,
                                                               Index step)
{
    int64_t head = 0;
    int bad = 0;
    if (((uintptr_t)weight & 15u) == 0) {
        constexpr int Depth = 8;
        const float4 *w4 = (const float4 *)weight;
        head = count & ~(int64_t)3;
        const int64_t n4 = head / 4;
        int64_t i = first;
        for (; i < n4; i += Depth * (int64_t)step) {
            float4 v[Depth];
#pragma unroll
            for (int j = 0; j < Depth; j++)
                v[j] = i + j * (int64_t)step < n4 ? w4[i + j * (int64_t)step] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int j = 0; j < Depth; j++)
                bad |= !(v[j].x >= 0.0f) || isinf(v[j].x) || !(v[j].y >= 0.0f) ||
                       isinf(v[j].y) || !(v[j].z >= 0.0f) || isinf(v[j].z) ||
                       !(v[j].w >= 0.0f) || isinf(v[j].w);
        }
        for (; i < head / 4; i += step) {
            const float4 v = w4[i];
            bad |= !(v.x >= 0.0f) || isinf(v.x) || !(v.y >= 0.0f) || isinf(v.y) ||
                   !(v.z >= 0.0f) || isinf(v.z) || !(v.w >= 0.0f) || isinf(v.w);
        }
    }
    for (int64_t i = head + first; i < count; i += step) {
        const float v = weight[i];
        bad |= !(v >= 0.0f) || isinf(v);
    }
    return bad;
}

eplb_status eplb_cuda_check_weights(eplb_backend *backend, const eplb_plan_job *job);

#endif
