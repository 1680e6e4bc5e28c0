/* eplb: expert-placement planning for Mixture-of-Experts inference.
 *
 * One public header. Every exported name starts with eplb_ / EPLB_. Status
 * values and enum values are fixed forever once released.
 *
 * Typical use:
 *
 *   eplb_context *ctx;
 *   if (eplb_context_create(&ctx, NULL) != EPLB_OK) ...   // EPLB_BACKEND or auto
 *   eplb_options opt; eplb_options_init(&opt);
 *   eplb_shape shape = { .layers = 58, .experts = 256, .replicas = 288,
 *                        .groups = 8, .nodes = 4, .gpus = 32 };
 *   eplb_status st = eplb_rebalance(ctx, weight, &shape, &opt,
 *                                   phy2log, logcnt, log2phy, 33, NULL);
 *   if (st != EPLB_OK) fprintf(stderr, "%s\n", eplb_context_last_error(ctx));
 *   eplb_context_free(ctx);
 */
#ifndef EPLB_EPLB_H
#define EPLB_EPLB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define EPLB_EXTERN __declspec(dllexport)
#elif defined(__GNUC__)
#  define EPLB_EXTERN __attribute__((visibility("default")))
#else
#  define EPLB_EXTERN
#endif

#define EPLB_VERSION_MAJOR 0
#define EPLB_VERSION_MINOR 1
#define EPLB_VERSION_PATCH 0
#define EPLB_VERSION_NUMBER \
    (EPLB_VERSION_MAJOR * 10000 + EPLB_VERSION_MINOR * 100 + EPLB_VERSION_PATCH)
#define EPLB_VERSION_STRING "0.1.0"

/* Version of the algorithm contract (SPEC.md) the plans follow. */
#define EPLB_SPEC_VERSION 1

/* Run-time version: compare with EPLB_VERSION_NUMBER to catch a stale library. */
EPLB_EXTERN unsigned eplb_version_number(void);
EPLB_EXTERN const char *eplb_version_string(void);

typedef enum eplb_status {
    EPLB_OK = 0,
    EPLB_ERR_INVALID_ARGUMENT = 1,   /* NULL pointer, bad option value */
    EPLB_ERR_INVALID_SHAPE = 2,      /* SPEC section 2 shape rule broken */
    EPLB_ERR_INVALID_WEIGHT = 3,     /* NaN, infinity or negative weight */
    EPLB_ERR_LOG2PHY_TOO_SMALL = 4,  /* log2phy width below max(logcnt) */
    EPLB_ERR_POLICY = 5,             /* hierarchical forced but groups % nodes != 0 */
    EPLB_ERR_OUT_OF_MEMORY = 6,      /* host or device allocation failed */
    EPLB_ERR_BACKEND_UNAVAILABLE = 7,/* requested backend absent or unusable */
    EPLB_ERR_BACKEND_FAILURE = 8,    /* a backend call failed at run time */
    EPLB_ERR_UNSUPPORTED = 9,        /* this backend does not offer the call */
    EPLB_ERR_IO = 10,                /* file could not be read or written */
    EPLB_ERR_PARSE = 11,             /* file content malformed */
    EPLB_ERR_INTERNAL = 12           /* a bug in eplb: please report */
} eplb_status;

/* Short fixed message for a status; never NULL. */
EPLB_EXTERN const char *eplb_status_string(eplb_status status);

typedef enum eplb_policy {
    EPLB_POLICY_AUTO = 0,         /* hierarchical when groups % nodes == 0, else global */
    EPLB_POLICY_HIERARCHICAL = 1, /* groups -> nodes -> GPUs; error if groups % nodes != 0 */
    EPLB_POLICY_GLOBAL = 2        /* groups and nodes ignored */
} eplb_policy;

/* Planning options. Always fill with eplb_options_init() first, then change
 * fields, so that fields added later keep their defaults. A struct from an
 * older header (struct_size up to refine, version 0.1.0) is still accepted:
 * the fields it lacks take their defaults. */
