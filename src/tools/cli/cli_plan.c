/* eplb plan / eplb demo: load (or generate) weights, plan, report, write the plan file. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "cli_plan.h"
#include "eplb/eplb.h"
#include "load_weights.h"
#include "output_file.h"
#include "plan_json.h"
#include "plan_stats.h"
#include "text_escape.h"
#include "workload.h"

enum { OPT_NOISE = 256, OPT_TOL, OPT_POLICY, OPT_FORMAT, OPT_REFINE };

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
            "  -s, --seed S          seed of the random function, unsigned 64-bit (default 0)\n"
            "      --noise A         relative key noise, >= 0 (default 0.2)\n"
            "      --tol T           minimum swap gain, >= 0 (default 1e-5)\n"
            "      --policy P        auto (default), hierarchical or global\n"
            "      --refine[=N]      after the packing, up to N trades of slots between the\n"
            "                        GPUs of a row that lower the heavier GPU (docs/spec.md\n"
            "                        section 10), 0..100000; --refine alone is 256, 0 is off\n"
            "                        (the default); cpu backend only for now\n"
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
            replicas, groups, nodes, gpus);
}

/* Returns -1 to go on, else the exit code. */
static int parse_plan_args(int argc, char **argv, int demo, plan_args *a)
{
    const char *cmd = demo ? "demo" : "plan";
    static const struct option longopts[] = {
        {"input", required_argument, NULL, 'i'},   {"output", required_argument, NULL, 'o'},
        {"replicas", required_argument, NULL, 'r'}, {"groups", required_argument, NULL, 'g'},
        {"nodes", required_argument, NULL, 'n'},   {"gpus", required_argument, NULL, 'p'},
        {"candidates", required_argument, NULL, 'c'}, {"iters", required_argument, NULL, 'I'},
        {"seed", required_argument, NULL, 's'},    {"noise", required_argument, NULL, OPT_NOISE},
        {"tol", required_argument, NULL, OPT_TOL}, {"policy", required_argument, NULL, OPT_POLICY},
        {"backend", required_argument, NULL, 'b'}, {"quiet", no_argument, NULL, 'q'},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"refine", optional_argument, NULL, OPT_REFINE},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    eplb_options_init(&a->options);
    if (demo)
        a->shape = demo_shape;
    else
        a->shape.groups = a->shape.nodes = 1;
    int64_t v;
    int have_replicas = demo, have_gpus = demo, have_format = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = eplb_cli_getopt(cmd, argc, argv, ":i:o:r:g:n:p:c:I:s:b:qh", longopts)) != -1) {
        switch (c) {
        case 'i':
            if (demo) {
                fprintf(stderr, "eplb demo: --input is not accepted; use eplb plan\n");
                return EPLB_EXIT_USAGE;
            }
            a->input = optarg;
            break;
        case 'o': a->output = optarg; break;
        case 'b': a->backend = optarg; break;
        case 'q': a->quiet = 1; break;
        case 'h': plan_usage(stdout, demo); return EPLB_EXIT_OK;
        case 'r':
        case 'g':
        case 'n':
        case 'p': {
            /* The shape's dimensions: each a whole number in 1..INT32_MAX. */
            int64_t *dimension = c == 'r' ? &a->shape.replicas : c == 'g' ? &a->shape.groups
                               : c == 'n' ? &a->shape.nodes : &a->shape.gpus;
            const char *name = c == 'r' ? "--replicas" : c == 'g' ? "--groups"
                             : c == 'n' ? "--nodes" : "--gpus";
            if (!eplb_cli_parse_i64(cmd, name, optarg, 1, INT32_MAX, dimension))
                return EPLB_EXIT_USAGE;
            have_replicas |= c == 'r';
            have_gpus |= c == 'p';
            break;
        }
        case 'c':
            if (!eplb_cli_parse_i64(cmd, "--candidates", optarg, 1, EPLB_MAX_CANDIDATES, &v))
                return EPLB_EXIT_USAGE;
            a->options.candidates = (int32_t)v;
            break;
        case 'I':
            if (!eplb_cli_parse_i64(cmd, "--iters", optarg, 0, EPLB_MAX_ITERATIONS, &v))
                return EPLB_EXIT_USAGE;
            a->options.iterations = (int32_t)v;
            break;
        case 's':
            if (!eplb_cli_parse_u64(cmd, "--seed", optarg, &a->options.seed))
                return EPLB_EXIT_USAGE;
            break;
        case OPT_NOISE:
            if (!eplb_cli_parse_float(cmd, "--noise", optarg, &a->options.noise))
                return EPLB_EXIT_USAGE;
            break;
        case OPT_TOL:
            if (!eplb_cli_parse_float(cmd, "--tol", optarg, &a->options.tolerance))
                return EPLB_EXIT_USAGE;
            break;
        case OPT_POLICY:
            if (strcmp(optarg, "auto") == 0) a->options.policy = EPLB_POLICY_AUTO;
            else if (strcmp(optarg, "hierarchical") == 0) a->options.policy = EPLB_POLICY_HIERARCHICAL;
            else if (strcmp(optarg, "global") == 0) a->options.policy = EPLB_POLICY_GLOBAL;
            else {
                char shown[256];
                fprintf(stderr, "eplb %s: bad value '%s' for --policy: use auto, hierarchical or "
                                "global\n", cmd, eplb_text_escape(shown, sizeof shown, optarg));
                return EPLB_EXIT_USAGE;
            }
            break;
        case OPT_REFINE:
            /* --refine alone asks for the cap that docs/spec.md section 10
             * gives it; --refine=0 turns the search off again. */
            v = 256;
            if (optarg && !eplb_cli_parse_i64(cmd, "--refine", optarg, 0, EPLB_MAX_REFINE, &v))
                return EPLB_EXIT_USAGE;
            a->options.refine = (int32_t)v;
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
        default: /* eplb_cli_getopt said what is wrong */
            return EPLB_EXIT_USAGE;
        }
    }
    const char *missing = !demo && !a->input ? "--input" : !have_replicas ? "--replicas"
                                                        : !have_gpus      ? "--gpus"
                                                                          : NULL;
    if (!eplb_cli_no_operands(cmd, argc, argv) || !eplb_cli_nothing_missing(cmd, missing))
        return EPLB_EXIT_USAGE;
    if (a->output && !*a->output) {
        fprintf(stderr, "eplb %s: --output needs a file name ('-' for standard output)\n", cmd);
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

/* Plans weight[layers][experts] with the arguments; label/format describe the source. */
static int run_plan(const char *cmd, plan_args *a, const float *weight, const char *label,
                    const char *format)
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
    int hierarchical = s->groups % s->nodes == 0 && a->options.policy != EPLB_POLICY_GLOBAL;
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
        eplb_status st = eplb_rebalance(ctx, weight, s, &a->options, phy2log, logcnt, NULL, 0, NULL);
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
    const char *used = hierarchical ? "hierarchical" : "global";
    /* The plan file is written first but replaces the old one only after the
     * summary is out too: a run that exits 1 leaves no file changed. */
    eplb_output_file out = {0};
    char error[1024];
    if (code == EPLB_EXIT_OK && a->output) {
        eplb_plan_record rec = {
            .input = a->input, .input_format = format, .shape = *s, .options = a->options,
            .policy = used, .backend = eplb_context_backend(ctx),
            .device = eplb_context_device(ctx), .plan_us = t1 - t0, .phy2log = phy2log,
            .logcnt = logcnt, .stats = stats, .max_load = max_load, .bound = bound};
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
            .max_load = max_load, .plan_us = t1 - t0, .phy2log = phy2log, .logcnt = logcnt,
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

/* eplb plan: the load file named by --input. */
static int plan_load_file(plan_args *a)
{
    eplb_weights w = {0};
    char error[1024];
    errno = 0;
    eplb_status st = eplb_weights_load(a->input, &w, error, sizeof error);
    if (st != EPLB_OK) {
        /* Running out of memory is this machine's failure, not the input's,
         * also when it shows as an error opening or reading the file. */
        int out_of_memory = st == EPLB_ERR_OUT_OF_MEMORY || errno == ENOMEM;
        fprintf(stderr, "eplb plan: %s\n", error);
        return out_of_memory ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
    }
    a->shape.layers = w.layers;
    a->shape.experts = w.experts;
    /* The input's name goes into every message and the summary: escaped, so
     * that control bytes in it cannot drive the terminal. */
    char label[4096];
    eplb_text_escape(label, sizeof label, strcmp(a->input, "-") == 0 ? "(stdin)" : a->input);
    const int code = run_plan("plan", a, w.data, label, w.format);
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
    const int code = run_plan("demo", a, weight, "DeepSeek-V3-shaped workload", "built-in");
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
