/* The refine search's AVX-512 parts (cpu_refine.h): the search of the
 * heaviest GPU's trades without distinct, the positions of the chosen trade,
 * the expanded lists and the load order. Every peak comes from SPEC 10.2's
 * float32 operations in its order (d, then new loads, then the larger), so
 * the trades chosen are those of cpu_refine.c's loops; only the grouping of
 * minima differs, and a minimum without NaN does not depend on it. */
#include "cpu_refine.h"

#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>

/* The first n lanes of sixteen (all when n >= 16). */
EPLB_CPU_TARGET_AVX512 static inline __mmask16 lanes(int32_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* The peaks of the trades giving give_a's sixteen entries for give_b's
 * (SPEC 10.2). `max(x, y)` returns y unless x > y, the spec's conditional. */
EPLB_CPU_TARGET_AVX512 static inline __m512 peaks(__m512 a16, __m512 b16, __m512 give_a,
                                                   __m512 give_b)
{
    const __m512 d = _mm512_sub_ps(give_a, give_b);
    return _mm512_max_ps(_mm512_sub_ps(a16, d), _mm512_add_ps(b16, d));
}

/* The GPUs of the lanes `in` of (loads v, indices ids) that come before a
 * GPU of load l and index g16 in the order by (load, index). */
EPLB_CPU_TARGET_AVX512 static inline int32_t count_before(__m512 v, __m512i ids, __mmask16 in,
                                                          __m512 l, __m512i g16)
{
    const __mmask16 before =
        _mm512_mask_cmp_ps_mask(in, v, l, _CMP_LT_OQ) |
        _mm512_mask_cmplt_epi32_mask(_mm512_mask_cmp_ps_mask(in, v, l, _CMP_EQ_OQ), ids, g16);
    return __builtin_popcount((unsigned)before);
}

/* Moves g, at place `from` of the load order, to place `to` with the load
 * new_load: a block move of the GPUs in between, in place (a library call
 * costs more than the move for so few entries). Ascending chunks when g
 * moves up (each reads past what the previous wrote), descending ones when
 * it moves down. */
EPLB_CPU_TARGET_AVX512 static void shift(refine_scratch *s, int32_t from, int32_t to, int32_t g,
                                         float new_load)
{
    int32_t *by_load = s->by_load;
    float *sorted = s->sorted;
    for (int32_t i = from; i < to; i += 16) {
        const __mmask16 n = lanes(to - i);
        _mm512_mask_storeu_epi32(by_load + i, n, _mm512_maskz_loadu_epi32(n, by_load + i + 1));
        _mm512_mask_storeu_ps(sorted + i, n, _mm512_maskz_loadu_ps(n, sorted + i + 1));
    }
    for (int32_t end = from; end > to; end -= 16) {
        const int32_t start = end - 16 > to ? end - 16 : to;
        const __mmask16 n = lanes(end - start);
        _mm512_mask_storeu_epi32(by_load + start + 1, n,
                                 _mm512_maskz_loadu_epi32(n, by_load + start));
        _mm512_mask_storeu_ps(sorted + start + 1, n, _mm512_maskz_loadu_ps(n, sorted + start));
    }
    by_load[to] = g;
    sorted[to] = new_load;
}

/* Whether GPU g of load l comes before GPU h of load lh by (load, index). */
static inline int comes_before(float l, int32_t g, float lh, int32_t h)
{
    return l < lh || (l == lh && g < h);
}

/* All four places come from one pass over the order as it stands, sixteen
 * GPUs at a time and without branches on the comparisons (their outcomes
 * are unpredictable): where a and b are (the lanes that hold them, counted
 * while not yet found), and how many of the other GPUs come before each
 * with its new load. Then a moves among the others and b as it was, and b
 * to its place among the others and a; one pass, so that no pass reads
 * what the block moves have just written. */
EPLB_CPU_TARGET_AVX512 void eplb_cpu_refine_move_pair_avx512(refine_scratch *s, int32_t a,
                                                             float new_a, int32_t b, float new_b)
{
    const int32_t m = s->m;
    const float old_b = s->load[b];
    const __m512i a16 = _mm512_set1_epi32(a), b16 = _mm512_set1_epi32(b);
    const __m512 new_a16 = _mm512_set1_ps(new_a), new_b16 = _mm512_set1_ps(new_b);
    int32_t from_a = 0, from_b = 0, others_a = 0, others_b = 0;
    /* Past the lanes of a chunk, so that a chunk without a or b counts
     * whole. */
    const uint32_t past = 1u << 16;
    for (int32_t i = 0; i < m; i += 16) {
        const __mmask16 in = lanes(m - i);
        const __m512 v = _mm512_maskz_loadu_ps(in, s->sorted + i);
        const __m512i ids = _mm512_maskz_loadu_epi32(in, s->by_load + i);
        const __mmask16 at_a = in & _mm512_cmpeq_epi32_mask(ids, a16);
        const __mmask16 at_b = in & _mm512_cmpeq_epi32_mask(ids, b16);
        const __mmask16 others = in & (__mmask16)~(at_a | at_b);
        from_a += from_a == i ? __builtin_ctz(at_a | past) : 0;
        from_b += from_b == i ? __builtin_ctz(at_b | past) : 0;
        others_a += count_before(v, ids, others, new_a16, a16);
        others_b += count_before(v, ids, others, new_b16, b16);
    }
    s->load[a] = new_a;
    s->load[b] = new_b;
    const int32_t to_a = others_a + comes_before(old_b, b, new_a, a);
    shift(s, from_a, to_a, a, new_a);
    /* Where a's move left b. */
    int32_t at_b = from_b - (from_a < from_b);
    at_b += to_a <= at_b;
    shift(s, at_b, others_b + comes_before(new_a, a, new_b, b), b, new_b);
}

/* Each GPU's place is the number of GPUs before it by (load, index),
 * counted sixteen at a time: no branch on a comparison of loads, where an
 * insertion sort mispredicts about once a GPU. */
EPLB_CPU_TARGET_AVX512 void eplb_cpu_refine_order_avx512(refine_scratch *s)
{
    const int32_t m = s->m;
    const float *load = s->load;
    const __m512i lane_index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int32_t g = 0; g < m; g++) {
        const __m512 l16 = _mm512_set1_ps(load[g]);
        const __m512i g16 = _mm512_set1_epi32(g);
        int32_t place = 0;
        for (int32_t i = 0; i < m; i += 16) {
            const __mmask16 in = lanes(m - i);
            place += count_before(_mm512_maskz_loadu_ps(in, load + i),
                                  _mm512_add_epi32(lane_index, _mm512_set1_epi32(i)), in, l16, g16);
        }
        s->by_load[place] = g;
        s->sorted[place] = load[g];
    }
}

