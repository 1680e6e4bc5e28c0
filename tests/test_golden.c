/* Golden cases (tests/golden/, SPEC section 9): every backend must reproduce
 * each file's phy2log and logcnt exactly, with a consistent log2phy and the
 * recorded per-layer maximum GPU load. */
#include <math.h>

#include "harness.h"

/* Smallest number of golden files the suite expects (SPEC section 9 ships 52). */
#define EPLBT_GOLDEN_MIN 52

/* Runs one golden file through ctx; non-fatal checks so that one test lists
 * every failing file. Returns 1 when the file passed. */
static int check_golden_file(eplb_context *ctx, const char *path)
{
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *backend = eplb_context_backend(ctx);
    eplb_golden g;
    char error[512];
    eplb_status st = eplb_golden_read(path, &g, error, sizeof error);
    cr_expect_eq(st, EPLB_OK, "golden file unreadable: %s", error);
    if (st != EPLB_OK) return 0;

    const eplb_shape *s = &g.shape;
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    eplbt_plan p;
    st = eplbt_plan_try(ctx, g.weight, s, &g.options, &p);
    int ok = st == EPLB_OK;
    cr_expect_eq(st, EPLB_OK, "[%s] %s: eplb_rebalance failed with %s: %s", backend, name,
                 eplb_status_string(st), eplb_context_last_error(ctx));
    if (ok) {
        for (size_t l = 0; l < L && ok; l++) {
            for (size_t q = 0; q < R; q++)
                if (p.phy2log[l * R + q] != g.phy2log[l * R + q]) {
                    cr_expect_fail("[%s] %s: layer %zu slot %zu: phy2log %lld, golden %lld", backend,
                                   name, l, q, (long long)p.phy2log[l * R + q],
                                   (long long)g.phy2log[l * R + q]);
                    ok = 0;
                    break;
                }
            for (size_t e = 0; e < E && ok; e++)
                if (p.logcnt[l * E + e] != g.logcnt[l * E + e]) {
                    cr_expect_fail("[%s] %s: layer %zu expert %zu: logcnt %lld, golden %lld", backend,
                                   name, l, e, (long long)p.logcnt[l * E + e],
                                   (long long)g.logcnt[l * E + e]);
                    ok = 0;
                }
        }
        int64_t widest = 0;
        for (size_t i = 0; i < L * E; i++)
            if (p.logcnt[i] > widest) widest = p.logcnt[i];
        cr_expect_eq(p.width_needed, widest, "[%s] %s: width_needed %lld, max(logcnt) %lld",
                     backend, name, (long long)p.width_needed, (long long)widest);
        ok = ok && p.width_needed == widest;
    }
    if (ok) {
        char label[256];
        snprintf(label, sizeof label, "[%s] %s", backend, name);
        /* Fatal inside; the plan already equals the golden one, so a failure
         * here is a log2phy bug or a golden file breaking SPEC. */
        eplbt_check_plan(label, g.weight, s, eplb_plan_is_hierarchical(s, g.options.policy), p.phy2log,
                         p.logcnt, p.log2phy, p.width);
        double *load = malloc(L * sizeof *load);
        eplb_plan_max_gpu_load(g.weight, s, p.phy2log, p.logcnt, load);
        for (size_t l = 0; l < L; l++) {
            const double want = g.max_gpu_load[l];
            const double tol = 1e-6 * fmax(fabs(want), 1e-30);
            if (!(fabs(load[l] - want) <= tol)) {
                cr_expect_fail("[%s] %s: layer %zu max GPU load %.17g, golden %.17g", backend, name,
                               l, load[l], want);
                ok = 0;
            }
        }
        free(load);
    }
    eplbt_plan_free(&p);
    eplb_golden_free(&g);
    return ok;
}

