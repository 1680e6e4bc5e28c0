/* plan_fused: the whole plan of one layer in one work-group (SPEC sections 4
 * to 6), every intermediate in local memory, one enqueue per plan; or in
 * `split` work-groups that each pack a share of the slot packings'
 * candidates (step 6b of eplb_plan_fused).
 *
 * Packings (and replication rows) are solved by teams of `team` work-items
 * (a power of two dividing the group). A team member owns a contiguous block
 * of packs (items when replicating), so scanning the members' results in
 * member order and keeping the first strict winner gives the lowest index
 * among equals: one local-memory exchange and one barrier per greedy item.
 * A team of one scans all packs itself (small pack counts).
 * Barriers are work-group wide, so every loop that holds one has the same
 * trip count in every work-item; idle teams walk it too. */
#pragma OPENCL FP_CONTRACT OFF

/* EPLB_FUSED_TEAMS (set by the host): 1, teams as above, with barriers
 * inside uniform loops (EPLB_OPENCL_FUSED_TEAM); 0 (the default), one
 * work-item per packing and per replication row running the cpu algorithm,
 * barriers only between stages. PoCL takes many minutes to compile the
 * first (its barrier-loop handling) and seconds for the second.
 * EPLB_NV_WARP (NVIDIA only, see warp_team.cl): teams are parts of one warp
 * and exchange by shuffles; each team sorts its packing in registers (a
 * bitonic network) and keeps its packs' loads and its replicated items in
 * registers, so the greedy, swap and replication loops hold no barrier.
 * EPLB_SHAPE (a build for one plan shape, opencl_fused.c): the sizes are
 * constants. */
#ifndef EPLB_FUSED_TEAMS
#define EPLB_FUSED_TEAMS 1
#endif
#define EPLB_FUSED_BARRIER() barrier(CLK_LOCAL_MEM_FENCE)

/* The split plan's hand-off between the groups of one layer (step 6b of
 * eplb_plan_fused): a group's stores, then a fence, then its arrival (an
 * atomic); the last to arrive fences again before it reads the others'
 * stores, and reads them past any non-coherent cache. NVIDIA: PTX fences of
 * GPU scope (what its OpenCL 1.2 mem_fence orders is the work-group's view). */
inline void eplb_global_release(void)
{
#if EPLB_NV_WARP
    asm volatile("fence.acq_rel.gpu;" : : : "memory");
#else
    mem_fence(CLK_GLOBAL_MEM_FENCE);
#endif
}

inline void eplb_global_acquire(void)
{
    eplb_global_release(); /* the same full fence */
}

inline int eplb_load_coherent(global const int *p)
{
    return *(volatile global const int *)p;
}

/* Exchange slots: red_v/red_i hold 4 sets of T entries: (parity, which). */
#define EPLB_RED(set, which) (((set) * 2 + (which)) * T)

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

/* The greedy of a row's C <= 8 candidates at once, candidate c in lane c of
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

/* Heap sort of one packing's items by key descending, equal keys by index
 * (the heap's top is the item visited last). keys are float bits. */
inline int eplb_fused_visits_before(local const int *key, int a, int b)
{
    const float ka = as_float(key[a]), kb = as_float(key[b]);
    return ka > kb || (ka == kb && a < b);
}

inline void eplb_fused_sift(local const int *key, local int *heap, int at, int size)
{
    for (;;) {
        int child = 2 * at + 1;
        if (child >= size)
            return;
        if (child + 1 < size && eplb_fused_visits_before(key, heap[child], heap[child + 1]))
            child++;
        if (!eplb_fused_visits_before(key, heap[at], heap[child]))
            return;
        const int held = heap[at];
        heap[at] = heap[child];
        heap[child] = held;
        at = child;
    }
}

inline void eplb_fused_heapsort(local const int *key, local int *heap, int n)
{
    for (int i = 0; i < n; i++)
        heap[i] = i;
    for (int i = n / 2 - 1; i >= 0; i--)
        eplb_fused_sift(key, heap, i, n);
    for (int end = n - 1; end > 0; end--) {
        const int held = heap[0];
        heap[0] = heap[end];
        heap[end] = held;
        eplb_fused_sift(key, heap, 0, end);
    }
}

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
#endif

