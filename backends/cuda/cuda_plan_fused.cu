/* plan_fused: one block per layer, or per (layer, node) when node_split is
 * set, every stage in shared memory. Each block first checks every layer's
 * weights (so no block writes outputs when any weight is invalid, without a
 * second launch); block 0 writes the status. A per-node block recomputes its
 * layer's group packing (identical in every block of the layer) and then
 * replicates, packs and writes only its node: phy2log / slot_rank slots of
 * the node, logcnt and log2phy rows of the node's experts (disjoint sets).
 * Packing candidates run one per warp; their greedy and swap are sequential
 * within the warp, with pack argmin/argmax and the pair search across lanes.
 * With refine (SPEC 10) the whole block then trades slots on the chosen
 * placement of its row: in shared memory through eplb_block_refine, or, with
 * EPLB_TUNE_CUDA_REFINE=team (opt-in while new), with the row in registers
 * through eplb_team_refine (cuda_refine_team.cuh) where one is compiled for
 * the row's slots per GPU. */
#include "cuda_check_weights.cuh"
#include "cuda_pack_candidate.cuh"
#include "cuda_plan_fused.cuh"
#include "cuda_refine.cuh"
#include "cuda_refine_team.cuh"
#include "cuda_replicate.cuh"

/* The most threads of a block that refines: a refine trade's time is the
 * longest thread's chain of dependent steps, so a row's trade units are
 * spread over up to this many threads, as in the refine stage kernel. */
#ifndef EPLB_CUDA_FUSED_REFINE_THREADS /* a compile-time override, to time other widths */
#define EPLB_CUDA_FUSED_REFINE_THREADS 1024
#endif

struct eplb_cuda_plan_args {
    const float *weight;
    int32_t *status;
    int64_t *phy2log, *logcnt, *log2phy;
    int32_t *slot_rank;
    int64_t check_count;       /* weights every block checks (L*E), 0: checked by an earlier kernel */
    int64_t width;             /* X */
    uint64_t seed;
    float noise, tolerance;
    int32_t iterations;
    int32_t refine;            /* the most refine trades per row (Refine kernels only) */
    uint32_t node_split;       /* 1: blockIdx.x = layer * N + node, the block does that node only */
    uint32_t team_refine;      /* 1: refine through eplb_team_refine (Refine kernels only) */
    uint32_t E, R, G, N, S, M, RN, group_k, slot_m, slot_k, C;
    /* Byte offsets into shared memory. */
    uint32_t o_w, o_nw, o_val, o_log2mlog, o_mlog2log, o_cnt, o_gl, o_gslot, o_gcontent, o_gscore;
    uint32_t o_phy2mlog, o_phyrank, o_sload, o_scontent, o_sscore, o_sbest, o_warps, warp_bytes;
    uint32_t o_rt, o_rload, o_votes; /* refine's slot loads, GPU loads, votes or posts (Refine only) */
};

/* MaxThreads bounds the block and so each thread's registers: the
 * register-resident sort, greedy and replication are as large as that
 * budget allows without spilling (eplb_cuda_register_budget). Refine adds
 * the refine search; the kernels of plans without it are compiled without
 * it, so they stay the code that docs/benchmarks.md timed. Team (with
 * Refine, 256 threads) refines through eplb_team_refine: an instance of its
 * own, since the team search's registers would otherwise set those of every
 * refine kernel, and the hierarchical rows' blocks would no longer share a
 * multiprocessor. */
