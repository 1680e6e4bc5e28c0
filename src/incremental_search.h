/* What the swap search of docs/spec.md section 13.5 shares between its
 * plain loops (incremental_search.c) and its AVX-512 scans
 * (incremental_avx512.c): the state of a domain's search and the trade's
 * key. Internal to the library. */
#ifndef EPLB_INCREMENTAL_SEARCH_H
#define EPLB_INCREMENTAL_SEARCH_H

#include <stdint.h>
#include <string.h>

#include "incremental.h"

/* x86-64 builds with GCC or Clang also carry an AVX-512 version of the
 * single trades' scan, picked at run time when the machine has it and
 * EPLB_CPU_ISA (the cpu backend's cap on vector code) does not rule it out,
 * so that the tests can run the plain loop on the same machine. */
#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__) && !defined(EPLB_CPU_NO_SIMD)
#define SEARCH_AVX512 1
#include <immintrin.h>
#define TARGET_AVX512 __attribute__((target("avx512f")))
#endif

/* The most slots per GPU the vector scan takes (its per-slot tables of the
 * heaviest GPU live on the stack); GPUs of more slots take the loop. */
#define EPLB_SEARCH_SPG_MAX 64

/* The key of a candidate trade (SPEC 13.5) as one integer that orders as
 * the key does: class 0 (A done) and 1 (A lighter) by cost, then value (the
 * larger new load, or A's new load); class 2 by change (of the sum of
 * squared loads of A and B, always negative), then cost. So the best
 * candidate is the smallest integer, the first in order on ties, and a scan
 * compares one number per pair. Costs lie in -4..4 (four experts at most
 * change GPU), stored plus 8 in four bits. */
#define NO_CANDIDATE UINT64_MAX
#define KEY_CLASS_SHIFT 62

/* A map of float32 onto uint32 that keeps their order (NaN aside): the
 * loads here are never NaN, and value + 0.0f turns -0 into +0 so that the
 * two zeros, equal as floats, stay equal. */
static inline uint32_t float_order(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

/* The bucket of a slot load in the order of the vector scan's table
 * (eplb_search_order_slots): the upper half of its float_order. */
static inline uint32_t load_bucket(float value) { return float_order(value + 0.0f) >> 16; }

static inline uint64_t near_key(int cls, int cost, float value)
{
    return (uint64_t)cls << KEY_CLASS_SHIFT | (uint64_t)(cost + 8) << 32 |
           float_order(value + 0.0f);
}

static inline uint64_t change_key(int cost, float change)
{
    return (uint64_t)2 << KEY_CLASS_SHIFT | (uint64_t)float_order(change) << 4 |
           (uint64_t)(cost + 8);
}

static inline int key_class(uint64_t key) { return (int)(key >> KEY_CLASS_SHIFT); }

static inline int key_cost(uint64_t key)
{
    return key_class(key) < 2 ? (int)(key >> 32 & 15) - 8 : (int)(key & 15) - 8;
}

/* The key of a trade that moves `give` out of A and `take` into it, all
 * float32 in SPEC 13.5's order: new_a = (load_a - give) + take, passed as
 * a_without_give + take; new_b = (load_b - take) + give; gap = load_a -
 * load_b. NO_CANDIDATE when the trade is none. */
static inline uint64_t trade_key(float a_without_give, float load_b, float gap, float give,
                                 float take, float target, int cost)
{
    const float new_b = (load_b - take) + give;
    if (new_b <= target) {
        const float new_a = a_without_give + take;
        if (new_a <= target)
            return near_key(0, cost, new_a > new_b ? new_a : new_b);
        return near_key(1, cost, new_a);
    }
    const float d = give - take;
    const float change = (2.0f * d) * (d - gap);
    return change < 0.0f ? change_key(cost, change) : NO_CANDIDATE;
}

/* The state of one domain's search. */
typedef struct search_state {
    const int64_t *base; /* the previous plan's slots of the domain */
    int64_t *cur;        /* the domain's slots now */
    float *u;            /* their slot loads */
    float *load;         /* the domain's GPU loads */
    int64_t spg, gpus, slots;
    int vector;          /* whether the AVX-512 scan runs */
    int ordered;         /* whether the scratch's order_* tables are kept up to date */
    int32_t *excess;     /* the scratch's excess_table when the vector scan keeps it, else NULL */
    const int32_t *away; /* the rows of excess per GPU that a step's row[] indexes: excess
                          * (by expert) when kept, else the scratch's away_excess */
    float target;
    eplb_incremental_scratch *s;
    /* held - base on the step's heaviest GPU A, by expert: A's column of
     * the table of excess (stride: the domain's GPUs) where the search
     * keeps one, else the scratch's tally of A's slots (stride 1). */
    const int32_t *a_excess;
    int64_t a_stride;
} search_state;

/* held[A][e] - base[A][e] for the step's heaviest GPU A. */
static inline int32_t excess_on_a(const search_state *st, int64_t e)
{
    return st->a_excess[e * st->a_stride];
}

static inline int eplb_search_max0(int v) { return v > 0 ? v : 0; }

/* One expert arriving at (+1) or leaving (-1) a GPU, with the GPU's excess
 * of it before the trade. */
typedef struct excess_change {
    int64_t gpu, expert;
    int delta, before;
} excess_change;

/* The change in the domain's moves when A's slots qa[0..n) and B's slots
 * qb[0..n) trade experts (n = 2; the single trade's cost has a closed form
 * in the caller). Equal experts among the four are merged, so that each
 * (GPU, expert) counts once with its net change. Inline here because both
 * the plain search and the AVX-512 scans weigh double trades. */
static inline int eplb_search_double_cost(const search_state *st, int64_t A, int64_t B,
                                          const int32_t *row, const int64_t qa[2],
                                          const int64_t qb[2])
{
    const eplb_incremental_scratch *s = st->s;
    excess_change entry[8];
    int n = 0;
    for (int i = 0; i < 2; i++) {
        const int64_t a = st->cur[qa[i]], b = st->cur[qb[i]];
        const int32_t away = st->away[(int64_t)row[qa[i] - A * st->spg] * st->gpus + B];
        entry[n++] = (excess_change){A, a, -1, excess_on_a(st, a)};
        entry[n++] = (excess_change){B, a, +1, away};
        entry[n++] = (excess_change){B, b, -1, s->own_excess[qb[i]]};
        entry[n++] = (excess_change){A, b, +1, excess_on_a(st, b)};
    }
    int cost = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0, delta = 0;
        for (int j = 0; j < n; j++)
            if (entry[j].gpu == entry[i].gpu && entry[j].expert == entry[i].expert) {
                seen |= j < i;
                delta += entry[j].delta;
            }
        if (!seen)
            cost += eplb_search_max0(entry[i].before + delta) - eplb_search_max0(entry[i].before);
    }
    return cost;
}

