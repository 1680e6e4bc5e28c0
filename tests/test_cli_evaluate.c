/* eplb evaluate (src/tools/cli/cli_evaluate.c): the figures of an eplb plan
 * file or an SGLang file on a load file, a new plan's balancedness and moves,
 * and the specific messages for plans that do not fit (docs/cli.md). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_run.h"
#include "load_weights.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

#define INPUT EPLB_TEST_DATA_DIR "/good-sglang.json"

CLI_SUITE(cli_evaluate, "/tmp/eplb-test-evaluate-XXXXXX");

/* Plans INPUT hierarchically (4 groups on 2 nodes of 2 GPUs, 12 slots) into
 * scratch file name, in the given format; skips the test in a build without
 * jansson, which writes no plan file. */
static void plan_input_or_skip(char *path, size_t len, const char *name, const char *format)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
    cli_in_scratch(path, len, name);
    const char *args[] = {"plan", "-i", INPUT, "-r", "12", "-g", "4", "-n", "2", "-p", "4",
                          "-b", "cpu", "-q", "--format", format, "-o", path, NULL};
    cli_captured r = cli_run_captured(args, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_captured_free(&r);
}

#ifdef EPLB_TOOLS_HAVE_JSON
static json_t *run_json(const char *const *args)
{
    cli_captured r = cli_run_captured(args, NULL);
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    json_error_t jerr;
    json_t *root = json_loads(r.out, 0, &jerr);
    cr_assert_not_null(root, "not JSON (%s): %.200s", jerr.text, r.out);
    cli_captured_free(&r);
    return root;
}

static double real_of(const json_t *object, const char *key)
{
    const json_t *v = json_object_get(object, key);
    cr_assert(json_is_number(v), "no number under %s", key);
    return json_number_value(v);
}
#endif

/* Evaluated on its own loads, a plan reports its plan file's figures, and a
 * new plan with the same options is the same plan: nothing moves. */
Test(cli_evaluate, own_loads_give_the_plan_files_figures)
{
    char plan[512];
    plan_input_or_skip(plan, sizeof plan, "plan.json", "eplb");
#ifdef EPLB_TOOLS_HAVE_JSON
    json_error_t jerr;
    json_t *file = json_load_file(plan, 0, &jerr);
    cr_assert_not_null(file, "%s", jerr.text);
    const json_t *stats = json_object_get(file, "stats");
    const char *args[] = {"evaluate", "-i", INPUT, "--plan", plan, "-b", "cpu", "--json", NULL};
    json_t *got = run_json(args);
    cr_expect_str_eq(json_string_value(json_object_get(got, "policy")), "hierarchical");
    cr_expect_str_eq(json_string_value(json_object_get(got, "plan_format")), "eplb-plan");
    const char *same[] = {"balancedness", "bound", "max_load_sum", "global_balancedness_bound"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        cr_expect_float_eq(real_of(got, same[i]), real_of(stats, same[i]),
                           1e-12 * (1 + real_of(stats, same[i])), "%s", same[i]);
    cr_expect(json_equal(json_object_get(got, "bound_per_layer"),
                         json_object_get(stats, "bound_per_layer")));
    cr_expect(json_equal(json_object_get(got, "duplicates"), json_object_get(stats, "duplicates")));
    const json_t *fresh = json_object_get(got, "new_plan");
    cr_assert(json_is_object(fresh), "no new plan");
    cr_expect_eq(json_integer_value(json_object_get(fresh, "moved_slots")), 0);
    cr_expect_float_eq(real_of(fresh, "balancedness"), real_of(stats, "balancedness"), 1e-12);
    /* From the fresh plan of the same loads the incremental plan keeps everything. */
    const json_t *incremental = json_object_get(fresh, "incremental");
    cr_assert(json_is_object(incremental), "no incremental plan");
    cr_expect_eq(json_integer_value(json_object_get(incremental, "moved_slots")), 0);
    cr_expect_float_eq(real_of(incremental, "balancedness"), real_of(stats, "balancedness"),
                       1e-12);
    json_decref(got);
    json_decref(file);
#endif
}

/* SGLang's file has no shape: --gpus is needed, and then the figures are the
 * eplb plan file's (its groups and nodes given too). */
Test(cli_evaluate, sglang_file_needs_the_gpus)
{
    char plan[512], sglang[512];
    plan_input_or_skip(plan, sizeof plan, "plan.json", "eplb");
    plan_input_or_skip(sglang, sizeof sglang, "sglang.json", "sglang");
#ifdef EPLB_TOOLS_HAVE_JSON
    const char *no_gpus[] = {"evaluate", "-i", INPUT, "--plan", sglang, NULL};
    cli_captured r = cli_run_captured(no_gpus, NULL);
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "--gpus is required"), "%s", r.err);
    cli_captured_free(&r);
    const char *eplb_args[] = {"evaluate", "-i", INPUT, "--plan", plan, "--no-new-plan", "--json",
                               NULL};
    const char *sglang_args[] = {"evaluate", "-i", INPUT, "--plan", sglang, "-g", "4", "-n", "2",
                                 "-p", "4", "--no-new-plan", "--json", NULL};
    json_t *a = run_json(eplb_args), *b = run_json(sglang_args);
    cr_expect(json_is_null(json_object_get(a, "new_plan")));
    cr_expect_str_eq(json_string_value(json_object_get(b, "plan_format")), "sglang");
    const char *same[] = {"balancedness", "bound", "duplicates", "max_load_per_layer", "policy"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        cr_expect(json_equal(json_object_get(a, same[i]), json_object_get(b, same[i])), "%s",
                  same[i]);
    json_decref(a);
    json_decref(b);
#endif
}

