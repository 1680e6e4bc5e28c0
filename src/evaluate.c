/* eplb_evaluate: the quality figures of a given placement (SPEC section 8),
 * its duplicates (section 11.1) and the balancedness bound of the policy
 * (section 12). It reads the caller's arrays only and needs no backend, so it
 * sits beside the planner and uses only the shape check of validation.c and
 * the thread's error message of context.c. Everything is computed in double
 * precision from the float32 weights. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "eplb/eplb.h"

/* Up to this many groups the hierarchical floor examines every partition of
 * the groups into nodes (SPEC 12.4): the table of group sets then has at most
 * 2^16 entries. */
#define EXACT_GROUP_LIMIT 16
/* Doubles of the per-group lists of largest replica loads: a few megabytes. */
#define LARGEST_LISTS_LIMIT (1 << 19)

/* A replica count being raised by the greedy of SPEC 12.2: the expert with the
 * largest w / c gets the next slot, ties to the lowest index. */
typedef struct replica_item {
    double key;
    int64_t index;
} replica_item;

typedef struct floor_scratch {
    replica_item *heap; /* [experts] */
    int64_t *count;     /* [experts] */
    double *members;    /* [experts]: the weights of one node's groups, in group order */
    double *group_sum;  /* [groups] */
    double *sorted_sum; /* [groups] */
    double *best;       /* [2^groups] when exact: smallest maximum per set of placed groups */
    double *node_value; /* [2^groups] when exact: the floor of a node holding a set of groups */
    double *largest;    /* [groups][RN - M + 1] when exact and small enough: each group's
                           largest replica loads, descending */
    double *weight;     /* [experts]: one layer's weights */
    int64_t *slots;     /* [experts]: slots of each expert in one layer */
    int64_t *seen_on;   /* [experts]: 1 + the last GPU seen holding the expert */
} floor_scratch;

static int heap_above(const replica_item *a, const replica_item *b)
{
    return a->key > b->key || (a->key == b->key && a->index < b->index);
}

static void heap_sift_down(replica_item *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t top = i, left = 2 * i + 1, right = left + 1;
        if (left < n && heap_above(&h[left], &h[top])) top = left;
        if (right < n && heap_above(&h[right], &h[top])) top = right;
        if (top == i)
            return;
        replica_item t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

/* rep(X, s) of SPEC 12.2: the smallest possible largest replica load when the
 * n weights share s >= n slots, each weight on at least one. Giving each
 * further slot to the largest w / c is optimal for this objective, so the
 * order among equal keys does not change the value. The greedy starts from
 * counts c0[e] = max(1, floor(w[e] (s - n) / total) - 1), which never exceed
 * the greedy's own final counts (were c0[e] above them, e's load would pass
 * total / (s - n) and the final counts, each at most 1 + w / that load, would
 * sum below s; the - 1 absorbs the rounding of the product), so at most 3n
 * further slots remain to give, however many slots there are. */
static double smallest_largest_replica(const double *w, int64_t n, int64_t slots,
                                       floor_scratch *scratch)
{
    if (n == 0)
        return 0.0;
    replica_item *heap = scratch->heap;
    int64_t *count = scratch->count;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++)
        total += w[i];
    int64_t given = 0;
    for (int64_t i = 0; i < n; i++) {
        double share = total > 0.0 ? floor(w[i] * (double)(slots - n) / total) - 1.0 : 0.0;
        count[i] = share > 1.0 ? (int64_t)share : 1;
        given += count[i];
        heap[i].key = w[i] / (double)count[i];
        heap[i].index = i;
    }
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        heap_sift_down(heap, n, i);
    for (int64_t s = given; s < slots; s++) {
        int64_t i = heap[0].index;
        count[i]++;
        heap[0].key = w[i] / (double)count[i];
        heap_sift_down(heap, n, 0);
    }
    return heap[0].key;
}

/* The k largest replica loads w[e] / c (c = 1, 2, ...) of a group's experts,
 * in descending order, into out: SPEC 12.2's greedy run for k slots. */
static void largest_replica_loads(const double *w, int64_t n, int64_t k, double *out,
                                  floor_scratch *scratch)
{
    replica_item *heap = scratch->heap;
    int64_t *count = scratch->count;
    for (int64_t i = 0; i < n; i++) {
        heap[i].key = w[i];
        heap[i].index = i;
        count[i] = 1;
    }
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        heap_sift_down(heap, n, i);
    for (int64_t j = 0; j < k; j++) {
        int64_t i = heap[0].index;
        out[j] = heap[0].key;
        count[i]++;
        heap[0].key = w[i] / (double)count[i];
        heap_sift_down(heap, n, 0);
    }
}

