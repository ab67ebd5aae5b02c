/* SPDX-License-Identifier: Apache-2.0 */
/* Offline gates of a rollout candidate on the model's validation CSV, scored through
 * model/evalmetrics so the numbers agree with training and monitoring. Each gate
 * becomes one validation test entry; the first failing one names the rollback reason. */
#include "rollout/gates.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "model/csv.h"
#include "model/evalmetrics.h"

#define MAX_ROWS 20000
#define MAX_GROUPS 32
/* The smallest group a fairness gate compares: rows, and positive labels for the TPR */
#define FAIR_MIN_ROWS 10
#define FAIR_MIN_ROWS_S "10"
#define FAIR_MIN_POSITIVES 5
#define FAIR_MIN_POSITIVES_S "5"
#define LAT_BASE_S 1e-6
#define LAT_GROWTH 1.05

json_t *rollout_gate_test(const char *name, const char *type, double score, double threshold, bool is_min,
                          bool passed)
{
    char at[ISO8601_LEN];
    util_iso8601(util_now_ms(), at);
    return json_pack("{s:s,s:s,s:o,s:f,s:s,s:b,s:s}", "test_name", name, "test_type", type, "score",
                     isfinite(score) ? json_real(score) : json_null(), "threshold", threshold, "comparison",
                     is_min ? "min" : "max", "passed", passed, "executed_at", at);
}

double rollout_wilson_upper95(unsigned long long correct, unsigned long long n)
{
    if (n == 0 || correct > n)
        return NAN;
    double z = ROLLOUT_Z95_ONE_SIDED, nn = (double)n, p = (double)correct / nn, z2 = z * z;
    double centre = p + z2 / (2 * nn);
    double spread = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
    return fmin(1.0, (centre + spread) / (1 + z2 / nn));
}

/* The offline latency gate compares what a prediction costs, so it times this thread's CPU
 * (CLOCK_THREAD_CPUTIME_ID): a one-row predict takes microseconds, and wall-clock p95 over a
 * few hundred rows measures the host's scheduling (a preempted row counts milliseconds),
 * which failed good candidates on a busy machine. The live canary check keeps measuring
 * requests' wall-clock latency. */
static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return util_mono_ns();
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- latency histogram ---------------------------------------------------------- */

static size_t lat_bucket(double seconds)
{
    if (!(seconds > LAT_BASE_S))
        return 0;
    double b = ceil(log(seconds / LAT_BASE_S) / log(LAT_GROWTH));
    return b >= ROLLOUT_LAT_BUCKETS ? ROLLOUT_LAT_BUCKETS - 1 : (size_t)b;
}

void rollout_latency_observe(rollout_latency_t *h, double seconds)
{
    __atomic_fetch_add(&h->counts[lat_bucket(seconds)], 1, __ATOMIC_RELAXED);
}

double rollout_latency_quantile_ms(const rollout_latency_t *h, double q)
{
    unsigned long long total = 0;
    for (size_t i = 0; i < ROLLOUT_LAT_BUCKETS; i++)
        total += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
    if (total == 0)
        return NAN;
    unsigned long long want = (unsigned long long)ceil(q * (double)total), seen = 0;
    for (size_t i = 0; i < ROLLOUT_LAT_BUCKETS; i++) {
        seen += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
        if (seen >= want && seen > 0)
            return LAT_BASE_S * pow(LAT_GROWTH, (double)i) * 1000.0;
    }
    return LAT_BASE_S * pow(LAT_GROWTH, ROLLOUT_LAT_BUCKETS - 1) * 1000.0;
}

void rollout_latency_reset(rollout_latency_t *h)
{
    for (size_t i = 0; i < ROLLOUT_LAT_BUCKETS; i++)
        __atomic_store_n(&h->counts[i], 0, __ATOMIC_RELAXED);
}

/* ---- offline gates ---------------------------------------------------------------- */

