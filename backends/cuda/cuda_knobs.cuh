/* The cuda backend's environment knobs, read and checked once per instance
 * by cuda_knobs.cu, the only file of the backend that reads the environment. */
#ifndef EPLB_CUDA_KNOBS_CUH
#define EPLB_CUDA_KNOBS_CUH

#include <stddef.h>

#include "backend.h"

/* Values of EPLB_TUNE_CUDA_PATH, in the order of its table row. Every value
 * gives the same plan; the GPU check runs them all. */
enum {
    EPLB_TUNE_CUDA_PATH_FUSED = 0, /* plan_fused when a layer fits, else the stages */
    EPLB_TUNE_CUDA_PATH_STAGES = 1 /* every stage its own kernel */
};

/* Values of EPLB_TUNE_CUDA_REFINE: which search plan_fused runs for refine.
 * Both make the same trades; the GPU check runs both. The team search is
 * opt-in: it is slower at the default refine cap of the CLI and Python
 * (docs/cuda.md). */
enum {
    EPLB_TUNE_CUDA_REFINE_BLOCK = 0, /* eplb_block_refine (cuda_refine.cuh) always */
    EPLB_TUNE_CUDA_REFINE_TEAM = 1   /* cuda_refine_team.cuh where compiled for the row's k */
};

/* Values of EPLB_TUNE_CUDA_SEARCH: where the swap searches of an
 * incremental rebalance (SPEC 13.5) run. Both give the same plan. */
enum {
    EPLB_TUNE_CUDA_SEARCH_HOST = 0,  /* the library's, layer by layer beside the rest of SPEC 13 */
    EPLB_TUNE_CUDA_SEARCH_DEVICE = 1 /* a block a search (cuda_incremental_search.cuh), every
                                      * search of a call in one batch */
};

typedef struct eplb_cuda_knobs {
    int path;          /* EPLB_TUNE_CUDA_PATH_* */
    int refine_search; /* EPLB_TUNE_CUDA_REFINE_* */
    int domain_search; /* EPLB_TUNE_CUDA_SEARCH_* */
} eplb_cuda_knobs;

/* Fills knobs from the environment; a value a knob does not take, or a knob
 * set under its old name, is EPLB_ERR_INVALID_ARGUMENT with a message. */
eplb_status eplb_cuda_knobs_read(eplb_cuda_knobs *knobs, char *error, size_t error_len);

#endif
