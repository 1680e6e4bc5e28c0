/* The refine search (SPEC 10) on the cpu: after the packing of slots to GPUs,
 * the heaviest GPU of each row repeatedly makes the one-for-one or two-for-two
 * slot trade with another GPU of the row that leaves the larger of the two
 * loads lowest. With distinct (SPEC 11.6) only trades that leave no GPU
 * holding an expert twice count, and with refine 0 the same search restores
 * the rows that the distinct stage changed (SPEC 11.5). A row per OpenMP
 * iteration; rows are independent, so the plan does not depend on the thread
 * count.
 *
 * The search works on the row's placement as GPU-major slot lists (content)
 * and writes it back to slot_pack.pack_of and rank_of, which assemble reads.
 * Where the machine and EPLB_CPU_ISA allow AVX-512, the search without
 * distinct, the list building and the load order run in
 * cpu_refine_avx512.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_refine.h"
#include "cpu_runtime.h"
#include "cpu_stages.h"

#if EPLB_CPU_SSE2
#include <emmintrin.h>
#endif
#if EPLB_CPU_X86_DISPATCH
#include <immintrin.h>
#endif

/* Whether the expanded lists of a row's GPUs, k^2 + (k(k-1)/2)^2 entries
 * each, fit in a megabyte of cache; larger rows use the plain nested loops. */
static int expanded_fits(int32_t k, int32_t m)
{
    if (k > 32)
        return 0;
    const int64_t pairs = (int64_t)k * (k - 1) / 2;
    return ((int64_t)k * k + pairs * pairs + 8) * m <= ((int64_t)1 << 18);
}

/* Whether the compact search runs: it needs AVX-512 and no distinct (whose
 * allowed trades the expanded lists scan), and beats the expanded lists from
 * seven slots a GPU, where rebuilding a GPU's k^2 + (k(k-1)/2)^2 entries
 * after each trade costs more than weighing its pair sums against a
 * partner's sixteen at a time. Its lists take k + k(k-1)/2 floats a GPU
 * (padded), within a fixed bound a thread. */
static int compact_fits(int32_t k, int32_t m, int isa, int distinct)
{
    if (isa < EPLB_CPU_ISA_AVX512 || distinct || k < 7 || k > 256)
        return 0;
    const int64_t per_gpu = (int64_t)k + 16 + (int64_t)k * (k - 1) / 2 + 16;
    return per_gpu * m <= ((int64_t)1 << 22);
}

static void pair_sums(const float *t_gpu, const refine_scratch *s, int32_t pairs, float *out)
{
    for (int32_t i = 0; i < pairs; i++)
        out[i] = t_gpu[s->pair_lo[i]] + t_gpu[s->pair_hi[i]];
}

/* Whether GPU g, giving its positions give[0..count-1] away and taking
 * experts take[0..count-1], still holds no expert twice. Every GPU holds
 * each expert at most once when the search starts (the repair saw to it)
 * and after each kept trade, and the taken experts come from one such GPU,
 * so only a kept expert equal to a taken one could repeat. */
static int stays_distinct(const int32_t *items_g, int32_t k, const int32_t *give,
                          const int32_t *take, int32_t count)
{
    for (int32_t r = 0; r < k; r++) {
        if (r == give[0] || (count == 2 && r == give[1]))
            continue;
        if (items_g[r] == take[0] || (count == 2 && items_g[r] == take[1]))
            return 0;
    }
    return 1;
}

/* SPEC 11.6: whether the trade of A's positions (a_pos: a position, or a
 * pair index when two_for_two) with B's leaves neither GPU holding an expert
 * twice. Always 1 without distinct. */
static int trade_allowed(const refine_scratch *s, int32_t k, int32_t a, int32_t b, int32_t a_pos,
                         int32_t b_pos, int two_for_two)
{
    if (!s->item_at)
        return 1;
    const int32_t count = two_for_two ? 2 : 1;
    const int32_t give_a[2] = {two_for_two ? s->pair_lo[a_pos] : a_pos,
                               two_for_two ? s->pair_hi[a_pos] : 0};
    const int32_t give_b[2] = {two_for_two ? s->pair_lo[b_pos] : b_pos,
                               two_for_two ? s->pair_hi[b_pos] : 0};
    const int32_t *items_a = s->item_at + a * k, *items_b = s->item_at + b * k;
    const int32_t from_a[2] = {items_a[give_a[0]], items_a[give_a[1]]};
    const int32_t from_b[2] = {items_b[give_b[0]], items_b[give_b[1]]};
    return stays_distinct(items_a, k, give_a, from_b, count) &&
           stays_distinct(items_b, k, give_b, from_a, count);
}

