/* Input files of expert loads: detection, parsing and validation. */
#include "load_weights.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

int eplb_tools_json_available(void)
{
#ifdef EPLB_TOOLS_HAVE_JSON
    return 1;
#else
    return 0;
#endif
}

void eplb_weights_free(eplb_weights *w)
{
    if (!w)
        return;
    free(w->data);
    memset(w, 0, sizeof *w);
}

static eplb_status fail(char *error, size_t error_len, const char *name, eplb_status status,
                        const char *fmt, ...)
{
    char why[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(why, sizeof why, fmt, args);
    va_end(args);
    if (error && error_len)
        snprintf(error, error_len, "%s: %s", name, why);
    return status;
}

/* Checks one load; where names it ("line 3, field 7"). Writes the float32
 * value, or the reason into why. */
static int check_value(double v, float *out, const char *where, char *why, size_t why_len)
{
    if (isnan(v))
        snprintf(why, why_len, "%s is NaN", where);
    else if (isinf(v))
        snprintf(why, why_len, "%s is infinite", where);
    else if (v < 0.0)
        snprintf(why, why_len, "%s is negative (%g); loads must be >= 0", where, v);
    else if (isinf((float)v))
        snprintf(why, why_len, "%s (%g) is beyond the float32 range", where, v);
    else {
        *out = (float)v;
        return 1;
    }
    return 0;
}

/* Growable float array. */
typedef struct value_list {
    float *v;
    size_t n, cap;
} value_list;

static int value_list_push(value_list *list, float x)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 1024;
        float *v = realloc(list->v, cap * sizeof *v);
        if (!v)
            return 0;
        list->v = v;
        list->cap = cap;
    }
    list->v[list->n++] = x;
    return 1;
}

/* ---- text: one layer per line, values separated by commas and/or blanks ---- */

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

static eplb_status parse_text(const char *name, const char *p, size_t len, eplb_weights *out,
                              char *error, size_t error_len)
{
    const char *end = p + len;
    value_list list = {0};
    int64_t rows = 0, cols = -1;
    size_t line_no = 0, first_line = 0;
    char why[512] = "";
    eplb_status status = EPLB_ERR_PARSE;

    while (p < end && !why[0]) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = p, *lend = eol;
        p = eol < end ? eol + 1 : end;
        line_no++;
        if (lend > q && lend[-1] == '\r')
            lend--;
        while (q < lend && is_blank(*q))
            q++;
        if (q == lend || *q == '#')
            continue; /* blank line or comment */
        int64_t count = 0;
        while (q < lend && !why[0]) {
            if (*q == ',') {
                snprintf(why, sizeof why, "line %zu, field %lld is empty (leading or doubled comma)",
                         line_no, (long long)count + 1);
                break;
            }
            const char *tok = q;
            while (q < lend && !is_blank(*q) && *q != ',')
                q++;
            char buf[128];
            size_t tok_len = (size_t)(q - tok);
            char where[96];
            snprintf(where, sizeof where, "line %zu, field %lld", line_no, (long long)count + 1);
            if (tok_len >= sizeof buf) {
                snprintf(why, sizeof why, "%s: token of %zu characters is not a number", where,
                         tok_len);
                break;
            }
            memcpy(buf, tok, tok_len);
            buf[tok_len] = '\0';
            char *stop = NULL;
            errno = 0;
            double v = strtod(buf, &stop);
            if (stop != buf + tok_len || tok_len == 0) {
                snprintf(why, sizeof why, "%s: non-numeric token '%.60s'", where, buf);
                break;
            }
            float x;
            if (!check_value(v, &x, where, why, sizeof why)) {
                status = EPLB_ERR_INVALID_WEIGHT;
                break;
            }
            if (!value_list_push(&list, x)) {
                snprintf(why, sizeof why, "out of memory after %zu values", list.n);
                status = EPLB_ERR_OUT_OF_MEMORY;
                break;
            }
            count++;
            while (q < lend && is_blank(*q))
                q++;
            if (q < lend && *q == ',') {
                q++;
                while (q < lend && is_blank(*q))
                    q++;
                if (q == lend)
                    snprintf(why, sizeof why, "line %zu ends with a comma (empty field %lld)",
                             line_no, (long long)count + 1);
            }
        }
        if (why[0])
            break;
        if (cols < 0) {
            cols = count;
            first_line = line_no;
        } else if (count != cols) {
            snprintf(why, sizeof why,
                     "ragged rows: line %zu has %lld values but line %zu (the first layer) has %lld",
                     line_no, (long long)count, first_line, (long long)cols);
            break;
        }
        rows++;
    }
    if (!why[0] && rows == 0)
        snprintf(why, sizeof why, "no data: the file holds only blank or comment lines");
    if (why[0]) {
        free(list.v);
        return fail(error, error_len, name, status, "%s", why);
    }
    out->data = list.v;
    out->layers = rows;
    out->experts = cols;
    out->format = "text";
    return EPLB_OK;
}

