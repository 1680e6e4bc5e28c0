/* Fault handling: a backend whose initialisation fails (injected failure,
 * module missing, module not a library, no OpenCL platform or device, kernel
 * build failure, out of memory in its self-test) is an error when asked for by
 * name and is skipped, with its reason, in auto mode; an allocation failure in
 * the middle of a plan returns EPLB_ERR_OUT_OF_MEMORY, leaves the outputs
 * untouched and leaves the context usable.
 *
 * The registry loads modules and caches probes once per process, so every
 * case runs in a child (tests/child_process.h), with the case's environment
 * set before its first eplb call. A fresh process also gets the sanitizers'
 * normal exit checks (leaks). This process never opens a backend. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child_process.h"
#include "eplb/eplb.h"

/* A hang fails its case instead of stalling the suite; the limit is far
 * above what the slowest case (an allocation sweep step under a sanitizer)
 * needs. */
enum { CHILD_SECONDS = 600 };

static void expect_pass(const char *label, child_report r)
{
    cr_expect(r.code == CHILD_PASS, "%s: child exit %d: %s", label, r.code, r.msg);
}

static int backend_index(const char *name)
{
    for (int i = 0; i < eplb_backend_count(); i++)
        if (strcmp(eplb_backend_name(i), name) == 0)
            return i;
    return -1;
}

static const char *module_dir(void)
{
    const char *dir = getenv("EPLB_MODULE_DIR");
    return dir && *dir ? dir : EPLB_BINARY_DIR "/lib";
}

/* Whether lib/libeplb_<name>.so was built. */
static int module_built(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/libeplb_%s.so", module_dir(), name);
    return access(path, R_OK) == 0;
}

/* ---- backend initialisation failures ------------------------------------------ */

/* Backend `name` must fail with EPLB_ERR_BACKEND_UNAVAILABLE, *out NULL, the
 * reason (holding reason_part when not NULL) in eplb_last_error and in
 * eplb_backend_available; auto mode must skip it, naming the reason (or, for
 * a failure after creation such as a kernel build, that its device is a CPU:
 * auto passes over a CPU device before building anything), and still give a
 * working context. */
static int explicit_fails_auto_skips(const char *backend, const char *reason_part, char *msg,
                                     size_t len)
{
    eplb_context *ctx = (eplb_context *)(uintptr_t)1;
    eplb_status st = eplb_context_create(&ctx, backend);
    if (st != EPLB_ERR_BACKEND_UNAVAILABLE)
        return say(msg, len, CHILD_FAIL, "create(\"%s\") gave %s, want backend unavailable",
                   backend, eplb_status_string(st));
    if (ctx != NULL)
        return say(msg, len, CHILD_FAIL, "create(\"%s\") failed but left *out non-NULL", backend);
    const char *why = eplb_last_error();
    if (!why[0] || (reason_part && !strstr(why, reason_part)))
        return say(msg, len, CHILD_FAIL, "create(\"%s\"): last error '%s' does not say '%s'",
                   backend, why, reason_part ? reason_part : "(anything)");

    const char *reason = NULL;
    int index = backend_index(backend);
    if (eplb_backend_available(index, &reason))
        return say(msg, len, CHILD_FAIL, "eplb_backend_available(%s) says 1 after a failed open",
                   backend);
    if (!reason || !reason[0] || (reason_part && !strstr(reason, reason_part)))
        return say(msg, len, CHILD_FAIL, "eplb_backend_available(%s) reason '%s' does not say '%s'",
                   backend, reason ? reason : "(null)", reason_part ? reason_part : "(anything)");

    if (strcmp(backend, "cpu") == 0) {
        /* Nothing to fall back to when cpu is broken, unless a GPU backend works. */
        st = eplb_context_create(&ctx, "auto");
        if (st == EPLB_OK) {
            eplb_context_free(ctx);
            return say(msg, len, CHILD_PASS, "auto found a GPU backend");
        }
        why = eplb_last_error();
        if (st != EPLB_ERR_BACKEND_UNAVAILABLE || !strstr(why, "cpu: "))
            return say(msg, len, CHILD_FAIL, "auto with cpu broken: %s: '%s'",
                       eplb_status_string(st), why);
        return CHILD_PASS;
    }
    st = eplb_context_create(&ctx, "auto");
    if (st != EPLB_OK)
        return say(msg, len, CHILD_FAIL, "auto did not skip a failed %s: %s: %s", backend,
                   eplb_status_string(st), eplb_last_error());
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: ", backend);
    why = eplb_last_error();
    const char *at = strstr(why, prefix);
    int ok = strcmp(eplb_context_backend(ctx), backend) != 0 && at &&
             (!reason_part || strstr(at, reason_part) || strstr(at, "is a CPU; "));
    if (!ok) {
        say(msg, len, CHILD_FAIL, "auto picked %s; its skip list '%s' should name %s and '%s'",
            eplb_context_backend(ctx), why, backend, reason_part ? reason_part : "(anything)");
        eplb_context_free(ctx);
        return CHILD_FAIL;
    }
    /* The context auto gave must plan. */
    const eplb_shape shape = {1, 4, 6, 1, 1, 2};
    const float weight[4] = {4, 3, 2, 1};
    int64_t phy2log[6], logcnt[4];
    st = eplb_rebalance(ctx, weight, &shape, NULL, phy2log, logcnt, NULL, 0, NULL);
    eplb_context_free(ctx);
    if (st != EPLB_OK)
        return say(msg, len, CHILD_FAIL, "plan on the fallback context failed: %s",
                   eplb_status_string(st));
    return CHILD_PASS;
}

