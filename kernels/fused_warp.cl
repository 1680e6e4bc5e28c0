/* plan_fused with NVIDIA warp teams (-DEPLB_NV_WARP=1, see warp_team.cl):
 * teams are parts of one warp and exchange by shuffles; each team sorts its
 * packing in registers (a bitonic network) and keeps its packs' loads and
 * its replicated items in registers, so the greedy, swap and replication
 * loops hold no barrier.
 * Kept: the NVIDIA default, the fastest variant there (docs/backends.md). */
#pragma OPENCL FP_CONTRACT OFF

#if EPLB_NV_WARP
/* Whether no team of this work-item's warp has work in a batch whose first
 * team takes item `first` of `count` (teams of `team` lanes in order, so the
 * warp's first team has the lowest). Such a warp skips the batch (its
 * exchanges stay inside the warp): idle warps walking the loops would take
 * issue slots from the working ones. */
inline int eplb_warp_idle(int first, int team, int count)
{
    return first + ((int)get_local_id(0) & ~31) / team >= count;
}

/* Greedy of one packing by a warp team whose member j holds packs
 * j*PPL .. j*PPL+PPL-1 in registers (m <= team * EPLB_WARP_PPL). Per item:
 * one team minimum of the members' least keys, then one ballot: the lowest
 * lane holding that key holds the lowest pack with it. What a member would
 * do if it wins (its pack's new load and key, its next least pack) is worked
 * out before the minimum arrives, off the loop's critical path. Writes the
 * final loads to ld. */
inline void eplb_warp_greedy(local const float *w, local const int *ord, local int *cont,
                             local float *ld, int n, int m, int k, int j, int team, int active,
                             uint members)
{
    const uint lanes = eplb_warp_team_lanes((uint)team);
    /* While every pack before it is non-empty and every empty pack has
     * load 0, item t of the first m goes to pack t: true up to the first of
     * them whose weight is not positive. Those steps need no exchange. The
     * count skipped (z) is the least over the whole warp: every team of the
     * warp must walk the same steps, or the exchanges never meet. */
    uint first_zero = (uint)m;
    for (int t = j; active && t < m; t += team)
        if (!(w[ord[t]] > 0.0f)) {
            first_zero = (uint)t;
            break;
        }
    const uint warp_width = min(32u, EPLB_LOCAL_SIZE());
    const int z = (int)eplb_warp_team_min(first_zero, warp_width, members);
    float load[EPLB_WARP_PPL];
    int count[EPLB_WARP_PPL];
    uint key[EPLB_WARP_PPL];
#pragma unroll
    for (int r = 0; r < EPLB_WARP_PPL; r++) {
        const int p = j * EPLB_WARP_PPL + r;
        load[r] = 0.0f;
        count[r] = active && p < m ? 0 : k; /* absent packs are full */
        if (active && p < z) {
            const int item = ord[p];
            cont[p * k] = item;
            load[r] = 0.0f + w[item];
            count[r] = 1;
        }
        key[r] = count[r] < k ? eplb_float_min_key(load[r]) : 0xFFFFFFFFu;
    }
    /* The member's least-loaded open pack (lowest on ties) and its state. */
    uint least = key[0];
    int mine = 0, count_m = count[0];
    float load_m = load[0];
#pragma unroll
    for (int r = 1; r < EPLB_WARP_PPL; r++)
        if (key[r] < least) {
            least = key[r];
            mine = r;
            count_m = count[r];
            load_m = load[r];
        }
    int item = active && z < n ? ord[z] : 0, item_next = active && z + 1 < n ? ord[z + 1] : 0;
    float weight = w[item];
    for (int s = z; s < n; s++) {
        const float weight_next = w[item_next];
        const int item_after = active && s + 2 < n ? ord[s + 2] : 0;
        const float won_load = load_m + weight;
        const uint won_key = count_m + 1 < k ? eplb_float_min_key(won_load) : 0xFFFFFFFFu;
        uint next_key = mine == 0 ? won_key : key[0];
        int next_mine = 0, next_count = mine == 0 ? count_m + 1 : count[0];
        float next_load = mine == 0 ? won_load : load[0];
#pragma unroll
        for (int r = 1; r < EPLB_WARP_PPL; r++) {
            const uint kr = mine == r ? won_key : key[r];
            if (kr < next_key) {
                next_key = kr;
                next_mine = r;
                next_count = mine == r ? count_m + 1 : count[r];
                next_load = mine == r ? won_load : load[r];
            }
        }
        const int slot = (int)eplb_warp_keep((uint)((j * EPLB_WARP_PPL + mine) * k + count_m));
        next_key = eplb_warp_keep(next_key);
        next_mine = (int)eplb_warp_keep((uint)next_mine);
        next_count = (int)eplb_warp_keep((uint)next_count);
        next_load = eplb_warp_keep_float(next_load);
        const uint best = eplb_warp_team_min(least, (uint)team, members);
        /* every lane votes: a ballot skipped by some lanes of the warp never returns */
        const int win = eplb_warp_lowest_vote(least == best, lanes, members) && active;
        if (win)
            cont[slot] = item;
#pragma unroll
        for (int r = 0; r < EPLB_WARP_PPL; r++) {
            const int mine_r = win && mine == r;
            load[r] = mine_r ? won_load : load[r];
            count[r] = mine_r ? count_m + 1 : count[r];
            key[r] = mine_r ? won_key : key[r];
        }
        if (win) {
            least = next_key;
            mine = next_mine;
            count_m = next_count;
            load_m = next_load;
        }
        item = item_next;
        weight = weight_next;
        item_next = item_after;
    }
#pragma unroll
    for (int r = 0; r < EPLB_WARP_PPL; r++)
        if (active && j * EPLB_WARP_PPL + r < m)
            ld[j * EPLB_WARP_PPL + r] = load[r];
}

