/* eplb conformance: every golden case and a set of random cases on every
 * available backend, compared with the golden files and the cpu backend, with
 * poisoned guard bytes before and after every output buffer. */
#define _GNU_SOURCE
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_options.h"
#include "drift.h"
#include "eplb/eplb.h"
#include "golden.h"
#include "plan_check.h"
#include "random_case.h"
#include "text_escape.h"
#include "workload.h"

#define GUARD_BYTES 256
#define POISON 0xA5
/* Entries of the largest log2phy allocated at the shape's widest possible
 * width (eplb_log2phy_width_max); wider cases are planned twice. */
#define LOG2PHY_FULL_WIDTH_MOST ((size_t)1 << 24)

/* Where tests/golden lies: installed next to the binary, else the source tree. */
static const char *default_golden_dir(char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/%s", exe, EPLB_CLI_INSTALLED_GOLDEN_REL);
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
                return buf;
        }
    }
    snprintf(buf, len, "%s", EPLB_CLI_SOURCE_GOLDEN_DIR);
    return buf;
}

/* An int64 array between two GUARD_BYTES runs of poison; the whole block
 * starts poisoned, so a write before the start or past the end shows. */
typedef struct guarded {
    unsigned char *block;
    int64_t *data; /* block + GUARD_BYTES */
    size_t bytes;
} guarded;

static int64_t *guarded_alloc(guarded *g, size_t count)
{
    g->bytes = count * sizeof(int64_t);
    g->block = malloc(g->bytes + 2 * GUARD_BYTES);
    g->data = NULL;
    if (g->block) {
        memset(g->block, POISON, g->bytes + 2 * GUARD_BYTES);
        g->data = (int64_t *)(g->block + GUARD_BYTES);
    }
    return g->data;
}

/* Describes the first changed guard byte into where; 0 when both guards are intact. */
static int guard_damage(const guarded *g, char *where, size_t len)
{
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if (g->block[GUARD_BYTES - 1 - i] != POISON) {
            snprintf(where, len, "wrote before the start (guard byte %zu before it changed)", i + 1);
            return 1;
        }
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if (g->block[GUARD_BYTES + g->bytes + i] != POISON) {
            snprintf(where, len, "wrote past the end (guard byte %zu changed)", i);
            return 1;
        }
    return 0;
}

typedef struct plan_result {
    guarded phy2log, logcnt, log2phy;
    int64_t width;
    eplb_status status;
    char error[512];
} plan_result;

static void plan_result_free(plan_result *r)
{
    free(r->phy2log.block);
    free(r->logcnt.block);
    free(r->log2phy.block);
    memset(r, 0, sizeof *r);
}

/* eplb_rebalance, or eplb_rebalance_incremental from previous when given. */
static eplb_status plan_call(eplb_context *ctx, const float *weight, const eplb_shape *s,
                             const eplb_options *o, const int64_t *previous, int64_t *p,
                             int64_t *c, int64_t *x, int64_t width)
{
    if (previous)
        return eplb_rebalance_incremental(ctx, weight, s, o, previous, p, c, x, width, NULL);
    return eplb_rebalance(ctx, weight, s, o, p, c, x, width, NULL);
}

static int run_case(eplb_context *ctx, const float *weight, const eplb_shape *s,
                    const eplb_options *o, const int64_t *previous, plan_result *r)
{
    memset(r, 0, sizeof *r);
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    r->width = eplb_log2phy_width_max(s);
    int64_t *p = guarded_alloc(&r->phy2log, L * R);
    int64_t *c = guarded_alloc(&r->logcnt, L * E);
    if (p && c && L * E * (size_t)r->width > LOG2PHY_FULL_WIDTH_MOST) {
        /* A log2phy as wide as any plan could need would not fit (the scale
         * case needs 11.7 GB): a first plan without it gives the widest
         * replica count, and the checked plan writes log2phy at that width. */
        r->status = plan_call(ctx, weight, s, o, previous, p, c, NULL, 0);
        if (r->status != EPLB_OK) {
            snprintf(r->error, sizeof r->error, "%s", eplb_context_last_error(ctx));
            return 0;
        }
        r->width = 1;
        for (size_t i = 0; i < L * E; i++)
            r->width = c[i] > r->width ? c[i] : r->width;
    }
    int64_t *x = p && c ? guarded_alloc(&r->log2phy, L * E * (size_t)r->width) : NULL;
    if (!p || !c || !x) {
        r->status = EPLB_ERR_OUT_OF_MEMORY;
        snprintf(r->error, sizeof r->error, "out of memory");
        return 0;
    }
    r->status = plan_call(ctx, weight, s, o, previous, p, c, x, r->width);
    if (r->status != EPLB_OK)
        snprintf(r->error, sizeof r->error, "%s", eplb_context_last_error(ctx));
    return r->status == EPLB_OK;
}

