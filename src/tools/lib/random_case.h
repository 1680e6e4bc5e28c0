/* Random valid planning problems for the tests and eplb conformance (the
 * fuzz targets build theirs from the fuzzer's bytes): shapes of every kind
 * that SPEC sections 3 to 6 treat differently, times weight patterns that
 * reach ties, zeros, sub-normal and near-overflow loads. */
#ifndef EPLB_TOOLS_RANDOM_CASE_H
#define EPLB_TOOLS_RANDOM_CASE_H

#include <stdint.h>

#include "eplb/eplb.h"

/* Shape kinds. */
typedef enum eplb_random_kind {
    EPLB_RANDOM_HIERARCHICAL = 0, /* groups % nodes == 0, several groups per node */
    EPLB_RANDOM_GLOBAL_AUTO,      /* groups % nodes != 0: the auto policy runs global */
    EPLB_RANDOM_GLOBAL_FORCED,    /* a hierarchical shape with the global policy forced */
    EPLB_RANDOM_ONE_PER_PACK,     /* k == 1 in both packings: groups == nodes, one slot per GPU */
    EPLB_RANDOM_NO_REDUNDANCY,    /* replicas == experts */
    EPLB_RANDOM_LARGE_K,          /* few packs of many slots */
    EPLB_RANDOM_KINDS
} eplb_random_kind;

/* Weight patterns. */
typedef enum eplb_random_weights {
    EPLB_RANDOM_W_WORKLOAD = 0, /* skewed token counts, sometimes with idle experts */
    EPLB_RANDOM_W_SMALL_INT,    /* integers 0..3: many ties */
    EPLB_RANDOM_W_EQUAL,        /* every weight the same */
    EPLB_RANDOM_W_ZERO_LAYERS,  /* layer 0 and others all zero, the rest a few repeated values */
    EPLB_RANDOM_W_FRACTIONS,    /* non-integers, sub-normals and -0.0 */
    EPLB_RANDOM_W_HUGE,         /* near FLT_MAX: pack sums reach infinity */
    EPLB_RANDOM_WEIGHT_PATTERNS
} eplb_random_weights;

extern const char *const eplb_random_kind_names[EPLB_RANDOM_KINDS];
extern const char *const eplb_random_weight_names[EPLB_RANDOM_WEIGHT_PATTERNS];

typedef struct eplb_random_case {
    char name[160];          /* e.g. "random-17-global-auto/equal-L3E24R32G4N3P8" */
    eplb_random_kind kind;
    eplb_random_weights weights;
    eplb_shape shape;
    eplb_options options;    /* the kind's policy; eplb_random_case_make draws the rest too */
    float *weight;           /* [layers][experts], malloc'd */
} eplb_random_case;

/* Uniform integer in lo..hi (inclusive), from the splitmix64 stream at *state. */
int64_t eplb_random_range(uint64_t *state, int64_t lo, int64_t hi);

/* A case of the given kind and weight pattern, drawn from the stream at
 * *state; options are eplb_options_init's with the kind's policy (the
 * hierarchical kind forces the hierarchical policy half of the time).
 * Returns EPLB_OK, EPLB_ERR_INVALID_ARGUMENT for a kind or pattern out of
 * range, or EPLB_ERR_OUT_OF_MEMORY (*out then zeroed). */
eplb_status eplb_random_case_build(uint64_t *state, eplb_random_kind kind,
                                   eplb_random_weights weights, eplb_random_case *out);

/* Case number index of the stream seeded by seed, a pure function of both:
 * kinds cycle with index, then weight patterns, so every run of
 * EPLB_RANDOM_KINDS * EPLB_RANDOM_WEIGHT_PATTERNS cases covers every pair;
 * options are drawn too (candidates 1..16, iterations 0..30, seed, noise,
 * tolerance). Returns as eplb_random_case_build. */
eplb_status eplb_random_case_make(uint64_t seed, uint64_t index, eplb_random_case *out);

void eplb_random_case_free(eplb_random_case *c);

#endif
