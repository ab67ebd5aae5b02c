/* SPDX-License-Identifier: Apache-2.0 */
/* Evaluation metrics on plain arrays (see evalmetrics.h for the conventions). Nothing
 * here allocates except ROC AUC, which sorts a copy of the scores. */
#include "model/evalmetrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

evalmetrics_confusion_t evalmetrics_confusion_binary(const int *y_true, const double *y_score, size_t n,
                                                     double threshold)
{
    evalmetrics_confusion_t c = {0};
    for (size_t i = 0; i < n; i++) {
        int pos = y_score[i] >= threshold;
        if (y_true[i]) {
            if (pos)
                c.tp++;
            else
                c.fn++;
        } else {
            if (pos)
                c.fp++;
            else
                c.tn++;
        }
    }
    return c;
}

int evalmetrics_confusion_matrix(const int *y_true, const int *y_pred, size_t n, size_t k, size_t *ret_counts)
{
    for (size_t i = 0; i < k * k; i++)
        ret_counts[i] = 0;
    for (size_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || (size_t)y_true[i] >= k || y_pred[i] < 0 || (size_t)y_pred[i] >= k)
            return -EINVAL;
        ret_counts[(size_t)y_true[i] * k + (size_t)y_pred[i]]++;
    }
    return 0;
}

double evalmetrics_accuracy(const int *y_true, const int *y_pred, size_t n)
{
    if (n == 0)
        return NAN;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += y_true[i] == y_pred[i];
    return (double)ok / (double)n;
}

double evalmetrics_precision(const evalmetrics_confusion_t *c)
{
    size_t d = c->tp + c->fp;
    return d ? (double)c->tp / (double)d : 0.0;
}

double evalmetrics_recall(const evalmetrics_confusion_t *c)
{
    size_t d = c->tp + c->fn;
    return d ? (double)c->tp / (double)d : 0.0;
}

double evalmetrics_f1(const evalmetrics_confusion_t *c)
{
    /* 2tp / (2tp + fp + fn), the same value as the harmonic mean without 0/0. */
    size_t d = 2 * c->tp + c->fp + c->fn;
    return d ? (double)(2 * c->tp) / (double)d : 0.0;
}

double evalmetrics_f1_macro(const int *y_true, const int *y_pred, size_t n, size_t k)
{
    if (n == 0 || k == 0)
        return NAN;
    double sum = 0;
    size_t classes = 0;
    for (size_t c = 0; c < k; c++) {
        evalmetrics_confusion_t cc = {0};
        for (size_t i = 0; i < n; i++) {
            if (y_true[i] < 0 || (size_t)y_true[i] >= k || y_pred[i] < 0 || (size_t)y_pred[i] >= k)
                return NAN;
            int t = (size_t)y_true[i] == c, p = (size_t)y_pred[i] == c;
            if (t && p)
                cc.tp++;
            else if (p)
                cc.fp++;
            else if (t)
                cc.fn++;
        }
        if (cc.tp + cc.fp + cc.fn == 0)
            continue; /* class absent from both: not part of the average */
        sum += evalmetrics_f1(&cc);
        classes++;
    }
    return classes ? sum / (double)classes : NAN;
}

typedef struct scored {
    double score;
    int positive;
} scored_t;

static int cmp_scored(const void *a, const void *b)
{
    double x = ((const scored_t *)a)->score, y = ((const scored_t *)b)->score;
    return (x > y) - (x < y);
}

double evalmetrics_roc_auc(const int *y_true, const double *y_score, size_t n)
{
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(y_score[i]))
            return NAN;
        npos += y_true[i] != 0;
    }
    size_t nneg = n - npos;
    if (npos == 0 || nneg == 0)
        return NAN;
    scored_t *s = malloc(n * sizeof(*s));
    if (!s)
        return NAN;
    for (size_t i = 0; i < n; i++) {
        s[i].score = y_score[i];
        s[i].positive = y_true[i] != 0;
    }
    qsort(s, n, sizeof(*s), cmp_scored);
    /* Sum of the (1-based, tie-averaged) ranks of the positives. */
    double rank_sum = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        size_t pos_in_group = 0;
        while (j < n && s[j].score == s[i].score) {
            pos_in_group += (size_t)s[j].positive;
            j++;
        }
        double avg_rank = ((double)(i + 1) + (double)j) / 2.0; /* ranks i+1 .. j */
        rank_sum += avg_rank * (double)pos_in_group;
        i = j;
    }
    free(s);
    double u = rank_sum - (double)npos * ((double)npos + 1.0) / 2.0;
    return u / ((double)npos * (double)nneg);
}

static double clip(double p)
{
    if (!(p >= EVALMETRICS_LOG_EPS)) /* also catches NaN */
        return EVALMETRICS_LOG_EPS;
    if (p > 1.0 - EVALMETRICS_LOG_EPS)
        return 1.0 - EVALMETRICS_LOG_EPS;
    return p;
}

double evalmetrics_log_loss_binary(const int *y_true, const double *p1, size_t n)
{
    if (n == 0)
        return NAN;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double p = clip(p1[i]);
        sum -= y_true[i] ? log(p) : log(1.0 - p);
    }
    return sum / (double)n;
}

