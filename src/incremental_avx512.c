/* The AVX-512 scans of the swap search (docs/spec.md section 13.5), picked
 * by incremental_search.c at run time: the best single trade of the
 * heaviest GPU A from the domain's slots sorted by slot load, and the
 * double trades filtered 16 pairs at a time. Both find the trade the plain
 * loops find, with the same float32 operations. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "incremental_search.h"

#if SEARCH_AVX512

/* The lanes of the next 16 values when left (> 0) remain. */
static inline __mmask16 lanes_left(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* The widest span of buckets that bucket_order counts in one table on
 * the stack. */
#define BUCKET_SPAN_MAX 2048

/* The sum of each of the n counts at[0..n) and those before it, in place,
 * 16 at a time: each register's lanes summed in four shifted adds, then
 * the carry of the registers before it added. */
TARGET_AVX512 static void running_sum(int32_t *at, int64_t n)
{
    const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(15);
    __m512i carry = zero;
    for (int64_t b = 0; b < n; b += 16) {
        const __mmask16 m = lanes_left(n - b);
        __m512i v = _mm512_maskz_loadu_epi32(m, at + b);
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 15));
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 14));
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 12));
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 8));
        v = _mm512_add_epi32(v, carry);
        _mm512_mask_storeu_epi32(at + b, m, v);
        carry = _mm512_permutexvar_epi32(top, v);
    }
}

/* The n slots' buckets key[] (their span first..last, at most
 * BUCKET_SPAN_MAX) sorted into idx[], a stable counting sort in one pass;
 * and, since the counts then say where each bucket ends, each place's
 * bucket and the place just past its bucket (bucket[], end[]). */
TARGET_AVX512 static void bucket_order(const uint32_t *key, int64_t n, uint32_t first,
                                       uint32_t last, int32_t *idx, uint32_t *bucket,
                                       int32_t *end)
{
    int32_t start[BUCKET_SPAN_MAX + 1];
    const uint32_t span = last - first + 1;
    memset(start, 0, (span + 1) * sizeof *start);
    for (int64_t q = 0; q < n; q++)
        start[key[q] - first + 1]++;
    running_sum(start + 1, span);
    for (int64_t q = 0; q < n; q++)
        idx[start[key[q] - first]++] = (int32_t)q;
    /* Each bucket's start has moved on to where the bucket ends. */
    const __m512i low = _mm512_set1_epi32((int)first);
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 m = lanes_left(n - k);
        const __m512i q = _mm512_maskz_loadu_epi32(m, idx + k);
        const __m512i b = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, q, key, 4);
        _mm512_mask_storeu_epi32(bucket + k, m, b);
        _mm512_mask_storeu_epi32(
            end + k, m,
            _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, _mm512_sub_epi32(b, low),
                                        start, 4));
    }
}

/* The most slots that rank_order sorts. */
#define RANK_SLOTS_MAX 128

/* The same for few slots: each slot's place is the number of slots before
 * it in (bucket, slot) order, counted 16 at a time, with no table of the
 * span (key: [n], n <= RANK_SLOTS_MAX). */
TARGET_AVX512 static void rank_order(const uint32_t *key, int64_t n, int32_t *idx)
{
    uint32_t both[RANK_SLOTS_MAX];
    for (int64_t q = 0; q < n; q++)
        both[q] = key[q] << 16 | (uint32_t)q; /* buckets fit 16 bits, slots too */
    for (int64_t q = 0; q < n; q++) {
        const __m512i mine = _mm512_set1_epi32((int)both[q]);
        int32_t place = 0;
        for (int64_t k = 0; k < n; k += 16) {
            const __mmask16 m = lanes_left(n - k);
            place += __builtin_popcount(
                _mm512_mask_cmplt_epu32_mask(m, _mm512_maskz_loadu_epi32(m, both + k), mine));
        }
        idx[place] = (int32_t)q;
    }
}

/* The same for any span, least significant byte first, a stable counting
 * sort per byte; returns the sorted slots (idx or idx2). */
