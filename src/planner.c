/* The planner: SPEC sections 2 to 4 as a sequence of backend stages.
 *
 *   check weights -> group loads -> pack groups to nodes (call 0)
 *   -> node layout -> replicate within nodes -> slot loads
 *   -> pack slots to GPUs (call 1) -> distinct (SPEC 11, when asked)
 *   -> refine (SPEC 10, when asked, and SPEC 11.5's restore) -> assemble outputs
 *
 * Every array lives in backend buffers kept by the context, so a GPU backend
 * keeps all intermediates on the device. */
#include "planner.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/threads_usable.h"
#include "context.h"
#include "validation.h"

int eplb_planner_hierarchical(const eplb_shape *shape, const eplb_options *options)
{
    return options->policy != EPLB_POLICY_GLOBAL && shape->groups % shape->nodes == 0;
}

/* Refuses NULL arrays (log2phy only where the call needs it, as the device
 * API does), checks the shape and options, applies the policy (SPEC section
 * 3) and fills the dimensions of job. options NULL means the defaults. */
static eplb_status describe_plan(eplb_context *ctx, const void *weight, const eplb_shape *shape,
                                 const eplb_options *options, const void *phy2log,
                                 const void *logcnt, const void *log2phy, int needs_log2phy,
                                 eplb_plan_job *job)
{
    if (!weight || !shape || !phy2log || !logcnt || (needs_log2phy && !log2phy))
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                 needs_log2phy
                                     ? "weight, shape, phy2log, logcnt and log2phy must not be NULL"
                                     : "weight, shape, phy2log and logcnt must not be NULL");
    eplb_options read;
    if (!options)
        eplb_options_init(&read);
    const char *why;
    eplb_status status = eplb_shape_check(shape, &why);
    if (status != EPLB_OK)
        return eplb_context_fail(ctx, status, "invalid shape: %s", why);
    if (options) {
        status = eplb_options_read(options, &read, &why);
        if (status != EPLB_OK)
            return eplb_context_fail(ctx, status, "invalid options: %s", why);
    }
    options = &read;
    /* The one limit that needs the options as well as the shape: the packing
     * keeps every candidate's slot order (include/eplb/eplb.h). */
    const int64_t candidate_slots = shape->layers * shape->replicas * options->candidates;
    if (candidate_slots > EPLB_MAX_CANDIDATE_SLOTS)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_SHAPE,
                                 "layers * replicas * candidates "
                                 "(%lld) exceeds the limit EPLB_MAX_CANDIDATE_SLOTS = %lld; use "
                                 "fewer candidates",
                                 (long long)candidate_slots, (long long)EPLB_MAX_CANDIDATE_SLOTS);

    const int hierarchical = eplb_planner_hierarchical(shape, options);
    if (options->policy == EPLB_POLICY_HIERARCHICAL && !hierarchical)
        return eplb_context_fail(ctx, EPLB_ERR_POLICY,
                                 "hierarchical policy needs groups (%lld) divisible by nodes (%lld)",
                                 (long long)shape->groups, (long long)shape->nodes);
    /* Nodes matter only to the hierarchical policy: the global one ignores
     * them, so gpus % nodes is checked only here (golden v3-decode-global has
     * 64 GPUs on 3 nodes and is planned globally). */
    if (hierarchical && shape->gpus % shape->nodes != 0)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_SHAPE,
                                 "invalid shape: gpus (%lld) must be divisible by nodes (%lld) "
                                 "for the hierarchical policy",
                                 (long long)shape->gpus, (long long)shape->nodes);

    /* An explicit backend that cannot do what was asked is an error, never a
     * fallback to another backend. */
    if (options->refine > 0 && !ctx->backend->iface->refine)
        return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                 "the %s backend has no refine stage (docs/spec.md section 10): "
                                 "plan with another backend, or with refine 0",
                                 ctx->backend_name);

    if (options->distinct) {
        /* SPEC 11.2: each row must offer a GPU's slots as many different
         * experts. The policy is the one chosen above. */
        const int64_t row_experts = hierarchical ? shape->experts / shape->nodes : shape->experts;
        const int64_t gpu_slots = shape->replicas / shape->gpus;
        if (row_experts < gpu_slots)
            return eplb_context_fail(ctx, EPLB_ERR_INVALID_SHAPE,
                                     "distinct needs at least as many experts per %s (%lld) as "
                                     "slots per GPU (%lld), or a GPU would have to hold an expert "
                                     "twice (docs/spec.md section 11.2)",
                                     hierarchical ? "node" : "layer", (long long)row_experts,
                                     (long long)gpu_slots);
        if (!ctx->backend->iface->distinct)
            return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                     "the %s backend has no distinct stage (docs/spec.md "
                                     "section 11): plan with another backend, or with distinct 0",
                                     ctx->backend_name);
    }

    memset(job, 0, sizeof *job);
    job->refine = options->refine;
    job->distinct = options->distinct;
    job->layers = shape->layers;
    job->experts = shape->experts;
    job->replicas = shape->replicas;
    job->groups = hierarchical ? shape->groups : 1;
    job->nodes = hierarchical ? shape->nodes : 1;
    job->gpus = shape->gpus;
    job->group_size = job->experts / job->groups;
    job->node_experts = job->experts / job->nodes;
    job->node_slots = job->replicas / job->nodes;
    job->gpu_slots = job->replicas / job->gpus;

    eplb_pack_job *gp = &job->group_pack;
    gp->call = 0;
    gp->rows = job->layers;
    gp->items = (int32_t)job->groups;
    gp->packs = (int32_t)job->nodes;
    gp->per_pack = (int32_t)(job->groups / job->nodes);

    eplb_pack_job *sp = &job->slot_pack;
    sp->call = 1;
    sp->rows = job->layers * job->nodes;
    sp->items = (int32_t)job->node_slots;
    sp->packs = (int32_t)(job->gpus / job->nodes);
    sp->per_pack = (int32_t)job->gpu_slots;

    for (eplb_pack_job *p = gp; p; p = p == gp ? sp : NULL) {
        p->candidates = options->candidates;
        p->iterations = options->iterations;
        p->noise = options->noise;
        p->tolerance = options->tolerance;
        p->seed = options->seed;
    }
    /* The GPU backends try all k * k pairs of two packs at each swap, so
     * their work grows with the square of the items per pack; past the limit
     * a plan would run for hours instead of failing at once. */
    const int32_t per_pack = gp->per_pack > sp->per_pack ? gp->per_pack : sp->per_pack;
    if (options->iterations > 0 && strcmp(ctx->backend_name, "cpu") != 0 &&
        per_pack > EPLB_MAX_DEVICE_SWAP_ITEMS)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_SHAPE,
                                 "the %s backend's swap search tries every pair of items of two "
                                 "packs, and this plan packs %d per pack, beyond the limit "
                                 "EPLB_MAX_DEVICE_SWAP_ITEMS = %d; plan it on the cpu backend, or "
                                 "with iterations 0",
                                 ctx->backend_name, (int)per_pack, EPLB_MAX_DEVICE_SWAP_ITEMS);
    return EPLB_OK;
}

