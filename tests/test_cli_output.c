/* The eplb tool's outputs: the plan file of a large skewed case stays linear
 * in layers x replicas (memory and size), write errors on the summary are
 * failures, and replacing a plan file keeps its mode, writes through a
 * symbolic link and works for the longest file names (docs/cli.md, "Output
 * file"; docs/reliability.md, "Output files"). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_run.h"
#include "eplb/eplb.h"
#include "load_weights.h"
#include "workload.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

#define INPUT EPLB_TEST_DATA_DIR "/good-comma.csv"

CLI_SUITE(cli_output, "/tmp/eplb-test-output-XXXXXX");

/* Whether the file holds a plan file (its first bytes). */
static int holds_plan(const char *path)
{
    char *text = cli_slurp(path);
    int ok = text && strncmp(text, "{\"format\":\"eplb-plan", 19) == 0;
    free(text);
    return ok;
}

/* The names in the scratch directory, space-separated, sorted by readdir order. */
static void scratch_names(char *buf, size_t len, const char *dir)
{
    buf[0] = '\0';
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    struct dirent *ent;
    while ((ent = readdir(d)))
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
            strncat(buf, ent->d_name, len - strlen(buf) - 2);
            strcat(buf, " ");
        }
    closedir(d);
}

/* ---- item 5: a large skewed case, linear memory and file ------------------------- */

#define SCALE_L 200
#define SCALE_E 1024
#define SCALE_R 8192

/* Zipf loads (exponent 1.2) over a random order of the experts, per layer: a
 * few experts take most of the load, so the most replicated expert has
 * hundreds of replicas and a log2phy padded to max(logcnt) would not be
 * linear in layers x replicas. */
static void skewed_weights(float *w)
{
    uint64_t state = 12345;
    int perm[SCALE_E];
    for (int l = 0; l < SCALE_L; l++) {
        for (int e = 0; e < SCALE_E; e++)
            perm[e] = e;
        for (int e = SCALE_E - 1; e > 0; e--) {
            int j = (int)(eplb_workload_next(&state) % (uint64_t)(e + 1));
            int t = perm[e];
            perm[e] = perm[j];
            perm[j] = t;
        }
        for (int e = 0; e < SCALE_E; e++)
            w[l * SCALE_E + e] = (float)(int64_t)(1e7 / pow((double)perm[e] + 1.0, 1.2));
    }
}

