/* float32 operations rounded to nearest, one rounding each and never fused,
 * on the device and on the host alike (the host's float arithmetic is IEEE
 * float32, and the host tests build with -ffp-contract=off): the spec's
 * fixed arithmetic order for the refine and incremental searches, which the
 * host tests compile too. */
#ifndef EPLB_CUDA_FLOAT_RN_CUH
#define EPLB_CUDA_FLOAT_RN_CUH

static __host__ __device__ __forceinline__ float eplb_cuda_add_rn(float x, float y)
{
#ifdef __CUDA_ARCH__
    return __fadd_rn(x, y);
#else
    return x + y;
#endif
}

static __host__ __device__ __forceinline__ float eplb_cuda_sub_rn(float x, float y)
{
#ifdef __CUDA_ARCH__
    return __fsub_rn(x, y);
#else
    return x - y;
#endif
}

static __host__ __device__ __forceinline__ float eplb_cuda_mul_rn(float x, float y)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(x, y);
#else
    return x * y;
#endif
}

#endif /* EPLB_CUDA_FLOAT_RN_CUH */
