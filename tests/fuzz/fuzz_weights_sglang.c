/* Fuzz target: SGLang expert-distribution JSON. The input becomes the value of
 * "logical_count" in {"logical_count": ...}, so that every input reaches the
 * SGLang path ([layers][experts] or [windows][layers][experts]). */
#include "fuzz_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char head[] = "{\"logical_count\": ", tail[] = "}";
    if (size > (1 << 20))
        return 0;
    char *doc = malloc(sizeof head - 1 + size + sizeof tail - 1);
    if (!doc)
        return 0;
    memcpy(doc, head, sizeof head - 1);
    memcpy(doc + sizeof head - 1, data, size);
    memcpy(doc + sizeof head - 1 + size, tail, sizeof tail - 1);
    fuzz_weights_parse("fuzz.json", doc, sizeof head - 1 + size + sizeof tail - 1,
                       "sglang-json");
    free(doc);
    return 0;
}
