/* plan_fused with a work-item per packing and per replication row
 * (-DEPLB_FUSED_TEAMS=0): the cpu algorithm, barriers only between stages.
 * The CPU-device default, where a group is one work-item: PoCL compiles it
 * in seconds and runs a row's candidates as SIMD lanes. Also the two steps
 * every variant shares: a packing's score and a swap's trade.
 * Kept: the PoCL default, the only variant PoCL compiles in seconds (docs/backends.md). */
#pragma OPENCL FP_CONTRACT OFF

/* Serial greedy of one packing, the cpu rule: visit order ord, each item into
 * the least-loaded open pack. heap: m words of scratch. */
inline void eplb_fused_greedy_serial(local const float *w, local const int *ord, local int *cont,
                                     local float *ld, local int *cn, local int *heap, int n,
                                     int m, int k, int scan_max)
{
    for (int p = 0; p < m; p++) {
        ld[p] = 0.0f;
        cn[p] = 0;
    }
    if (m <= scan_max) { /* a scan beats the blocks on few packs, and on GPUs */
        for (int s = 0; s < n; s++) {
            int b = -1;
            float v = 0.0f;
            for (int p = 0; p < m; p++)
                if (cn[p] < k && (b < 0 || ld[p] < v)) {
                    v = ld[p];
                    b = p;
                }
            const int item = ord[s];
            cont[b * k + cn[b]] = item;
            cn[b]++;
            ld[b] += w[item];
        }
        return;
    }
    /* Many packs: blocks of 8, each with the least open load in it (+inf
     * when none): the first block holding the overall least holds the
     * lowest pack with it. heap holds the block minima. When every open
     * load has overflowed to +inf, the first open pack is the choice. */
    local float *block = (local float *)heap;
    const int blocks = (m + 7) / 8;
    for (int b = 0; b < blocks; b++)
        block[b] = 0.0f;
    for (int s = 0; s < n; s++) {
        float least = INFINITY;
        int b = -1;
        for (int q = 0; q < blocks; q++)
            if (block[q] < least) {
                least = block[q];
                b = q;
            }
        int p = 0;
        if (b < 0) {
            while (cn[p] >= k)
                p++;
        } else {
            p = b * 8;
            while (!(cn[p] < k && ld[p] == least))
                p++;
        }
        const int item = ord[s];
        cont[p * k + cn[p]] = item;
        cn[p]++;
        ld[p] += w[item];
        const int lo = (p / 8) * 8, hi = min(m, lo + 8);
        float m8 = INFINITY;
        for (int q = lo; q < hi; q++)
            if (cn[q] < k && ld[q] < m8)
                m8 = ld[q];
        block[p / 8] = m8;
    }
}

/* Kept: PoCL's default greedy, its largest share of time (docs/backends.md).
 * The greedy of a row's C <= 8 candidates at once, candidate c in lane c of
 * float8 / int8 vectors (a CPU device runs them as SIMD vectors): per item,
 * every lane's least open load in one pass over the packs, then the first
 * pack holding it in a second. The same choices as the serial greedy, an
 * item per candidate per step. Lanes from C up repeat candidate 0, unused.
 * Writes contents and the loads (loads[c * m + p]). */
