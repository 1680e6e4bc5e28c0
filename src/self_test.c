/* The self-test of a newly opened backend instance: a known case planned by
 * the instance and by the cpu backend must give the same bits, or the device
 * is unusable (a broken driver, a miscompiled kernel). It calls the planner
 * as eplb_rebalance would, on a context of its own that never reaches a
 * caller. */
#include "self_test.h"

#include <stdio.h>
#include <string.h>

#include "context.h"
#include "cpu_backend.h"
#include "planner.h"
#include "validation.h"

/* Plans shape with the default options on backend; the plan goes to phy2log
 * and logcnt, or why it failed to error. */
static eplb_status plan_with(eplb_backend *backend, const char *name, const float *weight,
                             const eplb_shape *shape, int64_t *phy2log, int64_t *logcnt,
                             char *error, size_t error_len)
{
    eplb_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.backend = backend;
    ctx.backend_name = name;
    eplb_options options;
    eplb_options_init(&options);
    eplb_status st = eplb_plan_host(&ctx, weight, shape, &options, phy2log, logcnt, NULL, 0, NULL);
    if (st != EPLB_OK)
        snprintf(error, error_len, "self-test plan failed: %s", ctx.error);
    eplb_workspace_release(&ctx);
    return st;
}

eplb_status eplb_self_test(eplb_backend *candidate, char *error, size_t error_len)
{
    /* Small enough to plan in an instant, yet both packings have more than
     * one item per pack, so every stage runs: 2 layers, 16 experts in 4
     * groups, 24 slots on 2 nodes of 2 GPUs. */
    enum { L = 2, E = 16, R = 24 };
    const eplb_shape shape = {L, E, R, 4, 2, 4};
    float weight[L * E];
    for (int i = 0; i < L * E; i++)
        weight[i] = (float)((i * 7919) % 101) + 0.25f * (float)(i % 3);
    int64_t got_phy2log[L * R], got_logcnt[L * E], want_phy2log[L * R], want_logcnt[L * E];

    eplb_backend *cpu = NULL;
    char why[512] = "";
    eplb_status st = eplb_cpu_backend_module()->create(&cpu, why, sizeof why);
    if (st != EPLB_OK) {
        snprintf(error, error_len, "self-test: cpu backend: %.*s", (int)sizeof why - 1, why);
        return st;
    }
    st = plan_with(cpu, "cpu", weight, &shape, want_phy2log, want_logcnt, error, error_len);
    cpu->iface->free(cpu);
    if (st != EPLB_OK)
        return st;
    st = plan_with(candidate, "candidate", weight, &shape, got_phy2log, got_logcnt, error, error_len);
    if (st != EPLB_OK)
        return st;
    if (memcmp(got_phy2log, want_phy2log, sizeof got_phy2log) != 0 ||
        memcmp(got_logcnt, want_logcnt, sizeof got_logcnt) != 0) {
        snprintf(error, error_len, "self-test failed: the device's plan of a known case differs "
                                   "from the cpu backend's; the device is unusable");
        return EPLB_ERR_BACKEND_FAILURE;
    }
    return EPLB_OK;
}
