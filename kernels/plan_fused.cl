/* plan_fused: the whole plan of one layer in one work-group (SPEC sections 4
 * to 6), every intermediate in local memory, one enqueue per plan; or in
 * `split` work-groups that each pack a share of the slot packings'
 * candidates (step 6b below).
 *
 * A packing's sort is fused_sort.cl; its greedy, swap search and score, and
 * the replication rows, come in three variants, one per build:
 * fused_item.cl (-DEPLB_FUSED_TEAMS=0, a work-item per packing: CPU
 * devices), fused_team.cl (teams exchanging through local memory: GPUs) and
 * fused_warp.cl (-DEPLB_NV_WARP=1, teams inside one warp: NVIDIA).
 * EPLB_SHAPE (a build for one plan shape, opencl_fused.c): the sizes are
 * constants. */
#pragma OPENCL FP_CONTRACT OFF

/* The split plan's hand-off between the groups of one layer (step 6b): a
 * group's stores, then a fence, then its arrival (an atomic); the last to
 * arrive fences again before it reads the others' stores, and reads them
 * past any non-coherent cache. NVIDIA: PTX fences of GPU scope (what its
 * OpenCL 1.2 mem_fence orders is the work-group's view). */
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
    const int P = rows * C;
    /* Warp teams sort their own packing in registers where it fits. */
#if EPLB_NV_WARP && EPLB_FUSED_TEAMS
    const int warp_sort = n <= team * EPLB_WARP_SPL;
#else
    const int warp_sort = 0;
#endif
    if (!warp_sort)
        eplb_fused_keys(wrows, P, row0, n, C, c_first, call, seed, noise, content);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!warp_sort)
        eplb_fused_order(content, order, P, n, m, heap_sort, (local uint *)loads);
    barrier(CLK_LOCAL_MEM_FENCE);
#if !EPLB_FUSED_TEAMS
    (void)team; (void)red_v; (void)red_i; (void)par;
    eplb_fused_solve_items(wrows, rows, n, m, k, C, iterations, tolerance, scan_max, ok, order,
                           content, loads, counts, score);
#elif EPLB_NV_WARP
    (void)red_v; (void)red_i; (void)par; (void)scan_max;
    eplb_fused_solve_warp(wrows, rows, row0, n, m, k, C, c_first, call, seed, noise, iterations,
                          tolerance, team, ok, warp_sort, order, content, loads, counts, score);
#else
    (void)scan_max;
    eplb_fused_solve_teams(wrows, rows, n, m, k, C, iterations, tolerance, team, ok, order, content,
                           loads, counts, score, red_v, red_i, par);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
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

/* Replication (SPEC 5) of `rows` rows of M items to RN slots: every item
 * once, then the variant of this build adds the other RN - M replicas. */
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
    barrier(CLK_LOCAL_MEM_FENCE);
#if !EPLB_FUSED_TEAMS
    (void)team; (void)red_v; (void)red_i; (void)par;
    eplb_fused_replicate_items(nw, rows, M, RN, ok, phy2mlog, phyrank, cnt, val);
#elif EPLB_NV_WARP
    (void)red_v; (void)red_i; (void)par;
    eplb_fused_replicate_warp(nw, rows, M, RN, team, ok, phy2mlog, phyrank, cnt, val);
#else
    eplb_fused_replicate_teams(nw, rows, M, RN, team, ok, phy2mlog, phyrank, cnt, val, red_v, red_i,
                               par);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Whether any of the first check_count weights is negative, NaN or
 * infinite, this work-item's share: eight loads of four weights in flight
 * per work-item, not one load of one, as the check is bound by memory
 * latency. */
EPLB_STEP int eplb_fused_any_invalid(global const float *weight, ulong check_count)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    int bad = 0;
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
    return bad;
}

/* Step 0: every group checks every weight, so none writes an output while
 * any is invalid; group 0 writes the status. check_count 0: an earlier
 * kernel checked them and wrote the status. Loads layer l's weights into w
 * and returns whether the plan may go on (an invalid plan still walks every
 * barrier, with no rows to work on). */