/* One list of expand_side: out[i*n + j] = list[outer ? i : j] for i, j < n,
 * then pad up to len, with masked stores of sixteen entries. */
EPLB_CPU_TARGET_AVX512 static void tile(float *out, const float *list, int32_t n, int32_t len,
                                        int outer, float pad)
{
    for (int32_t c = 0; c < n; c += 16) {
        const __mmask16 mask = lanes(n - c);
        const __m512 inner = _mm512_maskz_loadu_ps(mask, list + c);
        for (int32_t i = 0; i < n; i++)
            _mm512_mask_storeu_ps(out + (size_t)i * (size_t)n + c, mask,
                                  outer ? _mm512_set1_ps(list[i]) : inner);
    }
    for (int32_t j = n * n; j < len; j++)
        out[j] = pad;
}

EPLB_CPU_TARGET_AVX512 void eplb_cpu_refine_expand_avx512(const refine_scratch *s, float *out,
                                                          const float *singles,
                                                          const float *pair_list, int32_t k,
                                                          int32_t pairs, int outer, float pad)
{
    tile(out, singles, k, s->ones, outer, pad);
    tile(out + s->ones, pair_list, pairs, s->twos, outer, pad);
}

/* Every entry, padding included, is one permute of two vectors: the slot
 * loads, the pad in the lanes past them, and the pair sums (the additions
 * of pair_sums, lane by lane). */
