/* The anchored start of the incremental rebalance (docs/spec.md section
 * 13.6): each domain refilled with the relabelled fresh plan's experts for
 * it, keeping the previous plan's where it can, the rest placed heaviest
 * first on the least loaded GPU with a free slot. */
#include <math.h>
#include <stdlib.h>

#include "incremental_search.h"

/* An expert of the anchored start's rest as one integer that orders as
 * step 2 places them: decreasing slot load (the two zeros equal), then
 * increasing expert. */
static inline uint64_t rest_key(float load, int64_t expert)
{
    return (uint64_t)~float_order(load + 0.0f) << 32 | (uint64_t)expert;
}

static int compare_key(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The keys in ascending order: an insertion sort for the few a domain's
 * rest usually holds. */
static void sort_keys(uint64_t *key, int64_t n)
{
    if (n > 48) {
        qsort(key, (size_t)n, sizeof *key, compare_key);
        return;
    }
    for (int64_t i = 1; i < n; i++) {
        const uint64_t v = key[i];
        int64_t j = i;
        for (; j > 0 && key[j - 1] > v; j--)
            key[j] = key[j - 1];
        key[j] = v;
    }
}

/* Where step 2 stands in one domain: the free slots of the domain in
 * ascending order (so GPU by GPU), GPU b's still free ones at places
 * next[b] .. end[b] - 1 of that list, and each GPU's running load. */
typedef struct free_slots {
    const int32_t *slot;
    const int32_t *end;
    int64_t *next;
    float *load;
} free_slots;

#if SEARCH_AVX512
/* Step 2's GPU for each expert of the rest, for 16 GPUs or fewer: the
 * least running load among the GPUs with a free slot (ties: the lowest),
 * by a vector minimum over the loads held in a register. */
TARGET_AVX512 static void place_rest_avx512(const float *slot_load, const uint64_t *rest,
                                            int64_t n, int64_t gd, const free_slots *f,
                                            int64_t *start)
{
    __mmask16 open = 0;
    for (int64_t b = 0; b < gd; b++)
        open |= (__mmask16)((f->next[b] < f->end[b]) << b);
    __m512 held = _mm512_maskz_loadu_ps((__mmask16)((1u << gd) - 1), f->load);
    for (int64_t i = 0; i < n; i++) {
        const float least = _mm512_mask_reduce_min_ps(open, held);
        const int b = __builtin_ctz(_mm512_mask_cmp_ps_mask(open, held, _mm512_set1_ps(least),
                                                            _CMP_EQ_OQ));
        const int64_t e = (int64_t)(uint32_t)rest[i];
        start[f->slot[f->next[b]++]] = e;
        f->load[b] += slot_load[e];
        held = _mm512_mask_mov_ps(held, (__mmask16)(1u << b), _mm512_set1_ps(f->load[b]));
        open &= (__mmask16) ~((uint32_t)(f->next[b] == f->end[b]) << b);
    }
}

/* The most GPUs of a domain that place_rest_wide_avx512 takes. */
#define PLACE_WIDE_GPUS_MAX 256

/* The same for up to PLACE_WIDE_GPUS_MAX GPUs, 16 running loads at a time
 * from memory: the least over the GPUs with a free slot, then the first
 * GPU that has it. */
TARGET_AVX512 static void place_rest_wide_avx512(const float *slot_load, const uint64_t *rest,
                                                 int64_t n, int64_t gd, const free_slots *f,
                                                 int64_t *start)
{
    const int64_t chunks = (gd + 15) / 16;
    __mmask16 open[PLACE_WIDE_GPUS_MAX / 16] = {0};
    for (int64_t b = 0; b < gd; b++)
        open[b / 16] |= (__mmask16)((f->next[b] < f->end[b]) << (b % 16));
    for (int64_t i = 0; i < n; i++) {
        __m512 least = _mm512_set1_ps(INFINITY);
        for (int64_t c = 0; c < chunks; c++)
            least = _mm512_mask_min_ps(least, open[c], least,
                                       _mm512_maskz_loadu_ps(open[c], f->load + 16 * c));
        const __m512 lowest = _mm512_set1_ps(_mm512_reduce_min_ps(least));
        int64_t b = 0;
        for (int64_t c = 0; c < chunks; c++) {
            const __mmask16 hits = _mm512_mask_cmp_ps_mask(
                open[c], _mm512_maskz_loadu_ps(open[c], f->load + 16 * c), lowest, _CMP_EQ_OQ);
            if (hits) {
                b = 16 * c + __builtin_ctz(hits);
                break;
            }
        }
        const int64_t e = (int64_t)(uint32_t)rest[i];
        start[f->slot[f->next[b]++]] = e;
        f->load[b] += slot_load[e];
        open[b / 16] &= (__mmask16) ~((uint32_t)(f->next[b] == f->end[b]) << (b % 16));
    }
}
#endif

/* Step 2 in plain loops: each expert of the rest on the first GPU of least
 * running load among those with a free slot. */
static void place_rest(const float *slot_load, const uint64_t *rest, int64_t n, int64_t gd,
                       const free_slots *f, int64_t *start)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t best = -1;
        for (int64_t b = 0; b < gd; b++)
            if (f->next[b] < f->end[b] && (best < 0 || f->load[b] < f->load[best]))
                best = b;
        const int64_t e = (int64_t)(uint32_t)rest[i];
        start[f->slot[f->next[best]++]] = e;
        f->load[best] += slot_load[e];
    }
}

