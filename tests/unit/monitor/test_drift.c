/* SPDX-License-Identifier: Apache-2.0 */
/* Drift statistics: the training binning rule, PSI and binned KS against values computed
 * by hand (and checked with Python's math.log). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

#include "monitor/drift.h"

/* A value equal to an edge in the data lands where training (doubles) put it, although the
 * server holds it as float32: float32(0.005) is below the double 0.005. */
static void test_bin_of_f32(void **state)
{
    (void)state;
    const double edges[] = {0, 0.005, 0.01, 0.3}; /* bins [0,0.005) [0.005,0.01) [0.01,0.3] */
    assert_true((double)0.005f < 0.005);
    assert_int_equal(drift_bin_of(edges, 3, 0.005), 1);           /* training */
    assert_int_equal(drift_bin_of(edges, 3, (double)0.005f), 0);  /* the old server path */
    assert_int_equal(drift_bin_of_f32(edges, 3, 0.005f), 1);      /* the server now */
    assert_int_equal(drift_bin_of_f32(edges, 3, 0.0049f), 0);
    assert_int_equal(drift_bin_of_f32(edges, 3, 0.01f), 2);
    assert_int_equal(drift_bin_of_f32(edges, 3, 0.3f), 2);
    assert_int_equal(drift_bin_of_f32(edges, 3, -1.0f), 0);
    assert_int_equal(drift_bin_of_f32(edges, 3, 99.0f), 2);
}

static void test_bin_of(void **state)
{
    (void)state;
    const double edges[] = {0, 1, 2, 3}; /* bins [0,1) [1,2) [2,3] */
    assert_int_equal(drift_bin_of(edges, 3, -5), 0);
    assert_int_equal(drift_bin_of(edges, 3, 0), 0);
    assert_int_equal(drift_bin_of(edges, 3, 0.999), 0);
    assert_int_equal(drift_bin_of(edges, 3, 1), 1);
    assert_int_equal(drift_bin_of(edges, 3, 1.5), 1);
    assert_int_equal(drift_bin_of(edges, 3, 2), 2);
    assert_int_equal(drift_bin_of(edges, 3, 3), 2); /* last bin closed */
    assert_int_equal(drift_bin_of(edges, 3, 99), 2);
    const double one[] = {0, 0.5};
    assert_int_equal(drift_bin_of(one, 1, 7), 0);
    const double boolean[] = {0, 0.5, 1}; /* booleans: 0 -> bin 0, 1 -> bin 1 */
    assert_int_equal(drift_bin_of(boolean, 2, 0), 0);
    assert_int_equal(drift_bin_of(boolean, 2, 1), 1);
}

static void test_psi_hand_values(void **state)
{
    (void)state;
    const double half[] = {0.5, 0.5};
    /* a = (0.3, 0.7): (0.3-0.5) ln(0.6) + (0.7-0.5) ln(1.4) */
    const uint64_t c1[] = {30, 70};
    assert_near(drift_psi(c1, half, 2), 0.16945957207744072, 1e-12);
    /* identical distributions: 0 */
    const uint64_t c2[] = {50, 50};
    assert_near(drift_psi(c2, half, 2), 0.0, 1e-15);
    /* an empty bin is floored at 1e-4: (1e-4-0.5) ln(1e-4/0.5) + 0.5 ln 2 */
    const uint64_t c3[] = {0, 100};
    assert_near(drift_psi(c3, half, 2), 4.60431846666895, 1e-10);
    const double base3[] = {0.2, 0.3, 0.5};
    const uint64_t c4[] = {10, 10, 80};
    assert_near(drift_psi(c4, base3, 3), 0.43003826456333716, 1e-12);
    /* symmetric in shape, scale-free in counts */
    const uint64_t c5[] = {3, 7};
    assert_near(drift_psi(c5, half, 2), drift_psi(c1, half, 2), 1e-15);
    const uint64_t none[] = {0, 0};
    assert_true(isnan(drift_psi(none, half, 2)));
}

static void test_ks_hand_values(void **state)
{
    (void)state;
    const double half[] = {0.5, 0.5};
    const uint64_t c1[] = {30, 70}; /* CDFs 0.3 vs 0.5 at the first boundary */
    assert_near(drift_ks(c1, half, 2), 0.2, 1e-12);
    const double base3[] = {0.2, 0.3, 0.5};
    const uint64_t c4[] = {10, 10, 80}; /* 0.1/0.2, 0.2/0.5, 1/1 -> 0.3 */
    assert_near(drift_ks(c4, base3, 3), 0.3, 1e-12);
    const uint64_t same[] = {20, 30, 50};
    assert_near(drift_ks(same, base3, 3), 0.0, 1e-12);
    const uint64_t all_last[] = {0, 0, 9}; /* everything in the top bin: 0.5 */
    assert_near(drift_ks(all_last, base3, 3), 0.5, 1e-12);
    const uint64_t none[] = {0, 0, 0};
    assert_true(isnan(drift_ks(none, base3, 3)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bin_of),
        cmocka_unit_test(test_bin_of_f32),
        cmocka_unit_test(test_psi_hand_values),
        cmocka_unit_test(test_ks_hand_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
