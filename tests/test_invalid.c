/* Invalid input (SPEC section 2 and the public header): every rejection has
 * its specific status, leaves every output byte untouched, and leaves a
 * message on the context that names what was wrong. */
#define _GNU_SOURCE /* strcasestr */
#include <float.h>
#include <math.h>

#include "harness.h"

/* Output buffers large enough for every shape used here. */
#define CAPACITY 4096

/* A valid base: 2 layers, 16 experts in 4 groups, 24 slots, 2 nodes of 2 GPUs. */
static const eplb_shape base = {2, 16, 24, 4, 2, 4};

static float base_weight[2 * 16];

static void fill_base_weight(void)
{
    for (int i = 0; i < 32; i++) base_weight[i] = (float)(i * 7 % 13 + 1);
}

enum { NULL_WEIGHT = 1, NULL_SHAPE = 2, NULL_PHY2LOG = 4, NULL_LOGCNT = 8, NO_LOG2PHY = 16 };

/* Calls eplb_rebalance on poisoned outputs and checks the status, that no
 * output byte changed and that the context's message contains keyword. */
static void expect_rejected(const char *what, const float *weight, const eplb_shape *shape,
                            const eplb_options *options, int64_t width, int flags,
                            eplb_status want, const char *keyword)
{
    eplb_context *ctx = eplbt_context("cpu");
    int64_t *phy2log = malloc(CAPACITY * sizeof *phy2log);
    int64_t *logcnt = malloc(CAPACITY * sizeof *logcnt);
    int64_t *log2phy = malloc(CAPACITY * sizeof *log2phy);
    eplbt_poison(phy2log, CAPACITY * sizeof *phy2log);
    eplbt_poison(logcnt, CAPACITY * sizeof *logcnt);
    eplbt_poison(log2phy, CAPACITY * sizeof *log2phy);
    eplb_status st = eplb_rebalance(ctx, flags & NULL_WEIGHT ? NULL : weight,
                                    flags & NULL_SHAPE ? NULL : shape, options,
                                    flags & NULL_PHY2LOG ? NULL : phy2log,
                                    flags & NULL_LOGCNT ? NULL : logcnt,
                                    flags & NO_LOG2PHY ? NULL : log2phy, width, NULL);
    const char *message = eplb_context_last_error(ctx);
    cr_expect_eq(st, want, "%s: status %s (%d), expected %s (%d); message: %s", what,
                 eplb_status_string(st), st, eplb_status_string(want), want, message);
    long bad;
    cr_expect_eq(bad = eplbt_first_unpoisoned(phy2log, CAPACITY * sizeof *phy2log), -1,
                 "%s: phy2log byte %ld written on error", what, bad);
    cr_expect_eq(bad = eplbt_first_unpoisoned(logcnt, CAPACITY * sizeof *logcnt), -1,
                 "%s: logcnt byte %ld written on error", what, bad);
    cr_expect_eq(bad = eplbt_first_unpoisoned(log2phy, CAPACITY * sizeof *log2phy), -1,
                 "%s: log2phy byte %ld written on error", what, bad);
    cr_expect(message && message[0], "%s: no message on the context", what);
    cr_expect(message && strcasestr(message, keyword), "%s: message '%s' does not mention '%s'",
              what, message ? message : "(null)", keyword);
    free(phy2log);
    free(logcnt);
    free(log2phy);
    eplb_context_free(ctx);
}

static void expect_shape_rejected(const char *what, eplb_shape shape, const char *keyword)
{
    fill_base_weight();
    /* The shape is checked before any weight is read: base_weight is enough. */
    expect_rejected(what, base_weight, &shape, NULL, CAPACITY / 64, 0, EPLB_ERR_INVALID_SHAPE,
                    keyword);
    const char *why = NULL;
    eplb_status st = eplb_shape_check(&shape, &why);
    if (st == EPLB_OK) return; /* rules that depend on the policy: only eplb_rebalance sees them */
    cr_expect_eq(st, EPLB_ERR_INVALID_SHAPE, "%s: eplb_shape_check gave %s", what,
                 eplb_status_string(st));
    cr_expect(why && strcasestr(why, keyword), "%s: eplb_shape_check message '%s' lacks '%s'",
              what, why ? why : "(null)", keyword);
    cr_expect_eq(eplb_log2phy_width_max(&shape), 0, "%s: width_max of an invalid shape", what);
}

