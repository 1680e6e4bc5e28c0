/* Replication (SPEC section 5): each extra slot goes to the item with the
 * highest weight per replica (ties: lowest index). */
#include <math.h>
#include <stdlib.h>

#include "cpu_stages.h"

/* Max-heap of items ordered by (w/cnt descending, index ascending): its top is
 * exactly the SPEC's choice. */
static inline int heap_before(const float *value, int32_t a, int32_t b)
{
    return value[a] > value[b] || (value[a] == value[b] && a < b);
}

static void sift_down(int32_t *heap, int32_t size, const float *value, int32_t at)
{
    for (;;) {
        int32_t left = 2 * at + 1, best = at;
        if (left < size && heap_before(value, heap[left], heap[best])) best = left;
        if (left + 1 < size && heap_before(value, heap[left + 1], heap[best])) best = left + 1;
        if (best == at) return;
        int32_t t = heap[at]; heap[at] = heap[best]; heap[best] = t;
        at = best;
    }
}

static void replicate_heap(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                           int32_t *phyrank, int32_t *cnt, float *value, int32_t *heap)
{
    for (int32_t i = 0; i < n; i++) {
        value[i] = w[i]; /* w / 1 */
        heap[i] = i;
    }
    for (int32_t i = n / 2 - 1; i >= 0; i--)
        sift_down(heap, n, value, i);
    for (int32_t s = n; s < p; s++) {
        const int32_t i = heap[0];
        phy2mlog[s] = i;
        phyrank[s] = cnt[i];
        cnt[i]++;
        value[i] = w[i] / (float)cnt[i];
        sift_down(heap, n, value, 0); /* the top's value only fell */
    }
}

#if EPLB_CPU_SSE2
#include <emmintrin.h>

/* Items per block of the scan below, and the most items it handles (one bit
 * per block in 64 bits). */
#define EPLB_CPU_REPLICATE_BLOCK 16
#define EPLB_CPU_REPLICATE_SCAN_MAX (64 * EPLB_CPU_REPLICATE_BLOCK)

/* Largest of values[0 .. count) (count a multiple of 4), broadcast. */
static inline __m128 vector_max(const float *values, int32_t count)
{
    __m128 vmax = _mm_loadu_ps(values);
    for (int32_t i = 4; i < count; i += 4)
        vmax = _mm_max_ps(vmax, _mm_loadu_ps(values + i));
    vmax = _mm_max_ps(vmax, _mm_shuffle_ps(vmax, vmax, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_max_ps(vmax, _mm_shuffle_ps(vmax, vmax, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Bit i set where values[i] == target, for values[0 .. count), count <= 64. */
static inline uint64_t equal_bits(const float *values, int32_t count, __m128 target)
{
    uint64_t bits = 0;
    for (int32_t j = 0; j < count; j += 4)
        bits |= (uint64_t)_mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + j), target)) << j;
    return bits;
}

/* The same choices as the heap, by a branch-free search over blocks of 16
 * values and each block's maximum: the first block whose maximum is the
 * overall maximum holds the lowest item with it. value and block_max are
 * padded with -inf (values are >= -0, so padding never wins). */
static void replicate_scan(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                           int32_t *phyrank, int32_t *cnt, float *value, float *block_max)
{
    const int32_t B = EPLB_CPU_REPLICATE_BLOCK;
    const int32_t blocks = (n + B - 1) / B, blocks4 = (blocks + 3) & ~3;
    for (int32_t i = 0; i < blocks * B; i++)
        value[i] = i < n ? w[i] : -(float)INFINITY;
    for (int32_t b = 0; b < blocks4; b++)
        block_max[b] = b < blocks ? _mm_cvtss_f32(vector_max(value + b * B, B)) : -(float)INFINITY;
    for (int32_t s = n; s < p; s++) {
        const __m128 vmax = vector_max(block_max, blocks4);
        const int32_t b = __builtin_ctzll(equal_bits(block_max, blocks4, vmax));
        const int32_t i = b * B + __builtin_ctzll(equal_bits(value + b * B, B, vmax));
        phy2mlog[s] = i;
        phyrank[s] = cnt[i];
        cnt[i]++;
        const float fresh = w[i] / (float)cnt[i];
        /* The block's new maximum from registers, and whole-vector stores of
         * the changed values: the next step's vector loads then forward from
         * stores of the same size instead of waiting for scalar ones. */
        float *block = value + b * B;
        const __m128i lane = _mm_set1_epi32(i - b * B);
        const __m128 vfresh = _mm_set1_ps(fresh);
        __m128 vmax_block = _mm_set1_ps(-(float)INFINITY);
        for (int32_t j = 0; j < B; j += 4) {
            const __m128 here = _mm_castsi128_ps(_mm_cmpeq_epi32(lane, _mm_setr_epi32(j, j + 1, j + 2, j + 3)));
            const __m128 v = _mm_or_ps(_mm_and_ps(here, vfresh), _mm_andnot_ps(here, _mm_loadu_ps(block + j)));
            _mm_storeu_ps(block + j, v);
            vmax_block = _mm_max_ps(vmax_block, v);
        }
        vmax_block = _mm_max_ps(vmax_block, _mm_shuffle_ps(vmax_block, vmax_block, _MM_SHUFFLE(1, 0, 3, 2)));
        vmax_block = _mm_max_ps(vmax_block, _mm_shuffle_ps(vmax_block, vmax_block, _MM_SHUFFLE(2, 3, 0, 1)));
        float *group = block_max + (b & ~3);
        const __m128 at = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_set1_epi32(b & 3), _mm_setr_epi32(0, 1, 2, 3)));
        _mm_storeu_ps(group, _mm_or_ps(_mm_and_ps(at, vmax_block), _mm_andnot_ps(at, _mm_loadu_ps(group))));
    }
}
#endif

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>
#include <string.h>