typedef struct scored {
    float *out;    /* n * outputs */
    double p95_ms; /* per-row predict latency */
    size_t outputs;
} scored_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Builds the feature matrix of m from the CSV (NAN for missing cells). */
static int build_rows(const model_manifest_t *m, const csv_table_t *t, float **ret, char *err, size_t n)
{
    size_t nf = m->n_features;
    float *rows = malloc(sizeof(float) * (nf ? nf : 1) * t->n_rows);
    if (!rows)
        return -ENOMEM;
    for (size_t f = 0; f < nf; f++) {
        int col = csv_column_index(t, m->features[f].name);
        if (col < 0) {
            snprintf(err, n, "validation data has no column '%s' (feature of %s %s)", m->features[f].name,
                     m->name, m->version);
            free(rows);
            return -EINVAL;
        }
        for (size_t r = 0; r < t->n_rows; r++) {
            double v;
            rows[r * nf + f] = csv_parse_number(csv_cell(t, r, (size_t)col), &v) == 0 ? (float)v : NAN;
        }
    }
    *ret = rows;
    return 0;
}

/* Scores every row one at a time (the serving shape) after one warm-up batch. With two
 * handles the rows alternate between them, so machine noise hits both alike. */
static int score(model_handle_t *const *hs, size_t n_h, const csv_table_t *t, scored_t *s, char *err,
                 size_t n)
{
    float *rows[2] = {NULL, NULL};
    double *lat[2] = {NULL, NULL};
    int rc = 0;
    char perr[256] = "";
    const model_manifest_t *failed = NULL;
    for (size_t k = 0; k < n_h; k++) {
        const model_manifest_t *m = model_handle_manifest(hs[k]);
        if ((rc = build_rows(m, t, &rows[k], err, n)) < 0)
            goto out;
        s[k].outputs = model_handle_outputs(hs[k]);
        s[k].out = malloc(sizeof(float) * s[k].outputs * t->n_rows);
        lat[k] = malloc(sizeof(double) * t->n_rows);
        if (!s[k].out || !lat[k]) {
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = model_handle_predict(hs[k], rows[k], t->n_rows, s[k].out, perr, sizeof(perr))) < 0) {
            failed = m;
            goto out;
        }
    }
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t k = 0; k < n_h; k++) {
            const model_manifest_t *m = model_handle_manifest(hs[k]);
            int64_t t0 = thread_cpu_ns();
            rc = model_handle_predict(hs[k], rows[k] + r * m->n_features, 1, s[k].out + r * s[k].outputs,
                                      perr, sizeof(perr));
            lat[k][r] = (double)(thread_cpu_ns() - t0) / 1e6;
            if (rc < 0) {
                failed = m;
                goto out;
            }
        }
    }
    for (size_t k = 0; k < n_h; k++) {
        qsort(lat[k], t->n_rows, sizeof(double), cmp_double);
        s[k].p95_ms = lat[k][(size_t)ceil(0.95 * (double)t->n_rows) - 1];
    }
out:
    if (failed)
        snprintf(err, n, "%s %s failed to predict on the validation data: %s", failed->name, failed->version,
                 perr);
    for (size_t k = 0; k < 2; k++) {
        free(rows[k]);
        free(lat[k]);
    }
    return rc;
}

/* Integer class labels from the label column: numbers, or class names. */
static int read_labels(const model_manifest_t *m, const csv_table_t *t, int *y, double *yv, char *err,
                       size_t n)
{
    int col = csv_column_index(t, "label");
    if (col < 0 && m->label)
        col = csv_column_index(t, m->label);
    if (col < 0) {
        snprintf(err, n, "validation data has no 'label' column");
        return -EINVAL;
    }
    for (size_t r = 0; r < t->n_rows; r++) {
        const char *cell = csv_cell(t, r, (size_t)col);
        double v;
        if (csv_parse_number(cell, &v) == 0) {
            y[r] = (int)v;
            yv[r] = v;
            continue;
        }
        y[r] = -1;
        for (size_t k = 0; k < m->n_classes; k++)
            if (strcmp(cell, m->class_labels[k]) == 0)
                y[r] = (int)k;
        if (y[r] < 0) {
            snprintf(err, n, "validation data line %zu: label '%.32s' is not a class of the model",
                     t->lines[r], cell);
            return -EINVAL;
        }
        yv[r] = y[r];
    }
    return 0;
}

typedef struct perf {
    double accuracy, f1, auc, rmse;
} perf_t;