/* Every golden file through one context; returns the number that passed. */
static size_t run_all_golden(eplb_context *ctx, size_t *total)
{
    size_t count;
    char **files = eplbt_golden_list(&count);
    cr_assert_geq(count, EPLBT_GOLDEN_MIN, "%s holds %zu golden files, expected at least %d",
                  EPLB_GOLDEN_DIR, count, EPLBT_GOLDEN_MIN);
    size_t passed = 0;
    for (size_t i = 0; i < count; i++)
        passed += (size_t)check_golden_file(ctx, files[i]);
    eplbt_golden_list_free(files, count);
    *total = count;
    return passed;
}

Test(golden, cpu_backend_matches_every_golden_file)
{
    eplb_context *ctx = eplbt_context("cpu");
    cr_assert_str_eq(eplb_context_backend(ctx), "cpu");
    size_t total, passed = run_all_golden(ctx, &total);
    cr_log_info("golden: cpu backend passed %zu of %zu files", passed, total);
    cr_expect_eq(passed, total, "cpu backend: %zu of %zu golden files failed", total - passed, total);
    eplb_context_free(ctx);
}

/* One context reused for every file also checks that a workspace sized by a
 * large case gives the right answer on the small case after it; here the
 * files also run largest first to make that explicit. */
Test(golden, cpu_context_reused_largest_first)
{
    eplb_context *ctx = eplbt_context("cpu");
    size_t count;
    char **files = eplbt_golden_list(&count);
    size_t passed = 0, run = 0;
    /* Reverse name order: v3-* (large) before mixtral (small); the default
     * mode only, to keep the suite fast. */
    for (size_t i = count; i-- > 0;) {
        if (!strstr(files[i], ".default.txt")) continue;
        passed += (size_t)check_golden_file(ctx, files[i]);
        run++;
    }
    cr_expect_eq(passed, run, "reused cpu context: %zu of %zu golden files failed", run - passed,
                 run);
    eplbt_golden_list_free(files, count);
    eplb_context_free(ctx);
}

static void check_backend_goldens(const char *name, void *covered)
{
    eplb_context *ctx = eplbt_context(name);
    cr_assert_str_eq(eplb_context_backend(ctx), name);
    size_t total, passed = run_all_golden(ctx, &total);
    cr_log_info("golden: %s backend (%s) passed %zu of %zu files", name, eplb_context_device(ctx),
                passed, total);
    cr_expect_eq(passed, total, "%s backend: %zu of %zu golden files failed", name,
                 total - passed, total);
    eplb_context_free(ctx);
    const size_t used = strlen(covered);
    snprintf((char *)covered + used, 256 - used, "%s%s", used ? ", " : "", name);
}

/* Every backend but cpu that the registry knows, when it can run here. */
Test(golden, every_other_available_backend_matches_every_golden_file)
{
    char covered[256] = "", skipped[2048];
    const int others =
        eplbt_for_each_other_backend(check_backend_goldens, covered, skipped, sizeof skipped);
    cr_log_info("golden: backends covered besides cpu: %s; not available here: %s", covered[0] ? covered : "none",
                skipped[0] ? skipped : "none");
    if (others == 0)
        cr_skip_test("no backend besides cpu is available here: %s", skipped);
}

Test(golden, directory_holds_every_case_in_every_mode)
{
    /* SPEC 9: each case comes in four modes; a missing mode is a lost file. */
    static const char *const modes[] = {"deepseek", "lpt_l2", "default", "default-seed7"};
    size_t count;
    char **files = eplbt_golden_list(&count);
    size_t cases = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = strrchr(files[i], '/') + 1;
        if (strstr(name, ".default.txt") == NULL) continue;
        cases++;
        const size_t stem = strlen(files[i]) - strlen(".default.txt");
        for (size_t m = 0; m < 4; m++) {
            char path[1024];
            snprintf(path, sizeof path, "%.*s.%s.txt", (int)stem, files[i], modes[m]);
            FILE *f = fopen(path, "r");
            cr_expect(f != NULL, "golden case %s lacks mode %s", name, modes[m]);
            if (f) fclose(f);
        }
    }
    cr_expect_eq(cases * 4, count, "%zu golden files for %zu cases: stray or missing files", count,
                 cases);
    eplbt_golden_list_free(files, count);
}
