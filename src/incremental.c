/* eplb_rebalance_incremental (docs/spec.md section 13): the checks of 13.1,
 * the fresh plan through the planner (any backend), then per layer on the
 * host the relabelled fresh plan, the searches and the choice of 13.6, and
 * the outputs. Layers are independent, so they run in parallel; each thread
 * works in its own scratch, so the result does not depend on the thread
 * count. */
#include <stdlib.h>
#include <string.h>

#include "common/threads_usable.h"
#include "cpu_backend.h"
#include "incremental.h"
#include "planner.h"
#include "validation.h"

enum { OPTION_KEPT, OPTION_ANCHORED, OPTION_FRESH, OPTION_COUNT };

/* A domain's entries in the scratch's domain_options: the moves of each
 * option (-1: not valid), whether the domain changed, and whether its
 * anchored start is the previous plan with the same loads. */
enum { OPTION_CHANGED = OPTION_COUNT, OPTION_SAME, OPTION_STRIDE };

/* Whether the domain holds a different set of experts (not multiset) in prev
 * and in rel: then a group changed node (SPEC 13.6). */
static int domain_changed(const int64_t *prev, const int64_t *rel, int64_t n, int32_t *mark)
{
    int changed = 0;
    for (int64_t q = 0; q < n; q++)
        mark[prev[q]] = 1;
    for (int64_t q = 0; q < n; q++) {
        changed |= mark[rel[q]] == 0;
        mark[rel[q]] = 2;
    }
    for (int64_t q = 0; q < n; q++)
        changed |= mark[prev[q]] == 1;
    for (int64_t q = 0; q < n; q++)
        mark[prev[q]] = mark[rel[q]] = 0;
    return changed;
}

/* The valid option (moves >= 0) with the fewest moves, ties in the order
 * kept, anchored, fresh; fresh is always valid. */
static int fewest_moves(const int64_t moves[OPTION_COUNT])
{
    int best = OPTION_FRESH;
    for (int o = OPTION_COUNT - 1; o >= 0; o--)
        if (moves[o] >= 0 && moves[o] <= moves[best])
            best = o;
    return best;
}

