/* The plan checker (plan_check.h). */
#include "plan_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eplb_plan_is_hierarchical(const eplb_shape *s, eplb_policy policy)
{
    return policy != EPLB_POLICY_GLOBAL && s->groups % s->nodes == 0;
}

/* Scratch arrays of one check, sized by the shape. */
typedef struct check_scratch {
    int64_t *slots_of;       /* [E] slots holding each expert */
    int64_t *node_of;        /* [E] node of each expert's replicas, -1 before the first */
    int64_t *groups_on_node; /* [N] */
    int64_t *slot_listed;    /* [R] times each slot appears in log2phy */
    int64_t *max_ratio_of;   /* [N] expert of largest w/cnt on each node, -1 before the first */
    int64_t *min_last_of;    /* [N] expert of smallest w/(cnt-1), cnt >= 2, on each node */
} check_scratch;

#define VIOLATION(...)                               \
    do {                                             \
        snprintf(why, why_len, __VA_ARGS__);         \
        return 0;                                    \
    } while (0)

/* Counts, slots and the node rules of one layer l. */
static int check_slots(const eplb_shape *s, int64_t N, int64_t G, int64_t l, const int64_t *row,
                       const int64_t *cnt, check_scratch *k, char *why, size_t why_len)
{
    const int64_t E = s->experts, R = s->replicas, RN = R / N, S = E / G;
    int64_t sum = 0;
    for (int64_t e = 0; e < E; e++) {
        if (cnt[e] < 1 || cnt[e] > R - E + 1)
            VIOLATION("layer %lld expert %lld has logcnt %lld, outside 1..%lld", (long long)l,
                      (long long)e, (long long)cnt[e], (long long)(R - E + 1));
        sum += cnt[e];
        k->slots_of[e] = 0;
        k->node_of[e] = -1;
    }
    if (sum != R)
        VIOLATION("layer %lld logcnt sums to %lld, not R = %lld", (long long)l, (long long)sum,
                  (long long)R);
    for (int64_t q = 0; q < R; q++) {
        const int64_t e = row[q], node = q / RN;
        if (e < 0 || e >= E)
            VIOLATION("layer %lld slot %lld holds expert %lld, outside 0..%lld", (long long)l,
                      (long long)q, (long long)e, (long long)(E - 1));
        k->slots_of[e]++;
        if (k->node_of[e] >= 0 && k->node_of[e] != node)
            VIOLATION("layer %lld expert %lld has replicas on nodes %lld and %lld", (long long)l,
                      (long long)e, (long long)k->node_of[e], (long long)node);
        k->node_of[e] = node;
    }
    for (int64_t e = 0; e < E; e++)
        if (k->slots_of[e] != cnt[e])
            VIOLATION("layer %lld expert %lld fills %lld slots, logcnt %lld", (long long)l,
                      (long long)e, (long long)k->slots_of[e], (long long)cnt[e]);
    memset(k->groups_on_node, 0, (size_t)N * sizeof *k->groups_on_node);
    for (int64_t g = 0; g < G; g++) {
        for (int64_t j = 1; j < S; j++)
            if (k->node_of[g * S + j] != k->node_of[g * S])
                VIOLATION("layer %lld group %lld is split over nodes %lld and %lld", (long long)l,
                          (long long)g, (long long)k->node_of[g * S],
                          (long long)k->node_of[g * S + j]);
        k->groups_on_node[k->node_of[g * S]]++;
    }
    for (int64_t n = 0; n < N; n++)
        if (k->groups_on_node[n] != G / N)
            VIOLATION("layer %lld node %lld holds %lld groups, not %lld", (long long)l,
                      (long long)n, (long long)k->groups_on_node[n], (long long)(G / N));
    return 1;
}

