/* eplb plan / eplb demo: load (or generate) weights, plan, report, write the plan file. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "cli_plan.h"
#include "cli_plan_options.h"
#include "eplb/eplb.h"
#include "plan_check.h"
#include "load_weights.h"
#include "output_file.h"
#include "plan_json.h"
#include "plan_read.h"
#include "plan_stats.h"
#include "text_escape.h"
#include "workload.h"

enum { OPT_FORMAT = EPLB_CLI_OPT_NEXT, OPT_REFINE, OPT_PREVIOUS, OPT_SLACK };

/* The demo's shape: DeepSeek-V3's MoE layers, experts and expert groups,
 * with redundant slots, on several nodes of GPUs. */
static const eplb_shape demo_shape = {58, 256, 288, 8, 4, 32};

static void plan_usage(FILE *f, int demo)
{
    char replicas[32] = "", groups[32] = "default 1", nodes[32] = "default 1", gpus[32] = "";
    if (demo) {
        fprintf(f, "usage: eplb demo [OPTIONS]\n\n"
                   "Plans a built-in DeepSeek-V3-shaped workload (%lld layers x %lld experts) and\n"
                   "prints the summary, beside DeepSeek's own plan of the same loads\n"
                   "(--candidates 1 --iters 0). The options change the shape and the planning.\n\n",
                (long long)demo_shape.layers, (long long)demo_shape.experts);
        snprintf(replicas, sizeof replicas, "; default %lld", (long long)demo_shape.replicas);
        snprintf(groups, sizeof groups, "default %lld", (long long)demo_shape.groups);
        snprintf(nodes, sizeof nodes, "default %lld", (long long)demo_shape.nodes);
        snprintf(gpus, sizeof gpus, "; default %lld", (long long)demo_shape.gpus);
    } else {
        fprintf(f, "usage: eplb plan --input FILE --replicas R --gpus P [OPTIONS]\n\n"
                   "Plans expert placement for the loads in FILE (one row per MoE layer, one\n"
                   "column per logical expert): SGLang JSON {\"logical_count\": ...}, a JSON\n"
                   "array, CSV/whitespace text, or a NumPy .npy (float32/64, int32/64).\n"
                   "SGLang's .pt dumps are read by the Python package: python -m eplb plan.\n\n"
                   "  -i, --input FILE      load file ('-' reads standard input)\n");
    }
    fprintf(f,
            "  -r, --replicas R      physical expert slots per layer (R >= experts, R %% P == 0%s)\n"
            "  -g, --groups G        expert groups (experts %% G == 0; %s)\n"
            "  -n, --nodes N         nodes (%s)\n"
            "  -p, --gpus P          GPUs (P %% N == 0 for the hierarchical policy%s)\n"
            "  -c, --candidates C    randomized greedy starts per row, 1..1024 (default 8)\n"
            "  -I, --iters I         swap iterations per candidate, 0..100000 (default 20)\n"
            "      --deepseek        DeepSeek's own algorithm: --candidates 1 --iters 0\n"
            "  -s, --seed S          seed of the random function, unsigned 64-bit (default 0)\n"
            "      --noise A         relative key noise, >= 0 (default 0.2)\n"
            "      --tol T           minimum swap gain, >= 0 (default 1e-5)\n"
            "      --policy P        auto (default), hierarchical or global\n"
            "      --refine[=N]      after the packing, up to N trades of slots between the\n"
            "                        GPUs of a row that lower the heavier GPU (docs/spec.md\n"
            "                        section 10), 0..100000; --refine alone is 256, 0 is off\n"
            "                        (the default)\n"
            "      --distinct        no GPU holds two replicas of one expert (docs/spec.md\n"
            "                        section 11)\n"
            "%s"
            "  -b, --backend B       auto, cpu, opencl or cuda (default: $EPLB_BACKEND, else auto)\n"
            "  -o, --output FILE     write the plan as JSON ('-': standard output, the summary\n"
            "                        then goes to standard error)\n"
            "      --format F        what the plan file holds: eplb (default: the plan with its\n"
            "                        options and statistics) or sglang (only\n"
            "                        {\"physical_to_logical_map\": ...}, which SGLang's\n"
            "                        --init-expert-location reads from a file named *.json)\n"
            "  -q, --quiet           no summary\n"
            "  -h, --help            this help\n"
            "\nLong options are spelled out in full.\n"
            "exit codes: 0 planned, 1 planning or writing failed, 2 usage or input error\n",
            replicas, groups, nodes, gpus,
            demo ? ""
                 : "      --previous FILE   the running plan (an eplb plan file or SGLang's\n"
                   "                        {\"physical_to_logical_map\": ...} JSON): plan from it,\n"
                   "                        moving as few experts as keeps every layer's max GPU\n"
                   "                        load within the fresh plan's (docs/spec.md section 13)\n"
                   "      --slack X         with --previous: a layer's max GPU load may reach\n"
                   "                        (1 + X) times the fresh plan's, for fewer moves\n"
                   "                        (default 0)\n");
}

