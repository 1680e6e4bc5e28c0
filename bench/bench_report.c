/* eplb-bench: the machine it ran on, and its results as a table (plain or
 * Markdown) and as JSON. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* CPU model from /proc/cpuinfo ("model name", or "Processor"/"cpu model" on
 * other architectures); "unknown" when absent. */
void bench_cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "cpu model", 9) &&
            strncmp(line, "Processor", 9))
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\n")] = '\0';
        if (*v) {
            snprintf(out, len, "%s", v);
            break;
        }
    }
    fclose(f);
}

/* 1-minute load average from /proc/loadavg, or -1: a busy machine explains
 * a wide p10..p90 spread. */
static double load_average(void)
{
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1.0;
        fclose(f);
    }
    return load;
}

/* JSON string literal: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static const char *policy_name(const bench_case *c)
{
    if (c->policy == EPLB_POLICY_GLOBAL)
        return "global";
    if (c->policy == EPLB_POLICY_HIERARCHICAL)
        return "hier";
    return c->shape.groups % c->shape.nodes == 0 ? "hier" : "global";
}

void bench_print_header(const bench_config *cfg, const char *model, long cores,
                        const struct utsname *un)
{
    /* Markdown: a bullet list, so the lines stay apart when rendered. */
    const char *item = cfg->markdown ? "- " : "";
    printf("%seplb-bench %s (spec v%d)\n", item, eplb_version_string(), EPLB_SPEC_VERSION);
    printf("%smachine: %s, %ld logical cores, %s %s %s, load average %.2f at start\n", item,
           model, cores, un->sysname, un->release, un->machine, load_average());
    const char *omp = getenv("OMP_NUM_THREADS");
    printf("%smethod: wall clock (CLOCK_MONOTONIC) around each eplb_rebalance call with log2phy, "
           "%ld warm-up + %ld timed runs%s%s, workload seed %" PRIu64 "\n",
           item, cfg->warmup, cfg->runs, cfg->min_time > 0 ? " (or more, to fill --min-time)" : "",
           cfg->max_time > 0 ? " (fewer, at least 5, past --max-time)" : "", cfg->workload_seed);
    if (omp)
        printf("%sOMP_NUM_THREADS=%s\n", item, omp);
    printf("%sbalancedness = sum_l mean_g load / sum_l max_g load (SPEC 8); bound = sum_l floor "
           "of the policy (SPEC 12) / sum_l max load (1 = no plan of the policy does better)\n",
           item);
}

void bench_print_table_head(int markdown, int with_refine)
{
    if (markdown) {
        printf("| backend | case | policy | C | I |%s median ms | p10 ms | p90 ms | min ms | runs | "
               "balancedness | worst layer | bound | same as cpu |\n",
               with_refine ? " refine |" : "");
        printf("|---|---|---|---:|---:|%s---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
               with_refine ? "---:|" : "");
    } else {
        printf("%-8s %-14s %-6s %4s %4s", "backend", "case", "policy", "C", "I");
        if (with_refine)
            printf(" %6s", "refine");
        printf(" %10s %10s %10s %10s %6s %8s %8s %8s %5s\n", "median_ms", "p10_ms", "p90_ms",
               "min_ms", "runs", "balanced", "worst", "bound", "=cpu");
    }
}

void bench_print_row(const bench_result *r, int markdown, int with_refine)
{
    const char *same = r->same_as_cpu < 0 ? "-" : r->same_as_cpu ? "yes" : "NO";
    if (markdown) {
        printf("| %s | %s | %s | %d | %d |", r->backend, r->bcase->name, policy_name(r->bcase),
               r->candidates, r->iterations);
        if (with_refine)
            printf(" %d |", r->refine);
        printf(" %.3f | %.3f | %.3f | %.3f | %ld | %.4f | %.4f | %.4f | %s |\n",
               r->time.median_ms, r->time.p10_ms, r->time.p90_ms, r->time.min_ms, r->time.runs,
               r->quality.balancedness, r->quality.min_layer, r->quality.bound_ratio, same);
    } else {
        printf("%-8s %-14s %-6s %4d %4d", r->backend, r->bcase->name, policy_name(r->bcase),
               r->candidates, r->iterations);
        if (with_refine)
            printf(" %6d", r->refine);
        printf(" %10.3f %10.3f %10.3f %10.3f %6ld %8.4f %8.4f %8.4f %5s\n", r->time.median_ms,
               r->time.p10_ms, r->time.p90_ms, r->time.min_ms, r->time.runs,
               r->quality.balancedness, r->quality.min_layer, r->quality.bound_ratio, same);
    }
    fflush(stdout);
}

