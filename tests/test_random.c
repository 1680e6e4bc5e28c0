/* SPEC section 7: the counter-based random function, bit for bit. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "common/spec_math.h"

typedef struct vector {
    uint64_t s, call, row, c, i;
    double u; /* the table's value, a float32 written out in full */
} vector;

/* The seven vectors of SPEC section 7. */
static const vector spec_vectors[] = {
    {0, 0, 0, 1, 0, 0.5914494395256042},
    {0, 0, 0, 1, 1, 0.2925233244895935},
    {0, 1, 0, 1, 0, 0.6253159046173096},
    {0, 0, 5, 3, 17, 0.9088884592056274},
    {7, 1, 100, 7, 255, 0.2025315761566162},
    {12345678901234567ULL, 0, 0, 1, 0, 0.12294691801071167},
    {18446744073709551615ULL, 1, 463, 7, 383, 0.6883638501167297},
};

Test(random_unit, matches_all_seven_spec_vectors_exactly)
{
    const size_t count = sizeof spec_vectors / sizeof spec_vectors[0];
    cr_assert_eq(count, 7);
    for (size_t k = 0; k < count; k++) {
        const vector *v = &spec_vectors[k];
        /* The table's decimals are exact float32 values: the literal must not round. */
        cr_assert_eq((double)(float)v->u, v->u, "vector %zu: table value is not a float32", k);
        const float u = eplb_random_unit(v->s, v->call, v->row, v->c, v->i);
        cr_expect_eq((double)u, v->u, "U(%llu, %llu, %llu, %llu, %llu) = %.17g, SPEC says %.17g",
                     (unsigned long long)v->s, (unsigned long long)v->call,
                     (unsigned long long)v->row, (unsigned long long)v->c,
                     (unsigned long long)v->i, (double)u, v->u);
    }
}

Test(random_unit, stays_in_unit_interval_on_a_24_bit_grid)
{
    /* U = (z >> 40) * 2^-24: in [0, 1) and an exact multiple of 2^-24. */
    for (uint64_t s = 0; s < 4; s++)
        for (uint64_t i = 0; i < 5000; i++) {
            const float u = eplb_random_unit(s * 0x123456789ULL, s & 1, i / 7, i % 9, i);
            cr_assert(u >= 0.0f && u < 1.0f, "U out of [0, 1): %.9g", (double)u);
            const double scaled = (double)u * 16777216.0;
            cr_assert_eq(scaled, (double)(uint64_t)scaled, "U = %.9g is not a multiple of 2^-24",
                         (double)u);
        }
}

Test(random_unit, every_argument_changes_the_value)
{
    /* A counter-based function that ignored an argument would repeat candidates. */
    const float base = eplb_random_unit(3, 1, 2, 3, 4);
    cr_expect_neq(eplb_random_unit(4, 1, 2, 3, 4), base, "seed ignored");
    cr_expect_neq(eplb_random_unit(3, 0, 2, 3, 4), base, "call ignored");
    cr_expect_neq(eplb_random_unit(3, 1, 3, 3, 4), base, "row ignored");
    cr_expect_neq(eplb_random_unit(3, 1, 2, 4, 4), base, "candidate ignored");
    cr_expect_neq(eplb_random_unit(3, 1, 2, 3, 5), base, "item ignored");
}

Test(random_unit, mix64_is_the_splitmix64_finaliser)
{
    /* mix(0) = 0; mix(0x9E3779B97F4A7C15) is the first splitmix64 output for seed 0. */
    cr_expect_eq(eplb_mix64(0), 0);
    cr_expect_eq(eplb_mix64(0x9E3779B97F4A7C15ULL), 0xE220A8397B1DCDAFULL);
}

Test(sort_key, multiplies_weight_by_noise_then_by_u_then_adds)
{
    /* SPEC 6.1 order: (w * a) first, then * u, then + w; each step rounded. */
    const float w = 3.0f, a = 0.2f, u = 0.5914494395256042f;
    volatile float scaled = w * a;
    volatile float perturbation = u * scaled;
    volatile float want = w + perturbation;
    cr_expect_eq(eplb_sort_key(w, a, u), want);
    cr_expect_eq(eplb_sort_key(7.0f, 0.0f, u), 7.0f, "zero noise must leave the key at the weight");
}

Test(swap_change, is_twice_d_times_diff_plus_d)
{
    volatile float d = 5.0f - 2.0f, twice = 2.0f * d, shifted = -4.0f + d;
    cr_expect_eq(eplb_swap_change(-4.0f, 5.0f, 2.0f), twice * shifted);
    cr_expect_eq(eplb_swap_change(-4.0f, 5.0f, 2.0f), -6.0f);
}
