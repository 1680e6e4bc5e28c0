/* Stage 1 of balanced packing (SPEC 6.1) on the device: keys, then the visiting
 * order by a bitonic sort of (key descending, index ascending) composite keys. */
#ifndef EPLB_CUDA_PACK_SORT_CUH
#define EPLB_CUDA_PACK_SORT_CUH

#include "common/spec_math.h"
#include "cuda_teams.cuh"

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

/* The same entry from the candidate's random prefix (eplb_random_prefix), so
 * the three shared mixing rounds run once per candidate, not once per item. */
static __device__ __forceinline__ uint64_t eplb_cuda_sort_entry_at(const float *w, uint32_t i,
                                                                   int32_t c, uint64_t prefix,
                                                                   float noise)
{
    float key = w[i];
    if (c > 0)
        key = eplb_sort_key(key, noise, eplb_random_unit_at(prefix, (eplb_u64)i));
    return ((uint64_t)~eplb_cuda_ordered_bits(key) << 32) | i;
}

/* Sorts the n items of packing (row, c) into buf[0..npow2) (npow2 >= n, a
 * power of two); item of visiting position t is (uint32_t)buf[t]. */
template <class Team>
static __device__ void eplb_team_pack_sort(const Team &team, const float *w, uint32_t n,
                                           uint32_t npow2, int32_t call, int64_t row, int32_t c,
                                           uint64_t seed, float noise, uint64_t *buf)
{
    const uint64_t prefix = eplb_random_prefix(seed, (eplb_u64)call, (eplb_u64)row, (eplb_u64)c);
    for (uint32_t i = team.rank(); i < npow2; i += team.size())
        buf[i] = i < n ? eplb_cuda_sort_entry_at(w, i, c, prefix, noise) : ~0ull;
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

/* One compare-exchange of x and y (x first) towards ascending when asc. */
static __device__ __forceinline__ void eplb_cuda_exchange(uint64_t &x, uint64_t &y, bool asc)
{
    const bool swap = (x > y) == asc;
    const uint64_t t = x;
    x = swap ? y : x;
    y = swap ? t : y;
}

/* The fused kernels' sort, which beats the shared-memory network on the
 * H200 runs of docs/benchmarks.md (CUDA, "how it got here"). The same order
 * by one warp in registers: a bitonic network over 32*KPL entries, entry
 * i = lane*KPL + r in register r; strides below KPL stay in a lane, larger
 * ones pair lane with lane ^ (stride/KPL) through shuffles. Needs n <= 32*KPL.
 * The cross-lane merges are runtime loops, not unrolled, so that the code
 * stays small enough for the instruction cache. Writes order[t] (the item of
 * visiting position t) for t < n; no shared memory is touched before that,
 * so no sync is needed. */
template <int KPL>
static __device__ void eplb_warp_pack_sort_registers(uint32_t lane, const float *w, uint32_t n,
                                                     int32_t call, int64_t row, int32_t c,
                                                     uint64_t seed, float noise, int32_t *order)
{
    uint64_t a[KPL];
    const uint64_t prefix = eplb_random_prefix(seed, (eplb_u64)call, (eplb_u64)row, (eplb_u64)c);
#pragma unroll
    for (int r = 0; r < KPL; r++) {
        const uint32_t i = lane * KPL + (uint32_t)r;
        a[r] = i < n ? eplb_cuda_sort_entry_at(w, i, c, prefix, noise) : ~0ull;
    }
    /* Sizes up to KPL: inside the lane. */
#pragma unroll
    for (uint32_t size = 2; size <= (uint32_t)KPL; size <<= 1) {
#pragma unroll
        for (uint32_t stride = size >> 1; stride > 0; stride >>= 1) {
#pragma unroll
            for (int r = 0; r < KPL; r++) {
                if ((r & stride) != 0)
                    continue;
                eplb_cuda_exchange(a[r], a[r | (int)stride],
                                   ((lane * KPL + (uint32_t)r) & size) == 0);
            }
        }
    }
    /* Larger sizes: one direction per lane; strides >= KPL across lanes, then inside. */
#pragma unroll 1
    for (uint32_t size = 2u * KPL; size <= 32u * KPL; size <<= 1) {
        const bool asc = ((lane * KPL) & size) == 0;
#pragma unroll 1
        for (uint32_t lanes = size / (2u * KPL); lanes > 0; lanes >>= 1) {
            const bool keep_min = ((lane & lanes) == 0) == asc;
#pragma unroll
            for (int r = 0; r < KPL; r++) {
                const uint64_t other = __shfl_xor_sync(0xFFFFFFFFu, a[r], (int)lanes);
                a[r] = (a[r] < other) == keep_min ? a[r] : other;
            }
        }
#pragma unroll
        for (uint32_t stride = KPL / 2; stride > 0; stride >>= 1) {
#pragma unroll
            for (int r = 0; r < KPL; r++) {
                if ((r & stride) != 0)
                    continue;
                eplb_cuda_exchange(a[r], a[r | (int)stride], asc);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < KPL; r++) {
        const uint32_t t = lane * KPL + (uint32_t)r;
        if (t < n)
            order[t] = (int32_t)(uint32_t)a[r];
    }
}

/* Entries per lane of the register sort of a row padded to npow2 entries:
 * the launcher's choice of the warp sort and the warp's own use it alike. */
static inline __host__ __device__ uint32_t eplb_cuda_sort_entries_per_lane(uint32_t npow2)
{
    return npow2 <= 32 ? 1u : npow2 / 32;
}

/* The register sort of kpl entries per lane, kpl a power of two from KPL to
 * MaxKPL. The tests stay independent, not else-if: the kernels that use it
 * were timed with that code (docs/benchmarks.md), and an else-if chain
 * compiles to a different register allocation. */
template <int KPL, int MaxKPL>
static __device__ __forceinline__ void eplb_warp_sort_kpl(uint32_t kpl, uint32_t lane,
                                                          const float *w, uint32_t n,
                                                          int32_t call, int64_t row, int32_t c,
                                                          uint64_t seed, float noise,
                                                          int32_t *order)
{
    if (kpl == KPL)
        eplb_warp_pack_sort_registers<KPL>(lane, w, n, call, row, c, seed, noise, order);
    if constexpr (2 * KPL <= MaxKPL)
        eplb_warp_sort_kpl<2 * KPL, MaxKPL>(kpl, lane, w, n, call, row, c, seed, noise, order);
}

/* Sorts into order[0..n) with the register network when the padded row fits
 * MaxKPL entries per lane; false when it does not. */
template <int MaxKPL>
static __device__ __forceinline__ bool eplb_warp_try_sort_in_registers(
    uint32_t lane, const float *w, uint32_t n, uint32_t npow2, int32_t call, int64_t row,
    int32_t c, uint64_t seed, float noise, int32_t *order)
{
    const uint32_t kpl = eplb_cuda_sort_entries_per_lane(npow2);
    if (kpl > (uint32_t)MaxKPL)
        return false;
    eplb_warp_sort_kpl<1, MaxKPL>(kpl, lane, w, n, call, row, c, seed, noise, order);
    __syncwarp();
    return true;
}

eplb_status eplb_cuda_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
void eplb_cuda_pack_sort_init(size_t smem_optin);

#endif