/* Replication (SPEC 5) of one row by a warp team whose member j holds items
 * j*RPL .. j*RPL+RPL-1 in registers (M <= team * EPLB_WARP_RPL). Per item:
 * its key (of w / cnt) and the key it takes when picked (of w / (cnt + 1)),
 * so a pick needs no division on the loop's dependent chain: the winner's
 * next value w / (cnt + 2) is divided while the exchange runs, and what the
 * member's least item becomes if it wins is worked out likewise. Writes
 * the counts to cnt. */
#ifndef EPLB_WARP_RPL
#define EPLB_WARP_RPL (2 * EPLB_WARP_PPL)
#endif
inline void eplb_warp_replicate(local const float *nw, int M, int RN, int j, int team, int active,
                                uint members, local int *phy2mlog, local int *phyrank, local int *cnt)
{
    const uint lanes = eplb_warp_team_lanes((uint)team);
    float wt[EPLB_WARP_RPL];
    int count[EPLB_WARP_RPL];
    uint key[EPLB_WARP_RPL], then[EPLB_WARP_RPL];
#pragma unroll
    for (int r = 0; r < EPLB_WARP_RPL; r++) {
        const int i = j * EPLB_WARP_RPL + r, present = active && i < M;
        wt[r] = present ? nw[i] : 0.0f;
        count[r] = 1;
        key[r] = present ? eplb_float_max_key(wt[r]) : 0xFFFFFFFFu; /* w / 1 */
        then[r] = present ? eplb_float_max_key(wt[r] / 2.0f) : 0xFFFFFFFFu;
    }
    /* The member's item with the largest value (lowest on ties) and its state. */
    uint most = key[0], then_m = then[0];
    int mine = 0, count_m = 1;
    float w_m = wt[0];
#pragma unroll
    for (int r = 1; r < EPLB_WARP_RPL; r++)
        if (key[r] < most) {
            most = key[r];
            then_m = then[r];
            mine = r;
            w_m = wt[r];
        }
    for (int s = M; s < RN; s++) {
        /* If this member wins: its item's key becomes then_m, and the one
         * after that is w / (cnt + 2). */
        const uint won_then = eplb_float_max_key(w_m / (float)(count_m + 2));
        uint next_key = mine == 0 ? then_m : key[0];
        uint next_then = mine == 0 ? won_then : then[0];
        int next_mine = 0, next_count = mine == 0 ? count_m + 1 : count[0];
        float next_w = wt[0];
#pragma unroll
        for (int r = 1; r < EPLB_WARP_RPL; r++) {
            const uint kr = mine == r ? then_m : key[r];
            if (kr < next_key) {
                next_key = kr;
                next_then = mine == r ? won_then : then[r];
                next_mine = r;
                next_count = mine == r ? count_m + 1 : count[r];
                next_w = wt[r];
            }
        }
        next_key = eplb_warp_keep(next_key);
        next_then = eplb_warp_keep(next_then);
        next_mine = (int)eplb_warp_keep((uint)next_mine);
        next_count = (int)eplb_warp_keep((uint)next_count);
        next_w = eplb_warp_keep_float(next_w);
        const uint best = eplb_warp_team_min(most, (uint)team, members);
        const int win = eplb_warp_lowest_vote(most == best, lanes, members) && active;
        if (win) {
            phy2mlog[s] = j * EPLB_WARP_RPL + mine;
            phyrank[s] = count_m;
        }
#pragma unroll
        for (int r = 0; r < EPLB_WARP_RPL; r++) {
            const int mine_r = win && mine == r;
            count[r] = mine_r ? count_m + 1 : count[r];
            key[r] = mine_r ? then_m : key[r];
            then[r] = mine_r ? won_then : then[r];
        }
        if (win) {
            most = next_key;
            then_m = next_then;
            mine = next_mine;
            count_m = next_count;
            w_m = next_w;
        }
    }
#pragma unroll
    for (int r = 0; r < EPLB_WARP_RPL; r++)
        if (active && j * EPLB_WARP_RPL + r < M)
            cnt[j * EPLB_WARP_RPL + r] = count[r];
}