/* ---- JSON through jansson ------------------------------------------------------- */

#ifdef EPLB_TOOLS_HAVE_JSON
/* Adds the 2-D array rows ([layers][experts]) into sum (double), checking shape
 * and element types; label names rows in messages. */
static eplb_status json_read_matrix(const json_t *rows, const char *label, int64_t *layers,
                                    int64_t *experts, double **sum, char *why, size_t why_len)
{
    if (!json_is_array(rows)) {
        snprintf(why, why_len, "%s is not an array", label);
        return EPLB_ERR_PARSE;
    }
    size_t L = json_array_size(rows);
    if (L == 0) {
        snprintf(why, why_len, "%s is empty (no layers)", label);
        return EPLB_ERR_PARSE;
    }
    for (size_t l = 0; l < L; l++) {
        const json_t *row = json_array_get(rows, l);
        if (!json_is_array(row)) {
            snprintf(why, why_len, "%s[%zu] is not an array of numbers (one layer per row)", label, l);
            return EPLB_ERR_PARSE;
        }
        size_t E = json_array_size(row);
        if (E == 0) {
            snprintf(why, why_len, "%s[%zu] is empty (no experts)", label, l);
            return EPLB_ERR_PARSE;
        }
        if (*layers < 0) {
            *layers = (int64_t)L;
            *experts = (int64_t)E;
            *sum = calloc(L * E, sizeof **sum);
            if (!*sum) {
                snprintf(why, why_len, "out of memory for %zu x %zu loads", L, E);
                return EPLB_ERR_OUT_OF_MEMORY;
            }
        } else if ((int64_t)L != *layers) {
            snprintf(why, why_len, "%s has %zu layers, the first window has %lld", label, L,
                     (long long)*layers);
            return EPLB_ERR_PARSE;
        }
        if ((int64_t)E != *experts) {
            snprintf(why, why_len, "ragged rows: %s[%zu] has %zu values but %s[0] has %lld", label,
                     l, E, label, (long long)*experts);
            return EPLB_ERR_PARSE;
        }
        for (size_t e = 0; e < E; e++) {
            const json_t *x = json_array_get(row, e);
            if (!json_is_number(x)) {
                snprintf(why, why_len, "%s[%zu][%zu] is not a number", label, l, e);
                return EPLB_ERR_PARSE;
            }
            double v = json_number_value(x);
            float ignored;
            char where[128];
            snprintf(where, sizeof where, "%s[%zu][%zu]", label, l, e);
            if (!check_value(v, &ignored, where, why, why_len))
                return EPLB_ERR_INVALID_WEIGHT;
            (*sum)[l * E + e] += v;
        }
    }
    return EPLB_OK;
}

