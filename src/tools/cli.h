/* The eplb command-line tool: one file per subcommand, shared helpers here. */
#ifndef EPLB_TOOLS_CLI_H
#define EPLB_TOOLS_CLI_H

#include <stdint.h>

/* Exit codes (docs/cli.md). */
enum {
    EPLB_EXIT_OK = 0,
    EPLB_EXIT_FAILURE = 1, /* planning failed, or a conformance check failed */
    EPLB_EXIT_USAGE = 2    /* bad command line or unusable input file */
};

int eplb_cli_plan(int argc, char **argv);
int eplb_cli_demo(int argc, char **argv);
int eplb_cli_backends(int argc, char **argv);
int eplb_cli_conformance(int argc, char **argv);

/* Strict option values: the whole text must be a number in range; on failure
 * prints "eplb CMD: bad value 'x' for --opt: ..." and returns 0. */
int eplb_cli_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                       int64_t *out);
int eplb_cli_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out);
int eplb_cli_parse_float(const char *cmd, const char *opt, const char *text, float *out);

/* Microseconds of a monotonic clock. */
double eplb_cli_now_us(void);

#endif
