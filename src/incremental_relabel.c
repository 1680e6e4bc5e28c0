/* The parts of the incremental rebalance (docs/spec.md section 13) that build
 * placements without searching: the loads of 13.2 and the relabelled fresh
 * plan of 13.4 (the anchored start of 13.6 is in incremental_anchor.c); and
 * the scratch every layer works in. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "incremental_search.h"

/* The most entries of the relabelling's table of experts by group. */
#define DENSE_TABLE_MAX ((size_t)1 << 20)

/* The most groups, and the most slots per group, whose matching
 * match_wide_avx512 finds (overlaps of one byte, a bit per overlap value). */
#define WIDE_GROUPS_MAX 128
#define WIDE_SLOTS_MAX 31

/* One pair of the greedy matching (SPEC 13.4) with a nonzero overlap. */
typedef struct match_pair {
    int32_t overlap;
    int32_t from, to;
} match_pair;

/* Whether the AVX-512 scan may run: avx512 (the machine has it and
 * EPLB_CPU_ISA does not cap vector code below it, eplb_cpu_host_avx512), the
 * GPUs' slots fit its tables and the pairs' order fits in int32. */
static int vector_allowed(const eplb_layer_geometry *g, int avx512)
{
#if SEARCH_AVX512
    return avx512 && g->gpu_slots <= EPLB_SEARCH_SPG_MAX &&
           g->gpu_slots * g->domain_slots < INT32_MAX;
#else
    (void)g;
    (void)avx512;
    return 0;
#endif
}

/* An array of the scratch of each element type, with its length. */
typedef struct int32_arrays {
    int32_t **at;
    size_t count;
} int32_arrays;
typedef struct float_arrays {
    float **at;
    size_t count;
} float_arrays;
typedef struct int64_arrays {
    int64_t **at;
    size_t count;
} int64_arrays;

/* A zeroed array of the scratch, kept in its list of allocations so that
 * one loop frees them all; NULL when memory runs out. Each array has its
 * own allocation, so that the sanitizers see its bounds. */
static void *own(eplb_incremental_scratch *s, size_t bytes)
{
    if (s->owned_count == (int)(sizeof s->owned / sizeof *s->owned))
        return NULL; /* more arrays than the list holds: a bug, reported as no memory */
    void *at = calloc(bytes ? bytes : 1, 1);
    if (at)
        s->owned[s->owned_count++] = at;
    return at;
}

