/* The backend interface: what every backend (cpu, opencl, cuda) implements.
 *
 * The planner (planner.c) owns the order of the stages and the layout of every
 * intermediate array; a backend owns memory and runs the stages on it. Buffers
 * are opaque handles: host pointers on the cpu backend, device pointers on
 * cuda, cl_mem objects on opencl. A backend never sees the public API.
 *
 * Stages read and write only the buffers named in their job, in the order the
 * planner calls them; a GPU backend may enqueue them asynchronously on its
 * stream, since each stage's inputs are the previous stages' outputs.
 *
 * Arithmetic rules (SPEC.md section 2): float32, round to nearest even, no
 * fused multiply-add, correctly rounded division, sums left to right in the
 * stated order. Float comparisons are plain IEEE comparisons (-0 == +0).
 */
#ifndef EPLB_BACKEND_H
#define EPLB_BACKEND_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eplb/eplb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever this file changes incompatibly; modules built against another
 * version are refused by name. */
#define EPLB_BACKEND_API_VERSION 11

/* What plan_fused returns when it does not handle a job, having enqueued
 * nothing: the planner then runs the same work as separate stages. Never
 * reaches a caller of the public API. */
#define EPLB_BACKEND_DECLINED ((eplb_status)-1)

/* One balanced-packing problem (SPEC section 6), expanded to rows * candidates
 * independent packings. Never reaches a backend with per_pack == 1: the
 * planner handles that identity case itself. */
typedef struct eplb_pack_job {
    int32_t call;          /* 0: groups to nodes, 1: slots to GPUs (random-function input) */
    int64_t rows;          /* X */
    int32_t items;         /* n */
    int32_t packs;         /* m */
    int32_t per_pack;      /* k = n / m, >= 2 */
    int32_t candidates;    /* C >= 1 */
    int32_t iterations;    /* I >= 0 */
    float noise;           /* a */
    float tolerance;       /* tol */
    uint64_t seed;         /* s */
    void *weight;          /* float [rows][items]                     in  */
    void *order;           /* int32 [rows*C][items] items by key, descending (sort)   */
    void *content;         /* int32 [rows*C][items] item in slot r of pack p at p*k+r
                              (greedy writes, swap rewrites)                      */
    void *pack_of;         /* int32 [rows][items] pack of each item     out (select) */
    void *rank_of;         /* int32 [rows][items] slot of each item in its pack (select) */
} eplb_pack_job;

/* The whole plan (SPEC section 4) with the policy already applied: for the
 * global policy groups == nodes == 1. All arrays are buffers of the backend. */
typedef struct eplb_plan_job {
    int64_t layers;        /* L */
    int64_t experts;       /* E */
    int64_t replicas;      /* R */
    int64_t groups;        /* G (effective) */
    int64_t nodes;         /* N (effective) */
    int64_t gpus;          /* P */
    int64_t group_size;    /* S = E / G */
    int64_t node_experts;  /* M = E / N */
    int64_t node_slots;    /* RN = R / N */
    int64_t gpu_slots;     /* spg = R / P */
    int64_t width;         /* row width of log2phy (when log2phy is not NULL), >= 1 */

    void *weight;          /* float [L][E]                                    in */
    void *status;          /* int32 [1]: 0 or an eplb_status. check_weights sets
                              EPLB_ERR_INVALID_WEIGHT; replicate sets
                              EPLB_ERR_LOG2PHY_TOO_SMALL when log2phy is not NULL
                              and a count exceeds width (only over a 0). assemble
                              writes nothing while it is nonzero. */
    void *group_load;      /* float [L][G]                        (group_loads) */
    eplb_pack_job group_pack; /* call 0: L rows, G items, N packs; weight = group_load.
                              Unused (NULL buffers) when G == N. */
    void *log2mlog;        /* int32 [L][E] node-major position of each expert (node_layout) */
    void *mlog2log;        /* int32 [L][E] its inverse                        (node_layout) */
    void *node_weight;     /* float [L*N][M] weights in node-major order      (node_layout) */
    void *phy2mlog;        /* int32 [L*N][RN] item held by each slot          (replicate) */
    void *phyrank;         /* int32 [L*N][RN] replica rank of each slot       (replicate) */
    void *mlogcnt;         /* int32 [L*N][M] replicas of each item            (replicate) */
    void *slot_load;       /* float [L*N][RN]                                 (slot_loads) */
    eplb_pack_job slot_pack; /* call 1: L*N rows, RN items, P/N packs; weight = slot_load.
                              Unused (NULL buffers) when RN == P/N. */
    void *phy2log;         /* int64 [L][R]                                    (assemble) */
    void *logcnt;          /* int64 [L][E]                                    (assemble) */
    void *slot_rank;       /* int32 [L][R] replica rank of each slot's expert, or NULL
                              (assemble; the host path builds log2phy from it) */
    void *log2phy;         /* int64 [L][E][width], -1 padded, or NULL          (assemble) */
    int32_t refine;        /* the most refine trades per row (SPEC 10), 0 = off; its
                              tolerance is slot_pack.tolerance */
    int32_t distinct;      /* 1: no GPU holds an expert twice (SPEC 11), 0: off */
    void *row_changed;     /* int32 [L*N] 1 where the distinct stage freed a slot or
                              exchanged one in the row, else 0    (distinct) */
    void *row_seed_max;    /* float [L*N] the row's heaviest GPU load before the cap
                              (SPEC 11.5's M0)                    (distinct) */
} eplb_plan_job;