typedef struct eplb_options {
    uint32_t struct_size;  /* set by eplb_options_init */
    int32_t candidates;    /* C, randomized greedy starts per row, >= 1 (default 8) */
    int32_t iterations;    /* I, swap iterations per candidate, >= 0 (default 20) */
    float noise;           /* a, relative key noise, finite and >= 0 (default 0.2) */
    float tolerance;       /* tol, minimum swap gain, finite and >= 0 (default 1e-5) */
    uint64_t seed;         /* s, seed of the counter-based random function (default 0) */
    eplb_policy policy;    /* default EPLB_POLICY_AUTO */
    /* The most refine trades per row after the packing (SPEC 10), 0..100000;
     * 0 (the default) is off and leaves plans exactly as without it. On
     * 64-bit targets it sits in what was the struct's tail padding, which
     * eplb_options_init has always zeroed, so the struct's size and
     * struct_size do not change there. */
    int32_t refine;
    /* 1: no GPU holds two replicas of one expert (SPEC 11); an expert with
     * more replicas than its row has GPUs is capped there. 0 (the default)
     * leaves plans exactly as without it. */
    int32_t distinct;
    /* eplb_rebalance_incremental only (SPEC 13): a layer's largest GPU load
     * may reach (1 + slack) times the fresh plan's, for fewer moves; finite
     * and >= 0, default 0. Ignored by eplb_rebalance. */
    float slack;
} eplb_options;


#define EPLB_MAX_CANDIDATES 1024
#define EPLB_MAX_ITERATIONS 100000
#define EPLB_MAX_REFINE 100000

EPLB_EXTERN void eplb_options_init(eplb_options *options);

/* Problem shape (SPEC section 1). */
typedef struct eplb_shape {
    int64_t layers;    /* L >= 1 */
    int64_t experts;   /* E >= 1, logical experts per layer */
    int64_t replicas;  /* R >= E, physical slots, R % gpus == 0 */
    int64_t groups;    /* G >= 1, E % G == 0 (1 for models without groups) */
    int64_t nodes;     /* N >= 1; gpus % N == 0 when the hierarchical policy runs */
    int64_t gpus;      /* P >= 1 */
} eplb_shape;

/* The largest shapes eplb plans (docs/api.md, "Limits"). A plan's work and
 * memory grow linearly with its slots (layers * replicas) and candidates, so
 * these bound both, far above any model's shape. A shape beyond a limit is
 * refused up front with EPLB_ERR_INVALID_SHAPE and a message that names the
 * limit. groups <= experts and gpus <= replicas follow from the divisibility
 * rules; their own limits only name the cause sooner. */
#define EPLB_MAX_LAYERS 65536          /* 2^16 */
#define EPLB_MAX_EXPERTS 1048576       /* 2^20 */
#define EPLB_MAX_REPLICAS 16777216     /* 2^24 */
#define EPLB_MAX_GROUPS EPLB_MAX_EXPERTS
#define EPLB_MAX_NODES 1048576         /* 2^20 */
#define EPLB_MAX_GPUS 1048576          /* 2^20 */
#define EPLB_MAX_SLOTS 33554432        /* 2^25, layers * replicas */
/* Checked by the planning calls, which see the options too: the packing keeps
 * every candidate's slot order, so its memory grows with this product. */
#define EPLB_MAX_CANDIDATE_SLOTS 268435456 /* 2^28, layers * replicas * candidates */
/* Checked by the planning calls on the GPU backends (opencl, cuda) when
 * iterations > 0: their swap search tries every pair of items of two packs,
 * so a packing's items per pack (slots per GPU, or groups per node) are
 * bounded there to keep a plan's work linear in its slots. The cpu backend's
 * search needs no such bound. */
#define EPLB_MAX_DEVICE_SWAP_ITEMS 2048    /* 2^11 items per pack */

/* Checks a shape against SPEC section 2 and the limits above. On failure
 * *message (if not NULL) points at a static or thread-local text naming the
 * broken rule or limit. */
EPLB_EXTERN eplb_status eplb_shape_check(const eplb_shape *shape, const char **message);

/* log2phy width that always suffices: replicas - experts + 1. */
EPLB_EXTERN int64_t eplb_log2phy_width_max(const eplb_shape *shape);

/* ---- Contexts ------------------------------------------------------------
 * A context owns one backend instance and its reusable workspace. A context
 * must not be used from two threads at once; distinct contexts may be used
 * from distinct threads concurrently. */
typedef struct eplb_context eplb_context;

