/* The cpu backend's stages, one file each; OpenMP across rows and candidates.
 * Every loop body handles one row or one (row, candidate) packing, so the
 * result is the same for any thread count. */
#ifndef EPLB_CPU_BACKEND_H
#define EPLB_CPU_BACKEND_H

#include "backend.h"

/* x86-64 builds use SSE2 (the baseline); EPLB_CPU_NO_SIMD forces the portable
 * C paths that other machines run, so tests can cover them on x86 too. */
#if defined(__SSE2__) && !defined(EPLB_CPU_NO_SIMD)
#define EPLB_CPU_SSE2 1
#endif

/* x86-64 builds with GCC or Clang also carry AVX2 and AVX-512 versions of the
 * hottest loops, picked at run time from what the machine supports, capped
 * by EPLB_CPU_ISA=sse2|avx2 (so tests cover every level on one machine). */
#if EPLB_CPU_SSE2 && defined(__x86_64__) && defined(__GNUC__)
#define EPLB_CPU_X86_DISPATCH 1
#define EPLB_CPU_TARGET_AVX2 __attribute__((target("avx2")))
#define EPLB_CPU_TARGET_AVX512 __attribute__((target("avx512f")))
enum { EPLB_CPU_ISA_SSE2, EPLB_CPU_ISA_AVX2, EPLB_CPU_ISA_AVX512 };
/* The highest level both the machine and EPLB_CPU_ISA allow (read once). */
int eplb_cpu_isa(void);
static inline int eplb_cpu_has_avx2(void) { return eplb_cpu_isa() >= EPLB_CPU_ISA_AVX2; }
/* AVX-512 F, DQ and VL: the paths that use it need all three. */
static inline int eplb_cpu_has_avx512(void) { return eplb_cpu_isa() >= EPLB_CPU_ISA_AVX512; }
#endif

/* Candidates of a row that the greedy steps in lockstep, and the most packs
 * for which it does (its block search keeps one bit per block of 8 in 64 bits). */
#define EPLB_CPU_LANES 8
#define EPLB_CPU_LOCKSTEP_MAX 512

/* Per-thread scratch for one packing at a time, sized for a job. */
typedef struct eplb_cpu_scratch {
    uint64_t *pair;  /* [n rounded up to 8] (key << 32 | item) of the sort's single-pass finish */
    uint32_t *key;   /* [3n] keys, keys in bucket order, radix sort buffer */
    int32_t *order;  /* [n] the radix sort's second order buffer */
    int32_t *bucket; /* [4n + 2] bucket boundaries of the sort */
    float *load;     /* [m + 16] pack loads, then the greedy's +inf padding */
    float *block_min; /* [(m + 16) / 4] the greedy's minimum of each block of four loads */
    int32_t *count;  /* [m] items per pack */
    int32_t *tree;   /* [2 * 2^ceil(log2 m)] tournament tree of open packs */
    float *wa, *wb;  /* [k] weights of the heaviest and lightest pack's items */
    uint64_t *sorted_a, *sorted_b, *sort_spare; /* [k] each: the sorted swap search's weights */
    float *lanes;    /* the lockstep greedy's per-lane state (eplb_cpu_greedy_lanes_words) */
    float *lane_load; /* [EPLB_CPU_LANES][m] each lane's true pack loads */
    float *score;    /* [C] each candidate's maximum pack load */
    int32_t *own_order, *own_content; /* [C * n] each, or NULL when large: a row's candidates */
    const int32_t *order_row; /* the current row's C orders: own_order or the job's */
    int32_t *content_row;     /* the current row's C contents: own_content or the job's */
    void *block;     /* the single allocation behind all of the above */
} eplb_cpu_scratch;

/* The row's candidates in the job's order and content buffers (separate stages). */
static inline void eplb_cpu_use_job_rows(eplb_cpu_scratch *scratch, const eplb_pack_job *job,
                                         int64_t row)
{
    const int64_t offset = row * job->candidates * job->items;
    scratch->order_row = (const int32_t *)job->order + offset;
    scratch->content_row = (int32_t *)job->content + offset;
}

