/* Random valid planning problems; a pure function of (seed, index). */
#include "random_case.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

static const char *const kind_names[EPLB_RANDOM_KINDS] = {
    "hierarchical", "global", "one-per-pack", "large-k", "no-redundancy", "zeros-ties"};

/* Uniform integer in lo..hi (inclusive). */
static int64_t range(uint64_t *state, int64_t lo, int64_t hi)
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

/* Replicas: a multiple of gpus, at least experts, plus up to extra_gpus more rows of slots. */
static int64_t replicas_for(int64_t experts, int64_t gpus, int64_t extra)
{
    return gpus * ((experts + gpus - 1) / gpus + extra);
}

static void hierarchical_shape(uint64_t *st, eplb_shape *s)
{
    s->nodes = range(st, 1, 4);
    s->gpus = s->nodes * range(st, 1, 4);
    s->groups = s->nodes * range(st, 1, 3);
    s->experts = s->groups * range(st, 1, 6);
    s->replicas = replicas_for(s->experts, s->gpus, range(st, 0, 2));
    s->layers = range(st, 1, 5);
}

static void fill_weights(uint64_t *st, eplb_random_case *c)
{
    const int64_t L = c->shape.layers, E = c->shape.experts;
    float *w = c->weight;
    if (c->kind == EPLB_RANDOM_ZEROS_AND_TIES) {
        static const float values[] = {0.0f, 1.0f, 2.0f, 3.0f, 5.0f, 0.5f};
        int64_t distinct = range(st, 1, 6);
        for (int64_t l = 0; l < L; l++) {
            int zero_layer = l == 0 || range(st, 0, 3) == 0;
            for (int64_t e = 0; e < E; e++)
                w[l * E + e] = zero_layer ? 0.0f : values[range(st, 0, distinct - 1)];
        }
        return;
    }
    int64_t style = range(st, 0, 4);
    if (style == 3) { /* token-count-like skew, with idle experts */
        eplb_workload_fill(w, L, E, eplb_workload_next(st), range(st, 0, 5));
        return;
    }
    if (style == 4) { /* near the float32 limit: pack sums reach infinity, swap changes NaN */
        for (int64_t i = 0; i < L * E; i++) {
            uint64_t r = eplb_workload_next(st);
            w[i] = (r & 3) == 0 ? FLT_MAX : (r & 3) == 1 ? FLT_MAX / (float)(2 + (r >> 8) % 7)
                                                         : (float)((r >> 8) % 1000);
        }
        return;
    }
    for (int64_t i = 0; i < L * E; i++) {
        uint64_t r = eplb_workload_next(st);
        if (style == 0)
            w[i] = (float)(r % 1001);                               /* small integers */
        else if (style == 1)
            w[i] = (float)(r >> 40) * (1.0f / 16777216.0f) * 1000.0f; /* fractional */
        else
            w[i] = (r & 7) == 0 ? 0.0f : (float)((r >> 8) % 50);      /* many ties and zeros */
    }
}

eplb_status eplb_random_case_make(uint64_t seed, uint64_t index, eplb_random_case *out)
{
    eplb_random_case c;
    memset(&c, 0, sizeof c);
    uint64_t st = seed ^ 0x6A09E667F3BCC909ULL;
    eplb_workload_next(&st);
    st ^= (index + 1) * 0xD1B54A32D192ED03ULL;
    eplb_workload_next(&st);

    c.kind = (eplb_random_kind)(index % EPLB_RANDOM_KINDS);
    eplb_options_init(&c.options);
    eplb_shape *s = &c.shape;
    switch (c.kind) {
    case EPLB_RANDOM_HIERARCHICAL:
    case EPLB_RANDOM_ZEROS_AND_TIES:
        hierarchical_shape(&st, s);
        c.options.policy = range(&st, 0, 1) ? EPLB_POLICY_HIERARCHICAL : EPLB_POLICY_AUTO;
        if (c.kind == EPLB_RANDOM_ZEROS_AND_TIES && s->layers == 1)
            s->layers = 2;
        break;
    case EPLB_RANDOM_GLOBAL:
        if (range(&st, 0, 2) == 0) { /* a hierarchical shape planned globally */
            hierarchical_shape(&st, s);
            c.options.policy = EPLB_POLICY_GLOBAL;
        } else {                     /* groups % nodes != 0: auto falls back to global */
            s->nodes = range(&st, 2, 4);
            s->groups = s->nodes * range(&st, 0, 2) + range(&st, 1, s->nodes - 1);
            s->experts = s->groups * range(&st, 1, 5);
            s->gpus = range(&st, 1, 8);
            s->replicas = replicas_for(s->experts, s->gpus, range(&st, 0, 2));
            s->layers = range(&st, 1, 5);
            c.options.policy = range(&st, 0, 1) ? EPLB_POLICY_GLOBAL : EPLB_POLICY_AUTO;
        }
        break;
    case EPLB_RANDOM_ONE_PER_PACK: {
        s->nodes = range(&st, 1, 4);
        int64_t per_node = range(&st, 1, 4);
        s->gpus = s->nodes * per_node;
        s->replicas = s->gpus; /* one slot per GPU */
        s->groups = s->nodes;  /* one group per node */
        s->experts = s->groups * range(&st, 1, per_node);
        s->layers = range(&st, 1, 5);
        break;
    }
    case EPLB_RANDOM_LARGE_K:
        s->nodes = 1;
        s->gpus = range(&st, 1, 2);
        s->groups = (int64_t)1 << range(&st, 0, 2);
        s->experts = s->groups * range(&st, 8, 32);
        s->replicas = replicas_for(s->experts, s->gpus, range(&st, 0, 16));
        s->layers = range(&st, 1, 2);
        break;
    case EPLB_RANDOM_NO_REDUNDANCY: {
        s->nodes = range(&st, 1, 4);
        s->gpus = s->nodes * range(&st, 1, 3);
        s->groups = s->nodes * range(&st, 1, 2);
        int64_t lcm = s->gpus / gcd(s->gpus, s->groups) * s->groups;
        s->experts = lcm * range(&st, 1, 3);
        s->replicas = s->experts;
        s->layers = range(&st, 1, 5);
        break;
    }
    default:
        break;
    }
    c.options.candidates = (int32_t)range(&st, 1, 16);
    c.options.iterations = (int32_t)range(&st, 0, 30);
    c.options.seed = range(&st, 0, 1) ? eplb_workload_next(&st) : (uint64_t)range(&st, 0, 9);
    static const float noises[] = {0.0f, 0.2f, 0.5f, 1.0f, 2.0f};
    static const float tols[] = {1e-5f, 0.0f, 1e-3f, 0.5f};
    c.options.noise = noises[range(&st, 0, 4)];
    c.options.tolerance = tols[range(&st, 0, 3)];

    c.weight = malloc((size_t)(s->layers * s->experts) * sizeof *c.weight);
    if (!c.weight) {
        memset(out, 0, sizeof *out);
        return EPLB_ERR_OUT_OF_MEMORY;
    }
    fill_weights(&st, &c);
    snprintf(c.name, sizeof c.name, "random-%llu-%s-L%lldE%lldR%lldG%lldN%lldP%lld",
             (unsigned long long)index, kind_names[c.kind], (long long)s->layers,
             (long long)s->experts, (long long)s->replicas, (long long)s->groups,
             (long long)s->nodes, (long long)s->gpus);
    *out = c;
    return EPLB_OK;
}

void eplb_random_case_free(eplb_random_case *c)
{
    if (!c)
        return;
    free(c->weight);
    memset(c, 0, sizeof *c);
}
