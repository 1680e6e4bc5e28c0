/* The CUDA swap search of docs/spec.md section 13.5
 * (backends/cuda/cuda_incremental_search.cuh), its own source, run on the
 * host and compared with the host search eplb_domain_search
 * (src/incremental_search.c, with and without its AVX-512 scans): the
 * placement, slot loads, moves and verdict of every search must be equal,
 * bit for bit, on random domains of few to many slots per GPU and up to the
 * planner's GPU counts, many full of ties, with targets met at once, after
 * some trades or never, and small limits, for several block widths.
 *
 * Each CUDA thread of the block is a fiber of one host thread: a block
 * barrier or a warp collective switches to the next fiber until every
 * thread (of the block or of the warp) has arrived, so the search's barrier
 * protocol is checked too (a collective that some thread skips is reported
 * as a deadlock). Fibers rather than host threads: the search takes several
 * barriers per trade, and a barrier of 256 host threads on a small machine
 * costs far more than 256 switches of one thread's stack. Exit status 0
 * when every search matches.
 *
 * Built with nvcc instead (-x cu, with cuda_incremental_search.cu), the same
 * cases run on the GPU through eplb_cuda_domain_searches, which checks the
 * device's own code and what fibers cannot show (a race between threads of
 * one phase); `time` as the first argument then times batches of the
 * planner's shapes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <random>
#include <vector>

extern "C" {
#include "incremental.h"
}

/* The steps that weighed double trades (counted on fibers only). */
static long double_steps;

#ifdef __CUDACC__
#include "cuda_incremental_search.cuh"
#else
/* ---- the CUDA names the search uses, for fibers
 * ------------------------------- */

#define __host__
#define __device__
#define __forceinline__ inline

struct host_dim {
    unsigned x;
};
static host_dim threadIdx; /* the running fiber's */
static host_dim blockDim;

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HOST_ASAN 1
#endif

/* x86-64 switches stacks in a few instructions; elsewhere, and under
 * AddressSanitizer (which follows swapcontext but not a hand-made switch),
 * ucontext does it. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(HOST_ASAN)
#define FIBER_ASM 1
/* Saves the callee-saved registers on the current stack, stores its pointer
 * in *save and continues on the stack `load`, as saved by an earlier call. */
extern "C" void host_fiber_switch(void **save, void *load);
__asm__(".text\n"
        ".p2align 4\n"
        ".hidden host_fiber_switch\n"
        ".globl host_fiber_switch\n"
        ".type host_fiber_switch, @function\n"
        "host_fiber_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq "
        "%r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  "
        "popq %rbp\n"
        "  ret\n"
        ".size host_fiber_switch, .-host_fiber_switch\n");
#else
#include <ucontext.h>
#endif

enum { FIBERS_MAX = 1024, FIBER_STACK = 64 * 1024 };

static std::vector<unsigned char> fiber_stacks;
static std::function<void()> fiber_body;
static unsigned fiber_count, fiber_running, fibers_left;
static bool fiber_done[FIBERS_MAX];
/* Arrivals, releases and ends: a fiber that waits two rounds with no change
 * here waits with every other one, for ever. */
static unsigned long long fiber_progress;
#if FIBER_ASM
static void *fiber_sp[FIBERS_MAX], *main_sp;
#else
static ucontext_t fiber_context[FIBERS_MAX], main_context;
#endif

static void fiber_switch(unsigned next)
{
    const unsigned me = fiber_running;
    fiber_running = next;
#if FIBER_ASM
    host_fiber_switch(&fiber_sp[me], fiber_sp[next]);
#else
    swapcontext(&fiber_context[me], &fiber_context[next]);
#endif
    fiber_running = me;
    threadIdx.x = me;
}

static unsigned next_fiber(unsigned me)
{
    unsigned next = me;
    do
        next = (next + 1) % fiber_count;
    while (fiber_done[next] && next != me);
    return next;
}

