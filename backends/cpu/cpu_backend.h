/* The cpu backend's entry: the module that the registry compiles in. */
#ifndef EPLB_CPU_BACKEND_H
#define EPLB_CPU_BACKEND_H

#include "backend.h"

const eplb_backend_module *eplb_cpu_backend_module(void);

/* Whether host code outside the backend that runs for every backend (the
 * incremental stage, src/incremental*.c) may use AVX-512: the machine has
 * it and EPLB_CPU_ISA does not cap vector code below it, read through the
 * cpu knobs' table (cpu_knobs.c) as the backend's own stages are. Returns
 * EPLB_ERR_INVALID_ARGUMENT with a message naming the knob when a cpu knob
 * has a value it does not take. */
eplb_status eplb_cpu_host_avx512(int *allowed, char *error, size_t error_len);

#endif /* EPLB_CPU_BACKEND_H */