/* The most extra slots that replicate_list handles: its list of candidates
 * is at most eight registers of eight keys. */
#define EPLB_CPU_REPLICATE_LIST_MAX 64

/* Whether a row of n items and p > n slots replicates by the list. */
static inline int replicates_by_list(int32_t n, int32_t p, int isa)
{
    return p - n <= EPLB_CPU_REPLICATE_LIST_MAX && n < 65536 && isa >= EPLB_CPU_ISA_AVX512;
}

/* An item's place in the choice order: the bits of its weight per replica
 * (-0 as +0) complemented, so that a larger value makes a smaller key,
 * then its index, then its replica count, which never decides (an item is
 * in the list once). Values are >= -0. */
static inline uint64_t replica_key(float value, int32_t item, int32_t count)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    bits = bits == 0x80000000u ? 0u : bits; /* an integer compare: the steps wait for it */
    return (uint64_t)(~bits & 0x7FFFFFFFu) << 32 | (uint32_t)item << 16 | (uint32_t)count;
}

/* The first keys of items i .. i + 7, eight packs of 64 bits; lanes past the
 * row's end hold the key that follows every item's (all bits set). */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) __m512i
first_keys_of(const float *w, int32_t i, int32_t n)
{
    const __mmask8 valid = n - i >= 8 ? (__mmask8)0xFF : n - i <= 0 ? (__mmask8)0 : (__mmask8)((1u << (n - i)) - 1);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 wi = _mm256_maskz_loadu_ps(valid, w + i);
    const __m256i bits = _mm256_maskz_mov_epi32(
        _mm256_cmp_ps_mask(wi, _mm256_setzero_ps(), _CMP_NEQ_UQ), _mm256_castps_si256(wi));
    const __m256i high = _mm256_andnot_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i low = _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi32(lane, _mm256_set1_epi32(i)), 16),
                                        _mm256_set1_epi32(1));
    const __m512i keys = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(high), 32),
                                         _mm512_cvtepu32_epi64(low));
    return _mm512_mask_blend_epi64(valid, _mm512_set1_epi64(-1), keys);
}

/* Compare-exchange of lanes l and l ^ distance (1, 2 or 4) inside a
 * register: lane l keeps the larger key where bit l of take_larger is set,
 * else the smaller one. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) __m512i
lanes_exchange(__m512i x, int32_t distance, __mmask8 take_larger)
{
    const __m512i partner = distance == 1   ? _mm512_permutex_epi64(x, _MM_SHUFFLE(2, 3, 0, 1))
                            : distance == 2 ? _mm512_permutex_epi64(x, _MM_SHUFFLE(1, 0, 3, 2))
                                            : _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(1, 0, 3, 2));
    return _mm512_mask_max_epu64(_mm512_min_epu64(x, partner), take_larger, x, partner);
}

/* The lanes l of a register with l & distance set, for distance 1, 2 or 4. */
#define EPLB_CPU_LANES_WITH(distance) ((distance) == 1 ? 0xAAu : (distance) == 2 ? 0xCCu : 0xF0u)