/* Lets the other fibers run until `waiting` turns false. */
template <class Waiting>
static void fiber_wait(const Waiting &waiting)
{
    unsigned long long seen = fiber_progress;
    unsigned idle = 0;
    while (waiting()) {
        fiber_switch(next_fiber(fiber_running));
        if (fiber_progress != seen) {
            seen = fiber_progress;
            idle = 0;
        } else if (++idle > 2 * fiber_count) {
            fprintf(stderr, "deadlock: thread %u waits at a barrier no other thread reaches\n",
                    fiber_running);
            exit(2);
        }
    }
}

static void fiber_entry()
{
    const unsigned me = fiber_running;
    threadIdx.x = me;
    fiber_body();
    fiber_done[me] = true;
    fiber_progress++;
    if (--fibers_left == 0) {
#if FIBER_ASM
        host_fiber_switch(&fiber_sp[me], main_sp);
#else
        swapcontext(&fiber_context[me], &main_context);
#endif
    }
    fiber_switch(next_fiber(me));
    abort(); /* a finished fiber is never resumed */
}

/* Runs body on `threads` fibers, threadIdx.x 0..threads-1, until all return. */
static void run_block(unsigned threads, const std::function<void()> &body)
{
    fiber_body = body;
    fiber_count = fibers_left = threads;
    blockDim.x = threads;
    fiber_stacks.resize(std::max(fiber_stacks.size(), (size_t)threads * FIBER_STACK));
    for (unsigned t = 0; t < threads; t++) {
        fiber_done[t] = false;
        unsigned char *stack = fiber_stacks.data() + (size_t)t * FIBER_STACK;
#if FIBER_ASM
        /* The first switch pops the saved registers (zeros) and returns
         * into fiber_entry, the stack aligned as a call leaves it. */
        uintptr_t top = ((uintptr_t)(stack + FIBER_STACK)) & ~(uintptr_t)15;
        void **frame = (void **)(top - 64);
        memset(frame, 0, 64);
        frame[6] = (void *)fiber_entry;
        fiber_sp[t] = frame;
#else
        getcontext(&fiber_context[t]);
        fiber_context[t].uc_stack.ss_sp = stack;
        fiber_context[t].uc_stack.ss_size = FIBER_STACK;
        fiber_context[t].uc_link = NULL;
        makecontext(&fiber_context[t], fiber_entry, 0);
#endif
    }
    fiber_running = 0;
#if FIBER_ASM
    host_fiber_switch(&main_sp, fiber_sp[0]);
#else
    swapcontext(&main_context, &fiber_context[0]);
#endif
}

static unsigned long long block_generation;
static unsigned block_arrived;
static unsigned long long warp_generation[32];
static unsigned warp_arrived[32];
static uint32_t warp_values[32][2][32];

static void __syncthreads()
{
    const unsigned long long generation = block_generation;
    fiber_progress++;
    if (++block_arrived == blockDim.x) {
        block_arrived = 0;
        block_generation++;
        return;
    }
    fiber_wait([&] { return block_generation == generation; });
}

static void warp_barrier(unsigned warp)
{
    const unsigned long long generation = warp_generation[warp];
    fiber_progress++;
    if (++warp_arrived[warp] == 32) {
        warp_arrived[warp] = 0;
        warp_generation[warp]++;
        return;
    }
    fiber_wait([&] { return warp_generation[warp] == generation; });
}

static void __syncwarp()
{
    warp_barrier(threadIdx.x / 32);
}

/* A warp's values go to the buffer of the barrier's generation: a lane can
 * write the next one's only after every lane has passed this barrier, and
 * the one after only when every lane has read this one. */
static uint32_t warp_reduce(uint32_t v, bool max)
{
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint32_t *values = warp_values[warp][warp_generation[warp] & 1];
    values[lane] = v;
    warp_barrier(warp);
    uint32_t r = values[0];
    for (int i = 1; i < 32; i++)
        r = max ? (values[i] > r ? values[i] : r) : (values[i] < r ? values[i] : r);
    return r;
}

