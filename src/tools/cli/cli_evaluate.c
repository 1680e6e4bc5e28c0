/* eplb evaluate: how good a given plan is on given loads (eplb_evaluate), and
 * what a new plan of the same loads would reach and move. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "cli_plan.h"
#include "cli_plan_options.h"
#include "eplb/eplb.h"
#include "load_weights.h"
#include "plan_read.h"
#include "text_escape.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

enum { OPT_PLAN = EPLB_CLI_OPT_NEXT, OPT_JSON, OPT_NO_NEW_PLAN, OPT_PREVIOUS };

typedef struct evaluate_args {
    const char *input, *plan, *previous, *backend;
    eplb_shape shape;      /* replicas, groups, nodes, gpus as given (0: not given) */
    int have_policy, json, new_plan;
    eplb_options options;  /* of the new plan; policy: the bound's, when have_policy */
} evaluate_args;

static void evaluate_usage(FILE *f)
{
    fprintf(f,
            "usage: eplb evaluate --input LOADS --plan PLAN [OPTIONS]\n\n"
            "Reports how good PLAN is on LOADS: balancedness, the best balancedness any plan\n"
            "of the policy can reach (and how far PLAN is from it), duplicates, and what a new\n"
            "plan of LOADS would reach and how many slots it would move, afresh and planned\n"
            "incrementally from PLAN (not with --distinct). PLAN is an eplb plan\n"
            "file (eplb plan -o) or SGLang's {\"physical_to_logical_map\": ...}; LOADS any load\n"
            "file eplb plan reads.\n\n"
            "  -i, --input FILE      load file ('-' reads standard input)\n"
            "      --plan FILE       the plan to evaluate\n"
            "      --previous FILE   the plan PLAN replaces: how many slots it moves from it\n"
            "  -r, --replicas R      slots per layer (default: the plan's; must match it)\n"
            "  -g, --groups G        expert groups (default: an eplb plan's, else 1)\n"
            "  -n, --nodes N         nodes (default: an eplb plan's, else 1)\n"
            "  -p, --gpus P          GPUs (default: an eplb plan's; needed for SGLang's)\n"
            "      --policy P        policy of the bound and the new plan: auto, hierarchical\n"
            "                        or global (default: an eplb plan's, else auto)\n"
            "  -c, --candidates C    the new plan's options, as for eplb plan (default 8)\n"
            "  -I, --iters I         (default 20)\n"
            "      --deepseek        DeepSeek's own algorithm: --candidates 1 --iters 0\n"
            "  -s, --seed S          (default 0)\n"
            "      --noise A         (default 0.2)\n"
            "      --tol T           (default 1e-5)\n"
            "      --distinct        (default off)\n"
            "  -b, --backend B       backend of the new plan (default: $EPLB_BACKEND, else auto)\n"
            "      --no-new-plan     evaluate PLAN only\n"
            "      --json            print the figures as one JSON object on standard output\n"
            "  -h, --help            this help\n"
            "\nLong options are spelled out in full.\n"
            "exit codes: 0 evaluated, 1 the new plan failed, 2 usage or input error\n");
}

