/* JSON plan files: the small fields through jansson, the arrays that grow
 * with layers x replicas streamed by hand, so that no tree of the whole plan
 * is ever built (a jansson value per number would take gigabytes for the
 * largest shapes). SGLang's file is all array, streamed without jansson. */
#define _GNU_SOURCE
#include "plan_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_escape.h"

/* A buffered writer that remembers its first failure, so the many small
 * writes of a large array need no check each. */
typedef struct json_stream {
    FILE *f;
    int err;          /* errno of the first failed write; 0 while all is well */
    size_t used;
    char buf[1 << 16];
} json_stream;

static void stream_flush(json_stream *s)
{
    if (s->used && !s->err) {
        errno = 0;
        if (fwrite(s->buf, 1, s->used, s->f) != s->used)
            s->err = errno ? errno : EIO;
    }
    s->used = 0;
}

static void stream_bytes(json_stream *s, const char *text, size_t n)
{
    if (s->used + n > sizeof s->buf)
        stream_flush(s);
    if (n > sizeof s->buf) {
        errno = 0;
        if (!s->err && fwrite(text, 1, n, s->f) != n)
            s->err = errno ? errno : EIO;
        return;
    }
    memcpy(s->buf + s->used, text, n);
    s->used += n;
}

static void stream_text(json_stream *s, const char *text)
{
    stream_bytes(s, text, strlen(text));
}

static void stream_int(json_stream *s, int64_t v)
{
    char text[24];
    char *end = text + sizeof text, *p = end;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    stream_bytes(s, p, (size_t)(end - p));
}

/* rows x cols integers as [[...],[...]]. */
static void stream_matrix(json_stream *s, const int64_t *data, int64_t rows, int64_t cols)
{
    stream_text(s, "[");
    for (int64_t r = 0; r < rows; r++) {
        stream_text(s, r ? ",[" : "[");
        for (int64_t c = 0; c < cols; c++) {
            if (c)
                stream_text(s, ",");
            stream_int(s, data[r * cols + c]);
        }
        stream_text(s, "]");
    }
    stream_text(s, "]");
}

/* Flushes the stream (NULL: none was made) and turns err, else the stream's
 * first write error, into the writers' result. */
static eplb_status stream_finish(json_stream *s, int err, const char *name, char *error,
                                 size_t error_len)
{
    if (s) {
        stream_flush(s);
        if (!err)
            err = s->err;
    }
    char shown[1024];
    eplb_text_escape(shown, sizeof shown, name);
    switch (err) {
    case 0:
        return EPLB_OK;
    case ENOMEM:
        snprintf(error, error_len, "cannot write %s: out of memory for the JSON text", shown);
        return EPLB_ERR_OUT_OF_MEMORY;
    case EINVAL:
        snprintf(error, error_len, "cannot write %s: phy2log does not match logcnt", shown);
        return EPLB_ERR_INVALID_ARGUMENT;
    default:
        snprintf(error, error_len, "cannot write %s: write failed: %s", shown, strerror(err));
        return EPLB_ERR_IO;
    }
}

eplb_status eplb_plan_write_sglang(FILE *f, const char *name, const eplb_plan_record *record,
                                   char *error, size_t error_len)
{
    json_stream *out = malloc(sizeof *out);
    if (!out)
        return stream_finish(NULL, ENOMEM, name, error, error_len);
    out->f = f;
    out->err = 0;
    out->used = 0;
    stream_text(out, "{\"physical_to_logical_map\":");
    stream_matrix(out, record->phy2log, record->shape.layers, record->shape.replicas);
    stream_text(out, "}\n");
    eplb_status st = stream_finish(out, 0, name, error, error_len);
    free(out);
    return st;
}

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>

/* What the jansson parts are dumped with; the streamed parts match it. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* log2phy as [layers][experts][logcnt]: each expert's slots in ascending
 * order, gathered per layer by a counting sort of phy2log. Returns 0, ENOMEM,
 * or EINVAL when phy2log does not hold each expert logcnt times. */
