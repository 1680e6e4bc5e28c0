/* The OpenCL backend's runtime, the layer its stages call down into: an
 * instance's state (opencl_runtime.c), the per-process caches of one
 * cl_context and one built program per device, the kernels, memory and
 * command queues, and the launches. The layers above: the stages
 * (opencl_stages.h) and the entry table (opencl_backend.c). */
#ifndef EPLB_OPENCL_RUNTIME_H
#define EPLB_OPENCL_RUNTIME_H

#include "backend.h"
#include <stddef.h>

#include "opencl_interop.h"
#include "opencl_knobs.h"
#include "opencl_loader.h"

/* Kernels of the program, one per stage or half-stage. */
typedef enum eplb_opencl_kernel_id {
    EPLB_CLK_CHECK_WEIGHTS,
    EPLB_CLK_GROUP_LOADS,
    EPLB_CLK_NODE_LAYOUT,
    EPLB_CLK_REPLICATE,
    EPLB_CLK_SLOT_LOADS,
    EPLB_CLK_ASSEMBLE_SLOTS,
    EPLB_CLK_ASSEMBLE_EXPERTS,
    EPLB_CLK_LOG2PHY_WIDTH,
    EPLB_CLK_LOG2PHY_AT_WIDTH,
    EPLB_CLK_PACK_KEYS,
    EPLB_CLK_PACK_RANK,
    EPLB_CLK_PACK_HEAPSORT,
    EPLB_CLK_PACK_GREEDY,
    EPLB_CLK_PACK_SWAP,
    EPLB_CLK_PACK_SELECT,
    EPLB_CLK_REFINE,
    EPLB_CLK_DISTINCT,
    EPLB_CLK_PLAN_FUSED,
    EPLB_CLK_COUNT
} eplb_opencl_kernel_id;

/* Packs a warp-team member holds in registers in plan_fused's greedy
 * (-DEPLB_WARP_PPL); teams are sized so that m <= team * this. */
#define EPLB_OPENCL_WARP_PPL 4
/* Items a warp-team member sorts in registers (EPLB_WARP_SPL in fused_warp.cl). */
#define EPLB_OPENCL_WARP_SPL 16

/* plan_fused kernels kept per instance, one per plan shape. */
#define EPLB_OPENCL_SHAPED_KERNELS 4

typedef struct eplb_opencl {
    eplb_opencl_handles handles;   /* first member: see opencl_interop.h */
    const eplb_opencl_api *cl;
    cl_command_queue own_queue;    /* handles.queue is this or a caller's (retained) */
    cl_device_type type;
    eplb_opencl_tuning tuning;
    cl_kernel kernel[EPLB_CLK_COUNT];
    size_t kernel_group[EPLB_CLK_COUNT]; /* largest power-of-two group each kernel takes */
    cl_mem scratch[4];             /* pack loads, pack counts (greedy and swap); a split
                                      plan's published rows and its arrival counters */
    size_t scratch_bytes[4];
    cl_ulong local_mem;            /* CL_DEVICE_LOCAL_MEM_SIZE less plan_fused's own, or the
                                      tuning's cap */
    char name[384];
    double kernel_us[EPLB_CLK_COUNT];
    long kernel_runs[EPLB_CLK_COUNT];
    char options[512];             /* the program's build options */
    /* plan_fused kernels built for one plan shape each (opencl_fused.c). */
    struct {
        char defines[512];
        long plans;                /* plans of this shape so far */
        cl_program program;
        cl_kernel kernel;
    } shaped[EPLB_OPENCL_SHAPED_KERNELS];
    int shaped_next;               /* the entry the next new shape replaces */
} eplb_opencl;

/* libeplb's eplb_opencl_native_handles reads the handles at the start of the
 * state as two pointers, without OpenCL headers. */
_Static_assert(offsetof(eplb_opencl, handles) == 0 &&
                   offsetof(eplb_opencl_handles, context) == 0 &&
                   offsetof(eplb_opencl_handles, device) == sizeof(void *),
               "eplb_opencl_native_handles depends on this layout");

static inline eplb_opencl *eplb_opencl_state(eplb_backend *backend)
{
    return (eplb_opencl *)backend->context;
}

