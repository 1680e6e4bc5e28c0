/* Planning in a forked child: a process that planned on several OpenMP
 * threads and then forks (Python multiprocessing's fork start method, a
 * server that forks workers) must plan in the child too. libgomp's thread
 * pool does not survive fork(), so without src/common/threads_usable.c the
 * child's first parallel region waits forever for threads that exist only in
 * the parent. The child must finish in time and give the parent's plan. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* A plan takes well under a second even in a sanitized build; a hang takes
 * forever, so any limit tells the two apart. */
enum { CHILD_LIMIT_SECONDS = 15 };

/* DeepSeek-V3's shape, large enough that every parallel region engages. */
static const eplb_shape v3_shape = {58, 256, 288, 8, 4, 32};

/* The threads of this process, or -1 where /proc cannot say. */
static int thread_count(void)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return -1;
    int count = 0;
    for (struct dirent *d; (d = readdir(dir));)
        if (d->d_name[0] != '.')
            count++;
    closedir(dir);
    return count;
}

/* Two OpenMP threads from here on, set through libgomp itself (which libeplb
 * loads): the environment is read once, when libgomp loads, before any test
 * runs. Skips where the library was built without OpenMP. */
static void use_two_threads_or_skip(void)
{
    void (*set_threads)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (!set_threads)
        cr_skip_test("libeplb was built without OpenMP: nothing to fork but one thread");
    set_threads(2);
}

/* The two plans of a case: the fresh one, and the incremental one from a
 * running placement (src/incremental.c has a parallel region of its own). */
typedef struct fork_case {
    eplbt_plan fresh;
    int64_t *incremental; /* [L][R] */
} fork_case;

/* Plans the case; returns 0 on success, without asserting, since the forked
 * child can only report through its exit status. */
static int plan_case(eplb_context *ctx, const float *weight, const float *old_weight,
                     fork_case *out)
{
    const eplb_shape *s = &v3_shape;
    const size_t slots = (size_t)(s->layers * s->replicas);
    memset(out, 0, sizeof *out);
    eplbt_plan previous;
    if (eplbt_plan_try(ctx, old_weight, s, NULL, &previous) != EPLB_OK)
        return 1;
    eplb_status st = eplbt_plan_try(ctx, weight, s, NULL, &out->fresh);
    int64_t *logcnt = malloc((size_t)(s->layers * s->experts) * sizeof *logcnt);
    out->incremental = malloc(slots * sizeof *out->incremental);
    if (st == EPLB_OK && logcnt && out->incremental)
        st = eplb_rebalance_incremental(ctx, weight, s, NULL, previous.phy2log, out->incremental,
                                        logcnt, NULL, 0, NULL);
    else
        st = EPLB_ERR_OUT_OF_MEMORY;
    free(logcnt);
    eplbt_plan_free(&previous);
    return st != EPLB_OK;
}

static int cases_equal(const fork_case *a, const fork_case *b)
{
    const size_t slots = (size_t)(v3_shape.layers * v3_shape.replicas);
    return eplbt_plans_equal(&a->fresh, &b->fresh) &&
           memcmp(a->incremental, b->incremental, slots * sizeof(int64_t)) == 0;
}

/* Exit codes of the child: anything else (SIGALRM, a signal) is a failure. */
enum { CHILD_SAME = 0, CHILD_PLAN_FAILED = 1, CHILD_DIFFERENT = 2 };

Test(fork, child_plans_like_the_parent_after_the_parent_used_threads)
{
    use_two_threads_or_skip();
    const eplb_shape *s = &v3_shape;
    float *weight = malloc((size_t)(s->layers * s->experts) * sizeof *weight);
    float *old_weight = malloc((size_t)(s->layers * s->experts) * sizeof *old_weight);
    cr_assert(weight && old_weight);
    eplb_workload_fill(weight, s->layers, s->experts, 1, 9);
    eplb_workload_fill(old_weight, s->layers, s->experts, 2, 9);

    /* Counted before the context: the cpu backend starts its threads when
     * the context is made (cpu_scratch.c). */
    const int threads_before = thread_count();
    eplb_context *ctx = eplbt_context("cpu");
    fork_case parent;
    cr_assert_eq(plan_case(ctx, weight, old_weight, &parent), 0, "the parent's plans failed: %s",
                 eplb_context_last_error(ctx));
    /* The pool's threads outlive the region: seeing them proves that the
     * child inherits a pool, which is the case that hung. */
    const int threads_after = thread_count();
    if (threads_before > 0)
        cr_assert_gt(threads_after, threads_before,
                     "the parent planned on one thread (%d threads before, %d after), so the "
                     "fork below tests nothing", threads_before, threads_after);

    const pid_t pid = fork();
    if (pid < 0)
        cr_skip_test("fork is unavailable here: %s", strerror(errno));
    if (pid == 0) {
        /* The child reports only through its exit status: Criterion's
         * assertions and exit handlers belong to the parent. */
        alarm(2 * CHILD_LIMIT_SECONDS);
        fork_case child;
        if (plan_case(ctx, weight, old_weight, &child))
            _exit(CHILD_PLAN_FAILED);
        _exit(cases_equal(&parent, &child) ? CHILD_SAME : CHILD_DIFFERENT);
    }

    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    pid_t done = 0;
    for (;;) {
        done = waitpid(pid, &status, WNOHANG);
        if (done != 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= CHILD_LIMIT_SECONDS)
            break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert_fail("the forked child did not finish its plans within %d s: an OpenMP region "
                "waited for the parent's threads", CHILD_LIMIT_SECONDS);
    }
    cr_assert_eq(done, pid, "waitpid failed");
    cr_assert(WIFEXITED(status), "the forked child was killed by signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_neq(WEXITSTATUS(status), CHILD_PLAN_FAILED, "the forked child's plans failed");
    cr_assert_eq(WEXITSTATUS(status), CHILD_SAME,
                 "the forked child's plans differ from the parent's (exit status %d)",
                 WEXITSTATUS(status));

    /* The parent's threads still work after the fork. */
    fork_case again;
    cr_assert_eq(plan_case(ctx, weight, old_weight, &again), 0);
    cr_assert(cases_equal(&parent, &again), "the parent's plans changed after the fork");
    eplbt_plan_free(&again.fresh);
    free(again.incremental);
    eplbt_plan_free(&parent.fresh);
    free(parent.incremental);
    eplb_context_free(ctx);
    free(weight);
    free(old_weight);
}
