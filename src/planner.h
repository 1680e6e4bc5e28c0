/* The planner: policy choice, the hierarchical decomposition, the workspace
 * and the order of the stages. Knows nothing of any particular backend. It
 * calls validation.c for the checks of shapes and options and context.c for
 * its error messages, and nothing above it. */
#ifndef EPLB_PLANNER_H
#define EPLB_PLANNER_H

#include "backend.h"

/* Backend buffers kept by a context between calls, by role. */
typedef enum eplb_buffer_role {
    EPLB_BUF_WEIGHT,
    EPLB_BUF_STATUS,
    EPLB_BUF_GROUP_LOAD,
    EPLB_BUF_GROUP_ORDER,
    EPLB_BUF_GROUP_CONTENT,
    EPLB_BUF_GROUP_PACK_OF,
    EPLB_BUF_GROUP_RANK_OF,
    EPLB_BUF_LOG2MLOG,
    EPLB_BUF_MLOG2LOG,
    EPLB_BUF_NODE_WEIGHT,
    EPLB_BUF_PHY2MLOG,
    EPLB_BUF_PHYRANK,
    EPLB_BUF_MLOGCNT,
    EPLB_BUF_SLOT_LOAD,
    EPLB_BUF_SLOT_ORDER,
    EPLB_BUF_SLOT_CONTENT,
    EPLB_BUF_SLOT_PACK_OF,
    EPLB_BUF_SLOT_RANK_OF,
    EPLB_BUF_PHY2LOG,
    EPLB_BUF_LOGCNT,
    EPLB_BUF_SLOT_RANK,
    EPLB_BUF_ROW_CHANGED,
    EPLB_BUF_ROW_SEED_MAX,
    EPLB_BUF_COUNT
} eplb_buffer_role;

typedef struct eplb_workspace {
    void *buffer[EPLB_BUF_COUNT];
    size_t capacity[EPLB_BUF_COUNT];
    /* Host staging of eplb_rebalance on a device backend: the weights on
     * their way in (when the backend copies asynchronously) and the outputs
     * before they are checked, in one area that grows only when a larger
     * shape comes. Page-locked (the backend's host_alloc) when the backend
     * has it, else malloc'ed. */
    unsigned char *host_staging;
    size_t host_staging_capacity;
    /* The same for eplb_rebalance_incremental_device's inputs (the weights
     * and the previous plan brought down) and the host plan made from them,
     * apart from the staging area that the plan inside uses. */
    unsigned char *input_staging;
    size_t input_staging_capacity;
    /* The same for the incremental rebalance's batch of searches (the
     * eplb_search_job of a backend with domain_searches). */
    unsigned char *search_staging;
    size_t search_staging_capacity;
    /* Whether the last eplb_rebalance_device call enqueued a plan: only then
     * is there a status word for eplb_device_status to read. */
    int device_plan_pending;
    /* The log2phy_width of that call (EPLB_LOG2PHY_WIDTH_NEEDED: the device
     * chose the width and left it in the status buffer's second word). */
    int64_t device_plan_width;
} eplb_workspace;

typedef struct eplb_context eplb_context;

/* Releases every buffer of the workspace through the context's backend. */
void eplb_workspace_release(eplb_context *ctx);

/* Whether a plan of this shape with these (checked) options follows the
 * hierarchical policy (SPEC section 3): auto and hierarchical when groups %
 * nodes == 0, never global. */
int eplb_planner_hierarchical(const eplb_shape *shape, const eplb_options *options);

/* Host-memory plan behind eplb_rebalance. */
eplb_status eplb_plan_host(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                           const eplb_options *options, int64_t *phy2log, int64_t *logcnt,
                           int64_t *log2phy, int64_t log2phy_width, int64_t *width_needed);

/* Device-memory plan behind eplb_rebalance_device. */
eplb_status eplb_plan_device(eplb_context *ctx, const void *weight, const eplb_shape *shape,
                             const eplb_options *options, void *phy2log, void *logcnt,
                             void *log2phy, int64_t log2phy_width, void *stream);

/* Writes a plan made on the host (its phy2log, L x R) into
 * the device outputs of eplb_rebalance_device's form on stream, logcnt and
 * log2phy built on the device by the assemble stage (log2phy at the caller's
 * width, which must hold the largest count), and waits until they are
 * written. The plan's own
 * copies go up as 32-bit slots, ranks and counts, a fraction of the bytes
 * of a log2phy built on the host. */
eplb_status eplb_plan_write_device_outputs(eplb_context *ctx, const eplb_shape *shape,
                                          const int64_t *plan,
                                          void *phy2log, void *logcnt, void *log2phy,
                                          int64_t log2phy_width, void *stream);

/* Brings count buffers down from the device on stream (after the work
 * enqueued there before) into one host area of the workspace, kept from call
 * to call and page-locked where the backend can, at the given offsets, and
 * waits once for all of them. *area receives the area, at least bytes long;
 * it stays valid until the next call of this function. The incremental
 * device form reads its inputs so, and eplb_plan_device_status the status
 * words. */
eplb_status eplb_plan_read_device_buffers(eplb_context *ctx, void *stream, size_t bytes, int count,
                                         const void *const *sources, const size_t *offsets,
                                         const size_t *sizes, unsigned char **area);

/* A host area of the workspace of at least bytes (> 0), kept from call to
 * call and page-locked where the backend can, for the incremental
 * rebalance's batch of searches: *area receives it. Returns EPLB_OK or an
 * error with its message in ctx. */
eplb_status eplb_plan_search_area(eplb_context *ctx, size_t bytes, unsigned char **area);

/* Status of the last device plan (waits for the stream); with width not
 * NULL, on EPLB_OK also the row width its log2phy was written at. */
eplb_status eplb_plan_device_status(eplb_context *ctx, void *stream, int64_t *width);

#endif /* EPLB_PLANNER_H */
