/* Option parsing shared by the eplb subcommands (cli_options.c). It calls
 * nothing of theirs, so the subcommands and eplb_cli.c depend on it, never
 * the other way round. */
#ifndef EPLB_TOOLS_CLI_OPTIONS_H
#define EPLB_TOOLS_CLI_OPTIONS_H

#include <stdint.h>

struct option;

/* Strict option values: the whole text must be a number in range; on failure
 * prints "eplb CMD: bad value 'x' for --opt: ..." and returns 0. */
int eplb_cli_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                       int64_t *out);
int eplb_cli_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out);
int eplb_cli_parse_float(const char *cmd, const char *opt, const char *text, float *out);

/* Starts eplb_cli_getopt at a command's first argument, with getopt's own
 * messages off: eplb_cli_getopt prints its own, naming the command. */
void eplb_cli_getopt_start(void);

/* getopt_long for a command, with the long options spelled out in full:
 * getopt_long takes any unique prefix ("--gpu" for "--gpus"), which would
 * let a later option's name change what an old command line means.
 * shortopts starts with ':'. Returns the option's value, or '?' after
 * printing "eplb CMD: ..." for an unknown, abbreviated or valueless option;
 * -1 at the end of the options. */
int eplb_cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
                    const struct option *longopts);

/* 1 when name is "auto" or a backend eplb knows; else prints "eplb CMD:
 * unknown backend 'x' (from SOURCE): use auto, ..." and returns 0. source
 * says where the name came from: "--backend" or "EPLB_BACKEND". */
int eplb_cli_backend_known(const char *cmd, const char *name, const char *source);

/* The subcommands take no operands: 1 when getopt's optind has reached argc,
 * else prints "eplb CMD: unexpected argument 'x' (see eplb CMD --help)" (the
 * argument escaped) and returns 0. */
int eplb_cli_no_operands(const char *cmd, int argc, char **argv);

/* 1 when missing is NULL, else prints "eplb CMD: MISSING is required (see
 * eplb CMD --help)" and returns 0. */
int eplb_cli_nothing_missing(const char *cmd, const char *missing);

/* Microseconds of a monotonic clock. */
double eplb_cli_now_us(void);

#endif
