/* Balanced packing stage 4 (SPEC 6.4): per row, the candidate with the
 * smallest maximum pack load (ties: lowest candidate), then each item's pack
 * and rank. One work-group per row; work-items split the candidates. */
#pragma OPENCL FP_CONTRACT OFF

kernel void eplb_pack_select(global const float *weight, global const int *content,
                             global int *pack_of, global int *rank_of, int n, int m, int k, int C)
{
    local float best_v[EPLB_WG];
    local int best_i[EPLB_WG];
    const int t = (int)get_local_id(0), T = (int)get_local_size(0);
    const ulong row = get_group_id(0);
    global const float *w = weight + row * (ulong)n;
    global const int *candidates = content + row * (ulong)C * (ulong)n;

    float v = 0.0f;
    int b = -1;
    for (int c = t; c < C; c += T) {
        global const int *packed = candidates + (ulong)c * (ulong)n;
        float score = eplb_pack_load(w, packed, 0, k);
        for (int p = 1; p < m; p++) {
            const float l = eplb_pack_load(w, packed, p, k);
            if (l > score)
                score = l;
        }
        if (eplb_beats_min(score, c, v, b)) {
            v = score;
            b = c;
        }
    }
    eplb_group_arg_reduce(best_v, best_i, v, b, 0);
    global const int *chosen = candidates + (ulong)best_i[0] * (ulong)n;
    for (int slot = t; slot < n; slot += T) {
        const int item = chosen[slot];
        pack_of[row * (ulong)n + (ulong)item] = slot / k;
        rank_of[row * (ulong)n + (ulong)item] = slot % k;
    }
}
