/* Per-thread scratch of the cpu packing stages, one allocation per thread and
 * job rather than one per packing, and the OpenMP loops that hand it out. */
#include <stdlib.h>

#include "cpu_runtime.h"

static size_t tree_leaves(int32_t packs)
{
    size_t leaves = 1;
    while (leaves < (size_t)packs)
        leaves *= 2;
    return leaves;
}

/* Rounds p up to the next cache line (64 bytes), so that the vector loops
 * over the arrays below never load across two lines. */
static uint32_t *cache_line(uint32_t *p)
{
    return (uint32_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Arrays that eplb_cpu_scratch_init starts on a cache line, each at a cost
 * of up to 16 words of slack. */
#define ALIGNED_ARRAYS 4

eplb_status eplb_cpu_scratch_init(eplb_cpu_scratch *s, const eplb_pack_job *job,
                                  const eplb_cpu_settings *settings, size_t greedy_words)
{
    const size_t n = (size_t)job->items, m = (size_t)job->packs, k = (size_t)job->per_pack;
    const size_t lanes = greedy_words;
    s->settings = *settings;
    /* The sorted swap search's three arrays; one pack never swaps. */
    const size_t sorted = m > 1 ? 2 * k : 0;
    const size_t words = 2 * (n + 8) + 3 * sorted + 3 * n + n + (4 * n + 2) + (m + 1) + m +
                         2 * tree_leaves(job->packs) + 2 * k + lanes + EPLB_CPU_LANES * m +
                         (size_t)job->candidates;
    /* A row's candidates in scratch up to 256 KiB each (beyond, the job's buffers). */
    const size_t row_words = (size_t)job->candidates * n;
    const size_t own = row_words <= 65536 ? 2 * row_words : 0;
    s->block = aligned_alloc(64, ((words + own + 16 * ALIGNED_ARRAYS) * 4 + 63) & ~(size_t)63);
    if (!s->block)
        return EPLB_ERR_OUT_OF_MEMORY;
    uint32_t *p = s->block;
    s->pair = (uint64_t *)s->block;  p += 2 * (n + 8); /* first: 8-byte aligned; n rounded up to 8 */
    s->sorted_a = (uint64_t *)p;     p += sorted; /* 8-byte aligned: an even number of words on */
    s->sorted_b = (uint64_t *)p;     p += sorted;
    s->sort_spare = (uint64_t *)p;   p += sorted;
    s->key = p;                      p += 3 * n;
    s->order = (int32_t *)p;         p += n;
    s->bucket = (int32_t *)p;        p += 4 * n + 2;
    s->load = (float *)p;            p += m + 1;
    s->count = (int32_t *)p;         p += m;
    s->tree = (int32_t *)p;          p += 2 * tree_leaves(job->packs);
    s->wa = (float *)p;              p += k;
    s->wb = (float *)p;              p += k;
    p = cache_line(p);
    s->lanes = (float *)p;           p += lanes;
    p = cache_line(p);
    s->lane_load = (float *)p;       p += EPLB_CPU_LANES * m;
    s->score = (float *)p;           p += job->candidates;
    p = cache_line(p);
    s->own_order = own ? (int32_t *)p : NULL;
    p += own ? row_words : 0;
    p = cache_line(p);
    s->own_content = own ? (int32_t *)p : NULL;
    s->order_row = NULL;
    s->content_row = NULL;
    return EPLB_OK;
}

void eplb_cpu_scratch_free(eplb_cpu_scratch *s)
{
    free(s->block);
    s->block = NULL;
}

/* One call per packing (one_packing) or per row (one_row) across the OpenMP
 * threads, each thread with its own scratch. */
static eplb_status for_each(eplb_backend *backend, const eplb_pack_job *job,
                            eplb_cpu_packing_fn one_packing, eplb_cpu_row_fn one_row,
                            size_t greedy_words, const char *stage)
{
    const int64_t units = one_packing ? job->rows * job->candidates : job->rows;
    int failed = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(job->rows * job->candidates * job->items))
    {
        eplb_cpu_scratch scratch;
        const int ok = eplb_cpu_scratch_init(&scratch, job, eplb_cpu_settings_of(backend),
                                             greedy_words) == EPLB_OK;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        /* Every thread must reach the worksharing loop, even one without scratch. */
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            if (!ok)
                continue;
            if (one_packing)
                one_packing(job, u / job->candidates, u % job->candidates, &scratch);
            else
                one_row(job, u, &scratch);
        }
        eplb_cpu_scratch_free(&scratch);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "%s: out of host memory", stage);
    return EPLB_OK;
}

eplb_status eplb_cpu_for_each_packing(eplb_backend *backend, const eplb_pack_job *job,
                                      eplb_cpu_packing_fn one_packing, const char *stage)
{
    return for_each(backend, job, one_packing, NULL, 0, stage);
}

eplb_status eplb_cpu_for_each_row(eplb_backend *backend, const eplb_pack_job *job,
                                  eplb_cpu_row_fn one_row, size_t greedy_words, const char *stage)
{
    return for_each(backend, job, NULL, one_row, greedy_words, stage);
}

/* The scratch each thread first allocates: a plan of the DeepSeek-V3 shapes
 * asks for a few tens of KiB per thread. */
#define WARM_SCRATCH_BYTES ((size_t)64 << 10)

void eplb_cpu_threads_warm(void)
{
#pragma omp parallel if (eplb_threads_usable())
    {
        volatile unsigned char *block = malloc(WARM_SCRATCH_BYTES);
        if (block) {
            /* A store per page faults the pages in; volatile, because the
             * block is freed unread and a compiler may drop plain stores. */
            for (size_t at = 0; at < WARM_SCRATCH_BYTES; at += 4096)
                block[at] = 0;
            free((void *)block);
        }
    }
}
