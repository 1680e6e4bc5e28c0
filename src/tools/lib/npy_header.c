/* The .npy header: magic, version, and the dict of 'descr', 'fortran_order'
 * and 'shape', parsed as the Python literal it is. */
#include "npy_header.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DIMS = 8 };

static uint64_t read_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static const char *skip_space(const char *c)
{
    while (isspace((unsigned char)*c))
        c++;
    return c;
}

/* Reads a quoted Python string at c into out (without quotes). Returns the text
 * after the closing quote, or NULL when c holds no string that fits. Header
 * keys and dtype names hold no escapes, so none are decoded. */
static const char *read_string(const char *c, char *out, size_t out_len)
{
    char quote = *c;
    if (quote != '\'' && quote != '"')
        return NULL;
    const char *close = strchr(c + 1, quote);
    if (!close || (size_t)(close - c - 1) >= out_len)
        return NULL;
    memcpy(out, c + 1, (size_t)(close - c - 1));
    out[close - c - 1] = '\0';
    return close + 1;
}

/* Reads a tuple of non-negative integers such as "(3, 8)" or "(5,)". */
static const char *read_shape(const char *c, long long *dims, int *ndim)
{
    if (*c++ != '(')
        return NULL;
    *ndim = 0;
    for (;;) {
        c = skip_space(c);
        if (*c == ')')
            return c + 1;
        char *stop;
        errno = 0;
        long long v = strtoll(c, &stop, 10);
        if (stop == c || !isdigit((unsigned char)*c) || errno || *ndim == MAX_DIMS)
            return NULL;
        dims[(*ndim)++] = v;
        c = skip_space(stop);
        if (*c == ',')
            c++;
        else if (*c != ')')
            return NULL;
    }
}

/* Parses the header dict. Each of the three keys must appear exactly once, as
 * numpy writes them and as numpy's own reader requires. */
static int parse_dict(const char *header, char *descr, size_t descr_len, int *fortran,
                      long long *dims, int *ndim, char *why, size_t why_len)
{
    enum { DESCR = 1, FORTRAN = 2, SHAPE = 4 };
    int seen = 0;
    const char *c = skip_space(header);
    if (*c++ != '{') {
        snprintf(why, why_len, "malformed .npy header: it is not a dict (header: %.120s)", header);
        return 0;
    }
    for (;;) {
        c = skip_space(c);
        if (*c == '}')
            break;
        char key[32];
        c = read_string(c, key, sizeof key);
        if (!c) {
            snprintf(why, why_len, "malformed .npy header: a key is not a quoted name "
                                   "(header: %.120s)", header);
            return 0;
        }
        int which = strcmp(key, "descr") == 0           ? DESCR
                    : strcmp(key, "fortran_order") == 0 ? FORTRAN
                    : strcmp(key, "shape") == 0         ? SHAPE
                                                        : 0;
        if (!which) {
            snprintf(why, why_len, "malformed .npy header: unexpected key '%s' (a .npy header "
                                   "holds 'descr', 'fortran_order' and 'shape')", key);
            return 0;
        }
        if (seen & which) {
            snprintf(why, why_len, "malformed .npy header: '%s' appears twice", key);
            return 0;
        }
        seen |= which;
        c = skip_space(c);
        if (*c++ != ':') {
            snprintf(why, why_len, "malformed .npy header: no ':' after '%s'", key);
            return 0;
        }
        c = skip_space(c);
        if (which == DESCR) {
            c = read_string(c, descr, descr_len);
        } else if (which == FORTRAN) {
            *fortran = strncmp(c, "True", 4) == 0;
            c = *fortran || strncmp(c, "False", 5) == 0 ? c + (*fortran ? 4 : 5) : NULL;
        } else {
            c = read_shape(c, dims, ndim);
        }
        if (!c) {
            snprintf(why, why_len, "malformed .npy header: bad '%s' value", key);
            return 0;
        }
        c = skip_space(c);
        if (*c == ',')
            c++;
        else if (*c != '}') {
            snprintf(why, why_len, "malformed .npy header: ',' or '}' expected after '%s'", key);
            return 0;
        }
    }
    if (*skip_space(c + 1)) {
        snprintf(why, why_len, "malformed .npy header: text after the dict (header: %.120s)",
                 header);
        return 0;
    }
    if (seen != (DESCR | FORTRAN | SHAPE)) {
        snprintf(why, why_len, "malformed .npy header: missing 'descr', 'fortran_order' or "
                               "'shape' (header: %.120s)", header);
        return 0;
    }
    return 1;
}

