/* eplb_rebalance_incremental and eplb_count_moves (docs/spec.md section 13):
 * the fixtures of the numpy reference (tests/incremental_reference) bit for
 * bit on cpu and opencl, hand cases, random cases checked against the
 * section's promises, and every refusal of 13.1 with the outputs untouched. */
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drift.h"
#include "harness.h"
/* The relabelled fresh plan of SPEC 13.4, whose moves bound the result's:
 * the library keeps it internal, so the suite compiles its own copy. */
#include "../src/incremental_relabel.c"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

#define GUARD ((int64_t)0x5A5A5A5A5A5A5A5AULL)

/* ---- helpers ------------------------------------------------------------------ */

static int64_t *alloc_i64(size_t n)
{
    int64_t *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert(p, "out of memory");
    return p;
}

/* SPEC 13.2's largest GPU load of layer l (drift.h). */
static float max_gpu_load(const float *weight, const eplb_shape *s, const int64_t *plan, int64_t l)
{
    return eplb_layer_peak_load(weight + l * s->experts, plan + l * s->replicas, s->experts,
                                s->replicas, s->gpus);
}

/* The outputs agree with phy2log: logcnt counts it, every expert has a slot,
 * log2phy lists each expert's slots in ascending order then -1, and
 * width_needed is the largest count. */
static void check_outputs(const char *label, const eplb_shape *s, const eplbt_plan *p)
{
    const int64_t L = s->layers, E = s->experts, R = s->replicas, X = p->width;
    int64_t widest = 0;
    for (int64_t l = 0; l < L; l++)
        for (int64_t e = 0; e < E; e++) {
            const int64_t *row = p->log2phy + (l * E + e) * X;
            int64_t n = 0, last = -1;
            for (int64_t q = 0; q < R; q++)
                if (p->phy2log[l * R + q] == e) {
                    cr_assert(n < X && row[n] == q, "%s: log2phy[%lld][%lld][%lld] is not slot %lld",
                              label, (long long)l, (long long)e, (long long)n, (long long)q);
                    cr_assert(q > last);
                    last = q;
                    n++;
                }
            cr_assert(n >= 1, "%s: expert %lld has no slot in layer %lld", label, (long long)e,
                      (long long)l);
            cr_assert_eq(p->logcnt[l * E + e], n, "%s: logcnt[%lld][%lld]", label, (long long)l,
                         (long long)e);
            for (int64_t k = n; k < X; k++)
                cr_assert_eq(row[k], -1, "%s: log2phy padding", label);
            if (n > widest)
                widest = n;
        }
    cr_assert_eq(p->width_needed, widest, "%s: width_needed", label);
}

static eplb_status run_incremental(eplb_context *ctx, const float *w, const eplb_shape *s,
                                   const eplb_options *o, const int64_t *previous, eplbt_plan *p)
{
    eplbt_plan_alloc(p, s, eplb_log2phy_width_max(s));
    return eplb_rebalance_incremental(ctx, w, s, o, previous, p->phy2log, p->logcnt, p->log2phy,
                                      p->width, &p->width_needed);
}

static eplb_moves count_moves(const eplb_shape *s, const int64_t *before, const int64_t *after)
{
    eplb_moves m;
    eplb_moves_init(&m);
    const eplb_status st = eplb_count_moves(s, before, after, &m);
    cr_assert_eq(st, EPLB_OK, "eplb_count_moves: %s", eplb_last_error());
    return m;
}

/* ---- the reference's fixtures ------------------------------------------------- */

#ifdef EPLB_TOOLS_HAVE_JSON
typedef struct fixture {
    const char *name;
    eplb_shape shape;
    eplb_options options;
    float *weight;
    int64_t *previous, *fresh, *incremental;
    eplb_moves stats;
} fixture;

static void read_matrix(json_t *rows, int64_t *out, int64_t n_rows, int64_t n_cols)
{
    cr_assert(json_is_array(rows) && (int64_t)json_array_size(rows) == n_rows);
    for (int64_t i = 0; i < n_rows; i++) {
        json_t *row = json_array_get(rows, (size_t)i);
        cr_assert(json_is_array(row) && (int64_t)json_array_size(row) == n_cols);
        for (int64_t j = 0; j < n_cols; j++)
            out[i * n_cols + j] = (int64_t)json_number_value(json_array_get(row, (size_t)j));
    }
}

