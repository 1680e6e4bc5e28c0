/* The error messages: a context's, written by whichever layer fails (the
 * planner, the public API) and read back through eplb_context_last_error, and
 * the calling thread's, for failures with no context (eplb_context_create,
 * eplb_evaluate), read back through eplb_last_error. It depends on nothing
 * else in the library, so every layer may report through it. */
#include "context.h"

#include <stdarg.h>
#include <stdio.h>

eplb_status eplb_context_fail(eplb_context *ctx, eplb_status status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, args);
    va_end(args);
    return status;
}

eplb_status eplb_context_backend_fail(eplb_context *ctx, eplb_status status)
{
    return eplb_context_fail(ctx, status, "%s backend: %s", ctx->backend_name, ctx->backend->error);
}

const char *eplb_context_last_error(const eplb_context *ctx) { return ctx ? ctx->error : ""; }

static _Thread_local char thread_error[EPLB_CONTEXT_ERROR_LEN];

eplb_status eplb_thread_fail(eplb_status status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(thread_error, sizeof thread_error, fmt, args);
    va_end(args);
    return status;
}

const char *eplb_last_error(void) { return thread_error; }
