/* SPDX-License-Identifier: Apache-2.0 */
/* Model metrics with a small per-thread cache from (model, version, arm) to series slots,
 * so the registry's mutex is taken only the first time a thread sees a version. */
#include "monitor/modelmetrics.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "monitor/metrics.h"

#define CACHE_SIZE 32

typedef struct entry {
    char key[300];
    uint32_t predictions, errors, duration;
} entry_t;

static model_metric_families_t families;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_families(void)
{
    families.predictions = metrics_family("model_predictions_total", "Rows scored, by model, version and arm.", METRIC_COUNTER,
                        NULL, 0);
    families.errors = metrics_family("model_prediction_errors_total", "Rows the model failed to score.", METRIC_COUNTER,
                        NULL, 0);
    families.duration = metrics_family("model_prediction_duration_seconds", "Time spent in the model for one request.",
                        METRIC_HISTOGRAM, metrics_latency_buckets, metrics_latency_buckets_n);
}

const model_metric_families_t *model_metrics_families(void)
{
    pthread_once(&once, init_families);
    return &families;
}

void model_metrics_labels(const char *model, const char *version, const char *arm, char *out,
                          size_t outlen)
{
    char m[260], v[260], a[64];
    metrics_escape(model, m, sizeof(m));
    if (!version) {
        snprintf(out, outlen, "model=\"%s\",", m);
        return;
    }
    metrics_escape(version, v, sizeof(v));
    metrics_escape(arm, a, sizeof(a));
    snprintf(out, outlen, "model=\"%s\",version=\"%s\",arm=\"%s\"", m, v, a);
}

static _Thread_local entry_t cache[CACHE_SIZE];
static _Thread_local unsigned next_victim;

static const entry_t *lookup(const char *model, const char *version, const char *arm)
{
    char key[300];
    snprintf(key, sizeof(key), "%s\x1f%s\x1f%s", model, version, arm);
    for (size_t i = 0; i < CACHE_SIZE; i++)
        if (cache[i].key[0] && strcmp(cache[i].key, key) == 0)
            return &cache[i];

    const model_metric_families_t *f = model_metrics_families();
    char labels[700];
    model_metrics_labels(model, version, arm, labels, sizeof(labels));
    entry_t *e = &cache[next_victim++ % CACHE_SIZE];
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->predictions = metrics_series(f->predictions, labels);
    e->errors = metrics_series(f->errors, labels);
    e->duration = metrics_series(f->duration, labels);
    return e;
}

void model_metrics_observe(const char *model, const char *version, const char *arm, size_t rows,
                           double seconds, bool failed)
{
    const entry_t *e = lookup(model, version, arm);
    metrics_counter_add(failed ? e->errors : e->predictions, rows);
    if (!failed)
        metrics_histogram_observe(families.duration, e->duration, seconds);
}
