/* plan_fused, stage 1 of a packing (SPEC 6.1): every packing's sort keys,
 * then its visiting order (key descending, equal keys by ascending index),
 * both in local memory. A group of GPU work-items ranks the items; a CPU
 * device's one work-item radix-sorts or heap-sorts each packing. Warp teams
 * sort in registers instead (fused_warp.cl). */
#pragma OPENCL FP_CONTRACT OFF

/* A CPU device's heap sort of one packing; its keys are float bits. */
#define EPLB_FLOAT_BITS_AT(key, i) as_float((key)[i])
EPLB_DEFINE_HEAP_SORT(eplb_fused_heapsort, local, int, EPLB_FLOAT_BITS_AT)

/* One work-item's sort of one packing (CPU devices): LSD radix sort, stable
 * from index order, so equal keys keep ascending index; 8 bits a pass (4
 * measured slower even for 72 keys: twice the passes); a pass whose digit
 * never varies is skipped. key[n] holds the float keys' bits (overwritten);
 * scratch holds 2n + 256 words. */
inline void eplb_fused_radix_sort(local int *key, local int *order, int n, local uint *scratch)
{
    local uint *k0 = (local uint *)key, *k1 = scratch;
    local int *i0 = order, *i1 = (local int *)(scratch + n);
    local int *count = (local int *)(scratch + 2 * n);
    const int bits = 8, buckets = 1 << bits;
    const uint digit = (uint)buckets - 1u;
    for (int i = 0; i < n; i++) {
        k0[i] = eplb_float_max_key(as_float(key[i])); /* ascending = key descending */
        i0[i] = i;
    }
    for (int shift = 0; shift < 32; shift += bits) {
        for (int d = 0; d < buckets; d++)
            count[d] = 0;
        for (int i = 0; i < n; i++)
            count[(k0[i] >> shift) & digit]++;
        if (count[(k0[0] >> shift) & digit] == n)
            continue;
        int sum = 0;
        for (int d = 0; d < buckets; d++) {
            const int here = count[d];
            count[d] = sum;
            sum += here;
        }
        for (int i = 0; i < n; i++) {
            const uint k = k0[i];
            const int at = count[(k >> shift) & digit]++;
            k1[at] = k;
            i1[at] = i0[i];
        }
        local uint *kt = k0;
        k0 = k1;
        k1 = kt;
        local int *it = i0;
        i0 = i1;
        i1 = it;
    }
    if (i0 != order)
        for (int i = 0; i < n; i++)
            order[i] = i0[i];
}

/* The sort keys of `P` packings of n items (rows of C candidates from
 * c_first, row r's weights at wrows[r*n ...], its random-function row
 * row0 + r) into keys[x*n + i], as float bits. Element y = x * n + i is
 * stepped without a division an element, and the random function's first
 * rounds run once a packing a work-item. */
EPLB_STEP void eplb_fused_keys(local const float *wrows, int P, ulong row0, int n, int C, int c_first,
                               int call, ulong seed, float noise, local int *keys)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    const int step_x = T / n, step_i = T % n;
    int x = t / n, i = t % n, r = 0, c = 0, prefix_x = -1;
    ulong prefix = 0;
    for (int y = t; y < P * n; y += T) {
        if (x != prefix_x) {
            r = x / C;
            c = c_first + x % C;
            prefix = eplb_random_prefix(seed, (ulong)call, row0 + (ulong)r, (ulong)c);
            prefix_x = x;
        }
        const float w = wrows[r * n + i];
        keys[y] = as_int(c == 0 ? w : eplb_sort_key(w, noise, eplb_random_unit_at(prefix, (ulong)i)));
        x += step_x;
        i += step_i;
        if (i >= n) {
            i -= n;
            x++;
        }
    }
}

/* The visiting order of P packings of n items from their keys. One
 * work-item (CPU devices) radix-sorts where the scratch fits (in the loads
 * and counts, which the greedy fills later), else heap-sorts; with
 * heap_sort 0 (GPUs) every work-item ranks items of the group's packings. */
EPLB_STEP void eplb_fused_order(local int *keys, local int *order, int P, int n, int m, int heap_sort,
                                local uint *scratch)
{
    const int t = (int)get_local_id(0), T = (int)EPLB_LOCAL_SIZE();
    /* A constant T stays on the left of && (a folded constant on the right
     * is a compiler warning, printed by PoCL at every build). */
    if (T == 1 && heap_sort && 3 * P * m >= 2 * n + 256) {
        for (int x = 0; x < P; x++)
            eplb_fused_radix_sort(keys + x * n, order + x * n, n, scratch);
    } else if (heap_sort) {
        for (int x = t; x < P; x += T)
            eplb_fused_heapsort(keys + x * n, order + x * n, n);
    } else {
        for (int y = t; y < P * n; y += T) {
            const int x = y / n, i = y % n;
            local const int *key = keys + x * n;
            const float mine = as_float(key[i]);
            int rank = 0;
            for (int j = 0; j < n; j++) {
                const float other = as_float(key[j]);
                rank += other > mine || (other == mine && j < i);
            }
            order[x * n + rank] = i;
        }
    }
}