/* Each rule of SPEC section 2 broken alone, on the valid base shape, and
 * shapes beyond the limits of include/eplb/eplb.h. */
Test(invalid_shape, each_broken_rule_is_refused_naming_its_dimension_or_limit)
{
    static const struct {
        const char *what;
        eplb_shape shape;
        const char *keyword;
    } broken[] = {
        {"layers = 0", {0, 16, 24, 4, 2, 4}, "layers"},
        {"layers = -3", {-3, 16, 24, 4, 2, 4}, "layers"},
        {"experts = 0", {2, 0, 24, 4, 2, 4}, "experts"},
        {"groups = 0", {2, 16, 24, 0, 2, 4}, "groups"},
        {"nodes = 0", {2, 16, 24, 4, 0, 4}, "nodes"},
        {"gpus = 0", {2, 16, 24, 4, 2, 0}, "gpus"},
        {"gpus = -4", {2, 16, 24, 4, 2, -4}, "gpus"},
        /* 12 < 16, and still a multiple of the 4 GPUs. */
        {"replicas < experts", {2, 16, 12, 4, 2, 4}, "replicas"},
        {"replicas % gpus != 0", {2, 16, 26, 4, 2, 4}, "gpus"},
        {"experts % groups != 0", {2, 16, 24, 3, 2, 4}, "groups"},
        /* groups % nodes == 0, so auto picks hierarchical, which needs gpus % nodes == 0. */
        {"gpus % nodes != 0, hierarchical", {2, 16, 24, 4, 2, 3}, "nodes"},
        /* Values near INT64_MAX (no overflow on the way to the message), and
         * each dimension within its limit while their product is not. */
        {"layers = INT64_MAX", {INT64_MAX, 16, 24, 4, 2, 4}, "EPLB_MAX_LAYERS"},
        {"replicas near INT64_MAX", {2, 16, INT64_MAX - 7, 4, 2, 4}, "EPLB_MAX_REPLICAS"},
        {"layers 2^31, replicas 2^40", {(int64_t)1 << 31, 16, (int64_t)1 << 40, 4, 2, 4},
         "EPLB_MAX_LAYERS"},
        {"layers * replicas over the limit",
         {EPLB_MAX_SLOTS / EPLB_MAX_REPLICAS + 1, 16, EPLB_MAX_REPLICAS, 4, 2, 4}, "EPLB_MAX_SLOTS"},
        {"most layers, 1024 slots", {EPLB_MAX_LAYERS, 16, 1024, 4, 2, 4}, "EPLB_MAX_SLOTS"},
        /* A negative replica count is refused as below the experts, before
         * layers * replicas is formed (it overflowed for INT64_MIN: a fuzzing
         * finding). */
        {"replicas = -24", {2, 16, -24, 4, 2, 4}, "replicas"},
        {"replicas = INT64_MIN", {2, 16, INT64_MIN, 4, 2, 4}, "replicas"},
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++)
        expect_shape_rejected(broken[i].what, broken[i].shape, broken[i].keyword);
}

/* ---- limits (issue 19, item 7) ------------------------------------------------------ */

/* Every limit of include/eplb/eplb.h, one beyond it at a time: refused by
 * eplb_shape_check and eplb_rebalance with a message naming the limit. */