/* backend: "cpu", "opencl", "cuda", "auto", or NULL to read EPLB_BACKEND
 * (unset or empty means "auto"). "auto" picks the best available backend
 * (cuda, then opencl on a GPU device, then cpu). An explicit request that cannot be
 * met fails with EPLB_ERR_BACKEND_UNAVAILABLE; *out is then NULL and
 * eplb_last_error() says why. Thread-safe: any number of threads may create
 * contexts at once and each gets what one thread alone would; the library
 * serialises module loading and backend instance creation (with its
 * self-test) under one lock, which planning and eplb_context_free never take.
 * A backend's module is opened only when that backend is asked for. */
EPLB_EXTERN eplb_status eplb_context_create(eplb_context **out, const char *backend);
/* Accepts NULL. */
EPLB_EXTERN void eplb_context_free(eplb_context *ctx);
/* Name of the backend in use ("cpu", "opencl", "cuda"). */
EPLB_EXTERN const char *eplb_context_backend(const eplb_context *ctx);
/* Human-readable device description, e.g. "NVIDIA H100 80GB HBM3". */
EPLB_EXTERN const char *eplb_context_device(const eplb_context *ctx);
/* Detailed message of the last failed call on this context ("" if none). Valid
 * until the next call on the context. */
EPLB_EXTERN const char *eplb_context_last_error(const eplb_context *ctx);
/* Detailed message of the last failure that had no context to hold it
 * (eplb_context_create); thread-local. */
EPLB_EXTERN const char *eplb_last_error(void);

/* ---- Planning ------------------------------------------------------------
 * weight:  float32 host array [layers][experts], finite and >= 0.
 * phy2log: int64 host array [layers][replicas], logical expert of each slot.
 * logcnt:  int64 host array [layers][experts], replicas of each expert.
 * log2phy: int64 host array [layers][experts][log2phy_width], slots of each
 *          expert by replica rank, padded with -1. May be NULL (then
 *          log2phy_width is ignored).
 * width_needed: if not NULL, receives max(logcnt) over all layers; set also
 *          when the call fails with EPLB_ERR_LOG2PHY_TOO_SMALL.
 * options: NULL means defaults.
 * On any error the output arrays are left untouched. */
EPLB_EXTERN eplb_status eplb_rebalance(eplb_context *ctx, const float *weight,
                                       const eplb_shape *shape, const eplb_options *options,
                                       int64_t *phy2log, int64_t *logcnt, int64_t *log2phy,
                                       int64_t log2phy_width, int64_t *width_needed);

/* Device-resident planning for GPU backends (cuda, opencl); EPLB_ERR_UNSUPPORTED
 * on the cpu backend.
 *
 * Buffer handles are backend objects: for cuda, device pointers (float *,
 * int64_t *) in the context's device; for opencl, cl_mem objects of the
 * context's cl_context. stream is a cudaStream_t (NULL: the legacy default
 * stream) or a cl_command_queue (NULL: the context's own queue).
 *
 * The call is asynchronous: it validates the shape and options on the host,
 * enqueues the work on the stream and returns; no host synchronisation, no
 * host copy. log2phy_width must be >= 1, or EPLB_LOG2PHY_WIDTH_NEEDED;
 * replicas - experts + 1 always suffices. Weights and the width are checked
 * on the device: an invalid weight, or an expert with more replicas than
 * log2phy_width, leaves the outputs untouched, and the next
 * eplb_device_status() reports EPLB_ERR_INVALID_WEIGHT or
 * EPLB_ERR_LOG2PHY_TOO_SMALL.
 *
 * With log2phy_width = EPLB_LOG2PHY_WIDTH_NEEDED the device chooses the
 * width: log2phy is written as [layers][experts][w], w = max(logcnt) over all
 * layers, packed at the start of the buffer, which must hold layers *
 * experts * eplb_log2phy_width_max(shape) int64 (the entries past the first
 * layers * experts * w are left untouched). eplb_device_log2phy_width()
 * reports w. The same plan at a fixed width >= w holds the same slots in
 * each row's first w entries and -1 after them.
 *
 * Ordering and lifetime: the inputs must be ready when the work reaches them on
 * the stream, and the outputs are ready once the stream has passed the call.
 * The context's workspace is reused by the next call, which must be enqueued
 * on the same stream or after this one completes. */