/* First index where a and b differ, or -1. */
static long first_difference(const int64_t *a, const int64_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return (long)i;
    return -1;
}

typedef struct tally {
    long passed, failed;
    long refine_skipped; /* refine cases a backend without the stage refused */
} tally;

static void fail_line(tally *t, const char *name, const char *backend, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_line(tally *t, const char *name, const char *backend, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char shown[512]; /* golden names come from a directory listing */
    printf("FAIL %s [%s]: ", eplb_text_escape(shown, sizeof shown, name), backend);
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
    t->failed++;
}

/* Describes index i of an [rows][cols] array as "[row][col]". */
static void position(char *buf, size_t len, long i, int64_t cols)
{
    snprintf(buf, len, "[%ld][%ld]", i / (long)cols, i % (long)cols);
}

/* Checks one backend's result against the reference (cpu) and, when given,
 * the golden phy2log and logcnt, and with the plan checker (SPEC's invariants;
 * not for an incremental plan, whose kept slots follow the previous plan's
 * replica counts rather than SPEC 5's); counts one pass or one failure. */
static void check_result(tally *t, const char *name, const char *backend, const float *weight,
                         const eplb_shape *s, const eplb_options *options, int incremental,
                         const plan_result *got, const plan_result *ref,
                         const eplb_golden *golden)
{
    const size_t L = (size_t)s->layers, E = (size_t)s->experts, R = (size_t)s->replicas;
    char where[64], why[512];
    if (got->status != EPLB_OK) {
        fail_line(t, name, backend, "eplb_rebalance failed: %s: %s", eplb_status_string(got->status),
                  got->error);
        return;
    }
    const guarded *bufs[3] = {&got->phy2log, &got->logcnt, &got->log2phy};
    static const char *const names[3] = {"phy2log", "logcnt", "log2phy"};
    for (int b = 0; b < 3; b++) {
        char damage[128];
        if (guard_damage(bufs[b], damage, sizeof damage)) {
            fail_line(t, name, backend, "%s: %s", names[b], damage);
            return;
        }
    }
    const int64_t *p = got->phy2log.data;
    const int64_t *c = got->logcnt.data;
    if (golden) {
        long i = first_difference(p, golden->phy2log, L * R);
        if (i >= 0) {
            position(where, sizeof where, i, (int64_t)R);
            fail_line(t, name, backend, "phy2log differs from the golden file at %s (index %ld): "
                      "got %lld, want %lld", where, i, (long long)p[i], (long long)golden->phy2log[i]);
            return;
        }
        i = first_difference(c, golden->logcnt, L * E);
        if (i >= 0) {
            position(where, sizeof where, i, (int64_t)E);
            fail_line(t, name, backend, "logcnt differs from the golden file at %s (index %ld): "
                      "got %lld, want %lld", where, i, (long long)c[i], (long long)golden->logcnt[i]);
            return;
        }
    }
    if (!incremental && !eplb_plan_check_options(s, options, weight, p, c, got->log2phy.data,
                                                 got->width, why, sizeof why)) {
        fail_line(t, name, backend, "inconsistent plan: %s", why);
        return;
    }
    if (ref && ref != got) {
        if (ref->status != EPLB_OK) {
            fail_line(t, name, backend, "no cpu reference: %s", ref->error);
            return;
        }
        const int64_t *rp = ref->phy2log.data;
        const int64_t *rc = ref->logcnt.data;
        const int64_t *rx = ref->log2phy.data;
        const int64_t *x = got->log2phy.data;
        long i = first_difference(p, rp, L * R);
        if (i >= 0) {
            position(where, sizeof where, i, (int64_t)R);
            fail_line(t, name, backend, "phy2log differs from cpu at %s (index %ld): got %lld, "
                      "want %lld", where, i, (long long)p[i], (long long)rp[i]);
            return;
        }
        i = first_difference(c, rc, L * E);
        if (i >= 0) {
            position(where, sizeof where, i, (int64_t)E);
            fail_line(t, name, backend, "logcnt differs from cpu at %s (index %ld): got %lld, "
                      "want %lld", where, i, (long long)c[i], (long long)rc[i]);
            return;
        }
        i = first_difference(x, rx, L * E * (size_t)got->width);
        if (i >= 0) {
            long X = (long)got->width;
            fail_line(t, name, backend, "log2phy differs from cpu at [%ld][%ld][%ld] (index %ld): "
                      "got %lld, want %lld", i / X / (long)E, i / X % (long)E, i % X, i,
                      (long long)x[i], (long long)rx[i]);
            return;
        }
    }
    t->passed++;
}

typedef struct backend_slot {
    const char *name;
    eplb_context *ctx;
} backend_slot;

/* Runs one case on every backend, incrementally from previous when given;
 * slot 0 is cpu, the reference. */
static void run_everywhere(tally *t, backend_slot *slots, int nslots, const char *name,
                           const float *weight, const eplb_shape *s, const eplb_options *o,
                           const int64_t *previous, const eplb_golden *golden)
{
    plan_result ref;
    const int incremental = previous != NULL;
    run_case(slots[0].ctx, weight, s, o, previous, &ref);
    check_result(t, name, slots[0].name, weight, s, o, incremental, &ref, NULL, golden);
    for (int b = 1; b < nslots; b++) {
        plan_result got;
        run_case(slots[b].ctx, weight, s, o, previous, &got);
        /* A backend without the refine stage (docs/spec.md section 10) or
         * the distinct stage (section 11) refuses them, as it should, so its
         * refusal is counted as skipped, not as a failure. */
        if ((o->refine > 0 || o->distinct) && got.status == EPLB_ERR_UNSUPPORTED)
            t->refine_skipped++;
        else
            check_result(t, name, slots[b].name, weight, s, o, incremental, &got, &ref, golden);
        plan_result_free(&got);
    }
    plan_result_free(&ref);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted *.txt names of dir; returns the count or -1. */
static int list_goldens(const char *dir, char ***names)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0, cap = 0;
    char **list = NULL;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len < 5 || strcmp(ent->d_name + len - 4, ".txt") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown)
                break;
            list = grown;
        }
        list[n] = strdup(ent->d_name);
        if (list[n])
            n++;
    }
    closedir(d);
    if (n)
        qsort(list, (size_t)n, sizeof *list, compare_names);
    *names = list;
    return n;
}