/* Returns -1 to go on, else the exit code. */
static int parse_plan_args(int argc, char **argv, int demo, plan_args *a)
{
    const char *cmd = demo ? "demo" : "plan";
    static const struct option longopts[] = {
        {"input", required_argument, NULL, 'i'},   {"output", required_argument, NULL, 'o'},
        {"replicas", required_argument, NULL, 'r'}, {"groups", required_argument, NULL, 'g'},
        {"nodes", required_argument, NULL, 'n'},   {"gpus", required_argument, NULL, 'p'},
        EPLB_CLI_PLAN_LONGOPTS,                    {"backend", required_argument, NULL, 'b'},
        {"quiet", no_argument, NULL, 'q'},         {"format", required_argument, NULL, OPT_FORMAT},
        {"refine", optional_argument, NULL, OPT_REFINE},
        {"previous", required_argument, NULL, OPT_PREVIOUS},
        {"slack", required_argument, NULL, OPT_SLACK},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    eplb_options_init(&a->options);
    if (demo)
        a->shape = demo_shape;
    else
        a->shape.groups = a->shape.nodes = 1;
    int64_t v;
    int have_format = 0, have_slack = 0;
    eplb_cli_getopt_start();
    int c;
    while ((c = eplb_cli_next_own_option(cmd, argc, argv,
                                         ":i:o:r:g:n:p:b:qh" EPLB_CLI_PLAN_SHORTOPTS, longopts,
                                         &a->options, &a->shape, NULL)) != -1) {
        switch (c) {
        case 'i':
        case OPT_PREVIOUS:
            /* The demo's loads are built in, so it has no running plan either. */
            if (demo) {
                fprintf(stderr, "eplb demo: %s is not accepted; use eplb plan\n",
                        c == 'i' ? "--input" : "--previous");
                return EPLB_EXIT_USAGE;
            }
            *(c == 'i' ? &a->input : &a->previous) = optarg;
            break;
        case 'o': a->output = optarg; break;
        case 'b': a->backend = optarg; break;
        case 'q': a->quiet = 1; break;
        case 'h': plan_usage(stdout, demo); return EPLB_EXIT_OK;
        case OPT_REFINE:
            /* --refine alone asks for the cap that docs/spec.md section 10
             * gives it; --refine=0 turns the search off again. */
            v = 256;
            if (optarg && !eplb_cli_parse_i64(cmd, "--refine", optarg, 0, EPLB_MAX_REFINE, &v))
                return EPLB_EXIT_USAGE;
            a->options.refine = (int32_t)v;
            break;
        case OPT_SLACK:
            if (!eplb_cli_parse_float(cmd, "--slack", optarg, &a->options.slack))
                return EPLB_EXIT_USAGE;
            have_slack = 1;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "eplb") == 0) a->format = PLAN_FORMAT_EPLB;
            else if (strcmp(optarg, "sglang") == 0) a->format = PLAN_FORMAT_SGLANG;
            else {
                char shown[256];
                fprintf(stderr, "eplb %s: bad value '%s' for --format: use eplb or sglang\n", cmd,
                        eplb_text_escape(shown, sizeof shown, optarg));
                return EPLB_EXIT_USAGE;
            }
            have_format = 1;
            break;
        default: /* eplb_cli_next_own_option said what is wrong */
            return EPLB_EXIT_USAGE;
        }
    }
    /* Replicas and GPUs are 0 until given (the demo's shape has them). */
    const char *missing = !demo && !a->input ? "--input" : !a->shape.replicas ? "--replicas"
                                                        : !a->shape.gpus      ? "--gpus"
                                                                              : NULL;
    if (!eplb_cli_no_operands(cmd, argc, argv) || !eplb_cli_nothing_missing(cmd, missing))
        return EPLB_EXIT_USAGE;
    if (a->output && !*a->output) {
        fprintf(stderr, "eplb %s: --output needs a file name ('-' for standard output)\n", cmd);
        return EPLB_EXIT_USAGE;
    }
    if (have_slack && !a->previous) {
        fprintf(stderr, "eplb %s: --slack needs --previous FILE: it is how far above the fresh "
                        "plan's max GPU load a plan from the running one may stay\n", cmd);
        return EPLB_EXIT_USAGE;
    }
    if (a->previous && !eplb_tools_json_available()) {
        fprintf(stderr, "eplb %s: --previous reads a JSON plan file, and this eplb was built "
                        "without JSON support (jansson)\n", cmd);
        return EPLB_EXIT_USAGE;
    }
    if (have_format && !a->output) {
        fprintf(stderr, "eplb %s: --format says what the plan file holds: it needs --output FILE\n",
                cmd);
        return EPLB_EXIT_USAGE;
    }
    /* SGLang's file is streamed by hand; only the eplb format needs jansson. */
    if (a->output && a->format == PLAN_FORMAT_EPLB && !eplb_tools_json_available()) {
        char shown[4096];
        fprintf(stderr, "eplb %s: cannot write %s: this eplb was built without JSON support "
                        "(jansson); --format sglang needs none\n", cmd,
                eplb_text_escape(shown, sizeof shown, a->output));
        return EPLB_EXIT_USAGE;
    }
    /* A bad EPLB_BACKEND is the same usage error as a bad --backend, found
     * before any input is read. */
    const char *env_backend = getenv("EPLB_BACKEND");
    if (a->backend ? !eplb_cli_backend_known(cmd, a->backend, "--backend")
                   : env_backend && *env_backend &&
                         !eplb_cli_backend_known(cmd, env_backend, "EPLB_BACKEND"))
        return EPLB_EXIT_USAGE;
    return -1;
}

