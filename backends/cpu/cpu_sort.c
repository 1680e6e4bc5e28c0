/* Stage 1 of balanced packing (SPEC 6.1): randomized keys and the visiting
 * order, items by key descending, equal keys by ascending index.
 *
 * Keys become unsigned integers in the wanted order; a counting pass spreads
 * them over about n buckets by their leading varying bits (in bit space, so a
 * heavy tail does not crowd everyone into one bucket), and each bucket is
 * finished by insertion sort, or by radix sort when it is large. Every step
 * is stable from index order, so equal keys keep ascending index. */
#include <stdint.h>
#include <string.h>

#include "common/spec_math.h"
#include "cpu_stages.h"

/* Maps a float to an unsigned integer whose ascending order is the float's
 * descending order, -0 and +0 alike. Branch-free, so key loops vectorize:
 * negative floats keep their bits, others become ~bits without the sign. */
static inline uint32_t descending_bits(float key)
{
    uint32_t bits;
    memcpy(&bits, &key, sizeof bits);
    bits = key == 0.0f ? 0u : bits; /* -0 -> +0 */
    const uint32_t negative = (uint32_t)((int32_t)bits >> 31);
    return (bits & negative) | (~bits & 0x7FFFFFFFu & ~negative);
}

/* Insertion sort of a bucket by (key, index); the bucket arrives in index
 * order, so only key order moves items. */
static void insertion_sort(uint32_t *key, int32_t *order, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        const uint32_t k = key[i];
        const int32_t o = order[i];
        int32_t j = i;
        while (j > 0 && key[j - 1] > k) {
            key[j] = key[j - 1];
            order[j] = order[j - 1];
            j--;
        }
        key[j] = k;
        order[j] = o;
    }
}

/* Insertion sort of (key << 32 | item) pairs: one compare and one move a
 * step, and pairs are distinct, so stability comes from the item bits. */
static void insertion_sort_pairs(uint64_t *pair, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        const uint64_t v = pair[i];
        int32_t j = i;
        while (j > 0 && pair[j - 1] > v) {
            pair[j] = pair[j - 1];
            j--;
        }
        pair[j] = v;
    }
}

/* Large buckets: LSD radix sort, 8 bits a pass, all four histograms in one
 * read; passes whose digit never varies are skipped. Stable. */
static void radix_sort(uint32_t *key, int32_t *order, int32_t n, uint32_t *key_tmp,
                       int32_t *order_tmp)
{
    int32_t count[4][256];
    memset(count, 0, sizeof count);
    for (int32_t i = 0; i < n; i++) {
        const uint32_t k = key[i];
        count[0][k & 255]++;
        count[1][(k >> 8) & 255]++;
        count[2][(k >> 16) & 255]++;
        count[3][k >> 24]++;
    }
    uint32_t *k_in = key, *k_out = key_tmp;
    int32_t *o_in = order, *o_out = order_tmp;
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 8 * pass;
        int32_t *c = count[pass];
        if (c[(k_in[0] >> shift) & 255] == n)
            continue;
        int32_t offset = 0;
        for (int d = 0; d < 256; d++) {
            int32_t here = c[d];
            c[d] = offset;
            offset += here;
        }
        for (int32_t i = 0; i < n; i++) {
            int32_t pos = c[(k_in[i] >> shift) & 255]++;
            k_out[pos] = k_in[i];
            o_out[pos] = o_in[i];
        }
        uint32_t *kt = k_in; k_in = k_out; k_out = kt;
        int32_t *ot = o_in; o_in = o_out; o_out = ot;
    }
    if (o_in != order) {
        memcpy(order, o_in, (size_t)n * sizeof *order);
        memcpy(key, k_in, (size_t)n * sizeof *key);
    }
}

#define EPLB_CPU_INSERTION_MAX 32

#if EPLB_CPU_SSE2
#include <emmintrin.h>
#endif

/* start[1 .. buckets] holds bucket sizes (start[0] = 0); turns them into
 * bucket ends, in place. Returns whether a bucket exceeds
 * EPLB_CPU_INSERTION_MAX. With SSE2 four buckets a step: the scalar running
 * sum is one long chain of dependent adds. */
