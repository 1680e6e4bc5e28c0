/* A context's error message: written by whichever layer fails (the planner,
 * the public API) and read back through eplb_context_last_error. It depends on
 * nothing else in the library, so every layer may report through it. */
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

const char *eplb_context_last_error(const eplb_context *ctx) { return ctx ? ctx->error : ""; }
