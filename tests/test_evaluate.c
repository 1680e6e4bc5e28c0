/* eplb_evaluate (src/evaluate.c): the figures of SPEC sections 8, 11.1 and 12
 * against the independent reference (tests/reference, fixtures in
 * tests/data/evaluate-fixtures.txt), the bound against every plan eplb makes
 * on the random cases and against exhaustive searches, and the input checks. */
#include <math.h>

#include "harness.h"
#include "plan_stats.h"

/* The reference sums some loads in another order (numpy's pairwise sums), so
 * doubles agree to rounding: a relative 1e-12 is a thousand times the
 * rounding of the longest sum here and far below any figure's meaning. */
#define ROUNDING 1e-12
/* SPEC 12.1: a plan that reaches the bound may pass it by rounding. */
#define BOUND_SLACK 1e-9

static void expect_close(double got, double want, const char *what, const char *name)
{
    double scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
    cr_expect(fabs(got - want) <= ROUNDING * scale, "%s: %s is %.17g, the reference says %.17g",
              name, what, got, want);
}

static eplb_policy policy_named(const char *name)
{
    if (!strcmp(name, "hierarchical"))
        return EPLB_POLICY_HIERARCHICAL;
    if (!strcmp(name, "global"))
        return EPLB_POLICY_GLOBAL;
    return EPLB_POLICY_AUTO;
}

static void expect_word(FILE *f, const char *word)
{
    char got[32];
    cr_assert_eq(fscanf(f, "%31s", got), 1, "fixture file ends before '%s'", word);
    cr_assert_str_eq(got, word, "fixture file: expected '%s'", word);
}

static void read_doubles(FILE *f, const char *word, double *out, int64_t n)
{
    expect_word(f, word);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(fscanf(f, "%lf", &out[i]), 1, "fixture file: short '%s' line", word);
}

Test(evaluate, agrees_with_the_reference)
{
    FILE *f = fopen(EPLB_TEST_DATA_DIR "/evaluate-fixtures.txt", "r");
    cr_assert(f, "cannot open the fixture file");
    char line[256];
    cr_assert(fgets(line, sizeof line, f), "the fixture file is empty"); /* the comment line */
    int cases = 0;
    char name[64], policy[16];
    eplb_shape s;
    long long v[6];
    while (fscanf(f, " case %63s %15s %lld %lld %lld %lld %lld %lld", name, policy, &v[0], &v[1],
                  &v[2], &v[3], &v[4], &v[5]) == 8) {
        s = (eplb_shape){v[0], v[1], v[2], v[3], v[4], v[5]};
        const int64_t L = s.layers, E = s.experts, R = s.replicas;
        float *weight = malloc((size_t)(L * E) * sizeof *weight);
        int64_t *phy2log = malloc((size_t)(L * R) * sizeof *phy2log);
        double *want_floor = malloc((size_t)L * sizeof(double));
        double *want_max = malloc((size_t)L * sizeof(double));
        double *got_floor = malloc((size_t)L * sizeof(double));
        double *got_max = malloc((size_t)L * sizeof(double));
        cr_assert(weight && phy2log && want_floor && want_max && got_floor && got_max);
        expect_word(f, "weight");
        for (int64_t i = 0; i < L * E; i++)
            cr_assert_eq(fscanf(f, "%f", &weight[i]), 1, "%s: short weight line", name);
        expect_word(f, "phy2log");
        for (int64_t i = 0; i < L * R; i++) {
            long long e;
            cr_assert_eq(fscanf(f, "%lld", &e), 1, "%s: short phy2log line", name);
            phy2log[i] = e;
        }
        double expect[7];
        read_doubles(f, "expect", expect, 7);
        read_doubles(f, "floor", want_floor, L);
        read_doubles(f, "max", want_max, L);

        eplb_evaluation r;
        eplb_evaluation_init(&r);
        eplb_status st = eplb_evaluate(weight, &s, policy_named(policy), phy2log, &r, got_max, NULL,
                                       got_floor);
        cr_assert_eq(st, EPLB_OK, "%s: %s", name, eplb_last_error());
        expect_close(r.balancedness, expect[0], "balancedness", name);
        expect_close(r.balancedness_min_layer, expect[1], "worst layer's balancedness", name);
        cr_expect_eq(r.min_layer, (int64_t)expect[2], "%s: worst layer", name);
        expect_close(r.bound, expect[3], "summed floors", name);
        expect_close(r.balancedness_bound, expect[4], "balancedness bound", name);
        cr_expect_eq(r.duplicates, (int64_t)expect[5], "%s: duplicates", name);
        cr_expect_eq(r.bound_exact, (int32_t)expect[6], "%s: exactness of the bound", name);
        for (int64_t l = 0; l < L; l++) {
            expect_close(got_floor[l], want_floor[l], "a layer's floor", name);
            expect_close(got_max[l], want_max[l], "a layer's largest GPU load", name);
        }
        free(weight);
        free(phy2log);
        free(want_floor);
        free(want_max);
        free(got_floor);
        free(got_max);
        cases++;
    }
    fclose(f);
    cr_expect_geq(cases, 12, "only %d fixture cases read", cases);
}