/* The "open" case. Its one argument is "BACKEND" or "BACKEND REASON", where
 * REASON (words that may hold spaces) is what the failure must say. */
static int child_open(const char *arg, char *msg, size_t len)
{
    size_t backend_len = strcspn(arg, " ");
    char backend[32];
    snprintf(backend, sizeof backend, "%.*s", (int)backend_len, arg);
    return explicit_fails_auto_skips(backend, arg[backend_len] ? arg + backend_len + 1 : NULL,
                                     msg, len);
}

/* Runs the "open" case in a child: backend must fail with reason_part in its
 * reason (any reason when NULL) and auto must skip it. */
static child_report open_in_child(const char *const *env, const char *backend,
                                  const char *reason_part)
{
    char arg[256];
    snprintf(arg, sizeof arg, "%s%s%s", backend, reason_part ? " " : "",
             reason_part ? reason_part : "");
    return in_child(env, "open", arg, CHILD_SECONDS);
}

Test(faults, injected_cpu_failure_is_an_error_by_name)
{
    const char *c[2] = {"cpu", "EPLB_TEST_FAIL_BACKEND"};
    const char *env[] = {"EPLB_TEST_FAIL_BACKEND=cpu", "EPLB_BACKEND=", NULL};
    expect_pass("EPLB_TEST_FAIL_BACKEND=cpu", open_in_child(env, c[0], c[1]));
}

Test(faults, injected_opencl_failure_is_skipped_by_auto)
{
    /* Without the module the failure is the missing module, also unavailable. */
    const char *c[2] = {"opencl", module_built("opencl") ? "EPLB_TEST_FAIL_BACKEND" : "cannot load"};
    const char *env[] = {"EPLB_TEST_FAIL_BACKEND=opencl", "EPLB_BACKEND=", NULL};
    expect_pass("EPLB_TEST_FAIL_BACKEND=opencl", open_in_child(env, c[0], c[1]));
}

Test(faults, injected_cuda_failure_is_skipped_by_auto)
{
    const char *c[2] = {"cuda", module_built("cuda") ? "EPLB_TEST_FAIL_BACKEND" : "cannot load"};
    const char *env[] = {"EPLB_TEST_FAIL_BACKEND=cuda", "EPLB_BACKEND=", NULL};
    expect_pass("EPLB_TEST_FAIL_BACKEND=cuda", open_in_child(env, c[0], c[1]));
}