/* Returns -1 to go on, else the exit code. */
static int parse_evaluate_args(int argc, char **argv, evaluate_args *a)
{
    const char *cmd = "evaluate";
    static const struct option longopts[] = {
        {"input", required_argument, NULL, 'i'},   {"plan", required_argument, NULL, OPT_PLAN},
        {"replicas", required_argument, NULL, 'r'}, {"groups", required_argument, NULL, 'g'},
        {"nodes", required_argument, NULL, 'n'},   {"gpus", required_argument, NULL, 'p'},
        EPLB_CLI_PLAN_LONGOPTS,                    {"backend", required_argument, NULL, 'b'},
        {"no-new-plan", no_argument, NULL, OPT_NO_NEW_PLAN},
        {"previous", required_argument, NULL, OPT_PREVIOUS},
        {"json", no_argument, NULL, OPT_JSON},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    eplb_options_init(&a->options);
    a->new_plan = 1;
    eplb_cli_getopt_start();
    int c;
    while ((c = eplb_cli_next_own_option(cmd, argc, argv,
                                         ":i:r:g:n:p:b:h" EPLB_CLI_PLAN_SHORTOPTS, longopts,
                                         &a->options, &a->shape, &a->have_policy)) != -1) {
        switch (c) {
        case 'i': a->input = optarg; break;
        case OPT_PLAN: a->plan = optarg; break;
        case OPT_PREVIOUS: a->previous = optarg; break;
        case 'b': a->backend = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_NO_NEW_PLAN: a->new_plan = 0; break;
        case 'h': evaluate_usage(stdout); return EPLB_EXIT_OK;
        default: /* eplb_cli_next_own_option said what is wrong */
            return EPLB_EXIT_USAGE;
        }
    }
    const char *missing = !a->input ? "--input" : !a->plan ? "--plan" : NULL;
    if (!eplb_cli_no_operands(cmd, argc, argv) || !eplb_cli_nothing_missing(cmd, missing))
        return EPLB_EXIT_USAGE;
    if (!eplb_tools_json_available()) {
        fprintf(stderr, "eplb %s: this eplb was built without JSON support (jansson), so it reads "
                        "no plan file\n", cmd);
        return EPLB_EXIT_USAGE;
    }
    const char *env_backend = getenv("EPLB_BACKEND");
    if (a->new_plan && (a->backend ? !eplb_cli_backend_known(cmd, a->backend, "--backend")
                                   : env_backend && *env_backend &&
                                         !eplb_cli_backend_known(cmd, env_backend, "EPLB_BACKEND")))
        return EPLB_EXIT_USAGE;
    return -1;
}

/* The full shape: the loads' layers and experts, the plan's replicas, the
 * rest from the command line, else from an eplb plan file. Returns -1 to go
 * on, else the exit code after saying what does not fit. */
static int settle_shape(evaluate_args *a, const eplb_weights *w, const eplb_plan_file *p,
                        const char *plan_label, eplb_shape *s)
{
    if (p->layers != w->layers) {
        fprintf(stderr, "eplb evaluate: %s has %lld layers, the loads %lld\n", plan_label,
                (long long)p->layers, (long long)w->layers);
        return EPLB_EXIT_USAGE;
    }
    if (a->shape.replicas && a->shape.replicas != p->replicas) {
        fprintf(stderr, "eplb evaluate: --replicas %lld, but %s has %lld slots per layer\n",
                (long long)a->shape.replicas, plan_label, (long long)p->replicas);
        return EPLB_EXIT_USAGE;
    }
    s->layers = w->layers;
    s->experts = w->experts;
    s->replicas = p->replicas;
    s->groups = a->shape.groups ? a->shape.groups : p->has_shape ? p->shape.groups : 1;
    s->nodes = a->shape.nodes ? a->shape.nodes : p->has_shape ? p->shape.nodes : 1;
    s->gpus = a->shape.gpus ? a->shape.gpus : p->has_shape ? p->shape.gpus : 0;
    if (!s->gpus) {
        fprintf(stderr, "eplb evaluate: --gpus is required: %s does not say how many GPUs hold "
                        "its slots\n", plan_label);
        return EPLB_EXIT_USAGE;
    }
    if (!a->have_policy)
        a->options.policy = p->has_shape ? p->policy : EPLB_POLICY_AUTO;
    return -1;
}

typedef struct new_plan_result {
    int done;
    const char *backend;
    eplb_evaluation evaluation;
    eplb_moves moves; /* from the evaluated plan to the new one (docs/spec.md 13.3) */
    /* The incremental plan from the evaluated one (docs/spec.md 13): what a
     * rebalance that keeps what it can would reach and move. Not made with
     * --distinct, which the incremental planner does not offer. */
    int incremental_done;
    eplb_evaluation incremental;
    eplb_moves incremental_moves;
} new_plan_result;

/* Plans the loads incrementally from old_plan into phy2log and logcnt, and
 * evaluates that plan. Returns an eplb status; the caller prints failures. */
static eplb_status plan_incrementally(const evaluate_args *a, const float *weight,
                                      const eplb_shape *s, const int64_t *old_plan,
                                      eplb_context *ctx, int64_t *phy2log, int64_t *logcnt,
                                      new_plan_result *out)
{
    eplb_status st = eplb_rebalance_incremental(ctx, weight, s, &a->options, old_plan, phy2log,
                                                logcnt, NULL, 0, NULL);
    if (st != EPLB_OK)
        return st;
    eplb_evaluation_init(&out->incremental);
    st = eplb_evaluate(weight, s, a->options.policy, phy2log, &out->incremental, NULL, NULL, NULL);
    eplb_moves_init(&out->incremental_moves);
    if (st == EPLB_OK)
        st = eplb_count_moves(s, old_plan, phy2log, &out->incremental_moves);
    if (st == EPLB_OK)
        out->incremental_done = 1;
    return st;
}

/* Plans the loads afresh and evaluates that plan. Returns an exit code. */
static int plan_afresh(const evaluate_args *a, const float *weight, const eplb_shape *s,
                       const int64_t *old_plan, eplb_context **ctx, new_plan_result *out)
{
    const char *cmd = "eplb evaluate";
    eplb_status st = eplb_context_create(ctx, a->backend);
    if (st != EPLB_OK) {
        fprintf(stderr, "%s: no backend for the new plan: %s\n", cmd, eplb_last_error());
        return EPLB_EXIT_FAILURE;
    }
    int64_t *phy2log = malloc((size_t)(s->layers * s->replicas) * sizeof *phy2log);
    int64_t *logcnt = malloc((size_t)(s->layers * s->experts) * sizeof *logcnt);
    int code = EPLB_EXIT_OK;
    if (!phy2log || !logcnt) {
        fprintf(stderr, "%s: out of memory for the new plan\n", cmd);
        code = EPLB_EXIT_FAILURE;
    } else if ((st = eplb_rebalance(*ctx, weight, s, &a->options, phy2log, logcnt, NULL, 0,
                                    NULL)) != EPLB_OK) {
        fprintf(stderr, "%s: the new plan failed: %s: %s\n", cmd, eplb_status_string(st),
                eplb_context_last_error(*ctx));
        code = EPLB_EXIT_FAILURE;
    } else {
        eplb_evaluation_init(&out->evaluation);
        st = eplb_evaluate(weight, s, a->options.policy, phy2log, &out->evaluation, NULL, NULL,
                           NULL);
        eplb_moves_init(&out->moves);
        if (st == EPLB_OK)
            st = eplb_count_moves(s, old_plan, phy2log, &out->moves);
        if (st != EPLB_OK) {
            fprintf(stderr, "%s: cannot evaluate the new plan: %s\n", cmd, eplb_last_error());
            code = EPLB_EXIT_FAILURE;
        } else {
            out->done = 1;
            out->backend = eplb_context_backend(*ctx);
            if (!a->options.distinct &&
                (st = plan_incrementally(a, weight, s, old_plan, *ctx, phy2log, logcnt, out)) !=
                    EPLB_OK) {
                fprintf(stderr, "%s: the incremental plan failed: %s: %s\n", cmd,
                        eplb_status_string(st), eplb_context_last_error(*ctx));
                code = EPLB_EXIT_FAILURE;
            }
        }
    }
    free(phy2log);
    free(logcnt);
    return code;
}

static const char *plural(int64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* The moves from --previous to the evaluated plan. */
typedef struct previous_moves {
    int done;
    char label[4096];   /* the file's name, escaped */
    const char *format; /* "eplb-plan" or "sglang" */
    eplb_moves moves;
} previous_moves;

/* Reads --previous and counts the moves from it to plan, whose layers and
 * slots per layer it must have. Returns -1 to go on, else the exit code. */
static int count_moves_from_previous(const evaluate_args *a, const eplb_shape *s,
                                     const eplb_plan_file *plan, const char *plan_label,
                                     previous_moves *out)
{
    const char *cmd = "eplb evaluate";
    eplb_plan_file q = {0};
    char error[1024];
    eplb_status st = eplb_plan_read(a->previous, &q, error, sizeof error);
    if (st != EPLB_OK) {
        fprintf(stderr, "%s: --previous %s\n", cmd, error);
        return st == EPLB_ERR_OUT_OF_MEMORY ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
    }
    eplb_text_escape(out->label, sizeof out->label, a->previous);
    int code = -1;
    if (q.layers != plan->layers || q.replicas != plan->replicas) {
        fprintf(stderr, "%s: --previous %s is %lld x %lld slots, %s %lld x %lld\n", cmd,
                out->label, (long long)q.layers, (long long)q.replicas, plan_label,
                (long long)plan->layers, (long long)plan->replicas);
        code = EPLB_EXIT_USAGE;
    } else {
        eplb_moves_init(&out->moves);
        st = eplb_count_moves(s, q.phy2log, plan->phy2log, &out->moves);
        if (st != EPLB_OK) {
            fprintf(stderr, "%s: cannot count the moves from %s: %s\n", cmd, out->label,
                    eplb_last_error());
            code = st == EPLB_ERR_OUT_OF_MEMORY ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
        }
    }
    out->done = code < 0;
    out->format = q.format; /* static text, valid after the free */
    eplb_plan_file_free(&q);
    return code;
}

static void print_text(const char *input_label, const char *input_format, const char *plan_label,
                       const char *plan_format, const eplb_shape *s, const eplb_evaluation *r,
                       const evaluate_args *a, const previous_moves *before,
                       const new_plan_result *fresh)
{
    printf("eplb evaluate: %s (%s) on %s (%s), %lld %s x %lld %s\n", plan_label, plan_format,
           input_label, input_format, (long long)s->layers, plural(s->layers, "layer", "layers"),
           (long long)s->experts, plural(s->experts, "expert", "experts"));
    printf("  shape         %lld %s on %lld %s (%lld per GPU), %lld %s, %lld %s\n",
           (long long)s->replicas, plural(s->replicas, "slot", "slots"), (long long)s->gpus,
           plural(s->gpus, "GPU", "GPUs"), (long long)(s->replicas / s->gpus), (long long)s->nodes,
           plural(s->nodes, "node", "nodes"), (long long)s->groups,
           plural(s->groups, "group", "groups"));
    printf("  policy        %s (requested %s)\n", eplb_cli_policy_name(r->policy),
           eplb_cli_policy_name(a->options.policy));
    printf("  balancedness  %.4f (worst layer %lld: %.4f; best possible %.4f for any %s plan%s)\n",
           r->balancedness, (long long)r->min_layer, r->balancedness_min_layer,
           r->balancedness_bound, eplb_cli_policy_name(r->policy), r->bound_exact ? "" : ", relaxed bound");
    printf("  max GPU load  %.6g summed over layers, lower bound %.6g: %.2f%% above it\n",
           r->max_load_sum, r->bound, 100.0 * r->bound_gap);
    if (r->policy == EPLB_POLICY_HIERARCHICAL &&
        r->global_balancedness_bound - r->balancedness_bound > 0.01)
        printf("  global policy up to %.4f on these loads (--policy global); no hierarchical plan "
               "passes %.4f\n", r->global_balancedness_bound, r->balancedness_bound);
    printf("  duplicates    %lld %s an expert already on %s GPU\n",
           (long long)r->duplicates, plural(r->duplicates, "slot holds", "slots hold"),
           plural(r->duplicates, "its", "their"));
    if (before->done) {
        printf("  previous      %s (%s)\n", before->label, before->format);
        eplb_cli_print_moves(stdout, s, &before->moves);
    }
    if (fresh->done) {
        const int64_t slots = s->layers * s->replicas;
        printf("  new plan      balancedness %.4f (%s, candidates %d, iterations %d); it moves "
               "%lld of %lld %s\n",
               fresh->evaluation.balancedness, fresh->backend, a->options.candidates,
               a->options.iterations, (long long)fresh->moves.moved_slots, (long long)slots,
               plural(slots, "slot", "slots"));
    }
    if (fresh->incremental_done) {
        const int64_t slots = s->layers * s->replicas;
        printf("  incremental   balancedness %.4f, no layer above the new plan; "
               "it moves %lld of %lld %s, at most %lld to one GPU\n",
               fresh->incremental.balancedness,
               (long long)fresh->incremental_moves.moved_slots, (long long)slots,
               plural(slots, "slot", "slots"),
               (long long)fresh->incremental_moves.max_moved_per_gpu);
    }
}

#ifdef EPLB_TOOLS_HAVE_JSON
static json_t *json_doubles(const double *v, int64_t n)
{
    json_t *array = json_array();
    for (int64_t i = 0; array && i < n; i++)
        if (json_array_append_new(array, json_real(v[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    return array;
}

/* Returns 0, or -1 when out of memory. */
static int print_json(const char *input, const char *input_format, const char *plan,
                      const char *plan_format, const eplb_shape *s, const eplb_evaluation *r,
                      const double *max_load, const double *mean_load, const double *floor,
                      const evaluate_args *a, const previous_moves *before,
                      const new_plan_result *fresh)
{
    json_t *moves = json_null();
    if (before->done) {
        const eplb_moves *m = &before->moves;
        moves = json_pack("{s:s, s:s, s:I, s:I, s:o}", "previous", a->previous,
                          "previous_format", before->format, "moved_slots",
                          (json_int_t)m->moved_slots, "max_moved_per_gpu",
                          (json_int_t)m->max_moved_per_gpu, "cross_node_moves",
                          m->cross_node_moves < 0 ? json_null()
                                                  : json_integer((json_int_t)m->cross_node_moves));
    }
    json_t *incremental = json_null();
    if (fresh->incremental_done) {
        const eplb_moves *m = &fresh->incremental_moves;
        incremental = json_pack("{s:f, s:f, s:I, s:I, s:o}", "balancedness",
                                fresh->incremental.balancedness, "max_load_sum",
                                fresh->incremental.max_load_sum, "moved_slots",
                                (json_int_t)m->moved_slots, "max_moved_per_gpu",
                                (json_int_t)m->max_moved_per_gpu, "cross_node_moves",
                                m->cross_node_moves < 0
                                    ? json_null()
                                    : json_integer((json_int_t)m->cross_node_moves));
    }
    json_t *new_plan = json_null();
    if (fresh->done)
        new_plan = json_pack("{s:s, s:i, s:i, s:f, s:f, s:f, s:I, s:I, s:o}", "backend", fresh->backend,
                             "candidates", (int)a->options.candidates, "iterations",
                             (int)a->options.iterations, "balancedness",
                             fresh->evaluation.balancedness, "max_load_sum",
                             fresh->evaluation.max_load_sum, "bound_gap",
                             fresh->evaluation.bound_gap, "duplicates",
                             (json_int_t)fresh->evaluation.duplicates, "moved_slots",
                             (json_int_t)fresh->moves.moved_slots, "incremental",
                             incremental);
    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:s, s:f, s:f, s:I, s:f, "
        "s:f, s:f, s:f, s:f, s:b, s:f, s:I, s:o, s:o, s:o, s:o, s:o}",
        "format", "eplb-evaluation v1", "input", input, "input_format", input_format, "plan", plan,
        "plan_format", plan_format, "shape", "layers", (json_int_t)s->layers, "experts",
        (json_int_t)s->experts, "replicas", (json_int_t)s->replicas, "groups",
        (json_int_t)s->groups, "nodes", (json_int_t)s->nodes, "gpus", (json_int_t)s->gpus,
        "policy", eplb_cli_policy_name(r->policy), "balancedness", r->balancedness,
        "balancedness_min_layer", r->balancedness_min_layer, "min_layer", (json_int_t)r->min_layer,
        "mean_load_sum", r->mean_load_sum, "max_load_sum", r->max_load_sum, "bound", r->bound,
        "balancedness_bound", r->balancedness_bound, "bound_gap", r->bound_gap, "bound_exact",
        r->bound_exact, "global_balancedness_bound", r->global_balancedness_bound, "duplicates",
        (json_int_t)r->duplicates, "max_load_per_layer", json_doubles(max_load, s->layers),
        "mean_load_per_layer", json_doubles(mean_load, s->layers), "bound_per_layer",
        json_doubles(floor, s->layers), "moves", moves, "new_plan", new_plan);
    if (!root)
        return -1;
    int failed = json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15)) != 0;
    json_decref(root);
    if (!failed)
        putchar('\n');
    return failed ? -1 : 0;
}
#endif

/* Loads both files, evaluates, plans afresh, reports. */
static int run_evaluate(evaluate_args *a)
{
    const char *cmd = "eplb evaluate";
    eplb_weights w = {0};
    eplb_plan_file p = {0};
    int code = eplb_cli_load_weights(cmd, a->input, &w);
    if (code >= 0)
        return code;
    char error[1024];
    eplb_status st = eplb_plan_read(a->plan, &p, error, sizeof error);
    if (st != EPLB_OK) {
        fprintf(stderr, "%s: %s\n", cmd, error);
        eplb_weights_free(&w);
        return st == EPLB_ERR_OUT_OF_MEMORY ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
    }
    char input_label[4096], plan_label[4096];
    eplb_text_escape(input_label, sizeof input_label,
                     strcmp(a->input, "-") == 0 ? "(stdin)" : a->input);
    eplb_text_escape(plan_label, sizeof plan_label, a->plan);
    eplb_shape s;
    code = settle_shape(a, &w, &p, plan_label, &s);
    double *max_load = NULL, *mean_load = NULL, *floor = NULL;
    eplb_evaluation r;
    eplb_evaluation_init(&r);
    if (code < 0) {
        max_load = malloc((size_t)s.layers * sizeof *max_load);
        mean_load = malloc((size_t)s.layers * sizeof *mean_load);
        floor = malloc((size_t)s.layers * sizeof *floor);
        if (!max_load || !mean_load || !floor) {
            fprintf(stderr, "%s: out of memory\n", cmd);
            code = EPLB_EXIT_FAILURE;
        } else if ((st = eplb_evaluate(w.data, &s, a->options.policy, p.phy2log, &r, max_load,
                                       mean_load, floor)) != EPLB_OK) {
            fprintf(stderr, "%s: cannot evaluate %s on %s: %s\n", cmd, plan_label, input_label,
                    eplb_last_error());
            code = st == EPLB_ERR_OUT_OF_MEMORY ? EPLB_EXIT_FAILURE : EPLB_EXIT_USAGE;
        }
    }
    previous_moves before = {0};
    if (code < 0 && a->previous)
        code = count_moves_from_previous(a, &s, &p, plan_label, &before);
    new_plan_result fresh = {0};
    eplb_context *ctx = NULL;
    if (code < 0 && a->new_plan) {
        int planned = plan_afresh(a, w.data, &s, p.phy2log, &ctx, &fresh);
        if (planned != EPLB_EXIT_OK)
            code = planned;
    }
    if (code < 0) {
        code = EPLB_EXIT_OK;
        if (!a->json) {
            print_text(input_label, w.format, plan_label, p.format, &s, &r, a, &before, &fresh);
        } else {
#ifdef EPLB_TOOLS_HAVE_JSON
            if (print_json(a->input, w.format, a->plan, p.format, &s, &r, max_load, mean_load,
                           floor, a, &before, &fresh) != 0) {
                fprintf(stderr, "%s: out of memory for the JSON output\n", cmd);
                code = EPLB_EXIT_FAILURE;
            }
#endif
        }
    }
    eplb_context_free(ctx);
    free(max_load);
    free(mean_load);
    free(floor);
    eplb_plan_file_free(&p);
    eplb_weights_free(&w);
    return code;
}

int eplb_cli_evaluate(int argc, char **argv)
{
    evaluate_args a;
    const int code = parse_evaluate_args(argc, argv, &a);
    if (code >= 0)
        return code;
    return run_evaluate(&a);
}
