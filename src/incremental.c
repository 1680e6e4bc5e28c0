/* eplb_rebalance_incremental (docs/spec.md section 13): the checks of 13.1,
 * the fresh plan through the planner (any backend), then per layer on the
 * host the relabelled fresh plan, the searches and the choice of 13.6, and
 * the outputs. Layers are independent, so they run in parallel; each thread
 * works in its own scratch, so the result does not depend on the thread
 * count. A backend with domain_searches (backend.h) runs the searches of
 * all layers in one batch between the host's steps instead. */
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

/* One layer's work between the steps of SPEC 13.5 and 13.6: the relabelled
 * fresh plan, the two starts of each domain's searches (searched in place)
 * with their slot loads, and per domain the options' moves and flags. The
 * layer-by-layer plan keeps it in the thread's scratch; the batched plan
 * keeps one for each layer. */
typedef struct layer_state {
    int64_t *rel;           /* [R] */
    int64_t *kept;          /* [R] the previous plan, then each domain's kept search */
    int64_t *anchored;      /* [R] the anchored start, then each domain's anchored search */
    float *kept_load;       /* [R] the slot loads of kept, with the previous plan's counts */
    float *anchored_load;   /* [R] those of anchored, with the fresh plan's counts */
    int64_t *options;       /* [domains][OPTION_STRIDE] */
    int64_t *fresh_moves;   /* [domains] the moves of each domain in rel */
    int64_t *anchored_moves; /* [domains] the same in the anchored start */
    float target;
} layer_state;

/* The layer's target, the relabelled fresh plan, both starts with their
 * slot loads, and each domain's fresh moves and flags (SPEC 13.2, 13.4 and
 * the start of 13.6). */
static void prepare_layer(const float *w, const int64_t *prev, const int64_t *fresh, float slack,
                          const eplb_layer_geometry *g, eplb_incremental_scratch *s,
                          layer_state *ls)
{
    const int64_t R = g->replicas, dn = g->domain_slots;
    const float factor = 1.0f + slack;
    /* Each expert's slot load with the fresh plan's counts, which rel and
     * the anchored start share, and with the previous plan's. */
    float *fresh_load = s->expert_load, *prev_load = s->expert_load + g->experts;
    eplb_expert_loads(w, fresh, g, s, fresh_load);
    eplb_expert_loads(w, prev, g, s, prev_load);
    ls->target = eplb_layer_max_gpu_load_of(fresh_load, fresh, g, s) * factor;
    eplb_relabel_layer(prev, fresh, g, s, ls->rel, ls->fresh_moves);
    eplb_anchored_start(fresh_load, prev, ls->rel, g, s, ls->anchored, ls->anchored_moves);
    memcpy(ls->kept, prev, (size_t)R * sizeof *prev);
    /* Each start's slot loads, with its own counts, which the searches keep
     * (they only permute slots inside a domain). */
    for (int64_t q = 0; q < R; q++) {
        ls->kept_load[q] = prev_load[prev[q]];
        ls->anchored_load[q] = fresh_load[ls->anchored[q]];
    }
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t first = d * dn;
        int64_t *moves = ls->options + OPTION_STRIDE * d;
        moves[OPTION_FRESH] = ls->fresh_moves[d];
        /* A domain of the whole layer holds every expert in both. */
        moves[OPTION_CHANGED] =
            g->domains > 1 && domain_changed(prev + first, ls->rel + first, dn, s->tally);
        /* A search depends only on the domain's slots and their loads: an
         * anchored start equal to the previous plan there (with the same
         * loads) would repeat the kept search, whose result it takes. */
        moves[OPTION_SAME] = !memcmp(ls->kept + first, ls->anchored + first,
                                     (size_t)dn * sizeof *prev) &&
                             !memcmp(ls->kept_load + first, ls->anchored_load + first,
                                     (size_t)dn * sizeof *ls->kept_load);
    }
}

/* Whether domain d's anchored search can matter, once every kept search of
 * the layer ran. The anchored search keeps the domain's experts, those of
 * rel, so it moves at least the slots of rel's experts that the domain's
 * previous slots lack: the anchored start's moves (its rest). Where kept
 * met with no more moves than that (summed over the changed domains, which
 * choose together), anchored cannot be chosen, ties going to kept, and its
 * search is left out as if it had not met. */
