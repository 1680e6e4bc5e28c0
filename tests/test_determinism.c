/* Determinism: the same input gives the same plan, byte for byte, across
 * repeated calls, contexts, workspace reuse, OpenMP thread counts and
 * threads planning concurrently on distinct contexts. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

/* ---- the fixed workloads ------------------------------------------------------------ */

typedef struct workload {
    const char *name;
    eplb_shape shape;
    uint64_t weight_seed; /* 0: small integers (many ties) */
    uint64_t plan_seed;
} workload;

static const workload workloads[] = {
    {"v3-like hierarchical", {16, 256, 288, 8, 4, 32}, 11, 0},
    {"v3-like hierarchical, seed 7", {16, 256, 288, 8, 4, 32}, 11, 7},
    {"global (1 group, 2 nodes)", {8, 128, 160, 1, 2, 32}, 12, 0},
    {"ties (weights 0..3)", {12, 64, 96, 8, 2, 16}, 0, 3},
    {"large k, 1 GPU per node", {4, 96, 192, 4, 2, 2}, 13, 0},
};
#define WORKLOADS (sizeof workloads / sizeof workloads[0])

static float *workload_weight(const workload *w)
{
    const int64_t n = w->shape.layers * w->shape.experts;
    float *weight = malloc((size_t)n * sizeof *weight);
    cr_assert(weight);
    if (w->weight_seed) {
        eplb_workload_fill(weight, w->shape.layers, w->shape.experts, w->weight_seed, 9);
    } else {
        uint64_t state = 99;
        for (int64_t i = 0; i < n; i++) weight[i] = (float)(eplb_workload_next(&state) % 4);
    }
    return weight;
}

/* Plans one workload with its options, asserting nothing: the helper process
 * and the threads report a failure their own way. */
static eplb_status plan_workload_try(eplb_context *ctx, const workload *w, eplbt_plan *out)
{
    float *weight = workload_weight(w);
    eplb_options o;
    eplb_options_init(&o);
    o.seed = w->plan_seed;
    const eplb_status st = eplbt_plan_try(ctx, weight, &w->shape, &o, out);
    free(weight);
    return st;
}

static void plan_workload(eplb_context *ctx, const workload *w, eplbt_plan *out)
{
    const eplb_status st = plan_workload_try(ctx, w, out);
    cr_assert_eq(st, EPLB_OK, "%s: eplb_rebalance failed with %s: %s", w->name,
                 eplb_status_string(st), eplb_context_last_error(ctx));
}

static size_t plan_bytes(const eplbt_plan *p)
{
    const size_t L = (size_t)p->shape.layers, E = (size_t)p->shape.experts;
    return (L * (size_t)p->shape.replicas + L * E + L * E * (size_t)p->width) * sizeof(int64_t);
}

/* ---- helper mode: a child process plans every workload and writes it out ---------- */

#define CHILD_OUTPUT_ENV "EPLB_TEST_DETERMINISM_OUTPUT"

static int write_all(int fd, const void *data, size_t bytes)
{
    const char *p = data;
    while (bytes) {
        ssize_t n = write(fd, p, bytes);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        bytes -= (size_t)n;
    }
    return 0;
}

/* Runs before Criterion's main when this executable is started as a helper:
 * writes the OpenMP thread count libeplb will use, then every plan. */
