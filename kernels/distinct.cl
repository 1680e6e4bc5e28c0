/* The distinct stage (SPEC 11.3 cap, 11.4 repair) after the packing of slots
 * to GPUs: no expert keeps more replicas in a row than the row has GPUs, and
 * no GPU holds an expert twice. One work-item per row: the cap and the repair
 * are short sequential loops whose every step depends on the one before, so
 * a row's work is the cpu backend's (backends/cpu/cpu_distinct.c) line for
 * line, with the same float32 operations in the same order.
 *
 * A row is x = l*N + n (the global policy has N == 1). Its experts are the
 * node-major items j = 0..M-1 of the replicate stage (logical expert
 * mlog2log[l][n*M + j]), and its slots the replicate stage's q = 0..n-1,
 * placed at GPU pack_of[q], position rank_of[q]. The cap rewrites the freed
 * slots' item and replica rank (phy2mlog, phyrank), the counts (mlogcnt) and
 * the row's slot loads, so that refine and assemble see the capped plan; the
 * repair moves slots between GPUs through pack_of and rank_of. */
#pragma OPENCL FP_CONTRACT OFF

/* SPEC 10.1: a GPU's slot loads summed left to right in position order. */
inline float eplb_distinct_gpu_load(global const float *t, int g, int k)
{
    float sum = t[g * k];
    for (int r = 1; r < k; r++)
        sum += t[g * k + r];
    return sum;
}

/* The row's slot loads and GPU loads in position order, from content. */
inline void eplb_distinct_weigh(global const float *slot_load, global const int *content,
                                global float *t, global float *load, int n, int m, int k)
{
    for (int i = 0; i < n; i++)
        t[i] = slot_load[content[i]];
    for (int g = 0; g < m; g++)
        load[g] = eplb_distinct_gpu_load(t, g, k);
}

/* SPEC 11.3 on one row: every item keeps at most m replicas; each slot of
 * replica rank >= m, in slot order, goes to the item below m with the
 * largest weight / count (ties: the lowest logical expert), and the row's
 * slot loads follow the new counts. Returns the number of slots freed; with
 * none the row is left as it was. */
inline int eplb_distinct_cap(global int *phy2mlog, global int *phyrank, global int *mlogcnt,
                             global const float *node_weight, global const int *mlog2log,
                             global float *slot_load, global const int *content,
                             global int *count, int n, int m, long M)
{
    int freed = 0;
    for (int i = 0; i < n; i++)
        freed += phyrank[content[i]] >= m;
    if (freed == 0)
        return 0;
    for (long j = 0; j < M; j++)
        count[j] = mlogcnt[j] < m ? mlogcnt[j] : m;
    for (int i = 0; i < n; i++) {
        const int q = content[i];
        if (phyrank[q] < m)
            continue;
        long best = -1;
        float best_key = 0.0f;
        for (long j = 0; j < M; j++) {
            if (count[j] >= m)
                continue;
            const float key = node_weight[j] / (float)count[j];
            if (best < 0 || key > best_key || (key == best_key && mlog2log[j] < mlog2log[best])) {
                best = j;
                best_key = key;
            }
        }
        /* SPEC 11.2, checked by the planner, leaves an item below the cap
         * for every freed slot: a row has at least k items, so m * M >= n. */
        phy2mlog[q] = (int)best;
        phyrank[q] = count[best]++;
    }
    for (long j = 0; j < M; j++)
        mlogcnt[j] = count[j];
    for (int q = 0; q < n; q++) {
        const int j = phy2mlog[q];
        slot_load[q] = node_weight[j] / (float)mlogcnt[j];
    }
    return freed;
}

/* How many of GPU g's k slots hold item j. */
inline int eplb_distinct_copies(global const int *item_at, int g, int k, int j)
{
    int copies = 0;
    for (int r = 0; r < k; r++)
        copies += item_at[g * k + r] == j;
    return copies;
}

/* SPEC 11.4 on one row: while a GPU holds an item twice, its first repeat
 * exchanges places with the partner slot that keeps the larger of the two
 * GPU loads lowest (ties: the lowest slot). Returns the number of
 * exchanges, or -1 where a repeat has no partner, which the cap rules out. */
