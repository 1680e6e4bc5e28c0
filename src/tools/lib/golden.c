/* Reader for golden files (SPEC section 9). */
#include "golden.h"
#include "text_escape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int expect_word(FILE *f, const char *word)
{
    char buf[64];
    return fscanf(f, "%63s", buf) == 1 && strcmp(buf, word) == 0;
}

static int read_i64(FILE *f, const char *word, int64_t *out)
{
    long long v;
    if (!expect_word(f, word) || fscanf(f, "%lld", &v) != 1)
        return 0;
    *out = v;
    return 1;
}

void eplb_golden_free(eplb_golden *g)
{
    free(g->weight);
    free(g->phy2log);
    free(g->logcnt);
    free(g->max_gpu_load);
    memset(g, 0, sizeof *g);
}

eplb_status eplb_golden_read(const char *path, eplb_golden *g, char *error, size_t error_len)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f) {
        char shown[4096];
        snprintf(error, error_len, "%s: %s", eplb_text_escape(shown, sizeof shown, path),
                 strerror(errno));
        return EPLB_ERR_IO;
    }
    char header[64] = "";
    eplb_shape *s = &g->shape;
    eplb_options *o = &g->options;
    eplb_options_init(o);
    long long C = 0, I = 0;
    unsigned long long seed = 0;
    double noise = 0, tol = 0;
    const char *why = NULL;
    if (!fgets(header, sizeof header, f) || strncmp(header, "# eplb golden v1", 16) != 0)
        why = "missing '# eplb golden v1' header";
    else if (!read_i64(f, "layers", &s->layers) || !read_i64(f, "experts", &s->experts) ||
             !read_i64(f, "replicas", &s->replicas) || !read_i64(f, "groups", &s->groups) ||
             !read_i64(f, "nodes", &s->nodes) || !read_i64(f, "gpus", &s->gpus))
        why = "malformed shape line";
    else if (!expect_word(f, "candidates") || fscanf(f, "%lld", &C) != 1 ||
             !expect_word(f, "iters") || fscanf(f, "%lld", &I) != 1 ||
             !expect_word(f, "noise") || fscanf(f, "%lf", &noise) != 1 ||
             !expect_word(f, "tol") || fscanf(f, "%lf", &tol) != 1 ||
             !expect_word(f, "seed") || fscanf(f, "%llu", &seed) != 1)
        why = "malformed options line";
    else
        eplb_shape_check(s, &why); /* leaves why NULL when the shape is valid */
    if (!why) {
        /* Every value takes a character and a separator: a shape that needs
         * more than the file can hold is malformed, found before allocating. */
        struct stat st;
        const uint64_t values = (uint64_t)s->layers * (uint64_t)(2 * s->experts + s->replicas + 1);
        if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
            values > (uint64_t)st.st_size / 2 + 1)
            why = "the shape needs more values than the file holds";
    }
    if (!why) {
        o->candidates = (int32_t)C;
        o->iterations = (int32_t)I;
        o->noise = (float)noise;
        o->tolerance = (float)tol;
        o->seed = seed;
        const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
        g->weight = malloc(L * E * sizeof *g->weight);
        g->phy2log = malloc(L * R * sizeof *g->phy2log);
        g->logcnt = malloc(L * E * sizeof *g->logcnt);
        g->max_gpu_load = malloc(L * sizeof *g->max_gpu_load);
        if (!g->weight || !g->phy2log || !g->logcnt || !g->max_gpu_load)
            why = "out of memory";
        if (!why && !expect_word(f, "weight")) why = "missing 'weight'";
        for (size_t i = 0; !why && i < L * E; i++)
            if (fscanf(f, "%f", &g->weight[i]) != 1) why = "short weight block";
        if (!why && !expect_word(f, "phy2log")) why = "missing 'phy2log'";
        for (size_t i = 0; !why && i < L * R; i++) {
            long long v;
            if (fscanf(f, "%lld", &v) != 1) why = "short phy2log block";
            else g->phy2log[i] = v;
        }
        if (!why && !expect_word(f, "logcnt")) why = "missing 'logcnt'";
        for (size_t i = 0; !why && i < L * E; i++) {
            long long v;
            if (fscanf(f, "%lld", &v) != 1) why = "short logcnt block";
            else g->logcnt[i] = v;
        }
        if (!why && !expect_word(f, "max_gpu_load")) why = "missing 'max_gpu_load'";
        for (size_t i = 0; !why && i < L; i++)
            if (fscanf(f, "%lf", &g->max_gpu_load[i]) != 1) why = "short max_gpu_load line";
    }
    fclose(f);
    if (why) {
        char shown[4096];
        snprintf(error, error_len, "%s: %s", eplb_text_escape(shown, sizeof shown, path), why);
        eplb_golden_free(g);
        return EPLB_ERR_PARSE;
    }
    return EPLB_OK;
}

void eplb_plan_max_gpu_load(const float *weight, const eplb_shape *s, const int64_t *phy2log,
                            const int64_t *logcnt, double *max_load)
{
    const int64_t E = s->experts, R = s->replicas, spg = s->replicas / s->gpus;
    for (int64_t l = 0; l < s->layers; l++) {
        double best = 0.0;
        for (int64_t g = 0; g < s->gpus; g++) {
            double load = 0.0;
            for (int64_t q = g * spg; q < (g + 1) * spg; q++) {
                int64_t e = phy2log[l * R + q];
                load += (double)weight[l * E + e] / (double)logcnt[l * E + e];
            }
            if (load > best) best = load;
        }
        max_load[l] = best;
    }
}