/* Weighs every trade that gives `give_a[i]` for `give_b[j]` (i, j in
 * row-major order) and keeps the smallest finite peak in best; equal peaks go
 * to the lower B, then to the earlier (i, j). A peak is finite only when both
 * new loads are: an infinite or NaN d makes new_b infinite or NaN, and the
 * conditional below carries that into the peak, so `peak < best` is false
 * for it (and best->b starts at -1, so no tie is taken either). */
static void weigh(const refine_scratch *s, int32_t k, int32_t a, float a_load, float b_load,
                  int32_t b, const float *give_a, int32_t na, const float *give_b, int32_t nb,
                  int two_for_two, refine_best *best)
{
    for (int32_t i = 0; i < na; i++) {
        const float ga = give_a[i];
        for (int32_t j = 0; j < nb; j++) {
            const float d = ga - give_b[j];
            const float new_a = a_load - d;
            const float new_b = b_load + d;
            const float peak = new_a > new_b ? new_a : new_b;
            if ((peak < best->peak || (peak == best->peak && b < best->b)) &&
                trade_allowed(s, k, a, b, i, j, two_for_two)) {
                best->peak = peak;
                best->b = b;
                best->a_pos = i;
                best->b_pos = j;
            }
        }
    }
}

/* Exchanges the slots at positions x of GPU a and y of GPU b (expert, replica
 * rank and load move together); applied twice, it undoes itself. */
static void exchange(refine_scratch *s, int32_t k, int32_t a, int32_t x, int32_t b, int32_t y)
{
    const int32_t i = a * k + x, j = b * k + y;
    const int32_t q = s->content[i];
    s->content[i] = s->content[j];
    s->content[j] = q;
    const float t = s->t[i];
    s->t[i] = s->t[j];
    s->t[j] = t;
    if (s->item_at) {
        const int32_t e = s->item_at[i];
        s->item_at[i] = s->item_at[j];
        s->item_at[j] = e;
    }
}

static void apply_trade(refine_scratch *s, int32_t k, int32_t a, const refine_best *trade,
                        int two_for_two)
{
    if (!two_for_two) {
        exchange(s, k, a, trade->a_pos, trade->b, trade->b_pos);
        return;
    }
    exchange(s, k, a, s->pair_lo[trade->a_pos], trade->b, s->pair_lo[trade->b_pos]);
    exchange(s, k, a, s->pair_hi[trade->a_pos], trade->b, s->pair_hi[trade->b_pos]);
}

/* refine_scratch's list_source for k slots a GPU: in each side's trade
 * order, the position (one-for-one) or 16 + the pair (two-for-two) that
 * expand_side takes each entry from, and where it pads the last lane of the
 * slot loads' vector, past the last slot, which holds the pad. NULL when
 * out of memory. */
static int32_t *list_sources(int32_t k, int32_t ones, int32_t twos)
{
    const int32_t pairs = k * (k - 1) / 2, len = ones + twos;
    int32_t *source = malloc(2 * (size_t)len * sizeof *source);
    if (!source)
        return NULL;
    for (int outer = 0; outer < 2; outer++) {
        int32_t *side = source + (outer ? len : 0);
        for (int32_t e = 0; e < len; e++)
            side[e] = 15;
        for (int32_t e = 0; e < k * k; e++)
            side[e] = outer ? e / k : e % k;
        for (int32_t e = 0; e < pairs * pairs; e++)
            side[ones + e] = 16 + (outer ? e / pairs : e % pairs);
    }
    return source;
}

/* n rounded up to a multiple of the power of two `to`. */
static int32_t round_up(int32_t n, int32_t to) { return (n + to - 1) & ~(to - 1); }

/* Whether GPU g comes before GPU h in by_load's order: (load, index). */
static int lighter(const float *load, int32_t g, int32_t h)
{
    return load[g] < load[h] || (load[g] == load[h] && g < h);
}

/* Insertion sort of by_load by (load, index), and each GPU's place in it. */
static void sort_by_load(int32_t *by_load, int32_t *place, const float *load, int32_t m)
{
    for (int32_t i = 1; i < m; i++) {
        const int32_t g = by_load[i];
        int32_t j = i;
        while (j > 0 && lighter(load, g, by_load[j - 1])) {
            by_load[j] = by_load[j - 1];
            j--;
        }
        by_load[j] = g;
    }
    for (int32_t i = 0; i < m; i++)
        place[by_load[i]] = i;
}

