/* Input files of expert loads: detection, parsing and validation. */
#include "load_weights.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy_header.h"
#include "text_escape.h"

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

/* Writes "name: why" into error. Names and quoted tokens come from outside,
 * so every byte that is not printable ASCII is escaped before it can reach a
 * terminal; eplb's own wording is printable and passes unchanged. */
static eplb_status fail(char *error, size_t error_len, const char *name, eplb_status status,
                        const char *fmt, ...)
{
    char why[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(why, sizeof why, fmt, args);
    va_end(args);
    if (!error || !error_len)
        return status;
    size_t used = strlen(eplb_text_escape(error, error_len, name));
    if (used + 2 < error_len) {
        memcpy(error + used, ": ", 3);
        eplb_text_escape(error + used + 2, error_len - used - 2, why);
    }
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

/* The longest token the text format reads as a number. A float64 written in
 * full needs 24 characters, so a longer token is not a load from any tool,
 * and the reader stops at one as soon as it is seen. */
#define TEXT_TOKEN_MAX 127

static int is_blank(int c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

/* 1 when tok is a plain decimal number: a sign, digits with at most one point
 * (at least one digit in all), then an exponent with digits. strtod reads
 * hexadecimal floats, infinities and NaNs as well, which no load file holds. */
static int is_decimal(const char *tok)
{
    const char *c = tok + (*tok == '+' || *tok == '-');
    size_t digits = 0;
    for (; isdigit((unsigned char)*c); c++)
        digits++;
    if (*c == '.')
        for (c++; isdigit((unsigned char)*c); c++)
            digits++;
    if (digits == 0)
        return 0;
    if (*c == 'e' || *c == 'E') {
        c++;
        c += *c == '+' || *c == '-';
        if (!isdigit((unsigned char)*c))
            return 0;
        while (isdigit((unsigned char)*c))
            c++;
    }
    return *c == '\0';
}

/* Reads one text token as a load; where names it. Returns 1 with *out set, or
 * 0 with the reason in why and *status set. Infinities and NaNs are read so
 * that check_value can name them. */
static int text_value(const char *tok, const char *where, float *out, eplb_status *status,
                      char *why, size_t why_len)
{
    *status = EPLB_ERR_PARSE;
    const char *digits = tok + (*tok == '+' || *tok == '-');
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
        snprintf(why, why_len, "%s: hexadecimal number '%.60s' is not accepted; write loads in "
                               "decimal", where, tok);
        return 0;
    }
    char *stop = NULL;
    double v = strtod(tok, &stop);
    int read_whole = *tok != '\0' && *stop == '\0' && !isspace((unsigned char)*tok);
    if (!read_whole || (isfinite(v) && !is_decimal(tok))) {
        snprintf(why, why_len, "%s: non-numeric token '%.60s'", where, tok);
        return 0;
    }
    if (!check_value(v, out, where, why, why_len)) {
        *status = EPLB_ERR_INVALID_WEIGHT;
        return 0;
    }
    return 1;
}

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
            char buf[TEXT_TOKEN_MAX + 1];
            size_t tok_len = (size_t)(q - tok);
            char where[96];
            snprintf(where, sizeof where, "line %zu, field %lld", line_no, (long long)count + 1);
            if (tok_len > TEXT_TOKEN_MAX) {
                snprintf(why, sizeof why, "%s: a token of more than %d characters is not a "
                                          "number ('%.40s...')", where, TEXT_TOKEN_MAX, tok);
                break;
            }
            memcpy(buf, tok, tok_len);
            buf[tok_len] = '\0';
            float x;
            if (!text_value(buf, where, &x, &status, why, sizeof why))
                break;
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

/* ---- NumPy .npy (format versions 1.0, 2.0, 3.0; the header in npy_header.c) ---------- */

static uint64_t read_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static eplb_status parse_npy(const char *name, const unsigned char *b, size_t len,
                             eplb_weights *out, char *error, size_t error_len)
{
    eplb_npy_layout layout;
    char why[512] = "";
    int got = eplb_npy_read_layout(b, len, &layout, why, sizeof why);
    if (got != 1)
        return fail(error, error_len, name, got == -2 ? EPLB_ERR_OUT_OF_MEMORY : EPLB_ERR_PARSE,
                    "%s", why);
    size_t avail = len - layout.data_at, need = layout.data_bytes;
    if (avail < need)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "truncated data: shape %lld x %lld of '%s' needs %zu bytes, the file holds %zu",
                    layout.rows, layout.cols, layout.descr, need, avail);
    if (avail > need)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "%zu unexpected bytes after the array data", avail - need);
    const size_t n = (size_t)layout.rows * (size_t)layout.cols, cols = (size_t)layout.cols;
    const int size = layout.item_size;
    float *weight = malloc(n * sizeof *weight);
    if (!weight)
        return fail(error, error_len, name, EPLB_ERR_OUT_OF_MEMORY, "out of memory");
    const unsigned char *p = b + layout.data_at;
    for (size_t i = 0; i < n; i++, p += size) {
        uint64_t raw = read_le(p, size);
        double v;
        if (layout.is_float && size == 4) {
            uint32_t r32 = (uint32_t)raw;
            float x;
            memcpy(&x, &r32, sizeof x);
            v = x;
        } else if (layout.is_float) {
            memcpy(&v, &raw, sizeof v);
        } else if (size == 4) {
            v = (double)(int32_t)(uint32_t)raw;
        } else {
            v = (double)(int64_t)raw;
        }
        char where[96];
        snprintf(where, sizeof where, "element [%zu][%zu]", i / cols, i % cols);
        if (!check_value(v, &weight[i], where, why, sizeof why)) {
            free(weight);
            return fail(error, error_len, name, EPLB_ERR_INVALID_WEIGHT, "%s", why);
        }
    }
    out->data = weight;
    out->layers = layout.rows;
    out->experts = layout.cols;
    out->format = "npy";
    return EPLB_OK;
}