static int stream_log2phy(json_stream *s, const eplb_plan_record *r)
{
    const int64_t L = r->shape.layers, E = r->shape.experts, R = r->shape.replicas;
    /* start[e]..start[e+1] is expert e's range of slots; fill[e] its next free place. */
    int64_t *scratch = malloc((size_t)(2 * E + 1 + R) * sizeof *scratch);
    if (!scratch)
        return ENOMEM;
    int64_t *start = scratch, *fill = scratch + E + 1, *slots = fill + E;
    int bad = 0;
    stream_text(s, "[");
    for (int64_t l = 0; l < L && !bad; l++) {
        const int64_t *p2l = r->phy2log + l * R, *cnt = r->logcnt + l * E;
        start[0] = 0;
        for (int64_t e = 0; e < E; e++) {
            bad |= cnt[e] < 0 || cnt[e] > R;
            start[e + 1] = start[e] + (bad ? 0 : cnt[e]);
            fill[e] = start[e];
        }
        bad |= start[E] != R;
        for (int64_t q = 0; q < R && !bad; q++) {
            int64_t e = p2l[q];
            bad = e < 0 || e >= E || fill[e] == start[e + 1];
            if (!bad)
                slots[fill[e]++] = q;
        }
        stream_text(s, l ? ",[" : "[");
        for (int64_t e = 0; e < E && !bad; e++) {
            stream_text(s, e ? ",[" : "[");
            for (int64_t k = start[e]; k < start[e + 1]; k++) {
                if (k > start[e])
                    stream_text(s, ",");
                stream_int(s, slots[k]);
            }
            stream_text(s, "]");
        }
        stream_text(s, "]");
    }
    stream_text(s, "]");
    free(scratch);
    return bad ? EINVAL : 0;
}

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