__attribute__((constructor)) static void determinism_child(void)
{
    const char *path = getenv(CHILD_OUTPUT_ENV);
    if (!path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) _exit(2);
    int (*max_threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    int32_t threads = max_threads ? max_threads() : -1;
    if (write_all(fd, &threads, sizeof threads)) _exit(3);
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cpu") != EPLB_OK) _exit(4);
    for (size_t k = 0; k < WORKLOADS; k++) {
        const workload *w = &workloads[k];
        eplbt_plan p;
        if (plan_workload_try(ctx, w, &p) != EPLB_OK)
            _exit(5);
        const size_t L = (size_t)w->shape.layers, E = (size_t)w->shape.experts;
        if (write_all(fd, p.phy2log, L * (size_t)w->shape.replicas * sizeof(int64_t)) ||
            write_all(fd, p.logcnt, L * E * sizeof(int64_t)) ||
            write_all(fd, p.log2phy, L * E * (size_t)p.width * sizeof(int64_t)))
            _exit(6);
        eplbt_plan_free(&p);
    }
    eplb_context_free(ctx);
    close(fd);
    _exit(0);
}

/* Starts this executable as a helper with OMP_NUM_THREADS=threads; returns
 * what it wrote (malloc'ed) and its size. */
static char *run_child(int threads, size_t *size)
{
    char path[] = "/tmp/eplb-determinism-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    close(fd);

    size_t count = 0;
    while (environ[count]) count++;
    char **env = calloc(count + 3, sizeof *env);
    size_t used = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "OMP_NUM_THREADS=", 16) != 0 &&
            strncmp(environ[i], CHILD_OUTPUT_ENV "=", sizeof CHILD_OUTPUT_ENV) != 0)
            env[used++] = environ[i];
    char omp[64], out[128];
    snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d", threads);
    snprintf(out, sizeof out, "%s=%s", CHILD_OUTPUT_ENV, path);
    env[used++] = omp;
    env[used++] = out;
    env[used] = NULL;

    char *argv[] = {"test_determinism", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env);
    free(env);
    cr_assert_eq(rc, 0, "posix_spawn failed: %s", strerror(rc));
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "helper with OMP_NUM_THREADS=%d failed (wait status %d)", threads, status);

    FILE *f = fopen(path, "rb");
    cr_assert(f, "helper output %s missing", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(*size ? *size : 1);
    cr_assert_eq(fread(data, 1, *size, f), *size);
    fclose(f);
    unlink(path);
    return data;
}

/* ---- tests ---------------------------------------------------------------------------- */

Test(determinism, repeated_calls_on_one_context_give_the_same_plan)
{
    eplb_context *ctx = eplbt_context("cpu");
    for (size_t k = 0; k < WORKLOADS; k++) {
        eplbt_plan first;
        plan_workload(ctx, &workloads[k], &first);
        for (int r = 0; r < 3; r++) {
            eplbt_plan again;
            plan_workload(ctx, &workloads[k], &again);
            cr_expect(eplbt_plans_equal(&first, &again), "%s: run %d differs from run 0",
                      workloads[k].name, r + 1);
            eplbt_plan_free(&again);
        }
        eplbt_plan_free(&first);
    }
    eplb_context_free(ctx);
}

Test(determinism, fresh_contexts_and_reused_workspaces_give_the_same_plan)
{
    /* One context per workload, versus one context that plans them all in
     * turn, largest first and then smallest first (workspace reuse). */
    eplbt_plan fresh[WORKLOADS];
    for (size_t k = 0; k < WORKLOADS; k++) {
        eplb_context *ctx = eplbt_context("cpu");
        plan_workload(ctx, &workloads[k], &fresh[k]);
        eplb_context_free(ctx);
    }
    eplb_context *shared = eplbt_context("cpu");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < WORKLOADS; i++) {
            const size_t k = pass == 0 ? i : WORKLOADS - 1 - i;
            eplbt_plan p;
            plan_workload(shared, &workloads[k], &p);
            cr_expect(eplbt_plans_equal(&fresh[k], &p), "%s: reused context (pass %d) differs from a "
                      "fresh one", workloads[k].name, pass);
            eplbt_plan_free(&p);
        }
    eplb_context_free(shared);
    for (size_t k = 0; k < WORKLOADS; k++) eplbt_plan_free(&fresh[k]);
}

Test(determinism, null_options_equal_eplb_options_init_defaults)
{
    eplb_context *ctx = eplbt_context("cpu");
    const workload *w = &workloads[0]; /* plan seed 0: the default */
    float *weight = workload_weight(w);
    eplbt_plan a, b;
    eplbt_plan_run(ctx, "NULL options", weight, &w->shape, NULL, &a);
    plan_workload(ctx, w, &b);
    cr_expect(eplbt_plans_equal(&a, &b), "NULL options planned differently from the defaults");
    eplbt_plan_free(&a);
    eplbt_plan_free(&b);
    free(weight);
    eplb_context_free(ctx);
}