static int anchored_search_needed(const layer_state *ls, const eplb_layer_geometry *g, int64_t d)
{
    const int64_t *mine = ls->options + OPTION_STRIDE * d;
    if (!mine[OPTION_CHANGED])
        return mine[OPTION_KEPT] < 0 || mine[OPTION_KEPT] > ls->anchored_moves[d];
    int64_t kept_sum = 0, floor_sum = 0;
    for (int64_t c = 0; c < g->domains; c++) {
        const int64_t *moves = ls->options + OPTION_STRIDE * c;
        if (moves[OPTION_CHANGED]) {
            if (moves[OPTION_KEPT] < 0)
                return 1;
            kept_sum += moves[OPTION_KEPT];
            floor_sum += ls->anchored_moves[c];
        }
    }
    return kept_sum > floor_sum;
}

/* Domain d's anchored option when its start equals the previous plan's
 * slots there: the kept search's result. */
static void take_kept_search(layer_state *ls, int64_t d, const eplb_layer_geometry *g)
{
    const int64_t first = d * g->domain_slots;
    memcpy(ls->anchored + first, ls->kept + first, (size_t)g->domain_slots * sizeof *ls->kept);
    memcpy(ls->anchored_load + first, ls->kept_load + first,
           (size_t)g->domain_slots * sizeof *ls->kept_load);
    ls->options[OPTION_STRIDE * d + OPTION_ANCHORED] = ls->options[OPTION_STRIDE * d + OPTION_KEPT];
}

/* SPEC 13.6's choice from every domain's options: out receives the layer's
 * phy2log. */
static void choose_layer(const float *w, const layer_state *ls, const eplb_layer_geometry *g,
                         eplb_incremental_scratch *s, int64_t *out)
{
    const int64_t R = g->replicas, dn = g->domain_slots;
    const int64_t *options = ls->options;
    /* The changed domains choose one option together, by their moves summed. */
    int64_t together[OPTION_COUNT] = {0, 0, 0};
    for (int64_t d = 0; d < g->domains; d++) {
        const int64_t *moves = options + OPTION_STRIDE * d;
        for (int o = 0; o < OPTION_COUNT && moves[OPTION_CHANGED]; o++)
            together[o] = together[o] < 0 || moves[o] < 0 ? -1 : together[o] + moves[o];
    }
    const int shared = fewest_moves(together);
    const int64_t *source[OPTION_COUNT] = {ls->kept, ls->anchored, ls->rel};
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
    if (mixed && eplb_layer_max_gpu_load(w, out, g, s) > ls->target)
        memcpy(out, ls->rel, (size_t)R * sizeof *out);
}

/* Sections 13.2 to 13.6 for one layer, its searches on the host one after
 * another: out receives its phy2log. */
static void plan_layer(const float *w, const int64_t *prev, const int64_t *fresh, float slack,
                       const eplb_layer_geometry *g, eplb_incremental_scratch *s, int64_t *out)
{
    const int64_t R = g->replicas;
    layer_state ls = {s->relabelled, s->kept, s->moved, s->start_load, s->start_load + R,
                      s->domain_options, s->fresh_moves, s->anchored_moves, 0.0f};
    prepare_layer(w, prev, fresh, slack, g, s, &ls);
    for (int64_t d = 0; d < g->domains; d++) {
        int64_t *moves = ls.options + OPTION_STRIDE * d, moved;
        /* The previous plan's slots move nothing. */
        const int met = eplb_domain_search(prev, ls.kept, ls.kept_load, d, ls.target, 0,
                                           moves[OPTION_FRESH], g, s, &moved);
        moves[OPTION_KEPT] = met ? moved : -1;
    }
    for (int64_t d = 0; d < g->domains; d++) {
        int64_t *moves = ls.options + OPTION_STRIDE * d;
        if (!anchored_search_needed(&ls, g, d)) {
            moves[OPTION_ANCHORED] = -1;
        } else if (moves[OPTION_SAME]) {
            take_kept_search(&ls, d, g);
        } else {
            int64_t moved;
            const int met = eplb_domain_search(prev, ls.anchored, ls.anchored_load, d, ls.target,
                                               ls.anchored_moves[d], moves[OPTION_FRESH], g, s,
                                               &moved);
            moves[OPTION_ANCHORED] = met ? moved : -1;
        }
    }
    choose_layer(w, &ls, g, s, out);
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

/* A thread's scratch for one parallel region over layers; NULL, with
 * *failed set (which every thread reads after the region's loop), when
 * memory runs out. */
static eplb_incremental_scratch *take_thread_scratch(const eplb_layer_geometry *g, int avx512,
                                                     int *failed)
{
    eplb_incremental_scratch *s = eplb_incremental_scratch_take(g, avx512);
    if (!s) {
#pragma omp atomic write
        *failed = 1;
    }
    return s;
}

/* The error of a call whose thread could not get its scratch. */
static eplb_status scratch_failure(eplb_context *ctx, int64_t replicas)
{
    return eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY,
                             "cannot allocate the incremental search's scratch for %lld slots "
                             "per layer",
                             (long long)replicas);
}