EPLB_CPU_TARGET_AVX512 void eplb_cpu_refine_expand_small_avx512(const refine_scratch *s,
                                                                float *out, const float *t_g,
                                                                int outer)
{
    const int32_t k = s->k, pairs = k * (k - 1) / 2, len = s->ones + s->twos;
    const __m512 slots =
        _mm512_mask_loadu_ps(_mm512_set1_ps(outer ? INFINITY : 0.0f), lanes(k), t_g);
    const __mmask16 in = lanes(pairs);
    const __m512 sums =
        _mm512_add_ps(_mm512_permutexvar_ps(_mm512_maskz_loadu_epi32(in, s->pair_lo), slots),
                      _mm512_permutexvar_ps(_mm512_maskz_loadu_epi32(in, s->pair_hi), slots));
    const int32_t *source = s->list_source + (outer ? len : 0);
    for (int32_t j = 0; j < len; j += 16)
        _mm512_storeu_ps(out + j,
                         _mm512_permutex2var_ps(slots, _mm512_loadu_si512(source + j), sums));
}

/* The pair sums are pair_sums' additions, sixteen lanes at a time, each
 * operand permuted from the slot loads; pads masked in. */
EPLB_CPU_TARGET_AVX512 void eplb_cpu_refine_compact_lists_avx512(const refine_scratch *s,
                                                                 float *singles, float *pair_list,
                                                                 const float *t_g)
{
    const int32_t k = s->k, pairs = k * (k - 1) / 2;
    const __m512 pad = _mm512_set1_ps(-INFINITY);
    const __m512 slots = _mm512_mask_loadu_ps(pad, lanes(k), t_g);
    _mm512_storeu_ps(singles, slots);
    for (int32_t i = 0; i < s->ps; i += 16) {
        const __mmask16 in = i < pairs ? lanes(pairs - i) : 0;
        const __m512 sums =
            _mm512_add_ps(_mm512_permutexvar_ps(_mm512_maskz_loadu_epi32(in, s->pair_lo + i), slots),
                          _mm512_permutexvar_ps(_mm512_maskz_loadu_epi32(in, s->pair_hi + i), slots));
        _mm512_storeu_ps(pair_list + i, _mm512_mask_mov_ps(pad, in, sums));
    }
}

/* The smallest peaks, lane by lane, of A's padded compact list ga (na real
 * entries, a multiple of 16 in all) against a partner's gb (nb real
 * entries, padded to a multiple of 16 with -inf, whose peaks are +inf from
 * either side). Each of A's entries meets the partner's whole vectors; the
 * partner's entries past its last whole vector meet A's whole list instead
 * when that takes fewer vectors (for nine slots a GPU, four pair sums
 * against three vectors of A's rather than all of A's thirty-six against a
 * vector three quarters padding). The trades are the same, only their
 * lanes differ. `min(peak, m)` keeps m when peak is NaN, as the scalar
 * search skips it. */
EPLB_CPU_TARGET_AVX512 static inline __m512 compact_minima(__m512 a16, __m512 b16,
                                                           const float *ga, int32_t na,
                                                           const float *gb, int32_t nb)
{
    const int32_t a_vectors = (na + 15) / 16, whole = nb & ~15, rest = nb - whole;
    const int32_t through = rest * a_vectors < na ? whole : (nb + 15) & ~15;
    __m512 m = _mm512_set1_ps(INFINITY), m2 = m;
    for (int32_t j = 0; j < through; j += 16) {
        const __m512 list = _mm512_loadu_ps(gb + j);
        int32_t i = 0;
        /* Two running minima, so that consecutive steps do not wait on
         * each other. */
        for (; i + 1 < na; i += 2) {
            m = _mm512_min_ps(peaks(a16, b16, _mm512_set1_ps(ga[i]), list), m);
            m2 = _mm512_min_ps(peaks(a16, b16, _mm512_set1_ps(ga[i + 1]), list), m2);
        }
        if (i < na)
            m = _mm512_min_ps(peaks(a16, b16, _mm512_set1_ps(ga[i]), list), m);
    }
    for (int32_t j = through; j < nb; j++) {
        const __m512 entry = _mm512_set1_ps(gb[j]);
        for (int32_t v = 0; v < a_vectors; v++)
            m = _mm512_min_ps(peaks(a16, b16, _mm512_loadu_ps(ga + 16 * v), entry), m);
    }
    return _mm512_min_ps(m2, m);
}

