/* Built-in workloads for the demo, the benchmark and the conformance command.
 * Integer-only generation: the same weights on every machine. */
#ifndef EPLB_TOOLS_WORKLOAD_H
#define EPLB_TOOLS_WORKLOAD_H

#include <stdint.h>

/* Fills weight[layers][experts] with skewed, token-count-like loads: most
 * experts near a base load, a heavy tail, a few hot experts per layer and,
 * when dead_every > 0, every dead_every-th expert idle. Values are whole
 * numbers below 2^24, exact in float32. */
void eplb_workload_fill(float *weight, int64_t layers, int64_t experts, uint64_t seed,
                        int64_t dead_every);

/* Deterministic 64-bit generator (splitmix64) for tools and tests. */
uint64_t eplb_workload_next(uint64_t *state);

#endif
