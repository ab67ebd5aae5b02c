/* SPDX-License-Identifier: Apache-2.0 */
/* Sliding input window (lock-free ring) and delayed-label classification scores; see
 * quality.h. */
#include "monitor/quality.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model/evalmetrics.h"
#include "monitor/drift.h"

struct feature_window {
    size_t capacity, nf;
    _Atomic uint64_t pushed;  /* rows ever pushed; row r lives at slot r % capacity */
    _Atomic uint32_t *values; /* float bits, capacity * nf */
    _Atomic uint8_t *codes;   /* value_code_t, capacity * nf */
};

int feature_window_new(size_t capacity, size_t n_features, feature_window_t **ret)
{
    if (capacity == 0 || n_features == 0 || capacity > (SIZE_MAX / 8) / n_features)
        return -EINVAL;
    feature_window_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->capacity = capacity;
    w->nf = n_features;
    atomic_init(&w->pushed, 0);
    w->values = calloc(capacity * n_features, sizeof(*w->values));
    w->codes = calloc(capacity * n_features, sizeof(*w->codes));
    if (!w->values || !w->codes) {
        feature_window_free(w);
        return -ENOMEM;
    }
    *ret = w;
    return 0;
}

void feature_window_free(feature_window_t *w)
{
    if (!w)
        return;
    free(w->values);
    free(w->codes);
    free(w);
}

size_t feature_window_features(const feature_window_t *w)
{
    return w->nf;
}

void feature_window_push(feature_window_t *w, const float *row, const uint8_t *codes)
{
    uint64_t r = atomic_fetch_add_explicit(&w->pushed, 1, memory_order_relaxed);
    size_t base = (size_t)(r % w->capacity) * w->nf;
    for (size_t j = 0; j < w->nf; j++) {
        float v = row ? row[j] : NAN;
        uint32_t bits;
        memcpy(&bits, &v, sizeof(bits));
        uint8_t c = codes ? codes[j] : (isnan(v) ? VALUE_MISSING : VALUE_OK);
        atomic_store_explicit(&w->values[base + j], bits, memory_order_relaxed);
        atomic_store_explicit(&w->codes[base + j], c, memory_order_relaxed);
    }
}

size_t feature_window_rows(const feature_window_t *w)
{
    uint64_t p = atomic_load_explicit(&((feature_window_t *)w)->pushed, memory_order_relaxed);
    return p < w->capacity ? (size_t)p : w->capacity;
}

uint64_t feature_window_histogram(const feature_window_t *w, size_t j, const double *edges, size_t n_bins,
                                  uint64_t *counts)
{
    memset(counts, 0, n_bins * sizeof(*counts));
    if (j >= w->nf || n_bins == 0)
        return 0;
    size_t rows = feature_window_rows(w);
    uint64_t n = 0;
    for (size_t r = 0; r < rows; r++) {
        size_t i = r * w->nf + j;
        if (atomic_load_explicit(&w->codes[i], memory_order_relaxed) != VALUE_OK)
            continue;
        uint32_t bits = atomic_load_explicit(&w->values[i], memory_order_relaxed);
        float v;
        memcpy(&v, &bits, sizeof(v));
        if (isnan(v))
            continue;
        counts[drift_bin_of_f32(edges, n_bins, v)]++;
        n++;
    }
    return n;
}

uint64_t feature_window_codes(const feature_window_t *w, uint64_t *ret_by_code)
{
    memset(ret_by_code, 0, VALUE_CODES * sizeof(*ret_by_code));
    size_t n = feature_window_rows(w) * w->nf;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = atomic_load_explicit(&w->codes[i], memory_order_relaxed);
        ret_by_code[c < VALUE_CODES ? c : VALUE_WRONG_TYPE]++;
    }
    return n;
}

double feature_window_quality(const feature_window_t *w)
{
    uint64_t by[VALUE_CODES];
    uint64_t total = feature_window_codes(w, by);
    if (total == 0)
        return NAN;
    uint64_t bad = by[VALUE_MISSING] + by[VALUE_OUT_OF_RANGE] + by[VALUE_WRONG_TYPE];
    return 1.0 - (double)bad / (double)total;
}

int quality_classification(const int *y_true, const int *y_pred, size_t n, size_t k, quality_scores_t *ret)
{
    if (k < 2)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (y_true[i] < 0 || (size_t)y_true[i] >= k || y_pred[i] < 0 || (size_t)y_pred[i] >= k)
            return -EINVAL;
    quality_scores_t s = {.n = n, .accuracy = NAN, .precision = NAN, .recall = NAN, .f1 = NAN};
    if (n == 0) {
        *ret = s;
        return 0;
    }
    s.accuracy = evalmetrics_accuracy(y_true, y_pred, n);
    if (k == 2) {
        evalmetrics_confusion_t c = {0};
        for (size_t i = 0; i < n; i++) {
            if (y_pred[i] == 1)
                y_true[i] == 1 ? c.tp++ : c.fp++;
            else
                y_true[i] == 1 ? c.fn++ : c.tn++;
        }
        s.precision = evalmetrics_precision(&c);
        s.recall = evalmetrics_recall(&c);
        s.f1 = evalmetrics_f1(&c);
        *ret = s;
        return 0;
    }
    size_t *cm = calloc(k * k, sizeof(*cm));
    if (!cm)
        return -ENOMEM;
    int rc = evalmetrics_confusion_matrix(y_true, y_pred, n, k, cm);
    if (rc < 0) {
        free(cm);
        return rc;
    }
    double sp = 0, sr = 0, sf = 0;
    size_t present = 0;
    for (size_t c = 0; c < k; c++) {
        evalmetrics_confusion_t one = {0};
        for (size_t t = 0; t < k; t++)
            for (size_t p = 0; p < k; p++) {
                size_t v = cm[t * k + p];
                if (t == c && p == c)
                    one.tp += v;
                else if (p == c)
                    one.fp += v;
                else if (t == c)
                    one.fn += v;
            }
        if (one.tp + one.fp + one.fn == 0)
            continue; /* class absent from both y_true and y_pred */
        present++;
        sp += evalmetrics_precision(&one);
        sr += evalmetrics_recall(&one);
        sf += evalmetrics_f1(&one);
    }
    free(cm);
    s.precision = sp / (double)present;
    s.recall = sr / (double)present;
    s.f1 = sf / (double)present;
    *ret = s;
    return 0;
}
