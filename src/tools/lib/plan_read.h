/* Reading a plan back: the phy2log of an eplb plan file (`eplb plan -o`,
 * docs/cli.md) or of SGLang's {"physical_to_logical_map": ...} file, for eplb
 * evaluate. Needs jansson; without it every read fails with
 * EPLB_ERR_UNSUPPORTED. */
#ifndef EPLB_TOOLS_PLAN_READ_H
#define EPLB_TOOLS_PLAN_READ_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/eplb.h"

typedef struct eplb_plan_file {
    int64_t *phy2log;   /* [layers][replicas], malloc'd; entries not range-checked */
    int64_t layers;
    int64_t replicas;
    const char *format; /* "eplb-plan" or "sglang" (static) */
    int has_shape;      /* an eplb plan file: shape and policy below are its own */
    eplb_shape shape;
    eplb_policy policy; /* the policy that ran (eplb plan file), else EPLB_POLICY_AUTO */
} eplb_plan_file;

/* Reads path. Returns EPLB_OK; EPLB_ERR_IO when the file cannot be read;
 * EPLB_ERR_PARSE for content that is not such a plan (a torch .pt file
 * included, with a hint); EPLB_ERR_OUT_OF_MEMORY; EPLB_ERR_UNSUPPORTED
 * without jansson. On failure *out is zeroed and error says why, naming the
 * file. */
eplb_status eplb_plan_read(const char *path, eplb_plan_file *out, char *error, size_t error_len);

void eplb_plan_file_free(eplb_plan_file *plan);

#endif
