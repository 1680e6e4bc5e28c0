/* How long one step of SPEC 13.5's single-swap search takes on the GPU when
 * a block weighs every pair, for the question of issue 18 whether that
 * search should move to the device (docs/benchmarks.md, "The incremental
 * search's step on the GPU"). Not eplb code and not exact SPEC 13.5: no
 * pruning, no double swaps, no stop; a fixed number of steps on made-up
 * placements of the DeepSeek-V3 global decode shape (288 slots, 72 GPUs of
 * 4 slots, 256 experts), one block per (layer, search) as 58 layers with a
 * kept and an anchored search would use. Each step: the heaviest GPU A (every
 * warp alike); the key (class, move cost, value, pair) of every pair of A's
 * slot with a slot elsewhere, read from shared memory with the move cost
 * from a table of excess replicas per (expert, GPU); the block's least key;
 * one thread applies the trade and recomputes the two GPU loads. Prints the
 * kernel's time per step for blocks of 32 to 1024 threads, with every pair
 * weighed and with none (the chain of reductions and barriers alone).
 *
 *   eplb_search_step_latency           (built beside eplb_cuda_bench) */
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CUDA_OK(call)                                                                   \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

constexpr int kLayers = 58, kSlots = 288, kGpus = 72, kPerGpu = 4, kExperts = 256;
constexpr int kSteps = 200, kRuns = 20;

