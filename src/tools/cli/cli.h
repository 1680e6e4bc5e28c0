/* The eplb command-line tool: its subcommands (one file each) and exit codes. */
#ifndef EPLB_TOOLS_CLI_H
#define EPLB_TOOLS_CLI_H

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
int eplb_cli_evaluate(int argc, char **argv);

#endif
