/* The eplb tool says the same thing the same way everywhere: long options in
 * full, one wording and exit code for an unknown backend however it was
 * named, and a summary that says why auto ran the global policy, speaks
 * proper plurals, shows max/mean per layer, and (in the demo) DeepSeek's own
 * plan beside eplb's (docs/cli.md). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_run.h"

#define INPUT EPLB_TEST_DATA_DIR "/good-comma.csv"

CLI_SUITE(cli_consistency, "/tmp/eplb-test-consistency-XXXXXX");

static int count_of(const char *text, const char *word)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, word)); p += strlen(word))
        n++;
    return n;
}

/* getopt_long would take any unique prefix: each is refused, naming the option in full. */
Test(cli_consistency, abbreviated_long_options_are_refused_naming_the_option)
{
    static const struct {
        const char *args[12];
        const char *full;
    } cases[] = {
        {{"plan", "-i", INPUT, "-r", "8", "--gpu", "2", NULL}, "--gpus"},
        {{"plan", "--inp", INPUT, "-r", "8", "-p", "2", NULL}, "--input"},
        {{"plan", "-i", INPUT, "-r", "8", "-p", "2", "--qui", NULL}, "--quiet"},
        {{"plan", "-i", INPUT, "-r", "8", "-p", "2", "--pol=global", NULL}, "--policy"},
        {{"plan", "-i", INPUT, "-r", "8", "-p", "2", "--g", "1", NULL}, "--groups or --gpus"},
        {{"demo", "--cand", "2", NULL}, "--candidates"},
        {{"backends", "--hel", NULL}, "--help"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_captured r = cli_run_captured(cases[i].args, NULL);
        cr_expect_eq(r.code, 2, "case %zu: exit %d: %s", i, r.code, r.err);
        cr_expect(strstr(r.err, "spelled out in full") && strstr(r.err, cases[i].full),
                  "case %zu: %s", i, r.err);
        cr_expect_eq(count_of(r.err, "\n"), 1, "case %zu: one line: %s", i, r.err);
        cli_captured_free(&r);
    }
    /* The names in full, with = or a separate value, still work. */
    const char *full[] = {"plan", "--input=" INPUT, "--replicas", "8", "--gpus=2", "--quiet", NULL};
    cli_captured r = cli_run_captured(full, NULL);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cli_captured_free(&r);
}

/* -n is --nodes in plan and demo: conformance gives --random no short option,
 * and takes its long options in full too. */
Test(cli_consistency, conformance_random_has_no_dash_n)
{
    const char *dash_n[] = {"conformance", "--golden", "none", "-n", "1", NULL};
    cli_captured r = cli_run_captured(dash_n, NULL);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cr_expect(strstr(r.err, "eplb conformance: unknown option '-n'"), "%s", r.err);
    cli_captured_free(&r);
    const char *abbreviated[] = {"conformance", "--golden", "none", "--rand", "1", NULL};
    r = cli_run_captured(abbreviated, NULL);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cr_expect(strstr(r.err, "spelled out in full: --random"), "%s", r.err);
    cli_captured_free(&r);
    const char *help[] = {"conformance", "--help", NULL};
    r = cli_run_captured(help, NULL);
    cr_expect(strstr(r.out, "      --random N") && !strstr(r.out, "-n, --random"), "%s", r.out);
    cli_captured_free(&r);
}

/* --backend nonsense and EPLB_BACKEND=nonsense: the same exit code and words. */
Test(cli_consistency, unknown_backend_is_the_same_error_from_option_or_environment)
{
    const char *by_option[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "nonsense", NULL};
    const char *by_env[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", NULL};
    const char *env[] = {"EPLB_BACKEND=nonsense", NULL};
    cli_captured a = cli_run_captured(by_option, NULL), b = cli_run_captured(by_env, env);
    cr_expect_eq(a.code, 2, "%s", a.err);
    cr_expect_eq(b.code, 2, "%s", b.err);
    cr_expect(strstr(a.err, "eplb plan: unknown backend 'nonsense' (from --backend): use auto"),
              "%s", a.err);
    cr_expect(strstr(b.err, "eplb plan: unknown backend 'nonsense' (from EPLB_BACKEND): use auto"),
              "%s", b.err);
    /* Past the source, the same list of names. */
    cr_expect_str_eq(strstr(a.err, ": use"), strstr(b.err, ": use"));
    cli_captured_free(&a);
    cli_captured_free(&b);
    const char *demo[] = {"demo", NULL};
    cli_captured d = cli_run_captured(demo, env);
    cr_expect_eq(d.code, 2, "%s", d.err);
    cr_expect_eq(d.out[0], '\0');
    cli_captured_free(&d);
}

Test(cli_consistency, backends_reports_what_eplb_backend_picks)
{
    const char *args[] = {"backends", NULL};
    const char *bad[] = {"EPLB_BACKEND=nonsense", NULL}, *cpu[] = {"EPLB_BACKEND=cpu", NULL};
    cli_captured r = cli_run_captured(args, bad);
    cr_expect_eq(r.code, 2, "a plan would refuse it: %s", r.err);
    cr_expect(strstr(r.err, "unknown backend 'nonsense' (from EPLB_BACKEND)"), "%s", r.err);
    cr_expect(strstr(r.out, "auto     picks "), "the list is still shown: %s", r.out);
    cli_captured_free(&r);
    r = cli_run_captured(args, cpu);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "EPLB_BACKEND=cpu: plans without --backend use cpu"), "%s", r.out);
    cli_captured_free(&r);
}

