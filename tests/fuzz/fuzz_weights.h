/* Shared by the input-file fuzz targets: parse the bytes through
 * eplb_weights_parse and check the contract of load_weights.h, aborting (a
 * finding) on any breach. */
#ifndef EPLB_FUZZ_WEIGHTS_H
#define EPLB_FUZZ_WEIGHTS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load_weights.h"

#define FUZZ_REQUIRE(cond, ...)                                   \
    do {                                                          \
        if (!(cond)) {                                            \
            fprintf(stderr, "fuzz contract broken: " __VA_ARGS__); \
            fprintf(stderr, "\n");                                \
            abort();                                              \
        }                                                         \
    } while (0)

/* Parses bytes as file `name`; want_format is the format a success must report. */
static __attribute__((unused)) void fuzz_weights_parse(const char *name, const void *bytes, size_t len,
                               const char *want_format)
{
    eplb_weights w, before;
    memset(&w, 0xA5, sizeof w); /* a failure must leave *out as it was */
    memcpy(&before, &w, sizeof w);
    char error[1024];
    memset(error, 0, sizeof error);
    eplb_status st = eplb_weights_parse(name, bytes, len, &w, error, sizeof error);
    if (st != EPLB_OK) {
        FUZZ_REQUIRE(memcmp(&w, &before, sizeof w) == 0, "failed parse (%s) wrote *out",
                     eplb_status_string(st));
        FUZZ_REQUIRE(st == EPLB_ERR_PARSE || st == EPLB_ERR_INVALID_WEIGHT ||
                         st == EPLB_ERR_OUT_OF_MEMORY || st == EPLB_ERR_UNSUPPORTED,
                     "unexpected status %s: %s", eplb_status_string(st), error);
        FUZZ_REQUIRE(error[0] && strlen(error) < sizeof error, "failure without a message");
        FUZZ_REQUIRE(strncmp(error, name, strlen(name)) == 0, "message '%s' does not name the file",
                     error);
        return;
    }
    FUZZ_REQUIRE(w.layers >= 1 && w.experts >= 1, "success with shape %lld x %lld",
                 (long long)w.layers, (long long)w.experts);
    FUZZ_REQUIRE(w.data != NULL, "success without data");
    FUZZ_REQUIRE(w.format && (!want_format || strcmp(w.format, want_format) == 0),
                 "format '%s', want '%s'", w.format ? w.format : "(null)", want_format);
    const size_t n = (size_t)w.layers * (size_t)w.experts;
    for (size_t i = 0; i < n; i++)
        FUZZ_REQUIRE(isfinite(w.data[i]) && w.data[i] >= 0.0f, "load %zu = %g accepted", i,
                     (double)w.data[i]);
    eplb_weights_free(&w);
    FUZZ_REQUIRE(w.data == NULL && w.layers == 0, "eplb_weights_free did not zero the struct");
}

#endif
