/* The arithmetic of SPEC.md written once for C, CUDA and OpenCL C.
 *
 * Every backend computes sort keys, swap gains and random numbers through
 * these functions, so a tie or a rounding rule cannot drift between them.
 * Callers must compile without floating-point contraction (-ffp-contract=off,
 * -fmad=false, #pragma OPENCL FP_CONTRACT OFF). */
#ifndef EPLB_SPEC_MATH_H
#define EPLB_SPEC_MATH_H

#if defined(__OPENCL_VERSION__)
/* OpenCL C contracts a * b + c into one fused multiply-add unless told not
 * to, and a pragma governs only the code after it. This file is the first
 * of the kernel sources, so the pragma must be here, above the functions:
 * below them, NVIDIA's compiler fused eplb_sort_key's multiply and add, and
 * keys one rounding apart swapped places in the sort (docs/opencl.md). */
#pragma OPENCL FP_CONTRACT OFF
typedef ulong eplb_u64;
#define EPLB_SPEC_FN static inline
#elif defined(__CUDACC__)
typedef unsigned long long eplb_u64;
#define EPLB_SPEC_FN static __host__ __device__ __forceinline__
#else
#include <stdint.h>
typedef uint64_t eplb_u64;
#define EPLB_SPEC_FN static inline
#endif

/* SPEC section 7: the splitmix64 finaliser. */
EPLB_SPEC_FN eplb_u64 eplb_mix64(eplb_u64 z)
{
    z = (z ^ (z >> 30)) * (eplb_u64)0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * (eplb_u64)0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

#define EPLB_RANDOM_GOLDEN ((eplb_u64)0x9E3779B97F4A7C15ULL)

/* SPEC section 7, first three rounds: the state after (s, call, row, c),
 * shared by every item of one packing candidate. */
EPLB_SPEC_FN eplb_u64 eplb_random_prefix(eplb_u64 seed, eplb_u64 call, eplb_u64 row,
                                         eplb_u64 candidate)
{
    eplb_u64 z = seed;
    z = eplb_mix64(z + EPLB_RANDOM_GOLDEN * (call + 1));
    z = eplb_mix64(z + EPLB_RANDOM_GOLDEN * (row + 1));
    return eplb_mix64(z + EPLB_RANDOM_GOLDEN * (candidate + 1));
}

/* SPEC section 7, last round: U for item i from the candidate's prefix. */
EPLB_SPEC_FN float eplb_random_unit_at(eplb_u64 prefix, eplb_u64 item)
{
    eplb_u64 z = eplb_mix64(prefix + EPLB_RANDOM_GOLDEN * (item + 1));
    /* 24 bits: converts to float exactly, and so does the power-of-two scale. */
    return (float)(unsigned int)(z >> 40) * (1.0f / 16777216.0f);
}

/* SPEC section 7: U(s, call, row, c, i), a float32 in [0, 1), exact. */
EPLB_SPEC_FN float eplb_random_unit(eplb_u64 seed, eplb_u64 call, eplb_u64 row,
                                    eplb_u64 candidate, eplb_u64 item)
{
    return eplb_random_unit_at(eplb_random_prefix(seed, call, row, candidate), item);
}

/* SPEC 6.1: key = w + u * (w * a), multiplications first, in that order. */
EPLB_SPEC_FN float eplb_sort_key(float weight, float noise, float u)
{
    float scaled = weight * noise;
    float perturbation = u * scaled;
    return weight + perturbation;
}

/* SPEC 6.3: change in the sum of squared pack loads when an item of weight
 * wa in the heaviest pack trades places with one of weight wb in the lightest,
 * diff = load[lightest] - load[heaviest]. */
EPLB_SPEC_FN float eplb_swap_change(float diff, float wa, float wb)
{
    float d = wa - wb;
    float twice = 2.0f * d;
    float shifted = diff + d;
    return twice * shifted;
}

#endif /* EPLB_SPEC_MATH_H */