static uint32_t __reduce_min_sync(unsigned, uint32_t v)
{
    return warp_reduce(v, false);
}
static uint32_t __reduce_max_sync(unsigned, uint32_t v)
{
    return warp_reduce(v, true);
}

#define EPLB_SEARCH_ON_DOUBLE() (void)(threadIdx.x == 0 && double_steps++)

#include "cuda_incremental_search.cuh"
#endif

/* ---- random domains
 * ------------------------------------------------------------ */

typedef std::mt19937_64 rng_t;

static int64_t pick(rng_t &rng, int64_t lo, int64_t hi) /* lo..hi */
{
    return lo + (int64_t)(rng() % (uint64_t)(hi - lo + 1));
}

/* SPEC 13.2: the float32 sum of a GPU's slot loads in ascending order from +0.
 */
static float gpu_load(const float *u, int64_t spg)
{
    std::vector<float> sorted(u, u + spg);
    for (size_t i = 1; i < sorted.size(); i++)
        for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--)
            std::swap(sorted[j - 1], sorted[j]);
    float sum = 0.0f;
    for (float v : sorted)
        sum += v;
    return sum;
}

/* SPEC 13.3: the moves of GPUs g0..g1-1 of x against prev. */
static int64_t moves_of(const int64_t *prev, const int64_t *x, int64_t g0, int64_t g1, int64_t spg)
{
    int64_t moves = 0;
    for (int64_t g = g0; g < g1; g++)
        for (int64_t i = 0; i < spg; i++) {
            const int64_t e = x[g * spg + i];
            int64_t first = 1, held = 0, before = 0;
            for (int64_t j = 0; j < spg; j++) {
                first &= !(j < i && x[g * spg + j] == e);
                held += x[g * spg + j] == e;
                before += prev[g * spg + j] == e;
            }
            if (first && held > before)
                moves += held - before;
        }
    return moves;
}

/* The largest GPU load when the domain's slot loads go, heaviest first, to
 * the lightest GPU with a free slot: a balanced plan's, as a target the
 * search may or may not reach. */
static float balanced_max(const float *u, int64_t dn, int64_t spg)
{
    const int64_t gpus = dn / spg;
    std::vector<float> order(u, u + dn), placed(dn), sums(gpus, 0.0f);
    std::vector<int64_t> filled(gpus, 0);
    std::stable_sort(order.begin(), order.end(), [](float a, float b) { return a > b; });
    for (float v : order) {
        int64_t best = -1;
        for (int64_t g = 0; g < gpus; g++)
            if (filled[g] < spg && (best < 0 || sums[g] < sums[best]))
                best = g;
        placed[best * spg + filled[best]++] = v;
        sums[best] += v;
    }
    float most = 0.0f;
    for (int64_t g = 0; g < gpus; g++)
        most = std::max(most, gpu_load(&placed[g * spg], spg));
    return most;
}

/* One search: the whole layer (the domain searched is d), its start and
 * the search's arguments. */
struct search_case {
    eplb_layer_geometry g;
    int64_t d;
    std::vector<int64_t> prev, x;
    std::vector<float> u;
    float target;
    int64_t start_moves, limit;
};

static float random_weight(rng_t &rng, int kind)
{
    static const float grid[] = {0.5f, 1.0f, 1.5f, 2.0f, 3.25f};
    std::lognormal_distribution<float> heavy(0.0f, 1.0f);
    switch (kind) {
    case 0:
        return (float)(rng() % 4); /* small integers: ties and zeros */
    case 1:
        return grid[rng() % 5];
    case 2:
        return heavy(rng);
    case 3:
        return 1.0f; /* all equal */
    case 4:
        return rng() % 3 == 0 ? -0.0f : (float)(rng() % 3); /* signed zeros */
    default:
        return expf((float)(rng() % 2000) / 100.0f - 10.0f); /* a wide range */
    }
}