/* Sections 13.2 to 13.6 for one layer: out receives its phy2log. */
static void plan_layer(const float *w, const int64_t *prev, const int64_t *fresh, float slack,
                       const eplb_layer_geometry *g, eplb_incremental_scratch *s, int64_t *out)
{
    const int64_t R = g->replicas, dn = g->domain_slots;
    const float factor = 1.0f + slack;
    /* Each expert's slot load with the fresh plan's counts, which rel and
     * the anchored start share, and with the previous plan's. */
    float *fresh_load = s->expert_load, *prev_load = s->expert_load + g->experts;
    eplb_expert_loads(w, fresh, g, s, fresh_load);
    eplb_expert_loads(w, prev, g, s, prev_load);
    const float target = eplb_layer_max_gpu_load_of(fresh_load, fresh, g, s) * factor;
    int64_t *rel = s->relabelled;
    eplb_relabel_layer(prev, fresh, g, s, rel, s->fresh_moves);
    eplb_anchored_start(fresh_load, prev, rel, g, s, s->anchored, s->anchored_moves);
    memcpy(s->kept, prev, (size_t)R * sizeof *prev);
    memcpy(s->moved, s->anchored, (size_t)R * sizeof *prev);
    /* Each start's slot loads, with its own counts, which the searches keep
     * (they only permute slots inside a domain). */
    int64_t *searched[2] = {s->kept, s->moved};
    float *loads[2] = {s->start_load, s->start_load + R};
    for (int64_t q = 0; q < R; q++) {
        loads[OPTION_KEPT][q] = prev_load[prev[q]];
        loads[OPTION_ANCHORED][q] = fresh_load[s->anchored[q]];
    }
    int64_t *options = s->domain_options;
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t first = d * dn;
        int64_t *moves = options + OPTION_STRIDE * d;
        moves[OPTION_FRESH] = s->fresh_moves[d];
        /* A domain of the whole layer holds every expert in both. */
        moves[OPTION_CHANGED] =
            g->domains > 1 && domain_changed(prev + first, rel + first, dn, s->tally);
        /* A search depends only on the domain's slots and their loads: an
         * anchored start equal to the previous plan there (with the same
         * loads) would repeat the kept search, whose result it takes. */
        moves[OPTION_SAME] = !memcmp(searched[OPTION_KEPT] + first, searched[OPTION_ANCHORED] + first,
                                     (size_t)dn * sizeof *prev) &&
                             !memcmp(loads[OPTION_KEPT] + first, loads[OPTION_ANCHORED] + first,
                                     (size_t)dn * sizeof *loads[0]);
        /* The previous plan's slots move nothing. */
        int64_t moved;
        const int met = eplb_domain_search(prev, searched[OPTION_KEPT], loads[OPTION_KEPT], d,
                                           target, 0, moves[OPTION_FRESH], g, s, &moved);
        moves[OPTION_KEPT] = met ? moved : -1;
    }

    /* The anchored search keeps the domain's experts, those of rel, so it
     * moves at least the slots of rel's experts that the domain's previous
     * slots lack: the anchored start's moves (its rest). Where kept met with
     * no more moves than that (summed over the changed domains, which
     * choose together), anchored cannot be chosen, ties going to kept, and
     * its search is left out as if it had not met. */
    int64_t kept_sum = 0, floor_sum = 0;
    int kept_met = 1;
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t *moves = options + OPTION_STRIDE * d;
        if (moves[OPTION_CHANGED]) {
            kept_met &= moves[OPTION_KEPT] >= 0;
            kept_sum += moves[OPTION_KEPT];
            floor_sum += s->anchored_moves[d];
        }
    }
    const int changed_search = !kept_met || kept_sum > floor_sum;
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t first = d * dn;
        int64_t *moves = options + OPTION_STRIDE * d;
        const int search = moves[OPTION_CHANGED] ? changed_search
                                                 : moves[OPTION_KEPT] < 0 ||
                                                       moves[OPTION_KEPT] > s->anchored_moves[d];
        if (!search) {
            moves[OPTION_ANCHORED] = -1;
        } else if (moves[OPTION_SAME]) {
            memcpy(searched[OPTION_ANCHORED] + first, searched[OPTION_KEPT] + first,
                   (size_t)dn * sizeof *prev);
            memcpy(loads[OPTION_ANCHORED] + first, loads[OPTION_KEPT] + first,
                   (size_t)dn * sizeof *loads[0]);
            moves[OPTION_ANCHORED] = moves[OPTION_KEPT];
        } else {
            int64_t moved;
            const int met = eplb_domain_search(prev, searched[OPTION_ANCHORED],
                                               loads[OPTION_ANCHORED], d, target,
                                               s->anchored_moves[d], moves[OPTION_FRESH], g, s,
                                               &moved);
            moves[OPTION_ANCHORED] = met ? moved : -1;
        }
    }

    /* The changed domains choose one option together, by their moves summed. */
    int64_t together[OPTION_COUNT] = {0, 0, 0};
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t *moves = options + OPTION_STRIDE * d;
        for (int o = 0; o < OPTION_COUNT && moves[OPTION_CHANGED]; o++)
            together[o] = together[o] < 0 || moves[o] < 0 ? -1 : together[o] + moves[o];
    }
    const int shared = fewest_moves(together);
    const int64_t *source[OPTION_COUNT] = {s->kept, s->moved, rel};
    int mixed = 0;
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t *moves = options + OPTION_STRIDE * d;
        const int o = moves[OPTION_CHANGED] ? shared : fewest_moves(moves);
        mixed |= o != (options[OPTION_CHANGED] ? shared : fewest_moves(options));
        memcpy(out + d * dn, source[o] + d * dn, (size_t)dn * sizeof *out);
    }
    /* Options of different domains count an expert's replicas differently
     * when prev spreads it over several domains; then the layer may miss the
     * target, and the relabelled fresh plan is taken. A layer whose domains
     * all took the same option has that option's counts, with which each
     * domain met the target, so it needs no check. */
    if (mixed && eplb_layer_max_gpu_load(w, out, g, s) > target)
        memcpy(out, rel, (size_t)R * sizeof *out);
}

/* SPEC 13.1 for layer l of previous (row): every entry an expert, every
 * expert on a slot. Returns EPLB_OK or, for the first rule the layer breaks,
 * EPLB_ERR_INVALID_ARGUMENT, with its message in ctx unless ctx is NULL (as
 * on the threads, which may not write it). seen: [E], entries below l + 1. */
static eplb_status check_previous_layer(eplb_context *ctx, const int64_t *row, int64_t l,
                                        int64_t E, int64_t R, int64_t *seen)
{
    for (int64_t q = 0; q < R; q++) {
        if (row[q] < 0 || row[q] >= E)
            return !ctx ? EPLB_ERR_INVALID_ARGUMENT
                        : eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                            "previous[%lld][%lld] = %lld is not an expert "
                                            "(0..%lld)",
                                            (long long)l, (long long)q, (long long)row[q],
                                            (long long)(E - 1));
        seen[row[q]] = l + 1;
    }
    for (int64_t e = 0; e < E; e++)
        if (seen[e] != l + 1)
            return !ctx ? EPLB_ERR_INVALID_ARGUMENT
                        : eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                            "previous layer %lld has no slot for expert %lld: "
                                            "a running plan places every expert",
                                            (long long)l, (long long)e);
    return EPLB_OK;
}

