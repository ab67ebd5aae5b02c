/* SPDX-License-Identifier: Apache-2.0 */
/* The production monitor: request-path observation, the evaluation loop, gauges, rules
 * and snapshots; see monitor.h for the design. */
#include "monitor/monitor.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "monitor/alertmanager.h"
#include "monitor/alerts.h"
#include "monitor/drift.h"
#include "monitor/metrics.h"
#include "monitor/modelmetrics.h"
#include "monitor/quality.h"
#include "store/feedback.h"

#define MAX_MODELS 128
#define MAX_FEATURES 256 /* features per model the monitor follows: the first ones of a wider model */
#define MAX_BINS 64
#define FEEDBACK_MAX 200000                    /* labels read per evaluation */
#define MIN_DRIFT_SAMPLES_DIV 2 /* drift needs window/2 scored values (at least 1): with 100 the
                                 * largest of a model's feature PSIs exceeds 0.1 by chance alone */
#define MIN_QUALITY_ROWS 30     /* data quality is judged on at least this many rows (or a full window) */
#define RESOLVED_RETENTION_MS (15 * 60 * 1000) /* as Prometheus re-sends resolved alerts */
#define NAME_MAX_LEN 129

typedef struct mstate {
    size_t nf;
    char **names;
    feature_window_t *win;
    _Atomic(const model_manifest_t *) checked; /* last manifest seen to match the names */
    struct mstate *retired_next;
} mstate_t;

/* Counters of one (version, arm) of the model_* series, with the values seen at the previous
 * evaluation. */
typedef struct tracked {
    char *labels; /* the series' labels, as the metrics registry holds them */
    uint32_t pred, err, dur;
    uint64_t prev_pred, prev_err, prev_buckets[METRICS_MAX_BUCKETS + 1];
    bool primed;
} tracked_t;

typedef struct mentry {
    char name[NAME_MAX_LEN];
    _Atomic(mstate_t *) state;
    _Atomic bool mismatch;
    /* loop-owned */
    tracked_t *tracked; /* every (version, arm) series the model has had, however many */
    size_t n_tracked, cap_tracked;
    uint32_t g_score, g_quality, g_psi[MAX_FEATURES], g_ks[MAX_FEATURES];
    bool gauges_made;
    uint32_t g_status, g_available;
    bool status_made;
    size_t gauges_nf;
    int64_t last_eval_ms;
    uint64_t total_pred, total_err;
} mentry_t;

/* Per (model, version): labels and accuracy gauges; loop-owned. */
typedef struct vinfo {
    struct vinfo *next;
    char model[NAME_MAX_LEN], version[NAME_MAX_LEN];
    bool regression;
    size_t k;
    char **labels;
    double baseline_accuracy;
    uint32_t g_acc, g_prec, g_rec, g_f1, g_n, g_rmse, g_mae;
    /* latest figures */
    size_t n;
    quality_scores_t scores;
    double rmse, mae; /* regression: of the window's (prediction, label) pairs; NaN without labels */
} vinfo_t;

struct monitor {
    monitor_settings_t s;
    store_t *store;
    model_registry_t *registry;
    alerts_t *alerts;
    alert_delivery_t *delivery;
    char base_url[256];

    pthread_mutex_t add_mu; /* entry creation only */
    mentry_t *entries[MAX_MODELS];
    _Atomic size_t n_entries;
    mstate_t *retired;

    pthread_mutex_t snap_mu;
    json_t *snapshots; /* model -> snapshot object */

    pthread_mutex_t loop_mu;
    pthread_cond_t loop_cv;
    pthread_t thread;
    bool started, stop;

    vinfo_t *vinfos;
    metric_family_t *f_psi, *f_ks, *f_score, *f_quality, *f_status, *f_available, *f_acc, *f_prec, *f_rec,
        *f_f1, *f_labels;
    metric_family_t *f_rmse, *f_mae;
    metric_family_t *f_pred, *f_err, *f_dur;
};

/* ---- settings ---- */

static int parse_fraction(const char *name, const char *v, double lo, double hi, double *ret, char *err,
                          size_t errlen)
{
    double d;
    if (!v || util_parse_double(v, &d) < 0 || !(d >= lo && d <= hi)) {
        snprintf(err, errlen, "%s: expected a number %g..%g, got '%.40s'", name, lo, hi, v ? v : "");
        return -EINVAL;
    }
    *ret = d;
    return 0;
}

/* Seconds as a plain number ("0.5") or a duration ("500ms", "2s"). */
static int parse_seconds(const char *name, const char *v, double *ret, char *err, size_t errlen)
{
    double d;
    int64_t ms;
    if (v && util_parse_double(v, &d) == 0 && d > 0 && d <= 3600) {
        *ret = d;
        return 0;
    }
    if (v && util_parse_duration_ms(v, &ms) == 0 && ms > 0 && ms <= 3600 * 1000) {
        *ret = (double)ms / 1000.0;
        return 0;
    }
    snprintf(err, errlen,
             "%s: expected seconds like 0.5 or a duration like 500ms, above 0 and at most 1h, got '%.40s'", name,
             v ? v : "");
    return -EINVAL;
}

int monitor_settings_from_config(const config_t *cfg, monitor_settings_t *ret, char *err, size_t errlen)
{
    monitor_settings_t s = {0};
    s.interval_ms = (int64_t)cfg->monitor_interval_s * 1000;
    s.accuracy_window_ms = (int64_t)cfg->accuracy_window_s * 1000;
    s.drift_window = (size_t)cfg->drift_window;
    s.accuracy_min_labels = (size_t)cfg->alert_accuracy_min_labels;
    s.alertmanager_url = cfg->alertmanager_url;
    s.webhook_url = cfg->alert_webhook_url;
    s.alert_instance = cfg->alert_instance;
    s.delivery_timeout_ms = cfg->alert_delivery_timeout_ms;
    if (parse_fraction("ALERT_ACCURACY_DROP_CRITICAL", cfg->alert_accuracy_drop_critical, 0, 1,
                       &s.accuracy_drop_critical, err, errlen) < 0 ||
        parse_fraction("ALERT_ACCURACY_DROP_WARNING", cfg->alert_accuracy_drop_warning, 0, 1,
                       &s.accuracy_drop_warning, err, errlen) < 0 ||
        parse_fraction("ALERT_ERROR_RATE_CRITICAL", cfg->alert_error_rate_critical, 0, 1,
                       &s.error_rate_critical, err, errlen) < 0 ||
        parse_fraction("ALERT_ERROR_RATE_WARNING", cfg->alert_error_rate_warning, 0, 1, &s.error_rate_warning,
                       err, errlen) < 0 ||
        parse_seconds("ALERT_LATENCY_P95_CRITICAL", cfg->alert_latency_p95_critical, &s.latency_p95_critical,
                      err, errlen) < 0 ||
        parse_seconds("ALERT_LATENCY_P95_WARNING", cfg->alert_latency_p95_warning, &s.latency_p95_warning,
                      err, errlen) < 0 ||
        parse_fraction("ALERT_DRIFT_THRESHOLD", cfg->alert_drift_threshold, 0, 100, &s.drift_threshold, err,
                       errlen) < 0 ||
        parse_fraction("ALERT_DATA_QUALITY_THRESHOLD", cfg->alert_data_quality_threshold, 0, 1,
                       &s.data_quality_threshold, err, errlen) < 0)
        return -EINVAL;
    *ret = s;
    return 0;
}