/* by_load, sorted and (below AVX-512) place from the loads. */
static void order_by_load(refine_scratch *s)
{
#if EPLB_CPU_X86_DISPATCH
    if (s->isa >= EPLB_CPU_ISA_AVX512) {
        eplb_cpu_refine_order_avx512(s);
        return;
    }
#endif
    for (int32_t g = 0; g < s->m; g++)
        s->by_load[g] = g;
    sort_by_load(s->by_load, s->place, s->load, s->m);
    for (int32_t i = 0; i < s->m; i++)
        s->sorted[i] = s->load[s->by_load[i]];
}

/* Sets GPU g's load to new_load and moves g to its place in by_load (and
 * its load in sorted, which follows by_load), every other GPU being in
 * order: a trade moves only its two GPUs, often a few places, so stepping
 * costs less than searching. */
static void move_to_place(refine_scratch *s, int32_t g, float new_load)
{
    int32_t *by_load = s->by_load, *place = s->place;
    float *sorted = s->sorted;
    const float *load = s->load;
    const int32_t m = s->m;
    s->load[g] = new_load;
    int32_t i = place[g];
    for (; i > 0 && lighter(load, g, by_load[i - 1]); i--) {
        by_load[i] = by_load[i - 1];
        sorted[i] = sorted[i - 1];
        place[by_load[i]] = i;
    }
    for (; i + 1 < m && lighter(load, by_load[i + 1], g); i++) {
        by_load[i] = by_load[i + 1];
        sorted[i] = sorted[i + 1];
        place[by_load[i]] = i;
    }
    by_load[i] = g;
    sorted[i] = new_load;
    place[g] = i;
}

/* One side of every trade with one partner, in trade order: one-for-one
 * (sa, sb) at sa*k + sb, two-for-two (pair i, pair j) at ones + i*pairs + j.
 * A's side (outer) repeats each of its entries along the partner's; the
 * partner's side repeats its whole list. The padding (+inf given by A for 0)
 * gives an infinite peak, which never wins. */
static void expand_side(const refine_scratch *s, float *out, const float *singles,
                        const float *pair_list, int32_t k, int32_t pairs, int outer, float pad)
{
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j < k; j++)
            *out++ = singles[outer ? i : j];
    for (int32_t j = k * k; j < s->ones; j++)
        *out++ = pad;
    for (int32_t i = 0; i < pairs; i++)
        for (int32_t j = 0; j < pairs; j++)
            *out++ = pair_list[outer ? i : j];
    for (int32_t j = pairs * pairs; j < s->twos; j++)
        *out++ = pad;
}

/* expand_side at the scratch's vector level. */
static void expand(const refine_scratch *s, float *out, const float *singles,
                   const float *pair_list, int32_t k, int32_t pairs, int outer, float pad)
{
#if EPLB_CPU_X86_DISPATCH
    if (s->isa >= EPLB_CPU_ISA_AVX512) {
        eplb_cpu_refine_expand_avx512(s, out, singles, pair_list, k, pairs, outer, pad);
        return;
    }
#endif
    expand_side(s, out, singles, pair_list, k, pairs, outer, pad);
}

static void expand_a(refine_scratch *s, const float *t_a, int32_t k, int32_t pairs)
{
#if EPLB_CPU_X86_DISPATCH
    if (s->list_source) {
        eplb_cpu_refine_expand_small_avx512(s, s->give_a, t_a, 1);
        return;
    }
#endif
    pair_sums(t_a, s, pairs, s->a_pairs);
    expand(s, s->give_a, t_a, s->a_pairs, k, pairs, 1, INFINITY);
}

/* GPU g's side of every trade, matching expand_a's order. */
static void expand_b(refine_scratch *s, int32_t g, int32_t k, int32_t pairs)
{
    const float *t_b = s->t + g * k;
#if EPLB_CPU_X86_DISPATCH
    if (s->list_source) {
        eplb_cpu_refine_expand_small_avx512(s, s->give_b + (size_t)g * (size_t)(s->ones + s->twos),
                                            t_b, 0);
        return;
    }
#endif
    pair_sums(t_b, s, pairs, s->b_pairs);
    expand(s, s->give_b + (size_t)g * (size_t)(s->ones + s->twos), t_b, s->b_pairs, k, pairs, 0,
           0.0f);
}