static int32_t *byte_order(uint32_t *key, uint32_t *key2, int64_t n, int32_t *idx, int32_t *idx2)
{
    /* The two bytes' counts in one pass. */
    int32_t start[2][257];
    memset(start, 0, sizeof start);
    for (int64_t q = 0; q < n; q++) {
        idx[q] = (int32_t)q;
        for (int d = 0; d < 2; d++)
            start[d][(key[q] >> (8 * d) & 255) + 1]++;
    }
    for (int d = 0; d < 2; d++) {
        const int shift = 8 * d;
        int32_t *at = start[d];
        if (at[(key[0] >> shift & 255) + 1] == n)
            continue; /* every key has the same byte here */
        for (int b = 1; b <= 256; b++)
            at[b] += at[b - 1];
        for (int64_t q = 0; q < n; q++) {
            const int32_t to = at[key[q] >> shift & 255]++;
            key2[to] = key[q];
            idx2[to] = idx[q];
        }
        uint32_t *kt = key;
        key = key2;
        key2 = kt;
        int32_t *it = idx;
        idx = idx2;
        idx2 = it;
    }
    return idx;
}

/* Sorts the domain's slots by the bucket of their slot loads (the upper
 * half of float_order: the sign, the exponent and 7 bits of the mantissa,
 * so a bucket spans less than 1 % of a load), a stable counting sort, into
 * order_u and order_slot, and fills order_pos and the tables kept beside
 * them. The buckets of a domain's loads mostly span a few thousand at
 * most, counted in one pass; wider spans take one pass per byte. The scan
 * needs no finer order: it weighs whole buckets at the ends of its window,
 * each pair by its own loads, and breaks ties by the pairs' places in SPEC
 * order, not by their places in the table. */
TARGET_AVX512 void eplb_search_order_slots(search_state *st)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t n = st->slots;
    uint32_t *key = s->order_tmp, *key2 = key + n;
    int32_t *idx = (int32_t *)(key2 + n), *idx2 = idx + n;
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i least = _mm512_set1_epi32(-1), most = _mm512_setzero_si512();
    for (int64_t q = 0; q < n; q += 16) {
        const __mmask16 m = lanes_left(n - q);
        /* load_bucket, 16 at a time. */
        const __m512i bits = _mm512_castps_si512(
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, st->u + q), _mm512_setzero_ps()));
        const __m512i k = _mm512_srli_epi32(
            _mm512_xor_si512(bits, _mm512_or_si512(_mm512_srai_epi32(bits, 31), sign)), 16);
        _mm512_mask_storeu_epi32(key + q, m, k);
        least = _mm512_mask_min_epu32(least, m, least, k);
        most = _mm512_mask_max_epu32(most, m, most, k);
    }
    const uint32_t first = _mm512_reduce_min_epu32(least), last = _mm512_reduce_max_epu32(most);
    /* Whether the sort has found each place's bucket and its end. */
    int ends = 0;
    if (n <= RANK_SLOTS_MAX)
        rank_order(key, n, idx);
    else if (last - first < BUCKET_SPAN_MAX) {
        bucket_order(key, n, first, last, idx, s->order_bucket, s->order_end);
        ends = 1;
    } else
        idx = byte_order(key, key2, n, idx, idx2);
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 m = lanes_left(n - k);
        const __m512i q = _mm512_maskz_loadu_epi32(m, idx + k);
        const __m512 none = _mm512_setzero_ps();
        const __m512i zero = _mm512_setzero_si512();
        _mm512_mask_storeu_ps(s->order_u + k, m, _mm512_mask_i32gather_ps(none, m, q, st->u, 4));
        _mm512_mask_storeu_epi32(s->order_slot + k, m, q);
        _mm512_mask_storeu_epi32(s->order_gpu + k, m,
                                 _mm512_mask_i32gather_epi32(zero, m, q, s->gpu_of, 4));
        _mm512_mask_storeu_ps(s->order_load + k, m,
                              _mm512_mask_i32gather_ps(none, m, q, s->slot_gpu_load, 4));
        _mm512_mask_storeu_epi32(s->order_arrival + k, m,
                                 _mm512_mask_i32gather_epi32(zero, m, q, s->arrival_cost, 4));
        _mm512_mask_i32scatter_epi32(s->order_pos, m, q,
                                     _mm512_add_epi32(_mm512_set1_epi32((int)k), lane), 4);
    }
    /* Each place's bucket, and where its bucket ends. */
    int32_t end = (int32_t)n;
    for (int64_t k = n - 1; k >= 0 && !ends; k--) {
        s->order_bucket[k] = load_bucket(s->order_u[k]);
        end = k + 1 < n && s->order_bucket[k + 1] != s->order_bucket[k] ? (int32_t)(k + 1) : end;
        s->order_end[k] = end;
    }
    st->ordered = 1;
}