/* ---- detection ------------------------------------------------------------------ */

enum input_kind { INPUT_UNKNOWN, INPUT_NPY, INPUT_JSON, INPUT_TEXT };

static int has_extension(const char *name, const char *ext)
{
    const char *dot = strrchr(name, '.');
    return dot && strcasecmp(dot, ext) == 0;
}

/* 1 when the len bytes at b could still grow into the prefix text. */
static int starts_like(const unsigned char *b, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return memcmp(b, prefix, len < n ? len : n) == 0;
}

/* The format of an input: the NumPy magic, then a leading '{' or '[', then the
 * .npy or .json extension, else text. *text_at is where text or JSON begins
 * (after a UTF-8 byte-order mark). While the input is incomplete, returns
 * INPUT_UNKNOWN until the bytes held decide; *blank_to (0 at first) keeps how
 * far the leading white space was looked at, so that a stream of white space
 * is looked at once, not again with every chunk. */
static enum input_kind detect_kind(const char *name, const unsigned char *b, size_t len,
                                   int complete, size_t *text_at, size_t *blank_to)
{
    static const char magic[] = "\x93NUMPY", bom[] = "\xEF\xBB\xBF";
    *text_at = 0;
    if ((len >= 6 && memcmp(b, magic, 6) == 0) || has_extension(name, ".npy"))
        return INPUT_NPY;
    if (!complete && len < 6 && starts_like(b, len, magic))
        return INPUT_UNKNOWN;
    if (!complete && len < 3 && starts_like(b, len, bom))
        return INPUT_UNKNOWN;
    size_t skip = len >= 3 && memcmp(b, bom, 3) == 0 ? 3 : 0;
    size_t i = *blank_to > skip ? *blank_to : skip;
    while (i < len && isspace(b[i]))
        i++;
    *blank_to = i;
    *text_at = skip;
    if ((i < len && (b[i] == '{' || b[i] == '[')) || has_extension(name, ".json"))
        return INPUT_JSON;
    return i < len || complete ? INPUT_TEXT : INPUT_UNKNOWN;
}

/* What to say of an archive or pickle, which no load file is: PyTorch's
 * torch.save writes a zip (or, before PyTorch 1.6, a pickle that starts with
 * its magic number), as SGLang's expert-distribution recorder does; NumPy's
 * .npz is a zip too. NULL for anything else. */
