/* The incremental rebalance of docs/spec.md section 13, run on the host after
 * the ordinary (fresh) plan: the move counts of 13.3 (moves.c), the
 * relabelled fresh plan of 13.4 (incremental_relabel.c) and the anchored
 * start of 13.6 (incremental_anchor.c), the swap search of 13.5
 * (incremental_search.c, its AVX-512 scans in incremental_avx512.c), and
 * the per-layer choice with the public call's checks and outputs
 * (incremental.c). Expert ids are int64, as in the public phy2log. */
#ifndef EPLB_INCREMENTAL_H
#define EPLB_INCREMENTAL_H

#include <stdint.h>

#include "context.h"
#include "eplb/eplb.h"

/* The most groups (nodes or GPUs) whose overlaps in the relabelling (SPEC
 * 13.4) come from a table of each expert's count per group rather than
 * from lists of its slots. */
#define EPLB_DENSE_GROUPS_MAX 16

/* The most entries (experts times a domain's GPUs) of the search's table of
 * excess per expert and GPU. */
#define EPLB_EXCESS_TABLE_MAX ((int64_t)1 << 18)

/* The geometry of one layer's incremental plan. A domain is a node under the
 * hierarchical policy and the whole layer under the global one (SPEC 13.1). */
typedef struct eplb_layer_geometry {
    int64_t experts;        /* E */
    int64_t replicas;       /* R */
    int64_t gpus;           /* P */
    int64_t gpu_slots;      /* spg = R / P */
    int64_t domains;        /* N (hierarchical) or 1 (global) */
    int64_t domain_slots;   /* R / domains */
    int64_t domain_gpus;    /* P / domains */
} eplb_layer_geometry;

/* What the swap search knows of one GPU's slots in a step: their lightest
 * and heaviest slot load, and the cheapest arrival cost at the heaviest GPU. */
typedef struct eplb_gpu_bounds {
    float lowest, highest;
    int32_t cheapest;
} eplb_gpu_bounds;

/* Working memory of one layer at a time, owned by one thread. The int32
 * arrays indexed by expert (tally, tally2) are all zero between uses, and
 * row_of, cur_head and base_head are all -1, so that each use costs the
 * slots it touches, not E. */
typedef struct eplb_incremental_scratch {
    int32_t *tally;        /* [E] */
    int32_t *tally2;       /* [E] */
    int32_t *row_of;       /* [E] */
    int64_t *relabelled;   /* [R] rel of SPEC 13.4 */
    int64_t *anchored;     /* [R] the anchored start of SPEC 13.6 */
    int64_t *kept;         /* [R] each domain's search from the previous plan */
    int64_t *moved;        /* [R] each domain's search from the anchored start */
    float *slot_load;      /* [R] */
    float *expert_load;    /* [2][E] each expert's slot load (SPEC 13.2) with the fresh plan's
                            * counts (rel's and the anchored start's too), then with prev's */
    float *start_load;     /* [2][R] the slot loads of kept and moved, each with its own counts */
    float *sorted;         /* [spg] */
    float *gpu_sorted;     /* [domain slots] each GPU's slot loads in ascending order */
    float *gpu_load;       /* [domain GPUs] */
    int32_t *own_excess;   /* [domain slots] */
    int32_t *arrival_cost; /* [domain slots] */
    eplb_gpu_bounds *gpu_bounds; /* [domain GPUs] */
    float *slot_gpu_load;  /* [domain slots]: the load of each slot's GPU */
    int32_t *gpu_of;       /* [domain slots]: each slot's GPU in the domain */
    int32_t *domain_of;    /* [R]: each slot's domain */
    int32_t *cur_head;     /* [E] each expert's first slot in the domain now, or -1 */
    int32_t *base_head;    /* [E] the same in the previous plan */
    int32_t *cur_next;     /* [domain slots] the next slot of the same expert, or -1 */
    int32_t *base_next;    /* [domain slots] */
    int32_t *away_excess;  /* [spg][domain GPUs] */
    /* [E][domain GPUs]: held - base of each expert on each GPU of the
     * domain, kept by the vector search from trade to trade so that a
     * step's rows of away_excess are copies; zero between uses; NULL when
     * E * domain GPUs exceeds EPLB_EXCESS_TABLE_MAX (then each step counts
     * them from the experts' lists of slots). */
    int32_t *excess_table;
    int32_t *away_row;     /* [spg] */
    int32_t *fill_lists;   /* [2 * spg] the relabelling's empty slots of a GPU and the experts left for them */
    /* The domain's slots in ascending order of their slot load's bucket
     * (load_bucket), for the vector scan, with what it reads of each beside it; order_pos[q] is slot q's
     * place. [domain slots] each. */
    float *order_u;
    int32_t *order_slot;
    int32_t *order_gpu;
    float *order_load;     /* the load of the slot's GPU */
    int32_t *order_arrival; /* arrival_cost of the slot */
    int32_t *order_pos;
    uint32_t *order_bucket; /* each place's load_bucket */
    int32_t *order_end;    /* the place just past each place's bucket */
    uint32_t *order_tmp;   /* [4 * domain slots] the sort's keys and slots */
    int32_t *overlap;      /* [k], k = max(domains, domain GPUs): one row of overlaps, zero between uses */
    /* [EPLB_DENSE_GROUPS_MAX][EPLB_DENSE_GROUPS_MAX] the overlaps of few groups */
    int32_t *dense_overlaps;
    int32_t *group_count;  /* [E][EPLB_DENSE_GROUPS_MAX] each expert's slots per group, zero between uses; NULL when k or E is large */
    /* [E][width] and [k][width], width = k rounded up to 16: each expert's slots per group,
     * zero between uses, and the overlaps, for more groups than the dense table takes; NULL
     * when k is at most EPLB_DENSE_GROUPS_MAX or large, or E large. */
    uint8_t *wide_count;
    uint8_t *wide_rows;
    void *pairs;           /* [2 * k * k] pairs of the greedy matching, and their sorted copy */
    int32_t *next_slot;    /* [R] the next slot of the same expert */
    int32_t *by_overlap;   /* [domain slots + 2] pairs per overlap, for the counting sort */
    int64_t *match;        /* [k] */
    uint64_t *rest;        /* [domain slots] the anchored start's experts to place, as keys */
    int64_t *cursor;       /* [domain GPUs] */
    int32_t *anchor_free;  /* [domain slots] the anchored start's free slots of a domain, in order */
    int32_t *anchor_free_end; /* [domain GPUs] where each GPU's free slots end in anchor_free */
    int64_t *domain_options; /* [domains][5]: moves of kept, anchored, fresh; changed; same start */
    int64_t *fresh_moves;  /* [domains] the moves of each domain in rel */
    int64_t *anchored_moves; /* [domains] the same in the anchored start */
    int vector;            /* whether AVX-512 code may run (set by the allocation) */
    eplb_layer_geometry geometry; /* the geometry it was allocated for */
    void *owned[56];       /* every array above, for the free */
    int owned_count;
} eplb_incremental_scratch;