/* The anchored start of one domain d (SPEC 13.6): rel's experts for the
 * domain, each slot keeping its previous expert where rel's domain has it,
 * the rest heaviest first on the least loaded GPU with a free slot.
 * slot_load: each expert's slot load with rel's counts. Returns the
 * domain's moves (SPEC 13.3): the slots of the rest. An expert of the rest
 * is one that rel's domain still wanted after every slot of prev holding it
 * had kept it, so no slot of its GPU held it in prev without keeping it:
 * each slot of the rest is one move, and a kept slot none. Whether a slot
 * keeps its expert is as likely as not, so step 1 and the listing of the
 * rest do not branch on it: the test's value feeds the counts, a mask and
 * the lengths of the lists. */
static int64_t anchor_domain(const float *slot_load, const int64_t *prev, const int64_t *rel,
                             int64_t d, const eplb_layer_geometry *g, eplb_incremental_scratch *s,
                             int64_t *start)
{
    const int64_t rn = g->domain_slots, gd = g->domain_gpus, spg = g->gpu_slots;
    const int64_t first = d * rn;
    int32_t *wanted = s->tally, *free_slot = s->anchor_free, *free_end = s->anchor_free_end;
    float *kept_load = s->slot_load;
    for (int64_t q = first; q < first + rn; q++)
        wanted[rel[q]]++;
    /* Step 1, with the kept slots' loads (+inf marks a free slot) and the
     * free slots listed. */
    int64_t open = 0;
    for (int64_t b = 0; b < gd; b++) {
        for (int64_t q = first + b * spg; q < first + (b + 1) * spg; q++) {
            const int64_t e = prev[q];
            const int32_t keep = wanted[e] > 0;
            wanted[e] -= keep;
            start[q] = e | ((int64_t)keep - 1); /* e where kept, else -1 */
            const float u = slot_load[e];
            kept_load[q - first] = keep ? u : INFINITY;
            free_slot[open] = (int32_t)q;
            open += 1 - keep;
        }
        free_end[b] = (int32_t)open;
    }
    int64_t n = 0;
    for (int64_t q = first; q < first + rn; q++) {
        const int64_t e = rel[q];
        const int32_t take = wanted[e] > 0;
        wanted[e] -= take;
        s->rest[n] = rest_key(slot_load[e], e);
        n += take;
    }
    free_slots f = {free_slot, free_end, s->cursor, s->gpu_load};
    eplb_gpu_loads(kept_load, gd, spg, NULL, f.load, s);
    for (int64_t b = 0; b < gd; b++)
        f.next[b] = b ? free_end[b - 1] : 0;
    /* Step 2: heaviest first, ties to the lowest expert. */
    sort_keys(s->rest, n);
#if SEARCH_AVX512
    if (s->vector && gd <= 16) {
        place_rest_avx512(slot_load, s->rest, n, gd, &f, start);
        return n;
    }
    if (s->vector && gd <= PLACE_WIDE_GPUS_MAX) {
        place_rest_wide_avx512(slot_load, s->rest, n, gd, &f, start);
        return n;
    }
#endif
    place_rest(slot_load, s->rest, n, gd, &f, start);
    return n;
}

void eplb_anchored_start(const float *load, const int64_t *prev, const int64_t *rel,
                         const eplb_layer_geometry *g, eplb_incremental_scratch *s,
                         int64_t *start, int64_t *moves)
{
    for (int64_t d = 0; d < g->domains; d++)
        moves[d] = anchor_domain(load, prev, rel, d, g, s, start);
}
