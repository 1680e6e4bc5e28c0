/* Plan files read back (plan_read.h): a matrix of integers under
 * "phy2log" (eplb) or "physical_to_logical_map" (SGLang). */
#include "plan_read.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_escape.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

static eplb_status fail(char *error, size_t error_len, const char *path, eplb_status status,
                        const char *fmt, ...)
{
    char shown[1024], why[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(why, sizeof why, fmt, args);
    va_end(args);
    snprintf(error, error_len, "%s: %s", eplb_text_escape(shown, sizeof shown, path), why);
    return status;
}

void eplb_plan_file_free(eplb_plan_file *plan)
{
    if (!plan)
        return;
    free(plan->phy2log);
    memset(plan, 0, sizeof *plan);
}

#ifdef EPLB_TOOLS_HAVE_JSON

/* torch.save writes a zip archive: its first bytes say so. */
static int looks_like_torch_save(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return n == 4 && memcmp(magic, "PK\003\004", 4) == 0;
}

/* The rectangular integer matrix under key into plan; why says what is wrong. */
static eplb_status read_matrix(const json_t *matrix, const char *key, eplb_plan_file *plan,
                               char *why, size_t why_len)
{
    size_t L = json_is_array(matrix) ? json_array_size(matrix) : 0;
    const json_t *first = L ? json_array_get(matrix, 0) : NULL;
    size_t R = json_is_array(first) ? json_array_size(first) : 0;
    if (!L || !R) {
        snprintf(why, why_len, "\"%s\" must be a non-empty array of non-empty arrays "
                               "[layers][replicas]", key);
        return EPLB_ERR_PARSE;
    }
    if ((double)L * (double)R > (double)EPLB_MAX_SLOTS) {
        snprintf(why, why_len, "\"%s\" has %zu x %zu slots, beyond EPLB_MAX_SLOTS = %lld", key, L,
                 R, (long long)EPLB_MAX_SLOTS);
        return EPLB_ERR_PARSE;
    }
    plan->phy2log = malloc(L * R * sizeof *plan->phy2log);
    if (!plan->phy2log) {
        snprintf(why, why_len, "out of memory for %zu x %zu slots", L, R);
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    for (size_t l = 0; l < L; l++) {
        const json_t *row = json_array_get(matrix, l);
        if (!json_is_array(row) || json_array_size(row) != R) {
            snprintf(why, why_len, "\"%s\"[%zu] is not an array of %zu entries like row 0", key,
                     l, R);
            return EPLB_ERR_PARSE;
        }
        for (size_t q = 0; q < R; q++) {
            const json_t *x = json_array_get(row, q);
            if (!json_is_integer(x)) {
                snprintf(why, why_len, "\"%s\"[%zu][%zu] is not an integer", key, l, q);
                return EPLB_ERR_PARSE;
            }
            plan->phy2log[l * R + q] = (int64_t)json_integer_value(x);
        }
    }
    plan->layers = (int64_t)L;
    plan->replicas = (int64_t)R;
    return EPLB_OK;
}

/* The shape and policy of an eplb plan file, where it has them. */
static void read_eplb_header(const json_t *root, eplb_plan_file *plan)
{
    const json_t *shape = json_object_get(root, "shape");
    const char *names[] = {"layers", "experts", "replicas", "groups", "nodes", "gpus"};
    int64_t *fields[] = {&plan->shape.layers, &plan->shape.experts, &plan->shape.replicas,
                         &plan->shape.groups, &plan->shape.nodes, &plan->shape.gpus};
    int complete = json_is_object(shape);
    for (size_t i = 0; complete && i < sizeof names / sizeof names[0]; i++) {
        const json_t *v = json_object_get(shape, names[i]);
        complete = json_is_integer(v);
        if (complete)
            *fields[i] = (int64_t)json_integer_value(v);
    }
    plan->has_shape = complete;
    const char *policy = json_string_value(json_object_get(root, "policy"));
    plan->policy = !policy                          ? EPLB_POLICY_AUTO
                   : strcmp(policy, "global") == 0 ? EPLB_POLICY_GLOBAL
                   : strcmp(policy, "hierarchical") == 0 ? EPLB_POLICY_HIERARCHICAL
                                                         : EPLB_POLICY_AUTO;
}

eplb_status eplb_plan_read(const char *path, eplb_plan_file *out, char *error, size_t error_len)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    errno = 0;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_cannot_open_file)
            return fail(error, error_len, path, EPLB_ERR_IO, "cannot read the plan: %s",
                        errno ? strerror(errno) : jerr.text);
        if (looks_like_torch_save(path))
            return fail(error, error_len, path, EPLB_ERR_PARSE,
                        "a torch.save file (.pt), which the Python package reads with torch "
                        "(python -m eplb plan --previous, or its physical_to_logical_map to "
                        "eplb.evaluate); or save that as JSON {\"physical_to_logical_map\": "
                        "...}");
        return fail(error, error_len, path, EPLB_ERR_PARSE, "invalid JSON at line %d, column %d: %s",
                    jerr.line, jerr.column, jerr.text);
    }
    char why[512] = "";
    eplb_status status = EPLB_ERR_PARSE;
    const json_t *sglang = json_object_get(root, "physical_to_logical_map");
    const json_t *eplb = json_object_get(root, "phy2log");
    if (!json_is_object(root) || (!sglang && !eplb)) {
        snprintf(why, sizeof why, "not a plan: expected a JSON object with \"phy2log\" (eplb plan "
                                  "-o) or \"physical_to_logical_map\" (SGLang)");
    } else if (sglang) {
        out->format = "sglang";
        status = read_matrix(sglang, "physical_to_logical_map", out, why, sizeof why);
    } else {
        out->format = "eplb-plan";
        read_eplb_header(root, out);
        status = read_matrix(eplb, "phy2log", out, why, sizeof why);
    }
    json_decref(root);
    if (why[0]) {
        eplb_plan_file_free(out);
        return fail(error, error_len, path, status, "%s", why);
    }
    return EPLB_OK;
}

#else

eplb_status eplb_plan_read(const char *path, eplb_plan_file *out, char *error, size_t error_len)
{
    memset(out, 0, sizeof *out);
    return fail(error, error_len, path, EPLB_ERR_UNSUPPORTED,
                "this eplb was built without JSON support (jansson), so it reads no plan file");
}

#endif
