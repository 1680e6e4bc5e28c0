/* Outputs on the device. Two kernels when log2phy is wanted: the -1 fill must
 * be complete before any slot is scattered into it. Both do nothing while
 * status is nonzero, so a failed plan leaves the caller's outputs untouched. */
#include "cuda_assemble.cuh"

__global__ void eplb_cuda_log2phy_fill_kernel(const int32_t *status, int64_t *log2phy,
                                              int64_t count)
{
    if (status && *status != 0)
        return;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x)
        log2phy[i] = -1;
}

struct eplb_cuda_assemble_args {
    const int32_t *status, *pack_of, *rank_of, *phy2mlog, *phyrank, *mlogcnt, *mlog2log, *log2mlog;
    int64_t *phy2log, *logcnt, *log2phy;
    int32_t *slot_rank;
    int64_t L, N, E, R, M, RN, spg, X;
};

__global__ void eplb_cuda_assemble_kernel(eplb_cuda_assemble_args a)
{
    if (a.status && *a.status != 0)
        return;
    const int64_t slots = a.L * a.R, total = slots + a.L * a.E;
    for (int64_t y = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; y < total;
         y += (int64_t)gridDim.x * blockDim.x) {
        if (y < slots) {
            /* y = source slot q of row x = l*N + n. */
            const int64_t x = y / a.RN, q = y % a.RN, l = x / a.N, n = x % a.N;
            const int64_t pos = a.pack_of ? (int64_t)a.pack_of[y] * a.spg + a.rank_of[y] : q;
            const int64_t slot = n * a.RN + pos;
            const int64_t e = a.mlog2log[l * a.E + n * a.M + a.phy2mlog[y]];
            const int32_t rank = a.phyrank[y];
            a.phy2log[l * a.R + slot] = e;
            if (a.slot_rank)
                a.slot_rank[l * a.R + slot] = rank;
            if (a.log2phy)
                a.log2phy[(l * a.E + e) * a.X + rank] = slot;
        } else {
            const int64_t z = y - slots, l = z / a.E;
            a.logcnt[z] = a.mlogcnt[l * a.E + a.log2mlog[z]];
        }
    }
}

eplb_status eplb_cuda_assemble(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    const int threads = 256;
    if (job->log2phy) {
        const int64_t count = job->layers * job->experts * job->width;
        eplb_cuda_log2phy_fill_kernel<<<eplb_cuda_grid_blocks(count, threads), threads, 0,
                                        ctx->stream>>>(
            (const int32_t *)job->status, (int64_t *)job->log2phy, count);
        eplb_status st = eplb_cuda_launched(backend, "assemble (log2phy fill)");
        if (st != EPLB_OK)
            return st;
    }
    const int identity = job->slot_pack.per_pack <= 1;
    eplb_cuda_assemble_args a;
    a.status = (const int32_t *)job->status;
    a.pack_of = identity ? NULL : (const int32_t *)job->slot_pack.pack_of;
    a.rank_of = identity ? NULL : (const int32_t *)job->slot_pack.rank_of;
    a.phy2mlog = (const int32_t *)job->phy2mlog;
    a.phyrank = (const int32_t *)job->phyrank;
    a.mlogcnt = (const int32_t *)job->mlogcnt;
    a.mlog2log = (const int32_t *)job->mlog2log;
    a.log2mlog = (const int32_t *)job->log2mlog;
    a.phy2log = (int64_t *)job->phy2log;
    a.logcnt = (int64_t *)job->logcnt;
    a.log2phy = (int64_t *)job->log2phy;
    a.slot_rank = (int32_t *)job->slot_rank;
    a.L = job->layers; a.N = job->nodes; a.E = job->experts; a.R = job->replicas;
    a.M = job->node_experts; a.RN = job->node_slots; a.spg = job->gpu_slots; a.X = job->width;
    const int64_t total = job->layers * (job->replicas + job->experts);
    eplb_cuda_assemble_kernel<<<eplb_cuda_grid_blocks(total, threads), threads, 0, ctx->stream>>>(a);
    return eplb_cuda_launched(backend, "assemble");
}

/* log2phy at the width the plan needs (EPLB_LOG2PHY_WIDTH_NEEDED), one block
 * per layer. The width is known only once every layer's counts are, so each
 * block first finds it from the whole of logcnt (read from L2 by every block:
 * cheaper than a kernel of its own and its launch), then fills its layer's
 * rows with -1 and writes each slot at its replica rank. Block 0 reports the
 * width in status[1]. */
__global__ void eplb_cuda_log2phy_at_needed_width_kernel(int32_t *status, const int64_t *logcnt,
                                                         const int64_t *phy2log,
                                                         const int32_t *slot_rank,
                                                         int64_t *log2phy, int64_t L, int64_t E,
                                                         int64_t R)
{
    if (status[0] != 0)
        return;
    __shared__ int64_t warp_most[32];
    __shared__ int64_t width;
    const int64_t count = L * E;
    int64_t most = 1;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x)
        most = max(most, logcnt[i]);
    for (int offset = 16; offset > 0; offset /= 2)
        most = max(most, (int64_t)__shfl_xor_sync(0xffffffffu, most, offset));
    const unsigned warps = (blockDim.x + 31) / 32;
    if (threadIdx.x % 32 == 0)
        warp_most[threadIdx.x / 32] = most;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (unsigned k = 1; k < warps; k++)
            most = max(most, warp_most[k]);
        width = most;
        if (blockIdx.x == 0)
            status[1] = (int32_t)most;
    }
    __syncthreads();
    const int64_t w = width;
    for (int64_t l = blockIdx.x; l < L; l += gridDim.x) {
        int64_t *rows = log2phy + l * E * w;
        for (int64_t i = threadIdx.x; i < E * w; i += blockDim.x)
            rows[i] = -1;
        __syncthreads();
        for (int64_t q = threadIdx.x; q < R; q += blockDim.x)
            rows[phy2log[l * R + q] * w + slot_rank[l * R + q]] = q;
        __syncthreads();
    }
}

eplb_status eplb_cuda_log2phy_at_needed_width(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_cuda_context *ctx = eplb_cuda_ctx(backend);
    const unsigned blocks = (unsigned)(job->layers < 65535 ? job->layers : 65535);
    eplb_cuda_log2phy_at_needed_width_kernel<<<blocks, 1024, 0, ctx->stream>>>(
        (int32_t *)job->status, (const int64_t *)job->logcnt, (const int64_t *)job->phy2log,
        (const int32_t *)job->slot_rank, (int64_t *)job->log2phy, job->layers, job->experts,
        job->replicas);
    return eplb_cuda_launched(backend, "log2phy at the needed width");
}
