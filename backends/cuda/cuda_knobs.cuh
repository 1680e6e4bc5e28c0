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

typedef struct eplb_cuda_knobs {
    int path; /* EPLB_TUNE_CUDA_PATH_* */
} eplb_cuda_knobs;

/* Fills knobs from the environment; a value a knob does not take, or a knob
 * set under its old name, is EPLB_ERR_INVALID_ARGUMENT with a message. */
eplb_status eplb_cuda_knobs_read(eplb_cuda_knobs *knobs, char *error, size_t error_len);

#endif
