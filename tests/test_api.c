/* The public API around planning (include/eplb/eplb.h): versions, status
 * strings, option defaults, contexts, backend selection and the registry. */
#include <math.h>

#include "harness.h"

Test(api, version_macros_match_the_library)
{
    cr_expect_eq(eplb_version_number(), (unsigned)EPLB_VERSION_NUMBER);
    cr_expect_eq(EPLB_VERSION_NUMBER,
                 EPLB_VERSION_MAJOR * 10000 + EPLB_VERSION_MINOR * 100 + EPLB_VERSION_PATCH);
    cr_expect_str_eq(eplb_version_string(), EPLB_VERSION_STRING);
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", EPLB_VERSION_MAJOR, EPLB_VERSION_MINOR,
             EPLB_VERSION_PATCH);
    cr_expect_str_eq(eplb_version_string(), built, "version string '%s' disagrees with the macros",
                     eplb_version_string());
    cr_expect_eq(EPLB_SPEC_VERSION, 1);
}

Test(api, every_status_has_a_distinct_string)
{
    const char *seen[EPLB_ERR_INTERNAL + 1];
    for (int s = EPLB_OK; s <= EPLB_ERR_INTERNAL; s++) {
        seen[s] = eplb_status_string((eplb_status)s);
        cr_assert_not_null(seen[s], "status %d has a NULL string", s);
        cr_expect(seen[s][0], "status %d has an empty string", s);
        cr_expect_str_neq(seen[s], eplb_status_string((eplb_status)999),
                          "status %d reads as unknown", s);
        for (int t = 0; t < s; t++)
            cr_expect_str_neq(seen[s], seen[t], "statuses %d and %d share '%s'", t, s, seen[s]);
    }
    /* Values outside the enum still get a string. */
    cr_expect_not_null(eplb_status_string((eplb_status)-1));
    cr_expect_not_null(eplb_status_string((eplb_status)(EPLB_ERR_INTERNAL + 1)));
}

Test(api, status_values_are_fixed)
{
    /* Released values never change (eplb.h). */
    cr_expect_eq(EPLB_OK, 0);
    cr_expect_eq(EPLB_ERR_INVALID_ARGUMENT, 1);
    cr_expect_eq(EPLB_ERR_INVALID_SHAPE, 2);
    cr_expect_eq(EPLB_ERR_INVALID_WEIGHT, 3);
    cr_expect_eq(EPLB_ERR_LOG2PHY_TOO_SMALL, 4);
    cr_expect_eq(EPLB_ERR_POLICY, 5);
    cr_expect_eq(EPLB_ERR_OUT_OF_MEMORY, 6);
    cr_expect_eq(EPLB_ERR_BACKEND_UNAVAILABLE, 7);
    cr_expect_eq(EPLB_ERR_BACKEND_FAILURE, 8);
    cr_expect_eq(EPLB_ERR_UNSUPPORTED, 9);
    cr_expect_eq(EPLB_ERR_IO, 10);
    cr_expect_eq(EPLB_ERR_PARSE, 11);
    cr_expect_eq(EPLB_ERR_INTERNAL, 12);
    cr_expect_eq(EPLB_POLICY_AUTO, 0);
    cr_expect_eq(EPLB_POLICY_HIERARCHICAL, 1);
    cr_expect_eq(EPLB_POLICY_GLOBAL, 2);
}

Test(api, options_init_sets_the_spec_defaults)
{
    eplb_options o;
    memset(&o, 0x5A, sizeof o);
    eplb_options_init(&o);
    cr_expect_eq(o.struct_size, sizeof o);
    cr_expect_eq(o.candidates, 8);
    cr_expect_eq(o.iterations, 20);
    cr_expect_eq(o.noise, 0.2f);
    cr_expect_eq(o.tolerance, 1e-5f);
    cr_expect_eq(o.seed, 0);
    cr_expect_eq(o.policy, EPLB_POLICY_AUTO);
    cr_expect_eq(o.refine, 0);
    cr_expect_eq(o.distinct, 0);
    cr_expect_eq(o.slack, 0.0f);
    eplb_options_init(NULL); /* must not crash */
}