/* Allocates the scratch's arrays; 0 when memory runs out. */
static int allocate_arrays(eplb_incremental_scratch *s, const eplb_layer_geometry *g)
{
    const size_t E = (size_t)g->experts, R = (size_t)g->replicas;
    const size_t spg = (size_t)g->gpu_slots, dn = (size_t)g->domain_slots;
    const size_t gd = (size_t)g->domain_gpus, domains = (size_t)g->domains;
    const size_t k = domains > gd ? domains : gd;
    /* The relabelling's table for few groups, where it stays small. */
    const size_t table = k <= EPLB_DENSE_GROUPS_MAX && E * EPLB_DENSE_GROUPS_MAX <= DENSE_TABLE_MAX
                             ? E * EPLB_DENSE_GROUPS_MAX
                             : 0;
    const int32_arrays ints[] = {
        {&s->tally, E}, {&s->tally2, E}, {&s->row_of, E}, {&s->cur_head, E}, {&s->base_head, E},
        {&s->own_excess, dn}, {&s->arrival_cost, dn}, {&s->gpu_of, dn}, {&s->cur_next, dn},
        {&s->base_next, dn}, {&s->order_slot, dn}, {&s->order_gpu, dn},
        {&s->order_arrival, dn}, {&s->order_pos, dn}, {&s->order_end, dn},
        {&s->anchor_free, dn}, {&s->anchor_free_end, gd},
        {&s->domain_of, R}, {&s->next_slot, R}, {&s->away_excess, spg * gd},
        {&s->away_row, spg}, {&s->fill_lists, 2 * spg}, {&s->overlap, k}, {&s->by_overlap, dn + 2},
        {&s->dense_overlaps, EPLB_DENSE_GROUPS_MAX * EPLB_DENSE_GROUPS_MAX},
    };
    const float_arrays floats[] = {
        {&s->gpu_sorted, dn}, {&s->slot_gpu_load, dn}, {&s->order_u, dn}, {&s->order_load, dn},
        {&s->slot_load, R}, {&s->start_load, 2 * R}, {&s->expert_load, 2 * E}, {&s->sorted, spg}, {&s->gpu_load, gd},
    };
    const int64_arrays longs[] = {
        {&s->relabelled, R}, {&s->anchored, R}, {&s->kept, R}, {&s->moved, R},
        {&s->cursor, gd}, {&s->match, 3 * k}, {&s->domain_options, 5 * domains},
        {&s->fresh_moves, domains}, {&s->anchored_moves, domains},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        ok &= (*ints[i].at = own(s, ints[i].count * sizeof(int32_t))) != NULL;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++)
        ok &= (*floats[i].at = own(s, floats[i].count * sizeof(float))) != NULL;
    for (size_t i = 0; i < sizeof longs / sizeof *longs; i++)
        ok &= (*longs[i].at = own(s, longs[i].count * sizeof(int64_t))) != NULL;
    ok &= (s->order_bucket = own(s, dn * sizeof *s->order_bucket)) != NULL;
    ok &= (s->order_tmp = own(s, 4 * dn * sizeof *s->order_tmp)) != NULL;
    ok &= (s->gpu_bounds = own(s, gd * sizeof *s->gpu_bounds)) != NULL;
    ok &= (s->pairs = own(s, 2 * k * k * sizeof(match_pair))) != NULL;
    ok &= (s->rest = own(s, dn * sizeof *s->rest)) != NULL;
    if (table)
        ok &= (s->group_count = own(s, table * sizeof *s->group_count)) != NULL;
    /* match_wide_avx512's tables, where more groups than the dense table
     * takes have few slots each, and the table of experts stays small. */
    const size_t width = (k + 15) / 16 * 16;
    if (k > EPLB_DENSE_GROUPS_MAX && k <= WIDE_GROUPS_MAX && E * width <= DENSE_TABLE_MAX &&
        (spg <= WIDE_SLOTS_MAX || dn <= WIDE_SLOTS_MAX)) {
        ok &= (s->wide_count = own(s, E * width)) != NULL;
        ok &= (s->wide_rows = own(s, k * width)) != NULL;
    }
    if (g->experts * g->domain_gpus <= EPLB_EXCESS_TABLE_MAX)
        ok &= (s->excess_table = own(s, E * gd * sizeof *s->excess_table)) != NULL;
    return ok;
}

int eplb_incremental_scratch_alloc(eplb_incremental_scratch *s, const eplb_layer_geometry *g,
                                   int avx512)
{
    memset(s, 0, sizeof *s);
    if (!allocate_arrays(s, g)) {
        eplb_incremental_scratch_free(s);
        return 0;
    }
    const size_t E = (size_t)g->experts, R = (size_t)g->replicas;
    const size_t spg = (size_t)g->gpu_slots, dn = (size_t)g->domain_slots;
    for (size_t e = 0; e < E; e++)
        s->row_of[e] = s->cur_head[e] = s->base_head[e] = -1;
    for (size_t q = 0; q < dn; q++)
        s->gpu_of[q] = (int32_t)(q / spg);
    for (size_t q = 0; q < R; q++)
        s->domain_of[q] = (int32_t)(q / dn);
    s->vector = vector_allowed(g, avx512);
    s->geometry = *g;
    return 1;
}

void eplb_incremental_scratch_free(eplb_incremental_scratch *s)
{
    for (int i = 0; i < s->owned_count; i++)
        free(s->owned[i]);
    memset(s, 0, sizeof *s);
}

/* Scratches given back by earlier calls, each slot empty (NULL) or owning
 * one. A slot is taken and filled by an atomic exchange, so no lock is held
 * that a fork could leave locked, and each scratch has one owner at a time. */
#define SCRATCH_POOL_SLOTS 64
static _Atomic(eplb_incremental_scratch *) scratch_pool[SCRATCH_POOL_SLOTS];

static int same_geometry(const eplb_layer_geometry *a, const eplb_layer_geometry *b)
{
    return a->experts == b->experts && a->replicas == b->replicas && a->gpus == b->gpus &&
           a->gpu_slots == b->gpu_slots && a->domains == b->domains &&
           a->domain_slots == b->domain_slots && a->domain_gpus == b->domain_gpus;
}

static void discard(eplb_incremental_scratch *s)
{
    eplb_incremental_scratch_free(s);
    free(s);
}

