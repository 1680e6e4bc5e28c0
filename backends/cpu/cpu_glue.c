/* The planner's glue stages (SPEC section 4) on the cpu: group loads, the
 * node-major layout, slot loads and the final outputs. */
#include "cpu_stages.h"

/* Runs each on items 0..count-1 of job (its layers, or its rows), across the
 * OpenMP threads where work, in element operations, is worth them. Items are
 * independent, so the plan does not depend on the thread count. */
static void for_each_item(const eplb_plan_job *job, int64_t count, int64_t work,
                          void (*each)(const eplb_plan_job *job, int64_t item))
{
#pragma omp parallel for schedule(static) if (EPLB_CPU_WORTH_THREADS(work))
    for (int64_t i = 0; i < count; i++)
        each(job, i);
}

void eplb_cpu_group_loads_layer(const eplb_plan_job *job, int64_t l)
{
    const int64_t G = job->groups, S = job->group_size, E = job->experts;
    const float *weight = job->weight;
    float *group_load = job->group_load;
    for (int64_t g = 0; g < G; g++) {
        const float *w = weight + l * E + g * S;
        float sum = 0.0f;
        for (int64_t j = 0; j < S; j++)
            sum += w[j];
        group_load[l * G + g] = sum;
    }
}

eplb_status eplb_cpu_group_loads(eplb_backend *backend, const eplb_plan_job *job)
{
    (void)backend;
    for_each_item(job, job->layers, job->layers * job->experts, eplb_cpu_group_loads_layer);
    return EPLB_OK;
}

void eplb_cpu_node_layout_layer(const eplb_plan_job *job, int64_t l)
{
    const int64_t G = job->groups, S = job->group_size, E = job->experts;
    const int64_t per_node = job->groups / job->nodes; /* groups per node */
    const int32_t *pack_of = job->group_pack.pack_of, *rank_of = job->group_pack.rank_of;
    const float *weight = job->weight;
    int32_t *log2mlog = job->log2mlog, *mlog2log = job->mlog2log;
    float *node_weight = job->node_weight;
    for (int64_t g = 0; g < G; g++) {
        /* G == N: one group per node, the identity packing. */
        const int64_t pack = pack_of ? pack_of[l * G + g] : g;
        const int64_t rank = rank_of ? rank_of[l * G + g] : 0;
        for (int64_t j = 0; j < S; j++) {
            const int64_t e = g * S + j;
            const int64_t pos = (pack * per_node + rank) * S + j;
            log2mlog[l * E + e] = (int32_t)pos;
            mlog2log[l * E + pos] = (int32_t)e;
            /* Row l*N + n of node_weight starts at l*E + n*M, so its item j is l*E + pos. */
            node_weight[l * E + pos] = weight[l * E + e];
        }
    }
}

eplb_status eplb_cpu_node_layout(eplb_backend *backend, const eplb_plan_job *job)
{
    (void)backend;
    for_each_item(job, job->layers, job->layers * job->experts, eplb_cpu_node_layout_layer);
    return EPLB_OK;
}

void eplb_cpu_slot_loads_row(const eplb_plan_job *job, int64_t x)
{
    const int64_t M = job->node_experts, RN = job->node_slots;
    const float *node_weight = job->node_weight;
    const int32_t *phy2mlog = job->phy2mlog, *mlogcnt = job->mlogcnt;
    float *slot_load = job->slot_load;
    for (int64_t q = 0; q < RN; q++) {
        const int64_t e = phy2mlog[x * RN + q];
        slot_load[x * RN + q] = node_weight[x * M + e] / (float)mlogcnt[x * M + e];
    }
}

eplb_status eplb_cpu_slot_loads(eplb_backend *backend, const eplb_plan_job *job)
{
    (void)backend;
    const int64_t rows = job->layers * job->nodes;
    for_each_item(job, rows, rows * job->node_slots, eplb_cpu_slot_loads_row);
    return EPLB_OK;
}

void eplb_cpu_assemble_layer(const eplb_plan_job *job, int64_t l)
{
    const int64_t N = job->nodes, E = job->experts, R = job->replicas, M = job->node_experts;
    const int64_t RN = job->node_slots, spg = job->gpu_slots, X = job->width;
    const int32_t *pack_of = job->slot_pack.pack_of, *rank_of = job->slot_pack.rank_of;
    const int32_t *phy2mlog = job->phy2mlog, *phyrank = job->phyrank, *mlogcnt = job->mlogcnt;
    const int32_t *mlog2log = job->mlog2log, *log2mlog = job->log2mlog;
    int64_t *phy2log = job->phy2log, *logcnt = job->logcnt, *log2phy = job->log2phy;
    int32_t *slot_rank = job->slot_rank;
    if (log2phy)
        for (int64_t k = 0; k < E * X; k++)
            log2phy[l * E * X + k] = -1;
    for (int64_t n = 0; n < N; n++) {
        const int64_t x = l * N + n;
        for (int64_t q = 0; q < RN; q++) {
            /* RN == P/N: one slot per GPU, the identity packing. */
            const int64_t pos = pack_of ? (int64_t)pack_of[x * RN + q] * spg + rank_of[x * RN + q] : q;
            const int64_t slot = n * RN + pos;
            const int64_t e = mlog2log[l * E + n * M + phy2mlog[x * RN + q]];
            const int32_t rank = phyrank[x * RN + q];
            phy2log[l * R + slot] = e;
            if (slot_rank)
                slot_rank[l * R + slot] = rank;
            if (log2phy)
                log2phy[(l * E + e) * X + rank] = slot;
        }
    }
    for (int64_t e = 0; e < E; e++)
        logcnt[l * E + e] = mlogcnt[l * E + log2mlog[l * E + e]];
}

eplb_status eplb_cpu_assemble(eplb_backend *backend, const eplb_plan_job *job)
{
    (void)backend;
    const int32_t *status = job->status;
    if (status && *status != 0)
        return EPLB_OK; /* an earlier stage found an error: outputs stay untouched */
    for_each_item(job, job->layers, job->layers * job->replicas, eplb_cpu_assemble_layer);
    return EPLB_OK;
}
