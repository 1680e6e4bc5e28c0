/* The refine search (SPEC 10.3) for rows of few slots per GPU, with the row
 * in registers: a team of warps with one barrier per trade.
 *
 * eplb_block_refine (cuda_refine.cuh) keeps the row in shared memory, and
 * each of its trades is a chain of two barriers with one thread decoding,
 * applying and re-summing the chosen trade in between. On the global
 * DeepSeek-V3 rows (72 or 64 GPUs of 4 or 5 slots) a row makes up to 150
 * trades one after the other, so that chain sets the plan's time. Here:
 *
 * - Each lane owns one partner GPU g of the row (lane + 32 * set) and keeps
 *   its K slot loads, their pair sums, its slot contents and its load in
 *   registers. When a row has more warps than partner sets, the warps of a
 *   set split the trade units (a slot or a pair of the heaviest GPU A against
 *   all of g's slots or pairs), so that each lane weighs about 32 trades.
 * - Each warp posts its best trade (smallest peak key, then smallest trade
 *   number: the SPEC's order), the winning lane's slots and contents, and the
 *   heaviest GPU of its lanes other than A. After the one barrier every
 *   thread reads the posts, finds the winner, checks and applies it in its
 *   own registers (the same float32 operations as eplb_cuda_refine_apply),
 *   and finds the next A among the new loads of A and B and the posted
 *   GPUs. A posted GPU may be B with its old load, which never wins: a kept
 *   trade gives B a slot heavier than the one it takes (d > 0), so B's new
 *   load is at least its old one, and at least that of any other GPU of the
 *   warp. So every thread knows the next A and its slots (those of A or B
 *   just computed, or, for any other GPU, shared memory that no thread writes
 *   during this trade) without a second barrier.
 * - The owners of A and B write their new slots to shared memory (content
 *   for the outputs, t for later reads of that GPU as A). A GPU written during
 *   trade s is read from shared memory only during trade s + 2 or later,
 *   after trade s + 1's barrier; the posts alternate between two buffers for
 *   the same reason.
 *
 * Every decision is computed by every thread from the same posts, so all of
 * them leave the loop at the same trade. The trades made are exactly those of
 * eplb_block_refine: trade numbers as there, the same keys, the same steps 3
 * and 4. Without distinct only (the fused path has none). */
#ifndef EPLB_CUDA_REFINE_TEAM_CUH
#define EPLB_CUDA_REFINE_TEAM_CUH

#include "cuda_refine.cuh"

/* Slots per GPU for which a team search is compiled (one function each). */
#define EPLB_CUDA_TEAM_REFINE_MIN_K 2
#define EPLB_CUDA_TEAM_REFINE_MAX_K 8

/* One warp's post for one trade. */
template <int K>
struct eplb_cuda_team_post {
    uint32_t key, index;   /* the warp's best trade: peak key, trade number */
    uint32_t top_key;      /* load key of the warp's heaviest GPU other than A (0: none) */
    uint32_t top;          /* its index */
    float top_load;
    float b_load;          /* the best trade's partner: its load, slot loads and contents */
    float b_t[K];
    int32_t b_content[K];
};

/* Two buffers of posts, one per warp each: trade s posts into buffer s & 1. */
template <int K>
struct eplb_cuda_team_posts {
    eplb_cuda_team_post<K> post[2][32];
};

/* The shared memory the team search needs for its posts, for any K it is
 * compiled for. */
static inline size_t eplb_cuda_team_refine_bytes()
{
    return sizeof(eplb_cuda_team_posts<EPLB_CUDA_TEAM_REFINE_MAX_K>);
}

/* The most warps of a team: plan_fused compiles the team search into its
 * 256-thread kernel only. */
#define EPLB_CUDA_TEAM_REFINE_MAX_WARPS 8

/* Warps of a team for a row of m GPUs of k slots: a set of warps covers
 * every partner once, and sets are added until a lane weighs at most about
 * 32 trades; at least `least` warps, at most EPLB_CUDA_TEAM_REFINE_MAX_WARPS.
 * 0 when no team search is compiled for the row. */
