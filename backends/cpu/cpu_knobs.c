/* The cpu backend's environment knobs: one table, read and checked here and
 * nowhere else, once per backend instance when it is created. A value that a
 * knob does not take fails the creation with a message naming the knob,
 * rather than being ignored. docs/api.md lists the same table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text_escape.h"
#include "cpu_backend.h"
#include "cpu_runtime.h"

enum { KNOB_ISA, KNOB_STAGES, KNOB_SWAP_SEARCH, KNOB_COUNT };

/* The values a knob takes, its default first; unset or empty means the default. */
#define KNOB_VALUES_MAX 3

static const struct {
    const char *name;
    const char *values[KNOB_VALUES_MAX];
    const char *meaning;
    /* The knob's former name, or NULL. Set under it, the knob is refused,
     * naming the new one, so that a test or script that still sets it does
     * not silently test the default. */
    const char *old_name;
} cpu_knobs[KNOB_COUNT] = {
    /* A user knob: it keeps wider vector code off machines or tools where it
     * is slow or unsupported, and plans do not depend on it. */
    [KNOB_ISA] = {"EPLB_CPU_ISA", {"auto", "avx2", "sse2"}, "caps the vector code", NULL},
    /* Tuning and tests only: same plans, slower. */
    [KNOB_STAGES] = {"EPLB_TUNE_CPU_STAGES", {"fused", "separate", NULL},
                     "runs the packing stages one by one, for tests", "EPLB_CPU_STAGES"},
    [KNOB_SWAP_SEARCH] = {"EPLB_TUNE_CPU_SWAP_SEARCH", {"auto", "pairs", "sorted"},
                          "forces one swap search at every pack size, for tests",
                          "EPLB_CPU_SWAP_SEARCH"},
};

/* The index of the knob's value in its table row, 0 (the default) when unset
 * or empty, -1 with a message when the value is not one it takes. */
static int knob_value(int knob, char *error, size_t error_len)
{
    const char *value = getenv(cpu_knobs[knob].name);
    if (!value || !*value)
        return 0;
    for (int v = 0; v < KNOB_VALUES_MAX && cpu_knobs[knob].values[v]; v++)
        if (strcmp(value, cpu_knobs[knob].values[v]) == 0)
            return v;
    char shown[128], listed[64] = "";
    for (int v = 0; v < KNOB_VALUES_MAX && cpu_knobs[knob].values[v]; v++) {
        const int last = v + 1 == KNOB_VALUES_MAX || !cpu_knobs[knob].values[v + 1];
        const size_t used = strlen(listed);
        snprintf(listed + used, sizeof listed - used, "%s%s", v == 0 ? "" : last ? " or " : ", ",
                 cpu_knobs[knob].values[v]);
    }
    snprintf(error, error_len, "%s='%s' is not a value it takes (it %s): use %s, or leave it unset",
             cpu_knobs[knob].name, eplb_text_escape(shown, sizeof shown, value),
             cpu_knobs[knob].meaning, listed);
    return -1;
}

/* The highest vector level the machine has, capped at cap. */
static int machine_isa(int cap)
{
    int found = EPLB_CPU_ISA_SSE2;
#if EPLB_CPU_X86_DISPATCH
    if (__builtin_cpu_supports("avx2"))
        found = EPLB_CPU_ISA_AVX2;
    if (found == EPLB_CPU_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        found = EPLB_CPU_ISA_AVX512;
#endif
    return found < cap ? found : cap;
}

eplb_status eplb_cpu_settings_read(eplb_cpu_settings *settings, char *error, size_t error_len)
{
    for (int k = 0; k < KNOB_COUNT; k++) {
        const char *old_value = cpu_knobs[k].old_name ? getenv(cpu_knobs[k].old_name) : NULL;
        if (old_value && *old_value) {
            snprintf(error, error_len, "%s is now called %s (it %s): set that instead",
                     cpu_knobs[k].old_name, cpu_knobs[k].name, cpu_knobs[k].meaning);
            return EPLB_ERR_INVALID_ARGUMENT;
        }
    }
    int value[KNOB_COUNT];
    for (int k = 0; k < KNOB_COUNT; k++)
        if ((value[k] = knob_value(k, error, error_len)) < 0)
            return EPLB_ERR_INVALID_ARGUMENT;
    static const int isa_cap[] = {EPLB_CPU_ISA_AVX512, EPLB_CPU_ISA_AVX2, EPLB_CPU_ISA_SSE2};
    static const int swap_search[] = {EPLB_CPU_SWAP_SEARCH_AUTO, EPLB_CPU_SWAP_SEARCH_PAIRS,
                                      EPLB_CPU_SWAP_SEARCH_SORTED};
    settings->isa = machine_isa(isa_cap[value[KNOB_ISA]]);
    settings->separate_stages = value[KNOB_STAGES] == 1;
    settings->swap_search = swap_search[value[KNOB_SWAP_SEARCH]];
    return EPLB_OK;
}

eplb_status eplb_cpu_host_avx512(int *allowed, char *error, size_t error_len)
{
    eplb_cpu_settings settings;
    const eplb_status st = eplb_cpu_settings_read(&settings, error, error_len);
    *allowed = st == EPLB_OK && settings.isa >= EPLB_CPU_ISA_AVX512;
    return st;
}