static void fixture_read(json_t *c, fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->name = json_string_value(json_object_get(c, "name"));
    json_t *shape = json_object_get(c, "shape"), *weight = json_object_get(c, "weight");
    const int64_t L = (int64_t)json_array_size(weight);
    const int64_t E = (int64_t)json_array_size(json_array_get(weight, 0));
    fx->shape = (eplb_shape){L, E, json_integer_value(json_object_get(shape, "replicas")),
                             json_integer_value(json_object_get(shape, "groups")),
                             json_integer_value(json_object_get(shape, "nodes")),
                             json_integer_value(json_object_get(shape, "gpus"))};
    eplb_options_init(&fx->options);
    const char *policy = json_string_value(json_object_get(c, "policy"));
    fx->options.policy = strcmp(policy, "global") == 0         ? EPLB_POLICY_GLOBAL
                         : strcmp(policy, "hierarchical") == 0 ? EPLB_POLICY_HIERARCHICAL
                                                               : EPLB_POLICY_AUTO;
    const int64_t R = fx->shape.replicas;
    fx->weight = malloc((size_t)(L * E) * sizeof *fx->weight);
    cr_assert(fx->weight);
    for (int64_t l = 0; l < L; l++)
        for (int64_t e = 0; e < E; e++)
            fx->weight[l * E + e] = (float)json_number_value(
                json_array_get(json_array_get(weight, (size_t)l), (size_t)e));
    fx->previous = alloc_i64((size_t)(L * R));
    fx->fresh = alloc_i64((size_t)(L * R));
    fx->incremental = alloc_i64((size_t)(L * R));
    read_matrix(json_object_get(c, "previous"), fx->previous, L, R);
    read_matrix(json_object_get(c, "fresh"), fx->fresh, L, R);
    read_matrix(json_object_get(c, "incremental"), fx->incremental, L, R);
    json_t *stats = json_object_get(c, "stats"), *cross = json_object_get(stats, "cross_node_moves");
    fx->stats.moved_slots = json_integer_value(json_object_get(stats, "moved_slots"));
    fx->stats.max_moved_per_gpu = json_integer_value(json_object_get(stats, "max_moved_per_gpu"));
    fx->stats.cross_node_moves = json_is_null(cross) ? -1 : json_integer_value(cross);
}

static void fixture_free(fixture *fx)
{
    free(fx->weight);
    free(fx->previous);
    free(fx->fresh);
    free(fx->incremental);
}

static json_t *fixtures_load(void)
{
    json_error_t err;
    json_t *root = json_load_file(EPLB_INCREMENTAL_FIXTURES, 0, &err);
    cr_assert(root, "%s: %s", EPLB_INCREMENTAL_FIXTURES, err.text);
    json_t *cases = json_object_get(root, "cases");
    cr_assert(json_is_array(cases) && json_array_size(cases) > 0);
    return root;
}
#endif

/* Every fixture on ctx gives the reference's incremental plan and figures;
 * with cpu given as well, the same bits as the cpu backend. */
static void check_fixtures(eplb_context *ctx, eplb_context *cpu)
{
#ifdef EPLB_TOOLS_HAVE_JSON
    json_t *root = fixtures_load(), *cases = json_object_get(root, "cases");
    for (size_t i = 0; i < json_array_size(cases); i++) {
        fixture fx;
        fixture_read(json_array_get(cases, i), &fx);
        const eplb_shape *s = &fx.shape;
        const size_t LR = (size_t)(s->layers * s->replicas);
        eplbt_plan fresh, got;
        eplbt_plan_run(ctx, fx.name, fx.weight, s, &fx.options, &fresh);
        cr_assert(memcmp(fresh.phy2log, fx.fresh, LR * sizeof(int64_t)) == 0,
                  "%s: the fresh plan differs from the fixture's (the planner changed?)", fx.name);
        const eplb_status st = run_incremental(ctx, fx.weight, s, &fx.options, fx.previous, &got);
        cr_assert_eq(st, EPLB_OK, "%s: %s", fx.name, eplb_context_last_error(ctx));
        cr_expect(memcmp(got.phy2log, fx.incremental, LR * sizeof(int64_t)) == 0,
                  "%s: the incremental plan differs from the reference's", fx.name);
        check_outputs(fx.name, s, &got);
        const eplb_moves m = count_moves(s, fx.previous, got.phy2log);
        cr_expect_eq(m.moved_slots, fx.stats.moved_slots, "%s: moved_slots", fx.name);
        cr_expect_eq(m.max_moved_per_gpu, fx.stats.max_moved_per_gpu, "%s: max_moved_per_gpu",
                     fx.name);
        cr_expect_eq(m.cross_node_moves, fx.stats.cross_node_moves, "%s: cross_node_moves",
                     fx.name);
        if (cpu) {
            eplbt_plan want;
            cr_assert_eq(run_incremental(cpu, fx.weight, s, &fx.options, fx.previous, &want),
                         EPLB_OK);
            cr_expect(eplbt_plans_equal(&got, &want), "%s: the %s plan differs from cpu", fx.name,
                      eplb_context_backend(ctx));
            eplbt_plan_free(&want);
        }
        eplbt_plan_free(&fresh);
        eplbt_plan_free(&got);
        fixture_free(&fx);
    }
    json_decref(root);
#else
    (void)ctx;
    (void)cpu;
    cr_skip_test("built without jansson: the fixtures are JSON");
#endif
}