/* Fault injection for tests (docs/reliability.md): EPLB_TEST_FAIL_ALLOC=N makes
 * the N-th workspace allocation of the process (backend buffer or host
 * staging, counted from 1) fail as if memory were exhausted. */
static int injected_alloc_failure(void)
{
    static atomic_long allocations;
    const char *n = getenv("EPLB_TEST_FAIL_ALLOC");
    if (!n || !*n)
        return 0;
    return atomic_fetch_add(&allocations, 1) + 1 == atol(n);
}

/* Makes buffer `role` at least `bytes` long, reusing it when it is. */
static eplb_status reserve(eplb_context *ctx, eplb_buffer_role role, size_t bytes, void **out)
{
    eplb_workspace *ws = &ctx->workspace;
    eplb_backend *be = ctx->backend;
    if (bytes == 0)
        bytes = 1;
    if (ws->capacity[role] < bytes) {
        be->iface->buffer_free(be, ws->buffer[role]);
        ws->buffer[role] = NULL;
        ws->capacity[role] = 0;
        void *buffer = NULL;
        if (injected_alloc_failure())
            return eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY, "%s backend: cannot allocate "
                                     "%zu bytes (injected by EPLB_TEST_FAIL_ALLOC)",
                                     ctx->backend_name, bytes);
        eplb_status status = be->iface->buffer_alloc(be, bytes, &buffer);
        if (status != EPLB_OK)
            return eplb_context_backend_fail(ctx, status);
        ws->buffer[role] = buffer;
        ws->capacity[role] = bytes;
    }
    *out = ws->buffer[role];
    return EPLB_OK;
}

/* Whether the backend gives page-locked host memory for the staging area
 * (backend.h, host staging). */
static int has_pinned_staging(const eplb_backend_i *f) { return f->host_alloc && f->host_free; }

/* Whether it also copies to and from that memory without waiting, so that a
 * plan waits for the device once. */
static int has_async_copies(const eplb_backend_i *f)
{
    return has_pinned_staging(f) && f->upload_async && f->download_async && f->synchronize;
}

static void release_staging(eplb_context *ctx, unsigned char **area, size_t *capacity)
{
    if (*area && has_pinned_staging(ctx->backend->iface))
        ctx->backend->iface->host_free(ctx->backend, *area);
    else
        free(*area);
    *area = NULL;
    *capacity = 0;
}

/* Makes a host area of the workspace (*area, *capacity) at least bytes (> 0)
 * long, reusing it when it is, so that a context allocates it once for its
 * largest shape. */
static eplb_status reserve_staging(eplb_context *ctx, unsigned char **area, size_t *capacity,
                                   size_t bytes)
{
    eplb_backend *be = ctx->backend;
    if (*capacity >= bytes)
        return EPLB_OK;
    release_staging(ctx, area, capacity);
    if (injected_alloc_failure())
        return eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY,
                                 "cannot allocate %zu host bytes (injected by EPLB_TEST_FAIL_ALLOC)",
                                 bytes);
    void *got = NULL;
    if (has_pinned_staging(be->iface)) {
        eplb_status st = be->iface->host_alloc(be, bytes, &got);
        if (st != EPLB_OK)
            return eplb_context_backend_fail(ctx, st);
    } else if (!(got = malloc(bytes))) {
        return eplb_context_fail(ctx, EPLB_ERR_OUT_OF_MEMORY, "cannot allocate %zu host bytes",
                                 bytes);
    }
    *area = got;
    *capacity = bytes;
    return EPLB_OK;
}