template <int MaxThreads, bool Refine, bool Team = false>
__global__ void __launch_bounds__(MaxThreads, 1) eplb_cuda_plan_fused_kernel(eplb_cuda_plan_args a)
{
    extern __shared__ __align__(16) unsigned char smem[];
    const uint32_t tid = threadIdx.x, T = blockDim.x, warp = tid / 32, W = blockDim.x / 32;
    const uint32_t E = a.E, R = a.R, N = a.N, M = a.M, RN = a.RN, C = a.C;
    const bool split = a.node_split;
    const uint32_t l = split ? blockIdx.x / N : blockIdx.x;
    /* Nodes [node_lo, node_hi) are this block's. */
    const uint32_t node_lo = split ? blockIdx.x % N : 0, node_hi = split ? node_lo + 1 : N;
    const eplb_warp_team team(tid & 31u);
    float *w = (float *)(smem + a.o_w), *nw = (float *)(smem + a.o_nw);
    float *val = (float *)(smem + a.o_val), *gl = (float *)(smem + a.o_gl);
    int32_t *log2mlog = (int32_t *)(smem + a.o_log2mlog), *mlog2log = (int32_t *)(smem + a.o_mlog2log);
    int32_t *cnt = (int32_t *)(smem + a.o_cnt), *gslot = (int32_t *)(smem + a.o_gslot);
    int32_t *gcontent = (int32_t *)(smem + a.o_gcontent);
    float *gscore = (float *)(smem + a.o_gscore);
    int32_t *phy2mlog = (int32_t *)(smem + a.o_phy2mlog), *phyrank = (int32_t *)(smem + a.o_phyrank);
    float *sload = (float *)(smem + a.o_sload);
    int32_t *scontent = (int32_t *)(smem + a.o_scontent);
    float *sscore = (float *)(smem + a.o_sscore);
    int32_t *sbest = (int32_t *)(smem + a.o_sbest);
    unsigned char *scratch = smem + a.o_warps + (size_t)warp * a.warp_bytes;

    /* 0. Weights: all layers checked (no output while any is invalid), own layer loaded. */
    /* The own layer's weight is in flight during the check (one per thread when E <= T). */
    const bool own_early = E <= T;
    const float own = own_early && tid < E ? a.weight[(size_t)l * E + tid] : 0.0f;
    int bad;
    if (a.check_count > 0)
        bad = eplb_cuda_any_weight_bad(a.weight, a.check_count, tid, T);
    else
        bad = *a.status != 0;
    if (own_early) {
        if (tid < E)
            w[tid] = own;
    } else {
        for (uint32_t e = tid; e < E; e += T)
            w[e] = a.weight[(size_t)l * E + e];
    }
    if (__syncthreads_or(bad)) {
        if (blockIdx.x == 0 && tid == 0 && a.check_count > 0)
            *a.status = EPLB_ERR_INVALID_WEIGHT;
        return;
    }
    if (blockIdx.x == 0 && tid == 0 && a.check_count > 0)
        *a.status = 0;

    /* 1. Group loads, left to right (only group packing reads them). */
    for (uint32_t g = tid; g < a.G && a.group_k > 1; g += T) {
        float sum = 0.0f;
        for (uint32_t j = 0; j < a.S; j++)
            sum += w[g * a.S + j];
        gl[g] = sum;
    }
    __syncthreads();

    /* 2. Groups to nodes (call 0, row l); gslot[g] = node-major group position. */
    if (a.group_k > 1) {
        for (uint32_t c = warp; c < C; c += W) {
            const float s = eplb_warp_pack_candidate<MaxThreads>(
                team, gl, a.G, N, a.group_k, 0, (int64_t)l, (int32_t)c, a.seed, a.noise,
                a.iterations, a.tolerance, gcontent + (size_t)c * a.G, scratch);
            if (team.rank() == 0)
                gscore[c] = s;
        }
        __syncthreads();
        const uint32_t best = eplb_cuda_best_candidate(gscore, C);
        for (uint32_t s = tid; s < a.G; s += T)
            gslot[gcontent[(size_t)best * a.G + s]] = (int32_t)s; /* pack*k + rank == s */
    } else {
        for (uint32_t g = tid; g < a.G; g += T)
            gslot[g] = (int32_t)g;
    }
    __syncthreads();

    /* 3. Node layout. */
    for (uint32_t e = tid; e < E; e += T) {
        const uint32_t g = e / a.S, j = e % a.S;
        const uint32_t pos = (uint32_t)gslot[g] * a.S + j;
        log2mlog[e] = (int32_t)pos;
        mlog2log[pos] = (int32_t)e;
        nw[pos] = w[e];
    }
    __syncthreads();

    /* 4. Replication, one warp per node row; counts in registers when they fit. */
    for (uint32_t n = node_lo + warp; n < node_hi; n += W)
        eplb_warp_replicate_row<eplb_cuda_register_budget<MaxThreads>::items_per_lane>(
            team, nw + (size_t)n * M, M, RN, phy2mlog + (size_t)n * RN, phyrank + (size_t)n * RN,
            cnt + (size_t)n * M, val + (size_t)n * M);
    __syncthreads();

    /* 5. Slot loads. */
    for (uint32_t y = node_lo * RN + tid; y < node_hi * RN; y += T) {
        const uint32_t n = y / RN, e = n * M + (uint32_t)phy2mlog[y];
        sload[y] = nw[e] / (float)cnt[e];
    }
    __syncthreads();

    /* 6. Slots to GPUs (call 1, row l*N + n), one warp per (node, candidate). */
    if (a.slot_k > 1) {
        for (uint32_t u = node_lo * C + warp; u < node_hi * C; u += W) {
            const uint32_t n = u / C, c = u % C;
            const float s = eplb_warp_pack_candidate<MaxThreads>(
                team, sload + (size_t)n * RN, RN, a.slot_m, a.slot_k, 1, (int64_t)l * N + n,
                (int32_t)c, a.seed, a.noise, a.iterations, a.tolerance,
                scontent + (size_t)u * RN, scratch);
            if (team.rank() == 0)
                sscore[u] = s;
        }
        __syncthreads();
        for (uint32_t n = node_lo + tid; n < node_hi; n += T)
            sbest[n] = (int32_t)eplb_cuda_best_candidate(sscore + (size_t)n * C, C);
        __syncthreads();
    }

    /* 6b. Refine (SPEC 10.3) on each of the block's rows (node n of layer l),
     * in place on the chosen candidate's content, which is GPU-major (GPU g's
     * position r is content[g*k + r]) as eplb_block_refine reads it; step 7
     * then writes the refined placement. Rows without two GPUs of two slots
     * have no trade to keep (the planner's rule for the refine stage). */
    if (Refine && a.slot_k > 1 && a.slot_m > 1) {
        const uint32_t k = a.slot_k;
        float *rt = (float *)(smem + a.o_rt), *rload = (float *)(smem + a.o_rload);
        eplb_cuda_refine_votes *votes = (eplb_cuda_refine_votes *)(smem + a.o_votes);
        for (uint32_t n = node_lo; n < node_hi; n++) {
            int32_t *content = scontent + ((size_t)n * C + (uint32_t)sbest[n]) * RN;
            for (uint32_t p = tid; p < RN; p += T)
                rt[p] = sload[n * RN + (uint32_t)content[p]];
            __syncthreads();
            const eplb_cuda_refine_row row = {a.slot_m, k, content, rt, rload};
            /* plan_config chose the team search only with enough warps. */
            if constexpr (Team) {
                if (eplb_team_refine_dispatch(row, a.refine, a.tolerance, votes))
                    continue;
            }
            for (uint32_t g = tid; g < a.slot_m; g += T)
                rload[g] = eplb_cuda_refine_gpu_load(rt, g, k);
            __syncthreads();
            eplb_block_refine<uint32_t>(row, a.refine, a.tolerance, votes);
        }
    }

    /* 7. Outputs: the -1 fill completes before any slot is scattered. A block
     * of one node and a block of a layer return apart, each with its own copy
     * of the slot scatter, as in the kernel that docs/benchmarks.md timed: a
     * merged path, or one scatter lambda called twice, compiles plan_fused
     * to other code. */
    const int64_t X = a.width;
    if (split) {
        /* Only this node's experts: rows of mlog2log[node*M ..], one warp per row. */
        if (a.log2phy) {
            for (uint32_t j = node_lo * M + warp; j < node_hi * M; j += W) {
                int64_t *row = a.log2phy + ((size_t)l * E + (uint32_t)mlog2log[j]) * X;
                for (int64_t x = team.rank(); x < X; x += 32)
                    row[x] = -1;
            }
            __syncthreads();
        }
        for (uint32_t y = node_lo * RN + tid; y < node_hi * RN; y += T) {
            const uint32_t n = y / RN, s = y % RN;
            const uint32_t q = a.slot_k > 1 ? (uint32_t)scontent[((size_t)n * C + sbest[n]) * RN + s] : s;
            const uint32_t src = n * RN + q;
            const int32_t e = mlog2log[n * M + (uint32_t)phy2mlog[src]];
            const int32_t rank = phyrank[src];
            a.phy2log[(size_t)l * R + y] = e;
            if (a.slot_rank)
                a.slot_rank[(size_t)l * R + y] = rank;
            if (a.log2phy)
                a.log2phy[((size_t)l * E + e) * X + rank] = y;
        }
        for (uint32_t j = node_lo * M + tid; j < node_hi * M; j += T)
            a.logcnt[(size_t)l * E + (uint32_t)mlog2log[j]] = cnt[j];
        return;
    }
    if (a.log2phy) {
        int64_t *row = a.log2phy + (size_t)l * E * X;
        for (int64_t i = tid; i < (int64_t)E * X; i += T)
            row[i] = -1;
        __syncthreads();
    }
    for (uint32_t y = tid; y < R; y += T) {
        const uint32_t n = y / RN, s = y % RN;
        const uint32_t q = a.slot_k > 1 ? (uint32_t)scontent[((size_t)n * C + sbest[n]) * RN + s] : s;
        const uint32_t src = n * RN + q;
        const int32_t e = mlog2log[n * M + (uint32_t)phy2mlog[src]];
        const int32_t rank = phyrank[src];
        a.phy2log[(size_t)l * R + y] = e;
        if (a.slot_rank)
            a.slot_rank[(size_t)l * R + y] = rank;
        if (a.log2phy)
            a.log2phy[((size_t)l * E + e) * X + rank] = y;
    }
    for (uint32_t e = tid; e < E; e += T)
        a.logcnt[(size_t)l * E + e] = cnt[log2mlog[e]];
}

