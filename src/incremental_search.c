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
 * weighs. */
#include <string.h>

#include "incremental.h"

/* The key of a candidate trade (SPEC 13.5): class 0 (A done) and 1 (A
 * lighter) order by cost, then value (the larger new load, or A's new load);
 * class 2 by change (of the sum of squared loads), then cost. */
typedef struct trade_key {
    int cls;
    int cost;
    float value; /* value for classes 0 and 1, change for class 2 */
} trade_key;

static int key_less(const trade_key *x, const trade_key *y)
{
    if (x->cls != y->cls)
        return x->cls < y->cls;
    if (x->cls < 2) {
        if (x->cost != y->cost)
            return x->cost < y->cost;
        return x->value < y->value;
    }
    if (x->value != y->value)
        return x->value < y->value;
    return x->cost < y->cost;
}

/* The class and value of a trade that moves `give` out of A and `take` into
 * it (SPEC 13.5, all float32 in this order); 0 when it is no candidate. */
static int classify(float load_a, float load_b, float give, float take, float target,
                    trade_key *key)
{
    const float new_a = (load_a - give) + take;
    const float new_b = (load_b - take) + give;
    if (new_b <= target) {
        key->cls = new_a <= target ? 0 : 1;
        key->value = key->cls == 0 ? (new_a > new_b ? new_a : new_b) : new_a;
        return 1;
    }
    const float d = give - take;
    const float change = (2.0f * d) * (d - (load_a - load_b));
    if (!(change < 0.0f))
        return 0;
    key->cls = 2;
    key->value = change;
    return 1;
}

/* The state of one domain's search. */
typedef struct search_state {
    const int64_t *base; /* the previous plan's slots of the domain */
    int64_t *cur;        /* the domain's slots now */
    float *u;            /* their slot loads */
    float *load;         /* the domain's GPU loads */
    int64_t spg, gpus, slots;
    float target;
    eplb_incremental_scratch *s;
} search_state;

/* Tallies, for the heaviest GPU A, the excess tables described at the top:
 * s->tally[e] = held[A][e] - base[A][e]; own_excess[q] for every slot q of
 * the domain; away_excess[i][B] = held[B][e] - base[B][e] for the expert e of
 * A's slot i (rows shared by equal experts through row_of). */
static void tally_excess(const search_state *st, int64_t A, int32_t *row)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, gd = st->gpus;
    const int64_t *cur = st->cur, *base = st->base;
    for (int64_t q = A * spg; q < (A + 1) * spg; q++) {
        s->tally[cur[q]]++;
        s->tally[base[q]]--;
    }
    for (int64_t i = 0; i < spg; i++) {
        const int64_t e = cur[A * spg + i];
        if (s->row_of[e] < 0)
            s->row_of[e] = (int32_t)i;
        row[i] = s->row_of[e];
    }
    memset(s->away_excess, 0, (size_t)(spg * gd) * sizeof *s->away_excess);
    for (int64_t q = 0; q < st->slots; q++) {
        const int64_t b = q / spg;
        int32_t r = s->row_of[cur[q]];
        if (r >= 0)
            s->away_excess[r * gd + b]++;
        r = s->row_of[base[q]];
        if (r >= 0)
            s->away_excess[r * gd + b]--;
    }
    for (int64_t b = 0; b < gd; b++) {
        const int64_t q0 = b * spg;
        for (int64_t q = q0; q < q0 + spg; q++) {
            s->tally2[cur[q]]++;
            s->tally2[base[q]]--;
        }
        for (int64_t q = q0; q < q0 + spg; q++)
            s->own_excess[q] = s->tally2[cur[q]];
        for (int64_t q = q0; q < q0 + spg; q++)
            s->tally2[cur[q]] = s->tally2[base[q]] = 0;
    }
}

static void clear_excess(const search_state *st, int64_t A)
{
    eplb_incremental_scratch *s = st->s;
    for (int64_t q = A * st->spg; q < (A + 1) * st->spg; q++) {
        s->tally[st->cur[q]] = s->tally[st->base[q]] = 0;
        s->row_of[st->cur[q]] = -1;
    }
}

static int max0(int v) { return v > 0 ? v : 0; }

/* One expert arriving at (+1) or leaving (-1) a GPU, with the GPU's excess
 * of it before the trade. */
typedef struct excess_change {
    int64_t gpu, expert;
    int delta, before;
} excess_change;

/* The change in the domain's moves when A's slots qa[0..n) and B's slots
 * qb[0..n) trade experts (n = 2; the single trade's cost has a closed form
 * in the caller). Equal experts among the four are merged, so that each
 * (GPU, expert) counts once with its net change. */
static int double_cost(const search_state *st, int64_t A, int64_t B, const int32_t *row,
                       const int64_t qa[2], const int64_t qb[2])
{
    const eplb_incremental_scratch *s = st->s;
    excess_change entry[8];
    int n = 0;
    for (int i = 0; i < 2; i++) {
        const int64_t a = st->cur[qa[i]], b = st->cur[qb[i]];
        const int32_t away = s->away_excess[row[qa[i] - A * st->spg] * st->gpus + B];
        entry[n++] = (excess_change){A, a, -1, s->tally[a]};
        entry[n++] = (excess_change){B, a, +1, away};
        entry[n++] = (excess_change){B, b, -1, s->own_excess[qb[i]]};
        entry[n++] = (excess_change){A, b, +1, s->tally[b]};
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
            cost += max0(entry[i].before + delta) - max0(entry[i].before);
    }
    return cost;
}

