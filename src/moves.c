/* The moves of a rebalance (docs/spec.md section 13.3): per GPU, the slots
 * whose expert the GPU did not hold before, counted as a multiset difference,
 * and the (node, expert) copies that must cross nodes. eplb_count_moves is
 * public and needs no context, like eplb_evaluate. The incremental plan
 * counts its moves where it builds its placements (incremental_relabel.c). */
#include <stdlib.h>

#include "context.h"
#include "eplb/eplb.h"
#include "validation.h"

/* SPEC 13.3: |after \ before| for one GPU's spg slots. count is an [E]
 * tally, zero on entry and on return. */
static int64_t gpu_moves(const int64_t *before, const int64_t *after, int64_t spg, int32_t *count)
{
    for (int64_t i = 0; i < spg; i++)
        count[before[i]]++;
    int64_t moved = 0;
    for (int64_t i = 0; i < spg; i++) {
        if (count[after[i]] > 0)
            count[after[i]]--;
        else
            moved++;
    }
    /* Whatever before held that after did not is left over: clear it. */
    for (int64_t i = 0; i < spg; i++)
        count[before[i]] = 0;
    return moved;
}

void eplb_moves_init(eplb_moves *moves)
{
    if (!moves)
        return;
    moves->struct_size = sizeof *moves;
    moves->moved_slots = 0;
    moves->max_moved_per_gpu = 0;
    moves->cross_node_moves = 0;
}

/* Names the first entry of a plan outside 0..E-1, through the thread's last
 * error. */
static eplb_status check_plan_entries(const char *name, const int64_t *plan, const eplb_shape *s)
{
    for (int64_t l = 0; l < s->layers; l++)
        for (int64_t q = 0; q < s->replicas; q++) {
            int64_t e = plan[l * s->replicas + q];
            if (e < 0 || e >= s->experts)
                return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                        "%s[%lld][%lld] = %lld is not an expert (0..%lld)", name,
                                        (long long)l, (long long)q, (long long)e,
                                        (long long)(s->experts - 1));
        }
    return EPLB_OK;
}

/* The (node, expert) pairs of one layer with the expert on some slot of the
 * node in after and on none in before. seen[e] holds the stamp of the last
 * node that listed e: stamp for before, stamp + 1 once counted for after. */
static int64_t layer_cross_node_moves(const int64_t *before, const int64_t *after,
                                      int64_t nodes, int64_t node_slots, int64_t *seen,
                                      int64_t *stamp)
{
    int64_t moves = 0;
    for (int64_t n = 0; n < nodes; n++) {
        const int64_t mark = (*stamp += 2);
        for (int64_t q = n * node_slots; q < (n + 1) * node_slots; q++)
            seen[before[q]] = mark;
        for (int64_t q = n * node_slots; q < (n + 1) * node_slots; q++) {
            int64_t e = after[q];
            if (seen[e] != mark && seen[e] != mark + 1) {
                moves++;
                seen[e] = mark + 1;
            }
        }
    }
    return moves;
}

eplb_status eplb_count_moves(const eplb_shape *shape, const int64_t *previous,
                             const int64_t *phy2log, eplb_moves *moves)
{
    const char *why;
    eplb_status st = eplb_shape_check(shape, &why);
    if (st != EPLB_OK)
        return eplb_thread_fail(st, "invalid shape: %s", why);
    if (!previous || !phy2log || !moves)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                "previous, phy2log and moves must not be NULL");
    if (moves->struct_size != sizeof *moves)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                "moves not initialised with eplb_moves_init");
    if ((st = check_plan_entries("previous", previous, shape)) != EPLB_OK ||
        (st = check_plan_entries("phy2log", phy2log, shape)) != EPLB_OK)
        return st;

    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    const int64_t P = shape->gpus, N = shape->nodes, spg = R / P;
    const int cross = P % N == 0;
    int32_t *count = calloc((size_t)E, sizeof *count);
    int64_t *per_gpu = calloc((size_t)P, sizeof *per_gpu);
    int64_t *seen = cross ? calloc((size_t)E, sizeof *seen) : NULL;
    if (!count || !per_gpu || (cross && !seen)) {
        free(count);
        free(per_gpu);
        free(seen);
        return eplb_thread_fail(EPLB_ERR_OUT_OF_MEMORY,
                                "cannot allocate the move counts of %lld experts on %lld GPUs",
                                (long long)E, (long long)P);
    }
    int64_t moved = 0, across = 0, stamp = 0;
    for (int64_t l = 0; l < L; l++) {
        const int64_t *before = previous + l * R, *after = phy2log + l * R;
        for (int64_t g = 0; g < P; g++) {
            int64_t m = gpu_moves(before + g * spg, after + g * spg, spg, count);
            per_gpu[g] += m;
            moved += m;
        }
        if (cross)
            across += layer_cross_node_moves(before, after, N, R / N, seen, &stamp);
    }
    int64_t busiest = 0;
    for (int64_t g = 0; g < P; g++)
        if (per_gpu[g] > busiest)
            busiest = per_gpu[g];
    free(count);
    free(per_gpu);
    free(seen);
    moves->moved_slots = moved;
    moves->max_moved_per_gpu = busiest;
    moves->cross_node_moves = cross ? across : -1;
    return EPLB_OK;
}
