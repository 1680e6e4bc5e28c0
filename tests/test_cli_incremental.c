/* eplb plan --previous FILE [--slack X] and --distinct through the built tool
 * (docs/cli.md; docs/spec.md sections 11 and 13): the running plan read from
 * an eplb plan file or SGLang's JSON, the moves in the plan file's statistics
 * and the summary, and the specific refusals of plans that do not fit, of
 * malformed files and of options without what they need. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"
#include "eplb/eplb.h"
#include "load_weights.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

/* 3 layers x 64 experts, planned on 80 slots, 16 GPUs, 2 nodes, 2 groups. */
#define INPUT EPLB_TEST_DATA_DIR "/olmoe-arxiv.json"
#define LAYERS 3
#define SLOTS_PER_LAYER 80

CLI_SUITE(cli_incremental, "/tmp/eplb-test-cli-incremental-XXXXXX");

/* eplb plan on INPUT (hierarchical, 2 nodes) into the scratch file out_name,
 * with more arguments (NULL-terminated). */
static cli_captured plan_into(const char *out_name, const char *const *more)
{
    char out[512];
    cli_in_scratch(out, sizeof out, out_name);
    const char *args[40] = {"plan", "-i", INPUT, "-r", "80", "-p", "16", "-n", "2", "-g", "2",
                            "-o", out};
    int n = 13;
    for (const char *const *m = more; m && *m; m++)
        args[n++] = *m;
    args[n] = NULL;
    return cli_run_captured(args, NULL);
}

/* plan_into, which must succeed (exit 0). */
static cli_captured plan_into_ok(const char *out_name, const char *const *more)
{
    cli_captured r = plan_into(out_name, more);
    cr_assert_eq(r.code, 0, "%s: exit %d: %s", out_name, r.code, r.err);
    return r;
}

/* The scratch file's full name. */
static const char *scratch_path(const char *name)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    cli_in_scratch(path, sizeof paths[0], name);
    return path;
}

static void write_scratch(const char *name, const char *text)
{
    char path[512];
    FILE *f = cli_create_in_scratch(path, sizeof path, name);
    cr_assert(fputs(text, f) >= 0 && fclose(f) == 0);
}

/* A refused run: exit code, a message naming what is wrong, no plan file. */
static void expect_refused(const char *const *more, int code, const char *wanted)
{
    remove(scratch_path("refused.json"));
    cli_captured r = plan_into("refused.json", more);
    cr_expect_eq(r.code, code, "%s: exit %d: %s", more[0], r.code, r.err);
    cr_expect(strstr(r.err, wanted), "%s: wanted '%s' in: %s", more[0], wanted, r.err);
    cr_expect(strncmp(r.err, "eplb plan: ", 11) == 0, "%s", r.err);
    char *left = cli_slurp(scratch_path("refused.json"));
    cr_expect_null(left, "%s: no plan file", more[0]);
    free(left);
    cli_captured_free(&r);
}

/* --previous naming scratch file name, written with text first unless text is
 * NULL: a refused run (exit 2) whose message holds wanted. */
static void expect_previous_refused(const char *name, const char *text, const char *wanted)
{
    if (text)
        write_scratch(name, text);
    expect_refused((const char *[]){"--previous", scratch_path(name), NULL}, 2, wanted);
}

Test(cli_incremental, slack_needs_previous_and_a_value)
{
    expect_refused((const char *[]){"--slack", "0.1", NULL}, 2, "--slack needs --previous");
    expect_refused((const char *[]){"--slack", "0", NULL}, 2, "--slack needs --previous");
    write_scratch("any.json", "{\"physical_to_logical_map\": [[0]]}");
    const char *any = scratch_path("any.json");
    expect_refused((const char *[]){"--previous", any, "--slack", "-1", NULL}, 2,
                   "bad value '-1' for --slack");
    expect_refused((const char *[]){"--previous", any, "--slack", "inf", NULL}, 2,
                   "for --slack: must be a finite number >= 0");
    expect_refused((const char *[]){"--previous", NULL}, 2, "--previous");
    const char *demo[] = {"demo", "--previous", any, NULL};
    cli_captured r = cli_run_captured(demo, NULL);
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "eplb demo: --previous is not accepted"), "%s", r.err);
    cli_captured_free(&r);
}

#ifdef EPLB_TOOLS_HAVE_JSON
static json_t *load_plan(const char *name)
{
    json_error_t jerr;
    json_t *root = json_load_file(scratch_path(name), 0, &jerr);
    cr_assert_not_null(root, "%s: %s", name, jerr.text);
    return root;
}

static json_int_t stat_of(const json_t *plan, const char *key)
{
    const json_t *v = json_object_get(json_object_get(plan, "stats"), key);
    cr_assert(json_is_integer(v), "stats.%s is not an integer", key);
    return json_integer_value(v);
}

/* The moves in a plan file from --previous hold together: at most every
 * slot moved, the busiest GPU between the even share and all of them. */
