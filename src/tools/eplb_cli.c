/* eplb: plan expert placement from load files, list backends, check conformance. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "eplb/eplb.h"
#include "load_weights.h"

int eplb_cli_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                       int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || errno) {
        fprintf(stderr, "eplb %s: bad value '%s' for %s: not an integer\n", cmd, text, opt);
        return 0;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "eplb %s: bad value '%s' for %s: must be in %lld..%lld\n", cmd, text, opt,
                (long long)lo, (long long)hi);
        return 0;
    }
    *out = v;
    return 1;
}

int eplb_cli_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    int hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    unsigned long long v = strtoull(text, &end, hex ? 16 : 10); /* never octal */
    if (!*text || *end || errno || text[0] == '-') {
        fprintf(stderr, "eplb %s: bad value '%s' for %s: not an unsigned 64-bit integer\n", cmd,
                text, opt);
        return 0;
    }
    *out = v;
    return 1;
}

int eplb_cli_parse_float(const char *cmd, const char *opt, const char *text, float *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (!*text || *end || errno || !isfinite(v) || v < 0.0 || isinf((float)v)) {
        fprintf(stderr, "eplb %s: bad value '%s' for %s: must be a finite number >= 0\n", cmd,
                text, opt);
        return 0;
    }
    *out = (float)v;
    return 1;
}

double eplb_cli_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

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
    if (strcmp(cmd, "backends") == 0)
        return eplb_cli_backends(argc - 1, argv + 1);
    if (strcmp(cmd, "conformance") == 0)
        return eplb_cli_conformance(argc - 1, argv + 1);
    fprintf(stderr, "eplb: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EPLB_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    return checked_stdout(run_command(argc, argv));
}
