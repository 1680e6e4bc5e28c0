/* The four packing stages back to back for one row (all its candidates), as
 * cpu_plan_fused.c calls it: each candidate's order and content stay in
 * cache between stages. The greedy runs EPLB_CPU_LANES
 * candidates in lockstep and hands its pack loads to the swap, which hands
 * its scores to select. Same results as the separate stages
 * (EPLB_TUNE_CPU_STAGES=separate selects those, for tests). */
#include "cpu_stages.h"

/* Points scratch at the row's orders and contents, and loads[j] at lane j's
 * pack loads. */
static void row_begin(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch,
                      float **loads)
{
    /* The row's orders and contents stay in this thread's cache (scratch)
     * unless they are too large; the fused stage need not fill the job's. */
    if (scratch->own_order) {
        scratch->order_row = scratch->own_order;
        scratch->content_row = scratch->own_content;
    } else {
        eplb_cpu_use_job_rows(scratch, job, row);
    }
    for (int32_t j = 0; j < EPLB_CPU_LANES; j++)
        loads[j] = scratch->lane_load + (size_t)j * (size_t)job->packs;
}

static void sort_lanes(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                       eplb_cpu_scratch *scratch)
{
    int32_t *order_row = (int32_t *)scratch->order_row;
    for (int32_t c = first; c < first + lanes; c++)
        eplb_cpu_sort_one(job, row, c, order_row + (int64_t)c * job->items, scratch);
}

void eplb_cpu_pack_row(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch)
{
    const int32_t C = job->candidates;
    float *loads[EPLB_CPU_LANES];
    row_begin(job, row, scratch, loads);
    for (int32_t first = 0; first < C; first += EPLB_CPU_LANES) {
        const int32_t lanes = C - first < EPLB_CPU_LANES ? C - first : EPLB_CPU_LANES;
        sort_lanes(job, row, first, lanes, scratch);
        eplb_cpu_greedy_row(job, row, first, lanes, loads, scratch);
        /* The greedy's loads are the slot-order sums the swap starts from,
         * and the swap keeps them exact: no recomputation. */
        eplb_cpu_swap_row(job, row, first, lanes, loads, scratch);
    }
    eplb_cpu_select_row(job, row, scratch->content_row, scratch->score);
}

void eplb_cpu_pack_row_pair(const eplb_pack_job *job, const int64_t *row,
                            eplb_cpu_scratch *const *scratch)
{
    const int32_t C = job->candidates;
    float *loads[2][EPLB_CPU_LANES];
    float *const *lane_loads[2] = {loads[0], loads[1]};
    for (int32_t i = 0; i < 2; i++)
        row_begin(job, row[i], scratch[i], loads[i]);
    for (int32_t first = 0; first < C; first += EPLB_CPU_LANES) {
        const int32_t lanes = C - first < EPLB_CPU_LANES ? C - first : EPLB_CPU_LANES;
        for (int32_t i = 0; i < 2; i++)
            sort_lanes(job, row[i], first, lanes, scratch[i]);
        eplb_cpu_greedy_row_pair(job, row, first, lanes, lane_loads, scratch);
        for (int32_t i = 0; i < 2; i++)
            eplb_cpu_swap_row(job, row[i], first, lanes, loads[i], scratch[i]);
    }
    for (int32_t i = 0; i < 2; i++)
        eplb_cpu_select_row(job, row[i], scratch[i]->content_row, scratch[i]->score);
}