static const char *archive_hint(const char *name, const unsigned char *b, size_t len)
{
    static const char zip[] = "PK\x03\x04";
    static const char torch_legacy[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
    const int is_zip = len >= 4 && memcmp(b, zip, 4) == 0;
    if (is_zip && has_extension(name, ".npz"))
        return "a NumPy .npz archive, which this tool does not read: save the array with "
               "numpy.save as a .npy file";
    if (is_zip || (len >= sizeof torch_legacy - 1 &&
                   memcmp(b, torch_legacy, sizeof torch_legacy - 1) == 0))
        return "a PyTorch file (torch.save), such as SGLang's expert-distribution dump, which "
               "this tool does not read: the Python package reads it with torch, with the same "
               "options: python -m eplb plan --input FILE ...";
    return NULL;
}

eplb_status eplb_weights_parse(const char *name, const void *bytes, size_t len, eplb_weights *out,
                               char *error, size_t error_len)
{
    if (!name)
        name = "(input)";
    if (!out || (!bytes && len))
        return fail(error, error_len, name, EPLB_ERR_INVALID_ARGUMENT, "NULL argument");
    const unsigned char *b = bytes;
    eplb_weights result = {0};
    eplb_status st;
    if (len == 0)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "the file is empty");
    const char *archive = archive_hint(name, b, len);
    if (archive)
        return fail(error, error_len, name, EPLB_ERR_PARSE, "%s", archive);
    size_t skip = 0, blank_to = 0;
    enum input_kind kind = detect_kind(name, b, len, 1, &skip, &blank_to);
    const unsigned char *nul = kind == INPUT_NPY ? NULL : memchr(b, '\0', len);
    if (nul)
        return fail(error, error_len, name, EPLB_ERR_PARSE,
                    "NUL byte at offset %zu: a text or JSON load file holds none (a binary file? "
                    ".npy files start with \\x93NUMPY)", (size_t)(nul - b));
    if (kind == INPUT_NPY) {
        st = parse_npy(name, b, len, &result, error, error_len);
    } else if (kind == INPUT_JSON) {
#ifdef EPLB_TOOLS_HAVE_JSON
        st = parse_json(name, (const char *)b + skip, len - skip, &result, error, error_len);
#else
        return fail(error, error_len, name, EPLB_ERR_UNSUPPORTED,
                    "JSON input needs jansson, and this eplb was built without JSON support "
                    "(use CSV/whitespace text or .npy, or rebuild with libjansson-dev)");
#endif
    } else {
        st = parse_text(name, (const char *)b + skip, len - skip, &result, error, error_len);
    }
    if (st == EPLB_OK)
        *out = result;
    return st;
}

/* ---- reading: bounded, and stopped as soon as the input cannot be a load file ---- */

/* The default of EPLB_MAX_INPUT_BYTES: room for the largest matrix the library
 * plans (EPLB_MAX_SLOTS loads) as text of 16 bytes a load or as a float64
 * .npy, while an endless input stops at a size any machine can hold. */
#define DEFAULT_INPUT_LIMIT ((size_t)512 << 20)
#define INPUT_LIMIT_VARIABLE "EPLB_MAX_INPUT_BYTES"

/* Reads EPLB_MAX_INPUT_BYTES: a byte count with an optional K, M, G or T
 * suffix (powers of 1024); unset or empty means the default. */
static int input_limit(size_t *limit, char *why, size_t why_len)
{
    const char *text = getenv(INPUT_LIMIT_VARIABLE);
    *limit = DEFAULT_INPUT_LIMIT;
    if (!text || !*text)
        return 1;
    char *stop = NULL;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)text[0]) ? strtoull(text, &stop, 10) : 0;
    int shift = 0;
    if (stop && *stop) {
        const char *units = "KMGT", *unit = strchr(units, toupper((unsigned char)*stop));
        shift = unit && stop[1] == '\0' ? 10 * (int)(unit - units + 1) : -1;
    }
    if (!stop || errno || shift < 0 || v == 0 || v > (SIZE_MAX / 2) >> shift) {
        snprintf(why, why_len, "%s='%.40s' is not a byte count: write a positive number with an "
                               "optional K, M, G or T suffix, e.g. %s=2G", INPUT_LIMIT_VARIABLE,
                 text, INPUT_LIMIT_VARIABLE);
        return 0;
    }
    *limit = (size_t)v << shift;
    return 1;
}

static void limit_message(char *why, size_t why_len, const char *what, size_t limit)
{
    snprintf(why, why_len, "%s the limit of %zu bytes for a load file; set %s (default 512M) "
                           "to raise it", what, limit, INPUT_LIMIT_VARIABLE);
}