/* Weighs the double trade of A's slots a1, a2 (sum da) against B's b1, b2
 * (sum db) and keeps it in *best and pick when its key is smaller (SPEC 13.5
 * step 3). The class comes first, with cost 0: the cost is worth its work
 * only for a class that can still win. Callers visit the trades in the
 * spec's order, so a tie keeps the earlier one. */
static inline void consider_double(const search_state *st, int64_t A, int64_t B,
                                   const int32_t *row, float a_without, float gap, float da,
                                   float db, int64_t a1, int64_t a2, int64_t b1, int64_t b2,
                                   uint64_t *best, int64_t pick[4])
{
    const float load_b = st->load[B];
    uint64_t key = trade_key(a_without, load_b, gap, da, db, st->target, 0);
    if (key == NO_CANDIDATE || key_class(key) > key_class(*best))
        return;
    /* With the cost's field at its least (cost -8), the key is a bound
     * below the trade's own; no cost can then take the trade below the
     * best. */
    const uint64_t cost_field = key_class(key) < 2 ? (uint64_t)15 << 32 : 15;
    if ((key & ~cost_field) >= *best)
        return;
    const int64_t qa[2] = {a1, a2}, qb[2] = {b1, b2};
    key = trade_key(a_without, load_b, gap, da, db, st->target,
                    eplb_search_double_cost(st, A, B, row, qa, qb));
    if (key < *best) {
        *best = key;
        pick[0] = a1;
        pick[1] = a2;
        pick[2] = b1;
        pick[3] = b2;
    }
}

#if SEARCH_AVX512
/* The most pairs of a GPU's slots the vector double scan takes; GPUs of
 * more slots take the loop. */
#define DOUBLE_PAIRS_MAX 512

/* Sorts the domain's slots by slot load into the scratch's order_* tables,
 * for the single trades' scan. */
void eplb_search_order_slots(search_state *st);

/* Step 2 of SPEC 13.5 (the best single trade of the heaviest GPU A) and
 * step 3 (the best double trade), as the plain loops find them: pick holds
 * the slots, cost_out the change in moves; 0 when there is no candidate. */
int eplb_search_single_avx512(const search_state *st, int64_t A, const int32_t *row,
                              int64_t pick[2], int *cost_out);
int eplb_search_double_avx512(const search_state *st, int64_t A, const int32_t *row,
                              int64_t pick[4], int *cost_out);

/* What a trade changes on GPUs g0..g1 - 1 for the vector scan (each slot's
 * own excess, arrival cost and GPU load), where the search keeps its table
 * of excess. */
void eplb_search_refresh_avx512(const search_state *st, int64_t g0, int64_t g1);

/* The domain's GPU of largest load, ties to the lowest. */
int64_t eplb_search_heaviest_avx512(const search_state *st);

/* The slot loads give (of A) and take (of B) trade places in A's and B's
 * lists of n <= 16 slot loads in ascending order, which stay so. */
void eplb_search_swap_sorted_avx512(float *sorted_a, float *sorted_b, int64_t n, float give,
                                    float take);
#endif

#endif /* EPLB_INCREMENTAL_SEARCH_H */