/* The staging area of the plan's own copies. */
static eplb_status reserve_host_staging(eplb_context *ctx, size_t bytes)
{
    eplb_workspace *ws = &ctx->workspace;
    return reserve_staging(ctx, &ws->host_staging, &ws->host_staging_capacity, bytes);
}

void eplb_workspace_release(eplb_context *ctx)
{
    eplb_workspace *ws = &ctx->workspace;
    for (int role = 0; role < EPLB_BUF_COUNT; role++) {
        if (ws->buffer[role])
            ctx->backend->iface->buffer_free(ctx->backend, ws->buffer[role]);
        ws->buffer[role] = NULL;
        ws->capacity[role] = 0;
    }
    release_staging(ctx, &ws->host_staging, &ws->host_staging_capacity);
    release_staging(ctx, &ws->input_staging, &ws->input_staging_capacity);
    release_staging(ctx, &ws->search_staging, &ws->search_staging_capacity);
    memset(ws, 0, sizeof *ws);
}

/* Reserves the buffers of one packing of `weight`, from role `first` on (its
 * order, content, pack_of and rank_of roles follow one another), or none when
 * the packing is the identity (k == 1) and never runs. */
static eplb_status reserve_packing(eplb_context *ctx, eplb_pack_job *p, eplb_buffer_role first,
                                   void *weight)
{
    _Static_assert(EPLB_BUF_GROUP_RANK_OF == EPLB_BUF_GROUP_ORDER + 3 &&
                       EPLB_BUF_SLOT_RANK_OF == EPLB_BUF_SLOT_ORDER + 3,
                   "a packing's four buffer roles follow one another");
    if (p->per_pack <= 1)
        return EPLB_OK;
    const size_t row_items = (size_t)p->rows * (size_t)p->items * sizeof(int32_t);
    const size_t candidate_items = row_items * (size_t)p->candidates;
    eplb_status st;
    p->weight = weight;
    if ((st = reserve(ctx, first, candidate_items, &p->order)) != EPLB_OK ||
        (st = reserve(ctx, first + 1, candidate_items, &p->content)) != EPLB_OK ||
        (st = reserve(ctx, first + 2, row_items, &p->pack_of)) != EPLB_OK)
        return st;
    return reserve(ctx, first + 3, row_items, &p->rank_of);
}

/* Reserves the intermediate buffers of a plan (everything but the weights and
 * the three outputs, which differ between the host and device paths), in the
 * order of the stages that fill them. */
static eplb_status reserve_intermediates(eplb_context *ctx, eplb_plan_job *job)
{
    const size_t f = sizeof(float), i = sizeof(int32_t);
    const size_t L = (size_t)job->layers, E = (size_t)job->experts, R = (size_t)job->replicas;
    const size_t G = (size_t)job->groups;
    eplb_status st;
#define RESERVE(role, bytes, field) \
    if ((st = reserve(ctx, role, bytes, &(field))) != EPLB_OK) return st
    /* The status word, and the width the device chose for log2phy
     * (EPLB_LOG2PHY_WIDTH_NEEDED). */
    RESERVE(EPLB_BUF_STATUS, 2 * i, job->status);
    RESERVE(EPLB_BUF_GROUP_LOAD, L * G * f, job->group_load);
    if ((st = reserve_packing(ctx, &job->group_pack, EPLB_BUF_GROUP_ORDER, job->group_load)))
        return st;
    RESERVE(EPLB_BUF_LOG2MLOG, L * E * i, job->log2mlog);
    RESERVE(EPLB_BUF_MLOG2LOG, L * E * i, job->mlog2log);
    RESERVE(EPLB_BUF_NODE_WEIGHT, L * E * f, job->node_weight);
    RESERVE(EPLB_BUF_PHY2MLOG, L * R * i, job->phy2mlog);
    RESERVE(EPLB_BUF_PHYRANK, L * R * i, job->phyrank);
    RESERVE(EPLB_BUF_MLOGCNT, L * E * i, job->mlogcnt);
    RESERVE(EPLB_BUF_SLOT_LOAD, L * R * f, job->slot_load);
    if ((st = reserve_packing(ctx, &job->slot_pack, EPLB_BUF_SLOT_ORDER, job->slot_load)))
        return st;
    if (job->distinct) {
        const size_t rows = (size_t)job->slot_pack.rows;
        RESERVE(EPLB_BUF_ROW_CHANGED, rows * i, job->row_changed);
        RESERVE(EPLB_BUF_ROW_SEED_MAX, rows * f, job->row_seed_max);
    }
#undef RESERVE
    return EPLB_OK;
}

/* Runs one balanced packing through its four stages. */
static eplb_status run_packing(eplb_backend *be, const eplb_pack_job *p)
{
    /* With one item per pack the packing is the identity (SPEC 6), which
     * node_layout and assemble apply themselves. */
    if (p->per_pack <= 1)
        return EPLB_OK;
    eplb_status st;
    if ((st = be->iface->pack_sort(be, p)) != EPLB_OK) return st;
    if ((st = be->iface->pack_greedy(be, p)) != EPLB_OK) return st;
    if ((st = be->iface->pack_swap(be, p)) != EPLB_OK) return st;
    return be->iface->pack_select(be, p);
}