int bench_write_json(FILE *f, const char *path, const bench_config *cfg, const char *model,
                     long cores, const struct utsname *un, const char *const *devices,
                     const char *const *device_backends, int device_count,
                     const bench_result *results, int count)
{
    fprintf(f, "{\n  \"tool\": \"eplb-bench\",\n  \"eplb_version\": ");
    json_string(f, eplb_version_string());
    fprintf(f, ",\n  \"spec_version\": %d,\n  \"machine\": {\"cpu_model\": ", EPLB_SPEC_VERSION);
    json_string(f, model);
    fprintf(f, ", \"logical_cores\": %ld, \"os\": ", cores);
    json_string(f, un->sysname);
    fprintf(f, ", \"os_release\": ");
    json_string(f, un->release);
    fprintf(f, ", \"arch\": ");
    json_string(f, un->machine);
    fprintf(f, ", \"load_average_at_end\": %.2f", load_average());
    fprintf(f, ", \"omp_num_threads\": ");
    if (getenv("OMP_NUM_THREADS"))
        json_string(f, getenv("OMP_NUM_THREADS"));
    else
        fprintf(f, "null");
    fprintf(f, "},\n  \"method\": {\"clock\": \"CLOCK_MONOTONIC\", \"call\": \"eplb_rebalance\", "
               "\"warmup\": %ld, \"runs\": %ld, \"min_time_s\": %.3f, \"max_time_s\": %.3f, \"workload_seed\": %" PRIu64
               ", \"option_seed\": %" PRIu64 "},\n  \"devices\": [",
            cfg->warmup, cfg->runs, cfg->min_time, cfg->max_time, cfg->workload_seed, cfg->seed);
    for (int i = 0; i < device_count; i++) {
        fprintf(f, "%s\n    {\"backend\": ", i ? "," : "");
        json_string(f, device_backends[i]);
        fprintf(f, ", \"device\": ");
        json_string(f, devices[i]);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"results\": [");
    for (int i = 0; i < count; i++) {
        const bench_result *r = &results[i];
        const eplb_shape *s = &r->bcase->shape;
        fprintf(f, "%s\n    {\"backend\": ", i ? "," : "");
        json_string(f, r->backend);
        fprintf(f, ", \"case\": ");
        json_string(f, r->bcase->name);
        fprintf(f, ", \"policy\": ");
        json_string(f, policy_name(r->bcase));
        fprintf(f,
                ", \"layers\": %" PRId64 ", \"experts\": %" PRId64 ", \"replicas\": %" PRId64
                ", \"groups\": %" PRId64 ", \"nodes\": %" PRId64 ", \"gpus\": %" PRId64
                ", \"candidates\": %d, \"iterations\": %d, \"refine\": %d, \"runs\": %ld, \"median_ms\": %.6f, "
                "\"p10_ms\": %.6f, \"p90_ms\": %.6f, \"min_ms\": %.6f, \"mean_ms\": %.6f, "
                "\"balancedness\": %.6f, \"worst_layer_balancedness\": %.6f, "
                "\"bound_ratio\": %.6f, \"max_logcnt\": %" PRId64 ", \"same_as_cpu\": %s}",
                s->layers, s->experts, s->replicas, s->groups, s->nodes, s->gpus, r->candidates,
                r->iterations, r->refine, r->time.runs, r->time.median_ms, r->time.p10_ms, r->time.p90_ms,
                r->time.min_ms, r->time.mean_ms, r->quality.balancedness, r->quality.min_layer,
                r->quality.bound_ratio, r->quality.max_replicas,
                r->same_as_cpu < 0 ? "null" : r->same_as_cpu ? "true" : "false");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "eplb-bench: cannot write %s: %s\n", path, strerror(errno));
        return 0;
    }
    return 1;
}