/* Step 2 of SPEC 13.5: the best single trade of A's slots with the other
 * GPUs' slots. Returns 0 when there is no candidate. */
static int best_single(const search_state *st, int64_t A, const int32_t *row, int64_t pick[2],
                       int *cost_out)
{
    const eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, gd = st->gpus;
    const float *u = st->u, *load = st->load;
    trade_key best = {0, 0, 0.0f};
    int found = 0;
    for (int64_t i = 0; i < spg; i++) {
        const int64_t sa = A * spg + i;
        const float ua = u[sa];
        const int leave_a = s->tally[st->cur[sa]] > 0;
        const int32_t *away = s->away_excess + row[i] * gd;
        for (int64_t sb = 0; sb < st->slots; sb++) {
            if (sb == A * spg) {
                sb += spg - 1;
                continue;
            }
            const float ub = u[sb];
            if (!(ua > ub))
                continue;
            const int64_t B = sb / spg;
            trade_key key;
            if (!classify(load[A], load[B], ua, ub, st->target, &key))
                continue;
            if (found && key.cls > best.cls)
                continue;
            key.cost = -leave_a + (away[B] >= 0) - (s->own_excess[sb] > 0) +
                       (s->tally[st->cur[sb]] >= 0);
            if (!found || key_less(&key, &best)) {
                best = key;
                pick[0] = sa;
                pick[1] = sb;
                found = 1;
            }
        }
    }
    *cost_out = best.cost;
    return found;
}

/* Step 3 of SPEC 13.5: the best double trade, pick = sa1, sa2, sb1, sb2. */
static int best_double(const search_state *st, int64_t A, const int32_t *row, int64_t pick[4],
                       int *cost_out)
{
    const int64_t spg = st->spg;
    const float *u = st->u, *load = st->load;
    trade_key best = {0, 0, 0.0f};
    int found = 0;
    for (int64_t B = 0; B < st->gpus; B++) {
        if (B == A)
            continue;
        for (int64_t a1 = A * spg; a1 < (A + 1) * spg; a1++)
            for (int64_t a2 = a1 + 1; a2 < (A + 1) * spg; a2++) {
                const float da = u[a1] + u[a2];
                for (int64_t b1 = B * spg; b1 < (B + 1) * spg; b1++)
                    for (int64_t b2 = b1 + 1; b2 < (B + 1) * spg; b2++) {
                        const float db = u[b1] + u[b2];
                        if (!(da > db))
                            continue;
                        trade_key key;
                        if (!classify(load[A], load[B], da, db, st->target, &key))
                            continue;
                        if (found && key.cls > best.cls)
                            continue;
                        const int64_t qa[2] = {a1, a2}, qb[2] = {b1, b2};
                        key.cost = double_cost(st, A, B, row, qa, qb);
                        if (!found || key_less(&key, &best)) {
                            best = key;
                            pick[0] = a1;
                            pick[1] = a2;
                            pick[2] = b1;
                            pick[3] = b2;
                            found = 1;
                        }
                    }
            }
    }
    *cost_out = best.cost;
    return found;
}

static void trade(search_state *st, int64_t qa, int64_t qb)
{
    const int64_t e = st->cur[qa];
    st->cur[qa] = st->cur[qb];
    st->cur[qb] = e;
    const float v = st->u[qa];
    st->u[qa] = st->u[qb];
    st->u[qb] = v;
}

static int64_t heaviest_gpu(const search_state *st)
{
    int64_t A = 0;
    for (int64_t b = 1; b < st->gpus; b++)
        if (st->load[b] > st->load[A])
            A = b;
    return A;
}

int eplb_domain_search(const float *w, const int64_t *prev, int64_t *x, int64_t d, float target,
                       int64_t limit, const eplb_layer_geometry *g, eplb_incremental_scratch *s)
{
    const int64_t dn = g->domain_slots, spg = g->gpu_slots, first = d * dn;
    /* The counts are those of the whole start placement and never change. */
    eplb_layer_slot_loads(w, x, g, s, s->slot_load);
    search_state st = {prev + first, x + first, s->slot_load + first, s->gpu_load,
                       spg, g->domain_gpus, dn, target, s};
    for (int64_t b = 0; b < st.gpus; b++)
        st.load[b] = eplb_gpu_load(st.u + b * spg, spg, s->sorted);
    int64_t moved = eplb_span_moves(st.base, st.cur, st.gpus, spg, s->tally);
    int32_t *row = s->away_row;
    for (int64_t step = 0; step < dn; step++) {
        const int64_t A = heaviest_gpu(&st);
        if (st.load[A] <= target)
            return 1;
        if (moved > limit)
            return 0;
        tally_excess(&st, A, row);
        int64_t pick[4];
        int cost = 0;
        int64_t B;
        if (best_single(&st, A, row, pick, &cost)) {
            B = pick[1] / spg;
            clear_excess(&st, A);
            trade(&st, pick[0], pick[1]);
        } else if (best_double(&st, A, row, pick, &cost)) {
            B = pick[2] / spg;
            clear_excess(&st, A);
            trade(&st, pick[0], pick[2]);
            trade(&st, pick[1], pick[3]);
        } else {
            clear_excess(&st, A);
            return 0;
        }
        moved += cost;
        st.load[A] = eplb_gpu_load(st.u + A * spg, spg, s->sorted);
        st.load[B] = eplb_gpu_load(st.u + B * spg, spg, s->sorted);
    }
    return st.load[heaviest_gpu(&st)] <= target;
}
