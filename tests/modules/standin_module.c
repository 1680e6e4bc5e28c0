/* A stand-in backend module for the registry's suites (test_modules,
 * test_threads). Linked into a temporary EPLB_MODULE_DIR as
 * libeplb_opencl.so or libeplb_cuda.so, it never opens a device: its create
 * always fails, in the way EPLB_TEST_STANDIN asks for.
 *
 *   overfill   fills the whole error buffer and leaves no terminating NUL, as
 *              a careless module might; the registry must bound its copy.
 *   racecheck  sleeps inside create and notes whether another create of this
 *              module ran meanwhile; the registry must serialise them.
 *   (other)    fails with a plain message.
 *
 * EPLB_TEST_STANDIN_MARK names a file that gets one line each time the
 * module is loaded, so a suite can tell whether the registry opened it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

__attribute__((constructor)) static void note_load(void)
{
    const char *mark = getenv("EPLB_TEST_STANDIN_MARK");
    if (!mark || !*mark)
        return;
    int fd = open(mark, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ssize_t ignored = write(fd, "loaded\n", 7);
        (void)ignored;
        close(fd);
    }
}

static atomic_int creates_inside;
static atomic_int overlaps_seen;

static eplb_status standin_create(eplb_backend **out, char *error, size_t error_len)
{
    *out = NULL;
    const char *mode = getenv("EPLB_TEST_STANDIN");
    mode = mode ? mode : "";
    if (strcmp(mode, "overfill") == 0) {
        memset(error, 'x', error_len);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (strcmp(mode, "racecheck") == 0) {
        if (atomic_fetch_add(&creates_inside, 1) != 0)
            atomic_fetch_add(&overlaps_seen, 1);
        /* Long enough that callers released together meet here unless serialised. */
        const struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
        if (atomic_fetch_sub(&creates_inside, 1) != 1)
            atomic_fetch_add(&overlaps_seen, 1);
        snprintf(error, error_len, "stand-in create: %s",
                 atomic_load(&overlaps_seen) ? "another create ran at the same time"
                                             : "every create ran alone");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    snprintf(error, error_len, "stand-in module: no device by design");
    return EPLB_ERR_BACKEND_UNAVAILABLE;
}

static const eplb_backend_module standin_module = {
    /* .api_version = */ EPLB_BACKEND_API_VERSION,
    /* .name        = */ "standin",
    /* .create      = */ standin_create,
};

__attribute__((visibility("default"))) const eplb_backend_module *eplb_backend_module_get(void)
{
    return &standin_module;
}