/* Whether a row of the job's slot packing can trade slots between its GPUs:
 * the packing ran (more than one slot per GPU) and a row has more than one
 * GPU. Refine (SPEC 10) and distinct (SPEC 11) work only such rows; with one
 * slot per GPU no GPU repeats an expert, and with one GPU per row SPEC 11.2
 * leaves every expert a single replica. */
static inline int eplb_plan_rows_trade(const eplb_plan_job *job)
{
    return job->slot_pack.per_pack > 1 && job->slot_pack.packs > 1;
}

/* The most trades of SPEC 11.5's restore in a row (distinct with refine 0). */
#define EPLB_DISTINCT_RESTORE_TRADES 256

/* A batch of independent swap searches of SPEC 13.5 for the incremental
 * rebalance (src/incremental.c), each over one domain of one layer. A
 * search's slots are [domain_slots] int32 experts, its GPUs gpu_slots
 * consecutive slots each. The arrays follow each other in one host area, in
 * the order base, u, target, limit, cur, moved, met, so that a device
 * backend can copy the inputs up and the results down in one piece each;
 * the area is page-locked where the backend has host_alloc. */
typedef struct eplb_search_job {
    int64_t searches;      /* how many */
    int32_t domain_slots;  /* slots of a domain (a multiple of gpu_slots) */
    int32_t gpu_slots;     /* spg */
    int32_t experts;       /* E: experts are 0..E-1 */
    const int32_t *base;   /* [searches][domain_slots] the previous plan's experts       in  */
    int32_t *cur;          /* [searches][domain_slots] the start, then the search's result   */
    const float *u;        /* [searches][domain_slots] the start's slot loads (SPEC 13.2) in  */
    const float *target;   /* [searches] T                                                in  */
    const int32_t *limit;  /* [searches] the domain's moves in the relabelled fresh plan in  */
    int32_t *moved;        /* [searches] the start's moves, then the result's                */
    int32_t *met;          /* [searches] 1 if the search met its target, else 0         out */
} eplb_search_job;

typedef struct eplb_backend eplb_backend;

/* The operations of a backend instance. Every call returns EPLB_OK or an error
 * status after writing a message with eplb_backend_error(). */