Test(cli_output, scale_plan_is_linear_in_memory_and_size, .timeout = 300)
{
#ifndef EPLB_TOOLS_HAVE_JSON
    cr_skip_test("built without jansson: no plan files");
#else
    if (UNDER_ASAN)
        cr_skip_test("AddressSanitizer reserves terabytes of address space: no limit to set");
    char input[512], plan[512];
    cli_in_scratch(input, sizeof input, "scale.csv");
    cli_in_scratch(plan, sizeof plan, "scale.json");
    float *w = malloc((size_t)SCALE_L * SCALE_E * sizeof *w);
    cr_assert_not_null(w);
    skewed_weights(w);
    FILE *f = fopen(input, "w");
    cr_assert_not_null(f);
    for (int l = 0; l < SCALE_L; l++)
        for (int e = 0; e < SCALE_E; e++)
            fprintf(f, "%.9g%c", (double)w[l * SCALE_E + e], e + 1 < SCALE_E ? ',' : '\n');
    cr_assert_eq(fclose(f), 0);

    /* The planner on its own: the reference plan, and its most replicated expert. */
    const eplb_shape shape = {SCALE_L, SCALE_E, SCALE_R, 16, 16, 1024};
    eplb_options o;
    eplb_options_init(&o);
    o.candidates = 1;
    o.iterations = 0;
    int64_t *phy2log = malloc((size_t)SCALE_L * SCALE_R * sizeof *phy2log);
    int64_t *logcnt = malloc((size_t)SCALE_L * SCALE_E * sizeof *logcnt);
    int64_t widest = 0;
    eplb_context *ctx = NULL;
    cr_assert_eq(eplb_context_create(&ctx, "cpu"), EPLB_OK, "%s", eplb_last_error());
    cr_assert_eq(eplb_rebalance(ctx, w, &shape, &o, phy2log, logcnt, NULL, 0, &widest), EPLB_OK);
    eplb_context_free(ctx);
    free(w);
    cr_assert_gt(widest, 100, "the loads are not skewed enough to test padding: max logcnt %lld",
                 (long long)widest);

    /* Today's padded log2phy alone would be 200 x 1024 x 7169 int64: 11.7 GB. The
     * limit on the address space makes such a plan fail at once instead of
     * swapping; the peak resident memory is what the promise is about. */
    const char *args[] = {"plan", "-i", input, "-r", "8192", "-g", "16", "-n", "16", "-p", "1024",
                          "-c", "1", "-I", "0", "-b", "cpu", "-q", "-o", plan, NULL};
    char err_path[512];
    cli_in_scratch(err_path, sizeof err_path, "stderr");
    cli_run run = {.args = args, .stderr_path = err_path, .address_space = (rlim_t)3 << 30};
    cli_result r = cli_run_eplb(&run);
    char *err = cli_slurp(err_path);
    cr_assert(r.exited && r.code == 0, "eplb plan on the scale case: %s %d: %s",
              r.exited ? "exit" : "signal", r.code, err ? err : "");
    free(err);
    struct stat st;
    cr_assert_eq(stat(plan, &st), 0);
    cr_log_info("scale case, max logcnt %lld: peak RSS %ld KiB, plan file %lld bytes",
                (long long)widest, r.max_rss_kb, (long long)st.st_size);
    cr_expect_lt(r.max_rss_kb, 1024L * 1024, "peak RSS %ld KiB, want under 1 GiB", r.max_rss_kb);
    cr_expect_lt(st.st_size, 200LL << 20, "plan file of %lld bytes", (long long)st.st_size);

    /* The file is valid JSON holding the planner's phy2log and logcnt, and
     * log2phy lists each expert's slots once, in ascending slot order. */
    json_error_t jerr;
    json_t *root = json_load_file(plan, 0, &jerr);
    cr_assert_not_null(root, "%s: line %d: %s", plan, jerr.line, jerr.text);
    json_t *jp = json_object_get(root, "phy2log"), *jc = json_object_get(root, "logcnt");
    json_t *jx = json_object_get(root, "log2phy");
    cr_assert(json_array_size(jp) == SCALE_L && json_array_size(jc) == SCALE_L &&
              json_array_size(jx) == SCALE_L);
    for (size_t l = 0; l < SCALE_L; l++) {
        json_t *prow = json_array_get(jp, l), *crow = json_array_get(jc, l);
        json_t *xrow = json_array_get(jx, l);
        cr_assert(json_array_size(prow) == SCALE_R && json_array_size(crow) == SCALE_E &&
                  json_array_size(xrow) == SCALE_E, "layer %zu", l);
        for (size_t q = 0; q < SCALE_R; q++)
            cr_assert_eq(json_integer_value(json_array_get(prow, q)), phy2log[l * SCALE_R + q],
                         "phy2log[%zu][%zu]", l, q);
        for (size_t e = 0; e < SCALE_E; e++) {
            cr_assert_eq(json_integer_value(json_array_get(crow, e)), logcnt[l * SCALE_E + e]);
            json_t *slots = json_array_get(xrow, e);
            cr_assert_eq((int64_t)json_array_size(slots), logcnt[l * SCALE_E + e]);
            int64_t previous = -1;
            for (size_t k = 0; k < json_array_size(slots); k++) {
                int64_t q = json_integer_value(json_array_get(slots, k));
                cr_assert(q > previous && q < SCALE_R, "log2phy[%zu][%zu][%zu] = %lld", l, e, k,
                          (long long)q);
                cr_assert_eq(phy2log[l * SCALE_R + q], (int64_t)e);
                previous = q;
            }
        }
    }
    json_decref(root);
    free(phy2log);
    free(logcnt);
#endif
}

/* ---- item 8: write errors on the summary --------------------------------------- */

