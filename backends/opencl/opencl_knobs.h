/* The OpenCL backend's environment knobs, read and checked in one place
 * (opencl_knobs.c, whose table docs/opencl.md lists): two user knobs that
 * choose the device, and tuning knobs (EPLB_TUNE_OPENCL_*) for tests and
 * timing, which change the speed and never the plan. From the knobs and the
 * device come the launch settings (eplb_opencl_tuning). */
#ifndef EPLB_OPENCL_KNOBS_H
#define EPLB_OPENCL_KNOBS_H

#include "opencl_device.h"

/* The knobs as set; -1 (NULL for the device choice) where unset or empty. */
typedef struct eplb_opencl_knobs {
    const char *platform;   /* EPLB_OPENCL_PLATFORM: index or name substring */
    const char *device;     /* EPLB_OPENCL_DEVICE: index or name substring */
    long group_size;        /* EPLB_TUNE_OPENCL_WG */
    long items_per_item;    /* EPLB_TUNE_OPENCL_ITEMS_PER_THREAD */
    long rank_sort;         /* EPLB_TUNE_OPENCL_SORT: 1 rank, 0 heap */
    long stages;            /* EPLB_TUNE_OPENCL_PATH: 1 stages, 0 fused */
    long fused_group;       /* EPLB_TUNE_OPENCL_FUSED_WG */
    long fused_team;        /* EPLB_TUNE_OPENCL_FUSED_TEAM: N, or EPLB_OPENCL_TEAM_AUTO */
    long greedy_scan_max;   /* EPLB_TUNE_OPENCL_GREEDY_SCAN_MAX */
    long warp;              /* EPLB_TUNE_OPENCL_WARP: 0 off */
    long shaped;            /* EPLB_TUNE_OPENCL_SHAPED: 0, 1, 2 (always) */
    long split;             /* EPLB_TUNE_OPENCL_SPLIT */
    long local_mem;         /* EPLB_TUNE_OPENCL_LOCAL_MEM, bytes */
    long profile;           /* EPLB_TUNE_OPENCL_PROFILE: 1 on */
    long staging;           /* EPLB_TUNE_OPENCL_STAGING: 1 async, 0 sync */
} eplb_opencl_knobs;

#define EPLB_OPENCL_TEAM_AUTO (-2)

/* Launch settings (CLBlast's idea): device-type defaults, knob overrides,
 * device limits; group_size also reaches the kernels as -DEPLB_WG. */
typedef struct eplb_opencl_tuning {
    size_t group_size;      /* largest work-group of the row kernels (power of two) */
    size_t element_size;    /* work-group of the element-wise kernels */
    size_t items_per_item;  /* work per work-item when sizing a row kernel's group */
    int rank_sort;          /* 1: rank sort (GPU), 0: heap sort (CPU devices) */
    int fused;              /* 1: plan_fused where it fits (default), 0: the stages always */
    size_t fused_group;     /* work-group of plan_fused (power of two) */
    size_t fused_team;      /* work-items per packing, 0: by pack count */
    int fused_teams;        /* 1: team kernel variant, 0: a work-item per packing (-DEPLB_FUSED_TEAMS) */
    int greedy_scan_max;    /* one-work-item greedy: scan up to this many packs, else blocks */
    int warp_teams;         /* 1: teams are NVIDIA warps exchanging by shuffles (-DEPLB_NV_WARP) */
    int nv_sm;              /* NVIDIA compute capability, major * 10 + minor (-DEPLB_NV_SM), or 0 */
    int shaped;             /* plan_fused compiled per plan shape: 0 never, 1 from a shape's
                               third plan, 2 from its first */
    int split;              /* plan_fused groups per layer, -1: by shape */
    size_t compute_units;   /* CL_DEVICE_MAX_COMPUTE_UNITS */
    size_t local_mem_cap;   /* a smaller local-memory budget for plan_fused, 0: the device's */
    int profile;            /* time every kernel (synchronously) */
    int async_staging;      /* 1: the interface offers the asynchronous host-staging
                               entries (tests), 0: it leaves them NULL */
} eplb_opencl_tuning;

/* Reads every knob. A value a knob does not take, or a knob set under its
 * old name, is EPLB_ERR_INVALID_ARGUMENT with a message naming it. */
eplb_status eplb_opencl_knobs_read(eplb_opencl_knobs *knobs, char *error, size_t error_len);

/* The launch settings for device d under the knobs. */
void eplb_opencl_choose_tuning(const eplb_opencl_api *cl, const eplb_opencl_device *d,
                               const eplb_opencl_knobs *knobs, eplb_opencl_tuning *t);

#endif /* EPLB_OPENCL_KNOBS_H */