Test(evaluate, bound_holds_for_every_plan_of_the_random_cases)
{
    eplb_context *ctx;
    cr_assert_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK, "%s", eplb_last_error());
    for (uint64_t i = 0; i < 240; i++) {
        eplb_random_case c;
        cr_assert_eq(eplb_random_case_make(2026, i, &c), EPLB_OK);
        eplbt_plan p;
        eplbt_plan_run(ctx, c.name, c.weight, &c.shape, &c.options, &p);
        eplb_evaluation r;
        eplb_evaluation_init(&r);
        cr_assert_eq(eplb_evaluate(c.weight, &c.shape, c.options.policy, p.phy2log, &r, NULL,
                                   NULL, NULL),
                     EPLB_OK, "%s: %s", c.name, eplb_last_error());
        cr_expect(r.balancedness <= r.balancedness_bound * (1.0 + BOUND_SLACK),
                  "%s: balancedness %.17g above the bound %.17g", c.name, r.balancedness,
                  r.balancedness_bound);
        cr_expect(r.max_load_sum >= r.bound * (1.0 - BOUND_SLACK),
                  "%s: summed maxima %.17g below the summed floors %.17g", c.name, r.max_load_sum,
                  r.bound);
        /* The plan's own figures, from its logcnt, are the tools' figures. */
        eplb_plan_stats stats;
        cr_assert_eq(eplb_plan_stats_compute(c.weight, &c.shape, c.options.policy, p.phy2log,
                                             p.logcnt, &stats, NULL, NULL),
                     EPLB_OK);
        cr_expect_eq(r.balancedness, stats.balancedness, "%s", c.name);
        cr_expect_eq(r.min_layer, stats.min_layer, "%s", c.name);
        cr_expect_eq(r.bound, stats.bound, "%s", c.name);
        cr_expect_eq(r.duplicates, stats.duplicates, "%s", c.name);
        eplbt_plan_free(&p);
        eplb_random_case_free(&c);
    }
    eplb_context_free(ctx);
}

/* ---- exhaustive search ------------------------------------------------------ */

/* Every placement of E experts on R slots (each expert at least once), in
 * turn: returns 0 after the last. */
static int next_placement(int64_t *phy2log, int64_t R, int64_t E)
{
    for (int64_t q = 0; q < R; q++) {
        if (++phy2log[q] < E)
            return 1;
        phy2log[q] = 0;
    }
    return 0;
}

/* Whether the placement is one the hierarchical policy can make: every group's
 * experts on one node, each node holding G/N whole groups. */
static int follows_groups(const int64_t *phy2log, const eplb_shape *s)
{
    const int64_t S = s->experts / s->groups, RN = s->replicas / s->nodes;
    int64_t node_of_group[16];
    for (int64_t g = 0; g < s->groups; g++)
        node_of_group[g] = -1;
    for (int64_t q = 0; q < s->replicas; q++) {
        int64_t g = phy2log[q] / S, n = q / RN;
        if (node_of_group[g] >= 0 && node_of_group[g] != n)
            return 0;
        node_of_group[g] = n;
    }
    for (int64_t n = 0; n < s->nodes; n++) {
        int64_t held = 0;
        for (int64_t g = 0; g < s->groups; g++)
            held += node_of_group[g] == n;
        if (held != s->groups / s->nodes)
            return 0;
    }
    return 1;
}