static int prefix_sum(int32_t *start, int32_t buckets)
{
    int32_t b = 0;
    int crowded = 0;
#if EPLB_CPU_SSE2
    const __m128i limit = _mm_set1_epi32(EPLB_CPU_INSERTION_MAX);
    __m128i carry = _mm_setzero_si128(), over = _mm_setzero_si128();
    for (; b + 4 <= buckets; b += 4) {
        __m128i x = _mm_loadu_si128((const __m128i *)(start + b + 1));
        over = _mm_or_si128(over, _mm_cmpgt_epi32(x, limit));
        x = _mm_add_epi32(x, _mm_slli_si128(x, 4));
        x = _mm_add_epi32(x, _mm_slli_si128(x, 8));
        x = _mm_add_epi32(x, carry);
        _mm_storeu_si128((__m128i *)(start + b + 1), x);
        carry = _mm_shuffle_epi32(x, _MM_SHUFFLE(3, 3, 3, 3));
    }
    crowded = _mm_movemask_epi8(over) != 0;
#endif
    for (; b < buckets; b++) {
        crowded |= start[b + 1] > EPLB_CPU_INSERTION_MAX;
        start[b + 1] += start[b];
    }
    return crowded;
}

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>

/* The same, sixteen buckets a step (buckets a multiple of 16); returns the
 * largest bucket size instead (the caller decides what is crowded). */
EPLB_CPU_TARGET_AVX512 static int32_t prefix_sum_avx512(int32_t *start, int32_t buckets)
{
    const __m512i zero = _mm512_setzero_si512(), last = _mm512_set1_epi32(15);
    __m512i carry = zero, largest = zero;
    for (int32_t b = 0; b < buckets; b += 16) {
        __m512i x = _mm512_loadu_si512(start + b + 1);
        largest = _mm512_max_epi32(largest, x);
        x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 15));
        x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 14));
        x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 12));
        x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, zero, 8));
        /* The carry chain is one add a step; the sums above are independent. */
        _mm512_storeu_si512(start + b + 1, _mm512_add_epi32(x, carry));
        carry = _mm512_add_epi32(carry, _mm512_permutexvar_epi32(last, x));
    }
    return _mm512_reduce_max_epi32(largest);
}

/* Each key's bucket, (key - lo) >> shift (shift <= 32), into bucket[n] and
 * its pair (key << 32 | item) into pair_of (n pairs, stored at any 4-byte
 * alignment), sixteen keys a step: the counting and placing passes then read
 * them instead of working each out per key. Also clears the counters
 * start[0 .. buckets] (buckets a multiple of 16) with vector stores, which
 * cost less than a call of memset for so few. */
EPLB_CPU_TARGET_AVX512 static void bucket_keys_avx512(const uint32_t *key, int32_t n, uint32_t lo,
                                                      int shift, int32_t *bucket, uint32_t *pair_of,
                                                      int32_t *start, int32_t buckets)
{
    /* A zero the compiler cannot see through, or it turns the loop back
     * into the call of memset. */
    __m512i zero;
    __asm__("vpxord %0, %0, %0" : "=v"(zero));
    for (int32_t b = 0; b < buckets; b += 16)
        _mm512_storeu_si512(start + b, zero);
    start[buckets] = 0;
    const __m512i vlo = _mm512_set1_epi32((int)lo), count = _mm512_set1_epi32(shift);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __m512i item = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i k = _mm512_loadu_si512(key + i);
        /* Variable shifts of 32 or more give 0, as the 64-bit scalar shift does. */
        _mm512_storeu_si512(bucket + i, _mm512_srlv_epi32(_mm512_sub_epi32(k, vlo), count));
        const __m512i k0 = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(k));
        const __m512i k1 = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(k, 1));
        const __m512i i0 = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(item));
        const __m512i i1 = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(item, 1));
        _mm512_storeu_si512(pair_of + 2 * i, _mm512_or_si512(_mm512_slli_epi64(k0, 32), i0));
        _mm512_storeu_si512(pair_of + 2 * i + 16, _mm512_or_si512(_mm512_slli_epi64(k1, 32), i1));
        item = _mm512_add_epi32(item, sixteen);
    }
    for (; i < n; i++) {
        bucket[i] = (int32_t)((uint64_t)(key[i] - lo) >> shift);
        const uint64_t pair = (uint64_t)key[i] << 32 | (uint32_t)i;
        memcpy(pair_of + 2 * i, &pair, sizeof pair);
    }
}