static inline uint32_t eplb_cuda_team_refine_warps(uint64_t m, uint64_t k, uint32_t least)
{
    if (k < EPLB_CUDA_TEAM_REFINE_MIN_K || k > EPLB_CUDA_TEAM_REFINE_MAX_K || m < 2 ||
        m > 32 * EPLB_CUDA_TEAM_REFINE_MAX_WARPS)
        return 0;
    const uint64_t pairs = k * (k - 1) / 2, trades = k * k + pairs * pairs;
    const uint64_t sets = (m + 31) / 32, units = k + pairs;
    uint64_t chunks = (trades + 31) / 32;
    if (chunks > units)
        chunks = units;
    uint64_t warps = sets * chunks;
    if (warps < least)
        warps = least;
    if (warps > EPLB_CUDA_TEAM_REFINE_MAX_WARPS)
        warps = EPLB_CUDA_TEAM_REFINE_MAX_WARPS;
    return (uint32_t)warps;
}

/* v[r] for a position r known only at run time, without indexing the
 * register array (which would put it in local memory). */
template <int K, class T>
static __device__ __forceinline__ T eplb_team_pick(const T (&v)[K], uint32_t r)
{
    T x = v[0];
#pragma unroll
    for (int q = 1; q < K; q++)
        if ((uint32_t)q == r)
            x = v[q];
    return x;
}

/* The pair sums in lexicographic pair order, as eplb_cuda_refine_weigh_unit
 * forms them. */
template <int K>
static __device__ __forceinline__ void eplb_team_pair_sums(const float (&t)[K],
                                                           float (&p)[K * (K - 1) / 2])
{
    int i = 0;
#pragma unroll
    for (int lo = 0; lo + 1 < K; lo++)
#pragma unroll
        for (int hi = lo + 1; hi < K; hi++)
            p[i++] = eplb_cuda_add_rn(t[lo], t[hi]);
}

/* Up to refine trades on one row (SPEC 10.3) by the whole block, which must
 * have at least ceil(m / 32) warps (a lane for every partner; more warps
 * split the trade units, eplb_cuda_team_refine_warps says how many pay).
 * Same contract as eplb_block_refine without stop_at: row.load unused,
 * row.t and row.content read (every thread must see them: a barrier before
 * the call), both holding the final placement on return, after a barrier. */
