/* Balanced packing stage 2 (SPEC 6.2): items in visiting order, each into the
 * least-loaded pack that still has room (ties: lowest pack index). One
 * work-group per packing; work-item t owns packs t, t+T, ..., so the loads and
 * counts (global scratch) are only ever touched by their owner, and each step
 * needs just one reduction in local memory. A group of one work-item (CPU
 * devices) keeps the open packs in a min-heap on (load, index) instead, whose
 * top is the same pack, found in log(m) steps instead of m. */
#pragma OPENCL FP_CONTRACT OFF

inline int eplb_greedy_before(global const float *load, int a, int b)
{
    return load[a] < load[b] || (load[a] == load[b] && a < b);
}

inline void eplb_greedy_serial(global const float *w, global const int *visit, global int *packed,
                               global float *pack_load, global int *pack_count, global int *heap,
                               int n, int m, int k)
{
    for (int p = 0; p < m; p++) {
        pack_load[p] = 0.0f;
        pack_count[p] = 0;
        heap[p] = p; /* equal loads: index order is already a heap */
    }
    int open = m;
    for (int s = 0; s < n; s++) {
        const int p = heap[0], item = visit[s];
        packed[p * k + pack_count[p]] = item;
        pack_count[p]++;
        pack_load[p] += w[item];
        if (pack_count[p] == k)
            heap[0] = heap[--open];
        /* The top's load only grew (or it left): sift it down. */
        for (int at = 0;;) {
            const int left = 2 * at + 1;
            int best = at;
            if (left < open && eplb_greedy_before(pack_load, heap[left], heap[best]))
                best = left;
            if (left + 1 < open && eplb_greedy_before(pack_load, heap[left + 1], heap[best]))
                best = left + 1;
            if (best == at)
                break;
            const int held = heap[at];
            heap[at] = heap[best];
            heap[best] = held;
            at = best;
        }
    }
}

/* count holds 2 * m ints per packing: the pack counts, then the serial heap. */
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
    global int *pack_count = count + x * 2 * (ulong)m;

    if (T == 1) {
        eplb_greedy_serial(w, visit, packed, pack_load, pack_count, pack_count + m, n, m, k);
        return;
    }

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