/* floor(X, s, g) of SPEC 12.2: some GPU carries at least the average, and the
 * largest replica load sits on some GPU. */
static double node_floor(const double *w, int64_t n, int64_t slots, int64_t gpus,
                         floor_scratch *scratch)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++)
        total += w[i];
    double even = total / (double)gpus;
    double replica = smallest_largest_replica(w, n, slots, scratch);
    return even > replica ? even : replica;
}

typedef struct floor_shape {
    int64_t experts, replicas, gpus;
    int64_t groups, nodes;   /* of the policy: 1 and 1 under the global one */
    int64_t group_size;      /* S */
    int64_t groups_per_node; /* gpn */
    int64_t node_slots;      /* RN */
    int64_t node_gpus;       /* P / N */
    int exact;               /* SPEC 12.4: every partition examined */
} floor_shape;

/* The floor of a node holding the groups of mask. Its experts' slot loads
 * are those of its groups, so rep is the (RN - M + 1)-th largest of their
 * replica loads w / c (the greedy of SPEC 12.2 gives the RN - M spare slots
 * to the largest ones, and the largest left is its answer): taken from each
 * group's list of its largest ones, made once per layer, when the lists fit;
 * else the node's experts are collected and replicated. */
static double node_floor_of_groups(const double *w, uint32_t mask, const floor_shape *fs,
                                   floor_scratch *scratch)
{
    const int64_t k = fs->node_slots - fs->groups_per_node * fs->group_size + 1;
    if (!scratch->largest) {
        int64_t n = 0;
        for (int64_t g = 0; g < fs->groups; g++)
            if (mask >> g & 1u)
                for (int64_t e = g * fs->group_size; e < (g + 1) * fs->group_size; e++)
                    scratch->members[n++] = w[e];
        return node_floor(scratch->members, n, fs->node_slots, fs->node_gpus, scratch);
    }
    const double *lists[EXACT_GROUP_LIMIT];
    int64_t at[EXACT_GROUP_LIMIT], nlists = 0;
    double total = 0.0;
    for (int64_t g = 0; g < fs->groups; g++)
        if (mask >> g & 1u) {
            total += scratch->group_sum[g];
            lists[nlists] = scratch->largest + g * k;
            at[nlists++] = 0;
        }
    double kth = 0.0;
    for (int64_t j = 0; j < k; j++) {
        int64_t top = -1;
        for (int64_t i = 0; i < nlists; i++)
            if (at[i] < k && (top < 0 || lists[i][at[i]] > lists[top][at[top]]))
                top = i;
        kth = lists[top][at[top]++];
    }
    double even = total / (double)fs->node_gpus;
    return even > kth ? even : kth;
}

/* SPEC 12.4, exact: the smallest, over partitions of the groups into nodes of
 * gpn groups each, of the largest node floor. Each step completes the node
 * that holds the lowest unplaced group, so every partition is met once, and a
 * step only adds bits, so visiting the sets in increasing order sees each set
 * after every set it grows from. */