double evalmetrics_log_loss(const int *y_true, const double *probs, size_t n, size_t k)
{
    if (n == 0 || k == 0)
        return NAN;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || (size_t)y_true[i] >= k)
            return NAN;
        sum -= log(clip(probs[i * k + (size_t)y_true[i]]));
    }
    return sum / (double)n;
}

void evalmetrics_argmax(const double *probs, size_t n, size_t k, int *ret_pred)
{
    for (size_t i = 0; i < n; i++) {
        size_t best = 0;
        for (size_t c = 1; c < k; c++)
            if (probs[i * k + c] > probs[i * k + best])
                best = c;
        ret_pred[i] = (int)best;
    }
}

double evalmetrics_rmse(const double *y_true, const double *y_pred, size_t n)
{
    if (n == 0)
        return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = y_true[i] - y_pred[i];
        s += d * d;
    }
    return sqrt(s / (double)n);
}

double evalmetrics_mae(const double *y_true, const double *y_pred, size_t n)
{
    if (n == 0)
        return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += fabs(y_true[i] - y_pred[i]);
    return s / (double)n;
}

double evalmetrics_r2(const double *y_true, const double *y_pred, size_t n)
{
    if (n == 0)
        return NAN;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += y_true[i];
    mean /= (double)n;
    double ss_res = 0, ss_tot = 0;
    for (size_t i = 0; i < n; i++) {
        double r = y_true[i] - y_pred[i], t = y_true[i] - mean;
        ss_res += r * r;
        ss_tot += t * t;
    }
    if (ss_tot == 0)
        return ss_res == 0 ? 1.0 : 0.0;
    return 1.0 - ss_res / ss_tot;
}

void evalmetrics_binary_compute(const int *y_true, const double *y_score, size_t n, double threshold,
                                evalmetrics_binary_t *ret)
{
    ret->n = n;
    ret->threshold = threshold;
    ret->confusion = evalmetrics_confusion_binary(y_true, y_score, n, threshold);
    const evalmetrics_confusion_t *c = &ret->confusion;
    ret->accuracy = n ? (double)(c->tp + c->tn) / (double)n : NAN;
    ret->precision = evalmetrics_precision(c);
    ret->recall = evalmetrics_recall(c);
    ret->f1 = evalmetrics_f1(c);
    ret->auc = evalmetrics_roc_auc(y_true, y_score, n);
    ret->log_loss = evalmetrics_log_loss_binary(y_true, y_score, n);
}

int evalmetrics_multiclass_compute(const int *y_true, const double *probs, size_t n, size_t k,
                                   evalmetrics_multiclass_t *ret)
{
    for (size_t i = 0; i < n; i++)
        if (y_true[i] < 0 || (size_t)y_true[i] >= k)
            return -EINVAL;
    int *pred = malloc((n ? n : 1) * sizeof(*pred));
    if (!pred)
        return -ENOMEM;
    evalmetrics_argmax(probs, n, k, pred);
    ret->n = n;
    ret->k = k;
    ret->accuracy = evalmetrics_accuracy(y_true, pred, n);
    ret->f1_macro = evalmetrics_f1_macro(y_true, pred, n, k);
    ret->log_loss = evalmetrics_log_loss(y_true, probs, n, k);
    free(pred);
    return 0;
}

void evalmetrics_regression_compute(const double *y_true, const double *y_pred, size_t n,
                                    evalmetrics_regression_t *ret)
{
    ret->n = n;
    ret->rmse = evalmetrics_rmse(y_true, y_pred, n);
    ret->mae = evalmetrics_mae(y_true, y_pred, n);
    ret->r2 = evalmetrics_r2(y_true, y_pred, n);
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *evalmetrics_binary_json(const evalmetrics_binary_t *m)
{
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I}}", "n_rows",
                     (json_int_t)m->n, "threshold", num(m->threshold), "accuracy", num(m->accuracy),
                     "precision", num(m->precision), "recall", num(m->recall), "f1", num(m->f1), "auc",
                     num(m->auc), "log_loss", num(m->log_loss), "confusion", "tp",
                     (json_int_t)m->confusion.tp, "fp", (json_int_t)m->confusion.fp, "tn",
                     (json_int_t)m->confusion.tn, "fn", (json_int_t)m->confusion.fn);
}

json_t *evalmetrics_multiclass_json(const evalmetrics_multiclass_t *m)
{
    return json_pack("{s:I, s:I, s:o, s:o, s:s, s:o}", "n_rows", (json_int_t)m->n, "n_classes",
                     (json_int_t)m->k, "accuracy", num(m->accuracy), "f1", num(m->f1_macro), "f1_average",
                     "macro", "log_loss", num(m->log_loss));
}

json_t *evalmetrics_regression_json(const evalmetrics_regression_t *m)
{
    return json_pack("{s:I, s:o, s:o, s:o}", "n_rows", (json_int_t)m->n, "rmse", num(m->rmse), "mae",
                     num(m->mae), "r2", num(m->r2));
}
