/* Random valid planning problems (random_case.h). */
#include "random_case.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

const char *const eplb_random_kind_names[EPLB_RANDOM_KINDS] = {
    "hierarchical", "global-auto", "global-forced", "one-per-pack", "no-redundancy", "large-k"};

const char *const eplb_random_weight_names[EPLB_RANDOM_WEIGHT_PATTERNS] = {
    "workload", "small-int", "equal", "zero-layers", "fractions", "huge"};

int64_t eplb_random_range(uint64_t *state, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(eplb_workload_next(state) % (uint64_t)(hi - lo + 1));
}

static int64_t gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A multiple of gpus, at least experts, plus up to extra more slots per GPU. */
static int64_t replicas_for(uint64_t *st, int64_t experts, int64_t gpus, int64_t extra)
{
    return gpus * ((experts + gpus - 1) / gpus + eplb_random_range(st, 0, extra));
}

/* The ranges of a shape whose groups and GPUs split evenly over its nodes. */
typedef struct even_ranges {
    int64_t nodes, groups_per_node, gpus_per_node; /* each from 1 to this */
    int64_t experts_per_group_least, experts_per_group_most;
    int64_t extra_slots_per_gpu;                   /* 0 to this */
} even_ranges;

static void draw_even_shape(uint64_t *st, const even_ranges *r, eplb_shape *s)
{
    s->nodes = eplb_random_range(st, 1, r->nodes);
    s->groups = s->nodes * eplb_random_range(st, 1, r->groups_per_node);
    s->gpus = s->nodes * eplb_random_range(st, 1, r->gpus_per_node);
    s->experts = s->groups * eplb_random_range(st, r->experts_per_group_least,
                                               r->experts_per_group_most);
    s->replicas = replicas_for(st, s->experts, s->gpus, r->extra_slots_per_gpu);
}

/* The shape and policy of one kind. */
static void draw_shape(uint64_t *st, eplb_random_kind kind, eplb_shape *s, eplb_policy *policy)
{
    static const even_ranges usual = {4, 4, 4, 1, 6, 3}, large_packs = {2, 2, 2, 8, 40, 40},
                             no_redundancy = {4, 3, 3, 1, 1, 0};
    *policy = EPLB_POLICY_AUTO;
    s->layers = eplb_random_range(st, 1, 5);
    switch (kind) {
    case EPLB_RANDOM_HIERARCHICAL:
    case EPLB_RANDOM_GLOBAL_FORCED:
        draw_even_shape(st, &usual, s);
        if (kind == EPLB_RANDOM_GLOBAL_FORCED)
            *policy = EPLB_POLICY_GLOBAL;
        else if (eplb_random_range(st, 0, 1))
            *policy = EPLB_POLICY_HIERARCHICAL;
        break;
    case EPLB_RANDOM_GLOBAL_AUTO: /* groups % nodes != 0; gpus need not be a multiple of nodes */
        s->nodes = eplb_random_range(st, 2, 4);
        s->groups = s->nodes * eplb_random_range(st, 0, 2) + eplb_random_range(st, 1, s->nodes - 1);
        s->experts = s->groups * eplb_random_range(st, 1, 6);
        s->gpus = eplb_random_range(st, 1, 12);
        s->replicas = replicas_for(st, s->experts, s->gpus, 3);
        break;
    case EPLB_RANDOM_ONE_PER_PACK: {
        s->nodes = eplb_random_range(st, 1, 4);
        const int64_t per_node = eplb_random_range(st, 1, 4);
        s->gpus = s->nodes * per_node;
        s->replicas = s->gpus;
        s->groups = s->nodes;
        s->experts = s->groups * eplb_random_range(st, 1, per_node);
        break;
    }
    case EPLB_RANDOM_NO_REDUNDANCY: { /* experts a multiple of groups and of gpus */
        draw_even_shape(st, &no_redundancy, s);
        const int64_t lcm = s->gpus / gcd(s->gpus, s->groups) * s->groups;
        s->experts = lcm * eplb_random_range(st, 1, 2);
        s->replicas = s->experts;
        break;
    }
    case EPLB_RANDOM_LARGE_K:
        draw_even_shape(st, &large_packs, s);
        s->layers = eplb_random_range(st, 1, 3);
        break;
    default:
        break;
    }
}