static double partition_floor(const double *w, const floor_shape *fs, floor_scratch *scratch)
{
    const int64_t G = fs->groups, gpn = fs->groups_per_node;
    const uint32_t full = (uint32_t)((1u << G) - 1u);
    for (uint32_t m = 0; m <= full; m++) {
        scratch->best[m] = INFINITY;
        scratch->node_value[m] = -1.0; /* not computed yet */
    }
    scratch->best[0] = 0.0;
    if (scratch->largest) {
        const int64_t S = fs->group_size, k = fs->node_slots - gpn * S + 1;
        for (int64_t g = 0; g < G; g++) {
            double sum = 0.0;
            for (int64_t e = g * S; e < (g + 1) * S; e++)
                sum += w[e];
            scratch->group_sum[g] = sum;
            largest_replica_loads(w + g * S, S, k, scratch->largest + g * k, scratch);
        }
    }
    int64_t free_groups[EXACT_GROUP_LIMIT], pick[EXACT_GROUP_LIMIT];
    for (uint32_t mask = 0; mask < full; mask++) {
        double so_far = scratch->best[mask];
        if (so_far == INFINITY)
            continue;
        int64_t nfree = 0;
        for (int64_t g = 0; g < G; g++)
            if (!(mask >> g & 1u))
                free_groups[nfree++] = g;
        /* The lowest free group, with each choice of gpn - 1 of the others. */
        const int64_t choose = gpn - 1, from = nfree - 1;
        for (int64_t i = 0; i < choose; i++)
            pick[i] = i;
        for (;;) {
            uint32_t node = 1u << free_groups[0];
            for (int64_t i = 0; i < choose; i++)
                node |= 1u << free_groups[1 + pick[i]];
            /* A node that cannot lower the best of the grown set is not computed. */
            double value = scratch->node_value[node];
            if (value < 0.0 && so_far < scratch->best[mask | node])
                value = scratch->node_value[node] = node_floor_of_groups(w, node, fs, scratch);
            double worst = value > so_far ? value : so_far;
            if (value >= 0.0 && worst < scratch->best[mask | node])
                scratch->best[mask | node] = worst;
            int64_t i = choose - 1;
            while (i >= 0 && pick[i] == from - choose + i)
                i--;
            if (i < 0)
                break;
            pick[i]++;
            for (int64_t j = i + 1; j < choose; j++)
                pick[j] = pick[j - 1] + 1;
        }
    }
    return scratch->best[full];
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* SPEC 12.4, the relaxation for many groups: the node holding group g also
 * holds gpn - 1 other groups, at least as heavy as the lightest others, and
 * their experts leave g's experts at most RN - (M - S) slots. */
static double relaxed_floor(const double *w, const floor_shape *fs, floor_scratch *scratch)
{
    const int64_t G = fs->groups, S = fs->group_size, gpn = fs->groups_per_node;
    const int64_t M = S * gpn;
    double total = 0.0;
    for (int64_t g = 0; g < G; g++) {
        double sum = 0.0;
        for (int64_t e = g * S; e < (g + 1) * S; e++)
            sum += w[e];
        scratch->group_sum[g] = sum;
        scratch->sorted_sum[g] = sum;
        total += sum;
    }
    qsort(scratch->sorted_sum, (size_t)G, sizeof(double), compare_double);
    double floor = total / (double)fs->gpus;
    for (int64_t g = 0; g < G; g++) {
        /* The gpn - 1 smallest sums of the other groups: skip one copy of g's own. */
        double others = 0.0;
        int skipped = 0;
        for (int64_t i = 0, taken = 0; taken < gpn - 1; i++) {
            if (!skipped && scratch->sorted_sum[i] == scratch->group_sum[g]) {
                skipped = 1;
                continue;
            }
            others += scratch->sorted_sum[i];
            taken++;
        }
        double node = (scratch->group_sum[g] + others) / (double)fs->node_gpus;
        double replica =
            smallest_largest_replica(w + g * S, S, fs->node_slots - (M - S), scratch);
        if (node > floor) floor = node;
        if (replica > floor) floor = replica;
    }
    return floor;
}

/* F[l] of SPEC 12.3 (global, or one node) and 12.4 (hierarchical). */
static double layer_floor(const double *w, const floor_shape *fs, floor_scratch *scratch)
{
    if (fs->nodes == 1)
        return node_floor(w, fs->experts, fs->replicas, fs->gpus, scratch);
    if (fs->groups_per_node == 1) {
        double floor = 0.0;
        for (int64_t g = 0; g < fs->groups; g++) {
            double node = node_floor(w + g * fs->group_size, fs->group_size, fs->node_slots,
                                     fs->node_gpus, scratch);
            if (node > floor)
                floor = node;
        }
        return floor;
    }
    if (fs->exact)
        return partition_floor(w, fs, scratch);
    return relaxed_floor(w, fs, scratch);
}

static floor_shape floor_shape_of(const eplb_shape *s, int hierarchical)
{
    floor_shape fs;
    fs.experts = s->experts;
    fs.replicas = s->replicas;
    fs.gpus = s->gpus;
    fs.groups = hierarchical ? s->groups : 1;
    fs.nodes = hierarchical ? s->nodes : 1;
    fs.group_size = fs.experts / fs.groups;
    fs.groups_per_node = fs.groups / fs.nodes;
    fs.node_slots = fs.replicas / fs.nodes;
    fs.node_gpus = fs.gpus / fs.nodes;
    fs.exact = fs.nodes == 1 || fs.groups_per_node == 1 || fs.groups <= EXACT_GROUP_LIMIT;
    return fs;
}

void eplb_evaluation_init(eplb_evaluation *evaluation)
{
    if (!evaluation)
        return;
    memset(evaluation, 0, sizeof *evaluation);
    evaluation->struct_size = (uint32_t)sizeof *evaluation;
}

/* Checks every input before anything is written; on failure the thread's
 * error names the input and the rule. */
static eplb_status check_inputs(const float *weight, const eplb_shape *shape, eplb_policy policy,
                                const int64_t *phy2log, const eplb_evaluation *result,
                                int *hierarchical)
{
    if (!weight || !shape || !phy2log || !result)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                "eplb_evaluate: weight, shape, phy2log and result must be given");
    if (result->struct_size < sizeof(eplb_evaluation))
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                "eplb_evaluate: result->struct_size is %u, expected at least %zu: "
                                "fill the result with eplb_evaluation_init first",
                                (unsigned)result->struct_size, sizeof(eplb_evaluation));
    const char *why = NULL;
    if (eplb_shape_check(shape, &why) != EPLB_OK)
        return eplb_thread_fail(EPLB_ERR_INVALID_SHAPE, "invalid shape: %s", why);
    if (policy != EPLB_POLICY_AUTO && policy != EPLB_POLICY_HIERARCHICAL &&
        policy != EPLB_POLICY_GLOBAL)
        return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                "policy (%d) must be EPLB_POLICY_AUTO, _HIERARCHICAL or _GLOBAL",
                                (int)policy);
    int divides = shape->groups % shape->nodes == 0;
    if (policy == EPLB_POLICY_HIERARCHICAL && !divides)
        return eplb_thread_fail(EPLB_ERR_POLICY,
                                "hierarchical policy needs groups (%lld) divisible by nodes (%lld)",
                                (long long)shape->groups, (long long)shape->nodes);
    *hierarchical = policy != EPLB_POLICY_GLOBAL && divides;
    if (*hierarchical && shape->gpus % shape->nodes != 0)
        return eplb_thread_fail(EPLB_ERR_INVALID_SHAPE,
                                "invalid shape: gpus (%lld) must be divisible by nodes (%lld) "
                                "for the hierarchical policy",
                                (long long)shape->gpus, (long long)shape->nodes);
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas;
    for (int64_t i = 0; i < L * E; i++) {
        float w = weight[i];
        if (!(w >= 0.0f) || isinf(w))
            return eplb_thread_fail(EPLB_ERR_INVALID_WEIGHT,
                                    "weight[%lld][%lld] = %g: weights must be finite and >= 0",
                                    (long long)(i / E), (long long)(i % E), (double)w);
    }
    for (int64_t i = 0; i < L * R; i++)
        if (phy2log[i] < 0 || phy2log[i] >= E)
            return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                    "phy2log[%lld][%lld] = %lld is not an expert (0..%lld)",
                                    (long long)(i / R), (long long)(i % R), (long long)phy2log[i],
                                    (long long)(E - 1));
    return EPLB_OK;
}