/* Buckets of at most this many keys are finished by odd-even transposition
 * rounds instead of insertion sort. */
#define EPLB_CPU_TRANSPOSITION_MAX 8

/* Finishes pair[0 .. n) (bucket order, every bucket at most `largest` pairs)
 * with `largest` rounds of odd-even transposition (compare-exchange of
 * positions (2i, 2i+1), then (2i+1, 2i+2)), eight pairs a vector and no
 * data-dependent branch: insertion sort mispredicts on every key that moves.
 * Pairs of different buckets are already in order, so each round sorts
 * inside buckets only, and s rounds sort s elements. The result is checked;
 * returns 0 (pairs sorted, order[n] written) or 1 if the caller must finish
 * by insertion. pair has room for n rounded up to 8. */
EPLB_CPU_TARGET_AVX512 static int transposition_finish_avx512(uint64_t *pair, int32_t n,
                                                              int32_t largest, int32_t *order)
{
    const int32_t vectors = (n + 7) / 8;
    for (int32_t i = n; i < 8 * vectors; i++)
        pair[i] = UINT64_MAX; /* above every pair: key < 2^32 */
    const __m512i lowest = _mm512_setzero_si512(), highest = _mm512_set1_epi64(-1);
    const __mmask8 odd = 0xAA;
    /* An even round then an odd round per pass, the odd one from the even
     * one's results of this vector and its two neighbours. */
    for (int32_t round = 0; largest > 1 && round < largest; round += 2) {
        __m512i prev = lowest, x = _mm512_loadu_si512(pair);
        {
            const __m512i swapped = _mm512_shuffle_epi32(x, _MM_PERM_BADC);
            x = _mm512_mask_blend_epi64(odd, _mm512_min_epu64(x, swapped), _mm512_max_epu64(x, swapped));
        }
        for (int32_t v = 0; v < vectors; v++) {
            __m512i next = highest;
            if (v + 1 < vectors) {
                next = _mm512_loadu_si512(pair + 8 * (v + 1));
                const __m512i swapped = _mm512_shuffle_epi32(next, _MM_PERM_BADC);
                next = _mm512_mask_blend_epi64(odd, _mm512_min_epu64(next, swapped),
                                               _mm512_max_epu64(next, swapped));
            }
            const __m512i left = _mm512_alignr_epi64(x, prev, 7), right = _mm512_alignr_epi64(next, x, 1);
            _mm512_storeu_si512(pair + 8 * v, _mm512_mask_blend_epi64(odd, _mm512_max_epu64(left, x),
                                                                      _mm512_min_epu64(x, right)));
            prev = x;
            x = next;
        }
    }
    /* Sorted: every pair above its left neighbour (pairs are distinct). */
    __m512i prev = lowest;
    __mmask8 unsorted = 0;
    for (int32_t v = 0; v < vectors; v++) {
        const __m512i x = _mm512_loadu_si512(pair + 8 * v);
        const __mmask8 valid = n - 8 * v >= 8 ? 0xFF : (__mmask8)((1u << (n - 8 * v)) - 1);
        unsorted |= _mm512_mask_cmple_epu64_mask(valid, x, _mm512_alignr_epi64(x, prev, 7));
        prev = x;
    }
    if (unsorted)
        return 1;
    for (int32_t v = 0; v < vectors; v++) {
        const __mmask8 valid = n - 8 * v >= 8 ? 0xFF : (__mmask8)((1u << (n - 8 * v)) - 1);
        _mm512_mask_cvtepi64_storeu_epi32(order + 8 * v, valid, _mm512_loadu_si512(pair + 8 * v));
    }
    return 0;
}
#endif