#if EPLB_NV_WARP
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
#endif

/* One work-item's sort of one packing (CPU devices): LSD radix sort, stable
 * from index order, so equal keys keep ascending index; 8 bits a pass (4
 * measured slower even for 72 keys: twice the passes); a pass whose digit
 * never varies is skipped. key[n] holds the float keys' bits (overwritten);
 * scratch holds 2n + 256 words. */
inline void eplb_fused_radix_sort(local int *key, local int *order, int n, local uint *scratch)
{
    local uint *k0 = (local uint *)key, *k1 = scratch;
    local int *i0 = order, *i1 = (local int *)(scratch + n);
    local int *count = (local int *)(scratch + 2 * n);
    const int bits = 8, buckets = 1 << bits;
    const uint digit = (uint)buckets - 1u;
    for (int i = 0; i < n; i++) {
        k0[i] = eplb_float_max_key(as_float(key[i])); /* ascending = key descending */
        i0[i] = i;
    }
    for (int shift = 0; shift < 32; shift += bits) {
        for (int d = 0; d < buckets; d++)
            count[d] = 0;
        for (int i = 0; i < n; i++)
            count[(k0[i] >> shift) & digit]++;
        if (count[(k0[0] >> shift) & digit] == n)
            continue;
        int sum = 0;
        for (int d = 0; d < buckets; d++) {
            const int here = count[d];
            count[d] = sum;
            sum += here;
        }
        for (int i = 0; i < n; i++) {
            const uint k = k0[i];
            const int at = count[(k >> shift) & digit]++;
            k1[at] = k;
            i1[at] = i0[i];
        }
        local uint *kt = k0;
        k0 = k1;
        k1 = kt;
        local int *it = i0;
        i0 = i1;
        i1 = it;
    }
    if (i0 != order)
        for (int i = 0; i < n; i++)
            order[i] = i0[i];
}

/* Balanced packing (SPEC 6) of `rows` rows x C candidates, every packing in
 * local memory at once: order[P*n], content[P*n] (the sort keys first),
 * loads[P*m], counts[2*P*m] (counts, then the serial greedy's heap),
 * score[P] (each candidate's largest pack load). Row r's weights are
 * wrows[r*n ...] and its random-function row is row0 + r. *par is the
 * exchange-slot parity, carried across calls. Loops that hold a barrier
 * depend on arguments only (PoCL needs that to see them as uniform); ok == 0
 * (an invalid weight) walks them doing nothing. */
