/* eplb-bench --drift (issue 18): the loads of a running model drift between
 * two rebalances. For each DeepSeek-V3 case, the bench workload's plan runs
 * (the previous plan); the same loads times exp(0.1 z) arrive, with the
 * drift of the numpy reference (tests/incremental_reference); they are
 * planned fresh (eplb_rebalance) and incrementally (eplb_rebalance_incremental,
 * docs/spec.md section 13), and the row compares what each moves, how well
 * each balances, and how long each takes (the two calls alternate, so that
 * the time ratio holds on a machine whose speed drifts). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "drift.h"
#include "workload.h"

/* The drift of the reference's measurements (incremental_inputs.drift). */
#define DRIFT_SEED 2
#define DRIFT_SIGMA 0.1

static void print_head(int markdown)
{
    if (markdown) {
        printf("\n| case | moved slots fresh | incremental | ratio | most per GPU fresh / incr. "
               "| cross-node fresh / incr. | balancedness fresh / incr. | layers above fresh max "
               "| fresh ms | incremental ms | time ratio |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        return;
    }
    printf("\ndrift: the workload times exp(%.1f z) (seed %d), planned fresh and incrementally "
           "from the workload's plan, the two calls timed in alternation\n%-14s %12s %12s %7s %13s %15s %15s %6s %10s %10s %6s\n",
           DRIFT_SIGMA, DRIFT_SEED, "case", "moved fresh", "incremental", "ratio", "per GPU f/i",
           "cross-node f/i", "balanced f/i", "above", "fresh ms", "incr. ms", "x");
}

/* The layers whose largest GPU load (SPEC 13.2) in got exceeds fresh's. */
static int64_t layers_above(const eplb_shape *s, const float *weight, const int64_t *fresh,
                            const int64_t *got)
{
    int64_t above = 0;
    for (int64_t l = 0; l < s->layers; l++) {
        const float *w = weight + l * s->experts;
        const int64_t R = s->replicas;
        above += eplb_layer_peak_load(w, got + l * R, s->experts, R, s->gpus) >
                 eplb_layer_peak_load(w, fresh + l * R, s->experts, R, s->gpus);
    }
    return above;
}

/* One case's row; 0 when a plan fails. */
static int drift_row(eplb_context *ctx, const bench_config *cfg, const bench_case *bc,
                     const eplb_options *options)
{
    const eplb_shape *s = &bc->shape;
    const size_t LE = (size_t)(s->layers * s->experts), LR = (size_t)(s->layers * s->replicas);
    eplb_options opt = *options;
    opt.policy = bc->policy;
    float *weight = malloc(LE * sizeof *weight), *drifted = malloc(LE * sizeof *drifted);
    int64_t *previous = malloc(LR * sizeof *previous), *counts = malloc(LE * sizeof *counts);
    plan_buffers plans[2] = {{0}, {0}};
    plan_buffers *fresh = &plans[0], *incremental = &plans[1];
    timing times[2];
    int ok = weight && drifted && previous && counts;
    if (!ok)
        fprintf(stderr, "eplb-bench: out of memory for the drift of %s\n", bc->name);
    if (ok) {
        eplb_workload_fill(weight, s->layers, s->experts, cfg->workload_seed, 0);
        eplb_workload_drift(weight, drifted, (int64_t)LE, DRIFT_SEED, DRIFT_SIGMA);
        const eplb_status st = eplb_rebalance(ctx, weight, s, &opt, previous, counts, NULL, 0, NULL);
        if (st != EPLB_OK) {
            fprintf(stderr, "eplb-bench: the previous plan of %s failed: %s\n", bc->name,
                    eplb_context_last_error(ctx));
            ok = 0;
        }
    }
    incremental->previous = previous;
    /* Interleaved, a fresh and an incremental call per round: the ratio of
     * their medians is then that of the same moments of the machine. */
    ok = ok && bench_time_plan_set(ctx, drifted, s, &opt, cfg, plans, 2, times);
    if (ok) {
        eplb_moves mf, mi;
        eplb_moves_init(&mf);
        eplb_moves_init(&mi);
        ok = eplb_count_moves(s, previous, fresh->phy2log, &mf) == EPLB_OK &&
             eplb_count_moves(s, previous, incremental->phy2log, &mi) == EPLB_OK;
        if (!ok)
            fprintf(stderr, "eplb-bench: eplb_count_moves: %s\n", eplb_last_error());
        const double bf = bench_measure_plan(s, opt.policy, drifted, fresh->phy2log, fresh->logcnt,
                                             fresh->gpu_load).balancedness;
        const double bi = bench_measure_plan(s, opt.policy, drifted, incremental->phy2log,
                                             incremental->logcnt, incremental->gpu_load).balancedness;
        const int64_t above = layers_above(s, drifted, fresh->phy2log, incremental->phy2log);
        const double ratio = mf.moved_slots ? (double)mi.moved_slots / (double)mf.moved_slots : 0.0;
        const double slower = times[1].median_ms / times[0].median_ms;
        const char *row = cfg->markdown
                              ? "| %s | %lld | %lld | %.3f | %lld / %lld | %lld / %lld | %.4f / "
                                "%.4f | %lld | %.2f | %.2f | %.2f |\n"
                              : "%-14s %12lld %12lld %7.3f %6lld/%-6lld %7lld/%-7lld "
                                "%7.4f/%-7.4f %6lld %10.2f %10.2f %6.2f\n";
        if (ok)
            printf(row, bc->name, (long long)mf.moved_slots, (long long)mi.moved_slots, ratio,
                   (long long)mf.max_moved_per_gpu, (long long)mi.max_moved_per_gpu,
                   (long long)mf.cross_node_moves, (long long)mi.cross_node_moves, bf, bi,
                   (long long)above, times[0].median_ms, times[1].median_ms, slower);
    }
    bench_plan_buffers_free(fresh);
    bench_plan_buffers_free(incremental);
    free(weight);
    free(drifted);
    free(previous);
    free(counts);
    return ok;
}

int bench_drift(eplb_context *ctx, const bench_config *cfg, const eplb_options *options)
{
    print_head(cfg->markdown);
    for (int c = 0; c < cfg->case_count; c++)
        if (strncmp(cfg->cases[c]->name, "v3-", 3) == 0 &&
            !drift_row(ctx, cfg, cfg->cases[c], options))
            return 0;
    return 1;
}