Test(determinism, every_openmp_thread_count_gives_the_same_plan)
{
    /* In-process reference, then helpers started with OMP_NUM_THREADS set. */
    size_t want_size = sizeof(int32_t);
    eplbt_plan ref[WORKLOADS];
    eplb_context *ctx = eplbt_context("cpu");
    for (size_t k = 0; k < WORKLOADS; k++) {
        plan_workload(ctx, &workloads[k], &ref[k]);
        want_size += plan_bytes(&ref[k]);
    }
    eplb_context_free(ctx);

    static const int thread_counts[] = {1, 2, 3, 5, 8};
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        size_t size;
        char *data = run_child(thread_counts[t], &size);
        cr_assert_eq(size, want_size, "OMP_NUM_THREADS=%d: helper wrote %zu bytes, expected %zu",
                     thread_counts[t], size, want_size);
        int32_t threads;
        memcpy(&threads, data, sizeof threads);
        if (threads < 0)
            cr_log_warn("libeplb has no OpenMP runtime: thread counts are not exercised");
        else
            cr_expect_eq(threads, thread_counts[t], "helper ran %d OpenMP threads, asked for %d",
                         threads, thread_counts[t]);
        size_t offset = sizeof threads;
        for (size_t k = 0; k < WORKLOADS; k++) {
            const eplbt_plan *p = &ref[k];
            const size_t L = (size_t)p->shape.layers, E = (size_t)p->shape.experts;
            const size_t sizes[3] = {L * (size_t)p->shape.replicas * sizeof(int64_t),
                                     L * E * sizeof(int64_t), L * E * (size_t)p->width * sizeof(int64_t)};
            const int64_t *arrays[3] = {p->phy2log, p->logcnt, p->log2phy};
            static const char *const names[3] = {"phy2log", "logcnt", "log2phy"};
            for (int a = 0; a < 3; a++) {
                cr_expect_eq(memcmp(data + offset, arrays[a], sizes[a]), 0,
                             "%s: %s with OMP_NUM_THREADS=%d differs from the in-process plan",
                             workloads[k].name, names[a], thread_counts[t]);
                offset += sizes[a];
            }
        }
        free(data);
    }
    for (size_t k = 0; k < WORKLOADS; k++) eplbt_plan_free(&ref[k]);
}

/* ---- concurrent contexts --------------------------------------------------------------- */

#define THREADS 4
#define ROUNDS 3

typedef struct worker {
    int index;
    eplbt_plan plans[ROUNDS][WORKLOADS];
    int failed;
    char error[256];
} worker;

static void *plan_concurrently(void *arg)
{
    worker *me = arg;
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cpu") != EPLB_OK) {
        snprintf(me->error, sizeof me->error, "context: %s", eplb_last_error());
        me->failed = 1;
        return NULL;
    }
    for (int r = 0; r < ROUNDS && !me->failed; r++)
        for (size_t i = 0; i < WORKLOADS; i++) {
            /* Each thread walks the workloads from a different start. */
            const size_t k = (i + (size_t)me->index) % WORKLOADS;
            const workload *w = &workloads[k];
            if (plan_workload_try(ctx, w, &me->plans[r][k]) != EPLB_OK) {
                snprintf(me->error, sizeof me->error, "%s: %s", w->name,
                         eplb_context_last_error(ctx));
                me->failed = 1;
                break;
            }
        }
    eplb_context_free(ctx);
    return NULL;
}

Test(determinism, distinct_contexts_on_concurrent_threads_give_the_sequential_plans)
{
    eplbt_plan ref[WORKLOADS];
    eplb_context *ctx = eplbt_context("cpu");
    for (size_t k = 0; k < WORKLOADS; k++) plan_workload(ctx, &workloads[k], &ref[k]);
    eplb_context_free(ctx);

    worker *workers = calloc(THREADS, sizeof *workers);
    pthread_t tid[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t].index = t;
        cr_assert_eq(pthread_create(&tid[t], NULL, plan_concurrently, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        cr_expect(!workers[t].failed, "thread %d failed: %s", t, workers[t].error);
        if (workers[t].failed) continue;
        for (int r = 0; r < ROUNDS; r++)
            for (size_t k = 0; k < WORKLOADS; k++) {
                cr_expect(eplbt_plans_equal(&ref[k], &workers[t].plans[r][k]),
                          "thread %d round %d: %s differs from the sequential plan", t, r,
                          workloads[k].name);
                eplbt_plan_free(&workers[t].plans[r][k]);
            }
    }
    free(workers);
    for (size_t k = 0; k < WORKLOADS; k++) eplbt_plan_free(&ref[k]);
}