/* Enqueues the whole plan: through the backend's plan_fused when it has one
 * and takes the job, else stage by stage in SPEC order. This is the one place
 * that order is written. */
static eplb_status run_stages(eplb_context *ctx, const eplb_plan_job *job, int check_on_device)
{
    eplb_backend *be = ctx->backend;
    const eplb_backend_i *f = be->iface;
    eplb_status st = EPLB_BACKEND_DECLINED;
    /* The most replicas a count can reach is RN - M + 1 (every other expert of
     * the node keeps one): a log2phy at least that wide cannot overflow, and
     * only such jobs go to plan_fused, so that the narrow case is checked once,
     * by the replicate stage. */
    const int width_suffices = !job->log2phy || job->width >= job->node_slots - job->node_experts + 1;
    /* The fused entries know nothing of the distinct stage, and only those
     * that say so of refine, so other such jobs run as separate stages. */
    if (f->plan_fused && width_suffices && (job->refine == 0 || f->fused_refines) &&
        !job->distinct)
        st = f->plan_fused(be, job);
    if (st == EPLB_BACKEND_DECLINED) {
        int32_t zero = 0;
        if (check_on_device)
            st = f->check_weights(be, job);
        else
            st = f->upload(be, job->status, &zero, sizeof zero);
        if (st == EPLB_OK) st = f->group_loads(be, job);
        if (st == EPLB_OK) st = run_packing(be, &job->group_pack);
        if (st == EPLB_OK) st = f->node_layout(be, job);
        if (st == EPLB_OK) st = f->replicate(be, job);
        if (st == EPLB_OK) st = f->slot_loads(be, job);
        if (st == EPLB_OK) st = run_packing(be, &job->slot_pack);
        /* Refine and distinct trade slots between the GPUs of a row (SPEC
         * 10.3: no other row has a trade to keep). Distinct's restore (SPEC
         * 11.5) is a refine search. */
        const int rows_trade = eplb_plan_rows_trade(job);
        if (st == EPLB_OK && job->distinct && rows_trade)
            st = f->distinct(be, job);
        if (st == EPLB_OK && (job->refine > 0 || job->distinct) && rows_trade)
            st = f->refine(be, job);
        if (st == EPLB_OK) st = f->assemble(be, job);
    }
    if (st != EPLB_OK)
        return eplb_context_backend_fail(ctx, st);
    return EPLB_OK;
}

/* The weights of a block are tested without a branch per weight, so that the
 * compiler vectorizes the test; only a block that fails is searched for the
 * first bad weight, which the message names. With copy, each block is first
 * copied there (the staging area), so that the weights are read once. */
static eplb_status check_host_weights(eplb_context *ctx, const float *weight, const eplb_shape *s,
                                      float *copy)
{
    const size_t count = (size_t)s->layers * (size_t)s->experts, block = 1024;
    for (size_t start = 0; start < count; start += block) {
        const size_t end = count - start < block ? count : start + block;
        if (copy)
            memcpy(copy + start, weight + start, (end - start) * sizeof *weight);
        int bad = 0;
        /* NaN fails the first test, +inf the second (-inf both). */
        for (size_t i = start; i < end; i++)
            bad |= !(weight[i] >= 0.0f) | (weight[i] > FLT_MAX);
        for (size_t i = start; bad && i < end; i++) {
            float w = weight[i];
            if (!(w >= 0.0f) || isinf(w))
                return eplb_context_fail(ctx, EPLB_ERR_INVALID_WEIGHT,
                                         "weight[%zu][%zu] = %g: weights must be finite and >= 0",
                                         i / (size_t)s->experts, i % (size_t)s->experts, (double)w);
        }
    }
    return EPLB_OK;
}

/* Where a plan's outputs are read from once it has run: the backend's own
 * buffers (host-memory backends) or the host staging area. Through the
 * staging area logcnt does not come down from the device: count_on_host says
 * that logcnt is scratch, to be filled by counting each expert's slots in
 * phy2log, which costs less than the copy. */
typedef struct host_plan_outputs {
    const int64_t *phy2log;
    int64_t *logcnt;
    const int32_t *slot_rank;
    int count_on_host;
} host_plan_outputs;

