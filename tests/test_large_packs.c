/* Packings with many slots per pack (issue 19, item 7). The cpu backend's
 * swap search sorts the two packs' weights when a pack holds many slots, and
 * stops at once when every pack has the same load; its plans must be those of
 * the SPEC's search over every slot pair, bit for bit.
 *
 * Two checks: plans of large packs against hashes of the plans that the
 * pair-by-pair search made (the code before the sorted search), and random
 * cases of every kind planned by two child processes, one forced to each
 * search (EPLB_TUNE_CPU_SWAP_SEARCH, read when a context is created), which must agree. */
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* FNV-1a over a plan's phy2log and logcnt: log2phy follows from them. */
static uint64_t plan_hash(const eplbt_plan *p)
{
    const eplb_shape *s = &p->shape;
    uint64_t hash = 0xcbf29ce484222325ull;
    const unsigned char *bytes[2] = {(const unsigned char *)p->phy2log,
                                     (const unsigned char *)p->logcnt};
    const size_t sizes[2] = {(size_t)(s->layers * s->replicas) * sizeof(int64_t),
                             (size_t)(s->layers * s->experts) * sizeof(int64_t)};
    for (int part = 0; part < 2; part++)
        for (size_t i = 0; i < sizes[part]; i++)
            hash = (hash ^ bytes[part][i]) * 0x100000001b3ull;
    return hash;
}

/* ---- large packs against the pair-by-pair search's plans ----------------------------- */

enum weight_pattern {
    ISSUE_LOADS,   /* the 2 x 4 input of the issue */
    WORKLOAD,      /* skewed token counts (src/tools/lib/workload.c) */
    SMALL_INTEGERS, /* 0..20: many equal weights and equal changes */
    DENSE,         /* distinct weights a few float32 steps apart: near-ties everywhere */
};

typedef struct large_case {
    const char *name;
    eplb_shape shape;
    enum weight_pattern weights;
    float tolerance;
    uint64_t expected; /* plan_hash of the pair-by-pair search's plan */
} large_case;

static const large_case large_cases[] = {
    {"2 x 4 on one GPU, 16384 slots (equal loads stop the search)", {2, 4, 16384, 1, 1, 1},
     ISSUE_LOADS, 1e-5f, 0xe239839adfef3aa9ull},
    {"2 x 4 on two GPUs, 8192 slots each", {2, 4, 16384, 1, 1, 2},
     ISSUE_LOADS, 1e-5f, 0xbe36180f49667609ull},
    {"workload, 256 experts on 4 GPUs of 1024 slots", {4, 256, 4096, 1, 1, 4},
     WORKLOAD, 1e-5f, 0x506c95d21d7c28d8ull},
    {"4096 groups on 2 nodes: 2048 raw loads per pack", {2, 4096, 4096, 4096, 2, 2},
     WORKLOAD, 1e-5f, 0xefc2d7077aac1049ull},
    {"small integers, 8 GPUs of 256 slots", {3, 512, 2048, 8, 1, 8},
     SMALL_INTEGERS, 1e-5f, 0xfe1793bfe8dd928cull},
    {"small integers, 2 GPUs of 2048 slots, tolerance 0", {2, 64, 4096, 1, 1, 2},
     SMALL_INTEGERS, 0.0f, 0x8c8d35d490fd047dull},
    {"dense weights, 2 GPUs of 1024 slots, tolerance 0", {2, 1024, 2048, 1, 1, 2},
     DENSE, 0.0f, 0xb3867f48c5636985ull},
    {"hierarchical, 4 nodes of 4 GPUs of 512 slots", {2, 512, 8192, 16, 4, 16},
     WORKLOAD, 1e-5f, 0x6a57b776c4cf3ceaull},
};
#define LARGE_CASES (sizeof large_cases / sizeof large_cases[0])

static float *large_case_weight(const large_case *c)
{
    const int64_t L = c->shape.layers, E = c->shape.experts;
    float *weight = malloc((size_t)(L * E) * sizeof *weight);
    cr_assert(weight, "out of memory");
    uint64_t state = 77;
    switch (c->weights) {
    case ISSUE_LOADS: {
        static const float loads[8] = {10, 20, 30, 40, 5, 1, 7, 3};
        memcpy(weight, loads, sizeof loads);
        break;
    }
    case WORKLOAD:
        eplb_workload_fill(weight, L, E, 2026, 9);
        break;
    case SMALL_INTEGERS:
        for (int64_t i = 0; i < L * E; i++) weight[i] = (float)(eplb_workload_next(&state) % 21);
        break;
    case DENSE:
        for (int64_t i = 0; i < L * E; i++)
            weight[i] = 1.0f + (float)(eplb_workload_next(&state) % 4001) * 0x1p-23f;
        break;
    }
    return weight;
}