eplb_incremental_scratch *eplb_incremental_scratch_take(const eplb_layer_geometry *g, int avx512)
{
    for (int i = 0; i < SCRATCH_POOL_SLOTS; i++) {
        if (!atomic_load_explicit(&scratch_pool[i], memory_order_relaxed))
            continue;
        eplb_incremental_scratch *s = atomic_exchange(&scratch_pool[i], NULL);
        if (!s)
            continue;
        if (same_geometry(&s->geometry, g)) {
            /* EPLB_CPU_ISA may have changed since (the tests change it). */
            s->vector = vector_allowed(g, avx512);
            return s;
        }
        discard(s); /* the shapes planned have changed: it would only take memory */
    }
    eplb_incremental_scratch *s = malloc(sizeof *s);
    if (s && !eplb_incremental_scratch_alloc(s, g, avx512)) {
        free(s);
        s = NULL;
    }
    return s;
}

void eplb_incremental_scratch_give(eplb_incremental_scratch *s)
{
    for (int i = 0; i < SCRATCH_POOL_SLOTS; i++) {
        eplb_incremental_scratch *empty = NULL;
        if (atomic_compare_exchange_strong(&scratch_pool[i], &empty, s))
            return;
    }
    discard(s); /* more threads than slots: the pool keeps the others */
}

#if defined(__GNUC__)
/* The pool's scratches are freed when the library is unloaded or the
 * process exits, so that leak checkers find nothing left. */
__attribute__((destructor)) static void free_scratch_pool(void)
{
    for (int i = 0; i < SCRATCH_POOL_SLOTS; i++) {
        eplb_incremental_scratch *s = atomic_exchange(&scratch_pool[i], NULL);
        if (s)
            discard(s);
    }
}
#endif

void eplb_expert_loads(const float *w, const int64_t *x, const eplb_layer_geometry *g,
                       eplb_incremental_scratch *s, float *load)
{
    int32_t *count = s->tally;
    for (int64_t q = 0; q < g->replicas; q++)
        count[x[q]]++;
    /* Every expert, in a loop with no branch on whether x holds it: an
     * expert on no slot of x gets a value nobody reads, and no division by
     * 0. */
    for (int64_t e = 0; e < g->experts; e++) {
        load[e] = w[e] / (float)(count[e] > 0 ? count[e] : 1);
        count[e] = 0;
    }
}

static int compare_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

#if SEARCH_AVX512
/* The most slots per GPU the vector loads take (one register per slot). */
#define LOADS_SPG_MAX 16

/* eplb_gpu_loads for 16 GPUs at a time, lane j holding GPU j: register i
 * holds slot i of every GPU, an insertion network of min and max sorts
 * each lane across the registers, and the sums run register by register,
 * so each lane adds its GPU's slot loads in ascending order as the plain
 * sort does. Equal loads are the same float but for the two zeros, which
 * the sum from +0 cannot tell apart. */
TARGET_AVX512 static void gpu_loads_avx512(const float *u, int64_t gpus, int64_t spg,
                                           float *sorted, float *load)
{
    const __m512 empty = _mm512_set1_ps(INFINITY);
    const __m512i first = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)spg));
    for (int64_t b = 0; b < gpus; b += 16) {
        const __mmask16 m = gpus - b >= 16 ? (__mmask16)0xffff
                                           : (__mmask16)((1u << (gpus - b)) - 1);
        __m512 v[LOADS_SPG_MAX];
        for (int64_t i = 0; i < spg; i++)
            v[i] = _mm512_mask_i32gather_ps(empty, m,
                                            _mm512_add_epi32(first, _mm512_set1_epi32((int)i)),
                                            u + b * spg, 4);
        for (int64_t i = 1; i < spg; i++)
            for (int64_t j = i; j > 0; j--) {
                const __m512 lower = _mm512_min_ps(v[j - 1], v[j]);
                v[j] = _mm512_max_ps(v[j - 1], v[j]);
                v[j - 1] = lower;
            }
        /* Slots marked empty (+inf) sort last and add nothing. */
        __m512 sum = _mm512_setzero_ps();
        for (int64_t i = 0; i < spg; i++)
            sum = _mm512_mask_add_ps(sum, _mm512_cmp_ps_mask(v[i], empty, _CMP_NEQ_OQ), sum, v[i]);
        _mm512_mask_storeu_ps(load + b, m, sum);
        if (sorted)
            for (int64_t i = 0; i < spg; i++)
                _mm512_mask_i32scatter_ps(sorted + b * spg, m,
                                          _mm512_add_epi32(first, _mm512_set1_epi32((int)i)),
                                          v[i], 4);
    }
}
#endif