Test(incremental, fixtures_match_the_reference_on_cpu, .timeout = 120)
{
    eplb_context *cpu = eplbt_context("cpu");
    check_fixtures(cpu, NULL);
    eplb_context_free(cpu);
}

Test(incremental, fixtures_on_opencl_equal_cpu, .timeout = 600)
{
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "opencl") != EPLB_OK)
        cr_skip_test("opencl backend unavailable: %s", eplb_last_error());
    eplb_context *cpu = eplbt_context("cpu");
    check_fixtures(ctx, cpu);
    eplb_context_free(cpu);
    eplb_context_free(ctx);
}

/* ---- hand cases ---------------------------------------------------------------- */

Test(incremental, previous_of_the_same_loads_moves_nothing)
{
    const eplb_shape shapes[] = {{4, 256, 288, 8, 4, 32}, {3, 256, 320, 8, 8, 64},
                                 {2, 64, 80, 4, 2, 8}};
    const eplb_policy policies[] = {EPLB_POLICY_AUTO, EPLB_POLICY_GLOBAL, EPLB_POLICY_AUTO};
    eplb_context *cpu = eplbt_context("cpu");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const eplb_shape *s = &shapes[i];
        eplb_options o;
        float *w = eplbt_workload_case(s, 7 + i, 0, 8, 20, 0, &o);
        o.policy = policies[i];
        eplbt_plan prev, got;
        eplbt_plan_run(cpu, "previous", w, s, &o, &prev);
        cr_assert_eq(run_incremental(cpu, w, s, &o, prev.phy2log, &got), EPLB_OK, "%s",
                     eplb_context_last_error(cpu));
        const eplb_moves m = count_moves(s, prev.phy2log, got.phy2log);
        cr_expect_eq(m.moved_slots, 0, "shape %zu moved %lld slots", i, (long long)m.moved_slots);
        /* phy2log only: log2phy lists replicas by rank in a fresh plan (SPEC
         * 4.4) but by slot in an incremental one (SPEC 13.6). */
        cr_expect(memcmp(prev.phy2log, got.phy2log,
                         (size_t)(s->layers * s->replicas) * sizeof(int64_t)) == 0,
                  "shape %zu: not the previous plan", i);
        eplbt_plan_free(&prev);
        eplbt_plan_free(&got);
        free(w);
    }
    eplb_context_free(cpu);
}

Test(incremental, moves_count_multisets_per_gpu_and_new_experts_per_node)
{
    /* Two nodes of two GPUs, two slots per GPU. Layer 0: GPU 0 reorders
     * (nothing moves), GPU 1 gets expert 0, GPU 2 gets 3, GPU 3 a second 2;
     * only 3 is new on its node. Layer 1: GPUs 0 and 1 trade everything
     * inside node 0. */
    const eplb_shape s = {2, 4, 8, 2, 2, 4};
    const int64_t before[] = {0, 1, 2, 3, 0, 0, 1, 2, /**/ 0, 1, 2, 3, 0, 0, 1, 2};
    const int64_t after[] = {1, 0, 0, 3, 0, 3, 2, 2, /**/ 2, 3, 0, 1, 0, 0, 1, 2};
    const eplb_moves m = count_moves(&s, before, after);
    cr_expect_eq(m.moved_slots, 7);
    cr_expect_eq(m.max_moved_per_gpu, 3); /* GPU 1: 1 + 2 */
    cr_expect_eq(m.cross_node_moves, 1);
    const eplb_moves none = count_moves(&s, before, before);
    cr_expect(none.moved_slots == 0 && none.max_moved_per_gpu == 0 && none.cross_node_moves == 0);
    /* Three GPUs do not split over two nodes: no cross-node figure. */
    const eplb_shape odd = {1, 3, 6, 1, 2, 3};
    const int64_t b2[] = {0, 1, 2, 0, 1, 2}, a2[] = {2, 1, 0, 0, 1, 2};
    const eplb_moves m2 = count_moves(&odd, b2, a2);
    cr_expect_eq(m2.moved_slots, 2);
    cr_expect_eq(m2.max_moved_per_gpu, 1);
    cr_expect_eq(m2.cross_node_moves, -1);
}