/* A fresh directory under the build tree, removed by the caller. */
static void make_temp_dir(char *dir, size_t len)
{
    snprintf(dir, len, "%s/test_faults.XXXXXX", EPLB_BINARY_DIR);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
}

static void remove_temp_dir(const char *dir)
{
    const char *names[] = {"libeplb_opencl.so", "libeplb_cuda.so"};
    char path[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

Test(faults, missing_modules_are_errors_by_name_and_skipped_by_auto)
{
    char dir[4096], env_dir[4200];
    make_temp_dir(dir, sizeof dir);
    snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
    const char *env[] = {env_dir, "EPLB_BACKEND=", "EPLB_TEST_FAIL_BACKEND=", NULL};
    const char *opencl[2] = {"opencl", "cannot load"};
    const char *cuda[2] = {"cuda", "cannot load"};
    expect_pass("empty EPLB_MODULE_DIR, opencl", open_in_child(env, opencl[0], opencl[1]));
    expect_pass("empty EPLB_MODULE_DIR, cuda", open_in_child(env, cuda[0], cuda[1]));
    remove_temp_dir(dir);
}

/* Copies the file at from to to; 0 on success. */
static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok ? 0 : -1;
}

Test(faults, a_module_that_is_not_a_library_is_skipped)
{
    char dir[4096], env_dir[4200], path[4300];
    make_temp_dir(dir, sizeof dir);
    snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
    snprintf(path, sizeof path, "%s/libeplb_opencl.so", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs("this is not a shared library\n", f);
    fclose(f);
    const char *env[] = {env_dir, "EPLB_BACKEND=", "EPLB_TEST_FAIL_BACKEND=", NULL};
    const char *c[2] = {"opencl", "cannot load"};
    expect_pass("junk libeplb_opencl.so", open_in_child(env, c[0], c[1]));
    remove_temp_dir(dir);
}

Test(faults, a_library_without_the_entry_point_is_skipped)
{
    /* libeplb.so itself is a valid library that exports no eplb_backend_module_get. */
    char dir[4096], env_dir[4200], path[4300], lib[4200];
    make_temp_dir(dir, sizeof dir);
    snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
    snprintf(path, sizeof path, "%s/libeplb_cuda.so", dir);
    snprintf(lib, sizeof lib, "%s/libeplb.so", module_dir());
    cr_assert_eq(copy_file(lib, path), 0, "cannot copy %s to %s", lib, path);
    const char *env[] = {env_dir, "EPLB_BACKEND=", "EPLB_TEST_FAIL_BACKEND=", NULL};
    const char *c[2] = {"cuda", "does not export"};
    expect_pass("libeplb.so as libeplb_cuda.so", open_in_child(env, c[0], c[1]));
    remove_temp_dir(dir);
}

/* Whether the opencl backend opens here (probed in a child). */
static int opencl_works_here(const char *arg, char *msg, size_t len)
{
    (void)arg;
    const char *reason = NULL;
    int ok = eplb_backend_available(backend_index("opencl"), &reason);
    snprintf(msg, len, "%s", reason ? reason : "");
    return ok ? CHILD_PASS : CHILD_NOT_APPLICABLE;
}

static int opencl_available(char *why, size_t len)
{
    const char *env[] = {"EPLB_TEST_FAIL_BACKEND=", "EPLB_TEST_FAIL_ALLOC=", NULL};
    child_report r = in_child(env, "opencl-works", NULL, CHILD_SECONDS);
    snprintf(why, len, "%s", r.msg);
    return r.code == CHILD_PASS;
}

Test(faults, opencl_without_a_platform_is_skipped)
{
    if (!module_built("opencl"))
        cr_skip_test("the opencl module is not built");
    char dir[4096], vendors[4200];
    make_temp_dir(dir, sizeof dir);
    /* The ICD loader reads its drivers from here instead of /etc/OpenCL/vendors. */
    snprintf(vendors, sizeof vendors, "OCL_ICD_VENDORS=%s", dir);
    const char *env[] = {vendors, "OPENCL_VENDOR_PATH=/nonexistent", "EPLB_BACKEND=",
                         "EPLB_TEST_FAIL_BACKEND=", NULL};
    const char *c[2] = {"opencl", NULL};
    expect_pass("no OpenCL platform", open_in_child(env, c[0], c[1]));
    remove_temp_dir(dir);
}

Test(faults, opencl_without_the_chosen_device_is_an_error)
{
    char why[CHILD_MSG_LEN];
    if (!module_built("opencl") || !opencl_available(why, sizeof why))
        cr_skip_test("opencl unavailable here: %s", why);
    const char *env[] = {"EPLB_OPENCL_DEVICE=no-such-device-anywhere", "EPLB_BACKEND=",
                         "EPLB_TEST_FAIL_BACKEND=", NULL};
    const char *c[2] = {"opencl", "matches none"};
    expect_pass("EPLB_OPENCL_DEVICE=no-such-device", open_in_child(env, c[0], c[1]));
}

/* Whether the OpenCL platform in use is PoCL (its build flags are injectable). */
static int opencl_is_pocl(const char *arg, char *msg, size_t len)
{
    (void)arg;
    const char *reason = NULL;
    int ok = eplb_backend_available(backend_index("opencl"), &reason);
    snprintf(msg, len, "%s", reason ? reason : "");
    return ok && reason && strstr(reason, "Portable Computing Language") ? CHILD_PASS
                                                                         : CHILD_NOT_APPLICABLE;
}

Test(faults, opencl_kernel_build_failure_is_skipped)
{
    if (!module_built("opencl"))
        cr_skip_test("the opencl module is not built");
    const char *probe_env[] = {"EPLB_TEST_FAIL_BACKEND=", NULL};
    child_report probe = in_child(probe_env, "opencl-is-pocl", NULL, CHILD_SECONDS);
    if (probe.code != CHILD_PASS)
        cr_skip_test("needs PoCL to inject a build failure; opencl here: %s", probe.msg);
    /* PoCL appends these flags to every program build: -Werror turns the
     * redefinition of a macro the backend passes into a compile error. */
    const char *env[] = {"POCL_EXTRA_BUILD_FLAGS=-Werror -DEPLB_ERR_INVALID_WEIGHT=99",
                         "EPLB_BACKEND=", "EPLB_TEST_FAIL_BACKEND=", NULL};
    const char *c[2] = {"opencl", "building the kernels"};
    expect_pass("kernel build failure", open_in_child(env, c[0], c[1]));
}

/* ---- allocation failures -------------------------------------------------------- */

/* A hierarchical case where both packings have several items per pack, so
 * every workspace buffer is allocated. */
#define AL 3
#define AE 16
#define AR 24
static const eplb_shape alloc_shape = {AL, AE, AR, 4, 2, 4};

static void alloc_weights(float *w)
{
    for (int i = 0; i < AL * AE; i++)
        w[i] = (float)((i * 7919) % 97) + 0.5f * (float)(i % 5);
}

#define POISON 0x5A

static int all_poisoned(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != POISON)
            return 0;
    return 1;
}

/* With EPLB_TEST_FAIL_ALLOC=N: the context opens (or, when N falls in the
 * backend's self-test, fails to open with the injected reason), the first plan
 * fails with EPLB_ERR_OUT_OF_MEMORY leaving the outputs untouched, and the same
 * context then plans exactly what a fresh context plans. CHILD_NOT_APPLICABLE
 * when the first plan needed fewer than N allocations. */
static int plan_through_alloc_failure(const char *backend, char *msg, size_t len)
{
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, backend);
    if (st != EPLB_OK) {
        const char *why = eplb_last_error();
        if (st == EPLB_ERR_BACKEND_UNAVAILABLE && strstr(why, "EPLB_TEST_FAIL_ALLOC"))
            return say(msg, len, CHILD_PASS, "open failed as injected: %s", why);
        return say(msg, len, CHILD_FAIL, "create(%s): %s: %s", backend, eplb_status_string(st),
                   why);
    }
    float w[AL * AE];
    alloc_weights(w);
    int64_t phy2log[AL * AR], logcnt[AL * AE], log2phy[AL * AE * (AR - AE + 1)], needed = -7;
    const int64_t X = AR - AE + 1;
    memset(phy2log, POISON, sizeof phy2log);
    memset(logcnt, POISON, sizeof logcnt);
    memset(log2phy, POISON, sizeof log2phy);
    eplb_options o;
    eplb_options_init(&o);
    o.seed = 5;
    int code = CHILD_PASS;
    st = eplb_rebalance(ctx, w, &alloc_shape, &o, phy2log, logcnt, log2phy, X, &needed);
    if (st == EPLB_OK) {
        code = say(msg, len, CHILD_NOT_APPLICABLE, "no allocation failed");
        goto done;
    }
    if (st != EPLB_ERR_OUT_OF_MEMORY || !strstr(eplb_context_last_error(ctx), "EPLB_TEST_FAIL_ALLOC")) {
        code = say(msg, len, CHILD_FAIL, "plan gave %s (%s), want out of memory",
                   eplb_status_string(st), eplb_context_last_error(ctx));
        goto done;
    }
    if (!all_poisoned(phy2log, sizeof phy2log) || !all_poisoned(logcnt, sizeof logcnt) ||
        !all_poisoned(log2phy, sizeof log2phy) || needed != -7) {
        code = say(msg, len, CHILD_FAIL, "a failed plan wrote its outputs");
        goto done;
    }
    /* The same context again, then a fresh one: both must succeed and agree. */
    st = eplb_rebalance(ctx, w, &alloc_shape, &o, phy2log, logcnt, log2phy, X, &needed);
    if (st != EPLB_OK) {
        code = say(msg, len, CHILD_FAIL, "context unusable after the failure: %s: %s",
                   eplb_status_string(st), eplb_context_last_error(ctx));
        goto done;
    }
    eplb_context *fresh = NULL;
    int64_t ref_phy2log[AL * AR], ref_logcnt[AL * AE], ref_log2phy[AL * AE * (AR - AE + 1)];
    int64_t ref_needed = -1;
    if ((st = eplb_context_create(&fresh, "cpu")) != EPLB_OK ||
        (st = eplb_rebalance(fresh, w, &alloc_shape, &o, ref_phy2log, ref_logcnt, ref_log2phy, X,
                             &ref_needed)) != EPLB_OK) {
        code = say(msg, len, CHILD_FAIL, "reference plan failed: %s", eplb_status_string(st));
    } else if (memcmp(phy2log, ref_phy2log, sizeof phy2log) != 0 ||
               memcmp(logcnt, ref_logcnt, sizeof logcnt) != 0 ||
               memcmp(log2phy, ref_log2phy, sizeof log2phy) != 0 || needed != ref_needed) {
        code = say(msg, len, CHILD_FAIL, "the plan after the failure differs from a fresh cpu plan");
    }
    eplb_context_free(fresh);
done:
    eplb_context_free(ctx);
    return code;
}