#if EPLB_CPU_X86_DISPATCH
/* Rows of at most this many items are sorted by counting ranks: the work
 * grows with the square of the items, the bucket passes' linearly, and this
 * is about where they cost the same (docs/benchmarks.md). */
#define EPLB_CPU_RANK_MAX 144
#define EPLB_UNROLL_RANK _Pragma("GCC unroll 9")

/* Item i's place is the number of items that precede it: smaller keys, and
 * equal keys of lower index. Sixteen items a register; each pair of items
 * is compared once, when the later one, j, is broadcast against the
 * registers of the earlier ones (j precedes i < j only with a smaller key):
 * the lanes where it does count for i, the others for j. j's compare masks
 * are stored as they come and popcounted afterwards, sixteen items a vector
 * (rank_popcount_sum): counting each mask's bits in general registers as it
 * came took four instructions a mask, more than the compare and the add.
 * No data-dependent branch and no memory traffic but the keys and masks:
 * for short rows this beats the bucket passes, whose counters are read
 * right after being written. V registers, n <= 16 * V. */
#define EPLB_RANK_BODY(V)                                                                          \
    do {                                                                                           \
        __m512i k[V], rank[V];                                                                     \
        uint16_t before_of[V][16 * (V)] __attribute__((aligned(32)));                              \
        const __m512i one = _mm512_set1_epi32(1);                                                  \
        EPLB_UNROLL_RANK for (int32_t b = 0; b < V; b++) {                                         \
            const __mmask16 valid = rank_lanes(n - 16 * b);                                        \
            k[b] = _mm512_mask_loadu_epi32(_mm512_set1_epi32(-1), valid, key + 16 * b);              \
            rank[b] = _mm512_setzero_si512();                                                      \
            /* The last register's masks past n are read, never written. */                        \
            _mm256_store_si256((__m256i *)&before_of[b][16 * ((V) - 1)], _mm256_setzero_si256());   \
        }                                                                                          \
        EPLB_UNROLL_RANK for (int32_t jb = 0; jb < V; jb++) {                                      \
            const int32_t end = n - 16 * jb < 16 ? n - 16 * jb : 16;                               \
            for (int32_t jj = 0; jj < end; jj++) {                                                 \
                const __m512i kj = _mm512_set1_epi32((int)key[16 * jb + jj]);                      \
                EPLB_UNROLL_RANK for (int32_t b = 0; b < V; b++) {                                 \
                    if (b > jb)                                                                    \
                        break;                                                                     \
                    const __mmask16 earlier = b < jb ? (__mmask16)0xFFFF : rank_earlier[jj];       \
                    const __mmask16 before = _mm512_mask_cmplt_epu32_mask(earlier, kj, k[b]);      \
                    rank[b] = _mm512_mask_add_epi32(rank[b], before, rank[b], one);                \
                    _store_mask16((__mmask16 *)&before_of[b][16 * jb + jj], before);               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
        EPLB_UNROLL_RANK for (int32_t b = 0; b < V; b++) {                                         \
            const __mmask16 valid = rank_lanes(n - 16 * b);                                        \
            const __m512i item = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * b));                \
            /* Items j of this register precede i's: j, less those i precedes. */                  \
            const __m512i later = _mm512_sub_epi32(item, rank_popcount_sum(before_of[0] + 16 * b, 16 * (V), b + 1)); \
            _mm512_mask_i32scatter_epi32(order, valid, _mm512_add_epi32(rank[b], later), item, 4);  \
        }                                                                                          \
    } while (0)

/* The masks of the diagonal register: the lanes before lane jj. */
static const __mmask16 rank_earlier[16] = {0x0,   0x1,   0x3,   0x7,    0xF,    0x1F,   0x3F,   0x7F,
                                           0xFF,  0x1FF, 0x3FF, 0x7FF,  0xFFF,  0x1FFF, 0x3FFF, 0x7FFF};

/* For sixteen items, the bits of their 16-bit masks in `count` rows of mask
 * (rows `stride` apart), summed: bit counts by halves, nibbles and bytes in
 * 32-bit lanes, which AVX-512F has (a population count instruction would
 * need another extension). */
EPLB_CPU_TARGET_AVX512 static inline __m512i rank_popcount_sum(const uint16_t *mask, int32_t stride,
                                                               int32_t count)
{
    const __m512i m1 = _mm512_set1_epi32(0x5555), m2 = _mm512_set1_epi32(0x3333),
                  m4 = _mm512_set1_epi32(0x0F0F), m8 = _mm512_set1_epi32(0xFF);
    __m512i sum = _mm512_setzero_si512();
    for (int32_t r = 0; r < count; r++) {
        __m512i x = _mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)(mask + r * stride)));
        x = _mm512_sub_epi32(x, _mm512_and_si512(_mm512_srli_epi32(x, 1), m1));
        x = _mm512_add_epi32(_mm512_and_si512(x, m2), _mm512_and_si512(_mm512_srli_epi32(x, 2), m2));
        sum = _mm512_add_epi32(sum, _mm512_and_si512(_mm512_add_epi32(x, _mm512_srli_epi32(x, 4)), m4));
    }
    /* Each byte holds at most 8 bits a row, 9 rows: no carry into the next. */
    return _mm512_add_epi32(_mm512_and_si512(sum, m8), _mm512_srli_epi32(sum, 8));
}