float eplb_gpu_load(const float *u, int64_t spg, float *sorted)
{
    if (sorted != u)
        memcpy(sorted, u, (size_t)spg * sizeof *sorted);
    /* GPUs hold a few slots each: insertion sort, unless they hold many. */
    if (spg <= 32) {
        for (int64_t i = 1; i < spg; i++) {
            float v = sorted[i];
            int64_t j = i;
            for (; j > 0 && sorted[j - 1] > v; j--)
                sorted[j] = sorted[j - 1];
            sorted[j] = v;
        }
    } else {
        qsort(sorted, (size_t)spg, sizeof *sorted, compare_float);
    }
    float load = 0.0f;
    for (int64_t i = 0; i < spg; i++)
        load += sorted[i];
    return load;
}

void eplb_gpu_loads(const float *u, int64_t gpus, int64_t spg, float *sorted, float *load,
                    eplb_incremental_scratch *s)
{
#if SEARCH_AVX512
    if (s->vector && spg <= LOADS_SPG_MAX) {
        gpu_loads_avx512(u, gpus, spg, sorted, load);
        return;
    }
#endif
    for (int64_t b = 0; b < gpus; b++) {
        /* The slots not marked empty, in order. */
        float *kept = sorted ? sorted + b * spg : s->sorted;
        int64_t n = 0;
        for (int64_t i = 0; i < spg; i++)
            if (u[b * spg + i] != INFINITY)
                kept[n++] = u[b * spg + i];
        load[b] = eplb_gpu_load(kept, n, kept);
    }
}

float eplb_layer_max_gpu_load(const float *w, const int64_t *x, const eplb_layer_geometry *g,
                              eplb_incremental_scratch *s)
{
    eplb_expert_loads(w, x, g, s, s->expert_load);
    return eplb_layer_max_gpu_load_of(s->expert_load, x, g, s);
}

float eplb_layer_max_gpu_load_of(const float *load, const int64_t *x,
                                 const eplb_layer_geometry *g, eplb_incremental_scratch *s)
{
    for (int64_t q = 0; q < g->replicas; q++)
        s->slot_load[q] = load[x[q]];
    const int64_t gd = g->domain_gpus;
    float largest = 0.0f;
    /* A domain's GPUs at a time, into the scratch's [domain GPUs] loads. */
    for (int64_t p = 0; p < g->gpus; p += gd) {
        eplb_gpu_loads(s->slot_load + p * g->gpu_slots, gd, g->gpu_slots, NULL, s->gpu_load, s);
        for (int64_t b = 0; b < gd; b++)
            if (p + b == 0 || s->gpu_load[b] > largest)
                largest = s->gpu_load[b];
    }
    return largest;
}

#if SEARCH_AVX512 && EPLB_DENSE_GROUPS_MAX == 16
/* add_overlaps in one register. */
TARGET_AVX512 static void add_overlaps_avx512(int32_t *row, const int32_t *in_old, int32_t c)
{
    const __m512i least = _mm512_min_epi32(_mm512_loadu_si512(in_old), _mm512_set1_epi32(c));
    _mm512_storeu_si512(row, _mm512_add_epi32(_mm512_loadu_si512(row), least));
}
#endif

/* row[h] += min(in_old[h], c) over a whole row of the dense table. */
static inline void add_overlaps(int32_t *restrict row, const int32_t *restrict in_old, int32_t c,
                                int vector)
{
#if SEARCH_AVX512 && EPLB_DENSE_GROUPS_MAX == 16
    if (vector) {
        add_overlaps_avx512(row, in_old, c);
        return;
    }
#endif
    (void)vector;
    for (int h = 0; h < EPLB_DENSE_GROUPS_MAX; h++)
        row[h] += in_old[h] < c ? in_old[h] : c;
}

/* The nonzero entries of ov[f][h] = overlap(src's group f, old's group h)
 * for k groups of n slots each, as pairs in ascending f (each row's in any
 * order of h); returns their count. Each expert of a group of src, with
 * its count c there, adds min(c, its count in group h of old) to entry h.
 * For few groups (dense), those counts come from a table of each expert's
 * count per group of old, a row of EPLB_DENSE_GROUPS_MAX entries (zero past
 * k) summed at once with no branches, a width the compiler makes vector
 * operations of; else from the expert's lists of slots in old, whose runs (a
 * group's slots are consecutive) each add min(run, c) to their group's
 * entry, so the work follows the slots and their replicas, not k * k * n.
 * ov: [k] zero on entry and on return. group_of: each slot's group (q /
 * n). rows, unless NULL: the dense rows go there (EPLB_DENSE_GROUPS_MAX
 * entries each) instead of into pairs, where few groups are dense. */