/* ---- random cases ------------------------------------------------------------- */

/* A running placement that eplb would not make: every expert once, the other
 * slots random, all shuffled (SGLang's maps need not follow the nodes). */
static void random_cover(uint64_t *st, const eplb_shape *s, int64_t *prev)
{
    const int64_t E = s->experts, R = s->replicas;
    for (int64_t l = 0; l < s->layers; l++) {
        int64_t *row = prev + l * R;
        for (int64_t q = 0; q < R; q++)
            row[q] = q < E ? q : eplb_random_range(st, 0, E - 1);
        for (int64_t q = R - 1; q > 0; q--) {
            const int64_t j = eplb_random_range(st, 0, q), t = row[q];
            row[q] = row[j];
            row[j] = t;
        }
    }
}

/* Experts that arrive on a node in `after` belong to groups that had no
 * expert there in `before` (SPEC 13.6: an expert changes node only with its
 * group), for a hierarchical before. */
static void check_no_cross_node_move(const char *label, const eplb_shape *s, const int64_t *before,
                                     const int64_t *after)
{
    const int64_t R = s->replicas, rn = R / s->nodes, group = s->experts / s->groups;
    char *seen = malloc((size_t)s->experts), *group_seen = malloc((size_t)s->groups);
    cr_assert(seen && group_seen);
    for (int64_t l = 0; l < s->layers; l++)
        for (int64_t n = 0; n < s->nodes; n++) {
            memset(seen, 0, (size_t)s->experts);
            memset(group_seen, 0, (size_t)s->groups);
            for (int64_t q = l * R + n * rn; q < l * R + (n + 1) * rn; q++) {
                seen[before[q]] = 1;
                group_seen[before[q] / group] = 1;
            }
            for (int64_t q = l * R + n * rn; q < l * R + (n + 1) * rn; q++)
                cr_assert(seen[after[q]] || !group_seen[after[q] / group],
                          "%s: layer %lld: expert %lld arrives on node %lld where its group was",
                          label, (long long)l, (long long)after[q], (long long)n);
        }
    free(seen);
    free(group_seen);
}

/* The moves of each layer are at most those of the relabelled fresh plan. */
static void check_moves_bounded(const char *label, const eplb_shape *s, int hierarchical,
                                const int64_t *prev, const int64_t *fresh, const int64_t *got)
{
    const int64_t R = s->replicas, domains = hierarchical ? s->nodes : 1;
    const eplb_layer_geometry g = {s->experts, R, s->gpus, R / s->gpus, domains, R / domains,
                                   s->gpus / domains};
    eplb_incremental_scratch scratch;
    cr_assert(eplb_incremental_scratch_alloc(&scratch, &g, 0));
    int64_t *rel = alloc_i64((size_t)R);
    const eplb_shape one = {1, s->experts, R, s->groups, s->nodes, s->gpus};
    for (int64_t l = 0; l < s->layers; l++) {
        eplb_relabel_layer(prev + l * R, fresh + l * R, &g, &scratch, rel, scratch.fresh_moves);
        const eplb_moves bound = count_moves(&one, prev + l * R, rel);
        /* The relabelling's own count of rel's moves, domain by domain. */
        int64_t counted = 0;
        for (int64_t d = 0; d < domains; d++)
            counted += scratch.fresh_moves[d];
        cr_expect(counted == bound.moved_slots,
                  "%s: layer %lld: the relabelling counts %lld moves, eplb_count_moves %lld",
                  label, (long long)l, (long long)counted, (long long)bound.moved_slots);
        const eplb_moves m = count_moves(&one, prev + l * R, got + l * R);
        cr_expect(m.moved_slots <= bound.moved_slots,
                  "%s: layer %lld moves %lld slots, the relabelled fresh plan %lld", label,
                  (long long)l, (long long)m.moved_slots, (long long)bound.moved_slots);
    }
    free(rel);
    eplb_incremental_scratch_free(&scratch);
}