/* The smallest peaks, lane by lane, of count entries of the expanded lists
 * (count a multiple of 16). */
EPLB_CPU_TARGET_AVX512 static inline __m512 expanded_minima(__m512 a16, __m512 b16,
                                                            const float *give_a,
                                                            const float *give_b, int32_t count)
{
    __m512 m = _mm512_set1_ps(INFINITY);
    for (int32_t j = 0; j < count; j += 16)
        m = _mm512_min_ps(peaks(a16, b16, _mm512_loadu_ps(give_a + j), _mm512_loadu_ps(give_b + j)),
                          m);
    return m;
}

/* Folds a partner's lane minima p (never NaN) into the running lane minima
 * m, and into who the lowest partner reaching each lane's minimum: a lower
 * peak takes the lane, an equal one from a lower partner takes its partner.
 * m becomes min(p, m) as _mm512_min_ps gives it, so its bits do not depend
 * on who. */
EPLB_CPU_TARGET_AVX512 static inline void fold(__m512 p, __m512i b16, __m512 *m, __m512i *who)
{
    const __mmask16 lower = _mm512_cmp_ps_mask(p, *m, _CMP_LT_OQ);
    const __mmask16 tie =
        _mm512_mask_cmplt_epi32_mask(_mm512_cmp_ps_mask(p, *m, _CMP_EQ_OQ), b16, *who);
    *m = _mm512_mask_mov_ps(*m, lower, p);
    *who = _mm512_mask_mov_epi32(*who, lower | tie, b16);
}

/* The lowest partner reaching `best`, the smallest of the lane minima m:
 * each lane at best holds in who its lowest partner at best. */
EPLB_CPU_TARGET_AVX512 static inline int32_t partner_at(__m512 m, __m512i who, float best)
{
    return _mm512_mask_reduce_min_epi32(_mm512_cmp_ps_mask(m, _mm512_set1_ps(best), _CMP_EQ_OQ),
                                        who);
}

/* For the sixteen partners from sorted[0] on (count of them real), a
 * bound each for the search (cpu_refine.h's half-sum bound): f, the float
 * at or below (a_load + b_load) / 2 in doubles lowered by 2^-40 for their
 * rounding, then the float under f. A lane below it has its next float
 * at most that, below the half: the partner is out of reach of that
 * lane's peak. A floor of zero gives NaN, which no lane lies below: the
 * partner is weighed, which is always allowed. */
EPLB_CPU_TARGET_AVX512 static inline void partner_bounds(float a_load, const float *sorted,
                                                         int32_t count, float *bounds)
{
    const __m512 loads = _mm512_maskz_loadu_ps(lanes(count), sorted);
    const __m512d half = _mm512_set1_pd(0.5), margin = _mm512_set1_pd(1.0 - 0x1p-40);
    const __m512d half_a = _mm512_set1_pd(0.5 * (double)a_load);
    /* The two halves of the loads, by constant index (clang takes no other). */
    const __m256 parts[2] = {
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(loads), 0)),
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(loads), 1))};
    __m256 floors[2];
    for (int h = 0; h < 2; h++) {
        const __m512d floor_b = _mm512_mul_pd(
            _mm512_add_pd(half_a, _mm512_mul_pd(half, _mm512_cvtps_pd(parts[h]))), margin);
        floors[h] = _mm512_cvt_roundpd_ps(floor_b, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    }
    const __m512i bits = _mm512_castpd_si512(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(floors[0])), _mm256_castps_pd(floors[1]), 1));
    _mm512_storeu_ps(bounds, _mm512_castsi512_ps(_mm512_sub_epi32(bits, _mm512_set1_epi32(1))));
}