Test(invalid_shape, each_dimension_beyond_its_limit_names_the_limit)
{
    eplb_shape s;
    const struct {
        const char *what;
        int64_t *dimension; /* in s */
        int64_t value;
        const char *limit;
    } beyond[] = {
        {"layers over the limit", &s.layers, EPLB_MAX_LAYERS + 1, "EPLB_MAX_LAYERS"},
        {"experts over the limit", &s.experts, EPLB_MAX_EXPERTS + 1, "EPLB_MAX_EXPERTS"},
        /* Beyond by 4: still a multiple of the 4 GPUs. */
        {"replicas over the limit", &s.replicas, EPLB_MAX_REPLICAS + 4, "EPLB_MAX_REPLICAS"},
        {"groups over the limit", &s.groups, EPLB_MAX_GROUPS + 1, "EPLB_MAX_GROUPS"},
        {"nodes over the limit", &s.nodes, EPLB_MAX_NODES + 1, "EPLB_MAX_NODES"},
        {"gpus over the limit", &s.gpus, EPLB_MAX_GPUS + 1, "EPLB_MAX_GPUS"},
    };
    for (size_t i = 0; i < sizeof beyond / sizeof beyond[0]; i++) {
        s = base;
        *beyond[i].dimension = beyond[i].value;
        expect_shape_rejected(beyond[i].what, s, beyond[i].limit);
    }
}

Test(invalid_shape, candidate_slots_beyond_the_limit_name_the_limit)
{
    /* Slots within EPLB_MAX_SLOTS, but too many candidates for them: only the
     * planning calls see the options. */
    fill_base_weight();
    const eplb_shape s = {2, 16, EPLB_MAX_SLOTS / 2, 4, 2, 4};
    cr_expect_eq(eplb_shape_check(&s, NULL), EPLB_OK, "the shape alone is within the limits");
    eplb_options o;
    eplb_options_init(&o);
    o.candidates = (int32_t)(EPLB_MAX_CANDIDATE_SLOTS / EPLB_MAX_SLOTS) + 1;
    expect_rejected("layers * replicas * candidates over the limit", base_weight, &s, &o,
                    CAPACITY / 64, 0, EPLB_ERR_INVALID_SHAPE, "EPLB_MAX_CANDIDATE_SLOTS");
}

/* The limits admit every realistic shape with room to spare, and each is
 * inclusive. */
Test(valid_shape, shapes_at_the_limits_pass_the_check)
{
    const struct {
        const char *what;
        eplb_shape shape;
    } at_limit[] = {
        {"eplb-bench's scale case", {200, 1024, 8192, 16, 16, 1024}},
        {"the scale case, ten times the layers", {2000, 1024, 8192, 16, 16, 1024}},
        {"DeepSeek-V3", {58, 256, 288, 8, 4, 32}},
        {"most replicas, two layers", {2, 4, EPLB_MAX_REPLICAS, 1, 1, 1}},
        {"most layers", {EPLB_MAX_LAYERS, 256, EPLB_MAX_SLOTS / EPLB_MAX_LAYERS, 8, 4, 32}},
        {"most experts, groups, nodes and gpus",
         {1, EPLB_MAX_EXPERTS, EPLB_MAX_REPLICAS, EPLB_MAX_GROUPS, EPLB_MAX_NODES, EPLB_MAX_GPUS}},
    };
    for (size_t i = 0; i < sizeof at_limit / sizeof at_limit[0]; i++) {
        const char *why = NULL;
        cr_expect_eq(eplb_shape_check(&at_limit[i].shape, &why), EPLB_OK, "%s refused: %s",
                     at_limit[i].what, why ? why : "(no message)");
    }
}

/* Not errors: the global policy ignores nodes, so gpus % nodes is free there
 * (golden v3-decode-global: 64 GPUs on 3 nodes). */
