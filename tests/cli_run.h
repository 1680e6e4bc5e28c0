/* Runs the built eplb tool for the suites that test it as a program
 * (test_cli*, test_input_cli): an argument vector (no shell, so any file
 * name passes as it is), standard output and error to files or devices,
 * optional extra environment, an optional address-space limit, and the
 * child's exit status and peak resident memory from wait4. Also the
 * per-test scratch folder those suites write their files in.
 *
 * Header-only (static functions): every tests/test_*.c is its own executable. */
#ifndef EPLB_TESTS_CLI_RUN_H
#define EPLB_TESTS_CLI_RUN_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EPLB_CLI EPLB_BINARY_DIR "/bin/eplb"

/* AddressSanitizer reserves terabytes of address space, so an address-space
 * limit cannot be set on a sanitized binary, and it runs slower. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Not every suite uses every helper. */
#define CLI_RUN_HELPER static __attribute__((unused))

/* The current test's scratch folder, made by cli_make_scratch. */
static char cli_scratch[256];

/* Makes a fresh scratch folder from a mkdtemp template ending in XXXXXX;
 * each suite passes its own name so that a leftover folder says whose it is. */
CLI_RUN_HELPER void cli_make_scratch(const char *template)
{
    snprintf(cli_scratch, sizeof cli_scratch, "%s", template);
    cr_assert_not_null(mkdtemp(cli_scratch));
}

/* Removes the scratch folder and everything in it (a suite's .fini). */
CLI_RUN_HELPER void cli_remove_scratch(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cli_scratch);
    cr_expect_eq(system(cmd), 0);
}

/* A Criterion suite whose every test runs in a fresh scratch folder, made
 * from the template and removed after the test. */
#define CLI_SUITE(suite, scratch_template)                                 \
    static void suite##_scratch_init(void) { cli_make_scratch(scratch_template); } \
    TestSuite(suite, .init = suite##_scratch_init, .fini = cli_remove_scratch)

/* buf = scratch folder / name; a name that does not fit fails the test. */
CLI_RUN_HELPER void cli_in_scratch(char *buf, size_t len, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", cli_scratch, name);
    cr_assert(n > 0 && (size_t)n < len, "path too long: %s", name);
}

typedef struct cli_run {
    const char *const *args;  /* after the program name, NULL-terminated */
    const char *stdout_path;  /* NULL: /dev/null */
    const char *stderr_path;  /* NULL: /dev/null */
    const char *const *env;   /* "NAME=value" to set, NULL-terminated; may be NULL */
    rlim_t address_space;     /* RLIMIT_AS in bytes; 0: unchanged */
} cli_run;

typedef struct cli_result {
    int exited;        /* 1: exited normally, code holds the exit code */
    int code;          /* exit code, or the signal when !exited */
    long max_rss_kb;   /* peak resident memory of the child */
} cli_result;

static void cli_redirect(int fd, const char *path)
{
    int to = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (to < 0 || dup2(to, fd) < 0)
        _exit(126);
    close(to);
}

CLI_RUN_HELPER cli_result cli_run_eplb(const cli_run *run)
{
    cli_result result = {0, -1, 0};
    const char *argv[64] = {EPLB_CLI};
    int argc = 1;
    for (const char *const *a = run->args; *a; a++) {
        cr_assert_lt(argc, 63, "too many arguments");
        argv[argc++] = *a;
    }
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        cli_redirect(1, run->stdout_path);
        cli_redirect(2, run->stderr_path);
        for (const char *const *e = run->env; e && *e; e++)
            putenv((char *)*e);
        if (run->address_space) {
            struct rlimit limit = {run->address_space, run->address_space};
            if (setrlimit(RLIMIT_AS, &limit) != 0)
                _exit(126);
        }
        execv(EPLB_CLI, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof usage);
    while (wait4(pid, &status, 0, &usage) < 0)
        cr_assert_eq(errno, EINTR, "wait4: %s", strerror(errno));
    result.exited = WIFEXITED(status);
    result.code = result.exited ? WEXITSTATUS(status) : WTERMSIG(status);
    result.max_rss_kb = usage.ru_maxrss;
    return result;
}

/* The whole file as a NUL-terminated string (NULL when it cannot be read). */
CLI_RUN_HELPER char *cli_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, used = 0, got;
    char *text = malloc(cap);
    while (text && (got = fread(text + used, 1, cap - used - 1, f)) > 0) {
        used += got;
        if (used + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger)
                free(text);
            text = bigger;
        }
    }
    fclose(f);
    if (text)
        text[used] = '\0';
    return text;
}

/* Creates (or empties) name in the scratch folder and opens it for writing;
 * path receives its full name for the eplb arguments. */
CLI_RUN_HELPER FILE *cli_create_in_scratch(char *path, size_t len, const char *name)
{
    cli_in_scratch(path, len, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    return f;
}

/* A finished run's exit code, standard output and standard error (free with
 * cli_captured_free). */
typedef struct cli_captured {
    int code;
    char *out;
    char *err;
} cli_captured;

/* Runs eplb with args and, when env is not NULL, those "NAME=value" set; its
 * output and error go through files in the scratch folder. A run killed by a
 * signal fails the test. */
CLI_RUN_HELPER cli_captured cli_run_captured(const char *const *args, const char *const *env)
{
    char out[512], err[512];
    cli_in_scratch(out, sizeof out, "stdout");
    cli_in_scratch(err, sizeof err, "stderr");
    cli_run spec = {.args = args, .stdout_path = out, .stderr_path = err, .env = env};
    cli_result r = cli_run_eplb(&spec);
    cr_assert(r.exited, "eplb %s died of signal %d", args[0], r.code);
    cli_captured result = {r.code, cli_slurp(out), cli_slurp(err)};
    cr_assert(result.out && result.err);
    unlink(out);
    unlink(err);
    return result;
}

CLI_RUN_HELPER void cli_captured_free(cli_captured *r)
{
    free(r->out);
    free(r->err);
}

/* Runs eplb with args (and env, when not NULL), which must exit 0 and print
 * wanted on standard output. */
CLI_RUN_HELPER void cli_expect_output(const char *const *args, const char *const *env,
                                      const char *wanted)
{
    cli_captured r = cli_run_captured(args, env);
    cr_expect_eq(r.code, 0, "eplb %s: exit %d: %s", args[0], r.code, r.err);
    cr_expect(strstr(r.out, wanted), "eplb %s: no '%s' in: %s", args[0], wanted, r.out);
    cli_captured_free(&r);
}

/* Whether path exists (without following a final symbolic link). */
CLI_RUN_HELPER int cli_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

#endif
