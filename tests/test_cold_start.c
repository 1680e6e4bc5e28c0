/* A process's first use of the library: what auto opens and compiles, and
 * what reaches the user's stderr, with an empty OpenCL kernel cache.
 *
 * auto passes over an OpenCL device that is a CPU (the cpu backend is faster
 * there), and it must do so before compiling anything: PoCL takes seconds to
 * build the kernels into an empty cache, and its compiler prints to stderr.
 * Each case gets its own empty POCL_CACHE_DIR, in which PoCL writes one
 * folder per built program; at start-up it leaves only an empty temporary
 * file there. Timings belong in docs/benchmarks.md, not here. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_run.h"
#include "eplb/eplb.h"

static char scratch[256];
static char cache_dir[300];
static char cache_env[320];

static void make_scratch(void)
{
    snprintf(scratch, sizeof scratch, "/tmp/eplb-test-cold-start-XXXXXX");
    cr_assert_not_null(mkdtemp(scratch));
    snprintf(cache_dir, sizeof cache_dir, "%s/pocl-cache", scratch);
    cr_assert_eq(mkdir(cache_dir, 0700), 0);
    snprintf(cache_env, sizeof cache_env, "POCL_CACHE_DIR=%s", cache_dir);
}

static void remove_scratch(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(cold_start, .init = make_scratch, .fini = remove_scratch);

/* What PoCL has built into the cache folder: the name of its first
 * subfolder or non-empty file, or NULL when there is none. */
static const char *first_build_in_cache(void)
{
    static char found[300];
    DIR *dir = opendir(cache_dir);
    cr_assert_not_null(dir, "cannot read %s", cache_dir);
    const char *result = NULL;
    struct dirent *entry;
    while (!result && (entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", cache_dir, entry->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && (S_ISDIR(st.st_mode) || st.st_size > 0)) {
            snprintf(found, sizeof found, "%s", entry->d_name);
            result = found;
        }
    }
    closedir(dir);
    return result;
}

/* Runs the eplb tool with the empty kernel cache; its stderr as a string. */
static char *run_with_empty_cache(const char *const *args, const char *const *more_env, int *code)
{
    char out[512], err[512];
    snprintf(out, sizeof out, "%s/stdout", scratch);
    snprintf(err, sizeof err, "%s/stderr", scratch);
    const char *env[8] = {cache_env};
    int n = 1;
    for (const char *const *e = more_env; e && *e && n < 7; e++)
        env[n++] = *e;
    cli_run spec = {.args = args, .stdout_path = out, .stderr_path = err, .env = env};
    cli_result r = cli_run_eplb(&spec);
    cr_assert(r.exited, "eplb %s died of signal %d", args[0], r.code);
    *code = r.code;
    char *text = cli_slurp(err);
    cr_assert_not_null(text);
    return text;
}

/* Whether auto, in this process, passed over an OpenCL CPU device (PoCL's). */
static int auto_passed_over_cpu_opencl(eplb_context *ctx)
{
    const char *why = eplb_last_error();
    return strcmp(eplb_context_backend(ctx), "cpu") == 0 && strstr(why, "opencl: device ") &&
           strstr(why, "is a CPU");
}

Test(cold_start, auto_compiles_nothing_for_a_cpu_opencl_device)
{
    setenv("POCL_CACHE_DIR", cache_dir, 1);
    unsetenv("EPLB_BACKEND");
    eplb_context *ctx = NULL;
    cr_assert_eq(eplb_context_create(&ctx, "auto"), EPLB_OK, "%s", eplb_last_error());
    const int applies = auto_passed_over_cpu_opencl(ctx);
    const char *why = eplb_last_error();
    char skipped[1024];
    snprintf(skipped, sizeof skipped, "%s", why);
    eplb_context_free(ctx);
    if (!applies)
        cr_skip_test("auto did not pass over an OpenCL CPU device here (skipped: '%s')", skipped);
    const char *built = first_build_in_cache();
    cr_assert_null(built, "auto passed over the OpenCL CPU device, yet compiled kernels for it: "
                   "the kernel cache holds %s", built);
}

