/* eplb plan / eplb demo: load (or generate) weights, plan, report, write JSON. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eplb/eplb.h"
#include "load_weights.h"
#include "output_file.h"
#include "plan_json.h"
#include "plan_stats.h"
#include "text_escape.h"
#include "workload.h"

enum { OPT_NOISE = 256, OPT_TOL, OPT_POLICY };

typedef struct plan_args {
    const char *input;
    const char *output;
    const char *backend; /* NULL: EPLB_BACKEND, else auto */
    eplb_shape shape;    /* layers and experts come from the input */
    eplb_options options;
    int quiet;
} plan_args;

static void plan_usage(FILE *f, int demo)
{
    if (demo)
        fprintf(f, "usage: eplb demo [OPTIONS]\n\n"
                   "Plans a built-in DeepSeek-V3-shaped workload (58 layers x 256 experts, 288 slots,\n"
                   "8 groups, 4 nodes, 32 GPUs) and prints the summary. The shape options below\n"
                   "override those defaults; --input is not accepted.\n\n");
    else
        fprintf(f, "usage: eplb plan --input FILE --replicas R --gpus P [OPTIONS]\n\n"
                   "Plans expert placement for the loads in FILE (one row per MoE layer, one\n"
                   "column per logical expert): SGLang JSON {\"logical_count\": ...}, a JSON\n"
                   "array, CSV/whitespace text, or a NumPy .npy (float32/64, int32/64).\n\n");
    fprintf(f,
            "  -i, --input FILE      load file ('-' reads standard input)%s\n"
            "  -r, --replicas R      physical expert slots per layer (R >= experts, R %% P == 0)\n"
            "  -g, --groups G        expert groups (experts %% G == 0; default 1)\n"
            "  -n, --nodes N         nodes (default 1)\n"
            "  -p, --gpus P          GPUs (P %% N == 0 for the hierarchical policy)\n"
            "  -c, --candidates C    randomized greedy starts per row, 1..1024 (default 8)\n"
            "  -I, --iters I         swap iterations per candidate, 0..100000 (default 20)\n"
            "  -s, --seed S          seed of the random function, unsigned 64-bit (default 0)\n"
            "      --noise A         relative key noise, >= 0 (default 0.2)\n"
            "      --tol T           minimum swap gain, >= 0 (default 1e-5)\n"
            "      --policy P        auto (default), hierarchical or global\n"
            "  -b, --backend B       auto, cpu, opencl or cuda (default: $EPLB_BACKEND, else auto)\n"
            "  -o, --output FILE     write the plan as JSON ('-': standard output, the summary\n"
            "                        then goes to standard error)\n"
            "  -q, --quiet           no summary\n"
            "  -h, --help            this help\n"
            "\nexit codes: 0 planned, 1 planning or writing failed, 2 usage or input error\n",
            demo ? " (plan only)" : "");
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
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    eplb_options_init(&a->options);
    if (demo)
        a->shape = (eplb_shape){58, 256, 288, 8, 4, 32};
    else
        a->shape.groups = a->shape.nodes = 1;
    int64_t v;
    int have_replicas = demo, have_gpus = demo;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":i:o:r:g:n:p:c:I:s:b:qh", longopts, NULL)) != -1) {
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
            if (!eplb_cli_parse_i64(cmd, "--replicas", optarg, 1, INT32_MAX, &a->shape.replicas))
                return EPLB_EXIT_USAGE;
            have_replicas = 1;
            break;
        case 'g':
            if (!eplb_cli_parse_i64(cmd, "--groups", optarg, 1, INT32_MAX, &a->shape.groups))
                return EPLB_EXIT_USAGE;
            break;
        case 'n':
            if (!eplb_cli_parse_i64(cmd, "--nodes", optarg, 1, INT32_MAX, &a->shape.nodes))
                return EPLB_EXIT_USAGE;
            break;
        case 'p':
            if (!eplb_cli_parse_i64(cmd, "--gpus", optarg, 1, INT32_MAX, &a->shape.gpus))
                return EPLB_EXIT_USAGE;
            have_gpus = 1;
            break;
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
                fprintf(stderr, "eplb %s: bad value '%s' for --policy: use auto, hierarchical or "
                                "global\n", cmd, optarg);
                return EPLB_EXIT_USAGE;
            }
            break;
        case ':':
            fprintf(stderr, "eplb %s: option %s needs a value\n", cmd, argv[optind - 1]);
            return EPLB_EXIT_USAGE;
        default:
            fprintf(stderr, "eplb %s: unknown option '%s' (see eplb %s --help)\n", cmd,
                    argv[optind - 1], cmd);
            return EPLB_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eplb %s: unexpected argument '%s' (see eplb %s --help)\n", cmd,
                argv[optind], cmd);
        return EPLB_EXIT_USAGE;
    }
    const char *missing = !demo && !a->input ? "--input" : !have_replicas ? "--replicas"
                                                        : !have_gpus      ? "--gpus"
                                                                          : NULL;
    if (missing) {
        fprintf(stderr, "eplb %s: %s is required (see eplb %s --help)\n", cmd, missing, cmd);
        return EPLB_EXIT_USAGE;
    }
    if (a->output && !eplb_tools_json_available()) {
        char shown[4096];
        fprintf(stderr, "eplb %s: cannot write %s: this eplb was built without JSON support "
                        "(jansson)\n", cmd, eplb_text_escape(shown, sizeof shown, a->output));
        return EPLB_EXIT_USAGE;
    }
    if (a->backend) {
        int known = strcmp(a->backend, "auto") == 0;
        for (int i = 0; i < eplb_backend_count(); i++)
            known |= strcmp(a->backend, eplb_backend_name(i)) == 0;
        if (!known) {
            fprintf(stderr, "eplb %s: unknown backend '%s': use auto", cmd, a->backend);
            for (int i = 0; i < eplb_backend_count(); i++)
                fprintf(stderr, ", %s", eplb_backend_name(i));
            fprintf(stderr, "\n");
            return EPLB_EXIT_USAGE;
        }
    }
    return -1;
}