Test(cli_output, summary_write_error_exits_1)
{
#ifndef EPLB_TOOLS_HAVE_JSON
    cr_skip_test("built without jansson: no plan files");
#else
    char plan[512], err_path[512];
    cli_in_scratch(plan, sizeof plan, "plan.json");
    cli_in_scratch(err_path, sizeof err_path, "stderr");
    const char *with_file[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-o", plan,
                               NULL};
    cli_run run = {.args = with_file, .stdout_path = "/dev/full", .stderr_path = err_path};
    cli_result r = cli_run_eplb(&run);
    char *err = cli_slurp(err_path);
    cr_expect(r.exited && r.code == 1, "summary to /dev/full: exit %d: %s", r.code, err);
    cr_expect(err && strstr(err, "standard output"), "the message: %s", err);
    cr_expect(!cli_exists(plan), "a failed run must not write the plan file");
    free(err);

    /* An existing plan stays as it was. */
    FILE *f = fopen(plan, "w");
    cr_assert_not_null(f);
    fputs("old plan\n", f);
    cr_assert_eq(fclose(f), 0);
    r = cli_run_eplb(&run);
    cr_expect(r.exited && r.code == 1, "exit %d", r.code);
    char *text = cli_slurp(plan);
    cr_expect_str_eq(text, "old plan\n");
    free(text);

    const char *const *const others[] = {
        (const char *const[]){"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", NULL},
        (const char *const[]){"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-o", "-",
                              NULL},
        (const char *const[]){"demo", "-b", "cpu", NULL},
        (const char *const[]){"--help", NULL},
        (const char *const[]){"--version", NULL},
        (const char *const[]){"plan", "--help", NULL},
        (const char *const[]){"backends", NULL},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        cli_run other = {.args = others[i], .stdout_path = "/dev/full", .stderr_path = err_path};
        r = cli_run_eplb(&other);
        err = cli_slurp(err_path);
        cr_expect(r.exited && r.code == 1, "eplb %s %s ... > /dev/full: exit %d: %s", others[i][0],
                  others[i][1] ? others[i][1] : "", r.code, err);
        cr_expect(err && err[0], "eplb %s: no message", others[i][0]);
        free(err);
    }

    /* The summary goes to standard error with -o -: a failure there fails too. */
    char out_path[512];
    cli_in_scratch(out_path, sizeof out_path, "stdout");
    const char *to_stdout[] = {"plan", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-o", "-",
                               NULL};
    cli_run summary_to_full = {.args = to_stdout, .stdout_path = out_path,
                               .stderr_path = "/dev/full"};
    r = cli_run_eplb(&summary_to_full);
    cr_expect(r.exited && r.code == 1, "summary on standard error to /dev/full: exit %d", r.code);

    /* Quiet: nothing to write, so nothing fails. */
    const char *quiet[] = {"plan", "-q", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-o",
                           plan, NULL};
    cli_run quiet_run = {.args = quiet, .stdout_path = "/dev/full", .stderr_path = err_path};
    r = cli_run_eplb(&quiet_run);
    cr_expect(r.exited && r.code == 0, "quiet run: exit %d", r.code);
    cr_expect(holds_plan(plan));
#endif
}

/* ---- item 8: replacing a plan file --------------------------------------------- */

static cli_result plan_to(const char *output)
{
    char err_path[512];
    cli_in_scratch(err_path, sizeof err_path, "stderr");
    const char *args[] = {"plan", "-q", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-o",
                          output, NULL};
    cli_run run = {.args = args, .stderr_path = err_path};
    cli_result r = cli_run_eplb(&run);
    if (!r.exited || r.code != 0) {
        char *err = cli_slurp(err_path);
        cr_log_error("eplb plan -o %s: %s %d: %s", output, r.exited ? "exit" : "signal", r.code,
                     err ? err : "");
        free(err);
    }
    unlink(err_path);
    return r;
}

Test(cli_output, replacing_a_plan_keeps_its_mode)
{
#ifndef EPLB_TOOLS_HAVE_JSON
    cr_skip_test("built without jansson: no plan files");
#else
    static const mode_t modes[] = {0600, 0640, 0604, 0444};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char plan[512];
        cli_in_scratch(plan, sizeof plan, "plan.json");
        FILE *f = fopen(plan, "w");
        cr_assert_not_null(f);
        cr_assert_eq(fclose(f), 0);
        cr_assert_eq(chmod(plan, modes[i]), 0);
        cli_result r = plan_to(plan);
        cr_expect(r.exited && r.code == 0);
        struct stat st;
        cr_assert_eq(stat(plan, &st), 0);
        cr_expect_eq(st.st_mode & 07777, modes[i], "mode %o became %o", (unsigned)modes[i],
                     (unsigned)(st.st_mode & 07777));
        cr_expect(holds_plan(plan));
        unlink(plan);
    }
    /* A new file gets the usual 0666 less the umask. */
    static const mode_t masks[] = {022, 077};
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        char plan[512];
        cli_in_scratch(plan, sizeof plan, "new.json");
        mode_t old = umask(masks[i]);
        cli_result r = plan_to(plan);
        umask(old);
        cr_expect(r.exited && r.code == 0);
        struct stat st;
        cr_assert_eq(stat(plan, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0666 & ~masks[i], "umask %o gave mode %o",
                     (unsigned)masks[i], (unsigned)(st.st_mode & 07777));
        unlink(plan);
    }
