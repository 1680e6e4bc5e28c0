/* Stage 1 of balanced packing (SPEC 6.1) on the device: keys, then the visiting
 * order by a bitonic sort of (key descending, index ascending) composite keys. */
#ifndef EPLB_CUDA_PACK_SORT_CUH
#define EPLB_CUDA_PACK_SORT_CUH

#include "common/spec_math.h"
#include "cuda_common.cuh"

/* The sortable 64-bit form of item i: ascending order of it is the SPEC's order. */
static __device__ __forceinline__ uint64_t eplb_cuda_sort_entry(const float *w, uint32_t i,
                                                                int32_t call, int64_t row,
                                                                int32_t c, uint64_t seed,
                                                                float noise)
{
    float key = w[i];
    if (c > 0)
        key = eplb_sort_key(w[i], noise,
                            eplb_random_unit(seed, (eplb_u64)call, (eplb_u64)row, (eplb_u64)c,
                                             (eplb_u64)i));
    return ((uint64_t)~eplb_cuda_ordered_bits(key) << 32) | i;
}

/* Sorts the n items of packing (row, c) into buf[0..npow2) (npow2 >= n, a
 * power of two); item of visiting position t is (uint32_t)buf[t]. */
template <class Team>
static __device__ void eplb_team_pack_sort(const Team &team, const float *w, uint32_t n,
                                           uint32_t npow2, int32_t call, int64_t row, int32_t c,
                                           uint64_t seed, float noise, uint64_t *buf)
{
    for (uint32_t i = team.rank(); i < npow2; i += team.size())
        buf[i] = i < n ? eplb_cuda_sort_entry(w, i, call, row, c, seed, noise) : ~0ull;
    team.sync();
    for (uint32_t span = 2; span <= npow2; span <<= 1) {
        for (uint32_t j = span >> 1; j > 0; j >>= 1) {
            for (uint32_t i = team.rank(); i < npow2 / 2; i += team.size()) {
                const uint32_t lo = ((i & ~(j - 1)) << 1) | (i & (j - 1));
                const uint32_t hi = lo | j;
                const bool ascending = (lo & span) == 0;
                const uint64_t a = buf[lo], b = buf[hi];
                if ((a > b) == ascending) {
                    buf[lo] = b;
                    buf[hi] = a;
                }
            }
            team.sync();
        }
    }
}

eplb_status eplb_cuda_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
void eplb_cuda_pack_sort_init(size_t smem_optin);

#endif