/* A random domain of the given shape and experts, its previous plan, a start
 * that differs from it by swaps and replacements, and a target and limit of one
 * of several kinds. */
static search_case make_case(rng_t &rng, int64_t E, int64_t spg, int64_t gpus, int64_t domains)
{
    search_case c;
    const int64_t dn = spg * gpus, R = dn * domains;
    c.g = {E, R, gpus * domains, spg, domains, dn, gpus};
    c.d = pick(rng, 0, domains - 1);
    /* Experts from a pool, often a small one, so that GPUs hold equal experts. */
    const int64_t pool = std::min<int64_t>(E, rng() % 3 == 0 ? pick(rng, 1, 4) : E);
    c.prev.resize(R);
    for (int64_t q = 0; q < R; q++)
        c.prev[q] = rng() % 4 == 0 ? q % pool : (int64_t)(rng() % (uint64_t)pool);
    c.x = c.prev;
    const int64_t first = c.d * dn;
    const int64_t swaps = rng() % 3 == 0 ? 0 : pick(rng, 1, dn);
    for (int64_t k = 0; k < swaps; k++)
        std::swap(c.x[first + pick(rng, 0, dn - 1)], c.x[first + pick(rng, 0, dn - 1)]);
    const int64_t replacements = rng() % 2 ? 0 : pick(rng, 0, std::max<int64_t>(1, dn / 8));
    for (int64_t k = 0; k < replacements; k++)
        c.x[first + pick(rng, 0, dn - 1)] = (int64_t)(rng() % (uint64_t)E);
    /* SPEC 13.2: slot loads with the start's own counts over the layer. */
    const int weight_kind = (int)(rng() % 6);
    std::vector<float> w(E);
    for (float &v : w)
        v = random_weight(rng, weight_kind);
    std::vector<int64_t> count(E, 0);
    for (int64_t q = 0; q < R; q++)
        count[c.x[q]]++;
    c.u.resize(R);
    for (int64_t q = 0; q < R; q++)
        c.u[q] = w[c.x[q]] / (float)count[c.x[q]];
    c.start_moves = moves_of(&c.prev[first], &c.x[first], 0, gpus, spg);
    /* Targets: a balanced plan's peak (reached or not), the start's peak
     * (met at once), one GPU's load (a tie at <=), out of reach. */
    const float *u = &c.u[first];
    float peak = 0.0f, low = INFINITY;
    std::vector<float> loads(gpus);
    for (int64_t g = 0; g < gpus; g++) {
        loads[g] = gpu_load(u + g * spg, spg);
        peak = std::max(peak, loads[g]);
        low = std::min(low, loads[g]);
    }
    static const float slacks[] = {0.0f, 0.0f, 0.001f, 0.01f, 0.1f};
    switch (rng() % 8) {
    case 0:
        c.target = peak;
        break;
    case 1:
        c.target = loads[rng() % gpus];
        break;
    case 2:
        c.target = low * 0.5f;
        break;
    case 3:
        c.target = 0.0f;
        break;
    default:
        c.target = balanced_max(u, dn, spg) * (1.0f + slacks[rng() % 5]);
        break;
    }
    switch (rng() % 6) {
    case 0:
        c.limit = c.start_moves - 1;
        break;
    case 1:
        c.limit = c.start_moves + pick(rng, 0, 3);
        break;
    case 2:
        c.limit = pick(rng, 0, dn);
        break;
    default:
        c.limit = 4 * dn;
        break;
    }
    return c;
}

/* ---- the comparison
 * ------------------------------------------------------------- */

struct search_tally {
    long searches, differ, met, traded, limited;
};