/* ---- entries and windows ---- */

static void mstate_free(mstate_t *st)
{
    if (!st)
        return;
    for (size_t j = 0; j < st->nf; j++)
        free(st->names[j]);
    free(st->names);
    feature_window_free(st->win);
    free(st);
}

static mstate_t *mstate_new(const model_manifest_t *mf, size_t window)
{
    size_t nf = mf->n_features < MAX_FEATURES ? mf->n_features : MAX_FEATURES;
    if (nf == 0)
        return NULL;
    if (mf->n_features > MAX_FEATURES)
        log_msg(LOG_WARNING, "monitor: drift and data quality follow the first features of this model only",
                "{s:s,s:I,s:i}", "model", mf->name, "features", (json_int_t)mf->n_features, "followed",
                MAX_FEATURES);
    mstate_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->nf = nf;
    st->names = calloc(nf, sizeof(char *));
    if (!st->names || feature_window_new(window, nf, &st->win) < 0)
        goto fail;
    for (size_t j = 0; j < nf; j++)
        if (!(st->names[j] = strdup(mf->features[j].name)))
            goto fail;
    atomic_init(&st->checked, mf);
    return st;
fail:
    mstate_free(st);
    return NULL;
}

/* The window follows the first MAX_FEATURES features of a wider model (rows are read with
 * the manifest's stride), so a model matches on those. */
static bool names_match(const mstate_t *st, const model_manifest_t *mf)
{
    size_t nf = mf->n_features < MAX_FEATURES ? mf->n_features : MAX_FEATURES;
    if (nf != st->nf)
        return false;
    for (size_t j = 0; j < nf; j++)
        if (strcmp(st->names[j], mf->features[j].name) != 0)
            return false;
    return true;
}

static mentry_t *find_entry(struct monitor *m, const char *name)
{
    size_t n = atomic_load_explicit(&m->n_entries, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->entries[i]->name, name) == 0)
            return m->entries[i];
    return NULL;
}

/* Finds or creates the entry of model name (creation under add_mu, published with a
 * release store so lock-free readers see a complete entry); mf (NULL: none loads) gives
 * a new entry its feature window. */