EPLB_EXTERN eplb_status eplb_rebalance_device(eplb_context *ctx, const void *weight,
                                              const eplb_shape *shape,
                                              const eplb_options *options,
                                              void *phy2log, void *logcnt, void *log2phy,
                                              int64_t log2phy_width, void *stream);

/* Waits for the context's device work on stream and returns the status of the
 * last eplb_rebalance_device call (EPLB_OK, EPLB_ERR_INVALID_WEIGHT or
 * EPLB_ERR_LOG2PHY_TOO_SMALL). */
EPLB_EXTERN eplb_status eplb_device_status(eplb_context *ctx, void *stream);

/* log2phy_width of eplb_rebalance_device that lets the device choose the
 * width: the smallest that holds the plan, max(logcnt) over all layers. */
#define EPLB_LOG2PHY_WIDTH_NEEDED ((int64_t)-1)

/* Waits and returns the status as eplb_device_status does; on EPLB_OK,
 * *width (not NULL) receives the row width at which the last
 * eplb_rebalance_device call wrote log2phy: its log2phy_width, or with
 * EPLB_LOG2PHY_WIDTH_NEEDED the width the device chose. On an error *width
 * is left untouched. */
EPLB_EXTERN eplb_status eplb_device_log2phy_width(eplb_context *ctx, void *stream,
                                                  int64_t *width);

/* ---- Rebalancing from the running plan (SPEC 13) ------------------------
 * Plans as eplb_rebalance does, then moves as few experts as it can away from
 * the running placement: every layer's largest GPU load stays at most
 * (1 + options->slack) times that of the fresh plan eplb_rebalance would make
 * for the same weights and options, and no expert changes node unless its
 * group does (hierarchical policy).
 *
 * previous: int64 host array [layers][replicas], the running plan's phy2log
 *          (from eplb or any other planner, e.g. SGLang's
 *          physical_to_logical_map): every entry in 0..experts-1 and every
 *          expert on at least one slot of each layer, else
 *          EPLB_ERR_INVALID_ARGUMENT.
 * The other arguments and the outputs are those of eplb_rebalance, but for
 * log2phy, which lists each expert's slots in ascending slot order. The fresh
 * plan runs on the context's backend and the rest on the host, so every
 * backend gives the same plan. options->distinct = 1 is refused
 * (EPLB_ERR_UNSUPPORTED: SPEC 13 does not keep replicas apart). On any error
 * the outputs are left untouched. */
EPLB_EXTERN eplb_status eplb_rebalance_incremental(eplb_context *ctx, const float *weight,
                                                   const eplb_shape *shape,
                                                   const eplb_options *options,
                                                   const int64_t *previous, int64_t *phy2log,
                                                   int64_t *logcnt, int64_t *log2phy,
                                                   int64_t log2phy_width, int64_t *width_needed);

/* The same for device memory (GPU backends; EPLB_ERR_UNSUPPORTED on the cpu
 * backend): weight, previous and the outputs are buffer handles as for
 * eplb_rebalance_device (device pointers for cuda, cl_mem for opencl), and
 * log2phy is required (width >= 1). The plan is eplb_rebalance_incremental's,
 * bit for bit: the call reads weight and previous on stream (after the work
 * enqueued there before it), plans through the host as that entry does, and
 * writes the outputs on stream. Unlike eplb_rebalance_device it is
 * synchronous: it returns once the outputs are written, and every error, an
 * invalid weight or a too-small log2phy width included, is its return
 * status (eplb_device_status does not report on it). On any error the outputs
 * are left untouched, but for a failed copy to the device. */
EPLB_EXTERN eplb_status eplb_rebalance_incremental_device(eplb_context *ctx, const void *weight,
                                                          const eplb_shape *shape,
                                                          const eplb_options *options,
                                                          const void *previous, void *phy2log,
                                                          void *logcnt, void *log2phy,
                                                          int64_t log2phy_width, void *stream);

/* What a rebalance from one placement to another transfers (SPEC 13.3). Fill
 * with eplb_moves_init() first. */
