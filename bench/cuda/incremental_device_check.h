/* eplb_cuda_bench's part for eplb_rebalance_incremental_device (docs/api.md):
 * its check against the cpu backend's host plan, and its timing beside the
 * fresh plan's. Included by eplb_cuda_bench.cu after its helpers (verdict,
 * CUDA_OK, plan, device_buffers, open_cuda, random_cases). */
extern "C" {
#include "drift.h"
}

/* The DeepSeek-V3 shapes of eplb-bench's drift rows: hierarchical 288/8/4/32,
 * global 288/72 and global 320/64. */
static const eplb_shape incremental_shapes[] = {
    {58, 256, 288, 8, 4, 32}, {58, 256, 288, 8, 1, 72}, {58, 256, 320, 8, 1, 64}};

/* The incremental plan on ctx through the device form, from previous, on
 * stream; reads the outputs back. The outputs hold -7 before the call. */
static plan incremental_device_plan(eplb_context *ctx, const float *w, const int64_t *previous,
                                    const eplb_shape &s, const eplb_options &o,
                                    cudaStream_t stream, int64_t width)
{
    device_buffers d(s, width);
    int64_t *dprev = NULL;
    CUDA_OK(cudaMalloc(&dprev, d.np * sizeof(int64_t)));
    CUDA_OK(cudaMemcpy(dprev, previous, d.np * sizeof(int64_t), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d.weight, w, d.nw * sizeof(float), cudaMemcpyHostToDevice));
    d.fill_outputs(-7);
    const eplb_status st = eplb_rebalance_incremental_device(ctx, d.weight, &s, &o, dprev,
                                                             d.phy2log, d.logcnt, d.log2phy,
                                                             width, stream);
    if (st != EPLB_OK)
        fprintf(stderr, "  incremental device plan: %s\n", eplb_context_last_error(ctx));
    plan p = d.read(width);
    p.status = st;
    cudaFree(dprev);
    return p;
}

/* The cpu backend's eplb_rebalance_incremental, the plan every backend must give. */
static plan incremental_host_plan(eplb_context *cpu, const float *w, const int64_t *previous,
                                  const eplb_shape &s, const eplb_options &o, int64_t width)
{
    plan p;
    p.width = width;
    p.phy2log.assign(s.layers * s.replicas, -7);
    p.logcnt.assign(s.layers * s.experts, -7);
    p.log2phy.assign(s.layers * s.experts * width, -7);
    p.status = eplb_rebalance_incremental(cpu, w, &s, &o, previous, p.phy2log.data(),
                                          p.logcnt.data(), p.log2phy.data(), width, NULL);
    return p;
}

static bool all_untouched(const plan &p)
{
    bool untouched = true;
    for (int64_t v : p.phy2log) untouched &= v == -7;
    for (int64_t v : p.logcnt) untouched &= v == -7;
    for (int64_t v : p.log2phy) untouched &= v == -7;
    return untouched;
}

/* The device form equals the cpu host plan on the DeepSeek-V3 shapes (from a
 * drifted running plan, with and without slack and refine) and the random
 * shapes; a NaN weight and a too-small width are its return status, with
 * the outputs untouched. */
static void check_incremental_device(eplb_context *cpu, eplb_context *ctx, const char *path,
                                     cudaStream_t stream)
{
    struct checked_case {
        eplb_shape shape;
        int candidates, iterations;
    };
    std::vector<checked_case> cases;
    for (const eplb_shape &shape : incremental_shapes)
        cases.push_back({shape, 8, 20});
    /* The random shapes the device plans with their own options, but for
     * those of thousands of slots a layer: the host's search over one such
     * domain takes minutes, and they add nothing to a check of the copies. */
    for (const random_case &rc : random_cases)
        if (rc.shape.replicas <= 512)
            cases.push_back({rc.shape, rc.candidates, rc.iterations});
    for (size_t k = 0; k < cases.size(); k++) {
        const eplb_shape &s = cases[k].shape;
        std::vector<float> w(s.layers * s.experts);
        eplb_workload_fill(w.data(), s.layers, s.experts, 3 + k, 0);
        std::vector<int64_t> previous(s.layers * s.replicas);
        eplb_options o;
        eplb_options_init(&o);
        o.candidates = cases[k].candidates;
        o.iterations = cases[k].iterations;
        if (eplb_drifted_previous(cpu, w.data(), &s, &o, 2 + k, 0.1, previous.data()) != EPLB_OK) {
            verdict(false, "[%s] incremental device: a running plan for case %zu: %s", path, k,
                    eplb_context_last_error(cpu));
            continue;
        }
        const int64_t width = eplb_log2phy_width_max(&s);
        for (int variant = 0; variant < (k < 3 ? 2 : 1); variant++) {
            o.slack = variant ? 0.02f : 0.0f;
            o.refine = variant ? 16 : 0;
            const plan want = incremental_host_plan(cpu, w.data(), previous.data(), s, o, width);
            const plan got =
                incremental_device_plan(ctx, w.data(), previous.data(), s, o, stream, width);
            verdict(want.status == EPLB_OK && got.status == EPLB_OK &&
                        got.phy2log == want.phy2log && got.logcnt == want.logcnt &&
                        got.log2phy == want.log2phy,
                    "[%s] incremental device form equals the cpu host plan: L%lld E%lld R%lld "
                    "G%lld N%lld P%lld, C=%d, I=%d, slack %g, refine %d",
                    path, (long long)s.layers, (long long)s.experts, (long long)s.replicas,
                    (long long)s.groups, (long long)s.nodes, (long long)s.gpus,
                    (int)o.candidates, (int)o.iterations, (double)o.slack, (int)o.refine);
        }
    }
    const eplb_shape s = {58, 256, 288, 8, 4, 32};
    std::vector<float> w(s.layers * s.experts);
    eplb_workload_fill(w.data(), s.layers, s.experts, 3, 0);
    std::vector<int64_t> previous(s.layers * s.replicas);
    eplb_options o;
    eplb_options_init(&o);
    eplb_drifted_previous(cpu, w.data(), &s, &o, 2, 0.1, previous.data());
    w[(s.layers - 1) * s.experts + 17] = __builtin_nanf("");
    plan bad = incremental_device_plan(ctx, w.data(), previous.data(), s, o, stream,
                                       eplb_log2phy_width_max(&s));
    verdict(bad.status == EPLB_ERR_INVALID_WEIGHT && all_untouched(bad),
            "[%s] incremental device form, NaN weight: status %d, outputs untouched", path,
            (int)bad.status);
    w[(s.layers - 1) * s.experts + 17] = 1.0f;
    plan narrow = incremental_device_plan(ctx, w.data(), previous.data(), s, o, stream, 1);
    verdict(narrow.status == EPLB_ERR_LOG2PHY_TOO_SMALL && all_untouched(narrow),
            "[%s] incremental device form, log2phy width 1: status %d, outputs untouched", path,
            (int)narrow.status);
}