static size_t staging_bytes(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Plans on a device backend through the host staging area: the weights go
 * up, the plan runs, and phy2log and (when log2phy is wanted) the slot ranks
 * come down into the staging area; logcnt is counted on the host
 * (host_plan_outputs). With asynchronous copies the weights
 * are first copied into the staging area, every copy and the plan are
 * enqueued without waiting, and the call waits once, at the end. */
static eplb_status plan_through_staging(eplb_context *ctx, eplb_plan_job *job, const float *weight,
                                        const eplb_shape *shape, int with_ranks,
                                        host_plan_outputs *out)
{
    eplb_backend *be = ctx->backend;
    const eplb_backend_i *f = be->iface;
    const size_t L = (size_t)job->layers, E = (size_t)job->experts, R = (size_t)job->replicas;
    const size_t at_logcnt = staging_bytes(L * R * sizeof(int64_t));
    const size_t at_rank = at_logcnt + staging_bytes(L * E * sizeof(int64_t));
    const size_t at_weight = at_rank + staging_bytes(L * R * sizeof(int32_t));
    const size_t weight_bytes = L * E * sizeof(float);
    const int async = has_async_copies(f);
    eplb_status st = reserve_host_staging(ctx, async ? at_weight + weight_bytes : at_weight);
    if (st != EPLB_OK)
        return st;
    unsigned char *area = ctx->workspace.host_staging;
    int64_t *phy2log = (int64_t *)area, *logcnt = (int64_t *)(area + at_logcnt);
    int32_t *slot_rank = (int32_t *)(area + at_rank);
    out->phy2log = phy2log;
    out->logcnt = logcnt;
    out->slot_rank = slot_rank;
    out->count_on_host = 1;
    /* The host path runs on the backend's own stream: a stream that an
     * earlier eplb_rebalance_device call passed may no longer exist. */
    if (f->set_stream && (st = f->set_stream(be, NULL)) != EPLB_OK)
        return eplb_context_backend_fail(ctx, st);
    /* The weights are checked before anything goes up: with asynchronous
     * copies as they are copied into the staging area, so that they are read
     * once. */
    float *staged_weight = async ? (float *)(area + at_weight) : NULL;
    if ((st = check_host_weights(ctx, weight, shape, staged_weight)) != EPLB_OK)
        return st;
    if (!async) {
        if ((st = f->upload(be, job->weight, weight, weight_bytes)) != EPLB_OK)
            return eplb_context_backend_fail(ctx, st);
        if ((st = run_stages(ctx, job, 0)) != EPLB_OK)
            return st;
        if ((st = f->download(be, phy2log, job->phy2log, L * R * sizeof(int64_t))) ||
            (with_ranks && (st = f->download(be, slot_rank, job->slot_rank, L * R * sizeof(int32_t)))))
            return eplb_context_backend_fail(ctx, st);
        return EPLB_OK;
    }
    if ((st = f->upload_async(be, job->weight, staged_weight, weight_bytes)) != EPLB_OK) {
        st = eplb_context_backend_fail(ctx, st);
    } else if ((st = run_stages(ctx, job, 0)) == EPLB_OK) {
        if ((st = f->download_async(be, phy2log, job->phy2log, L * R * sizeof(int64_t))) ||
            (with_ranks &&
             (st = f->download_async(be, slot_rank, job->slot_rank, L * R * sizeof(int32_t)))))
            st = eplb_context_backend_fail(ctx, st);
    }
    /* One wait for the copies and the plan; after a failure as well, so that
     * no copy still reads or writes the staging area when a later call
     * refills it. */
    const eplb_status waited = f->synchronize(be);
    if (st == EPLB_OK && waited != EPLB_OK)
        st = eplb_context_backend_fail(ctx, waited);
    return st;
}

/* The largest replica count of layer l, after counting its replicas into
 * plan->logcnt where they did not come down; -1 when a slot names an expert
 * outside the layer (a backend's bug: nothing is written through it). */
static int64_t layer_replicas_most(host_plan_outputs *plan, size_t l, size_t E, size_t R)
{
    int64_t *count = plan->logcnt + l * E;
    if (plan->count_on_host) {
        memset(count, 0, E * sizeof *count);
        for (size_t s = 0; s < R; s++) {
            const uint64_t e = (uint64_t)plan->phy2log[l * R + s];
            if (e >= E)
                return -1;
            count[e]++;
        }
    }
    int64_t most = 0;
    for (size_t e = 0; e < E; e++)
        most = count[e] > most ? count[e] : most;
    return most;
}

/* Writes layer l of the caller's arrays: phy2log, logcnt and, when asked,
 * log2phy built from the slot ranks. */
static void write_layer_outputs(const host_plan_outputs *plan, size_t l, size_t E, size_t R,
                                int64_t *phy2log, int64_t *logcnt, int64_t *log2phy, size_t X)
{
    memcpy(phy2log + l * R, plan->phy2log + l * R, R * sizeof(int64_t));
    memcpy(logcnt + l * E, plan->logcnt + l * E, E * sizeof(int64_t));
    if (!log2phy)
        return;
    for (size_t k = l * E * X; k < (l + 1) * E * X; k++)
        log2phy[k] = -1;
    for (size_t s = 0; s < R; s++) {
        size_t e = (size_t)plan->phy2log[l * R + s];
        size_t r = (size_t)plan->slot_rank[l * R + s];
        log2phy[(l * E + e) * X + r] = (int64_t)s;
    }
}

/* Finishes a plan that has run: the replica counts and the width log2phy
 * needs, then, when the caller's width suffices, the caller's arrays (left
 * untouched otherwise). Both passes go a layer per step (each layer's rows are
 * its own) in one parallel region, on the OpenMP threads when there is enough
 * to write and the process is not a forked child (common/threads_usable.h):
 * the first pass reads the outputs fresh from the device, which one thread
 * alone reads slowly. */
static eplb_status write_host_outputs(eplb_context *ctx, const eplb_plan_job *job,
                                      host_plan_outputs *plan, int64_t *phy2log, int64_t *logcnt,
                                      int64_t *log2phy, int64_t log2phy_width,
                                      int64_t *width_needed)
{
    const size_t L = (size_t)job->layers, E = (size_t)job->experts, R = (size_t)job->replicas;
    const size_t X = log2phy && log2phy_width > 0 ? (size_t)log2phy_width : 0;
    const size_t written = L * (R + E + E * X);
    int64_t needed = 0;
    int named_no_expert = 0;
#pragma omp parallel if (written >= 65536 && eplb_threads_usable())
    {
#pragma omp for schedule(static) reduction(max : needed)
        for (size_t l = 0; l < L; l++) {
            const int64_t most = layer_replicas_most(plan, l, E, R);
            if (most < 0) {
#pragma omp atomic write
                named_no_expert = 1;
            }
            needed = most > needed ? most : needed;
        }
        /* After the loop's barrier every thread reads the same needed and
         * named_no_expert, so all of them take the same branch. */
        int failed;
#pragma omp atomic read
        failed = named_no_expert;
        if (!failed && !(log2phy && log2phy_width < needed)) {
#pragma omp for schedule(static)
            for (size_t l = 0; l < L; l++)
                write_layer_outputs(plan, l, E, R, phy2log, logcnt, log2phy, X);
        }
    }
    if (named_no_expert)
        return eplb_context_fail(ctx, EPLB_ERR_INTERNAL,
                                 "the %s backend returned a phy2log entry outside 0..%zu",
                                 ctx->backend_name, E - 1);
    /* A too-small log2phy width is reported after planning, with the width
     * needed (every width below 1 is too small). */
    if (width_needed)
        *width_needed = needed;
    if (log2phy && log2phy_width < needed)
        return eplb_context_fail(ctx, EPLB_ERR_LOG2PHY_TOO_SMALL,
                                 "log2phy width %lld is below the %lld replicas of the most "
                                 "replicated expert; pass a width of at least %lld",
                                 (long long)log2phy_width, (long long)needed, (long long)needed);
    return EPLB_OK;
}

eplb_status eplb_plan_host(eplb_context *ctx, const float *weight, const eplb_shape *shape,
                           const eplb_options *options, int64_t *phy2log, int64_t *logcnt,
                           int64_t *log2phy, int64_t log2phy_width, int64_t *width_needed)
{
    eplb_plan_job job;
    /* log2phy's width is checked after planning, by write_host_outputs. */
    eplb_status st =
        describe_plan(ctx, weight, shape, options, phy2log, logcnt, log2phy, 0, &job);
    if (st != EPLB_OK)
        return st;
    const size_t L = (size_t)job.layers, E = (size_t)job.experts, R = (size_t)job.replicas;
    eplb_backend *be = ctx->backend;
    /* Host-memory backends read the caller's weights in place (checked here;
     * never written) and leave their outputs where this reads them. The
     * others check the weights as they stage them (plan_through_staging). */
    const int in_place = be->iface->host_memory;
    if (in_place && (st = check_host_weights(ctx, weight, shape, NULL)) != EPLB_OK)
        return st;
    if ((st = reserve_intermediates(ctx, &job)) != EPLB_OK) return st;
    if (in_place)
        job.weight = (void *)weight;
    else if ((st = reserve(ctx, EPLB_BUF_WEIGHT, L * E * sizeof(float), &job.weight)) != EPLB_OK)
        return st;
    if ((st = reserve(ctx, EPLB_BUF_PHY2LOG, L * R * sizeof(int64_t), &job.phy2log)) != EPLB_OK) return st;
    if ((st = reserve(ctx, EPLB_BUF_LOGCNT, L * E * sizeof(int64_t), &job.logcnt)) != EPLB_OK) return st;
    if ((st = reserve(ctx, EPLB_BUF_SLOT_RANK, L * R * sizeof(int32_t), &job.slot_rank)) != EPLB_OK) return st;
    job.log2phy = NULL;
    job.width = 0;

    host_plan_outputs plan = {job.phy2log, job.logcnt, job.slot_rank, 0};
    if (in_place) {
        if ((st = run_stages(ctx, &job, 0)) != EPLB_OK)
            return st;
    } else if ((st = plan_through_staging(ctx, &job, weight, shape, log2phy != NULL, &plan)) != EPLB_OK) {
        return st;
    }

    return write_host_outputs(ctx, &job, &plan, phy2log, logcnt, log2phy, log2phy_width,
                              width_needed);
}

eplb_status eplb_plan_device(eplb_context *ctx, const void *weight, const eplb_shape *shape,
                             const eplb_options *options, void *phy2log, void *logcnt,
                             void *log2phy, int64_t log2phy_width, void *stream)
{
    eplb_backend *be = ctx->backend;
    /* plan_fused may decline a job, so the device path needs the stages' own
     * weight check as well. */
    if (!be->iface->set_stream || !be->iface->check_weights)
        return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                 "the %s backend has no device-pointer API; use eplb_rebalance",
                                 ctx->backend_name);
    eplb_plan_job job;
    eplb_status st =
        describe_plan(ctx, weight, shape, options, phy2log, logcnt, log2phy, 1, &job);
    if (st != EPLB_OK)
        return st;
    const int width_needed = log2phy_width == EPLB_LOG2PHY_WIDTH_NEEDED;
    if (log2phy_width < 1 && !width_needed)
        return eplb_context_fail(ctx, EPLB_ERR_LOG2PHY_TOO_SMALL,
                                 "log2phy width %lld must be >= 1 or EPLB_LOG2PHY_WIDTH_NEEDED",
                                 (long long)log2phy_width);
    if (width_needed && !be->iface->log2phy_at_needed_width)
        return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                 "the %s backend cannot choose the log2phy width on the device",
                                 ctx->backend_name);
    if ((st = be->iface->set_stream(be, stream)) != EPLB_OK)
        return eplb_context_backend_fail(ctx, st);
    if ((st = reserve_intermediates(ctx, &job)) != EPLB_OK)
        return st;
    job.weight = (void *)weight;
    job.phy2log = phy2log;
    job.logcnt = logcnt;
    job.log2phy = log2phy;
    job.width = log2phy_width;
    job.slot_rank = NULL;
    if (width_needed) {
        /* The stages write the replica rank of each slot instead of log2phy,
         * whose width is known only once every layer's counts are. */
        const size_t ranks = (size_t)job.layers * (size_t)job.replicas * sizeof(int32_t);
        if ((st = reserve(ctx, EPLB_BUF_SLOT_RANK, ranks, &job.slot_rank)) != EPLB_OK)
            return st;
        job.log2phy = NULL;
        job.width = 0;
    }
    st = run_stages(ctx, &job, 1);
    if (st == EPLB_OK && width_needed) {
        job.log2phy = log2phy;
        if ((st = be->iface->log2phy_at_needed_width(be, &job)) != EPLB_OK)
            st = eplb_context_backend_fail(ctx, st);
    }
    ctx->workspace.device_plan_pending = st == EPLB_OK;
    ctx->workspace.device_plan_width = log2phy_width;
    return st;
}