static int exit_code_for(eplb_status st)
{
    switch (st) {
    case EPLB_ERR_INVALID_ARGUMENT:
    case EPLB_ERR_INVALID_SHAPE:
    case EPLB_ERR_INVALID_WEIGHT:
    case EPLB_ERR_POLICY:
        return EPLB_EXIT_USAGE;
    default:
        return EPLB_EXIT_FAILURE;
    }
}

/* The running plan of --previous, read for eplb plan. */
typedef struct previous_plan {
    const eplb_plan_file *file;
    const char *label; /* its name, escaped */
} previous_plan;

/* Plans weight[layers][experts] with the arguments; label/format describe the
 * source. With previous (else NULL), plans from that running plan and counts
 * the moves from it. */
static int run_plan(const char *cmd, plan_args *a, const float *weight, const char *label,
                    const char *format, const previous_plan *previous)
{
    eplb_shape *s = &a->shape;
    const char *why = NULL;
    if (eplb_shape_check(s, &why) != EPLB_OK) {
        fprintf(stderr, "eplb %s: invalid shape for %s (layers %lld, experts %lld, replicas %lld, "
                        "groups %lld, nodes %lld, GPUs %lld): %s\n", cmd, label,
                (long long)s->layers, (long long)s->experts, (long long)s->replicas,
                (long long)s->groups, (long long)s->nodes, (long long)s->gpus, why);
        return EPLB_EXIT_USAGE;
    }
    const int hierarchical = eplb_plan_is_hierarchical(s, a->options.policy);
    if (a->options.policy == EPLB_POLICY_HIERARCHICAL && s->groups % s->nodes != 0) {
        fprintf(stderr, "eplb %s: --policy hierarchical needs groups (%lld) divisible by nodes "
                        "(%lld)\n", cmd, (long long)s->groups, (long long)s->nodes);
        return EPLB_EXIT_USAGE;
    }
    if (hierarchical && s->gpus % s->nodes != 0) {
        fprintf(stderr, "eplb %s: the hierarchical policy needs gpus (%lld) divisible by nodes "
                        "(%lld); pass --policy global to ignore nodes\n", cmd, (long long)s->gpus,
                (long long)s->nodes);
        return EPLB_EXIT_USAGE;
    }

    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, a->backend) != EPLB_OK) {
        fprintf(stderr, "eplb %s: no backend: %s\n", cmd, eplb_last_error());
        return EPLB_EXIT_FAILURE;
    }
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    /* No log2phy from the library: padded to the most replicated expert it
     * could take gigabytes, and the plan file lists each expert's slots
     * straight from phy2log. */
    int64_t *phy2log = malloc(L * R * sizeof *phy2log);
    int64_t *logcnt = malloc(L * E * sizeof *logcnt);
    double *max_load = malloc(L * sizeof *max_load);
    double *bound = malloc(L * sizeof *bound);
    /* The summary's memory too: once planned, a run completes or exits 1. */
    double *layer_scratch = a->quiet ? NULL : malloc(2 * L * sizeof *layer_scratch);
    int code = EPLB_EXIT_OK;
    if (!phy2log || !logcnt || !max_load || !bound || (!a->quiet && !layer_scratch)) {
        fprintf(stderr, "eplb %s: out of memory for the plan of %s\n", cmd, label);
        code = EPLB_EXIT_FAILURE;
    }
    double t0 = 0, t1 = 0;
    if (code == EPLB_EXIT_OK) {
        t0 = eplb_cli_now_us();
        eplb_status st =
            previous ? eplb_rebalance_incremental(ctx, weight, s, &a->options,
                                                  previous->file->phy2log, phy2log, logcnt, NULL,
                                                  0, NULL)
                     : eplb_rebalance(ctx, weight, s, &a->options, phy2log, logcnt, NULL, 0, NULL);
        t1 = eplb_cli_now_us();
        if (st != EPLB_OK) {
            fprintf(stderr, "eplb %s: planning %s failed: %s: %s\n", cmd, label,
                    eplb_status_string(st), eplb_context_last_error(ctx));
            code = exit_code_for(st);
        }
    }
    eplb_plan_stats stats;
    if (code == EPLB_EXIT_OK) {
        eplb_status st = eplb_plan_stats_compute(
            weight, s, hierarchical ? EPLB_POLICY_HIERARCHICAL : EPLB_POLICY_GLOBAL, phy2log,
            logcnt, &stats, max_load, bound);
        if (st == EPLB_ERR_OUT_OF_MEMORY) {
            fprintf(stderr, "eplb %s: out of memory for the statistics of the plan of %s\n", cmd,
                    label);
            code = EPLB_EXIT_FAILURE;
        } else if (st != EPLB_OK) {
            fprintf(stderr, "eplb %s: the plan of %s is inconsistent (%s): please report\n", cmd,
                    label, eplb_status_string(st));
            code = EPLB_EXIT_FAILURE;
        }
    }
    eplb_moves moves = {0};
    if (previous)
        eplb_moves_init(&moves);
    if (code == EPLB_EXIT_OK && previous &&
        eplb_count_moves(s, previous->file->phy2log, phy2log, &moves) != EPLB_OK) {
        /* The incremental call has checked the running plan already. */
        fprintf(stderr, "eplb %s: the moves from %s cannot be counted (%s): please report\n", cmd,
                previous->label, eplb_last_error());
        code = EPLB_EXIT_FAILURE;
    }
    const char *used = hierarchical ? "hierarchical" : "global";
    /* The plan file is written first but replaces the old one only after the
     * summary is out too: a run that exits 1 leaves no file changed. */
    eplb_output_file out = {0};
    char error[1024];
    if (code == EPLB_EXIT_OK && a->output) {
        eplb_plan_record rec = {
            .input = a->input, .input_format = format, .previous = a->previous,
            .shape = *s, .options = a->options,
            .policy = used, .backend = eplb_context_backend(ctx),
            .device = eplb_context_device(ctx), .plan_us = t1 - t0, .phy2log = phy2log,
            .logcnt = logcnt, .stats = stats, .moves = previous ? &moves : NULL,
            .max_load = max_load, .bound = bound};
        if (eplb_output_open(&out, a->output, error, sizeof error) != EPLB_OK ||
            (a->format == PLAN_FORMAT_SGLANG
                 ? eplb_plan_write_sglang(out.stream, a->output, &rec, error, sizeof error)
                 : eplb_plan_write_json(out.stream, a->output, &rec, error, sizeof error)) != EPLB_OK ||
            eplb_output_close(&out, error, sizeof error) != EPLB_OK) {
            fprintf(stderr, "eplb %s: %s\n", cmd, error);
            code = EPLB_EXIT_FAILURE;
        }
    }
    if (code == EPLB_EXIT_OK && !a->quiet) {
        const int to_stderr = a->output && strcmp(a->output, "-") == 0;
        FILE *f = to_stderr ? stderr : stdout;
        plan_outcome outcome = {
            .label = label, .input_format = format, .policy = used, .stats = &stats,
            .max_load = max_load, .plan_us = t1 - t0,
            .previous_label = previous ? previous->label : NULL,
            .previous_format = previous ? previous->file->format : NULL,
            .moves = previous ? &moves : NULL, .phy2log = phy2log, .logcnt = logcnt,
            .layer_scratch = layer_scratch};
        eplb_cli_print_summary(f, cmd, a, ctx, weight, &outcome);
        errno = 0;
        if (fflush(f) != 0 || ferror(f)) {
            int err = errno ? errno : EIO;
            fprintf(stderr, "eplb %s: cannot write the summary to %s: %s%s\n", cmd,
                    to_stderr ? "standard error" : "standard output", strerror(err),
                    out.temporary ? "; the plan file was not written" : "");
            code = EPLB_EXIT_FAILURE;
        }
    }
    if (code == EPLB_EXIT_OK && eplb_output_commit(&out, error, sizeof error) != EPLB_OK) {
        fprintf(stderr, "eplb %s: %s\n", cmd, error);
        code = EPLB_EXIT_FAILURE;
    }
    /* SGLang reads --init-expert-location as a file only by that suffix, and
     * otherwise as JSON text given on its command line. */
    size_t name_len = a->output ? strlen(a->output) : 0;
    if (code == EPLB_EXIT_OK && a->format == PLAN_FORMAT_SGLANG && strcmp(a->output, "-") != 0 &&
        (name_len < 5 || strcmp(a->output + name_len - 5, ".json") != 0))
        fprintf(stderr, "eplb %s: note: SGLang's --init-expert-location reads a file only when "
                        "its name ends in .json\n", cmd);
    eplb_output_discard(&out);
    free(phy2log);
    free(logcnt);
    free(max_load);
    free(bound);
    free(layer_scratch);
    eplb_context_free(ctx);
    return code;
}

