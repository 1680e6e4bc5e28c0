/* Fuzz target: the golden-file reader (SPEC section 9), used by the tests and
 * `eplb conformance`. The reader takes a path: the input is handed over as an
 * in-memory file (memfd) named through /proc/self/fd. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_weights.h" /* FUZZ_REQUIRE */
#include "golden.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("eplb-fuzz-golden", 0)) < 0) {
        perror("memfd_create");
        abort();
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        perror("memfd write");
        abort();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    eplb_golden g;
    char error[1024] = "";
    eplb_status st = eplb_golden_read(path, &g, error, sizeof error);
    if (st != EPLB_OK) {
        FUZZ_REQUIRE(st == EPLB_ERR_PARSE || st == EPLB_ERR_IO, "status %s",
                     eplb_status_string(st));
        FUZZ_REQUIRE(error[0], "failure without a message");
        FUZZ_REQUIRE(!g.weight && !g.phy2log && !g.logcnt && !g.max_gpu_load,
                     "failed read kept arrays");
        return 0;
    }
    FUZZ_REQUIRE(eplb_shape_check(&g.shape, NULL) == EPLB_OK, "accepted an invalid shape");
    FUZZ_REQUIRE(g.weight && g.phy2log && g.logcnt && g.max_gpu_load, "success without arrays");
    /* Touch every element, so a short allocation shows under ASan. */
    const size_t L = (size_t)g.shape.layers, E = (size_t)g.shape.experts;
    const size_t R = (size_t)g.shape.replicas;
    volatile double sink = 0;
    for (size_t i = 0; i < L * E; i++)
        sink += g.weight[i] + (double)g.logcnt[i];
    for (size_t i = 0; i < L * R; i++)
        sink += (double)g.phy2log[i];
    for (size_t i = 0; i < L; i++)
        sink += g.max_gpu_load[i];
    (void)sink;
    eplb_golden_free(&g);
    return 0;
}
