/* The swap search of docs/spec.md section 13.5: inside one domain, the
 * heaviest GPU trades one slot, or two, with another GPU until every GPU of
 * the domain meets the target, preferring trades that move fewer experts.
 *
 * The move cost of a trade needs, for the experts involved, how many more
 * replicas a GPU holds now than in the previous plan ("excess", held - base).
 * Rather than a [GPUs][experts] table, each step tallies what it reads:
 * the heaviest GPU's excess per expert, each slot's excess on its own GPU,
 * and for each expert of the heaviest GPU its excess on every other GPU.
 * That costs one pass over the domain per step, less than the pairs the step
 * weighs. The AVX-512 scans (incremental_avx512.c) read the same tallies,
 * from each expert's slot lists instead of a pass, and for large domains
 * from the slots kept sorted by load. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "incremental.h"

#include "incremental_search.h"

/* What a trade changes only on the two GPUs it touches, kept up to date
 * from step to step: own_excess[q] = held[g][e] - base[g][e] for the expert e
 * of every slot q of GPU g, and g's lightest and heaviest slot loads. */
static void refresh_gpu(const search_state *st, int64_t g)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t q0 = g * st->spg, q1 = q0 + st->spg;
    const int64_t *cur = st->cur, *base = st->base;
    /* The search's table of excess has it; else a tally of g's slots. */
    const int32_t *excess = st->excess ? st->excess + g : s->tally2;
    const int64_t stride = st->excess ? st->gpus : 1;
    for (int64_t q = q0; q < q1 && !st->excess; q++) {
        s->tally2[cur[q]]++;
        s->tally2[base[q]]--;
    }
    for (int64_t q = q0; q < q1; q++) {
        s->own_excess[q] = excess[cur[q] * stride];
        s->arrival_cost[q] = 1 - (s->own_excess[q] > 0);
        if (st->ordered)
            s->order_arrival[s->order_pos[q]] = s->arrival_cost[q];
    }
    for (int64_t q = q0; q < q1 && !st->excess; q++)
        s->tally2[cur[q]] = s->tally2[base[q]] = 0;
    if (st->vector)
        return; /* the bounds serve the plain loop's skips only */
    float low = st->u[q0], high = st->u[q0];
    for (int64_t q = q0; q < q1; q++) {
        low = st->u[q] < low ? st->u[q] : low;
        high = st->u[q] > high ? st->u[q] : high;
    }
    s->gpu_bounds[g].lowest = low;
    s->gpu_bounds[g].highest = high;
}

/* What both tallies below start with: s->tally[e] = held[A][e] -
 * base[A][e] for A's experts where the search keeps no table of excess
 * (the table's column of A has them), and row[i] = the row of st->away of the
 * expert e of A's slot i: e itself where the search keeps its table of
 * excess, else the row of away_excess of the first of A's slots holding e
 * (row_of[e]). from_lists: fill each new row of away_excess from e's lists
 * of slots (now and in the previous plan), away_excess[i][B] = held[B][e] -
 * base[B][e]. */
static void tally_heaviest(const search_state *st, int64_t A, int32_t *row, int from_lists)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, gd = st->gpus;
    for (int64_t q = A * spg; q < (A + 1) * spg && !st->excess; q++) {
        s->tally[st->cur[q]]++;
        s->tally[st->base[q]]--;
    }
    for (int64_t i = 0; i < spg; i++) {
        const int64_t e = st->cur[A * spg + i];
        if (st->excess) {
            row[i] = (int32_t)e; /* the kept table's own row */
            continue;
        }
        if (s->row_of[e] < 0) {
            s->row_of[e] = (int32_t)i;
            if (from_lists) {
                int32_t *away = s->away_excess + i * gd;
                memset(away, 0, (size_t)gd * sizeof *away);
                for (int32_t q = s->cur_head[e]; q >= 0; q = s->cur_next[q])
                    away[s->gpu_of[q]]++;
                for (int32_t q = s->base_head[e]; q >= 0; q = s->base_next[q])
                    away[s->gpu_of[q]]--;
            }
        }
        row[i] = s->row_of[e];
    }
}

/* Tallies what a step needs of the heaviest GPU A, in one pass over the
 * domain: s->tally[e] = held[A][e] - base[A][e]; away_excess[i][B] =
 * held[B][e] - base[B][e] for the expert e of A's slot i (rows shared by
 * equal experts through row_of); each slot's arrival cost at A and each
 * GPU's cheapest. */
