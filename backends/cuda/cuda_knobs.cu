/* The cuda backend's environment knobs: one table, read and checked here and
 * nowhere else, when an instance is created (before the driver is asked
 * anything, so a bad value is reported on any machine). A value that a knob
 * does not take fails the creation with a message naming the knob, rather
 * than being ignored. docs/cuda.md lists the same table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_knobs.cuh"

/* The library's C helper, compiled into the module (see CMakeLists.txt). */
extern "C" {
#include "common/text_escape.h"
}

enum { CUDA_KNOB_PATH, CUDA_KNOB_REFINE, CUDA_KNOB_SEARCH, CUDA_KNOB_COUNT };

/* A knob's values, its default first; the index of the value set is stored. */
struct cuda_knob {
    const char *name;
    const char *values[3];
    const char *meaning;
};

static const cuda_knob cuda_knob_table[CUDA_KNOB_COUNT] = {
    /* Tuning and tests only: every value gives the same plan. */
    {"EPLB_TUNE_CUDA_PATH", {"fused", "stages"},
     "chooses which CUDA kernels plan, for tuning and tests"},
    {"EPLB_TUNE_CUDA_REFINE", {"block", "team"},
     "chooses which refine search plan_fused runs, for tuning and tests"},
    {"EPLB_TUNE_CUDA_SEARCH", {"host", "device"},
     "chooses where the incremental rebalance's searches run, for tuning and tests"},
};

/* Knobs that were renamed: refused under the old name, naming the new one, so
 * that a script that still sets them does not silently time the default. */
static const struct {
    const char *old_name, *new_name;
} cuda_renamed_knobs[] = {
    {"EPLB_CUDA_PATH", "EPLB_TUNE_CUDA_PATH"},
};

eplb_status eplb_cuda_knobs_read(eplb_cuda_knobs *knobs, char *error, size_t error_len)
{
    for (const auto &renamed : cuda_renamed_knobs) {
        const char *set = getenv(renamed.old_name);
        if (set && *set) {
            snprintf(error, error_len, "%s is now called %s (a tuning knob): set that instead",
                     renamed.old_name, renamed.new_name);
            return EPLB_ERR_INVALID_ARGUMENT;
        }
    }
    int chosen_value[CUDA_KNOB_COUNT];
    for (int k = 0; k < CUDA_KNOB_COUNT; k++) {
        const cuda_knob &knob = cuda_knob_table[k];
        const char *set = getenv(knob.name);
        int chosen = set && *set ? -1 : 0;
        for (int v = 0; chosen < 0 && v < 3; v++)
            if (knob.values[v] && strcmp(set, knob.values[v]) == 0)
                chosen = v;
        if (chosen < 0) {
            char shown[128], listed[96] = "";
            for (int v = 0; v < 3 && knob.values[v]; v++) {
                const bool last = v == 2 || !knob.values[v + 1];
                strncat(listed, v == 0 ? "" : last ? " or " : ", ", sizeof listed - strlen(listed) - 1);
                strncat(listed, knob.values[v], sizeof listed - strlen(listed) - 1);
            }
            snprintf(error, error_len, "%s='%s' is not a value it takes (it %s): use %s, or leave it unset",
                     knob.name, eplb_text_escape(shown, sizeof shown, set), knob.meaning, listed);
            return EPLB_ERR_INVALID_ARGUMENT;
        }
        chosen_value[k] = chosen;
    }
    /* The value indices are the EPLB_TUNE_CUDA_PATH_*,
     * EPLB_TUNE_CUDA_REFINE_* and EPLB_TUNE_CUDA_SEARCH_* constants. */
    knobs->path = chosen_value[CUDA_KNOB_PATH];
    knobs->refine_search = chosen_value[CUDA_KNOB_REFINE];
    knobs->domain_search = chosen_value[CUDA_KNOB_SEARCH];
    return EPLB_OK;
}
