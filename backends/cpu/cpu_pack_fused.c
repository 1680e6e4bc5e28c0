/* The four packing stages back to back, one row (all its candidates) per
 * loop step: each candidate's order and content stay in cache between stages,
 * and one parallel region replaces four. Same functions, same results as the
 * separate stages (EPLB_CPU_STAGES=separate selects those, for tests). */
#include "cpu_backend.h"

eplb_status eplb_cpu_pack_fused(eplb_backend *backend, const eplb_pack_job *job)
{
    const int32_t n = job->items, C = job->candidates;
    int failed = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(job->rows * C * n))
    {
        eplb_cpu_scratch scratch;
        const int ok = eplb_cpu_scratch_init(&scratch, job) == EPLB_OK;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t row = 0; row < job->rows; row++) {
            if (!ok)
                continue;
            for (int32_t c = 0; c < C; c++) {
                const int64_t x = row * C + c;
                int32_t *order = (int32_t *)job->order + x * n;
                int32_t *content = (int32_t *)job->content + x * n;
                eplb_cpu_sort_one(job, row, c, order, &scratch);
                eplb_cpu_greedy_one(job, row, order, content, &scratch);
                eplb_cpu_swap_one(job, row, content, &scratch);
            }
            eplb_cpu_select_row(job, row);
        }
        eplb_cpu_scratch_free(&scratch);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "packing: out of host memory");
    return EPLB_OK;
}