/* The tail of plan_layers' parallel region, for each of its threads (s:
 * the thread's scratch): once every layer is planned, writes phy2log,
 * logcnt and log2phy from out and counts, when width holds every count or
 * log2phy is NULL and no thread failed. */
static void write_outputs(const eplb_shape *shape, const int64_t *out, const int64_t *counts,
                          const int64_t *widest, eplb_incremental_scratch *s, int *failed,
                          int64_t *phy2log, int64_t *logcnt, int64_t *log2phy, int64_t width)
{
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    /* Past the loop's barrier every thread sees the same counts and the
     * same failure, so all of them take the same branch. */
    int missing;
#pragma omp atomic read
    missing = *failed;
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
        eplb_incremental_scratch *s = take_thread_scratch(g, avx512, &failed);
        /* Dynamic: a layer's work depends on how far its search goes. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t l = 0; l < L; l++)
            if (s) {
                plan_layer(weight + l * E, previous + l * R, fresh + l * R, slack, g, s,
                           out + l * R);
                widest[l] = count_replicas(out + l * R, E, R, counts + l * E);
            }
        write_outputs(shape, out, counts, widest, s, &failed, phy2log, logcnt, log2phy, width);
        if (s)
            eplb_incremental_scratch_give(s);
    }
    return !failed;
}

/* The batched plan's state: a layer_state per layer, and the searches of
 * all layers as one job for the backend, its arrays in the workspace's
 * search area (backend.h gives their order). */
typedef struct batch_state {
    layer_state *layers;    /* [L] */
    int32_t *search_of;     /* [L][domains][2]: each kept and anchored search's job index, or -1 */
    eplb_search_job job;
    void *owned[3];
} batch_state;

static void batch_free(batch_state *b)
{
    for (int i = 0; i < 3; i++)
        free(b->owned[i]);
}

/* Allocates the state for L layers and at most 2 * L * domains searches.
 * Returns EPLB_OK (everything allocated) or an error with its message in
 * ctx (nothing left allocated). */
static eplb_status batch_alloc(eplb_context *ctx, batch_state *b, int64_t L,
                               const eplb_layer_geometry *g)
{
    const size_t R = (size_t)g->replicas, D = (size_t)g->domains, dn = (size_t)g->domain_slots;
    const size_t layers = (size_t)L, searches = 2 * layers * D;
    const size_t layer_ints = 3 * R + (OPTION_STRIDE + 2) * D;
    memset(b, 0, sizeof *b);
    b->layers = b->owned[0] = malloc(layers * sizeof *b->layers);
    int64_t *ints = b->owned[1] = malloc(layers * layer_ints * sizeof *ints);
    float *floats = b->owned[2] = malloc(layers * 2 * R * sizeof *floats + searches * 4);
    if (!b->layers || !ints || !floats) {
        batch_free(b);
        return eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY,
                                 "cannot allocate the incremental searches of %lld layers",
                                 (long long)L);
    }
    /* base, u, target, limit, cur, moved, met: 4 bytes an entry each. */
    unsigned char *area;
    const eplb_status st = eplb_plan_search_area(ctx, searches * (3 * dn + 4) * 4, &area);
    if (st != EPLB_OK) {
        batch_free(b);
        return st;
    }
    for (size_t l = 0; l < layers; l++) {
        layer_state *ls = &b->layers[l];
        int64_t *mine = ints + l * layer_ints;
        ls->rel = mine;
        ls->kept = mine + R;
        ls->anchored = mine + 2 * R;
        ls->options = mine + 3 * R;
        ls->fresh_moves = ls->options + OPTION_STRIDE * D;
        ls->anchored_moves = ls->fresh_moves + D;
        ls->kept_load = floats + l * 2 * R;
        ls->anchored_load = ls->kept_load + R;
    }
    b->search_of = (int32_t *)(floats + layers * 2 * R);
    eplb_search_job *j = &b->job;
    j->domain_slots = (int32_t)dn;
    j->gpu_slots = (int32_t)g->gpu_slots;
    j->experts = (int32_t)g->experts;
    int32_t *base = (int32_t *)area;
    j->base = base;
    j->u = (const float *)(base + searches * dn);
    j->target = (const float *)(base + searches * 2 * dn);
    j->limit = base + searches * (2 * dn + 1);
    j->cur = base + searches * (2 * dn + 2);
    j->moved = j->cur + searches * dn;
    j->met = j->moved + searches;
    return EPLB_OK;
}

