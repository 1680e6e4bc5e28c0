/* Balanced packing stage 2 (SPEC 6.2): items in visiting order, each into the
 * least-loaded pack that still has room (ties: lowest pack index). One
 * work-group per packing; work-item t owns packs t, t+T, ..., so the loads and
 * counts (global scratch) are only ever touched by their owner, and each step
 * needs just one reduction in local memory. */
#pragma OPENCL FP_CONTRACT OFF

kernel void eplb_pack_greedy(global const float *weight, global const int *order,
                             global int *content, global float *load, global int *count,
                             int n, int m, int k, int C)
{
    local float best_v[EPLB_WG];
    local int best_i[EPLB_WG];
    const int t = (int)get_local_id(0), T = (int)get_local_size(0);
    const ulong x = get_group_id(0), row = x / (ulong)C;
    global const float *w = weight + row * (ulong)n;
    global const int *visit = order + x * (ulong)n;
    global int *packed = content + x * (ulong)n;
    global float *pack_load = load + x * (ulong)m;
    global int *pack_count = count + x * (ulong)m;

    for (int p = t; p < m; p += T) {
        pack_load[p] = 0.0f;
        pack_count[p] = 0;
    }
    for (int s = 0; s < n; s++) {
        float v = 0.0f;
        int b = -1;
        for (int p = t; p < m; p += T)
            if (pack_count[p] < k && eplb_beats_min(pack_load[p], p, v, b)) {
                v = pack_load[p];
                b = p;
            }
        eplb_group_arg_reduce(best_v, best_i, v, b, 0);
        const int p = best_i[0];
        if (p % T == t) {
            const int item = visit[s];
            packed[p * k + pack_count[p]] = item;
            pack_count[p]++;
            pack_load[p] += w[item];
        }
    }
}