/* Elements a warp-team member holds in the register sort (the host sizes
 * teams so that n <= team * EPLB_WARP_SPL). */
#define EPLB_WARP_SPL 16

inline ulong eplb_warp_shfl_xor64(ulong v, uint lane_mask, uint members)
{
    const uint hi = eplb_warp_shfl_xor((uint)(v >> 32), lane_mask, members);
    const uint lo = eplb_warp_shfl_xor((uint)v, lane_mask, members);
    return ((ulong)hi << 32) | lo;
}

/* One bitonic step between registers r and r + d of each member (d < SPL, a
 * constant once inlined, so v stays in registers): position p = j*SPL + r
 * sorts ascending where p & k is 0. */
inline void eplb_warp_sort_in_lane(ulong *v, const int d, uint k, int j)
{
#pragma unroll
    for (int r = 0; r < EPLB_WARP_SPL; r++)
        if ((r & d) == 0) {
            const int up = (((uint)(j * EPLB_WARP_SPL + r)) & k) == 0;
            const ulong a = v[r], b = v[r | d];
            const ulong lo = min(a, b), hi = max(a, b);
            v[r] = up ? lo : hi;
            v[r | d] = up ? hi : lo;
        }
}

/* Stage 1 of one packing by a warp team (SPEC 6.1): the keys, then a bitonic
 * sort of team * SPL (item key, item index) pairs, ascending in
 * (eplb_float_max_key(key), index) -- key descending, equal keys by
 * ascending index -- with padding at the end. Exchanges between members are
 * shuffles. Writes the visiting order to order[0..n). */
