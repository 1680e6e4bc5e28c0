/* Balanced packing stage 3 (SPEC 6.3): up to I swaps between the heaviest and
 * the lightest pack, each the pair that lowers the sum of squared loads most.
 * One work-group per packing; the k*k pairs are split over its work-items and
 * reduced with the row-major tie rule. Pack loads live in global scratch. */
#pragma OPENCL FP_CONTRACT OFF

kernel void eplb_pack_swap(global const float *weight, global int *content, global float *load,
                           int n, int m, int k, int C, int iterations, float tolerance)
{
    local float red_v[EPLB_WG];
    local int red_i[EPLB_WG];
    local float light_v[EPLB_WG];
    local int light_i[EPLB_WG];
    const int t = (int)get_local_id(0), T = (int)get_local_size(0);
    const ulong x = get_group_id(0), row = x / (ulong)C;
    global const float *w = weight + row * (ulong)n;
    global int *packed = content + x * (ulong)n;
    global float *pack_load = load + x * (ulong)m;

    for (int p = t; p < m; p += T)
        pack_load[p] = eplb_pack_load(w, packed, p, k);
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int it = 0; it < iterations; it++) {
        float hv = 0.0f, lv = 0.0f;
        int hi = -1, li = -1;
        for (int p = t; p < m; p += T) {
            const float l = pack_load[p];
            if (eplb_beats_max(l, p, hv, hi)) { hv = l; hi = p; }
            if (eplb_beats_min(l, p, lv, li)) { lv = l; li = p; }
        }
        eplb_group_arg_reduce(red_v, red_i, hv, hi, 1);
        eplb_group_arg_reduce(light_v, light_i, lv, li, 0);
        const int heavy = red_i[0], light = light_i[0];
        /* Equal loads (every work-item read the same pair): no trade can
         * lower the sum of squares, and the k*k search would only say so. */
        if (heavy == light)
            break;
        const float diff = light_v[0] - red_v[0];
        global int *a = packed + heavy * k;
        global int *b = packed + light * k;

        /* The cpu scan starts from pair (0, 0) and takes a pair only when its
         * change is strictly smaller: a NaN there stops the search, and a NaN
         * anywhere else never wins. Each work-item scans its pairs in order. */
        float cv = 0.0f;
        int cf = -1;
        for (int f = t; f < k * k; f += T) {
            const float change = eplb_swap_change(diff, w[a[f / k]], w[b[f % k]]);
            if (!isnan(change) && eplb_beats_min(change, f, cv, cf)) {
                cv = change;
                cf = f;
            }
        }
        eplb_group_arg_reduce(red_v, red_i, cv, cf, 0);
        const float first = eplb_swap_change(diff, w[a[0]], w[b[0]]);
        const float best = isnan(first) ? first : red_v[0];
        if (!(best < -tolerance))
            break; /* uniform: every work-item read the same values */
        if (t == 0) {
            const int f = red_i[0], sa = f / k, sb = f % k;
            const int held = a[sa];
            a[sa] = b[sb];
            b[sb] = held;
            pack_load[heavy] = eplb_pack_load(w, packed, heavy, k);
            pack_load[light] = eplb_pack_load(w, packed, light, k);
        }
        barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    }
}
