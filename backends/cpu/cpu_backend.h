/* The cpu backend's entry: the module that the registry compiles in. */
#ifndef EPLB_CPU_BACKEND_H
#define EPLB_CPU_BACKEND_H

#include "backend.h"

const eplb_backend_module *eplb_cpu_backend_module(void);

#endif /* EPLB_CPU_BACKEND_H */