static void fill_weights(uint64_t *st, eplb_random_weights pattern, int64_t L, int64_t E, float *w)
{
    const uint64_t seed = eplb_workload_next(st);
    switch (pattern) {
    case EPLB_RANDOM_W_WORKLOAD:
        eplb_workload_fill(w, L, E, seed, eplb_random_range(st, 0, 1) ? 7 : 0);
        break;
    case EPLB_RANDOM_W_SMALL_INT:
        for (int64_t i = 0; i < L * E; i++)
            w[i] = (float)eplb_random_range(st, 0, 3);
        break;
    case EPLB_RANDOM_W_EQUAL: {
        const float v = (float)eplb_random_range(st, 1, 1000) * 0.125f;
        for (int64_t i = 0; i < L * E; i++)
            w[i] = v;
        break;
    }
    case EPLB_RANDOM_W_ZERO_LAYERS: {
        static const float values[] = {0.0f, 1.0f, 2.0f, 3.0f, 5.0f, 0.5f};
        const int64_t distinct = eplb_random_range(st, 1, 6);
        for (int64_t l = 0; l < L; l++) /* layers 0, 2, 4...: idle */
            for (int64_t e = 0; e < E; e++)
                w[l * E + e] = l % 2 == 0 ? 0.0f : values[eplb_random_range(st, 0, distinct - 1)];
        break;
    }
    case EPLB_RANDOM_W_FRACTIONS:
        for (int64_t i = 0; i < L * E; i++) {
            const int64_t r = eplb_random_range(st, 0, 9);
            w[i] = r == 0 ? -0.0f : r == 1 ? 1e-40f /* sub-normal */
                 : (float)eplb_random_range(st, 1, 1 << 20) / 3.0f;
        }
        break;
    case EPLB_RANDOM_W_HUGE: /* pack sums reach infinity, and swap gains turn NaN */
        for (int64_t i = 0; i < L * E; i++) {
            const uint64_t r = eplb_workload_next(st);
            w[i] = (r & 3) == 0 ? FLT_MAX : (r & 3) == 1 ? FLT_MAX / (float)(2 + (r >> 8) % 7)
                                                         : (float)((r >> 8) % 1000);
        }
        break;
    default:
        break;
    }
}

eplb_status eplb_random_case_build(uint64_t *state, eplb_random_kind kind,
                                   eplb_random_weights weights, eplb_random_case *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)kind >= EPLB_RANDOM_KINDS || (unsigned)weights >= EPLB_RANDOM_WEIGHT_PATTERNS)
        return EPLB_ERR_INVALID_ARGUMENT;
    eplb_random_case c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.weights = weights;
    eplb_options_init(&c.options);
    eplb_shape *s = &c.shape;
    draw_shape(state, kind, s, &c.options.policy);
    c.weight = malloc((size_t)(s->layers * s->experts) * sizeof *c.weight);
    if (!c.weight)
        return EPLB_ERR_OUT_OF_MEMORY;
    fill_weights(state, weights, s->layers, s->experts, c.weight);
    static const char *const policies[] = {"auto", "hierarchical", "global"};
    snprintf(c.name, sizeof c.name, "%s/%s-L%lldE%lldR%lldG%lldN%lldP%lld-%s",
             eplb_random_kind_names[kind], eplb_random_weight_names[weights], (long long)s->layers,
             (long long)s->experts, (long long)s->replicas, (long long)s->groups,
             (long long)s->nodes, (long long)s->gpus, policies[c.options.policy]);
    *out = c;
    return EPLB_OK;
}

eplb_status eplb_random_case_make(uint64_t seed, uint64_t index, eplb_random_case *out)
{
    uint64_t st = seed ^ 0x6A09E667F3BCC909ULL;
    eplb_workload_next(&st);
    st ^= (index + 1) * 0xD1B54A32D192ED03ULL;
    eplb_workload_next(&st);
    const eplb_random_kind kind = (eplb_random_kind)(index % EPLB_RANDOM_KINDS);
    const eplb_random_weights weights =
        (eplb_random_weights)(index / EPLB_RANDOM_KINDS % EPLB_RANDOM_WEIGHT_PATTERNS);
    eplb_status status = eplb_random_case_build(&st, kind, weights, out);
    if (status != EPLB_OK)
        return status;
    eplb_options *o = &out->options;
    o->candidates = (int32_t)eplb_random_range(&st, 1, 16);
    o->iterations = (int32_t)eplb_random_range(&st, 0, 30);
    o->seed = eplb_random_range(&st, 0, 1) ? eplb_workload_next(&st)
                                           : (uint64_t)eplb_random_range(&st, 0, 9);
    static const float noises[] = {0.0f, 0.2f, 0.5f, 1.0f, 2.0f};
    static const float tolerances[] = {1e-5f, 0.0f, 1e-3f, 0.5f};
    o->noise = noises[eplb_random_range(&st, 0, 4)];
    o->tolerance = tolerances[eplb_random_range(&st, 0, 3)];
    char name[sizeof out->name];
    snprintf(name, sizeof name, "random-%llu-%s", (unsigned long long)index, out->name);
    memcpy(out->name, name, sizeof name);
    return EPLB_OK;
}

void eplb_random_case_free(eplb_random_case *c)
{
    if (!c)
        return;
    free(c->weight);
    memset(c, 0, sizeof *c);
}