/* Allocates a scratch for the geometry, whose searches use AVX-512 where
 * avx512 (eplb_cpu_host_avx512) and the geometry allow; 0 when memory runs
 * out (then everything is freed). */
int eplb_incremental_scratch_alloc(eplb_incremental_scratch *s, const eplb_layer_geometry *g,
                                   int avx512);
void eplb_incremental_scratch_free(eplb_incremental_scratch *s);

/* A scratch for the geometry, one that an earlier call gave back when there
 * is one (a new one in a thread's arena would cost its page faults again on
 * every call), else a new one; NULL when memory runs out. */
eplb_incremental_scratch *eplb_incremental_scratch_take(const eplb_layer_geometry *g, int avx512);

/* Gives a scratch of eplb_incremental_scratch_take back for later calls. */
void eplb_incremental_scratch_give(eplb_incremental_scratch *s);

/* SPEC 13.2: load[e] = w[e] / cnt[e] for each expert e of the layer x, cnt
 * counted in x (the others, on no slot, get w[e]: load has E entries), so
 * that placements of the same counts look their slot loads up instead of
 * dividing again. */
void eplb_expert_loads(const float *w, const int64_t *x, const eplb_layer_geometry *g,
                       eplb_incremental_scratch *s, float *load);

/* SPEC 13.2: a GPU's load, the float32 sum of its spg slot loads in
 * ascending order of value from +0; sorted receives them in that order (it
 * may be u itself). */
float eplb_gpu_load(const float *u, int64_t spg, float *sorted);

/* eplb_gpu_load for `gpus` consecutive GPUs of spg slots each: load[b] for
 * the slots b*spg .. b*spg+spg-1 of u, a slot load of +inf marking an empty
 * slot (real slot loads are finite: the weights are); sorted, unless NULL,
 * receives each GPU's slot loads in ascending order in its own slots. */
void eplb_gpu_loads(const float *u, int64_t gpus, int64_t spg, float *sorted, float *load,
                    eplb_incremental_scratch *s);

/* The largest GPU load (SPEC 13.2) of a whole layer x, with x's own counts. */
float eplb_layer_max_gpu_load(const float *w, const int64_t *x, const eplb_layer_geometry *g,
                              eplb_incremental_scratch *s);

/* The same from each expert's slot load with x's counts (eplb_expert_loads). */
float eplb_layer_max_gpu_load_of(const float *load, const int64_t *x,
                                 const eplb_layer_geometry *g, eplb_incremental_scratch *s);

/* SPEC 13.4: rel, the fresh layer's GPUs renumbered to overlap prev, and
 * moves[d], the moves of domain d in rel (SPEC 13.3). */
void eplb_relabel_layer(const int64_t *prev, const int64_t *fresh, const eplb_layer_geometry *g,
                        eplb_incremental_scratch *s, int64_t *rel, int64_t *moves);

/* SPEC 13.6: the anchored start of the whole layer, from rel, and
 * moves[d], the moves of domain d in it (SPEC 13.3). load: each expert's
 * slot load with rel's counts (eplb_expert_loads). */
void eplb_anchored_start(const float *load, const int64_t *prev, const int64_t *rel,
                         const eplb_layer_geometry *g, eplb_incremental_scratch *s,
                         int64_t *start, int64_t *moves);

/* SPEC 13.5: the search of domain d. x is the whole start placement; the
 * domain's slots of x are searched in place (the others are read for the
 * counts only); u: the slot loads of x (its own counts), permuted with the
 * slots. start_moves: the domain's moves in x (SPEC 13.3); limit: those
 * in rel. Returns 1 when the search met the target T, with *moves the
 * domain's moves then, else 0. */
int eplb_domain_search(const int64_t *prev, int64_t *x, float *u, int64_t d, float target,
                       int64_t start_moves, int64_t limit, const eplb_layer_geometry *g,
                       eplb_incremental_scratch *s, int64_t *moves);

/* Behind eplb_rebalance_incremental (ctx checked and its error cleared). */
eplb_status eplb_incremental_host(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                                  const eplb_options *options, const int64_t *previous,
                                  int64_t *phy2log, int64_t *logcnt, int64_t *log2phy,
                                  int64_t log2phy_width, int64_t *width_needed);

#endif /* EPLB_INCREMENTAL_H */
