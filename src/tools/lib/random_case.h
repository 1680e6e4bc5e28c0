/* Random valid planning problems for the conformance command and the tests:
 * shapes that exercise every path of SPEC sections 3 to 6, with options. */
#ifndef EPLB_TOOLS_RANDOM_CASE_H
#define EPLB_TOOLS_RANDOM_CASE_H

#include <stdint.h>

#include "eplb/eplb.h"

/* Case kinds, cycled by index so every run of at least EPLB_RANDOM_KINDS cases
 * covers each one. */
typedef enum eplb_random_kind {
    EPLB_RANDOM_HIERARCHICAL = 0, /* groups % nodes == 0, some redundancy */
    EPLB_RANDOM_GLOBAL,           /* groups % nodes != 0, or the global policy forced */
    EPLB_RANDOM_ONE_PER_PACK,     /* k == 1 in both packings: groups == nodes, one slot per GPU */
    EPLB_RANDOM_LARGE_K,          /* one node, few GPUs, many experts per pack */
    EPLB_RANDOM_NO_REDUNDANCY,    /* replicas == experts */
    EPLB_RANDOM_ZEROS_AND_TIES,   /* all-zero layers and loads from a few repeated values */
    EPLB_RANDOM_KINDS
} eplb_random_kind;

typedef struct eplb_random_case {
    char name[128];         /* e.g. "random-17-global-L3E24R32G4N3P8" */
    eplb_random_kind kind;
    eplb_shape shape;
    eplb_options options;   /* candidates 1..16, iterations 0..30, random seed, noise, tol, policy */
    float *weight;          /* [layers][experts], malloc'd */
} eplb_random_case;

/* Case number index of the stream seeded by seed: a pure function of both.
 * Returns EPLB_OK or EPLB_ERR_OUT_OF_MEMORY (*out then zeroed). */
eplb_status eplb_random_case_make(uint64_t seed, uint64_t index, eplb_random_case *out);
void eplb_random_case_free(eplb_random_case *c);

#endif