EPLB_STEP int eplb_fused_weights(global const float *weight, global int *status, ulong check_count,
                                 int l, int part, int E, local int *flag, local float *w)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    if (t == 0)
        flag[0] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int bad = check_count > 0 ? eplb_fused_any_invalid(weight, check_count) : *status != 0;
    if (bad)
        flag[0] = 1;
    for (int e = t; e < E; e += T)
        w[e] = weight[(ulong)l * (ulong)E + (ulong)e];
    barrier(CLK_LOCAL_MEM_FENCE);
    const int ok = !flag[0];
    if (l == 0 && part == 0 && t == 0 && check_count > 0)
        *status = ok ? 0 : EPLB_ERR_INVALID_WEIGHT;
    return ok;
}

/* Step 2: groups to nodes (call 0, row l): gslot[g] = pack * k + rank. */
EPLB_STEP void eplb_fused_groups_to_nodes(local const float *gl, int l, int G, int N, int gk, int C,
                                          ulong seed, float noise, int iterations, float tolerance,
                                          int team, int heap_sort, int scan_max, int ok,
                                          local int *area, local int *gslot, local float *red_v,
                                          local int *red_i, int *par)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int P = C;
    local int *order = area, *content = area + P * G;
    local float *loads = (local float *)(content + P * G);
    local int *counts = (local int *)(loads + P * N);
    local float *score = (local float *)(counts + 2 * P * N);
    eplb_fused_pack(gl, gk > 1, (ulong)l, G, N, gk, C, 0, 0, seed, noise, iterations, tolerance,
                    team, heap_sort, scan_max, ok, order, content, loads, counts, score, red_v,
                    red_i, par);
    if (ok && gk > 1) {
        const int best = eplb_fused_best(score, C);
        for (int s = t; s < G; s += T)
            gslot[content[best * G + s]] = s;
    } else {
        for (int g = t; g < G; g += T)
            gslot[g] = g;
    }
}

/* Step 6b, split plans: each group publishes its best candidate per row
 * (score and slot order), then counts itself in; the layer's last group
 * takes, per row, the part with the smaller score (the lower part on ties:
 * its candidates come first), copies that part's slot order into won_order
 * and writes the outputs. No group waits for another. Returns whether this
 * group is the writer; sbest then names each row's winning part. */
EPLB_STEP int eplb_fused_split_join(global int *parts, volatile global int *arrivals, int l, int part,
                                    int split, int N, int R, int RN, int Cp, local const float *score,
                                    local const int *scontent, local int *sbest, local int *flag,
                                    local int *won_order)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
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
    /* Modulo split: a count left off by a plan that never ended puts itself
     * right within one plan. */
    if (t == 0)
        flag[1] = (uint)atomic_inc(arrivals + l) % (uint)split == (uint)split - 1u;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int writer = flag[1];
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
    return writer;
}

/* Step 7, the outputs. log2phy: the scatter writes ranks below each
 * expert's count, the fill the ranks from the count up: disjoint, so no
 * global barrier between them. The fill runs a row per group of (up to) 32
 * work-items, so its stores are contiguous. slot_order(y) is slot y's
 * position in its node's replicated slots. */
EPLB_STEP void eplb_fused_outputs(global long *phy2log, global long *logcnt, global int *slot_rank,
                                  global long *log2phy, long X, int has_slot_rank, int has_log2phy,
                                  int l, int E, int R, int M, int RN, int sk, int Cp, int split_rows,
                                  local const int *won_order, local const int *scontent,
                                  local const int *sbest, local const int *mlog2log,
                                  local const int *log2mlog, local const int *phy2mlog,
                                  local const int *phyrank, local const int *cnt)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    for (int y = t; y < R; y += T) {
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
    for (int e = t; e < E; e += T)
        logcnt[(ulong)l * (ulong)E + (ulong)e] = cnt[log2mlog[e]];
    const int rw = T < 32 ? T : 32, lane = t % rw;
    for (int e = t / rw; has_log2phy && e < E; e += T / rw) {
        global long *row = log2phy + ((ulong)l * (ulong)E + (ulong)e) * (ulong)X;
        for (long x = cnt[log2mlog[e]] + lane; x < X; x += rw)
            row[x] = -1;
    }
}