inline void eplb_warp_sort(local const float *w, int n, int call, ulong row, int c, ulong seed,
                           float noise, int j, int team, int active, uint members,
                           local int *order)
{
    ulong v[EPLB_WARP_SPL];
    const ulong prefix = eplb_random_prefix(seed, (ulong)call, row, (ulong)c);
#pragma unroll
    for (int r = 0; r < EPLB_WARP_SPL; r++) {
        const int i = j * EPLB_WARP_SPL + r;
        v[r] = 0xFFFFFFFFFFFFFFFFUL; /* padding sorts last */
        if (active && i < n) {
            const float wi = w[i];
            const float key = c == 0 ? wi : eplb_sort_key(wi, noise, eplb_random_unit_at(prefix, (ulong)i));
            v[r] = ((ulong)eplb_float_max_key(key) << 32) | (uint)i;
        }
    }
    const uint size = (uint)team * EPLB_WARP_SPL;
    for (uint k = 2; k <= size; k <<= 1) {
        for (uint d = k >> 1; d >= EPLB_WARP_SPL; d >>= 1) {
            const uint other_lane = d / EPLB_WARP_SPL;
            const int lower = (j & other_lane) == 0;
#pragma unroll
            for (int r = 0; r < EPLB_WARP_SPL; r++) {
                const ulong other = eplb_warp_shfl_xor64(v[r], other_lane, members);
                const int up = (((uint)(j * EPLB_WARP_SPL + r)) & k) == 0;
                v[r] = lower == up ? min(v[r], other) : max(v[r], other);
            }
        }
        if (k >= 16)
            eplb_warp_sort_in_lane(v, 8, k, j);
        if (k >= 8)
            eplb_warp_sort_in_lane(v, 4, k, j);
        if (k >= 4)
            eplb_warp_sort_in_lane(v, 2, k, j);
        eplb_warp_sort_in_lane(v, 1, k, j);
    }
#pragma unroll
    for (int r = 0; r < EPLB_WARP_SPL; r++) {
        const int p = j * EPLB_WARP_SPL + r;
        if (active && p < n)
            order[p] = (int)(uint)v[r];
    }
}

/* Greedy of one packing by a warp team from local memory (more packs than
 * its registers hold): member j owns packs j, j + team, ...; the
 * least-loaded open pack, lowest index among equals, by one argmin a step. */
EPLB_STEP void eplb_warp_greedy_local(local const float *w, local const int *ord, local int *cont,
                                      local float *ld, local int *cn, int n, int m, int k, int j,
                                      int team, int active, uint members)
{
    if (active)
        for (int p = j; p < m; p += team) {
            ld[p] = 0.0f;
            cn[p] = 0;
        }
    int item = active ? ord[0] : 0;
    float wt = w[item];
    for (int s = 0; s < n; s++) {
        uint key = 0xFFFFFFFFu, b = 0xFFFFFFFFu;
        if (active)
            for (int p = j; p < m; p += team) {
                const uint kp = eplb_float_min_key(ld[p]);
                if (cn[p] < k && kp < key) {
                    key = kp;
                    b = (uint)p;
                }
            }
        const int next = active && s + 1 < n ? ord[s + 1] : 0;
        const float next_wt = w[next];
        const int bi = (int)eplb_warp_team_argmin(key, b, (uint)team, members).y;
        if (active && (bi & (team - 1)) == j) {
            cont[bi * k + cn[bi]] = item;
            cn[bi]++;
            ld[bi] += wt;
        }
        item = next;
        wt = next_wt;
    }
}

/* The member's best pair f = sa * k + sb of heavy pack a and light pack bp
 * (pairs j, j + team, ...) as (change key, f), the change of pair (0, 0) in
 * *first when it may be a NaN. The cpu scan starts at pair (0, 0) and takes
 * only strictly smaller changes: a NaN there stops the search, a NaN
 * anywhere else never wins. Below 1e37 every load, weight and change is a
 * number (as the cpu's vector search assumes), so the first pair needs no
 * look of its own. */