/* One step of a bitonic network over W registers: keys i and i ^ j meet,
 * in blocks of k keys that alternate ascending and descending. k and j are
 * constants at every call, so the lane masks fold into immediates. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
bitonic_step(__m512i *reg, const int32_t W, const int32_t k, const int32_t j)
{
#pragma GCC unroll 8
    for (int32_t r = 0; r < W; r++) {
        const int descending = k >= 8 && (8 * r & k) != 0;
        if (j >= 8) {
            const int32_t other = r ^ (j / 8);
            if (other < r)
                continue;
            const __m512i low = _mm512_min_epu64(reg[r], reg[other]);
            const __m512i high = _mm512_max_epu64(reg[r], reg[other]);
            reg[r] = descending ? high : low;
            reg[other] = descending ? low : high;
        } else {
            const unsigned block_descending = k < 8 ? EPLB_CPU_LANES_WITH(k) : descending ? 0xFFu : 0u;
            reg[r] = lanes_exchange(reg[r], j, (__mmask8)(EPLB_CPU_LANES_WITH(j) ^ block_descending));
        }
    }
}

/* Merges the blocks of k / 2 keys into sorted blocks of k keys. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
bitonic_stage(__m512i *reg, const int32_t W, const int32_t k)
{
    if (k > 32)
        bitonic_step(reg, W, k, 32);
    if (k > 16)
        bitonic_step(reg, W, k, 16);
    if (k > 8)
        bitonic_step(reg, W, k, 8);
    if (k > 4)
        bitonic_step(reg, W, k, 4);
    if (k > 2)
        bitonic_step(reg, W, k, 2);
    bitonic_step(reg, W, k, 1);
}

/* Sorts the 8W keys of W registers (W = 1, 2, 4 or 8) ascending by a
 * bitonic network, written out so that it unrolls into register operations. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
sort_registers(__m512i *reg, const int32_t W)
{
    bitonic_stage(reg, W, 2);
    bitonic_stage(reg, W, 4);
    bitonic_stage(reg, W, 8);
    if (W >= 2)
        bitonic_stage(reg, W, 16);
    if (W >= 4)
        bitonic_stage(reg, W, 32);
    if (W >= 8)
        bitonic_stage(reg, W, 64);
}

/* Merges the sorted keys of block into the sorted list (W registers each),
 * keeping the 8W smallest: each list key against the block's keys in
 * reverse order keeps the smaller one, which leaves the 8W smallest keys of
 * both, ascending then descending; the network's last stage sorts them. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
merge_registers(__m512i *list, const __m512i *block, const int32_t W)
{
    const __m512i reverse = _mm512_setr_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    for (int32_t v = 0; v < W; v++)
        list[v] = _mm512_min_epu64(list[v], _mm512_permutexvar_epi64(reverse, block[W - 1 - v]));
    bitonic_stage(list, W, 8 * W);
}

/* Inserts the keys of keys[v] with bit l of in[v] set, for v < V, one by
 * one: every key from a new key's place on moves up one place, the last one
 * dropping out (a key no longer below the last one leaves the list as it
 * was). */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
insert_keys(__m512i *list, const __m512i *keys, const __mmask8 *in, const int32_t V)
{
    const __m512i zero = _mm512_setzero_si512();
    for (int32_t u = 0; u < V; u++) {
        if (!in[u])
            continue;
        uint64_t key[8];
        _mm512_storeu_si512(key, keys[u]);
        for (__mmask8 left = in[u]; left; left &= (__mmask8)(left - 1)) {
            const __m512i x = _mm512_set1_epi64((long long)key[__builtin_ctz(left)]);
            for (int32_t v = V - 1; v >= 0; v--)
                list[v] = _mm512_min_epu64(list[v],
                                           _mm512_max_epu64(_mm512_alignr_epi64(list[v], v ? list[v - 1] : zero, 7), x));
        }
    }
}