static size_t overlap_pairs(const int64_t *src, const int64_t *old, int64_t k, int64_t n,
                            const int32_t *group_of, eplb_incremental_scratch *s, int32_t *ov,
                            match_pair *pairs, int32_t *rows)
{
    int32_t *count = s->tally, *head = s->row_of, *next = s->next_slot, *held = s->group_count;
    const int dense = k <= EPLB_DENSE_GROUPS_MAX && held;
    for (int64_t q = k * n - 1; q >= 0; q--) {
        if (dense) {
            held[old[q] * EPLB_DENSE_GROUPS_MAX + group_of[q]]++;
        } else { /* lists of each expert's slots in old, in ascending order */
            next[q] = head[old[q]];
            head[old[q]] = (int32_t)q;
        }
    }
    size_t total = 0;
    for (int64_t f = 0; f < k; f++) {
        const int64_t *group = src + f * n;
        const size_t first = total;
        int32_t row[EPLB_DENSE_GROUPS_MAX] = {0}; /* dense: the row of overlaps */
        for (int64_t i = 0; i < n; i++)
            count[group[i]]++;
        for (int64_t i = 0; i < n; i++) {
            const int32_t c = count[group[i]];
            if (c == 0)
                continue; /* an expert met before in this group */
            count[group[i]] = 0;
            if (dense) {
                add_overlaps(row, held + group[i] * EPLB_DENSE_GROUPS_MAX, c, s->vector);
                continue;
            }
            for (int32_t q = head[group[i]]; q >= 0;) {
                const int64_t h = group_of[q];
                int32_t run = 0;
                for (; q >= 0 && group_of[q] == h; q = next[q])
                    run++;
                if (ov[h] == 0)
                    pairs[total++] = (match_pair){0, (int32_t)f, (int32_t)h};
                ov[h] += run < c ? run : c;
            }
        }
        /* This row's pairs take their overlaps, or the table of rows does. */
        if (dense && rows) {
            memcpy(rows + f * EPLB_DENSE_GROUPS_MAX, row, sizeof row);
            continue;
        }
        if (dense) {
            for (int64_t h = 0; h < k; h++) {
                pairs[total] = (match_pair){row[h], (int32_t)f, (int32_t)h};
                total += row[h] > 0;
            }
            continue;
        }
        for (size_t i = first; i < total; i++) {
            pairs[i].overlap = ov[pairs[i].to];
            ov[pairs[i].to] = 0;
        }
    }
    for (int64_t q = 0; q < k * n; q++) {
        if (dense)
            held[old[q] * EPLB_DENSE_GROUPS_MAX + group_of[q]] = 0;
        else
            head[old[q]] = -1;
    }
    return total;
}

/* The end of SPEC 13.4's greedy matching, once no free pair overlaps: the
 * free sources in ascending order to the free destinations in ascending
 * order. */
static void match_the_rest(int64_t k, int64_t *match, int64_t *taken)
{
    int64_t h = 0;
    for (int64_t f = 0; f < k; f++) {
        if (match[f] >= 0)
            continue;
        while (taken[h] >= 0)
            h++;
        match[f] = h;
        taken[h] = f;
    }
}

/* The greedy matching of SPEC 13.4 on the nonzero overlaps (pairs in
 * ascending f, each at most n), in its sorted form: the pairs by (-ov, f,
 * h), then the free sources in ascending order to the free destinations in
 * ascending order. The pairs of overlap 1, most of them when GPUs hold few
 * slots, are already in that order: only the others go through a stable
 * counting sort by overlap, which keeps each level's pairs in ascending f.
 * The pairs of one source at one level need no order of h, since the first
 * of them whose h is free, in ascending h, is the lowest free h among them.
 * match[f] = h; taken: [k]. */