static void tally_excess(const search_state *st, int64_t A, int32_t *row)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, gd = st->gpus;
    const int64_t *cur = st->cur, *base = st->base;
    tally_heaviest(st, A, row, 0);
    memset(s->away_excess, 0, (size_t)(spg * gd) * sizeof *s->away_excess);
    for (int64_t b = 0; b < gd; b++) {
        int32_t cheapest = 2;
        for (int64_t q = b * spg; q < (b + 1) * spg; q++) {
            int32_t r = s->row_of[cur[q]];
            if (r >= 0)
                s->away_excess[r * gd + b]++;
            r = s->row_of[base[q]];
            if (r >= 0)
                s->away_excess[r * gd + b]--;
            /* A single trade's cost for the expert of q leaving its GPU and
             * arriving at A. */
            const int32_t arrival = (excess_on_a(st, cur[q]) >= 0) - (s->own_excess[q] > 0);
            s->arrival_cost[q] = arrival;
            cheapest = arrival < cheapest ? arrival : cheapest;
        }
        s->gpu_bounds[b].cheapest = cheapest;
    }
}

/* tally_excess for the vector scan, from each expert's slots (its lists in
 * the domain now and in the previous plan) instead of a pass over the
 * domain: away_excess row by row, and arrival_cost, which refresh_gpu keeps
 * at its value for experts A holds no fewer times than before (1 - (own
 * excess > 0)), lowered by one on the slots of the experts A holds fewer
 * times than before (tally2 marks them; clear_lists raises them back). */
static void tally_lists(const search_state *st, int64_t A, int32_t *row)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, *base = st->base;
    tally_heaviest(st, A, row, 1);
    for (int64_t q = A * spg; q < (A + 1) * spg; q++) {
        const int64_t e = base[q];
        if (excess_on_a(st, e) < 0 && !s->tally2[e]) {
            s->tally2[e] = 1;
            for (int32_t r = s->cur_head[e]; r >= 0; r = s->cur_next[r]) {
                s->arrival_cost[r]--;
                if (st->ordered)
                    s->order_arrival[s->order_pos[r]]--;
            }
        }
    }
}

static void clear_lists(const search_state *st, int64_t A)
{
    eplb_incremental_scratch *s = st->s;
    for (int64_t q = A * st->spg; q < (A + 1) * st->spg; q++) {
        const int64_t e = st->base[q];
        if (s->tally2[e]) {
            s->tally2[e] = 0;
            for (int32_t r = s->cur_head[e]; r >= 0; r = s->cur_next[r]) {
                s->arrival_cost[r]++;
                if (st->ordered)
                    s->order_arrival[s->order_pos[r]]++;
            }
        }
    }
}

static void clear_excess(const search_state *st, int64_t A)
{
    if (st->vector)
        clear_lists(st, A);
    eplb_incremental_scratch *s = st->s;
    for (int64_t q = A * st->spg; q < (A + 1) * st->spg && !st->excess; q++) {
        s->tally[st->cur[q]] = s->tally[st->base[q]] = 0;
        s->row_of[st->cur[q]] = -1;
    }
}

/* Whether some slot of GPU B might trade with A's slot of load ua for a key
 * below best, judged from B's bounds alone: the new loads move monotonically
 * with the slot load taken (float32 rounding keeps the order), so the
 * bounds bound them. A GPU that cannot beat the best is skipped whole. */
static inline int might_beat(const eplb_gpu_bounds *b, uint64_t best, float a_without,
                             float load_b, float ua, int cost_a, float target)
{
    if (!(ua > b->lowest))
        return 0; /* no slot of B is lighter than ua */
    const int best_class = key_class(best);
    if (best_class == 2 || best == NO_CANDIDATE)
        return 1;
    /* Classes 0 and 1 need new_b <= T for some slot: the heaviest gives the
     * smallest new_b. */
    if ((load_b - b->highest) + ua > target)
        return 0;
    /* The lightest slot gives the smallest new_a and the cheapest arrival
     * the smallest cost. */
    const float least_new_a = a_without + b->lowest;
    const int least_cost = cost_a + b->cheapest, best_cost = key_cost(best);
    if (least_new_a <= target && best_class == 1)
        return 1; /* B may have a pair of class 0 */
    if (least_new_a > target && best_class == 0)
        return 0; /* B has no pair of class 0 */
    if (least_cost != best_cost)
        return least_cost < best_cost;
    /* Equal cost: class 0 orders by max(new_a, new_b) >= new_a, class 1 by
     * new_a; a key equal to the best loses, as the later pair. */
    return near_key(best_class, best_cost, least_new_a) < best;
}

/* Step 2 of SPEC 13.5: the best single trade of A's slots with the other
 * GPUs' slots. Returns 0 when there is no candidate. */
