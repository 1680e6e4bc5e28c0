/* The refine fixtures of tests/data/refine (docs/spec.md section 10),
 * written by tests/reference/make_refine_fixtures.py: their reader and the
 * comparison of a backend's plans with them, for the suites that check a
 * backend against them (test_refine.c and the opencl and cuda ones). The
 * distinct fixtures of tests/data/distinct (section 11,
 * make_distinct_fixtures.py, for test_distinct.c and the opencl and cuda
 * ones) have the same format, with 'distinct 1' ending the options line.
 * Header-only, like harness.h. */
#ifndef EPLB_TESTS_REFINE_FIXTURE_H
#define EPLB_TESTS_REFINE_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define REFINE_FIXTURE_DIR EPLB_TEST_DATA_DIR "/refine"
#define DISTINCT_FIXTURE_DIR EPLB_TEST_DATA_DIR "/distinct"

typedef struct refine_fixture {
    char name[128];
    eplb_shape shape;
    eplb_options options;
    float *weight;    /* [L][E] */
    int64_t *phy2log; /* [L][R] */
    int64_t *logcnt;  /* [L][E] */
    int64_t width;
    int64_t *log2phy; /* [L][E][width] */
} refine_fixture;

EPLBT_HELPER void expect_word(FILE *f, const char *path, const char *word)
{
    char got[64];
    cr_assert_eq(fscanf(f, "%63s", got), 1, "%s: ends before '%s'", path, word);
    cr_assert_str_eq(got, word, "%s: expected '%s'", path, word);
}

EPLBT_HELPER void read_ints(FILE *f, const char *path, int64_t *out, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        long long v;
        cr_assert_eq(fscanf(f, "%lld", &v), 1, "%s: short integer list", path);
        out[i] = v;
    }
}

EPLBT_HELPER void fixture_read(const char *path, refine_fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    char header[256];
    cr_assert(fgets(header, sizeof header, f), "%s: empty", path);
    cr_assert(sscanf(header, "# eplb refine fixture v1: %127s", fx->name) == 1,
              "%s: not a refine fixture", path);
    long long L, E, R, G, N, P;
    cr_assert_eq(fscanf(f, " layers %lld experts %lld replicas %lld groups %lld nodes %lld gpus %lld",
                        &L, &E, &R, &G, &N, &P), 6, "%s: bad shape line", path);
    fx->shape = (eplb_shape){L, E, R, G, N, P};
    char policy[32];
    int refine;
    float tol;
    cr_assert_eq(fscanf(f, " policy %31s refine %d tol %f", policy, &refine, &tol), 3,
                 "%s: bad options line", path);
    eplb_options_init(&fx->options);
    fx->options.policy = strcmp(policy, "global") == 0         ? EPLB_POLICY_GLOBAL
                         : strcmp(policy, "hierarchical") == 0 ? EPLB_POLICY_HIERARCHICAL
                                                               : EPLB_POLICY_AUTO;
    fx->options.refine = refine;
    fx->options.tolerance = tol;
    /* 'distinct 1' (distinct fixtures only), or the next line's 'weight'. */
    const long options_end = ftell(f);
    char word[16];
    int distinct = 0;
    if (fscanf(f, " %15s", word) == 1 && strcmp(word, "distinct") == 0)
        cr_assert_eq(fscanf(f, "%d", &distinct), 1, "%s: bad distinct option", path);
    else
        cr_assert_eq(fseek(f, options_end, SEEK_SET), 0, "%s: cannot seek", path);
    fx->options.distinct = distinct;

    fx->weight = malloc((size_t)(L * E) * sizeof *fx->weight);
    fx->phy2log = malloc((size_t)(L * R) * sizeof *fx->phy2log);
    fx->logcnt = malloc((size_t)(L * E) * sizeof *fx->logcnt);
    cr_assert(fx->weight && fx->phy2log && fx->logcnt);
    expect_word(f, path, "weight");
    for (long long i = 0; i < L * E; i++)
        cr_assert_eq(fscanf(f, "%f", &fx->weight[i]), 1, "%s: short weight list", path);
    expect_word(f, path, "phy2log");
    read_ints(f, path, fx->phy2log, (size_t)(L * R));
    expect_word(f, path, "logcnt");
    read_ints(f, path, fx->logcnt, (size_t)(L * E));
    expect_word(f, path, "log2phy");
    long long width;
    cr_assert_eq(fscanf(f, "%lld", &width), 1, "%s: no log2phy width", path);
    fx->width = width;
    fx->log2phy = malloc((size_t)(L * E * width) * sizeof *fx->log2phy);
    cr_assert(fx->log2phy);
    read_ints(f, path, fx->log2phy, (size_t)(L * E * width));
    fclose(f);
}

