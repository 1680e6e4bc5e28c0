/* eplb plan --refine[=N] (docs/cli.md, docs/spec.md section 10) through the
 * built tool: the option reaches the plan and its file, bad values are usage
 * errors (exit 2) and a backend without the refine stage refuses it (exit 1). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"
#include "eplb/eplb.h"

#define INPUT EPLB_TEST_DATA_DIR "/olmoe-arxiv.json"

CLI_SUITE(cli_refine, "/tmp/eplb-test-cli-refine-XXXXXX");

typedef struct planned {
    int code;    /* exit code */
    char *plan;  /* the plan file, or NULL */
    char *err;   /* standard error, or NULL */
} planned;

/* eplb plan on INPUT (80 slots on 16 GPUs, global) with up to three more
 * arguments (NULL ends them). */
static planned plan_with(const char *more1, const char *more2, const char *more3)
{
    char out[512], errors[512];
    cli_in_scratch(out, sizeof out, "plan.json");
    cli_in_scratch(errors, sizeof errors, "stderr.txt");
    remove(out);
    const char *args[16] = {"plan", "-q", "-i", INPUT, "-r", "80", "-p", "16", "-o", out};
    int n = 10;
    const char *more[3] = {more1, more2, more3};
    for (int i = 0; i < 3 && more[i]; i++)
        args[n++] = more[i];
    args[n] = NULL;
    const cli_run run = {.args = args, .stderr_path = errors};
    const cli_result r = cli_run_eplb(&run);
    cr_assert(r.exited, "eplb plan died of signal %d", r.code);
    return (planned){r.code, cli_slurp(out), cli_slurp(errors)};
}

/* The plan file without its statistics, which include the plan's time. */
static void cut_stats(char *plan)
{
    char *stats = plan ? strstr(plan, "\"stats\"") : NULL;
    cr_assert(stats, "a plan file with statistics");
    *stats = '\0';
}

static void planned_free(planned *p)
{
    free(p->plan);
    free(p->err);
}

Test(cli_refine, the_option_reaches_the_plan_file)
{
    planned off = plan_with(NULL, NULL, NULL);
    cr_assert_eq(off.code, 0, "%s", off.err ? off.err : "");
    cr_expect_null(strstr(off.plan, "\"refine\""), "a plan without --refine names no refine");
    planned on = plan_with("--refine", NULL, NULL);
    cr_assert_eq(on.code, 0, "%s", on.err ? on.err : "");
    cr_expect(strstr(on.plan, "\"refine\": 256") || strstr(on.plan, "\"refine\":256"),
              "--refine alone is 256");
    cr_expect(strcmp(on.plan, off.plan) != 0, "refine changed this plan");
    planned seven = plan_with("--refine=7", NULL, NULL);
    cr_assert_eq(seven.code, 0, "%s", seven.err ? seven.err : "");
    cr_expect(strstr(seven.plan, "\"refine\": 7") || strstr(seven.plan, "\"refine\":7"));
    planned zero = plan_with("--refine=0", NULL, NULL);
    cr_assert_eq(zero.code, 0);
    cut_stats(zero.plan);
    cut_stats(off.plan);
    cr_expect_str_eq(zero.plan, off.plan, "--refine=0 is off");
    planned_free(&off);
    planned_free(&on);
    planned_free(&seven);
    planned_free(&zero);
}

Test(cli_refine, bad_values_are_usage_errors)
{
    static const char *const bad[] = {"--refine=-1", "--refine=100001", "--refine=x",
                                      "--refine="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        planned p = plan_with(bad[i], NULL, NULL);
        cr_expect_eq(p.code, 2, "%s: exit %d", bad[i], p.code);
        cr_expect(p.err && strstr(p.err, "--refine"), "%s: %s", bad[i], p.err ? p.err : "");
        cr_expect_null(p.plan, "%s: no plan file", bad[i]);
        planned_free(&p);
    }
}