void eplb_cuda_plan_fused_init(size_t smem_optin)
{
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<256, false>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<512, false>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<1024, false>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<256, true>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<512, true>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<1024, true>, smem_optin);
    eplb_cuda_allow_smem(eplb_cuda_plan_fused_kernel<256, true, true>, smem_optin);
}

/* Lays out shared memory for `warps` warps; returns the total bytes. */
static size_t plan_layout(const eplb_plan_job *job, uint32_t warps, eplb_cuda_plan_args *a)
{
    size_t at = 0;
#define PLACE(field, bytes) (a->field = (uint32_t)at, at += eplb_cuda_align(bytes))
    const size_t E = (size_t)job->experts, R = (size_t)job->replicas, G = (size_t)job->groups;
    const size_t N = (size_t)job->nodes, C = (size_t)job->group_pack.candidates;
    const size_t RN = (size_t)job->node_slots;
    const bool group_packing = job->group_pack.per_pack > 1, slot_packing = job->slot_pack.per_pack > 1;
    PLACE(o_w, E * 4);
    PLACE(o_nw, E * 4);
    PLACE(o_val, E * 4);
    PLACE(o_log2mlog, E * 4);
    PLACE(o_mlog2log, E * 4);
    PLACE(o_cnt, E * 4);
    PLACE(o_gl, G * 4);
    PLACE(o_gslot, G * 4);
    PLACE(o_gcontent, group_packing ? C * G * 4 : 0);
    PLACE(o_gscore, group_packing ? C * 4 : 0);
    PLACE(o_phy2mlog, R * 4);
    PLACE(o_phyrank, R * 4);
    PLACE(o_sload, R * 4);
    PLACE(o_scontent, slot_packing ? N * C * RN * 4 : 0);
    PLACE(o_sscore, slot_packing ? N * C * 4 : 0);
    PLACE(o_sbest, slot_packing ? N * 4 : 0);
    /* Refine's row state, one row at a time; nothing without refine, so
     * that the layout of other plans stays as it was. */
    const bool refine = job->refine > 0 && eplb_plan_rows_trade(job);
    PLACE(o_rt, refine ? RN * 4 : 0);
    PLACE(o_rload, refine ? (size_t)job->slot_pack.packs * 4 : 0);
    size_t votes = sizeof(eplb_cuda_refine_votes);
    if (a->team_refine && eplb_cuda_team_refine_bytes() > votes)
        votes = eplb_cuda_team_refine_bytes();
    PLACE(o_votes, refine ? votes : 0);
#undef PLACE
    size_t warp_bytes = 0, b;
    if (group_packing && (b = eplb_cuda_warp_scratch_bytes((uint32_t)G, (uint32_t)N)) > warp_bytes)
        warp_bytes = b;
    if (slot_packing &&
        (b = eplb_cuda_warp_scratch_bytes((uint32_t)RN, (uint32_t)job->slot_pack.packs)) > warp_bytes)
        warp_bytes = b;
    a->o_warps = (uint32_t)at;
    a->warp_bytes = (uint32_t)warp_bytes;
    return at + warp_bytes * warps;
}