Test(incremental, random_cases_keep_the_promises_of_section_13, .timeout = 300)
{
    eplb_context *cpu = eplbt_context("cpu");
    uint64_t st = 18;
    for (uint64_t i = 0; i < 6 * EPLB_RANDOM_KINDS * EPLB_RANDOM_WEIGHT_PATTERNS; i++) {
        eplb_random_case c;
        cr_assert_eq(eplb_random_case_make(18, i, &c), EPLB_OK);
        const eplb_shape *s = &c.shape;
        const size_t LR = (size_t)(s->layers * s->replicas);
        const int cover = i % 3 == 2;
        c.options.slack = i % 2 ? 0.1f : 0.0f;
        int64_t *prev = alloc_i64(LR);
        if (cover)
            random_cover(&st, s, prev);
        else
            cr_assert_eq(eplb_drifted_previous(cpu, c.weight, s, &c.options, i, 0.5, prev),
                         EPLB_OK, "%s: %s", c.name, eplb_context_last_error(cpu));
        eplbt_plan fresh, got;
        eplbt_plan_run(cpu, c.name, c.weight, s, &c.options, &fresh);
        const eplb_status status = run_incremental(cpu, c.weight, s, &c.options, prev, &got);
        cr_assert_eq(status, EPLB_OK, "%s: %s", c.name, eplb_context_last_error(cpu));
        check_outputs(c.name, s, &got);
        const float factor = 1.0f + c.options.slack;
        for (int64_t l = 0; l < s->layers; l++) {
            const float bound = max_gpu_load(c.weight, s, fresh.phy2log, l) * factor;
            const float load = max_gpu_load(c.weight, s, got.phy2log, l);
            cr_expect(load <= bound, "%s: layer %lld's largest GPU load %g exceeds %g", c.name,
                      (long long)l, (double)load, (double)bound);
        }
        const int hierarchical = eplb_plan_is_hierarchical(s, c.options.policy);
        if (hierarchical && !cover)
            check_no_cross_node_move(c.name, s, prev, got.phy2log);
        check_moves_bounded(c.name, s, hierarchical, prev, fresh.phy2log, got.phy2log);
        eplbt_plan_free(&fresh);
        eplbt_plan_free(&got);
        free(prev);
        eplb_random_case_free(&c);
    }
    eplb_context_free(cpu);
}

/* The hashes of the incremental plans of random cases (drifted or random
 * running plans, slack 0 and 0.05) under the cpu backend's knob value
 * `stages`, planned in a child (the knobs are read once per process) and
 * sent back through a pipe: hashes[BATCHED_CASES], 0 for a failed plan. */
enum { BATCHED_CASES = 4 * EPLB_RANDOM_KINDS * EPLB_RANDOM_WEIGHT_PATTERNS };

static void incremental_hashes(const char *stages, uint64_t *hashes)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0, "pipe failed");
    const pid_t child = fork();
    cr_assert_neq(child, -1, "fork failed");
    if (child == 0) {
        close(fds[0]);
        setenv("EPLB_TUNE_CPU_STAGES", stages, 1);
        eplb_context *cpu;
        if (eplb_context_create(&cpu, "cpu") != EPLB_OK)
            _exit(2);
        uint64_t st = 41;
        for (uint64_t i = 0; i < BATCHED_CASES; i++) {
            eplb_random_case c;
            if (eplb_random_case_make(41, i, &c) != EPLB_OK)
                _exit(3);
            const eplb_shape *s = &c.shape;
            const size_t LR = (size_t)(s->layers * s->replicas);
            c.options.slack = i % 2 ? 0.05f : 0.0f;
            int64_t *prev = malloc(LR * sizeof *prev), *plan = malloc(LR * sizeof *plan);
            int64_t *counts = malloc((size_t)(s->layers * s->experts) * sizeof *counts);
            if (!prev || !plan || !counts)
                _exit(4);
            uint64_t hash = 0;
            if (i % 3 == 2)
                random_cover(&st, s, prev);
            else if (eplb_drifted_previous(cpu, c.weight, s, &c.options, i, 0.3, prev) != EPLB_OK)
                _exit(5);
            if (eplb_rebalance_incremental(cpu, c.weight, s, &c.options, prev, plan, counts, NULL,
                                           0, NULL) == EPLB_OK) {
                hash = 1469598103934665603ULL;
                const unsigned char *bytes = (const unsigned char *)plan;
                for (size_t k = 0; k < LR * sizeof *plan; k++)
                    hash = (hash ^ bytes[k]) * 1099511628211ULL;
            }
            if (write(fds[1], &hash, sizeof hash) != (ssize_t)sizeof hash)
                _exit(6);
            free(prev);
            free(plan);
            free(counts);
            eplb_random_case_free(&c);
        }
        eplb_context_free(cpu);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    const size_t want = BATCHED_CASES * sizeof *hashes;
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
              stages, status);
    cr_assert_eq(got, want, "%s child sent %zu of %zu bytes", stages, got, want);
}

