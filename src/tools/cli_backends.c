/* eplb backends: every backend eplb knows, its device or why it is unavailable. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "eplb/eplb.h"

int eplb_cli_backends(int argc, char **argv)
{
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: eplb backends\n\n"
                   "Lists every backend eplb knows (available or not) with its device, or the\n"
                   "reason it cannot be used, and the backend that 'auto' (and so a plan without\n"
                   "--backend, unless EPLB_BACKEND is set) picks. Backend modules are looked up\n"
                   "next to libeplb, or in $EPLB_MODULE_DIR.\n\n"
                   "exit codes: 0 listed, 1 no backend usable, 2 usage error\n");
            return EPLB_EXIT_OK;
        }
        fprintf(stderr, "eplb backends: unknown option '%s'\n", argv[optind - 1]);
        return EPLB_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "eplb backends: unexpected argument '%s'\n", argv[optind]);
        return EPLB_EXIT_USAGE;
    }
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
    return EPLB_EXIT_OK;
}