/* Fills args and the launch geometry; 0 when the job must run as separate stages. */
static int plan_config(eplb_cuda_context *ctx, const eplb_plan_job *job, eplb_cuda_plan_args *a,
                       size_t *smem, unsigned *threads)
{
    memset(a, 0, sizeof *a);
    const int64_t C = job->group_pack.candidates;
    /* Distinct (SPEC 11) has no cuda stage; the planner refuses it before. */
    if (job->distinct)
        return 0;
    /* Refine runs only where a row can trade (the planner's rule). */
    const bool refine = job->refine > 0 && eplb_plan_rows_trade(job);
    /* Shared-memory offsets are 32-bit and a layer is one block: keep rows modest. */
    if (job->experts > (1 << 20) || job->replicas > (1 << 20) || job->layers > (1L << 31) - 1)
        return 0;
    /* Big pair searches and pack sets are faster with a block per packing. */
    if (job->slot_pack.per_pack > 256 || job->slot_pack.packs > 1024 ||
        job->group_pack.per_pack > 256 || job->group_pack.packs > 1024)
        return 0;
    /* A block per (layer, node) when the layers alone leave most SMs idle and
     * there are nodes to split: 8 warps per block instead of 32 sharing 4
     * schedulers. Each block redoes the layer's small group packing. It wins
     * on hierarchical plans on the H200 (docs/benchmarks.md, CUDA). */
    /* With refine, a block per row: a block of a layer would refine its
     * nodes' rows one after the other. */
    const bool split = job->nodes > 1 &&
                       (refine || job->layers * job->nodes <= 8 * (int64_t)ctx->sm_count);
    const int64_t blocks = split ? job->layers * job->nodes : job->layers;
    if (blocks > (1L << 31) - 1)
        return 0;
    int64_t want = split ? C : job->nodes * C;
    if (want < C) want = C;
    if (!split && want < job->nodes) want = job->nodes;
    if (want < 4) want = 4;
    if (refine) {
        /* Trades numbered in 32 bits (else the refine stage kernel, which
         * also numbers them in 64). */
        const uint64_t m = (uint64_t)job->slot_pack.packs, k = (uint64_t)job->slot_pack.per_pack;
        const uint64_t pairs = k * (k - 1) / 2;
        if ((long double)m * ((long double)k * k + (long double)pairs * pairs) >= 4294967296.0L)
            return 0;
        /* While the rows leave multiprocessors idle, a warp per 32 trade
         * units of the row (eplb_block_refine), up to the refine width. With
         * more rows than multiprocessors the blocks share them, and a wider
         * block (with a smaller register budget for the packing) made the
         * hierarchical DeepSeek-V3 plan slower (docs/benchmarks.md). */
        const int64_t unit_warps =
            (int64_t)((eplb_cuda_refine_units<uint64_t>((uint32_t)m, (uint32_t)k) + 31) / 32);
        const int64_t most = EPLB_CUDA_FUSED_REFINE_THREADS / 32;
        /* The team search needs a warp per 32 partners, and takes more
         * warps only while a lane would weigh more than about 32 trades:
         * 8 warps on the global DeepSeek-V3 rows, the width of the plan
         * without refine. */
        const uint32_t team_warps =
            ctx->knobs.refine_search == EPLB_TUNE_CUDA_REFINE_TEAM &&
                    want <= EPLB_CUDA_TEAM_REFINE_MAX_WARPS
                ? eplb_cuda_team_refine_warps(m, k, (uint32_t)want)
                : 0u;
        if (team_warps > 0) {
            a->team_refine = 1;
            want = team_warps;
        } else if (blocks <= (int64_t)ctx->sm_count && want < unit_warps) {
            want = unit_warps < most ? unit_warps : most;
        }
    }
    uint32_t warps = want > 32 ? 32u : (uint32_t)want;
    size_t bytes = plan_layout(job, warps, a);
    while (warps > 1 && bytes > ctx->smem_optin)
        bytes = plan_layout(job, --warps, a);
    if (bytes > ctx->smem_optin)
        return 0;
    /* Fewer warps than partner sets: the block search instead. */
    if (a->team_refine && (int64_t)warps < (job->slot_pack.packs + 31) / 32) {
        a->team_refine = 0;
        bytes = plan_layout(job, warps, a);
    }
    a->weight = (const float *)job->weight;
    a->status = (int32_t *)job->status;
    a->phy2log = (int64_t *)job->phy2log;
    a->logcnt = (int64_t *)job->logcnt;
    a->log2phy = (int64_t *)job->log2phy;
    a->slot_rank = (int32_t *)job->slot_rank;
    /* Every block reads every weight: cheap while L*L*E stays small. */
    a->check_count = blocks * job->layers * job->experts <= (1L << 26)
                         ? job->layers * job->experts : 0;
    a->node_split = split ? 1u : 0u;
    a->width = job->log2phy ? job->width : 0;
    a->seed = job->group_pack.seed;
    a->noise = job->group_pack.noise;
    a->tolerance = job->group_pack.tolerance;
    a->iterations = job->group_pack.iterations;
    a->refine = refine ? job->refine : 0;
    a->E = (uint32_t)job->experts;
    a->R = (uint32_t)job->replicas;
    a->G = (uint32_t)job->groups;
    a->N = (uint32_t)job->nodes;
    a->S = (uint32_t)job->group_size;
    a->M = (uint32_t)job->node_experts;
    a->RN = (uint32_t)job->node_slots;
    a->group_k = (uint32_t)job->group_pack.per_pack;
    a->slot_m = (uint32_t)job->slot_pack.packs;
    a->slot_k = (uint32_t)job->slot_pack.per_pack;
    a->C = (uint32_t)C;
    *smem = bytes;
    *threads = 32 * warps;
    return 1;
}

