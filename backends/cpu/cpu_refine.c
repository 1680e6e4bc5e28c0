/* The refine search (SPEC 10) on the cpu: after the packing of slots to GPUs,
 * the heaviest GPU of each row repeatedly makes the one-for-one or two-for-two
 * slot trade with another GPU of the row that leaves the larger of the two
 * loads lowest. A row per OpenMP iteration; rows are independent, so the plan
 * does not depend on the thread count.
 *
 * The search works on the row's placement as GPU-major slot lists (content)
 * and writes it back to slot_pack.pack_of and rank_of, which assemble reads. */
#include <math.h>
#include <stdlib.h>

#include "cpu_runtime.h"
#include "cpu_stages.h"

/* The best trade of one kind (one-for-one or two-for-two) seen so far. B is
 * -1 until a trade with a finite peak is found. */
typedef struct refine_best {
    float peak;
    int32_t b;      /* the partner GPU */
    int32_t a_pos;  /* A's position, or A's pair index for two-for-two */
    int32_t b_pos;  /* B's position, or B's pair index (pair_lo/pair_hi give its slots) */
} refine_best;

/* Per-thread scratch for one row. */
typedef struct refine_scratch {
    int32_t *content; /* [n] the row's slot at GPU a's position r, at a*k + r */
    float *t;         /* [n] the load of the slot at a*k + r */
    float *load;      /* [m] each GPU's load */
    float *a_pairs;   /* [pairs] A's two-slot sums, pairs in lexicographic order */
    float *b_pairs;   /* [pairs] the same for the GPU B being weighed */
    int32_t *pair_lo; /* [pairs] the lower position of each pair */
    int32_t *pair_hi; /* [pairs] the higher position */
} refine_scratch;

/* A GPU's load: its slot loads summed left to right in position order. */
static float gpu_load(const float *t_gpu, int32_t k)
{
    float sum = t_gpu[0];
    for (int32_t r = 1; r < k; r++)
        sum += t_gpu[r];
    return sum;
}

static void pair_sums(const float *t_gpu, const refine_scratch *s, int32_t pairs, float *out)
{
    for (int32_t i = 0; i < pairs; i++)
        out[i] = t_gpu[s->pair_lo[i]] + t_gpu[s->pair_hi[i]];
}

/* Weighs every trade that gives `give_a[i]` for `give_b[j]` (i, j in
 * row-major order) and keeps the smallest finite peak in best; equal peaks go
 * to the lower B, then to the earlier (i, j). A peak is finite only when both
 * new loads are: the conditional below carries a NaN or an infinity of either
 * into it, so `peak < best` is false for it. */
static void weigh(float a_load, float b_load, int32_t b, const float *give_a, int32_t na,
                  const float *give_b, int32_t nb, refine_best *best)
{
    for (int32_t i = 0; i < na; i++) {
        const float ga = give_a[i];
        for (int32_t j = 0; j < nb; j++) {
            const float d = ga - give_b[j];
            const float new_a = a_load - d;
            const float new_b = b_load + d;
            const float peak = new_a > new_b ? new_a : new_b;
            if (peak < best->peak || (peak == best->peak && b < best->b)) {
                best->peak = peak;
                best->b = b;
                best->a_pos = i;
                best->b_pos = j;
            }
        }
    }
}

/* Exchanges the slots at positions x of GPU a and y of GPU b (expert, replica
 * rank and load move together); applied twice, it undoes itself. */
static void exchange(refine_scratch *s, int32_t k, int32_t a, int32_t x, int32_t b, int32_t y)
{
    const int32_t i = a * k + x, j = b * k + y;
    const int32_t q = s->content[i];
    s->content[i] = s->content[j];
    s->content[j] = q;
    const float t = s->t[i];
    s->t[i] = s->t[j];
    s->t[j] = t;
}

static void apply_trade(refine_scratch *s, int32_t k, int32_t a, const refine_best *trade,
                        int two_for_two)
{
    if (!two_for_two) {
        exchange(s, k, a, trade->a_pos, trade->b, trade->b_pos);
        return;
    }
    exchange(s, k, a, s->pair_lo[trade->a_pos], trade->b, s->pair_lo[trade->b_pos]);
    exchange(s, k, a, s->pair_hi[trade->a_pos], trade->b, s->pair_hi[trade->b_pos]);
}

