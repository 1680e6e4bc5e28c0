/* The distinct stage (SPEC 11.3 cap, 11.4 repair) on the device: after the
 * packing of slots to GPUs, no expert keeps more replicas in a row than the
 * row has GPUs, and no GPU holds an expert twice. Both are short sequential
 * loops over one row, so one thread runs a row, in the operation order of
 * the cpu backend (backends/cpu/cpu_distinct.c).
 *
 * A row is x = l*N + n (the global policy has N == 1). Its experts are the
 * node-major items j = 0..M-1 of the replicate stage, and its slots the
 * replicate stage's q = 0..RN-1, placed at GPU pack_of[q], position
 * rank_of[q]. The cap rewrites the freed slots' item and replica rank
 * (phy2mlog, phyrank), the counts (mlogcnt) and the row's slot loads; the
 * repair moves slots between GPUs through pack_of and rank_of.
 *
 * The per-row functions are __host__ __device__, so that a program on the
 * host can run them on the cpu backend's buffers and compare the plans with
 * the cpu backend's without a GPU. Their float operations are plain
 * operators: the module is compiled without contraction and with IEEE
 * division (EPLB_CUDA_STRICT_FP_FLAGS), and the host's float arithmetic is
 * IEEE float32 too. */
#ifndef EPLB_CUDA_DISTINCT_CUH
#define EPLB_CUDA_DISTINCT_CUH

#include "cuda_runtime.cuh"

/* One row of the job, the pointers already at the row. */
struct eplb_cuda_distinct_data {
    uint32_t n, m, k, M;       /* slots, GPUs, slots per GPU, experts of the row */
    int32_t *phy2mlog, *phyrank; /* [n] */
    int32_t *mlogcnt;          /* [M] */
    const float *node_weight;  /* [M] */
    const int32_t *mlog2log;   /* [M] the logical expert of each item (the cap's ties) */
    float *slot_load;          /* [n] */
    int32_t *pack_of, *rank_of; /* [n] */
};

/* A row's scratch, in the order distinct_state_bytes lays it out. */
struct eplb_cuda_distinct_state {
    int32_t *content; /* [n] the row's slot at GPU a's position r, at a*k + r */
    int32_t *item_at; /* [n] the item held there */
    float *t;         /* [n] the slot load there */
    float *load;      /* [m] each GPU's load */
    int32_t *count;   /* [M] the capped counts while the cap hands out slots */
    int32_t *seen;    /* [M] the GPU + 1 that last marked item j (first-duplicate scan) */
};

static inline __host__ __device__ size_t eplb_cuda_distinct_state_bytes(uint32_t n, uint32_t m,
                                                                        uint32_t M)
{
    return (size_t)4 * (3 * (size_t)n + m + 2 * (size_t)M);
}

/* The state of a row in bytes (4-byte aligned), as eplb_cuda_distinct_state_bytes counts them. */
static inline __host__ __device__ eplb_cuda_distinct_state eplb_cuda_distinct_state_at(
    void *bytes, uint32_t n, uint32_t m, uint32_t M)
{
    int32_t *words = (int32_t *)bytes;
    eplb_cuda_distinct_state s;
    s.content = words;
    s.item_at = words + n;
    s.t = (float *)(words + 2 * (size_t)n);
    s.load = (float *)(words + 3 * (size_t)n);
    s.count = words + 3 * (size_t)n + m;
    s.seen = words + 3 * (size_t)n + m + M;
    return s;
}

/* GPU g's load: its slot loads summed left to right in position order. */
static inline __host__ __device__ float eplb_cuda_distinct_gpu_load(const float *t, uint32_t g,
                                                                    uint32_t k)
{
    const float *slots = t + (size_t)g * k;
    float sum = slots[0];
    for (uint32_t r = 1; r < k; r++)
        sum = sum + slots[r];
    return sum;
}

/* The row's slot loads and GPU loads in position order, from content. */
static inline __host__ __device__ void eplb_cuda_distinct_weigh(const eplb_cuda_distinct_data &d,
                                                                eplb_cuda_distinct_state &s)
{
    for (uint32_t i = 0; i < d.n; i++)
        s.t[i] = d.slot_load[s.content[i]];
    for (uint32_t g = 0; g < d.m; g++)
        s.load[g] = eplb_cuda_distinct_gpu_load(s.t, g, d.k);
}

/* SPEC 11.3: every item keeps at most m replicas; each slot of replica rank
 * >= m, in slot order, goes to the item below m with the largest weight /
 * count (ties: the lowest logical expert), and the row's slot loads follow
 * the new counts. Returns the number of slots freed; with none the row is
 * left as it was. */