/* The search of cpu_refine.c's search_partners with the work per partner
 * cut to its vector pass: running lane minima of each kind over all
 * partners, with the lowest partner reaching each lane's minimum, replace
 * the per-partner reductions and comparisons; once the partners are
 * weighed, each kind's minimum and its lowest partner come from one
 * reduction of the lanes.
 *
 * Partners go from the lightest up and stop at the half-sum bound
 * (cpu_refine.h), tested without a reduction: the partner is out of reach
 * when some lane of either kind lies below its partner_bounds. This may
 * weigh a partner that an exact test would pass over by a float's width,
 * which cannot change the minima, since its peaks lie above the best. A
 * partner passed over has every peak above
 * the best of both kinds, so neither kind's chosen trade can be its: when
 * two-for-two trades reach the lower minimum, a one-for-one trade of such a
 * partner could lie below the weighed ones', but above that minimum, and it
 * is not chosen either. */
EPLB_CPU_TARGET_AVX512 static inline __attribute__((always_inline)) void
search(refine_scratch *s, int compact, int32_t a, float a_load, refine_best *one, refine_best *two)
{
    const int32_t m = s->m, k = s->k, pairs = k * (k - 1) / 2;
    const int32_t ones = s->ones, per = s->ones + s->twos;
    const int32_t *by_load = s->by_load;
    const float *sorted = s->sorted;
    const __m512 a16 = _mm512_set1_ps(a_load);
    __m512 m1 = _mm512_set1_ps(INFINITY), m2 = m1;
    __m512i who1 = _mm512_set1_epi32(INT32_MAX), who2 = who1;
    __m512 both = m1; /* the lane minima of both kinds */
    float bounds[16]; /* partner_bounds of the partners i & ~15 on */
    for (int32_t i = 0; i < m; i++) {
        if ((i & 15) == 0)
            partner_bounds(a_load, sorted + i, m - i, bounds);
        const int32_t b = by_load[i];
        if (b == a)
            continue;
        if (_mm512_cmp_ps_mask(both, _mm512_set1_ps(bounds[i & 15]), _CMP_LT_OQ))
            break;
        const float b_load = sorted[i];
        const __m512 b16 = _mm512_set1_ps(b_load);
        __m512 p1, p2;
        if (compact) {
            p1 = compact_minima(a16, b16, s->singles + (size_t)a * (size_t)s->ks, k,
                                s->singles + (size_t)b * (size_t)s->ks, k);
            p2 = compact_minima(a16, b16, s->pair_list + (size_t)a * (size_t)s->ps, pairs,
                                s->pair_list + (size_t)b * (size_t)s->ps, pairs);
        } else {
            const float *give_b = s->give_b + (size_t)b * (size_t)per;
            p1 = expanded_minima(a16, b16, s->give_a, give_b, ones);
            p2 = expanded_minima(a16, b16, s->give_a + ones, give_b + ones, s->twos);
        }
        const __m512i partner = _mm512_set1_epi32(b);
        fold(p1, partner, &m1, &who1);
        fold(p2, partner, &m2, &who2);
        both = _mm512_min_ps(m1, m2);
    }
    const float best1 = _mm512_reduce_min_ps(m1), best2 = _mm512_reduce_min_ps(m2);
    /* Only the kind that trades needs its partner (the other keeps b -1):
     * two-for-two when its peak is lower, one-for-one winning ties. A +inf
     * minimum means no finite peak. */
    if (best2 < best1)
        *two = (refine_best){best2, partner_at(m2, who2, best2), -1, -1};
    else if (best1 < INFINITY)
        *one = (refine_best){best1, partner_at(m1, who1, best1), -1, -1};
}

EPLB_CPU_TARGET_AVX512 static void search_compact(refine_scratch *s, int32_t a, float a_load,
                                                  refine_best *one, refine_best *two)
{
    search(s, 1, a, a_load, one, two);
}

EPLB_CPU_TARGET_AVX512 static void search_expanded(refine_scratch *s, int32_t a, float a_load,
                                                   refine_best *one, refine_best *two)
{
    search(s, 0, a, a_load, one, two);
}

