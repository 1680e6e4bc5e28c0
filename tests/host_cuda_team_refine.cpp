/* The CUDA team refine search (backends/cuda/cuda_refine_team.cuh), its own
 * source, run on the host: each CUDA thread of the block is a host thread,
 * __syncthreads a barrier of the block and a warp reduction a barrier of the
 * warp's 32 threads. Its trades must equal those of the block search's
 * pieces (cuda_refine.cuh's __host__ __device__ weigh and apply, which the
 * GPU check compares with the cpu backend) run in trade order by one thread,
 * on random rows of 2 to 8 slots per GPU, many of them full of ties, with
 * every team width plan_fused may choose.
 *
 * It checks the search's logic and its barrier protocol (a reduction that
 * not every lane of a warp reached would hang here); timing and the device
 * code generation are the GPU check's (eplb_cuda_bench check,
 * --path fused-team-refine). Built with the host's C++ compiler, so it runs
 * in CI, where no GPU is. Exit status 0 when every row matches. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <random>
#include <thread>
#include <vector>

#include "backend.h"

/* What the team search takes from CUDA, for host threads. */
#define __host__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))

struct host_dim {
    unsigned x;
};
static thread_local host_dim threadIdx;
static host_dim blockDim;
static pthread_barrier_t block_barrier;
static pthread_barrier_t warp_barrier[32];
static uint32_t warp_values[32][32];

static void __syncthreads() { pthread_barrier_wait(&block_barrier); }

/* cuda_teams.cuh launches kernels, which a C++ compiler cannot read: its
 * guard is set and the two helpers the refine headers use are given here,
 * with the same results. */
#define EPLB_CUDA_TEAMS_CUH

template <bool Max>
static uint32_t eplb_warp_reduce(uint32_t v)
{
    const unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    warp_values[warp][lane] = v;
    pthread_barrier_wait(&warp_barrier[warp]);
    uint32_t r = warp_values[warp][0];
    for (int i = 1; i < 32; i++)
        r = Max ? (warp_values[warp][i] > r ? warp_values[warp][i] : r)
                : (warp_values[warp][i] < r ? warp_values[warp][i] : r);
    pthread_barrier_wait(&warp_barrier[warp]); /* warp_values is reused next */
    return r;
}

