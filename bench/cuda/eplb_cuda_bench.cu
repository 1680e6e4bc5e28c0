/* eplb_cuda_bench: GPU check and timing of the cuda backend.
 *
 *   eplb_cuda_bench check [--quick]   goldens exact on every cuda path; random
 *                                     shapes (also with refine 1, 16, 256, and
 *                                     with distinct), the device-pointer API,
 *                                     invalid weights and repeated calls
 *                                     against cpu
 *   eplb_cuda_bench time [--runs N] [--path P] [--case SUBSTRING] [--refine N]
 *                        [--distinct] device-pointer call timed with CUDA events
 *                                     (P: fused, fused-team-refine, stages)
 *   eplb_cuda_bench incremental [--runs N] [--path P]
 *                                     eplb_rebalance_incremental(_device) timed
 *                                     beside the fresh plan (wall clock)
 *   eplb_cuda_bench sanitize          a few DeepSeek-V3 plans per path, and one
 *                                     with refine and one with distinct (for
 *                                     compute-sanitizer memcheck / racecheck)
 *
 * Prints "N passed, N failed" (check) and exits 1 on any failure. */
#include <cuda_runtime.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <string>
#include <vector>

extern "C" {
#include "eplb/eplb.h"
#include "golden.h"
#include "workload.h"
}

#ifndef EPLB_GOLDEN_DIR
#define EPLB_GOLDEN_DIR "tests/golden"
#endif

static int passed = 0, failed = 0;

static void verdict(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verdict(bool ok, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
    (ok ? passed : failed)++;
}

#define CUDA_OK(call)                                                                          \
    do {                                                                                       \
        cudaError_t err_ = (call);                                                             \
        if (err_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                      \
                    cudaGetErrorString(err_));                                                 \
            exit(2);                                                                           \
        }                                                                                      \
    } while (0)

/* The paths checked and timed: values of EPLB_TUNE_CUDA_PATH and
 * EPLB_TUNE_CUDA_REFINE (docs/cuda.md), every one giving the same plan.
 * "fused-team-refine" is plan_fused with the team refine search where one is
 * compiled for the row (opt-in); check runs only its refine
 * cases. */
struct cuda_path {
    const char *name, *path, *refine_search;
};
static const cuda_path cuda_paths[] = {
    {"fused", "fused", "block"},
    {"fused-team-refine", "fused", "team"},
    {"stages", "stages", "block"},
};

/* A cuda context on one of cuda_paths (the knobs are read when the instance
 * is created); NULL for a name not listed. */
static eplb_context *open_cuda(const char *path)
{
    const cuda_path *chosen = NULL;
    for (const cuda_path &p : cuda_paths)
        if (!strcmp(p.name, path))
            chosen = &p;
    if (!chosen) {
        fprintf(stderr, "unknown path %s: use fused, fused-team-refine or stages\n", path);
        return NULL;
    }
    setenv("EPLB_TUNE_CUDA_PATH", chosen->path, 1);
    setenv("EPLB_TUNE_CUDA_REFINE", chosen->refine_search, 1);
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cuda") != EPLB_OK) {
        fprintf(stderr, "cuda backend unavailable: %s\n", eplb_last_error());
        return NULL;
    }
    return ctx;
}

struct plan {
    std::vector<int64_t> phy2log, logcnt, log2phy;
    int64_t width = 0;
    eplb_status status = EPLB_OK;
};

/* The log2phy width a plan of these weights needs (its widest replica count),
 * from a host-API plan without log2phy; 0 when that plan fails. */
static int64_t width_needed(eplb_context *ctx, const float *w, const eplb_shape &s,
                            const eplb_options &o)
{
    std::vector<int64_t> phy2log(s.layers * s.replicas), logcnt(s.layers * s.experts);
    int64_t needed = 0;
    if (eplb_rebalance(ctx, w, &s, &o, phy2log.data(), logcnt.data(), NULL, 0, &needed) != EPLB_OK)
        return 0;
    return needed;
}

static plan host_plan(eplb_context *ctx, const float *w, const eplb_shape &s, const eplb_options &o)
{
    plan p;
    p.width = eplb_log2phy_width_max(&s);
    /* The always-sufficient width R-E+1 is ~12 GB for the scale case: ask the
     * planner for the width it needs first when that bound is huge. */
    if (s.layers * s.experts * p.width > ((int64_t)1 << 27)) {
        const int64_t needed = width_needed(ctx, w, s, o);
        if (needed > 0)
            p.width = needed;
    }
    p.phy2log.assign(s.layers * s.replicas, -7);
    p.logcnt.assign(s.layers * s.experts, -7);
    p.log2phy.assign(s.layers * s.experts * p.width, -7);
    p.status = eplb_rebalance(ctx, w, &s, &o, p.phy2log.data(), p.logcnt.data(), p.log2phy.data(),
                              p.width, NULL);
    if (p.status != EPLB_OK)
        fprintf(stderr, "  eplb_rebalance: %s\n", eplb_context_last_error(ctx));
    return p;
}