/* NULL when any element (or the array) could not be made. */
static json_t *json_doubles(const double *data, int64_t n)
{
    json_t *a = json_array();
    for (int64_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(data[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

static const char *policy_name(eplb_policy p)
{
    return p == EPLB_POLICY_HIERARCHICAL ? "hierarchical" : p == EPLB_POLICY_GLOBAL ? "global" : "auto";
}

/* Everything before the plan's arrays. json_pack fails as a whole (NULL)
 * when any value in it, or any value passed to it, could not be made. */
static json_t *header(const eplb_plan_record *r)
{
    const eplb_shape *s = &r->shape;
    json_t *seed;
    if (r->options.seed <= (uint64_t)INT64_MAX) {
        seed = json_integer((json_int_t)r->options.seed);
    } else { /* beyond json_int_t: written as a decimal string */
        char text[32];
        snprintf(text, sizeof text, "%llu", (unsigned long long)r->options.seed);
        seed = json_string(text);
    }
    json_t *h = json_pack(
        "{s:s, s:s, s:s?, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:{s:i, s:i, s:o, s:o, s:o, s:s}, s:s}",
        "format", "eplb-plan v2", "version", eplb_version_string(), "input", r->input,
        "input_format", r->input_format,
        "shape", "layers", (json_int_t)s->layers, "experts", (json_int_t)s->experts, "replicas",
        (json_int_t)s->replicas, "groups", (json_int_t)s->groups, "nodes", (json_int_t)s->nodes,
        "gpus", (json_int_t)s->gpus,
        "options", "candidates", (int)r->options.candidates, "iterations",
        (int)r->options.iterations, "noise", json_float32(r->options.noise), "tolerance",
        json_float32(r->options.tolerance), "seed", seed, "policy", policy_name(r->options.policy),
        "policy", r->policy);
    /* Each written only when on, so that a plan file without them is the
     * same as before the options existed. */
    json_t *options = json_object_get(h, "options");
    if (h && ((r->options.refine > 0 &&
               json_object_set_new(options, "refine", json_integer(r->options.refine)) != 0) ||
              (r->options.distinct && json_object_set_new(options, "distinct", json_true()) != 0) ||
              (r->previous && r->options.slack > 0.0f &&
               json_object_set_new(options, "slack", json_float32(r->options.slack)) != 0) ||
              (r->previous &&
               json_object_set_new(h, "previous", json_string(r->previous)) != 0))) {
        json_decref(h);
        return NULL;
    }
    return h;
}

/* The moves from the previous plan, after the duplicates; cross_node_moves
 * is null where the GPUs do not divide among the nodes. Returns 0, or -1 when
 * a value could not be made. */
static int add_moves(json_t *stats, const eplb_moves *m)
{
    json_t *cross = m->cross_node_moves < 0 ? json_null()
                                            : json_integer((json_int_t)m->cross_node_moves);
    return json_object_set_new(stats, "moved_slots", json_integer((json_int_t)m->moved_slots)) |
           json_object_set_new(stats, "max_moved_per_gpu",
                               json_integer((json_int_t)m->max_moved_per_gpu)) |
           json_object_set_new(stats, "cross_node_moves", cross);
}

static json_t *stats(const eplb_plan_record *r)
{
    const eplb_plan_stats *st = &r->stats;
    const int64_t L = r->shape.layers;
    json_t *s = json_pack(
        "{s:f, s:f, s:I, s:f, s:f, s:o, s:f, s:o, s:f, s:f, s:b, s:f, s:I}",
        "balancedness", st->balancedness, "balancedness_min_layer", st->balancedness_min_layer,
        "min_layer", (json_int_t)st->min_layer, "balancedness_bound", st->balancedness_bound,
        "bound", st->bound, "bound_per_layer", json_doubles(r->bound, L),
        "max_load_sum", st->max_load_sum, "max_load_per_layer", json_doubles(r->max_load, L),
        "mean_load_sum", st->mean_load_sum, "bound_gap", st->bound_gap, "bound_exact",
        st->bound_exact, "global_balancedness_bound", st->global_balancedness_bound, "duplicates",
        (json_int_t)st->duplicates);
    if (s && ((r->moves && add_moves(s, r->moves) != 0) ||
              json_object_set_new(s, "plan_us", json_real(r->plan_us)) != 0 ||
              json_object_set_new(s, "backend", json_string(r->backend)) != 0 ||
              json_object_set_new(s, "device", json_string(r->device)) != 0)) {
        json_decref(s);
        return NULL;
    }
    return s;
}

/* jansson's dump callback: into the stream, which cannot run out of memory,
 * so a dump fails only where jansson itself allocates, and that it reports
 * (unlike a failed append to its own text buffer, which json_dumps may
 * drop unreported while writing a key). */
static int stream_dump_callback(const char *text, size_t n, void *data)
{
    json_stream *s = data;
    stream_bytes(s, text, n);
    return s->err ? -1 : 0;
}

/* Writes the value; when open is set, without the closing brace of the
 * object, so that more members can follow. Returns 0 or ENOMEM. */
static int stream_json(json_stream *s, json_t *value, int open)
{
    if (!value || json_dump_callback(value, stream_dump_callback, s, DUMP_FLAGS) != 0)
        return s->err ? 0 : ENOMEM; /* a write error stays in s->err */
    /* The brace is the last byte written, so still in the buffer. */
    if (open && s->used && s->buf[s->used - 1] == '}')
        s->used--;
    return 0;
}

eplb_status eplb_plan_write_json(FILE *f, const char *name, const eplb_plan_record *record,
                                 char *error, size_t error_len)
{
    const eplb_shape *s = &record->shape;
    json_t *head = header(record), *tail = stats(record);
    json_stream *out = malloc(sizeof *out);
    int err = 0;
    eplb_status st;
    if (!head || !tail || !out) {
        st = stream_finish(NULL, ENOMEM, name, error, error_len);
    } else {
        out->f = f;
        out->err = 0;
        out->used = 0;
        err = stream_json(out, head, 1);
        stream_text(out, ",\"phy2log\":");
        stream_matrix(out, record->phy2log, s->layers, s->replicas);
        stream_text(out, ",\"log2phy\":");
        if (!err)
            err = stream_log2phy(out, record);
        stream_text(out, ",\"logcnt\":");
        stream_matrix(out, record->logcnt, s->layers, s->experts);
        stream_text(out, ",\"stats\":");
        if (!err)
            err = stream_json(out, tail, 0);
        stream_text(out, "}\n");
        st = stream_finish(out, err, name, error, error_len);
    }
    free(out);
    json_decref(head);
    json_decref(tail);
    return st;
}

#else

eplb_status eplb_plan_write_json(FILE *f, const char *name, const eplb_plan_record *record,
                                 char *error, size_t error_len)
{
    (void)f;
    (void)record;
    char shown[1024];
    eplb_text_escape(shown, sizeof shown, name);
    snprintf(error, error_len,
             "cannot write %s: this eplb was built without JSON support (jansson); rebuild with "
             "libjansson-dev to write plan files", shown);
    return EPLB_ERR_UNSUPPORTED;
}

#endif
