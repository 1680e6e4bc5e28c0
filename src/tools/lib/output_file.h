/* Output files replaced in one step: written to a temporary file in the same
 * directory and renamed over the target only when every byte is on disk. */
#ifndef EPLB_TOOLS_OUTPUT_FILE_H
#define EPLB_TOOLS_OUTPUT_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "eplb/eplb.h"

typedef struct eplb_output_file {
    FILE *stream;        /* where to write; NULL once closed */
    const char *name;    /* as given, for messages */
    char *target;        /* the file that the rename replaces (links followed) */
    char *temporary;     /* the temporary file; NULL when written in place */
    int is_stdout;       /* "-": standard output, never closed */
} eplb_output_file;

/* Opens path for writing ("-": standard output). A regular file, or one that
 * does not exist yet, is written through a temporary file with a short name
 * beside its target: the target is the end of the chain of symbolic links
 * path starts (the links stay as they are), and it keeps an existing file's
 * mode (and, where the process may set them, its owner and group). A device
 * or a FIFO is written in place. On failure writes the reason into error and
 * returns EPLB_ERR_IO or EPLB_ERR_OUT_OF_MEMORY; out then holds nothing. */
eplb_status eplb_output_open(eplb_output_file *out, const char *path, char *error,
                             size_t error_len);

/* Flushes, syncs and closes the stream; the temporary file stays unrenamed.
 * On failure writes the reason into error and returns EPLB_ERR_IO. */
eplb_status eplb_output_close(eplb_output_file *out, char *error, size_t error_len);

/* Renames the closed temporary file over the target (nothing to do in place). */
eplb_status eplb_output_commit(eplb_output_file *out, char *error, size_t error_len);

/* Closes the stream if open, removes the temporary file if any and frees
 * out's memory. Safe after commit, and on an output that failed to open. */
void eplb_output_discard(eplb_output_file *out);

#endif
