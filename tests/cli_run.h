/* Runs the built eplb tool for the output and fault suites (test_cli_output,
 * test_cli_faults): an argument vector (no shell, so any file name passes
 * as it is), standard output and error to files or devices, optional extra
 * environment, an optional address-space limit, and the child's exit status
 * and peak resident memory from wait4.
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

/* Not every suite uses every helper. */
#define CLI_RUN_HELPER static __attribute__((unused))

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

/* Whether path exists (without following a final symbolic link). */
CLI_RUN_HELPER int cli_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

#endif