Test(valid_shape, gpus_not_divisible_by_nodes_is_legal_under_the_global_policy)
{
    eplb_context *ctx = eplbt_context("cpu");
    fill_base_weight();
    eplbt_plan p;
    const eplb_shape auto_global = {2, 15, 24, 3, 2, 3}; /* groups % nodes != 0 */
    eplbt_plan_run(ctx, "auto picks global", base_weight, &auto_global, NULL, &p);
    eplbt_check_plan("auto picks global", base_weight, &auto_global, 0, p.phy2log, p.logcnt,
                     p.log2phy, p.width);
    eplbt_plan_free(&p);
    const eplb_shape forced = {2, 16, 24, 4, 2, 3};
    eplb_options o;
    eplb_options_init(&o);
    o.policy = EPLB_POLICY_GLOBAL;
    eplbt_plan_run(ctx, "global forced", base_weight, &forced, &o, &p);
    eplbt_check_plan("global forced", base_weight, &forced, 0, p.phy2log, p.logcnt, p.log2phy,
                     p.width);
    eplbt_plan_free(&p);
    eplb_context_free(ctx);
}

/* ---- weights ---------------------------------------------------------------------- */

static void expect_weight_rejected(const char *what, float bad, const char *position)
{
    fill_base_weight();
    float w[32];
    memcpy(w, base_weight, sizeof w);
    w[16 + 5] = bad; /* layer 1, expert 5 */
    expect_rejected(what, w, &base, NULL, CAPACITY / 64, 0, EPLB_ERR_INVALID_WEIGHT, "weight");
    expect_rejected(what, w, &base, NULL, CAPACITY / 64, 0, EPLB_ERR_INVALID_WEIGHT, position);
}

Test(invalid_weight, nan)
{
    expect_weight_rejected("NaN weight", NAN, "[1][5]");
    expect_weight_rejected("negative NaN weight", -NAN, "[1][5]");
}

Test(invalid_weight, positive_infinity) { expect_weight_rejected("+Inf weight", INFINITY, "[1][5]"); }

Test(invalid_weight, negative_infinity) { expect_weight_rejected("-Inf weight", -INFINITY, "[1][5]"); }

Test(invalid_weight, negative)
{
    expect_weight_rejected("weight -1", -1.0f, "[1][5]");
    expect_weight_rejected("weight -FLT_TRUE_MIN", -FLT_TRUE_MIN, "[1][5]");
}

Test(valid_weight, negative_zero_is_a_legal_weight_equal_to_zero)
{
    /* -0.0 compares equal to 0: same plan as +0.0. */
    eplb_context *ctx = eplbt_context("cpu");
    fill_base_weight();
    float pos[32], neg[32];
    memcpy(pos, base_weight, sizeof pos);
    for (int i = 0; i < 32; i += 3) pos[i] = 0.0f;
    memcpy(neg, pos, sizeof neg);
    for (int i = 0; i < 32; i += 3) neg[i] = -0.0f;
    eplbt_plan a, b;
    eplbt_plan_run(ctx, "+0.0 weights", pos, &base, NULL, &a);
    eplbt_plan_run(ctx, "-0.0 weights", neg, &base, NULL, &b);
    eplbt_check_plan("-0.0 weights", neg, &base, 1, b.phy2log, b.logcnt, b.log2phy, b.width);
    cr_expect(eplbt_plans_equal(&a, &b), "-0.0 weights planned differently from +0.0");
    eplbt_plan_free(&a);
    eplbt_plan_free(&b);
    eplb_context_free(ctx);
}

/* ---- log2phy width ------------------------------------------------------------------ */