static void conformance_usage(FILE *f)
{
    fprintf(f,
            "usage: eplb conformance [--golden DIR] [--random N] [--seed S]\n\n"
            "Runs every golden case (DIR/*.txt), 4 built-in production-sized cases (the last two,\n"
            "up to 200 layers x 1024 experts on 8192 slots, lie beyond every GPU's on-chip\n"
            "limits) and N random cases on every available backend, each random case also with\n"
            "the refine search on (docs/spec.md section 10), every other one with distinct too\n"
            "(section 11; a backend without either stage refuses it, which is counted as\n"
            "skipped), and again incrementally\n"
            "(eplb_rebalance_incremental, docs/spec.md section 13) from the cpu plan of its\n"
            "loads drifted.\n"
            "Each backend's phy2log, logcnt and log2phy must equal the cpu backend's, golden\n"
            "cases must reproduce the golden phy2log and logcnt exactly, every plan must keep\n"
            "the invariants of the algorithm's spec, and the guard bytes around every output buffer must stay intact.\n\n"
            "  -g, --golden DIR   golden files (default: %s);\n"
            "                     'none' skips the golden cases\n"
            "      --random N     random cases, 0..1000000 (default 100)\n"
            "  -s, --seed S       seed of the random cases (default 1)\n"
            "  -h, --help         this help\n\n"
            "Long options are spelled out in full. --random has no short option: -n is\n"
            "--nodes in eplb plan and eplb demo.\n\n"
            "Prints a FAIL line per failed check (case x backend), then 'N passed, N failed'.\n"
            "exit codes: 0 all passed, 1 a check failed, 2 usage error or golden directory missing\n",
            EPLB_CLI_SOURCE_GOLDEN_DIR);
}

/* --random has no short option: -n means --nodes in eplb plan and eplb demo. */
enum { OPT_RANDOM = 256 };

