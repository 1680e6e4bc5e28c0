/* Output files replaced in one step (see output_file.h). */
#define _GNU_SOURCE
#include "output_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text_escape.h"

/* The kernel's own limit on symbolic links followed in one path. */
enum { MAX_LINK_HOPS = 40 };

/* The temporary file's name inside the target's directory: short, so that a
 * target whose name is already as long as the file system allows still has
 * room beside it, and hidden, so that a listing does not show it. */
static const char temporary_name[] = ".eplb-XXXXXX";

static eplb_status fail(char *error, size_t error_len, const char *name, const char *what,
                        int err)
{
    char shown[1024];
    eplb_text_escape(shown, sizeof shown, name);
    snprintf(error, error_len, "cannot write %s: %s%s%s", shown, what, err ? ": " : "",
             err ? strerror(err) : "");
    return err == ENOMEM ? EPLB_ERR_OUT_OF_MEMORY : EPLB_ERR_IO;
}

/* The directory part of path, with its final '/'; "" when path has none. */
static char *directory_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return strndup(path, slash ? (size_t)(slash - path + 1) : 0);
}

/* The text of the symbolic link at path (size: its lstat size, 0 if unknown). */
static char *read_link(const char *path, size_t size, int *err)
{
    size_t cap = size ? size + 1 : 256;
    for (;;) {
        char *text = malloc(cap);
        if (!text) {
            *err = ENOMEM;
            return NULL;
        }
        ssize_t n = readlink(path, text, cap);
        if (n < 0) {
            *err = errno;
            free(text);
            return NULL;
        }
        if ((size_t)n < cap) {
            text[n] = '\0';
            return text;
        }
        free(text); /* the link grew, or its size was unknown: try a larger buffer */
        cap *= 2;
    }
}

/* The file that writing to path creates or replaces: path itself, or the end
 * of the chain of symbolic links that path starts, which need not exist yet.
 * Returns 0 or an errno value. */
static int follow_links(const char *path, char **target)
{
    char *current = strdup(path);
    if (!current)
        return ENOMEM;
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(current, &st) != 0 || !S_ISLNK(st.st_mode)) {
            *target = current;
            return 0;
        }
        int err = ELOOP;
        char *text = hops < MAX_LINK_HOPS ? read_link(current, (size_t)st.st_size, &err) : NULL;
        char *next = NULL;
        if (text && text[0] == '/') {
            next = text;
            text = NULL;
        } else if (text) { /* relative to the directory that holds the link */
            char *dir = directory_of(current);
            if (dir && asprintf(&next, "%s%s", dir, text) < 0)
                next = NULL;
            free(dir);
            err = next ? 0 : ENOMEM;
        }
        free(text);
        free(current);
        if (!next)
            return err;
        current = next;
    }
}

eplb_status eplb_output_open(eplb_output_file *out, const char *path, char *error,
                             size_t error_len)
{
    memset(out, 0, sizeof *out);
    out->name = path;
    if (strcmp(path, "-") == 0) {
        out->stream = stdout;
        out->is_stdout = 1;
        return EPLB_OK;
    }
    int err = follow_links(path, &out->target);
    if (err)
        return fail(error, error_len, path,
                    err == ENOMEM ? "out of memory" : "cannot follow its symbolic links", err);
    struct stat st;
    const int exists = stat(out->target, &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) {
        /* A device or a FIFO (/dev/stdout, a pipe): renaming over it would
         * replace it, so it is written in place. */
        out->stream = fopen(out->target, "w");
        err = errno;
        if (!out->stream) {
            eplb_output_discard(out);
            return fail(error, error_len, path, "cannot open", err);
        }
        return EPLB_OK;
    }

    char *dir = directory_of(out->target);
    if (!dir || asprintf(&out->temporary, "%s%s", dir, temporary_name) < 0) {
        out->temporary = NULL;
        free(dir);
        eplb_output_discard(out);
        return fail(error, error_len, path, "out of memory", ENOMEM);
    }
    int fd = mkostemp(out->temporary, O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        free(out->temporary);
        out->temporary = NULL; /* the template names no file: nothing to remove */
        char what[PATH_MAX + 64], shown[PATH_MAX];
        eplb_text_escape(shown, sizeof shown, dir[0] ? dir : "./");
        snprintf(what, sizeof what, "cannot create a temporary file in %s", shown);
        free(dir);
        eplb_output_discard(out);
        return fail(error, error_len, path, what, err);
    }
    free(dir);
    /* mkstemp makes the file 0600. A replaced file keeps its mode, owner and
     * group (the owner only where the process may give it away); a new
     * plan is an ordinary file, 0666 less the umask. The owner is set first:
     * changing it may clear set-id bits of the mode. */
    mode_t mode;
    if (exists) {
        if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
            fchown(fd, st.st_uid, st.st_gid) != 0 && fchown(fd, (uid_t)-1, st.st_gid) != 0) {
            /* Not allowed: the new file is the caller's, as any editor leaves it. */
        }
        mode = st.st_mode & 07777;
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    if (fchmod(fd, mode) != 0 || !(out->stream = fdopen(fd, "w"))) {
        err = errno;
        close(fd);
        eplb_output_discard(out);
        return fail(error, error_len, path, "cannot prepare the temporary file", err);
    }
    return EPLB_OK;
}

eplb_status eplb_output_close(eplb_output_file *out, char *error, size_t error_len)
{
    if (!out->stream)
        return EPLB_OK;
    errno = 0;
    int bad = fflush(out->stream) != 0 || ferror(out->stream);
    int err = errno;
    /* Only a file that is about to replace another must be on disk first. */
    if (!bad && out->temporary && fsync(fileno(out->stream)) != 0)
        bad = 1, err = errno;
    if (!out->is_stdout && fclose(out->stream) != 0 && !bad)
        bad = 1, err = errno;
    out->stream = NULL;
    if (bad)
        return fail(error, error_len, out->is_stdout ? "standard output" : out->name,
                    "write failed", err ? err : EIO);
    return EPLB_OK;
}

eplb_status eplb_output_commit(eplb_output_file *out, char *error, size_t error_len)
{
    if (!out->temporary)
        return EPLB_OK;
    if (rename(out->temporary, out->target) != 0)
        return fail(error, error_len, out->name, "cannot rename the temporary file over it",
                    errno);
    free(out->temporary);
    out->temporary = NULL;
    return EPLB_OK;
}

void eplb_output_discard(eplb_output_file *out)
{
    if (out->stream && !out->is_stdout)
        fclose(out->stream);
    out->stream = NULL;
    if (out->temporary)
        unlink(out->temporary);
    free(out->temporary);
    free(out->target);
    out->temporary = out->target = NULL;
}
