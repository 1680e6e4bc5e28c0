/* Drifted loads and running plans for the incremental rebalance (docs/spec.md
 * section 13, issue 18): the drift of eplb-bench's incremental rows, of the
 * random cases of the tests and of eplb conformance, and of the numpy
 * reference (tests/incremental_reference/incremental_inputs.py, drift). */
#ifndef EPLB_TOOLS_DRIFT_H
#define EPLB_TOOLS_DRIFT_H

#include <stdint.h>

#include "eplb/eplb.h"

/* out[i] = floor(in[i] * exp(sigma * z) + 0.5) in double, z standard normal
 * from Box-Muller on the splitmix64 stream seeded as eplb_workload_fill
 * seeds it (two draws per load, in order): integer loads stay integer token
 * counts, the same on every machine with the same libm. A result beyond
 * float32 keeps in[i]. in and out may be the same array. */
void eplb_workload_drift(const float *in, float *out, int64_t count, uint64_t seed, double sigma);

/* A running plan to rebalance from: the plan on ctx, with options, of
 * weight drifted by sigma (seed). Returns eplb_rebalance's status; previous
 * ([layers][replicas]) is written only on success. */
eplb_status eplb_drifted_previous(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                                  const eplb_options *options, uint64_t seed, double sigma,
                                  int64_t *previous);

/* The largest GPU load of one layer as docs/spec.md section 13.2 computes
 * it: slot loads w[e] / (e's slots in this layer) in float32, each GPU's
 * summed in ascending order from +0 (the loads behind the incremental
 * rebalance's promise). NaN when memory runs out. */
float eplb_layer_peak_load(const float *w, const int64_t *phy2log, int64_t experts,
                           int64_t replicas, int64_t gpus);

#endif