template <int K>
static __device__ __noinline__ void eplb_team_refine(const eplb_cuda_refine_row row, int32_t refine,
                                                     float tolerance, void *post_memory)
{
    constexpr int P = K * (K - 1) / 2;
    constexpr uint32_t NONE = EPLB_CUDA_REFINE_NONE;
    eplb_cuda_team_posts<K> *posts = (eplb_cuda_team_posts<K> *)post_memory;
    const uint32_t m = row.m, lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const uint32_t sets = (m + 31) / 32, chunks = (blockDim.x >> 5) / sets;
    const uint32_t weighers = sets * chunks; /* warps that weigh; the others only follow */
    const uint32_t chunk = warp / sets, g = (warp % sets) * 32 + lane;
    const bool owner = chunk < chunks && g < m; /* holds partner g */
    const uint32_t ones = m * K * K;
    /* This warp's trade units (bit u): a unit's chunk is where its first
     * trade falls when the K*K + P*P trades of a partner are cut into
     * `chunks` equal parts. */
    uint64_t units = 0;
    {
        uint32_t before = 0;
#pragma unroll
        for (int u = 0; u < K + P; u++) {
            if ((before * chunks) / (K * K + P * P) == chunk)
                units |= 1ull << u;
            before += u < K ? K : P;
        }
    }
    float *t = row.t;
    int32_t *content = row.content;

    /* The partner's slots, pair sums, contents and load. */
    float bt[K], bp[P > 0 ? P : 1], bload;
    int32_t bc[K];
#pragma unroll
    for (int r = 0; r < K; r++) {
        bt[r] = owner ? t[g * K + r] : 0.0f;
        bc[r] = owner ? content[g * K + r] : 0;
    }
    bload = eplb_cuda_refine_gpu_load(bt, 0, K);
    eplb_team_pair_sums<K>(bt, bp);

    /* The first A: the heaviest GPU, lowest index among equals, through the
     * posts of the warps of chunk 0 (buffer 1; trade 0 posts into 0). */
    {
        const uint32_t key = chunk == 0 && g < m ? eplb_cuda_ordered_bits(bload) : 0u;
        const uint32_t top_key = eplb_warp_reduce<true>(key);
        const uint32_t top = eplb_warp_reduce<false>(key != 0u && key == top_key ? g : NONE);
        eplb_cuda_team_post<K> *mine = &posts->post[1][warp];
        if (chunk == 0 && lane == 0) {
            mine->top_key = top_key;
            mine->top = top;
        }
        if (key != 0u && g == top)
            mine->top_load = bload;
    }
    __syncthreads();
    uint32_t a = NONE, a_key = 0;
    float a_load = 0.0f;
    for (uint32_t w = 0; w < sets; w++) {
        const eplb_cuda_team_post<K> &p = posts->post[1][w];
        if (p.top_key > a_key || (p.top_key == a_key && p.top_key != 0u && p.top < a)) {
            a_key = p.top_key;
            a = p.top;
            a_load = p.top_load;
        }
    }

    /* The last trade's GPUs and their new slots, which shared memory may
     * not hold yet. */
    uint32_t last_a = NONE, last_b = NONE;
    float last_at[K], last_bt[K];
    int32_t last_ac[K], last_bc[K];
#pragma unroll
    for (int r = 0; r < K; r++) {
        last_at[r] = last_bt[r] = 0.0f;
        last_ac[r] = last_bc[r] = 0;
    }

    for (int32_t iteration = 0; iteration < refine; iteration++) {
        const uint32_t parity = (uint32_t)iteration & 1u;
        /* Step 1 (A found at the end of the previous trade). */
        if (a == NONE || isinf(a_load))
            break;
        float at[K], ap[P > 0 ? P : 1];
        int32_t ac[K];
#pragma unroll
        for (int r = 0; r < K; r++) {
            if (a == last_a) {
                at[r] = last_at[r];
                ac[r] = last_ac[r];
            } else if (a == last_b) {
                at[r] = last_bt[r];
                ac[r] = last_bc[r];
            } else {
                at[r] = t[a * K + r];
                ac[r] = content[a * K + r];
            }
        }
        eplb_team_pair_sums<K>(at, ap);

        /* The heaviest GPU other than A among the lanes of chunk 0, for the
         * next A (first, so that its reductions overlap the weighing). */
        eplb_cuda_team_post<K> *mine = &posts->post[parity][warp];
        if (chunk == 0) {
            const uint32_t load_key = g < m && g != a ? eplb_cuda_ordered_bits(bload) : 0u;
            const uint32_t top_key = eplb_warp_reduce<true>(load_key);
            const uint32_t top =
                eplb_warp_reduce<false>(load_key != 0u && load_key == top_key ? g : NONE);
            if (lane == 0) {
                mine->top_key = top_key;
                mine->top = top;
            }
            if (load_key != 0u && g == top)
                mine->top_load = bload;
        }

        /* Step 2: this lane's trades of A with partner g, in trade order. */
        float best = INFINITY;
        uint32_t index = 0;
        if (owner && g != a) {
#pragma unroll
            for (int u = 0; u < K + P; u++) {
                if ((units >> u) & 1u) {
                    if (u < K) {
#pragma unroll
                        for (int sb = 0; sb < K; sb++) {
                            const float peak = eplb_cuda_trade_peak(a_load, bload, at[u < K ? u : 0], bt[sb]);
                            if (peak < best) {
                                best = peak;
                                index = (g * K + (uint32_t)u) * K + (uint32_t)sb;
                            }
                        }
                    } else {
                        const int i = u - K;
#pragma unroll
                        for (int j = 0; j < P; j++) {
                            const float peak = eplb_cuda_trade_peak(a_load, bload, ap[i < P ? i : 0], bp[j]);
                            if (peak < best) {
                                best = peak;
                                index = ones + (g * P + (uint32_t)i) * P + (uint32_t)j;
                            }
                        }
                    }
                }
            }
        }
        const uint32_t key = best < INFINITY ? eplb_cuda_ordered_bits(best) : NONE;
        const uint32_t warp_key = eplb_warp_reduce<false>(key);
        const uint32_t warp_index = eplb_warp_reduce<false>(key == warp_key ? index : NONE);
        if (lane == 0) {
            mine->key = warp_key;
            mine->index = warp_index;
        }
        if (key != NONE && key == warp_key && index == warp_index) {
            mine->b_load = bload;
#pragma unroll
            for (int r = 0; r < K; r++) {
                mine->b_t[r] = bt[r];
                mine->b_content[r] = bc[r];
            }
        }
        __syncthreads();

        /* The winner: smallest key, then smallest trade number. */
        uint32_t win_key = NONE, win_index = NONE, win_warp = 0;
        for (uint32_t w = 0; w < weighers; w++) {
            const uint32_t k2 = posts->post[parity][w].key, i2 = posts->post[parity][w].index;
            if (k2 != NONE && (k2 < win_key || (k2 == win_key && i2 < win_index))) {
                win_key = k2;
                win_index = i2;
                win_warp = w;
            }
        }
        if (win_key == NONE)
            break;
        const eplb_cuda_team_post<K> &won = posts->post[parity][win_warp];
        float b_t[K];
        int32_t b_c[K];
#pragma unroll
        for (int r = 0; r < K; r++) {
            b_t[r] = won.b_t[r];
            b_c[r] = won.b_content[r];
        }
        const float b_load = won.b_load;
        uint32_t b, a_pos[2] = {0, 0}, b_pos[2] = {0, 0}, count;
        if (win_index < ones) {
            b = win_index / (K * K);
            const uint32_t rest = win_index - b * (K * K);
            a_pos[0] = rest / K;
            b_pos[0] = rest - a_pos[0] * K;
            count = 1;
        } else {
            const uint32_t j = win_index - ones;
            b = j / (P * P);
            const uint32_t rest = j - b * (P * P), i = rest / P;
            eplb_cuda_pair_of<uint32_t>(i, K, &a_pos[0], &a_pos[1]);
            eplb_cuda_pair_of<uint32_t>(rest - i * P, K, &b_pos[0], &b_pos[1]);
            count = 2;
        }
        /* Step 3, as eplb_cuda_refine_apply: the peak again, the tolerance. */
        const float give_a = count == 1 ? eplb_team_pick<K>(at, a_pos[0])
                                        : eplb_cuda_add_rn(eplb_team_pick<K>(at, a_pos[0]),
                                                           eplb_team_pick<K>(at, a_pos[1]));
        const float give_b = count == 1 ? eplb_team_pick<K>(b_t, b_pos[0])
                                        : eplb_cuda_add_rn(eplb_team_pick<K>(b_t, b_pos[0]),
                                                           eplb_team_pick<K>(b_t, b_pos[1]));
        const float peak = eplb_cuda_trade_peak(a_load, b_load, give_a, give_b);
        if (!(eplb_cuda_sub_rn(a_load, peak) > tolerance))
            break;
        /* Step 4: the exchange in registers, the loads re-summed; a trade
         * that does not lower both below A's old load is not made. The new
         * slots go straight to the last trade's (a trade not made ends the
         * search, so nothing reads them then). */
        float(&new_at)[K] = last_at;
        float(&new_bt)[K] = last_bt;
        int32_t(&new_ac)[K] = last_ac;
        int32_t(&new_bc)[K] = last_bc;
#pragma unroll
        for (int r = 0; r < K; r++) {
            new_at[r] = at[r];
            new_ac[r] = ac[r];
            new_bt[r] = b_t[r];
            new_bc[r] = b_c[r];
        }
        for (uint32_t s = 0; s < count; s++) {
            const float from_a = eplb_team_pick<K>(at, a_pos[s]), from_b = eplb_team_pick<K>(b_t, b_pos[s]);
            const int32_t item_a = eplb_team_pick<K>(ac, a_pos[s]), item_b = eplb_team_pick<K>(b_c, b_pos[s]);
#pragma unroll
            for (int r = 0; r < K; r++) {
                if ((uint32_t)r == a_pos[s]) {
                    new_at[r] = from_b;
                    new_ac[r] = item_b;
                }
                if ((uint32_t)r == b_pos[s]) {
                    new_bt[r] = from_a;
                    new_bc[r] = item_a;
                }
            }
        }
        const float new_a = eplb_cuda_refine_gpu_load(new_at, 0, K), new_b = eplb_cuda_refine_gpu_load(new_bt, 0, K);
        if ((new_a > new_b ? new_a : new_b) >= a_load)
            break;

        /* The trade is made: the owners take their new slots, and chunk 0's
         * owner of each writes them to shared memory. */
        if (owner && (g == a || g == b)) {
#pragma unroll
            for (int r = 0; r < K; r++) {
                bt[r] = g == a ? new_at[r] : new_bt[r];
                bc[r] = g == a ? new_ac[r] : new_bc[r];
            }
            bload = g == a ? new_a : new_b;
            eplb_team_pair_sums<K>(bt, bp);
            if (chunk == 0) {
#pragma unroll
                for (int r = 0; r < K; r++) {
                    t[g * K + r] = bt[r];
                    content[g * K + r] = bc[r];
                }
            }
        }

        /* The next A: the heaviest of A and B with their new loads and of
         * each chunk-0 warp's heaviest GPU other than A (B among them with
         * its old load loses to B's new one, or ties it with the same
         * index and value). */
        uint32_t next = a, next_key = eplb_cuda_ordered_bits(new_a);
        float next_load = new_a;
        const uint32_t b_key = eplb_cuda_ordered_bits(new_b);
        if (b_key > next_key || (b_key == next_key && b < next)) {
            next = b;
            next_key = b_key;
            next_load = new_b;
        }
        for (uint32_t w = 0; w < sets; w++) {
            const eplb_cuda_team_post<K> &p = posts->post[parity][w];
            if (p.top_key != 0u && (p.top_key > next_key || (p.top_key == next_key && p.top < next))) {
                next = p.top;
                next_key = p.top_key;
                next_load = p.top_load;
            }
        }
        last_a = a;
        last_b = b;
        a = next;
        a_load = next_load;
    }
    __syncthreads();
}

/* The team search for the row's k, if one is compiled for it; returns
 * whether it ran. */
static __device__ __forceinline__ bool eplb_team_refine_dispatch(const eplb_cuda_refine_row &row,
                                                                 int32_t refine, float tolerance,
                                                                 void *post_memory)
{
    switch (row.k) {
    case 2: eplb_team_refine<2>(row, refine, tolerance, post_memory); return true;
    case 3: eplb_team_refine<3>(row, refine, tolerance, post_memory); return true;
    case 4: eplb_team_refine<4>(row, refine, tolerance, post_memory); return true;
    case 5: eplb_team_refine<5>(row, refine, tolerance, post_memory); return true;
    case 6: eplb_team_refine<6>(row, refine, tolerance, post_memory); return true;
    case 7: eplb_team_refine<7>(row, refine, tolerance, post_memory); return true;
    case 8: eplb_team_refine<8>(row, refine, tolerance, post_memory); return true;
    default: return false;
    }
}

#endif