static void free_scratch(floor_scratch *s)
{
    free(s->heap);
    free(s->count);
    free(s->members);
    free(s->group_sum);
    free(s->sorted_sum);
    free(s->best);
    free(s->node_value);
    free(s->largest);
    free(s->weight);
    free(s->slots);
    free(s->seen_on);
}

eplb_status eplb_evaluate(const float *weight, const eplb_shape *shape, eplb_policy policy,
                          const int64_t *phy2log, eplb_evaluation *result, double *max_load,
                          double *mean_load, double *layer_floor_out)
{
    int hierarchical = 0;
    eplb_status status = check_inputs(weight, shape, policy, phy2log, result, &hierarchical);
    if (status != EPLB_OK)
        return status;
    const int64_t L = shape->layers, E = shape->experts, R = shape->replicas, P = shape->gpus;
    const int64_t spg = R / P;
    const floor_shape fs = floor_shape_of(shape, hierarchical);
    const floor_shape global = floor_shape_of(shape, 0);
    const int dp = fs.nodes > 1 && fs.groups_per_node > 1 && fs.exact;

    floor_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    scratch.heap = malloc((size_t)E * sizeof *scratch.heap);
    scratch.count = malloc((size_t)E * sizeof *scratch.count);
    scratch.members = malloc((size_t)E * sizeof *scratch.members);
    scratch.group_sum = malloc((size_t)fs.groups * sizeof(double));
    scratch.sorted_sum = malloc((size_t)fs.groups * sizeof(double));
    if (dp) {
        scratch.best = malloc(((size_t)1 << fs.groups) * sizeof(double));
        scratch.node_value = malloc(((size_t)1 << fs.groups) * sizeof(double));
        /* The lists hold the spare slots of a node per group: kept to a few
         * megabytes, beyond which each node's experts are replicated instead. */
        const int64_t k = fs.node_slots - fs.groups_per_node * fs.group_size + 1;
        if (fs.groups * k <= LARGEST_LISTS_LIMIT)
            scratch.largest = malloc((size_t)(fs.groups * k) * sizeof(double));
    }
    scratch.weight = malloc((size_t)E * sizeof *scratch.weight);
    scratch.slots = malloc((size_t)E * sizeof *scratch.slots);
    scratch.seen_on = malloc((size_t)E * sizeof *scratch.seen_on);
    if (!scratch.heap || !scratch.count || !scratch.members || !scratch.group_sum ||
        !scratch.sorted_sum || (dp && (!scratch.best || !scratch.node_value)) ||
        (dp && !scratch.largest &&
         fs.groups * (fs.node_slots - fs.groups_per_node * fs.group_size + 1) <=
             LARGEST_LISTS_LIMIT) ||
        !scratch.weight || !scratch.slots || !scratch.seen_on) {
        free_scratch(&scratch);
        return eplb_thread_fail(EPLB_ERR_OUT_OF_MEMORY,
                                "eplb_evaluate: cannot allocate scratch for %lld experts",
                                (long long)E);
    }
    int64_t *count = scratch.slots, *seen_on = scratch.seen_on;
    double *w = scratch.weight;

    /* Every expert must have a slot in every layer, else its load is nowhere. */
    for (int64_t l = 0; l < L; l++) {
        memset(count, 0, (size_t)E * sizeof *count);
        for (int64_t q = 0; q < R; q++)
            count[phy2log[l * R + q]]++;
        for (int64_t e = 0; e < E; e++)
            if (count[e] == 0) {
                free_scratch(&scratch);
                return eplb_thread_fail(EPLB_ERR_INVALID_ARGUMENT,
                                        "phy2log layer %lld has no slot for expert %lld: every "
                                        "expert needs at least one",
                                        (long long)l, (long long)e);
            }
    }

    eplb_evaluation r;
    memset(&r, 0, sizeof r);
    r.struct_size = result->struct_size < sizeof r ? result->struct_size : (uint32_t)sizeof r;
    r.policy = hierarchical ? EPLB_POLICY_HIERARCHICAL : EPLB_POLICY_GLOBAL;
    r.bound_exact = fs.exact;
    r.balancedness_min_layer = 1.0;
    double weight_mean_sum = 0.0, global_bound = 0.0;
    for (int64_t l = 0; l < L; l++) {
        const int64_t *row = phy2log + l * R;
        double total = 0.0;
        for (int64_t e = 0; e < E; e++) {
            w[e] = (double)weight[l * E + e];
            total += w[e];
            count[e] = 0;
            seen_on[e] = 0;
        }
        for (int64_t q = 0; q < R; q++)
            count[row[q]]++;
        double sum = 0.0, worst = 0.0;
        for (int64_t g = 0; g < P; g++) {
            double load = 0.0;
            for (int64_t q = g * spg; q < (g + 1) * spg; q++) {
                int64_t e = row[q];
                load += w[e] / (double)count[e];
                if (seen_on[e] == g + 1)
                    r.duplicates++;
                seen_on[e] = g + 1;
            }
            sum += load;
            if (load > worst)
                worst = load;
        }
        double mean = sum / (double)P;
        double layer_balance = worst > 0.0 ? mean / worst : 1.0;
        if (layer_balance < r.balancedness_min_layer) {
            r.balancedness_min_layer = layer_balance;
            r.min_layer = l;
        }
        double floor = layer_floor(w, &fs, &scratch);
        double global_floor = hierarchical ? layer_floor(w, &global, &scratch) : floor;
        r.mean_load_sum += mean;
        r.max_load_sum += worst;
        r.bound += floor;
        global_bound += global_floor;
        weight_mean_sum += total / (double)P;
        if (max_load)
            max_load[l] = worst;
        if (mean_load)
            mean_load[l] = mean;
        if (layer_floor_out)
            layer_floor_out[l] = floor;
    }
    free_scratch(&scratch);
    /* The bound's numerator is the weights' mean (SPEC 12.1), which equals the
     * plan's mean GPU load up to rounding. */
    r.balancedness = r.max_load_sum > 0.0 ? r.mean_load_sum / r.max_load_sum : 1.0;
    r.balancedness_bound = r.bound > 0.0 ? weight_mean_sum / r.bound : 1.0;
    r.global_balancedness_bound = global_bound > 0.0 ? weight_mean_sum / global_bound : 1.0;
    r.bound_gap = r.bound > 0.0 ? r.max_load_sum / r.bound - 1.0 : 0.0;
    memcpy(result, &r, r.struct_size);
    return EPLB_OK;
}
