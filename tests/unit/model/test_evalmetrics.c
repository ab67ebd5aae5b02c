/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for model/evalmetrics.c against values computed by hand (and matching
 * scikit-learn's documented examples): ROC AUC with and without ties, precision/recall/F1
 * including zero division, macro F1, log loss with clipping, RMSE/MAE/R2, confusion
 * matrices, the bundles and their JSON (NaN -> null). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "model/evalmetrics.h"

#define EPS 1e-12

static void test_auc(void **state)
{
    (void)state;
    /* scikit-learn's roc_auc_score example: 0.75. */
    int y1[] = {0, 0, 1, 1};
    double s1[] = {0.1, 0.4, 0.35, 0.8};
    assert_float_equal(evalmetrics_roc_auc(y1, s1, 4), 0.75, EPS);

    /* Ties between a positive and a negative count one half:
     * pairs (0.5,0.5)=0.5 (0.5,0.2)=1 (0.9,0.5)=1 (0.9,0.2)=1 -> 3.5/4. */
    int y2[] = {0, 1, 0, 1};
    double s2[] = {0.5, 0.5, 0.2, 0.9};
    assert_float_equal(evalmetrics_roc_auc(y2, s2, 4), 0.875, EPS);

    /* Ties inside a group of positives do not matter; all tied -> 0.5. */
    int y3[] = {1, 1, 0, 0, 1};
    double s3[] = {0.7, 0.7, 0.3, 0.3, 0.7};
    assert_float_equal(evalmetrics_roc_auc(y3, s3, 5), 1.0, EPS);
    double s4[] = {0.4, 0.4, 0.4, 0.4, 0.4};
    assert_float_equal(evalmetrics_roc_auc(y3, s4, 5), 0.5, EPS);

    /* Perfectly wrong ranking, and a larger hand-checked case with a 3-way tie:
     * y = 1 0 1 0 0 1, s = .9 .9 .9 .1 .5 .3; positives .9 .9 .3, negatives .9 .1 .5
     * .9 vs {.9,.1,.5} = .5+1+1 = 2.5 (twice) ; .3 vs {.9,.1,.5} = 0+1+0 = 1 -> 6/9. */
    int y5[] = {1, 0, 0};
    double s5[] = {0.1, 0.5, 0.9};
    assert_float_equal(evalmetrics_roc_auc(y5, s5, 3), 0.0, EPS);
    int y6[] = {1, 0, 1, 0, 0, 1};
    double s6[] = {0.9, 0.9, 0.9, 0.1, 0.5, 0.3};
    assert_float_equal(evalmetrics_roc_auc(y6, s6, 6), 6.0 / 9.0, EPS);

    /* Undefined: one class only, NaN score, empty. */
    int y7[] = {1, 1};
    double s7[] = {0.2, 0.3};
    assert_true(isnan(evalmetrics_roc_auc(y7, s7, 2)));
    double s8[] = {NAN, 0.3, 0.1, 0.2};
    assert_true(isnan(evalmetrics_roc_auc(y1, s8, 4)));
    assert_true(isnan(evalmetrics_roc_auc(y1, s1, 0)));
}

static void test_binary_counts(void **state)
{
    (void)state;
    int y[] = {1, 1, 1, 0, 0, 0, 1, 0};
    double s[] = {0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.8, 0.5};
    /* threshold 0.5 (>=): predicted 1 1 0 1 0 0 1 1 -> tp 3, fn 1, fp 2, tn 2. */
    evalmetrics_confusion_t c = evalmetrics_confusion_binary(y, s, 8, 0.5);
    assert_int_equal(c.tp, 3);
    assert_int_equal(c.fn, 1);
    assert_int_equal(c.fp, 2);
    assert_int_equal(c.tn, 2);
    assert_float_equal(evalmetrics_precision(&c), 3.0 / 5.0, EPS);
    assert_float_equal(evalmetrics_recall(&c), 3.0 / 4.0, EPS);
    /* F1 = 2PR/(P+R) = 2*.6*.75/1.35 = 2/3 */
    assert_float_equal(evalmetrics_f1(&c), 2.0 / 3.0, EPS);

    evalmetrics_binary_t m;
    evalmetrics_binary_compute(y, s, 8, 0.5, &m);
    assert_float_equal(m.accuracy, 5.0 / 8.0, EPS);
    assert_float_equal(m.f1, 2.0 / 3.0, EPS);
    /* AUC: positives .9 .6 .4 .8, negatives .7 .2 .1 .5:
     * .9 -> 4, .6 -> 3, .4 -> 2, .8 -> 4 = 13/16 */
    assert_float_equal(m.auc, 13.0 / 16.0, EPS);

    /* Zero division: nothing predicted positive -> precision 0, F1 0; no positives -> recall 0. */
    evalmetrics_confusion_t none = evalmetrics_confusion_binary(y, s, 8, 0.95);
    assert_int_equal(none.tp + none.fp, 0);
    assert_float_equal(evalmetrics_precision(&none), 0.0, EPS);
    assert_float_equal(evalmetrics_f1(&none), 0.0, EPS);
    evalmetrics_confusion_t empty = {0};
    assert_float_equal(evalmetrics_recall(&empty), 0.0, EPS);
    assert_true(isnan(evalmetrics_accuracy(y, y, 0)));
}

static void test_log_loss(void **state)
{
    (void)state;
    int y[] = {1, 0};
    double p[] = {0.9, 0.2};
    assert_float_equal(evalmetrics_log_loss_binary(y, p, 2), -(log(0.9) + log(0.8)) / 2, EPS);
    /* A confident wrong answer is clipped at 1e-15, not infinite. */
    int y1[] = {0};
    double p1[] = {1.0};
    assert_float_equal(evalmetrics_log_loss_binary(y1, p1, 1), -log(1.0 - (1.0 - 1e-15)), 1e-9);
    assert_true(evalmetrics_log_loss_binary(y1, p1, 1) < 35);

    int yc[] = {0, 2, 1};
    double probs[] = {0.7, 0.2, 0.1, /**/ 0.1, 0.1, 0.8, /**/ 0.25, 0.5, 0.25};
    assert_float_equal(evalmetrics_log_loss(yc, probs, 3, 3), -(log(0.7) + log(0.8) + log(0.5)) / 3, EPS);
    int ybad[] = {3};
    assert_true(isnan(evalmetrics_log_loss(ybad, probs, 1, 3)));
}

static void test_multiclass(void **state)
{
    (void)state;
    /* scikit-learn f1_score example: macro 0.2666... */
    int yt[] = {0, 1, 2, 0, 1, 2};
    int yp[] = {0, 2, 1, 0, 0, 1};
    assert_float_equal(evalmetrics_f1_macro(yt, yp, 6, 3), 0.8 / 3.0, EPS);
    assert_float_equal(evalmetrics_accuracy(yt, yp, 6), 2.0 / 6.0, EPS);
    /* A class absent from both truth and prediction is not averaged (k = 5 here). */
    assert_float_equal(evalmetrics_f1_macro(yt, yp, 6, 5), 0.8 / 3.0, EPS);
    int out_of_range[] = {0, 1, 7, 0, 1, 2};
    assert_true(isnan(evalmetrics_f1_macro(out_of_range, yp, 6, 3)));

    size_t cm[9];
    assert_int_equal(evalmetrics_confusion_matrix(yt, yp, 6, 3, cm), 0);
    size_t want[9] = {2, 0, 0, /**/ 1, 0, 1, /**/ 0, 2, 0};
    for (int i = 0; i < 9; i++)
        assert_int_equal(cm[i], want[i]);
    assert_int_equal(evalmetrics_confusion_matrix(out_of_range, yp, 6, 3, cm), -EINVAL);

    double probs[] = {0.6, 0.3, 0.1, /**/ 0.2, 0.3, 0.5, /**/ 0.1, 0.1, 0.8};
    int y[] = {0, 1, 2};
    int pred[3];
    evalmetrics_argmax(probs, 3, 3, pred);
    assert_int_equal(pred[0], 0);
    assert_int_equal(pred[1], 2);
    assert_int_equal(pred[2], 2);
    evalmetrics_multiclass_t m;
    assert_int_equal(evalmetrics_multiclass_compute(y, probs, 3, 3, &m), 0);
    assert_float_equal(m.accuracy, 2.0 / 3.0, EPS);
    /* per class F1: c0 1, c1 0, c2 2/3 -> 5/9 */
    assert_float_equal(m.f1_macro, 5.0 / 9.0, EPS);
    int ybad[] = {0, 1, 3};
    assert_int_equal(evalmetrics_multiclass_compute(ybad, probs, 3, 3, &m), -EINVAL);
}

static void test_regression(void **state)
{
    (void)state;
    /* scikit-learn r2_score example: 0.948... */
    double y[] = {3, -0.5, 2, 7};
    double p[] = {2.5, 0.0, 2, 8};
    assert_float_equal(evalmetrics_mae(y, p, 4), 0.5, EPS);
    assert_float_equal(evalmetrics_rmse(y, p, 4), sqrt(0.375), EPS);
    /* SS_res = .25+.25+0+1 = 1.5; mean 2.875; SS_tot = 29.1875 */
    assert_float_equal(evalmetrics_r2(y, p, 4), 1.0 - 1.5 / 29.1875, EPS);
    double c[] = {2, 2, 2};
    double exact[] = {2, 2, 2}, off[] = {2, 2, 3};
    assert_float_equal(evalmetrics_r2(c, exact, 3), 1.0, EPS);
    assert_float_equal(evalmetrics_r2(c, off, 3), 0.0, EPS);
    assert_true(isnan(evalmetrics_rmse(y, p, 0)));
    evalmetrics_regression_t m;
    evalmetrics_regression_compute(y, p, 4, &m);
    assert_int_equal(m.n, 4);
    assert_float_equal(m.r2, 1.0 - 1.5 / 29.1875, EPS);
}

static void test_json(void **state)
{
    (void)state;
    int y[] = {1, 1};
    double s[] = {0.8, 0.3};
    evalmetrics_binary_t m;
    evalmetrics_binary_compute(y, s, 2, 0.5, &m);
    json_t *j = evalmetrics_binary_json(&m);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "auc"))); /* one class: undefined */
    assert_int_equal(json_integer_value(json_object_get(j, "n_rows")), 2);
    assert_float_equal(json_real_value(json_object_get(j, "accuracy")), 0.5, EPS);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "confusion"), "fn")), 1);
    json_decref(j);

    evalmetrics_multiclass_t mc = {.n = 3, .k = 3, .accuracy = 1, .f1_macro = NAN, .log_loss = 0.1};
    j = evalmetrics_multiclass_json(&mc);
    assert_true(json_is_null(json_object_get(j, "f1")));
    assert_string_equal(json_string_value(json_object_get(j, "f1_average")), "macro");
    json_decref(j);

    evalmetrics_regression_t r = {.n = 1, .rmse = 0.5, .mae = 0.5, .r2 = 0.25};
    j = evalmetrics_regression_json(&r);
    assert_float_equal(json_real_value(json_object_get(j, "r2")), 0.25, EPS);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc),        cmocka_unit_test(test_binary_counts),
        cmocka_unit_test(test_log_loss),   cmocka_unit_test(test_multiclass),
        cmocka_unit_test(test_regression), cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