int eplb_cli_conformance(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"golden", required_argument, NULL, 'g'},
        {"random", required_argument, NULL, OPT_RANDOM},
        {"seed", required_argument, NULL, 's'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    char dir_buf[PATH_MAX + 64];
    const char *golden_dir = NULL;
    int64_t random_cases = 100;
    uint64_t seed = 1;
    eplb_cli_getopt_start();
    int c;
    while ((c = eplb_cli_getopt("conformance", argc, argv, ":g:s:h", longopts)) != -1) {
        switch (c) {
        case 'g': golden_dir = optarg; break;
        case OPT_RANDOM:
            if (!eplb_cli_parse_i64("conformance", "--random", optarg, 0, 1000000, &random_cases))
                return EPLB_EXIT_USAGE;
            break;
        case 's':
            if (!eplb_cli_parse_u64("conformance", "--seed", optarg, &seed))
                return EPLB_EXIT_USAGE;
            break;
        case 'h': conformance_usage(stdout); return EPLB_EXIT_OK;
        default: /* eplb_cli_getopt said what is wrong */
            return EPLB_EXIT_USAGE;
        }
    }
    if (!eplb_cli_no_operands("conformance", argc, argv))
        return EPLB_EXIT_USAGE;
    if (!golden_dir)
        golden_dir = default_golden_dir(dir_buf, sizeof dir_buf);
    int skip_goldens = strcmp(golden_dir, "none") == 0;
    char shown_dir[PATH_MAX + 64];
    eplb_text_escape(shown_dir, sizeof shown_dir, golden_dir);
    char **goldens = NULL;
    int ngoldens = 0;
    if (!skip_goldens) {
        ngoldens = list_goldens(golden_dir, &goldens);
        if (ngoldens < 0) {
            fprintf(stderr, "eplb conformance: cannot open golden directory %s: %m "
                            "(pass --golden DIR, or --golden none)\n", shown_dir);
            return EPLB_EXIT_USAGE;
        }
        if (ngoldens == 0) {
            fprintf(stderr, "eplb conformance: no golden files (*.txt) in %s\n", shown_dir);
            free(goldens);
            return EPLB_EXIT_USAGE;
        }
    }

    /* The cpu backend first: it is the reference. */
    int count = eplb_backend_count();
    backend_slot *slots = calloc((size_t)count + 1, sizeof *slots);
    tally t = {0, 0, 0};
    int nslots = 0, cpu_missing = 0;
    if (!slots) {
        fprintf(stderr, "eplb conformance: out of memory\n");
        return EPLB_EXIT_FAILURE;
    }
    if (eplb_context_create(&slots[0].ctx, "cpu") == EPLB_OK) {
        slots[0].name = "cpu";
        nslots = 1;
    } else {
        fail_line(&t, "setup", "cpu", "cannot open the reference backend: %s", eplb_last_error());
        cpu_missing = 1;
    }
    for (int i = 0; i < count && !cpu_missing; i++) {
        const char *name = eplb_backend_name(i), *detail = NULL;
        if (strcmp(name, "cpu") == 0)
            continue;
        if (!eplb_backend_available(i, &detail)) {
            printf("skip %s: unavailable: %s\n", name, detail ? detail : "");
            continue;
        }
        if (eplb_context_create(&slots[nslots].ctx, name) != EPLB_OK) {
            fail_line(&t, "setup", name, "available but cannot be opened: %s", eplb_last_error());
            continue;
        }
        slots[nslots++].name = name;
    }
    if (nslots > 0) {
        printf("backends:");
        for (int b = 0; b < nslots; b++)
            printf(" %s (%s)%s", slots[b].name, eplb_context_device(slots[b].ctx),
                   b + 1 < nslots ? "," : "\n");
        printf("cases: %d golden from %s, 4 built-in, %lld random with seed %llu (each also "
               "with refine, every other with distinct too, and incrementally)\n", ngoldens, skip_goldens ? "(skipped)" : shown_dir,
               (long long)random_cases, (unsigned long long)seed);
        fflush(stdout);
    }

    for (int g = 0; g < ngoldens && nslots > 0; g++) {
        char path[PATH_MAX + 512], error[1024];
        snprintf(path, sizeof path, "%s/%s", golden_dir, goldens[g]);
        eplb_golden golden;
        if (eplb_golden_read(path, &golden, error, sizeof error) != EPLB_OK) {
            fail_line(&t, goldens[g], "all", "unreadable golden file: %s", error);
            continue;
        }
        run_everywhere(&t, slots, nslots, goldens[g], golden.weight, &golden.shape,
                       &golden.options, NULL, &golden);
        eplb_golden_free(&golden);
    }
    /* Production-sized shapes: many work-groups and long rows on GPU backends.
     * The last two lie beyond every backend's on-chip limits (a layer's
     * fused plan needs more local memory than a GPU work-group has, so GPU
     * backends plan them with their stage kernels), and their loads hold
     * many replicas of equal load, so that the tie rules decide much of the
     * packing: the scale case of eplb-bench, and a smaller case that crosses
     * the same limits and failed in the same way (docs/opencl.md). */
    static const struct {
        const char *name;
        eplb_shape shape;
        int64_t dead_every;
        uint64_t workload_seed;
    } builtin[] = {{"builtin-deepseek-v3", {58, 256, 288, 8, 4, 32}, 0, 0},
                   {"builtin-wide-global-idle", {4, 384, 448, 3, 2, 64}, 7, 1},
                   {"builtin-beyond-local-memory", {8, 256, 2048, 8, 8, 256}, 0, 1},
                   {"builtin-scale", {200, 1024, 8192, 16, 16, 1024}, 0, 1}};
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0] && nslots > 0; i++) {
        const eplb_shape *s = &builtin[i].shape;
        float *weight = malloc((size_t)(s->layers * s->experts) * sizeof *weight);
        if (!weight) {
            fail_line(&t, builtin[i].name, "all", "out of memory");
            continue;
        }
        eplb_workload_fill(weight, s->layers, s->experts, builtin[i].workload_seed,
                           builtin[i].dead_every);
        eplb_options options;
        eplb_options_init(&options);
        run_everywhere(&t, slots, nslots, builtin[i].name, weight, s, &options, NULL, NULL);
        free(weight);
    }
    for (int64_t i = 0; i < random_cases && nslots > 0; i++) {
        eplb_random_case rc;
        const eplb_status made = eplb_random_case_make(seed, (uint64_t)i, &rc);
        if (made != EPLB_OK) {
            fail_line(&t, "random", "all", "case %lld: %s", (long long)i, eplb_status_string(made));
            continue;
        }
        run_everywhere(&t, slots, nslots, rc.name, rc.weight, &rc.shape, &rc.options, NULL, NULL);
        /* The same case again with the refine search on, its trade cap
         * cycling through a full search and two short ones. */
        static const int32_t refine_caps[] = {256, 1, 7};
        eplb_options refined = rc.options;
        refined.refine = refine_caps[i % 3];
        /* Every other one with distinct too (docs/spec.md section 11), where
         * the shape allows it (11.2: a row has experts for a GPU's slots). */
        const int hierarchical = eplb_plan_is_hierarchical(&rc.shape, rc.options.policy);
        const int64_t row_experts = rc.shape.experts / (hierarchical ? rc.shape.nodes : 1);
        refined.distinct = i % 2 == 1 && row_experts >= rc.shape.replicas / rc.shape.gpus;
        char refined_name[sizeof rc.name + 48];
        snprintf(refined_name, sizeof refined_name, "%s+refine=%d%s", rc.name,
                 (int)refined.refine, refined.distinct ? "+distinct" : "");
        run_everywhere(&t, slots, nslots, refined_name, rc.weight, &rc.shape, &refined, NULL, NULL);
        /* And incrementally (docs/spec.md section 13) from the cpu plan of its
         * drifted loads, with and without slack. */
        eplb_options from_previous = rc.options;
        from_previous.slack = i % 2 ? 0.1f : 0.0f;
        int64_t *previous = malloc((size_t)(rc.shape.layers * rc.shape.replicas) * sizeof *previous);
        char incremental_name[sizeof rc.name + 32];
        snprintf(incremental_name, sizeof incremental_name, "%s+incremental", rc.name);
        if (!previous)
            fail_line(&t, incremental_name, "all", "out of memory");
        else if (eplb_drifted_previous(slots[0].ctx, rc.weight, &rc.shape, &rc.options,
                                       (uint64_t)i, 0.5, previous) != EPLB_OK)
            fail_line(&t, incremental_name, "cpu", "no previous plan: %s",
                      eplb_context_last_error(slots[0].ctx));
        else
            run_everywhere(&t, slots, nslots, incremental_name, rc.weight, &rc.shape,
                           &from_previous, previous, NULL);
        free(previous);
        eplb_random_case_free(&rc);
    }
    for (int g = 0; g < ngoldens; g++)
        free(goldens[g]);
    free(goldens);
    for (int b = 0; b < nslots; b++)
        eplb_context_free(slots[b].ctx);
    free(slots);
    if (t.refine_skipped)
        printf("skipped %ld refine cases (some with distinct) on backends without the stage\n",
               t.refine_skipped);
    printf("%ld passed, %ld failed\n", t.passed, t.failed);
    return t.failed ? EPLB_EXIT_FAILURE : EPLB_EXIT_OK;
}