#define EPLB_LANES_MAX_PACKS 128
inline void eplb_fused_greedy_lanes(local const float *w, local const int *order,
                                    local int *content, local float *loads, int n, int m, int k,
                                    int C)
{
    float8 lv[EPLB_LANES_MAX_PACKS], open[EPLB_LANES_MAX_PACKS]; /* open: load, +inf once full */
    int8 cv[EPLB_LANES_MAX_PACKS];
    for (int p = 0; p < m; p++) {
        lv[p] = (float8)(0.0f);
        open[p] = (float8)(0.0f);
        cv[p] = (int8)(0);
    }
    const int8 full = (int8)(k);
    /* While every earlier weight is positive, item t of the first m goes to
     * pack t (the lowest at load 0) in every lane: no search for those. */
    int z = 0;
    while (z < m) {
        int positive = 1;
        for (int c = 0; c < C; c++)
            positive = positive && w[order[c * n + z]] > 0.0f;
        if (!positive)
            break;
        float weight[8];
        for (int c = 0; c < 8; c++) {
            const int item = order[(c < C ? c : 0) * n + z];
            if (c < C)
                content[c * n + z * k] = item;
            weight[c] = 0.0f + w[item];
        }
        lv[z] = vload8(0, weight);
        cv[z] = (int8)(1);
        open[z] = k > 1 ? lv[z] : (float8)(INFINITY);
        z++;
    }
    for (int s = z; s < n; s++) {
        int item[8];
        float weight[8];
        for (int c = 0; c < 8; c++) {
            item[c] = order[(c < C ? c : 0) * n + s];
            weight[c] = w[item[c]];
        }
        /* One pass, strictly smaller only: the first pack with the least
         * open load. A lane whose open loads have all overflowed to +inf
         * finds none and takes its first open pack, as the cpu's does. */
        float8 least = (float8)(INFINITY);
        int8 at = (int8)(-1);
        for (int p = 0; p < m; p++) {
            const int8 smaller = open[p] < least;
            least = select(least, open[p], smaller);
            at = select(at, (int8)(p), smaller);
        }
        if (any(at < (int8)(0)))
            for (int p = m - 1; p >= 0; p--)
                at = select(at, (int8)(p), (at < (int8)(0) | at > (int8)(p)) & (cv[p] < full) &
                                              (least == (float8)(INFINITY)));
        int pick[8];
        vstore8(at, 0, pick);
        for (int c = 0; c < C; c++) {
            const int p = pick[c];
            float *load = (float *)&lv[p];
            int *count = (int *)&cv[p];
            content[c * n + p * k + count[c]] = item[c];
            count[c] += 1;
            load[c] += weight[c];
            ((float *)&open[p])[c] = count[c] < k ? load[c] : INFINITY;
        }
    }
    for (int c = 0; c < C; c++)
        for (int p = 0; p < m; p++)
            loads[c * m + p] = ((float *)&lv[p])[c];
}

inline float eplb_fused_pack_load(local const float *w, local const int *cont, int p, int k)
{
    float load = 0.0f;
    for (int r = 0; r < k; r++)
        load += w[cont[p * k + r]];
    return load;
}

/* Serial swap search of one packing, the cpu's scalar rule (a NaN first
 * change stops it, no NaN elsewhere wins). ld holds the greedy's loads, which
 * are already the slot-order sums. */
inline void eplb_fused_swap_serial(local const float *w, local int *cont, local float *ld, int m,
                                   int k, int iterations, float tolerance)
{
    for (int it = 0; it < iterations; it++) {
        int heavy = 0, light = 0;
        for (int p = 1; p < m; p++) {
            if (ld[p] > ld[heavy]) heavy = p;
            if (ld[p] < ld[light]) light = p;
        }
        if (heavy == light)
            return; /* equal loads: no trade lowers the sum of squares (SPEC 6.3) */
        const float diff = ld[light] - ld[heavy];
        local int *a = cont + heavy * k, *b = cont + light * k;
        float best = eplb_swap_change(diff, w[a[0]], w[b[0]]);
        int ba = 0, bb = 0;
        for (int sa = 0; sa < k; sa++) {
            const float wa = w[a[sa]];
            for (int sb = 0; sb < k; sb++) {
                const float change = eplb_swap_change(diff, wa, w[b[sb]]);
                if (change < best) {
                    best = change;
                    ba = sa;
                    bb = sb;
                }
            }
        }
        if (!(best < -tolerance))
            return;
        const int held = a[ba];
        a[ba] = b[bb];
        b[bb] = held;
        ld[heavy] = eplb_fused_pack_load(w, cont, heavy, k);
        ld[light] = eplb_fused_pack_load(w, cont, light, k);
    }
}

/* A packing's score: its largest pack load (the loads are the slot-order sums). */
EPLB_STEP float eplb_fused_most(local const float *ld, int m)
{
    float most = ld[0];
    for (int p = 1; p < m; p++)
        if (ld[p] > most)
            most = ld[p];
    return most;
}

/* The trade a team's swap search found: items a[sa] (heavy pack) and
 * bp[sb] (light pack), read by every member beforehand, change places. The
 * owners of the two packs recompute their loads in slot order from the
 * traded items and the first member writes them, so no further barrier. */
