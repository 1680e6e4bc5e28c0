/* The backend registry: which backends exist, which are usable here, and how
 * one is opened (compiled in, or loaded from a module at run time). */
#ifndef EPLB_REGISTRY_H
#define EPLB_REGISTRY_H

#include "backend.h"

/* Backends in order of preference for "auto". */
enum { EPLB_REGISTRY_CUDA, EPLB_REGISTRY_OPENCL, EPLB_REGISTRY_CPU, EPLB_REGISTRY_COUNT };

const char *eplb_registry_name(int index);

/* Opens backend `index`: loads its module on the first request for it (after
 * checking that the file is a regular ELF library for this machine and not
 * cut short), creates an instance and self-tests it against the cpu backend
 * on a tiny known case. On failure writes why into error. Safe to call from
 * any number of threads at once: loading, creation and the self-test are
 * serialised inside. */
eplb_status eplb_registry_open(int index, eplb_backend **out, char *error, size_t error_len);

/* eplb_registry_open as auto's turn at backend `index`: a backend other than
 * cpu whose device is a CPU is refused (why in error) after its creation and
 * before its self-test, so that nothing is compiled for a backend auto then
 * passes over. */
eplb_status eplb_registry_open_for_auto(int index, eplb_backend **out, char *error,
                                        size_t error_len);

/* Whether backend `index` opens here; the result of the first probe is kept
 * for the life of the process. *detail: the device, or why not. */
int eplb_registry_probe(int index, const char **detail);

#endif /* EPLB_REGISTRY_H */
