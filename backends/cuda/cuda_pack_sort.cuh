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

/* Min and max of two distinct entries, as selects (no branch). */
static __device__ __forceinline__ uint64_t eplb_cuda_min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static __device__ __forceinline__ uint64_t eplb_cuda_max64(uint64_t a, uint64_t b) { return a < b ? b : a; }

/* The same order by one warp in registers: a bitonic network over 32*KPL
 * entries, entry i = lane*KPL + r in register r; strides below KPL stay in a
 * lane, larger ones pair lane with lane ^ (stride/KPL) through shuffles.
 * Needs n <= 32*KPL. Writes order[t] (the item of visiting position t) for
 * t < n; no shared memory is touched before that, so no sync is needed. */
template <int KPL>
static __device__ void eplb_warp_pack_sort_regs(uint32_t lane, const float *w, uint32_t n,
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
#pragma unroll
    for (uint32_t size = 2; size <= 32u * KPL; size <<= 1) {
#pragma unroll
        for (uint32_t stride = size >> 1; stride > 0; stride >>= 1) {
            if (stride >= (uint32_t)KPL) {
                const uint32_t lanes = stride / KPL;
                const bool lower = (lane & lanes) == 0;
#pragma unroll
                for (int r = 0; r < KPL; r++) {
                    const uint64_t other = __shfl_xor_sync(0xFFFFFFFFu, a[r], (int)lanes);
                    const bool ascending = ((lane * KPL + (uint32_t)r) & size) == 0;
                    a[r] = lower == ascending ? eplb_cuda_min64(a[r], other)
                                              : eplb_cuda_max64(a[r], other);
                }
            } else {
#pragma unroll
                for (int r = 0; r < KPL; r++) {
                    if ((r & stride) != 0)
                        continue;
                    const int r2 = r | (int)stride;
                    const bool ascending = ((lane * KPL + (uint32_t)r) & size) == 0;
                    const uint64_t lo = eplb_cuda_min64(a[r], a[r2]), hi = eplb_cuda_max64(a[r], a[r2]);
                    a[r] = ascending ? lo : hi;
                    a[r2] = ascending ? hi : lo;
                }
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

/* One compare-exchange of a[r] and a[r2] (r < r2) towards ascending when asc. */
static __device__ __forceinline__ void eplb_cuda_exchange(uint64_t &x, uint64_t &y, bool asc)
{
    const bool swap = (x > y) == asc;
    const uint64_t t = x;
    x = swap ? y : x;
    y = swap ? t : y;
}

/* The same network as eplb_warp_pack_sort_regs, with the cross-lane merges in
 * runtime loops: about a tenth of the code, so the sort stops missing the
 * instruction cache (the unrolled network is ~7000 instructions at KPL 16). */
template <int KPL>
static __device__ void eplb_warp_pack_sort_loop(uint32_t lane, const float *w, uint32_t n,
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

eplb_status eplb_cuda_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
void eplb_cuda_pack_sort_init(size_t smem_optin);

#endif
