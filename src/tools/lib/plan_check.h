/* The plan checker: everything SPEC promises about a plan that can be checked
 * without planning again. One checker serves the tests, the fuzz targets,
 * eplb conformance and eplb-bench, so each of them is as strict as the rest. */
#ifndef EPLB_TOOLS_PLAN_CHECK_H
#define EPLB_TOOLS_PLAN_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/eplb.h"

/* Whether SPEC section 3 runs the hierarchical procedure for this shape and
 * policy: groups % nodes == 0, unless the global policy is forced. */
int eplb_plan_is_hierarchical(const eplb_shape *s, eplb_policy policy);

/* Checks one plan of s for weight ([layers][experts]) against SPEC sections
 * 1, 4 and 5:
 * - every logcnt in 1..R-E+1, each row summing to R;
 * - every phy2log entry an expert, each expert in as many slots as logcnt says;
 * - hierarchical: all replicas of an expert on one node, a group's experts on
 *   one node, G/N groups on every node;
 * - the replication rule of SPEC 5 inside each node (the whole layer for the
 *   global policy): no expert could have given a replica to one of larger
 *   load per replica, in float32 division as SPEC computes it;
 * - when log2phy is given (width entries per expert): each expert's slots,
 *   each slot of the layer exactly once, then -1; width >= max(logcnt).
 * Returns 1 for a valid plan; else 0, with the first violation found
 * described in why ("out of memory" when the checker could not run). */
int eplb_plan_check(const eplb_shape *s, int hierarchical, const float *weight,
                    const int64_t *phy2log, const int64_t *logcnt, const int64_t *log2phy,
                    int64_t width, char *why, size_t why_len);

/* eplb_plan_check for a plan made with these options: the policy they
 * choose, and with distinct (SPEC 11) the rules it changes: SPEC 5's rule
 * under the cap of 11.3 (an expert with as many replicas as its row has GPUs
 * takes no more), no expert above that cap, no GPU holding an expert twice. */
int eplb_plan_check_options(const eplb_shape *s, const eplb_options *options, const float *weight,
                            const int64_t *phy2log, const int64_t *logcnt, const int64_t *log2phy,
                            int64_t width, char *why, size_t why_len);

#endif