/* Checks what the dict describes against what eplb reads: a 2-D C-order array
 * of little-endian float32, float64, int32 or int64. */
static int check_array(const char *descr, int fortran, const long long *dims, int ndim,
                       eplb_npy_layout *layout, char *why, size_t why_len)
{
    int is_float = 0, size = 0;
    if (strcmp(descr, "<f4") == 0) is_float = 1, size = 4;
    else if (strcmp(descr, "<f8") == 0) is_float = 1, size = 8;
    else if (strcmp(descr, "<i4") == 0) size = 4;
    else if (strcmp(descr, "<i8") == 0) size = 8;
    else {
        snprintf(why, why_len, "unsupported .npy dtype '%s': use little-endian float32 '<f4', "
                               "float64 '<f8', int32 '<i4' or int64 '<i8'", descr);
        return 0;
    }
    if (fortran) {
        snprintf(why, why_len,
                 "Fortran-order .npy arrays are not supported: save np.ascontiguousarray(a)");
        return 0;
    }
    if (ndim != 2) {
        snprintf(why, why_len, "the array must be 2-D (layers x experts), this one is %d-D", ndim);
        return 0;
    }
    if (dims[0] == 0 || dims[1] == 0) {
        snprintf(why, why_len, "the array is empty (shape %lld x %lld)", dims[0], dims[1]);
        return 0;
    }
    if ((uint64_t)dims[0] > SIZE_MAX / (uint64_t)dims[1] / (uint64_t)size) {
        snprintf(why, why_len, "shape %lld x %lld is too large", dims[0], dims[1]);
        return 0;
    }
    memcpy(layout->descr, descr, sizeof layout->descr);
    layout->is_float = is_float;
    layout->item_size = size;
    layout->rows = dims[0];
    layout->cols = dims[1];
    layout->data_bytes = (size_t)dims[0] * (size_t)dims[1] * (size_t)size;
    return 1;
}

int eplb_npy_read_layout(const unsigned char *b, size_t len, eplb_npy_layout *layout, char *why,
                         size_t why_len)
{
    if (len < 6 && memcmp(b, "\x93NUMPY", len) == 0) {
        snprintf(why, why_len, "truncated .npy header");
        return -1;
    }
    if (len < 6 || memcmp(b, "\x93NUMPY", 6) != 0) {
        snprintf(why, why_len, "not a NumPy .npy file (missing the \\x93NUMPY magic)");
        return 0;
    }
    if (len < 8) {
        snprintf(why, why_len, "truncated .npy header");
        return -1;
    }
    int major = b[6], minor = b[7];
    size_t header_at = major == 1 ? 10 : 12;
    if (major < 1 || major > 3) {
        snprintf(why, why_len, "unsupported .npy format version %d.%d", major, minor);
        return 0;
    }
    if (len < header_at) {
        snprintf(why, why_len, "truncated .npy header");
        return -1;
    }
    size_t header_len = (size_t)read_le(b + 8, major == 1 ? 2 : 4);
    if (header_len > len - header_at) {
        snprintf(why, why_len, "truncated .npy header: it declares %zu bytes, the file holds %zu",
                 header_len, len - header_at);
        return -1;
    }
    char *header = malloc(header_len + 1);
    if (!header) {
        snprintf(why, why_len, "out of memory for the .npy header");
        return -2;
    }
    memcpy(header, b + header_at, header_len);
    header[header_len] = '\0';
    int has_nul = memchr(header, '\0', header_len) != NULL;
    for (size_t n = header_len; n > 0 && isspace((unsigned char)header[n - 1]); n--)
        header[n - 1] = '\0'; /* the padding, so messages quote the dict alone */
    char descr[16] = "";
    int fortran = 0, ndim = 0;
    long long dims[MAX_DIMS];
    int ok;
    if (has_nul) {
        snprintf(why, why_len, "malformed .npy header: it holds a NUL byte (header: %.120s)",
                 header);
        ok = 0;
    } else {
        ok = parse_dict(header, descr, sizeof descr, &fortran, dims, &ndim, why, why_len) &&
             check_array(descr, fortran, dims, ndim, layout, why, why_len);
    }
    free(header);
    if (ok)
        layout->data_at = header_at + header_len;
    return ok;
}