static int best_single(const search_state *st, int64_t A, const int32_t *row, int64_t pick[2],
                       int *cost_out)
{
    const eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, gd = st->gpus;
    const float *u = st->u, *load = st->load;
    const int32_t *arrival = s->arrival_cost;
    const float target = st->target;
    uint64_t best = NO_CANDIDATE;
    for (int64_t i = 0; i < spg; i++) {
        const int64_t sa = A * spg + i;
        const float ua = u[sa], a_without = load[A] - ua;
        const int leave_a = excess_on_a(st, st->cur[sa]) > 0;
        const int32_t *away = st->away + (int64_t)row[i] * gd;
        /* Slots in ascending order: GPU by GPU, skipping A. */
        for (int64_t B = 0; B < gd; B++) {
            if (B == A)
                continue;
            const float load_b = load[B], gap = load[A] - load_b;
            const int cost_a = (away[B] >= 0) - leave_a;
            if (!might_beat(&s->gpu_bounds[B], best, a_without, load_b, ua, cost_a, target))
                continue;
            for (int64_t sb = B * spg; sb < (B + 1) * spg; sb++) {
                const float ub = u[sb];
                const uint64_t key = ua > ub ? trade_key(a_without, load_b, gap, ua, ub,
                                                         st->target, cost_a + arrival[sb])
                                             : NO_CANDIDATE;
                if (key < best) {
                    best = key;
                    pick[0] = sa;
                    pick[1] = sb;
                }
            }
        }
    }
    *cost_out = key_cost(best);
    return best != NO_CANDIDATE;
}


/* Step 2 of SPEC 13.5 by the vector scan where it runs, else the loop. */
static int single(const search_state *st, int64_t A, const int32_t *row, int64_t pick[2],
                  int *cost_out)
{
#if SEARCH_AVX512
    if (st->vector)
        return eplb_search_single_avx512(st, A, row, pick, cost_out);
#endif
    return best_single(st, A, row, pick, cost_out);
}

/* Step 3 of SPEC 13.5: the best double trade, pick = sa1, sa2, sb1, sb2. */
static int best_double(const search_state *st, int64_t A, const int32_t *row, int64_t pick[4],
                       int *cost_out)
{
    const int64_t spg = st->spg;
    const float *u = st->u, *load = st->load;
    uint64_t best = NO_CANDIDATE;
    for (int64_t B = 0; B < st->gpus; B++) {
        if (B == A)
            continue;
        const float gap = load[A] - load[B];
        for (int64_t a1 = A * spg; a1 < (A + 1) * spg; a1++)
            for (int64_t a2 = a1 + 1; a2 < (A + 1) * spg; a2++) {
                const float da = u[a1] + u[a2], a_without = load[A] - da;
                for (int64_t b1 = B * spg; b1 < (B + 1) * spg; b1++)
                    for (int64_t b2 = b1 + 1; b2 < (B + 1) * spg; b2++) {
                        const float db = u[b1] + u[b2];
                        if (da > db)
                            consider_double(st, A, B, row, a_without, gap, da, db, a1, a2, b1, b2,
                                            &best, pick);
                    }
            }
    }
    *cost_out = key_cost(best);
    return best != NO_CANDIDATE;
}


/* Step 3 of SPEC 13.5 by the vector scan where it runs, else the loop. */
static int pair_double(const search_state *st, int64_t A, const int32_t *row, int64_t pick[4],
                       int *cost_out)
{
#if SEARCH_AVX512
    if (st->vector && st->spg * (st->spg - 1) / 2 <= DOUBLE_PAIRS_MAX)
        return eplb_search_double_avx512(st, A, row, pick, cost_out);
#endif
    return best_double(st, A, row, pick, cost_out);
}

/* In the list of expert e's slots, slot from gives way to slot to (whose
 * own link the caller sets). */
static void relink(int32_t *head, int32_t *next, int64_t e, int64_t from, int64_t to)
{
    int32_t *link = &head[e];
    while (*link != from)
        link = &next[*link];
    *link = (int32_t)to;
}