/* The batched plan (every search of a call in one batch, the path of a
 * backend with domain_searches, here the cpu backend's separate stages,
 * whose batches the library runs on the host) plans what the layer-by-layer
 * plan does: it runs anchored searches that the choice may not need. */
Test(incremental, batched_searches_plan_as_layer_by_layer, .timeout = 300)
{
    static uint64_t layered[BATCHED_CASES], batched[BATCHED_CASES];
    incremental_hashes("fused", layered);
    incremental_hashes("separate", batched);
    int failed = 0;
    for (int i = 0; i < BATCHED_CASES; i++) {
        cr_expect_neq(layered[i], 0, "random case %d failed", i);
        if (layered[i] != batched[i] && failed++ < 10)
            cr_expect_eq(batched[i], layered[i], "random case %d: the plans differ", i);
    }
    cr_expect_eq(failed, 0, "%d of %d incremental plans differ between the paths", failed,
                 BATCHED_CASES);
}

Test(incremental, refined_fresh_plan_sets_the_target)
{
    const eplb_shape s = {3, 64, 80, 4, 2, 8};
    eplb_options o;
    float *w = eplbt_workload_case(&s, 3, 0, 8, 20, 0, &o);
    int64_t *prev = alloc_i64((size_t)(s.layers * s.replicas));
    eplb_context *cpu = eplbt_context("cpu");
    cr_assert_eq(eplb_drifted_previous(cpu, w, &s, &o, 5, 0.3, prev), EPLB_OK);
    o.refine = 16;
    eplbt_plan fresh, got;
    eplbt_plan_run(cpu, "refined", w, &s, &o, &fresh);
    cr_assert_eq(run_incremental(cpu, w, &s, &o, prev, &got), EPLB_OK, "%s",
                 eplb_context_last_error(cpu));
    for (int64_t l = 0; l < s.layers; l++)
        cr_expect(max_gpu_load(w, &s, got.phy2log, l) <= max_gpu_load(w, &s, fresh.phy2log, l));
    eplbt_plan_free(&fresh);
    eplbt_plan_free(&got);
    eplb_context_free(cpu);
    free(prev);
    free(w);
}

/* ---- refusals ------------------------------------------------------------------ */

typedef struct guarded {
    eplbt_plan plan;
    int64_t width_needed;
} guarded;

static void guard_fill(guarded *g, const eplb_shape *s)
{
    eplbt_plan_alloc(&g->plan, s, eplb_log2phy_width_max(s));
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    for (size_t i = 0; i < L * R; i++) g->plan.phy2log[i] = GUARD;
    for (size_t i = 0; i < L * E; i++) g->plan.logcnt[i] = GUARD;
    for (size_t i = 0; i < L * E * (size_t)g->plan.width; i++) g->plan.log2phy[i] = GUARD;
    g->width_needed = GUARD;
}

static void expect_untouched(const char *rule, const guarded *g, const eplb_shape *s)
{
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    for (size_t i = 0; i < L * R; i++) cr_assert_eq(g->plan.phy2log[i], GUARD, "%s: phy2log", rule);
    for (size_t i = 0; i < L * E; i++) cr_assert_eq(g->plan.logcnt[i], GUARD, "%s: logcnt", rule);
    for (size_t i = 0; i < L * E * (size_t)g->plan.width; i++)
        cr_assert_eq(g->plan.log2phy[i], GUARD, "%s: log2phy", rule);
}