/* The same choices as the heap, from a sorted list of the 8V smallest keys
 * (8V >= p - n) in V registers. An item outside the list is preceded by at
 * least p - n first replicas of listed items, so it is never chosen. Each
 * step takes the list's head and puts the item back with its next key: the
 * keys past the head move down one place until the new key's place, which
 * two compares per register give without a search. The step's chain of
 * dependent operations is about half as long as the block scan's.
 *
 * First the list: the first 8V items' first keys sorted by a network (far
 * fewer operations than inserting them one by one), then the other items'
 * first keys, 8V at a time. A block with many keys below the list's last
 * one is sorted and merged into the list by networks; from a block with few
 * such keys, those keys are inserted one by one, which then costs less. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
replica_list_fill(const float *w, int32_t n, __m512i *list, const int32_t V)
{
    const int32_t W = V <= 1 ? 1 : V <= 2 ? 2 : V <= 4 ? 4 : 8;
    __m512i sorted[EPLB_CPU_REPLICATE_LIST_MAX / 8], block[EPLB_CPU_REPLICATE_LIST_MAX / 8];
    __mmask8 in[EPLB_CPU_REPLICATE_LIST_MAX / 8];
    for (int32_t v = 0; v < W; v++)
        sorted[v] = first_keys_of(w, 8 * v, v < V ? n : 0);
    sort_registers(sorted, W);
    for (int32_t i = 8 * V; i < n; i += 8 * V) {
        const __m512i last = _mm512_permutexvar_epi64(_mm512_set1_epi64(7), sorted[V - 1]);
        int32_t below = 0;
        for (int32_t v = 0; v < W; v++) {
            block[v] = first_keys_of(w, i + 8 * v, v < V ? n : 0);
            in[v] = _mm512_cmplt_epu64_mask(block[v], last);
            below += __builtin_popcount(in[v]);
        }
        if (below > 2 * V) {
            sort_registers(block, W);
            merge_registers(sorted, block, W);
        } else {
            insert_keys(sorted, block, in, V);
        }
    }
    for (int32_t v = 0; v < V; v++)
        list[v] = sorted[v];
}

/* Extra slot s: the list head's item, then its next key back in its place
 * (the keys after the head move down one place up to it). */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
replica_list_take(const float *w, int32_t s, int32_t *phy2mlog, int32_t *phyrank, int32_t *cnt,
                  __m512i *list, const int32_t V)
{
    const __m512i none = _mm512_set1_epi64(-1);
    __m512i moved[EPLB_CPU_REPLICATE_LIST_MAX / 8];
    const uint64_t head = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(list[0]));
    const int32_t i = (int32_t)((uint32_t)head >> 16), count = (int32_t)(head & 0xFFFF);
    phy2mlog[s] = i;
    phyrank[s] = count;
    cnt[i] = count + 1;
    const __m512i x = _mm512_set1_epi64((long long)replica_key(w[i] / (float)(count + 1), i, count + 1));
    for (int32_t v = 0; v < V; v++)
        moved[v] = _mm512_alignr_epi64(v + 1 < V ? list[v + 1] : none, list[v], 1);
    for (int32_t v = 0; v < V; v++)
        list[v] = _mm512_min_epu64(moved[v], _mm512_max_epu64(list[v], x));
}

/* One row (R = 1), or two rows of the same sizes side by side (R = 2): the
 * two rows' chains of dependent operations overlap. */
EPLB_CPU_TARGET_AVX512VL static inline __attribute__((always_inline)) void
replicate_list_body(const float *const *w, int32_t n, int32_t p, int32_t *const *phy2mlog,
                    int32_t *const *phyrank, int32_t *const *cnt, const int32_t R, const int32_t V)
{
    __m512i list[2][EPLB_CPU_REPLICATE_LIST_MAX / 8];
    replica_list_fill(w[0], n, list[0], V);
    if (R == 2) {
        /* Row 0's list waits in memory while row 1's is filled, so that the
         * filling has all the vector registers. */
        __asm__("" : "+m"(list[0]));
        replica_list_fill(w[1], n, list[1], V);
    }
    for (int32_t s = n; s < p; s++)
        for (int32_t r = 0; r < R; r++)
            replica_list_take(w[r], s, phy2mlog[r], phyrank[r], cnt[r], list[r], V);
}

EPLB_CPU_TARGET_AVX512VL static void replicate_list(const float *const *w, int32_t n, int32_t p,
                                                  int32_t *const *phy2mlog, int32_t *const *phyrank,
                                                  int32_t *const *cnt, int32_t R)
{
#define EPLB_REPLICATE_LIST_CASE(V)                                                               \
    case V:                                                                                        \
        R == 1 ? replicate_list_body(w, n, p, phy2mlog, phyrank, cnt, 1, V)                        \
               : replicate_list_body(w, n, p, phy2mlog, phyrank, cnt, 2, V);                       \
        break
    switch ((p - n + 7) / 8) {
        EPLB_REPLICATE_LIST_CASE(1);
        EPLB_REPLICATE_LIST_CASE(2);
        EPLB_REPLICATE_LIST_CASE(3);
        EPLB_REPLICATE_LIST_CASE(4);
        EPLB_REPLICATE_LIST_CASE(5);
        EPLB_REPLICATE_LIST_CASE(6);
        EPLB_REPLICATE_LIST_CASE(7);
    default:
        EPLB_REPLICATE_LIST_CASE(8);
    }
#undef EPLB_REPLICATE_LIST_CASE
}
#endif

size_t eplb_cpu_replicate_words(int32_t n)
{
    return (size_t)n + 64 + 64;
}

