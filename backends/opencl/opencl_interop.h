/* What a caller of eplb_rebalance_device needs from an opencl context: the
 * cl_context its cl_mem buffers and command queue must belong to, and the
 * device. The backend's state begins with this struct, so libeplb can hand
 * it out without knowing the rest (see docs/backends.md, "Interop"). */
#ifndef EPLB_OPENCL_INTEROP_H
#define EPLB_OPENCL_INTEROP_H

#include <CL/cl.h>

typedef struct eplb_opencl_handles {
    cl_context context;      /* shared by every opencl context on this device in the process */
    cl_device_id device;
    cl_command_queue queue;  /* the queue work goes to now (the backend's own by default) */
} eplb_opencl_handles;

#endif /* EPLB_OPENCL_INTEROP_H */
