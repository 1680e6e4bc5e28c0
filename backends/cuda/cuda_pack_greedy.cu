/* Greedy stage: a warp per packing when the packs fit a warp's share, else a
 * block. With at most 128 packs the warp runs the fused kernels' register
 * greedy on a copy of the packing's visiting order and weights in shared
 * memory, so that no step of its chain waits on a global load; otherwise pack
 * loads and counts live in shared memory, or in the backend's global scratch
 * when m is too large for it. */
#include <type_traits>

#include "cuda_pack_greedy.cuh"

/* Shared state of the register greedy: the visiting order's items and the
 * row's weights (n words each), then the m pack loads it leaves. */
static __host__ __device__ size_t register_state_bytes(int64_t n, int64_t m)
{
    return (size_t)(2 * n + m) * sizeof(float);
}

/* Whether a warp's packing runs the register greedy: at most four packs a
 * lane, and the four warps' copies within a block's 48 KiB of shared memory
 * (beyond that the state would go to global memory, where the copy gains
 * nothing). Host and device decide alike from the job. */
static __host__ __device__ bool register_greedy(int64_t n, int64_t m, int64_t k)
{
    return m <= 128 && k >= 2 && 4 * register_state_bytes(n, m) <= 48 * 1024;
}

struct eplb_cuda_greedy_stage {
    template <class Team>
    static __device__ void run(const Team &team, const eplb_pack_job &job, int64_t x,
                               unsigned char *state)
    {
        const uint32_t n = (uint32_t)job.items, m = (uint32_t)job.packs, k = (uint32_t)job.per_pack;
        const float *w = (const float *)job.weight + (x / job.candidates) * n;
        const int32_t *order = (const int32_t *)job.order + x * n;
        int32_t *content = (int32_t *)job.content + x * n;
        if constexpr (std::is_same<Team, eplb_warp_team>::value) {
            if (register_greedy(n, m, k)) {
                int32_t *items = (int32_t *)state;
                float *weights = (float *)state + n, *load = (float *)state + 2 * n;
                for (uint32_t t = team.rank(); t < n; t += 32u) {
                    items[t] = order[t];
                    weights[t] = w[t];
                }
                __syncwarp();
                eplb_warp_try_greedy_in_registers<4>(team.rank(), weights, items, 1, n, m, k,
                                                     content, load);
                return;
            }
        }
        /* load[m] then count[m] in one area of 2m words. */
        float *load = (float *)state;
        int32_t *count = (int32_t *)state + m;
        eplb_team_pack_greedy(team, w, order, 1, n, m, k, content, load, count);
    }
};

eplb_status eplb_cuda_pack_greedy(eplb_backend *backend, const eplb_pack_job *job)
{
    /* A block per packing spreads the argmin of large pack sets over 256 threads. */
    const bool warp = job->packs <= 128;
    const size_t team_bytes = (size_t)job->packs * 2 * sizeof(float);
    const size_t state_bytes = warp && register_greedy(job->items, job->packs, job->per_pack)
                                   ? register_state_bytes(job->items, job->packs)
                                   : team_bytes;
    return eplb_cuda_launch_packings<eplb_cuda_greedy_stage>(backend, job, state_bytes, warp,
                                                             "pack_greedy");
}