static eplb_status parse_json(const char *name, const char *bytes, size_t len, eplb_weights *out,
                              char *error, size_t error_len)
{
    json_error_t jerr;
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "invalid JSON at line %d, column %d: %s",
                    jerr.line, jerr.column, jerr.text);
    const json_t *data = root;
    const char *label = "array";
    const char *format = "json-array";
    char why[512] = "";
    if (json_is_object(root)) {
        data = json_object_get(root, "logical_count");
        label = "logical_count";
        format = "sglang-json";
        if (!data)
            snprintf(why, sizeof why, "JSON object has no \"logical_count\" member (SGLang format)");
    } else if (!json_is_array(root)) {
        snprintf(why, sizeof why, "JSON top level must be an array or an object");
    }
    int64_t layers = -1, experts = -1;
    double *sum = NULL;
    eplb_status status = EPLB_ERR_PARSE;
    if (!why[0]) {
        /* SGLang may record several windows, [windows][layers][experts]: their sum is planned. */
        const json_t *first = json_is_array(data) ? json_array_get(data, 0) : NULL;
        const json_t *inner = first && json_is_array(first) ? json_array_get(first, 0) : NULL;
        if (inner && json_is_array(inner)) {
            for (size_t w = 0; w < json_array_size(data) && !why[0]; w++) {
                char window[64];
                snprintf(window, sizeof window, "%s[%zu]", label, w);
                status = json_read_matrix(json_array_get(data, w), window, &layers, &experts,
                                          &sum, why, sizeof why);
            }
        } else {
            status = json_read_matrix(data, label, &layers, &experts, &sum, why, sizeof why);
        }
    }
    json_decref(root);
    float *weight = NULL;
    if (!why[0]) {
        size_t n = (size_t)layers * (size_t)experts;
        weight = malloc(n * sizeof *weight);
        status = weight ? EPLB_ERR_INVALID_WEIGHT : EPLB_ERR_OUT_OF_MEMORY;
        if (!weight)
            snprintf(why, sizeof why, "out of memory");
        for (size_t i = 0; weight && i < n && !why[0]; i++) {
            char where[96];
            snprintf(where, sizeof where, "the summed load of layer %zu, expert %zu",
                     i / (size_t)experts, i % (size_t)experts);
            check_value(sum[i], &weight[i], where, why, sizeof why);
        }
    }
    free(sum);
    if (why[0]) {
        free(weight);
        return fail(error, error_len, name, status == EPLB_OK ? EPLB_ERR_PARSE : status, "%s", why);
    }
    out->data = weight;
    out->layers = layers;
    out->experts = experts;
    out->format = format;
    return EPLB_OK;
}
#endif

/* ---- NumPy .npy (format versions 1.0, 2.0, 3.0) ------------------------------------- */

static uint64_t read_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Finds 'key': in a header dict and returns the text after the colon. */
static const char *npy_field(const char *header, const char *key)
{
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s'", key);
    const char *at = strstr(header, quoted);
    if (!at) {
        snprintf(quoted, sizeof quoted, "\"%s\"", key);
        at = strstr(header, quoted);
    }
    if (!at)
        return NULL;
    at += strlen(quoted);
    while (isspace((unsigned char)*at))
        at++;
    if (*at != ':')
        return NULL;
    at++;
    while (isspace((unsigned char)*at))
        at++;
    return at;
}