eplb_status eplb_plan_write_device_outputs(eplb_context *ctx, const eplb_shape *shape,
                                          const int64_t *plan,
                                          void *phy2log, void *logcnt, void *log2phy,
                                          int64_t log2phy_width, void *stream)
{
    eplb_backend *be = ctx->backend;
    const eplb_backend_i *f = be->iface;
    const size_t L = (size_t)shape->layers, E = (size_t)shape->experts;
    const size_t R = (size_t)shape->replicas;
    /* The plan as the assemble stage reads it: one node holding every
     * expert in its own order, so that the node-major tables are the
     * identity, and the replica rank of each slot. */
    const size_t at_slots = staging_bytes(sizeof(int32_t));
    const size_t at_ranks = at_slots + staging_bytes(L * R * sizeof(int32_t));
    const size_t at_counts = at_ranks + staging_bytes(L * R * sizeof(int32_t));
    const size_t at_identity = at_counts + staging_bytes(L * E * sizeof(int32_t));
    eplb_status st = reserve_host_staging(ctx, at_identity + L * E * sizeof(int32_t));
    if (st != EPLB_OK)
        return st;
    unsigned char *area = ctx->workspace.host_staging;
    int32_t *status = (int32_t *)area, *slots = (int32_t *)(area + at_slots);
    int32_t *ranks = (int32_t *)(area + at_ranks), *counts32 = (int32_t *)(area + at_counts);
    int32_t *identity = (int32_t *)(area + at_identity);
    *status = 0;
    for (size_t l = 0; l < L; l++) {
        int32_t *seen = counts32 + l * E;
        for (size_t e = 0; e < E; e++) {
            seen[e] = 0;
            identity[l * E + e] = (int32_t)e;
        }
        for (size_t q = 0; q < R; q++) {
            const int64_t e = plan[l * R + q];
            slots[l * R + q] = (int32_t)e;
            ranks[l * R + q] = seen[e]++;
        }
    }
    eplb_plan_job job;
    memset(&job, 0, sizeof job);
    job.layers = shape->layers;
    job.experts = shape->experts;
    job.replicas = shape->replicas;
    job.groups = job.nodes = 1;
    job.gpus = shape->gpus;
    job.group_size = job.node_experts = shape->experts;
    job.node_slots = shape->replicas;
    job.gpu_slots = shape->replicas / shape->gpus;
    job.width = log2phy_width;
    job.slot_pack.per_pack = 1; /* the slots are already in place */
    if ((st = reserve(ctx, EPLB_BUF_STATUS, sizeof(int32_t), &job.status)) != EPLB_OK ||
        (st = reserve(ctx, EPLB_BUF_PHY2MLOG, L * R * sizeof(int32_t), &job.phy2mlog)) != EPLB_OK ||
        (st = reserve(ctx, EPLB_BUF_PHYRANK, L * R * sizeof(int32_t), &job.phyrank)) != EPLB_OK ||
        (st = reserve(ctx, EPLB_BUF_MLOGCNT, L * E * sizeof(int32_t), &job.mlogcnt)) != EPLB_OK ||
        (st = reserve(ctx, EPLB_BUF_MLOG2LOG, L * E * sizeof(int32_t), &job.mlog2log)) != EPLB_OK)
        return st;
    /* With one node in expert order both tables are the identity, which the
     * assemble stage only reads: one buffer serves as both. */
    job.log2mlog = job.mlog2log;
    job.phy2log = phy2log;
    job.logcnt = logcnt;
    job.log2phy = log2phy;
    if ((st = f->set_stream(be, stream)) != EPLB_OK)
        return eplb_context_backend_fail(ctx, st);
    const int async = has_async_copies(f);
    eplb_status (*copy_up)(eplb_backend *, void *, const void *, size_t) =
        async ? f->upload_async : f->upload;
    if ((st = copy_up(be, job.status, status, sizeof(int32_t))) != EPLB_OK ||
        (st = copy_up(be, job.phy2mlog, slots, L * R * sizeof(int32_t))) != EPLB_OK ||
        (st = copy_up(be, job.phyrank, ranks, L * R * sizeof(int32_t))) != EPLB_OK ||
        (st = copy_up(be, job.mlogcnt, counts32, L * E * sizeof(int32_t))) != EPLB_OK ||
        (st = copy_up(be, job.mlog2log, identity, L * E * sizeof(int32_t))) != EPLB_OK ||
        (st = f->assemble(be, &job)) != EPLB_OK)
        st = eplb_context_backend_fail(ctx, st);
    /* The outputs are complete when this returns, and no copy still reads the
     * staging area when a later call refills it: one wait, after a failure
     * as well. */
    const eplb_status waited = f->synchronize ? f->synchronize(be) : EPLB_OK;
    if (st == EPLB_OK && waited != EPLB_OK)
        st = eplb_context_backend_fail(ctx, waited);
    return st;
}

