/* The cpu backend's stages, one file each (SPEC sections 4 to 6), and the
 * fused paths that chain them a row or a layer at a time. Every loop body
 * handles one row or one (row, candidate) packing, so the result is the same
 * for any thread count. The stages call the runtime (cpu_runtime.h) and each
 * other, never the entry table (cpu_backend.c). */
#ifndef EPLB_CPU_STAGES_H
#define EPLB_CPU_STAGES_H

#include "cpu_runtime.h"

/* The most packs for which the greedy steps a row's candidates in lockstep
 * (its per-lane state then fits in cache beside the others'). */
#define EPLB_CPU_LOCKSTEP_MAX 512

/* One packing candidate, stage by stage (row x, candidate c). */
void eplb_cpu_sort_one(const eplb_pack_job *job, int64_t row, int64_t candidate, int32_t *order,
                       eplb_cpu_scratch *scratch);
/* Greedy for candidates first .. first+lanes-1 (lanes <= EPLB_CPU_LANES) of a
 * row, side by side, from scratch->order_row into scratch->content_row;
 * loads[j] receives lane j's pack loads, each summed in slot order as SPEC
 * 6.3 recomputes them. */
void eplb_cpu_greedy_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                         float *const *loads, eplb_cpu_scratch *scratch);
/* eplb_cpu_greedy_row for the same lanes of two rows of job, row[i] with
 * scratch[i] and loads[i], stepped side by side where the greedy across
 * lanes or the keyed vertical greedy runs both (the same results as one row
 * at a time). */
void eplb_cpu_greedy_row_pair(const eplb_pack_job *job, const int64_t *row, int32_t first,
                              int32_t lanes, float *const *const *loads,
                              eplb_cpu_scratch *const *scratch);
/* Whether eplb_cpu_greedy_row_pair steps the rows of job side by side with
 * these settings (rows whose sums stay finite). */
int eplb_cpu_greedy_pairs_rows(const eplb_pack_job *job, const eplb_cpu_settings *settings);
/* Whether it steps them side by side with the vertical greedy (rows of few
 * packs whose sums stay finite): the node rows of a hierarchical layer. */
int eplb_cpu_greedy_pairs_vertical(const eplb_pack_job *job, const eplb_cpu_settings *settings);
/* The floats of scratch->lanes that eplb_cpu_greedy_row needs. */
size_t eplb_cpu_greedy_lanes_words(int32_t items, int32_t packs);

/* Keys of the AVX-512 greedy variants: where the pack number starts in a
 * key, below it the pack's item count; packs stay below 2^12
 * (EPLB_CPU_LOCKSTEP_MAX), counts below 2^20. */
#define EPLB_CPU_KEY_PACK_SHIFT 20
#define EPLB_CPU_KEY_COUNT_LIMIT (1 << EPLB_CPU_KEY_PACK_SHIFT)
/* The most packs of the vertical greedy (cpu_greedy_vertical.c). */
#define EPLB_CPU_VERTICAL_MAX 16
#if EPLB_CPU_X86_DISPATCH
/* The vertical greedy of eplb_cpu_greedy_row's lanes first .. first+lanes-1
 * of S rows (S = 1 or 2, side by side on an AVX-512 machine): row[i] with
 * scratch[i], its loads into loads[i]; for rows of at most
 * EPLB_CPU_VERTICAL_MAX packs whose sums stay finite, on an AVX2 machine.
 * And the floats of scratch->lanes that it needs. */
void eplb_cpu_greedy_vertical(const eplb_pack_job *job, const int64_t *row, int32_t S, int32_t first,
                              int32_t lanes, float *const *const *loads, eplb_cpu_scratch *const *scratch);
size_t eplb_cpu_greedy_vertical_words(int32_t items);
/* The most packs of the greedy across lanes (cpu_greedy_across.c). */
#define EPLB_CPU_ACROSS_MAX 128
/* The greedy across lanes of eplb_cpu_greedy_row's lanes first ..
 * first+lanes-1 of S rows (S = 1 or 2): row[i] with scratch[i], its loads
 * into loads[i]; for 17 to EPLB_CPU_ACROSS_MAX packs whose row sums stay
 * finite, on an AVX-512 machine. And the floats of scratch->lanes that it
 * needs: items, weights and slots of every step and lane, and eight lanes'
 * keys, alignment included. */