/* Order-preserving bits of a float, -0 == +0 (cuda_teams.cuh). */
static uint32_t eplb_cuda_ordered_bits(float key)
{
    uint32_t bits;
    memcpy(&bits, &key, sizeof bits);
    if (key == 0.0f)
        return 0x80000000u;
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

#include "cuda_refine_team.cuh"

/* The block search's trades by one thread: every unit (each weighed unit
 * keeps the first smallest peak in trade order), then the apply with its
 * steps 3 and 4 (eplb_block_refine with a block of one thread). */
static void block_search(const eplb_cuda_refine_row &row, int32_t refine, float tolerance)
{
    const uint32_t m = row.m, k = row.k;
    for (uint32_t g = 0; g < m; g++)
        row.load[g] = eplb_cuda_refine_gpu_load(row.t, g, k);
    const uint32_t units = eplb_cuda_refine_units<uint32_t>(m, k);
    for (int32_t iteration = 0; iteration < refine; iteration++) {
        uint32_t a = 0;
        for (uint32_t g = 1; g < m; g++)
            if (eplb_cuda_ordered_bits(row.load[g]) > eplb_cuda_ordered_bits(row.load[a]))
                a = g;
        const float a_load = row.load[a];
        if (isinf(a_load))
            break;
        float best = INFINITY;
        uint32_t chosen = 0;
        for (uint32_t u = 0; u < units; u++)
            eplb_cuda_refine_weigh_unit<uint32_t>(row, eplb_cuda_refine_unit_of<uint32_t>(u, m, k),
                                                  a, a_load, &best, &chosen);
        if (!(best < INFINITY) || !eplb_cuda_refine_apply<uint32_t>(row, a, a_load, chosen, tolerance))
            break;
    }
}

/* The team search on a copy of the row, by 32 * warps host threads. */
static void team_search(const eplb_cuda_refine_row &row, int32_t refine, float tolerance,
                        uint32_t warps)
{
    std::vector<unsigned char> posts(eplb_cuda_team_refine_bytes());
    blockDim.x = 32 * warps;
    pthread_barrier_init(&block_barrier, NULL, blockDim.x);
    for (uint32_t w = 0; w < warps; w++)
        pthread_barrier_init(&warp_barrier[w], NULL, 32);
    std::vector<std::thread> threads;
    bool ran = false;
    for (unsigned t = 0; t < blockDim.x; t++)
        threads.emplace_back([&, t] {
            threadIdx.x = t;
            const bool mine = eplb_team_refine_dispatch(row, refine, tolerance, posts.data());
            if (t == 0)
                ran = mine;
        });
    for (std::thread &t : threads)
        t.join();
    for (uint32_t w = 0; w < warps; w++)
        pthread_barrier_destroy(&warp_barrier[w]);
    pthread_barrier_destroy(&block_barrier);
    if (!ran) {
        fprintf(stderr, "no team search for k = %u\n", row.k);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const int rows = argc > 1 ? atoi(argv[1]) : 300;
    std::mt19937_64 rng(argc > 2 ? strtoull(argv[2], NULL, 10) : 17);
    const uint32_t many[] = {2, 3, 5, 8, 31, 32, 33, 64, 72, 100, 256};
    const uint32_t fewer[] = {2, 3, 8, 32, 40, 72};
    const float grid[] = {0.5f, 1.0f, 1.5f, 2.0f, 3.25f};
    const float tolerance = 1e-5f;
    int bad = 0, trades_total = 0;
    for (int r = 0; r < rows; r++) {
        const uint32_t k = 2 + (uint32_t)(rng() % 7);
        const uint32_t m = k <= 4 ? many[rng() % 11] : fewer[rng() % 6];
        const uint32_t n = m * k;
        std::vector<float> t(n);
        const int kind = (int)(rng() % 3);
        std::lognormal_distribution<float> heavy(0.0f, 1.0f);
        for (float &v : t)
            v = kind == 0 ? (float)(rng() % 7) : kind == 1 ? grid[rng() % 5] : heavy(rng);
        const int32_t caps[] = {1, 16, 256};
        const int32_t refine = caps[rng() % 3];
        /* Every width plan_fused may choose: its least is the packing's. */
        const uint32_t warps = eplb_cuda_team_refine_warps(m, k, 1 + (uint32_t)(rng() % 8));
        if (warps == 0) {
            fprintf(stderr, "row %d: no team width for m = %u, k = %u\n", r, m, k);
            return 1;
        }
        std::vector<int32_t> content(n);
        for (uint32_t q = 0; q < n; q++)
            content[q] = (int32_t)q;
        std::vector<float> t_team = t, t_block = t, loads(m);
        std::vector<int32_t> c_team = content, c_block = content;
        const eplb_cuda_refine_row team_row = {m, k, c_team.data(), t_team.data(), loads.data(), NULL};
        const eplb_cuda_refine_row block_row = {m, k, c_block.data(), t_block.data(), loads.data(),
                                                NULL};
        team_search(team_row, refine, tolerance, warps);
        block_search(block_row, refine, tolerance);
        int moved = 0;
        for (uint32_t q = 0; q < n; q++)
            moved += c_block[q] != (int32_t)q;
        trades_total += moved;
        if (c_team != c_block || memcmp(t_team.data(), t_block.data(), n * sizeof(float)) != 0) {
            fprintf(stderr, "row %d (m %u, k %u, %u warps, refine %d): the team search's placement "
                            "differs from the block search's\n",
                    r, m, k, warps, (int)refine);
            bad++;
        }
    }
    printf("%d rows, %d differ (%d slots moved by the block search in all)\n", rows, bad,
           trades_total);
    return bad ? 1 : 0;
}
