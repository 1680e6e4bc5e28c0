/* The refine search (SPEC 10.3) after the packing of slots to GPUs: one
 * work-group per row makes all of the row's trades in one launch, so a plan
 * needs no host round trip per trade. Each iteration every work-item finds
 * the heaviest GPU A itself, weighs its share of A's trades, the group picks
 * the smallest peak (ties: the first in trade order) and work-item 0 applies
 * it, with step 4's recompute-and-undo. With distinct a work-item takes only
 * the trades that SPEC 11.6 allows (neither GPU holds an expert twice
 * afterwards), and the restore of SPEC 11.5 is the same search on the rows
 * the distinct stage changed, with a fixed number of trades and one more
 * stop rule: the row's heaviest GPU no heavier than before the cap.
 *
 * Trades are numbered in trade order (SPEC 10.2): one-for-one trade
 * (B, sa, sb) is (pb * k + sa) * k + sb, where pb counts the partners B
 * other than A in ascending order; two-for-two trade (B, pair i, pair j) is
 * ones + (pb * pairs + i) * pairs + j, pairs in lexicographic order, ones
 * the number of one-for-one trades. The host keeps every number below
 * 2^31 - 1 (it declines larger rows). A work-item weighs whole units, a
 * unit being one of A's slots or pairs against all of one partner's, in
 * ascending order, so that its own first smallest peak is the first in
 * trade order among its trades. */
#pragma OPENCL FP_CONTRACT OFF

/* No trade: above every float key and every trade number. */
#define EPLB_REFINE_NONE 0xFFFFFFFFu

/* The positions (lo, hi) of pair i of a GPU's k positions, pairs in
 * lexicographic order: (0,1), (0,2), ..., (0,k-1), (1,2), ... */
inline int2 eplb_refine_pair(int i, int k)
{
    int lo = 0;
    while (i >= k - 1 - lo) {
        i -= k - 1 - lo;
        lo++;
    }
    return (int2)(lo, lo + 1 + i);
}

/* Takes (other_key, other_index) where it is lower: the smaller key, the
 * lower trade number among equal keys. */
inline void eplb_refine_take_lower(uint *key, uint *index, uint other_key, uint other_index)
{
    if (other_key < *key || (other_key == *key && other_index < *index)) {
        *key = other_key;
        *index = other_index;
    }
}

/* The group's smallest (key, index), lowest index among equal keys, in
 * every work-item; slots holds 2 * T uints. A call reads slots after its
 * last barrier, so two calls on the same slots need a barrier between them
 * (the search's barrier after each applied trade). */