inline void eplb_fused_pack(local const float *wrows, int rows, ulong row0, int n, int m, int k,
                            int C, int c_first, int call, ulong seed, float noise, int iterations,
                            float tolerance, int team, int heap_sort, int scan_max, int ok,
                            local int *order,
                            local int *content, local float *loads, local int *counts,
                            local float *score, local float *red_v, local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int P = rows * C;

    /* 1. Keys (into content), then the visiting order; warp teams sort
     * their own packing in registers instead (below). */
#if EPLB_NV_WARP && EPLB_FUSED_TEAMS
    const int warp_sort = n <= team * EPLB_WARP_SPL;
#else
    const int warp_sort = 0;
#endif
    {
        /* Element y = x * n + i, stepped without a division an element; the
         * random function's first rounds once a packing a work-item. */
        const int step_x = T / n, step_i = T % n;
        int x = t / n, i = t % n, r = 0, c = 0, prefix_x = -1;
        ulong prefix = 0;
        for (int y = t; !warp_sort && y < P * n; y += T) {
            if (x != prefix_x) {
                r = x / C;
                c = c_first + x % C;
                prefix = eplb_random_prefix(seed, (ulong)call, row0 + (ulong)r, (ulong)c);
                prefix_x = x;
            }
            const float w = wrows[r * n + i];
            content[y] =
                as_int(c == 0 ? w : eplb_sort_key(w, noise, eplb_random_unit_at(prefix, (ulong)i)));
            x += step_x;
            i += step_i;
            if (i >= n) {
                i -= n;
                x++;
            }
        }
    }
    EPLB_FUSED_BARRIER();
    /* A constant warp_sort or T stays on the left of && (a folded constant
     * on the right is a compiler warning, printed by PoCL at every build). */
    if (warp_sort) {
        /* Warp teams sort in registers (below). */
    } else if (T == 1 && heap_sort && 3 * P * m >= 2 * n + 256) {
        /* One work-item (CPU devices): a radix sort, its scratch in the
         * loads and counts, which the greedy fills later. */
        for (int x = 0; x < P; x++)
            eplb_fused_radix_sort(content + x * n, order + x * n, n, (local uint *)loads);
    } else if (heap_sort) {
        for (int x = t; x < P; x += T)
            eplb_fused_heapsort(content + x * n, order + x * n, n);
    } else {
        for (int y = t; y < P * n; y += T) {
            const int x = y / n, i = y % n;
            local const int *key = content + x * n;
            const float mine = as_float(key[i]);
            int rank = 0;
            for (int j = 0; j < n; j++) {
                const float other = as_float(key[j]);
                rank += other > mine || (other == mine && j < i);
            }
            order[x * n + rank] = i;
        }
    }
    EPLB_FUSED_BARRIER();

#if !EPLB_FUSED_TEAMS
    /* 2-4, a work-item per packing: the cpu algorithm. */
    (void)team; (void)red_v; (void)red_i; (void)par;
    /* One work-item a group (CPU devices): a row's candidates in lanes.
     * Larger groups (GPUs): a work-item per packing. */
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
            float most = ld[0];
            for (int p = 1; p < m; p++)
                if (ld[p] > most)
                    most = ld[p];
            score[x] = most;
        }
    }
#elif EPLB_NV_WARP
    /* 2-4. Greedy, swap and score, one warp team per packing (at most 32
     * lanes, see warp_team.cl): exchanges are shuffles, no barrier inside
     * the loops. Member j owns packs j, j + team, ... (their loads and
     * counts): consecutive lanes read consecutive words, no bank conflict. */
    (void)red_v; (void)red_i; (void)par;
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
        local int *cn = counts + 2 * xs * m;
        if (warp_sort) {
            eplb_warp_sort(w, n, call, row0 + (ulong)(xs / C), c_first + xs % C, seed, noise, j, team, active,
                           members, order + xs * n);
            eplb_warp_sync(members); /* the order is visible to the whole team */
        }
        /* Greedy: the least-loaded open pack, lowest index among equals;
         * in registers when the packs fit, else from local memory. */
        if (m <= team * EPLB_WARP_PPL) {
            eplb_warp_greedy(w, ord, cont, ld, n, m, k, j, team, active, members);
        } else {
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
        eplb_warp_sync(members); /* every member's content is visible */
        /* Swap: heavy and light by one pair of argmins, the best trade by a
         * third; every member reads the two traded items, then member 0
         * writes them and the packs' owners recompute their loads. */
        int live = active;
        const int step_sa = team / k, step_sb = team % k;
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
            float diff = 0.0f, first = 0.0f;
            uint ck = 0xFFFFFFFFu, cf = 0xFFFFFFFFu;
            if (live) {
                const float heavy_load = ld[heavy];
                diff = ld[light] - heavy_load;
                /* The cpu scan starts at pair (0, 0) and takes only strictly
                 * smaller changes: a NaN there stops the search, a NaN
                 * anywhere else never wins. Below 1e37 every load, weight
                 * and change is a number (as the cpu's vector search
                 * assumes), so the first pair needs no look of its own. */
                if (!(heavy_load < 1e37f))
                    first = eplb_swap_change(diff, w[a[0]], w[bp[0]]);
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
            }
            const uint2 won = eplb_warp_team_argmin(ck, cf, (uint)team, members);
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
            if (live) {
                if ((heavy & (team - 1)) == j) {
                    float load = 0.0f;
                    for (int r = 0; r < k; r++)
                        load += w[r == sa ? item_b : a[r]];
                    ld[heavy] = load;
                }
                if ((light & (team - 1)) == j) {
                    float load = 0.0f;
                    for (int r = 0; r < k; r++)
                        load += w[r == sb ? item_a : bp[r]];
                    ld[light] = load;
                }
                if (j == 0) {
                    a[sa] = item_b;
                    bp[sb] = item_a;
                }
            }
            eplb_warp_sync(members); /* the trade and the loads are visible */
        }
        /* Score: the largest pack load (loads are the slot-order sums). */
        if (active && j == 0) {
            float most = ld[0];
            for (int p = 1; p < m; p++)
                if (ld[p] > most)
                    most = ld[p];
            score[x] = most;
        }
        eplb_warp_sync(members);
    }