/* SPEC 5 (greedy replication, float32 division): when expert j took its last
 * replica, w[j]/(cnt[j]-1) was the largest ratio on its node, and ratios only
 * fall afterwards, so on every node the largest final w[i]/cnt[i] is at most
 * the smallest such w[j]/(cnt[j]-1). Under the cap of SPEC 11.3 (cap > 0:
 * the row's GPUs) an expert at the cap takes no more replicas, so only the
 * experts below it count for the largest ratio; the rule then still holds,
 * since the cap's slots go by the same greedy choice. */
static int check_replication(const eplb_shape *s, int64_t N, int64_t l, const float *w,
                             const int64_t *cnt, int64_t cap, check_scratch *k, char *why,
                             size_t why_len)
{
    const int64_t E = s->experts;
    for (int64_t n = 0; n < N; n++)
        k->max_ratio_of[n] = k->min_last_of[n] = -1;
    for (int64_t e = 0; e < E; e++) {
        const int64_t n = k->node_of[e];
        const int64_t top = k->max_ratio_of[n], low = k->min_last_of[n];
        if (cap > 0 && cnt[e] >= cap) {
            /* at the cap: no further replica could have gone to it */
        } else if (top < 0 || w[e] / (float)cnt[e] > w[top] / (float)cnt[top])
            k->max_ratio_of[n] = e;
        if (cnt[e] >= 2 && (low < 0 || w[e] / (float)(cnt[e] - 1) < w[low] / (float)(cnt[low] - 1)))
            k->min_last_of[n] = e;
    }
    for (int64_t n = 0; n < N; n++) {
        const int64_t i = k->max_ratio_of[n], j = k->min_last_of[n];
        if (i >= 0 && j >= 0 && !(w[i] / (float)cnt[i] <= w[j] / (float)(cnt[j] - 1)))
            VIOLATION("layer %lld replication rule broken: expert %lld (w %g, cnt %lld) got a "
                      "replica while expert %lld (w %g, cnt %lld) had a larger ratio",
                      (long long)l, (long long)j, (double)w[j], (long long)cnt[j], (long long)i,
                      (double)w[i], (long long)cnt[i]);
    }
    return 1;
}

/* log2phy of one layer: each expert's own slots below logcnt, each slot once, -1 after. */
static int check_log2phy(const eplb_shape *s, int64_t l, const int64_t *row, const int64_t *cnt,
                         const int64_t *log2phy, int64_t width, check_scratch *k, char *why,
                         size_t why_len)
{
    const int64_t E = s->experts, R = s->replicas;
    memset(k->slot_listed, 0, (size_t)R * sizeof *k->slot_listed);
    for (int64_t e = 0; e < E; e++) {
        if (cnt[e] > width)
            VIOLATION("log2phy width %lld below layer %lld expert %lld's logcnt %lld",
                      (long long)width, (long long)l, (long long)e, (long long)cnt[e]);
        const int64_t *entry = log2phy + (l * E + e) * width;
        for (int64_t r = 0; r < width; r++) {
            const int64_t q = entry[r];
            if (r >= cnt[e]) {
                if (q != -1)
                    VIOLATION("layer %lld expert %lld log2phy[%lld] = %lld, expected -1 padding "
                              "after logcnt %lld", (long long)l, (long long)e, (long long)r,
                              (long long)q, (long long)cnt[e]);
                continue;
            }
            if (q < 0 || q >= R)
                VIOLATION("layer %lld expert %lld log2phy[%lld] = %lld, outside 0..%lld",
                          (long long)l, (long long)e, (long long)r, (long long)q,
                          (long long)(R - 1));
            if (row[q] != e)
                VIOLATION("layer %lld log2phy[%lld][%lld] = slot %lld, which holds expert %lld",
                          (long long)l, (long long)e, (long long)r, (long long)q,
                          (long long)row[q]);
            if (k->slot_listed[q]++)
                VIOLATION("layer %lld slot %lld appears twice in log2phy", (long long)l,
                          (long long)q);
        }
    }
    return 1; /* every slot listed at most once, and logcnt sums to R: each exactly once */
}