/* A caller built against version 0.1.0's header passes a struct that ends at
 * refine: it is read no further, and plans as the defaults do. */
Test(api, options_of_version_0_1_are_read_up_to_refine)
{
    enum { L = 2, E = 8, R = 12 };
    const eplb_shape shape = {.layers = L, .experts = E, .replicas = R,
                              .groups = 4, .nodes = 2, .gpus = 4};
    float w[L * E];
    for (int i = 0; i < L * E; i++)
        w[i] = (float)((i * 37) % 11 + 1);
    eplb_context *ctx;
    cr_assert_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK);

    eplb_options current;
    eplb_options_init(&current);
    int64_t want[L * R], want_cnt[L * E];
    cr_assert_eq(eplb_rebalance(ctx, w, &shape, &current, want, want_cnt, NULL, 0, NULL), EPLB_OK);

    /* The old struct, followed by bytes that must not be read as options. */
    union {
        eplb_options options;
        unsigned char bytes[sizeof(eplb_options)];
    } old;
    memset(&old, 0x7F, sizeof old);
    eplb_options_init(&old.options);
    old.options.struct_size = (uint32_t)offsetof(eplb_options, distinct);
    memset(old.bytes + offsetof(eplb_options, distinct), 0x7F,
           sizeof old - offsetof(eplb_options, distinct));
    int64_t got[L * R], got_cnt[L * E];
    cr_assert_eq(eplb_rebalance(ctx, w, &shape, &old.options, got, got_cnt, NULL, 0, NULL),
                 EPLB_OK, "%s", eplb_context_last_error(ctx));
    cr_expect_arr_eq(got, want, sizeof want);
    cr_expect_arr_eq(got_cnt, want_cnt, sizeof want_cnt);
    eplb_context_free(ctx);
}

Test(api, context_free_accepts_null)
{
    eplb_context_free(NULL);
    cr_expect_str_eq(eplb_context_last_error(NULL), "");
    cr_expect_str_eq(eplb_context_backend(NULL), "");
}

Test(api, cpu_context_describes_itself)
{
    eplb_context *ctx = eplbt_context("cpu");
    cr_expect_str_eq(eplb_context_backend(ctx), "cpu");
    cr_expect(eplb_context_device(ctx) && eplb_context_device(ctx)[0], "empty device description");
    cr_expect_str_eq(eplb_context_last_error(ctx), "", "fresh context has an error: '%s'",
                     eplb_context_last_error(ctx));
    eplb_context_free(ctx);
}

Test(api, last_error_is_cleared_by_the_next_successful_call)
{
    eplb_context *ctx = eplbt_context("cpu");
    const eplb_shape s = {1, 4, 8, 1, 1, 2};
    const float w[4] = {1, 2, 3, 4}, bad[4] = {1, NAN, 3, 4};
    int64_t phy2log[8], logcnt[4];
    cr_assert_eq(eplb_rebalance(ctx, bad, &s, NULL, phy2log, logcnt, NULL, 0, NULL),
                 EPLB_ERR_INVALID_WEIGHT);
    cr_expect(eplb_context_last_error(ctx)[0], "no message after a failure");
    cr_assert_eq(eplb_rebalance(ctx, w, &s, NULL, phy2log, logcnt, NULL, 0, NULL), EPLB_OK);
    cr_expect_str_eq(eplb_context_last_error(ctx), "", "stale message '%s' after a success",
                     eplb_context_last_error(ctx));
    eplb_context_free(ctx);
}

/* ---- backend selection ----------------------------------------------------------------- */

/* Name of the backend "auto" picks, written to name. */
static void auto_choice(char *name, size_t len)
{
    eplb_context *ctx = eplbt_context("auto");
    snprintf(name, len, "%s", eplb_context_backend(ctx));
    eplb_context_free(ctx);
}