/* SPEC 13.1 for every layer. The layers are checked on the threads, each
 * with its own marks, and the first broken one again on the calling thread
 * for its message; where a thread could not allocate its marks, every layer
 * is checked on the calling thread. seen: [E] zeroed. */
static eplb_status check_previous(eplb_context *ctx, const int64_t *previous,
                                  const eplb_shape *shape, int64_t *seen)
{
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    int64_t first_broken = L;
    int unchecked = 0;
    /* About a nanosecond an entry: below a few thousand entries a team
     * would cost more than it saves. */
#pragma omp parallel if (L > 1 && L * R >= 4096 && eplb_threads_usable()) \
    reduction(min : first_broken) reduction(| : unchecked)
    {
        int64_t *marks = calloc((size_t)E, sizeof *marks);
        unchecked |= !marks;
#pragma omp for schedule(static)
        for (int64_t l = 0; l < L; l++)
            if (marks && l < first_broken &&
                check_previous_layer(NULL, previous + l * R, l, E, R, marks) != EPLB_OK)
                first_broken = l;
        free(marks);
    }
    eplb_status st = EPLB_OK;
    for (int64_t l = unchecked ? 0 : first_broken; l < L && st == EPLB_OK; l++)
        st = check_previous_layer(ctx, previous + l * R, l, E, R, seen);
    return st;
}

/* A layer's replicas of each expert (its row of logcnt); returns the
 * largest. */
static int64_t count_replicas(const int64_t *plan, int64_t E, int64_t R, int64_t *logcnt)
{
    memset(logcnt, 0, (size_t)E * sizeof *logcnt);
    int64_t widest = 0;
    for (int64_t q = 0; q < R; q++) {
        const int64_t c = ++logcnt[plan[q]];
        widest = c > widest ? c : widest;
    }
    return widest;
}

/* A layer's log2phy in slot order (a slot's replica rank is the number of
 * slots of its expert before it). rank: [E], zero on entry and on return. */
static void write_log2phy(const int64_t *plan, int64_t E, int64_t R, int64_t width, int32_t *rank,
                          int64_t *layer)
{
    for (int64_t k = 0; k < E * width; k++)
        layer[k] = -1;
    for (int64_t q = 0; q < R; q++) {
        const int64_t e = plan[q];
        layer[e * width + rank[e]++] = q;
    }
    for (int64_t q = 0; q < R; q++)
        rank[plan[q]] = 0;
}

/* Plans every layer from previous and fresh into out, with its replica
 * counts and each layer's largest (widest[L]); then, when width holds every
 * count or log2phy is NULL, writes phy2log, logcnt and log2phy (when not
 * NULL), so that the outputs are written only when the call succeeds.
 * Returns 0 when a thread's scratch could not be allocated (outputs
 * untouched). Threads keep their scratch from layer to layer and give it back
 * for later calls. A forked child plans on the calling thread only
 * (common/threads_usable.h). */
static int plan_layers(const float *weight, const eplb_shape *shape, const eplb_layer_geometry *g,
                       int avx512, float slack, const int64_t *previous, const int64_t *fresh,
                       int64_t *out, int64_t *counts, int64_t *widest, int64_t *phy2log,
                       int64_t *logcnt, int64_t *log2phy, int64_t width)
{
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    int failed = 0;
#pragma omp parallel if (L > 1 && eplb_threads_usable())
    {
        eplb_incremental_scratch *s = eplb_incremental_scratch_take(g, avx512);
        if (!s) {
#pragma omp atomic write
            failed = 1;
        }
        /* Dynamic: a layer's work depends on how far its search goes. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t l = 0; l < L; l++)
            if (s) {
                plan_layer(weight + l * E, previous + l * R, fresh + l * R, slack, g, s,
                           out + l * R);
                widest[l] = count_replicas(out + l * R, E, R, counts + l * E);
            }
        /* Past the loop's barrier every thread sees the same counts and the
         * same failure, so all of them take the same branch. */
        int missing;
#pragma omp atomic read
        missing = failed;
        int64_t needed = 0;
        for (int64_t l = 0; l < L; l++)
            needed = widest[l] > needed ? widest[l] : needed;
        if (!missing && (!log2phy || width >= needed)) {
            /* The caller's arrays are written by the threads, a layer each:
             * one thread's copies would take as long as several layers'
             * searches. */
#pragma omp for schedule(static)
            for (int64_t l = 0; l < L; l++) {
                memcpy(phy2log + l * R, out + l * R, (size_t)R * sizeof *out);
                memcpy(logcnt + l * E, counts + l * E, (size_t)E * sizeof *counts);
                if (log2phy)
                    write_log2phy(out + l * R, E, R, width, s->tally, log2phy + l * E * width);
            }
        }
        if (s)
            eplb_incremental_scratch_give(s);
    }
    return !failed;
}