#ifdef __CUDACC__
/* Copies the batch's arrays to the device and back around `run`. */
template <class Run>
static void on_device(eplb_cuda_search_batch *batch, const Run &run)
{
    const size_t n = (size_t)batch->searches, slots = n * (size_t)batch->domain_slots;
    eplb_cuda_search_batch d = *batch;
    int32_t *words;
    float *floats;
    if (cudaMalloc(&words, (2 * slots + 3 * n) * sizeof(int32_t)) != cudaSuccess ||
        cudaMalloc(&floats, (slots + n) * sizeof(float)) != cudaSuccess) {
        fprintf(stderr, "no device memory\n");
        exit(1);
    }
    int32_t *base = words, *cur = base + slots, *limit = cur + slots, *moved = limit + n;
    int32_t *met = moved + n;
    float *u = floats, *target = u + slots;
    cudaMemcpy(base, batch->base, slots * sizeof(int32_t), cudaMemcpyHostToDevice);
    cudaMemcpy(cur, batch->cur, slots * sizeof(int32_t), cudaMemcpyHostToDevice);
    cudaMemcpy(limit, batch->limit, n * sizeof(int32_t), cudaMemcpyHostToDevice);
    cudaMemcpy(moved, batch->moved, n * sizeof(int32_t), cudaMemcpyHostToDevice);
    cudaMemcpy(u, batch->u, slots * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(target, batch->target, n * sizeof(float), cudaMemcpyHostToDevice);
    d.base = base, d.cur = cur, d.limit = limit, d.moved = moved, d.met = met;
    d.u = u, d.target = target;
    run(&d);
    cudaMemcpy(batch->cur, cur, slots * sizeof(int32_t), cudaMemcpyDeviceToHost);
    cudaMemcpy(batch->u, u, slots * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(batch->moved, moved, n * sizeof(int32_t), cudaMemcpyDeviceToHost);
    cudaMemcpy(batch->met, met, n * sizeof(int32_t), cudaMemcpyDeviceToHost);
    cudaFree(words);
    cudaFree(floats);
}

/* Every search of the batch on the GPU, at the launcher's width. */
static void run_batch(const eplb_cuda_search_batch &batch, unsigned, rng_t &, const char *label)
{
    eplb_cuda_search_batch copy = batch;
    on_device(&copy, [&](const eplb_cuda_search_batch *d) {
        cudaError_t err = eplb_cuda_domain_searches(d, 0);
        if (err == cudaSuccess)
            err = cudaDeviceSynchronize();
        if (err != cudaSuccess) {
            fprintf(stderr, "%s: %s\n", label, cudaGetErrorString(err));
            exit(1);
        }
    });
}
#else
/* Every search of the batch by a block of `threads` fibers. The block's
 * memory starts as garbage of one of three kinds, and guard bytes after it
 * must stay as they are. */
static void run_batch(const eplb_cuda_search_batch &batch, unsigned threads, rng_t &rng,
                      const char *label)
{
    const size_t bytes =
        eplb_search_memory_bytes(batch.domain_slots, batch.slots_per_gpu, (int)threads);
    const size_t guard = 256;
    std::vector<unsigned char> shared(bytes + guard);
    for (int32_t s = 0; s < batch.searches; s++) {
        static const unsigned char fills[] = {0x00, 0xFF, 0x5A};
        const unsigned char fill = fills[rng() % 3];
        memset(shared.data(), fill, shared.size());
        run_block(threads, [&] { eplb_block_domain_search(batch, s, shared.data()); });
        for (size_t i = bytes; i < bytes + guard; i++)
            if (shared[i] != fill) {
                fprintf(stderr, "%s: the block wrote past its %zu bytes of memory\n", label, bytes);
                exit(1);
            }
    }
}
#endif

/* The block search of each case in one batch (a block per search, `threads`
 * wide) against eplb_domain_search; every case shares the batch's shape. */
static void check_batch(const std::vector<search_case> &cases, unsigned threads, int avx512,
                        rng_t &rng, const char *label, search_tally *tally)
{
    const search_case &c0 = cases[0];
    const int64_t dn = c0.g.domain_slots, spg = c0.g.gpu_slots, n = (int64_t)cases.size();
    std::vector<int32_t> base(n * dn), cur(n * dn), limit(n), moved(n), met(n, -7);
    std::vector<float> u(n * dn), target(n);
    for (int64_t s = 0; s < n; s++) {
        const search_case &c = cases[s];
        const int64_t first = c.d * dn;
        for (int64_t q = 0; q < dn; q++) {
            base[s * dn + q] = (int32_t)c.prev[first + q];
            cur[s * dn + q] = (int32_t)c.x[first + q];
            u[s * dn + q] = c.u[first + q];
        }
        target[s] = c.target;
        limit[s] = (int32_t)c.limit;
        moved[s] = (int32_t)c.start_moves;
    }
    const eplb_cuda_search_batch batch = {
        (int32_t)n, (int32_t)dn,   (int32_t)spg, (int32_t)c0.g.experts, base.data(), cur.data(),
        u.data(),   target.data(), limit.data(), moved.data(),          met.data()};
    run_batch(batch, threads, rng, label);

    eplb_incremental_scratch scratch;
    if (!eplb_incremental_scratch_alloc(&scratch, &c0.g, avx512)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t s = 0; s < n; s++) {
        const search_case &c = cases[s];
        std::vector<int64_t> x = c.x;
        std::vector<float> hu = c.u;
        int64_t moves = -1;
        const int host_met = eplb_domain_search(c.prev.data(), x.data(), hu.data(), c.d, c.target,
                                                c.start_moves, c.limit, &c.g, &scratch, &moves);
        const int64_t first = c.d * dn;
        bool same = host_met == met[s] && moves == moved[s] &&
                    memcmp(&hu[first], &u[s * dn], (size_t)dn * sizeof(float)) == 0;
        int64_t changed = 0;
        for (int64_t q = 0; q < dn; q++) {
            same &= x[first + q] == cur[s * dn + q];
            changed += x[first + q] != c.x[first + q];
        }
        tally->searches++;
        tally->met += host_met;
        tally->traded += changed > 0;
        tally->limited += !host_met && moves > c.limit;
        if (!same) {
            if (tally->differ < 10)
                fprintf(stderr,
                        "%s, search %lld (E %lld, spg %lld, %lld GPUs, %u threads, "
                        "%s): host met %d "
                        "moves %lld, block met %d moves %d%s\n",
                        label, (long long)s, (long long)c.g.experts, (long long)spg,
                        (long long)c.g.domain_gpus, threads, scratch.vector ? "avx512" : "plain",
                        host_met, (long long)moves, met[s], moved[s],
                        host_met == met[s] && moves == moved[s] ? " (placements differ)" : "");
            tally->differ++;
        }
    }
    eplb_incremental_scratch_free(&scratch);
}

#ifdef __CUDACC__
/* A kept search as the planner runs it: the previous plan is a balanced
 * plan of older loads (heaviest slot first onto the lightest GPU with a free
 * slot), the loads have drifted since, and the target is a balanced plan's
 * peak for the new ones. E = 256 experts, the heaviest replicated to fill
 * the domain. */
static search_case planner_case(rng_t &rng, int64_t spg, int64_t gpus)
{
    const int64_t dn = spg * gpus, E = 256, distinct = std::min<int64_t>(E, dn);
    std::lognormal_distribution<float> weight(0.0f, 1.0f), drift(0.0f, 0.3f);
    std::vector<float> w0(E), w1(E);
    for (int64_t e = 0; e < E; e++) {
        w0[e] = weight(rng);
        w1[e] = w0[e] * drift(rng);
    }
    std::vector<int64_t> experts(distinct), count(E, 0), slots;
    for (int64_t e = 0; e < distinct; e++)
        experts[e] = e;
    std::sort(experts.begin(), experts.end(), [&](int64_t a, int64_t b) { return w0[a] > w0[b]; });
    for (int64_t q = 0; q < dn; q++)
        slots.push_back(experts[q < distinct ? q : (q - distinct) % distinct]);
    for (int64_t e : slots)
        count[e]++;
    std::stable_sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) {
        return w0[a] / (float)count[a] > w0[b] / (float)count[b];
    });
    search_case c;
    c.g = {E, dn, gpus, spg, 1, dn, gpus};
    c.d = 0;
    c.prev.resize(dn);
    std::vector<float> sums(gpus, 0.0f);
    std::vector<int64_t> filled(gpus, 0);
    for (int64_t e : slots) {
        int64_t best = -1;
        for (int64_t g = 0; g < gpus; g++)
            if (filled[g] < spg && (best < 0 || sums[g] < sums[best]))
                best = g;
        c.prev[best * spg + filled[best]++] = e;
        sums[best] += w0[e] / (float)count[e];
    }
    c.x = c.prev;
    c.u.resize(dn);
    for (int64_t q = 0; q < dn; q++)
        c.u[q] = w1[c.x[q]] / (float)count[c.x[q]];
    c.target = balanced_max(c.u.data(), dn, spg);
    c.start_moves = 0;
    c.limit = dn / 2;
    return c;
}

