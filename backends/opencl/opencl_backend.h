/* The OpenCL backend: state shared by its files. One cl_context and one built
 * program per device and process (cached); per instance a command queue, its
 * kernels and a scratch buffer. */
#ifndef EPLB_OPENCL_BACKEND_H
#define EPLB_OPENCL_BACKEND_H

#include "backend.h"
#include <stddef.h>

#include "opencl_interop.h"
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
    EPLB_CLK_PACK_KEYS,
    EPLB_CLK_PACK_RANK,
    EPLB_CLK_PACK_HEAPSORT,
    EPLB_CLK_PACK_GREEDY,
    EPLB_CLK_PACK_SWAP,
    EPLB_CLK_PACK_SELECT,
    EPLB_CLK_PLAN_FUSED,
    EPLB_CLK_COUNT
} eplb_opencl_kernel_id;

/* Launch knobs (CLBlast idea): device-type defaults, EPLB_OPENCL_* overrides;
 * group_size also reaches the kernels as -DEPLB_WG. */
/* Packs a warp-team member holds in registers in plan_fused's greedy
 * (-DEPLB_WARP_PPL); teams are sized so that m <= team * this. */
#define EPLB_OPENCL_WARP_PPL 4
/* Items a warp-team member sorts in registers (EPLB_WARP_SPL in plan_fused.cl). */
#define EPLB_OPENCL_WARP_SPL 16

/* plan_fused kernels kept per instance, one per plan shape. */
#define EPLB_OPENCL_SHAPED_KERNELS 4

typedef struct eplb_opencl_tuning {
    size_t group_size;      /* largest work-group of the row kernels (power of two) */
    size_t element_size;    /* work-group of the element-wise kernels */
    size_t items_per_item;  /* work per work-item when sizing a row kernel's group */
    int rank_sort;          /* 1: rank sort (GPU), 0: heap sort (CPU devices) */
    int fused;              /* EPLB_OPENCL_PATH: 1 fused (default), 0 stages */
    size_t fused_group;     /* EPLB_OPENCL_FUSED_WG: work-group of plan_fused (power of two) */
    size_t fused_team;      /* EPLB_OPENCL_FUSED_TEAM: work-items per packing, 0: by pack count */
    int fused_teams;        /* 1: team kernel variant, 0: a work-item per packing (-DEPLB_FUSED_TEAMS) */
    int greedy_scan_max;    /* one-work-item greedy: scan up to this many packs, else a heap */
    int warp_teams;         /* 1: teams are NVIDIA warps exchanging by shuffles (-DEPLB_NV_WARP) */
    int nv_sm;              /* NVIDIA compute capability, major * 10 + minor (-DEPLB_NV_SM), or 0 */
    int shaped;             /* EPLB_OPENCL_SHAPED: plan_fused compiled per plan shape: 0 never,
                               1 from a shape's third plan, 2 from its first */
    int split;              /* EPLB_OPENCL_SPLIT: plan_fused groups per layer, -1: by shape */
    size_t compute_units;   /* CL_DEVICE_MAX_COMPUTE_UNITS */
} eplb_opencl_tuning;

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
    cl_ulong local_mem;            /* CL_DEVICE_LOCAL_MEM_SIZE less plan_fused's own */
    char name[384];
    int profile;                   /* EPLB_OPENCL_PROFILE: time every kernel (synchronously) */
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
/* Enqueues kernel id as `groups` work-groups of `local` work-items. */
/* Builds kernel `name` of the embedded sources in the instance's context with
 * the instance's options plus `defines`; the program and kernel are the
 * caller's to release. */
eplb_status eplb_opencl_build_kernel(eplb_backend *backend, const char *defines, const char *name,
                                     cl_program *program, cl_kernel *kernel);

/* eplb_opencl_run_groups with another build of kernel id (NULL: the instance's). */
eplb_status eplb_opencl_run_groups_with(eplb_backend *backend, eplb_opencl_kernel_id id,
                                        cl_kernel kernel, const eplb_opencl_arg *args, int nargs,
                                        size_t groups, size_t local);

eplb_status eplb_opencl_run_groups(eplb_backend *backend, eplb_opencl_kernel_id id,
                                   const eplb_opencl_arg *args, int nargs, size_t groups,
                                   size_t local);
/* Makes scratch buffer `which` (0 to 3) at least bytes long. The zeroed
 * form also fills a buffer it makes with zeros (queued, before any kernel
 * that uses it); a buffer it keeps holds what the last kernels left. */
eplb_status eplb_opencl_scratch(eplb_backend *backend, int which, size_t bytes, cl_mem *out);
eplb_status eplb_opencl_zeroed_scratch(eplb_backend *backend, int which, size_t bytes, cl_mem *out);

/* Stages (opencl_pack.c, opencl_glue.c). */
eplb_status eplb_opencl_pack_sort(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_pack_greedy(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_pack_swap(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_pack_select(eplb_backend *backend, const eplb_pack_job *job);
eplb_status eplb_opencl_check_weights(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_group_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_node_layout(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_replicate(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_slot_loads(eplb_backend *backend, const eplb_plan_job *job);
eplb_status eplb_opencl_assemble(eplb_backend *backend, const eplb_plan_job *job);
/* The whole plan: one work-group per layer when it fits in local memory,
 * else (or with EPLB_OPENCL_PATH=stages) the stages above (opencl_fused.c). */
eplb_status eplb_opencl_plan_fused(eplb_backend *backend, const eplb_plan_job *job);

#endif /* EPLB_OPENCL_BACKEND_H */