static void trade(search_state *st, int64_t qa, int64_t qb)
{
    const int64_t e = st->cur[qa];
    if (st->excess) {
        const int64_t f = st->cur[qb], gd = st->gpus;
        const int32_t *gpu_of = st->s->gpu_of;
        st->excess[e * gd + gpu_of[qa]]--;
        st->excess[e * gd + gpu_of[qb]]++;
        st->excess[f * gd + gpu_of[qb]]--;
        st->excess[f * gd + gpu_of[qa]]++;
    }
    if (st->vector && e != st->cur[qb]) {
        int32_t *head = st->s->cur_head, *next = st->s->cur_next;
        const int32_t after_a = next[qa], after_b = next[qb];
        relink(head, next, e, qa, qb);
        relink(head, next, st->cur[qb], qb, qa);
        next[qb] = after_a;
        next[qa] = after_b;
    }
    if (st->ordered) {
        /* The two slots trade their places in the order by load too. */
        eplb_incremental_scratch *s = st->s;
        const int32_t pa = s->order_pos[qa], pb = s->order_pos[qb];
        s->order_pos[qa] = pb;
        s->order_pos[qb] = pa;
        s->order_slot[pa] = (int32_t)qb;
        s->order_slot[pb] = (int32_t)qa;
        s->order_gpu[pa] = s->gpu_of[qb];
        s->order_gpu[pb] = s->gpu_of[qa];
    }
    st->cur[qa] = st->cur[qb];
    st->cur[qb] = e;
    const float v = st->u[qa];
    st->u[qa] = st->u[qb];
    st->u[qb] = v;
}

/* The load of each slot's GPU, for the vector scan. */
static void spread_load(const search_state *st, int64_t b)
{
    for (int64_t q = b * st->spg; q < (b + 1) * st->spg; q++) {
        st->s->slot_gpu_load[q] = st->load[b];
        if (st->ordered)
            st->s->order_load[st->s->order_pos[q]] = st->load[b];
    }
}

/* The fewest slots per GPU for which the vector refresh pays: its gathers
 * and scatters cost the same for fewer slots, which the loops do cheaper. */
#define REFRESH_VECTOR_SPG 8

/* spread_load and refresh_gpu for GPUs g0..g1 - 1: 16 slots at a time
 * where the vector search keeps its table of excess and GPUs have enough
 * slots, else GPU by GPU. */
static void refresh_gpus(const search_state *st, int64_t g0, int64_t g1)
{
#if SEARCH_AVX512
    if (st->excess && st->spg >= REFRESH_VECTOR_SPG) {
        eplb_search_refresh_avx512(st, g0, g1);
        return;
    }
#endif
    for (int64_t b = g0; b < g1; b++) {
        spread_load(st, b);
        refresh_gpu(st, b);
    }
}

static int64_t heaviest_gpu(const search_state *st)
{
#if SEARCH_AVX512
    if (st->vector)
        return eplb_search_heaviest_avx512(st);
#endif
    int64_t A = 0;
    for (int64_t b = 1; b < st->gpus; b++)
        if (st->load[b] > st->load[A])
            A = b;
    return A;
}

/* In a GPU's slot loads sorted ascending, one value out gives way to
 * another (in), the list kept sorted. Equal values are the same float, but
 * for the two zeros, which the sum of SPEC 13.2 cannot tell apart. */
static void replace_sorted(float *sorted, int64_t n, float out, float in)
{
    int64_t j = 0;
    while (j < n - 1 && sorted[j] != out)
        j++;
    if (in >= out) {
        for (; j + 1 < n && sorted[j + 1] < in; j++)
            sorted[j] = sorted[j + 1];
    } else {
        for (; j > 0 && sorted[j - 1] > in; j--)
            sorted[j] = sorted[j - 1];
    }
    sorted[j] = in;
}

/* A trade of the slot loads give (A's) and take (B's) in A's and B's
 * sorted lists, so that their GPU loads need no sort. */
static void swap_sorted(float *sorted_a, float *sorted_b, int64_t n, float give, float take,
                        int vector)
{
#if SEARCH_AVX512
    if (vector && n <= 16) {
        eplb_search_swap_sorted_avx512(sorted_a, sorted_b, n, give, take);
        return;
    }
#endif
    (void)vector;
    replace_sorted(sorted_a, n, give, take);
    replace_sorted(sorted_b, n, take, give);
}

/* SPEC 13.2's GPU load from the slot loads already in ascending order. */
static float sum_sorted(const float *sorted, int64_t n)
{
    float load = 0.0f;
    for (int64_t i = 0; i < n; i++)
        load += sorted[i];
    return load;
}

/* The steps of SPEC 13.5 from the state set up by eplb_domain_search, the
 * first step's check of A already passed; *moved: the domain's moves, kept
 * up to date. */