static const char *policy_text(eplb_policy p)
{
    return p == EPLB_POLICY_HIERARCHICAL ? "hierarchical" : p == EPLB_POLICY_GLOBAL ? "global" : "auto";
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

/* The terminal summary of a plan (docs/cli.md); write errors show on f. */
static void print_summary(FILE *f, const char *cmd, plan_args *a, eplb_context *ctx,
                          const float *weight, const char *label, const char *format,
                          const char *used, const eplb_plan_stats *stats, double plan_us,
                          int64_t *phy2log, int64_t *logcnt)
{
    const eplb_shape *s = &a->shape;
    fprintf(f, "eplb %s: %s (%s), %lld layers x %lld experts\n", cmd, label, format,
            (long long)s->layers, (long long)s->experts);
    fprintf(f, "  shape         %lld slots on %lld GPUs (%lld per GPU), %lld nodes, %lld groups\n",
            (long long)s->replicas, (long long)s->gpus, (long long)(s->replicas / s->gpus),
            (long long)s->nodes, (long long)s->groups);
    fprintf(f, "  policy        %s (requested %s)\n", used, policy_text(a->options.policy));
    fprintf(f, "  options       candidates %d, iterations %d, noise %g, tolerance %g, seed %llu\n",
            a->options.candidates, a->options.iterations, (double)a->options.noise,
            (double)a->options.tolerance, (unsigned long long)a->options.seed);
    fprintf(f, "  backend       %s on %s\n", eplb_context_backend(ctx), eplb_context_device(ctx));
    fprintf(f, "  balancedness  %.4f (worst layer %lld: %.4f; best possible %.4f)\n",
            stats->balancedness, (long long)stats->min_layer, stats->balancedness_min_layer,
            stats->balancedness_bound);
    fprintf(f, "  max GPU load  %.6g summed over layers, lower bound %.6g: %.2f%% above it\n",
            stats->max_load_sum, stats->bound, 100.0 * stats->bound_gap);
    fprintf(f, "  plan time     %.3f ms (eplb_rebalance, first call: sets up the workspace)\n",
            plan_us / 1000.0);
    if (strcmp(cmd, "demo") == 0) {
        /* An engine replans every few minutes with a warm context: show that too. */
        enum { REPEATS = 21 };
        double times[REPEATS];
        int ok = 1;
        for (int r = 0; r < REPEATS && ok; r++) {
            double r0 = eplb_cli_now_us();
            ok = eplb_rebalance(ctx, weight, s, &a->options, phy2log, logcnt, NULL, 0, NULL) ==
                 EPLB_OK;
            times[r] = eplb_cli_now_us() - r0;
        }
        if (ok) {
            for (int i = 1; i < REPEATS; i++)
                for (int j = i; j > 0 && times[j - 1] > times[j]; j--) {
                    double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t;
                }
            fprintf(f, "  repeat time   %.3f ms (median of %d more calls on the same context)\n",
                    times[REPEATS / 2] / 1000.0, REPEATS);
        } else {
            fprintf(f, "  repeat time   not measured: %s\n", eplb_context_last_error(ctx));
        }
    }
    if (a->output && strcmp(a->output, "-") != 0) {
        char shown[4096];
        fprintf(f, "  plan file     %s\n", eplb_text_escape(shown, sizeof shown, a->output));
    }
}

/* Plans weight[layers][experts] with the arguments; label/format describe the source. */
static int run_plan(const char *cmd, plan_args *a, const float *weight, const char *label,
                    const char *format)
{
    eplb_shape *s = &a->shape;
    const char *why = NULL;
    if (eplb_shape_check(s, &why) != EPLB_OK) {
        fprintf(stderr, "eplb %s: invalid shape for %s (%lld layers x %lld experts, %lld replicas, "
                        "%lld groups, %lld nodes, %lld GPUs): %s\n", cmd, label,
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
    int code = EPLB_EXIT_OK;
    if (!phy2log || !logcnt || !max_load || !bound) {
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
        eplb_status st = eplb_plan_stats_compute(weight, s, phy2log, logcnt, &stats, max_load, bound);
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
            eplb_plan_write_json(out.stream, a->output, &rec, error, sizeof error) != EPLB_OK ||
            eplb_output_close(&out, error, sizeof error) != EPLB_OK) {
            fprintf(stderr, "eplb %s: %s\n", cmd, error);
            code = EPLB_EXIT_FAILURE;
        }
    }
    if (code == EPLB_EXIT_OK && !a->quiet) {
        const int to_stderr = a->output && strcmp(a->output, "-") == 0;
        FILE *f = to_stderr ? stderr : stdout;
        print_summary(f, cmd, a, ctx, weight, label, format, used, &stats, t1 - t0, phy2log, logcnt);
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
    eplb_output_discard(&out);
    free(phy2log);
    free(logcnt);
    free(max_load);
    free(bound);
    eplb_context_free(ctx);
    return code;
}

int eplb_cli_plan(int argc, char **argv)
{
    plan_args a;
    int code = parse_plan_args(argc, argv, 0, &a);
    if (code >= 0)
        return code;
    eplb_weights w = {0};
    char error[1024];
    errno = 0;
    eplb_status st = eplb_weights_load(a.input, &w, error, sizeof error);
    if (st != EPLB_OK) {
        /* Running out of memory is this machine's failure, not the input's,
         * also when it shows as an error opening or reading the file. */
        int out_of_memory = st == EPLB_ERR_OUT_OF_MEMORY || errno == ENOMEM;
        fprintf(stderr, "eplb plan: %s\n", error);
        return out_of_memory ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
    }
    a.shape.layers = w.layers;
    a.shape.experts = w.experts;
    /* The input's name goes into every message and the summary: escaped, so
     * that control bytes in it cannot drive the terminal. */
    char label[4096];
    eplb_text_escape(label, sizeof label, strcmp(a.input, "-") == 0 ? "(stdin)" : a.input);
    code = run_plan("plan", &a, w.data, label, w.format);
    eplb_weights_free(&w);
    return code;
}

int eplb_cli_demo(int argc, char **argv)
{
    plan_args a;
    int code = parse_plan_args(argc, argv, 1, &a);
    if (code >= 0)
        return code;
    const int64_t L = a.shape.layers, E = a.shape.experts;
    float *weight = malloc((size_t)(L * E) * sizeof *weight);
    if (!weight) {
        fprintf(stderr, "eplb demo: out of memory\n");
        return EPLB_EXIT_FAILURE;
    }
    eplb_workload_fill(weight, L, E, 0, 0);
    code = run_plan("demo", &a, weight, "built-in DeepSeek-V3-shaped workload", "built-in");
    free(weight);
    return code;
}
