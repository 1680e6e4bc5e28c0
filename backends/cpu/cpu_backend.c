/* The cpu backend's entry table: the interface struct over the stages and
 * the instance's create and free. Host memory, stages in plain C with
 * OpenMP; always present. */
#include "cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_runtime.h"
#include "cpu_stages.h"

/* An instance: the interface's header, and the settings that are its context. */
typedef struct cpu_instance {
    eplb_backend backend; /* first, so that the registry's pointer is the allocation's */
    eplb_cpu_settings settings;
} cpu_instance;

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

/* The two tables differ in plan_fused, without which the planner runs the
 * stages one by one, and in domain_searches (separate stages, for tests). */
#define CPU_IFACE(plan_fused_entry, domain_searches_entry)                                        \
    {                                                                                             \
        /* .free            = */ cpu_free,                                                        \
        /* .device_name     = */ cpu_device_name,                                                 \
        /* .is_accelerator  = */ cpu_is_accelerator,                                              \
        /* .buffer_alloc    = */ cpu_buffer_alloc,                                                \
        /* .buffer_free     = */ cpu_buffer_free,                                                 \
        /* .upload          = */ cpu_copy,                                                        \
        /* .download        = */ cpu_copy,                                                        \
        /* .set_stream      = */ NULL,                                                            \
        /* .synchronize     = */ NULL,                                                            \
        /* .check_weights   = */ NULL,                                                            \
        /* .group_loads     = */ eplb_cpu_group_loads,                                            \
        /* .node_layout     = */ eplb_cpu_node_layout,                                            \
        /* .replicate       = */ eplb_cpu_replicate,                                              \
        /* .slot_loads      = */ eplb_cpu_slot_loads,                                             \
        /* .assemble        = */ eplb_cpu_assemble,                                               \
        /* .pack_sort       = */ eplb_cpu_pack_sort,                                              \
        /* .pack_greedy     = */ eplb_cpu_pack_greedy,                                            \
        /* .pack_swap       = */ eplb_cpu_pack_swap,                                              \
        /* .pack_select     = */ eplb_cpu_pack_select,                                            \
        /* .distinct        = */ eplb_cpu_distinct,                                               \
        /* .refine          = */ eplb_cpu_refine,                                                 \
        /* .plan_fused      = */ plan_fused_entry,                                                \
        /* .host_memory     = */ 1,                                                               \
        /* host staging: none, the buffers are host memory already */                             \
        /* .host_alloc      = */ NULL,                                                            \
        /* .host_free       = */ NULL,                                                            \
        /* .upload_async    = */ NULL,                                                            \
        /* .download_async  = */ NULL,                                                            \
        /* .fused_refines   = */ 1, /* plan_fused runs cpu_refine.c's search on each row */       \
        /* .start           = */ cpu_start,                                                       \
        /* .log2phy_at_needed_width = */ NULL, /* no device-pointer API */                        \
        /* .domain_searches = */ domain_searches_entry,                                          \
    }

/* A context's instance starts the OpenMP team and the threads' arenas
 * (cpu_scratch.c); probes and the self-test's reference instance do not. */
static void cpu_start(eplb_backend *backend)
{
    (void)backend;
    eplb_cpu_threads_warm();
}

/* Declines every batch of searches, so that the library runs them on the
 * host through the batched plan of incremental.c, which a backend with its
 * own searches (cuda) takes: the separate stages' instance does, for tests. */
static eplb_status decline_domain_searches(eplb_backend *backend, const eplb_search_job *job)
{
    (void)backend;
    (void)job;
    return EPLB_BACKEND_DECLINED;
}

static const eplb_backend_i cpu_iface_fused = CPU_IFACE(eplb_cpu_plan_fused, NULL);
static const eplb_backend_i cpu_iface_separate = CPU_IFACE(NULL, decline_domain_searches);

static eplb_status cpu_create(eplb_backend **out, char *error, size_t error_len)
{
    eplb_cpu_settings settings;
    eplb_status st = eplb_cpu_settings_read(&settings, error, error_len);
    if (st != EPLB_OK)
        return st;
    cpu_instance *instance = calloc(1, sizeof *instance);
    if (!instance) {
        snprintf(error, error_len, "cannot allocate the cpu backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    instance->settings = settings;
    eplb_backend *backend = &instance->backend;
    backend->api_version = EPLB_BACKEND_API_VERSION;
    backend->context = &instance->settings;
    /* Separate stages run every stage as its own pass (and sort, greedy, swap
     * and select separately): slower, and there so that tests cover each
     * stage on its own. */
    backend->iface = settings.separate_stages ? &cpu_iface_separate : &cpu_iface_fused;
    *out = backend;
    return EPLB_OK;
}

static const eplb_backend_module cpu_module = {
    /* .api_version = */ EPLB_BACKEND_API_VERSION,
    /* .name        = */ "cpu",
    /* .create      = */ cpu_create,
};

const eplb_backend_module *eplb_cpu_backend_module(void) { return &cpu_module; }
