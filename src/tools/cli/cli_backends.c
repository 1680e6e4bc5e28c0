/* eplb backends: every backend eplb knows, its device or why it is unavailable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "eplb/eplb.h"

/* What a plan without --backend uses when EPLB_BACKEND is set: the listing
 * above would mislead if it stayed silent about a name that plans refuse
 * (exit 2, as eplb plan) or a backend they cannot use. */
static int report_environment(void)
{
    const char *name = getenv("EPLB_BACKEND");
    if (!name || !*name)
        return EPLB_EXIT_OK;
    if (!eplb_cli_backend_known("backends", name, "EPLB_BACKEND"))
        return EPLB_EXIT_USAGE;
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, NULL) != EPLB_OK) { /* NULL: as a plan reads EPLB_BACKEND */
        printf("EPLB_BACKEND=%s: plans without --backend fail: %s\n", name, eplb_last_error());
        return EPLB_EXIT_OK;
    }
    printf("EPLB_BACKEND=%s: plans without --backend use %s (%s)\n", name,
           eplb_context_backend(ctx), eplb_context_device(ctx));
    eplb_context_free(ctx);
    return EPLB_EXIT_OK;
}

int eplb_cli_backends(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    eplb_cli_getopt_start();
    int c;
    while ((c = eplb_cli_getopt("backends", argc, argv, ":h", longopts)) != -1) {
        if (c == 'h') {
            printf("usage: eplb backends\n\n"
                   "Lists every backend eplb knows (available or not) with its device, or the\n"
                   "reason it cannot be used, and the backend that 'auto' (and so a plan without\n"
                   "--backend, unless EPLB_BACKEND is set) picks, then what EPLB_BACKEND picks\n"
                   "when it is set. Backend modules are looked up next to libeplb, or in\n"
                   "$EPLB_MODULE_DIR.\n\n"
                   "exit codes: 0 listed, 1 no backend usable, 2 usage error (also an\n"
                   "EPLB_BACKEND that names no backend, as eplb plan says)\n");
            return EPLB_EXIT_OK;
        }
        return EPLB_EXIT_USAGE; /* eplb_cli_getopt said what is wrong */
    }
    if (!eplb_cli_no_operands("backends", argc, argv))
        return EPLB_EXIT_USAGE;
    for (int i = 0; i < eplb_backend_count(); i++) {
        const char *detail = NULL;
        int ok = eplb_backend_available(i, &detail);
        printf("%-8s %-11s %s\n", eplb_backend_name(i), ok ? "available" : "unavailable",
               detail && *detail ? detail : "(no detail)");
    }
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "auto") != EPLB_OK) {
        printf("auto     picks nothing: %s\n", eplb_last_error());
        return EPLB_EXIT_FAILURE;
    }
    printf("auto     picks %s (%s)\n", eplb_context_backend(ctx), eplb_context_device(ctx));
    eplb_context_free(ctx);
    return report_environment();
}