static void performance(const model_manifest_t *m, const scored_t *s, const int *y, const double *yv,
                        size_t n, int *pred, perf_t *ret)
{
    ret->accuracy = ret->f1 = ret->auc = ret->rmse = NAN;
    double *v = malloc(sizeof(double) * n * (s->outputs ? s->outputs : 1));
    if (!v)
        return;
    for (size_t i = 0; i < n * s->outputs; i++)
        v[i] = s->out[i];
    if (m->task == MODEL_TASK_BINARY) {
        evalmetrics_binary_t b;
        evalmetrics_binary_compute(y, v, n, m->threshold, &b);
        ret->accuracy = b.accuracy;
        ret->f1 = b.f1;
        ret->auc = b.auc;
        for (size_t i = 0; i < n; i++)
            pred[i] = v[i] >= m->threshold;
    } else if (m->task == MODEL_TASK_MULTICLASS) {
        evalmetrics_argmax(v, n, s->outputs, pred);
        ret->accuracy = evalmetrics_accuracy(y, pred, n);
        ret->f1 = evalmetrics_f1_macro(y, pred, n, s->outputs);
    } else {
        ret->rmse = evalmetrics_rmse(yv, v, n);
    }
    free(v);
}

typedef struct gatectx {
    json_t *tests;
    char *reason;
    size_t reasonlen;
    bool failed;
} gatectx_t;

static void gate(gatectx_t *g, const char *name, const char *type, const char *what, double score,
                 double threshold, bool is_min)
{
    bool pass = isfinite(score) && (is_min ? score >= threshold : score <= threshold);
    json_array_append_new(g->tests, rollout_gate_test(name, type, score, threshold, is_min, pass));
    if (!pass && !g->failed) {
        g->failed = true;
        snprintf(g->reason, g->reasonlen, "gate %s failed: %s %.4f %s %.4f", name, what, score,
                 is_min ? "<" : ">", threshold);
    }
}

static double rel_drop(double stable, double cand)
{
    if (!isfinite(stable) || !isfinite(cand))
        return NAN;
    if (stable <= 0)
        return cand >= stable ? 0 : 1;
    double d = (stable - cand) / stable;
    return d < 0 ? 0 : d;
}

/* Positive rate and TPR per group of the sensitive column; the max-min spread of each. */
static void disparity(const csv_table_t *t, int col, const int *y, const int *pred, double *ret_pr,
                      double *ret_tpr, size_t *ret_groups, size_t *ret_tpr_groups)
{
    char *names[MAX_GROUPS];
    size_t n_g = 0, cnt[MAX_GROUPS] = {0}, pos[MAX_GROUPS] = {0}, act[MAX_GROUPS] = {0}, tp[MAX_GROUPS] = {0};
    for (size_t r = 0; r < t->n_rows; r++) {
        const char *v = csv_cell(t, r, (size_t)col);
        if (csv_is_missing(v))
            continue;
        size_t g = 0;
        while (g < n_g && strcmp(names[g], v) != 0)
            g++;
        if (g == n_g) {
            if (n_g == MAX_GROUPS)
                continue;
            names[n_g++] = (char *)v;
        }
        cnt[g]++;
        pos[g] += pred[r] == 1;
        act[g] += y[r] == 1;
        tp[g] += y[r] == 1 && pred[r] == 1;
    }
    double pr_lo = INFINITY, pr_hi = -INFINITY, t_lo = INFINITY, t_hi = -INFINITY;
    size_t used = 0, used_tpr = 0;
    for (size_t g = 0; g < n_g; g++) {
        if (cnt[g] < FAIR_MIN_ROWS) /* too small a group to say anything */
            continue;
        used++;
        double pr = (double)pos[g] / (double)cnt[g];
        pr_lo = fmin(pr_lo, pr);
        pr_hi = fmax(pr_hi, pr);
        if (act[g] >= FAIR_MIN_POSITIVES) {
            used_tpr++;
            double tpr = (double)tp[g] / (double)act[g];
            t_lo = fmin(t_lo, tpr);
            t_hi = fmax(t_hi, tpr);
        }
    }
    /* A difference needs two groups to compare; fewer is "can not be evaluated" (NAN) */
    *ret_groups = used;
    *ret_tpr_groups = used_tpr;
    *ret_pr = used >= 2 ? pr_hi - pr_lo : NAN;
    *ret_tpr = used_tpr >= 2 ? t_hi - t_lo : NAN;
}