/* GPU g's lists for the compact search: its slot loads and pair sums
 * (pair_sums' additions), each padded with -inf to its vector length. */
static void compact_lists(refine_scratch *s, int32_t g, int32_t k, int32_t pairs)
{
    const float *t_g = s->t + g * k;
    float *singles = s->singles + (size_t)g * (size_t)s->ks;
    float *pair_list = s->pair_list + (size_t)g * (size_t)s->ps;
#if EPLB_CPU_X86_DISPATCH
    if (k <= 16) {
        eplb_cpu_refine_compact_lists_avx512(s, singles, pair_list, t_g);
        return;
    }
#endif
    memcpy(singles, t_g, (size_t)k * sizeof *singles);
    for (int32_t r = k; r < s->ks; r++)
        singles[r] = -INFINITY;
    pair_sums(t_g, s, pairs, pair_list);
    for (int32_t i = pairs; i < s->ps; i++)
        pair_list[i] = -INFINITY;
}

/* The peak of the trade that gives ga for gb (SPEC 10.2), as the vector
 * searches below compute it: their max instruction returns its second
 * operand unless the first is greater, which is this conditional. */
static inline float trade_peak(float a_load, float b_load, float ga, float gb)
{
    const float d = ga - gb;
    const float new_a = a_load - d, new_b = b_load + d;
    return new_a > new_b ? new_a : new_b;
}

/* The smallest finite peaks of partner b's one-for-one trades (the first
 * `ones` entries of the lists, a multiple of 8) and of its two-for-two trades
 * (the next `twos`), +inf where there is none, in one pass. `min(peak, m)`
 * keeps m when peak is NaN, as the scalar search skips it; which trade
 * reached the minimum is found again only for a partner that improves on
 * the best (first_trade_with_peak), so the pass stores nothing. */
static void partner_minima(float a_load, float b_load, const float *give_a, const float *give_b,
                           int32_t ones, int32_t twos, float *one, float *two)
{
#if EPLB_CPU_SSE2
    const __m128 a4 = _mm_set1_ps(a_load), b4 = _mm_set1_ps(b_load);
    float minima[2];
    for (int kind = 0; kind < 2; kind++) {
        const int32_t first = kind ? ones : 0, count = kind ? twos : ones;
        /* Two running minima, so that consecutive steps do not wait on each
         * other; the minimum does not depend on how the peaks are grouped. */
        __m128 m = _mm_set1_ps(INFINITY), m2 = m;
        for (int32_t j = first; j < first + count; j += 8) {
            const __m128 d = _mm_sub_ps(_mm_loadu_ps(give_a + j), _mm_loadu_ps(give_b + j));
            const __m128 d2 = _mm_sub_ps(_mm_loadu_ps(give_a + j + 4), _mm_loadu_ps(give_b + j + 4));
            m = _mm_min_ps(_mm_max_ps(_mm_sub_ps(a4, d), _mm_add_ps(b4, d)), m);
            m2 = _mm_min_ps(_mm_max_ps(_mm_sub_ps(a4, d2), _mm_add_ps(b4, d2)), m2);
        }
        m = _mm_min_ps(m2, m);
        m = _mm_min_ps(m, _mm_movehl_ps(m, m));
        m = _mm_min_ps(m, _mm_shuffle_ps(m, m, 1));
        minima[kind] = _mm_cvtss_f32(m);
    }
    *one = minima[0];
    *two = minima[1];
#else
    float minima[2] = {INFINITY, INFINITY};
    for (int32_t j = 0; j < ones + twos; j++) {
        const float peak = trade_peak(a_load, b_load, give_a[j], give_b[j]);
        float *m = &minima[j >= ones];
        *m = peak < *m ? peak : *m;
    }
    *one = minima[0];
    *two = minima[1];
#endif
}

#if EPLB_CPU_X86_DISPATCH
/* partner_minima eight trades at a time; the same operations, so the same
 * bits (a minimum without NaN does not depend on the lanes' grouping). */
