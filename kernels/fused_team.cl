/* plan_fused with teams of work-items exchanging through local memory
 * (-DEPLB_FUSED_TEAMS=1 without warp teams): the portable GPU variant.
 * A member of a team owns a contiguous block of packs (items when
 * replicating), so scanning the members' results in member order and keeping
 * the first strict winner gives the lowest index among equals: one exchange
 * and one barrier per greedy item. Barriers are work-group wide, so every
 * loop that holds one has the same trip count in every work-item; idle teams
 * walk it too.
 * Kept: NVIDIA without warp teams runs it, faster than a work-item per
 * packing on the global shapes (docs/backends.md, NVIDIA OpenCL). */
#pragma OPENCL FP_CONTRACT OFF

#if EPLB_FUSED_TEAMS && !EPLB_NV_WARP
/* Exchange slots: red_v/red_i hold 4 sets of T entries: (parity, which). */
#define EPLB_RED(set, which) (((set) * 2 + (which)) * T)

/* Greedy of one packing by a team (SPEC 6.2), member j owning packs
 * lo..hi-1: one exchange per item. The visit order does not depend on the
 * choices, so the next item and its weight are read ahead. */
EPLB_STEP void eplb_team_greedy(local const float *w, local const int *ord, local int *cont,
                                local float *ld, local int *cn, int n, int k, int lo, int hi,
                                int active, int team, local float *red_v, local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE(), tm = t / team;
    for (int p = lo; p < hi; p++) {
        ld[p] = 0.0f;
        cn[p] = 0;
    }
    int item = active ? ord[0] : 0;
    float wt = w[item];
    for (int s = 0; s < n; s++) {
        float v = 0.0f;
        int b = -1;
        if (active)
            for (int p = lo; p < hi; p++)
                if (cn[p] < k && (b < 0 || ld[p] < v)) {
                    v = ld[p];
                    b = p;
                }
        const int mine = EPLB_RED(*par, 0) + t, base = EPLB_RED(*par, 0) + tm * team;
        red_v[mine] = v;
        red_i[mine] = b;
        const int next = active && s + 1 < n ? ord[s + 1] : 0;
        const float next_wt = w[next];
        barrier(CLK_LOCAL_MEM_FENCE);
        float bv = 0.0f;
        int bi = -1;
        for (int q = 0; q < team; q++) {
            const int oi = red_i[base + q];
            const float ov = red_v[base + q];
            if (oi >= 0 && (bi < 0 || ov < bv)) { /* member order is pack order */
                bv = ov;
                bi = oi;
            }
        }
        *par ^= 1;
        if (active && bi >= lo && bi < hi) {
            cont[bi * k + cn[bi]] = item;
            cn[bi]++;
            ld[bi] += wt;
        }
        item = next;
        wt = next_wt;
    }
}

/* The team's heaviest and lightest packs (lowest index among equals) and
 * their loads: one exchange. Its barrier also makes the last trade visible. */
EPLB_STEP void eplb_team_extremes(local const float *ld, int lo, int hi, int live, int team,
                                  local float *red_v, local int *red_i, int *par, int *heavy,
                                  int *light, float *hvb, float *lvb)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE(), tm = t / team;
    float hv = 0.0f, lv = 0.0f;
    int hix = -1, lix = -1;
    if (live)
        for (int p = lo; p < hi; p++) {
            const float l = ld[p];
            if (hix < 0 || l > hv) { hv = l; hix = p; }
            if (lix < 0 || l < lv) { lv = l; lix = p; }
        }
    const int h0 = EPLB_RED(*par, 0), l0 = EPLB_RED(*par, 1);
    red_v[h0 + t] = hv;
    red_i[h0 + t] = hix;
    red_v[l0 + t] = lv;
    red_i[l0 + t] = lix;
    barrier(CLK_LOCAL_MEM_FENCE);
    *heavy = -1;
    *light = -1;
    *hvb = 0.0f;
    *lvb = 0.0f;
    for (int q = 0; q < team; q++) {
        const int at = tm * team + q;
        const int oh = red_i[h0 + at], ol = red_i[l0 + at];
        const float ohv = red_v[h0 + at], olv = red_v[l0 + at];
        if (oh >= 0 && (*heavy < 0 || ohv > *hvb)) { *hvb = ohv; *heavy = oh; }
        if (ol >= 0 && (*light < 0 || olv < *lvb)) { *lvb = olv; *light = ol; }
    }
    *par ^= 1;
}

/* Swap search of one packing by a team (SPEC 6.3): two exchanges per
 * iteration (heavy/light, best pair), then the trade (no third barrier). */