static inline __host__ __device__ uint32_t eplb_cuda_distinct_cap(const eplb_cuda_distinct_data &d,
                                                                  eplb_cuda_distinct_state &s)
{
    const uint32_t n = d.n, M = d.M;
    const int32_t m = (int32_t)d.m;
    uint32_t freed = 0;
    for (uint32_t i = 0; i < n; i++)
        freed += d.phyrank[s.content[i]] >= m;
    if (freed == 0)
        return 0;
    for (uint32_t j = 0; j < M; j++)
        s.count[j] = d.mlogcnt[j] < m ? d.mlogcnt[j] : m;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t q = s.content[i];
        if (d.phyrank[q] < m)
            continue;
        int32_t best = -1;
        float best_key = 0.0f;
        for (uint32_t j = 0; j < M; j++) {
            if (s.count[j] >= m)
                continue;
            const float key = d.node_weight[j] / (float)s.count[j];
            if (best < 0 || key > best_key ||
                (key == best_key && d.mlog2log[j] < d.mlog2log[best])) {
                best = (int32_t)j;
                best_key = key;
            }
        }
        /* SPEC 11.2, checked by the planner, leaves an item below the cap
         * for every freed slot: a row has at least k items, so m * M >= n. */
        d.phy2mlog[q] = best;
        d.phyrank[q] = s.count[best]++;
    }
    for (uint32_t j = 0; j < M; j++)
        d.mlogcnt[j] = s.count[j];
    for (uint32_t q = 0; q < n; q++) {
        const int32_t e = d.phy2mlog[q];
        d.slot_load[q] = d.node_weight[e] / (float)d.mlogcnt[e];
    }
    return freed;
}

/* The first slot (a*k + r) from GPU `from` on whose item also sits at a lower
 * position of its GPU, or -1. seen[] must hold no mark of these GPUs. */
static inline __host__ __device__ int32_t eplb_cuda_first_duplicate(const int32_t *item_at,
                                                                    uint32_t from, uint32_t m,
                                                                    uint32_t k, int32_t *seen)
{
    for (uint32_t a = from; a < m; a++)
        for (uint32_t r = 0; r < k; r++) {
            const int32_t j = item_at[a * k + r];
            if (seen[j] == (int32_t)a + 1)
                return (int32_t)(a * k + r);
            seen[j] = (int32_t)a + 1;
        }
    return -1;
}

/* How many of GPU g's k slots hold item j. */
static inline __host__ __device__ uint32_t eplb_cuda_copies_on(const int32_t *item_at, uint32_t g,
                                                               uint32_t k, int32_t j)
{
    uint32_t copies = 0;
    for (uint32_t r = 0; r < k; r++)
        copies += item_at[g * k + r] == j;
    return copies;
}

/* Exchanges the places i and j of the row's state (slot, item, load). */
static inline __host__ __device__ void eplb_cuda_distinct_exchange(eplb_cuda_distinct_state &s,
                                                                   uint32_t i, uint32_t j)
{
    const int32_t q = s.content[i];
    s.content[i] = s.content[j];
    s.content[j] = q;
    const int32_t e = s.item_at[i];
    s.item_at[i] = s.item_at[j];
    s.item_at[j] = e;
    const float t = s.t[i];
    s.t[i] = s.t[j];
    s.t[j] = t;
}

/* SPEC 11.4: while a GPU holds an item twice, its first repeat exchanges
 * places with the partner slot that keeps the larger of the two GPU loads
 * lowest (ties: the lowest slot). Returns the number of exchanges, or -1
 * when a repeat has no partner, which the cap rules out. */