EPLB_CPU_TARGET_AVX2 static inline void partner_minima_avx2(float a_load, float b_load,
                                                     const float *give_a, const float *give_b,
                                                     int32_t ones, int32_t twos, float *one,
                                                     float *two)
{
    const __m256 a8 = _mm256_set1_ps(a_load), b8 = _mm256_set1_ps(b_load);
    __m256 m1 = _mm256_set1_ps(INFINITY), m2 = m1;
    for (int32_t j = 0; j < ones; j += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(give_a + j), _mm256_loadu_ps(give_b + j));
        m1 = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(a8, d), _mm256_add_ps(b8, d)), m1);
    }
    for (int32_t j = ones; j < ones + twos; j += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(give_a + j), _mm256_loadu_ps(give_b + j));
        m2 = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(a8, d), _mm256_add_ps(b8, d)), m2);
    }
    /* Both lane sets reduced side by side: ones in the low half, twos high. */
    const __m256 lo = _mm256_permute2f128_ps(m1, m2, 0x20), hi = _mm256_permute2f128_ps(m1, m2, 0x31);
    __m256 m = _mm256_min_ps(lo, hi);
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0x4e));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0xb1));
    *one = _mm256_cvtss_f32(m);
    *two = _mm_cvtss_f32(_mm256_extractf128_ps(m, 1));
}
#endif

/* Both minima of partner_minima, eight trades at a time when avx2 (a
 * constant where search_partners is instantiated). */
static inline __attribute__((always_inline)) void
partner_minima_of(const refine_scratch *s, int avx2, float a_load, float b_load,
                  const float *give_b, float *one, float *two)
{
#if EPLB_CPU_X86_DISPATCH
    if (avx2) {
        partner_minima_avx2(a_load, b_load, s->give_a, give_b, s->ones, s->twos, one, two);
        return;
    }
#else
    (void)avx2;
#endif
    partner_minima(a_load, b_load, s->give_a, give_b, s->ones, s->twos, one, two);
}

/* The first of count trades whose peak is `peak`, a finite one that
 * partner_minima found among them. */
static int32_t first_trade_with_peak(float a_load, float b_load, const float *give_a,
                                     const float *give_b, int32_t count, float peak)
{
    for (int32_t j = 0; j < count; j++)
        if (trade_peak(a_load, b_load, give_a[j], give_b[j]) == peak)
            return j;
    return -1;
}

/* With distinct: the best allowed trade among partner b's count trades of
 * the lists (width: the partner's positions or pairs per row of the list),
 * scanned in trade order, into best when it beats it. */
static void take_allowed(const refine_scratch *s, float a_load, float b_load, const float *give_a,
                         const float *give_b, int32_t count, int32_t k, int32_t a, int32_t b,
                         int32_t width, int two_for_two, refine_best *best)
{
    for (int32_t j = 0; j < count; j++) {
        const float peak = trade_peak(a_load, b_load, give_a[j], give_b[j]);
        if ((peak < best->peak || (peak == best->peak && b < best->b)) &&
            trade_allowed(s, k, a, b, j / width, j % width, two_for_two))
            *best = (refine_best){peak, b, j / width, j % width};
    }
}

/* Weighs every trade with partner b through the expanded lists. Without
 * distinct only the best peak and its partner are kept (a_pos -1): the
 * position of the trade is that partner's first with the peak, which
 * trade_positions finds once the search is over. With distinct a partner
 * that can beat (or tie from a lower index) the best so far is scanned
 * again for its best trade among those SPEC 11.6 allows. */
static inline __attribute__((always_inline)) void
weigh_expanded(refine_scratch *s, int avx2, int32_t a, float a_load, float b_load, int32_t b,
               int32_t k, int32_t pairs, refine_best *one, refine_best *two)
{
    const float *give_b = s->give_b + (size_t)b * (size_t)(s->ones + s->twos);
    float p1, p2;
    partner_minima_of(s, avx2, a_load, b_load, give_b, &p1, &p2);
    if (p1 < one->peak || (p1 == one->peak && b < one->b)) {
        if (s->item_at) {
            take_allowed(s, a_load, b_load, s->give_a, give_b, k * k, k, a, b, k, 0, one);
        } else {
            *one = (refine_best){p1, b, -1, -1};
        }
    }
    if (pairs > 0 && (p2 < two->peak || (p2 == two->peak && b < two->b))) {
        const float *give_a2 = s->give_a + s->ones, *give_b2 = give_b + s->ones;
        if (s->item_at) {
            take_allowed(s, a_load, b_load, give_a2, give_b2, pairs * pairs, k, a, b, pairs, 1,
                         two);
        } else {
            *two = (refine_best){p2, b, -1, -1};
        }
    }
}

/* The positions of the expanded search's chosen trade (a_pos -1: not yet
 * known): the first trade with its peak among its partner's, in trade order.
 * The partner's load is the one the search used: nothing changed since. */