/* Times one batch of 58 layers x domains x 2 starts per planner shape, the
 * kernel alone (events around the launch, the inputs restored before each),
 * after checking the batch against the host search. */
static int time_batches(rng_t &rng)
{
    struct shape {
        const char *name;
        int64_t spg, gpus, domains;
    } shapes[] = {{"global, 72 GPUs x 4 slots", 4, 72, 1},
                  {"global, 64 GPUs x 5 slots", 5, 64, 1},
                  {"hierarchical, 4 nodes of 8 GPUs x 9 slots", 9, 8, 4},
                  {"hierarchical, 1 node of 8 GPUs x 9 slots", 9, 8, 1}};
    int bad = 0;
    for (const shape &sh : shapes) {
        const int64_t n = 58 * sh.domains * 2, dn = sh.spg * sh.gpus;
        std::vector<search_case> cases;
        for (int64_t s = 0; s < n; s++)
            cases.push_back(planner_case(rng, sh.spg, sh.gpus));
        search_tally tally = {0, 0, 0, 0, 0};
        check_batch(cases, 0, 1, rng, sh.name, &tally);
        bad += tally.differ != 0;
        std::vector<int32_t> base(n * dn), cur(n * dn), limit(n), moved(n, 0), met(n);
        std::vector<float> u(n * dn), target(n);
        for (int64_t s = 0; s < n; s++) {
            for (int64_t q = 0; q < dn; q++) {
                base[s * dn + q] = cur[s * dn + q] = (int32_t)cases[s].prev[q];
                u[s * dn + q] = cases[s].u[q];
            }
            target[s] = cases[s].target;
            limit[s] = (int32_t)cases[s].limit;
        }
        eplb_cuda_search_batch batch = {(int32_t)n,   (int32_t)dn,  (int32_t)sh.spg, 256,
                                        base.data(),  cur.data(),   u.data(),        target.data(),
                                        limit.data(), moved.data(), met.data()};
        std::vector<float> times;
        on_device(&batch, [&](const eplb_cuda_search_batch *d) {
            int32_t *cur0, *moved0;
            float *u0;
            cudaMalloc(&cur0, n * dn * sizeof(int32_t));
            cudaMalloc(&moved0, n * sizeof(int32_t));
            cudaMalloc(&u0, n * dn * sizeof(float));
            cudaMemcpy(cur0, d->cur, n * dn * sizeof(int32_t), cudaMemcpyDeviceToDevice);
            cudaMemcpy(moved0, d->moved, n * sizeof(int32_t), cudaMemcpyDeviceToDevice);
            cudaMemcpy(u0, d->u, n * dn * sizeof(float), cudaMemcpyDeviceToDevice);
            cudaEvent_t start, stop;
            cudaEventCreate(&start);
            cudaEventCreate(&stop);
            for (int k = 0; k < 30; k++) {
                cudaMemcpy(d->cur, cur0, n * dn * sizeof(int32_t), cudaMemcpyDeviceToDevice);
                cudaMemcpy(d->moved, moved0, n * sizeof(int32_t), cudaMemcpyDeviceToDevice);
                cudaMemcpy(d->u, u0, n * dn * sizeof(float), cudaMemcpyDeviceToDevice);
                cudaEventRecord(start);
                eplb_cuda_domain_searches(d, 0);
                cudaEventRecord(stop);
                cudaEventSynchronize(stop);
                float ms = 0.0f;
                cudaEventElapsedTime(&ms, start, stop);
                times.push_back(ms * 1000.0f);
            }
            cudaFree(cur0);
            cudaFree(moved0);
            cudaFree(u0);
        });
        std::sort(times.begin(), times.end());
        long total_moved = 0;
        for (int32_t v : moved)
            total_moved += v;
        printf("%s: %lld searches (%ld met, %.1f moves each), %d threads, %zu "
               "bytes of shared "
               "memory: %.1f us (median), %.1f us (best)\n",
               sh.name, (long long)n, tally.met, (double)total_moved / (double)n,
               eplb_cuda_search_threads((int)dn, (int)sh.spg),
               eplb_search_memory_bytes((int)dn, (int)sh.spg,
                                        eplb_cuda_search_threads((int)dn, (int)sh.spg)),
               times[times.size() / 2], times[0]);
    }
    return bad ? 1 : 0;
}
#endif