Test(invalid_width, below_max_logcnt_reports_the_width_needed)
{
    eplb_context *ctx = eplbt_context("cpu");
    fill_base_weight();
    eplbt_plan p;
    eplbt_plan_run(ctx, "reference", base_weight, &base, NULL, &p);
    const int64_t needed = p.width_needed;
    cr_assert_geq(needed, 2, "this case needs an expert with 2 replicas");
    eplbt_plan_free(&p);

    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)needed);
    expect_rejected("width = needed - 1", base_weight, &base, NULL, needed - 1, 0,
                    EPLB_ERR_LOG2PHY_TOO_SMALL, text);

    /* width_needed is reported on this failure, and the outputs stay untouched. */
    int64_t phy2log[2 * 24], logcnt[2 * 16], log2phy[2 * 16 * 8], width_needed = -7;
    eplbt_poison(phy2log, sizeof phy2log);
    eplbt_poison(logcnt, sizeof logcnt);
    eplbt_poison(log2phy, sizeof log2phy);
    eplb_status st = eplb_rebalance(ctx, base_weight, &base, NULL, phy2log, logcnt, log2phy,
                                    needed - 1, &width_needed);
    cr_expect_eq(st, EPLB_ERR_LOG2PHY_TOO_SMALL);
    cr_expect_eq(width_needed, needed, "width_needed %lld, expected %lld", (long long)width_needed,
                 (long long)needed);
    cr_expect_eq(eplbt_first_unpoisoned(phy2log, sizeof phy2log), -1);
    cr_expect_eq(eplbt_first_unpoisoned(logcnt, sizeof logcnt), -1);
    cr_expect_eq(eplbt_first_unpoisoned(log2phy, sizeof log2phy), -1);

    /* The width that suffices always does. */
    cr_expect_geq(eplb_log2phy_width_max(&base), needed);
    eplb_context_free(ctx);
}

Test(invalid_width, zero_and_negative_widths_are_too_small)
{
    fill_base_weight();
    expect_rejected("width = 0", base_weight, &base, NULL, 0, 0, EPLB_ERR_LOG2PHY_TOO_SMALL, "width");
    expect_rejected("width = -5", base_weight, &base, NULL, -5, 0, EPLB_ERR_LOG2PHY_TOO_SMALL,
                    "width");
}

/* eplb.h: width_needed "receives max(logcnt) over all layers; set also when
 * the call fails with EPLB_ERR_LOG2PHY_TOO_SMALL" - whatever the width. */
Test(invalid_width, width_zero_still_reports_the_width_needed)
{
    eplb_context *ctx = eplbt_context("cpu");
    fill_base_weight();
    int64_t phy2log[2 * 24], logcnt[2 * 16], log2phy[8], width_needed = -7, needed = -1;
    cr_assert_eq(eplb_rebalance(ctx, base_weight, &base, NULL, phy2log, logcnt, NULL, 0, &needed),
                 EPLB_OK);
    eplb_status st = eplb_rebalance(ctx, base_weight, &base, NULL, phy2log, logcnt, log2phy, 0,
                                    &width_needed);
    cr_expect_eq(st, EPLB_ERR_LOG2PHY_TOO_SMALL);
    cr_expect_eq(width_needed, needed,
                 "LIBRARY BUG (src/planner.c eplb_plan_host): width 0 fails with "
                 "EPLB_ERR_LOG2PHY_TOO_SMALL before width_needed is computed; got %lld, expected "
                 "%lld as eplb.h promises", (long long)width_needed, (long long)needed);
    eplb_context_free(ctx);
}

/* ---- NULL pointers ------------------------------------------------------------------ */

Test(invalid_argument, null_pointers)
{
    fill_base_weight();
    static const struct { int flag; const char *name; } cases[] = {
        {NULL_WEIGHT, "weight"}, {NULL_SHAPE, "shape"}, {NULL_PHY2LOG, "phy2log"},
        {NULL_LOGCNT, "logcnt"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "NULL %s", cases[k].name);
        expect_rejected(what, base_weight, &base, NULL, CAPACITY / 64, cases[k].flag,
                        EPLB_ERR_INVALID_ARGUMENT, cases[k].name);
    }
}

