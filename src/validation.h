/* Shapes and options: their defaults and their checks against the documented
 * ranges (include/eplb/eplb.h). The public half, eplb_options_init,
 * eplb_shape_check and eplb_log2phy_width_max, is declared there; this header
 * adds what only the library calls. */
#ifndef EPLB_VALIDATION_H
#define EPLB_VALIDATION_H

#include "eplb/eplb.h"

/* Checks options against their documented ranges; on failure *message (when
 * message is not NULL) names the first option out of range. */
eplb_status eplb_options_check(const eplb_options *options, const char **message);

/* Copies the caller's options into out, a struct of this version: only
 * in->struct_size bytes are read (an older caller's struct, version 0.1.0,
 * ends at refine), the fields beyond keep their defaults. Then checks them as
 * eplb_options_check does. */
eplb_status eplb_options_read(const eplb_options *in, eplb_options *out, const char **message);

#endif /* EPLB_VALIDATION_H */
