/* The cuda backend against the goldens and the cpu backend. Skipped (not
 * failed) where the cuda backend is unavailable: no module, driver or GPU.
 * Device-pointer tests reach device memory through the driver API, opened
 * with dlopen, so this file links no CUDA library. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "golden.h"
#include "workload.h"

static eplb_context *open_cuda_or_skip(void)
{
    for (int i = 0; i < eplb_backend_count(); i++) {
        const char *reason = NULL;
        if (strcmp(eplb_backend_name(i), "cuda") == 0 && !eplb_backend_available(i, &reason))
            cr_skip_test("cuda backend unavailable: %s", reason ? reason : "?");
    }
    eplb_context *ctx = NULL;
    cr_assert_eq(eplb_context_create(&ctx, "cuda"), EPLB_OK, "%s", eplb_last_error());
    return ctx;
}

typedef struct plan {
    int64_t *phy2log, *logcnt, *log2phy, width;
} plan;

static eplb_status plan_host(eplb_context *ctx, const float *w, const eplb_shape *s,
                             const eplb_options *o, plan *p)
{
    p->width = eplb_log2phy_width_max(s);
    p->phy2log = malloc(sizeof(int64_t) * s->layers * s->replicas);
    p->logcnt = malloc(sizeof(int64_t) * s->layers * s->experts);
    p->log2phy = malloc(sizeof(int64_t) * s->layers * s->experts * p->width);
    cr_assert(p->phy2log && p->logcnt && p->log2phy);
    return eplb_rebalance(ctx, w, s, o, p->phy2log, p->logcnt, p->log2phy, p->width, NULL);
}

static void plan_free(plan *p)
{
    free(p->phy2log);
    free(p->logcnt);
    free(p->log2phy);
}

static void assert_same(const plan *a, const plan *b, const eplb_shape *s, const char *what)
{
    cr_assert(memcmp(a->phy2log, b->phy2log, sizeof(int64_t) * s->layers * s->replicas) == 0,
              "%s: phy2log differs", what);
    cr_assert(memcmp(a->logcnt, b->logcnt, sizeof(int64_t) * s->layers * s->experts) == 0,
              "%s: logcnt differs", what);
    cr_assert(memcmp(a->log2phy, b->log2phy,
                     sizeof(int64_t) * s->layers * s->experts * a->width) == 0,
              "%s: log2phy differs", what);
}

Test(cuda, goldens_exact, .timeout = 600)
{
    eplb_context *ctx = open_cuda_or_skip();
    DIR *dir = opendir(EPLB_GOLDEN_DIR);
    cr_assert(dir);
    int cases = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!strstr(e->d_name, ".txt"))
            continue;
        char path[1024], error[512];
        snprintf(path, sizeof path, "%s/%s", EPLB_GOLDEN_DIR, e->d_name);
        eplb_golden g;
        cr_assert_eq(eplb_golden_read(path, &g, error, sizeof error), EPLB_OK, "%s", error);
        plan p;
        cr_assert_eq(plan_host(ctx, g.weight, &g.shape, &g.options, &p), EPLB_OK, "%s: %s",
                     e->d_name, eplb_context_last_error(ctx));
        cr_expect(memcmp(p.phy2log, g.phy2log, sizeof(int64_t) * g.shape.layers * g.shape.replicas) == 0,
                  "%s: phy2log differs from the golden", e->d_name);
        cr_expect(memcmp(p.logcnt, g.logcnt, sizeof(int64_t) * g.shape.layers * g.shape.experts) == 0,
                  "%s: logcnt differs from the golden", e->d_name);
        plan_free(&p);
        eplb_golden_free(&g);
        cases++;
    }
    closedir(dir);
    cr_assert_geq(cases, 52);
    eplb_context_free(ctx);
}

typedef struct random_case {
    eplb_shape shape;
    int candidates, iterations;
} random_case;

static const random_case random_cases[] = {
    {{58, 256, 288, 8, 4, 32}, 8, 20},   /* DeepSeek-V3 hierarchical */
    {{58, 256, 288, 8, 1, 72}, 8, 20},   /* global 288/72 */
    {{58, 256, 320, 8, 3, 64}, 8, 20},   /* global (8 groups on 3 nodes) 320/64 */
    {{8, 64, 128, 4, 2, 128}, 8, 20},    /* one slot per GPU */
    {{8, 128, 128, 8, 2, 16}, 8, 20},    /* no redundancy */
    {{2, 1024, 8192, 1, 1, 1}, 4, 0},    /* one GPU: k = 8192, beyond the swap limit: no swaps */
    {{2, 512, 4096, 1, 1, 2}, 2, 3},     /* k = 2048 with swaps */
    {{2, 1024, 8192, 1, 1, 2048}, 8, 20},/* many packs */
    {{4, 256, 288, 8, 4, 32}, 1024, 20}, /* most candidates */
    {{5, 60, 150, 6, 3, 15}, 5, 7},      /* odd sizes */
};