static void trade_positions(const refine_scratch *s, float a_load, int32_t k, int32_t pairs,
                            int two_for_two, refine_best *trade)
{
    if (trade->a_pos >= 0)
        return;
    const float *give_b = s->give_b + (size_t)trade->b * (size_t)(s->ones + s->twos);
    const float b_load = s->load[trade->b];
    if (!two_for_two) {
        const int32_t j = first_trade_with_peak(a_load, b_load, s->give_a, give_b, k * k,
                                                trade->peak);
        trade->a_pos = j / k;
        trade->b_pos = j % k;
    } else {
        const int32_t j = first_trade_with_peak(a_load, b_load, s->give_a + s->ones,
                                                give_b + s->ones, pairs * pairs, trade->peak);
        trade->a_pos = j / pairs;
        trade->b_pos = j % pairs;
    }
}

/* The best one-for-one and two-for-two trades of GPU a (SPEC 10.3 step 2)
 * into one and two, which come in empty. Instantiated twice, so that with
 * avx2 the whole loop is compiled for AVX2 and the vector weighing inlined. */
static inline __attribute__((always_inline)) void
search_partners(refine_scratch *s, int avx2, int32_t m, int32_t k, int32_t a, float a_load,
                const float *t_a, refine_best *one, refine_best *two)
{
    const int32_t pairs = k * (k - 1) / 2;
    const int expanded = s->give_b != NULL;
    /* The best peak so far and the heaviest partner load in reach. */
    float best_peak = INFINITY, reach = INFINITY;
    /* Partners from the lightest up, so that a good peak is known early
     * and the heavier partners can be passed over. Which trade wins does
     * not depend on this order: weigh compares the whole tie order. */
    for (int32_t i = 0; i < m; i++) {
        const int32_t b = s->by_load[i];
        if (b == a)
            continue;
        const float b_load = s->sorted[i];
        if (b_load > reach)
            break;
        if (expanded) {
            weigh_expanded(s, avx2, a, a_load, b_load, b, k, pairs, one, two);
        } else {
            const float *t_b = s->t + b * k;
            weigh(s, k, a, a_load, b_load, b, t_a, k, t_b, k, 0, one);
            if (pairs > 0) {
                pair_sums(t_b, s, pairs, s->b_pairs);
                weigh(s, k, a, a_load, b_load, b, s->a_pairs, pairs, s->b_pairs, pairs, 1, two);
            }
        }
        const float now_best = one->peak < two->peak ? one->peak : two->peak;
        if (now_best != best_peak) {
            best_peak = now_best;
            reach = eplb_cpu_refine_reach_limit(a_load, eplb_cpu_refine_float_above(best_peak));
        }
    }
}

#if EPLB_CPU_X86_DISPATCH
EPLB_CPU_TARGET_AVX2 static void search_partners_avx2(refine_scratch *s, int32_t a, float a_load,
                                                      const float *t_a, refine_best *one,
                                                      refine_best *two)
{
    search_partners(s, 1, s->m, s->k, a, a_load, t_a, one, two);
}
#endif

static void search_partners_portable(refine_scratch *s, int32_t a, float a_load, const float *t_a,
                                     refine_best *one, refine_best *two)
{
    search_partners(s, 0, s->m, s->k, a, a_load, t_a, one, two);
}