eplb_status eplb_cuda_plan_fused(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    eplb_cuda_plan_args a;
    size_t smem;
    unsigned threads;
    eplb_status st;
    if (ctx->knobs.path != EPLB_TUNE_CUDA_PATH_FUSED || !plan_config(ctx, job, &a, &smem, &threads))
        return EPLB_BACKEND_DECLINED; /* the planner runs the stages */
    if (a.check_count == 0 && (st = eplb_cuda_check_weights(backend, job)) != EPLB_OK)
        return st;
    const unsigned L = (unsigned)(a.node_split ? job->layers * job->nodes : job->layers);
    if (a.team_refine) /* at most 256 threads (eplb_cuda_team_refine_warps) */
        eplb_cuda_plan_fused_kernel<256, true, true><<<L, threads, smem, ctx->stream>>>(a);
    else if (a.refine > 0) {
        if (threads <= 256)
            eplb_cuda_plan_fused_kernel<256, true><<<L, threads, smem, ctx->stream>>>(a);
        else if (threads <= 512)
            eplb_cuda_plan_fused_kernel<512, true><<<L, threads, smem, ctx->stream>>>(a);
        else
            eplb_cuda_plan_fused_kernel<1024, true><<<L, threads, smem, ctx->stream>>>(a);
    } else if (threads <= 256)
        eplb_cuda_plan_fused_kernel<256, false><<<L, threads, smem, ctx->stream>>>(a);
    else if (threads <= 512)
        eplb_cuda_plan_fused_kernel<512, false><<<L, threads, smem, ctx->stream>>>(a);
    else
        eplb_cuda_plan_fused_kernel<1024, false><<<L, threads, smem, ctx->stream>>>(a);
    return eplb_cuda_launched(backend, "plan_fused");
}