static eplb_status parse_npy(const char *name, const unsigned char *b, size_t len,
                             eplb_weights *out, char *error, size_t error_len)
{
    if (len < 6 || memcmp(b, "\x93NUMPY", 6) != 0)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "not a NumPy .npy file (missing the \\x93NUMPY magic)");
    if (len < 10)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "truncated .npy header");
    int major = b[6], minor = b[7];
    size_t header_at, header_len;
    if (major == 1) {
        header_at = 10;
        header_len = (size_t)read_le(b + 8, 2);
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return fail(error, error_len, name, EPLB_ERR_PARSE, "truncated .npy header");
        header_at = 12;
        header_len = (size_t)read_le(b + 8, 4);
    } else {
        return fail(error, error_len, name, EPLB_ERR_PARSE, "unsupported .npy format version %d.%d",
                    major, minor);
    }
    if (header_len > len - header_at)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "truncated .npy header: it declares %zu bytes, the file holds %zu", header_len,
                    len - header_at);
    char *header = malloc(header_len + 1);
    if (!header)
        return fail(error, error_len, name, EPLB_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(header, b + header_at, header_len);
    header[header_len] = '\0';
    int has_nul = memchr(header, '\0', header_len) != NULL;
    for (size_t n = header_len; n > 0 && isspace((unsigned char)header[n - 1]); n--)
        header[n - 1] = '\0'; /* the padding, so messages quote the dict alone */

    char why[512] = "";
    char descr[16] = "";
    int fortran = 0, ndim = 0;
    long long dims[8];
    const char *d = npy_field(header, "descr");
    const char *f = npy_field(header, "fortran_order");
    const char *s = npy_field(header, "shape");
    if (!d || !f || !s || has_nul)
        snprintf(why, sizeof why, "malformed .npy header: missing 'descr', 'fortran_order' or "
                                  "'shape' (header: %.120s)", header);
    if (!why[0]) {
        char quote = *d;
        const char *close = (quote == '\'' || quote == '"') ? strchr(d + 1, quote) : NULL;
        if (!close || (size_t)(close - d - 1) >= sizeof descr)
            snprintf(why, sizeof why, "malformed .npy header: bad 'descr' value");
        else
            memcpy(descr, d + 1, (size_t)(close - d - 1));
    }
    if (!why[0]) {
        if (strncmp(f, "True", 4) == 0)
            fortran = 1;
        else if (strncmp(f, "False", 5) != 0)
            snprintf(why, sizeof why, "malformed .npy header: bad 'fortran_order' value");
    }
    if (!why[0]) {
        const char *c = s;
        if (*c++ != '(')
            snprintf(why, sizeof why, "malformed .npy header: 'shape' is not a tuple");
        while (!why[0]) {
            while (isspace((unsigned char)*c))
                c++;
            if (*c == ')')
                break;
            char *stop;
            errno = 0;
            long long v = strtoll(c, &stop, 10);
            if (stop == c || v < 0 || errno || ndim == 8) {
                snprintf(why, sizeof why, "malformed .npy header: bad 'shape' tuple");
                break;
            }
            dims[ndim++] = v;
            c = stop;
            while (isspace((unsigned char)*c))
                c++;
            if (*c == ',')
                c++;
            else if (*c != ')')
                snprintf(why, sizeof why, "malformed .npy header: bad 'shape' tuple");
        }
    }
    free(header);
    if (why[0])
        return fail(error, error_len, name, EPLB_ERR_PARSE, "%s", why);

    int is_float = 0, size = 0;
    if (strcmp(descr, "<f4") == 0) is_float = 1, size = 4;
    else if (strcmp(descr, "<f8") == 0) is_float = 1, size = 8;
    else if (strcmp(descr, "<i4") == 0) size = 4;
    else if (strcmp(descr, "<i8") == 0) size = 8;
    else
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "unsupported .npy dtype '%s': use little-endian float32 '<f4', float64 '<f8', "
                    "int32 '<i4' or int64 '<i8'", descr);
    if (fortran)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "Fortran-order .npy arrays are not supported: save np.ascontiguousarray(a)");
    if (ndim != 2)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "the array must be 2-D (layers x experts), this one is %d-D", ndim);
    if (dims[0] == 0 || dims[1] == 0)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "the array is empty (shape %lld x %lld)",
                    dims[0], dims[1]);
    size_t data_at = header_at + header_len;
    size_t avail = len - data_at;
    if ((uint64_t)dims[0] > SIZE_MAX / (uint64_t)dims[1] / (uint64_t)size)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "shape %lld x %lld is too large",
                    dims[0], dims[1]);
    size_t n = (size_t)dims[0] * (size_t)dims[1];
    if (avail < n * (size_t)size)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "truncated data: shape %lld x %lld of '%s' needs %zu bytes, the file holds %zu",
                    dims[0], dims[1], descr, n * (size_t)size, avail);
    if (avail > n * (size_t)size)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "%zu unexpected bytes after the array data", avail - n * (size_t)size);
    float *weight = malloc(n * sizeof *weight);
    if (!weight)
        return fail(error, error_len, name, EPLB_ERR_OUT_OF_MEMORY, "out of memory");
    const unsigned char *p = b + data_at;
    for (size_t i = 0; i < n; i++, p += size) {
        uint64_t raw = read_le(p, size);
        double v;
        if (is_float && size == 4) {
            uint32_t r32 = (uint32_t)raw;
            float x;
            memcpy(&x, &r32, sizeof x);
            v = x;
        } else if (is_float) {
            memcpy(&v, &raw, sizeof v);
        } else if (size == 4) {
            v = (double)(int32_t)(uint32_t)raw;
        } else {
            v = (double)(int64_t)raw;
        }
        char where[96];
        snprintf(where, sizeof where, "element [%zu][%zu]", i / (size_t)dims[1], i % (size_t)dims[1]);
        if (!check_value(v, &weight[i], where, why, sizeof why)) {
            free(weight);
            return fail(error, error_len, name, EPLB_ERR_INVALID_WEIGHT, "%s", why);
        }
    }
    out->data = weight;
    out->layers = dims[0];
    out->experts = dims[1];
    out->format = "npy";
    return EPLB_OK;
}