struct device_buffers {
    float *weight = NULL;
    int64_t *phy2log = NULL, *logcnt = NULL, *log2phy = NULL;
    size_t nw = 0, np = 0, nc = 0, nx = 0;
    device_buffers(const eplb_shape &s, int64_t width)
    {
        nw = s.layers * s.experts;
        np = s.layers * s.replicas;
        nc = s.layers * s.experts;
        nx = nc * width;
        CUDA_OK(cudaMalloc(&weight, nw * sizeof(float)));
        CUDA_OK(cudaMalloc(&phy2log, np * sizeof(int64_t)));
        CUDA_OK(cudaMalloc(&logcnt, nc * sizeof(int64_t)));
        CUDA_OK(cudaMalloc(&log2phy, nx * sizeof(int64_t)));
    }
    ~device_buffers()
    {
        cudaFree(weight);
        cudaFree(phy2log);
        cudaFree(logcnt);
        cudaFree(log2phy);
    }
    void fill_outputs(int64_t value)
    {
        std::vector<int64_t> v(std::max(np, std::max(nc, nx)), value);
        CUDA_OK(cudaMemcpy(phy2log, v.data(), np * 8, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(logcnt, v.data(), nc * 8, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(log2phy, v.data(), nx * 8, cudaMemcpyHostToDevice));
    }
    plan read(int64_t width)
    {
        plan p;
        p.width = width;
        p.phy2log.resize(np);
        p.logcnt.resize(nc);
        p.log2phy.resize(nx);
        CUDA_OK(cudaMemcpy(p.phy2log.data(), phy2log, np * 8, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(p.logcnt.data(), logcnt, nc * 8, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(p.log2phy.data(), log2phy, nx * 8, cudaMemcpyDeviceToHost));
        return p;
    }
};

/* Device-pointer plan on stream; waits and reads the outputs back. width 0:
 * the always-sufficient width. EPLB_LOG2PHY_WIDTH_NEEDED: the device chooses
 * it, in a log2phy of the always-sufficient width, which the plan read back
 * holds whole, with p.width the width eplb_device_log2phy_width reported
 * (-7 on an error). */
static plan device_plan(eplb_context *ctx, const float *w, const eplb_shape &s,
                        const eplb_options &o, cudaStream_t stream, int64_t width = 0)
{
    const bool chosen = width == EPLB_LOG2PHY_WIDTH_NEEDED;
    const int64_t capacity = width <= 0 ? eplb_log2phy_width_max(&s) : width;
    device_buffers d(s, capacity);
    CUDA_OK(cudaMemcpy(d.weight, w, d.nw * sizeof(float), cudaMemcpyHostToDevice));
    d.fill_outputs(-7);
    int64_t reported = -7;
    eplb_status st = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt, d.log2phy,
                                           chosen ? width : capacity, stream);
    if (st == EPLB_OK)
        st = chosen ? eplb_device_log2phy_width(ctx, stream, &reported)
                    : eplb_device_status(ctx, stream);
    if (st != EPLB_OK)
        fprintf(stderr, "  device plan: %s\n", eplb_context_last_error(ctx));
    plan p = d.read(capacity);
    p.status = st;
    if (chosen)
        p.width = reported;
    return p;
}

/* Device-pointer plan with EPLB_LOG2PHY_WIDTH_NEEDED, its log2phy cut to the
 * width the device chose. untouched_tail tells whether the buffer past the
 * plan's rows kept its -7. */
static plan device_plan_needed_width(eplb_context *ctx, const float *w, const eplb_shape &s,
                                     const eplb_options &o, cudaStream_t stream,
                                     bool *untouched_tail)
{
    plan p = device_plan(ctx, w, s, o, stream, EPLB_LOG2PHY_WIDTH_NEEDED);
    *untouched_tail = true;
    if (p.status == EPLB_OK && p.width >= 1 && p.width <= eplb_log2phy_width_max(&s)) {
        const size_t used = p.logcnt.size() * (size_t)p.width;
        for (size_t i = used; i < p.log2phy.size(); i++)
            *untouched_tail &= p.log2phy[i] == -7;
        p.log2phy.resize(used);
    } else if (p.status == EPLB_OK) {
        p.status = EPLB_ERR_INTERNAL; /* a width outside [1, capacity] */
    }
    return p;
}

/* Whether a plan at the needed width equals a plan at a wider fixed width:
 * the same slots in each row's first max(logcnt) entries, -1 after them. */
static bool same_at_needed_width(const plan &fixed, const plan &needed)
{
    if (needed.status != EPLB_OK || needed.phy2log != fixed.phy2log ||
        needed.logcnt != fixed.logcnt)
        return false;
    int64_t most = 0;
    for (int64_t c : fixed.logcnt)
        most = c > most ? c : most;
    if (needed.width != most || fixed.width < most)
        return false;
    for (size_t row = 0; row < fixed.logcnt.size(); row++)
        for (int64_t r = 0; r < fixed.width; r++) {
            const int64_t want = fixed.log2phy[row * fixed.width + r];
            if (r < most ? needed.log2phy[row * most + r] != want : want != -1)
                return false;
        }
    return true;
}

static std::string first_difference(const plan &a, const plan &b, const eplb_shape &s)
{
    char buf[256];
    if (a.status != b.status) {
        snprintf(buf, sizeof buf, "status %d vs %d", a.status, b.status);
        return buf;
    }
    for (size_t i = 0; i < a.phy2log.size(); i++)
        if (a.phy2log[i] != b.phy2log[i]) {
            snprintf(buf, sizeof buf, "phy2log layer %lld slot %lld: %lld vs %lld",
                     (long long)(i / s.replicas), (long long)(i % s.replicas),
                     (long long)a.phy2log[i], (long long)b.phy2log[i]);
            return buf;
        }
    if (a.logcnt != b.logcnt)
        return "logcnt differs";
    if (a.width == b.width && a.log2phy != b.log2phy)
        return "log2phy differs";
    return "";
}

/* ---- check ---------------------------------------------------------------- */

static void check_goldens(eplb_context *ctx, const char *path)
{
    DIR *dir = opendir(EPLB_GOLDEN_DIR);
    if (!dir) {
        verdict(false, "[%s] golden directory %s readable", path, EPLB_GOLDEN_DIR);
        return;
    }
    std::vector<std::string> names;
    while (struct dirent *e = readdir(dir))
        if (strstr(e->d_name, ".txt"))
            names.push_back(e->d_name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    int ok_count = 0;
    for (const std::string &name : names) {
        std::string file = std::string(EPLB_GOLDEN_DIR) + "/" + name;
        eplb_golden g;
        char error[512];
        if (eplb_golden_read(file.c_str(), &g, error, sizeof error) != EPLB_OK) {
            verdict(false, "[%s] golden %s: %s", path, name.c_str(), error);
            continue;
        }
        const eplb_shape &s = g.shape;
        plan p = host_plan(ctx, g.weight, s, g.options);
        bool ok = p.status == EPLB_OK &&
                  memcmp(p.phy2log.data(), g.phy2log, s.layers * s.replicas * 8) == 0 &&
                  memcmp(p.logcnt.data(), g.logcnt, s.layers * s.experts * 8) == 0;
        /* The device-pointer path must give the same plan. */
        plan d = device_plan(ctx, g.weight, s, g.options, NULL);
        bool dev_ok = d.status == EPLB_OK && d.phy2log == p.phy2log && d.logcnt == p.logcnt &&
                      d.log2phy == p.log2phy;
        /* And at the width the device chooses. */
        bool tail = false;
        plan n = device_plan_needed_width(ctx, g.weight, s, g.options, NULL, &tail);
        const bool needed_ok = tail && same_at_needed_width(p, n);
        dev_ok &= needed_ok;
        if (!ok || !dev_ok)
            verdict(false, "[%s] golden %s (host %s, device %s, needed width %s)", path,
                    name.c_str(), ok ? "exact" : "DIFFERS", dev_ok ? "same" : "DIFFERS",
                    needed_ok ? "same" : "DIFFERS");
        else
            ok_count++;
        eplb_golden_free(&g);
    }
    verdict(ok_count == (int)names.size(),
            "[%s] %d/%zu goldens exact (host and device API, fixed and needed width)",
            path, ok_count, names.size());
}

struct random_case {
    const char *name;
    eplb_shape shape;
    int candidates, iterations;
    int64_t dead_every;
    int ties; /* weights from a small integer range: many equal keys and loads */
};

static void fill_weights(std::vector<float> &w, const random_case &rc, uint64_t seed)
{
    const eplb_shape &s = rc.shape;
    w.resize(s.layers * s.experts);
    eplb_workload_fill(w.data(), s.layers, s.experts, seed, rc.dead_every);
    if (rc.ties) {
        uint64_t state = seed + 99;
        for (float &v : w)
            v = (float)(eplb_workload_next(&state) % 4);
    }
}

static const random_case random_cases[] = {
    {"v3 hierarchical 288/8/4/32", {58, 256, 288, 8, 4, 32}, 8, 20, 0, 0},
    {"v3 global 288/72", {58, 256, 288, 8, 1, 72}, 8, 20, 0, 0},
    {"v3 global 320/64", {58, 256, 320, 8, 3, 64}, 8, 20, 0, 0},
    {"v3 dead experts", {16, 256, 288, 8, 4, 32}, 8, 20, 7, 0},
    {"ties", {12, 64, 96, 8, 2, 16}, 8, 20, 0, 1},
    {"one slot per gpu", {8, 64, 128, 4, 2, 128}, 8, 20, 0, 0},
    {"no redundancy", {8, 128, 128, 8, 2, 16}, 8, 20, 0, 0},
    {"groups == nodes", {8, 64, 96, 4, 4, 16}, 8, 20, 0, 0},
    /* 8192 items in one pack: beyond EPLB_MAX_DEVICE_SWAP_ITEMS, so GPU
     * backends take it only without swap iterations. */
    {"1 gpu 8192 slots, no swap", {2, 1024, 8192, 1, 1, 1}, 4, 0, 0, 0},
    {"2 gpus k=2048", {2, 512, 4096, 1, 1, 2}, 2, 5, 0, 0},
    {"large k 16 gpus", {3, 256, 4096, 8, 2, 16}, 8, 20, 0, 0},
    {"many packs", {2, 1024, 8192, 1, 1, 2048}, 8, 20, 0, 0},
    {"candidates 1024", {4, 256, 288, 8, 4, 32}, 1024, 20, 0, 0},
    {"deepseek C=1 I=0", {58, 256, 288, 8, 4, 32}, 1, 0, 0, 0},
    {"odd sizes", {5, 60, 150, 6, 3, 15}, 5, 7, 0, 0},
    {"qwen-like global", {48, 128, 160, 1, 1, 32}, 8, 20, 0, 0},
    {"kimi-like", {60, 384, 448, 1, 2, 64}, 16, 20, 0, 0},
    /* Rows for the team refine search (cuda_refine_team.cuh): eight partner
     * sets of k = 2, a last set of 4 lanes at k = 3, two sets at k = 8. */
    {"global k=2 on 256 gpus", {8, 256, 512, 8, 1, 256}, 8, 20, 0, 0},
    {"global k=3 on 100 gpus", {8, 200, 300, 4, 1, 100}, 8, 20, 0, 0},
    {"global k=8 on 40 gpus", {6, 256, 320, 8, 1, 40}, 8, 20, 0, 0},
};

static const random_case scale_case = {
    "scale 200x1024 -> 8192 on 1024 gpus, 16 nodes", {200, 1024, 8192, 16, 16, 1024}, 8, 20, 0, 0};

static void check_random(eplb_context *cpu, eplb_context *ctx, const char *path,
                         const random_case &rc, uint64_t seed, int32_t refine = 0)
{
    std::vector<float> w;
    fill_weights(w, rc, seed);
    eplb_options o;
    eplb_options_init(&o);
    o.candidates = rc.candidates;
    o.iterations = rc.iterations;
    o.seed = seed;
    o.refine = refine;
    plan want = host_plan(cpu, w.data(), rc.shape, o);
    plan got = host_plan(ctx, w.data(), rc.shape, o);
    std::string diff = first_difference(want, got, rc.shape);
    plan dev = device_plan(ctx, w.data(), rc.shape, o, NULL, want.width);
    std::string ddiff = first_difference(want, dev, rc.shape);
    verdict(want.status == EPLB_OK && diff.empty() && ddiff.empty(),
            "[%s] %s seed %llu refine %d equals cpu (host API %s, device API %s)", path, rc.name,
            (unsigned long long)seed, (int)refine, diff.empty() ? "same" : diff.c_str(),
            ddiff.empty() ? "same" : ddiff.c_str());
}

/* The refine caps each random case is checked with (docs/spec.md section 10). */
static const int32_t refine_caps[] = {1, 16, 256};

/* Whether the cpu backend weighs a refine iteration of the shape quickly:
 * (m-1)(k^2 + (k(k-1)/2)^2) trades, bounded here with every GPU in one row. */
static bool refine_checkable(const eplb_shape &s)
{
    const double k = (double)(s.replicas / s.gpus), pairs = k * (k - 1) / 2;
    return (double)s.gpus * (k * k + pairs * pairs) <= 1e6;
}

/* The refine caps each random case is checked with under distinct
 * (docs/spec.md section 11): 0 runs distinct's restore (11.5), 16 the
 * restricted search of 11.6 on every row. */
static const int32_t distinct_refine_caps[] = {0, 16};

/* Distinct on one random case, with its own weights or with a few experts
 * made hot enough that their counts exceed the row's GPUs (the cap of 11.3
 * then frees slots): the cuda plan, through the host and the device API,
 * equals the cpu backend's, and a shape that 11.2 rules out is refused by
 * both alike. */
static void check_distinct(eplb_context *cpu, eplb_context *ctx, const char *path,
                           const random_case &rc, int32_t refine, bool hot)
{
    std::vector<float> w;
    fill_weights(w, rc, 0);
    if (hot)
        for (int64_t l = 0; l < rc.shape.layers; l++)
            for (int64_t e = 0; e < 3 && e < rc.shape.experts; e++)
                w[l * rc.shape.experts + e * 5 % rc.shape.experts] *= 60.0f / (float)(e + 1);
    eplb_options o;
    eplb_options_init(&o);
    o.candidates = rc.candidates;
    o.iterations = rc.iterations;
    o.refine = refine;
    o.distinct = 1;
    plan want = host_plan(cpu, w.data(), rc.shape, o);
    plan got = host_plan(ctx, w.data(), rc.shape, o);
    if (want.status == EPLB_ERR_INVALID_SHAPE) {
        verdict(got.status == want.status,
                "[%s] %s distinct: refused by cpu (section 11.2) and by cuda (status %d)", path,
                rc.name, (int)got.status);
        return;
    }
    std::string diff = first_difference(want, got, rc.shape);
    plan dev = device_plan(ctx, w.data(), rc.shape, o, NULL, want.width);
    std::string ddiff = first_difference(want, dev, rc.shape);
    verdict(want.status == EPLB_OK && diff.empty() && ddiff.empty(),
            "[%s] %s%s distinct refine %d equals cpu (host API %s, device API %s)", path,
            rc.name, hot ? " hot" : "", (int)refine, diff.empty() ? "same" : diff.c_str(),
            ddiff.empty() ? "same" : ddiff.c_str());
}

/* The host API's refusals through the staging area leave the caller's
 * arrays untouched: a log2phy too narrow (with the width needed reported)
 * and an invalid weight; the next valid call plans as before. */
static void check_host_api_errors(eplb_context *ctx, const char *path)
{
    const eplb_shape s = {58, 256, 320, 8, 1, 64};
    std::vector<float> w(s.layers * s.experts);
    eplb_workload_fill(w.data(), s.layers, s.experts, 4, 0);
    eplb_options o;
    eplb_options_init(&o);
    const plan want = host_plan(ctx, w.data(), s, o);
    std::vector<int64_t> phy2log(s.layers * s.replicas, -7), logcnt(s.layers * s.experts, -7);
    std::vector<int64_t> log2phy(s.layers * s.experts * 2, -7);
    int64_t needed = -7;
    eplb_status st = eplb_rebalance(ctx, w.data(), &s, &o, phy2log.data(), logcnt.data(),
                                    log2phy.data(), 2, &needed);
    int64_t most = 0;
    for (int64_t c : want.logcnt) most = std::max(most, c);
    bool untouched = true;
    for (int64_t v : phy2log) untouched &= v == -7;
    for (int64_t v : logcnt) untouched &= v == -7;
    for (int64_t v : log2phy) untouched &= v == -7;
    verdict(st == EPLB_ERR_LOG2PHY_TOO_SMALL && needed == most && untouched,
            "[%s] host API, log2phy width 2: status %d, width needed %lld (want %lld), outputs "
            "untouched %s", path, (int)st, (long long)needed, (long long)most,
            untouched ? "yes" : "NO");
    std::vector<float> bad = w;
    bad[(s.layers - 1) * s.experts + 9] = __builtin_nanf("");
    log2phy.assign(s.layers * s.experts * want.width, -7);
    st = eplb_rebalance(ctx, bad.data(), &s, &o, phy2log.data(), logcnt.data(), log2phy.data(),
                        want.width, NULL);
    untouched = true;
    for (int64_t v : phy2log) untouched &= v == -7;
    for (int64_t v : log2phy) untouched &= v == -7;
    verdict(st == EPLB_ERR_INVALID_WEIGHT && untouched &&
                strstr(eplb_context_last_error(ctx), "weight[57][9]") != NULL,
            "[%s] host API, NaN weight: status %d (%s), outputs untouched %s", path, (int)st,
            eplb_context_last_error(ctx), untouched ? "yes" : "NO");
    const plan again = host_plan(ctx, w.data(), s, o);
    verdict(again.status == EPLB_OK && again.phy2log == want.phy2log &&
                again.log2phy == want.log2phy,
            "[%s] host API plans as before after the refusals", path);
}

/* stream must outlive ctx: see run_check. */
static void check_device_api(eplb_context *ctx, const char *path, cudaStream_t stream)
{
    const eplb_shape s = {58, 256, 288, 8, 4, 32};
    std::vector<float> w(s.layers * s.experts);
    eplb_workload_fill(w.data(), s.layers, s.experts, 3, 0);
    eplb_options o;
    eplb_options_init(&o);
    const int64_t width = eplb_log2phy_width_max(&s);

    /* Repeated calls on a caller's stream give identical plans. */
    plan first = device_plan(ctx, w.data(), s, o, stream);
    bool same = first.status == EPLB_OK;
    for (int i = 0; i < 5 && same; i++) {
        plan again = device_plan(ctx, w.data(), s, o, stream);
        same = again.status == EPLB_OK && again.phy2log == first.phy2log &&
               again.logcnt == first.logcnt && again.log2phy == first.log2phy;
    }
    verdict(same, "[%s] repeated device calls on a non-blocking stream are identical", path);

    /* An invalid weight (NaN, inf, negative) leaves outputs untouched and is reported. */
    const float bad_values[] = {__builtin_nanf(""), __builtin_inff(), -1.0f};
    for (int b = 0; b < 3; b++) {
        device_buffers d(s, width);
        std::vector<float> wb = w;
        wb[(s.layers - 1) * s.experts + 17] = bad_values[b]; /* last layer only */
        CUDA_OK(cudaMemcpy(d.weight, wb.data(), d.nw * 4, cudaMemcpyHostToDevice));
        d.fill_outputs(-7);
        eplb_status st = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt,
                                               d.log2phy, width, stream);
        eplb_status dev = st == EPLB_OK ? eplb_device_status(ctx, stream) : st;
        plan p = d.read(width);
        bool untouched = true;
        for (int64_t v : p.phy2log) untouched &= v == -7;
        for (int64_t v : p.logcnt) untouched &= v == -7;
        for (int64_t v : p.log2phy) untouched &= v == -7;
        verdict(st == EPLB_OK && dev == EPLB_ERR_INVALID_WEIGHT && untouched,
                "[%s] invalid weight %g via device API: status %d, outputs untouched %s", path,
                (double)bad_values[b], (int)dev, untouched ? "yes" : "NO");
        /* The next valid call succeeds again. */
        CUDA_OK(cudaMemcpy(d.weight, w.data(), d.nw * 4, cudaMemcpyHostToDevice));
        st = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt, d.log2phy, width,
                                   stream);
        dev = st == EPLB_OK ? eplb_device_status(ctx, stream) : st;
        plan q = d.read(width);
        verdict(dev == EPLB_OK && q.phy2log == first.phy2log,
                "[%s] valid call after an invalid one succeeds", path);
    }
    /* A too-narrow log2phy width (allowed by the planner) fails without output. */
    {
        device_buffers d(s, 1);
        CUDA_OK(cudaMemcpy(d.weight, w.data(), d.nw * 4, cudaMemcpyHostToDevice));
        d.fill_outputs(-7);
        eplb_status st = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt,
                                               d.log2phy, 1, stream);
        eplb_status dev = st == EPLB_OK ? eplb_device_status(ctx, stream) : st;
        plan p = d.read(1);
        bool untouched = true;
        for (int64_t v : p.phy2log) untouched &= v == -7;
        verdict(dev == EPLB_ERR_LOG2PHY_TOO_SMALL && untouched,
                "[%s] log2phy width 1 via device API: status %d, outputs untouched %s", path,
                (int)dev, untouched ? "yes" : "NO");
    }
    /* The width the device chooses: the plan of a fixed width, and for an
     * invalid weight no output at all. */
    {
        bool tail = false;
        plan n = device_plan_needed_width(ctx, w.data(), s, o, stream, &tail);
        verdict(tail && same_at_needed_width(first, n),
                "[%s] device API at the needed width (%lld) equals the fixed width", path,
                (long long)n.width);
        std::vector<float> wb = w;
        wb[(s.layers - 1) * s.experts + 5] = __builtin_nanf("");
        plan p = device_plan_needed_width(ctx, wb.data(), s, o, stream, &tail);
        bool untouched = true;
        for (int64_t v : p.phy2log) untouched &= v == -7;
        for (int64_t v : p.logcnt) untouched &= v == -7;
        for (int64_t v : p.log2phy) untouched &= v == -7;
        verdict(p.status == EPLB_ERR_INVALID_WEIGHT && untouched,
                "[%s] invalid weight at the needed width: status %d, outputs untouched %s", path,
                (int)p.status, untouched ? "yes" : "NO");
    }
}

#include "incremental_device_check.h"

static int run_check(bool quick)
{
    eplb_context *cpu = NULL;
    if (eplb_context_create(&cpu, "cpu") != EPLB_OK) {
        fprintf(stderr, "cpu backend: %s\n", eplb_last_error());
        return 2;
    }
    for (const cuda_path &variant : cuda_paths) {
        const char *path = variant.name;
        eplb_context *ctx = open_cuda(path);
        if (!ctx) {
            verdict(false, "[%s] cuda backend available", path);
            continue;
        }
        printf("== path %s on %s\n", path, eplb_context_device(ctx));
        check_goldens(ctx, path);
        /* The team search as a tuning value: its refine cases only. */
        const bool refine_only = !strcmp(variant.refine_search, "team");
        for (const random_case &rc : random_cases) {
            if (refine_checkable(rc.shape))
                for (int32_t refine : refine_caps)
                    for (uint64_t seed = 0; seed < (quick || refine != 256 ? 1u : 3u); seed++)
                        check_random(cpu, ctx, path, rc, seed, refine);
            if (refine_only)
                continue;
            for (uint64_t seed = 0; seed < (quick ? 1u : 3u); seed++)
                check_random(cpu, ctx, path, rc, seed);
            for (int32_t refine : distinct_refine_caps)
                if (refine == 0 || refine_checkable(rc.shape))
                    for (int hot = 0; hot < (quick ? 1 : 2); hot++)
                        check_distinct(cpu, ctx, path, rc, refine, hot != 0);
        }
        /* The host API (eplb_rebalance) keeps using the last device call's
         * stream (the planner does not reset it), so that stream must stay
         * alive until the context is freed: destroying it first made the
         * scale case below crash inside the CUDA runtime. */
        cudaStream_t stream;
        CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        if (!refine_only)
            check_device_api(ctx, path, stream);
        /* The device form's own code does not depend on the path (the fresh
         * plan inside it is the host API's, checked above). */
        if (!strcmp(path, "fused"))
            check_incremental_device(cpu, ctx, path, stream);
        if (!refine_only)
            check_host_api_errors(ctx, path);
        if (!quick && !strcmp(path, "fused"))
            check_random(cpu, ctx, path, scale_case, 1);
        eplb_context_free(ctx);
        CUDA_OK(cudaStreamDestroy(stream));
    }
    eplb_context_free(cpu);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* ---- timing --------------------------------------------------------------- */

struct timed_case {
    const char *name;
    eplb_shape shape;
};

static const timed_case timed_cases[] = {
    {"v3 hierarchical 288/8/4/32", {58, 256, 288, 8, 4, 32}},
    {"v3 global 288/72", {58, 256, 288, 8, 1, 72}},
    {"v3 global 320/64", {58, 256, 320, 8, 1, 64}},
    {"scale 200x1024->8192/1024/16", {200, 1024, 8192, 16, 16, 1024}},
    /* Too large for plan_fused, too few rows to fill the GPU: the stage
     * kernels' weakest case (a kernel per packing stage, few blocks each). */
    {"few rows 2x1024->8192/64", {2, 1024, 8192, 8, 1, 64}},
};

static double median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

/* Median wall-clock microseconds of `calls` host-API plans (eplb_rebalance:
 * host weights in, host outputs out), log2phy at the width the plan needs as
 * eplb-bench sizes it, after 10 untimed calls; -1 when a call fails. */
static double time_host_api(eplb_context *ctx, const std::vector<float> &w, const eplb_shape &s,
                            const eplb_options &o, int calls)
{
    const int64_t needed = width_needed(ctx, w.data(), s, o);
    if (needed <= 0)
        return -1;
    std::vector<int64_t> phy2log(s.layers * s.replicas), logcnt(s.layers * s.experts),
        log2phy(s.layers * s.experts * needed);
    std::vector<float> times;
    for (int i = -10; i < calls; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        eplb_status st = eplb_rebalance(ctx, w.data(), &s, &o, phy2log.data(), logcnt.data(),
                                        log2phy.data(), needed, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (st != EPLB_OK)
            return -1;
        if (i >= 0)
            times.push_back((float)((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3));
    }
    return median(times);
}

/* The log2phy width the timed device calls pass. */
enum class timed_width {
    max,    /* the always-sufficient R - E + 1 (DeepSeek's shape), whose -1
               fill alone is about 12 GB for the scale case */
    needed, /* the width the plan needs, found by a host plan first (what an
               engine that sizes log2phy by the plan passes) */
    device, /* EPLB_LOG2PHY_WIDTH_NEEDED: the device chooses, in a buffer of
               the always-sufficient width */
};

static int run_time(int runs, const char *path, const char *only, int32_t refine, int distinct,
                    timed_width width_mode)
{
    eplb_context *ctx = open_cuda(path);
    if (!ctx)
        return 2;
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaEvent_t start, stop;
    CUDA_OK(cudaEventCreate(&start));
    CUDA_OK(cudaEventCreate(&stop));
    printf("== timing path %s, refine %d, distinct %d, log2phy width %s, on %s, %d runs each "
           "(median of per-call CUDA event time)\n", path, (int)refine, distinct,
           width_mode == timed_width::needed   ? "needed"
           : width_mode == timed_width::device ? "chosen by the device"
                                               : "R-E+1",
           eplb_context_device(ctx), runs);
    /* host_us: the host API's median wall clock per plan (copies and the
     * wait included), beside the device-pointer call's device time. */
    printf("%-32s %12s %12s %12s %10s %10s\n", "case", "median_us", "min_us", "batch_us", "fused",
           "host_us");
    for (const timed_case &tc : timed_cases) {
        if (only && !strstr(tc.name, only))
            continue;
        const eplb_shape &s = tc.shape;
        std::vector<float> w(s.layers * s.experts);
        eplb_workload_fill(w.data(), s.layers, s.experts, 1, 0);
        eplb_options o;
        eplb_options_init(&o);
        o.refine = refine;
        o.distinct = distinct;
        const int64_t capacity = width_mode == timed_width::needed
                                     ? width_needed(ctx, w.data(), s, o)
                                     : eplb_log2phy_width_max(&s);
        if (capacity <= 0) {
            printf("%-32s failed: %s\n", tc.name, eplb_context_last_error(ctx));
            continue;
        }
        const int64_t width = width_mode == timed_width::device ? EPLB_LOG2PHY_WIDTH_NEEDED : capacity;
        device_buffers d(s, capacity);
        CUDA_OK(cudaMemcpy(d.weight, w.data(), d.nw * 4, cudaMemcpyHostToDevice));
        const int n = s.layers * s.replicas > 1000000 ? (runs < 20 ? runs : 20) : runs;
        eplb_status st = EPLB_OK;
        for (int i = 0; i < 10 && st == EPLB_OK; i++) /* warm-up: workspace allocated here */
            st = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt, d.log2phy,
                                       width, stream);
        if (st == EPLB_OK)
            st = eplb_device_status(ctx, stream);
        if (st != EPLB_OK) {
            printf("%-32s failed: %s\n", tc.name, eplb_context_last_error(ctx));
            continue;
        }
        /* Microseconds of `calls` back-to-back device calls between two events. */
        auto time_calls = [&](int calls) {
            CUDA_OK(cudaEventRecord(start, stream));
            for (int i = 0; i < calls; i++)
                eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt, d.log2phy,
                                      width, stream);
            CUDA_OK(cudaEventRecord(stop, stream));
            CUDA_OK(cudaEventSynchronize(stop));
            float ms = 0;
            CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
            return ms * 1000.0f;
        };
        std::vector<float> times;
        for (int i = 0; i < n; i++)
            times.push_back(time_calls(1));
        /* Back-to-back calls: what a serving loop sees per plan. */
        const float batch_us = time_calls(n);
        st = eplb_device_status(ctx, stream);
        const double host_us = time_host_api(ctx, w, s, o, n);
        printf("%-32s %12.1f %12.1f %12.1f %10s %10.1f%s\n", tc.name, median(times),
               (double)*std::min_element(times.begin(), times.end()),
               (double)batch_us / n, "", host_us, st == EPLB_OK ? "" : "  STATUS FAILED");
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    eplb_context_free(ctx);
    cudaStreamDestroy(stream); /* after the context: it may still name the stream */
    return 0;
}

/* ---- sanitize --------------------------------------------------------------- */

static int run_sanitize(int iterations)
{
    const eplb_shape shapes[] = {{58, 256, 288, 8, 4, 32}, {58, 256, 320, 8, 1, 64}};
    int bad = 0;
    for (const cuda_path &variant : cuda_paths) {
        const char *path = variant.name;
        eplb_context *ctx = open_cuda(path);
        if (!ctx)
            return 2;
        for (const eplb_shape &s : shapes) {
            std::vector<float> w(s.layers * s.experts);
            eplb_workload_fill(w.data(), s.layers, s.experts, 5, 0);
            eplb_options o;
            eplb_options_init(&o);
            const int64_t width = eplb_log2phy_width_max(&s);
            device_buffers d(s, width);
            CUDA_OK(cudaMemcpy(d.weight, w.data(), d.nw * 4, cudaMemcpyHostToDevice));
            for (int i = 0; i < iterations; i++) {
                eplb_status st = eplb_rebalance_device(ctx, d.weight, &s, &o, d.phy2log, d.logcnt,
                                                       d.log2phy, width, NULL);
                if (st == EPLB_OK)
                    st = eplb_device_status(ctx, NULL);
                if (st != EPLB_OK) {
                    fprintf(stderr, "[%s] %s\n", path, eplb_context_last_error(ctx));
                    bad = 1;
                }
            }
            plan h = host_plan(ctx, w.data(), s, o);
            bad |= h.status != EPLB_OK;
            /* The refine stage's kernel too (it runs on the stage path). */
            o.refine = 256;
            plan r = device_plan(ctx, w.data(), s, o, NULL, width);
            bad |= r.status != EPLB_OK;
            /* And the distinct stage's, with its restore (refine 0). */
            o.refine = 0;
            o.distinct = 1;
            plan x = device_plan(ctx, w.data(), s, o, NULL, width);
            bad |= x.status != EPLB_OK;
        }
        printf("sanitize run on path %s done\n", path);
        eplb_context_free(ctx);
    }
    return bad;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "check";
    int runs = 200, iterations = 3, refine = 0, distinct = 0;
    bool quick = false;
    timed_width width_mode = timed_width::max;
    const char *path = "fused", *only = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--refine") && i + 1 < argc) refine = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--distinct")) distinct = 1;
        else if (!strcmp(argv[i], "--width") && i + 1 < argc) {
            const char *width = argv[++i];
            if (strcmp(width, "max") && strcmp(width, "needed") && strcmp(width, "device")) {
                fprintf(stderr, "--width takes max, needed or device, not %s\n", width);
                return 2;
            }
            width_mode = !strcmp(width, "needed")   ? timed_width::needed
                         : !strcmp(width, "device") ? timed_width::device
                                                    : timed_width::max;
        }
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!strcmp(mode, "check")) return run_check(quick);
    if (!strcmp(mode, "time")) return run_time(runs, path, only, refine, distinct, width_mode);
    if (!strcmp(mode, "sanitize")) return run_sanitize(iterations);
    if (!strcmp(mode, "incremental")) return run_time_incremental(runs, path);
    fprintf(stderr, "usage: %s check [--quick] | time [--runs N] [--path fused|fused-team-refine|stages] [--case SUBSTRING] [--refine N] [--distinct] [--width max|needed|device] | incremental [--runs N] [--path P] | sanitize [--iterations N]\n",
            argv[0]);
    return 2;
}