eplb_status eplb_incremental_host(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                                  const eplb_options *options, const int64_t *previous,
                                  int64_t *phy2log, int64_t *logcnt, int64_t *log2phy,
                                  int64_t log2phy_width, int64_t *width_needed)
{
    if (!previous)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                 "previous (the running plan's phy2log) must not be NULL");
    if (!weight || !shape || !phy2log || !logcnt)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                 "weight, shape, phy2log and logcnt must not be NULL");
    const char *why;
    eplb_status st = eplb_shape_check(shape, &why);
    if (st != EPLB_OK)
        return eplb_context_fail(ctx, st, "invalid shape: %s", why);
    eplb_options read;
    eplb_options_init(&read);
    if (options && (st = eplb_options_read(options, &read, &why)) != EPLB_OK)
        return eplb_context_fail(ctx, st, "invalid options: %s", why);
    /* Section 13's search trades slots without regard to duplicates, so it
     * would undo what distinct promises (SPEC 11). */
    if (read.distinct)
        return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                 "the incremental rebalance (docs/spec.md section 13) does not "
                                 "keep replicas on distinct GPUs: plan with distinct 0, or with "
                                 "eplb_rebalance");
    /* The search runs on the host whatever the backend, so the cpu knobs
     * decide its vector code, and a value they do not take is refused here
     * as the cpu backend refuses it. */
    int avx512;
    char knob_error[256];
    if ((st = eplb_cpu_host_avx512(&avx512, knob_error, sizeof knob_error)) != EPLB_OK)
        return eplb_context_fail(ctx, st, "%s", knob_error);

    const size_t L = (size_t)shape->layers, E = (size_t)shape->experts;
    const size_t R = (size_t)shape->replicas;
    int64_t *seen = calloc(E, sizeof *seen);
    int64_t *fresh = malloc(L * R * sizeof *fresh);
    int64_t *plan = malloc(L * R * sizeof *plan);
    int64_t *counts = malloc(L * E * sizeof *counts);
    int64_t *widest = malloc(L * sizeof *widest);
    if (!seen || !fresh || !plan || !counts || !widest) {
        st = eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY,
                               "cannot allocate the incremental plan's %zu slots", L * R);
        goto done;
    }
    if ((st = check_previous(ctx, previous, shape, seen)) != EPLB_OK)
        goto done;
    /* The fresh plan checks the weights and the policy against the shape. */
    if ((st = eplb_plan_host(ctx, weight, shape, options, fresh, counts, NULL, 0, NULL)) != EPLB_OK)
        goto done;

    const int64_t domains = eplb_planner_hierarchical(shape, &read) ? shape->nodes : 1;
    const eplb_layer_geometry g = {
        shape->experts, shape->replicas, shape->gpus, shape->replicas / shape->gpus, domains,
        shape->replicas / domains, shape->gpus / domains,
    };
    if (!plan_layers(weight, shape, &g, avx512, read.slack, previous, fresh, plan, counts, widest,
                     phy2log, logcnt, log2phy, log2phy_width)) {
        st = eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY,
                               "cannot allocate the incremental search's scratch for %lld slots "
                               "per layer",
                               (long long)shape->replicas);
        goto done;
    }
    int64_t needed = 0;
    for (size_t l = 0; l < L; l++)
        needed = widest[l] > needed ? widest[l] : needed;
    if (width_needed)
        *width_needed = needed;
    if (log2phy && log2phy_width < needed) {
        st = eplb_context_fail(ctx, EPLB_ERR_LOG2PHY_TOO_SMALL,
                               "log2phy width %lld is below the %lld replicas of the most "
                               "replicated expert; pass a width of at least %lld",
                               (long long)log2phy_width, (long long)needed, (long long)needed);
        goto done;
    }
done:
    free(seen);
    free(fresh);
    free(plan);
    free(counts);
    free(widest);
    return st;
}