Test(cli_evaluate, text_summary_names_the_bound_and_the_new_plan)
{
    char plan[512];
    plan_input_or_skip(plan, sizeof plan, "plan.json", "eplb");
    const char *args[] = {"evaluate", "-i", INPUT, "--plan", plan, "-b", "cpu", NULL};
    cli_captured r = cli_run_captured(args, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "best possible "), "%s", r.out);
    cr_expect(strstr(r.out, "for any hierarchical plan"), "%s", r.out);
    cr_expect(strstr(r.out, "  duplicates    "), "%s", r.out);
    cr_expect(strstr(r.out, "  new plan      balancedness "), "%s", r.out);
    cr_expect(strstr(r.out, "it moves 0 of 36 slots"), "%s", r.out);
    cr_expect(strstr(r.out, "  incremental   balancedness "), "%s", r.out);
    cli_captured_free(&r);
}

static void expect_refused(const char *const *args, const char *fragment)
{
    cli_captured r = cli_run_captured(args, NULL);
    cr_expect_eq(r.code, 2, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, fragment), "message '%s' lacks '%s'", r.err, fragment);
    cr_expect_eq(r.out[0], '\0', "nothing on standard output: %s", r.out);
    cli_captured_free(&r);
}

static const char *write_scratch(char *path, size_t len, const char *name, const char *text)
{
    FILE *f = cli_create_in_scratch(path, len, name);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(cli_evaluate, plans_that_do_not_fit_are_refused_by_name)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
    char path[512];
    /* Three layers of eight experts (good-sglang.json). */
    const char *row = "[0,1,2,3,4,5,6,7]";
    char text[256];
    snprintf(text, sizeof text, "{\"physical_to_logical_map\": [%s, [0,1,2,3,4,5,6,8], %s]}", row,
             row);
    const char *bad_entry[] = {"evaluate", "-i", INPUT, "--plan",
                               write_scratch(path, sizeof path, "entry.json", text), "-p", "4",
                               NULL};
    expect_refused(bad_entry, "phy2log[1][7] = 8 is not an expert (0..7)");

    char two_layers[512];
    snprintf(text, sizeof text, "{\"physical_to_logical_map\": [%s, %s]}", row, row);
    const char *layers[] = {"evaluate", "-i", INPUT, "--plan",
                            write_scratch(two_layers, sizeof two_layers, "layers.json", text),
                            "-p", "4", NULL};
    expect_refused(layers, "has 2 layers, the loads 3");
    const char *replicas[] = {"evaluate", "-i", INPUT, "--plan", path, "-r", "16", "-p", "4",
                              NULL};
    expect_refused(replicas, "--replicas 16, but");

    char ragged[512];
    const char *ragged_args[] = {"evaluate", "-i", INPUT, "--plan",
                                 write_scratch(ragged, sizeof ragged, "ragged.json",
                                               "{\"physical_to_logical_map\": [[0,1],[0]]}"),
                                 "-p", "1", NULL};
    expect_refused(ragged_args, "[1] is not an array of 2 entries");

    char neither[512];
    const char *neither_args[] = {"evaluate", "-i", INPUT, "--plan",
                                  write_scratch(neither, sizeof neither, "neither.json",
                                                "{\"logical_count\": [[1]]}"),
                                  NULL};
    expect_refused(neither_args, "not a plan");

    char torch[512];
    const char *torch_args[] = {"evaluate", "-i", INPUT, "--plan",
                                write_scratch(torch, sizeof torch, "dump.pt", "PK\003\004zip"),
                                NULL};
    expect_refused(torch_args, "torch.save");

    const char *no_plan[] = {"evaluate", "-i", INPUT, NULL};
    expect_refused(no_plan, "--plan is required");
}