/* The largest balancedness over every plan of the policy, by trying every
 * placement of one layer. */
static double best_plan_balancedness(const float *w, const eplb_shape *s, eplb_policy policy)
{
    int64_t phy2log[16] = {0};
    double best = 0.0;
    do {
        int64_t count[16] = {0};
        for (int64_t q = 0; q < s->replicas; q++)
            count[phy2log[q]]++;
        int every = 1;
        for (int64_t e = 0; e < s->experts; e++)
            every &= count[e] > 0;
        if (!every || (policy == EPLB_POLICY_HIERARCHICAL && !follows_groups(phy2log, s)))
            continue;
        eplb_evaluation r;
        eplb_evaluation_init(&r);
        cr_assert_eq(eplb_evaluate(w, s, policy, phy2log, &r, NULL, NULL, NULL), EPLB_OK, "%s",
                     eplb_last_error());
        if (r.balancedness > best)
            best = r.balancedness;
    } while (next_placement(phy2log, s->replicas, s->experts));
    return best;
}

Test(evaluate, bound_is_the_best_plan_on_small_shapes)
{
    /* One slot per GPU: the bound is the best plan's balancedness (SPEC 12.4).
     * Two slots per GPU: the bound is only above it. */
    const eplb_shape shapes[] = {
        {1, 4, 6, 4, 2, 6},  /* one group per expert, two groups per node */
        {1, 4, 6, 2, 2, 6},  /* one group per node */
        {1, 5, 6, 5, 1, 6},  /* one node */
        {1, 6, 6, 6, 3, 6},  /* three nodes, no spare slot */
        {1, 4, 8, 4, 2, 4},  /* two slots per GPU */
    };
    uint64_t state = 17;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const eplb_shape *s = &shapes[i];
        for (int draw = 0; draw < 3; draw++) {
            float w[16];
            for (int64_t e = 0; e < s->experts; e++)
                w[e] = (float)eplb_random_range(&state, 0, 40);
            eplb_policy policies[] = {EPLB_POLICY_HIERARCHICAL, EPLB_POLICY_GLOBAL};
            for (int k = 0; k < 2; k++) {
                int64_t phy2log[16];
                for (int64_t q = 0; q < s->replicas; q++)
                    phy2log[q] = q % s->experts;
                eplb_evaluation r;
                eplb_evaluation_init(&r);
                cr_assert_eq(eplb_evaluate(w, s, policies[k], phy2log, &r, NULL, NULL, NULL),
                             EPLB_OK, "%s", eplb_last_error());
                double best = best_plan_balancedness(w, s, policies[k]);
                if (s->replicas == s->gpus)
                    cr_expect(fabs(r.balancedness_bound - best) <= BOUND_SLACK,
                              "shape %zu draw %d policy %d: bound %.17g, best plan %.17g", i,
                              draw, (int)policies[k], r.balancedness_bound, best);
                else
                    cr_expect(r.balancedness_bound >= best - BOUND_SLACK,
                              "shape %zu draw %d policy %d: bound %.17g below a plan's %.17g", i,
                              draw, (int)policies[k], r.balancedness_bound, best);
            }
        }
    }
}

Test(evaluate, hierarchical_bound_sees_the_groups)
{
    /* The two heavy experts form one group, so one node of three GPUs holds
     * both on three slots, and one of them stays whole: no hierarchical plan
     * has a maximum below 10, where a global plan splits both in halves. */
    const eplb_shape s = {1, 4, 6, 2, 2, 6};
    const float w[4] = {10, 10, 1, 1};
    const int64_t phy2log[6] = {0, 1, 0, 2, 3, 2};
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    cr_assert_eq(eplb_evaluate(w, &s, EPLB_POLICY_AUTO, phy2log, &r, NULL, NULL, NULL), EPLB_OK);
    const double mean = 22.0 / 6.0;
    cr_expect_eq(r.policy, EPLB_POLICY_HIERARCHICAL);
    cr_expect_eq(r.bound, 10.0);
    cr_expect_eq(r.balancedness_bound, mean / 10.0);
    cr_expect_eq(r.global_balancedness_bound, mean / 5.0);
    cr_expect(fabs(r.balancedness - mean / 10.0) <= 1e-15, "balancedness %.17g", r.balancedness);
    cr_expect(fabs(r.bound_gap) <= 1e-15);
    cr_expect_eq(r.bound_exact, 1);
    cr_expect_eq(r.duplicates, 0); /* one slot per GPU */
}

