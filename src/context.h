/* The context behind the opaque eplb_context handle. */
#ifndef EPLB_CONTEXT_H
#define EPLB_CONTEXT_H

#include "backend.h"
#include "planner.h"

#define EPLB_CONTEXT_ERROR_LEN 1024

struct eplb_context {
    eplb_backend *backend;
    const char *backend_name;           /* static string from the registry */
    eplb_workspace workspace;           /* buffers reused from call to call */
    char error[EPLB_CONTEXT_ERROR_LEN]; /* last failure on this context */
};

/* Writes ctx->error and returns status (context.c). */
eplb_status eplb_context_fail(eplb_context *ctx, eplb_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Reports a failed backend call on the context with the backend's own
 * message (eplb_backend_error wrote it), and returns status. */
eplb_status eplb_context_backend_fail(eplb_context *ctx, eplb_status status);

/* Writes the calling thread's last error (eplb_last_error), for failures that
 * have no context to hold them, and returns status (context.c). */
eplb_status eplb_thread_fail(eplb_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif /* EPLB_CONTEXT_H */
