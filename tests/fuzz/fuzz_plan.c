/* Fuzz target: the C API (eplb_rebalance) with fuzzed shapes, options, weights
 * and log2phy widths, on two cpu contexts: the fused packing (default) and
 * the four separate packing stages (EPLB_TUNE_CPU_STAGES=separate, read when a
 * context is created). Both must give the same status; on success the same
 * plan, one that keeps every invariant of SPEC sections 1, 4 and 5; on failure
 * outputs untouched. The contexts live across inputs, so workspace reuse
 * between shapes is fuzzed too. Sizes are bounded so each input runs fast. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "fuzz_weights.h" /* FUZZ_REQUIRE */
#include "plan_check.h"

/* Reads the input front to back; zeros once it is used up. */
typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static uint8_t u8(reader *r)
{
    if (!r->left)
        return 0;
    r->left--;
    return *r->p++;
}

static uint32_t u32(reader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | u8(r);
    return v;
}

static float raw_float(reader *r)
{
    uint32_t bits = u32(r);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* noise and tolerance: mostly sensible, sometimes extreme or invalid. */
static float option_float(reader *r, float usual)
{
    static const float table[] = {0.0f, 1e-5f, 1e-3f, 0.05f, 0.2f, 0.5f, 1.0f, 4.0f,
                                  1e30f, 1e-30f, -1.0f, NAN, INFINITY};
    uint8_t b = u8(r);
    if (b < 128)
        return usual;
    if (b < 250)
        return table[b % (sizeof table / sizeof table[0])];
    return raw_float(r);
}

static void make_shape(reader *r, eplb_shape *s)
{
    uint8_t mode = u8(r);
    if (mode >= 240) { /* raw fields: mostly invalid, exercises the checks */
        int64_t *f[6] = {&s->layers, &s->experts, &s->replicas, &s->groups, &s->nodes, &s->gpus};
        for (int i = 0; i < 6; i++)
            *f[i] = (int64_t)(int8_t)u8(r);
        if (s->layers > 4)
            s->layers = 4; /* keep valid raw shapes small */
        return;
    }
    int64_t N = 1 + u8(r) % 4;
    int64_t G = mode & 1 ? N * (1 + u8(r) % 4) : 1 + u8(r) % 12; /* G % N may be != 0 */
    int64_t E = G * (1 + u8(r) % 6);
    int hierarchical = G % N == 0;
    int64_t P = hierarchical ? N * (1 + u8(r) % 4) : 1 + u8(r) % 8;
    int64_t spg = (E + P - 1) / P + u8(r) % 4;
    s->layers = 1 + u8(r) % 3;
    s->experts = E;
    s->groups = G;
    s->nodes = N;
    s->gpus = P;
    s->replicas = P * spg;
    if (s->replicas > 256) { /* bound the work per input */
        s->replicas = P * ((E + P - 1) / P);
    }
}

static float make_weight(reader *r, uint8_t mode)
{
    switch (mode % 6) {
    case 0: return (float)(u8(r) % 4); /* many ties and zeros */
    case 1: return (float)u8(r);
    case 2: return (float)u8(r) * 1e-3f;
    case 3: { /* any finite non-negative float, denormals and huge values included */
        float f = fabsf(raw_float(r));
        return isfinite(f) ? f : 1.0f;
    }
    case 4: return u8(r) < 8 ? 3.0e38f : 1.0f; /* sums overflow float32 */
    default: { /* occasionally invalid: NaN, infinity, negative */
        uint8_t b = u8(r);
        return b == 0 ? NAN : b == 1 ? INFINITY : b == 2 ? -1.0f : (float)b;
    }
    }
}

typedef struct outputs {
    int64_t *phy2log, *logcnt, *log2phy;
    size_t n_phy2log, n_logcnt, n_log2phy;
    int64_t width_needed;
} outputs;

#define POISON_BYTE 0xC3

/* Exact-size buffers (ASan catches any write past them), poisoned. */
static void outputs_alloc(outputs *o, size_t p, size_t c, size_t x)
{
    o->n_phy2log = p;
    o->n_logcnt = c;
    o->n_log2phy = x;
    o->phy2log = malloc(p * sizeof(int64_t) + 1);
    o->logcnt = malloc(c * sizeof(int64_t) + 1);
    o->log2phy = x ? malloc(x * sizeof(int64_t)) : NULL;
    FUZZ_REQUIRE(o->phy2log && o->logcnt && (!x || o->log2phy), "out of memory");
    memset(o->phy2log, POISON_BYTE, p * sizeof(int64_t));
    memset(o->logcnt, POISON_BYTE, c * sizeof(int64_t));
    if (x)
        memset(o->log2phy, POISON_BYTE, x * sizeof(int64_t));
    o->width_needed = -12345;
}

static void outputs_free(outputs *o)
{
    free(o->phy2log);
    free(o->logcnt);
    free(o->log2phy);
}

static int poisoned(const int64_t *a, size_t n)
{
    const unsigned char *b = (const unsigned char *)a;
    for (size_t i = 0; i < n * sizeof(int64_t); i++)
        if (b[i] != POISON_BYTE)
            return 0;
    return 1;
}

/* The plan checker of the tools (SPEC sections 1, 4 and 5), and
 * width_needed = max(logcnt). */
static void check_plan(const eplb_shape *s, int hierarchical, const float *weight,
                       const outputs *o, int64_t width)
{
    char why[512];
    FUZZ_REQUIRE(eplb_plan_check(s, hierarchical, weight, o->phy2log, o->logcnt, o->log2phy,
                                 width, why, sizeof why), "%s", why);
    int64_t widest = 0;
    for (int64_t i = 0; i < s->layers * s->experts; i++)
        widest = o->logcnt[i] > widest ? o->logcnt[i] : widest;
    FUZZ_REQUIRE(o->width_needed == widest, "width_needed %lld, max logcnt %lld",
                 (long long)o->width_needed, (long long)widest);
}

static eplb_context *fused, *separate;

static void open_contexts(void)
{
    if (fused)
        return;
    unsetenv("EPLB_TUNE_CPU_STAGES");
    eplb_status st = eplb_context_create(&fused, "cpu");
    FUZZ_REQUIRE(st == EPLB_OK, "cpu context: %s", eplb_last_error());
    setenv("EPLB_TUNE_CPU_STAGES", "separate", 1);
    st = eplb_context_create(&separate, "cpu");
    unsetenv("EPLB_TUNE_CPU_STAGES");
    FUZZ_REQUIRE(st == EPLB_OK, "cpu context (separate stages): %s", eplb_last_error());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_contexts();
    reader r = {data, size};
    eplb_shape s;
    make_shape(&r, &s);

    eplb_options o;
    eplb_options_init(&o);
    uint8_t b = u8(&r);
    o.candidates = b < 250 ? 1 + b % 8 : (b == 250 ? 0 : 2000);
    b = u8(&r);
    o.iterations = b < 250 ? b % 24 : -1;
    o.noise = option_float(&r, 0.2f);
    o.tolerance = option_float(&r, 1e-5f);
    o.seed = (uint64_t)u32(&r) << 32 | u32(&r);
    b = u8(&r);
    o.policy = b < 250 ? (eplb_policy)(b % 3) : (eplb_policy)(b - 240);
    if (u8(&r) == 255)
        o.struct_size = 0; /* not initialised with eplb_options_init */

    const int shape_ok = eplb_shape_check(&s, NULL) == EPLB_OK;
    const size_t L = shape_ok ? (size_t)s.layers : 1, E = shape_ok ? (size_t)s.experts : 1;
    const size_t R = shape_ok ? (size_t)s.replicas : 1;
    /* log2phy: usually the safe width, sometimes none, too narrow or minimal. */
    const int64_t safe = shape_ok ? s.replicas - s.experts + 1 : 1;
    b = u8(&r);
    int64_t width = b < 160 ? safe : b < 200 ? 0 : b < 250 ? 1 + b % 4 : -(int64_t)(b % 3);
    const int with_log2phy = width != 0;

    uint8_t weight_mode = u8(&r);
    float *w = malloc(L * E * sizeof *w);
    FUZZ_REQUIRE(w, "out of memory");
    for (size_t i = 0; i < L * E; i++)
        w[i] = make_weight(&r, weight_mode);

    /* A negative width still comes with a (one-element) log2phy array. */
    const size_t x = !with_log2phy ? 0 : width > 0 ? L * E * (size_t)width : 1;
    outputs a, c;
    outputs_alloc(&a, L * R, L * E, x);
    outputs_alloc(&c, L * R, L * E, x);
    eplb_status sa = eplb_rebalance(fused, w, &s, &o, a.phy2log, a.logcnt,
                                    with_log2phy ? a.log2phy : NULL, width, &a.width_needed);
    eplb_status sc = eplb_rebalance(separate, w, &s, &o, c.phy2log, c.logcnt,
                                    with_log2phy ? c.log2phy : NULL, width, &c.width_needed);
    FUZZ_REQUIRE(sa == sc, "fused: %s (%s), separate: %s (%s)", eplb_status_string(sa),
                 eplb_context_last_error(fused), eplb_status_string(sc),
                 eplb_context_last_error(separate));
    if (sa == EPLB_OK) {
        FUZZ_REQUIRE(shape_ok, "planned an invalid shape");
        FUZZ_REQUIRE(memcmp(a.phy2log, c.phy2log, L * R * sizeof(int64_t)) == 0 &&
                         memcmp(a.logcnt, c.logcnt, L * E * sizeof(int64_t)) == 0 &&
                         (!x || memcmp(a.log2phy, c.log2phy, x * sizeof(int64_t)) == 0) &&
                         a.width_needed == c.width_needed,
                     "fused and separate packings planned differently");
        check_plan(&s, eplb_plan_is_hierarchical(&s, o.policy), w, &a, with_log2phy ? width : 0);
    } else {
        FUZZ_REQUIRE(eplb_context_last_error(fused)[0], "failure without a message");
        FUZZ_REQUIRE(poisoned(a.phy2log, a.n_phy2log) && poisoned(a.logcnt, a.n_logcnt) &&
                         (!x || poisoned(a.log2phy, x)),
                     "a failed call (%s) wrote its outputs", eplb_status_string(sa));
        /* Only a too-narrow log2phy reports the width it needs. */
        FUZZ_REQUIRE(sa == EPLB_ERR_LOG2PHY_TOO_SMALL ? a.width_needed >= 1
                                                      : a.width_needed == -12345,
                     "width_needed %lld after %s", (long long)a.width_needed,
                     eplb_status_string(sa));
        FUZZ_REQUIRE(sa == EPLB_ERR_INVALID_ARGUMENT || sa == EPLB_ERR_INVALID_SHAPE ||
                         sa == EPLB_ERR_INVALID_WEIGHT || sa == EPLB_ERR_LOG2PHY_TOO_SMALL ||
                         sa == EPLB_ERR_POLICY,
                     "unexpected status %s: %s", eplb_status_string(sa),
                     eplb_context_last_error(fused));
    }
    outputs_free(&a);
    outputs_free(&c);
    free(w);
    return 0;
}
