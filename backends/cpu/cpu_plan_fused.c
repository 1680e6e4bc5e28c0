/* The whole plan in one parallel region, a layer per loop step: every stage
 * of SPEC section 4 depends only on its own layer, so a layer runs from group
 * loads to assembled outputs on one thread, with no barrier between stages
 * (each stage's own parallel loop ends in one) and no idle thread waiting for
 * the slowest row of a stage. Where a layer is one row (one node) whose
 * greedy steps two rows side by side (cpu_greedy.c), a loop step takes two
 * layers; where a layer has several node rows whose vertical greedy pairs
 * up, they are packed two at a time. Same per-row functions, same results
 * as the stage entry points (EPLB_TUNE_CPU_STAGES=separate runs those). */
#include <math.h>
#include <stdlib.h>

#include "cpu_refine.h"
#include "cpu_stages.h"

/* Layer l's group loads, its groups' packing and its node layout. */
static void plan_nodes(const eplb_plan_job *job, int64_t l, eplb_cpu_scratch *group_scratch)
{
    eplb_cpu_group_loads_layer(job, l);
    if (job->group_pack.per_pack > 1)
        eplb_cpu_pack_row(&job->group_pack, l, group_scratch);
    eplb_cpu_node_layout_layer(job, l);
}

/* Everything but assembly for layer l, the refine search (SPEC 10) of each
 * row included when refine is not NULL. Returns 1 if a count exceeds the
 * log2phy width. */
static int plan_layer(const eplb_plan_job *job, int64_t l, eplb_cpu_scratch *group_scratch,
                      eplb_cpu_scratch *const *slot_scratch, int pair_nodes, refine_scratch *refine,
                      float *value, int32_t *heap, int isa)
{
    int too_wide = 0;
    plan_nodes(job, l, group_scratch);
    /* With pair_nodes, node rows two at a time, their greedy steps side by
     * side (eplb_cpu_greedy_pairs_vertical). */
    for (int64_t node = 0; node < job->nodes;) {
        const int64_t x = l * job->nodes + node, rows[2] = {x, x + 1};
        const int32_t count = pair_nodes && node + 1 < job->nodes ? 2 : 1;
        for (int32_t i = 0; i < count; i++) {
            too_wide |= eplb_cpu_replicate_row(job, x + i, value, heap, isa);
            eplb_cpu_slot_loads_row(job, x + i);
        }
        if (job->slot_pack.per_pack > 1) {
            if (count == 2)
                eplb_cpu_pack_row_pair(&job->slot_pack, rows, slot_scratch);
            else
                eplb_cpu_pack_row(&job->slot_pack, x, slot_scratch[0]);
        }
        if (refine)
            for (int32_t i = 0; i < count; i++)
                eplb_cpu_refine_row(job, x + i, job->refine, -INFINITY, refine);
        node += count;
    }
    return too_wide;
}

/* Layers l and l + 1 of a plan with one node (a row per layer) whose slot
 * rows the greedy steps side by side (eplb_cpu_greedy_pairs_rows): the same
 * stages as plan_layer, the two rows packed together. */
static int plan_layer_pair(const eplb_plan_job *job, int64_t l, eplb_cpu_scratch *group_scratch,
                           eplb_cpu_scratch *const *slot_scratch, refine_scratch *refine,
                           float *value, int32_t *heap, int isa)
{
    int too_wide = 0;
    const int64_t rows[2] = {l, l + 1};
    for (int32_t i = 0; i < 2; i++)
        plan_nodes(job, rows[i], group_scratch);
    too_wide |= eplb_cpu_replicate_row_pair(job, rows, value, heap, isa);
    for (int32_t i = 0; i < 2; i++)
        eplb_cpu_slot_loads_row(job, rows[i]);
    eplb_cpu_pack_row_pair(&job->slot_pack, rows, slot_scratch);
    if (refine)
        for (int32_t i = 0; i < 2; i++)
            eplb_cpu_refine_row(job, rows[i], job->refine, -INFINITY, refine);
    return too_wide;
}

/* Scratch for packing rows of job with eplb_cpu_pack_row; returns 1 on success. */
static int pack_scratch_init(eplb_cpu_scratch *scratch, const eplb_pack_job *job,
                             const eplb_cpu_settings *settings)
{
    return eplb_cpu_scratch_init(scratch, job, settings,
                                 eplb_cpu_greedy_lanes_words(job->items, job->packs)) == EPLB_OK;
}