inline uint2 eplb_refine_group_argmin(uint key, uint index, local uint *slots)
{
    const uint t = (uint)get_local_id(0), T = (uint)get_local_size(0);
    if (T == 1u)
        return (uint2)(key, index);
#if EPLB_NV_WARP
    /* Shuffles inside each warp, then every work-item reads the warps'
     * results: one barrier instead of a tree of them. */
    const uint team = T < 32u ? T : 32u;
    const uint2 mine = eplb_warp_team_argmin(key, index, team, eplb_warp_members());
    if (T <= 32u)
        return mine;
    if ((t & 31u) == 0u) {
        slots[2u * (t >> 5)] = mine.x;
        slots[2u * (t >> 5) + 1u] = mine.y;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint best_key = slots[0], best_index = slots[1];
    for (uint w = 1; w < T / 32u; w++)
        eplb_refine_take_lower(&best_key, &best_index, slots[2u * w], slots[2u * w + 1u]);
    return (uint2)(best_key, best_index);
#else
    slots[2u * t] = key;
    slots[2u * t + 1u] = index;
    for (uint s = T >> 1; s > 0u; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (t < s) {
            uint k0 = slots[2u * t], i0 = slots[2u * t + 1u];
            eplb_refine_take_lower(&k0, &i0, slots[2u * (t + s)], slots[2u * (t + s) + 1u]);
            slots[2u * t] = k0;
            slots[2u * t + 1u] = i0;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    return (uint2)(slots[0], slots[1]);
#endif
}

/* The key of the trade that moves g out of A for what B gives back (d =
 * g_a - g_b), SPEC 10.2's four operations in order, or EPLB_REFINE_NONE
 * when its peak is not finite: the cpu backend's rule, where a trade must
 * beat an initial +inf (so an infinite or NaN peak never wins). A caller
 * keeps a trade only when its key is below the best so far: trades come in
 * ascending order, so equal keys keep the first. */
inline uint eplb_refine_peak_key(float g_a, float g_b, float a_load, float b_load)
{
    const float d = g_a - g_b;
    const float new_a = a_load - d;
    const float new_b = b_load + d;
    const float peak = new_a > new_b ? new_a : new_b;
    return peak < INFINITY ? eplb_float_min_key(peak) : EPLB_REFINE_NONE;
}

/* The search of one row on its placement in SPACE (local memory when it
 * fits, else the row's global scratch, FENCE the barrier's flags for it):
 * content[g*k + r] is the row's slot at GPU g's position r, t its load,
 * load[g] GPU g's load. slots: 4 * T uints, two argmins' worth, so that
 * finding A and the best trade need no barrier between them. items: the
 * row's expert of each slot (phy2mlog) with distinct, else NULL; the row
 * stops once its heaviest GPU is at most stop_at (-inf: never). Defines
 * NAME and its helpers NAME_gpu_load, NAME_exchange, NAME_apply,
 * NAME_stays and NAME_allowed. */
#define EPLB_DEFINE_REFINE_ROW(NAME, SPACE, FENCE)                                           \
    /* SPEC 10.1: a GPU's slot loads summed left to right in position order. */              \
    inline float NAME##_gpu_load(SPACE const float *t, int g, int k)                         \
    {                                                                                        \
        float sum = t[g * k];                                                                \
        for (int r = 1; r < k; r++)                                                          \
            sum += t[g * k + r];                                                             \
        return sum;                                                                          \
    }                                                                                        \
    /* Exchanges slots i and j (expert, replica rank and load move together);                \
     * applied twice, it undoes itself. */                                                   \
    inline void NAME##_exchange(SPACE int *content, SPACE float *t, int i, int j)            \
    {                                                                                        \
        const int q = content[i];                                                            \
        content[i] = content[j];                                                             \
        content[j] = q;                                                                      \
        const float held = t[i];                                                             \
        t[i] = t[j];                                                                         \
        t[j] = held;                                                                         \
    }                                                                                        \
    /* Applies trade `trade` of A (twice: undoes it). */                                     \
    inline int NAME##_apply(SPACE int *content, SPACE float *t, int a, uint trade, int m,    \
                            int k, int pairs)                                                \
    {                                                                                        \
        const uint ones = (uint)(m - 1) * (uint)(k * k);                                     \
        int pb, b;                                                                           \
        if (trade < ones) {                                                                  \
            pb = (int)(trade / (uint)(k * k));                                               \
            const int rest = (int)(trade % (uint)(k * k));                                   \
            b = pb < a ? pb : pb + 1;                                                        \
            NAME##_exchange(content, t, a * k + rest / k, b * k + rest % k);                 \
        } else {                                                                             \
            const uint two = trade - ones, per = (uint)pairs * (uint)pairs;                  \
            pb = (int)(two / per);                                                           \
            const int rest = (int)(two % per);                                               \
            b = pb < a ? pb : pb + 1;                                                        \
            const int2 pa = eplb_refine_pair(rest / pairs, k), pbp = eplb_refine_pair(rest % pairs, k); \
            NAME##_exchange(content, t, a * k + pa.x, b * k + pbp.x);                        \
            NAME##_exchange(content, t, a * k + pa.y, b * k + pbp.y);                        \
        }                                                                                    \
        return b;                                                                            \
    }                                                                                        \
    /* Whether GPU g, giving its positions give.x (and give.y when count is                  \
     * 2) away and taking the experts take.x (and take.y), still holds no                    \
     * expert twice. Every GPU holds each expert once at most when the                       \
     * search starts (the repair saw to it) and after each kept trade, and                   \
     * the taken experts come from one such GPU, so only a kept expert                       \
     * equal to a taken one could repeat. */                                                 \
    inline int NAME##_stays(SPACE const int *content, global const int *items, int g, int k, \
                            int2 give, int2 take, int count)                                 \
    {                                                                                        \
        for (int r = 0; r < k; r++) {                                                        \
            if (r == give.x || (count == 2 && r == give.y))                                  \
                continue;                                                                    \
            const int e = items[content[g * k + r]];                                         \
            if (e == take.x || (count == 2 && e == take.y))                                  \
                return 0;                                                                    \
        }                                                                                    \
        return 1;                                                                            \
    }                                                                                        \
    /* SPEC 11.6: whether A giving its positions give_a for B's give_b (one                  \
     * each, or two when count is 2) leaves neither GPU holding an expert                    \
     * twice. */                                                                             \
    inline int NAME##_allowed(SPACE const int *content, global const int *items, int a,      \
                              int b, int2 give_a, int2 give_b, int count, int k)             \
    {                                                                                        \
        const int2 from_a = (int2)(items[content[a * k + give_a.x]],                         \
                                   count == 2 ? items[content[a * k + give_a.y]] : -1);      \
        const int2 from_b = (int2)(items[content[b * k + give_b.x]],                         \
                                   count == 2 ? items[content[b * k + give_b.y]] : -1);      \
        return NAME##_stays(content, items, a, k, give_a, from_b, count) &&                  \
               NAME##_stays(content, items, b, k, give_b, from_a, count);                    \
    }                                                                                        \
    inline void NAME(global const float *slot_load, global int *pack_of, global int *rank_of, \
                     global const int *items, SPACE int *content, SPACE float *t,            \
                     SPACE float *load, local uint *slots, local int *stop, int n, int m,    \
                     int k, int refine, float tolerance, float stop_at)                      \
    {                                                                                        \
        const int lid = (int)get_local_id(0), T = (int)get_local_size(0);                    \
        const cl_mem_fence_flags fence = FENCE;                                              \
        for (int q = lid; q < n; q += T)                                                     \
            content[pack_of[q] * k + rank_of[q]] = q;                                        \
        barrier(fence);                                                                      \
        for (int i = lid; i < n; i += T)                                                     \
            t[i] = slot_load[content[i]];                                                    \
        barrier(fence);                                                                      \
        for (int g = lid; g < m; g += T)                                                     \
            load[g] = NAME##_gpu_load(t, g, k);                                              \
        barrier(fence);                                                                      \
        const int pairs = k * (k - 1) / 2;                                                   \
        const int one_units = (m - 1) * k, units = one_units + (m - 1) * pairs;              \
        const uint ones = (uint)(m - 1) * (uint)(k * k);                                     \
        for (int iteration = 0; iteration < refine; iteration++) {                           \
            /* Step 1: the heaviest GPU, the lowest index among equals (the                  \
             * largest load is the smallest max-key). */                                     \
            uint heavy_key = EPLB_REFINE_NONE, heavy = EPLB_REFINE_NONE;                     \
            for (int g = lid; g < m; g += T) {                                               \
                const uint gk = eplb_float_max_key(load[g]);                                 \
                if (gk < heavy_key) {                                                        \
                    heavy_key = gk;                                                          \
                    heavy = (uint)g;                                                         \
                }                                                                            \
            }                                                                                \
            const int a = (int)eplb_refine_group_argmin(heavy_key, heavy, slots + 2 * T).y;  \
            const float a_load = load[a];                                                    \
            if (isinf(a_load) || a_load <= stop_at)                                          \
                break;                                                                       \
            /* Step 2: this work-item's units, then the group's best. */                     \
            uint key = EPLB_REFINE_NONE, best = EPLB_REFINE_NONE;                            \
            SPACE const float *t_a = t + a * k;                                              \
            for (int u = lid; u < units; u += T) {                                           \
                if (u < one_units) {                                                         \
                    const int pb = u / k, b = pb < a ? pb : pb + 1;                          \
                    const float g_a = t_a[u % k], b_load = load[b];                          \
                    SPACE const float *t_b = t + b * k;                                      \
                    const uint first = (uint)u * (uint)k;                                    \
                    for (int sb = 0; sb < k; sb++) {                                         \
                        const uint tk = eplb_refine_peak_key(g_a, t_b[sb], a_load, b_load);  \
                        if (tk < key &&                                                      \
                            (!items || NAME##_allowed(content, items, a, b, (int2)(u % k, 0), \
                                                      (int2)(sb, 0), 1, k))) {               \
                            key = tk;                                                        \
                            best = first + (uint)sb;                                         \
                        }                                                                    \
                    }                                                                        \
                } else {                                                                     \
                    const int v = u - one_units, pb = v / pairs, b = pb < a ? pb : pb + 1;   \
                    const int2 own = eplb_refine_pair(v % pairs, k);                         \
                    const float g_a = t_a[own.x] + t_a[own.y], b_load = load[b];             \
                    SPACE const float *t_b = t + b * k;                                      \
                    uint trade = ones + (uint)v * (uint)pairs;                               \
                    for (int lo = 0; lo < k - 1; lo++) {                                     \
                        const float first = t_b[lo];                                         \
                        for (int hi = lo + 1; hi < k; hi++, trade++) {                       \
                            const uint tk =                                                  \
                                eplb_refine_peak_key(g_a, first + t_b[hi], a_load, b_load);  \
                            if (tk < key &&                                                  \
                                (!items || NAME##_allowed(content, items, a, b, own,         \
                                                          (int2)(lo, hi), 2, k))) {          \
                                key = tk;                                                    \
                                best = trade;                                                \
                            }                                                                \
                        }                                                                    \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
            const uint2 chosen = eplb_refine_group_argmin(key, best, slots);                 \
            /* Step 3, the same in every work-item. */                                       \
            if (chosen.y == EPLB_REFINE_NONE ||                                              \
                !(a_load - eplb_float_from_min_key(chosen.x) > tolerance))                   \
                break;                                                                       \
            /* Step 4: apply, recompute A and B in position order, undo and                  \
             * stop when the larger is not below A's old load. */                            \
            if (lid == 0) {                                                                  \
                const int b = NAME##_apply(content, t, a, chosen.y, m, k, pairs);            \
                const float new_a = NAME##_gpu_load(t, a, k), new_b = NAME##_gpu_load(t, b, k); \
                if ((new_a > new_b ? new_a : new_b) >= a_load) {                             \
                    NAME##_apply(content, t, a, chosen.y, m, k, pairs);                      \
                    *stop = 1;                                                               \
                } else {                                                                     \
                    load[a] = new_a;                                                         \
                    load[b] = new_b;                                                         \
                    *stop = 0;                                                               \
                }                                                                            \
            }                                                                                \
            barrier(fence);                                                                  \
            if (*stop)                                                                       \
                break;                                                                       \
        }                                                                                    \
        barrier(fence);                                                                      \
        for (int i = lid; i < n; i += T) {                                                   \
            const int q = content[i];                                                        \
            pack_of[q] = i / k;                                                              \
            rank_of[q] = i % k;                                                              \
        }                                                                                    \
    }

EPLB_DEFINE_REFINE_ROW(eplb_refine_row_local, local, CLK_LOCAL_MEM_FENCE)
EPLB_DEFINE_REFINE_ROW(eplb_refine_row_global, global, CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)

/* One work-group per row of slot_pack (n slots on m GPUs of k slots). The
 * row's placement lives in the dynamic local buffers when in_local, else in
 * the global scratch (content_all: n ints a row; loads_all: n slot loads
 * then m GPU loads a row). slots: 4 * local size uints for the argmins. A
 * nonzero status (a bad weight, a too-narrow log2phy) leaves the packing as
 * it is: assemble will write nothing anyway. With distinct, phy2mlog gives
 * each slot's expert for SPEC 11.6's check; with restore (distinct and
 * refine 0: SPEC 11.5) only the rows whose row_changed is 1 search, each
 * down to its row_seed_max at best. */
kernel void eplb_refine(global const float *slot_load, global int *pack_of, global int *rank_of,
                        global const int *status, global int *content_all, global float *loads_all,
                        local int *content_local, local float *loads_local, local uint *slots,
                        global const int *phy2mlog, global const int *row_changed,
                        global const float *row_seed_max, int n, int m, int k, int refine,
                        float tolerance, int in_local, int distinct, int restore)
{
    local int stop;
    if (status && status[0] != 0)
        return;
    const ulong x = get_group_id(0);
    /* The whole group leaves together, before its first barrier. */
    if (restore && !row_changed[x])
        return;
    const float stop_at = restore ? row_seed_max[x] : -INFINITY;
    global const float *row_load = slot_load + x * (ulong)n;
    global int *row_pack = pack_of + x * (ulong)n, *row_rank = rank_of + x * (ulong)n;
    global const int *items = distinct ? phy2mlog + x * (ulong)n : NULL;
    if (in_local)
        eplb_refine_row_local(row_load, row_pack, row_rank, items, content_local, loads_local,
                              loads_local + n, slots, &stop, n, m, k, refine, tolerance, stop_at);
    else
        eplb_refine_row_global(row_load, row_pack, row_rank, items, content_all + x * (ulong)n,
                               loads_all + x * (ulong)(n + m), loads_all + x * (ulong)(n + m) + n,
                               slots, &stop, n, m, k, refine, tolerance, stop_at);
}