/* The first `left` of sixteen lanes, none when left <= 0. */
static inline __mmask16 rank_lanes(int32_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

EPLB_CPU_TARGET_AVX512 static void rank_sort_avx512(const uint32_t *key, int32_t n, int32_t *order)
{
    switch ((n + 15) / 16) {
    case 1: EPLB_RANK_BODY(1); break;
    case 2: EPLB_RANK_BODY(2); break;
    case 3: EPLB_RANK_BODY(3); break;
    case 4: EPLB_RANK_BODY(4); break;
    case 5: EPLB_RANK_BODY(5); break;
    case 6: EPLB_RANK_BODY(6); break;
    case 7: EPLB_RANK_BODY(7); break;
    case 8: EPLB_RANK_BODY(8); break;
    default: EPLB_RANK_BODY(9); break; /* n <= EPLB_CPU_RANK_MAX */
    }
}
#endif

/* key[n] (with its lowest and highest value) -> order[n]. */
static void bucket_sort(const uint32_t *key, int32_t n, uint32_t lo, uint32_t hi, int32_t *order,
                        eplb_cpu_scratch *s)
{
    if (lo == hi) { /* all keys equal: index order */
        for (int32_t i = 0; i < n; i++)
            order[i] = i;
        return;
    }
    /* About two buckets a key, so that insertion runs stay short: fewer
     * buckets were slower and more gained nothing (docs/benchmarks.md). */
    int bucket_bits = 0;
    while ((1 << bucket_bits) < 2 * n && bucket_bits < 16)
        bucket_bits++;
    const int range_bits = 32 - __builtin_clz(hi - lo);
    const int shift = range_bits > bucket_bits ? range_bits - bucket_bits : 0;
    /* Only buckets up to the highest key's are cleared and summed: between
     * half and all of them, as the keys' range falls. */
    const int32_t buckets = (int32_t)(((uint64_t)(hi - lo) >> shift) + 1);
    const int32_t vector_buckets = (buckets + 15) & ~15;
    int32_t *start = s->bucket;
#if EPLB_CPU_X86_DISPATCH
    /* With AVX-512 each key's bucket and pair are worked out once, sixteen
     * at a time (the bucket numbers in s->order, the pairs in the key
     * scratch's second and third thirds, which only crowded rows use). */
    const int vector_keys = vector_buckets <= 1 << bucket_bits && eplb_cpu_has_avx512(s);
    int32_t *bucket_of = s->order;
    uint32_t *pair_of = s->key + n;
    if (vector_keys) {
        bucket_keys_avx512(key, n, lo, shift, bucket_of, pair_of, start, vector_buckets);
        for (int32_t i = 0; i < n; i++)
            start[bucket_of[i] + 1]++;
    } else
#endif
    {
        memset(start, 0, (size_t)(buckets + 1) * sizeof *start);
        /* 64-bit shift: with one bucket and keys spanning all 32 bits, shift is 32. */
        for (int32_t i = 0; i < n; i++)
            start[((uint64_t)(key[i] - lo) >> shift) + 1]++;
    }
#if EPLB_CPU_X86_DISPATCH
    /* The largest bucket where the AVX-512 prefix sums find it, else unknown. */
    int32_t largest = INT32_MAX;
    int crowded;
    if (vector_keys) {
        largest = prefix_sum_avx512(start, vector_buckets);
        crowded = largest > EPLB_CPU_INSERTION_MAX;
    } else {
        crowded = prefix_sum(start, buckets);
    }
#else
    const int crowded = prefix_sum(start, buckets);
#endif
    if (!crowded) {
        /* Items are out of order only inside their bucket: one pass finishes. */
        uint64_t *pair = s->pair;
#if EPLB_CPU_X86_DISPATCH
        if (vector_keys) {
            for (int32_t i = 0; i < n; i++)
                memcpy(&pair[start[bucket_of[i]]++], pair_of + 2 * i, sizeof *pair);
        } else
#endif
        for (int32_t i = 0; i < n; i++) {
            const int32_t pos = start[(uint64_t)(key[i] - lo) >> shift]++;
            pair[pos] = (uint64_t)key[i] << 32 | (uint32_t)i;
        }
#if EPLB_CPU_X86_DISPATCH
        if (largest <= EPLB_CPU_TRANSPOSITION_MAX && !transposition_finish_avx512(pair, n, largest, order))
            return;
#endif
        insertion_sort_pairs(pair, n);
        for (int32_t i = 0; i < n; i++)
            order[i] = (int32_t)(uint32_t)pair[i];
        return;
    }
    uint32_t *sorted_key = s->key + n;
    for (int32_t i = 0; i < n; i++) {
        const int32_t pos = start[(uint64_t)(key[i] - lo) >> shift]++;
        sorted_key[pos] = key[i];
        order[pos] = i;
    }
    /* start[b] now marks the end of bucket b. */
    int32_t begin = 0;
    for (int32_t b = 0; b < buckets; b++) {
        const int32_t size = start[b] - begin;
        if (size > EPLB_CPU_INSERTION_MAX)
            radix_sort(sorted_key + begin, order + begin, size, s->key + 2 * n, s->order);
        else if (size > 1)
            insertion_sort(sorted_key + begin, order + begin, size);
        begin = start[b];
    }
}

/* Key loops, also built for AVX2 and AVX-512 (where 64-bit multiplies are
 * one instruction) and picked at run time: the same IEEE operations lane by
 * lane (no contraction: -ffp-contract=off), so the same keys, several items
 * at a time. Both loops also find the smallest and largest key. */
#define EPLB_KEY_BODY static inline __attribute__((always_inline))

EPLB_KEY_BODY void plain_keys_body(const float *w, int32_t n, uint32_t *key, uint32_t *lo,
                                   uint32_t *hi)
{
    uint32_t low = UINT32_MAX, high = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint32_t k = descending_bits(w[i]);
        key[i] = k;
        low = k < low ? k : low;
        high = k > high ? k : high;
    }
    *lo = low;
    *hi = high;
}

