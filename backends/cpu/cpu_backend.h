/* The cpu backend's stages, one file each; OpenMP across rows and candidates.
 * Every loop body handles one row or one (row, candidate) packing, so the
 * result is the same for any thread count. */
#ifndef EPLB_CPU_BACKEND_H
#define EPLB_CPU_BACKEND_H

#include "backend.h"

/* Per-thread scratch for one packing at a time, sized for a job. */
typedef struct eplb_cpu_scratch {
    uint32_t *key;   /* [3n] keys, keys in bucket order, radix sort buffer */
    int32_t *order;  /* [n] the radix sort's second order buffer */
    int32_t *bucket; /* [2n + 2] bucket boundaries of the sort */
    float *load;     /* [m + 16] pack loads, then the greedy's +inf padding */
    float *block_min; /* [(m + 16) / 4] the greedy's minimum of each block of four loads */
    int32_t *count;  /* [m] items per pack */
    int32_t *tree;   /* [2 * 2^ceil(log2 m)] tournament tree of open packs */
    float *wa, *wb;  /* [k] weights of the heaviest and lightest pack's items */
    void *block;     /* the single allocation behind all of the above */
} eplb_cpu_scratch;

eplb_status eplb_cpu_scratch_init(eplb_cpu_scratch *scratch, const eplb_pack_job *job);
void eplb_cpu_scratch_free(eplb_cpu_scratch *scratch);

/* One packing candidate, stage by stage (row x, candidate c). */
void eplb_cpu_sort_one(const eplb_pack_job *job, int64_t row, int64_t candidate, int32_t *order,
                       eplb_cpu_scratch *scratch);
void eplb_cpu_greedy_one(const eplb_pack_job *job, int64_t row, const int32_t *order,
                         int32_t *content, eplb_cpu_scratch *scratch);
void eplb_cpu_swap_one(const eplb_pack_job *job, int64_t row, int32_t *content,
                       eplb_cpu_scratch *scratch);
void eplb_cpu_select_row(const eplb_pack_job *job, int64_t row);

/* Runs one_packing for every (row, candidate) of job across the OpenMP
 * threads, each with its own scratch: the separate-stage entry points. */
typedef void (*eplb_cpu_packing_fn)(const eplb_pack_job *job, int64_t row, int64_t candidate,
                                    eplb_cpu_scratch *scratch);
eplb_status eplb_cpu_for_each_packing(eplb_backend *backend, const eplb_pack_job *job,
                                      eplb_cpu_packing_fn one_packing, const char *stage);

eplb_status eplb_cpu_pack_fused(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_swap(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_cpu_pack_select(eplb_backend *backend, const eplb_pack_job *job);

eplb_status eplb_cpu_group_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_node_layout(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_replicate(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_slot_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_cpu_assemble(eplb_backend *backend, const eplb_plan_job *job);

/* Below about this many element operations a loop runs on the calling
 * thread: waking the OpenMP team costs more than the work (tiny plans, the
 * registry's self-test), and spinning teams hurt on a busy machine. */
#define EPLB_CPU_PARALLEL_MIN_WORK 32768
#define EPLB_CPU_WORTH_THREADS(work) ((int64_t)(work) >= EPLB_CPU_PARALLEL_MIN_WORK)

/* Load of pack p of one packing: its items' weights summed in slot order
 * (SPEC 6.3), shared by swap and select. */
static inline float eplb_cpu_pack_load(const float *weight, const int32_t *content, int32_t p,
                                       int32_t per_pack)
{
    float load = 0.0f;
    for (int32_t r = 0; r < per_pack; r++)
        load += weight[content[p * per_pack + r]];
    return load;
}

#endif /* EPLB_CPU_BACKEND_H */