/* The most GPUs of a domain whose row of away_excess the single trades'
 * scan holds in registers (two per permute), looked up by permutes rather
 * than gathered from memory. */
#define AWAY_REGISTERS_MAX 8

/* Each lane's entry gpu of the row held in registers, pairs of them
 * covering 32 GPUs each: a permute per pair, each later pair taking the
 * lanes whose GPU lies at or beyond its first. */
TARGET_AVX512 static inline __m512i away_lookup(const __m512i *row, int pairs, __m512i gpu)
{
    __m512i v = _mm512_permutex2var_epi32(row[0], gpu, row[1]);
    for (int p = 1; p < pairs; p++)
        v = _mm512_mask_mov_epi32(v, _mm512_cmpge_epi32_mask(gpu, _mm512_set1_epi32(32 * p)),
                                  _mm512_permutex2var_epi32(row[2 * p], gpu, row[2 * p + 1]));
    return v;
}

/* replace_sorted for n <= 16 in one register, with no branch on where
 * the values lie: the first slot load equal to out leaves (compress), and
 * in goes in after the loads below it (expand); among equal loads the
 * place does not matter, as for the loop. */
TARGET_AVX512 static void replace_in_register(float *sorted, int64_t n, float out, float in)
{
    const __mmask16 all = (__mmask16)((1u << n) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(all, sorted);
    const __mmask16 found = _mm512_mask_cmp_ps_mask(all, v, _mm512_set1_ps(out), _CMP_EQ_OQ);
    const __mmask16 leaving = (__mmask16)(found & -found);
    const __m512 rest = _mm512_maskz_compress_ps((__mmask16)(all & ~leaving), v);
    const __mmask16 rest_all = (__mmask16)(all >> 1);
    const int at = __builtin_popcount(
        _mm512_mask_cmp_ps_mask(rest_all, rest, _mm512_set1_ps(in), _CMP_LT_OQ));
    const __m512 spread = _mm512_maskz_expand_ps((__mmask16)(all & ~(1u << at)), rest);
    _mm512_mask_storeu_ps(sorted, all,
                          _mm512_mask_mov_ps(spread, (__mmask16)(1u << at), _mm512_set1_ps(in)));
}

void eplb_search_swap_sorted_avx512(float *sorted_a, float *sorted_b, int64_t n, float give,
                                    float take)
{
    replace_in_register(sorted_a, n, give, take);
    replace_in_register(sorted_b, n, take, give);
}

TARGET_AVX512 int64_t eplb_search_heaviest_avx512(const search_state *st)
{
    const int64_t gd = st->gpus;
    __m512 most = _mm512_set1_ps(-INFINITY);
    for (int64_t b = 0; b < gd; b += 16) {
        const __mmask16 m = lanes_left(gd - b);
        most = _mm512_mask_max_ps(most, m, most, _mm512_maskz_loadu_ps(m, st->load + b));
    }
    /* The loads are never NaN: the first equal to the largest is the one
     * the plain loop keeps. The GPUs equal to it are gathered four masks
     * at a time, with no branch on where it lies. */
    const __m512 largest = _mm512_set1_ps(_mm512_reduce_max_ps(most));
    for (int64_t base = 0; base < gd; base += 64) {
        uint64_t hits = 0;
        for (int64_t b = base; b < gd && b < base + 64; b += 16) {
            const __mmask16 m = lanes_left(gd - b);
            hits |= (uint64_t)_mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, st->load + b),
                                                      largest, _CMP_EQ_OQ)
                    << (b - base);
        }
        if (hits)
            return base + __builtin_ctzll(hits);
    }
    return 0;
}

