/* SPDX-License-Identifier: Apache-2.0 */
/* The production monitor (seed guide §2.1): per model, input drift and data quality over
 * a sliding window of recent requests, rolling accuracy of delayed labels, prediction
 * error rate and latency; the seed's AlertConfig thresholds turn those into alerts and a
 * status HEALTHY | DEGRADED | CRITICAL; alerts go to Alertmanager and a webhook.
 *
 * DESIGN
 * - Request path (monitor_observe, monitor_observe_rejected): finds the model's entry in
 *   an append-only table with a lock-free scan (the table's mutex is taken only the first
 *   time a model is seen), then pushes each row into the model's feature window with one
 *   atomic increment and relaxed stores (monitor/quality.h). Constant work per value, no
 *   global lock, no allocation. Rows of a handle whose feature list differs from the
 *   window's are skipped; when the serving version's schema changes the loop builds a new
 *   window (the old one is retired, freed only by monitor_free, so no reader races a free).
 * - Monitor loop (one thread, every MONITOR_INTERVAL, first run at start): reads the
 *   windows, the model metrics' counters and histograms (deltas since the last run, of
 *   every (version, arm) series the model has in the metrics registry) and
 *   the feedback table, sets the gauges, evaluates the rules (monitor/alerts.h), stores a
 *   JSON snapshot per model for the API and hands deliveries to the delivery thread
 *   (monitor/alertmanager.h). Everything slow is off the request path.
 * - Readers (API handlers) take the snapshot mutex and copy. */
#ifndef AIMEDRES_MONITOR_MONITOR_H
#define AIMEDRES_MONITOR_MONITOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "model/registry.h"
#include "model/runtime.h"
#include "store/store.h"

/* The seed's AlertConfig and the windows, parsed from the configuration. */
typedef struct monitor_settings {
    int64_t interval_ms;                                  /* MONITOR_INTERVAL */
    int64_t accuracy_window_ms;                           /* ACCURACY_WINDOW */
    size_t drift_window;                                  /* DRIFT_WINDOW rows */
    double accuracy_drop_critical, accuracy_drop_warning; /* absolute drop from holdout accuracy */
    double error_rate_critical, error_rate_warning;       /* share of rows that failed */
    double latency_p95_critical, latency_p95_warning;     /* seconds */
    double drift_threshold;                               /* data_drift_score (max PSI) */
    double data_quality_threshold;                        /* minimum data_quality_score */
    size_t accuracy_min_labels;                           /* labels needed before judging */
    const char *alertmanager_url, *webhook_url;           /* borrowed from the config */
    const char *alert_instance;                           /* ALERT_INSTANCE (NULL: host:port) */
    int delivery_timeout_ms;
} monitor_settings_t;

/* Reads and checks the monitor settings; -EINVAL naming the variable in err. */
int monitor_settings_from_config(const config_t *cfg, monitor_settings_t *ret, char *err, size_t errlen);

struct monitor;

/* store and registry are borrowed and must outlive the monitor. Starts the delivery
 * thread (not the loop). */
int monitor_new(const monitor_settings_t *s, store_t *store, model_registry_t *registry, struct monitor **ret,
                char *err, size_t errlen);
/* Our externally reachable base URL ("http://host:port") for alerts' generatorURL. */
void monitor_set_base_url(struct monitor *m, const char *url);
/* Starts the loop thread (evaluates at once, then every interval). */
int monitor_start(struct monitor *m);
/* Stops the threads and frees everything. NULL is fine. */
void monitor_free(struct monitor *m);

/* Request path, after a successful predict: rows is n_rows x n_features of h's manifest
 * (NAN = absent optional feature). Thread-safe, lock-free. (Counts, errors and latency by
 * version and arm come from the model metrics, monitor/modelmetrics.h.) */
void monitor_observe(struct monitor *m, const model_handle_t *h, const float *rows, size_t n_rows);
/* Request path, for a 422: errors is the validation details array ({"feature","problem",
 * "instance"?}); missing, out_of_range and wrong_type problems count against data quality.
 * The row's other values (absent optional features included: the row is not passed) count
 * as valid. */
void monitor_observe_rejected(struct monitor *m, const char *model, const json_t *errors);

/* One evaluation now (the loop calls it; unit tests too). */
void monitor_evaluate(struct monitor *m);

/* GET /api/v1/alerts body: {"active":[...],"resolved":[...]}. New reference. */
json_t *monitor_alerts_json(struct monitor *m);
/* GET /api/v1/monitoring/{model} body, or NULL for a model the monitor does not know.
 * New reference. */
json_t *monitor_model_json(struct monitor *m, const char *model);

#endif
