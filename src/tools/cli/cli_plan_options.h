/* The planning options (--candidates, --iters, --seed, --noise, --tol,
 * --policy, --distinct, --deepseek) and the shape's dimensions, parsed once for every
 * subcommand that plans, so that an option added to the planner is added in
 * one place (cli_plan_options.c). */
#ifndef EPLB_TOOLS_CLI_PLAN_OPTIONS_H
#define EPLB_TOOLS_CLI_PLAN_OPTIONS_H

#include <getopt.h>

#include "eplb/eplb.h"

/* getopt values of the long-only planning options; a subcommand numbers its
 * own long-only options from EPLB_CLI_OPT_NEXT. */
enum {
    EPLB_CLI_OPT_NOISE = 256,
    EPLB_CLI_OPT_TOL,
    EPLB_CLI_OPT_POLICY,
    EPLB_CLI_OPT_DISTINCT,
    EPLB_CLI_OPT_DEEPSEEK,
    EPLB_CLI_OPT_NEXT
};

/* Their short options, for getopt's list, and their struct option entries. */
#define EPLB_CLI_PLAN_SHORTOPTS "c:I:s:"
#define EPLB_CLI_PLAN_LONGOPTS                                                                 \
    {"candidates", required_argument, NULL, 'c'}, {"iters", required_argument, NULL, 'I'},   \
        {"seed", required_argument, NULL, 's'},                                               \
        {"noise", required_argument, NULL, EPLB_CLI_OPT_NOISE},                               \
        {"tol", required_argument, NULL, EPLB_CLI_OPT_TOL},                                   \
        {"policy", required_argument, NULL, EPLB_CLI_OPT_POLICY},                             \
        {"distinct", no_argument, NULL, EPLB_CLI_OPT_DISTINCT},                               \
        {"deepseek", no_argument, NULL, EPLB_CLI_OPT_DEEPSEEK}

/* Parses option c with its value arg into options. Returns 1 when parsed, 0
 * after printing "eplb CMD: bad value ..." for a value out of range, and -1
 * when c is not a planning option. */
int eplb_cli_plan_option(const char *cmd, int c, const char *arg, eplb_options *options);

/* Parses a shape dimension: -r/--replicas, -g/--groups, -n/--nodes or
 * -p/--gpus, each a whole number in 1..INT32_MAX. Returns as
 * eplb_cli_plan_option. */
int eplb_cli_shape_option(const char *cmd, int c, const char *arg, eplb_shape *shape);

/* Reads a command line that takes the planning options and the shape's
 * dimensions (eplb plan, eplb evaluate) up to the next option of the
 * command's own, through eplb_cli_getopt (eplb_cli_getopt_start first): the
 * shared ones go into options and shape, and *gave_policy, unless NULL, is
 * set once --policy is read. Returns the option's value, -1 at the end of
 * the options, or '?' after saying what is wrong. */
int eplb_cli_next_own_option(const char *cmd, int argc, char **argv, const char *shortopts,
                             const struct option *longopts, eplb_options *options,
                             eplb_shape *shape, int *gave_policy);

/* The policy's name: "auto", "hierarchical" or "global". */
const char *eplb_cli_policy_name(eplb_policy policy);

#endif
