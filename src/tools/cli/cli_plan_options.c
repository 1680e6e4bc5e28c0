/* The planning options shared by eplb plan and eplb evaluate (cli_plan_options.h). */
#define _GNU_SOURCE
#include "cli_plan_options.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli_options.h"
#include "text_escape.h"

const char *eplb_cli_policy_name(eplb_policy policy)
{
    return policy == EPLB_POLICY_HIERARCHICAL ? "hierarchical"
           : policy == EPLB_POLICY_GLOBAL     ? "global"
                                              : "auto";
}

int eplb_cli_shape_option(const char *cmd, int c, const char *arg, eplb_shape *shape)
{
    int64_t *dimension = c == 'r' ? &shape->replicas : c == 'g' ? &shape->groups
                       : c == 'n' ? &shape->nodes : c == 'p' ? &shape->gpus : NULL;
    const char *name = c == 'r' ? "--replicas" : c == 'g' ? "--groups" : c == 'n' ? "--nodes"
                                                                               : "--gpus";
    if (!dimension)
        return -1;
    return eplb_cli_parse_i64(cmd, name, arg, 1, INT32_MAX, dimension);
}

int eplb_cli_plan_option(const char *cmd, int c, const char *arg, eplb_options *o)
{
    int64_t v;
    switch (c) {
    case 'c':
        if (!eplb_cli_parse_i64(cmd, "--candidates", arg, 1, EPLB_MAX_CANDIDATES, &v))
            return 0;
        o->candidates = (int32_t)v;
        return 1;
    case 'I':
        if (!eplb_cli_parse_i64(cmd, "--iters", arg, 0, EPLB_MAX_ITERATIONS, &v))
            return 0;
        o->iterations = (int32_t)v;
        return 1;
    case 's':
        return eplb_cli_parse_u64(cmd, "--seed", arg, &o->seed);
    case EPLB_CLI_OPT_NOISE:
        return eplb_cli_parse_float(cmd, "--noise", arg, &o->noise);
    case EPLB_CLI_OPT_TOL:
        return eplb_cli_parse_float(cmd, "--tol", arg, &o->tolerance);
    case EPLB_CLI_OPT_DISTINCT:
        o->distinct = 1;
        return 1;
    case EPLB_CLI_OPT_DEEPSEEK:
        /* DeepSeek's own algorithm (one greedy start, no swap search), named
         * so that a user need not know the two numbers. It stands for those
         * two options at its place on the command line: a later --candidates
         * or --iters still changes them, as with any repeated option. */
        o->candidates = 1;
        o->iterations = 0;
        return 1;
    case EPLB_CLI_OPT_POLICY: {
        const eplb_policy all[] = {EPLB_POLICY_AUTO, EPLB_POLICY_HIERARCHICAL, EPLB_POLICY_GLOBAL};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (strcmp(arg, eplb_cli_policy_name(all[i])) == 0) {
                o->policy = all[i];
                return 1;
            }
        char shown[256];
        fprintf(stderr, "eplb %s: bad value '%s' for --policy: use auto, hierarchical or global\n",
                cmd, eplb_text_escape(shown, sizeof shown, arg));
        return 0;
    }
    default:
        return -1;
    }
}

int eplb_cli_next_own_option(const char *cmd, int argc, char **argv, const char *shortopts,
                             const struct option *longopts, eplb_options *options,
                             eplb_shape *shape, int *gave_policy)
{
    int c;
    while ((c = eplb_cli_getopt(cmd, argc, argv, shortopts, longopts)) != -1) {
        int shared = eplb_cli_plan_option(cmd, c, optarg, options);
        if (shared < 0)
            shared = eplb_cli_shape_option(cmd, c, optarg, shape);
        if (shared < 0)
            return c;
        if (shared == 0)
            return '?';
        if (gave_policy && c == EPLB_CLI_OPT_POLICY)
            *gave_policy = 1;
    }
    return -1;
}