Test(backend_env, cpu_selects_the_cpu_backend)
{
    setenv("EPLB_BACKEND", "cpu", 1);
    eplb_context *ctx = eplbt_context(NULL);
    cr_expect_str_eq(eplb_context_backend(ctx), "cpu");
    eplb_context_free(ctx);
}

Test(backend_env, unset_and_empty_mean_auto)
{
    unsetenv("EPLB_BACKEND");
    char want[32];
    auto_choice(want, sizeof want);
    eplb_context *ctx = eplbt_context(NULL);
    cr_expect_str_eq(eplb_context_backend(ctx), want, "unset EPLB_BACKEND chose %s, auto chose %s",
                     eplb_context_backend(ctx), want);
    eplb_context_free(ctx);
    setenv("EPLB_BACKEND", "", 1);
    ctx = eplbt_context(NULL);
    cr_expect_str_eq(eplb_context_backend(ctx), want, "empty EPLB_BACKEND chose %s, auto chose %s",
                     eplb_context_backend(ctx), want);
    eplb_context_free(ctx);
}

Test(backend_env, bogus_is_refused_naming_the_variable)
{
    setenv("EPLB_BACKEND", "bogus", 1);
    eplb_context *ctx = (eplb_context *)&ctx;
    eplb_status st = eplb_context_create(&ctx, NULL);
    cr_expect_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE, "status %s", eplb_status_string(st));
    cr_expect_null(ctx);
    cr_expect(strstr(eplb_last_error(), "bogus") && strstr(eplb_last_error(), "EPLB_BACKEND"),
              "message '%s' should name the value and the variable", eplb_last_error());
}

Test(backend_env, explicit_argument_overrides_the_variable)
{
    setenv("EPLB_BACKEND", "bogus", 1);
    eplb_context *ctx = eplbt_context("cpu");
    cr_expect_str_eq(eplb_context_backend(ctx), "cpu");
    eplb_context_free(ctx);
}

Test(backend_auto, picks_an_available_backend_in_preference_order)
{
    /* auto: cuda, then opencl on a GPU device, then cpu; never an unavailable one. */
    char chosen[32];
    auto_choice(chosen, sizeof chosen);
    int index = -1;
    for (int i = 0; i < eplb_backend_count(); i++)
        if (strcmp(eplb_backend_name(i), chosen) == 0) index = i;
    cr_assert_geq(index, 0, "auto chose '%s', which the registry does not list", chosen);
    cr_expect(eplb_backend_available(index, NULL), "auto chose unavailable backend %s", chosen);
    const int cuda = strcmp(eplb_backend_name(0), "cuda") == 0 ? 0 : -1;
    if (cuda == 0 && eplb_backend_available(0, NULL))
        cr_expect_str_eq(chosen, "cuda", "cuda is available, auto chose %s", chosen);
    cr_log_info("auto chose %s", chosen);
}

Test(registry, lists_cuda_opencl_and_cpu_with_cpu_always_available)
{
    cr_assert_eq(eplb_backend_count(), 3);
    int cpu = -1;
    for (int i = 0; i < eplb_backend_count(); i++) {
        const char *name = eplb_backend_name(i);
        cr_assert_not_null(name);
        cr_expect(strcmp(name, "cpu") == 0 || strcmp(name, "opencl") == 0 ||
                  strcmp(name, "cuda") == 0, "unexpected backend name '%s'", name);
        const char *reason = NULL;
        const int available = eplb_backend_available(i, &reason);
        cr_expect(available == 0 || available == 1);
        cr_expect(reason && reason[0], "backend %s: no reason or device description", name);
        /* The probe result is kept: asking again gives the same answer. */
        cr_expect_eq(eplb_backend_available(i, NULL), available);
        cr_log_info("backend %s: %s (%s)", name, available ? "available" : "unavailable",
                    reason ? reason : "");
        if (strcmp(name, "cpu") == 0) cpu = i;
    }
    cr_assert_geq(cpu, 0, "no cpu backend");
    cr_expect_eq(eplb_backend_available(cpu, NULL), 1, "the compiled-in cpu backend is unavailable");
    cr_expect_null(eplb_backend_name(-1));
    cr_expect_null(eplb_backend_name(eplb_backend_count()));
    cr_expect_eq(eplb_backend_available(-1, NULL), 0);
    cr_expect_eq(eplb_backend_available(eplb_backend_count(), NULL), 0);
}