static mentry_t *entry_named(struct monitor *m, const char *name, const model_manifest_t *mf)
{
    mentry_t *e = find_entry(m, name);
    if (e || strlen(name) >= NAME_MAX_LEN)
        return e;
    pthread_mutex_lock(&m->add_mu);
    e = find_entry(m, name);
    size_t n = atomic_load(&m->n_entries);
    if (!e && n < MAX_MODELS && (e = calloc(1, sizeof(*e)))) {
        snprintf(e->name, sizeof(e->name), "%s", name);
        atomic_init(&e->state, mf ? mstate_new(mf, m->s.drift_window) : NULL);
        m->entries[n] = e;
        atomic_store_explicit(&m->n_entries, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->add_mu);
    return e;
}

static mentry_t *entry_for(struct monitor *m, const model_manifest_t *mf)
{
    return entry_named(m, mf->name, mf);
}

void monitor_observe(struct monitor *m, const model_handle_t *h, const float *rows, size_t n_rows)
{
    if (!m || !h)
        return;
    const model_manifest_t *mf = model_handle_manifest(h);
    mentry_t *e = entry_for(m, mf);
    if (!e)
        return;
    mstate_t *st = atomic_load_explicit(&e->state, memory_order_acquire);
    if (!st)
        return;
    if (atomic_load_explicit(&st->checked, memory_order_relaxed) != mf) {
        if (!names_match(st, mf)) {
            atomic_store(&e->mismatch, true);
            return;
        }
        atomic_store_explicit(&st->checked, mf, memory_order_relaxed);
    }
    size_t stride = mf->n_features;
    size_t first = n_rows > m->s.drift_window ? n_rows - m->s.drift_window : 0;
    for (size_t i = first; i < n_rows; i++)
        feature_window_push(st->win, rows + i * stride, NULL);
}

static uint8_t problem_code(const char *p)
{
    if (!p)
        return VALUE_UNSCORED;
    if (strcmp(p, "missing") == 0)
        return VALUE_MISSING;
    if (strcmp(p, "out_of_range") == 0)
        return VALUE_OUT_OF_RANGE;
    if (strcmp(p, "wrong_type") == 0)
        return VALUE_WRONG_TYPE;
    return VALUE_UNSCORED;
}

void monitor_observe_rejected(struct monitor *m, const char *model, const json_t *errors)
{
    if (!m || !model || !json_is_array(errors))
        return;
    mentry_t *e = find_entry(m, model);
    if (!e) {
        int err = 0;
        model_handle_t *h = model_registry_acquire(m->registry, model, NULL, &err);
        if (h)
            e = entry_for(m, model_handle_manifest(h));
        model_handle_unref(h);
        if (!e)
            return;
    }
    mstate_t *st = atomic_load_explicit(&e->state, memory_order_acquire);
    if (!st)
        return;
    uint8_t codes[MAX_FEATURES];
    json_int_t cur = -1;
    bool any = false;
    size_t n = json_array_size(errors);
    for (size_t i = 0; i <= n; i++) {
        const json_t *it = i < n ? json_array_get(errors, i) : NULL;
        json_int_t inst = it && json_is_integer(json_object_get(it, "instance"))
                              ? json_integer_value(json_object_get(it, "instance"))
                              : 0;
        if (i == n || inst != cur) {
            if (any)
                feature_window_push(st->win, NULL, codes);
            if (i == n)
                break;
            memset(codes, VALUE_UNSCORED, sizeof(codes));
            cur = inst;
            any = false;
        }
        uint8_t c = problem_code(json_string_value(json_object_get(it, "problem")));
        if (c == VALUE_UNSCORED)
            continue;
        const char *feat = json_string_value(json_object_get(it, "feature"));
        if (!feat) { /* the whole row was unusable */
            memset(codes, c, st->nf);
            any = true;
            continue;
        }
        for (size_t j = 0; j < st->nf; j++)
            if (strcmp(st->names[j], feat) == 0) {
                codes[j] = c;
                any = true;
                break;
            }
    }
}

/* ---- evaluation ---- */

static uint32_t series(metric_family_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static uint32_t series(metric_family_t *f, const char *fmt, ...)
{
    char labels[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(labels, sizeof(labels), fmt, ap);
    va_end(ap);
    return metrics_series(f, labels);
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static void free_vinfo(vinfo_t *v)
{
    for (size_t i = 0; i < v->k; i++)
        free(v->labels[i]);
    free(v->labels);
    free(v);
}

static vinfo_t *vinfo_get(struct monitor *m, const char *model, const char *version)
{
    for (vinfo_t *v = m->vinfos; v; v = v->next)
        if (strcmp(v->model, model) == 0 && strcmp(v->version, version) == 0)
            return v;
    if (strlen(model) >= NAME_MAX_LEN || strlen(version) >= NAME_MAX_LEN)
        return NULL;
    json_t *mf = NULL;
    if (store_feedback_manifest(m->store, model, version, &mf) < 0)
        return NULL;
    vinfo_t *v = calloc(1, sizeof(*v));
    if (!v) {
        json_decref(mf);
        return NULL;
    }
    snprintf(v->model, sizeof(v->model), "%s", model);
    snprintf(v->version, sizeof(v->version), "%s", version);
    const char *task = json_string_value(json_object_get(mf, "task"));
    v->regression = task && strcmp(task, "regression") == 0;
    json_t *labels = json_object_get(mf, "class_labels");
    v->k = json_array_size(labels);
    v->labels = calloc(v->k ? v->k : 1, sizeof(char *));
    for (size_t i = 0; v->labels && i < v->k; i++) {
        const char *l = json_string_value(json_array_get(labels, i));
        v->labels[i] = strdup(l ? l : "");
    }
    if (!v->labels)
        v->k = 0;
    json_t *acc = json_object_get(json_object_get(json_object_get(mf, "metrics"), "holdout"), "accuracy");
    v->baseline_accuracy = json_is_number(acc) ? json_number_value(acc) : NAN;
    json_decref(mf);
    char em[260], ev[260];
    metrics_escape(model, em, sizeof(em));
    metrics_escape(version, ev, sizeof(ev));
    v->g_n = series(m->f_labels, "model=\"%s\",version=\"%s\"", em, ev);
    if (!v->regression) {
        v->g_acc = series(m->f_acc, "model=\"%s\",version=\"%s\"", em, ev);
        v->g_prec = series(m->f_prec, "model=\"%s\",version=\"%s\"", em, ev);
        v->g_rec = series(m->f_rec, "model=\"%s\",version=\"%s\"", em, ev);
        v->g_f1 = series(m->f_f1, "model=\"%s\",version=\"%s\"", em, ev);
    } else {
        v->g_rmse = series(m->f_rmse, "model=\"%s\",version=\"%s\"", em, ev);
        v->g_mae = series(m->f_mae, "model=\"%s\",version=\"%s\"", em, ev);
    }
    v->next = m->vinfos;
    m->vinfos = v;
    return v;
}

static int label_index(const vinfo_t *v, const json_t *l)
{
    if (json_is_integer(l))
        return json_integer_value(l) >= 0 && (size_t)json_integer_value(l) < v->k ? (int)json_integer_value(l)
                                                                                  : -1;
    const char *s = json_string_value(l);
    for (size_t i = 0; s && i < v->k; i++)
        if (strcmp(v->labels[i], s) == 0)
            return (int)i;
    return -1;
}

/* Rolling accuracy of every labelled version from the feedback window. */
static void evaluate_accuracy(struct monitor *m, int64_t now)
{
    for (vinfo_t *v = m->vinfos; v; v = v->next)
        v->n = 0;
    json_t *rows = NULL;
    if (store_feedback_window(m->store, now - m->s.accuracy_window_ms, FEEDBACK_MAX, &rows) < 0)
        return;
    size_t n = json_array_size(rows);
    int *yt = malloc((n ? n : 1) * sizeof(int)), *yp = malloc((n ? n : 1) * sizeof(int));
    char *done = calloc(n ? n : 1, 1);
    if (!yt || !yp || !done)
        goto out;
    /* group rows by (model, version): one pass per distinct version */
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        const char *model = json_string_value(json_array_get(json_array_get(rows, i), 0));
        const char *version = json_string_value(json_array_get(json_array_get(rows, i), 1));
        vinfo_t *v = model && version ? vinfo_get(m, model, version) : NULL;
        size_t cnt = 0;
        double se = 0, ae = 0; /* regression: sums of squared and absolute errors */
        for (size_t r = i; r < n; r++) {
            json_t *row = json_array_get(rows, r);
            if (done[r] || strcmp(json_string_value(json_array_get(row, 0)), model ? model : "") ||
                strcmp(json_string_value(json_array_get(row, 1)), version ? version : ""))
                continue;
            done[r] = 1;
            if (!v)
                continue;
            if (v->regression) {
                const json_t *pj = json_array_get(row, 2), *lj = json_array_get(row, 3);
                if (!json_is_number(pj) || !json_is_number(lj))
                    continue;
                double d = json_number_value(pj) - json_number_value(lj);
                if (!isfinite(d))
                    continue;
                se += d * d;
                ae += fabs(d);
                cnt++;
                continue;
            }
            int t = label_index(v, json_array_get(row, 3)), p = label_index(v, json_array_get(row, 2));
            if (t < 0 || p < 0)
                continue;
            yt[cnt] = t;
            yp[cnt] = p;
            cnt++;
        }
        if (!v)
            continue;
        v->n = cnt;
        if (v->regression) {
            v->rmse = cnt ? sqrt(se / (double)cnt) : NAN;
            v->mae = cnt ? ae / (double)cnt : NAN;
        }
        if (!v->regression && v->k >= 2)
            quality_classification(yt, yp, cnt, v->k, &v->scores);
    }
out:
    for (vinfo_t *v = m->vinfos; v; v = v->next) {
        metrics_gauge_set(v->g_n, (double)v->n);
        if (v->regression) {
            if (v->n == 0)
                v->rmse = v->mae = NAN;
            metrics_gauge_set(v->g_rmse, v->rmse);
            metrics_gauge_set(v->g_mae, v->mae);
            continue;
        }
        if (v->n == 0)
            v->scores = (quality_scores_t){0, NAN, NAN, NAN, NAN};
        metrics_gauge_set(v->g_acc, v->scores.accuracy);
        metrics_gauge_set(v->g_prec, v->scores.precision);
        metrics_gauge_set(v->g_rec, v->scores.recall);
        metrics_gauge_set(v->g_f1, v->scores.f1);
    }
    free(yt);
    free(yp);
    free(done);
    json_decref(rows);
}

typedef struct {
    char **labels;
    size_t n, cap;
} label_list_t;

static void collect_labels(const char *labels, void *arg)
{
    label_list_t *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->labels, cap * sizeof(*p));
        if (!p)
            return;
        l->labels = p;
        l->cap = cap;
    }
    if ((l->labels[l->n] = strdup(labels)))
        l->n++;
}

/* Follows every model_predictions_total series of the model not followed yet: each
 * (version, arm) that has served, however many versions and rollouts the process has seen.
 * The metrics registry never removes a series, so the list only grows. */
static void track_new_series(struct monitor *m, mentry_t *e)
{
    char prefix[280];
    model_metrics_labels(e->name, NULL, NULL, prefix, sizeof(prefix));
    label_list_t l = {0};
    metrics_series_each(m->f_pred, prefix, collect_labels, &l);
    for (size_t i = 0; i < l.n; i++) {
        bool known = false;
        for (size_t k = 0; k < e->n_tracked && !known; k++)
            known = strcmp(e->tracked[k].labels, l.labels[i]) == 0;
        if (known) {
            free(l.labels[i]);
            continue;
        }
        if (e->n_tracked == e->cap_tracked) {
            size_t cap = e->cap_tracked ? 2 * e->cap_tracked : 8;
            tracked_t *t = realloc(e->tracked, cap * sizeof(*t));
            if (!t) { /* the next evaluation tries again */
                free(l.labels[i]);
                continue;
            }
            e->tracked = t;
            e->cap_tracked = cap;
        }
        tracked_t *t = &e->tracked[e->n_tracked++];
        memset(t, 0, sizeof(*t));
        t->labels = l.labels[i]; /* owned now */
        t->pred = metrics_series(m->f_pred, t->labels);
        t->err = metrics_series(m->f_err, t->labels);
        t->dur = metrics_series(m->f_dur, t->labels);
    }
    free(l.labels);
}

/* Creates the (version, arm) series of the serving version, so /metrics shows it (at 0)
 * before its first request. */
static void show_stable_series(struct monitor *m, mentry_t *e, const char *version)
{
    char labels[700];
    model_metrics_labels(e->name, version, "stable", labels, sizeof(labels));
    metrics_series(m->f_pred, labels);
    metrics_series(m->f_err, labels);
    metrics_series(m->f_dur, labels);
}

/* Quantile of bucket counts (bounds: metrics_latency_buckets, last = +Inf) as
 * metrics_histogram_quantile / Prometheus' histogram_quantile compute it. */
static double bucket_quantile(const uint64_t *counts, double q)
{
    size_t nb = metrics_latency_buckets_n;
    uint64_t total = 0;
    for (size_t b = 0; b <= nb; b++)
        total += counts[b];
    if (total == 0)
        return NAN;
    double rank = q * (double)total;
    uint64_t cum = 0;
    for (size_t b = 0; b <= nb; b++) {
        uint64_t prev = cum;
        cum += counts[b];
        if ((double)cum >= rank && counts[b]) {
            if (b == nb)
                return metrics_latency_buckets[nb - 1];
            double lo = b == 0 ? 0.0 : metrics_latency_buckets[b - 1], hi = metrics_latency_buckets[b];
            return lo + (hi - lo) * (rank - (double)prev) / (double)counts[b];
        }
    }
    return metrics_latency_buckets[nb - 1];
}

typedef struct figures {
    uint64_t d_pred, d_err;
    double error_rate, p50, p95, p99;
    double drift_score, quality;
    json_t *features;
    uint64_t by_code[VALUE_CODES], values;
    size_t window_rows;
    const char *load_error; /* the registered stable version does not load, nothing serves */
} figures_t;

/* Prediction counters and latency over the interval, from the model metrics' deltas.
 * Histogram slot layout (metrics.c): bucket b at slot + b, +Inf at slot + n_buckets. */
static void evaluate_traffic(struct monitor *m, mentry_t *e, const char *stable_version, figures_t *f)
{
    if (stable_version)
        show_stable_series(m, e, stable_version);
    track_new_series(m, e);
    uint64_t delta[METRICS_MAX_BUCKETS + 1] = {0};
    size_t nb = metrics_latency_buckets_n;
    for (size_t i = 0; i < e->n_tracked; i++) {
        tracked_t *t = &e->tracked[i];
        uint64_t p = metrics_counter_value(t->pred), er = metrics_counter_value(t->err);
        uint64_t b[METRICS_MAX_BUCKETS + 1];
        for (size_t k = 0; k <= nb; k++)
            b[k] = t->dur < METRICS_MAX_SLOTS ? metrics_counter_value(t->dur + (uint32_t)k) : 0;
        /* the first look counts everything since start: the period starts at process start */
        f->d_pred += p - t->prev_pred;
        f->d_err += er - t->prev_err;
        for (size_t k = 0; k <= nb; k++)
            delta[k] += b[k] - t->prev_buckets[k];
        t->prev_pred = p;
        t->prev_err = er;
        memcpy(t->prev_buckets, b, sizeof(b));
        t->primed = true;
    }
    e->total_pred += f->d_pred;
    e->total_err += f->d_err;
    f->error_rate = f->d_pred + f->d_err ? (double)f->d_err / (double)(f->d_pred + f->d_err) : NAN;
    f->p50 = bucket_quantile(delta, 0.50);
    f->p95 = bucket_quantile(delta, 0.95);
    f->p99 = bucket_quantile(delta, 0.99);
}

static void evaluate_inputs(struct monitor *m, mentry_t *e, const model_manifest_t *mf, figures_t *f)
{
    f->drift_score = NAN;
    f->quality = NAN;
    f->features = json_array();
    mstate_t *st = atomic_load(&e->state);
    /* the window follows the serving version's schema; rows of another schema (a canary
     * with other features) were flagged and skipped by monitor_observe */
    atomic_store(&e->mismatch, false);
    if (mf && (!st || !names_match(st, mf))) {
        mstate_t *fresh = mstate_new(mf, m->s.drift_window);
        if (fresh) {
            atomic_store(&e->state, fresh);
            if (st) { /* readers may still hold it: retire, free at the end */
                st->retired_next = m->retired;
                m->retired = st;
            }
            st = fresh;
            /* the per-feature series are named anew: the old names' last figures go to NaN
             * (a feature the new schema still has gets its series back below) */
            for (size_t j = 0; j < e->gauges_nf; j++) {
                metrics_gauge_set(e->g_psi[j], NAN);
                metrics_gauge_set(e->g_ks[j], NAN);
            }
            e->gauges_nf = 0;
        }
    }
    if (!st)
        return;
    char em[260];
    metrics_escape(e->name, em, sizeof(em));
    if (!e->gauges_made) {
        e->g_score = series(m->f_score, "model=\"%s\"", em);
        e->g_quality = series(m->f_quality, "model=\"%s\"", em);
        e->gauges_made = true;
    }
    f->window_rows = feature_window_rows(st->win);
    f->values = feature_window_codes(st->win, f->by_code);
    /* a couple of rows (a post-deployment `verify`'s smoke predictions, which leave optional
     * features out) say nothing about a model's inputs: NaN until there are enough */
    size_t min_rows = m->s.drift_window < MIN_QUALITY_ROWS ? (size_t)m->s.drift_window : MIN_QUALITY_ROWS;
    f->quality = f->window_rows >= min_rows ? feature_window_quality(st->win) : NAN;
    uint64_t min_samples = m->s.drift_window / MIN_DRIFT_SAMPLES_DIV;
    if (min_samples == 0)
        min_samples = 1;
    for (size_t j = 0; mf && j < st->nf && j < mf->n_features; j++) {
        const model_feature_t *feat = &mf->features[j];
        if (j >= e->gauges_nf) {
            char ef[260];
            metrics_escape(st->names[j], ef, sizeof(ef));
            e->g_psi[j] = series(m->f_psi, "model=\"%s\",feature=\"%s\"", em, ef);
            e->g_ks[j] = series(m->f_ks, "model=\"%s\",feature=\"%s\"", em, ef);
            e->gauges_nf = j + 1;
        }
        double psi = NAN, ks = NAN;
        uint64_t n = 0;
        if (feat->n_bins > 0 && feat->n_bins <= MAX_BINS) {
            uint64_t counts[MAX_BINS];
            n = feature_window_histogram(st->win, j, feat->bin_edges, feat->n_bins, counts);
            if (n >= min_samples) {
                psi = drift_psi(counts, feat->bin_probs, feat->n_bins);
                ks = drift_ks(counts, feat->bin_probs, feat->n_bins);
            }
        }
        metrics_gauge_set(e->g_psi[j], psi);
        metrics_gauge_set(e->g_ks[j], ks);
        if (isfinite(psi) && !(psi <= f->drift_score))
            f->drift_score = psi;
        json_array_append_new(f->features,
                              json_pack("{s:s,s:o,s:o,s:I,s:b}", "name", st->names[j], "psi", num(psi), "ks",
                                        num(ks), "samples", (json_int_t)n, "baseline", feat->n_bins > 0));
    }
    metrics_gauge_set(e->g_score, f->drift_score);
    metrics_gauge_set(e->g_quality, f->quality);
}

typedef struct rule_ctx {
    struct monitor *m;
    int64_t now;
    json_t *transitions; /* webhook payload alerts */
} rule_ctx_t;

static void rule(rule_ctx_t *rc, const char *name, alert_severity_t sev, const char *model,
                 const char *version, bool active, double value, double threshold, const char *summary,
                 const char *description)
{
    alert_spec_t s = {name, sev, "model_performance", model, version, summary, description};
    alert_transition_t t = alerts_update(rc->m->alerts, &s, active, value, threshold, rc->now);
    if (t != ALERT_UNCHANGED) {
        log_msg(t == ALERT_FIRED ? LOG_WARNING : LOG_INFO,
                t == ALERT_FIRED ? "alert firing" : "alert resolved", "{s:s,s:s,s:s,s:s}", "alert", name,
                "severity", alert_severity_name(sev), "model", model, "version", version ? version : "");
        json_t *j = alerts_spec_json(rc->m->alerts, &s, rc->now);
        if (j)
            json_array_append_new(rc->transitions, j);
    }
}

static void rules_for(rule_ctx_t *rc, mentry_t *e, const figures_t *f)
{
    const monitor_settings_t *s = &rc->m->s;
    char sum[512], desc[768];
    const char *mn = e->name;
    /* the stable version is registered but does not load, and nothing else serves: every
     * request is a 503, with or without traffic to show it */
    snprintf(sum, sizeof(sum), "Model %s is unavailable", mn);
    snprintf(desc, sizeof(desc),
             "The stable version of model %s can not be loaded (%s); its predictions are refused with 503", mn,
             f->load_error ? f->load_error : "");
    rule(rc, "ModelUnavailable", ALERT_CRITICAL, mn, NULL, f->load_error != NULL, f->load_error ? 0.0 : 1.0, 1.0,
         sum, desc);
    /* error rate */
    const struct {
        alert_severity_t sev;
        double er, lat;
    } lv[2] = {{ALERT_CRITICAL, s->error_rate_critical, s->latency_p95_critical},
               {ALERT_WARNING, s->error_rate_warning, s->latency_p95_warning}};
    for (int i = 0; i < 2; i++) {
        snprintf(sum, sizeof(sum), "Model %s prediction error rate is high", mn);
        snprintf(desc, sizeof(desc), "Error rate of model %s is %.4f over the last interval (threshold %.4f)",
                 mn, f->error_rate, lv[i].er);
        rule(rc, "ModelErrorRateHigh", lv[i].sev, mn, NULL,
             isfinite(f->error_rate) && f->error_rate > lv[i].er, f->error_rate, lv[i].er, sum, desc);
        snprintf(sum, sizeof(sum), "Model %s prediction latency is high", mn);
        snprintf(desc, sizeof(desc),
                 "95th percentile prediction latency of model %s is %.4fs (threshold %.4fs)", mn, f->p95,
                 lv[i].lat);
        rule(rc, "ModelPredictionLatencyHigh", lv[i].sev, mn, NULL, isfinite(f->p95) && f->p95 > lv[i].lat,
             f->p95, lv[i].lat, sum, desc);
    }
    snprintf(sum, sizeof(sum), "Data drift detected for model %s", mn);
    snprintf(desc, sizeof(desc), "Drift score (max feature PSI) of model %s is %.4f (threshold %.4f)", mn,
             f->drift_score, s->drift_threshold);
    rule(rc, "DataDriftDetected", ALERT_WARNING, mn, NULL,
         isfinite(f->drift_score) && f->drift_score > s->drift_threshold, f->drift_score, s->drift_threshold,
         sum, desc);
    snprintf(sum, sizeof(sum), "Data quality of model %s inputs is low", mn);
    snprintf(desc, sizeof(desc), "Share of valid input values for model %s is %.4f (minimum %.4f)", mn,
             f->quality, s->data_quality_threshold);
    rule(rc, "DataQualityLow", ALERT_WARNING, mn, NULL,
         isfinite(f->quality) && f->quality < s->data_quality_threshold, f->quality,
         s->data_quality_threshold, sum, desc);
    for (vinfo_t *v = rc->m->vinfos; v; v = v->next) {
        if (strcmp(v->model, mn) != 0 || v->regression)
            continue;
        double drop = v->baseline_accuracy - v->scores.accuracy;
        bool judged = v->n >= s->accuracy_min_labels && isfinite(drop);
        const struct {
            alert_severity_t sev;
            double t;
        } al[2] = {{ALERT_CRITICAL, s->accuracy_drop_critical}, {ALERT_WARNING, s->accuracy_drop_warning}};
        for (int i = 0; i < 2; i++) {
            snprintf(sum, sizeof(sum), "Model %s %s accuracy dropped", mn, v->version);
            snprintf(desc, sizeof(desc),
                     "Accuracy of model %s version %s is %.4f on %zu labels, %.4f below its holdout accuracy "
                     "%.4f (threshold %.4f)",
                     mn, v->version, v->scores.accuracy, v->n, drop, v->baseline_accuracy, al[i].t);
            rule(rc, "ModelAccuracyDrop", al[i].sev, mn, v->version, judged && drop > al[i].t,
                 v->scores.accuracy, v->baseline_accuracy - al[i].t, sum, desc);
        }
    }
}

static const char *status_name(int sev)
{
    return sev >= ALERT_CRITICAL ? "CRITICAL" : sev == ALERT_WARNING ? "DEGRADED" : "HEALTHY";
}

static json_t *snapshot(struct monitor *m, mentry_t *e, const figures_t *f, int64_t start, int64_t now,
                        int sev)
{
    char s_iso[ISO8601_LEN], e_iso[ISO8601_LEN];
    util_iso8601(start, s_iso);
    util_iso8601(now, e_iso);
    json_t *acc = json_array();
    for (vinfo_t *v = m->vinfos; v; v = v->next) {
        if (strcmp(v->model, e->name) != 0)
            continue;
        json_array_append_new(
            acc,
            json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "version", v->version, "labels",
                      (json_int_t)v->n, "accuracy", num(v->regression ? NAN : v->scores.accuracy),
                      "precision", num(v->regression ? NAN : v->scores.precision), "recall",
                      num(v->regression ? NAN : v->scores.recall), "f1",
                      num(v->regression ? NAN : v->scores.f1), "baseline_accuracy", num(v->baseline_accuracy),
                      "rmse", num(v->regression ? v->rmse : NAN), "mae", num(v->regression ? v->mae : NAN)));
    }
    json_t *alerts = alerts_model_counts(m->alerts, e->name);
    json_t *list = alerts_list_json(m->alerts, e->name, now);
    json_object_set(alerts, "active", json_object_get(list, "active"));
    json_decref(list);
    return json_pack(
        "{s:s,s:s,s:{s:s,s:s,s:f},s:{s:I,s:I,s:I,s:I},s:o,s:{s:o,s:o,s:o},s:{s:I,s:o,s:s},s:o,"
        "s:{s:o,s:f,s:I,s:I,s:O},s:{s:o,s:f,s:I,s:I,s:I,s:I},s:o,s:{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}}",
        "model", e->name, "status", status_name(sev), "period", "start", s_iso, "end", e_iso, "seconds",
        (double)(now - start) / 1000.0, "predictions", "interval", (json_int_t)f->d_pred, "errors",
        (json_int_t)f->d_err, "total", (json_int_t)e->total_pred, "errors_total", (json_int_t)e->total_err,
        "error_rate", num(f->error_rate), "latency_seconds", "p50", num(f->p50), "p95", num(f->p95), "p99",
        num(f->p99), "accuracy_window", "seconds", (json_int_t)(m->s.accuracy_window_ms / 1000), "versions",
        acc, "by", "feedback received time", "alerts", alerts, "drift", "score", num(f->drift_score),
        "threshold", m->s.drift_threshold, "window_rows", (json_int_t)f->window_rows, "window_capacity",
        (json_int_t)m->s.drift_window, "features", f->features, "data_quality", "score", num(f->quality),
        "threshold", m->s.data_quality_threshold, "values", (json_int_t)f->values, "missing",
        (json_int_t)f->by_code[VALUE_MISSING], "out_of_range", (json_int_t)f->by_code[VALUE_OUT_OF_RANGE],
        "wrong_type", (json_int_t)f->by_code[VALUE_WRONG_TYPE], "evaluated_at", json_string(e_iso),
        "thresholds", "accuracy_drop_critical", m->s.accuracy_drop_critical, "accuracy_drop_warning",
        m->s.accuracy_drop_warning, "error_rate_critical", m->s.error_rate_critical, "error_rate_warning",
        m->s.error_rate_warning, "latency_p95_critical_seconds", m->s.latency_p95_critical,
        "latency_p95_warning_seconds", m->s.latency_p95_warning, "drift", m->s.drift_threshold,
        "data_quality", m->s.data_quality_threshold, "accuracy_min_labels",
        (json_int_t)m->s.accuracy_min_labels);
}