/* 0 with the reason in why when no plan can take rows x cols loads: the
 * smallest shape for them (replicas = experts, one group, node and GPU) breaks
 * a limit of the library. */
static int plannable(int64_t rows, int64_t cols, char *why, size_t why_len)
{
    const eplb_shape smallest = {.layers = rows, .experts = cols, .replicas = cols,
                                 .groups = 1, .nodes = 1, .gpus = 1};
    const char *broken = NULL;
    if (eplb_shape_check(&smallest, &broken) == EPLB_OK)
        return 1;
    snprintf(why, why_len, "%lld layers x %lld experts (so far) is more than eplb plans: %s",
             (long long)rows, (long long)cols, broken ? broken : "invalid shape");
    return 0;
}

/* What the reader knows of the input so far: enough to stop reading as soon as
 * the bytes held can no longer become a load file. */
typedef struct input_scan {
    enum input_kind kind;
    size_t scanned;   /* bytes looked at so far */
    int line_start;   /* text: the line holds only blanks so far */
    int comment;      /* text: inside a comment line */
    size_t token_run; /* text: length of the token being read */
    int64_t rows;     /* text: lines with values so far, the current one included */
    int64_t values;   /* text: values on the current line so far */
    int64_t cols;     /* text: values on the first line with values, once it ended */
    size_t npy_end;   /* .npy: the length the header declares, 0 until known */
    size_t blank_to;  /* while the format is unknown: leading white space seen */
} input_scan;

enum scan_verdict {
    SCAN_MORE,   /* keep reading */
    SCAN_STOP,   /* stop: the parser refuses the bytes held, with its own message */
    SCAN_REFUSE, /* stop: why says what is wrong */
};

/* Looks at the bytes that arrived since the last call. stream: the input's
 * length was not known beforehand (a pipe or a device). */
static enum scan_verdict scan_input(input_scan *s, const char *name, const unsigned char *b,
                                    size_t len, int stream, size_t limit, char *why,
                                    size_t why_len)
{
    if (len > limit) {
        limit_message(why, why_len, "the input is larger than", limit);
        return SCAN_REFUSE;
    }
    if (s->kind == INPUT_UNKNOWN) {
        s->kind = detect_kind(name, b, len, 0, &s->scanned, &s->blank_to);
        s->line_start = 1;
        if (s->kind == INPUT_UNKNOWN)
            return SCAN_MORE;
    }
    if (s->kind == INPUT_NPY) {
        if (s->npy_end == 0) {
            eplb_npy_layout layout;
            int got = eplb_npy_read_layout(b, len, &layout, why, why_len);
            /* Out of memory for the header text (-2) is no verdict on the
             * input: the parser tries again once reading ends. */
            if (got != 1)
                return got == 0 ? SCAN_STOP : SCAN_MORE;
            if (layout.data_bytes > limit - layout.data_at) {
                char what[160];
                snprintf(what, sizeof what, "shape %lld x %lld of '%s' needs %zu bytes, beyond",
                         layout.rows, layout.cols, layout.descr, layout.data_bytes);
                limit_message(why, why_len, what, limit);
                return SCAN_REFUSE;
            }
            if (!plannable(layout.rows, layout.cols, why, why_len))
                return SCAN_REFUSE;
            s->npy_end = layout.data_at + layout.data_bytes;
        }
        if (stream && len > s->npy_end) {
            snprintf(why, why_len, "unexpected bytes after the array data: the header declares "
                                   "%zu bytes in all, the input holds more", s->npy_end);
            return SCAN_REFUSE;
        }
        return SCAN_MORE;
    }
    if (memchr(b + s->scanned, '\0', len - s->scanned))
        return SCAN_STOP;
    for (size_t i = s->scanned; s->kind == INPUT_TEXT && i < len; i++) {
        unsigned char c = b[i];
        if (c == '\n') {
            if (s->values && s->cols < 0)
                s->cols = s->values;
            s->line_start = 1;
            s->comment = 0;
            s->token_run = 0;
            s->values = 0;
        } else if (s->comment) {
            continue;
        } else if (is_blank(c) || c == ',' || c == '\r') {
            /* The parser drops a '\r' that ends a line and refuses any other,
             * so taking each for a separator counts the values it counts. */
            s->token_run = 0;
        } else if (s->line_start && c == '#') {
            s->comment = 1;
        } else {
            s->line_start = 0;
            if (s->token_run == 0) {
                /* A new value: a longer line than the first is ragged, and a
                 * shape no plan can take is refused before reading more. */
                s->rows += s->values == 0;
                s->values++;
                if (s->cols >= 0 && s->values > s->cols)
                    return SCAN_STOP;
                if ((s->values == 1 || s->cols < 0) &&
                    !plannable(s->rows, s->cols < 0 ? s->values : s->cols, why, why_len))
                    return SCAN_REFUSE;
            }
            if (++s->token_run > TEXT_TOKEN_MAX)
                return SCAN_STOP;
        }
    }
    s->scanned = len;
    return SCAN_MORE;
}