void eplb_cpu_greedy_across(const eplb_pack_job *job, const int64_t *row, int32_t S, int32_t first,
                            int32_t lanes, float *const *const *loads, eplb_cpu_scratch *const *scratch);
size_t eplb_cpu_greedy_across_words(int32_t items);
#endif
/* Swap search for candidates first .. first+lanes-1 of a row, iteration by
 * iteration across them; loads[j] holds lane j's pack loads (slot-order sums,
 * as eplb_cpu_greedy_row leaves them) and is kept up to date. Each
 * candidate's score, its maximum load, goes to scratch->score[candidate]. */
void eplb_cpu_swap_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                       float *const *loads, eplb_cpu_scratch *scratch);
/* Writes pack_of / rank_of of a row from the candidate with the lowest
 * score (ties: lowest candidate) of the row's C contents; score NULL: scores
 * recomputed. */
void eplb_cpu_select_row(const eplb_pack_job *job, int64_t row, const int32_t *content_row,
                         const float *score);

/* Sort, greedy, swap and select for every candidate of one row. */
void eplb_cpu_pack_row(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch);
/* The same for two rows, row[i] with scratch[i], their greedy steps side by
 * side (eplb_cpu_greedy_row_pair). */
void eplb_cpu_pack_row_pair(const eplb_pack_job *job, const int64_t *row,
                            eplb_cpu_scratch *const *scratch);

/* The stages as the backend interface runs them, one pass each. */
eplb_status eplb_cpu_plan_fused(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_swap(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_select(eplb_backend *backend, const eplb_pack_job *job);

eplb_status eplb_cpu_group_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_node_layout(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_replicate(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_slot_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_assemble(eplb_backend *backend, const eplb_plan_job *job);
/* The refine search of SPEC 10 on every row of the slot packing, and SPEC
 * 11.5's restore (cpu_refine.c). */
eplb_status eplb_cpu_refine(eplb_backend *backend, const eplb_plan_job *job);
/* The cap and repair of SPEC 11.3-11.4 on every row (cpu_distinct.c). */
eplb_status eplb_cpu_distinct(eplb_backend *backend, const eplb_plan_job *job);

/* The glue stages for one layer (or one row x = l*N + n of a node), shared by
 * the stage entry points above and the per-layer plan_fused. */
void eplb_cpu_group_loads_layer(const eplb_plan_job *job, int64_t l);
void eplb_cpu_node_layout_layer(const eplb_plan_job *job, int64_t l);
/* Replicates row x with value[eplb_cpu_replicate_words(M)] and heap[M] as
 * scratch, with vector code up to level isa; returns 1 if a count exceeds
 * the log2phy width (log2phy set). */
int eplb_cpu_replicate_row(const eplb_plan_job *job, int64_t x, float *value, int32_t *heap,
                           int isa);
size_t eplb_cpu_replicate_words(int32_t n);
/* eplb_cpu_replicate_row for rows x[0] and x[1], side by side where both
 * replicate by the same vector code; returns 1 if a count of either exceeds
 * the log2phy width. */
int eplb_cpu_replicate_row_pair(const eplb_plan_job *job, const int64_t *x, float *value,
                                int32_t *heap, int isa);
void eplb_cpu_slot_loads_row(const eplb_plan_job *job, int64_t x);
void eplb_cpu_assemble_layer(const eplb_plan_job *job, int64_t l);

/* Load of pack p of one packing: its items' weights summed in slot order
 * (SPEC 6.3), shared by greedy, swap and select. */
static inline float eplb_cpu_pack_load(const float *weight, const int32_t *content, int32_t p,
                                       int32_t per_pack)
{
    float load = 0.0f;
    for (int32_t r = 0; r < per_pack; r++)
        load += weight[content[p * per_pack + r]];
    return load;
}

/* A GPU's load in a row (SPEC 10.1): its k slot loads summed left to right
 * in position order; shared by refine and distinct. */
static inline float eplb_cpu_gpu_load(const float *t_gpu, int32_t k)
{
    float sum = t_gpu[0];
    for (int32_t r = 1; r < k; r++)
        sum += t_gpu[r];
    return sum;
}

#endif /* EPLB_CPU_STAGES_H */
