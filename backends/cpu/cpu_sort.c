/* Stage 1 of balanced packing (SPEC 6.1): randomized keys and the visiting
 * order, items by key descending, equal keys by ascending index. */
#include <stdlib.h>
#include <string.h>

#include "common/spec_math.h"
#include "cpu_backend.h"

/* Maps a float to an unsigned integer with the same order (-0 and +0 equal). */
static inline uint32_t ordered_bits(float key)
{
    if (key == 0.0f)
        return 0x80000000u;
    uint32_t bits;
    memcpy(&bits, &key, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

static void sort_ascending(uint64_t *a, int32_t n)
{
    /* Quicksort with insertion sort below 16; keys are distinct (index in the low bits). */
    while (n > 16) {
        uint64_t x = a[0], y = a[n / 2], z = a[n - 1];
        uint64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int32_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            uint64_t t = a[i]; a[i] = a[j]; a[j] = t;
            i++; j--;
        }
        /* Recurse on the smaller part, loop on the larger. */
        int32_t left = j + 1;
        if (left < n - left) {
            sort_ascending(a, left);
            a += left; n -= left;
        } else {
            sort_ascending(a + left, n - left);
            n = left;
        }
    }
    for (int32_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        int32_t j = i;
        while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
        a[j] = v;
    }
}

eplb_status eplb_cpu_pack_sort(eplb_backend *backend, const eplb_pack_job *job)
{
    const int64_t packings = job->rows * job->candidates;
    const int32_t n = job->items;
    const float *weight = job->weight;
    int32_t *order = job->order;
    int failed = 0;

#pragma omp parallel
    {
        uint64_t *keyed = malloc((size_t)n * sizeof *keyed);
        if (!keyed) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t x = 0; x < packings; x++) {
            if (!keyed) continue;
            const int64_t row = x / job->candidates;
            const int64_t c = x % job->candidates;
            const float *w = weight + row * n;
            for (int32_t i = 0; i < n; i++) {
                float key = w[i];
                if (c > 0)
                    key = eplb_sort_key(w[i], job->noise,
                                        eplb_random_unit(job->seed, (uint64_t)job->call,
                                                         (uint64_t)row, (uint64_t)c, (uint64_t)i));
                /* Descending key first, ascending index second. */
                keyed[i] = ((uint64_t)~ordered_bits(key) << 32) | (uint32_t)i;
            }
            sort_ascending(keyed, n);
            int32_t *out = order + x * n;
            for (int32_t i = 0; i < n; i++)
                out[i] = (int32_t)(uint32_t)keyed[i];
        }
        free(keyed);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "sort: out of host memory");
    return EPLB_OK;
}
