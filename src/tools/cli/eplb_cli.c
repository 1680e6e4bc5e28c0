/* eplb: plan expert placement from load files, list backends, check conformance. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eplb/eplb.h"
#include "load_weights.h"
#include "text_escape.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: eplb COMMAND [OPTIONS]\n"
            "\n"
            "Plans expert placement for Mixture-of-Experts inference.\n"
            "\n"
            "commands:\n"
            "  plan         plan a load file (SGLang JSON, JSON array, CSV/text, .npy)\n"
            "  demo         plan a built-in DeepSeek-V3-shaped workload\n"
            "  evaluate     how good a plan is on a load file, and what a new plan would reach\n"
            "  backends     list the backends, their devices, and which one auto picks\n"
            "  conformance  check every available backend against the goldens and the cpu backend\n"
            "\n"
            "  eplb COMMAND --help   options of a command\n"
            "  eplb --version        versions of the tool, the library and the algorithm\n"
            "\n"
            "exit codes: 0 success, 1 planning or conformance failure, 2 usage or input error\n");
}

/* A command that succeeded but could not write its output (a full disk, a
 * closed pipe) failed: its caller would otherwise take a cut report for a
 * whole one. Commands that already failed have said why. */
static int checked_stdout(int code)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno ? errno : EIO;
        if (code == EPLB_EXIT_OK) {
            fprintf(stderr, "eplb: cannot write to standard output: %s\n", strerror(err));
            code = EPLB_EXIT_FAILURE;
        }
    }
    return code;
}

static int run_command(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EPLB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EPLB_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("eplb %s (library %s, algorithm spec v%d, JSON %s)\n", EPLB_VERSION_STRING,
               eplb_version_string(), EPLB_SPEC_VERSION,
               eplb_tools_json_available() ? "yes" : "no: built without jansson");
        return EPLB_EXIT_OK;
    }
    if (eplb_version_number() != EPLB_VERSION_NUMBER)
        fprintf(stderr, "eplb: warning: built for libeplb %s but running with %s\n",
                EPLB_VERSION_STRING, eplb_version_string());
    /* Each command sees argv[0] = its name, so getopt_long reports "plan: ...". */
    if (strcmp(cmd, "plan") == 0)
        return eplb_cli_plan(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return eplb_cli_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "evaluate") == 0)
        return eplb_cli_evaluate(argc - 1, argv + 1);
    if (strcmp(cmd, "backends") == 0)
        return eplb_cli_backends(argc - 1, argv + 1);
    if (strcmp(cmd, "conformance") == 0)
        return eplb_cli_conformance(argc - 1, argv + 1);
    char shown[512];
    fprintf(stderr, "eplb: unknown command '%s'\n\n", eplb_text_escape(shown, sizeof shown, cmd));
    usage(stderr);
    return EPLB_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    return checked_stdout(run_command(argc, argv));
}