/* SPEC 10.3 on row x. */
static void refine_row(const eplb_plan_job *job, int64_t x, refine_scratch *s)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs, k = sp->per_pack;
    const int32_t pairs = k * (k - 1) / 2;
    const float tol = sp->tolerance;
    const float *slot_load = (const float *)job->slot_load + x * n;
    int32_t *pack_of = (int32_t *)sp->pack_of + x * n, *rank_of = (int32_t *)sp->rank_of + x * n;

    for (int32_t q = 0; q < n; q++)
        s->content[pack_of[q] * k + rank_of[q]] = q;
    for (int32_t i = 0; i < n; i++)
        s->t[i] = slot_load[s->content[i]];
    for (int32_t g = 0; g < m; g++)
        s->load[g] = gpu_load(s->t + g * k, k);

    for (int32_t iteration = 0; iteration < job->refine; iteration++) {
        int32_t a = 0, lightest = -1;
        for (int32_t g = 1; g < m; g++)
            if (s->load[g] > s->load[a])
                a = g;
        const float a_load = s->load[a];
        if (isinf(a_load))
            break;
        for (int32_t g = 0; g < m; g++)
            if (g != a && (lightest < 0 || s->load[g] < s->load[lightest]))
                lightest = g;
        const float *t_a = s->t + a * k;
        pair_sums(t_a, s, pairs, s->a_pairs);

        refine_best one = {INFINITY, -1, 0, 0}, two = {INFINITY, -1, 0, 0};
        /* The lightest partner first, so that a good peak is known early;
         * then the others in index order. Which trade wins does not depend on
         * this order (weigh compares the whole tie order). */
        for (int32_t visit = -1; visit < m; visit++) {
            const int32_t b = visit < 0 ? lightest : visit;
            if (b == a || (visit >= 0 && b == lightest))
                continue;
            const float b_load = s->load[b];
            /* Every trade with B has new loads summing to a_load + b_load
             * before rounding, so its peak is at least their half, and
             * rounding to float cannot take it below a float under that
             * half. The margin covers the double's own rounding. B cannot
             * reach the best peak so far when that half is above it. */
            const double floor_b = (0.5 * (double)a_load + 0.5 * (double)b_load) * (1.0 - 0x1p-40);
            const float best_peak = one.peak < two.peak ? one.peak : two.peak;
            if (floor_b > (double)best_peak)
                continue;
            const float *t_b = s->t + b * k;
            weigh(a_load, b_load, b, t_a, k, t_b, k, &one);
            if (pairs > 0) {
                pair_sums(t_b, s, pairs, s->b_pairs);
                weigh(a_load, b_load, b, s->a_pairs, pairs, s->b_pairs, pairs, &two);
            }
        }
        /* One-for-one trades come first in the trade order. */
        const int two_for_two = two.b >= 0 && (one.b < 0 || two.peak < one.peak);
        const refine_best *trade = two_for_two ? &two : &one;
        if (trade->b < 0 || !(a_load - trade->peak > tol))
            break;
        const refine_best chosen = *trade;
        apply_trade(s, k, a, &chosen, two_for_two);
        const int32_t b = chosen.b;
        const float new_a = gpu_load(s->t + a * k, k), new_b = gpu_load(s->t + b * k, k);
        /* The peak was an estimate; the recomputed loads decide (SPEC 10.3
         * step 4), so refine never raises a row's maximum. */
        if ((new_a > new_b ? new_a : new_b) >= a_load) {
            apply_trade(s, k, a, &chosen, two_for_two);
            break;
        }
        s->load[a] = new_a;
        s->load[b] = new_b;
    }

    for (int32_t g = 0; g < m; g++)
        for (int32_t r = 0; r < k; r++) {
            const int32_t q = s->content[g * k + r];
            pack_of[q] = g;
            rank_of[q] = r;
        }
}

eplb_status eplb_cpu_refine(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs, k = sp->per_pack;
    if (job->refine <= 0 || k <= 1 || m <= 1)
        return EPLB_OK;
    const size_t pairs = (size_t)k * (size_t)(k - 1) / 2;
    int failed = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(sp->rows * (int64_t)n))
    {
        refine_scratch s;
        s.content = malloc((size_t)n * sizeof *s.content);
        s.t = malloc((size_t)n * sizeof *s.t);
        s.load = malloc((size_t)m * sizeof *s.load);
        s.a_pairs = malloc((pairs + 1) * sizeof *s.a_pairs);
        s.b_pairs = malloc((pairs + 1) * sizeof *s.b_pairs);
        s.pair_lo = malloc((pairs + 1) * sizeof *s.pair_lo);
        s.pair_hi = malloc((pairs + 1) * sizeof *s.pair_hi);
        const int ok = s.content && s.t && s.load && s.a_pairs && s.b_pairs && s.pair_lo &&
                       s.pair_hi;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        } else {
            int32_t i = 0;
            for (int32_t lo = 0; lo < k; lo++)
                for (int32_t hi = lo + 1; hi < k; hi++, i++) {
                    s.pair_lo[i] = lo;
                    s.pair_hi[i] = hi;
                }
        }
        /* Every thread takes part in the loop (a worksharing loop must be met
         * by all); one without scratch skips its rows, and the call fails. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t x = 0; x < sp->rows; x++)
            if (ok)
                refine_row(job, x, &s);
        free(s.content);
        free(s.t);
        free(s.load);
        free(s.a_pairs);
        free(s.b_pairs);
        free(s.pair_lo);
        free(s.pair_hi);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                                  "cannot allocate the refine search's scratch (%d slots a row)",
                                  (int)n);
    return EPLB_OK;
}
