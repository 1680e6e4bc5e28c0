/* The device-memory form of the incremental rebalance (incremental_device.c). */
#ifndef EPLB_INCREMENTAL_DEVICE_H
#define EPLB_INCREMENTAL_DEVICE_H

#include <stdint.h>

#include "eplb/eplb.h"

/* Behind eplb_rebalance_incremental_device (ctx checked and its error
 * cleared). */
eplb_status eplb_incremental_device(eplb_context *ctx, const void *weight, const eplb_shape *shape,
                                    const eplb_options *options, const void *previous,
                                    void *phy2log, void *logcnt, void *log2phy,
                                    int64_t log2phy_width, void *stream);

#endif /* EPLB_INCREMENTAL_DEVICE_H */