static void greedy_match(const match_pair *pairs, size_t count, int64_t k, int64_t n,
                         eplb_incremental_scratch *s, int64_t *match, int64_t *taken)
{
    match_pair *sorted = (match_pair *)s->pairs + k * k;
    int32_t *start = s->by_overlap;
    memset(start, 0, (size_t)(n + 2) * sizeof *start);
    size_t high = 0;
    for (size_t i = 0; i < count; i++)
        if (pairs[i].overlap > 1) {
            start[n - pairs[i].overlap + 1]++;
            high++;
        }
    if (high) {
        for (int64_t v = 1; v <= n + 1; v++)
            start[v] += start[v - 1];
        for (size_t i = 0; i < count; i++)
            if (pairs[i].overlap > 1)
                sorted[start[n - pairs[i].overlap]++] = pairs[i];
    }
    for (int64_t i = 0; i < k; i++)
        match[i] = taken[i] = -1;
    for (size_t i = 0; i < high;) {
        const int32_t f = sorted[i].from, v = sorted[i].overlap;
        const size_t block = i;
        while (++i < high && sorted[i].from == f && sorted[i].overlap == v)
            ;
        if (match[f] >= 0)
            continue;
        int64_t h = k;
        for (size_t j = block; j < i; j++) {
            const int64_t to = sorted[j].to;
            h = taken[to] < 0 && to < h ? to : h;
        }
        if (h < k) {
            match[f] = h;
            taken[h] = f;
        }
    }
    /* Overlap 1: each source's pairs of that overlap among its own. */
    for (size_t i = 0; i < count;) {
        const int32_t f = pairs[i].from;
        const size_t block = i;
        while (++i < count && pairs[i].from == f)
            ;
        if (match[f] >= 0)
            continue;
        /* Without branches: whether a destination is free is as likely as
         * not. */
        int64_t h = k;
        for (size_t j = block; j < i; j++) {
            const int64_t to = pairs[j].to;
            const int64_t free = -(int64_t)((pairs[j].overlap == 1) & (taken[to] < 0));
            const int64_t candidate = (to & free) | (k & ~free);
            h = candidate < h ? candidate : h;
        }
        if (h < k) {
            match[f] = h;
            taken[h] = f;
        }
    }
    match_the_rest(k, match, taken);
}

/* Step 3 of SPEC 13.4: a GPU's fresh experts (src, in fresh slot order) into
 * the slots of the previous GPU (old): a slot keeps its previous expert when
 * src has it, the first occurrence leaving src; the other slots take what is
 * left of src in order. Returns the slots that kept their expert, the
 * multiset intersection of src and old, so the GPU's moves (SPEC 13.3) are
 * the others. Whether a slot keeps its expert is as likely as not, so no
 * loop branches on it: each pass counts with the test's value, lists the
 * empty slots and the experts left over, and a last loop pairs them. */
static int64_t fill_gpu(const int64_t *old, const int64_t *src, int64_t spg,
                        eplb_incremental_scratch *s, int64_t *out)
{
    int32_t *left = s->tally, *taken = s->tally2;
    int32_t *empty = s->fill_lists, *leftover = s->fill_lists + spg;
    for (int64_t i = 0; i < spg; i++)
        left[src[i]]++;
    int64_t open = 0;
    for (int64_t i = 0; i < spg; i++) {
        const int64_t e = old[i];
        const int32_t keep = left[e] > 0;
        left[e] -= keep;
        taken[e] += keep;
        /* e where kept, else -1 (all bits), by a mask: a select here
         * compiles to a branch. */
        out[i] = e | ((int64_t)keep - 1);
        empty[open] = (int32_t)i;
        open += 1 - keep;
    }
    /* What is left of src, in order: each expert without its first taken[e]
     * occurrences. */
    int64_t n = 0;
    for (int64_t i = 0; i < spg; i++) {
        const int64_t e = src[i];
        const int32_t skip = taken[e] > 0;
        taken[e] -= skip;
        leftover[n] = (int32_t)e;
        n += 1 - skip;
    }
    for (int64_t j = 0; j < open; j++)
        out[empty[j]] = leftover[j];
    for (int64_t i = 0; i < spg; i++)
        left[src[i]] = 0;
    return spg - open;
}

#if SEARCH_AVX512
/* SPEC 13.4's greedy matching of k <= EPLB_DENSE_GROUPS_MAX groups from
 * their overlaps ov[f][h] (rows of EPLB_DENSE_GROUPS_MAX, zero past k),
 * match[f] = h. Each round takes the pair of free groups with the largest
 * key, the overlap above the place in (f, h) order, so that larger
 * overlaps, then lower f, then lower h come first: a row's maximum over
 * the free columns in one operation. When no free pair overlaps, the free
 * sources go in ascending order to the free destinations in ascending
 * order. */
