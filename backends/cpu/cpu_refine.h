/* The cpu backend's refine search (SPEC 10), shared between cpu_refine.c,
 * which runs it, and cpu_refine_avx512.c, its AVX-512 parts: the per-thread
 * scratch of a row and what the AVX-512 parts offer. */
#ifndef EPLB_CPU_REFINE_H
#define EPLB_CPU_REFINE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_runtime.h"

/* The best trade of one kind (one-for-one or two-for-two) seen so far. B is
 * -1 until a trade with a finite peak is found. */
typedef struct refine_best {
    float peak;
    int32_t b;      /* the partner GPU */
    int32_t a_pos;  /* A's position, or A's pair index for two-for-two */
    int32_t b_pos;  /* B's position, or B's pair index (pair_lo/pair_hi give its slots) */
} refine_best;

/* Per-thread scratch for one row. */
typedef struct refine_scratch {
    int32_t *content; /* [n] the row's slot at GPU a's position r, at a*k + r */
    float *t;         /* [n] the load of the slot at a*k + r */
    int32_t *item_at; /* [n] the expert (phy2mlog) at a*k + r with distinct, else NULL */
    float *load;      /* [m] each GPU's load */
    int32_t *by_load; /* [m] the GPUs by ascending load (ties: ascending index) */
    float *sorted;    /* [m] the loads in by_load's order */
    int32_t *place;   /* [m] each GPU's index in by_load (below AVX-512 only) */
    float *a_pairs;   /* [pairs] A's two-slot sums, pairs in lexicographic order */
    float *b_pairs;   /* [pairs] the same for the GPU B being weighed */
    int32_t *pair_lo; /* [pairs] the lower position of each pair */
    int32_t *pair_hi; /* [pairs] the higher position */
    /* The expanded search (when expanded_fits): every trade of one partner
     * as a pair of lists, what A gives and what B gives, so that one
     * vectorized pass weighs all of a partner's trades. */
    int32_t ones, twos; /* list lengths, each rounded up to a whole number of vectors */
    int32_t m, k;       /* the row's GPUs and slots per GPU */
    int isa;            /* the vector level the machine and EPLB_CPU_ISA allow */
    float *give_a;      /* [ones + twos] A's side of each trade, in trade order */
    float *give_b;      /* [m][ones + twos] each GPU's side, rebuilt when it changes */
    /* Where each entry of the lists comes from, for the AVX-512 building of
     * both sides from a GPU's slot loads (up to six slots a GPU, so that the
     * slot loads and the pair sums each fit one vector): a slot's position,
     * 16 + a pair's index, or for padding 15, a lane past the slots that
     * holds the pad; B's side first, then A's.
     * NULL where the lists are built otherwise. */
    int32_t *list_source; /* [2][ones + twos] */
    /* The compact search (AVX-512, many slots per GPU, no distinct): each
     * GPU's slot loads and pair sums, padded with -inf to whole vectors, so
     * that A's entries, one at a time, meet a partner's whole list. */
    int32_t ks, ps;     /* padded lengths of the slot and pair lists (0: no compact search) */
    float *singles;     /* [m][ks] */
    float *pair_list;   /* [m][ps] */
} refine_scratch;

/* Allocates the scratch of one thread's rows of job's slot packing, for the
 * machine's vector level isa; 0 when memory runs out (then nothing is held). */
int eplb_cpu_refine_scratch_init(refine_scratch *s, const eplb_plan_job *job, int isa);
void eplb_cpu_refine_scratch_free(refine_scratch *s);

/* SPEC 10.3 on row x of job's slot packing: at most `trades` trades, and with
 * stop_at (SPEC 11.5's M0; -inf when there is none) the row also stops once
 * its heaviest GPU is no heavier. Rewrites the row's pack_of and rank_of. */
void eplb_cpu_refine_row(const eplb_plan_job *job, int64_t x, int32_t trades, float stop_at,
                         refine_scratch *s);

/* The most slots a GPU for which eplb_cpu_refine_expand_small_avx512 builds
 * the lists: k slot loads and k(k-1)/2 pair sums each fit one vector. */
#define EPLB_CPU_REFINE_SMALL_K 6