inline int eplb_distinct_repair(global int *content, global int *item_at, global float *t,
                                global float *load, global int *seen, int m, int k, long M)
{
    for (long j = 0; j < M; j++)
        seen[j] = 0;
    int exchanges = 0, from = 0;
    for (;;) {
        /* The first slot from GPU `from` on whose item also sits at a lower
         * position of its GPU. */
        int dup = -1;
        for (int g = from; g < m && dup < 0; g++)
            for (int r = 0; r < k; r++) {
                const int j = item_at[g * k + r];
                if (seen[j] == g + 1) {
                    dup = g * k + r;
                    break;
                }
                seen[j] = g + 1;
            }
        if (dup < 0)
            return exchanges;
        const int a = dup / k, e = item_at[dup];
        /* The GPUs before a hold no repeat, and an exchange leaves them
         * without one (a partner before a gains e, which it lacked, and
         * gives away an item that a lacks or that it held once); so the
         * next scan starts at a, with a's marks cleared. */
        for (int r = 0; r < k; r++)
            seen[item_at[a * k + r]] = 0;
        from = a;
        int best = -1;
        float best_peak = 0.0f;
        for (int b = 0; b < m; b++) {
            if (b == a || eplb_distinct_copies(item_at, b, k, e) > 0)
                continue;
            for (int r = 0; r < k; r++) {
                const int u = b * k + r, f = item_at[u];
                if (eplb_distinct_copies(item_at, a, k, f) > 0 &&
                    eplb_distinct_copies(item_at, b, k, f) < 2)
                    continue;
                const float d = t[dup] - t[u];
                const float new_a = load[a] - d, new_b = load[b] + d;
                /* The larger of the two, new_a unless new_b is greater. */
                const float peak = new_b > new_a ? new_b : new_a;
                if (best < 0 || peak < best_peak) {
                    best = u;
                    best_peak = peak;
                }
            }
        }
        if (best < 0)
            return -1;
        const int b = best / k;
        const int q = content[dup];
        content[dup] = content[best];
        content[best] = q;
        const int j = item_at[dup];
        item_at[dup] = item_at[best];
        item_at[best] = j;
        const float held = t[dup];
        t[dup] = t[best];
        t[best] = held;
        load[a] = eplb_distinct_gpu_load(t, a, k);
        load[b] = eplb_distinct_gpu_load(t, b, k);
        exchanges++;
    }
}

/* One work-item per row of slot_pack (n slots on m GPUs of k slots; rows
 * L*N, M items a row, E experts a layer, N rows a layer). ints_all holds
 * the rows' integer scratch (2n + 2M a row: content, item_at, count, seen),
 * floats_all their float scratch (n + m a row: slot loads by position, GPU
 * loads). Writes row_changed (whether the cap freed a slot or the repair
 * exchanged one) and row_seed_max (the row's heaviest GPU before the cap)
 * for the restore. A repeat without a partner sets status to `bug`. A
 * nonzero status (a bad weight, a too-narrow log2phy) leaves the row as it
 * is: assemble will write nothing anyway. */
kernel void eplb_distinct(global int *phy2mlog, global int *phyrank, global int *mlogcnt,
                          global const float *node_weight, global const int *mlog2log,
                          global float *slot_load, global int *pack_of, global int *rank_of,
                          global int *status, global int *row_changed,
                          global float *row_seed_max, global int *ints_all,
                          global float *floats_all, long rows, int n, int m, int k, long M,
                          long E, long N, int bug)
{
    const long x = (long)get_global_id(0);
    if (x >= rows)
        return;
    row_changed[x] = 0;
    if (status && status[0] != 0)
        return;
    global int *row_phy2mlog = phy2mlog + x * n, *row_phyrank = phyrank + x * n;
    global int *row_mlogcnt = mlogcnt + x * M;
    global const float *row_weight = node_weight + x * M;
    global const int *row_mlog2log = mlog2log + (x / N) * E + (x % N) * M;
    global float *row_load = slot_load + x * n;
    global int *row_pack = pack_of + x * n, *row_rank = rank_of + x * n;
    global int *content = ints_all + x * (2 * (long)n + 2 * M);
    global int *item_at = content + n, *count = item_at + n, *seen = count + M;
    global float *t = floats_all + x * (long)(n + m), *load = t + n;

    for (int q = 0; q < n; q++)
        content[row_pack[q] * k + row_rank[q]] = q;
    eplb_distinct_weigh(row_load, content, t, load, n, m, k);
    float seed_max = load[0];
    for (int g = 1; g < m; g++)
        seed_max = load[g] > seed_max ? load[g] : seed_max;
    row_seed_max[x] = seed_max;

    const int freed = eplb_distinct_cap(row_phy2mlog, row_phyrank, row_mlogcnt, row_weight,
                                        row_mlog2log, row_load, content, count, n, m, M);
    if (freed > 0)
        eplb_distinct_weigh(row_load, content, t, load, n, m, k);
    for (int i = 0; i < n; i++)
        item_at[i] = row_phy2mlog[content[i]];
    const int exchanges = eplb_distinct_repair(content, item_at, t, load, seen, m, k, M);
    if (exchanges < 0) {
        if (status)
            atomic_xchg(status, bug);
        return;
    }
    row_changed[x] = freed > 0 || exchanges > 0;
    if (exchanges > 0)
        for (int i = 0; i < n; i++) {
            row_pack[content[i]] = i / k;
            row_rank[content[i]] = i % k;
        }
}