/* Float bits in an order that unsigned comparison keeps. */
__device__ __forceinline__ uint32_t ordered_bits(float f)
{
    const uint32_t b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* A GPU's load: its four slot loads summed in ascending order (SPEC 13.2). */
__device__ __forceinline__ float gpu_load(const float *u, int g)
{
    const float a = u[g * kPerGpu], b = u[g * kPerGpu + 1], c = u[g * kPerGpu + 2],
                d = u[g * kPerGpu + 3];
    const float lo1 = fminf(a, b), hi1 = fmaxf(a, b), lo2 = fminf(c, d), hi2 = fmaxf(c, d);
    const float m1 = fmaxf(lo1, lo2), m2 = fminf(hi1, hi2);
    return __fadd_rn(__fadd_rn(__fadd_rn(fminf(lo1, lo2), fminf(m1, m2)), fmaxf(m1, m2)),
                     fmaxf(hi1, hi2));
}

/* Warp-wide maximum and minimum by shuffles (the reduce instructions need
 * sm_80, and the build also targets sm_75). */
__device__ __forceinline__ uint32_t warp_max_u32(uint32_t v)
{
    for (int offset = 16; offset; offset >>= 1)
        v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

__device__ __forceinline__ uint32_t warp_min_u32(uint32_t v)
{
    for (int offset = 16; offset; offset >>= 1)
        v = min(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

__device__ __forceinline__ unsigned long long warp_min(unsigned long long v)
{
    for (int offset = 16; offset; offset >>= 1) {
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = other < v ? other : v;
    }
    return v;
}

template <int Threads>
__global__ void __launch_bounds__(Threads)
    search_steps(const float *weights, const int *start, const int *previous, float target_scale,
                 int pairs_weighed, unsigned long long *sink)
{
    __shared__ float u[kSlots];
    __shared__ int expert[kSlots];
    __shared__ float load[kGpus];
    __shared__ signed char excess[kExperts * kGpus];
    __shared__ unsigned long long warp_best[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, layer = blockIdx.x / 2;
    const float *w = weights + layer * kExperts;
    const int *x = start + layer * kSlots, *prev = previous + layer * kSlots;
    for (int i = tid; i < kExperts * kGpus; i += Threads)
        excess[i] = 0;
    /* Slot loads: the expert's weight (the latency does not depend on it). */
    for (int q = tid; q < kSlots; q += Threads) {
        expert[q] = x[q];
        u[q] = w[x[q]];
    }
    __syncthreads();
    if (tid == 0)
        for (int q = 0; q < kSlots; q++) {
            excess[expert[q] * kGpus + q / kPerGpu]++;
            excess[prev[q] * kGpus + q / kPerGpu]--;
        }
    for (int g = tid; g < kGpus; g += Threads)
        load[g] = gpu_load(u, g);
    __syncthreads();
    float top = 0.0f;
    for (int g = 0; g < kGpus; g++)
        top = fmaxf(top, load[g]);
    const float target = top * target_scale;
    unsigned long long kept = 0;
    for (int step = 0; step < kSteps; step++) {
        uint32_t heaviest_key = 0, heaviest = kGpus;
        for (int g = lane; g < kGpus; g += 32) {
            const uint32_t key = ordered_bits(load[g]);
            if (key > heaviest_key) {
                heaviest_key = key;
                heaviest = g;
            }
        }
        const uint32_t top_key = warp_max_u32(heaviest_key);
        const int a = (int)warp_min_u32(heaviest_key == top_key ? heaviest : ~0u);
        const float load_a = load[a];
        unsigned long long best = ~0ull;
        for (int pair = tid; pair < pairs_weighed; pair += Threads) {
            const int i = pair / kSlots, sb = pair - i * kSlots, sa = a * kPerGpu + i;
            const int b = sb / kPerGpu;
            if (b == a || !(u[sa] > u[sb]))
                continue;
            const float ua = u[sa], ub = u[sb], load_b = load[b];
            const float d = __fsub_rn(ua, ub);
            const float new_a = __fadd_rn(__fsub_rn(load_a, ua), ub);
            const float new_b = __fadd_rn(__fsub_rn(load_b, ub), ua);
            const float change = __fmul_rn(__fmul_rn(2.0f, d), __fsub_rn(d, __fsub_rn(load_a, load_b)));
            const int ea = expert[sa], eb = expert[sb];
            const unsigned long long cost =
                (excess[eb * kGpus + a] >= 0) - (excess[ea * kGpus + a] > 0) +
                (excess[ea * kGpus + b] >= 0) - (excess[eb * kGpus + b] > 0) + 2;
            unsigned long long key;
            if (new_a <= target && new_b <= target)
                key = cost << 59 | (unsigned long long)ordered_bits(fmaxf(new_a, new_b)) << 11;
            else if (new_b <= target)
                key = 1ull << 62 | cost << 59 | (unsigned long long)ordered_bits(new_a) << 11;
            else if (change < 0.0f)
                key = 2ull << 62 | (unsigned long long)(ordered_bits(change) >> 3) << 14 | cost << 11;
            else
                continue;
            key |= (unsigned long long)pair;
            best = key < best ? key : best;
        }
        best = warp_min(best);
        if (Threads > 32) {
            if (lane == 0)
                warp_best[warp] = best;
            __syncthreads();
            best = warp_min(lane < Threads / 32 ? warp_best[lane] : ~0ull);
        }
        if (tid == 0 && best != ~0ull) {
            const int pair = (int)(best & 2047), i = pair / kSlots, sb = pair - i * kSlots;
            const int sa = a * kPerGpu + i, b = sb / kPerGpu, ea = expert[sa], eb = expert[sb];
            excess[ea * kGpus + a]--;
            excess[ea * kGpus + b]++;
            excess[eb * kGpus + b]--;
            excess[eb * kGpus + a]++;
            expert[sa] = eb;
            expert[sb] = ea;
            const float t = u[sa];
            u[sa] = u[sb];
            u[sb] = t;
            load[a] = gpu_load(u, a);
            load[b] = gpu_load(u, b);
            kept += best;
        }
        __syncthreads();
    }
    if (tid == 0)
        sink[blockIdx.x] = kept; /* so that the steps are not optimized away */
}

template <int Threads>
static void time_width(const float *w, const int *x, const int *prev, float target_scale,
                       int pairs_weighed, unsigned long long *sink)
{
    const int blocks = 2 * kLayers;
    cudaEvent_t begin, end;
    CUDA_OK(cudaEventCreate(&begin));
    CUDA_OK(cudaEventCreate(&end));
    search_steps<Threads><<<blocks, Threads>>>(w, x, prev, target_scale, pairs_weighed, sink);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> ms(kRuns);
    for (float &m : ms) {
        CUDA_OK(cudaEventRecord(begin));
        search_steps<Threads><<<blocks, Threads>>>(w, x, prev, target_scale, pairs_weighed, sink);
        CUDA_OK(cudaEventRecord(end));
        CUDA_OK(cudaEventSynchronize(end));
        CUDA_OK(cudaEventElapsedTime(&m, begin, end));
    }
    std::sort(ms.begin(), ms.end());
    printf("%5d threads: %8.1f us per kernel (median of %d), %6.3f us per step\n", Threads,
           ms[kRuns / 2] * 1e3, kRuns, ms[kRuns / 2] * 1e3 / kSteps);
}

int main()
{
    std::vector<float> w(kLayers * kExperts);
    std::vector<int> x(kLayers * kSlots), prev(kLayers * kSlots);
    srand(1);
    /* Heavy-tailed loads; each layer places every expert once plus 32
     * replicas, in two independent shuffles (the start and the previous plan). */
    for (float &v : w) {
        const float r = rand() / (float)RAND_MAX;
        v = 1.0f / (0.02f + r * r * r);
    }
    for (int l = 0; l < kLayers; l++) {
        int *xl = &x[l * kSlots], *pl = &prev[l * kSlots];
        for (int q = 0; q < kSlots; q++)
            xl[q] = pl[q] = q < kExperts ? q : rand() % kExperts;
        for (int q = kSlots - 1; q > 0; q--) {
            std::swap(xl[q], xl[rand() % (q + 1)]);
            std::swap(pl[q], pl[rand() % (q + 1)]);
        }
    }
    float *dw;
    int *dx, *dprev;
    unsigned long long *sink;
    CUDA_OK(cudaMalloc(&dw, w.size() * sizeof(float)));
    CUDA_OK(cudaMalloc(&dx, x.size() * sizeof(int)));
    CUDA_OK(cudaMalloc(&dprev, prev.size() * sizeof(int)));
    CUDA_OK(cudaMalloc(&sink, 2 * kLayers * sizeof(unsigned long long)));
    CUDA_OK(cudaMemcpy(dw, w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(dx, x.data(), x.size() * sizeof(int), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(dprev, prev.data(), prev.size() * sizeof(int), cudaMemcpyHostToDevice));
    /* Every pair weighed, then none: the step's chain of reductions,
     * barriers and the applying thread alone. */
    for (int pairs : {kPerGpu * kSlots, 0}) {
        printf("target 0.97 x the start's largest GPU load; %d pairs weighed a step; %d steps, "
               "%d blocks\n", pairs, kSteps, 2 * kLayers);
        time_width<32>(dw, dx, dprev, 0.97f, pairs, sink);
        time_width<64>(dw, dx, dprev, 0.97f, pairs, sink);
        time_width<128>(dw, dx, dprev, 0.97f, pairs, sink);
        time_width<256>(dw, dx, dprev, 0.97f, pairs, sink);
        time_width<512>(dw, dx, dprev, 0.97f, pairs, sink);
        time_width<1024>(dw, dx, dprev, 0.97f, pairs, sink);
    }
    return 0;
}
