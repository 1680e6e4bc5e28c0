/* The cpu backend's runtime, the layer below its stages: the settings that
 * the environment knobs give (cpu_knobs.c), per-thread scratch and the OpenMP
 * loops that hand it out (cpu_scratch.c). The stages call it; it calls no
 * stage, so that a stage can change without touching the runtime. */
#ifndef EPLB_CPU_RUNTIME_H
#define EPLB_CPU_RUNTIME_H

#include <stddef.h>

#include "backend.h"
#include "common/threads_usable.h"

/* x86-64 builds use SSE2 (the baseline); EPLB_CPU_NO_SIMD forces the portable
 * C paths that other machines run, so tests can cover them on x86 too. */
#if defined(__SSE2__) && !defined(EPLB_CPU_NO_SIMD)
#define EPLB_CPU_SSE2 1
#endif

/* x86-64 builds with GCC or Clang also carry AVX2 and AVX-512 versions of the
 * hottest loops, picked at run time from what the machine supports, capped
 * by EPLB_CPU_ISA (so tests cover every level on one machine). */
#if EPLB_CPU_SSE2 && defined(__x86_64__) && defined(__GNUC__)
#define EPLB_CPU_X86_DISPATCH 1
#define EPLB_CPU_TARGET_AVX2 __attribute__((target("avx2")))
#define EPLB_CPU_TARGET_AVX512 __attribute__((target("avx512f")))
#define EPLB_CPU_TARGET_AVX512VL __attribute__((target("avx2,avx512f,avx512vl")))
#endif

/* Unrolls the loop that follows up to 16 times, so that loops over a
 * constant count of vectors keep them in registers. */
#define EPLB_CPU_UNROLL_16 _Pragma("GCC unroll 16")

/* Vector levels, lowest first; AVX-512 means F, DQ and VL, which the paths
 * that use it need all three of. */
enum { EPLB_CPU_ISA_SSE2, EPLB_CPU_ISA_AVX2, EPLB_CPU_ISA_AVX512 };

/* Which swap search large packs use (EPLB_TUNE_CPU_SWAP_SEARCH). */
enum { EPLB_CPU_SWAP_SEARCH_AUTO, EPLB_CPU_SWAP_SEARCH_PAIRS, EPLB_CPU_SWAP_SEARCH_SORTED };

/* What the environment knobs say, read once per backend instance. */
typedef struct eplb_cpu_settings {
    int isa;             /* the highest level both the machine and EPLB_CPU_ISA allow */
    int separate_stages; /* EPLB_TUNE_CPU_STAGES=separate: no fused plan */
    int swap_search;     /* an EPLB_CPU_SWAP_SEARCH_* value */
} eplb_cpu_settings;

/* Reads and checks every cpu knob (the table in cpu_knobs.c). A value that a
 * knob does not take, or a knob set under its old name, is an error with a
 * message in error. */
eplb_status eplb_cpu_settings_read(eplb_cpu_settings *settings, char *error, size_t error_len);

/* The settings of a cpu backend instance (its context). */
static inline const eplb_cpu_settings *eplb_cpu_settings_of(const eplb_backend *backend)
{
    return (const eplb_cpu_settings *)backend->context;
}

/* Candidates of a row that the greedy steps in lockstep. */
#define EPLB_CPU_LANES 8