Test(cuda, random_shapes_equal_cpu, .timeout = 1200)
{
    eplb_context *ctx = open_cuda_or_skip();
    eplb_context *cpu = NULL;
    cr_assert_eq(eplb_context_create(&cpu, "cpu"), EPLB_OK);
    for (size_t c = 0; c < sizeof random_cases / sizeof *random_cases; c++) {
        const random_case *rc = &random_cases[c];
        const eplb_shape *s = &rc->shape;
        float *w = malloc(sizeof(float) * s->layers * s->experts);
        eplb_workload_fill(w, s->layers, s->experts, 11 + c, c % 3 == 0 ? 9 : 0);
        eplb_options o;
        eplb_options_init(&o);
        o.candidates = rc->candidates;
        o.iterations = rc->iterations;
        o.seed = c;
        plan want, got;
        cr_assert_eq(plan_host(cpu, w, s, &o, &want), EPLB_OK);
        cr_assert_eq(plan_host(ctx, w, s, &o, &got), EPLB_OK, "case %zu: %s", c,
                     eplb_context_last_error(ctx));
        char what[64];
        snprintf(what, sizeof what, "random case %zu", c);
        assert_same(&want, &got, s, what);
        plan_free(&want);
        plan_free(&got);
        free(w);
    }
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

Test(cuda, scale_case_equals_cpu, .timeout = 1200)
{
    eplb_context *ctx = open_cuda_or_skip();
    eplb_context *cpu = NULL;
    cr_assert_eq(eplb_context_create(&cpu, "cpu"), EPLB_OK);
    const eplb_shape s = {200, 1024, 8192, 16, 16, 1024};
    float *w = malloc(sizeof(float) * s.layers * s.experts);
    eplb_workload_fill(w, s.layers, s.experts, 1, 0);
    plan want, got;
    cr_assert_eq(plan_host(cpu, w, &s, NULL, &want), EPLB_OK);
    cr_assert_eq(plan_host(ctx, w, &s, NULL, &got), EPLB_OK, "%s", eplb_context_last_error(ctx));
    assert_same(&want, &got, &s, "scale case");
    plan_free(&want);
    plan_free(&got);
    free(w);
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

/* ---- device-pointer API through the driver API ------------------------------ */

typedef int (*cu_init_fn)(unsigned);
typedef int (*cu_device_get_fn)(int *, int);
typedef int (*cu_primary_retain_fn)(void **, int);
typedef int (*cu_ctx_set_fn)(void *);
typedef int (*cu_alloc_fn)(unsigned long long *, size_t);
typedef int (*cu_free_fn)(unsigned long long);
typedef int (*cu_htod_fn)(unsigned long long, const void *, size_t);
typedef int (*cu_dtoh_fn)(void *, unsigned long long, size_t);

static struct {
    cu_alloc_fn alloc;
    cu_free_fn free;
    cu_htod_fn htod;
    cu_dtoh_fn dtoh;
} cu;

/* The primary context of device 0: the one the cuda backend uses. */
static void driver_open(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    cr_assert(lib, "libcuda.so.1 not loadable although the cuda backend is available");
    cu_init_fn init = (cu_init_fn)dlsym(lib, "cuInit");
    cu_device_get_fn device_get = (cu_device_get_fn)dlsym(lib, "cuDeviceGet");
    cu_primary_retain_fn retain = (cu_primary_retain_fn)dlsym(lib, "cuDevicePrimaryCtxRetain");
    cu_ctx_set_fn set = (cu_ctx_set_fn)dlsym(lib, "cuCtxSetCurrent");
    cu.alloc = (cu_alloc_fn)dlsym(lib, "cuMemAlloc_v2");
    cu.free = (cu_free_fn)dlsym(lib, "cuMemFree_v2");
    cu.htod = (cu_htod_fn)dlsym(lib, "cuMemcpyHtoD_v2");
    cu.dtoh = (cu_dtoh_fn)dlsym(lib, "cuMemcpyDtoH_v2");
    cr_assert(init && device_get && retain && set && cu.alloc && cu.free && cu.htod && cu.dtoh);
    int device;
    void *context;
    cr_assert_eq(init(0), 0);
    cr_assert_eq(device_get(&device, 0), 0);
    cr_assert_eq(retain(&context, device), 0);
    cr_assert_eq(set(context), 0);
}

static unsigned long long device_copy_of(const void *host, size_t bytes)
{
    unsigned long long d = 0;
    cr_assert_eq(cu.alloc(&d, bytes), 0);
    if (host)
        cr_assert_eq(cu.htod(d, host, bytes), 0);
    return d;
}

/* Plans w on the device; outputs start as -7 and are read back into p. */
static eplb_status plan_device(eplb_context *ctx, const float *w, const eplb_shape *s, plan *p)
{
    p->width = eplb_log2phy_width_max(s);
    const size_t np = s->layers * s->replicas, nc = s->layers * s->experts, nx = nc * p->width;
    p->phy2log = malloc(8 * np);
    p->logcnt = malloc(8 * nc);
    p->log2phy = malloc(8 * nx);
    for (size_t i = 0; i < np; i++) p->phy2log[i] = -7;
    for (size_t i = 0; i < nc; i++) p->logcnt[i] = -7;
    for (size_t i = 0; i < nx; i++) p->log2phy[i] = -7;
    unsigned long long dw = device_copy_of(w, 4 * nc), dp = device_copy_of(p->phy2log, 8 * np);
    unsigned long long dc = device_copy_of(p->logcnt, 8 * nc), dx = device_copy_of(p->log2phy, 8 * nx);
    eplb_status st = eplb_rebalance_device(ctx, (void *)dw, s, NULL, (void *)dp, (void *)dc,
                                           (void *)dx, p->width, NULL);
    if (st == EPLB_OK)
        st = eplb_device_status(ctx, NULL);
    cr_assert_eq(cu.dtoh(p->phy2log, dp, 8 * np), 0);
    cr_assert_eq(cu.dtoh(p->logcnt, dc, 8 * nc), 0);
    cr_assert_eq(cu.dtoh(p->log2phy, dx, 8 * nx), 0);
    cu.free(dw);
    cu.free(dp);
    cu.free(dc);
    cu.free(dx);
    return st;
}

Test(cuda, device_api_equals_cpu_and_repeats, .timeout = 600)
{
    eplb_context *ctx = open_cuda_or_skip();
    driver_open();
    eplb_context *cpu = NULL;
    cr_assert_eq(eplb_context_create(&cpu, "cpu"), EPLB_OK);
    const eplb_shape s = {58, 256, 288, 8, 4, 32};
    float w[58 * 256];
    eplb_workload_fill(w, s.layers, s.experts, 2, 0);
    plan want, first;
    cr_assert_eq(plan_host(cpu, w, &s, NULL, &want), EPLB_OK);
    cr_assert_eq(plan_device(ctx, w, &s, &first), EPLB_OK, "%s", eplb_context_last_error(ctx));
    assert_same(&want, &first, &s, "device API vs cpu");
    for (int i = 0; i < 3; i++) {
        plan again;
        cr_assert_eq(plan_device(ctx, w, &s, &again), EPLB_OK);
        assert_same(&first, &again, &s, "repeated device call");
        plan_free(&again);
    }
    plan_free(&want);
    plan_free(&first);
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

Test(cuda, device_api_invalid_weight_leaves_outputs, .timeout = 600)
{
    eplb_context *ctx = open_cuda_or_skip();
    driver_open();
    const eplb_shape s = {58, 256, 288, 8, 4, 32};
    const float bad[] = {NAN, INFINITY, -1.0f};
    for (int b = 0; b < 3; b++) {
        float w[58 * 256];
        eplb_workload_fill(w, s.layers, s.experts, 2, 0);
        w[57 * 256 + 200] = bad[b]; /* only the last layer is invalid */
        plan p;
        cr_assert_eq(plan_device(ctx, w, &s, &p), EPLB_ERR_INVALID_WEIGHT, "bad value %d", b);
        for (int64_t i = 0; i < s.layers * s.replicas; i++)
            cr_assert_eq(p.phy2log[i], -7, "phy2log[%lld] was written", (long long)i);
        for (int64_t i = 0; i < s.layers * s.experts; i++)
            cr_assert_eq(p.logcnt[i], -7);
        for (int64_t i = 0; i < s.layers * s.experts * p.width; i++)
            cr_assert_eq(p.log2phy[i], -7);
        plan_free(&p);
    }
    eplb_context_free(ctx);
}