void eplb_cpu_refine_row(const eplb_plan_job *job, int64_t x, int32_t trades, float stop_at,
                         refine_scratch *s)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs, k = sp->per_pack;
    const int32_t pairs = k * (k - 1) / 2;
    const float tol = sp->tolerance;
    const float *slot_load = (const float *)job->slot_load + x * n;
    int32_t *pack_of = (int32_t *)sp->pack_of + x * n, *rank_of = (int32_t *)sp->rank_of + x * n;

    for (int32_t q = 0; q < n; q++)
        s->content[pack_of[q] * k + rank_of[q]] = q;
    for (int32_t i = 0; i < n; i++)
        s->t[i] = slot_load[s->content[i]];
    if (s->item_at) {
        const int32_t *phy2mlog = (const int32_t *)job->phy2mlog + x * n;
        for (int32_t i = 0; i < n; i++)
            s->item_at[i] = phy2mlog[s->content[i]];
    }
    for (int32_t g = 0; g < m; g++)
        s->load[g] = eplb_cpu_gpu_load(s->t + g * k, k);
    order_by_load(s);
    const int expanded = s->give_b != NULL, compact = s->ps > 0;
    /* The AVX-512 search, on the compact lists or the expanded ones. */
    const int wide = s->isa >= EPLB_CPU_ISA_AVX512 && !s->item_at && (compact || expanded);
    (void)wide; /* unused where the AVX-512 parts are not built */
    for (int32_t g = 0; g < m; g++) {
        if (expanded)
            expand_b(s, g, k, pairs);
        if (compact)
            compact_lists(s, g, k, pairs);
    }

    for (int32_t iteration = 0; iteration < trades; iteration++) {
        /* The heaviest GPU, the lowest index among equals. */
        int32_t a = s->by_load[m - 1];
        for (int32_t i = m - 2; i >= 0 && s->load[s->by_load[i]] == s->load[a]; i--)
            a = s->by_load[i];
        const float a_load = s->load[a];
        if (isinf(a_load) || a_load <= stop_at)
            break;
        const float *t_a = s->t + a * k;
        if (expanded)
            expand_a(s, t_a, k, pairs);
        else if (!compact)
            pair_sums(t_a, s, pairs, s->a_pairs);

        refine_best one = {INFINITY, -1, 0, 0}, two = {INFINITY, -1, 0, 0};
#if EPLB_CPU_X86_DISPATCH
        if (wide)
            eplb_cpu_refine_search_avx512(s, a, a_load, &one, &two);
        else if (s->isa >= EPLB_CPU_ISA_AVX2 && expanded)
            search_partners_avx2(s, a, a_load, t_a, &one, &two);
        else
#endif
            search_partners_portable(s, a, a_load, t_a, &one, &two);
        /* One-for-one trades come first in the trade order. */
        const int two_for_two = two.b >= 0 && (one.b < 0 || two.peak < one.peak);
        /* Used in place: a copy would read the search's fresh stores as a
         * whole, which waits for them to reach the cache. */
        refine_best *chosen = two_for_two ? &two : &one;
        if (chosen->b < 0 || !(a_load - chosen->peak > tol))
            break;
#if EPLB_CPU_X86_DISPATCH
        if (wide && chosen->a_pos < 0)
            eplb_cpu_refine_positions_avx512(s, a, a_load, two_for_two, chosen);
#endif
        if (expanded)
            trade_positions(s, a_load, k, pairs, two_for_two, chosen);
        apply_trade(s, k, a, chosen, two_for_two);
        const int32_t b = chosen->b;
        const float new_a = eplb_cpu_gpu_load(s->t + a * k, k), new_b = eplb_cpu_gpu_load(s->t + b * k, k);
        /* The peak was an estimate; the recomputed loads decide (SPEC 10.3
         * step 4), so refine never raises a row's maximum. */
        if ((new_a > new_b ? new_a : new_b) >= a_load) {
            apply_trade(s, k, a, chosen, two_for_two);
            break;
        }
#if EPLB_CPU_X86_DISPATCH
        /* The AVX-512 version places both with vector passes and keeps no
         * place. */
        if (s->isa >= EPLB_CPU_ISA_AVX512) {
            eplb_cpu_refine_move_pair_avx512(s, a, new_a, b, new_b);
        } else
#endif
        {
            move_to_place(s, a, new_a);
            move_to_place(s, b, new_b);
        }
        if (expanded) {
            expand_b(s, a, k, pairs);
            expand_b(s, b, k, pairs);
        }
        if (compact) {
            compact_lists(s, a, k, pairs);
            compact_lists(s, b, k, pairs);
        }
    }

    for (int32_t g = 0; g < m; g++)
        for (int32_t r = 0; r < k; r++) {
            const int32_t q = s->content[g * k + r];
            pack_of[q] = g;
            rank_of[q] = r;
        }
}

