#include "workload.h"

uint64_t eplb_workload_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void eplb_workload_fill(float *weight, int64_t layers, int64_t experts, uint64_t seed,
                        int64_t dead_every)
{
    uint64_t state = seed * 0x2545F4914F6CDD1DULL + 1;
    for (int64_t l = 0; l < layers; l++)
        for (int64_t e = 0; e < experts; e++) {
            uint64_t r = eplb_workload_next(&state);
            uint64_t u = r >> 44;                 /* 20 bits, uniform */
            uint64_t tail = (u * u >> 20) * u >> 20; /* u^3: most small, a few large */
            uint64_t load = 2000 + (r & 1023) + tail / 4;
            if (((r >> 20) & 31) == 0)
                load *= 6;                        /* about one expert in 32 is hot */
            if (dead_every > 0 && e % dead_every == dead_every - 1)
                load = 0;
            weight[l * experts + e] = (float)load;
        }
}