static void expect_consistent_moves(const json_t *plan)
{
    const json_int_t moved = stat_of(plan, "moved_slots");
    const json_int_t most = stat_of(plan, "max_moved_per_gpu");
    const json_int_t cross = stat_of(plan, "cross_node_moves");
    cr_expect(moved >= 0 && moved <= LAYERS * SLOTS_PER_LAYER, "moved_slots %lld",
              (long long)moved);
    cr_expect(most <= moved && most * 16 >= moved, "max_moved_per_gpu %lld of %lld",
              (long long)most, (long long)moved);
    cr_expect(cross >= 0 && cross <= moved, "cross_node_moves %lld", (long long)cross);
}
#endif

/* The running plan of the same loads and options is kept as it is: the plan
 * file holds its phy2log, zero moves, and names the file it came from. */
Test(cli_incremental, the_fresh_plan_of_the_same_loads_moves_nothing)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
#ifdef EPLB_TOOLS_HAVE_JSON
    cli_captured fresh = plan_into_ok("fresh.json", (const char *[]){"-q", NULL});
    cli_captured again = plan_into_ok(
        "again.json", (const char *[]){"--previous", scratch_path("fresh.json"), NULL});
    json_t *before = load_plan("fresh.json"), *after = load_plan("again.json");
    cr_expect(json_equal(json_object_get(before, "phy2log"), json_object_get(after, "phy2log")),
              "the same plan");
    cr_expect_eq(stat_of(after, "moved_slots"), 0);
    cr_expect_eq(stat_of(after, "max_moved_per_gpu"), 0);
    cr_expect_eq(stat_of(after, "cross_node_moves"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(after, "previous")),
                     scratch_path("fresh.json"));
    cr_expect_null(json_object_get(before, "previous"), "no previous without --previous");
    cr_expect_null(json_object_get(json_object_get(before, "stats"), "moved_slots"),
                   "no moves without --previous");
    cr_expect_null(json_object_get(json_object_get(after, "options"), "slack"),
                   "slack 0 is not written");
    cr_expect(strstr(again.out, "  moved         0 of 240 slots (0.0%), at most 0 to one GPU, "
                                "0 across nodes\n"), "%s", again.out);
    cr_expect(strstr(again.out, "eplb_rebalance_incremental"), "%s", again.out);
    json_decref(before);
    json_decref(after);
    cli_captured_free(&fresh);
    cli_captured_free(&again);
#endif
}

/* SGLang's physical_to_logical_map is a running plan too; a plan made with
 * another seed has to move slots, and no more than a fresh plan moves. */
Test(cli_incremental, an_sglang_file_is_a_previous_plan)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
#ifdef EPLB_TOOLS_HAVE_JSON
    cli_captured old = plan_into_ok(
        "running.json", (const char *[]){"-q", "--seed", "7", "--format", "sglang", NULL});
    const char *running = scratch_path("running.json");
    cli_captured inc = plan_into_ok(
        "inc.json", (const char *[]){"-q", "--previous", running, "--slack", "0.05", NULL});
    json_t *plan = load_plan("inc.json");
    expect_consistent_moves(plan);
    const json_t *slack = json_object_get(json_object_get(plan, "options"), "slack");
    cr_expect(json_is_real(slack) && json_real_value(slack) == 0.05, "options.slack 0.05");

    /* eplb evaluate's new plan is the fresh plan: it moves at least as much. */
    const char *evaluate[] = {"evaluate", "-i",  INPUT,   "--plan", running, "-p",   "16",
                              "-n",       "2",   "-g",    "2",      "--json", NULL};
    cli_captured e = cli_run_captured(evaluate, NULL);
    cr_assert_eq(e.code, 0, "%s", e.err);
    json_t *figures = json_loads(e.out, 0, NULL);
    cr_assert_not_null(figures);
    const json_t *fresh_moved = json_object_get(json_object_get(figures, "new_plan"), "moved_slots");
    cr_expect_leq(stat_of(plan, "moved_slots"), json_integer_value(fresh_moved));
    /* Its incremental plan (slack 0) moves no more than the fresh one either. */
    const json_t *inc_moved = json_object_get(
        json_object_get(json_object_get(figures, "new_plan"), "incremental"), "moved_slots");
    cr_assert(json_is_integer(inc_moved), "no incremental plan in eplb evaluate's figures");
    cr_expect_leq(json_integer_value(inc_moved), json_integer_value(fresh_moved));
    json_decref(figures);
    json_decref(plan);
    cli_captured_free(&e);
    cli_captured_free(&old);
    cli_captured_free(&inc);
#endif
}

/* A running plan that does not fit the loads and shape, or is no plan, is an
 * input error (exit 2) that names the file and the fault. */
Test(cli_incremental, previous_plans_that_do_not_fit_are_refused)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
    expect_previous_refused("two-layers.json", "{\"physical_to_logical_map\": [[0, 1], [1, 0]]}",
                            "has 2 layers, the loads of");
    cli_captured wide = plan_into_ok("wide.json", (const char *[]){"-q", "-r", "96", NULL});
    cli_captured_free(&wide);
    expect_previous_refused("wide.json", NULL, "has 96 slots per layer, --replicas is 80");
    /* 80 slots per layer holding experts 0..63, then one slot of a layer
     * given expert 64, which the loads do not have. */
    char text[4096] = "{\"physical_to_logical_map\": [";
    for (int l = 0; l < LAYERS; l++)
        for (int q = 0; q < SLOTS_PER_LAYER; q++)
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%d%s",
                     q ? "," : l ? ",[" : "[", l == 1 && q == 5 ? 64 : q % 64,
                     q == SLOTS_PER_LAYER - 1 ? "]" : "");
    strcat(text, "]}");
    expect_previous_refused("not-an-expert.json", text, "planning");
}