/* One refused call: its status, a message naming the rule, outputs as they were. */
static void expect_refused(eplb_context *ctx, const char *rule, const float *w, const eplb_shape *s,
                           const eplb_options *o, const int64_t *prev, eplb_status want,
                           const char *message_part)
{
    guarded g;
    guard_fill(&g, s);
    const eplb_status st = eplb_rebalance_incremental(ctx, w, s, o, prev, g.plan.phy2log,
                                                      g.plan.logcnt, g.plan.log2phy, g.plan.width,
                                                      &g.width_needed);
    const char *why = ctx ? eplb_context_last_error(ctx) : eplb_last_error();
    cr_expect_eq(st, want, "%s: got %s (%s)", rule, eplb_status_string(st), why);
    cr_expect(strstr(why, message_part), "%s: message '%s' lacks '%s'", rule, why, message_part);
    cr_expect_eq(g.width_needed, GUARD, "%s: width_needed", rule);
    expect_untouched(rule, &g, s);
    eplbt_plan_free(&g.plan);
}

/* A running plan large enough to be checked by the threads, each with its
 * own layers: of several broken layers, the first one's rule is reported,
 * whichever thread finds it. */
Test(incremental, first_broken_layer_reported_when_checked_in_parallel)
{
    const eplb_shape s = {16, 64, 256, 8, 2, 16};
    eplb_options o;
    float *w = eplbt_workload_case(&s, 1, 0, 4, 10, 0, &o);
    eplb_context *cpu = eplbt_context("cpu");
    const int64_t R = s.replicas;
    int64_t *prev = malloc((size_t)(s.layers * R) * sizeof *prev);
    int64_t *bad = malloc((size_t)(s.layers * R) * sizeof *bad);
    cr_assert(prev && bad);
    cr_assert_eq(eplb_drifted_previous(cpu, w, &s, &o, 2, 0.5, prev), EPLB_OK);
    memcpy(bad, prev, (size_t)(s.layers * R) * sizeof *bad);
    bad[13 * R + 4] = 64; /* past the experts, in a late layer */
    for (int64_t q = 9 * R; q < 10 * R; q++)
        if (bad[q] == 5) /* layer 9 loses expert 5 */
            bad[q] = 6;
    expect_refused(cpu, "layers 9 and 13 broken", w, &s, &o, bad, EPLB_ERR_INVALID_ARGUMENT,
                   "previous layer 9 has no slot for expert 5");
    bad[2 * R + 7] = -3;
    expect_refused(cpu, "layers 2, 9 and 13 broken", w, &s, &o, bad, EPLB_ERR_INVALID_ARGUMENT,
                   "previous[2][7] = -3 is not an expert (0..63)");
    free(prev);
    free(bad);
    eplb_context_free(cpu);
    free(w);
}