/* A fairness gate that can not be evaluated fails, saying why (it used to pass at 0). */
static void fairness_gate(gatectx_t *g, const char *name, const char *what, double score, double threshold,
                          size_t groups, const char *column, const char *need)
{
    if (isfinite(score)) {
        gate(g, name, "fairness", what, score, threshold, false);
        return;
    }
    json_t *t = rollout_gate_test(name, "fairness", NAN, threshold, false, false);
    json_object_set_new(t, "evaluable", json_false());
    json_object_set_new(t, "groups", json_integer((json_int_t)groups));
    json_array_append_new(g->tests, t);
    if (!g->failed) {
        g->failed = true;
        snprintf(g->reason, g->reasonlen,
                 "gate %s failed: can not be evaluated: %zu group%s of the sensitive column '%s' in the "
                 "validation data %s (2 are needed to compare)",
                 name, groups, groups == 1 ? "" : "s", column, need);
    }
}

int rollout_gates_offline(const rollout_config_t *c, model_handle_t *cand, model_handle_t *stable,
                          const char *csv_path, json_t *tests, char *reason, size_t reasonlen)
{
    const model_manifest_t *cm = model_handle_manifest(cand);
    const model_manifest_t *sm = stable ? model_handle_manifest(stable) : NULL;
    gatectx_t g = {tests, reason, reasonlen, false};
    csv_table_t *t = NULL;
    scored_t sc[2] = {{0}, {0}};
    scored_t *cs = &sc[0], *ss = &sc[1];
    int *y = NULL, *cpred = NULL, *spred = NULL;
    double *yv = NULL;
    int rc;

    if (sm) {
        bool same =
            sm->task == cm->task && sm->n_features == cm->n_features && sm->n_classes == cm->n_classes;
        for (size_t i = 0; same && i < cm->n_features; i++)
            same = strcmp(sm->features[i].name, cm->features[i].name) == 0;
        for (size_t i = 0; same && i < cm->n_classes; i++)
            same = strcmp(sm->class_labels[i], cm->class_labels[i]) == 0;
        json_array_append_new(
            tests, rollout_gate_test("schema_compatibility", "compatibility", same ? 1 : 0, 1, true, same));
        if (!same) {
            snprintf(reason, reasonlen,
                     "gate schema_compatibility failed: %s %s has a different task, features (names/order) "
                     "or classes than stable %s",
                     cm->name, cm->version, sm->version);
            return 1;
        }
    }
    char cerr[512] = "", vpath[1024];
    /* The candidate version's own validation CSV (model train keeps one per version)
     * wins over the model's, which the last training replaced. Only a version without one
     * (trained before they were kept) is judged on the model's: one that exists but can not
     * be read fails the validation, never falls back to rows of another version. */
    size_t plen = strlen(csv_path), slen = strlen("_validation.csv");
    if (plen > slen && strcmp(csv_path + plen - slen, "_validation.csv") == 0 &&
        snprintf(vpath, sizeof(vpath), "%.*s_%s_validation.csv", (int)(plen - slen), csv_path, cm->version) <
            (int)sizeof(vpath) &&
        (access(vpath, F_OK) == 0 || errno != ENOENT))
        csv_path = vpath;
    if ((rc = csv_read_file(csv_path, &t, cerr, sizeof(cerr))) < 0) {
        snprintf(reason, reasonlen, "validation data: %s", cerr);
        return rc;
    }
    if (t->n_rows == 0 || t->n_rows > MAX_ROWS) {
        snprintf(reason, reasonlen, "validation data %s: %zu rows (expected 1..%d)", csv_path, t->n_rows,
                 MAX_ROWS);
        rc = -EINVAL;
        goto out;
    }
    size_t n = t->n_rows;
    y = malloc(sizeof(int) * n);
    yv = malloc(sizeof(double) * n);
    cpred = calloc(n, sizeof(int));
    spred = calloc(n, sizeof(int));
    if (!y || !yv || !cpred || !spred) {
        rc = -ENOMEM;
        snprintf(reason, reasonlen, "out of memory");
        goto out;
    }
    if ((rc = read_labels(cm, t, y, yv, reason, reasonlen)) < 0)
        goto out;
    model_handle_t *hs[2] = {cand, stable};
    if ((rc = score(hs, sm ? 2 : 1, t, sc, reason, reasonlen)) < 0)
        goto out;

    perf_t cp, sp;
    performance(cm, cs, y, yv, n, cpred, &cp);
    if (cm->task != MODEL_TASK_REGRESSION) {
        gate(&g, "min_accuracy", "performance", "accuracy", cp.accuracy, c->min_accuracy, true);
        gate(&g, "min_f1_score", "performance", "f1", cp.f1, c->min_f1_score, true);
        if (cm->task == MODEL_TASK_BINARY)
            gate(&g, "min_auc", "performance", "auc", cp.auc, c->min_auc, true);
    }
    if (sm) {
        performance(sm, ss, y, yv, n, spred, &sp);
        double deg = c->max_performance_degradation;
        if (cm->task == MODEL_TASK_REGRESSION) {
            double d = isfinite(sp.rmse) && sp.rmse > 0 ? fmax(0, (cp.rmse - sp.rmse) / sp.rmse) : NAN;
            gate(&g, "rmse_degradation", "degradation", "relative rmse increase", d, deg, false);
        } else {
            gate(&g, "accuracy_degradation", "degradation", "relative accuracy drop vs stable",
                 rel_drop(sp.accuracy, cp.accuracy), deg, false);
            gate(&g, "f1_degradation", "degradation", "relative f1 drop vs stable", rel_drop(sp.f1, cp.f1),
                 deg, false);
            if (cm->task == MODEL_TASK_BINARY)
                gate(&g, "auc_degradation", "degradation", "relative auc drop vs stable",
                     rel_drop(sp.auc, cp.auc), deg, false);
        }
        double fl = c->latency_floor_ms;
        double lat = fmax(cs->p95_ms, fl) / fmax(ss->p95_ms, fl) - 1;
        gate(&g, "latency_p95_degradation", "degradation", "relative p95 latency increase vs stable",
             lat < 0 ? 0 : lat, deg, false);
    }
    if (cm->task == MODEL_TASK_BINARY && !c->fairness_gates) {
        /* opted out by the deployment's config (a model whose data has no group column):
         * listed as not run, never as passed */
        json_t *skip = rollout_gate_test("demographic_disparity", "fairness", NAN, c->max_demographic_disparity,
                                         false, false);
        json_object_set_new(skip, "passed", json_null());
        json_object_set_new(skip, "skipped", json_true());
        json_object_set_new(skip, "reason", json_string("not run: fairness_gates=false in the deployment's config"));
        json_array_append_new(tests, skip);
    } else if (cm->task == MODEL_TASK_BINARY) {
        int col = csv_column_index(t, c->sensitive_column);
        if (col >= 0) {
            double pr, tpr;
            size_t groups, tpr_groups;
            disparity(t, col, y, cpred, &pr, &tpr, &groups, &tpr_groups);
            fairness_gate(&g, "demographic_parity_difference", "positive-rate difference across groups", pr,
                          c->max_demographic_disparity, groups, c->sensitive_column,
                          groups == 1 ? "has at least " FAIR_MIN_ROWS_S " rows"
                                      : "have at least " FAIR_MIN_ROWS_S " rows");
            fairness_gate(&g, "equal_opportunity_difference", "true-positive-rate difference across groups",
                          tpr, c->max_demographic_disparity, tpr_groups, c->sensitive_column,
                          tpr_groups == 1 ? "has at least " FAIR_MIN_ROWS_S " rows and " FAIR_MIN_POSITIVES_S
                                            " positive labels"
                                          : "have at least " FAIR_MIN_ROWS_S " rows and " FAIR_MIN_POSITIVES_S
                                            " positive labels");
        } else {
            json_array_append_new(tests, rollout_gate_test("demographic_disparity", "fairness", NAN,
                                                           c->max_demographic_disparity, false, false));
            if (!g.failed) {
                g.failed = true;
                snprintf(reason, reasonlen,
                         "gate demographic_disparity failed: sensitive column '%s' is not in the validation "
                         "data",
                         c->sensitive_column);
            }
        }
    }
    rc = g.failed ? 1 : 0;
out:
    csv_free(t);
    free(sc[0].out);
    free(sc[1].out);
    free(y);
    free(yv);
    free(cpred);
    free(spred);
    return rc;
}
