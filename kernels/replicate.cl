/* Replication (SPEC section 5): each extra slot goes to the item with the
 * highest weight per replica (ties: lowest index). One work-group per row;
 * work-item t owns items t, t+T, ..., so each count is touched by its owner
 * only and each slot needs one reduction in local memory. */
#pragma OPENCL FP_CONTRACT OFF

kernel void eplb_replicate(global const float *node_weight, global int *phy2mlog,
                           global int *phyrank, global int *mlogcnt, global int *status,
                           int n, int p, int check_width, long width)
{
    local float best_v[EPLB_WG];
    local int best_i[EPLB_WG];
    const int t = (int)get_local_id(0), T = (int)get_local_size(0);
    const ulong x = get_group_id(0);
    global const float *w = node_weight + x * (ulong)n;
    global int *cnt = mlogcnt + x * (ulong)n;
    global int *held = phy2mlog + x * (ulong)p;
    global int *rank = phyrank + x * (ulong)p;

    for (int i = t; i < n; i += T) {
        held[i] = i;
        rank[i] = 0;
        cnt[i] = 1;
    }
    for (int s = n; s < p; s++) {
        float v = 0.0f;
        int b = -1;
        for (int i = t; i < n; i += T) {
            const float per_replica = w[i] / (float)cnt[i];
            if (eplb_beats_max(per_replica, i, v, b)) {
                v = per_replica;
                b = i;
            }
        }
        eplb_group_arg_reduce(best_v, best_i, v, b, 1);
        const int i = best_i[0];
        if (i % T == t) {
            held[s] = i;
            rank[s] = cnt[i];
            cnt[i]++;
        }
    }
    if (check_width)
        for (int i = t; i < n; i += T)
            if (cnt[i] > width)
                atomic_cmpxchg(status, 0, EPLB_ERR_LOG2PHY_TOO_SMALL);
}
