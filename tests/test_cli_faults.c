/* Every heap allocation of an eplb tool run fails in turn: the run must then
 * exit 0 with the complete plan and summary, or exit 1 with a message and
 * leave no output file (docs/reliability.md, "Allocation failures in the
 * tool").
 *
 * The failures come from tests/fault_alloc_preload.c, loaded with LD_PRELOAD:
 * run N fails the N-th allocation of the process, for N = 1, 2, ... until a
 * run needs fewer than N allocations. It replaces malloc, which the
 * sanitizers replace too, so the sweep runs in the normal build only. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_run.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

CLI_SUITE(cli_faults, "/tmp/eplb-test-cli-faults-XXXXXX");

#if defined(EPLB_FAULT_ALLOC_PRELOAD) && defined(EPLB_TOOLS_HAVE_JSON)

/* The plan file without stats.plan_us, the one field that differs run to run. */
static json_t *load_plan(const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root)
        json_object_del(json_object_get(root, "stats"), "plan_us");
    return root;
}

/* The summary without its timing lines. */
static char *summary_without_times(const char *path)
{
    char *text = cli_slurp(path);
    if (!text)
        return NULL;
    char *out = text;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        if (!strstr(line, " time ") || (end && strstr(line, " time ") > end)) {
            memmove(out, line, len);
            out += len;
        }
        line += len;
    }
    *out = '\0';
    return text;
}

/* Names in dir other than . and .., space-separated. */
static void names_in(const char *dir, char *buf, size_t len)
{
    buf[0] = '\0';
    DIR *d = opendir(dir);
    struct dirent *ent;
    while (d && (ent = readdir(d)))
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
            strncat(buf, ent->d_name, len - strlen(buf) - 2);
            strcat(buf, " ");
        }
    if (d)
        closedir(d);
}

typedef struct sweep_counts {
    int points;        /* allocations failed, one per run */
    int complete;      /* exit 0 with the complete plan */
    int refused;       /* exit 1 with a message, no output file */
    int by_libgomp;    /* of those, libgomp's own "out of memory" exit */
    int wrong;
} sweep_counts;

/* Runs `eplb ARGS -o DIR/plan.json` once cleanly, then with each allocation
 * failing in turn, checking every run against the clean one. */
static sweep_counts sweep(const char *label, const char *const *args)
{
    char dir[512], plan[600], out[512], err[512], mark[512], nth[64];
    snprintf(dir, sizeof dir, "%s/out", cli_scratch);
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(out, sizeof out, "%s/stdout", cli_scratch);
    snprintf(err, sizeof err, "%s/stderr", cli_scratch);
    snprintf(mark, sizeof mark, "%s/injected", cli_scratch);
    const char *argv[48];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = args[argc];
    argv[argc++] = "-o";
    argv[argc++] = plan;
    argv[argc] = NULL;
    cr_assert_eq(mkdir(dir, 0755), 0);

    cli_run clean = {.args = argv, .stdout_path = out, .stderr_path = err};
    cli_result r = cli_run_eplb(&clean);
    cr_assert(r.exited && r.code == 0, "%s: the clean run failed", label);
    json_t *want_plan = load_plan(plan);
    char *want_summary = summary_without_times(out);
    cr_assert(want_plan && want_summary);
    unlink(plan);

    char preload[600], fail_at[64], mark_env[600];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", EPLB_FAULT_ALLOC_PRELOAD);
    snprintf(mark_env, sizeof mark_env, "EPLB_TEST_FAIL_MALLOC_MARK=%s", mark);
    const char *env[] = {preload, fail_at, mark_env, NULL};
    cli_run failing = {.args = argv, .stdout_path = out, .stderr_path = err, .env = env};
    sweep_counts c = {0};
    for (int n = 1; n < 100000; n++) {
        snprintf(fail_at, sizeof fail_at, "EPLB_TEST_FAIL_MALLOC=%d", n);
        snprintf(nth, sizeof nth, "%s, allocation %d", label, n);
        unlink(mark);
        r = cli_run_eplb(&failing);
        if (!cli_exists(mark)) {
            cr_expect(r.exited && r.code == 0, "%s: no failure injected, yet exit %d", nth, r.code);
            break;
        }
        c.points++;
        char *message = cli_slurp(err);
        char names[1024];
        names_in(dir, names, sizeof names);
        const char *why = NULL;
        if (!r.exited) {
            why = "killed by a signal";
        } else if (r.code == 0) {
            json_t *got = load_plan(plan);
            char *summary = summary_without_times(out);
            if (!got || !json_equal(got, want_plan))
                why = "exit 0 with a plan file that differs from the clean run's";
            else if (!summary || strcmp(summary, want_summary) != 0)
                why = "exit 0 with a summary that differs from the clean run's";
            else if (strcmp(names, "plan.json ") != 0)
                why = "exit 0 leaving other files beside the plan";
            else
                c.complete++;
            json_decref(got);
            free(summary);
        } else if (r.code == 1) {
            if (!message || !message[0])
                why = "exit 1 without a message";
            else if (names[0])
                why = "exit 1 leaving files in the output directory";
            else {
                c.refused++;
                c.by_libgomp += strncmp(message, "libgomp:", 8) == 0;
            }
        } else {
            why = "an exit code other than 0 or 1";
        }
        if (why) {
            c.wrong++;
            if (c.wrong <= 10)
                cr_log_error("%s: %s (%s %d; files: %s): %.300s", nth, why,
                             r.exited ? "exit" : "signal", r.code, names, message ? message : "");
        }
        free(message);
        char cleanup[1100];
        snprintf(cleanup, sizeof cleanup, "rm -rf '%s' && mkdir '%s'", dir, dir);
        cr_assert_eq(system(cleanup), 0);
    }
    json_decref(want_plan);
    free(want_summary);
    return c;
}

static void expect_clean_sweep(const char *label, const char *const *args, int at_least)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sweep_counts c = sweep(label, args);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    cr_log_info("%s: %d allocation points in %.1f s: %d complete plans, %d refused with a "
                "message (%d by libgomp), %d wrong", label, c.points, seconds, c.complete,
                c.refused, c.by_libgomp, c.wrong);
    cr_expect_eq(c.wrong, 0, "%s: %d of %d runs failed badly (the first ten are logged)", label,
                 c.wrong, c.points);
    cr_expect_geq(c.points, at_least, "%s: only %d allocation points", label, c.points);
}

Test(cli_faults, every_allocation_of_a_text_plan_run, .timeout = 1200)
{
    if (UNDER_ASAN)
        cr_skip_test("the sanitizers replace malloc: the sweep runs in the normal build");
    const char *args[] = {"plan", "-i", EPLB_TEST_DATA_DIR "/good-comma.csv", "-r", "16", "-p",
                          "4", "-g", "2", "-n", "2", "-b", "cpu", NULL};
    expect_clean_sweep("text input", args, 100);
}

Test(cli_faults, every_allocation_of_a_json_plan_run, .timeout = 1200)
{
    if (UNDER_ASAN)
        cr_skip_test("the sanitizers replace malloc: the sweep runs in the normal build");
    const char *args[] = {"plan", "-i", EPLB_TEST_DATA_DIR "/good-sglang.json", "-r", "12", "-p",
                          "4", "-b", "cpu", NULL};
    expect_clean_sweep("SGLang JSON input", args, 100);
}

#else

Test(cli_faults, every_allocation_of_a_plan_run)
{
#if UNDER_ASAN
    cr_skip_test("the sanitizers replace malloc: the sweep runs in the normal build");
#else
    cr_skip_test("built without jansson or without the malloc shim");
#endif
}

#endif
