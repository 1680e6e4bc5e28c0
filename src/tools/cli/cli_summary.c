/* The terminal summary of eplb plan and eplb demo: the shape, what ran, the
 * plan's quality, a per-layer picture of max/mean GPU load and, for the
 * demo, DeepSeek's own plan of the same loads beside eplb's. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "cli_plan.h"
#include "text_escape.h"

/* Marks of the per-layer picture: at most this many, so that the line fits
 * an 80-column terminal after the summary's indent. */
#define BALANCE_MARKS_MAX 64

static const char *plural(int64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static const char *policy_name(eplb_policy p)
{
    return p == EPLB_POLICY_HIERARCHICAL ? "hierarchical" : p == EPLB_POLICY_GLOBAL ? "global" : "auto";
}

/* Whether the terminal takes UTF-8, as the locale variables say. The tool
 * never calls setlocale, which would change how input numbers are read. */
static int locale_is_utf8(void)
{
    static const char *const variables[] = {"LC_ALL", "LC_CTYPE", "LANG"};
    for (size_t i = 0; i < sizeof variables / sizeof variables[0]; i++) {
        const char *v = getenv(variables[i]);
        if (v && *v)
            return strcasestr(v, "utf-8") != NULL || strcasestr(v, "utf8") != NULL;
    }
    return 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One mark per layer (or per run of layers, their worst) of max/mean GPU
 * load, from the lowest mark at 1 (a perfectly balanced layer) to the highest
 * at the worst layer, with the smallest, median and largest ratio. */
static void print_balance_marks(FILE *f, const eplb_shape *s, const float *weight,
                                const double *max_load, double *scratch)
{
    static const char *const utf8_marks[8] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                              "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ascii_marks[8] = {'_', '.', ':', '-', '=', '+', '*', '#'};
    const int64_t L = s->layers, E = s->experts;
    double *ratio = scratch, *sorted = scratch + L;
    for (int64_t l = 0; l < L; l++) {
        double total = 0.0;
        for (int64_t e = 0; e < E; e++)
            total += (double)weight[l * E + e];
        double mean = total / (double)s->gpus;
        ratio[l] = mean > 0.0 ? max_load[l] / mean : 1.0; /* an idle layer is balanced */
        sorted[l] = ratio[l];
    }
    qsort(sorted, (size_t)L, sizeof *sorted, compare_doubles);
    const double top = sorted[L - 1];
    const double median = L % 2 ? sorted[L / 2] : (sorted[L / 2 - 1] + sorted[L / 2]) / 2.0;
    const int64_t per_mark = (L + BALANCE_MARKS_MAX - 1) / BALANCE_MARKS_MAX;
    fprintf(f, "  max/mean      per layer: min %.4f, median %.4f, max %.4f", sorted[0], median, top);
    if (per_mark > 1)
        fprintf(f, " (one mark per %lld layers, their worst)", (long long)per_mark);
    fprintf(f, "\n                ");
    const int utf8 = locale_is_utf8();
    for (int64_t first = 0; first < L; first += per_mark) {
        double worst = 1.0;
        for (int64_t l = first; l < first + per_mark && l < L; l++)
            worst = ratio[l] > worst ? ratio[l] : worst;
        int level = top > 1.0 ? (int)lround((worst - 1.0) / (top - 1.0) * 7.0) : 0;
        level = level < 0 ? 0 : level > 7 ? 7 : level;
        if (utf8)
            fputs(utf8_marks[level], f);
        else
            fputc(ascii_marks[level], f);
    }
    fputc('\n', f);
}

/* The same loads planned as DeepSeek's EPLB plans them (one greedy start, no
 * swaps), so that the demo shows what eplb's search gains. */
static void print_deepseek_comparison(FILE *f, const plan_args *a, eplb_context *ctx,
                                      const float *weight, const eplb_plan_stats *ours)
{
    const eplb_shape *s = &a->shape;
    eplb_options deepseek = a->options;
    deepseek.candidates = 1;
    deepseek.iterations = 0;
    deepseek.refine = 0; /* DeepSeek's EPLB has neither the refine search nor distinct GPUs */
    deepseek.distinct = 0;
    int64_t *phy2log = malloc((size_t)(s->layers * s->replicas) * sizeof *phy2log);
    int64_t *logcnt = malloc((size_t)(s->layers * s->experts) * sizeof *logcnt);
    eplb_plan_stats theirs;
    const char *why = "out of memory";
    if (phy2log && logcnt) {
        if (eplb_rebalance(ctx, weight, s, &deepseek, phy2log, logcnt, NULL, 0, NULL) != EPLB_OK)
            why = eplb_context_last_error(ctx);
        else if (eplb_plan_stats_compute(weight, s, deepseek.policy, phy2log, logcnt, &theirs,
                                         NULL, NULL) != EPLB_OK)
            why = "its statistics could not be computed";
        else
            why = NULL;
    }
    if (why) {
        fprintf(f, "  DeepSeek      not planned: %s\n", why);
    } else {
        fprintf(f, "  DeepSeek      balancedness %.4f (its EPLB: --candidates 1 --iters 0)\n",
                theirs.balancedness);
        double change = theirs.max_load_sum > 0.0
                            ? 100.0 * (1.0 - ours->max_load_sum / theirs.max_load_sum) : 0.0;
        fprintf(f, "  gain          %.2f%% %s max GPU load than DeepSeek's (%.6g)\n", fabs(change),
                change >= 0.0 ? "lower" : "higher", theirs.max_load_sum);
    }
    free(phy2log);
    free(logcnt);
}

/* The groups-to-nodes packing can cap the hierarchical policy far below
 * what the global one reaches (SPEC 12): when its bound is more than a point
 * below the global policy's, one line says so. It shows the global policy's
 * bound, not a global plan: the summary allocates nothing once the plan file
 * is written, so that a run completes or exits 1 with nothing changed. */
static void print_global_policy_note(FILE *f, const plan_outcome *o)
{
    const eplb_plan_stats *stats = o->stats;
    if (strcmp(o->policy, "hierarchical") != 0 ||
        stats->global_balancedness_bound - stats->balancedness_bound <= 0.01)
        return;
    fprintf(f, "  global policy up to %.4f on these loads (--policy global); no %s plan passes "
               "%.4f\n",
            stats->global_balancedness_bound, o->policy, stats->balancedness_bound);
}

void eplb_cli_print_moves(FILE *f, const eplb_shape *s, const eplb_moves *m)
{
    const int64_t slots = s->layers * s->replicas;
    fprintf(f, "  moved         %lld of %lld %s (%.1f%%), at most %lld to one GPU",
            (long long)m->moved_slots, (long long)slots, plural(slots, "slot", "slots"),
            100.0 * (double)m->moved_slots / (double)slots, (long long)m->max_moved_per_gpu);
    if (s->nodes > 1 && m->cross_node_moves >= 0)
        fprintf(f, ", %lld across nodes", (long long)m->cross_node_moves);
    fputc('\n', f);
}

/* An engine replans every few minutes with a warm context: the demo shows
 * that time too, the median of repeated calls. */
static void print_repeat_time(FILE *f, const plan_args *a, eplb_context *ctx, const float *weight,
                              const plan_outcome *o)
{
    enum { REPEATS = 21 };
    double times[REPEATS];
    int ok = 1;
    for (int r = 0; r < REPEATS && ok; r++) {
        double r0 = eplb_cli_now_us();
        ok = eplb_rebalance(ctx, weight, &a->shape, &a->options, o->phy2log, o->logcnt, NULL, 0,
                            NULL) == EPLB_OK;
        times[r] = eplb_cli_now_us() - r0;
    }
    if (!ok) {
        fprintf(f, "  repeat time   not measured: %s\n", eplb_context_last_error(ctx));
        return;
    }
    for (int i = 1; i < REPEATS; i++)
        for (int j = i; j > 0 && times[j - 1] > times[j]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    fprintf(f, "  repeat time   %.3f ms (median of %d more calls on the same context)\n",
            times[REPEATS / 2] / 1000.0, REPEATS);
}

void eplb_cli_print_summary(FILE *f, const char *cmd, const plan_args *a, eplb_context *ctx,
                            const float *weight, const plan_outcome *o)
{
    const eplb_shape *s = &a->shape;
    const eplb_plan_stats *stats = o->stats;
    const int demo = strcmp(cmd, "demo") == 0;
    fprintf(f, "eplb %s: %s (%s), %lld %s x %lld %s\n", cmd, o->label, o->input_format,
            (long long)s->layers, plural(s->layers, "layer", "layers"), (long long)s->experts,
            plural(s->experts, "expert", "experts"));
    fprintf(f, "  shape         %lld %s on %lld %s (%lld per GPU), %lld %s, %lld %s\n",
            (long long)s->replicas, plural(s->replicas, "slot", "slots"), (long long)s->gpus,
            plural(s->gpus, "GPU", "GPUs"), (long long)(s->replicas / s->gpus),
            (long long)s->nodes, plural(s->nodes, "node", "nodes"), (long long)s->groups,
            plural(s->groups, "group", "groups"));
    if (a->options.policy == EPLB_POLICY_AUTO && s->groups % s->nodes != 0)
        fprintf(f, "  policy        %s (requested auto: groups (%lld) not divisible by nodes "
                   "(%lld))\n", o->policy, (long long)s->groups, (long long)s->nodes);
    else
        fprintf(f, "  policy        %s (requested %s)\n", o->policy, policy_name(a->options.policy));
    fprintf(f, "  options       candidates %d, iterations %d, noise %g, tolerance %g, seed %llu",
            a->options.candidates, a->options.iterations, (double)a->options.noise,
            (double)a->options.tolerance, (unsigned long long)a->options.seed);
    if (a->options.refine > 0)
        fprintf(f, ", refine %d", (int)a->options.refine);
    if (a->options.distinct)
        fputs(", distinct", f);
    fputc('\n', f);
    if (o->moves) {
        fprintf(f, "  previous      %s (%s), slack %g\n", o->previous_label, o->previous_format,
                (double)a->options.slack);
        eplb_cli_print_moves(f, s, o->moves);
    }
    fprintf(f, "  backend       %s on %s\n", eplb_context_backend(ctx), eplb_context_device(ctx));
    fprintf(f, "  balancedness  %.4f (worst layer %lld: %.4f; best possible %.4f for any %s "
               "plan%s)\n",
            stats->balancedness, (long long)stats->min_layer, stats->balancedness_min_layer,
            stats->balancedness_bound, o->policy, stats->bound_exact ? "" : ", relaxed bound");
    fprintf(f, "  max GPU load  %.6g summed over layers, lower bound %.6g: %.2f%% above it\n",
            stats->max_load_sum, stats->bound, 100.0 * stats->bound_gap);
    print_global_policy_note(f, o);
    print_balance_marks(f, s, weight, o->max_load, o->layer_scratch);
    if (demo)
        print_deepseek_comparison(f, a, ctx, weight, stats);
    fprintf(f, "  plan time     %.3f ms (%s, first call: sets up the workspace)\n",
            o->plan_us / 1000.0, o->moves ? "eplb_rebalance_incremental" : "eplb_rebalance");
    if (demo)
        print_repeat_time(f, a, ctx, weight, o);
    if (a->output && strcmp(a->output, "-") != 0) {
        char shown[4096];
        fprintf(f, "  plan file     %s%s\n", eplb_text_escape(shown, sizeof shown, a->output),
                a->format == PLAN_FORMAT_SGLANG ? " (SGLang: physical_to_logical_map)" : "");
    }
}
