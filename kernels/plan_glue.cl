/* The planner's glue stages (SPEC section 4): weight check, group loads, the
 * node-major layout, slot loads and the outputs. One work-item per element. */
#pragma OPENCL FP_CONTRACT OFF

/* status was zeroed just before; any bad weight sets it (all writers agree). */
kernel void eplb_check_weights(global const float *weight, global int *status, ulong count)
{
    const ulong i = get_global_id(0);
    if (i >= count)
        return;
    const float w = weight[i];
    if (!(w >= 0.0f) || isinf(w)) /* written so that NaN fails too */
        *status = EPLB_ERR_INVALID_WEIGHT;
}

/* group_load[l][g], x = l * G + g: the group's weights left to right. */
kernel void eplb_group_loads(global const float *weight, global float *group_load, ulong count,
                             long G, long S, long E)
{
    const ulong x = get_global_id(0);
    if (x >= count)
        return;
    global const float *w = weight + (long)(x / G) * E + (long)(x % G) * S;
    float sum = 0.0f;
    for (long j = 0; j < S; j++)
        sum += w[j];
    group_load[x] = sum;
}

/* One work-item per (l, g): its S experts to their node-major positions.
 * has_pack == 0 (G == N): one group per node, the identity packing. */
kernel void eplb_node_layout(global const float *weight, global const int *pack_of,
                             global const int *rank_of, global int *log2mlog,
                             global int *mlog2log, global float *node_weight, ulong count,
                             long G, long S, long E, long per_node, int has_pack)
{
    const ulong x = get_global_id(0);
    if (x >= count)
        return;
    const long l = (long)(x / G), g = (long)(x % G);
    const long pack = has_pack ? pack_of[l * G + g] : g;
    const long rank = has_pack ? rank_of[l * G + g] : 0;
    for (long j = 0; j < S; j++) {
        const long e = g * S + j;
        const long pos = (pack * per_node + rank) * S + j;
        log2mlog[l * E + e] = (int)pos;
        mlog2log[l * E + pos] = (int)e;
        node_weight[l * E + pos] = weight[l * E + e];
    }
}

/* slot_load[x][q] = node_weight[x][e] / mlogcnt[x][e], e = phy2mlog[x][q]. */
kernel void eplb_slot_loads(global const float *node_weight, global const int *phy2mlog,
                            global const int *mlogcnt, global float *slot_load, ulong count,
                            long M, long RN)
{
    const ulong y = get_global_id(0);
    if (y >= count)
        return;
    const long x = (long)(y / RN);
    const long e = phy2mlog[y];
    slot_load[y] = node_weight[x * M + e] / (float)mlogcnt[x * M + e];
}

/* Per slot (y = (l * N + n) * RN + q): phy2log, slot_rank and the log2phy
 * entry of its replica rank. Nothing while status is nonzero. */
kernel void eplb_assemble_slots(global const int *status, global const int *pack_of,
                                global const int *rank_of, global const int *phy2mlog,
                                global const int *phyrank, global const int *mlog2log,
                                global long *phy2log, global int *slot_rank, global long *log2phy,
                                ulong count, long N, long E, long R, long M, long RN, long spg,
                                long X, int has_pack, int has_slot_rank, int has_log2phy)
{
    const ulong y = get_global_id(0);
    if (y >= count || *status != 0)
        return;
    const long x = (long)(y / RN), q = (long)(y % RN);
    const long l = x / N, n = x % N;
    /* has_pack == 0 (RN == P/N): one slot per GPU, the identity packing. */
    const long pos = has_pack ? (long)pack_of[y] * spg + rank_of[y] : q;
    const long slot = n * RN + pos;
    const long e = mlog2log[l * E + n * M + phy2mlog[y]];
    const int rank = phyrank[y];
    phy2log[l * R + slot] = e;
    if (has_slot_rank)
        slot_rank[l * R + slot] = rank;
    if (has_log2phy && rank < X)
        log2phy[(l * E + e) * X + rank] = slot;
}

/* Per expert (y = l * E + e): logcnt, and the -1 padding of its log2phy row
 * beyond its replicas (the slots themselves come from eplb_assemble_slots). */
kernel void eplb_assemble_experts(global const int *status, global const int *mlogcnt,
                                  global const int *log2mlog, global long *logcnt,
                                  global long *log2phy, ulong count, long E, long X,
                                  int has_log2phy)
{
    const ulong y = get_global_id(0);
    if (y >= count || *status != 0)
        return;
    const long l = (long)(y / E);
    const int cnt = mlogcnt[l * E + log2mlog[y]];
    logcnt[y] = cnt;
    if (has_log2phy)
        for (long r = cnt; r < X; r++)
            log2phy[(long)y * X + r] = -1;
}

/* log2phy at the width the plan needs (EPLB_LOG2PHY_WIDTH_NEEDED): one
 * work-group, of a power of two work-items up to EPLB_LOG2PHY_WIDTH_LOCAL,
 * writes the largest count of any expert in any layer to status[1]. The
 * width is known only once every layer's counts are, hence a kernel of its
 * own. */
#define EPLB_LOG2PHY_WIDTH_LOCAL 256
kernel void eplb_log2phy_width(global int *status, global const long *logcnt, ulong count)
{
    local long most[EPLB_LOG2PHY_WIDTH_LOCAL];
    if (status[0] != 0)
        return;
    const uint t = get_local_id(0), size = get_local_size(0);
    long mine = 1;
    for (ulong i = t; i < count; i += size)
        mine = max(mine, logcnt[i]);
    most[t] = mine;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint span = size / 2; span > 0; span /= 2) {
        if (t < span)
            most[t] = max(most[t], most[t + span]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0)
        status[1] = (int)most[0];
}

/* One work-group per layer: the layer's rows of log2phy at width status[1]
 * filled with -1, then each slot written at its replica rank. */
kernel void eplb_log2phy_at_width(global const int *status, global const long *phy2log,
                                  global const int *slot_rank, global long *log2phy, long E,
                                  long R)
{
    if (status[0] != 0)
        return;
    const long w = status[1], l = get_group_id(0);
    const long t = get_local_id(0), size = get_local_size(0);
    global long *rows = log2phy + l * E * w;
    for (long i = t; i < E * w; i += size)
        rows[i] = -1;
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (long s = t; s < R; s += size)
        rows[phy2log[l * R + s] * w + slot_rank[l * R + s]] = s;
}