void eplb_cpu_refine_search_avx512(refine_scratch *s, int32_t a, float a_load, refine_best *one,
                                   refine_best *two)
{
    if (s->ps > 0)
        search_compact(s, a, a_load, one, two);
    else
        search_expanded(s, a, a_load, one, two);
}

/* The first of the expanded lists' count trades (a multiple of 16) whose
 * peak is `peak`; the padding's peaks are +inf, never the finite peak
 * sought. */
EPLB_CPU_TARGET_AVX512 static int32_t first_in_lists(float a_load, float b_load,
                                                     const float *give_a, const float *give_b,
                                                     int32_t count, float peak)
{
    const __m512 a16 = _mm512_set1_ps(a_load), b16 = _mm512_set1_ps(b_load);
    const __m512 want = _mm512_set1_ps(peak);
    /* Four vectors' hits at a time, so that where the trade lies among
     * them costs no mispredicted branch. */
    for (int32_t j = 0; j < count; j += 64) {
        uint64_t hits = 0;
        for (int32_t v = 0; v < 4 && j + 16 * v < count; v++) {
            const float *ga = give_a + j + 16 * v, *gb = give_b + j + 16 * v;
            hits |= (uint64_t)_mm512_cmp_ps_mask(
                        peaks(a16, b16, _mm512_loadu_ps(ga), _mm512_loadu_ps(gb)), want,
                        _CMP_EQ_OQ)
                    << (16 * v);
        }
        if (hits)
            return j + __builtin_ctzll(hits);
    }
    return -1;
}

/* The first trade, in trade order, of A's entries ga[0..na-1] (outer) with
 * a partner's padded compact list gb (nb entries, a multiple of 16) whose
 * peak is `peak`, as i * nb + j. */
EPLB_CPU_TARGET_AVX512 static int32_t first_in_compact(float a_load, float b_load,
                                                       const float *ga, int32_t na,
                                                       const float *gb, int32_t nb, float peak)
{
    const __m512 a16 = _mm512_set1_ps(a_load), b16 = _mm512_set1_ps(b_load);
    const __m512 want = _mm512_set1_ps(peak);
    /* Up to four vectors' hits at a time, as first_in_lists. */
    for (int32_t i = 0; i < na; i++) {
        const __m512 entry = _mm512_set1_ps(ga[i]);
        for (int32_t j = 0; j < nb; j += 64) {
            uint64_t hits = 0;
            for (int32_t v = 0; v < 4 && j + 16 * v < nb; v++)
                hits |= (uint64_t)_mm512_cmp_ps_mask(
                            peaks(a16, b16, entry, _mm512_loadu_ps(gb + j + 16 * v)), want,
                            _CMP_EQ_OQ)
                        << (16 * v);
            if (hits)
                return i * nb + j + __builtin_ctzll(hits);
        }
    }
    return -1;
}

EPLB_CPU_TARGET_AVX512 void eplb_cpu_refine_positions_avx512(const refine_scratch *s, int32_t a,
                                                             float a_load, int two_for_two,
                                                             refine_best *trade)
{
    const int32_t b = trade->b, k = s->k, pairs = k * (k - 1) / 2;
    const float b_load = s->load[b];
    int32_t j, width;
    if (s->ps > 0) {
        width = two_for_two ? s->ps : s->ks;
        j = two_for_two ? first_in_compact(a_load, b_load, s->pair_list + (size_t)a * (size_t)s->ps,
                                           pairs, s->pair_list + (size_t)b * (size_t)s->ps, s->ps,
                                           trade->peak)
                        : first_in_compact(a_load, b_load, s->t + a * k, k,
                                           s->singles + (size_t)b * (size_t)s->ks, s->ks,
                                           trade->peak);
    } else {
        const float *give_b = s->give_b + (size_t)b * (size_t)(s->ones + s->twos);
        width = two_for_two ? pairs : k;
        j = two_for_two ? first_in_lists(a_load, b_load, s->give_a + s->ones, give_b + s->ones,
                                         s->twos, trade->peak)
                        : first_in_lists(a_load, b_load, s->give_a, give_b, s->ones, trade->peak);
    }
    trade->a_pos = j / width;
    trade->b_pos = j % width;
}
#endif