static inline __host__ __device__ int32_t eplb_cuda_distinct_repair(
    const eplb_cuda_distinct_data &d, eplb_cuda_distinct_state &s)
{
    const uint32_t m = d.m, k = d.k;
    int32_t *item_at = s.item_at;
    for (uint32_t j = 0; j < d.M; j++)
        s.seen[j] = 0;
    int32_t exchanges = 0;
    uint32_t from = 0;
    for (;;) {
        const int32_t dup = eplb_cuda_first_duplicate(item_at, from, m, k, s.seen);
        if (dup < 0)
            return exchanges;
        const uint32_t a = (uint32_t)dup / k;
        const int32_t e = item_at[dup];
        /* The GPUs before a hold no repeat, and an exchange leaves them
         * without one (a partner before a gains e, which it lacked, and
         * gives away an item that a lacks or that it held once); so the
         * next scan starts at a, with a's marks cleared. */
        for (uint32_t r = 0; r < k; r++)
            s.seen[item_at[a * k + r]] = 0;
        from = a;
        int32_t best = -1;
        float best_peak = 0.0f;
        for (uint32_t b = 0; b < m; b++) {
            if (b == a || eplb_cuda_copies_on(item_at, b, k, e) > 0)
                continue;
            for (uint32_t r = 0; r < k; r++) {
                const uint32_t u = b * k + r;
                const int32_t f = item_at[u];
                if (eplb_cuda_copies_on(item_at, a, k, f) > 0 &&
                    eplb_cuda_copies_on(item_at, b, k, f) < 2)
                    continue;
                const float diff = s.t[dup] - s.t[u];
                const float new_a = s.load[a] - diff, new_b = s.load[b] + diff;
                /* The larger of the two, new_a unless new_b is greater. */
                const float peak = new_b > new_a ? new_b : new_a;
                if (best < 0 || peak < best_peak) {
                    best = (int32_t)u;
                    best_peak = peak;
                }
            }
        }
        if (best < 0)
            return -1;
        eplb_cuda_distinct_exchange(s, (uint32_t)dup, (uint32_t)best);
        s.load[a] = eplb_cuda_distinct_gpu_load(s.t, a, k);
        s.load[(uint32_t)best / k] = eplb_cuda_distinct_gpu_load(s.t, (uint32_t)best / k, k);
        exchanges++;
    }
}

/* Cap and repair of one row; writes whether either changed the row and the
 * row's heaviest GPU load before them (SPEC 11.5's M0, for the restore).
 * Returns 0, or -1 if the repair found no partner. */
static inline __host__ __device__ int eplb_cuda_distinct_row(const eplb_cuda_distinct_data &d,
                                                             eplb_cuda_distinct_state &s,
                                                             int32_t *changed, float *seed_max)
{
    const uint32_t n = d.n, m = d.m, k = d.k;
    for (uint32_t q = 0; q < n; q++)
        s.content[d.pack_of[q] * (int32_t)k + d.rank_of[q]] = (int32_t)q;
    eplb_cuda_distinct_weigh(d, s);
    float most = s.load[0];
    for (uint32_t g = 1; g < m; g++)
        most = s.load[g] > most ? s.load[g] : most;
    *seed_max = most;

    const uint32_t freed = eplb_cuda_distinct_cap(d, s);
    if (freed > 0)
        eplb_cuda_distinct_weigh(d, s);
    for (uint32_t i = 0; i < n; i++)
        s.item_at[i] = d.phy2mlog[s.content[i]];
    const int32_t exchanges = eplb_cuda_distinct_repair(d, s);
    if (exchanges < 0)
        return -1;
    *changed = freed > 0 || exchanges > 0;
    if (exchanges > 0)
        for (uint32_t i = 0; i < n; i++) {
            d.pack_of[s.content[i]] = (int32_t)(i / k);
            d.rank_of[s.content[i]] = (int32_t)(i % k);
        }
    return 0;
}

/* Row x of job as eplb_cuda_distinct_row reads it. */
static inline __host__ __device__ eplb_cuda_distinct_data eplb_cuda_distinct_data_of(
    const eplb_plan_job *job, int64_t x)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int64_t n = sp->items, M = job->node_experts, E = job->experts, N = job->nodes;
    eplb_cuda_distinct_data d;
    d.n = (uint32_t)n;
    d.m = (uint32_t)sp->packs;
    d.k = (uint32_t)sp->per_pack;
    d.M = (uint32_t)M;
    d.phy2mlog = (int32_t *)job->phy2mlog + x * n;
    d.phyrank = (int32_t *)job->phyrank + x * n;
    d.mlogcnt = (int32_t *)job->mlogcnt + x * M;
    d.node_weight = (const float *)job->node_weight + x * M;
    /* Row x's items are the node's M experts, at mlog2log[l*E + n*M + j]. */
    d.mlog2log = (const int32_t *)job->mlog2log + (x / N) * E + (x % N) * M;
    d.slot_load = (float *)job->slot_load + x * n;
    d.pack_of = (int32_t *)sp->pack_of + x * n;
    d.rank_of = (int32_t *)sp->rank_of + x * n;
    return d;
}

eplb_status eplb_cuda_distinct(eplb_backend *backend, const eplb_plan_job *job);

#endif