/* Per-thread scratch for one packing at a time, sized for a job. */
typedef struct eplb_cpu_scratch {
    eplb_cpu_settings settings; /* the instance's, copied so that hot loops read them here */
    uint64_t *pair;  /* [n rounded up to 8] (key << 32 | item) of the sort's single-pass finish */
    uint32_t *key;   /* [3n] keys, keys in bucket order, radix sort buffer */
    int32_t *order;  /* [n] the radix sort's second order buffer */
    int32_t *bucket; /* [4n + 2] bucket boundaries of the sort */
    float *load;     /* [m + 1] the tree greedy's pack loads, then its +inf sentinel */
    int32_t *count;  /* [m] items per pack */
    int32_t *tree;   /* [2 * 2^ceil(log2 m)] tournament tree of open packs */
    float *wa, *wb;  /* [k] weights of the heaviest and lightest pack's items */
    uint64_t *sorted_a, *sorted_b, *sort_spare; /* [k] each: the sorted swap search's weights */
    float *lanes;    /* the lockstep greedy's per-lane state (greedy_words at init) */
    float *lane_load; /* [EPLB_CPU_LANES][m] each lane's true pack loads */
    float *score;    /* [C] each candidate's maximum pack load */
    int32_t *own_order, *own_content; /* [C * n] each, or NULL when large: a row's candidates */
    const int32_t *order_row; /* the current row's C orders: own_order or the job's */
    int32_t *content_row;     /* the current row's C contents: own_content or the job's */
    void *block;     /* the single allocation behind all of the above */
} eplb_cpu_scratch;

static inline int eplb_cpu_has_avx2(const eplb_cpu_scratch *scratch)
{
    return scratch->settings.isa >= EPLB_CPU_ISA_AVX2;
}

static inline int eplb_cpu_has_avx512(const eplb_cpu_scratch *scratch)
{
    return scratch->settings.isa >= EPLB_CPU_ISA_AVX512;
}

/* The row's candidates in the job's order and content buffers (separate stages). */
static inline void eplb_cpu_use_job_rows(eplb_cpu_scratch *scratch, const eplb_pack_job *job,
                                         int64_t row)
{
    const int64_t offset = row * job->candidates * job->items;
    scratch->order_row = (const int32_t *)job->order + offset;
    scratch->content_row = (int32_t *)job->content + offset;
}

/* greedy_words: the floats that the lockstep greedy needs in scratch->lanes
 * (the greedy stage says how many), 0 where no greedy runs. */
eplb_status eplb_cpu_scratch_init(eplb_cpu_scratch *scratch, const eplb_pack_job *job,
                                  const eplb_cpu_settings *settings, size_t greedy_words);
void eplb_cpu_scratch_free(eplb_cpu_scratch *scratch);

/* Starts the OpenMP team and gives each of its threads its own malloc arena
 * with some memory already touched, so that a process pays for creating
 * threads and arenas when it makes its context (the backend's start)
 * rather than in its first plan. Nothing in a forked child, which plans on
 * its calling thread. */
void eplb_cpu_threads_warm(void);

/* Runs one_packing for every (row, candidate) of job across the OpenMP
 * threads, each with its own scratch: the separate-stage entry points. */
typedef void (*eplb_cpu_packing_fn)(const eplb_pack_job *job, int64_t row, int64_t candidate,
                                    eplb_cpu_scratch *scratch);
eplb_status eplb_cpu_for_each_packing(eplb_backend *backend, const eplb_pack_job *job,
                                      eplb_cpu_packing_fn one_packing, const char *stage);
/* The same for stages that handle a whole row (all candidates) per call. */
typedef void (*eplb_cpu_row_fn)(const eplb_pack_job *job, int64_t row, eplb_cpu_scratch *scratch);
eplb_status eplb_cpu_for_each_row(eplb_backend *backend, const eplb_pack_job *job,
                                  eplb_cpu_row_fn one_row, size_t greedy_words, const char *stage);

/* Below about this many element operations a loop runs on the calling
 * thread: waking the OpenMP team costs more than the work (tiny plans, the
 * registry's self-test), and spinning teams hurt on a busy machine. In a
 * forked child every loop runs there, since the OpenMP pool it inherited
 * would hang it (common/threads_usable.h). */
#define EPLB_CPU_PARALLEL_MIN_WORK 32768
#define EPLB_CPU_WORTH_THREADS(work) \
    ((int64_t)(work) >= EPLB_CPU_PARALLEL_MIN_WORK && eplb_threads_usable())

#endif /* EPLB_CPU_RUNTIME_H */