/* Auto runs global when groups do not divide over nodes: the summary says so. */
Test(cli_consistency, summary_says_why_auto_ran_the_global_policy)
{
    const char *args[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-n", "2", NULL};
    cli_expect_output(args, NULL, "policy        global (requested auto: groups (1) not "
                                  "divisible by nodes (2))\n");
    const char *asked[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-n", "2", "--policy",
                           "global", NULL};
    cli_expect_output(asked, NULL, "policy        global (requested global)\n");
}

/* One layer, one node, one group, one GPU: no "1 nodes". */
Test(cli_consistency, summary_speaks_singular_and_plural)
{
    char input[512];
    FILE *f = cli_create_in_scratch(input, sizeof input, "one-layer.csv");
    fputs("4, 3, 2, 1\n", f);
    cr_assert_eq(fclose(f), 0);
    const char *args[] = {"plan", "-i", input, "-r", "4", "-p", "1", NULL};
    cli_captured r = cli_run_captured(args, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "(text), 1 layer x 4 experts\n"), "%s", r.out);
    cr_expect(strstr(r.out, "4 slots on 1 GPU (4 per GPU), 1 node, 1 group\n"), "%s", r.out);
    cli_captured_free(&r);
    const char *demo[] = {"demo", "-b", "cpu", NULL};
    r = cli_run_captured(demo, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "288 slots on 32 GPUs (9 per GPU), 4 nodes, 8 groups\n"), "%s", r.out);
    cr_expect_eq(count_of(r.out, "built-in"), 1, "said once: %s", r.out);
    cli_captured_free(&r);
}

/* demo --help shows the demo's own defaults, and no --input. */
Test(cli_consistency, demo_help_shows_the_defaults_the_demo_uses)
{
    const char *args[] = {"demo", "--help", NULL};
    cli_captured r = cli_run_captured(args, NULL);
    cr_assert_eq(r.code, 0);
    cr_expect(strstr(r.out, "default 288)"), "%s", r.out);
    cr_expect(strstr(r.out, "expert groups (experts % G == 0; default 8)"), "%s", r.out);
    cr_expect(strstr(r.out, "nodes (default 4)"), "%s", r.out);
    cr_expect(strstr(r.out, "hierarchical policy; default 32)"), "%s", r.out);
    cr_expect(!strstr(r.out, "default 1)"), "%s", r.out);
    cr_expect(!strstr(r.out, "--input"), "%s", r.out);
    cli_captured_free(&r);
    const char *plan[] = {"plan", "--help", NULL};
    r = cli_run_captured(plan, NULL);
    cr_expect(strstr(r.out, "nodes (default 1)") && strstr(r.out, "--input FILE"), "%s", r.out);
    cli_captured_free(&r);
}