/* refresh_gpu and spread_load (incremental_search.c) for the slots of
 * GPUs g0..g1 - 1, 16 slots at a time, where the search keeps its table of
 * excess: each slot's own excess is the table's entry of its expert and
 * GPU, its arrival cost 1 - (own excess > 0), and the load of its GPU beside
 * it, in slot order and, when the search keeps them, at the slot's place in
 * the order by load. */
TARGET_AVX512 void eplb_search_refresh_avx512(const search_state *st, int64_t g0, int64_t g1)
{
    eplb_incremental_scratch *s = st->s;
    const int64_t q1 = g1 * st->spg;
    const __m512i gpus = _mm512_set1_epi32((int)st->gpus), one = _mm512_set1_epi32(1);
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t q = g0 * st->spg; q < q1; q += 16) {
        const __mmask16 m = lanes_left(q1 - q);
        const __m256i low = _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64((__mmask8)m, st->cur + q));
        const __m256i high =
            _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64((__mmask8)(m >> 8), st->cur + q + 8));
        const __m512i expert = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
        const __m512i gpu = _mm512_maskz_loadu_epi32(m, s->gpu_of + q);
        const __m512i own = _mm512_mask_i32gather_epi32(
            zero, m, _mm512_add_epi32(_mm512_mullo_epi32(expert, gpus), gpu), st->excess, 4);
        const __m512i arrival =
            _mm512_mask_sub_epi32(one, _mm512_cmpgt_epi32_mask(own, zero), one, one);
        const __m512 load = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, gpu, st->load, 4);
        _mm512_mask_storeu_epi32(s->own_excess + q, m, own);
        _mm512_mask_storeu_epi32(s->arrival_cost + q, m, arrival);
        _mm512_mask_storeu_ps(s->slot_gpu_load + q, m, load);
        if (st->ordered) {
            const __m512i pos = _mm512_maskz_loadu_epi32(m, s->order_pos + q);
            _mm512_mask_i32scatter_epi32(s->order_arrival, m, pos, arrival, 4);
            _mm512_mask_i32scatter_ps(s->order_load, m, pos, load, 4);
        }
    }
}

/* The places (i * domain slots + sb) that the packed keys of the single
 * trades' scan hold: 26 bits. */
#define PACKED_PLACES_MAX ((int64_t)1 << 26)

/* The single trades, 16 slots sb at a time, with the plain loop's float32
 * operations, so the same keys. Where the domain's slots are sorted by the
 * bucket of their load (st->ordered), slot sb can trade with A's slot sa
 * only if u[sb] < u[sa], which ends with sa's bucket, and with class 0 or 1
 * only if (load[B] - u[sb]) + u[sa] <= T, which bounds u[sb] from below by
 * u[sa] - (T - the least load of a GPU other than A), less a margin for
 * float32 rounding (class 2 likewise by u[sa] - (load[A] - that load)): a
 * window of the table, whole buckets at its ends, each slot in it checked
 * against both bounds. Otherwise every slot is weighed, in slot order. The key of
 * classes 0 and 1 is split in two 32-bit halves, (class, cost) and the
 * value's order, compared lexicographically; class 2 is weighed in a second
 * pass, needed only when no pair has class 0 or 1. Each lane keeps its best
 * pair, ties to the first in SPEC order, whose place in that order is
 * i * slots + sb; the lanes' bests then go by key and place alike. */