/* Median wall-clock microseconds of fn() over runs calls, after 5 untimed ones. */
template <typename F> static double wall_median_us(int runs, F fn)
{
    std::vector<float> times;
    for (int i = -5; i < runs; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (i >= 0)
            times.push_back((float)((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3));
    }
    std::sort(times.begin(), times.end());
    return times.empty() ? 0.0 : times[times.size() / 2];
}

/* eplb_cuda_bench incremental: per DeepSeek-V3 shape, the wall-clock medians
 * of a fresh plan (device form waited on, and host API) and of the
 * incremental rebalance (device form and host API), on eplb-bench's drift
 * case (workload seed 1, the running plan of its loads, the loads drifted
 * by 0.1 with seed 2). */
static int run_time_incremental(int runs, const char *path)
{
    eplb_context *ctx = open_cuda(path), *cpu = NULL;
    if (!ctx || eplb_context_create(&cpu, "cpu") != EPLB_OK)
        return 2;
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    printf("== incremental timing, path %s, on %s, %d runs each (median wall-clock us)\n", path,
           eplb_context_device(ctx), runs);
    printf("%-28s %12s %12s %14s %14s %8s\n", "case", "fresh_dev", "fresh_host", "incr_dev",
           "incr_host", "moved");
    for (const eplb_shape &s : incremental_shapes) {
        const int64_t width = eplb_log2phy_width_max(&s);
        std::vector<float> base(s.layers * s.experts), w(s.layers * s.experts);
        eplb_workload_fill(base.data(), s.layers, s.experts, 1, 0);
        eplb_workload_drift(base.data(), w.data(), (int64_t)w.size(), 2, 0.1);
        eplb_options o;
        eplb_options_init(&o);
        std::vector<int64_t> previous(s.layers * s.replicas), logcnt(s.layers * s.experts);
        std::vector<int64_t> phy2log(s.layers * s.replicas), log2phy(s.layers * s.experts * width);
        if (eplb_rebalance(cpu, base.data(), &s, &o, previous.data(), logcnt.data(), NULL, 0,
                           NULL) != EPLB_OK)
            return 2;
        device_buffers d(s, width);
        int64_t *dprev = NULL;
        CUDA_OK(cudaMalloc(&dprev, d.np * sizeof(int64_t)));
        CUDA_OK(cudaMemcpy(dprev, previous.data(), d.np * 8, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(d.weight, w.data(), d.nw * 4, cudaMemcpyHostToDevice));
        eplb_status st = EPLB_OK;
        const double fresh_dev = wall_median_us(runs, [&] {
            eplb_status a = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt,
                                                  d.log2phy, width, stream);
            st = a != EPLB_OK ? a : eplb_device_status(ctx, stream);
        });
        const double fresh_host = wall_median_us(runs, [&] {
            eplb_status a = eplb_rebalance(ctx, w.data(), &s, &o, phy2log.data(), logcnt.data(),
                                           log2phy.data(), width, NULL);
            st = a != EPLB_OK ? a : st;
        });
        const double incr_dev = wall_median_us(runs, [&] {
            eplb_status a = eplb_rebalance_incremental_device(ctx, d.weight, &s, &o, dprev,
                                                              d.phy2log, d.logcnt, d.log2phy,
                                                              width, stream);
            st = a != EPLB_OK ? a : st;
        });
        const double incr_host = wall_median_us(runs, [&] {
            eplb_status a = eplb_rebalance_incremental(ctx, w.data(), &s, &o, previous.data(),
                                                       phy2log.data(), logcnt.data(),
                                                       log2phy.data(), width, NULL);
            st = a != EPLB_OK ? a : st;
        });
        eplb_moves moves;
        eplb_moves_init(&moves);
        eplb_count_moves(&s, previous.data(), phy2log.data(), &moves);
        char name[64];
        snprintf(name, sizeof name, "v3 %s %lld/%lld", s.nodes > 1 ? "hierarchical" : "global",
                 (long long)s.replicas, (long long)s.gpus);
        printf("%-28s %12.1f %12.1f %14.1f %14.1f %8lld%s\n", name, fresh_dev, fresh_host,
               incr_dev, incr_host, (long long)moves.moved_slots,
               st == EPLB_OK ? "" : "  FAILED");
        cudaFree(dprev);
    }
    eplb_context_free(ctx);
    eplb_context_free(cpu);
    cudaStreamDestroy(stream);
    return 0;
}