EPLBT_HELPER void fixture_free(refine_fixture *fx)
{
    free(fx->weight);
    free(fx->phy2log);
    free(fx->logcnt);
    free(fx->log2phy);
}

/* The fixtures in dir. */
EPLBT_HELPER int fixture_count(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)))
        n += strstr(ent->d_name, ".txt") != NULL;
    closedir(d);
    return n;
}

EPLBT_HELPER void first_difference(const int64_t *got, const int64_t *want, size_t count,
                                  const char *what, const char *name)
{
    for (size_t i = 0; i < count; i++)
        cr_assert_eq(got[i], want[i], "%s: %s[%zu] is %lld, the reference says %lld", name, what, i,
                     (long long)got[i], (long long)want[i]);
}

/* Plans every fixture of dir on the backend and asserts that the plan equals
 * the reference's in every integer; returns how many there were, and how
 * many of them ran the hierarchical policy in *hierarchical. */
EPLBT_HELPER int fixtures_match(const char *dir, const char *backend, int *hierarchical)
{
    eplb_context *ctx;
    cr_assert_eq(eplb_context_create(&ctx, backend), EPLB_OK);
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int checked = 0;
    *hierarchical = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (!strstr(ent->d_name, ".txt"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        refine_fixture fx;
        fixture_read(path, &fx);
        const eplb_shape *s = &fx.shape;
        const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
        int64_t *phy2log = malloc(L * R * sizeof *phy2log), *logcnt = malloc(L * E * sizeof *logcnt);
        int64_t *log2phy = malloc(L * E * (size_t)fx.width * sizeof *log2phy);
        cr_assert(phy2log && logcnt && log2phy);
        const eplb_status st = eplb_rebalance(ctx, fx.weight, s, &fx.options, phy2log, logcnt,
                                              log2phy, fx.width, NULL);
        cr_assert_eq(st, EPLB_OK, "%s: %s", fx.name, eplb_context_last_error(ctx));
        first_difference(phy2log, fx.phy2log, L * R, "phy2log", fx.name);
        first_difference(logcnt, fx.logcnt, L * E, "logcnt", fx.name);
        first_difference(log2phy, fx.log2phy, L * E * (size_t)fx.width, "log2phy", fx.name);
        *hierarchical += eplb_plan_is_hierarchical(s, fx.options.policy);
        checked++;
        free(phy2log);
        free(logcnt);
        free(log2phy);
        fixture_free(&fx);
    }
    closedir(d);
    eplb_context_free(ctx);
    return checked;
}

/* fixtures_match, and the fixtures there: at least at_least of them, both
 * policies among them. label names the run in the messages (the backend,
 * and what its knobs chose). */
EPLBT_HELPER void expect_fixtures_match(const char *label, const char *dir, const char *backend,
                                        int at_least)
{
    int hierarchical = 0;
    const int checked = fixtures_match(dir, backend, &hierarchical);
    cr_expect_geq(checked, at_least, "%s: %d of the fixtures of %s planned, %d expected", label,
                  checked, dir, at_least);
    cr_expect_geq(hierarchical, 2, "%s: the fixtures cover the hierarchical policy", label);
    cr_expect_geq(checked - hierarchical, 2, "%s: the fixtures cover the global policy", label);
}

#endif /* EPLB_TESTS_REFINE_FIXTURE_H */