/* SPEC 11: no expert has more replicas than its row has GPUs, and no GPU
 * holds an expert twice (slots_of serves as each expert's last GPU + 1). */
static int check_distinct(const eplb_shape *s, int64_t l, const int64_t *row, const int64_t *cnt,
                          int64_t cap, check_scratch *k, char *why, size_t why_len)
{
    const int64_t E = s->experts, R = s->replicas, spg = R / s->gpus;
    for (int64_t e = 0; e < E; e++) {
        if (cnt[e] > cap)
            VIOLATION("layer %lld expert %lld has %lld replicas, above the %lld GPUs of its row "
                      "(distinct)", (long long)l, (long long)e, (long long)cnt[e], (long long)cap);
        k->slots_of[e] = 0;
    }
    for (int64_t q = 0; q < R; q++) {
        const int64_t e = row[q], gpu = q / spg;
        if (k->slots_of[e] == gpu + 1)
            VIOLATION("layer %lld GPU %lld holds expert %lld twice (distinct)", (long long)l,
                      (long long)gpu, (long long)e);
        k->slots_of[e] = gpu + 1;
    }
    return 1;
}

static int plan_check(const eplb_shape *s, int hierarchical, int distinct, const float *weight,
                      const int64_t *phy2log, const int64_t *logcnt, const int64_t *log2phy,
                      int64_t width, char *why, size_t why_len)
{
    const int64_t L = s->layers, E = s->experts, R = s->replicas;
    const int64_t N = hierarchical ? s->nodes : 1, G = hierarchical ? s->groups : 1;
    const int64_t cap = distinct ? s->gpus / N : 0; /* SPEC 11.3: the GPUs of a row */
    check_scratch k = {
        .slots_of = malloc((size_t)E * sizeof(int64_t)),
        .node_of = malloc((size_t)E * sizeof(int64_t)),
        .groups_on_node = malloc((size_t)N * sizeof(int64_t)),
        .slot_listed = malloc((size_t)R * sizeof(int64_t)),
        .max_ratio_of = malloc((size_t)N * sizeof(int64_t)),
        .min_last_of = malloc((size_t)N * sizeof(int64_t)),
    };
    int ok = k.slots_of && k.node_of && k.groups_on_node && k.slot_listed && k.max_ratio_of &&
             k.min_last_of;
    if (!ok)
        snprintf(why, why_len, "out of memory");
    for (int64_t l = 0; l < L && ok; l++) {
        const int64_t *row = phy2log + l * R, *cnt = logcnt + l * E;
        ok = check_slots(s, N, G, l, row, cnt, &k, why, why_len) &&
             check_replication(s, N, l, weight + l * E, cnt, cap, &k, why, why_len) &&
             (!log2phy || check_log2phy(s, l, row, cnt, log2phy, width, &k, why, why_len)) &&
             (!distinct || check_distinct(s, l, row, cnt, cap, &k, why, why_len));
    }
    free(k.slots_of);
    free(k.node_of);
    free(k.groups_on_node);
    free(k.slot_listed);
    free(k.max_ratio_of);
    free(k.min_last_of);
    return ok;
}

int eplb_plan_check(const eplb_shape *s, int hierarchical, const float *weight,
                    const int64_t *phy2log, const int64_t *logcnt, const int64_t *log2phy,
                    int64_t width, char *why, size_t why_len)
{
    return plan_check(s, hierarchical, 0, weight, phy2log, logcnt, log2phy, width, why, why_len);
}

int eplb_plan_check_options(const eplb_shape *s, const eplb_options *options, const float *weight,
                            const int64_t *phy2log, const int64_t *logcnt, const int64_t *log2phy,
                            int64_t width, char *why, size_t why_len)
{
    return plan_check(s, eplb_plan_is_hierarchical(s, options->policy), options->distinct != 0,
                      weight, phy2log, logcnt, log2phy, width, why, why_len);
}
