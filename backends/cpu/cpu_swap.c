/* Stage 3 of balanced packing (SPEC 6.3): up to I swaps between the heaviest
 * and the lightest pack, each the one that lowers the sum of squared loads most. */
#include "common/spec_math.h"
#include "cpu_backend.h"

/* The best trade between the heaviest pack's items wa[k] and the lightest's
 * wb[k]: the first (row-major) pair with the smallest change, as a scalar scan
 * with strictly-less updates from pair (0, 0) finds it. */
static float best_trade_scalar(float diff, const float *wa, const float *wb, int32_t k,
                               int32_t *best_a, int32_t *best_b)
{
    float best = eplb_swap_change(diff, wa[0], wb[0]);
    *best_a = 0;
    *best_b = 0;
    for (int32_t sa = 0; sa < k; sa++)
        for (int32_t sb = 0; sb < k; sb++) {
            const float change = eplb_swap_change(diff, wa[sa], wb[sb]);
            if (change < best) {
                best = change;
                *best_a = sa;
                *best_b = sb;
            }
        }
    return best;
}

#if EPLB_CPU_SSE2
#include <emmintrin.h>

/* The same search four pairs at a time: the smallest change first (IEEE
 * single-precision operations, the same as the scalar ones), then the first
 * pair that equals it. -0 == +0 in both. Only for finite inputs (no NaN can
 * arise), which the caller checks. */
static float best_trade(float diff, const float *wa, const float *wb, int32_t k,
                        int32_t *best_a, int32_t *best_b)
{
    if (k < 4)
        return best_trade_scalar(diff, wa, wb, k, best_a, best_b);
    const __m128 vdiff = _mm_set1_ps(diff), two = _mm_set1_ps(2.0f);
    const int32_t k4 = k & ~3;
    float best = eplb_swap_change(diff, wa[0], wb[0]);
    __m128 vbest = _mm_set1_ps(best);
    for (int32_t sa = 0; sa < k; sa++) {
        const __m128 va = _mm_set1_ps(wa[sa]);
        for (int32_t sb = 0; sb < k4; sb += 4) {
            const __m128 d = _mm_sub_ps(va, _mm_loadu_ps(wb + sb));
            vbest = _mm_min_ps(vbest, _mm_mul_ps(_mm_mul_ps(two, d), _mm_add_ps(vdiff, d)));
        }
        for (int32_t sb = k4; sb < k; sb++) {
            const float change = eplb_swap_change(diff, wa[sa], wb[sb]);
            best = change < best ? change : best;
        }
    }
    float lanes[4];
    _mm_storeu_ps(lanes, vbest);
    for (int i = 0; i < 4; i++)
        best = lanes[i] < best ? lanes[i] : best;
    const __m128 target = _mm_set1_ps(best);
    for (int32_t sa = 0; sa < k; sa++) {
        const __m128 va = _mm_set1_ps(wa[sa]);
        for (int32_t sb = 0; sb < k4; sb += 4) {
            const __m128 d = _mm_sub_ps(va, _mm_loadu_ps(wb + sb));
            const __m128 change = _mm_mul_ps(_mm_mul_ps(two, d), _mm_add_ps(vdiff, d));
            const int hits = _mm_movemask_ps(_mm_cmpeq_ps(change, target));
            if (hits) {
                *best_a = sa;
                *best_b = sb + __builtin_ctz((unsigned)hits);
                return best;
            }
        }
        for (int32_t sb = k4; sb < k; sb++)
            if (eplb_swap_change(diff, wa[sa], wb[sb]) == best) {
                *best_a = sa;
                *best_b = sb;
                return best;
            }
    }
    return best_trade_scalar(diff, wa, wb, k, best_a, best_b); /* unreachable */
}
#else
#define best_trade best_trade_scalar
#endif

float eplb_cpu_max_load(const float *load, int32_t m)
{
    float score = load[0];
    for (int32_t p = 1; p < m; p++)
        score = load[p] > score ? load[p] : score;
    return score;
}

/* One swap of SPEC 6.3 on one candidate whose pack loads are load[m]:
 * returns 1 if two items traded places (the search goes on), 0 if it stops. */