/* ---- input checks ----------------------------------------------------------- */

static void expect_refused(const float *w, const eplb_shape *s, eplb_policy policy,
                           const int64_t *phy2log, eplb_evaluation *r, eplb_status want,
                           const char *fragment)
{
    eplb_evaluation before = *r;
    double max_load[2] = {-7.0, -7.0};
    eplb_status st = eplb_evaluate(w, s, policy, phy2log, r, max_load, NULL, NULL);
    cr_expect_eq(st, want, "expected %s, got %s (%s)", eplb_status_string(want),
                 eplb_status_string(st), eplb_last_error());
    cr_expect(strstr(eplb_last_error(), fragment), "message '%s' lacks '%s'", eplb_last_error(),
              fragment);
    cr_expect_eq(memcmp(&before, r, sizeof before), 0, "the result was written");
    cr_expect(max_load[0] == -7.0 && max_load[1] == -7.0, "max_load was written");
}

Test(evaluate, bad_inputs_are_refused_with_their_reason)
{
    const eplb_shape s = {2, 4, 4, 2, 2, 2};
    const float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const int64_t ok[8] = {0, 1, 2, 3, 3, 2, 1, 0};
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    r.duplicates = 99; /* a sentinel: nothing may be written on failure */

    expect_refused(NULL, &s, EPLB_POLICY_AUTO, ok, &r, EPLB_ERR_INVALID_ARGUMENT, "must be given");
    expect_refused(w, &s, EPLB_POLICY_AUTO, NULL, &r, EPLB_ERR_INVALID_ARGUMENT, "must be given");
    int64_t out_of_range[8] = {0, 1, 2, 3, 3, 2, 4, 0};
    expect_refused(w, &s, EPLB_POLICY_AUTO, out_of_range, &r, EPLB_ERR_INVALID_ARGUMENT,
                   "phy2log[1][2] = 4 is not an expert (0..3)");
    int64_t negative[8] = {0, 1, 2, 3, 3, -1, 1, 0};
    expect_refused(w, &s, EPLB_POLICY_AUTO, negative, &r, EPLB_ERR_INVALID_ARGUMENT,
                   "phy2log[1][1] = -1");
    int64_t missing[8] = {0, 1, 2, 3, 3, 2, 1, 1};
    expect_refused(w, &s, EPLB_POLICY_AUTO, missing, &r, EPLB_ERR_INVALID_ARGUMENT,
                   "layer 1 has no slot for expert 0");
    float bad_weight[8] = {1, 2, 3, 4, 5, NAN, 7, 8};
    expect_refused(bad_weight, &s, EPLB_POLICY_AUTO, ok, &r, EPLB_ERR_INVALID_WEIGHT,
                   "weight[1][1]");
    float negative_weight[8] = {1, 2, -3, 4, 5, 6, 7, 8};
    expect_refused(negative_weight, &s, EPLB_POLICY_AUTO, ok, &r, EPLB_ERR_INVALID_WEIGHT,
                   "weight[0][2] = -3");
    eplb_shape bad_shape = s;
    bad_shape.replicas = 3;
    expect_refused(w, &bad_shape, EPLB_POLICY_AUTO, ok, &r, EPLB_ERR_INVALID_SHAPE,
                   "replicas must be >= experts");
    eplb_shape odd_groups = {2, 4, 4, 1, 2, 2};
    expect_refused(w, &odd_groups, EPLB_POLICY_HIERARCHICAL, ok, &r, EPLB_ERR_POLICY,
                   "groups (1) divisible by nodes (2)");
    eplb_shape odd_gpus = {2, 4, 6, 2, 2, 3};
    int64_t six[12] = {0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3};
    expect_refused(w, &odd_gpus, EPLB_POLICY_AUTO, six, &r, EPLB_ERR_INVALID_SHAPE,
                   "gpus (3) must be divisible by nodes (2)");
    expect_refused(w, &s, (eplb_policy)7, ok, &r, EPLB_ERR_INVALID_ARGUMENT, "policy (7)");
    eplb_evaluation stale = r;
    stale.struct_size = 8;
    expect_refused(w, &s, EPLB_POLICY_AUTO, ok, &stale, EPLB_ERR_INVALID_ARGUMENT,
                   "eplb_evaluation_init");

    /* The same plan is fine, and the global policy ignores nodes. */
    cr_expect_eq(eplb_evaluate(w, &s, EPLB_POLICY_AUTO, ok, &r, NULL, NULL, NULL), EPLB_OK);
    cr_expect_eq(eplb_evaluate(w, &odd_gpus, EPLB_POLICY_GLOBAL, six, &r, NULL, NULL, NULL),
                 EPLB_OK, "%s", eplb_last_error());
}

