/* Contexts created by many threads at once (issue 19, item 2): every thread
 * gets what one thread alone gets (the same backend, device, message and
 * plan), and nothing crashes, however many threads start together.
 *
 * The registry opens a backend once per process, so each round is a fresh
 * child process (tests/child_process.h) whose threads are released by one
 * barrier straight into eplb_context_create. A stand-in module also checks
 * that the registry never runs two creates of a module at once. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child_process.h"
#include "eplb/eplb.h"

enum { THREADS = 16, ROUNDS = 20, MAX_THREADS = 64, CHILD_SECONDS = 120, ROUNDS_SECONDS = 1100 };

/* A small hierarchical case: 2 layers, 8 experts in 4 groups, 16 slots on 2 nodes of 4 GPUs. */
enum { CASE_L = 2, CASE_E = 8, CASE_R = 16 };
static const eplb_shape case_shape = {CASE_L, CASE_E, CASE_R, 4, 2, 4};

typedef struct creator {
    pthread_barrier_t *start;
    const char *backend;
    char outcome[2048]; /* everything a caller can see, as one line */
} creator;

static uint64_t fnv1a(uint64_t hash, const void *data, size_t size)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ull;
    return hash;
}

static void *create_and_plan(void *arg)
{
    creator *c = arg;
    pthread_barrier_wait(c->start);
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, c->backend);
    if (st != EPLB_OK) {
        snprintf(c->outcome, sizeof c->outcome, "create: %s: %s", eplb_status_string(st),
                 eplb_last_error());
        return NULL;
    }
    char skipped[1024]; /* auto's reasons for passing over faster backends */
    snprintf(skipped, sizeof skipped, "%s", eplb_last_error());
    float weight[CASE_L * CASE_E];
    for (int i = 0; i < CASE_L * CASE_E; i++)
        weight[i] = (float)((i * 37) % 11) + 0.5f;
    int64_t phy2log[CASE_L * CASE_R], logcnt[CASE_L * CASE_E];
    st = eplb_rebalance(ctx, weight, &case_shape, NULL, phy2log, logcnt, NULL, 0, NULL);
    uint64_t hash = fnv1a(fnv1a(14695981039346656037ull, phy2log, sizeof phy2log), logcnt,
                          sizeof logcnt);
    snprintf(c->outcome, sizeof c->outcome, "backend %s, device %s, skipped '%s', plan %s %016llx",
             eplb_context_backend(ctx), eplb_context_device(ctx), skipped,
             eplb_status_string(st), (unsigned long long)(st == EPLB_OK ? hash : 0));
    eplb_context_free(ctx);
    return NULL;
}

/* arg "BACKEND THREADS": that many threads create a context at once and plan
 * the small case; all must see the same outcome, which the child reports. */
static int child_together(const char *arg, char *msg, size_t len)
{
    char backend[32];
    int threads = 0;
    if (sscanf(arg, "%31s %d", backend, &threads) != 2 || threads < 1 || threads > MAX_THREADS)
        return say(msg, len, CHILD_FAIL, "bad argument '%s'", arg);
    static creator creators[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        creators[t].start = &start;
        creators[t].backend = backend;
        if (pthread_create(&ids[t], NULL, create_and_plan, &creators[t]) != 0)
            return say(msg, len, CHILD_FAIL, "pthread_create failed");
    }
    for (int t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    pthread_barrier_destroy(&start);
    for (int t = 1; t < threads; t++)
        if (strcmp(creators[t].outcome, creators[0].outcome) != 0)
            return say(msg, len, CHILD_FAIL, "thread 0: %s | thread %d: %s", creators[0].outcome,
                       t, creators[t].outcome);
    return say(msg, len, CHILD_PASS, "%s", creators[0].outcome);
}

/* arg "BACKEND": one thread's outcome, then ROUNDS fresh processes of
 * THREADS threads each, every thread of which must see that same outcome.
 * A child case itself, so that it also runs where Criterion cannot start:
 *   EPLB_TEST_CHILD=rounds EPLB_TEST_CHILD_ARG=auto EPLB_TEST_CHILD_FD=1 test_threads */
static int child_rounds(const char *arg, char *msg, size_t len)
{
    char one[64], many[64];
    snprintf(one, sizeof one, "%s 1", arg);
    snprintf(many, sizeof many, "%s %d", arg, THREADS);
    static child_report alone, round_report;
    alone = in_child(NULL, "together", one, CHILD_SECONDS);
    if (alone.code != CHILD_PASS)
        return say(msg, len, CHILD_FAIL, "%s, one thread: %s", arg, alone.msg);
    for (int round = 0; round < ROUNDS; round++) {
        round_report = in_child(NULL, "together", many, CHILD_SECONDS);
        if (round_report.code != CHILD_PASS || strcmp(round_report.msg, alone.msg) != 0)
            return say(msg, len, CHILD_FAIL, "%s, %d threads, round %d: %s\n  one thread alone: %s",
                       arg, THREADS, round, round_report.msg, alone.msg);
    }
    return say(msg, len, CHILD_PASS, "%d rounds of %d threads: %s", ROUNDS, THREADS, alone.msg);
}

static child_fn find_child_case(const char *name)
{
    if (strcmp(name, "together") == 0)
        return child_together;
    if (strcmp(name, "rounds") == 0)
        return child_rounds;
    return NULL;
}

static void every_round_matches_one_thread(const char *backend, const char *const *env)
{
    child_report r = in_child(env, "rounds", backend, ROUNDS_SECONDS);
    cr_expect(r.code == CHILD_PASS, "%s", r.msg);
}

static const char *const default_env[] = {"EPLB_BACKEND=", NULL};

Test(threads, auto_contexts_created_at_once_match_one_thread, .timeout = 1200)
{
    every_round_matches_one_thread("auto", default_env);
}

Test(threads, opencl_contexts_created_at_once_match_one_thread, .timeout = 1200)
{
    every_round_matches_one_thread("opencl", default_env);
}

Test(threads, cpu_contexts_created_at_once_match_one_thread, .timeout = 1200)
{
    every_round_matches_one_thread("cpu", default_env);
}

/* The stand-in module notes whether two of its creates ever overlapped. */
Test(threads, the_registry_never_runs_two_module_creates_at_once, .timeout = 600)
{
    char dir[64] = "/tmp/eplb-test-threads-XXXXXX", path[4096], env_dir[4200];
    cr_assert(mkdtemp(dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/libeplb_opencl.so", dir);
    cr_assert_eq(symlink(EPLB_STANDIN_MODULE, path), 0, "symlink %s", path);
    snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
    const char *env[] = {env_dir, "EPLB_TEST_STANDIN=racecheck", "EPLB_BACKEND=", NULL};
    char arg[64];
    snprintf(arg, sizeof arg, "opencl %d", THREADS);
    child_report r = in_child(env, "together", arg, CHILD_SECONDS);
    cr_expect(r.code == CHILD_PASS && strstr(r.msg, "every create ran alone"), "%s", r.msg);
    unlink(path);
    rmdir(dir);
}