/* Reads the --previous plan, which must have the loads' layers and
 * --replicas slots per layer. Returns -1 to go on, else the exit code. */
static int read_previous(const plan_args *a, int64_t layers, const char *loads_label,
                         eplb_plan_file *previous, char *label, size_t label_len)
{
    char error[1024];
    eplb_status st = eplb_plan_read(a->previous, previous, error, sizeof error);
    if (st != EPLB_OK) {
        fprintf(stderr, "eplb plan: --previous %s\n", error);
        return st == EPLB_ERR_OUT_OF_MEMORY ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
    }
    eplb_text_escape(label, label_len, a->previous);
    if (previous->layers != layers) {
        fprintf(stderr, "eplb plan: --previous %s has %lld %s, the loads of %s %lld\n", label,
                (long long)previous->layers, previous->layers == 1 ? "layer" : "layers",
                loads_label, (long long)layers);
        return EPLB_EXIT_USAGE;
    }
    if (previous->replicas != a->shape.replicas) {
        fprintf(stderr, "eplb plan: --previous %s has %lld slots per layer, --replicas is %lld\n",
                label, (long long)previous->replicas, (long long)a->shape.replicas);
        return EPLB_EXIT_USAGE;
    }
    return -1;
}

int eplb_cli_load_weights(const char *cmd, const char *path, eplb_weights *w)
{
    char error[1024];
    errno = 0;
    const eplb_status st = eplb_weights_load(path, w, error, sizeof error);
    if (st == EPLB_OK)
        return -1;
    const int out_of_memory = st == EPLB_ERR_OUT_OF_MEMORY || errno == ENOMEM;
    fprintf(stderr, "%s: %s\n", cmd, error);
    return out_of_memory ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
}