eplb_status eplb_plan_search_area(eplb_context *ctx, size_t bytes, unsigned char **area)
{
    eplb_workspace *ws = &ctx->workspace;
    eplb_status st = reserve_staging(ctx, &ws->search_staging, &ws->search_staging_capacity, bytes);
    if (st == EPLB_OK)
        *area = ws->search_staging;
    return st;
}

eplb_status eplb_plan_read_device_buffers(eplb_context *ctx, void *stream, size_t bytes, int count,
                                         const void *const *sources, const size_t *offsets,
                                         const size_t *sizes, unsigned char **area)
{
    eplb_backend *be = ctx->backend;
    const eplb_backend_i *f = be->iface;
    eplb_workspace *ws = &ctx->workspace;
    eplb_status st =
        reserve_staging(ctx, &ws->input_staging, &ws->input_staging_capacity, bytes ? bytes : 1);
    if (st != EPLB_OK)
        return st;
    *area = ws->input_staging;
    if ((st = f->set_stream(be, stream)) != EPLB_OK)
        return eplb_context_backend_fail(ctx, st);
    const int async = has_async_copies(f);
    for (int i = 0; i < count && st == EPLB_OK; i++)
        st = async ? f->download_async(be, *area + offsets[i], sources[i], sizes[i])
                   : f->download(be, *area + offsets[i], sources[i], sizes[i]);
    /* One wait for every copy; after a failure as well, so that no copy
     * still writes the area when a later call reuses it. */
    const eplb_status waited = async ? f->synchronize(be) : EPLB_OK;
    if (st == EPLB_OK)
        st = waited;
    return st != EPLB_OK ? eplb_context_backend_fail(ctx, st) : EPLB_OK;
}