/* Sections 13.2 to 13.6 for every layer with the searches of all layers in
 * one batch on the backend (domain_searches): the layers' starts on the
 * host's threads, then every kept search and every anchored search that
 * does not repeat a kept one, then each layer's choice. The anchored
 * searches run beside the kept ones, before it is known whether the choice
 * needs them, and a result it does not need is left out as the
 * layer-by-layer plan leaves the search out, so the plan is the same.
 * Writes out, counts, widest and the outputs as plan_layers does. Returns
 * EPLB_OK, or an error with its message in ctx. */
static eplb_status plan_layers_batched(eplb_context *ctx, const float *weight,
                                       const eplb_shape *shape, const eplb_layer_geometry *g,
                                       int avx512, float slack, const int64_t *previous,
                                       const int64_t *fresh, int64_t *out, int64_t *counts,
                                       int64_t *widest, int64_t *phy2log, int64_t *logcnt,
                                       int64_t *log2phy, int64_t width)
{
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    const int64_t D = g->domains, dn = g->domain_slots;
    batch_state b;
    eplb_status st = batch_alloc(ctx, &b, L, g);
    if (st != EPLB_OK)
        return st;
    int failed = 0;
#pragma omp parallel if (L > 1 && eplb_threads_usable())
    {
        eplb_incremental_scratch *s = take_thread_scratch(g, avx512, &failed);
#pragma omp for schedule(dynamic, 1)
        for (int64_t l = 0; l < L; l++)
            if (s)
                prepare_layer(weight + l * E, previous + l * R, fresh + l * R, slack, g, s,
                              &b.layers[l]);
        if (s)
            eplb_incremental_scratch_give(s);
    }
    if (failed) {
        batch_free(&b);
        return scratch_failure(ctx, R);
    }
    /* The job: per layer and domain the kept search, then the anchored one
     * unless its start repeats the kept one's. */
    eplb_search_job *job = &b.job;
    int64_t n = 0;
    for (int64_t l = 0; l < L; l++)
        for (int64_t d = 0; d < D; d++)
            for (int which = 0; which < 2; which++) {
                const layer_state *ls = &b.layers[l];
                const int64_t *options = ls->options + OPTION_STRIDE * d;
                b.search_of[(l * D + d) * 2 + which] =
                    which == 1 && options[OPTION_SAME] ? -1 : (int32_t)n++;
            }
    job->searches = n;
#pragma omp parallel for schedule(static) if (L > 1 && eplb_threads_usable())
    for (int64_t l = 0; l < L; l++) {
        const layer_state *ls = &b.layers[l];
        for (int64_t d = 0; d < D; d++)
            for (int which = 0; which < 2; which++) {
                const int32_t i = b.search_of[(l * D + d) * 2 + which];
                if (i < 0)
                    continue;
                const int64_t *start = (which ? ls->anchored : ls->kept) + d * dn;
                const float *load = (which ? ls->anchored_load : ls->kept_load) + d * dn;
                const int64_t *base = previous + l * R + d * dn;
                int32_t *job_base = (int32_t *)job->base + (int64_t)i * dn;
                int32_t *job_cur = job->cur + (int64_t)i * dn;
                for (int64_t q = 0; q < dn; q++) {
                    job_base[q] = (int32_t)base[q];
                    job_cur[q] = (int32_t)start[q];
                }
                memcpy((float *)job->u + (int64_t)i * dn, load, (size_t)dn * sizeof *load);
                ((float *)job->target)[i] = ls->target;
                ((int32_t *)job->limit)[i] = (int32_t)ls->fresh_moves[d];
                job->moved[i] = which ? (int32_t)ls->anchored_moves[d] : 0;
            }
    }
    eplb_backend *be = ctx->backend;
    st = be->iface->domain_searches(be, job);
    const int on_host = st == EPLB_BACKEND_DECLINED;
    if (st != EPLB_OK && !on_host) {
        batch_free(&b);
        return eplb_context_backend_fail(ctx, st);
    }
#pragma omp parallel if (L > 1 && eplb_threads_usable())
    {
        eplb_incremental_scratch *s = take_thread_scratch(g, avx512, &failed);
#pragma omp for schedule(dynamic, 1)
        for (int64_t l = 0; l < L; l++) {
            if (!s)
                continue;
            layer_state *ls = &b.layers[l];
            const int64_t *prev = previous + l * R;
            for (int64_t d = 0; d < D; d++)
                for (int which = 0; which < 2; which++) {
                    const int32_t i = b.search_of[(l * D + d) * 2 + which];
                    if (i < 0)
                        continue;
                    int64_t *x = which ? ls->anchored : ls->kept;
                    int64_t *moves = ls->options + OPTION_STRIDE * d;
                    int64_t moved;
                    int met;
                    if (on_host) {
                        /* The backend declined: the same search here. */
                        met = eplb_domain_search(prev, x, which ? ls->anchored_load : ls->kept_load,
                                                 d, ls->target, job->moved[i], ls->fresh_moves[d],
                                                 g, s, &moved);
                    } else {
                        const int32_t *cur = job->cur + (int64_t)i * dn;
                        for (int64_t q = 0; q < dn; q++)
                            x[d * dn + q] = cur[q];
                        met = job->met[i];
                        moved = job->moved[i];
                    }
                    moves[which ? OPTION_ANCHORED : OPTION_KEPT] = met ? moved : -1;
                }
            for (int64_t d = 0; d < D; d++) {
                if (!anchored_search_needed(ls, g, d))
                    ls->options[OPTION_STRIDE * d + OPTION_ANCHORED] = -1;
                else if (ls->options[OPTION_STRIDE * d + OPTION_SAME])
                    take_kept_search(ls, d, g);
            }
            choose_layer(weight + l * E, ls, g, s, out + l * R);
            widest[l] = count_replicas(out + l * R, E, R, counts + l * E);
        }
        write_outputs(shape, out, counts, widest, s, &failed, phy2log, logcnt, log2phy, width);
        if (s)
            eplb_incremental_scratch_give(s);
    }
    batch_free(&b);
    if (failed)
        return scratch_failure(ctx, R);
    return EPLB_OK;
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
    if (ctx->backend->iface->domain_searches) {
        /* The backend takes the searches of all layers at once. */
        if ((st = plan_layers_batched(ctx, weight, shape, &g, avx512, read.slack, previous, fresh,
                                      plan, counts, widest, phy2log, logcnt, log2phy,
                                      log2phy_width)) != EPLB_OK)
            goto done;
    } else if (!plan_layers(weight, shape, &g, avx512, read.slack, previous, fresh, plan, counts,
                            widest, phy2log, logcnt, log2phy, log2phy_width)) {
        st = scratch_failure(ctx, shape->replicas);
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
