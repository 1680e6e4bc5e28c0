/* dlopen of the OpenCL ICD loader and its entry-point table. */
#include "opencl_loader.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static eplb_opencl_api api;
static const eplb_opencl_api *loaded;
static char load_error[512];
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void)
{
    /* The versioned name is the runtime's; the bare one exists only with -dev packages. */
    static const char *const names[] = {"libOpenCL.so.1", "libOpenCL.so"};
    void *handle = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !handle; i++)
        handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error,
                 "no OpenCL runtime: cannot load libOpenCL.so.1 (%s); install an ICD loader "
                 "(ocl-icd-libopencl1) and a platform driver",
                 why ? why : "not found");
        return;
    }
#define EPLB_OPENCL_RESOLVE(name)                                                           \
    api.name = (__typeof__(&name))dlsym(handle, #name);                                     \
    if (!api.name) {                                                                        \
        snprintf(load_error, sizeof load_error,                                             \
                 "the OpenCL runtime lacks %s: an OpenCL 1.2 ICD loader is needed", #name); \
        return; /* the handle stays open: harmless, and the table is never used */         \
    }
    EPLB_OPENCL_FUNCTIONS(EPLB_OPENCL_RESOLVE)
#undef EPLB_OPENCL_RESOLVE
    loaded = &api;
}

const eplb_opencl_api *eplb_opencl_load(char *error, size_t error_len)
{
    pthread_once(&load_once, load);
    if (!loaded && error)
        snprintf(error, error_len, "%s", load_error);
    return loaded;
}

const char *eplb_opencl_error_name(cl_int code)
{
    switch (code) {
#define EPLB_CL_CASE(c) case c: return #c;
    EPLB_CL_CASE(CL_SUCCESS)
    EPLB_CL_CASE(CL_DEVICE_NOT_FOUND)
    EPLB_CL_CASE(CL_DEVICE_NOT_AVAILABLE)
    EPLB_CL_CASE(CL_COMPILER_NOT_AVAILABLE)
    EPLB_CL_CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    EPLB_CL_CASE(CL_OUT_OF_RESOURCES)
    EPLB_CL_CASE(CL_OUT_OF_HOST_MEMORY)
    EPLB_CL_CASE(CL_BUILD_PROGRAM_FAILURE)
    EPLB_CL_CASE(CL_INVALID_VALUE)
    EPLB_CL_CASE(CL_INVALID_PLATFORM)
    EPLB_CL_CASE(CL_INVALID_DEVICE)
    EPLB_CL_CASE(CL_INVALID_CONTEXT)
    EPLB_CL_CASE(CL_INVALID_COMMAND_QUEUE)
    EPLB_CL_CASE(CL_INVALID_MEM_OBJECT)
    EPLB_CL_CASE(CL_INVALID_BUILD_OPTIONS)
    EPLB_CL_CASE(CL_INVALID_PROGRAM)
    EPLB_CL_CASE(CL_INVALID_PROGRAM_EXECUTABLE)
    EPLB_CL_CASE(CL_INVALID_KERNEL_NAME)
    EPLB_CL_CASE(CL_INVALID_KERNEL)
    EPLB_CL_CASE(CL_INVALID_ARG_INDEX)
    EPLB_CL_CASE(CL_INVALID_ARG_VALUE)
    EPLB_CL_CASE(CL_INVALID_ARG_SIZE)
    EPLB_CL_CASE(CL_INVALID_KERNEL_ARGS)
    EPLB_CL_CASE(CL_INVALID_WORK_DIMENSION)
    EPLB_CL_CASE(CL_INVALID_WORK_GROUP_SIZE)
    EPLB_CL_CASE(CL_INVALID_WORK_ITEM_SIZE)
    EPLB_CL_CASE(CL_INVALID_GLOBAL_OFFSET)
    EPLB_CL_CASE(CL_INVALID_EVENT_WAIT_LIST)
    EPLB_CL_CASE(CL_INVALID_OPERATION)
    EPLB_CL_CASE(CL_INVALID_BUFFER_SIZE)
    EPLB_CL_CASE(CL_INVALID_GLOBAL_WORK_SIZE)
#undef EPLB_CL_CASE
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR"; /* cl_ext.h: no platform installed */
    }
    return "unknown OpenCL error";
}