/* The load error of model name in model_registry_failed_json's list, or NULL. */
static const char *load_error(const json_t *failed, const char *name)
{
    size_t i;
    const json_t *it;
    json_array_foreach(failed, i, it)
    {
        const char *model = json_string_value(json_object_get(it, "model"));
        if (model && strcmp(model, name) == 0)
            return json_string_value(json_object_get(it, "error"));
    }
    return NULL;
}

void monitor_evaluate(struct monitor *m)
{
    int64_t now = util_now_ms();
    /* every served model gets an entry, so a silent model is reported too */
    json_t *served = model_registry_list_json(m->registry);
    size_t i;
    json_t *it;
    json_array_foreach(served, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        if (!name || find_entry(m, name))
            continue;
        int err = 0;
        model_handle_t *h = model_registry_acquire(m->registry, name, NULL, &err);
        if (h)
            entry_for(m, model_handle_manifest(h));
        model_handle_unref(h);
    }
    json_decref(served);
    /* and every model whose stable version does not load (nothing of it serves) */
    json_t *failed = model_registry_failed_json(m->registry);
    json_array_foreach(failed, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "model"));
        if (name)
            entry_named(m, name, NULL);
    }

    evaluate_accuracy(m, now);
    rule_ctx_t rc = {m, now, json_array()};
    size_t n = atomic_load_explicit(&m->n_entries, memory_order_acquire);
    json_t *snaps = json_object();
    for (size_t k = 0; k < n; k++) {
        mentry_t *e = m->entries[k];
        int err = 0;
        model_handle_t *h = model_registry_acquire(m->registry, e->name, NULL, &err);
        const model_manifest_t *mf = h ? model_handle_manifest(h) : NULL;
        figures_t f = {0};
        if (!h)
            f.load_error = load_error(failed, e->name);
        evaluate_traffic(m, e, mf ? mf->version : NULL, &f);
        evaluate_inputs(m, e, mf, &f);
        rules_for(&rc, e, &f);
        int sev = alerts_model_severity(m->alerts, e->name);
        if (!e->status_made) {
            char em[260];
            metrics_escape(e->name, em, sizeof(em));
            e->g_status = series(m->f_status, "model=\"%s\"", em);
            e->g_available = series(m->f_available, "model=\"%s\"", em);
            e->status_made = true;
        }
        metrics_gauge_set(e->g_status, (double)sev);
        /* 1 serving, 0 its stable version does not load, NaN no longer registered */
        metrics_gauge_set(e->g_available, h ? 1.0 : f.load_error ? 0.0 : NAN);
        int64_t start = e->last_eval_ms ? e->last_eval_ms : now - m->s.interval_ms;
        json_t *snap = snapshot(m, e, &f, start, now, sev);
        json_object_set_new(snap, "available", json_boolean(h != NULL));
        if (f.load_error)
            json_object_set_new(snap, "load_error", json_string(f.load_error));
        json_object_set_new(snaps, e->name, snap);
        json_decref(f.features);
        e->last_eval_ms = now;
        model_handle_unref(h);
    }
    pthread_mutex_lock(&m->snap_mu);
    json_decref(m->snapshots);
    m->snapshots = snaps;
    json_decref(failed);
    pthread_mutex_unlock(&m->snap_mu);

    if (alert_delivery_has(m->delivery, DELIVERY_ALERTMANAGER)) {
        /* firing alerts stay valid for 4 intervals (at least 3 min) unless re-sent, as
         * Prometheus does, so Alertmanager resolves them if we go away */
        int64_t valid = 4 * m->s.interval_ms < 180000 ? 180000 : 4 * m->s.interval_ms;
        json_t *p = alerts_alertmanager_payload(m->alerts, now, valid, m->base_url[0] ? m->base_url : NULL);
        if (p) {
            alert_delivery_send(m->delivery, DELIVERY_ALERTMANAGER, json_dumps(p, JSON_COMPACT));
            json_decref(p);
        }
    }
    if (json_array_size(rc.transitions) > 0 && alert_delivery_has(m->delivery, DELIVERY_WEBHOOK)) {
        bool firing = false;
        json_array_foreach(rc.transitions, i, it)
        {
            firing |= strcmp(json_string_value(json_object_get(it, "status")), "firing") == 0;
        }
        json_t *body = json_pack("{s:s,s:s,s:s,s:O}", "version", "4", "receiver", "aimedres", "status",
                                 firing ? "firing" : "resolved", "alerts", rc.transitions);
        alert_delivery_send(m->delivery, DELIVERY_WEBHOOK, json_dumps(body, JSON_COMPACT));
        json_decref(body);
    }
    json_decref(rc.transitions);
}