eplb_status eplb_plan_device_status(eplb_context *ctx, void *stream, int64_t *width)
{
    eplb_backend *be = ctx->backend;
    if (!be->iface->set_stream)
        return eplb_context_fail(ctx, EPLB_ERR_UNSUPPORTED,
                                 "the %s backend has no device-pointer API", ctx->backend_name);
    if (!ctx->workspace.device_plan_pending)
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_ARGUMENT,
                                 "no eplb_rebalance_device call to report on");
    /* The status word, and after it the width the device chose, when it did
     * (the buffer always holds both: reserve_intermediates). Read into the
     * workspace's page-locked area with one wait where the backend copies
     * asynchronously: a waiting copy into the stack goes through the
     * driver's own bounce buffer, which costs more. */
    const int64_t fixed_width = ctx->workspace.device_plan_width;
    int32_t words[2];
    const void *device_words = ctx->workspace.buffer[EPLB_BUF_STATUS];
    const size_t at = 0, bytes = sizeof words;
    unsigned char *area;
    eplb_status st =
        eplb_plan_read_device_buffers(ctx, stream, bytes, 1, &device_words, &at, &bytes, &area);
    if (st != EPLB_OK)
        return st;
    memcpy(words, area, sizeof words);
    const int32_t device_status = words[0];
    switch (device_status) {
    case EPLB_OK:
        if (width)
            *width = fixed_width == EPLB_LOG2PHY_WIDTH_NEEDED ? words[1] : fixed_width;
        return EPLB_OK;
    case EPLB_ERR_INVALID_WEIGHT:
        return eplb_context_fail(ctx, EPLB_ERR_INVALID_WEIGHT,
                                 "a weight on the device is NaN, infinite or negative; "
                                 "outputs were left untouched");
    case EPLB_ERR_LOG2PHY_TOO_SMALL:
        return eplb_context_fail(ctx, EPLB_ERR_LOG2PHY_TOO_SMALL,
                                 "an expert got more replicas than the log2phy width; "
                                 "outputs were left untouched");
    default:
        return eplb_context_fail(ctx, EPLB_ERR_INTERNAL, "device status %d", (int)device_status);
    }
}