/* ---- detection and file reading ------------------------------------------------ */

static int has_extension(const char *name, const char *ext)
{
    const char *dot = strrchr(name, '.');
    return dot && strcasecmp(dot, ext) == 0;
}

eplb_status eplb_weights_parse(const char *name, const void *bytes, size_t len, eplb_weights *out,
                               char *error, size_t error_len)
{
    if (!name)
        name = "(input)";
    if (!out || (!bytes && len))
        return fail(error, error_len, name, EPLB_ERR_INVALID_ARGUMENT, "NULL argument");
    const char *text = bytes;
    eplb_weights result = {0};
    eplb_status st;
    if (len == 0)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "the file is empty");
    if ((len >= 6 && memcmp(text, "\x93NUMPY", 6) == 0) || has_extension(name, ".npy")) {
        st = parse_npy(name, bytes, len, &result, error, error_len);
    } else {
        size_t skip = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* UTF-8 BOM */
        size_t i = skip;
        while (i < len && isspace((unsigned char)text[i]))
            i++;
        int json = (i < len && (text[i] == '{' || text[i] == '[')) || has_extension(name, ".json");
        if (json) {
#ifdef EPLB_TOOLS_HAVE_JSON
            st = parse_json(name, text + skip, len - skip, &result, error, error_len);
#else
            return fail(error, error_len, name, EPLB_ERR_UNSUPPORTED,
                        "JSON input needs jansson, and this eplb was built without JSON support "
                        "(use CSV/whitespace text or .npy, or rebuild with libjansson-dev)");
#endif
        } else {
            st = parse_text(name, text + skip, len - skip, &result, error, error_len);
        }
    }
    if (st == EPLB_OK)
        *out = result;
    return st;
}

eplb_status eplb_weights_load(const char *path, eplb_weights *out, char *error, size_t error_len)
{
    if (!path || !out)
        return fail(error, error_len, path ? path : "(null)", EPLB_ERR_INVALID_ARGUMENT,
                    "NULL argument");
    int from_stdin = strcmp(path, "-") == 0;
    const char *name = from_stdin ? "(stdin)" : path;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return fail(error, error_len, name, EPLB_ERR_IO, "cannot open: %s", strerror(errno));
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    int err = 0;
    while (buf) {
        if (len == cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                err = errno ? errno : EIO;
            break;
        }
    }
    if (!from_stdin)
        fclose(f);
    if (!buf)
        return fail(error, error_len, name, EPLB_ERR_OUT_OF_MEMORY, "out of memory reading the file");
    if (err) {
        free(buf);
        return fail(error, error_len, name, EPLB_ERR_IO, "cannot read: %s", strerror(err));
    }
    eplb_status st = eplb_weights_parse(name, buf, len, out, error, error_len);
    free(buf);
    return st;
}
