/* Expert-load input files for the eplb tool and the benchmark: SGLang JSON
 * ({"logical_count": ...}), a plain JSON array, CSV/whitespace text and NumPy
 * .npy. Every malformed input gets a message naming the file and the fault. */
#ifndef EPLB_TOOLS_LOAD_WEIGHTS_H
#define EPLB_TOOLS_LOAD_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/eplb.h"

typedef struct eplb_weights {
    float *data;          /* [layers][experts], finite and >= 0, malloc'd */
    int64_t layers;
    int64_t experts;
    const char *format;   /* "sglang-json", "json-array", "text" or "npy" (static) */
} eplb_weights;

/* Reads path, detects its format (NumPy magic, then a leading '{' or '[', then
 * the .npy/.json extension, else text) and converts the loads to float32.
 * Returns EPLB_OK, EPLB_ERR_IO (unreadable), EPLB_ERR_PARSE (malformed),
 * EPLB_ERR_INVALID_WEIGHT (NaN, infinite, negative or beyond float32) or
 * EPLB_ERR_UNSUPPORTED (JSON in a build without jansson); on failure *out is
 * left untouched and error holds "path: what is wrong". */
eplb_status eplb_weights_load(const char *path, eplb_weights *out, char *error, size_t error_len);

/* The same on bytes already in memory; name is used for detection and messages. */
eplb_status eplb_weights_parse(const char *name, const void *bytes, size_t len, eplb_weights *out,
                               char *error, size_t error_len);

/* Accepts a zeroed or loaded struct; zeroes it. */
void eplb_weights_free(eplb_weights *weights);

/* 1 when the tools were built with jansson (JSON input and plan output). */
int eplb_tools_json_available(void);

#endif