EPLB_STEP void eplb_fused_trade(local const float *w, local int *a, local int *bp, local float *ld,
                                int heavy, int light, int sa, int sb, int item_a, int item_b, int k,
                                int owns_heavy, int owns_light, int first_member)
{
    if (owns_heavy) {
        float load = 0.0f;
        for (int r = 0; r < k; r++)
            load += w[r == sa ? item_b : a[r]];
        ld[heavy] = load;
    }
    if (owns_light) {
        float load = 0.0f;
        for (int r = 0; r < k; r++)
            load += w[r == sb ? item_a : bp[r]];
        ld[light] = load;
    }
    if (first_member) {
        a[sa] = item_b;
        bp[sb] = item_a;
    }
}

#if !EPLB_FUSED_TEAMS
/* Stages 2 to 4 of P = rows * C packings (greedy, swap, score), a work-item
 * a packing; one work-item a group (CPU devices) runs a row's candidates in
 * lanes. */
EPLB_STEP void eplb_fused_solve_items(local const float *wrows, int rows, int n, int m, int k, int C,
                                      int iterations, float tolerance, int scan_max, int ok,
                                      local const int *order, local int *content, local float *loads,
                                      local int *counts, local float *score)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int P = rows * C;
    const int lanes = T == 1 && C <= 8 && m <= EPLB_LANES_MAX_PACKS;
    for (int y = t; ok && y < (lanes ? rows : P); y += T) {
        const int r = lanes ? y : y / C;
        if (lanes)
            eplb_fused_greedy_lanes(wrows + r * n, order + r * C * n, content + r * C * n,
                                    loads + r * C * m, n, m, k, C);
        for (int x = lanes ? r * C : y; x < (lanes ? (r + 1) * C : y + 1); x++) {
            local const float *w = wrows + r * n;
            local int *cont = content + x * n;
            local float *ld = loads + x * m;
            local int *cn = counts + 2 * x * m;
            if (!lanes)
                eplb_fused_greedy_serial(w, order + x * n, cont, ld, cn, cn + m, n, m, k, scan_max);
            eplb_fused_swap_serial(w, cont, ld, m, k, iterations, tolerance);
            score[x] = eplb_fused_most(ld, m);
        }
    }
}

/* Replication (SPEC 5) of `rows` rows, a work-item a row; val and cnt hold
 * each item's w / cnt and count, phy2mlog and phyrank the first M slots. */
EPLB_STEP void eplb_fused_replicate_items(local const float *nw, int rows, int M, int RN, int ok,
                                          local int *phy2mlog, local int *phyrank, local int *cnt,
                                          local float *val)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    /* One work-item a group (CPU devices): blocks of 8 items with their
     * largest value (the first block holding the overall largest holds the
     * lowest item with it), up to 128 blocks; GPUs scan every item. */
    float block[128];
    const int blocks = T == 1 ? (M + 7) / 8 : 129;
    for (int row = t; ok && row < rows; row += T) {
        local float *v_row = val + row * M;
        local int *c_row = cnt + row * M;
        for (int q = 0; q < blocks && blocks <= 128; q++) {
            float most = v_row[q * 8];
            for (int i = q * 8 + 1; i < min(M, q * 8 + 8); i++)
                most = v_row[i] > most ? v_row[i] : most;
            block[q] = most;
        }
        for (int s = M; s < RN; s++) {
            float v = v_row[0];
            int b = 0;
            if (blocks <= 128) {
                int bq = 0;
                v = block[0];
                for (int q = 1; q < blocks; q++)
                    if (block[q] > v) {
                        v = block[q];
                        bq = q;
                    }
                b = bq * 8;
                while (!(v_row[b] == v))
                    b++;
            } else {
                for (int i = 1; i < M; i++)
                    if (v_row[i] > v) {
                        v = v_row[i];
                        b = i;
                    }
            }
            phy2mlog[row * RN + s] = b;
            phyrank[row * RN + s] = c_row[b];
            const int c = ++c_row[b];
            v_row[b] = nw[row * M + b] / (float)c;
            if (blocks <= 128) {
                const int lo = (b / 8) * 8, hi = min(M, lo + 8);
                float most = v_row[lo];
                for (int i = lo + 1; i < hi; i++)
                    most = v_row[i] > most ? v_row[i] : most;
                block[b / 8] = most;
            }
        }
    }
}
#endif