Test(large_packs, plans_equal_those_of_the_pair_by_pair_search)
{
    eplb_context *ctx = eplbt_context("cpu");
    for (size_t i = 0; i < LARGE_CASES; i++) {
        const large_case *c = &large_cases[i];
        float *weight = large_case_weight(c);
        eplb_options o;
        eplb_options_init(&o);
        o.tolerance = c->tolerance;
        eplbt_plan p;
        eplbt_plan_run(ctx, c->name, weight, &c->shape, &o, &p);
        const uint64_t hash = plan_hash(&p);
        cr_expect_eq(hash, c->expected, "%s: plan hash 0x%016llx, the pair-by-pair search's 0x%016llx",
                     c->name, (unsigned long long)hash, (unsigned long long)c->expected);
        eplbt_plan_free(&p);
        free(weight);
    }
    eplb_context_free(ctx);
}

/* ---- the two searches on random cases -------------------------------------------------- */

#define RANDOM_ROUNDS 12
#define RANDOM_PLANS (RANDOM_ROUNDS * EPLB_RANDOM_KINDS * EPLB_RANDOM_WEIGHT_PATTERNS)

typedef struct hash_sink {
    eplb_context *ctx;
    int fd;
    int round;
} hash_sink;

/* Plans one case with random options and writes its plan's hash (0 when
 * planning failed) to the sink. */
static void write_plan_hash(const eplb_random_case *c, uint64_t *state, void *arg)
{
    hash_sink *sink = arg;
    eplb_options o;
    eplb_options_init(&o);
    o.policy = c->options.policy;
    o.candidates = (int32_t)eplb_random_range(state, 1, 9);
    o.iterations = (int32_t)eplb_random_range(state, 0, 40);
    o.tolerance = eplb_random_range(state, 0, 1) ? 0.0f : 1e-5f;
    o.seed = (uint64_t)(sink->round++ / (EPLB_RANDOM_KINDS * EPLB_RANDOM_WEIGHT_PATTERNS));
    eplbt_plan p;
    const uint64_t hash =
        eplbt_plan_try(sink->ctx, c->weight, &c->shape, &o, &p) == EPLB_OK ? plan_hash(&p) : 0;
    eplbt_plan_free(&p);
    if (write(sink->fd, &hash, sizeof hash) != (ssize_t)sizeof hash)
        _exit(3);
}

/* Plans the random cases with the search named and writes their hashes to fd.
 * Runs in a child process: the search is chosen once per process. */
static void plan_random_cases(const char *search, int fd)
{
    setenv("EPLB_TUNE_CPU_SWAP_SEARCH", search, 1);
    hash_sink sink = {NULL, fd, 0};
    if (eplb_context_create(&sink.ctx, "cpu") != EPLB_OK)
        _exit(2);
    eplbt_for_each_random_case(19, RANDOM_ROUNDS, write_plan_hash, &sink);
    eplb_context_free(sink.ctx);
    _exit(0);
}

/* Forks a child that plans the random cases with the search named; reads
 * their hashes into hashes[RANDOM_PLANS]. */
static void hashes_of(const char *search, uint64_t *hashes)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0, "pipe failed");
    const pid_t child = fork();
    cr_assert_neq(child, -1, "fork failed");
    if (child == 0) {
        close(fds[0]);
        plan_random_cases(search, fds[1]);
    }
    close(fds[1]);
    size_t got = 0;
    const size_t want = RANDOM_PLANS * sizeof *hashes;
    while (got < want) {
        const ssize_t n = read(fds[0], (char *)hashes + got, want - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s child failed (status %d)",
              search, status);
    cr_assert_eq(got, want, "%s child sent %zu of %zu bytes", search, got, want);
}

/* Forced to every pack size, the sorted search meets every kind of packing
 * the random cases hold (two slots a pack included), and ties of every sort. */
Test(large_packs, sorted_search_matches_the_pair_by_pair_search_on_random_cases)
{
    static uint64_t pairs[RANDOM_PLANS], sorted[RANDOM_PLANS];
    hashes_of("pairs", pairs);
    hashes_of("sorted", sorted);
    int failed = 0;
    for (int i = 0; i < RANDOM_PLANS; i++) {
        cr_expect_neq(pairs[i], 0, "random plan %d failed", i);
        if (pairs[i] != sorted[i] && failed++ < 10)
            cr_expect_eq(sorted[i], pairs[i], "random plan %d: the searches disagree", i);
    }
    cr_expect_eq(failed, 0, "%d of %d random plans differ between the searches", failed,
                 RANDOM_PLANS);
}