EPLB_STEP void eplb_team_swap(local const float *w, local int *cont, local float *ld, int k, int lo,
                              int hi, int live, int team, int iterations, float tolerance,
                              local float *red_v, local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int j = t % team, tm = t / team;
    for (int it = 0; it < iterations; it++) {
        int heavy, light;
        float hvb, lvb;
        eplb_team_extremes(ld, lo, hi, live, team, red_v, red_i, par, &heavy, &light, &hvb, &lvb);
        /* The cpu scan starts at pair (0, 0) and takes only strictly
         * smaller changes: a NaN there stops the search, a NaN anywhere
         * else never wins. */
        float cv = 0.0f, first = 0.0f;
        int cf = -1, ia = 0, ib = 0;
        local int *a = cont + (live ? heavy : 0) * k, *bp = cont + (live ? light : 0) * k;
        if (live) {
            const float diff = lvb - hvb;
            first = eplb_swap_change(diff, w[a[0]], w[bp[0]]);
            for (int f = j; f < k * k; f += team) {
                const float change = eplb_swap_change(diff, w[a[f / k]], w[bp[f % k]]);
                if (!isnan(change) && eplb_beats_min(change, f, cv, cf)) {
                    cv = change;
                    cf = f;
                }
            }
            if (cf >= 0) {
                ia = a[cf / k];
                ib = bp[cf % k];
            }
        }
        const int p0 = EPLB_RED(*par, 0), p1 = EPLB_RED(*par, 1);
        red_v[p0 + t] = cv;
        red_i[p0 + t] = cf;
        red_v[p1 + t] = as_float(ia);
        red_i[p1 + t] = ib;
        barrier(CLK_LOCAL_MEM_FENCE);
        float bv = 0.0f;
        int bf = -1, won = 0;
        for (int q = 0; q < team; q++) {
            const int at = tm * team + q;
            if (eplb_beats_min(red_v[p0 + at], red_i[p0 + at], bv, bf)) {
                bv = red_v[p0 + at];
                bf = red_i[p0 + at];
                won = at;
            }
        }
        const int item_a = as_int(red_v[p1 + won]), item_b = red_i[p1 + won];
        *par ^= 1;
        const float best = isnan(first) ? first : bv;
        live = live && best < -tolerance;
        if (live)
            eplb_fused_trade(w, a, bp, ld, heavy, light, bf / k, bf % k, item_a, item_b, k,
                             heavy >= lo && heavy < hi, light >= lo && light < hi, j == 0);
    }
}

/* Stages 2 to 4 of P = rows * C packings (greedy, swap, score), one team
 * per packing, batches of teams. */
EPLB_STEP void eplb_fused_solve_teams(local const float *wrows, int rows, int n, int m, int k, int C,
                                      int iterations, float tolerance, int team, int ok,
                                      local const int *order, local int *content, local float *loads,
                                      local int *counts, local float *score, local float *red_v,
                                      local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int P = rows * C;
    const int teams = T / team, j = t % team, tm = t / team;
    const int B = (m + team - 1) / team, lo = j * B, hi = min(m, lo + B);
    const int batches = (P + teams - 1) / teams;
    for (int bt = 0; bt < batches; bt++) {
        const int x = bt * teams + tm, active = ok && x < P, xs = active ? x : 0;
        local const float *w = wrows + (xs / C) * n;
        local int *cont = content + xs * n;
        local float *ld = loads + xs * m;
        eplb_team_greedy(w, order + xs * n, cont, ld, counts + 2 * xs * m, n, k, lo, hi, active,
                         team, red_v, red_i, par);
        eplb_team_swap(w, cont, ld, k, lo, hi, active, team, iterations, tolerance, red_v, red_i,
                       par);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (active && j == 0)
            score[x] = eplb_fused_most(ld, m);
    }
}

/* Replication (SPEC 5) of `rows` rows, a team per row; member j owns items
 * lo..hi-1 (their counts and w / cnt values). */
EPLB_STEP void eplb_fused_replicate_teams(local const float *nw, int rows, int M, int RN, int team,
                                          int ok, local int *phy2mlog, local int *phyrank,
                                          local int *cnt, local float *val, local float *red_v,
                                          local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int teams = T / team, j = t % team, tm = t / team;
    const int B = (M + team - 1) / team, lo = j * B, hi = min(M, lo + B);
    const int batches = (rows + teams - 1) / teams;
    for (int bt = 0; bt < batches; bt++) {
        const int row = bt * teams + tm, active = ok && row < rows, rs = active ? row : 0;
        local float *v_row = val + rs * M;
        local int *c_row = cnt + rs * M;
        for (int s = M; s < RN; s++) {
            float v = 0.0f;
            int b = -1;
            if (active)
                for (int i = lo; i < hi; i++)
                    if (b < 0 || v_row[i] > v) {
                        v = v_row[i];
                        b = i;
                    }
            const int base = EPLB_RED(*par, 0) + tm * team;
            red_v[EPLB_RED(*par, 0) + t] = v;
            red_i[EPLB_RED(*par, 0) + t] = b;
            barrier(CLK_LOCAL_MEM_FENCE);
            b = -1;
            for (int q = 0; q < team; q++)
                if (red_i[base + q] >= 0 && (b < 0 || red_v[base + q] > v)) {
                    v = red_v[base + q];
                    b = red_i[base + q];
                }
            *par ^= 1;
            if (active && b >= lo && b < hi) {
                phy2mlog[rs * RN + s] = b;
                phyrank[rs * RN + s] = c_row[b];
                const int c = ++c_row[b];
                v_row[b] = nw[rs * M + b] / (float)c;
            }
        }
    }
}
#endif
