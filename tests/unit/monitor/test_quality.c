/* SPDX-License-Identifier: Apache-2.0 */
/* The monitor's sliding window (eviction, histograms, quality codes, concurrent pushes)
 * and the delayed-label scores on known confusions. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

#include "monitor/quality.h"

static void test_window_eviction(void **state)
{
    (void)state;
    feature_window_t *w = NULL;
    assert_int_equal(feature_window_new(3, 2, &w), 0);
    assert_int_equal(feature_window_rows(w), 0);
    const double edges[] = {0, 2, 5}; /* [0,2) [2,5] */
    uint64_t counts[2];
    assert_int_equal(feature_window_histogram(w, 0, edges, 2, counts), 0);
    const float rows[4][2] = {{1, 10}, {2, 20}, {3, 30}, {4, 40}};
    for (int i = 0; i < 3; i++)
        feature_window_push(w, rows[i], NULL);
    assert_int_equal(feature_window_rows(w), 3);
    assert_int_equal(feature_window_histogram(w, 0, edges, 2, counts), 3);
    assert_int_equal(counts[0], 1);        /* 1 */
    assert_int_equal(counts[1], 2);        /* 2, 3 */
    feature_window_push(w, rows[3], NULL); /* evicts (1, 10) */
    assert_int_equal(feature_window_rows(w), 3);
    assert_int_equal(feature_window_histogram(w, 0, edges, 2, counts), 3);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 3);
    /* feature 1: 20, 30, 40 all above the last edge -> last bin */
    assert_int_equal(feature_window_histogram(w, 1, edges, 2, counts), 3);
    assert_int_equal(counts[1], 3);
    assert_int_equal(feature_window_histogram(w, 2, edges, 2, counts), 0); /* no such feature */
    feature_window_free(w);
    assert_int_equal(feature_window_new(0, 2, &w), -EINVAL);
}

static void test_quality_counting(void **state)
{
    (void)state;
    feature_window_t *w = NULL;
    assert_int_equal(feature_window_new(10, 4, &w), 0);
    assert_true(isnan(feature_window_quality(w)));
    const float ok[4] = {1, 2, 3, 4};
    const float missing_one[4] = {1, NAN, 3, 4}; /* absent optional feature */
    feature_window_push(w, ok, NULL);
    feature_window_push(w, missing_one, NULL);
    /* a rejected row: one out of range, one wrong type, the rest unscored */
    const uint8_t rejected[4] = {VALUE_OUT_OF_RANGE, VALUE_UNSCORED, VALUE_WRONG_TYPE, VALUE_UNSCORED};
    feature_window_push(w, NULL, rejected);
    uint64_t by[VALUE_CODES];
    assert_int_equal(feature_window_codes(w, by), 12);
    assert_int_equal(by[VALUE_OK], 7);
    assert_int_equal(by[VALUE_MISSING], 1);
    assert_int_equal(by[VALUE_OUT_OF_RANGE], 1);
    assert_int_equal(by[VALUE_WRONG_TYPE], 1);
    assert_int_equal(by[VALUE_UNSCORED], 2);
    assert_near(feature_window_quality(w), 1.0 - 3.0 / 12.0, 1e-12);
    /* only OK values take part in drift: feature 1 has one (2), feature 0 two (1, 1) */
    const double edges[] = {0, 10};
    uint64_t counts[1];
    assert_int_equal(feature_window_histogram(w, 1, edges, 1, counts), 1);
    assert_int_equal(feature_window_histogram(w, 0, edges, 1, counts), 2);
    /* the bad row ages out of a full window */
    for (int i = 0; i < 10; i++)
        feature_window_push(w, ok, NULL);
    assert_near(feature_window_quality(w), 1.0, 1e-12);
    feature_window_free(w);
}

#define THREADS 4
#define PER_THREAD 20000
static feature_window_t *shared;

static void *pusher(void *arg)
{
    float row[3] = {(float)(uintptr_t)arg, 1, 2};
    for (int i = 0; i < PER_THREAD; i++)
        feature_window_push(shared, row, NULL);
    return NULL;
}

static void test_window_concurrent(void **state)
{
    (void)state;
    assert_int_equal(feature_window_new(1000, 3, &shared), 0);
    pthread_t th[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, pusher, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(feature_window_rows(shared), 1000);
    const double edges[] = {0, 1, 2, 3, 4}; /* each thread's value has its own bin */
    uint64_t counts[4];
    assert_int_equal(feature_window_histogram(shared, 0, edges, 4, counts), 1000);
    assert_near(feature_window_quality(shared), 1.0, 0);
    feature_window_free(shared);
}

static void test_binary_scores(void **state)
{
    (void)state;
    /* tp 3, fp 1, fn 2, tn 4 */
    const int yt[] = {1, 1, 1, 0, 1, 1, 0, 0, 0, 0};
    const int yp[] = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    quality_scores_t s;
    assert_int_equal(quality_classification(yt, yp, 10, 2, &s), 0);
    assert_int_equal(s.n, 10);
    assert_near(s.accuracy, 0.7, 1e-12);
    assert_near(s.precision, 0.75, 1e-12);
    assert_near(s.recall, 0.6, 1e-12);
    assert_near(s.f1, 2 * 0.75 * 0.6 / 1.35, 1e-12);
    assert_int_equal(quality_classification(yt, yp, 0, 2, &s), 0);
    assert_true(isnan(s.accuracy));
    const int bad[] = {2};
    assert_int_equal(quality_classification(bad, bad, 1, 2, &s), -EINVAL);
}

static void test_multiclass_macro(void **state)
{
    (void)state;
    const int yt[] = {0, 0, 1, 1, 2, 2};
    const int yp[] = {0, 1, 1, 1, 2, 0};
    quality_scores_t s;
    assert_int_equal(quality_classification(yt, yp, 6, 3, &s), 0);
    assert_near(s.accuracy, 4.0 / 6.0, 1e-12);
    /* per class (p, r, f1): (1/2, 1/2, 1/2), (2/3, 1, 4/5), (1, 1/2, 2/3) */
    assert_near(s.precision, (0.5 + 2.0 / 3.0 + 1.0) / 3.0, 1e-12);
    assert_near(s.recall, (0.5 + 1.0 + 0.5) / 3.0, 1e-12);
    assert_near(s.f1, (0.5 + 0.8 + 2.0 / 3.0) / 3.0, 1e-12);
    /* a class of k absent from both y_true and y_pred is left out of the macro mean */
    assert_int_equal(quality_classification(yt, yp, 6, 4, &s), 0);
    assert_near(s.f1, (0.5 + 0.8 + 2.0 / 3.0) / 3.0, 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_eviction),   cmocka_unit_test(test_quality_counting),
        cmocka_unit_test(test_window_concurrent), cmocka_unit_test(test_binary_scores),
        cmocka_unit_test(test_multiclass_macro),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