Test(evaluate, per_layer_figures_and_duplicates)
{
    /* SPEC 11.7's plan: GPU 0 holds expert 0 twice, GPU 2 holds 2 and 0. */
    const eplb_shape s = {1, 3, 6, 1, 1, 3};
    const float w[3] = {10, 1, 1};
    const int64_t phy2log[6] = {0, 0, 0, 1, 2, 0};
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    double max_load, mean_load, floor;
    cr_assert_eq(eplb_evaluate(w, &s, EPLB_POLICY_AUTO, phy2log, &r, &max_load, &mean_load, &floor),
                 EPLB_OK);
    cr_expect_eq(r.policy, EPLB_POLICY_HIERARCHICAL); /* one group, one node */
    cr_expect_eq(r.duplicates, 1);
    cr_expect_eq(max_load, 5.0);
    cr_expect_eq(mean_load, 4.0);
    cr_expect_eq(floor, 4.0); /* the average; expert 0 on four slots weighs 2.5 each */
    cr_expect_eq(r.balancedness, 0.8);
    cr_expect_eq(r.balancedness_bound, 1.0);
    cr_expect_eq(r.bound_gap, 0.25);
}

Test(evaluate, many_groups_use_the_relaxation)
{
    /* 32 groups on 2 nodes: beyond the exact limit; the relaxation must stay
     * below every plan, here the round-robin one. */
    const eplb_shape s = {1, 64, 64, 32, 2, 8};
    float w[64];
    int64_t phy2log[64];
    for (int e = 0; e < 64; e++) {
        w[e] = (float)(e % 7 + (e == 5 ? 100 : 0));
        phy2log[e] = e;
    }
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    cr_assert_eq(eplb_evaluate(w, &s, EPLB_POLICY_AUTO, phy2log, &r, NULL, NULL, NULL), EPLB_OK);
    cr_expect_eq(r.bound_exact, 0);
    cr_expect(r.balancedness <= r.balancedness_bound);
    /* Expert 5 alone on its slot: no plan's maximum is below its load. */
    cr_expect_geq(r.bound, 105.0);
}

Test(evaluate, replication_floor_dominates_when_slots_are_few)
{
    /* 8 1 1 1 on 5 slots of 5 GPUs: total/5 = 2.2, but the spare slot halves 8 to 4. */
    const float w[] = {8, 1, 1, 1};
    const eplb_shape few = {1, 4, 5, 1, 1, 5};
    const int64_t plan[] = {0, 0, 1, 2, 3};
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    double floor;
    cr_assert_eq(eplb_evaluate(w, &few, EPLB_POLICY_GLOBAL, plan, &r, NULL, NULL, &floor), EPLB_OK);
    cr_expect_eq(floor, 4.0);
    /* 3 3 on 3 slots: one of them stays whole; on one GPU the floor is the total. */
    const float tie[] = {3, 3};
    const eplb_shape three = {1, 2, 3, 1, 1, 3}, one_gpu = {1, 2, 4, 1, 1, 1};
    const int64_t plan3[] = {0, 1, 0}, plan4[] = {0, 1, 0, 1};
    cr_assert_eq(eplb_evaluate(tie, &three, EPLB_POLICY_GLOBAL, plan3, &r, NULL, NULL, &floor),
                 EPLB_OK);
    cr_expect_eq(floor, 3.0);
    cr_assert_eq(eplb_evaluate(tie, &one_gpu, EPLB_POLICY_GLOBAL, plan4, &r, NULL, NULL, &floor),
                 EPLB_OK);
    cr_expect_eq(floor, 6.0);
}