eplb_status eplb_weights_load(const char *path, eplb_weights *out, char *error, size_t error_len)
{
    if (!path || !out)
        return fail(error, error_len, path ? path : "(null)", EPLB_ERR_INVALID_ARGUMENT,
                    "NULL argument");
    int from_stdin = strcmp(path, "-") == 0;
    const char *name = from_stdin ? "(stdin)" : path;
    char why[768] = "";
    size_t limit;
    if (!input_limit(&limit, why, sizeof why))
        return fail(error, error_len, name, EPLB_ERR_INVALID_ARGUMENT, "%s", why);
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(error, error_len, name, EPLB_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat info;
    int regular = fstat(fd, &info) == 0 && S_ISREG(info.st_mode);
    enum scan_verdict verdict = SCAN_MORE;
    if (regular && (uint64_t)info.st_size > limit) {
        char what[96];
        snprintf(what, sizeof what, "the file holds %lld bytes, beyond", (long long)info.st_size);
        limit_message(why, sizeof why, what, limit);
        verdict = SCAN_REFUSE;
    }
    /* A regular file is read into one buffer of its size; anything else grows
     * its buffer as bytes arrive, never beyond one byte over the limit. */
    size_t len = 0, cap = regular && verdict == SCAN_MORE ? (size_t)info.st_size + 1 : 1 << 16;
    if (cap > limit + 1)
        cap = limit + 1;
    unsigned char *buf = verdict == SCAN_MORE ? malloc(cap) : NULL;
    input_scan scan = {.cols = -1};
    int err = 0;
    /* Tests only: EPLB_TEST_READ_CHUNK=N reads at most N bytes at a time, so
     * that every way a stream can arrive in pieces is looked at in turn. */
    const char *chunk_text = getenv("EPLB_TEST_READ_CHUNK");
    size_t chunk = chunk_text && atoi(chunk_text) > 0 ? (size_t)atoi(chunk_text) : SIZE_MAX;
    while (buf && verdict == SCAN_MORE) {
        if (len == cap) {
            size_t grown_cap = cap > (limit + 1) / 2 ? limit + 1 : cap * 2;
            unsigned char *grown = realloc(buf, grown_cap);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap = grown_cap;
        }
        ssize_t got = read(fd, buf + len, cap - len < chunk ? cap - len : chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            err = got < 0 ? errno : 0;
            break;
        }
        len += (size_t)got;
        verdict = scan_input(&scan, name, buf, len, !regular, limit, why, sizeof why);
    }
    if (!from_stdin)
        close(fd);
    eplb_weights result = {0};
    eplb_status st;
    if (verdict == SCAN_REFUSE)
        st = fail(error, error_len, name, EPLB_ERR_PARSE, "%s", why);
    else if (!buf)
        st = fail(error, error_len, name, EPLB_ERR_OUT_OF_MEMORY,
                  "out of memory reading the input after %zu bytes (below the limit of %zu bytes "
                  "for an input)", len, limit);
    else if (err)
        st = fail(error, error_len, name, EPLB_ERR_IO, "cannot read: %s", strerror(err));
    else
        st = eplb_weights_parse(name, buf, len, &result, error, error_len);
    if (st == EPLB_OK && verdict == SCAN_STOP) {
        /* The reader stopped on bytes the parser accepts: a bug, never a plan
         * from part of the input. */
        eplb_weights_free(&result);
        st = fail(error, error_len, name, EPLB_ERR_INTERNAL,
                  "stopped reading after %zu bytes, yet they parse: please report", len);
    }
    if (st == EPLB_OK)
        *out = result;
    free(buf);
    return st;
}