EPLB_STEP uint2 eplb_warp_member_pair(local const float *w, local const int *a, local const int *bp,
                                      float heavy_load, float diff, int k, int j, int team,
                                      float *first)
{
    uint ck = 0xFFFFFFFFu, cf = 0xFFFFFFFFu;
    const int step_sa = team / k, step_sb = team % k;
    if (!(heavy_load < 1e37f))
        *first = eplb_swap_change(diff, w[a[0]], w[bp[0]]);
    /* Pair f = sa * k + sb, stepped without a division per pair. */
    int sa_f = j / k, sb_f = j % k;
    for (int f = j; f < k * k; f += team) {
        const float change = eplb_swap_change(diff, w[a[sa_f]], w[bp[sb_f]]);
        const uint kc = eplb_float_min_key(change);
        if (!isnan(change) && kc < ck) {
            ck = kc;
            cf = (uint)f;
        }
        sa_f += step_sa;
        sb_f += step_sb;
        if (sb_f >= k) {
            sb_f -= k;
            sa_f++;
        }
    }
    return (uint2)(ck, cf);
}

/* Swap search of one packing by a warp team (SPEC 6.3): heavy and light by
 * one pair of argmins, the best trade by a third; every member reads the two
 * traded items before the trade. */
EPLB_STEP void eplb_warp_swap(local const float *w, local int *cont, local float *ld, int m, int k,
                              int j, int team, int active, int iterations, float tolerance,
                              uint members)
{
    int live = active;
    for (int it = 0; it < iterations && eplb_warp_any(live, members); it++) {
        uint hk = 0xFFFFFFFFu, hix = 0xFFFFFFFFu, lk = 0xFFFFFFFFu, lix = 0xFFFFFFFFu;
        if (live)
            for (int p = j; p < m; p += team) {
                const float l = ld[p];
                const uint kmax = eplb_float_max_key(l), kmin = eplb_float_min_key(l);
                if (kmax < hk) { hk = kmax; hix = (uint)p; }
                if (kmin < lk) { lk = kmin; lix = (uint)p; }
            }
        const uint2 heavy_light = eplb_warp_team_argmin2(hk, hix, lk, lix, (uint)team, members);
        const int heavy = (int)heavy_light.x, light = (int)heavy_light.y;
        local int *a = cont + (live ? heavy : 0) * k, *bp = cont + (live ? light : 0) * k;
        float first = 0.0f;
        uint2 mine = (uint2)(0xFFFFFFFFu, 0xFFFFFFFFu);
        if (live) {
            const float heavy_load = ld[heavy];
            mine = eplb_warp_member_pair(w, a, bp, heavy_load, ld[light] - heavy_load, k, j, team,
                                         &first);
        }
        const uint2 won = eplb_warp_team_argmin(mine.x, mine.y, (uint)team, members);
        const int bf = (int)won.y;
        int item_a = 0, item_b = 0, sa = 0, sb = 0;
        if (live && bf >= 0) {
            sa = bf / k;
            sb = bf % k;
            item_a = a[sa];
            item_b = bp[sb];
        }
        /* The best change is its key's float (-0 comes back as +0, the
         * same for the comparison below). */
        const float best = isnan(first) || bf < 0 ? first : eplb_float_from_min_key(won.x);
        live = live && best < -tolerance;
        eplb_warp_sync(members); /* the items are read before member 0 trades them */
        if (live)
            eplb_fused_trade(w, a, bp, ld, heavy, light, sa, sb, item_a, item_b, k,
                             (heavy & (team - 1)) == j, (light & (team - 1)) == j, j == 0);
        eplb_warp_sync(members); /* the trade and the loads are visible */
    }
}