EPLB_KEY_BODY void noisy_keys_body(const float *w, int32_t n, float noise, eplb_u64 prefix,
                                   uint32_t *key, uint32_t *lo, uint32_t *hi)
{
    uint32_t low = UINT32_MAX, high = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint32_t k =
            descending_bits(eplb_sort_key(w[i], noise, eplb_random_unit_at(prefix, (uint64_t)i)));
        key[i] = k;
        low = k < low ? k : low;
        high = k > high ? k : high;
    }
    *lo = low;
    *hi = high;
}

#define EPLB_KEY_ARGS_PLAIN const float *w, int32_t n, uint32_t *key, uint32_t *lo, uint32_t *hi
#define EPLB_KEY_ARGS_NOISY                                                                       \
    const float *w, int32_t n, float noise, eplb_u64 prefix, uint32_t *key, uint32_t *lo, uint32_t *hi

static void plain_keys_default(EPLB_KEY_ARGS_PLAIN) { plain_keys_body(w, n, key, lo, hi); }
static void noisy_keys_default(EPLB_KEY_ARGS_NOISY)
{
    noisy_keys_body(w, n, noise, prefix, key, lo, hi);
}

#if EPLB_CPU_X86_DISPATCH
EPLB_CPU_TARGET_AVX2 static void plain_keys_avx2(EPLB_KEY_ARGS_PLAIN)
{
    plain_keys_body(w, n, key, lo, hi);
}
EPLB_CPU_TARGET_AVX2 static void noisy_keys_avx2(EPLB_KEY_ARGS_NOISY)
{
    noisy_keys_body(w, n, noise, prefix, key, lo, hi);
}
#define EPLB_CPU_TARGET_AVX512DQ __attribute__((target("avx2,avx512f,avx512dq,avx512vl")))