/* ---- device API on the cpu backend --------------------------------------------------- */

Test(device_api, is_unsupported_on_the_cpu_backend)
{
    eplb_context *ctx = eplbt_context("cpu");
    const eplb_shape s = {1, 4, 8, 1, 1, 2};
    float w[4] = {1, 2, 3, 4};
    int64_t phy2log[8], logcnt[4], log2phy[4 * 5];
    eplbt_poison(phy2log, sizeof phy2log);
    eplbt_poison(logcnt, sizeof logcnt);
    eplbt_poison(log2phy, sizeof log2phy);
    eplb_status st = eplb_rebalance_device(ctx, w, &s, NULL, phy2log, logcnt, log2phy, 5, NULL);
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "status %s", eplb_status_string(st));
    cr_expect(strstr(eplb_context_last_error(ctx), "cpu"), "message '%s' should name the backend",
              eplb_context_last_error(ctx));
    cr_expect_eq(eplbt_first_unpoisoned(phy2log, sizeof phy2log), -1);
    cr_expect_eq(eplbt_first_unpoisoned(logcnt, sizeof logcnt), -1);
    cr_expect_eq(eplbt_first_unpoisoned(log2phy, sizeof log2phy), -1);
    st = eplb_device_status(ctx, NULL);
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "eplb_device_status: %s", eplb_status_string(st));
    st = eplb_rebalance_device(ctx, w, &s, NULL, phy2log, logcnt, log2phy,
                               EPLB_LOG2PHY_WIDTH_NEEDED, NULL);
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "needed width: %s", eplb_status_string(st));
    int64_t width = -7;
    st = eplb_device_log2phy_width(ctx, NULL, &width);
    cr_expect_eq(st, EPLB_ERR_UNSUPPORTED, "eplb_device_log2phy_width: %s", eplb_status_string(st));
    cr_expect_eq(width, -7, "no width is reported on an error");
    cr_expect_eq(eplbt_first_unpoisoned(log2phy, sizeof log2phy), -1);
    cr_expect_eq(eplb_rebalance_device(NULL, w, &s, NULL, phy2log, logcnt, log2phy, 5, NULL),
                 EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(eplb_device_status(NULL, NULL), EPLB_ERR_INVALID_ARGUMENT);
    eplb_context_free(ctx);
}

/* ---- shape helpers ----------------------------------------------------------------------- */

Test(shape, log2phy_width_max_is_replicas_minus_experts_plus_one_and_suffices)
{
    static const eplb_shape shapes[] = {
        {1, 1, 1, 1, 1, 1}, {58, 256, 288, 8, 4, 32}, {4, 64, 64, 8, 2, 16}, {2, 8, 16, 1, 1, 8},
        {3, 256, 320, 8, 1, 64}};
    eplb_context *ctx = eplbt_context("cpu");
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const eplb_shape *s = &shapes[k];
        cr_expect_eq(eplb_log2phy_width_max(s), s->replicas - s->experts + 1, "shape %zu", k);
        /* One hot expert takes every extra slot of its node: the bound is
         * reached with one node, and never exceeded. */
        float *w = calloc((size_t)(s->layers * s->experts), sizeof *w);
        for (int64_t l = 0; l < s->layers; l++) w[l * s->experts] = 1000.0f;
        eplbt_plan p;
        eplbt_plan_run(ctx, "one hot expert", w, s, NULL, &p);
        cr_expect_leq(p.width_needed, eplb_log2phy_width_max(s), "shape %zu", k);
        if (s->nodes == 1)
            cr_expect_eq(p.width_needed, eplb_log2phy_width_max(s),
                         "shape %zu: one hot expert needs width %lld, width_max says %lld", k,
                         (long long)p.width_needed, (long long)eplb_log2phy_width_max(s));
        eplbt_plan_free(&p);
        free(w);
    }
    eplb_context_free(ctx);
}