/* The demo plans DeepSeek's way too (candidates 1, iterations 0) and shows both. */
Test(cli_consistency, demo_shows_deepseeks_plan_beside_eplbs)
{
    const char *args[] = {"demo", "-b", "cpu", NULL};
    cli_captured r = cli_run_captured(args, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    const char *deepseek = strstr(r.out, "  DeepSeek      balancedness 0.");
    cr_assert(deepseek, "%s", r.out);
    cr_expect(strstr(deepseek, " (its EPLB: --candidates 1 --iters 0)\n"), "%s", r.out);
    double theirs = 0, ours = 0, gain = -1;
    cr_assert_eq(sscanf(deepseek, "  DeepSeek      balancedness %lf", &theirs), 1);
    cr_assert_eq(sscanf(strstr(r.out, "  balancedness  "), "  balancedness  %lf", &ours), 1);
    const char *gain_line = strstr(r.out, "  gain          ");
    cr_assert(gain_line, "%s", r.out);
    cr_expect_eq(sscanf(gain_line, "  gain          %lf%% lower max GPU load than DeepSeek's", &gain),
                 1, "%s", gain_line);
    cr_expect_geq(gain, 0.0);
    cr_expect_geq(ours, theirs, "eplb's search starts from DeepSeek's plan: %s", r.out);
    cli_captured_free(&r);
}

/* --deepseek is --candidates 1 --iters 0 at its place: the same plan, and a
 * later --candidates still counts. */
Test(cli_consistency, deepseek_names_one_candidate_and_no_swaps)
{
    const char *named[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "--deepseek",
                           "--format", "sglang", "-o", "-", NULL};
    const char *numbers[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-c", "1",
                             "-I", "0", "--format", "sglang", "-o", "-", NULL};
    cli_captured a = cli_run_captured(named, NULL), b = cli_run_captured(numbers, NULL);
    cr_assert_eq(a.code, 0, "%s", a.err);
    cr_assert_eq(b.code, 0, "%s", b.err);
    cr_expect_str_eq(a.out, b.out);
    cr_expect(strstr(a.err, "candidates 1, iterations 0"), "%s", a.err);
    cli_captured_free(&a);
    cli_captured_free(&b);
    const char *later[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "--deepseek",
                           "-c", "3", NULL};
    cli_captured c = cli_run_captured(later, NULL);
    cr_assert_eq(c.code, 0, "%s", c.err);
    cr_expect(strstr(c.out, "candidates 3, iterations 0"), "%s", c.out);
    cli_captured_free(&c);
}

/* good-comma.csv on 2 GPUs: layer 0 has max/mean 1.2863, layer 1 is idle (1),
 * layer 2 1.0492; marks scale from 1 (lowest) to the worst layer (highest). */
Test(cli_consistency, summary_shows_max_over_mean_per_layer)
{
    const char *args[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", NULL};
    const char *ascii[] = {"LC_ALL=C", NULL}, *utf8[] = {"LC_ALL=C.UTF-8", NULL};
    cli_expect_output(args, ascii, "  max/mean      per layer: min 1.0000, median 1.0492, max "
                                   "1.2863\n                #_.\n");
    cli_expect_output(args, utf8, "\n                \u2588\u2581\u2582\n");
}

/* More layers than an 80-column line holds marks: one mark per run of layers. */
Test(cli_consistency, max_over_mean_marks_fit_a_line)
{
    char input[512];
    FILE *f = cli_create_in_scratch(input, sizeof input, "many-layers.csv");
    for (int l = 0; l < 130; l++)
        fprintf(f, "%d, 1, 1, 1\n", l == 64 ? 30 : 2);
    cr_assert_eq(fclose(f), 0);
    const char *args[] = {"plan", "-i", input, "-r", "4", "-p", "2", NULL};
    const char *ascii[] = {"LC_ALL=C", NULL};
    cli_captured r = cli_run_captured(args, ascii);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "(one mark per 3 layers, their worst)\n"), "%s", r.out);
    const char *marks = strstr(r.out, "their worst)\n                ");
    cr_assert(marks, "%s", r.out);
    marks += strlen("their worst)\n                ");
    cr_expect_eq(strcspn(marks, "\n"), 44, "130 layers in marks of 3: %s", marks);
    cr_expect_eq(marks[64 / 3], '#', "the worst layer's mark is the highest: %s", marks);
    cli_captured_free(&r);
}