/* A build for one plan shape is only ever launched in groups of
 * EPLB_SHAPE_T, and says so (NVIDIA: .reqntid in the PTX). NVIDIA's
 * assembler then fits the kernel's registers to that group and schedules
 * the warp teams' exchange loops (greedy, swap search, sort) for their
 * latency; without it, how those loops were scheduled hung on unrelated
 * code elsewhere in the kernel, and the hierarchical shape's build lost
 * speed when this file was split, its PTX loops unchanged. */
#ifdef EPLB_SHAPE_T
#define EPLB_FUSED_GROUP_SIZE __attribute__((reqd_work_group_size(EPLB_SHAPE_T, 1, 1)))
#else
#define EPLB_FUSED_GROUP_SIZE
#endif

/* Local memory (words): w, nw, log2mlog, mlog2log, cnt [E each]; gl, gslot
 * [G]; phy2mlog, phyrank, sload [R]; sbest [N]; flags [4]; exchange slots
 * red_v, red_i [4T each]; then the packing area (also replication's val),
 * sized by the host (opencl_fused.c computes the same layout). */
kernel EPLB_FUSED_GROUP_SIZE void
eplb_plan_fused(global const float *weight, global int *status, global long *phy2log,
                global long *logcnt, global int *slot_rank, global long *log2phy, long X,
                ulong check_count, int has_slot_rank, int has_log2phy, int E, int R, int G, int N,
                int S, int M, int RN, int gk, int sm, int sk, int C, int iterations, float noise,
                float tolerance, ulong seed, int group_team, int slot_team, int rep_team,
                int heap_sort, int scan_max, int split, global int *parts,
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

    /* 0. The weights: checked, and this layer's loaded. */
    const int ok = eplb_fused_weights(weight, status, check_count, l, part, E, flag, w);

    /* 1. Group loads, left to right. */
    for (int g = t; g < G; g += T) {
        float sum = 0.0f;
        for (int s = 0; s < S; s++)
            sum += w[g * S + s];
        gl[g] = sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* 2. Groups to nodes. */
    eplb_fused_groups_to_nodes(gl, l, G, N, gk, C, seed, noise, iterations, tolerance, group_team,
                               heap_sort, scan_max, ok, area, gslot, red_v, red_i, &par);
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
    eplb_fused_replicate(nw, N, M, RN, rep_team, ok, phy2mlog, phyrank, cnt, (local float *)area,
                         red_v, red_i, &par);

    /* 5. Slot loads. */
    for (int y = t; ok && y < R; y += T) {
        const int e = (y / RN) * M + phy2mlog[y];
        sload[y] = nw[e] / (float)cnt[e];
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* 6. Slots to GPUs (call 1, rows l*N + n), candidates c_first ..
     * c_first + Cp - 1: all of them, or this group's share. */
    const int Cp = C / split, c_first = part * Cp, P = N * Cp;
    local int *scontent = area + N * Cp * RN;
    local int *won_order = area; /* split: the winning slot orders, R words (the sort's, done) */
    local float *loads = (local float *)(scontent + P * RN);
    local int *counts = (local int *)(loads + P * sm);
    local float *score = (local float *)(counts + 2 * P * sm);
    eplb_fused_pack(sload, sk > 1 ? N : 0, (ulong)l * (ulong)N, RN, sm, sk, Cp, c_first, 1, seed,
                    noise, iterations, tolerance, slot_team, heap_sort, scan_max, ok, area, scontent,
                    loads, counts, score, red_v, red_i, &par);
    for (int n = t; ok && sk > 1 && n < N; n += T)
        sbest[n] = eplb_fused_best(score + n * Cp, Cp);
    barrier(CLK_LOCAL_MEM_FENCE);
    /* 6b. Split: the layer's last group to finish writes the outputs. */
    int writer = part == 0;
    if (split > 1 && sk > 1 && ok)
        writer = eplb_fused_split_join(parts, arrivals, l, part, split, N, R, RN, Cp, score,
                                       scontent, sbest, flag, won_order);

    /* 7. Outputs. */
    if (ok && writer)
        eplb_fused_outputs(phy2log, logcnt, slot_rank, log2phy, X, has_slot_rank, has_log2phy, l, E,
                           R, M, RN, sk, Cp, split > 1 && sk > 1, won_order, scontent, sbest,
                           mlog2log, log2mlog, phy2mlog, phyrank, cnt);
}