/* Injects a failure at every allocation N = 1, 2, ... until the first plan
 * no longer fails; returns how many were injected. */
static int every_allocation_fails_cleanly(const char *backend, const char *extra_env)
{
    int injected = 0;
    for (int n = 1; n <= 200; n++) {
        char fail_alloc[64], label[96];
        snprintf(fail_alloc, sizeof fail_alloc, "EPLB_TEST_FAIL_ALLOC=%d", n);
        snprintf(label, sizeof label, "%s, EPLB_TEST_FAIL_ALLOC=%d", backend, n);
        const char *env[] = {fail_alloc, "EPLB_TEST_FAIL_BACKEND=", extra_env, NULL};
        child_report r = in_child(env, "alloc", backend, CHILD_SECONDS);
        if (r.code == CHILD_NOT_APPLICABLE)
            break;
        cr_assert_eq(r.code, CHILD_PASS, "%s: child exit %d: %s", label, r.code, r.msg);
        injected++;
    }
    cr_log_info("%s: %d allocations failed by injection, each cleanly", backend, injected);
    return injected;
}

Test(faults, allocation_failure_mid_plan_on_cpu)
{
    int n = every_allocation_fails_cleanly("cpu", "EPLB_TUNE_CPU_STAGES=");
    /* 21 workspace buffers and 3 host staging arrays for this shape. */
    cr_expect_geq(n, 20, "only %d allocations were injected", n);
}