Test(cold_start, auto_demo_prints_nothing_on_stderr)
{
    const char *args[] = {"demo", NULL};
    const char *env[] = {"EPLB_BACKEND=", NULL};
    int code = -1;
    char *err = run_with_empty_cache(args, env, &code);
    cr_assert_eq(code, 0, "eplb demo exited with %d: %s", code, err);
    cr_assert_str_empty(err, "eplb demo on auto with an empty kernel cache wrote to stderr: '%s'",
                        err);
    free(err);
    /* A plan on the cpu backend needs no kernel: nothing may have been built. */
    char out_path[512];
    snprintf(out_path, sizeof out_path, "%s/stdout", scratch);
    char *out = cli_slurp(out_path);
    cr_assert_not_null(out);
    const char *built = first_build_in_cache();
    cr_assert(!strstr(out, "backend       cpu") || !built,
              "eplb demo on auto planned on cpu, yet compiled OpenCL kernels (%s)", built);
    free(out);
}

Test(cold_start, opencl_build_prints_nothing_on_stderr)
{
    /* In a sanitized build: PoCL's compiler leaks a few objects per build into
     * an empty cache (on a0d335d too); leaks of eplb's own still show. */
    char suppressions[512], lsan_env[600];
    snprintf(suppressions, sizeof suppressions, "%s/lsan.supp", scratch);
    FILE *f = fopen(suppressions, "w");
    cr_assert_not_null(f);
    fputs("leak:libpocl.so\nleak:libLLVM\n", f);
    fclose(f);
    snprintf(lsan_env, sizeof lsan_env, "LSAN_OPTIONS=suppressions=%s:print_suppressions=0",
             suppressions);
    const char *args[] = {"demo", "--backend", "opencl", NULL};
    const char *env[] = {lsan_env, NULL};
    int code = -1;
    char *err = run_with_empty_cache(args, env, &code);
    if (code != 0 && strstr(err, "unavailable"))
        cr_skip_test("opencl unavailable here: %s", err);
    cr_assert_eq(code, 0, "eplb demo --backend opencl exited with %d: %s", code, err);
    /* A successful build is silent: PoCL prints the compiler's warning count. */
    cr_assert_str_empty(err, "building the OpenCL kernels wrote to stderr: '%s'", err);
    free(err);
}

Test(cold_start, failed_build_reports_the_compiler_log)
{
    setenv("POCL_CACHE_DIR", cache_dir, 1);
    /* PoCL appends these flags to every build: -Werror turns the
     * redefinition of a macro the backend passes into a compile error. */
    setenv("POCL_EXTRA_BUILD_FLAGS", "-Werror -DEPLB_ERR_INVALID_WEIGHT=99", 1);
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, "opencl");
    const char *why = eplb_last_error();
    if (st == EPLB_ERR_BACKEND_UNAVAILABLE && !strstr(why, "building the kernels"))
        cr_skip_test("opencl unavailable before any build here: %s", why);
    if (st == EPLB_OK) {
        eplb_context_free(ctx);
        cr_skip_test("POCL_EXTRA_BUILD_FLAGS had no effect: the OpenCL platform is not PoCL");
    }
    cr_assert_eq(st, EPLB_ERR_BACKEND_UNAVAILABLE, "%s", eplb_status_string(st));
    cr_assert(strstr(why, "macro redefined") && strstr(why, "EPLB_ERR_INVALID_WEIGHT"),
              "the error does not carry the compiler's message: '%s'", why);
}

/* auto opens the same way with or without a fault the build would hit: the
 * build never starts, so auto neither fails nor prints. */
Test(cold_start, auto_is_untouched_by_a_failing_kernel_build)
{
    const char *args[] = {"demo", NULL};
    const char *env[] = {"EPLB_BACKEND=", "POCL_EXTRA_BUILD_FLAGS=-Werror -DEPLB_ERR_INVALID_WEIGHT=99",
                         NULL};
    int code = -1;
    char *err = run_with_empty_cache(args, env, &code);
    cr_assert_eq(code, 0, "eplb demo exited with %d: %s", code, err);
    cr_assert_str_empty(err, "eplb demo on auto wrote to stderr: '%s'", err);
    free(err);
}