typedef struct eplb_backend_i {
    /* Releases the instance and everything it allocated. */
    void (*free)(eplb_backend *backend);
    /* Human-readable device description. */
    const char *(*device_name)(eplb_backend *backend);
    /* (optional) 1 if the device is an accelerator, 0 if it is a CPU: "auto"
     * passes over a backend whose device is a CPU. NULL means accelerator. */
    int (*is_accelerator)(eplb_backend *backend);

    /* ---- memory ---- */
    /* Allocates a buffer of at least bytes (> 0) bytes; *out receives the handle. */
    eplb_status (*buffer_alloc)(eplb_backend *backend, size_t bytes, void **out);
    /* Releases a buffer (NULL is ignored). */
    void (*buffer_free)(eplb_backend *backend, void *buffer);
    /* Host to buffer; the host memory may be reused when this returns. */
    eplb_status (*upload)(eplb_backend *backend, void *dst, const void *src_host, size_t bytes);
    /* Buffer to host, after all work enqueued before it. */
    eplb_status (*download)(eplb_backend *backend, void *dst_host, const void *src, size_t bytes);
    /* (optional) Enqueues later work on a caller's stream / command queue
     * (NULL: the backend's own). Needed for eplb_rebalance_device. */
    eplb_status (*set_stream)(eplb_backend *backend, void *stream);
    /* (optional) Waits for all enqueued work; NULL means nothing is asynchronous. */
    eplb_status (*synchronize)(eplb_backend *backend);

    /* ---- planner glue (SPEC section 4) ---- */
    /* (optional) Device-side weight check: writes 0 or EPLB_ERR_INVALID_WEIGHT to
     * job->status; later stages of a job with a nonzero status leave phy2log,
     * logcnt and log2phy untouched. NULL: the planner checks on the host (host
     * data only; required for eplb_rebalance_device). */
    eplb_status (*check_weights)(eplb_backend *backend, const eplb_plan_job *job);
    /* group_load[l][g] = W[l][g*S] + ... + W[l][g*S+S-1], left to right. */
    eplb_status (*group_loads)(eplb_backend *backend, const eplb_plan_job *job);
    /* From group_pack.pack_of/rank_of (identity when G == N): log2mlog,
     * mlog2log and node_weight (SPEC 4.1, first line of 4.2). */
    eplb_status (*node_layout)(eplb_backend *backend, const eplb_plan_job *job);
    /* SPEC section 5 on every row of node_weight: phy2mlog, phyrank, mlogcnt;
     * plus the width check on status described above. */
    eplb_status (*replicate)(eplb_backend *backend, const eplb_plan_job *job);
    /* slot_load[x][q] = node_weight[x][e] / mlogcnt[x][e], e = phy2mlog[x][q]. */
    eplb_status (*slot_loads)(eplb_backend *backend, const eplb_plan_job *job);
    /* From slot_pack.pack_of/rank_of (identity when RN == P/N): phy2log,
     * logcnt, and slot_rank and/or log2phy (SPEC 4.3 last line, 4.4), unless
     * status is nonzero (status NULL: never). */
    eplb_status (*assemble)(eplb_backend *backend, const eplb_plan_job *job);

    /* ---- balanced packing (SPEC section 6), one file per stage ---- */
    /* Keys (noise from the random function for c >= 1) and order. */
    eplb_status (*pack_sort)(eplb_backend *backend, const eplb_pack_job *job);
    /* Greedy fill of content from order. */
    eplb_status (*pack_greedy)(eplb_backend *backend, const eplb_pack_job *job);
    /* L2 swap search on content. */
    eplb_status (*pack_swap)(eplb_backend *backend, const eplb_pack_job *job);
    /* Best candidate per row into pack_of / rank_of. */
    eplb_status (*pack_select)(eplb_backend *backend, const eplb_pack_job *job);

    /* ---- after the slot packing (SPEC 10, 11) ---- */
    /* (optional) The cap and the repair of SPEC 11.3-11.4: runs after the
     * packing of slots to GPUs and before refine, only when job->distinct is
     * 1 and the slot packing ran (slots per GPU and GPUs per row both above
     * 1; otherwise no row can hold a repeat). Rows are slot_pack.rows. The
     * cap rewrites the freed slots' phy2mlog and phyrank, the row's mlogcnt
     * and the slot_load of every slot whose expert's count changed; the
     * repair exchanges slots between GPUs through slot_pack.pack_of and
     * rank_of. It fills row_changed and row_seed_max for the restore (SPEC
     * 11.5), which the refine stage runs. NULL: the planner refuses jobs
     * with distinct (never a fallback to another backend). */
    eplb_status (*distinct)(eplb_backend *backend, const eplb_plan_job *job);
    /* (optional) The refine search: runs after the packing of slots to GPUs
     * (and the distinct stage) and before assemble, when job->refine > 0 or
     * job->distinct is 1, and the slot packing ran. Rows are
     * slot_pack.rows; it reads slot_load and moves slots between the GPUs of
     * a row by rewriting slot_pack.pack_of and rank_of, which assemble then
     * reads as usual. With distinct it keeps to the trades of SPEC 11.6 (the
     * experts are phy2mlog), and with refine == 0 it searches only the rows
     * whose row_changed is 1, at most EPLB_DISTINCT_RESTORE_TRADES trades
     * each, stopping once the heaviest GPU is no heavier than row_seed_max
     * (the restore of SPEC 11.5). NULL: the backend cannot refine, and the
     * planner refuses jobs with refine > 0 (never a fallback to another
     * backend); a backend with a distinct stage has this one too. */
    eplb_status (*refine)(eplb_backend *backend, const eplb_plan_job *job);

    /* ---- fused path ----
     * plan_fused does the work of every stage in one submission, or returns
     * EPLB_BACKEND_DECLINED, having enqueued nothing, for a job it does not
     * handle (too large for on-chip memory, a tuning knob that asks for the
     * stages): the planner then runs the stages itself, so the stage order is
     * written only in planner.c. (A fused packing entry, pack_fused, lost to
     * the stage kernels on every GPU shape it served and was removed.) */
    /* (optional) the whole plan, check_weights to assemble, in one submission.
     * The planner offers it only jobs whose log2phy (when given) is wide
     * enough for any count the shape allows, so it needs no width check, and
     * only jobs with distinct == 0 and, unless fused_refines is set, with
     * refine == 0, so it need not know the stages of SPEC 10 and 11. */
    eplb_status (*plan_fused)(eplb_backend *backend, const eplb_plan_job *job);

    /* ---- properties ---- */
    /* 1 if buffers are plain host pointers: the host API then hands the
     * caller's weights in directly and reads the outputs in place (no
     * upload, no download copies). 0 (the default) for device memory. */
    int host_memory;

    /* ---- host staging (optional: all four, with synchronize, or none) ----
     * Placed last so that a table written before them leaves them NULL. With
     * them, eplb_rebalance keeps one page-locked staging area per context for
     * the weights on their way in and the outputs on their way out, enqueues
     * every copy without waiting and waits once per plan (synchronize). NULL:
     * malloc'ed staging and the waiting upload and download above. */
    /* Page-locked host memory of at least bytes (> 0) bytes, which copies
     * reach without the driver's own bounce through pinned memory. */
    eplb_status (*host_alloc)(eplb_backend *backend, size_t bytes, void **out);
    /* Releases memory from host_alloc (NULL is ignored). */
    void (*host_free)(eplb_backend *backend, void *host);
    /* Enqueues a copy between memory from host_alloc and a buffer, after all
     * work enqueued before it, and returns without waiting: the host memory
     * must be left alone until synchronize has returned. */
    eplb_status (*upload_async)(eplb_backend *backend, void *dst, const void *src_host,
                                size_t bytes);
    eplb_status (*download_async)(eplb_backend *backend, void *dst_host, const void *src,
                                  size_t bytes);

    /* (optional) 1 if plan_fused also runs the refine search (SPEC 10) of a job
     * with refine > 0, or declines it: the planner then offers it such jobs.
     * 0 (a table that ends before it): plan_fused sees no job with refine. */
    int fused_refines;

    /* (optional) Called once when eplb_context_create hands the instance to
     * a context, never for the registry's probes or a self-test's reference
     * instance: the backend may start what every plan needs (the cpu
     * backend its threads), so that a process pays for it when it makes its
     * context rather than in its first plan. NULL: nothing to start. */
    void (*start)(eplb_backend *backend);

    /* (optional) log2phy at the width the plan needs, for
     * eplb_rebalance_device with EPLB_LOG2PHY_WIDTH_NEEDED: runs after the
     * stages (which wrote phy2log, logcnt and slot_rank, and no log2phy) and,
     * unless status[0] is nonzero, writes w = max(logcnt) over all layers to
     * status[1] (status is int32 [2] here) and log2phy as [L][E][w], -1
     * padded, packed at the start of job->log2phy: log2phy[l][e][slot_rank
     * of slot s] = s for each slot s of expert e. job->width is unused. NULL:
     * the planner refuses EPLB_LOG2PHY_WIDTH_NEEDED. */
    eplb_status (*log2phy_at_needed_width)(eplb_backend *backend, const eplb_plan_job *job);

    /* (optional) The swap searches of an incremental rebalance (SPEC 13.5),
     * which return only once their results are in the job's host arrays.
     * It may return EPLB_BACKEND_DECLINED, having written nothing, for a job
     * it does not take (too large, or a tuning knob that asks for the host):
     * the library then runs the same searches on the host. NULL: every
     * search runs on the host, layer by layer beside the rest of SPEC 13. */
    eplb_status (*domain_searches)(eplb_backend *backend, const eplb_search_job *job);
} eplb_backend_i;