TARGET_AVX512 static void match_dense_avx512(const int32_t *ov, int64_t k, int64_t *match,
                                             int64_t *taken)
{
    const __m512i column = _mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i key[EPLB_DENSE_GROUPS_MAX];
    for (int64_t f = 0; f < k; f++) {
        const __m512i row = _mm512_loadu_si512(ov + f * EPLB_DENSE_GROUPS_MAX);
        const __m512i place = _mm512_or_si512(_mm512_set1_epi32((int)(15 - f) << 4), column);
        key[f] = _mm512_maskz_or_epi32(_mm512_cmpgt_epi32_mask(row, _mm512_setzero_si512()),
                                       _mm512_slli_epi32(row, 8), place);
    }
    for (int64_t i = 0; i < k; i++)
        match[i] = taken[i] = -1;
    uint32_t free_rows = (1u << k) - 1;
    __mmask16 free_columns = (__mmask16)free_rows;
    for (;;) {
        __m512i most = _mm512_setzero_si512();
        for (int64_t f = 0; f < k; f++) {
            const __mmask16 open = (__mmask16)(free_columns & -(free_rows >> f & 1u));
            most = _mm512_mask_max_epu32(most, open, most, key[f]);
        }
        const uint32_t best = _mm512_reduce_max_epu32(most);
        if (!best)
            break;
        const int64_t f = 15 - (best >> 4 & 15), h = 15 - (best & 15);
        match[f] = h;
        taken[h] = f;
        free_rows &= ~(1u << f);
        free_columns &= (__mmask16) ~(1u << h);
    }
    match_the_rest(k, match, taken);
}
#endif

#if SEARCH_AVX512
/* SPEC 13.4's greedy matching for more than EPLB_DENSE_GROUPS_MAX groups
 * (a node of many GPUs) of few slots each, match[f] = h. A table of each
 * expert's count per group of old (bytes, rows of width entries, zero
 * between uses) gives each row of overlaps 16 groups at a time, with no
 * branch on the data; each row is kept (bytes) with the set of overlap
 * values it holds. The sorted form of the matching then goes level by
 * level from the largest overlap down: at each level the free sources
 * holding it, in ascending order, each take the lowest free destination of
 * that overlap, found from a mask of the row's entries equal to it. */
TARGET_AVX512 static void match_wide_avx512(const int64_t *src, const int64_t *old, int64_t k,
                                            int64_t n, const int32_t *group_of,
                                            eplb_incremental_scratch *s, int64_t *match,
                                            int64_t *taken)
{
    const int64_t width = (k + 15) / 16 * 16, chunks = width / 16, words = (k + 63) / 64;
    uint8_t *held = s->wide_count, *rows = s->wide_rows;
    int32_t *count = s->tally;
    for (int64_t q = 0; q < k * n; q++)
        held[old[q] * width + group_of[q]]++;
    /* at_level[v]: the sources whose row holds overlap v, a bit each. */
    uint64_t at_level[WIDE_SLOTS_MAX + 1][WIDE_GROUPS_MAX / 64] = {{0}};
    const __m512i one = _mm512_set1_epi32(1);
    for (int64_t f = 0; f < k; f++) {
        const int64_t *group = src + f * n;
        /* Each expert's count in the group at its first slot, 0 at the
         * others, so that each expert adds its overlaps once; and its row
         * of the table. */
        int32_t first_count[WIDE_SLOTS_MAX];
        const uint8_t *in_old[WIDE_SLOTS_MAX];
        for (int64_t i = 0; i < n; i++)
            count[group[i]]++;
        for (int64_t i = 0; i < n; i++) {
            first_count[i] = count[group[i]];
            count[group[i]] = 0;
            in_old[i] = held + group[i] * width;
        }
        __m512i levels = _mm512_setzero_si512();
        for (int64_t c = 0; c < chunks; c++) {
            __m512i row = _mm512_setzero_si512();
            for (int64_t i = 0; i < n; i++) {
                const __m128i entries = _mm_loadu_si128((const __m128i *)(in_old[i] + 16 * c));
                row = _mm512_add_epi32(row, _mm512_min_epi32(_mm512_cvtepu8_epi32(entries),
                                                             _mm512_set1_epi32(first_count[i])));
            }
            _mm_storeu_si128((__m128i *)(rows + f * width + 16 * c), _mm512_cvtepi32_epi8(row));
            levels = _mm512_or_si512(levels, _mm512_sllv_epi32(one, row));
        }
        for (uint32_t v = (uint32_t)_mm512_reduce_or_epi32(levels) & ~1u; v; v &= v - 1)
            at_level[__builtin_ctz(v)][f / 64] |= (uint64_t)1 << (f % 64);
    }
    for (int64_t q = 0; q < k * n; q++)
        held[old[q] * width + group_of[q]] = 0;
    uint64_t free_rows[WIDE_GROUPS_MAX / 64], free_columns[WIDE_GROUPS_MAX / 64];
    for (int64_t w = 0; w < words; w++)
        free_rows[w] = free_columns[w] = k - 64 * w >= 64 ? ~(uint64_t)0
                                                          : ((uint64_t)1 << (k - 64 * w)) - 1;
    for (int64_t i = 0; i < k; i++)
        match[i] = taken[i] = -1;
    for (int64_t v = n; v >= 1; v--) {
        const __m512i level = _mm512_set1_epi32((int)v);
        for (int64_t w = 0; w < words; w++)
            for (uint64_t todo = at_level[v][w] & free_rows[w]; todo; todo &= todo - 1) {
                const int64_t f = 64 * w + __builtin_ctzll(todo);
                uint64_t equal[WIDE_GROUPS_MAX / 64] = {0};
                for (int64_t c = 0; c < chunks; c++) {
                    const __m128i entries = _mm_loadu_si128((const __m128i *)(rows + f * width + 16 * c));
                    equal[c / 4] |= (uint64_t)_mm512_cmpeq_epi32_mask(_mm512_cvtepu8_epi32(entries),
                                                                       level)
                                    << (16 * (c % 4));
                }
                for (int64_t x = 0; x < words; x++) {
                    const uint64_t open = equal[x] & free_columns[x];
                    if (open) {
                        const int64_t h = 64 * x + __builtin_ctzll(open);
                        match[f] = h;
                        taken[h] = f;
                        free_rows[w] &= ~((uint64_t)1 << (f % 64));
                        free_columns[x] &= ~((uint64_t)1 << (h % 64));
                        break;
                    }
                }
            }
    }
    match_the_rest(k, match, taken);
}
#endif

