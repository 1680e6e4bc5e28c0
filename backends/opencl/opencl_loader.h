/* The OpenCL runtime opened at run time (hashcat's ext_OpenCL idea): the ICD
 * loader libOpenCL.so.1 is dlopen'd and every entry point the backend uses is
 * taken into one table, so the module has no link-time dependency on OpenCL. */
#ifndef EPLB_OPENCL_LOADER_H
#define EPLB_OPENCL_LOADER_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <stddef.h>

/* X(name): one line per entry point; the table member has the function's name. */
#define EPLB_OPENCL_FUNCTIONS(X)  \
    X(clGetPlatformIDs)           \
    X(clGetPlatformInfo)          \
    X(clGetDeviceIDs)             \
    X(clGetDeviceInfo)            \
    X(clCreateContext)            \
    X(clRetainContext)            \
    X(clReleaseContext)           \
    X(clCreateCommandQueue)       \
    X(clRetainCommandQueue)       \
    X(clReleaseCommandQueue)      \
    X(clGetCommandQueueInfo)      \
    X(clCreateBuffer)             \
    X(clReleaseMemObject)         \
    X(clGetMemObjectInfo)         \
    X(clEnqueueWriteBuffer)       \
    X(clEnqueueReadBuffer)        \
    X(clEnqueueFillBuffer)        \
    X(clEnqueueMarkerWithWaitList) \
    X(clCreateProgramWithSource)  \
    X(clBuildProgram)             \
    X(clGetProgramBuildInfo)      \
    X(clReleaseProgram)           \
    X(clCreateKernel)             \
    X(clReleaseKernel)            \
    X(clSetKernelArg)             \
    X(clGetKernelWorkGroupInfo)   \
    X(clEnqueueNDRangeKernel)     \
    X(clGetEventProfilingInfo)    \
    X(clCreateUserEvent)          \
    X(clSetUserEventStatus)       \
    X(clWaitForEvents)            \
    X(clReleaseEvent)             \
    X(clFlush)                    \
    X(clFinish)

typedef struct eplb_opencl_api {
#define EPLB_OPENCL_MEMBER(name) __typeof__(&name) name;
    EPLB_OPENCL_FUNCTIONS(EPLB_OPENCL_MEMBER)
#undef EPLB_OPENCL_MEMBER
} eplb_opencl_api;

/* Opens the runtime once per process (thread-safe). Returns the table, or NULL
 * after writing why into error (no libOpenCL, or an entry point missing). */
const eplb_opencl_api *eplb_opencl_load(char *error, size_t error_len);

/* Name of an OpenCL error code, e.g. "CL_OUT_OF_RESOURCES". */
const char *eplb_opencl_error_name(cl_int code);

#endif /* EPLB_OPENCL_LOADER_H */