static int search_steps(search_state *st, int64_t *moved, int64_t limit)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg;
    const float target = st->target;
    int32_t *row = s->away_row;
    for (int64_t step = 0; step < st->slots; step++) {
        const int64_t A = heaviest_gpu(st);
        if (st->load[A] <= target)
            return 1;
        if (*moved > limit)
            return 0;
        st->a_excess = st->excess ? st->excess + A : s->tally;
        st->a_stride = st->excess ? st->gpus : 1;
        if (st->vector)
            tally_lists(st, A, row);
        else
            tally_excess(st, A, row);
        int64_t pick[4];
        int cost = 0;
        int64_t B;
        float *sorted_a = s->gpu_sorted + A * spg, *sorted_b;
        if (single(st, A, row, pick, &cost)) {
            B = pick[1] / spg;
            sorted_b = s->gpu_sorted + B * spg;
            clear_excess(st, A);
            swap_sorted(sorted_a, sorted_b, spg, st->u[pick[0]], st->u[pick[1]], st->vector);
            trade(st, pick[0], pick[1]);
        } else if (pair_double(st, A, row, pick, &cost)) {
            B = pick[2] / spg;
            sorted_b = s->gpu_sorted + B * spg;
            clear_excess(st, A);
            swap_sorted(sorted_a, sorted_b, spg, st->u[pick[0]], st->u[pick[2]], st->vector);
            swap_sorted(sorted_a, sorted_b, spg, st->u[pick[1]], st->u[pick[3]], st->vector);
            trade(st, pick[0], pick[2]);
            trade(st, pick[1], pick[3]);
        } else {
            clear_excess(st, A);
            return 0;
        }
        *moved += cost;
        st->load[A] = sum_sorted(sorted_a, spg);
        st->load[B] = sum_sorted(sorted_b, spg);
        refresh_gpus(st, A, A + 1);
        refresh_gpus(st, B, B + 1);
    }
    return st->load[heaviest_gpu(st)] <= target;
}

/* The fewest slots of a domain whose vector scan sorts them by load. */
#define ORDER_SLOTS_MIN 64

/* Each expert's slots in the domain, x of them in ascending order (the
 * order does not matter: the lists are counted). */
static void list_slots(const int64_t *x, int64_t n, int32_t *head, int32_t *next)
{
    for (int64_t q = n - 1; q >= 0; q--) {
        next[q] = head[x[q]];
        head[x[q]] = (int32_t)q;
    }
}

int eplb_domain_search(const int64_t *prev, int64_t *x, float *u, int64_t d, float target,
                       int64_t start_moves, int64_t limit, const eplb_layer_geometry *g,
                       eplb_incremental_scratch *s, int64_t *moves)
{
    const int64_t dn = g->domain_slots, spg = g->gpu_slots, first = d * dn;
    search_state st = {prev + first, x + first, u + first, s->gpu_load, spg, g->domain_gpus, dn,
                       s->vector, 0, NULL, s->away_excess, target, s, s->tally, 1};
    /* Each GPU's slot loads stay sorted in gpu_sorted through the trades. */
    eplb_gpu_loads(st.u, st.gpus, spg, s->gpu_sorted, st.load, s);
    int64_t moved = start_moves;
    *moves = moved;
    /* The first step's check, before the tables that only the trades need. */
    if (st.load[heaviest_gpu(&st)] <= target)
        return 1;
    if (st.vector) {
        list_slots(st.cur, dn, s->cur_head, s->cur_next);
        st.excess = s->excess_table;
        st.away = st.excess ? st.excess : s->away_excess;
        /* The previous plan's lists fill rows of away_excess, which the
         * table of excess makes copies of. */
        if (!st.excess)
            list_slots(st.base, dn, s->base_head, s->base_next);
        for (int64_t q = 0; st.excess && q < dn; q++) {
            st.excess[st.cur[q] * st.gpus + s->gpu_of[q]]++;
            st.excess[st.base[q] * st.gpus + s->gpu_of[q]]--;
        }
    }
    refresh_gpus(&st, 0, st.gpus);
    if (st.vector) {
#if SEARCH_AVX512
        /* Few slots are cheaper to weigh all than to keep sorted. */
        if (dn >= ORDER_SLOTS_MIN)
            eplb_search_order_slots(&st);
#endif
    }
    const int met = search_steps(&st, &moved, limit);
    *moves = moved;
    for (int64_t q = 0; st.vector && q < dn; q++)
        s->cur_head[st.cur[q]] = -1;
    for (int64_t q = 0; st.vector && !st.excess && q < dn; q++)
        s->base_head[st.base[q]] = -1;
    for (int64_t q = 0; st.excess && q < dn; q++)
        st.excess[st.cur[q] * st.gpus + s->gpu_of[q]] =
            st.excess[st.base[q] * st.gpus + s->gpu_of[q]] = 0;
    return met;
}
