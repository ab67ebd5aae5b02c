/* SPDX-License-Identifier: Apache-2.0 */
/* Evaluation metrics as pure functions on arrays: classification (accuracy, precision,
 * recall, F1, macro F1, ROC AUC, log loss, confusion counts) and regression (RMSE, MAE,
 * R2). Training, import, rollout gates and monitoring all score models through these,
 * so the numbers agree everywhere. Conventions follow scikit-learn's defaults; undefined
 * results are NAN (emitted as JSON null). */
#ifndef AIMEDRES_MODEL_EVALMETRICS_H
#define AIMEDRES_MODEL_EVALMETRICS_H

#include <jansson.h>
#include <stddef.h>

/* Clipping applied to probabilities before taking logs (as scikit-learn). */
#define EVALMETRICS_LOG_EPS 1e-15

typedef struct evalmetrics_confusion {
    size_t tp, fp, tn, fn;
} evalmetrics_confusion_t;

/* Binary confusion counts; y_true is 0/1 (anything non-zero counts as 1), a row is
 * predicted positive when y_score >= threshold. */
evalmetrics_confusion_t evalmetrics_confusion_binary(const int *y_true, const double *y_score, size_t n,
                                                     double threshold);
/* k x k counts, ret_counts[true * k + pred]. -EINVAL if a label is outside [0, k). */
int evalmetrics_confusion_matrix(const int *y_true, const int *y_pred, size_t n, size_t k,
                                 size_t *ret_counts);

/* Share of rows with y_pred == y_true; NAN when n == 0. */
double evalmetrics_accuracy(const int *y_true, const int *y_pred, size_t n);
/* tp / (tp + fp); 0 when nothing was predicted positive (scikit-learn zero_division=0). */
double evalmetrics_precision(const evalmetrics_confusion_t *c);
/* tp / (tp + fn); 0 when there are no positives. */
double evalmetrics_recall(const evalmetrics_confusion_t *c);
/* Harmonic mean of precision and recall; 0 when both are 0. */
double evalmetrics_f1(const evalmetrics_confusion_t *c);
/* Unweighted mean of per-class F1 over the classes in [0, k) that occur in y_true or
 * y_pred; NAN when n == 0 or a label is outside [0, k). */
double evalmetrics_f1_macro(const int *y_true, const int *y_pred, size_t n, size_t k);

/* ROC AUC of scores for the positive class (y_true != 0), by the rank-sum
 * (Mann-Whitney U) formula with tied scores given their average rank, which equals the
 * trapezoidal area under the ROC curve. NAN if only one class is present, a score is
 * NaN, or memory runs out. */
double evalmetrics_roc_auc(const int *y_true, const double *y_score, size_t n);
/* Mean binary cross-entropy of P(class 1) = p1 (clipped to [eps, 1-eps]); NAN if n == 0. */
double evalmetrics_log_loss_binary(const int *y_true, const double *p1, size_t n);
/* Mean multiclass cross-entropy; probs is n x k row-major, y_true in [0, k). NAN if
 * n == 0 or a label is out of range. */
double evalmetrics_log_loss(const int *y_true, const double *probs, size_t n, size_t k);
/* Index of the largest probability in each row (first on ties) into ret_pred[n]. */
void evalmetrics_argmax(const double *probs, size_t n, size_t k, int *ret_pred);

/* Regression. NAN when n == 0. */
double evalmetrics_rmse(const double *y_true, const double *y_pred, size_t n);
double evalmetrics_mae(const double *y_true, const double *y_pred, size_t n);
/* 1 - SS_res / SS_tot. For a constant y_true: 1 if the predictions are exact, else 0
 * (scikit-learn's force_finite behaviour). */
double evalmetrics_r2(const double *y_true, const double *y_pred, size_t n);

/* Bundles for one evaluated set. */
typedef struct evalmetrics_binary {
    size_t n;
    double threshold;
    double accuracy, precision, recall, f1, auc, log_loss;
    evalmetrics_confusion_t confusion;
} evalmetrics_binary_t;

typedef struct evalmetrics_multiclass {
    size_t n, k;
    double accuracy, f1_macro, log_loss;
} evalmetrics_multiclass_t;

typedef struct evalmetrics_regression {
    size_t n;
    double rmse, mae, r2;
} evalmetrics_regression_t;

/* y_score = P(class 1). */
void evalmetrics_binary_compute(const int *y_true, const double *y_score, size_t n, double threshold,
                                evalmetrics_binary_t *ret);
/* probs n x k. Returns 0 or -EINVAL (label out of range) / -ENOMEM. */
int evalmetrics_multiclass_compute(const int *y_true, const double *probs, size_t n, size_t k,
                                   evalmetrics_multiclass_t *ret);
void evalmetrics_regression_compute(const double *y_true, const double *y_pred, size_t n,
                                    evalmetrics_regression_t *ret);

/* JSON objects as stored in manifests (new references; NAN becomes null):
 * binary     {"n_rows","threshold","accuracy","precision","recall","f1","auc","log_loss",
 *             "confusion":{"tp","fp","tn","fn"}}
 * multiclass {"n_rows","n_classes","accuracy","f1" (macro),"f1_average":"macro","log_loss"}
 * regression {"n_rows","rmse","mae","r2"} */
json_t *evalmetrics_binary_json(const evalmetrics_binary_t *m);
json_t *evalmetrics_multiclass_json(const evalmetrics_multiclass_t *m);
json_t *evalmetrics_regression_json(const evalmetrics_regression_t *m);

#endif