/* One kernel argument: its size and a pointer to its value. */
typedef struct eplb_opencl_arg {
    size_t size;
    const void *value;
} eplb_opencl_arg;
#define EPLB_CL_ARG(v) ((eplb_opencl_arg){sizeof(v), &(v)})
#define EPLB_CL_ARGS(...) (const eplb_opencl_arg[]){__VA_ARGS__}, \
    (int)(sizeof((const eplb_opencl_arg[]){__VA_ARGS__}) / sizeof(eplb_opencl_arg))

/* Opens an instance on the device the knobs choose (creation): the
 * runtime, the device, its cached cl_context and a command queue. No kernel
 * is compiled here (eplb_opencl_prepare_kernels). */
eplb_status eplb_opencl_open(eplb_opencl **out, char *error, size_t error_len);
/* Releases everything the instance holds (NULL: nothing), printing the
 * kernel times first when profiling. */
void eplb_opencl_close(eplb_opencl *s);

/* Builds the program (or takes it from the cache) and makes the instance's
 * kernels, once: on the first plan, which for an instance the registry hands
 * out is its self-test. */
eplb_status eplb_opencl_prepare_kernels(eplb_backend *backend);

/* Device memory and the queue (the interface's members of those names). */
eplb_status eplb_opencl_buffer_alloc(eplb_backend *backend, size_t bytes, void **out);
void eplb_opencl_buffer_free(eplb_backend *backend, void *buffer);
eplb_status eplb_opencl_upload(eplb_backend *backend, void *dst, const void *src_host, size_t bytes);
eplb_status eplb_opencl_download(eplb_backend *backend, void *dst_host, const void *src, size_t bytes);
eplb_status eplb_opencl_set_stream(eplb_backend *backend, void *stream);
eplb_status eplb_opencl_synchronize(eplb_backend *backend);
/* The interface's host-staging entries, offered only under
 * EPLB_TUNE_OPENCL_STAGING=async: malloc'ed host memory, and copies to and
 * from it that return without waiting (eplb_opencl_synchronize waits). */
eplb_status eplb_opencl_host_alloc(eplb_backend *backend, size_t bytes, void **out);
void eplb_opencl_host_free(eplb_backend *backend, void *host);
eplb_status eplb_opencl_upload_async(eplb_backend *backend, void *dst, const void *src_host,
                                     size_t bytes);
eplb_status eplb_opencl_download_async(eplb_backend *backend, void *dst_host, const void *src,
                                       size_t bytes);

/* Enqueues kernel id over count work-items, one per element. */
eplb_status eplb_opencl_run_elements(eplb_backend *backend, eplb_opencl_kernel_id id,
                                     const eplb_opencl_arg *args, int nargs, size_t count);
/* Enqueues kernel id with one work-group per row, sized for `work` units of
 * work per row (see tuning.items_per_item). */
eplb_status eplb_opencl_run_rows(eplb_backend *backend, eplb_opencl_kernel_id id,
                                 const eplb_opencl_arg *args, int nargs, size_t rows,
                                 size_t work);
/* Enqueues kernel id over a 2-D range: items (dimension 0) x packings. */
eplb_status eplb_opencl_run_items(eplb_backend *backend, eplb_opencl_kernel_id id,
                                  const eplb_opencl_arg *args, int nargs, size_t items,
                                  size_t packings);
/* Builds kernel `name` of the embedded sources in the instance's context with
 * the instance's options plus `defines`; the program and kernel are the
 * caller's to release. */
eplb_status eplb_opencl_build_kernel(eplb_backend *backend, const char *defines, const char *name,
                                     cl_program *program, cl_kernel *kernel);

/* Enqueues kernel id, or another build of it (kernel; NULL: the
 * instance's), as `groups` work-groups of `local` work-items. */
eplb_status eplb_opencl_run_groups(eplb_backend *backend, eplb_opencl_kernel_id id,
                                   cl_kernel kernel, const eplb_opencl_arg *args, int nargs,
                                   size_t groups, size_t local);
/* Makes scratch buffer `which` (0 to 3) at least bytes long. The zeroed
 * form also fills a buffer it makes with zeros (queued, before any kernel
 * that uses it); a buffer it keeps holds what the last kernels left. */
eplb_status eplb_opencl_scratch(eplb_backend *backend, int which, size_t bytes, cl_mem *out);
eplb_status eplb_opencl_zeroed_scratch(eplb_backend *backend, int which, size_t bytes, cl_mem *out);

#endif /* EPLB_OPENCL_RUNTIME_H */