TARGET_AVX512 int eplb_search_single_avx512(const search_state *st, int64_t A, const int32_t *row,
                                            int64_t pick[2], int *cost_out)
{
    const eplb_incremental_scratch *s = st->s;
    const int64_t spg = st->spg, gd = st->gpus, dn = st->slots;
    const float load_a = st->load[A];
    const __m512 target = _mm512_set1_ps(st->target), zero = _mm512_setzero_ps();
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), one = _mm512_set1_epi32(1);
    const __m512i own = _mm512_set1_epi32((int)A);
    const __m512 la = _mm512_set1_ps(load_a);
    __m512 least = _mm512_set1_ps(INFINITY);
    for (int64_t b = 0; b < gd; b += 16) {
        __mmask16 m = lanes_left(gd - b);
        if (A >= b && A < b + 16)
            m &= (__mmask16) ~(1u << (A - b));
        least = _mm512_mask_min_ps(least, m, least, _mm512_maskz_loadu_ps(m, st->load + b));
    }
    const double lightest = _mm512_reduce_min_ps(least);
    /* The tables scanned: sorted by load, or the slots in order. */
    const float *tab_u = st->ordered ? s->order_u : st->u;
    const float *tab_load = st->ordered ? s->order_load : s->slot_gpu_load;
    const int32_t *tab_gpu = st->ordered ? s->order_gpu : s->gpu_of;
    const int32_t *tab_arrival = st->ordered ? s->order_arrival : s->arrival_cost;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int pass = 0; pass < 2; pass++) {
        __m512i best_hi = _mm512_set1_epi32(INT32_MAX), best_lo = _mm512_setzero_si512();
        __m512i best_at = _mm512_setzero_si512();
        /* Classes 0 and 1 keep each lane's best as one 64-bit key, (class,
         * cost) in 6 bits, the value's order in 32, the place in the rest,
         * which orders as the three do one after the other; so a chunk
         * takes an unsigned minimum instead of a chain of compares. The
         * even and odd 32-bit lanes pair up into 64-bit ones. */
        const int packed = pass == 0 && spg * dn <= PACKED_PLACES_MAX;
        __m512i best_even = _mm512_set1_epi64(-1), best_odd = _mm512_set1_epi64(-1);
        /* Each slot's lower bound first, apart from the scan, so that the
         * scan's exits wait only on loads, not on this chain of float64
         * operations. */
        float below_of[EPLB_SEARCH_SPG_MAX];
        for (int64_t i = 0; i < spg; i++) {
            const float ua_s = st->u[A * spg + i];
            float below = -INFINITY;
            if (st->ordered) {
                /* Class 2 needs u[sa] - u[sb] < load[A] - load[B] in float32
                 * (else the change is not negative), which bounds u[sb] the
                 * same way with load[A] in place of T; its margin covers
                 * the rounding of both differences. */
                const double t = st->target, la_d = load_a, ua_d = ua_s;
                const double floor =
                    pass == 0
                        ? ua_d - (t - lightest) - 1e-6 * (t + la_d + ua_d) - 1e-37
                        : ua_d - (la_d - lightest) -
                              1e-6 * (fabs(la_d) + fabs(lightest) + fabs(ua_d)) - 1e-37;
                /* A float at or below the bound (its rounding is within
                 * the extra margin), so the window only grows; a NaN bound
                 * bounds nothing. */
                if (floor > -INFINITY)
                    below = (float)(floor - 1e-6 * fabs(floor));
            }
            below_of[i] = below;
        }
        for (int64_t i = 0; i < spg; i++) {
            const int64_t sa = A * spg + i;
            const float ua_s = st->u[sa], below = below_of[i];
            /* Sorted by bucket, the slots lighter than sa end with sa's
             * bucket, at or after sa's own place. */
            const int64_t end = st->ordered ? s->order_end[s->order_pos[sa]] : dn;
            const __m512 vbelow = _mm512_set1_ps(below);
            const uint32_t below_bucket = load_bucket(below);
            const __m512 ua = _mm512_set1_ps(ua_s), a_without = _mm512_set1_ps(load_a - ua_s);
            const __m512i leave = _mm512_set1_epi32(8 - (excess_on_a(st, st->cur[sa]) > 0));
            const __m512i place_a = _mm512_set1_epi32((int)(i * dn));
            const int32_t *away = st->away + (int64_t)row[i] * gd;
            __m512i away_row[AWAY_REGISTERS_MAX];
            const int pairs = (int)((gd + 31) / 32);
            const int in_registers = pairs <= AWAY_REGISTERS_MAX / 2;
            for (int r = 0; in_registers && r < 2 * pairs; r++) {
                const int64_t left = gd - 16 * r;
                const __mmask16 held = left > 0 ? lanes_left(left) : (__mmask16)0;
                away_row[r] = _mm512_maskz_loadu_epi32(held, away + 16 * r);
            }
            /* Sorted, from the heaviest slots down, and the chunk that
             * reaches a bucket below the window's is the last; else in slot
             * order. */
            int stop = 0;
            for (int64_t left = end; left > 0 && !stop;) {
                const int64_t n = left < 16 ? left : 16;
                const int64_t k = st->ordered ? left - n : end - left;
                left -= n;
                const __mmask16 tail = lanes_left(n);
                stop = st->ordered && s->order_bucket[k] < below_bucket;
                const __m512 ub = _mm512_maskz_loadu_ps(tail, tab_u + k);
                const __m512i b_gpu = _mm512_maskz_loadu_epi32(tail, tab_gpu + k);
                __mmask16 m = _mm512_mask_cmpneq_epi32_mask(tail, b_gpu, own);
                m = _mm512_mask_cmp_ps_mask(m, ua, ub, _CMP_GT_OQ);
                m = _mm512_mask_cmp_ps_mask(m, ub, vbelow, _CMP_GE_OQ);
                const __m512 lb = _mm512_maskz_loadu_ps(tail, tab_load + k);
                const __m512 new_b = _mm512_add_ps(_mm512_sub_ps(lb, ub), ua);
                const __mmask16 near = _mm512_cmp_ps_mask(new_b, target, _CMP_LE_OQ);
                __m512i hi, lo;
                if (pass == 0) {
                    m &= near;
                    const __m512 new_a = _mm512_add_ps(a_without, ub);
                    const __mmask16 done = _mm512_cmp_ps_mask(new_a, target, _CMP_LE_OQ);
                    const __m512 value = _mm512_add_ps(
                        _mm512_mask_blend_ps(done, new_a, _mm512_max_ps(new_a, new_b)), zero);
                    const __m512i bits = _mm512_castps_si512(value);
                    lo = _mm512_xor_si512(bits, _mm512_or_si512(_mm512_srai_epi32(bits, 31), sign));
                    hi = _mm512_mask_mov_epi32(_mm512_set1_epi32(16), done, _mm512_setzero_si512());
                } else {
                    m &= (__mmask16)~near;
                    if (!m)
                        continue;
                    const __m512 d = _mm512_sub_ps(ua, ub), gap = _mm512_sub_ps(la, lb);
                    const __m512 change = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), d),
                                                        _mm512_sub_ps(d, gap));
                    m &= _mm512_cmp_ps_mask(change, zero, _CMP_LT_OQ);
                    if (!m)
                        continue;
                    const __m512i bits = _mm512_castps_si512(change);
                    hi = _mm512_xor_si512(bits, _mm512_or_si512(_mm512_srai_epi32(bits, 31), sign));
                    hi = _mm512_xor_si512(hi, sign); /* signed compares below */
                    lo = _mm512_setzero_si512();
                }
                /* The cost: A's expert arriving at B (away >= 0) and leaving
                 * A, B's expert arriving at A, stored plus 8. */
                const __m512i away_b =
                    in_registers ? away_lookup(away_row, pairs, b_gpu)
                                 : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, b_gpu,
                                                               away, 4);
                __m512i cost = _mm512_add_epi32(leave, _mm512_maskz_loadu_epi32(m, tab_arrival + k));
                cost = _mm512_mask_add_epi32(cost, _mm512_cmpge_epi32_mask(away_b, _mm512_setzero_si512()),
                                             cost, one);
                if (pass == 0)
                    hi = _mm512_add_epi32(hi, cost);
                else
                    lo = cost;
                const __m512i slot = st->ordered ? _mm512_maskz_loadu_epi32(m, s->order_slot + k)
                                                 : _mm512_add_epi32(_mm512_set1_epi32((int)k), lane);
                const __m512i place = _mm512_add_epi32(place_a, slot);
                if (packed) {
                    const __m512i upper = _mm512_mask_mov_epi32(
                        _mm512_set1_epi32(-1), m,
                        _mm512_or_si512(_mm512_slli_epi32(hi, 26), _mm512_srli_epi32(lo, 6)));
                    const __m512i lower = _mm512_or_si512(_mm512_slli_epi32(lo, 26), place);
                    best_even = _mm512_min_epu64(best_even, _mm512_unpacklo_epi32(lower, upper));
                    best_odd = _mm512_min_epu64(best_odd, _mm512_unpackhi_epi32(lower, upper));
                    continue;
                }
                const __mmask16 tie = _mm512_cmpeq_epi32_mask(hi, best_hi) &
                                      (_mm512_cmplt_epu32_mask(lo, best_lo) |
                                       (_mm512_cmpeq_epi32_mask(lo, best_lo) &
                                        _mm512_cmplt_epi32_mask(place, best_at)));
                const __mmask16 better = m & (_mm512_cmplt_epi32_mask(hi, best_hi) | tie);
                best_hi = _mm512_mask_mov_epi32(best_hi, better, hi);
                best_lo = _mm512_mask_mov_epi32(best_lo, better, lo);
                best_at = _mm512_mask_mov_epi32(best_at, better, place);
            }
        }
        if (packed) {
            const uint64_t key = _mm512_reduce_min_epu64(_mm512_min_epu64(best_even, best_odd));
            /* A lane with no candidate holds all ones in its upper half. */
            if (key >> 32 != UINT32_MAX) {
                const int64_t at = (int64_t)(key & (PACKED_PLACES_MAX - 1));
                pick[0] = A * spg + at / dn;
                pick[1] = at % dn;
                *cost_out = (int)(key >> 58 & 15) - 8;
                return 1;
            }
            continue;
        }
        /* The lanes' bests by key, then place; a lane that saw no
         * candidate keeps INT32_MAX. */
        __mmask16 w = _mm512_cmpneq_epi32_mask(best_hi, _mm512_set1_epi32(INT32_MAX));
        if (w) {
            const int32_t hi = _mm512_mask_reduce_min_epi32(w, best_hi);
            w = _mm512_mask_cmpeq_epi32_mask(w, best_hi, _mm512_set1_epi32(hi));
            const uint32_t lo = _mm512_mask_reduce_min_epu32(w, best_lo);
            w = _mm512_mask_cmpeq_epi32_mask(w, best_lo, _mm512_set1_epi32((int)lo));
            const int32_t at = _mm512_mask_reduce_min_epi32(w, best_at);
            pick[0] = A * spg + at / dn;
            pick[1] = at % dn;
            *cost_out = (pass == 0 ? hi & 15 : (int)lo) - 8;
            return 1;
        }
    }
    return 0;
}