Test(cli_incremental, malformed_previous_files_are_refused)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
    expect_previous_refused("broken.json", "{\"physical_to_logical_map\": [[0, 1,",
                            "invalid JSON");
    expect_previous_refused("loads.json", "{\"logical_count\": [[1, 2]]}", "not a plan");
    expect_previous_refused("ragged.json", "{\"phy2log\": [[0, 1], [0]]}",
                            "is not an array of 2 entries like row 0");
    expect_previous_refused("reals.json", "{\"physical_to_logical_map\": [[0.5]]}",
                            "is not an integer");
    expect_previous_refused("absent.json", NULL, "cannot read the plan");
}

/* --distinct leaves no GPU with two replicas of one expert on the cpu
 * backend (test_opencl_distinct.c and test_cuda_distinct.c check the other
 * backends' plans). */
Test(cli_incremental, distinct_leaves_no_duplicates_on_the_cpu_backend)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
#ifdef EPLB_TOOLS_HAVE_JSON
    cli_captured plain = plan_into_ok("plain.json", (const char *[]){"-q", "-b", "cpu", NULL});
    cli_captured distinct =
        plan_into_ok("distinct.json", (const char *[]){"-b", "cpu", "--distinct", NULL});
    json_t *before = load_plan("plain.json"), *after = load_plan("distinct.json");
    cr_expect_gt(stat_of(before, "duplicates"), 0, "these loads have duplicates without it");
    cr_expect_eq(stat_of(after, "duplicates"), 0);
    cr_expect(json_is_true(json_object_get(json_object_get(after, "options"), "distinct")));
    cr_expect_null(json_object_get(json_object_get(before, "options"), "distinct"));
    cr_expect(strstr(distinct.out, ", distinct\n"), "%s", distinct.out);
    json_decref(before);
    json_decref(after);
    cli_captured_free(&plain);
    cli_captured_free(&distinct);
#endif
}

/* eplb evaluate --previous reports the moves of the evaluated plan from the
 * one before it: those eplb plan wrote into the plan file. */
Test(cli_incremental, evaluate_counts_the_moves_from_a_previous_plan)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no plan file to read");
#ifdef EPLB_TOOLS_HAVE_JSON
    cli_captured old = plan_into_ok("running.json", (const char *[]){"-q", "--seed", "3", NULL});
    const char *running = scratch_path("running.json");
    cli_captured inc =
        plan_into_ok("inc.json", (const char *[]){"-q", "--previous", running, NULL});
    json_t *plan = load_plan("inc.json");
    const char *evaluate[] = {"evaluate", "-i",      INPUT,   "--plan", scratch_path("inc.json"),
                              "--previous", running, "--json", "--no-new-plan", NULL};
    cli_captured e = cli_run_captured(evaluate, NULL);
    cr_assert_eq(e.code, 0, "%s", e.err);
    json_t *figures = json_loads(e.out, 0, NULL);
    cr_assert_not_null(figures);
    const json_t *moves = json_object_get(figures, "moves");
    const char *keys[] = {"moved_slots", "max_moved_per_gpu", "cross_node_moves"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_expect_eq(json_integer_value(json_object_get(moves, keys[i])), stat_of(plan, keys[i]),
                     "%s", keys[i]);
    cr_expect_str_eq(json_string_value(json_object_get(moves, "previous_format")), "eplb-plan");
    json_decref(figures);

    /* The summary says it too; a previous plan of another width is refused. */
    const char *text[] = {"evaluate", "-i", INPUT, "--plan", scratch_path("inc.json"),
                          "--previous", running, "--no-new-plan", NULL};
    cli_captured t = cli_run_captured(text, NULL);
    cr_assert_eq(t.code, 0, "%s", t.err);
    char line[128];
    snprintf(line, sizeof line, "  moved         %lld of 240 slots",
             (long long)stat_of(plan, "moved_slots"));
    cr_expect(strstr(t.out, line), "%s", t.out);
    cli_captured wide = plan_into_ok("wide.json", (const char *[]){"-q", "-r", "96", NULL});
    const char *mismatch[] = {"evaluate", "-i", INPUT, "--plan", scratch_path("inc.json"),
                              "--previous", scratch_path("wide.json"), NULL};
    cli_captured m = cli_run_captured(mismatch, NULL);
    cr_expect_eq(m.code, 2);
    cr_expect(strstr(m.err, "is 3 x 96 slots"), "%s", m.err);
    json_decref(plan);
    cli_captured_free(&old);
    cli_captured_free(&inc);
    cli_captured_free(&e);
    cli_captured_free(&t);
    cli_captured_free(&wide);
    cli_captured_free(&m);
#endif
}