typedef struct eplb_moves {
    uint32_t struct_size;        /* set by eplb_moves_init */
    int64_t moved_slots;         /* slots whose expert was not on their GPU before */
    int64_t max_moved_per_gpu;   /* the most slots one GPU receives, over all layers */
    int64_t cross_node_moves;    /* (node, expert) copies that cross nodes; -1 when
                                  * gpus % nodes != 0 */
} eplb_moves;

EPLB_EXTERN void eplb_moves_init(eplb_moves *moves);

/* Counts the moves from previous to phy2log (both int64 [layers][replicas],
 * entries in 0..experts-1). Needs no context; on error nothing is written and
 * eplb_last_error() says which input broke which rule. */
EPLB_EXTERN eplb_status eplb_count_moves(const eplb_shape *shape, const int64_t *previous,
                                         const int64_t *phy2log, eplb_moves *moves);

/* ---- Evaluating a plan ---------------------------------------------------
 * The quality of a placement on given loads (SPEC sections 8, 11 and 12): for
 * instance the running plan on new loads beside a fresh plan, to decide
 * whether a rebalance is worth its transfers. Needs no context.
 *
 * Fill with eplb_evaluation_init() first: struct_size tells the library how
 * much of the struct the caller has, so that fields added later are never
 * written past an older caller's struct. */
typedef struct eplb_evaluation {
    uint32_t struct_size;          /* set by eplb_evaluation_init */
    eplb_policy policy;            /* the policy the bound is for: AUTO resolved (SPEC 3) */
    int32_t bound_exact;           /* 1: every floor exact (SPEC 12.4); 0: the relaxation */
    double balancedness;           /* SPEC 8: sum_l mean_g load / sum_l max_g load; 1 if no load */
    double balancedness_min_layer; /* smallest per-layer mean / max (1 for an idle layer) */
    int64_t min_layer;             /* the layer that has it (lowest index on ties) */
    double mean_load_sum;          /* sum over layers of the mean GPU load */
    double max_load_sum;           /* sum over layers of the largest GPU load */
    double bound;                  /* SPEC 12.1: sum over layers of the floor F[l] */
    double balancedness_bound;     /* SPEC 12.1: no plan of the policy and shape does better */
    double bound_gap;              /* max_load_sum / bound - 1 (0 when bound is 0) */
    double global_balancedness_bound; /* SPEC 12.3: the same for the global policy */
    int64_t duplicates;            /* SPEC 11.1: slots whose expert is already on their GPU */
} eplb_evaluation;

EPLB_EXTERN void eplb_evaluation_init(eplb_evaluation *evaluation);

/* weight:  float32 [layers][experts], finite and >= 0.
 * phy2log: int64 [layers][replicas], the plan to evaluate: any placement with
 *          every entry in 0..experts-1 and every expert on at least one slot
 *          of each layer (an eplb plan, SGLang's physical_to_logical_map). An
 *          expert's load is shared equally by its slots.
 * policy:  the policy whose bound is reported (AUTO: hierarchical when
 *          groups % nodes == 0, as the planner chooses).
 * max_load, mean_load, layer_floor: [layers] each, or NULL: per layer the
 *          largest and the mean GPU load and the floor F[l] of SPEC 12.
 * On error (EPLB_ERR_INVALID_ARGUMENT, _INVALID_SHAPE, _INVALID_WEIGHT,
 * _POLICY, _OUT_OF_MEMORY) nothing is written and eplb_last_error() says
 * which input broke which rule. */
EPLB_EXTERN eplb_status eplb_evaluate(const float *weight, const eplb_shape *shape,
                                      eplb_policy policy, const int64_t *phy2log,
                                      eplb_evaluation *result, double *max_load,
                                      double *mean_load, double *layer_floor);

/* ---- Backends ------------------------------------------------------------ */

/* Number of backends eplb knows (cpu, opencl, cuda), available or not. */
EPLB_EXTERN int eplb_backend_count(void);
/* Name of backend i, or NULL if out of range. */
EPLB_EXTERN const char *eplb_backend_name(int index);
/* 1 if backend i can be used here, 0 if not; *reason (if not NULL) then says
 * why not, or describes the device when available. The probe opens the backend
 * once per process. */
EPLB_EXTERN int eplb_backend_available(int index, const char **reason);

#ifdef __cplusplus
}
#endif

#endif /* EPLB_EPLB_H */