/* ---- lifecycle and readers ---- */

static void *loop_main(void *arg)
{
    struct monitor *m = arg;
    pthread_mutex_lock(&m->loop_mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->loop_mu);
        monitor_evaluate(m);
        pthread_mutex_lock(&m->loop_mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += m->s.interval_ms / 1000;
        ts.tv_nsec += (m->s.interval_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!m->stop && pthread_cond_timedwait(&m->loop_cv, &m->loop_mu, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&m->loop_mu);
    return NULL;
}

int monitor_new(const monitor_settings_t *s, store_t *store, model_registry_t *registry, struct monitor **ret,
                char *err, size_t errlen)
{
    struct monitor *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->s = *s;
    if (m->s.drift_window == 0)
        m->s.drift_window = 1000;
    if (m->s.interval_ms <= 0)
        m->s.interval_ms = 300000;
    m->store = store;
    m->registry = registry;
    pthread_mutex_init(&m->add_mu, NULL);
    pthread_mutex_init(&m->snap_mu, NULL);
    pthread_mutex_init(&m->loop_mu, NULL);
    pthread_cond_init(&m->loop_cv, NULL);
    m->snapshots = json_object();
    int rc = alerts_new(RESOLVED_RETENTION_MS, &m->alerts);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    alert_delivery_opts_t o = {
        .alertmanager_url = s->alertmanager_url,
        .webhook_url = s->webhook_url,
        .timeout_ms = s->delivery_timeout_ms > 0 ? s->delivery_timeout_ms : 5000,
        .max_attempts = 5,
        .backoff_initial_ms = 500,
        .backoff_max_ms = 30000,
        .queue_max = 64,
    };
    if ((rc = alert_delivery_new(&o, &m->delivery, err, errlen)) < 0)
        goto fail;
    m->f_psi = metrics_family("feature_drift_psi",
                              "Population stability index of a feature's recent inputs (sliding window) "
                              "against the training baseline bins.",
                              METRIC_GAUGE, NULL, 0);
    m->f_ks = metrics_family("feature_drift_ks",
                             "Kolmogorov-Smirnov statistic between the binned CDFs of recent inputs and "
                             "the training baseline.",
                             METRIC_GAUGE, NULL, 0);
    m->f_score = metrics_family("data_drift_score", "Model data drift score: the largest feature PSI.",
                                METRIC_GAUGE, NULL, 0);
    m->f_quality = metrics_family(
        "data_quality_score", "1 - share of missing, out-of-range or wrong-type input values in the window.",
        METRIC_GAUGE, NULL, 0);
    m->f_status = metrics_family("model_status", "Model status: 0 HEALTHY, 1 DEGRADED, 2 CRITICAL.",
                                 METRIC_GAUGE, NULL, 0);
    m->f_available = metrics_family("model_available",
                                    "1 when a version of the model serves, 0 when its stable version does not load.",
                                    METRIC_GAUGE, NULL, 0);
    m->f_acc = metrics_family("model_accuracy", "Accuracy of labelled predictions in ACCURACY_WINDOW.",
                              METRIC_GAUGE, NULL, 0);
    m->f_prec = metrics_family("model_precision",
                               "Precision (binary: positive class_labels[1]; multiclass: macro) in "
                               "ACCURACY_WINDOW.",
                               METRIC_GAUGE, NULL, 0);
    m->f_rec = metrics_family("model_recall", "Recall (binary: class_labels[1]; multiclass: macro).",
                              METRIC_GAUGE, NULL, 0);
    m->f_f1 = metrics_family("model_f1_score", "F1 score (binary: class_labels[1]; multiclass: macro).",
                             METRIC_GAUGE, NULL, 0);
    m->f_labels =
        metrics_family("model_feedback_labels", "Labels received in ACCURACY_WINDOW.", METRIC_GAUGE, NULL, 0);
    m->f_rmse = metrics_family(
        "model_rmse", "Regression: root mean squared error of labelled predictions in ACCURACY_WINDOW.",
        METRIC_GAUGE, NULL, 0);
    m->f_mae = metrics_family("model_mae",
                              "Regression: mean absolute error of labelled predictions in ACCURACY_WINDOW.",
                              METRIC_GAUGE, NULL, 0);
    const model_metric_families_t *mf = model_metrics_families();
    m->f_pred = mf->predictions;
    m->f_err = mf->errors;
    m->f_dur = mf->duration;
    *ret = m;
    return 0;
fail:
    monitor_free(m);
    return rc;
}

void monitor_set_base_url(struct monitor *m, const char *url)
{
    if (!m || !url)
        return;
    snprintf(m->base_url, sizeof(m->base_url), "%s", url);
    /* the alerts' instance label: this machine's name and the server's port (the address in
     * url may be 0.0.0.0 or 127.0.0.1 on every server) */
    char host[256] = "", inst[300];
    const char *port = strrchr(url, ':');
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    snprintf(inst, sizeof(inst), "%s%s", host, port && port[1] != '/' ? port : "");
    /* or the operator's: the scrape target Prometheus names this server by (its "instance",
     * e.g. web-1:9090), so both sources' alerts of one server carry the same instance (they
     * still differ in service and the external labels: docs/monitoring.md) */
    alerts_set_instance(m->alerts, m->s.alert_instance ? m->s.alert_instance : inst);
}

int monitor_start(struct monitor *m)
{
    if (pthread_create(&m->thread, NULL, loop_main, m) != 0)
        return -EAGAIN;
    m->started = true;
    return 0;
}

void monitor_free(struct monitor *m)
{
    if (!m)
        return;
    if (m->started) {
        pthread_mutex_lock(&m->loop_mu);
        m->stop = true;
        pthread_cond_broadcast(&m->loop_cv);
        pthread_mutex_unlock(&m->loop_mu);
        pthread_join(m->thread, NULL);
    }
    alert_delivery_free(m->delivery);
    alerts_free(m->alerts);
    size_t n = atomic_load(&m->n_entries);
    for (size_t i = 0; i < n; i++) {
        mentry_t *e = m->entries[i];
        mstate_free(atomic_load(&e->state));
        for (size_t k = 0; k < e->n_tracked; k++)
            free(e->tracked[k].labels);
        free(e->tracked);
        free(e);
    }
    while (m->retired) {
        mstate_t *r = m->retired;
        m->retired = r->retired_next;
        mstate_free(r);
    }
    while (m->vinfos) {
        vinfo_t *v = m->vinfos;
        m->vinfos = v->next;
        free_vinfo(v);
    }
    json_decref(m->snapshots);
    pthread_mutex_destroy(&m->add_mu);
    pthread_mutex_destroy(&m->snap_mu);
    pthread_mutex_destroy(&m->loop_mu);
    pthread_cond_destroy(&m->loop_cv);
    free(m);
}

json_t *monitor_alerts_json(struct monitor *m)
{
    return alerts_list_json(m->alerts, NULL, util_now_ms());
}

json_t *monitor_model_json(struct monitor *m, const char *model)
{
    json_t *out = NULL;
    pthread_mutex_lock(&m->snap_mu);
    json_t *s = json_object_get(m->snapshots, model);
    if (s)
        out = json_deep_copy(s);
    pthread_mutex_unlock(&m->snap_mu);
    return out;
}
