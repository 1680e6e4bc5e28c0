/* JSON plan files through jansson, written atomically (temp file + rename). */
#define _GNU_SOURCE
#include "plan_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* The float as the shortest decimal that reads back to it, so 0.2f is written 0.2. */
static json_t *json_float32(float x)
{
    char text[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)x);
        if ((float)strtod(text, NULL) == x)
            break;
    }
    return json_real(strtod(text, NULL));
}

static json_t *json_i64_matrix(const int64_t *data, int64_t rows, int64_t cols)
{
    json_t *outer = json_array();
    for (int64_t r = 0; outer && r < rows; r++) {
        json_t *row = json_array();
        for (int64_t c = 0; row && c < cols; c++)
            json_array_append_new(row, json_integer((json_int_t)data[r * cols + c]));
        json_array_append_new(outer, row);
    }
    return outer;
}

static json_t *json_doubles(const double *data, int64_t n)
{
    json_t *a = json_array();
    for (int64_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_real(data[i]));
    return a;
}

static const char *policy_name(eplb_policy p)
{
    return p == EPLB_POLICY_HIERARCHICAL ? "hierarchical" : p == EPLB_POLICY_GLOBAL ? "global" : "auto";
}

static json_t *build(const eplb_plan_record *r)
{
    const eplb_shape *s = &r->shape;
    const int64_t L = s->layers, E = s->experts, X = r->log2phy_width;
    json_t *log2phy = json_array();
    for (int64_t l = 0; log2phy && l < L; l++)
        json_array_append_new(log2phy, json_i64_matrix(r->log2phy + l * E * X, E, X));
    json_t *seed = r->options.seed <= (uint64_t)INT64_MAX
                       ? json_integer((json_int_t)r->options.seed)
                       : NULL;
    if (!seed) { /* beyond json_int_t: written as a decimal string */
        char text[32];
        snprintf(text, sizeof text, "%llu", (unsigned long long)r->options.seed);
        seed = json_string(text);
    }
    const eplb_plan_stats *st = &r->stats;
    return json_pack(
        "{s:s, s:s, s:s?, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:{s:i, s:i, s:o, s:o, s:o, s:s}, s:s, s:o, s:o, s:o, "
        "s:{s:f, s:f, s:I, s:f, s:f, s:o, s:f, s:o, s:f, s:f, s:f, s:s, s:s}}",
        "format", "eplb-plan v1", "version", eplb_version_string(), "input", r->input,
        "input_format", r->input_format,
        "shape", "layers", (json_int_t)L, "experts", (json_int_t)E, "replicas",
        (json_int_t)s->replicas, "groups", (json_int_t)s->groups, "nodes", (json_int_t)s->nodes,
        "gpus", (json_int_t)s->gpus,
        "options", "candidates", (int)r->options.candidates, "iterations",
        (int)r->options.iterations, "noise", json_float32(r->options.noise), "tolerance",
        json_float32(r->options.tolerance), "seed", seed, "policy", policy_name(r->options.policy),
        "policy", r->policy,
        "phy2log", json_i64_matrix(r->phy2log, L, s->replicas),
        "log2phy", log2phy,
        "logcnt", json_i64_matrix(r->logcnt, L, E),
        "stats", "balancedness", st->balancedness, "balancedness_min_layer",
        st->balancedness_min_layer, "min_layer", (json_int_t)st->min_layer, "balancedness_bound",
        st->balancedness_bound, "bound", st->bound, "bound_per_layer", json_doubles(r->bound, L),
        "max_load_sum", st->max_load_sum, "max_load_per_layer", json_doubles(r->max_load, L),
        "mean_load_sum", st->mean_load_sum, "bound_gap", st->bound_gap, "plan_us", r->plan_us,
        "backend", r->backend, "device", r->device);
}

static eplb_status write_error(char *error, size_t error_len, const char *path, const char *what,
                               int err)
{
    snprintf(error, error_len, "cannot write %s: %s%s%s", path, what, err ? ": " : "",
             err ? strerror(err) : "");
    return EPLB_ERR_IO;
}

eplb_status eplb_plan_write_json(const char *path, const eplb_plan_record *record, char *error,
                                 size_t error_len)
{
    json_t *root = build(record);
    if (!root) {
        snprintf(error, error_len, "cannot build the JSON plan (out of memory)");
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(15);
    if (strcmp(path, "-") == 0) {
        int bad = json_dumpf(root, stdout, flags) != 0 || fputc('\n', stdout) == EOF ||
                  fflush(stdout) != 0;
        json_decref(root);
        return bad ? write_error(error, error_len, "standard output", "write failed", errno)
                   : EPLB_OK;
    }
    struct stat info;
    char *real = NULL;
    if (stat(path, &info) == 0) {
        if (!S_ISREG(info.st_mode)) {
            /* A device or pipe (/dev/stdout, a FIFO): never rename over it; write in place. */
            FILE *f = fopen(path, "w");
            if (!f) {
                json_decref(root);
                return write_error(error, error_len, path, "cannot open", errno);
            }
            errno = 0;
            int bad = json_dumpf(root, f, flags) != 0 || fputc('\n', f) == EOF || fflush(f) != 0;
            int err = errno;
            if (fclose(f) != 0 && !bad)
                bad = 1, err = errno;
            json_decref(root);
            return bad ? write_error(error, error_len, path, "write failed", err) : EPLB_OK;
        }
        real = realpath(path, NULL); /* through a symlink: replace its target, keep the link */
    }
    const char *target = real ? real : path;
    size_t tmp_len = strlen(target) + 16;
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(real);
        json_decref(root);
        return write_error(error, error_len, path, "out of memory", 0);
    }
    snprintf(tmp, tmp_len, "%s.tmp.XXXXXX", target);
    eplb_status st = EPLB_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = write_error(error, error_len, path, "cannot create a temporary file", errno);
    } else {
        mode_t mask = umask(0);
        umask(mask);
        fchmod(fd, 0666 & ~mask); /* mkstemp makes 0600; a plan is an ordinary file */
        FILE *f = fdopen(fd, "w");
        if (!f) {
            st = write_error(error, error_len, tmp, "fdopen", errno);
            close(fd);
        } else {
            errno = 0;
            int bad = json_dumpf(root, f, flags) != 0 || fputc('\n', f) == EOF || fflush(f) != 0;
            int err = errno;
            if (!bad && fsync(fileno(f)) != 0 && errno != EINVAL)
                bad = 1, err = errno;
            if (fclose(f) != 0 && !bad)
                bad = 1, err = errno;
            if (bad)
                st = write_error(error, error_len, tmp, "write failed", err);
            else if (rename(tmp, target) != 0)
                st = write_error(error, error_len, path, "cannot rename the temporary file", errno);
        }
        if (st != EPLB_OK)
            unlink(tmp);
    }
    free(tmp);
    free(real);
    json_decref(root);
    return st;
}

#else

eplb_status eplb_plan_write_json(const char *path, const eplb_plan_record *record, char *error,
                                 size_t error_len)
{
    (void)record;
    snprintf(error, error_len,
             "cannot write %s: this eplb was built without JSON support (jansson); rebuild with "
             "libjansson-dev to write plan files", path);
    return EPLB_ERR_UNSUPPORTED;
}

#endif
