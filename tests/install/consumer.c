/* A program built against an installed eplb, as a user builds one: it plans
 * two layers on the cpu backend and checks what it can without the source
 * tree. Exit 0 when the installed header and library agree and plan. */
#include <stdio.h>

#include <eplb/eplb.h>

int main(void)
{
    if (eplb_version_number() != EPLB_VERSION_NUMBER) {
        fprintf(stderr, "header %s, library %s\n", EPLB_VERSION_STRING, eplb_version_string());
        return 1;
    }
    const float weight[2][4] = {{8, 1, 1, 2}, {0, 0, 0, 0}};
    const eplb_shape shape = {2, 4, 6, 1, 1, 2};
    int64_t phy2log[2][6], logcnt[2][4];
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cpu") != EPLB_OK) {
        fprintf(stderr, "no cpu backend: %s\n", eplb_last_error());
        return 1;
    }
    eplb_status st = eplb_rebalance(ctx, &weight[0][0], &shape, NULL, &phy2log[0][0],
                                    &logcnt[0][0], NULL, 0, NULL);
    eplb_context_free(ctx);
    if (st != EPLB_OK) {
        fprintf(stderr, "eplb_rebalance: %s\n", eplb_status_string(st));
        return 1;
    }
    /* Every layer holds each expert logcnt times in its 6 slots. */
    for (int l = 0; l < 2; l++) {
        int64_t seen[4] = {0, 0, 0, 0}, total = 0;
        for (int q = 0; q < 6; q++) {
            if (phy2log[l][q] < 0 || phy2log[l][q] >= 4)
                return 1;
            seen[phy2log[l][q]]++;
        }
        for (int e = 0; e < 4; e++) {
            if (seen[e] != logcnt[l][e] || logcnt[l][e] < 1)
                return 1;
            total += logcnt[l][e];
        }
        if (total != 6)
            return 1;
    }
    printf("eplb %s: planned\n", eplb_version_string());
    return 0;
}