/* descending_bits on eight keys. */
EPLB_CPU_TARGET_AVX512DQ static inline __m256i descending_bits8(__m256 key)
{
    const __m256i bits = _mm256_maskz_mov_epi32(_mm256_cmp_ps_mask(key, _mm256_setzero_ps(), _CMP_NEQ_UQ),
                                                _mm256_castps_si256(key));
    const __m256i negative = _mm256_srai_epi32(bits, 31);
    return _mm256_or_si256(_mm256_and_si256(bits, negative),
                           _mm256_andnot_si256(negative, _mm256_andnot_si256(bits, _mm256_set1_epi32(0x7FFFFFFF))));
}

/* The random function's states of items 0-7 after the candidate's prefix. */
EPLB_CPU_TARGET_AVX512DQ static inline __m512i random_states8(eplb_u64 prefix)
{
    return _mm512_add_epi64(_mm512_set1_epi64((long long)prefix),
                            _mm512_mullo_epi64(_mm512_set1_epi64((long long)EPLB_RANDOM_GOLDEN),
                                               _mm512_setr_epi64(1, 2, 3, 4, 5, 6, 7, 8)));
}

/* The descending bits of the noisy keys of the eight items of weights wi
 * and states *z, which then move on to the next eight items: the random
 * function's 64-bit arithmetic in 512-bit registers (one multiply
 * instruction each) and the float operations, in the same order, on 256-bit
 * ones. The final xor of the mix only touches bits below 33, so U takes
 * bits 40 and up of the second product directly. */
EPLB_CPU_TARGET_AVX512DQ static inline __m256i noisy_keys8(__m512i *z, __m256 wi, float noise)
{
    const __m512i m1 = _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL);
    const __m512i m2 = _mm512_set1_epi64((long long)0x94D049BB133111EBULL);
    __m512i x = _mm512_mullo_epi64(_mm512_xor_si512(*z, _mm512_srli_epi64(*z, 30)), m1);
    x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 27)), m2);
    *z = _mm512_add_epi64(*z, _mm512_set1_epi64((long long)(EPLB_RANDOM_GOLDEN * 8u)));
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(_mm512_srli_epi64(x, 40))),
                                   _mm256_set1_ps(1.0f / 16777216.0f));
    return descending_bits8(_mm256_add_ps(wi, _mm256_mul_ps(u, _mm256_mul_ps(wi, _mm256_set1_ps(noise)))));
}

/* noisy_keys_body, eight items a step (noisy_keys8). */
EPLB_CPU_TARGET_AVX512DQ static void noisy_keys_avx512(EPLB_KEY_ARGS_NOISY)
{
    __m512i z = random_states8(prefix);
    __m256i low = _mm256_set1_epi32(-1), high = _mm256_setzero_si256();
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i bits = noisy_keys8(&z, _mm256_loadu_ps(w + i), noise);
        _mm256_storeu_si256((__m256i *)(key + i), bits);
        low = _mm256_min_epu32(low, bits);
        high = _mm256_max_epu32(high, bits);
    }
    uint32_t lows[8], highs[8];
    _mm256_storeu_si256((__m256i *)lows, low);
    _mm256_storeu_si256((__m256i *)highs, high);
    uint32_t lo_all = lows[0], hi_all = highs[0];
    for (int j = 1; j < 8; j++) {
        lo_all = lows[j] < lo_all ? lows[j] : lo_all;
        hi_all = highs[j] > hi_all ? highs[j] : hi_all;
    }
    for (; i < n; i++) {
        const uint32_t k =
            descending_bits(eplb_sort_key(w[i], noise, eplb_random_unit_at(prefix, (uint64_t)i)));
        key[i] = k;
        lo_all = k < lo_all ? k : lo_all;
        hi_all = k > hi_all ? k : hi_all;
    }
    *lo = lo_all;
    *hi = hi_all;
}