/* The fewest chunks of 16 pairs of B's slots that the double scan holds in
 * registers: 48 pairs, the 36 of nine slots. */
#define DOUBLE_HELD_CHUNKS 3

/* The double scan's filter for 16 pairs of B's slots (sums db, and B's
 * load less each, b_rest) against one pair of A's (sum da, A's load less
 * it a_without): da > db and a class that can still win. It passes every
 * pair that trade_key finds to be a candidate of a class no worse than the
 * best's, and maybe more, which consider_double then weighs for itself:
 * class 2 needs (2d)(d - gap) < 0, which needs d < gap once d > 0. */
TARGET_AVX512 static inline __mmask16 double_filter(__mmask16 tail, __m512 da, __m512 a_without,
                                                    __m512 db, __m512 b_rest, __m512 gap,
                                                    __m512 target, int best_class)
{
    const __mmask16 m = _mm512_mask_cmp_ps_mask(tail, da, db, _CMP_GT_OQ);
    const __mmask16 near = _mm512_cmp_ps_mask(_mm512_add_ps(b_rest, da), target, _CMP_LE_OQ);
    if (best_class == 0)
        return m & near &
               _mm512_cmp_ps_mask(_mm512_add_ps(a_without, db), target, _CMP_LE_OQ);
    if (best_class == 1)
        return m & near;
    return m & (near | _mm512_cmp_ps_mask(_mm512_sub_ps(da, db), gap, _CMP_LT_OQ));
}

