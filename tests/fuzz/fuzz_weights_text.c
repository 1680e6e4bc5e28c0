/* Fuzz target: CSV / whitespace text, one layer per line. */
#include <ctype.h>

#include "fuzz_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Inputs that detection sends to another parser are the other targets' work. */
    if (size >= 6 && memcmp(data, "\x93NUMPY", 6) == 0)
        return 0;
    size_t i = size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    while (i < size && isspace(data[i]))
        i++;
    if (i < size && (data[i] == '{' || data[i] == '['))
        return 0;
    fuzz_weights_parse("fuzz.txt", data, size, "text");
    return 0;
}