/* Stages 1 to 4 of P = rows * C packings (with warp_sort, the sort too),
 * one warp team per packing (at most 32 lanes, see warp_team.cl):
 * exchanges are shuffles, no barrier inside the loops. Member j owns packs
 * j, j + team, ... (their loads and counts): consecutive lanes read
 * consecutive words, no bank conflict. */
EPLB_STEP void eplb_fused_solve_warp(local const float *wrows, int rows, ulong row0, int n, int m,
                                     int k, int C, int c_first, int call, ulong seed, float noise,
                                     int iterations, float tolerance, int team, int ok, int warp_sort,
                                     local int *order, local int *content, local float *loads,
                                     local int *counts, local float *score)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int P = rows * C;
    const uint members = eplb_warp_members();
    const int teams = T / team, j = t % team, tm = t / team;
    const int batches = (P + teams - 1) / teams;
    for (int bt = 0; bt < batches; bt++) {
        if (!ok || eplb_warp_idle(bt * teams, team, P))
            continue;
        const int x = bt * teams + tm, active = x < P, xs = active ? x : 0;
        local const float *w = wrows + (xs / C) * n;
        local const int *ord = order + xs * n;
        local int *cont = content + xs * n;
        local float *ld = loads + xs * m;
        if (warp_sort) {
            eplb_warp_sort(w, n, call, row0 + (ulong)(xs / C), c_first + xs % C, seed, noise, j,
                           team, active, members, order + xs * n);
            eplb_warp_sync(members); /* the order is visible to the whole team */
        }
        /* Greedy: in registers when the packs fit, else from local memory. */
        if (m <= team * EPLB_WARP_PPL)
            eplb_warp_greedy(w, ord, cont, ld, n, m, k, j, team, active, members);
        else
            eplb_warp_greedy_local(w, ord, cont, ld, counts + 2 * xs * m, n, m, k, j, team, active,
                                   members);
        eplb_warp_sync(members); /* every member's content is visible */
        eplb_warp_swap(w, cont, ld, m, k, j, team, active, iterations, tolerance, members);
        if (active && j == 0)
            score[x] = eplb_fused_most(ld, m);
        eplb_warp_sync(members);
    }
}

/* Replication (SPEC 5) of `rows` rows, a warp team per row: in registers
 * when the row's items fit, else member j owns items j, j + team, ... (no
 * local-memory bank conflicts). */
EPLB_STEP void eplb_fused_replicate_warp(local const float *nw, int rows, int M, int RN, int team,
                                         int ok, local int *phy2mlog, local int *phyrank,
                                         local int *cnt, local float *val)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const uint members = eplb_warp_members();
    const int teams = T / team, j = t % team, tm = t / team;
    const int batches = (rows + teams - 1) / teams;
    for (int bt = 0; bt < batches; bt++) {
        if (!ok || eplb_warp_idle(bt * teams, team, rows))
            continue;
        const int row = bt * teams + tm, active = row < rows, rs = active ? row : 0;
        local float *v_row = val + rs * M;
        local int *c_row = cnt + rs * M;
        if (M <= team * EPLB_WARP_RPL) {
            eplb_warp_replicate(nw + rs * M, M, RN, j, team, active, members, phy2mlog + rs * RN,
                                phyrank + rs * RN, c_row);
            continue;
        }
        for (int s = M; s < RN; s++) {
            uint key = 0xFFFFFFFFu, b = 0xFFFFFFFFu;
            if (active)
                for (int i = j; i < M; i += team) {
                    const uint ki = eplb_float_max_key(v_row[i]);
                    if (ki < key) {
                        key = ki;
                        b = (uint)i;
                    }
                }
            const int bi = (int)eplb_warp_team_argmin(key, b, (uint)team, members).y;
            if (active && (bi & (team - 1)) == j) {
                phy2mlog[rs * RN + s] = bi;
                phyrank[rs * RN + s] = c_row[bi];
                const int c = ++c_row[bi];
                v_row[bi] = nw[rs * M + bi] / (float)c;
            }
        }
    }
}
#endif