/* The float after x towards +inf (nextafterf(x, INFINITY)) without the
 * library call, which the partner loop makes whenever its best peak drops. */
static inline float eplb_cpu_refine_float_above(float x)
{
    if (!(x < INFINITY))
        return x;
    if (x == 0.0f)
        return 0x1p-149f;
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits = x > 0.0f ? bits + 1 : bits - 1;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* The half-sum bound of the partner loops. Every trade between the
 * heaviest GPU A, of load a_load, and a partner B, of load b_load, has new
 * loads summing to a_load + b_load before rounding, so the larger is at
 * least their half: when that half lies above the float after the best
 * peak so far (above_best), B's rounded peaks do too, B can neither beat
 * the best nor tie it, and no heavier partner can. Both searches visit
 * partners from the lightest up and stop at the first out of reach:
 * cpu_refine.c's above this partner load, cpu_refine_avx512.c's by a bound
 * per partner (partner_bounds) against its running lane minima. Loads are
 * never negative.
 *
 * The half lies above above_best once b_load exceeds 2 * above_best -
 * a_load: the limit widens that by 2^-30 of above_best, which covers the
 * rounding of the doubles and of the float it is rounded up to with room,
 * so that it may leave in reach a partner that is out of reach, never the
 * reverse (weighing such a partner changes nothing, its peaks lying above
 * the best). +inf when the best is. Since each weighed partner's peaks are
 * at least half the two loads, above_best is at least about a_load / 2,
 * and the widening dwarfs the rounding of the difference. */
static inline float eplb_cpu_refine_reach_limit(float a_load, float above_best)
{
    const double limit = 2.0 * (double)above_best * (1.0 + 0x1p-30) - (double)a_load;
    return eplb_cpu_refine_float_above((float)limit);
}

#if EPLB_CPU_X86_DISPATCH
/* The best one-for-one and two-for-two trades of GPU a (SPEC 10.3 step 2)
 * into one and two, which come in empty, without distinct: on the compact
 * lists when s->ps > 0, else on the expanded ones. The chosen kind's trade
 * has a_pos -1 (eplb_cpu_refine_positions_avx512 finds it); the other kind
 * may come back empty (b -1) when it cannot be chosen. */
void eplb_cpu_refine_search_avx512(refine_scratch *s, int32_t a, float a_load, refine_best *one,
                                   refine_best *two);

/* The positions of the chosen trade of the kind two_for_two with partner
 * trade->b, whose peak is trade->peak: the first such trade in trade order,
 * on the lists the search used. */
void eplb_cpu_refine_positions_avx512(const refine_scratch *s, int32_t a, float a_load,
                                      int two_for_two, refine_best *trade);

/* One side of the expanded lists of GPU g, whose k slot loads start at t_g
 * (k <= EPLB_CPU_REFINE_SMALL_K), through s->list_source: A's side (outer)
 * padded with +inf, B's with 0, as cpu_refine.c's expand_side. */
void eplb_cpu_refine_expand_small_avx512(const refine_scratch *s, float *out, const float *t_g,
                                         int outer);

/* One side of the expanded lists (cpu_refine.c's expand_side). */
void eplb_cpu_refine_expand_avx512(const refine_scratch *s, float *out, const float *singles,
                                   const float *pair_list, int32_t k, int32_t pairs, int outer,
                                   float pad);

/* A GPU's compact lists from its k <= 16 slot loads t_g: the loads and the
 * pair sums (cpu_refine.c's compact_lists). */
void eplb_cpu_refine_compact_lists_avx512(const refine_scratch *s, float *singles,
                                          float *pair_list, const float *t_g);

/* Fills s->by_load and s->sorted from s->load (cpu_refine.c's
 * sort_by_load, without place). */
void eplb_cpu_refine_order_avx512(refine_scratch *s);

/* Sets the loads of the traded GPUs a and b to new_a and new_b and moves
 * both to their places in s->by_load and s->sorted (cpu_refine.c's
 * move_to_place, for a then b). */
void eplb_cpu_refine_move_pair_avx512(refine_scratch *s, int32_t a, float new_a, int32_t b,
                                      float new_b);
#endif

#endif /* EPLB_CPU_REFINE_H */