/* Steps 1 and 2 of SPEC 13.4 for k groups of n slots: src's groups
 * matched to old's (match[f] = h). Few groups, with AVX-512, take the
 * matching straight from the table of overlaps; more groups of few slots
 * take it level by level from a table of their overlaps. taken: [k]. */
static void match_groups(const int64_t *src, const int64_t *old, int64_t k, int64_t n,
                         const int32_t *group_of, eplb_incremental_scratch *s, int64_t *match,
                         int64_t *taken)
{
#if SEARCH_AVX512
    if (s->vector && k <= EPLB_DENSE_GROUPS_MAX && s->group_count && n < (int64_t)1 << 23) {
        overlap_pairs(src, old, k, n, group_of, s, s->overlap, s->pairs, s->dense_overlaps);
        match_dense_avx512(s->dense_overlaps, k, match, taken);
        return;
    }
    if (s->vector && k <= WIDE_GROUPS_MAX && n <= WIDE_SLOTS_MAX && s->wide_count) {
        match_wide_avx512(src, old, k, n, group_of, s, match, taken);
        return;
    }
#endif
    const size_t count = overlap_pairs(src, old, k, n, group_of, s, s->overlap, s->pairs, NULL);
    greedy_match(s->pairs, count, k, n, s, match, taken);
}

void eplb_relabel_layer(const int64_t *prev, const int64_t *fresh, const eplb_layer_geometry *g,
                        eplb_incremental_scratch *s, int64_t *rel, int64_t *moves)
{
    const int64_t K = g->domains, gpn = g->domain_gpus, rn = g->domain_slots, spg = g->gpu_slots;
    const int64_t k = K > gpn ? K : gpn;
    int64_t *gpu_match = s->match, *taken = s->match + k, *node_match = s->match + 2 * k;
    if (K > 1)
        match_groups(fresh, prev, K, rn, s->domain_of, s, node_match, taken);
    else
        node_match[0] = 0;
    for (int64_t a = 0; a < K; a++) {
        const int64_t b = node_match[a];
        const int64_t *src = fresh + a * rn, *old = prev + b * rn;
        match_groups(src, old, gpn, spg, s->gpu_of, s, gpu_match, taken);
        moves[b] = 0;
        for (int64_t f = 0; f < gpn; f++) {
            const int64_t h = gpu_match[f];
            moves[b] += spg - fill_gpu(old + h * spg, src + f * spg, spg, s, rel + b * rn + h * spg);
        }
    }
}