/* best_double with the pairs of B's slots weighed 16 at a time for what
 * needs no cost (double_filter). The pairs that pass go, in order, through
 * the loop's own test and key, so the result is the loop's. A's pairs are
 * summed once for all B; B's pairs, up to DOUBLE_HELD_CHUNKS registers of
 * them, stay in registers while A's pairs go by. */
TARGET_AVX512 int eplb_search_double_avx512(const search_state *st, int64_t A, const int32_t *row,
                                            int64_t pick[4], int *cost_out)
{
    const int64_t spg = st->spg;
    const float *u = st->u, *load = st->load;
    float db_of[DOUBLE_PAIRS_MAX], da_of[DOUBLE_PAIRS_MAX], without_of[DOUBLE_PAIRS_MAX];
    int32_t first_of[DOUBLE_PAIRS_MAX], second_of[DOUBLE_PAIRS_MAX];
    const __m512 target = _mm512_set1_ps(st->target);
    uint64_t best = NO_CANDIDATE;
    int n = 0;
    for (int64_t a1 = 0; a1 < spg; a1++)
        for (int64_t a2 = a1 + 1; a2 < spg; a2++) {
            da_of[n] = u[A * spg + a1] + u[A * spg + a2];
            without_of[n] = load[A] - da_of[n];
            first_of[n] = (int32_t)a1;
            second_of[n++] = (int32_t)a2;
        }
    const int chunks = (n + 15) / 16, held = chunks <= DOUBLE_HELD_CHUNKS;
    /* Held, B's slots (at most 10) fit one register, and each pair's sum
     * takes its two slots from it by the pairs' indexes. */
    __m512i first_held[DOUBLE_HELD_CHUNKS], second_held[DOUBLE_HELD_CHUNKS];
    for (int c = 0; held && c < chunks; c++) {
        const __mmask16 tail = lanes_left(n - 16 * c);
        first_held[c] = _mm512_maskz_loadu_epi32(tail, first_of + 16 * c);
        second_held[c] = _mm512_maskz_loadu_epi32(tail, second_of + 16 * c);
    }
    for (int64_t B = 0; B < st->gpus; B++) {
        if (B == A)
            continue;
        const float gap = load[A] - load[B];
        const __m512 lb = _mm512_set1_ps(load[B]), vgap = _mm512_set1_ps(gap);
        __m512 db_held[DOUBLE_HELD_CHUNKS], rest_held[DOUBLE_HELD_CHUNKS];
        if (held) {
            const __m512 ub = _mm512_maskz_loadu_ps(lanes_left(spg), u + B * spg);
            for (int c = 0; c < chunks; c++) {
                const __mmask16 tail = lanes_left(n - 16 * c);
                db_held[c] = _mm512_maskz_add_ps(tail, _mm512_permutexvar_ps(first_held[c], ub),
                                                 _mm512_permutexvar_ps(second_held[c], ub));
                _mm512_mask_storeu_ps(db_of + 16 * c, tail, db_held[c]);
                rest_held[c] = _mm512_sub_ps(lb, db_held[c]);
            }
        } else {
            for (int j = 0; j < n; j++)
                db_of[j] = u[B * spg + first_of[j]] + u[B * spg + second_of[j]];
        }
        for (int p = 0; p < n; p++) {
            const float da = da_of[p], a_without = without_of[p];
            const __m512 vda = _mm512_set1_ps(da), va_without = _mm512_set1_ps(a_without);
            const int best_class = key_class(best);
            const int64_t a1 = A * spg + first_of[p], a2 = A * spg + second_of[p];
            for (int k = 0; k < n; k += 64) {
                uint64_t live = 0;
                if (held) {
#pragma GCC unroll 3
                    for (int c = 0; c < DOUBLE_HELD_CHUNKS; c++)
                        if (c < chunks)
                            live |= (uint64_t)double_filter(lanes_left(n - 16 * c), vda,
                                                            va_without, db_held[c], rest_held[c],
                                                            vgap, target, best_class)
                                    << (16 * c);
                } else {
                    for (int c = 0; c < 4 && k + 16 * c < n; c++) {
                        const int at = k + 16 * c;
                        const __mmask16 tail = lanes_left(n - at);
                        const __m512 db = _mm512_maskz_loadu_ps(tail, db_of + at);
                        live |= (uint64_t)double_filter(tail, vda, va_without, db,
                                                        _mm512_sub_ps(lb, db), vgap, target,
                                                        best_class)
                                << (16 * c);
                    }
                }
                for (; live; live &= live - 1) {
                    const int j = k + __builtin_ctzll(live);
                    consider_double(st, A, B, row, a_without, gap, da, db_of[j], a1, a2,
                                    B * spg + first_of[j], B * spg + second_of[j], &best, pick);
                }
            }
        }
    }
    *cost_out = key_cost(best);
    return best != NO_CANDIDATE;
}
#endif /* SEARCH_AVX512 */