Test(invalid_argument, null_context)
{
    fill_base_weight();
    int64_t phy2log[2 * 24], logcnt[2 * 16];
    eplbt_poison(phy2log, sizeof phy2log);
    eplbt_poison(logcnt, sizeof logcnt);
    eplb_status st = eplb_rebalance(NULL, base_weight, &base, NULL, phy2log, logcnt, NULL, 0, NULL);
    cr_expect_eq(st, EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(eplbt_first_unpoisoned(phy2log, sizeof phy2log), -1);
    cr_expect_eq(eplbt_first_unpoisoned(logcnt, sizeof logcnt), -1);
    cr_expect(strcasestr(eplb_last_error(), "context"), "eplb_last_error: '%s'", eplb_last_error());
    cr_expect_eq(eplb_context_create(NULL, "cpu"), EPLB_ERR_INVALID_ARGUMENT);
    cr_expect(eplb_last_error()[0], "eplb_context_create(NULL) left no message");
    cr_expect_eq(eplb_shape_check(NULL, NULL), EPLB_ERR_INVALID_SHAPE);
    cr_expect_eq(eplb_log2phy_width_max(NULL), 0);
}

/* ---- options -------------------------------------------------------------------------- */

static void expect_options_rejected(const char *what, eplb_options o, const char *keyword)
{
    fill_base_weight();
    expect_rejected(what, base_weight, &base, &o, CAPACITY / 64, 0, EPLB_ERR_INVALID_ARGUMENT,
                    keyword);
}

/* Each option out of its range, alone. */
Test(invalid_options, each_value_out_of_range_is_refused_naming_the_option)
{
    enum option_field { CANDIDATES, ITERATIONS, NOISE, TOLERANCE, STRUCT_SIZE, POLICY, DISTINCT, SLACK };
    static const struct {
        const char *what;
        enum option_field field;
        double value;
        const char *keyword;
    } out_of_range[] = {
        {"candidates = 0", CANDIDATES, 0, "candidates"},
        {"candidates = -1", CANDIDATES, -1, "candidates"},
        {"candidates = 1025", CANDIDATES, EPLB_MAX_CANDIDATES + 1, "candidates"},
        {"iterations = -1", ITERATIONS, -1, "iterations"},
        {"iterations above EPLB_MAX_ITERATIONS", ITERATIONS, EPLB_MAX_ITERATIONS + 1, "iterations"},
        {"noise = NaN", NOISE, NAN, "noise"},
        {"noise = -0.1", NOISE, -0.1, "noise"},
        {"noise = +Inf", NOISE, INFINITY, "noise"},
        {"tolerance = -1e-6", TOLERANCE, -1e-6, "tolerance"},
        {"tolerance = NaN", TOLERANCE, NAN, "tolerance"},
        {"tolerance = +Inf", TOLERANCE, INFINITY, "tolerance"},
        {"struct_size = 0", STRUCT_SIZE, 0, "eplb_options_init"},
        {"struct_size of an older struct", STRUCT_SIZE, sizeof(eplb_options) - 4,
         "eplb_options_init"},
        {"policy = 7", POLICY, 7, "policy"},
        {"distinct = 2", DISTINCT, 2, "distinct"},
        {"distinct = -1", DISTINCT, -1, "distinct"},
        {"slack = -0.01", SLACK, -0.01, "slack"},
        {"slack = NaN", SLACK, NAN, "slack"},
        {"slack = +Inf", SLACK, INFINITY, "slack"},
    };
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
        eplb_options o;
        eplb_options_init(&o);
        const double v = out_of_range[i].value;
        switch (out_of_range[i].field) {
        case CANDIDATES: o.candidates = (int32_t)v; break;
        case ITERATIONS: o.iterations = (int32_t)v; break;
        case NOISE: o.noise = (float)v; break;
        case TOLERANCE: o.tolerance = (float)v; break;
        case STRUCT_SIZE: o.struct_size = (uint32_t)v; break;
        case POLICY: o.policy = (eplb_policy)(int)v; break;
        case DISTINCT: o.distinct = (int32_t)v; break;
        case SLACK: o.slack = (float)v; break;
        }
        expect_options_rejected(out_of_range[i].what, o, out_of_range[i].keyword);
    }
}

