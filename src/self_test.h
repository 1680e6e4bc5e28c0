/* The self-test that the registry runs on every new instance of a backend
 * other than cpu, before anyone plans with it. */
#ifndef EPLB_SELF_TEST_H
#define EPLB_SELF_TEST_H

#include "backend.h"

/* Plans a tiny hierarchical case with candidates and swaps on candidate and on
 * a fresh cpu backend instance; the two plans must agree bit for bit. On
 * failure writes why into error and returns the status (EPLB_ERR_BACKEND_FAILURE
 * when the plans differ). candidate is left open either way. */
eplb_status eplb_self_test(eplb_backend *candidate, char *error, size_t error_len);

#endif /* EPLB_SELF_TEST_H */
