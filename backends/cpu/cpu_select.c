/* Stage 4 of balanced packing (SPEC 6.4): per row, the candidate with the
 * smallest maximum pack load (ties: lowest candidate), written per item. */
#include "cpu_stages.h"

void eplb_cpu_select_row(const eplb_pack_job *job, int64_t row, const int32_t *content,
                         const float *scores)
{
    const int32_t n = job->items, m = job->packs, k = job->per_pack, C = job->candidates;
    const float *w = (const float *)job->weight + row * n;
    int32_t best_c = 0;
    float best_score = 0.0f;
    for (int32_t c = 0; c < C; c++) {
        float score;
        if (scores) {
            score = scores[c];
        } else {
            score = eplb_cpu_pack_load(w, content + c * n, 0, k);
            for (int32_t p = 1; p < m; p++) {
                float load = eplb_cpu_pack_load(w, content + c * n, p, k);
                if (load > score) score = load;
            }
        }
        if (c == 0 || score < best_score) {
            best_score = score;
            best_c = c;
        }
    }
    const int32_t *chosen = content + best_c * n;
    int32_t *pack_of = (int32_t *)job->pack_of + row * n;
    int32_t *rank_of = (int32_t *)job->rank_of + row * n;
    /* Pack by pack: no division per slot. */
    for (int32_t p = 0; p < m; p++)
        for (int32_t r = 0; r < k; r++) {
            pack_of[chosen[p * k + r]] = p;
            rank_of[chosen[p * k + r]] = r;
        }
}

eplb_status eplb_cpu_pack_select(eplb_backend *backend, const eplb_pack_job *job)
{
    (void)backend;
#pragma omp parallel for schedule(static) if (EPLB_CPU_WORTH_THREADS(job->rows * job->candidates * job->items))
    for (int64_t row = 0; row < job->rows; row++)
        eplb_cpu_select_row(job, row, (const int32_t *)job->content + row * job->candidates * job->items,
                            NULL);
    return EPLB_OK;
}
