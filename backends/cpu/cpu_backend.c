/* The cpu backend: host memory, stages in plain C with OpenMP. Always present. */
#include "cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text_escape.h"
#include "registry.h"

#if EPLB_CPU_X86_DISPATCH
int eplb_cpu_isa(void)
{
    static int cached = -1; /* every thread computes the same value */
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        int found = EPLB_CPU_ISA_SSE2;
        if (__builtin_cpu_supports("avx2"))
            found = EPLB_CPU_ISA_AVX2;
        if (found == EPLB_CPU_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            found = EPLB_CPU_ISA_AVX512;
        const char *cap = getenv("EPLB_CPU_ISA");
        if (cap && strcmp(cap, "sse2") == 0)
            found = EPLB_CPU_ISA_SSE2;
        else if (cap && strcmp(cap, "avx2") == 0 && found > EPLB_CPU_ISA_AVX2)
            found = EPLB_CPU_ISA_AVX2;
        level = found;
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
}
#endif

static void cpu_free(eplb_backend *backend) { free(backend); }

static const char *cpu_device_name(eplb_backend *backend)
{
    (void)backend;
    return "host CPU (OpenMP)";
}

static int cpu_is_accelerator(eplb_backend *backend)
{
    (void)backend;
    return 0;
}

static eplb_status cpu_buffer_alloc(eplb_backend *backend, size_t bytes, void **out)
{
    /* 64-byte alignment keeps rows of different threads off shared cache lines. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                                  "cannot allocate %zu bytes of host memory", bytes);
    *out = p;
    return EPLB_OK;
}

static void cpu_buffer_free(eplb_backend *backend, void *buffer)
{
    (void)backend;
    free(buffer);
}

static eplb_status cpu_copy(eplb_backend *backend, void *dst, const void *src, size_t bytes)
{
    (void)backend;
    memcpy(dst, src, bytes);
    return EPLB_OK;
}

static const eplb_backend_i cpu_iface_fused = {
    /* .free            = */ cpu_free,
    /* .device_name     = */ cpu_device_name,
    /* .is_accelerator  = */ cpu_is_accelerator,
    /* .buffer_alloc    = */ cpu_buffer_alloc,
    /* .buffer_free     = */ cpu_buffer_free,
    /* .upload          = */ cpu_copy,
    /* .download        = */ cpu_copy,
    /* .set_stream      = */ NULL,
    /* .synchronize     = */ NULL,
    /* .check_weights   = */ NULL,
    /* .group_loads     = */ eplb_cpu_group_loads,
    /* .node_layout     = */ eplb_cpu_node_layout,
    /* .replicate       = */ eplb_cpu_replicate,
    /* .slot_loads      = */ eplb_cpu_slot_loads,
    /* .assemble        = */ eplb_cpu_assemble,
    /* .pack_sort       = */ eplb_cpu_pack_sort,
    /* .pack_greedy     = */ eplb_cpu_pack_greedy,
    /* .pack_swap       = */ eplb_cpu_pack_swap,
    /* .pack_select     = */ eplb_cpu_pack_select,
    /* .pack_fused      = */ NULL, /* plan_fused packs a row at a time (cpu_pack_fused.c) */
    /* .plan_fused      = */ eplb_cpu_plan_fused,
    /* .host_memory     = */ 1,
};

/* The same backend with the four packing stages run one by one. */
static eplb_backend_i cpu_iface_separate;

/* The cpu backend's environment knobs (docs/api.md), each with the values it
 * takes; unset or empty means the default. A value outside the list is an
 * error at creation rather than a knob silently ignored. */
static const struct {
    const char *name;
    const char *values[3];
    const char *meaning;
} cpu_knobs[] = {
    {"EPLB_CPU_ISA", {"sse2", "avx2", NULL}, "caps the vector code"},
    {"EPLB_CPU_STAGES", {"separate", NULL, NULL}, "runs the packing stages one by one (tests)"},
    {"EPLB_CPU_SWAP_SEARCH", {"pairs", "sorted", NULL}, "forces one swap search (tests)"},
};

static eplb_status check_cpu_knobs(char *error, size_t error_len)
{
    for (size_t k = 0; k < sizeof cpu_knobs / sizeof cpu_knobs[0]; k++) {
        const char *value = getenv(cpu_knobs[k].name);
        if (!value || !*value)
            continue;
        int known = 0;
        for (int v = 0; v < 3 && cpu_knobs[k].values[v]; v++)
            known |= strcmp(value, cpu_knobs[k].values[v]) == 0;
        if (known)
            continue;
        char shown[128];
        snprintf(error, error_len, "%s='%s' is not a value it takes (it %s): use %s%s%s, or leave "
                                   "it unset",
                 cpu_knobs[k].name, eplb_text_escape(shown, sizeof shown, value),
                 cpu_knobs[k].meaning, cpu_knobs[k].values[0],
                 cpu_knobs[k].values[1] ? " or " : "",
                 cpu_knobs[k].values[1] ? cpu_knobs[k].values[1] : "");
        return EPLB_ERR_INVALID_ARGUMENT;
    }
    return EPLB_OK;
}

static eplb_status cpu_create(eplb_backend **out, char *error, size_t error_len)
{
    eplb_status st = check_cpu_knobs(error, error_len);
    if (st != EPLB_OK)
        return st;
    eplb_backend *backend = calloc(1, sizeof *backend);
    if (!backend) {
        snprintf(error, error_len, "cannot allocate the cpu backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    backend->api_version = EPLB_BACKEND_API_VERSION;
    /* EPLB_CPU_STAGES=separate runs every stage as its own pass (and sort,
     * greedy, swap and select separately): slower, and there so that tests
     * cover each stage on its own. */
    const char *stages = getenv("EPLB_CPU_STAGES");
    if (stages && strcmp(stages, "separate") == 0) {
        cpu_iface_separate = cpu_iface_fused;
        cpu_iface_separate.plan_fused = NULL;
        backend->iface = &cpu_iface_separate;
    } else {
        backend->iface = &cpu_iface_fused;
    }
    *out = backend;
    return EPLB_OK;
}

static const eplb_backend_module cpu_module = {
    /* .api_version = */ EPLB_BACKEND_API_VERSION,
    /* .name        = */ "cpu",
    /* .create      = */ cpu_create,
};

const eplb_backend_module *eplb_cpu_backend_module(void) { return &cpu_module; }