Test(faults, allocation_failure_mid_plan_on_cpu_separate_stages)
{
    int n = every_allocation_fails_cleanly("cpu", "EPLB_TUNE_CPU_STAGES=separate");
    cr_expect_geq(n, 20, "only %d allocations were injected", n);
}

Test(faults, allocation_failure_in_opencl_open_and_plan)
{
    char why[CHILD_MSG_LEN];
    if (!module_built("opencl") || !opencl_available(why, sizeof why))
        cr_skip_test("opencl unavailable here: %s", why);
    /* Early N fall in the self-test at open (an open error), later N in the plan. */
    int n = every_allocation_fails_cleanly("opencl", "EPLB_TUNE_CPU_STAGES=");
    cr_expect_geq(n, 40, "only %d allocations were injected", n);
}

/* Auto mode with the first allocation failing: a GPU backend's self-test runs
 * out of memory, it is skipped with that reason, and the context still plans. */
static int auto_skips_backend_out_of_memory(const char *arg, char *msg, size_t len)
{
    (void)arg;
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, "auto");
    if (st != EPLB_OK)
        return say(msg, len, CHILD_FAIL, "auto: %s: %s", eplb_status_string(st), eplb_last_error());
    int code = CHILD_PASS;
    if (strcmp(eplb_context_backend(ctx), "cpu") != 0)
        code = say(msg, len, CHILD_NOT_APPLICABLE, "auto picked %s", eplb_context_backend(ctx));
    else if (strstr(eplb_last_error(), "is a CPU; "))
        code = say(msg, len, CHILD_NOT_APPLICABLE, "auto passed over opencl's CPU device before "
                   "its self-test: %s", eplb_last_error());
    else if (!strstr(eplb_last_error(), "opencl: ") ||
             !strstr(eplb_last_error(), "EPLB_TEST_FAIL_ALLOC"))
        code = say(msg, len, CHILD_FAIL, "auto's skip list '%s' does not name the opencl "
                   "self-test's allocation failure", eplb_last_error());
    eplb_context_free(ctx);
    return code;
}

Test(faults, auto_skips_a_backend_out_of_memory_at_open)
{
    char why[CHILD_MSG_LEN];
    if (!module_built("opencl") || !opencl_available(why, sizeof why))
        cr_skip_test("opencl unavailable here: %s", why);
    /* cuda, when it opens, comes first and takes the first allocation instead. */
    const char *env[] = {"EPLB_TEST_FAIL_ALLOC=1", "EPLB_BACKEND=", "EPLB_TEST_FAIL_BACKEND=",
                         NULL};
    child_report r = in_child(env, "auto-oom", NULL, CHILD_SECONDS);
    if (r.code == CHILD_NOT_APPLICABLE)
        cr_skip_test("%s", r.msg);
    expect_pass("auto with EPLB_TEST_FAIL_ALLOC=1", r);
}

static child_fn find_child_case(const char *name)
{
    static const struct {
        const char *name;
        child_fn fn;
    } cases[] = {
        {"open", child_open},
        {"opencl-works", opencl_works_here},
        {"opencl-is-pocl", opencl_is_pocl},
        {"alloc", plan_through_alloc_failure},
        {"auto-oom", auto_skips_backend_out_of_memory},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(cases[i].name, name) == 0)
            return cases[i].fn;
    return NULL;
}
