/* The refine fixtures of tests/data/refine (docs/spec.md section 10),
 * written by tests/reference/make_refine_fixtures.py: their reader and the
 * comparison of a plan with one, for the suites that check a backend against
 * them (test_refine.c, test_opencl_refine.c). Header-only, like harness.h. */
#ifndef EPLB_TESTS_REFINE_FIXTURE_H
#define EPLB_TESTS_REFINE_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define FIXTURE_DIR EPLB_TEST_DATA_DIR "/refine"

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

EPLBT_HELPER int fixture_count(void)
{
    DIR *d = opendir(FIXTURE_DIR);
    cr_assert(d, "cannot open %s", FIXTURE_DIR);
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

#endif /* EPLB_TESTS_REFINE_FIXTURE_H */