int eplb_cpu_refine_scratch_init(refine_scratch *s, const eplb_plan_job *job, int isa)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items, m = sp->packs, k = sp->per_pack;
    const size_t pairs = (size_t)k * (size_t)(k - 1) / 2;
    memset(s, 0, sizeof *s);
    s->content = malloc((size_t)n * sizeof *s->content);
    s->t = malloc((size_t)n * sizeof *s->t);
    s->item_at = job->distinct ? malloc((size_t)n * sizeof *s->item_at) : NULL;
    s->load = malloc((size_t)m * sizeof *s->load);
    s->by_load = malloc((size_t)m * sizeof *s->by_load);
    s->sorted = malloc((size_t)m * sizeof *s->sorted);
    s->place = malloc((size_t)m * sizeof *s->place);
    s->a_pairs = malloc((pairs + 1) * sizeof *s->a_pairs);
    s->b_pairs = malloc((pairs + 1) * sizeof *s->b_pairs);
    s->pair_lo = malloc((pairs + 1) * sizeof *s->pair_lo);
    s->pair_hi = malloc((pairs + 1) * sizeof *s->pair_hi);
    s->m = m;
    s->k = k;
    s->isa = isa;
    /* Lists of whole vectors: sixteen floats at AVX-512, else eight. */
    const int32_t vector = s->isa >= EPLB_CPU_ISA_AVX512 ? 16 : 8;
    s->ones = round_up(k * k, vector);
    s->twos = round_up((int32_t)(pairs * pairs), vector);
    int ok = s->content && s->t && s->load && s->by_load && s->sorted && s->place &&
             s->a_pairs && s->b_pairs && s->pair_lo && s->pair_hi &&
             (s->item_at || !job->distinct);
    if (compact_fits(k, m, s->isa, job->distinct)) {
        s->ks = round_up(k, 16);
        s->ps = round_up((int32_t)pairs, 16);
        s->singles = malloc((size_t)s->ks * (size_t)m * sizeof *s->singles);
        s->pair_list = malloc((size_t)s->ps * (size_t)m * sizeof *s->pair_list);
        ok = ok && s->singles && s->pair_list;
    } else if (expanded_fits(k, m)) {
        const size_t per_gpu = (size_t)(s->ones + s->twos);
        s->give_a = malloc(per_gpu * sizeof *s->give_a);
        s->give_b = malloc(per_gpu * (size_t)m * sizeof *s->give_b);
        ok = ok && s->give_a && s->give_b;
        if (s->isa >= EPLB_CPU_ISA_AVX512 && k <= EPLB_CPU_REFINE_SMALL_K) {
            s->list_source = list_sources(k, s->ones, s->twos);
            ok = ok && s->list_source;
        }
    }
    if (!ok) {
        eplb_cpu_refine_scratch_free(s);
        return 0;
    }
    int32_t i = 0;
    for (int32_t lo = 0; lo < k; lo++)
        for (int32_t hi = lo + 1; hi < k; hi++, i++) {
            s->pair_lo[i] = lo;
            s->pair_hi[i] = hi;
        }
    return 1;
}

void eplb_cpu_refine_scratch_free(refine_scratch *s)
{
    void *owned[] = {s->content, s->t,       s->item_at,   s->load,    s->by_load,  s->sorted,
                     s->place,   s->singles, s->pair_list, s->a_pairs, s->b_pairs,  s->pair_lo,
                     s->pair_hi, s->give_a,  s->give_b,    s->list_source};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
    memset(s, 0, sizeof *s);
}

eplb_status eplb_cpu_refine(eplb_backend *backend, const eplb_plan_job *job)
{
    const eplb_pack_job *sp = &job->slot_pack;
    const int32_t n = sp->items;
    if ((job->refine <= 0 && !job->distinct) || !eplb_plan_rows_trade(job))
        return EPLB_OK;
    /* With refine 0 this is distinct's restore (SPEC 11.5): only the rows
     * the distinct stage changed, a fixed number of trades, down to the
     * row's maximum before the cap at best. */
    const int restore = job->refine <= 0;
    const int32_t trades = restore ? EPLB_DISTINCT_RESTORE_TRADES : job->refine;
    const int32_t *row_changed = job->row_changed;
    const float *row_seed_max = job->row_seed_max;
    const int isa = eplb_cpu_settings_of(backend)->isa;
    int failed = 0;
    /* A row's search weighs far more than its slots: up to `trades` trades,
     * each against every other GPU of the row, so the cap counts too. */
#pragma omp parallel if (sp->rows > 1 && EPLB_CPU_WORTH_THREADS(sp->rows * (int64_t)n * trades))
    {
        refine_scratch s;
        const int ok = eplb_cpu_refine_scratch_init(&s, job, isa);
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        /* Every thread takes part in the loop (a worksharing loop must be met
         * by all); one without scratch skips its rows, and the call fails. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t x = 0; x < sp->rows; x++)
            if (ok && !(restore && !row_changed[x]))
                eplb_cpu_refine_row(job, x, trades, restore ? row_seed_max[x] : -INFINITY, &s);
        if (ok)
            eplb_cpu_refine_scratch_free(&s);
    }
    if (failed)
        return eplb_backend_error(backend, EPLB_ERR_OUT_OF_MEMORY,
                                  "cannot allocate the refine search's scratch (%d slots a row)",
                                  (int)n);
    return EPLB_OK;
}
