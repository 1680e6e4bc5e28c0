/* The OpenCL backend's entry: the eplb_backend_i tables, instance creation
 * and release, and the module's one exported symbol. The top layer: it calls
 * the stages (opencl_stages.h) and the runtime (opencl_runtime.h), and
 * neither calls it. */
#include <stdio.h>
#include <stdlib.h>

#include "opencl_device.h"
#include "opencl_stages.h"

static void opencl_free(eplb_backend *backend)
{
    if (!backend)
        return;
    eplb_opencl_close(eplb_opencl_state(backend));
    free(backend);
}

static const char *opencl_device_name(eplb_backend *backend)
{
    return eplb_opencl_state(backend)->name;
}

static int opencl_is_accelerator(eplb_backend *backend)
{
    return eplb_opencl_is_accelerator_type(eplb_opencl_state(backend)->type);
}

/* The interface's stages: each makes sure the kernels exist, then runs. */
#define EPLB_OPENCL_STAGE(stage, job_type)                                         \
    static eplb_status prepared_##stage(eplb_backend *backend, const job_type *job) \
    {                                                                              \
        const eplb_status st = eplb_opencl_prepare_kernels(backend);               \
        return st != EPLB_OK ? st : eplb_opencl_##stage(backend, job);             \
    }
EPLB_OPENCL_STAGE(check_weights, eplb_plan_job)
EPLB_OPENCL_STAGE(group_loads, eplb_plan_job)
EPLB_OPENCL_STAGE(node_layout, eplb_plan_job)
EPLB_OPENCL_STAGE(replicate, eplb_plan_job)
EPLB_OPENCL_STAGE(slot_loads, eplb_plan_job)
EPLB_OPENCL_STAGE(assemble, eplb_plan_job)
EPLB_OPENCL_STAGE(pack_sort, eplb_pack_job)
EPLB_OPENCL_STAGE(pack_greedy, eplb_pack_job)
EPLB_OPENCL_STAGE(pack_swap, eplb_pack_job)
EPLB_OPENCL_STAGE(pack_select, eplb_pack_job)
EPLB_OPENCL_STAGE(plan_fused, eplb_plan_job)
EPLB_OPENCL_STAGE(log2phy_at_needed_width, eplb_plan_job)
#undef EPLB_OPENCL_STAGE

/* The interface table, with or without the host-staging entries: one table
 * per EPLB_TUNE_OPENCL_STAGING setting, chosen when the instance is created. */
#define OPENCL_IFACE(host_alloc_entry, host_free_entry, upload_async_entry, download_async_entry)  \
    {                                                                                              \
        /* .free            = */ opencl_free,                                                      \
        /* .device_name     = */ opencl_device_name,                                               \
        /* .is_accelerator  = */ opencl_is_accelerator,                                            \
        /* .buffer_alloc    = */ eplb_opencl_buffer_alloc,                                         \
        /* .buffer_free     = */ eplb_opencl_buffer_free,                                          \
        /* .upload          = */ eplb_opencl_upload,                                               \
        /* .download        = */ eplb_opencl_download,                                             \
        /* .set_stream      = */ eplb_opencl_set_stream,                                           \
        /* .synchronize     = */ eplb_opencl_synchronize,                                          \
        /* .check_weights   = */ prepared_check_weights,                                           \
        /* .group_loads     = */ prepared_group_loads,                                             \
        /* .node_layout     = */ prepared_node_layout,                                             \
        /* .replicate       = */ prepared_replicate,                                               \
        /* .slot_loads      = */ prepared_slot_loads,                                              \
        /* .assemble        = */ prepared_assemble,                                                \
        /* .pack_sort       = */ prepared_pack_sort,                                               \
        /* .pack_greedy     = */ prepared_pack_greedy,                                             \
        /* .pack_swap       = */ prepared_pack_swap,                                               \
        /* .pack_select     = */ prepared_pack_select,                                             \
        /* .distinct        = */ eplb_opencl_distinct, /* prepares the kernels itself */           \
        /* .refine          = */ eplb_opencl_refine, /* prepares the kernels itself */             \
        /* .plan_fused      = */ prepared_plan_fused,                                              \
        /* .host_memory     = */ 0,                                                                \
        /* .host_alloc      = */ host_alloc_entry,                                                 \
        /* .host_free       = */ host_free_entry,                                                  \
        /* .upload_async    = */ upload_async_entry,                                               \
        /* .download_async  = */ download_async_entry,                                             \
        /* .fused_refines   = */ 0, /* refine runs as the eplb_refine kernel after the stages */   \
        /* .start           = */ NULL,                                                             \
        /* .log2phy_at_needed_width = */ prepared_log2phy_at_needed_width,                         \
        /* .domain_searches = */ NULL, /* the searches of SPEC 13.5 run on the host */             \
    }

/* The default: host staging through malloc and waiting copies. */
static const eplb_backend_i opencl_iface_sync = OPENCL_IFACE(NULL, NULL, NULL, NULL);
/* EPLB_TUNE_OPENCL_STAGING=async: the planner's asynchronous staging branch,
 * which only cuda takes by default, on any OpenCL device (CI's PoCL). */
static const eplb_backend_i opencl_iface_async =
    OPENCL_IFACE(eplb_opencl_host_alloc, eplb_opencl_host_free, eplb_opencl_upload_async,
                 eplb_opencl_download_async);

/* Reads the knobs, opens the runtime on the chosen device and wraps the
 * instance in the interface: no kernel is compiled here. */
static eplb_status opencl_create(eplb_backend **out, char *error, size_t error_len)
{
    *out = NULL;
    eplb_opencl *s = NULL;
    const eplb_status st = eplb_opencl_open(&s, error, error_len);
    if (st != EPLB_OK)
        return st;
    eplb_backend *backend = calloc(1, sizeof *backend);
    if (!backend) {
        eplb_opencl_close(s);
        snprintf(error, error_len, "cannot allocate the opencl backend");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    backend->api_version = EPLB_BACKEND_API_VERSION;
    backend->iface = s->tuning.async_staging ? &opencl_iface_async : &opencl_iface_sync;
    backend->context = s;
    *out = backend;
    return EPLB_OK;
}

static const eplb_backend_module opencl_module = {
    /* .api_version = */ EPLB_BACKEND_API_VERSION,
    /* .name        = */ "opencl",
    /* .create      = */ opencl_create,
};

__attribute__((visibility("default"))) const eplb_backend_module *eplb_backend_module_get(void)
{
    return &opencl_module;
}