static inline int swap_step(const eplb_pack_job *job, const float *w, int32_t *content,
                            float *load, float *wa, float *wb)
{
    const int32_t m = job->packs, k = job->per_pack;
    /* Heaviest and lightest, lowest index on ties, without data-dependent
     * branches: values ride along so no step waits on a reload. */
    int32_t heavy = 0, light = 0;
    float heavy_load = load[0], light_load = load[0];
    for (int32_t p = 1; p < m; p++) {
        const float v = load[p];
        const int more = v > heavy_load, less = v < light_load;
        heavy = more ? p : heavy;
        heavy_load = more ? v : heavy_load;
        light = less ? p : light;
        light_load = less ? v : light_load;
    }
    const float diff = light_load - heavy_load;
    int32_t *a = content + heavy * k, *b = content + light * k;
    for (int32_t s = 0; s < k; s++) {
        wa[s] = w[a[s]];
        wb[s] = w[b[s]];
    }
    int32_t best_a, best_b;
    /* Loads far below FLT_MAX keep every change finite, so the vector
     * search cannot meet a NaN; otherwise the scalar rule decides. */
    const float best = heavy_load < 1e37f ? best_trade(diff, wa, wb, k, &best_a, &best_b)
                                          : best_trade_scalar(diff, wa, wb, k, &best_a, &best_b);
    if (!(best < -job->tolerance))
        return 0;
    int32_t t = a[best_a]; a[best_a] = b[best_b]; b[best_b] = t;
    /* Only the two packs changed; their loads are recomputed in slot order. */
    load[heavy] = eplb_cpu_pack_load(w, content, heavy, k);
    load[light] = eplb_cpu_pack_load(w, content, light, k);
    return 1;
}

float eplb_cpu_swap_one(const eplb_pack_job *job, int64_t row, int32_t *content, float *load,
                        eplb_cpu_scratch *scratch)
{
    const float *w = (const float *)job->weight + row * job->items;
    for (int32_t it = 0; it < job->iterations; it++)
        if (!swap_step(job, w, content, load, scratch->wa, scratch->wb))
            break;
    return eplb_cpu_max_load(load, job->packs);
}

void eplb_cpu_swap_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                       float *const *loads, eplb_cpu_scratch *scratch)
{
    const int32_t n = job->items;
    const float *w = (const float *)job->weight + row * n;
    int32_t *content[EPLB_CPU_LANES];
    int active[EPLB_CPU_LANES];
    for (int32_t j = 0; j < lanes; j++) {
        content[j] = scratch->content_row + (int64_t)(first + j) * n;
        active[j] = 1;
    }
    /* Iteration by iteration across the lanes, so that independent
     * candidates' searches overlap; a lane that stopped stays stopped. */
    for (int32_t it = 0; it < job->iterations; it++) {
        int any = 0;
        for (int32_t j = 0; j < lanes; j++) {
            if (active[j])
                active[j] = swap_step(job, w, content[j], loads[j], scratch->wa, scratch->wb);
            any |= active[j];
        }
        if (!any)
            break;
    }
    for (int32_t j = 0; j < lanes; j++)
        scratch->score[first + j] = eplb_cpu_max_load(loads[j], job->packs);
}

static void swap_packing(const eplb_pack_job *job, int64_t row, int64_t candidate,
                         eplb_cpu_scratch *scratch)
{
    const int64_t x = row * job->candidates + candidate;
    int32_t *content = (int32_t *)job->content + x * job->items;
    float *load = scratch->lane_load;
    for (int32_t p = 0; p < job->packs; p++)
        load[p] = eplb_cpu_pack_load((const float *)job->weight + row * job->items, content, p,
                                     job->per_pack);
    eplb_cpu_swap_one(job, row, content, load, scratch);
}

eplb_status eplb_cpu_pack_swap(eplb_backend *backend, const eplb_pack_job *job)
{
    if (job->iterations == 0)
        return EPLB_OK;
    return eplb_cpu_for_each_packing(backend, job, swap_packing, "swap");
}