/* Slot i of the row holds item i with rank 0, before the extra slots. */
static void first_replicas(int32_t n, int32_t *phy2mlog, int32_t *phyrank, int32_t *cnt)
{
    for (int32_t i = 0; i < n; i++) {
        phy2mlog[i] = i;
        phyrank[i] = 0;
        cnt[i] = 1;
    }
}

static void replicate_row(const float *w, int32_t n, int32_t p, int32_t *phy2mlog,
                          int32_t *phyrank, int32_t *cnt, float *value, int32_t *heap, int isa)
{
    first_replicas(n, phy2mlog, phyrank, cnt);
    if (p == n)
        return;
#if EPLB_CPU_X86_DISPATCH
    if (replicates_by_list(n, p, isa)) {
        replicate_list(&w, n, p, &phy2mlog, &phyrank, &cnt, 1);
        return;
    }
#else
    (void)isa;
#endif
#if EPLB_CPU_SSE2
    if (n <= EPLB_CPU_REPLICATE_SCAN_MAX) {
        replicate_scan(w, n, p, phy2mlog, phyrank, cnt, value,
                       value + ((n + EPLB_CPU_REPLICATE_BLOCK - 1) & ~(EPLB_CPU_REPLICATE_BLOCK - 1)));
        return;
    }
#endif
    replicate_heap(w, n, p, phy2mlog, phyrank, cnt, value, heap);
}

/* Whether a count of row x exceeds the log2phy width. */
static int row_too_wide(const eplb_plan_job *job, int64_t x)
{
    const int32_t n = (int32_t)job->node_experts;
    const int32_t *cnt = (const int32_t *)job->mlogcnt + x * n;
    int too_wide = 0;
    if (job->log2phy)
        for (int32_t i = 0; i < n; i++)
            too_wide |= cnt[i] > job->width;
    return too_wide;
}

int eplb_cpu_replicate_row(const eplb_plan_job *job, int64_t x, float *value, int32_t *heap,
                           int isa)
{
    const int32_t n = (int32_t)job->node_experts, p = (int32_t)job->node_slots;
    replicate_row((const float *)job->node_weight + x * n, n, p, (int32_t *)job->phy2mlog + x * p,
                  (int32_t *)job->phyrank + x * p, (int32_t *)job->mlogcnt + x * n, value, heap, isa);
    return row_too_wide(job, x);
}

int eplb_cpu_replicate_row_pair(const eplb_plan_job *job, const int64_t *x, float *value,
                                int32_t *heap, int isa)
{
    const int32_t n = (int32_t)job->node_experts, p = (int32_t)job->node_slots;
#if EPLB_CPU_X86_DISPATCH
    if (p > n && replicates_by_list(n, p, isa)) {
        const float *w[2];
        int32_t *phy2mlog[2], *phyrank[2], *cnt[2];
        for (int32_t r = 0; r < 2; r++) {
            w[r] = (const float *)job->node_weight + x[r] * n;
            phy2mlog[r] = (int32_t *)job->phy2mlog + x[r] * p;
            phyrank[r] = (int32_t *)job->phyrank + x[r] * p;
            cnt[r] = (int32_t *)job->mlogcnt + x[r] * n;
            first_replicas(n, phy2mlog[r], phyrank[r], cnt[r]);
        }
        replicate_list(w, n, p, phy2mlog, phyrank, cnt, 2);
        return row_too_wide(job, x[0]) | row_too_wide(job, x[1]);
    }
#endif
    return eplb_cpu_replicate_row(job, x[0], value, heap, isa) |
           eplb_cpu_replicate_row(job, x[1], value, heap, isa);
}

eplb_status eplb_cpu_replicate(eplb_backend *backend, const eplb_plan_job *job)
{
    const int64_t rows = job->layers * job->nodes;
    const int32_t n = (int32_t)job->node_experts, p = (int32_t)job->node_slots;
    const int isa = eplb_cpu_settings_of(backend)->isa;
    int failed = 0, too_wide = 0;
#pragma omp parallel if (EPLB_CPU_WORTH_THREADS(rows * p * 8)) /* a heap step a slot */
    {
        float *value = malloc(eplb_cpu_replicate_words(n) * sizeof *value);
        int32_t *heap = malloc((size_t)n * sizeof *heap);
        if (!value || !heap) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static) reduction(| : too_wide)
        for (int64_t x = 0; x < rows; x++)
            if (value && heap)
                too_wide |= eplb_cpu_replicate_row(job, x, value, heap, isa);
        free(value);
        free(heap);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY, "replicate: out of host memory");
    int32_t *status = job->status;
    if (too_wide && status && *status == 0)
        *status = EPLB_ERR_LOG2PHY_TOO_SMALL;
    return EPLB_OK;
}
