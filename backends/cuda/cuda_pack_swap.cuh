/* Stage 3 of balanced packing (SPEC 6.3) on the device: up to I swaps between
 * the heaviest and the lightest pack. The pair search is a team-wide min of
 * (change key, sa, sb), which keeps the first-in-row-major tie rule. */
#ifndef EPLB_CUDA_PACK_SWAP_CUH
#define EPLB_CUDA_PACK_SWAP_CUH

#include "common/spec_math.h"
#include "cuda_teams.cuh"

/* Pack p's weights summed in slot order 0..k-1 (the order fixes the bits). */
static __device__ __forceinline__ float eplb_cuda_pack_load(const float *w, const int32_t *content,
                                                            uint32_t p, uint32_t k)
{
    float load = 0.0f;
    const int32_t *slots = content + (size_t)p * k;
    for (uint32_t r = 0; r < k; r++)
        load += w[slots[r]];
    return load;
}

/* Scans this member's share of the k*k pairs in row-major order. */
template <class Index>
static __device__ __forceinline__ void eplb_cuda_swap_scan(const float *w, const int32_t *a,
                                                           const int32_t *b, uint32_t k,
                                                           float diff, Index first, Index step,
                                                           uint32_t *best_key, uint32_t *best_a,
                                                           uint32_t *best_b)
{
    const Index pairs = (Index)k * (Index)k;
    for (Index idx = first; idx < pairs; idx += step) {
        const uint32_t sa = (uint32_t)(idx / k), sb = (uint32_t)(idx - (Index)sa * k);
        const uint32_t key = eplb_cuda_change_key(eplb_swap_change(diff, w[a[sa]], w[b[sb]]));
        if (key < *best_key) {
            *best_key = key;
            *best_a = sa;
            *best_b = sb;
        }
    }
}

/* load[0..m) must hold the slot-order pack loads on entry (loads_ready) or is
 * computed here; on return it holds them for the final content. */
template <class Team>
static __device__ void eplb_team_pack_swap(const Team &team, const float *w, uint32_t m,
                                           uint32_t k, int32_t iterations, float tolerance,
                                           int32_t *content, float *load, bool loads_ready)
{
    const uint32_t me = team.rank(), size = team.size();
    if (!loads_ready)
        for (uint32_t p = me; p < m; p += size)
            load[p] = eplb_cuda_pack_load(w, content, p, k);
    team.sync();
    for (int32_t it = 0; it < iterations; it++) {
        uint32_t hi_key = 0, hi_index = 0xFFFFFFFFu, lo_key = 0xFFFFFFFFu, lo_index = 0xFFFFFFFFu;
        for (uint32_t p = me; p < m; p += size) {
            const uint32_t key = eplb_cuda_load_key(load[p]);
            if (hi_index == 0xFFFFFFFFu || key > hi_key) { hi_key = key; hi_index = p; }
            if (key < lo_key || lo_index == 0xFFFFFFFFu) { lo_key = key; lo_index = p; }
        }
        const uint32_t heavy = eplb_team_argmax(team, hi_key, hi_index);
        const uint32_t light = eplb_team_argmin(team, lo_key, lo_index);
        /* One pack holds both: every change is 2*d*d >= 0 (or NaN), never accepted. */
        if (heavy == light)
            break;
        const float diff = load[light] - load[heavy];
        int32_t *a = content + (size_t)heavy * k, *b = content + (size_t)light * k;
        /* The cpu starts from pair (0,0) and only a strictly smaller change
         * replaces it: a NaN there is never replaced, and is never accepted. */
        const float first = eplb_swap_change(diff, w[a[0]], w[b[0]]);
        if (first != first)
            break;
        uint32_t key = 0xFFFFFFFFu, sa = 0xFFFFFFFFu, sb = 0xFFFFFFFFu;
        if ((uint64_t)k * k <= 0xFFFFFFFFull)
            eplb_cuda_swap_scan<uint32_t>(w, a, b, k, diff, me, size, &key, &sa, &sb);
        else
            eplb_cuda_swap_scan<uint64_t>(w, a, b, k, diff, me, size, &key, &sa, &sb);
        const uint32_t best_key = team.min_u32(key);
        const uint32_t best_a = team.min_u32(key == best_key ? sa : 0xFFFFFFFFu);
        const uint32_t best_b =
            team.min_u32(key == best_key && sa == best_a ? sb : 0xFFFFFFFFu);
        const float best = eplb_swap_change(diff, w[a[best_a]], w[b[best_b]]);
        if (!(best < -tolerance))
            break;
        team.sync(); /* everyone has read a and b */
        if (me == 0) {
            const int32_t t = a[best_a];
            a[best_a] = b[best_b];
            b[best_b] = t;
        }
        team.sync();
        /* Only the two packs changed; their loads are recomputed in slot order. */
        if (me == 0)
            load[heavy] = eplb_cuda_pack_load(w, content, heavy, k);
        if (me == (size > 1 ? 1u : 0u))
            load[light] = eplb_cuda_pack_load(w, content, light, k);
        team.sync();
    }
    team.sync();
}

eplb_status eplb_cuda_pack_swap(eplb_backend *backend, const eplb_pack_job *job);

#endif