Test(shape, check_accepts_valid_shapes_and_names_the_broken_rule)
{
    const eplb_shape ok = {2, 16, 24, 4, 2, 4};
    const char *why = "untouched";
    cr_expect_eq(eplb_shape_check(&ok, &why), EPLB_OK);
    cr_expect_null(why, "message '%s' for a valid shape", why);
    cr_expect_eq(eplb_shape_check(&ok, NULL), EPLB_OK);
    eplb_shape bad = ok;
    bad.replicas = 10;
    cr_expect_eq(eplb_shape_check(&bad, &why), EPLB_ERR_INVALID_SHAPE);
    cr_expect(why && strstr(why, "replicas"), "message '%s'", why ? why : "(null)");
}

/* The cpu backend's knobs take listed values only: a value outside the list
 * (EPLB_CPU_ISA=bogus was once ignored) is a specific error at creation that
 * names the knob, through the backend by name and through auto alike. */
Test(api, an_invalid_cpu_knob_is_a_specific_error)
{
    const char *knobs[] = {"EPLB_CPU_ISA", "EPLB_TUNE_CPU_STAGES", "EPLB_TUNE_CPU_SWAP_SEARCH"};
    for (size_t k = 0; k < sizeof knobs / sizeof knobs[0]; k++) {
        setenv(knobs[k], "bogus", 1);
        eplb_context *ctx = NULL;
        cr_expect_eq(eplb_context_create(&ctx, "cpu"), EPLB_ERR_BACKEND_UNAVAILABLE, "%s", knobs[k]);
        cr_expect_null(ctx);
        cr_expect(strstr(eplb_last_error(), knobs[k]) && strstr(eplb_last_error(), "'bogus'"),
                  "%s: %s", knobs[k], eplb_last_error());
        unsetenv(knobs[k]);
        cr_expect_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK, "%s unset: %s", knobs[k],
                     eplb_last_error());
        eplb_context_free(ctx);
    }
    setenv("EPLB_CPU_ISA", "sse2", 1);
    eplb_context *ctx = NULL;
    cr_expect_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK, "%s", eplb_last_error());
    eplb_context_free(ctx);
    unsetenv("EPLB_CPU_ISA");
}

/* A tuning knob set under its name from before the EPLB_TUNE_ prefix is
 * refused with its new name, so that a script that still sets it does not
 * silently test the default. */
Test(api, a_cpu_knob_under_its_old_name_names_the_new_one)
{
    const char *renamed[][2] = {{"EPLB_CPU_STAGES", "EPLB_TUNE_CPU_STAGES"},
                                {"EPLB_CPU_SWAP_SEARCH", "EPLB_TUNE_CPU_SWAP_SEARCH"}};
    for (size_t k = 0; k < sizeof renamed / sizeof renamed[0]; k++) {
        setenv(renamed[k][0], "separate", 1);
        eplb_context *ctx = NULL;
        cr_expect_eq(eplb_context_create(&ctx, "cpu"), EPLB_ERR_BACKEND_UNAVAILABLE, "%s", renamed[k][0]);
        cr_expect_null(ctx);
        cr_expect(strstr(eplb_last_error(), renamed[k][0]) && strstr(eplb_last_error(), renamed[k][1]),
                  "%s: %s", renamed[k][0], eplb_last_error());
        unsetenv(renamed[k][0]);
    }
}