int main(int argc, char **argv)
{
#ifdef __CUDACC__
    if (argc > 1 && strcmp(argv[1], "time") == 0) {
        rng_t rng(argc > 2 ? strtoull(argv[2], NULL, 10) : 135);
        return time_batches(rng);
    }
#endif
    const int rows = argc > 1 ? atoi(argv[1]) : 4000;
    rng_t rng(argc > 2 ? strtoull(argv[2], NULL, 10) : 135);
    static const unsigned widths[] = {32, 64, 96, 128, 256};
    static const int64_t wide[] = {16, 32, 64};
    search_tally tally = {0, 0, 0, 0, 0};
    for (int r = 0; r < rows; r++) {
        /* Mostly the planner's shapes and small ones; now and then GPUs of
         * many slots, then few of them: a step of double trades weighs
         * every pair of A's slots against every pair of B's. */
        int64_t spg, gpus;
        switch (r % 10) {
        case 0:
            spg = 4, gpus = 72;
            break;
        case 1:
            spg = 5, gpus = 64;
            break;
        case 2:
            spg = 9, gpus = 8;
            break;
        case 3:
            spg = wide[rng() % 3], gpus = pick(rng, 1, spg == 64 ? 2 : 4);
            break;
        default:
            spg = pick(rng, 1, 10), gpus = pick(rng, 1, 72);
            break;
        }
        const int64_t domains = rng() % 4 == 0 ? 2 : 1;
        const int64_t dn = spg * gpus;
        const int64_t experts[] = {1, 2, 3, dn / 4 + 1, dn / 2 + 1, dn, dn + 7, 256, 1000, 4096};
        const int64_t E = experts[rng() % 10];
        std::vector<search_case> cases;
        const int64_t searches = pick(rng, 1, 3);
        for (int64_t s = 0; s < searches; s++)
            cases.push_back(make_case(rng, E, spg, gpus, domains));
        /* The launcher's width for the shape, or one of the others. */
        const unsigned threads =
            rng() % 2 ? (unsigned)eplb_cuda_search_threads((int)dn, (int)spg) : widths[rng() % 5];
        char label[64];
        snprintf(label, sizeof label, "row %d", r);
        check_batch(cases, threads, r % 3 != 0, rng, label, &tally);
    }
    printf("%d rows, %ld searches: %ld differ (%ld met the target, %ld traded, "
           "%ld stopped by the "
           "limit, %ld double-trade steps)\n",
           rows, tally.searches, tally.differ, tally.met, tally.traded, tally.limited,
           double_steps);
    return tally.differ ? 1 : 0;
}
