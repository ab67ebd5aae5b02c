/* SPDX-License-Identifier: Apache-2.0 */
/* Per model version and arm: predictions, prediction errors and model latency, counted
 * on the request path without a lock (series slots cached per thread). */
#ifndef AIMEDRES_MONITOR_MODELMETRICS_H
#define AIMEDRES_MONITOR_MODELMETRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "monitor/metrics.h"

/* The three families (model_predictions_total, model_prediction_errors_total,
 * model_prediction_duration_seconds), registered on first use. */
typedef struct model_metric_families {
    metric_family_t *predictions, *errors, *duration;
} model_metric_families_t;

const model_metric_families_t *model_metrics_families(void);

/* The labels of one series, model="…",version="…",arm="…" (values escaped), or with
 * version NULL the prefix every series of the model starts with, model="…",. Cut short
 * (never overflowing) when out is too small. */
void model_metrics_labels(const char *model, const char *version, const char *arm, char *out,
                          size_t outlen);

/* rows scored (or attempted, when failed) in one call that took seconds. */
void model_metrics_observe(const char *model, const char *version, const char *arm, size_t rows,
                           double seconds, bool failed);

#endif
