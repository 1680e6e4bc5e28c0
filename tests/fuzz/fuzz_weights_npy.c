/* Fuzz target: NumPy .npy files (format versions 1, 2 and 3). */
#include "fuzz_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_weights_parse("fuzz.npy", data, size, "npy");
    return 0;
}
