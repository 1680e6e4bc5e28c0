/* The header of a NumPy .npy file (format versions 1.0, 2.0 and 3.0): what the
 * array is and where its data lies. Shared by the .npy parser and the input
 * reader, which learns from the header how long the input may be. */
#ifndef EPLB_TOOLS_NPY_HEADER_H
#define EPLB_TOOLS_NPY_HEADER_H

#include <stddef.h>

typedef struct eplb_npy_layout {
    char descr[16];    /* the dtype as written, e.g. "<f4" */
    int is_float;      /* 1 for '<f4' and '<f8', 0 for '<i4' and '<i8' */
    int item_size;     /* bytes per element: 4 or 8 */
    long long rows;    /* layers */
    long long cols;    /* experts */
    size_t data_at;    /* offset of the first element */
    size_t data_bytes; /* rows * cols * item_size, known to fit in size_t */
} eplb_npy_layout;

/* Reads the magic, version and header dict from the first len bytes of b.
 * Returns 1 with *layout filled for a 2-D C-order array of a supported dtype;
 * 0 when the header is wrong whatever follows; -1 when the bytes end before the
 * header does; -2 when memory for the header text runs out. Otherwise why holds
 * the reason (for -1: "truncated .npy header..."). Nothing past the header is
 * read. */
int eplb_npy_read_layout(const unsigned char *b, size_t len, eplb_npy_layout *layout, char *why,
                         size_t why_len);

#endif