Test(incremental, each_rule_of_13_1_refused_with_outputs_untouched)
{
    const eplb_shape s = {2, 8, 12, 2, 2, 4};
    eplb_options o;
    float *w = eplbt_workload_case(&s, 1, 0, 4, 10, 0, &o);
    eplb_context *cpu = eplbt_context("cpu");
    int64_t prev[24], bad[24];
    cr_assert_eq(eplb_drifted_previous(cpu, w, &s, &o, 2, 0.5, prev), EPLB_OK);

    expect_refused(NULL, "no context", w, &s, &o, prev, EPLB_ERR_INVALID_ARGUMENT, "context");
    expect_refused(cpu, "previous NULL", w, &s, &o, NULL, EPLB_ERR_INVALID_ARGUMENT, "previous");
    memcpy(bad, prev, sizeof bad);
    bad[12 + 3] = -1;
    expect_refused(cpu, "negative entry", w, &s, &o, bad, EPLB_ERR_INVALID_ARGUMENT,
                   "previous[1][3] = -1 is not an expert (0..7)");
    memcpy(bad, prev, sizeof bad);
    bad[5] = 8;
    expect_refused(cpu, "entry past the experts", w, &s, &o, bad, EPLB_ERR_INVALID_ARGUMENT,
                   "previous[0][5] = 8");
    /* Layer 1 loses expert 6: its slots take expert 7. */
    memcpy(bad, prev, sizeof bad);
    for (int q = 12; q < 24; q++)
        if (bad[q] == 6)
            bad[q] = 7;
    expect_refused(cpu, "expert without a slot", w, &s, &o, bad, EPLB_ERR_INVALID_ARGUMENT,
                   "previous layer 1 has no slot for expert 6");

    eplb_options x = o;
    x.distinct = 1;
    expect_refused(cpu, "distinct", w, &s, &x, prev, EPLB_ERR_UNSUPPORTED, "distinct");
    const float slacks[] = {-0.5f, NAN, INFINITY};
    for (int i = 0; i < 3; i++) {
        x = o;
        x.slack = slacks[i];
        expect_refused(cpu, "slack", w, &s, &x, prev, EPLB_ERR_INVALID_ARGUMENT, "slack");
    }
    x = o;
    x.struct_size = 3;
    expect_refused(cpu, "options not initialised", w, &s, &x, prev, EPLB_ERR_INVALID_ARGUMENT,
                   "eplb_options_init");
    const eplb_shape odd_nodes = {2, 8, 12, 2, 3, 4};
    x = o;
    x.policy = EPLB_POLICY_HIERARCHICAL;
    expect_refused(cpu, "policy", w, &odd_nodes, &x, prev, EPLB_ERR_POLICY, "hierarchical");
    const eplb_shape bad_shape = {2, 8, 12, 2, 2, 5};
    expect_refused(cpu, "shape", w, &bad_shape, &o, prev, EPLB_ERR_INVALID_SHAPE, "divisible");
    const float saved = w[9];
    w[9] = NAN;
    expect_refused(cpu, "weight", w, &s, &o, prev, EPLB_ERR_INVALID_WEIGHT, "weight[1][1]");
    w[9] = saved;
    /* The search runs on the host for every backend and reads the cpu knobs
     * (cpu_knobs.c): a value they do not take is refused here too, though
     * the context was made before it was set. */
    setenv("EPLB_CPU_ISA", "bogus", 1);
    expect_refused(cpu, "EPLB_CPU_ISA", w, &s, &o, prev, EPLB_ERR_INVALID_ARGUMENT,
                   "EPLB_CPU_ISA='bogus'");
    unsetenv("EPLB_CPU_ISA");

    /* A too-narrow log2phy: refused after planning, with the width needed. */
    guarded g;
    guard_fill(&g, &s);
    const eplb_status st = eplb_rebalance_incremental(cpu, w, &s, &o, prev, g.plan.phy2log,
                                                      g.plan.logcnt, g.plan.log2phy, 1,
                                                      &g.width_needed);
    cr_expect_eq(st, EPLB_ERR_LOG2PHY_TOO_SMALL, "%s", eplb_context_last_error(cpu));
    cr_expect(g.width_needed > 1 && g.width_needed != GUARD);
    expect_untouched("log2phy width", &g, &s);
    eplbt_plan_free(&g.plan);
    eplb_context_free(cpu);
    free(w);
}

Test(incremental, count_moves_refusals_leave_the_figures)
{
    const eplb_shape s = {1, 4, 8, 2, 2, 4};
    int64_t a[8] = {0, 1, 2, 3, 0, 1, 2, 3}, b[8] = {3, 2, 1, 0, 0, 1, 2, 3};
    eplb_moves m;
    eplb_moves_init(&m);
    m.moved_slots = m.max_moved_per_gpu = m.cross_node_moves = GUARD;
    cr_expect_eq(eplb_count_moves(&s, NULL, b, &m), EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(eplb_count_moves(&s, a, b, NULL), EPLB_ERR_INVALID_ARGUMENT);
    b[6] = 4;
    cr_expect_eq(eplb_count_moves(&s, a, b, &m), EPLB_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(eplb_last_error(), "phy2log[0][6] = 4"), "%s", eplb_last_error());
    b[6] = 2;
    const eplb_shape bad = {1, 4, 8, 2, 2, 3};
    cr_expect_eq(eplb_count_moves(&bad, a, b, &m), EPLB_ERR_INVALID_SHAPE);
    eplb_moves raw = m;
    raw.struct_size = 0;
    cr_expect_eq(eplb_count_moves(&s, a, b, &raw), EPLB_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(eplb_last_error(), "eplb_moves_init"));
    cr_expect(m.moved_slots == GUARD && m.max_moved_per_gpu == GUARD &&
              m.cross_node_moves == GUARD);
}