/* The noisy keys of the rank sort's rows, which need no lowest or highest
 * key: noisy_keys_avx512's steps without the running minima and maxima and
 * their reduction after the loop, and the last step masked instead of a
 * scalar tail. */
EPLB_CPU_TARGET_AVX512DQ static void noisy_rank_keys_avx512(const float *w, int32_t n, float noise,
                                                            eplb_u64 prefix, uint32_t *key)
{
    __m512i z = random_states8(prefix);
    for (int32_t i = 0; i < n; i += 8) {
        const __mmask8 valid = (__mmask8)rank_lanes(n - i);
        _mm256_mask_storeu_epi32(key + i, valid, noisy_keys8(&z, _mm256_maskz_loadu_ps(valid, w + i), noise));
    }
}
#endif

static void plain_keys(const eplb_cpu_scratch *scratch, EPLB_KEY_ARGS_PLAIN)
{
    (void)scratch;
#if EPLB_CPU_X86_DISPATCH
    if (eplb_cpu_has_avx2(scratch)) {
        plain_keys_avx2(w, n, key, lo, hi);
        return;
    }
#endif
    plain_keys_default(w, n, key, lo, hi);
}

static void noisy_keys(const eplb_cpu_scratch *scratch, EPLB_KEY_ARGS_NOISY)
{
    (void)scratch;
#if EPLB_CPU_X86_DISPATCH
    if (eplb_cpu_has_avx512(scratch)) {
        noisy_keys_avx512(w, n, noise, prefix, key, lo, hi);
        return;
    }
    if (eplb_cpu_has_avx2(scratch)) {
        noisy_keys_avx2(w, n, noise, prefix, key, lo, hi);
        return;
    }
#endif
    noisy_keys_default(w, n, noise, prefix, key, lo, hi);
}

void eplb_cpu_sort_one(const eplb_pack_job *job, int64_t row, int64_t candidate, int32_t *order,
                       eplb_cpu_scratch *scratch)
{
    const int32_t n = job->items;
    const float *w = (const float *)job->weight + row * n;
    uint32_t *key = scratch->key, lo, hi;
#if EPLB_CPU_X86_DISPATCH
    if (n <= EPLB_CPU_RANK_MAX && eplb_cpu_has_avx512(scratch)) {
        if (candidate == 0)
            plain_keys(scratch, w, n, key, &lo, &hi);
        else
            noisy_rank_keys_avx512(w, n, job->noise,
                                   eplb_random_prefix(job->seed, (uint64_t)job->call, (uint64_t)row,
                                                      (uint64_t)candidate),
                                   key);
        rank_sort_avx512(key, n, order);
        return;
    }
#endif
    if (candidate == 0)
        plain_keys(scratch, w, n, key, &lo, &hi);
    else
        noisy_keys(scratch, w, n, job->noise,
                   eplb_random_prefix(job->seed, (uint64_t)job->call, (uint64_t)row,
                                      (uint64_t)candidate),
                   key, &lo, &hi);
    bucket_sort(key, n, lo, hi, order, scratch);
}

static void sort_packing(const eplb_pack_job *job, int64_t row, int64_t candidate,
                         eplb_cpu_scratch *scratch)
{
    const int64_t x = row * job->candidates + candidate;
    eplb_cpu_sort_one(job, row, candidate, (int32_t *)job->order + x * job->items, scratch);
}

eplb_status eplb_cpu_pack_sort(eplb_backend *backend, const eplb_pack_job *job)
{
    return eplb_cpu_for_each_packing(backend, job, sort_packing, "sort");
}