#endif
}

/* The link at `name` still points at `text`, and `target` holds a plan. */
static void expect_written_through(const char *name, const char *text, const char *target)
{
    char link[512], got[512], path[512];
    cli_in_scratch(link, sizeof link, name);
    cli_in_scratch(path, sizeof path, target);
    ssize_t n = readlink(link, got, sizeof got - 1);
    cr_assert_gt(n, 0, "%s is no longer a symbolic link", name);
    got[n] = '\0';
    cr_expect_str_eq(got, text, "%s now points elsewhere", name);
    cr_expect(holds_plan(path), "%s: the plan did not reach %s", name, target);
}

Test(cli_output, symlink_output_is_written_through)
{
#ifndef EPLB_TOOLS_HAVE_JSON
    cr_skip_test("built without jansson: no plan files");
#else
    char sub[512], path[512], abs_target[512];
    cli_in_scratch(sub, sizeof sub, "sub");
    cr_assert_eq(mkdir(sub, 0755), 0);
    cli_in_scratch(path, sizeof path, "sub/existing.json");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(chmod(path, 0600), 0);
    cli_in_scratch(abs_target, sizeof abs_target, "sub/absolute.json");
    struct {
        const char *name, *text, *target;
    } links[] = {
        {"to-existing.json", "sub/existing.json", "sub/existing.json"},
        {"dangling.json", "sub/new.json", "sub/new.json"},
        {"absolute.json", abs_target, "sub/absolute.json"},
        {"chain.json", "sub/hop.json", "sub/chained.json"},
    };
    cli_in_scratch(path, sizeof path, "sub/hop.json");
    cr_assert_eq(symlink("chained.json", path), 0); /* relative to sub/ */
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        cli_in_scratch(path, sizeof path, links[i].name);
        cr_assert_eq(symlink(links[i].text, path), 0);
        cli_result r = plan_to(path);
        cr_expect(r.exited && r.code == 0, "-o %s", links[i].name);
        expect_written_through(links[i].name, links[i].text, links[i].target);
    }
    expect_written_through("sub/hop.json", "chained.json", "sub/chained.json");
    struct stat st;
    cli_in_scratch(path, sizeof path, "sub/existing.json");
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600, "the target's mode changed");

    /* A loop of links is an error with a message, nothing is written. */
    char a[512], b[512], err_path[512];
    cli_in_scratch(a, sizeof a, "loop-a.json");
    cli_in_scratch(b, sizeof b, "loop-b.json");
    cr_assert_eq(symlink("loop-b.json", a), 0);
    cr_assert_eq(symlink("loop-a.json", b), 0);
    cli_in_scratch(err_path, sizeof err_path, "stderr");
    const char *args[] = {"plan", "-q", "-i", INPUT, "-r", "8", "-p", "2", "-b", "cpu", "-o", a,
                          NULL};
    cli_run run = {.args = args, .stderr_path = err_path};
    cli_result r = cli_run_eplb(&run);
    char *err = cli_slurp(err_path);
    cr_expect(r.exited && r.code == 1, "a loop of links: exit %d: %s", r.code, err);
    cr_expect(err && strstr(err, "cannot write"), "%s", err);
    free(err);
#endif
}

Test(cli_output, longest_file_name_works)
{
#ifndef EPLB_TOOLS_HAVE_JSON
    cr_skip_test("built without jansson: no plan files");
#else
    char dir[512], name[256], path[1024], names[1024];
    cli_in_scratch(dir, sizeof dir, "long");
    cr_assert_eq(mkdir(dir, 0755), 0);
    for (size_t len = 250; len <= NAME_MAX; len += NAME_MAX - 250) {
        memset(name, 'p', len - 5);
        memcpy(name + len - 5, ".json", 6);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        cli_result r = plan_to(path);
        cr_expect(r.exited && r.code == 0, "a %zu-byte name: exit %d", len, r.code);
        cr_expect(holds_plan(path), "a %zu-byte name", len);
        r = plan_to(path); /* and over the existing file */
        cr_expect(r.exited && r.code == 0, "a %zu-byte name, replaced: exit %d", len, r.code);
        scratch_names(names, sizeof names, dir);
        cr_expect_eq(strlen(names), len + 1, "left in the directory: %s", names);
        unlink(path);
    }
#endif
}