#else
    /* 2-4. Greedy, swap and score, one team per packing, batches of teams.
     * Member j owns packs lo..hi-1 (their loads and counts). */
    const int teams = T / team, j = t % team, tm = t / team;
    const int B = (m + team - 1) / team, lo = j * B, hi = min(m, lo + B);
    const int batches = (P + teams - 1) / teams;
    for (int bt = 0; bt < batches; bt++) {
        const int x = bt * teams + tm, active = ok && x < P, xs = active ? x : 0;
        local const float *w = wrows + (xs / C) * n;
        local const int *ord = order + xs * n;
        local int *cont = content + xs * n;
        local float *ld = loads + xs * m;
        local int *cn = counts + 2 * xs * m;
        for (int p = lo; p < hi; p++) {
            ld[p] = 0.0f;
            cn[p] = 0;
        }
        /* Greedy: one exchange per item. The visit order does not depend on
         * the choices, so the next item and its weight are read ahead. */
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
        /* Swap: two exchanges per iteration (heavy/light, best pair). Member 0
         * trades the two items; the owners of the two packs recompute their
         * loads in slot order from the traded items, so no third barrier. */
        int live = active;
        for (int it = 0; it < iterations; it++) {
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
            barrier(CLK_LOCAL_MEM_FENCE); /* also: the last trade is visible */
            int heavy = -1, light = -1;
            float hvb = 0.0f, lvb = 0.0f;
            for (int q = 0; q < team; q++) {
                const int at = tm * team + q;
                const int oh = red_i[h0 + at], ol = red_i[l0 + at];
                const float ohv = red_v[h0 + at], olv = red_v[l0 + at];
                if (oh >= 0 && (heavy < 0 || ohv > hvb)) { hvb = ohv; heavy = oh; }
                if (ol >= 0 && (light < 0 || olv < lvb)) { lvb = olv; light = ol; }
            }
            *par ^= 1;
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
            if (live) {
                const int sa = bf / k, sb = bf % k;
                if (heavy >= lo && heavy < hi) {
                    float load = 0.0f;
                    for (int r = 0; r < k; r++)
                        load += w[r == sa ? item_b : a[r]];
                    ld[heavy] = load;
                }
                if (light >= lo && light < hi) {
                    float load = 0.0f;
                    for (int r = 0; r < k; r++)
                        load += w[r == sb ? item_a : bp[r]];
                    ld[light] = load;
                }
                if (j == 0) {
                    a[sa] = item_b;
                    bp[sb] = item_a;
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* Score: the largest pack load (loads are the slot-order sums). */
        if (active && j == 0) {
            float most = ld[0];
            for (int p = 1; p < m; p++)
                if (ld[p] > most)
                    most = ld[p];
            score[x] = most;
        }
    }
#endif
    EPLB_FUSED_BARRIER();
}

/* The candidate of a row with the smallest score, lowest index on ties. */
inline int eplb_fused_best(local const float *score, int C)
{
    int best = 0;
    for (int c = 1; c < C; c++)
        if (score[c] < score[best])
            best = c;
    return best;
}

/* Replication (SPEC 5) of `rows` rows of M items to RN slots, a team per
 * row; member j owns items lo..hi-1 (their counts and w / cnt values). */
inline void eplb_fused_replicate(local const float *nw, int rows, int M, int RN, int team, int ok,
                                 local int *phy2mlog, local int *phyrank, local int *cnt,
                                 local float *val, local float *red_v, local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    for (int y = t; y < rows * M; y += T) {
        const int row = y / M, i = y % M;
        phy2mlog[row * RN + i] = i;
        phyrank[row * RN + i] = 0;
        cnt[y] = 1;
        val[y] = nw[y]; /* w / 1 */
    }
    EPLB_FUSED_BARRIER();
#if !EPLB_FUSED_TEAMS
    (void)team; (void)red_v; (void)red_i; (void)par;
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
#elif EPLB_NV_WARP
    /* Member j owns items j, j + team, ... (no local-memory bank conflicts). */
    (void)red_v; (void)red_i; (void)par;
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
#else
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
            EPLB_FUSED_BARRIER();
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
#endif
    EPLB_FUSED_BARRIER();
}

/* Local memory (words): w, nw, log2mlog, mlog2log, cnt [E each]; gl, gslot
 * [G]; phy2mlog, phyrank, sload [R]; sbest [N]; flags [4]; exchange slots
 * red_v, red_i [4T each]; then the packing area (also replication's val),
 * sized by the host (opencl_fused.c computes the same layout). */
kernel void eplb_plan_fused(global const float *weight, global int *status, global long *phy2log,
                            global long *logcnt, global int *slot_rank, global long *log2phy,
                            long X, ulong check_count, int has_slot_rank, int has_log2phy,
                            int E, int R, int G, int N, int S, int M, int RN, int gk, int sm, int sk,
                            int C, int iterations, float noise, float tolerance, ulong seed,
                            int group_team, int slot_team, int rep_team, int heap_sort,
                            int scan_max, int split, global int *parts,
                            volatile global int *arrivals, local int *smem)
{
#ifdef EPLB_SHAPE
    /* A build for one plan shape (the host passes the same values as
     * arguments): constants the compiler folds into every loop below. */
    E = EPLB_SHAPE_E; R = EPLB_SHAPE_R; G = EPLB_SHAPE_G; N = EPLB_SHAPE_N; S = EPLB_SHAPE_S;
    M = EPLB_SHAPE_M; RN = EPLB_SHAPE_RN; gk = EPLB_SHAPE_gk; sm = EPLB_SHAPE_sm; sk = EPLB_SHAPE_sk;
    C = EPLB_SHAPE_C; iterations = EPLB_SHAPE_iterations; group_team = EPLB_SHAPE_group_team;
    slot_team = EPLB_SHAPE_slot_team; rep_team = EPLB_SHAPE_rep_team;
    heap_sort = EPLB_SHAPE_heap_sort; scan_max = EPLB_SHAPE_scan_max; split = EPLB_SHAPE_split;
#endif
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    /* split > 1: that many groups per layer, each packing its share of the
     * slot packings' candidates (step 6); the rest they both do. */
    const int l = (int)get_group_id(0) / split, part = (int)get_group_id(0) % split;
    local float *w = (local float *)smem;
    local float *nw = w + E;
    local int *log2mlog = (local int *)(nw + E);
    local int *mlog2log = log2mlog + E;
    local int *cnt = mlog2log + E;
    local float *gl = (local float *)(cnt + E);
    local int *gslot = (local int *)(gl + G);
    local int *phy2mlog = gslot + G;
    local int *phyrank = phy2mlog + R;
    local float *sload = (local float *)(phyrank + R);
    local int *sbest = (local int *)(sload + R);
    local int *flag = sbest + N;
    local float *red_v = (local float *)(flag + 4);
    local int *red_i = (local int *)(red_v + 4 * T);
    local int *area = red_i + 4 * T;
    int par = 0;
    /* Whether this group writes the layer's outputs (split: the last to
     * finish its candidates, found in step 6b). */
    int writer = part == 0;

    /* 0. Every group checks every weight, so none writes an output while any
     * is invalid; group 0 writes the status. check_count 0: an earlier
     * kernel checked them and wrote the status. An invalid plan still walks
     * every barrier, with no rows to work on. */
    if (t == 0)
        flag[0] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    int bad = 0;
    if (check_count > 0) {
        /* Eight loads of four weights in flight per work-item, not one load
         * of one: the check is bound by memory latency. */
        const ulong n4 = check_count / 4, T8 = 8 * (ulong)T;
        ulong i = (ulong)t;
        for (; i + T8 - (ulong)T < n4; i += T8) {
            float4 v[8];
#pragma unroll
            for (int u = 0; u < 8; u++)
                v[u] = vload4(i + (ulong)u * (ulong)T, weight);
#pragma unroll
            for (int u = 0; u < 8; u++)
                bad |= any(isless(v[u], (float4)(0.0f)) | isnan(v[u]) | isinf(v[u]));
        }
        for (; i < n4; i += (ulong)T) {
            const float4 v = vload4(i, weight);
            bad |= any(isless(v, (float4)(0.0f)) | isnan(v) | isinf(v));
        }
        for (ulong r = 4 * n4 + (ulong)t; r < check_count; r += (ulong)T) {
            const float v = weight[r];
            bad |= !(v >= 0.0f) || isinf(v); /* written so that NaN fails too */
        }
    } else {
        bad = *status != 0;
    }
    if (bad)
        flag[0] = 1;
    for (int e = t; e < E; e += T)
        w[e] = weight[(ulong)l * (ulong)E + (ulong)e];
    barrier(CLK_LOCAL_MEM_FENCE);
    const int ok = !flag[0];
    if (l == 0 && part == 0 && t == 0 && check_count > 0)
        *status = ok ? 0 : EPLB_ERR_INVALID_WEIGHT;

    /* 1. Group loads, left to right. */
    for (int g = t; g < G; g += T) {
        float sum = 0.0f;
        for (int s = 0; s < S; s++)
            sum += w[g * S + s];
        gl[g] = sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* 2. Groups to nodes (call 0, row l): gslot[g] = pack * k + rank. */
    {
        const int P = C;
        local int *order = area, *content = area + P * G;
        local float *loads = (local float *)(content + P * G);
        local int *counts = (local int *)(loads + P * N);
        local float *score = (local float *)(counts + 2 * P * N);
        eplb_fused_pack(gl, gk > 1, (ulong)l, G, N, gk, C, 0, 0, seed, noise, iterations,
                        tolerance, group_team, heap_sort, scan_max, ok, order, content, loads, counts, score,
                        red_v, red_i, &par);
        if (ok && gk > 1) {
            const int best = eplb_fused_best(score, C);
            for (int s = t; s < G; s += T)
                gslot[content[best * G + s]] = s;
        } else {
            for (int g = t; g < G; g += T)
                gslot[g] = g;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* 3. Node-major layout. */
    for (int e = t; e < E; e += T) {
        const int g = e / S, s = e % S, pos = gslot[g] * S + s;
        log2mlog[e] = pos;
        mlog2log[pos] = e;
        nw[pos] = w[e];
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* 4. Replication within nodes (val lives in the packing area). */
    eplb_fused_replicate(nw, N, M, RN, rep_team, ok, phy2mlog, phyrank, cnt,
                         (local float *)area, red_v, red_i, &par);

    /* 5. Slot loads. */
    for (int y = t; ok && y < R; y += T) {
        const int e = (y / RN) * M + phy2mlog[y];
        sload[y] = nw[e] / (float)cnt[e];
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* 6. Slots to GPUs (call 1, rows l*N + n), candidates c_first ..
     * c_first + Cp - 1: all of them, or this group's share. */
    const int Cp = C / split, c_first = part * Cp;
    local int *scontent = area + N * Cp * RN;
    local int *won_order = area; /* split: the winning slot orders, R words (the sort's, done) */
    {
        const int P = N * Cp;
        local int *order = area;
        local float *loads = (local float *)(scontent + P * RN);
        local int *counts = (local int *)(loads + P * sm);
        local float *score = (local float *)(counts + 2 * P * sm);
        eplb_fused_pack(sload, sk > 1 ? N : 0, (ulong)l * (ulong)N, RN, sm, sk, Cp, c_first, 1, seed,
                        noise, iterations, tolerance, slot_team, heap_sort, scan_max, ok, order, scontent, loads,
                        counts, score, red_v, red_i, &par);
        for (int n = t; ok && sk > 1 && n < N; n += T)
            sbest[n] = eplb_fused_best(score + n * Cp, Cp);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* 6b. Split: each group publishes its best candidate per row (score
         * and slot order), then counts itself in; the layer's last group
         * takes, per row, the part with the smaller score (the lower part
         * on ties: its candidates come first), copies that part's slot
         * order into won_order and writes the outputs. No group waits for
         * another. */
        if (split > 1 && sk > 1 && ok) {
            global int *block = parts + (ulong)l * (ulong)(split * (N + R));
            global int *mine = block + part * (N + R);
            for (int n = t; n < N; n += T)
                mine[n] = as_int(score[n * Cp + sbest[n]]);
            for (int y = t; y < R; y += T) {
                const int n = y / RN;
                mine[N + y] = scontent[(n * Cp + sbest[n]) * RN + y % RN];
            }
            eplb_global_release();
            barrier(CLK_LOCAL_MEM_FENCE);
            /* Modulo split: a count left off by a plan that never ended
             * puts itself right within one plan. */
            if (t == 0)
                flag[1] = (uint)atomic_inc(arrivals + l) % (uint)split == (uint)split - 1u;
            barrier(CLK_LOCAL_MEM_FENCE);
            writer = flag[1];
            if (writer) {
                if (t == 0)
                    atomic_xchg(arrivals + l, 0); /* ready for the next plan */
                eplb_global_acquire();
                for (int n = t; n < N; n += T) {
                    int won = 0;
                    float least = as_float(eplb_load_coherent(block + n));
                    for (int h = 1; h < split; h++) {
                        const float sc = as_float(eplb_load_coherent(block + h * (N + R) + n));
                        if (sc < least) {
                            least = sc;
                            won = h;
                        }
                    }
                    sbest[n] = won; /* from here, the winning part */
                }
                barrier(CLK_LOCAL_MEM_FENCE);
                for (int y = t; y < R; y += T)
                    won_order[y] = eplb_load_coherent(block + sbest[y / RN] * (N + R) + N + y);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }

    /* 7. Outputs. log2phy: the scatter writes ranks below each expert's
     * count, the fill the ranks from the count up: disjoint, so no global
     * barrier between them. The fill runs a row per group of (up to) 32
     * work-items, so its stores are contiguous. */
    const int split_rows = split > 1 && sk > 1;
    for (int y = t; ok && writer && y < R; y += T) {
        const int n = y / RN, s = y % RN;
        const int q = !(sk > 1) ? s : split_rows ? won_order[y] : scontent[(n * Cp + sbest[n]) * RN + s];
        const int src = n * RN + q;
        const int e = mlog2log[n * M + phy2mlog[src]];
        const int rank = phyrank[src];
        phy2log[(ulong)l * (ulong)R + (ulong)y] = e;
        if (has_slot_rank)
            slot_rank[(ulong)l * (ulong)R + (ulong)y] = rank;
        if (has_log2phy)
            log2phy[((ulong)l * (ulong)E + (ulong)e) * (ulong)X + (ulong)rank] = y;
    }
    for (int e = t; ok && writer && e < E; e += T)
        logcnt[(ulong)l * (ulong)E + (ulong)e] = cnt[log2mlog[e]];
    const int rw = T < 32 ? T : 32, lane = t % rw;
    for (int e = t / rw; ok && writer && has_log2phy && e < E; e += T / rw) {
        global long *row = log2phy + ((ulong)l * (ulong)E + (ulong)e) * (ulong)X;
        for (long x = cnt[log2mlog[e]] + lane; x < X; x += rw)
            row[x] = -1;
    }
}