#define EPLB_BACKEND_ERROR_LEN 512

/* A backend instance: the interface plus the backend's own state. */
struct eplb_backend {
    int api_version;                 /* EPLB_BACKEND_API_VERSION of the builder */
    const eplb_backend_i *iface;
    void *context;                   /* the backend's own state */
    char error[EPLB_BACKEND_ERROR_LEN]; /* message of the last failure */
};

/* A backend as the registry sees it: compiled in (cpu) or a loadable module
 * (libeplb_opencl.so, libeplb_cuda.so) exporting eplb_backend_module_get. */
typedef struct eplb_backend_module {
    int api_version;                 /* EPLB_BACKEND_API_VERSION */
    const char *name;                /* "cpu", "opencl", "cuda" */
    /* Opens the runtime and device; on failure writes why into error. The
     * instance is then self-tested by the registry before first use. */
    eplb_status (*create)(eplb_backend **out, char *error, size_t error_len);
} eplb_backend_module;

#define EPLB_MODULE_ENTRY "eplb_backend_module_get"
typedef const eplb_backend_module *(*eplb_backend_module_get_fn)(void);

/* Formats a message into backend->error; returns status for tail calls.
 * Inline so that modules need no symbol from libeplb. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline eplb_status eplb_backend_error(eplb_backend *backend, eplb_status status,
                                             const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(backend->error, sizeof backend->error, fmt, args);
    va_end(args);
    return status;
}

#ifdef __cplusplus
}
#endif

#endif /* EPLB_BACKEND_H */
