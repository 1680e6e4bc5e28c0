/* Child processes for the registry's suites (test_faults, test_modules,
 * test_threads).
 *
 * The registry loads modules and caches probes once per process, so a case
 * about backend start-up runs in a fresh process: this program re-executed
 * with EPLB_TEST_CHILD naming the case. A constructor runs the case before
 * Criterion starts, with the case's environment already set, and exits. A
 * child that overruns its time limit is killed by SIGALRM, so a hang is a
 * failure, not a stuck suite.
 *
 * Header-only, and free of Criterion, so that a child case can start
 * children of its own in a build where Criterion cannot run (ThreadSanitizer).
 * The suite that includes it defines find_child_case(). */
#ifndef EPLB_TESTS_CHILD_PROCESS_H
#define EPLB_TESTS_CHILD_PROCESS_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_MSG_LEN 8192

/* Exit codes of a child case; anything else (a sanitizer's code, a signal) fails. */
enum { CHILD_PASS = 0, CHILD_FAIL = 1, CHILD_NOT_APPLICABLE = 2 };

/* What a child reports: its exit code (or CHILD_FAIL when killed) and its text. */
typedef struct child_report {
    int code;
    int signal; /* the signal that killed it, or 0 */
    char msg[CHILD_MSG_LEN];
} child_report;

/* A case run in a child: one string argument; writes its message into msg. */
typedef int (*child_fn)(const char *arg, char *msg, size_t len);

static child_fn find_child_case(const char *name);

static __attribute__((unused, format(printf, 4, 5))) int say(char *msg, size_t len, int code,
                                                              const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(msg, len, fmt, args);
    va_end(args);
    return code;
}

/* In a re-executed child: runs the case named by EPLB_TEST_CHILD before
 * Criterion's main, writes its message to EPLB_TEST_CHILD_FD and exits. */
__attribute__((constructor)) static void run_child_case(void)
{
    const char *name = getenv("EPLB_TEST_CHILD");
    if (!name || !*name)
        return;
    const char *fd_text = getenv("EPLB_TEST_CHILD_FD");
    const char *seconds = getenv("EPLB_TEST_CHILD_SECONDS");
    int fd = fd_text ? atoi(fd_text) : 2;
    if (seconds)
        alarm((unsigned)atoi(seconds));
    static char msg[CHILD_MSG_LEN];
    child_fn fn = find_child_case(name);
    int code = fn ? fn(getenv("EPLB_TEST_CHILD_ARG"), msg, sizeof msg)
                  : say(msg, sizeof msg, CHILD_FAIL, "no child case '%s'", name);
    ssize_t ignored = write(fd, msg, strlen(msg));
    (void)ignored;
    close(fd);
    exit(code);
}

/* Sets "NAME=value" (or unsets NAME for "NAME=") in this process. */
static void child_apply_env(const char *const *env)
{
    for (const char *const *e = env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char var[128];
        snprintf(var, sizeof var, "%.*s", (int)(eq - *e), *e);
        if (eq[1])
            setenv(var, eq + 1, 1);
        else
            unsetenv(var);
    }
}

/* Makes the pipe a child reports through and forks. Returns 0 in the child
 * (with only the pipe's write end fd[1] open), the child's id in the parent,
 * or -1 with r->msg saying why and no pipe left open. No Criterion assertion
 * here: a child case may start children too, outside any Criterion test. */
static pid_t child_fork(int fd[2], child_report *r)
{
    if (pipe(fd) != 0) {
        snprintf(r->msg, sizeof r->msg, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == -1) {
        snprintf(r->msg, sizeof r->msg, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
    } else if (pid == 0) {
        close(fd[0]);
    }
    return pid;
}

/* In the parent after child_fork: reads the pipe to its end into r->msg, then
 * reaps pid into r->code / r->signal. */
static void child_collect(pid_t pid, int fd[2], child_report *r)
{
    close(fd[1]);
    size_t used = 0;
    ssize_t got;
    while (used < sizeof r->msg - 1 &&
           (got = read(fd[0], r->msg + used, sizeof r->msg - 1 - used)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        used += (size_t)got;
    }
    r->msg[used] = '\0';
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) {
        r->code = WEXITSTATUS(status);
    } else {
        r->code = CHILD_FAIL;
        r->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        snprintf(r->msg + used, sizeof r->msg - used, " [killed by signal %d%s]", r->signal,
                 r->signal == SIGALRM ? ": over its time limit" : "");
    }
}

/* Forks; the child runs start(write end of the report pipe, arg), which
 * never returns; the parent reads the child's report and reaps it. */
static child_report child_start(void (*start)(int fd, const void *arg), const void *arg)
{
    child_report r = {CHILD_FAIL, 0, ""};
    int fd[2];
    pid_t pid = child_fork(fd, &r);
    if (pid == 0)
        start(fd[1], arg);
    if (pid > 0)
        child_collect(pid, fd, &r);
    return r;
}

typedef struct child_case_start {
    const char *const *env;
    const char *name, *arg;
    unsigned seconds;
} child_case_start;

/* In the child: this program again, told which case to run and where to report. */
static void start_child_case(int fd, const void *arg)
{
    const child_case_start *c = arg;
    child_apply_env(c->env);
    char number[32];
    snprintf(number, sizeof number, "%d", fd);
    setenv("EPLB_TEST_CHILD", c->name, 1);
    setenv("EPLB_TEST_CHILD_FD", number, 1);
    setenv("EPLB_TEST_CHILD_ARG", c->arg ? c->arg : "", 1);
    snprintf(number, sizeof number, "%u", c->seconds);
    setenv("EPLB_TEST_CHILD_SECONDS", number, 1);
    char *const argv[] = {(char *)"child", NULL};
    execv("/proc/self/exe", argv);
    dprintf(fd, "cannot re-execute /proc/self/exe: %s", strerror(errno));
    _exit(CHILD_FAIL);
}

/* Runs case `name` in a re-executed child with the given environment and a
 * limit of `seconds`, and returns what it reported. */
static __attribute__((unused)) child_report in_child(const char *const *env, const char *name,
                                                     const char *arg, unsigned seconds)
{
    const child_case_start start = {env, name, arg, seconds};
    child_report r = child_start(start_child_case, &start);
    /* A case only exits with the codes above; another code is most often a
     * sanitizer's, whose report went to the child's standard error. */
    size_t used = strlen(r.msg);
    if (!r.signal && r.code > CHILD_NOT_APPLICABLE)
        snprintf(r.msg + used, sizeof r.msg - used,
                 " [child exit %d: a sanitizer report? see its stderr]", r.code);
    return r;
}

typedef struct program_start {
    const char *const *argv, *const *env;
    unsigned seconds;
} program_start;

/* In the child: the program, with its output going into the report. */
static void start_program(int fd, const void *arg)
{
    const program_start *p = arg;
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    child_apply_env(p->env);
    alarm(p->seconds); /* kept across exec: a program that hangs dies by SIGALRM */
    execv(p->argv[0], (char *const *)p->argv);
    dprintf(STDERR_FILENO, "cannot run %s: %s", p->argv[0], strerror(errno));
    _exit(127);
}

/* Runs program argv[0] with the given environment and a limit of `seconds`;
 * its standard output and error together become r.msg. */
static __attribute__((unused)) child_report run_program(const char *const *argv,
                                                        const char *const *env, unsigned seconds)
{
    const program_start start = {argv, env, seconds};
    return child_start(start_program, &start);
}

#endif /* EPLB_TESTS_CHILD_PROCESS_H */