eplb_status eplb_cpu_plan_fused(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_cpu_settings *settings = eplb_cpu_settings_of(backend);
    int32_t *status = job->status;
    *status = 0; /* the host path checked the weights; the cpu has no device path */
    const int group_packing = job->group_pack.per_pack > 1, slot_packing = job->slot_pack.per_pack > 1;
    /* The planner offers refine jobs (never distinct ones) here. */
    const int refining = job->refine > 0 && eplb_plan_rows_trade(job);
    /* Element operations, roughly: each layer sorts, packs and assembles its
     * slots once per candidate, and replicates them (about a heap step of
     * eight operations a slot) and lays out its experts once. Counting the
     * candidates alone left DeepSeek's one-candidate plans on one thread. A
     * row's refine search can weigh far more than its slots, so it counts as
     * the refine stage counts it. */
    const int64_t refine_work =
        refining ? job->slot_pack.rows * (int64_t)job->slot_pack.items * job->refine : 0;
    const int64_t work =
        job->layers * (job->replicas * ((int64_t)job->slot_pack.candidates + 8) + job->experts) +
        refine_work;
    /* Without log2phy no width check can fail, so each layer is assembled as
     * soon as it is planned; otherwise after every layer's check. */
    const int assemble_at_once = job->log2phy == NULL;
    /* Layers in pairs where a layer is one row whose greedy steps pair up:
     * an even number of pairs, so that two threads share them evenly, and
     * the layers left over alone (units past the pairs). */
    const int pairing = job->nodes == 1 && slot_packing &&
                        eplb_cpu_greedy_pairs_rows(&job->slot_pack, settings);
    int64_t pairs = pairing ? job->layers / 2 : 0;
    if (pairs > 1 && pairs % 2)
        pairs--;
    const int64_t units = job->layers - pairs;
    /* Node rows in pairs where a layer has several whose greedy steps pair up. */
    const int pair_nodes = job->nodes > 1 && slot_packing &&
                           eplb_cpu_greedy_pairs_vertical(&job->slot_pack, settings);
    int failed = 0, too_wide = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(work))
    {
        eplb_cpu_scratch group_scratch = {0}, slot_scratch = {0}, pair_scratch = {0};
        eplb_cpu_scratch *const slot_scratches[2] = {&slot_scratch, &pair_scratch};
        refine_scratch refine = {0};
        const int32_t M = (int32_t)job->node_experts;
        float *value = malloc(eplb_cpu_replicate_words(M) * sizeof *value);
        int32_t *heap = malloc((size_t)M * sizeof *heap);
        const int ok = value && heap && (!group_packing || pack_scratch_init(&group_scratch, &job->group_pack, settings)) &&
                       (!slot_packing || pack_scratch_init(&slot_scratch, &job->slot_pack, settings)) &&
                       (!(pairs || pair_nodes) || pack_scratch_init(&pair_scratch, &job->slot_pack, settings)) &&
                       (!refining || eplb_cpu_refine_scratch_init(&refine, job, settings->isa));
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1) reduction(| : too_wide)
        for (int64_t u = 0; u < units; u++) {
            if (!ok)
                continue;
            const int64_t l = u < pairs ? 2 * u : pairs + u, layers = u < pairs ? 2 : 1;
            if (layers == 2)
                too_wide |= plan_layer_pair(job, l, &group_scratch, slot_scratches,
                                            refining ? &refine : NULL, value, heap, settings->isa);
            else
                too_wide |= plan_layer(job, l, &group_scratch, slot_scratches, pair_nodes,
                                       refining ? &refine : NULL, value, heap, settings->isa);
            if (assemble_at_once)
                for (int64_t i = l; i < l + layers; i++)
                    eplb_cpu_assemble_layer(job, i);
        }
        /* The loop's barrier: too_wide and failed are final here. */
        if (!assemble_at_once && !too_wide && !failed) {
#pragma omp for schedule(static)
            for (int64_t l = 0; l < job->layers; l++)
                eplb_cpu_assemble_layer(job, l);
        }
        eplb_cpu_scratch_free(&group_scratch);
        eplb_cpu_scratch_free(&slot_scratch);
        eplb_cpu_scratch_free(&pair_scratch);
        eplb_cpu_refine_scratch_free(&refine);
        free(value);
        free(heap);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    if (too_wide)
        *status = EPLB_ERR_LOG2PHY_TOO_SMALL;
    return EPLB_OK;
}