/* The hierarchical policy forced on shapes it cannot plan. */
Test(invalid_options, hierarchical_forced_where_it_cannot_run)
{
    static const struct {
        const char *what;
        eplb_shape shape;
        eplb_status status;
        const char *keyword;
    } cases[] = {
        {"gpus % nodes != 0, hierarchical forced", {2, 16, 24, 4, 2, 3}, EPLB_ERR_INVALID_SHAPE,
         "nodes"},
        {"hierarchical forced, groups % nodes != 0 (3 groups on 2 nodes)", {2, 15, 24, 3, 2, 4},
         EPLB_ERR_POLICY, "hierarchical"},
    };
    fill_base_weight();
    eplb_options o;
    eplb_options_init(&o);
    o.policy = EPLB_POLICY_HIERARCHICAL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_rejected(cases[i].what, base_weight, &cases[i].shape, &o, CAPACITY / 64, 0,
                        cases[i].status, cases[i].keyword);
}

Test(valid_options, boundary_values_are_accepted)
{
    eplb_context *ctx = eplbt_context("cpu");
    fill_base_weight();
    eplb_options o;
    eplb_options_init(&o);
    o.candidates = EPLB_MAX_CANDIDATES;
    o.iterations = 0;
    o.noise = 0.0f;
    o.tolerance = 0.0f;
    o.seed = UINT64_MAX;
    eplbt_plan p;
    eplbt_plan_run(ctx, "candidates 1024, iterations 0, noise 0, tol 0", base_weight, &base, &o, &p);
    eplbt_check_plan("boundary options", base_weight, &base, 1, p.phy2log, p.logcnt, p.log2phy,
                     p.width);
    eplbt_plan_free(&p);
    eplb_context_free(ctx);
}

/* ---- backends ----------------------------------------------------------------------------- */

Test(invalid_backend, unknown_name_is_refused_and_named)
{
    eplb_context *ctx = (eplb_context *)&ctx; /* must be reset to NULL */
    eplb_status st = eplb_context_create(&ctx, "bogus");
    cr_expect_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE, "status %s", eplb_status_string(st));
    cr_expect_null(ctx, "*out must be NULL after a failed create");
    cr_expect(strstr(eplb_last_error(), "bogus"), "eplb_last_error '%s' does not name 'bogus'",
              eplb_last_error());
}

Test(invalid_backend, explicit_unavailable_backend_is_refused_and_named)
{
    int refused = 0;
    for (int i = 0; i < eplb_backend_count(); i++) {
        if (eplb_backend_available(i, NULL)) continue;
        const char *name = eplb_backend_name(i);
        eplb_context *ctx = (eplb_context *)&ctx;
        eplb_status st = eplb_context_create(&ctx, name);
        cr_expect_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE, "%s: status %s", name,
                     eplb_status_string(st));
        cr_expect_null(ctx, "%s: *out must be NULL after a failed create", name);
        cr_expect(strstr(eplb_last_error(), name), "%s: message '%s' does not name it", name,
                  eplb_last_error());
        cr_log_info("unavailable backend %s refused: %s", name, eplb_last_error());
        refused++;
    }
    if (!refused)
        cr_skip_test("every backend is available here: nothing to refuse");
}

Test(invalid_backend, injected_initialisation_failure_is_refused)
{
    /* EPLB_TEST_FAIL_BACKEND (src/registry.c) makes a backend fail to open. */
    setenv("EPLB_TEST_FAIL_BACKEND", "cpu", 1);
    eplb_context *ctx = (eplb_context *)&ctx;
    eplb_status st = eplb_context_create(&ctx, "cpu");
    cr_expect_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE);
    cr_expect_null(ctx);
    cr_expect(strstr(eplb_last_error(), "cpu"), "message '%s'", eplb_last_error());
    unsetenv("EPLB_TEST_FAIL_BACKEND");
}