/* eplb plan: the load file named by --input. */
static int plan_load_file(plan_args *a)
{
    eplb_weights w = {0};
    int code = eplb_cli_load_weights("eplb plan", a->input, &w);
    if (code >= 0)
        return code;
    a->shape.layers = w.layers;
    a->shape.experts = w.experts;
    /* The input's name goes into every message and the summary: escaped, so
     * that control bytes in it cannot drive the terminal. */
    char label[4096];
    eplb_text_escape(label, sizeof label, strcmp(a->input, "-") == 0 ? "(stdin)" : a->input);
    eplb_plan_file previous = {0};
    char previous_label[4096];
    code = a->previous ? read_previous(a, w.layers, label, &previous, previous_label,
                                       sizeof previous_label)
                       : -1;
    if (code < 0) {
        const previous_plan running = {&previous, previous_label};
        code = run_plan("plan", a, w.data, label, w.format, a->previous ? &running : NULL);
    }
    eplb_plan_file_free(&previous);
    eplb_weights_free(&w);
    return code;
}

/* eplb demo: the built-in DeepSeek-V3-shaped workload. */
static int plan_builtin_workload(plan_args *a)
{
    const int64_t L = a->shape.layers, E = a->shape.experts;
    float *weight = malloc((size_t)(L * E) * sizeof *weight);
    if (!weight) {
        fprintf(stderr, "eplb demo: out of memory\n");
        return EPLB_EXIT_FAILURE;
    }
    eplb_workload_fill(weight, L, E, 0, 0);
    const int code = run_plan("demo", a, weight, "DeepSeek-V3-shaped workload", "built-in", NULL);
    free(weight);
    return code;
}

/* eplb plan and eplb demo take the same options (the demo its own defaults). */
static int plan_command(int argc, char **argv, int demo)
{
    plan_args a;
    const int code = parse_plan_args(argc, argv, demo, &a);
    if (code >= 0)
        return code;
    return demo ? plan_builtin_workload(&a) : plan_load_file(&a);
}

int eplb_cli_plan(int argc, char **argv)
{
    return plan_command(argc, argv, 0);
}

int eplb_cli_demo(int argc, char **argv)
{
    return plan_command(argc, argv, 1);
}
