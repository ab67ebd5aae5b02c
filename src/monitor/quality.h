/* SPDX-License-Identifier: Apache-2.0 */
/* The monitor's per-model sliding window of recent input rows, and the classification
 * scores of delayed labels. The window keeps the last `capacity` rows (values and a
 * per-value quality code); writers on any thread claim a row with one atomic increment
 * and store with relaxed atomics, so the request path takes no lock and does constant
 * work per value. The monitor loop reads the window (a row being written at that moment
 * may be half old, half new: harmless for distribution statistics). */
#ifndef AIMEDRES_MONITOR_QUALITY_H
#define AIMEDRES_MONITOR_QUALITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Quality code of one value. OK and UNSCORED are good values; UNSCORED ones (the valid
 * features of a rejected row, whose values we never decoded) take no part in drift. */
typedef enum {
    VALUE_OK = 0,
    VALUE_MISSING,
    VALUE_OUT_OF_RANGE,
    VALUE_WRONG_TYPE,
    VALUE_UNSCORED,
    VALUE_CODES
} value_code_t;

typedef struct feature_window feature_window_t;

/* capacity rows of n_features values. -EINVAL for zero sizes, -ENOMEM. Caller frees. */
int feature_window_new(size_t capacity, size_t n_features, feature_window_t **ret);
void feature_window_free(feature_window_t *w);
size_t feature_window_features(const feature_window_t *w);

/* Appends one row, evicting the oldest when full. Thread-safe, lock-free. codes NULL:
 * every value is OK except NaN (an absent optional feature), which is MISSING. */
void feature_window_push(feature_window_t *w, const float *row, const uint8_t *codes);

/* Rows currently in the window: min(rows pushed, capacity). */
size_t feature_window_rows(const feature_window_t *w);

/* Histogram of feature j's scored values (code OK, not NaN) over n_bins bins with the
 * given edges (drift_bin_of_f32: the values are float32); counts[n_bins] is overwritten. Returns the values counted. */
uint64_t feature_window_histogram(const feature_window_t *w, size_t j, const double *edges, size_t n_bins,
                                  uint64_t *counts);

/* Values in the window by code (ret_by_code[VALUE_CODES]); returns the total. Data
 * quality = 1 - (MISSING + OUT_OF_RANGE + WRONG_TYPE) / total. */
uint64_t feature_window_codes(const feature_window_t *w, uint64_t *ret_by_code);
/* 1 - bad/total, NAN for an empty window. */
double feature_window_quality(const feature_window_t *w);

/* Scores of labelled predictions. Binary (k == 2): precision/recall/F1 of the positive
 * class 1 (class_labels[1]); multiclass: macro averages over the classes present in
 * y_true or y_pred. Undefined values are NAN (n == 0). */
typedef struct quality_scores {
    size_t n;
    double accuracy, precision, recall, f1;
} quality_scores_t;

/* y_true, y_pred in [0, k); -EINVAL for a label out of range or k < 2. */
int quality_classification(const int *y_true, const int *y_pred, size_t n, size_t k, quality_scores_t *ret);

#endif
