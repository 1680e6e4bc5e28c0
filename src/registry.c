/* Backend registry. The cpu backend is compiled in; opencl and cuda are
 * modules (libeplb_opencl.so, libeplb_cuda.so) opened with dlopen from the
 * directory that holds libeplb itself, or from EPLB_MODULE_DIR, so that
 * libeplb has no link-time dependency on any vendor runtime. */
#define _GNU_SOURCE
#include "registry.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"

static const char *const backend_names[EPLB_REGISTRY_COUNT] = {"cuda", "opencl", "cpu"};

const char *eplb_registry_name(int index)
{
    return index >= 0 && index < EPLB_REGISTRY_COUNT ? backend_names[index] : NULL;
}

/* Directory of the file that holds this function (libeplb.so or a program
 * that links eplb statically), with a trailing slash. */
static void own_directory(char *dir, size_t len)
{
    Dl_info info;
    dir[0] = '\0';
    if (dladdr((void *)own_directory, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash && (size_t)(slash - info.dli_fname + 2) <= len) {
            memcpy(dir, info.dli_fname, (size_t)(slash - info.dli_fname + 1));
            dir[slash - info.dli_fname + 1] = '\0';
        }
    }
}

static const eplb_backend_module *load_module(const char *name, char *error, size_t error_len)
{
    char file[64], path[4096], dir[4096];
    snprintf(file, sizeof file, "libeplb_%s.so", name);
    const char *env_dir = getenv("EPLB_MODULE_DIR");
    if (env_dir && *env_dir)
        snprintf(dir, sizeof dir, "%s/", env_dir);
    else
        own_directory(dir, sizeof dir);
    snprintf(path, sizeof path, "%s%s", dir, file);

    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(error, error_len, "cannot load %s: %s", path, why ? why : "unknown error");
        return NULL;
    }
    eplb_backend_module_get_fn get = (eplb_backend_module_get_fn)dlsym(handle, EPLB_MODULE_ENTRY);
    const eplb_backend_module *module = get ? get() : NULL;
    if (!module) {
        snprintf(error, error_len, "%s does not export %s", path, EPLB_MODULE_ENTRY);
        dlclose(handle);
        return NULL;
    }
    if (module->api_version != EPLB_BACKEND_API_VERSION) {
        snprintf(error, error_len, "%s was built for backend API %d, this libeplb has %d: rebuild it",
                 path, module->api_version, EPLB_BACKEND_API_VERSION);
        dlclose(handle);
        return NULL;
    }
    /* Modules stay loaded for the life of the process: instances point into them. */
    return module;
}

/* Module of each backend, loaded once. */
static const eplb_backend_module *modules[EPLB_REGISTRY_COUNT];
static char module_errors[EPLB_REGISTRY_COUNT][512];
static pthread_once_t modules_once = PTHREAD_ONCE_INIT;

static void load_modules(void)
{
    modules[EPLB_REGISTRY_CPU] = eplb_cpu_backend_module();
    for (int i = 0; i < EPLB_REGISTRY_COUNT; i++)
        if (!modules[i])
            modules[i] = load_module(backend_names[i], module_errors[i], sizeof module_errors[i]);
}

/* Self-test: a tiny hierarchical case with candidates and swaps, planned by
 * the new instance and by the cpu backend, must agree exactly. */
static eplb_status self_test(eplb_backend *candidate, char *error, size_t error_len);

eplb_status eplb_registry_open(int index, eplb_backend **out, char *error, size_t error_len)
{
    *out = NULL;
    if (index < 0 || index >= EPLB_REGISTRY_COUNT) {
        snprintf(error, error_len, "no backend %d", index);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    pthread_once(&modules_once, load_modules);
    const eplb_backend_module *module = modules[index];
    if (!module) {
        snprintf(error, error_len, "%s", module_errors[index]);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    const char *inject = getenv("EPLB_TEST_FAIL_BACKEND"); /* fault injection for tests */
    if (inject && strcmp(inject, backend_names[index]) == 0) {
        snprintf(error, error_len, "initialisation failure injected by EPLB_TEST_FAIL_BACKEND");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    eplb_backend *backend = NULL;
    char why[512] = "";
    eplb_status st = module->create(&backend, why, sizeof why);
    if (st != EPLB_OK || !backend) {
        snprintf(error, error_len, "%s", why[0] ? why : "initialisation failed");
        return st == EPLB_OK ? EPLB_ERR_BACKEND_UNAVAILABLE : st;
    }
    if (backend->api_version != EPLB_BACKEND_API_VERSION) {
        snprintf(error, error_len, "instance built for backend API %d, expected %d",
                 backend->api_version, EPLB_BACKEND_API_VERSION);
        backend->iface->free(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (index != EPLB_REGISTRY_CPU && (st = self_test(backend, error, error_len)) != EPLB_OK) {
        backend->iface->free(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    *out = backend;
    return EPLB_OK;
}

static int probe_result[EPLB_REGISTRY_COUNT];
static char probe_detail[EPLB_REGISTRY_COUNT][1024];
static pthread_once_t probe_once[EPLB_REGISTRY_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                                         PTHREAD_ONCE_INIT};

static void probe(int index)
{
    eplb_backend *backend = NULL;
    char error[1024] = "";
    if (eplb_registry_open(index, &backend, error, sizeof error) == EPLB_OK) {
        probe_result[index] = 1;
        snprintf(probe_detail[index], sizeof probe_detail[index], "%s",
                 backend->iface->device_name(backend));
        backend->iface->free(backend);
    } else {
        probe_result[index] = 0;
        snprintf(probe_detail[index], sizeof probe_detail[index], "%s", error);
    }
}
static void probe_cuda(void) { probe(EPLB_REGISTRY_CUDA); }
static void probe_opencl(void) { probe(EPLB_REGISTRY_OPENCL); }
static void probe_cpu(void) { probe(EPLB_REGISTRY_CPU); }

int eplb_registry_probe(int index, const char **detail)
{
    static void (*const probes[EPLB_REGISTRY_COUNT])(void) = {probe_cuda, probe_opencl, probe_cpu};
    if (index < 0 || index >= EPLB_REGISTRY_COUNT)
        return 0;
    pthread_once(&probe_once[index], probes[index]);
    if (detail)
        *detail = probe_detail[index];
    return probe_result[index];
}

/* ---- self-test ---------------------------------------------------------- */

#include "context.h"

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

static eplb_status self_test(eplb_backend *candidate, char *error, size_t error_len)
{
    /* 2 layers, 16 experts in 4 groups, 24 slots on 2 nodes of 2 GPUs. */
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
        snprintf(error, error_len, "self-test: cpu backend: %s", why);
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
