/* The distinct stage (SPEC 11.3 cap, 11.4 repair) on the cpu: after the
 * packing of slots to GPUs, no expert keeps more replicas in a row than the
 * row has GPUs, and no GPU holds an expert twice. A row per OpenMP
 * iteration; rows are independent, so the plan does not depend on the
 * thread count.
 *
 * A row is x = l*N + n (the global policy has N == 1). Its experts are the
 * node-major items j = 0..M-1 of the replicate stage (logical expert
 * mlog2log[l][n*M + j]), and its slots the replicate stage's q = 0..RN-1,
 * placed at GPU pack_of[q], position rank_of[q]. The cap rewrites the freed
 * slots' item and replica rank (phy2mlog, phyrank), the counts (mlogcnt) and
 * the slot loads, so that assemble, refine and the outputs see the capped
 * plan; the repair moves slots between GPUs through pack_of and rank_of. */
#include <stdlib.h>

#include "cpu_runtime.h"
#include "cpu_stages.h"

/* Per-thread scratch for one row: the integer arrays in one allocation from
 * content, the float ones in another from t. */
typedef struct distinct_scratch {
    int32_t *content; /* [n] the row's slot at GPU a's position r, at a*k + r */
    int32_t *item_at; /* [n] the item held there */
    float *t;         /* [n] the slot load there */
    float *load;      /* [m] each GPU's load */
    int32_t *count;   /* [M] the capped counts c[j] while the cap hands out slots */
    int32_t *seen;    /* [M] the GPU + 1 that last marked item j (first-duplicate scan) */
} distinct_scratch;

/* Returns 0 where an allocation failed; distinct_scratch_free frees either way. */
static int distinct_scratch_alloc(distinct_scratch *s, int32_t n, int32_t m, int64_t M)
{
    s->content = malloc((2 * (size_t)n + 2 * (size_t)M) * sizeof *s->content);
    s->t = malloc(((size_t)n + (size_t)m) * sizeof *s->t);
    if (!s->content || !s->t)
        return 0;
    s->item_at = s->content + n;
    s->count = s->item_at + n;
    s->seen = s->count + M;
    s->load = s->t + n;
    return 1;
}

static void distinct_scratch_free(distinct_scratch *s)
{
    free(s->content);
    free(s->t);
}

/* SPEC 11.3 on row x: every item keeps at most m replicas; each slot of
 * replica rank >= m, in slot order, goes to the item below m with the
 * largest weight / count (ties: the lowest logical expert). Returns the
 * number of slots freed; with none the row is left as it was. */
static int32_t cap_row(const eplb_plan_job *job, int64_t x, distinct_scratch *s)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs;
    const int64_t M = job->node_experts, E = job->experts, N = job->nodes;
    int32_t *phy2mlog = (int32_t *)job->phy2mlog + x * n, *phyrank = (int32_t *)job->phyrank + x * n;
    int32_t *mlogcnt = (int32_t *)job->mlogcnt + x * M;
    const float *node_weight = (const float *)job->node_weight + x * M;
    /* Row x's items are the node's M experts, at mlog2log[l*E + n*M + j]. */
    const int32_t *mlog2log = (const int32_t *)job->mlog2log + (x / N) * E + (x % N) * M;

    int32_t freed = 0;
    for (int32_t i = 0; i < n; i++)
        freed += phyrank[s->content[i]] >= m;
    if (freed == 0)
        return 0;
    for (int64_t j = 0; j < M; j++)
        s->count[j] = mlogcnt[j] < m ? mlogcnt[j] : m;
    for (int32_t i = 0; i < n; i++) {
        const int32_t q = s->content[i];
        if (phyrank[q] < m)
            continue;
        int64_t best = -1;
        float best_key = 0.0f;
        for (int64_t j = 0; j < M; j++) {
            if (s->count[j] >= m)
                continue;
            const float key = node_weight[j] / (float)s->count[j];
            if (best < 0 || key > best_key || (key == best_key && mlog2log[j] < mlog2log[best])) {
                best = j;
                best_key = key;
            }
        }
        /* SPEC 11.2, checked by the planner, leaves an item below the cap
         * for every freed slot: a row has at least k items, so m * M >= n. */
        phy2mlog[q] = (int32_t)best;
        phyrank[q] = s->count[best]++;
    }
    for (int64_t j = 0; j < M; j++)
        mlogcnt[j] = s->count[j];
    eplb_cpu_slot_loads_row(job, x);
    return freed;
}

/* The first slot (a*k + r) from GPU `from` on whose item also sits at a lower
 * position of its GPU, or -1. seen[] must hold no mark of these GPUs. */
static int32_t first_duplicate(const int32_t *item_at, int32_t from, int32_t m, int32_t k,
                               int32_t *seen)
{
    for (int32_t a = from; a < m; a++)
        for (int32_t r = 0; r < k; r++) {
            const int32_t j = item_at[a * k + r];
            if (seen[j] == a + 1)
                return a * k + r;
            seen[j] = a + 1;
        }
    return -1;
}

/* How many of GPU g's k slots hold item j. */
static int32_t copies_on(const int32_t *item_at, int32_t g, int32_t k, int32_t j)
{
    int32_t copies = 0;
    for (int32_t r = 0; r < k; r++)
        copies += item_at[g * k + r] == j;
    return copies;
}

/* SPEC 11.4 on row x: while a GPU holds an item twice, its first repeat
 * exchanges places with the partner slot that keeps the larger of the two
 * GPU loads lowest. Returns the number of exchanges. */