eplb_status eplb_cpu_scratch_init(eplb_cpu_scratch *scratch, const eplb_pack_job *job);
void eplb_cpu_scratch_free(eplb_cpu_scratch *scratch);

/* One packing candidate, stage by stage (row x, candidate c). */
void eplb_cpu_sort_one(const eplb_pack_job *job, int64_t row, int64_t candidate, int32_t *order,
                       eplb_cpu_scratch *scratch);
void eplb_cpu_greedy_one(const eplb_pack_job *job, int64_t row, const int32_t *order,
                         int32_t *content, eplb_cpu_scratch *scratch);
/* Greedy for candidates first .. first+lanes-1 (lanes <= EPLB_CPU_LANES) of a
 * row, side by side, from scratch->order_row into scratch->content_row;
 * loads[j] receives lane j's pack loads, each summed in slot order as SPEC
 * 6.3 recomputes them. */
void eplb_cpu_greedy_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                         float *const *loads, eplb_cpu_scratch *scratch);
size_t eplb_cpu_greedy_lanes_words(int32_t items, int32_t packs);
/* Swap search on one candidate; load[m] holds its pack loads (slot-order
 * sums) and is kept up to date. Returns the candidate's score, its maximum load. */
float eplb_cpu_swap_one(const eplb_pack_job *job, int64_t row, int32_t *content, float *load,
                        eplb_cpu_scratch *scratch);
/* The same for candidates first .. first+lanes-1 of a row, iteration by
 * iteration across them (loads as eplb_cpu_greedy_row leaves them); each
 * candidate's score goes to scratch->score[candidate]. */
void eplb_cpu_swap_row(const eplb_pack_job *job, int64_t row, int32_t first, int32_t lanes,
                       float *const *loads, eplb_cpu_scratch *scratch);
/* Maximum of m pack loads. */
float eplb_cpu_max_load(const float *load, int32_t m);
/* Writes pack_of / rank_of of a row from the candidate with the lowest
 * score (ties: lowest candidate) of the row's C contents; score NULL: scores
 * recomputed. */
void eplb_cpu_select_row(const eplb_pack_job *job, int64_t row, const int32_t *content_row,
                         const float *score);

/* Runs one_packing for every (row, candidate) of job across the OpenMP
 * threads, each with its own scratch: the separate-stage entry points. */
typedef void (*eplb_cpu_packing_fn)(const eplb_pack_job *job, int64_t row, int64_t candidate,
                                    eplb_cpu_scratch *scratch);
eplb_status eplb_cpu_for_each_packing(eplb_backend *backend, const eplb_pack_job *job,
                                      eplb_cpu_packing_fn one_packing, const char *stage);
/* The same for stages that handle a whole row (all candidates) per call. */
typedef void (*eplb_cpu_row_fn)(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch);
eplb_status eplb_cpu_for_each_row(eplb_backend *backend, const eplb_pack_job *job,
                                  eplb_cpu_row_fn one_row, const char *stage);

/* Sort, greedy, swap and select for every candidate of one row. */
void eplb_cpu_pack_row(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch);

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

/* The glue stages for one layer (or one row x = l*N + n of a node), shared by
 * the stage entry points above and the per-layer plan_fused. */
void eplb_cpu_group_loads_layer(const eplb_plan_job *job, int64_t l);
void eplb_cpu_node_layout_layer(const eplb_plan_job *job, int64_t l);
/* Replicates row x with value[eplb_cpu_replicate_words(M)] and heap[M] as
 * scratch; returns 1 if a count exceeds the log2phy width (log2phy set). */
int eplb_cpu_replicate_row(const eplb_plan_job *job, int64_t x, float *value, int32_t *heap);
size_t eplb_cpu_replicate_words(int32_t n);
void eplb_cpu_slot_loads_row(const eplb_plan_job *job, int64_t x);
void eplb_cpu_assemble_layer(const eplb_plan_job *job, int64_t l);

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
