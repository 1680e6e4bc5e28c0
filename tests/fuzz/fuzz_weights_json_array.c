/* Fuzz target: a plain JSON array of loads (or anything a .json file holds). */
#include "fuzz_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A .json name sends every input to jansson, unless it carries the NumPy magic. */
    fuzz_weights_parse("fuzz.json", data, size, NULL);
    return 0;
}