static int32_t repair_row(const eplb_plan_job *job, distinct_scratch *s)
{
    int32_t *item_at = s->item_at;
    float *t = s->t;
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t m = sp->packs, k = sp->per_pack;
    const int64_t M = job->node_experts;
    for (int64_t j = 0; j < M; j++)
        s->seen[j] = 0;
    int32_t exchanges = 0;
    int32_t from = 0;
    for (;;) {
        const int32_t dup = first_duplicate(item_at, from, m, k, s->seen);
        if (dup < 0)
            return exchanges;
        const int32_t a = dup / k, e = item_at[dup];
        /* The GPUs before a hold no repeat, and an exchange leaves them
         * without one (a partner before a gains e, which it lacked, and
         * gives away an item that a lacks or that it held once); so the
         * next scan starts at a, with a's marks cleared. */
        for (int32_t r = 0; r < k; r++)
            s->seen[item_at[a * k + r]] = 0;
        from = a;
        int32_t best = -1;
        float best_peak = 0.0f;
        for (int32_t b = 0; b < m; b++) {
            if (b == a || copies_on(item_at, b, k, e) > 0)
                continue;
            for (int32_t r = 0; r < k; r++) {
                const int32_t u = b * k + r, f = item_at[u];
                if (copies_on(item_at, a, k, f) > 0 && copies_on(item_at, b, k, f) < 2)
                    continue;
                const float d = t[dup] - t[u];
                const float new_a = s->load[a] - d, new_b = s->load[b] + d;
                /* The larger of the two, new_a unless new_b is greater. */
                const float peak = new_b > new_a ? new_b : new_a;
                if (best < 0 || peak < best_peak) {
                    best = u;
                    best_peak = peak;
                }
            }
        }
        if (best < 0)
            return -1; /* impossible after the cap (SPEC 11.4); reported as a bug */
        const int32_t b = best / k;
        const int32_t q = s->content[dup];
        s->content[dup] = s->content[best];
        s->content[best] = q;
        const int32_t j = item_at[dup];
        item_at[dup] = item_at[best];
        item_at[best] = j;
        const float load = t[dup];
        t[dup] = t[best];
        t[best] = load;
        s->load[a] = eplb_cpu_gpu_load(t + a * k, k);
        s->load[b] = eplb_cpu_gpu_load(t + b * k, k);
        exchanges++;
    }
}

/* The row's slot loads and GPU loads in position order, from content. */
static void weigh_row(const eplb_plan_job *job, int64_t x, distinct_scratch *s)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs, k = sp->per_pack;
    const float *slot_load = (const float *)job->slot_load + x * n;
    for (int32_t i = 0; i < n; i++)
        s->t[i] = slot_load[s->content[i]];
    for (int32_t g = 0; g < m; g++)
        s->load[g] = eplb_cpu_gpu_load(s->t + g * k, k);
}

/* Cap and repair of row x; records whether either changed the row, and the
 * row's heaviest GPU load before them, for the restore (SPEC 11.5). Returns
 * 0, or -1 if the repair found no partner (a bug). */
static int distinct_row(const eplb_plan_job *job, int64_t x, distinct_scratch *s)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs, k = sp->per_pack;
    int32_t *pack_of = (int32_t *)sp->pack_of + x * n, *rank_of = (int32_t *)sp->rank_of + x * n;
    const int32_t *phy2mlog = (const int32_t *)job->phy2mlog + x * n;

    for (int32_t q = 0; q < n; q++)
        s->content[pack_of[q] * k + rank_of[q]] = q;
    weigh_row(job, x, s);
    float seed_max = s->load[0];
    for (int32_t g = 1; g < m; g++)
        seed_max = s->load[g] > seed_max ? s->load[g] : seed_max;
    ((float *)job->row_seed_max)[x] = seed_max;

    const int32_t freed = cap_row(job, x, s);
    if (freed > 0)
        weigh_row(job, x, s);
    for (int32_t i = 0; i < n; i++)
        s->item_at[i] = phy2mlog[s->content[i]];
    const int32_t exchanges = repair_row(job, s);
    if (exchanges < 0)
        return -1;
    ((int32_t *)job->row_changed)[x] = freed > 0 || exchanges > 0;
    if (exchanges > 0)
        for (int32_t i = 0; i < n; i++) {
            pack_of[s->content[i]] = i / k;
            rank_of[s->content[i]] = i % k;
        }
    return 0;
}

eplb_status eplb_cpu_distinct(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs;
    const int64_t M = job->node_experts;
    int failed_alloc = 0, failed_repair = 0;
#pragma omp parallel if (sp->rows > 1 && EPLB_CPU_WORTH_THREADS(sp->rows * (int64_t)n))
    {
        distinct_scratch s;
        const int ok = distinct_scratch_alloc(&s, n, m, M);
        if (!ok) {
#pragma omp atomic write
            failed_alloc = 1;
        }
        /* Every thread takes part in the loop (a worksharing loop must be met
         * by all); one without scratch skips its rows, and the call fails. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t x = 0; x < sp->rows; x++)
            if (ok && distinct_row(job, x, &s) != 0) {
#pragma omp atomic write
                failed_repair = 1;
            }
        distinct_scratch_free(&s);
    }
    if (failed_alloc)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                                  "cannot allocate the distinct stage's scratch (%d slots a row)",
                                  (int)n);
    if (failed_repair)
        return eplb_backend_error(backend, EPLB_ERR_INTERNAL,
                                  "the distinct repair found a GPU repeat with no partner slot, "
                                  "which docs/spec.md section 11.4 rules out after the cap");
    return EPLB_OK;
}
