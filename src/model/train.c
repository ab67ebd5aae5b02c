/* SPDX-License-Identifier: Apache-2.0 */
/* model train / model import: CSV -> features and label -> (XGBoost training on a
 * stratified split | a booster trained elsewhere) -> metrics, inferred schema and drift
 * baselines -> manifest.json + booster in a temporary version directory ->
 * model_register -> validation CSV. See train.h for the contract and
 * docs/model-format.md for what ends up on disk. */
#include "model/train.h"
#include "model/runtime.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/util.h"
#include "model/csv.h"
#include "model/evalmetrics.h"
#include "model/manifest.h"
#include "model/registry.h"

#define SCHEMA_MAX_BYTES ((size_t)1 << 20)
#define QUANTILE_BINS 10
#define RANGE_WIDEN 0.10 /* valid range = observed range widened by 10% of its span per side */
#define MAX_EXPLICIT_CLASSES 1000
#define MAX_NAME_LEN 128
#define MAX_PARAMS 64

/* XGBoost's last error without its stack trace. */
static int xgb_fail(char *err, size_t errlen, const char *what)
{
    char msg[600];
    model_xgboost_error(msg, sizeof(msg), what);
    util_errf(err, errlen, "XGBoost: %s", msg);
    return -EIO;
}

void model_train_opts_init(model_train_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->threshold = 0.5;
    o->rounds = MODEL_TRAIN_DEFAULT_ROUNDS;
    o->seed = MODEL_TRAIN_DEFAULT_SEED;
    o->validation_fraction = MODEL_TRAIN_DEFAULT_VALIDATION_FRACTION;
}

/* ---- seeded split: common/rng.h (xoshiro256**), so a seed gives the same split anywhere ---- */

typedef rng_state_t rng_t;

static void shuffle(size_t *a, size_t n, rng_t *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(r, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- dataset: the CSV as a dense matrix of features and a label vector ---- */

typedef struct dataset {
    csv_table_t *csv;
    size_t n, d;        /* rows, features */
    const char **names; /* d feature names (borrowed from the CSV header) */
    double *X;          /* n x d row-major, NAN = missing */
    double *y;          /* n labels */
    int *yi;            /* n labels as class indices (classification only) */
} dataset_t;

static void dataset_free(dataset_t *ds)
{
    csv_free(ds->csv);
    free(ds->names);
    free(ds->X);
    free(ds->y);
    free(ds->yi);
    memset(ds, 0, sizeof(*ds));
}

static bool is_dropped(const model_train_opts_t *o, const char *col)
{
    for (size_t i = 0; i < o->n_drop; i++)
        if (strcmp(o->drop[i], col) == 0)
            return true;
    return false;
}

static bool printable_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Explains why column col (named name) is not numeric, first bad cell at data row bad. A
 * column whose cells are mostly numbers has a stray cell (a "N/A", "?" or "NULL" meant as
 * missing, a typo): name its line but never its content, which could be PHI. A column of
 * text is meant to be dropped. */
static void explain_not_numeric(const model_train_opts_t *o, const csv_table_t *t, size_t col,
                                const char *name, size_t bad, char *err, size_t errlen)
{
    size_t numbers = 0, text = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        double v;
        int r = csv_parse_number(csv_cell(t, i, col), &v);
        if (r == 0)
            numbers++;
        else if (r < 0)
            text++;
    }
    if (numbers > text)
        util_errf(err, errlen,
                  "%s: line %zu, column '%s': value is not a number; only an empty cell, NA or nan mean "
                  "missing (%zu of the column's cells %s not a number)",
                  o->data_path, t->lines[bad], name, text, text == 1 ? "is" : "are");
    else
        /* recoding is the way for a feature the model uses (import can not drop those: review49 #5) */
        util_errf(err, errlen,
                  "%s: column '%s' is not numeric (line %zu); recode it as numbers (true/false as 1/0, "
                  "categories as codes), or exclude it with --drop %s if the model does not use it",
                  o->data_path, name, t->lines[bad], name);
}

static int dataset_load(const model_train_opts_t *o, dataset_t *ds, char *err, size_t errlen)
{
    int rc = csv_read_file(o->data_path, &ds->csv, err, errlen);
    if (rc < 0)
        return rc == -EFBIG || rc == -EINVAL ? -EBADMSG : rc;
    csv_table_t *t = ds->csv;
    int label_col = csv_column_index(t, o->label);
    if (label_col < 0) {
        util_errf(err, errlen, "%s: no label column '%s' in the header", o->data_path, o->label);
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_drop; i++) {
        if (csv_column_index(t, o->drop[i]) < 0) {
            util_errf(err, errlen, "%s: --drop %s: no such column", o->data_path, o->drop[i]);
            return -EINVAL;
        }
        if (strcmp(o->drop[i], o->label) == 0) {
            util_errf(err, errlen, "--drop %s: that is the label column", o->drop[i]);
            return -EINVAL;
        }
    }
    if (t->n_rows == 0) {
        util_errf(err, errlen, "%s: no data rows", o->data_path);
        return -EBADMSG;
    }
    if (t->n_rows < MODEL_TRAIN_MIN_ROWS) {
        util_errf(err, errlen,
                  "%s: %zu data row%s: a model needs at least %d (a holdout split, metrics and drift "
                  "baselines from fewer rows mean nothing)",
                  o->data_path, t->n_rows, t->n_rows == 1 ? "" : "s", MODEL_TRAIN_MIN_ROWS);
        return -EBADMSG;
    }
    ds->n = t->n_rows;
    ds->names = calloc(t->n_cols, sizeof(*ds->names));
    size_t *cols = calloc(t->n_cols, sizeof(*cols));
    double *col = calloc(ds->n, sizeof(*col));
    ds->y = calloc(ds->n, sizeof(*ds->y));
    if (!ds->names || !cols || !col || !ds->y) {
        rc = -ENOMEM;
        util_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        if ((int)c == label_col || is_dropped(o, t->header[c]))
            continue;
        if (!printable_name(t->header[c])) {
            util_errf(err, errlen, "%s: column %zu: a feature name must be 1..%d printable characters",
                      o->data_path, c + 1, MAX_NAME_LEN);
            rc = -EBADMSG;
            goto out;
        }
        if (strcmp(t->header[c], "label") == 0) {
            util_errf(
                err, errlen,
                "%s: a feature column is named 'label', which the validation CSV reserves for the label; "
                "rename it or drop it",
                o->data_path);
            rc = -EBADMSG;
            goto out;
        }
        ds->names[ds->d] = t->header[c];
        cols[ds->d++] = c;
    }
    if (ds->d == 0) {
        util_errf(err, errlen, "%s: no feature columns besides the label", o->data_path);
        rc = -EBADMSG;
        goto out;
    }
    ds->X = calloc(ds->n * ds->d, sizeof(*ds->X));
    if (!ds->X) {
        rc = -ENOMEM;
        util_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t j = 0; j < ds->d; j++) {
        size_t bad = 0, missing = 0;
        if (csv_column_numbers(t, cols[j], col, &missing, &bad) < 0) {
            explain_not_numeric(o, t, cols[j], ds->names[j], bad, err, errlen);
            rc = -EBADMSG;
            goto out;
        }
        if (missing == ds->n) {
            util_errf(err, errlen, "%s: column '%s' has no values; exclude it with --drop %s", o->data_path,
                      ds->names[j], ds->names[j]);
            rc = -EBADMSG;
            goto out;
        }
        for (size_t i = 0; i < ds->n; i++)
            ds->X[i * ds->d + j] = col[i];
    }
    for (size_t i = 0; i < ds->n; i++) {
        int r = csv_parse_number(csv_cell(t, i, (size_t)label_col), &ds->y[i]);
        if (r != 0) {
            if (r == 1)
                util_errf(err, errlen, "%s: label column '%s' has no value at line %zu", o->data_path,
                          o->label, t->lines[i]);
            else
                util_errf(err, errlen,
                          "%s: label column '%s' is not a number at line %zu: labels are numbers (class "
                          "indices 0..K-1 for a classifier); recode the label column to 0..K-1 and name the "
                          "classes with --class-labels NAME0,NAME1,...",
                          o->data_path, o->label, t->lines[i]);
            rc = -EBADMSG;
            goto out;
        }
    }
    rc = 0;
out:
    free(cols);
    free(col);
    return rc;
}

/* Warnings about data that trains but is probably a mistake: feature columns whose values
 * are all the same (missing cells aside) carry no information. A JSON array of strings,
 * empty when all is well; NULL when out of memory. */
static json_t *data_warnings(const model_train_opts_t *o, const dataset_t *ds)
{
    json_t *w = json_array();
    for (size_t j = 0; w && j < ds->d; j++) {
        bool constant = true, seen = false;
        double first = 0;
        for (size_t i = 0; i < ds->n && constant; i++) {
            double v = ds->X[i * ds->d + j];
            if (isnan(v))
                continue;
            if (!seen) {
                first = v;
                seen = true;
            } else if (v != first) {
                constant = false;
            }
        }
        if (!constant)
            continue;
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "column '%s' has the same value in every row of %s: it cannot help the model; exclude "
                 "it with --drop %s",
                 ds->names[j], o->data_path, ds->names[j]);
        if (json_array_append_new(w, json_string(msg)) < 0) {
            json_decref(w);
            return NULL;
        }
    }
    return w;
}

/* ---- task and labels ---- */

/* Appends ", c" (or "c" first) for each class c < k with no rows to buf, at most 20 of them. */
static void list_missing_classes(const size_t *count, size_t k, char *buf, size_t n)
{
    size_t used = 0, listed = 0;
    buf[0] = '\0';
    for (size_t c = 0; c < k && used < n; c++) {
        if (count[c] > 0)
            continue;
        int w = listed == 20 ? snprintf(buf + used, n - used, ", ...")
                             : snprintf(buf + used, n - used, "%s%zu", listed ? ", " : "", c);
        if (w < 0)
            break;
        used += (size_t)w;
        if (++listed > 20)
            break;
    }
}

/* Maps the labels to class indices 0..k-1 in ds->yi. Always: every label is such an index
 * and at least two classes occur. For training (train = true) also: every class 0..k-1
 * occurs (a class that never occurs would get probability mass it can never have earned,
 * e.g. labels coded 1/2 making a 3-class model) and has MODEL_TRAIN_MIN_CLASS_ROWS rows, so
 * that it can be in both the training and the holdout split. */
static int check_labels(const model_train_opts_t *o, dataset_t *ds, model_task_t task, size_t k, bool train,
                        char *err, size_t errlen)
{
    if (task == MODEL_TASK_REGRESSION)
        return 0;
    ds->yi = calloc(ds->n, sizeof(*ds->yi));
    size_t *count = calloc(k, sizeof(*count));
    if (!ds->yi || !count) {
        free(count);
        util_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < ds->n; i++) {
        double v = ds->y[i];
        if (!(v >= 0 && v < (double)k && v == floor(v))) {
            if (task == MODEL_TASK_BINARY)
                util_errf(err, errlen,
                          "%s: a binary model needs labels 0 and 1; line %zu has another value (recode the "
                          "label column to 0/1 and name the classes with --class-labels NAME0,NAME1)",
                          o->data_path, ds->csv->lines[i]);
            else
                util_errf(err, errlen,
                          "%s: a multiclass model needs integer labels 0..%zu; line %zu has another value",
                          o->data_path, k - 1, ds->csv->lines[i]);
            rc = -EBADMSG;
            goto out;
        }
        ds->yi[i] = (int)v;
        count[ds->yi[i]]++;
    }
    size_t present = 0, lo = k, hi = 0;
    for (size_t c = 0; c < k; c++)
        if (count[c] > 0) {
            present++;
            lo = c < lo ? c : lo;
            hi = c;
        }
    if (present < 2) {
        util_errf(err, errlen, "%s: label column '%s' holds a single class: a classifier needs at least two",
                  o->data_path, o->label);
        rc = -EBADMSG;
        goto out;
    }
    if (!train)
        goto out;
    if (present < k) {
        char missing[160];
        list_missing_classes(count, k, missing, sizeof(missing));
        util_errf(err, errlen,
                  "%s: label column '%s' has no rows of class%s %s: class labels must be the indices "
                  "0..K-1 with every class present (found %zu classes among %zu..%zu); recode the label "
                  "column to 0..%zu and name the classes with --class-labels NAME0,NAME1,...",
                  o->data_path, o->label, k - present > 1 ? "es" : "", missing, present, lo, hi, present - 1);
        rc = -EBADMSG;
        goto out;
    }
    for (size_t c = 0; c < k; c++)
        if (count[c] < MODEL_TRAIN_MIN_CLASS_ROWS) {
            util_errf(err, errlen,
                      "%s: class %zu has %zu row%s: every class needs at least %d rows (one for training, "
                      "one for the holdout split)",
                      o->data_path, c, count[c], count[c] == 1 ? "" : "s", MODEL_TRAIN_MIN_CLASS_ROWS);
            rc = -EBADMSG;
            goto out;
        }
out:
    free(count);
    return rc;
}

/* Label inference (train.h): 0/1 -> binary; integers 0..19 with 3+ classes -> multiclass;
 * anything else -> regression. An explicit task is checked against the labels. */
static int resolve_task(const model_train_opts_t *o, dataset_t *ds, const char *forced,
                        model_task_t *ret_task, size_t *ret_k, char *err, size_t errlen)
{
    bool all01 = true, nonneg_int = true;
    double max = 0;
    for (size_t i = 0; i < ds->n; i++) {
        double v = ds->y[i];
        if (v != 0 && v != 1)
            all01 = false;
        if (!(v >= 0 && v == floor(v)))
            nonneg_int = false;
        if (i == 0 || v > max)
            max = v;
    }
    model_task_t task;
    size_t k = 0;
    if (forced) {
        if (model_task_parse(forced, &task) < 0) {
            util_errf(err, errlen, "--task: expected binary, multiclass or regression");
            return -EINVAL;
        }
        if (task == MODEL_TASK_MULTICLASS) {
            if (!nonneg_int || max >= MAX_EXPLICIT_CLASSES) {
                util_errf(err, errlen, "%s: a multiclass model needs integer labels 0..%d (class indices)",
                          o->data_path, MAX_EXPLICIT_CLASSES - 1);
                return -EBADMSG;
            }
            k = (size_t)max + 1;
        }
    } else if (all01) {
        task = MODEL_TASK_BINARY;
    } else if (nonneg_int && max < MODEL_TRAIN_MAX_CLASSES) {
        task = MODEL_TASK_MULTICLASS;
        k = (size_t)max + 1;
    } else {
        task = MODEL_TASK_REGRESSION;
    }
    if (task == MODEL_TASK_BINARY)
        k = 2;
    if (task == MODEL_TASK_MULTICLASS && k < 3) {
        util_errf(err, errlen, "%s: labels 0/1 make a binary model, not a multiclass one (use --task binary)",
                  o->data_path);
        return -EBADMSG;
    }
    int rc = check_labels(o, ds, task, k, true, err, errlen);
    if (rc < 0)
        return rc;
    *ret_task = task;
    *ret_k = k;
    return 0;
}

/* ---- split ---- */

/* Marks the holdout rows in is_val: per class, round(frac * n_class) randomly chosen rows
 * (at least 1 and at most n_class - 1 for classes with 2+ rows); regression: round(frac * n)
 * rows. Deterministic for a given seed and file. */
static int split_rows(const dataset_t *ds, model_task_t task, size_t k, double frac, uint64_t seed,
                      bool *is_val, size_t *ret_ntrain, size_t *ret_nval, char *err, size_t errlen)
{
    size_t *idx = malloc(ds->n * sizeof(*idx));
    if (!idx) {
        util_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rng_t rng;
    rng_seed(&rng, seed);
    size_t groups = task == MODEL_TASK_REGRESSION ? 1 : k;
    size_t nval = 0;
    for (size_t g = 0; g < groups; g++) {
        size_t m = 0;
        for (size_t i = 0; i < ds->n; i++)
            if (task == MODEL_TASK_REGRESSION || (size_t)ds->yi[i] == g)
                idx[m++] = i;
        if (m < 2)
            continue; /* a lone row of a class stays in training */
        size_t take = (size_t)llround(frac * (double)m);
        if (take < 1)
            take = 1;
        if (take > m - 1)
            take = m - 1;
        shuffle(idx, m, &rng);
        for (size_t i = 0; i < take; i++)
            is_val[idx[i]] = true;
        nval += take;
    }
    free(idx);
    if (nval == 0 || nval >= ds->n) {
        util_errf(err, errlen, "too few rows (%zu) to hold out a validation split", ds->n);
        return -EBADMSG;
    }
    *ret_nval = nval;
    *ret_ntrain = ds->n - nval;
    return 0;
}

/* ---- XGBoost helpers ---- */

static int make_dmatrix(const dataset_t *ds, const size_t *rows, size_t nr, bool with_labels, bool with_names,
                        DMatrixHandle *ret, char *err, size_t errlen)
{
    float *buf = malloc(nr * ds->d * sizeof(float));
    float *lab = with_labels ? malloc(nr * sizeof(float)) : NULL;
    int rc = 0;
    if (!buf || (with_labels && !lab)) {
        util_errf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nr; i++) {
        for (size_t j = 0; j < ds->d; j++)
            buf[i * ds->d + j] = (float)ds->X[rows[i] * ds->d + j];
        if (lab)
            lab[i] = (float)ds->y[rows[i]];
    }
    DMatrixHandle h = NULL;
    if (XGDMatrixCreateFromMat(buf, (bst_ulong)nr, (bst_ulong)ds->d, NAN, &h) != 0) {
        rc = xgb_fail(err, errlen, "cannot build the data matrix");
        goto out;
    }
    if (lab && XGDMatrixSetFloatInfo(h, "label", lab, (bst_ulong)nr) != 0) {
        rc = xgb_fail(err, errlen, "cannot set labels");
        XGDMatrixFree(h);
        goto out;
    }
    if (with_names && XGDMatrixSetStrFeatureInfo(h, "feature_name", ds->names, (bst_ulong)ds->d) != 0) {
        rc = xgb_fail(err, errlen, "cannot set feature names");
        XGDMatrixFree(h);
        goto out;
    }
    *ret = h;
out:
    free(buf);
    free(lab);
    return rc;
}

/* Predicts rows; *ret (n x outputs doubles) is the caller's to free. */
static int predict_rows(BoosterHandle bst, const dataset_t *ds, const size_t *rows, size_t nr, size_t outputs,
                        double **ret, char *err, size_t errlen)
{
    DMatrixHandle dm = NULL;
    int rc = make_dmatrix(ds, rows, nr, false, false, &dm, err, errlen);
    if (rc < 0)
        return rc;
    bst_ulong len = 0;
    const float *out = NULL;
    if (XGBoosterPredict(bst, dm, 0, 0, 0, &len, &out) != 0) {
        rc = xgb_fail(err, errlen, "prediction failed");
        goto done;
    }
    if ((size_t)len != nr * outputs) {
        util_errf(err, errlen, "XGBoost: expected %zu outputs, got %llu", nr * outputs,
                  (unsigned long long)len);
        rc = -EIO;
        goto done;
    }
    size_t total = nr * outputs;
    double *p = malloc((total > 0 ? total : 1) * sizeof(*p));
    if (!p) {
        util_errf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < nr * outputs; i++) {
        if (!isfinite(out[i])) { /* the server would refuse to answer with it */
            util_errf(err, errlen, "the booster's output for the row on line %zu of the data is not finite (%s)",
                      ds->csv->lines[rows[i / outputs]], isnan(out[i]) ? "NaN" : "infinity");
            free(p);
            rc = -EBADMSG;
            goto done;
        }
        p[i] = out[i];
    }
    *ret = p;
done:
    XGDMatrixFree(dm);
    return rc;
}

/* Metrics of predictions pred (rows x outputs) against the labels of rows. */
static json_t *score_rows(const dataset_t *ds, model_task_t task, size_t k, const size_t *rows, size_t nr,
                          const double *pred, double threshold)
{
    json_t *res = NULL;
    if (task == MODEL_TASK_REGRESSION) {
        double *y = malloc((nr ? nr : 1) * sizeof(*y));
        if (!y)
            return NULL;
        for (size_t i = 0; i < nr; i++)
            y[i] = ds->y[rows[i]];
        evalmetrics_regression_t m;
        evalmetrics_regression_compute(y, pred, nr, &m);
        free(y);
        return evalmetrics_regression_json(&m);
    }
    int *y = malloc((nr ? nr : 1) * sizeof(*y));
    if (!y)
        return NULL;
    for (size_t i = 0; i < nr; i++)
        y[i] = ds->yi[rows[i]];
    if (task == MODEL_TASK_BINARY) {
        evalmetrics_binary_t m;
        evalmetrics_binary_compute(y, pred, nr, threshold, &m);
        res = evalmetrics_binary_json(&m);
    } else {
        evalmetrics_multiclass_t m;
        if (evalmetrics_multiclass_compute(y, pred, nr, k, &m) == 0)
            res = evalmetrics_multiclass_json(&m);
    }
    free(y);
    return res;
}

/* ---- schema: sidecar and --units overrides ---- */

typedef struct override {
    const char *unit;        /* borrowed from the sidecar JSON or the units copy */
    const char *description; /* borrowed from the sidecar JSON */
    bool has_min, has_max;
    double min, max;
    int required; /* -1 unset, else 0/1 */
    int type;     /* -1 unset, else feature_type_t */
} override_t;

typedef struct schema_in {
    override_t *ov;     /* one per feature */
    json_t *sidecar;    /* owns sidecar strings */
    char *sidecar_path; /* for messages */
    char *units_copy;   /* owns --units strings */
} schema_in_t;

static void schema_in_free(schema_in_t *s)
{
    free(s->ov);
    json_decref(s->sidecar);
    free(s->sidecar_path);
    free(s->units_copy);
}

static int feature_index(const dataset_t *ds, const char *name)
{
    for (size_t j = 0; j < ds->d; j++)
        if (strcmp(ds->names[j], name) == 0)
            return (int)j;
    return -1;
}

static int load_sidecar(const model_train_opts_t *o, const dataset_t *ds, schema_in_t *s, char *err,
                        size_t errlen)
{
    char path[PATH_MAX];
    if (o->schema_path) {
        if (snprintf(path, sizeof(path), "%s", o->schema_path) >= (int)sizeof(path))
            return util_errf(err, errlen, "schema path too long"), -ENAMETOOLONG;
    } else {
        if (snprintf(path, sizeof(path), "%s.schema.json", o->data_path) >= (int)sizeof(path))
            return util_errf(err, errlen, "data path too long"), -ENAMETOOLONG;
        if (!util_path_exists(path))
            return 0;
    }
    s->sidecar_path = strdup(path);
    if (!s->sidecar_path)
        return util_errf(err, errlen, "out of memory"), -ENOMEM;
    char *buf = NULL;
    size_t len = 0;
    int rc = util_read_file(path, SCHEMA_MAX_BYTES, &buf, &len);
    if (rc < 0) {
        util_errf(err, errlen, "%s: %s", path, rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
        return rc == -EFBIG ? -EBADMSG : rc;
    }
    json_error_t jerr;
    s->sidecar = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!s->sidecar) {
        util_errf(err, errlen, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
        return -EBADMSG;
    }
    json_t *feats = json_object_get(s->sidecar, "features");
    if (!json_is_object(s->sidecar) || !json_is_object(feats)) {
        util_errf(err, errlen, "%s: expected {\"features\": {\"<name>\": {...}}}", path);
        return -EBADMSG;
    }
    const char *name;
    json_t *spec;
    json_object_foreach(feats, name, spec)
    {
        int j = feature_index(ds, name);
        if (j < 0) {
            if (strcmp(name, o->label) == 0 || is_dropped(o, name))
                continue; /* documented but not a feature of this model */
            util_errf(err, errlen, "%s: feature '%s' is not a column of %s", path, name, o->data_path);
            return -EBADMSG;
        }
        if (!json_is_object(spec)) {
            util_errf(err, errlen, "%s: features.%s: expected an object", path, name);
            return -EBADMSG;
        }
        override_t *ov = &s->ov[j];
        const char *key;
        json_t *v;
        json_object_foreach(spec, key, v)
        {
            if (json_is_null(v))
                continue;
            if (strcmp(key, "unit") == 0 || strcmp(key, "description") == 0) {
                if (!json_is_string(v) || json_string_length(v) > (strcmp(key, "unit") == 0 ? 128 : 4096)) {
                    util_errf(err, errlen, "%s: features.%s.%s: expected a string", path, name, key);
                    return -EBADMSG;
                }
                if (key[0] == 'u')
                    ov->unit = json_string_value(v);
                else
                    ov->description = json_string_value(v);
            } else if (strcmp(key, "min") == 0 || strcmp(key, "max") == 0) {
                if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                    util_errf(err, errlen, "%s: features.%s.%s: expected a number", path, name, key);
                    return -EBADMSG;
                }
                if (key[1] == 'i') {
                    ov->has_min = true;
                    ov->min = json_number_value(v);
                } else {
                    ov->has_max = true;
                    ov->max = json_number_value(v);
                }
            } else if (strcmp(key, "required") == 0) {
                if (!json_is_boolean(v)) {
                    util_errf(err, errlen, "%s: features.%s.required: expected true or false", path, name);
                    return -EBADMSG;
                }
                ov->required = json_is_true(v);
            } else if (strcmp(key, "type") == 0) {
                feature_type_t ft;
                if (feature_type_parse(json_string_value(v), &ft) < 0) {
                    util_errf(err, errlen, "%s: features.%s.type: expected number, integer or boolean", path,
                              name);
                    return -EBADMSG;
                }
                ov->type = (int)ft;
            } else {
                util_errf(err, errlen,
                          "%s: features.%s: unknown key '%s' (unit, description, min, max, required, type)",
                          path, name, key);
                return -EBADMSG;
            }
        }
    }
    return 0;
}

/* --units name=unit,name=unit (wins over the sidecar). */
static int parse_units(const model_train_opts_t *o, const dataset_t *ds, schema_in_t *s, char *err,
                       size_t errlen)
{
    if (!o->units || !*o->units)
        return 0;
    s->units_copy = strdup(o->units);
    if (!s->units_copy)
        return util_errf(err, errlen, "out of memory"), -ENOMEM;
    char *save = NULL;
    for (char *tok = strtok_r(s->units_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            util_errf(err, errlen, "--units: expected name=unit[,name=unit...]");
            return -EINVAL;
        }
        *eq = '\0';
        int j = feature_index(ds, tok);
        if (j < 0) {
            util_errf(err, errlen, "--units: '%s' is not a feature column", tok);
            return -EINVAL;
        }
        if (strlen(eq + 1) > 128) {
            util_errf(err, errlen, "--units: unit of '%s' is longer than 128 characters", tok);
            return -EINVAL;
        }
        s->ov[j].unit = eq + 1;
    }
    return 0;
}

/* ---- per-feature schema, range and baseline ---- */

static double quantile_sorted(const double *s, size_t n, double q)
{
    if (q <= 0)
        return s[0];
    if (q >= 1)
        return s[n - 1];
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    double frac = pos - (double)lo;
    if (lo + 1 >= n)
        return s[n - 1];
    return s[lo] + frac * (s[lo + 1] - s[lo]);
}

/* Baseline of the (training) values: quantile bin edges at 0, 0.1, ..., 1 with duplicates
 * removed (booleans: edges 0, 0.5, 1 so each value has its bin), the share of values in
 * each bin ([e_i, e_i+1), the last bin closed), mean and population standard deviation. */
static int build_baseline(double *vals, size_t n, feature_type_t type, model_feature_t *f)
{
    f->n_bins = 0;
    f->mean = f->std = 0;
    if (n == 0)
        return 0;
    qsort(vals, n, sizeof(*vals), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += vals[i];
    double mean = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (vals[i] - mean) * (vals[i] - mean);
    f->mean = mean;
    f->std = sqrt(ss / (double)n);

    double edges[QUANTILE_BINS + 1];
    size_t ne = 0;
    if (type == FEATURE_BOOLEAN) {
        if (vals[0] == 0 && vals[n - 1] == 1) {
            edges[0] = 0;
            edges[1] = 0.5;
            edges[2] = 1;
            ne = 3;
        }
    } else {
        for (int i = 0; i <= QUANTILE_BINS; i++) {
            double e = quantile_sorted(vals, n, (double)i / QUANTILE_BINS);
            if (ne == 0 || e > edges[ne - 1])
                edges[ne++] = e;
        }
    }
    if (ne < 2)
        return 0; /* constant: no bins */
    size_t nb = ne - 1;
    f->bin_edges = malloc(ne * sizeof(double));
    f->bin_probs = calloc(nb, sizeof(double));
    if (!f->bin_edges || !f->bin_probs)
        return -ENOMEM;
    memcpy(f->bin_edges, edges, ne * sizeof(double));
    size_t b = 0;
    size_t *count = calloc(nb, sizeof(*count));
    if (!count)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) { /* vals are sorted: walk the bins forward */
        while (b + 1 < nb && vals[i] >= edges[b + 1])
            b++;
        count[b]++;
    }
    for (size_t i = 0; i < nb; i++)
        f->bin_probs[i] = (double)count[i] / (double)n;
    free(count);
    f->n_bins = nb;
    return 0;
}

static void widen_range(feature_type_t type, double lo, double hi, double *ret_lo, double *ret_hi)
{
    if (type == FEATURE_BOOLEAN) {
        *ret_lo = 0;
        *ret_hi = 1;
        return;
    }
    double span = hi - lo;
    double pad = span > 0 ? RANGE_WIDEN * span : (lo != 0 ? RANGE_WIDEN * fabs(lo) : 1.0);
    double a = lo - pad, b = hi + pad;
    if (lo >= 0 && a < 0)
        a = 0; /* a non-negative quantity stays non-negative */
    if (type == FEATURE_INTEGER) {
        a = floor(a);
        b = ceil(b);
    }
    *ret_lo = a;
    *ret_hi = b;
}

/* Fills m->features from the data (all rows for type/range/required, the rows flagged in
 * base_rows for the baseline) and the overrides. */
static int build_features(const dataset_t *ds, const bool *base_rows, const schema_in_t *s,
                          model_manifest_t *m, char *err, size_t errlen)
{
    m->features = calloc(ds->d, sizeof(model_feature_t));
    double *vals = malloc(ds->n * sizeof(double));
    if (!m->features || !vals) {
        free(vals);
        return util_errf(err, errlen, "out of memory"), -ENOMEM;
    }
    int rc = 0;
    for (size_t j = 0; j < ds->d; j++) {
        model_feature_t *f = &m->features[j];
        m->n_features = j + 1;
        const override_t *ov = &s->ov[j];
        const char *src = s->sidecar_path ? s->sidecar_path : "the schema";
        f->name = strdup(ds->names[j]);
        if (!f->name) {
            rc = -ENOMEM;
            break;
        }
        bool is01 = true, integral = true;
        double lo = INFINITY, hi = -INFINITY;
        size_t missing = 0;
        for (size_t i = 0; i < ds->n; i++) {
            double v = ds->X[i * ds->d + j];
            if (isnan(v)) {
                missing++;
                continue;
            }
            if (v != 0 && v != 1)
                is01 = false;
            if (v != floor(v) || fabs(v) > 9007199254740992.0)
                integral = false;
            if (v < lo)
                lo = v;
            if (v > hi)
                hi = v;
        }
        f->type = is01 ? FEATURE_BOOLEAN : integral ? FEATURE_INTEGER : FEATURE_NUMBER;
        if (ov->type >= 0) {
            feature_type_t want = (feature_type_t)ov->type;
            if ((want == FEATURE_BOOLEAN && !is01) || (want == FEATURE_INTEGER && !integral)) {
                util_errf(err, errlen, "%s: feature '%s' is declared %s but the data has other values", src,
                          f->name, feature_type_name(want));
                rc = -EBADMSG;
                break;
            }
            f->type = want;
        }
        f->required = missing == 0;
        if (ov->required == 1 && missing > 0) {
            util_errf(err, errlen, "%s: feature '%s' is declared required but %zu rows have no value", src,
                      f->name, missing);
            rc = -EBADMSG;
            break;
        }
        if (ov->required == 0)
            f->required = false;
        double rlo, rhi;
        widen_range(f->type, lo, hi, &rlo, &rhi);
        if (ov->has_min)
            rlo = ov->min;
        if (ov->has_max)
            rhi = ov->max;
        if ((ov->has_min || ov->has_max) && (lo < rlo || hi > rhi || rlo > rhi)) {
            util_errf(err, errlen,
                      "%s: feature '%s': the data has values outside the declared range [%g, %g]", src,
                      f->name, rlo, rhi);
            rc = -EBADMSG;
            break;
        }
        f->has_min = f->has_max = true;
        f->min = rlo;
        f->max = rhi;
        if ((ov->unit && !(f->unit = strdup(ov->unit))) ||
            (ov->description && !(f->description = strdup(ov->description)))) {
            rc = -ENOMEM;
            break;
        }
        size_t nv = 0;
        for (size_t i = 0; i < ds->n; i++) {
            double v = ds->X[i * ds->d + j];
            if (base_rows[i] && !isnan(v))
                vals[nv++] = v;
        }
        if ((rc = build_baseline(vals, nv, f->type, f)) < 0)
            break;
    }
    free(vals);
    if (rc == -ENOMEM)
        util_errf(err, errlen, "out of memory");
    return rc;
}

static int parse_class_labels(const model_train_opts_t *o, model_task_t task, size_t k, model_manifest_t *m,
                              char *err, size_t errlen)
{
    if (task == MODEL_TASK_REGRESSION) {
        if (o->class_labels) {
            util_errf(err, errlen, "--class-labels: a regression model has no classes");
            return -EINVAL;
        }
        return 0;
    }
    m->class_labels = calloc(k, sizeof(char *));
    if (!m->class_labels)
        return util_errf(err, errlen, "out of memory"), -ENOMEM;
    if (!o->class_labels) {
        for (size_t c = 0; c < k; c++) {
            char tmp[32];
            snprintf(tmp, sizeof(tmp), "%zu", c);
            if (!(m->class_labels[c] = strdup(tmp)))
                return util_errf(err, errlen, "out of memory"), -ENOMEM;
            m->n_classes = c + 1;
        }
        return 0;
    }
    const char *p = o->class_labels;
    size_t c = 0;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (c >= k) {
            util_errf(err, errlen, "--class-labels: %zu labels for %zu classes", c + 1, k);
            return -EINVAL;
        }
        if (len == 0 || len > 128) {
            util_errf(err, errlen, "--class-labels: label %zu must be 1..128 characters", c + 1);
            return -EINVAL;
        }
        if (!(m->class_labels[c] = strndup(p, len)))
            return util_errf(err, errlen, "out of memory"), -ENOMEM;
        m->n_classes = ++c;
        for (size_t i = 0; i + 1 < c; i++)
            if (strcmp(m->class_labels[i], m->class_labels[c - 1]) == 0) {
                util_errf(err, errlen, "--class-labels: duplicate label '%s'", m->class_labels[c - 1]);
                return -EINVAL;
            }
        if (!e)
            break;
        p = e + 1;
    }
    if (c != k) {
        util_errf(err, errlen, "--class-labels: %zu labels for %zu classes", c, k);
        return -EINVAL;
    }
    return 0;
}

/* ---- shared driver: everything after the booster exists ---- */

typedef struct job {
    const model_train_opts_t *o;
    const char *tool; /* "train" | "import" */
    dataset_t ds;
    model_task_t task;
    size_t k;
    bool *is_val; /* holdout rows */
    size_t *train_rows, *val_rows;
    size_t n_train, n_val;
    char tmpdir[PATH_MAX];
    bool tmp_created;
    char booster_file[32]; /* model.json | model.ubj */
    const char *booster_format;
    json_t *training_metrics, *holdout_metrics;
    json_t *provenance;
    json_t *warnings; /* data_warnings() */
} job_t;

static void job_free(job_t *j)
{
    if (j->tmp_created)
        util_rmtree(j->tmpdir);
    dataset_free(&j->ds);
    free(j->is_val);
    free(j->train_rows);
    free(j->val_rows);
    json_decref(j->training_metrics);
    json_decref(j->holdout_metrics);
    json_decref(j->provenance);
    json_decref(j->warnings);
}

static int check_common_opts(const model_train_opts_t *o, char *err, size_t errlen)
{
    if (!o->data_path || !o->label || !o->name || !o->version)
        return util_errf(err, errlen, "--data, --label, --name and --version are required"), -EINVAL;
    if (!util_is_safe_name(o->name))
        return util_errf(err, errlen,
                         "--name: expected 1..128 characters of [A-Za-z0-9._-], not starting with '.'"),
               -EINVAL;
    if (model_name_reserved(o->name))
        return util_errf(err, errlen, "--name: %s", MODEL_NAME_RESERVED_MSG), -EINVAL;
    if (!util_is_safe_name(o->version))
        return util_errf(err, errlen,
                         "--version: expected 1..128 characters of [A-Za-z0-9._-], not starting with '.'"),
               -EINVAL;
    if (!o->storage_path || !o->data_dir || !o->store)
        return util_errf(err, errlen, "internal: storage path, data dir and store are required"), -EINVAL;
    if (!(o->threshold > 0 && o->threshold < 1))
        return util_errf(err, errlen, "--threshold: must be strictly between 0 and 1"), -EINVAL;
    if (o->description && strlen(o->description) > 4096)
        return util_errf(err, errlen, "--description: longer than 4096 characters"), -EINVAL;
    /* --units syntax now (its names are checked against the features later), so that a
     * malformed value is a usage error whatever the data holds. */
    for (const char *p = o->units; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len > 0 && (!eq || eq == p))
            return util_errf(err, errlen, "--units: expected name=unit[,name=unit...]"), -EINVAL;
        p = e ? e + 1 : p + len;
    }
    return 0;
}

int model_train_is_registered(store_t *store, const char *name, const char *version)
{
    json_t *list = NULL;
    int rc = store_model_list(store, &list);
    if (rc < 0)
        return rc;
    size_t i;
    json_t *row;
    int found = 0;
    json_array_foreach(list, i, row)
    {
        const char *n = json_string_value(json_object_get(row, "name"));
        const char *v = json_string_value(json_object_get(row, "version"));
        if (n && v && strcmp(n, name) == 0 && strcmp(v, version) == 0)
            found = 1;
    }
    json_decref(list);
    return found;
}

static int make_tmpdir(job_t *j, char *err, size_t errlen)
{
    int rc = util_mkdir_p(j->o->storage_path, 0755);
    if (rc < 0)
        return util_errf(err, errlen, "cannot create %s: %s", j->o->storage_path, strerror(-rc)), rc;
    if (snprintf(j->tmpdir, sizeof(j->tmpdir), "%s/.%s-XXXXXX", j->o->storage_path, j->tool) >=
        (int)sizeof(j->tmpdir))
        return util_errf(err, errlen, "storage path too long"), -ENAMETOOLONG;
    if (!mkdtemp(j->tmpdir)) {
        rc = -errno;
        return util_errf(err, errlen, "cannot create a temporary directory in %s: %s", j->o->storage_path,
                         strerror(errno)),
               rc;
    }
    j->tmp_created = true;
    return 0;
}

static int rows_from_flags(job_t *j)
{
    j->train_rows = malloc((j->ds.n) * sizeof(size_t));
    j->val_rows = malloc((j->ds.n) * sizeof(size_t));
    if (!j->train_rows || !j->val_rows)
        return -ENOMEM;
    j->n_train = j->n_val = 0;
    for (size_t i = 0; i < j->ds.n; i++) {
        if (j->is_val[i])
            j->val_rows[j->n_val++] = i;
        else
            j->train_rows[j->n_train++] = i;
    }
    return 0;
}

/* Writes the holdout rows (features + label) aside as <dir>/.<name>_validation.csv.<pid>;
 * publish_validation renames it into place once the model is registered. */
static int write_validation(job_t *j, char *pending, size_t pn, char *final, size_t fn, char *err,
                            size_t errlen)
{
    char dir[PATH_MAX];
    const model_train_opts_t *o = j->o;
    if (snprintf(dir, sizeof(dir), "%s/baseline", o->data_dir) >= (int)sizeof(dir) ||
        snprintf(final, fn, "%s/%s_validation.csv", dir, o->name) >= (int)fn ||
        snprintf(pending, pn, "%s/.%s_validation.csv.%ld", dir, o->name, (long)getpid()) >= (int)pn)
        return util_errf(err, errlen, "data dir path too long"), -ENAMETOOLONG;
    int rc = util_mkdir_p(dir, 0750);
    if (rc < 0)
        return util_errf(err, errlen, "cannot create %s: %s", dir, strerror(-rc)), rc;
    csv_writer_t w;
    csv_writer_init(&w);
    for (size_t c = 0; c < j->ds.d; c++)
        csv_writer_field(&w, j->ds.names[c]);
    csv_writer_field(&w, "label");
    csv_writer_end_row(&w);
    for (size_t r = 0; r < j->n_val; r++) {
        size_t i = j->val_rows[r];
        for (size_t c = 0; c < j->ds.d; c++)
            csv_writer_number(&w, j->ds.X[i * j->ds.d + c]);
        csv_writer_number(&w, j->ds.y[i]);
        csv_writer_end_row(&w);
    }
    rc = csv_writer_save(&w, pending);
    csv_writer_free(&w);
    if (rc < 0)
        return util_errf(err, errlen, "cannot write %s: %s", pending, strerror(-rc)), rc;
    return 0;
}

static int build_and_register(job_t *j, const char *default_description, json_t **ret_summary, char *err,
                              size_t errlen)
{
    const model_train_opts_t *o = j->o;
    schema_in_t sch = {0};
    model_manifest_t *m = NULL;
    json_t *info = NULL;
    char pending[PATH_MAX] = "", final[PATH_MAX] = "";
    int rc;

    sch.ov = calloc(j->ds.d, sizeof(override_t));
    if (!sch.ov) {
        rc = -ENOMEM;
        util_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t c = 0; c < j->ds.d; c++)
        sch.ov[c].required = sch.ov[c].type = -1;
    if ((rc = load_sidecar(o, &j->ds, &sch, err, errlen)) < 0 ||
        (rc = parse_units(o, &j->ds, &sch, err, errlen)) < 0)
        goto out;

    m = calloc(1, sizeof(*m));
    if (!m) {
        rc = -ENOMEM;
        util_errf(err, errlen, "out of memory");
        goto out;
    }
    bool *base_rows = j->is_val; /* baseline = training rows (import: all rows) */
    bool *train_flags = malloc(j->ds.n * sizeof(bool));
    if (!train_flags) {
        rc = -ENOMEM;
        util_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < j->ds.n; i++)
        train_flags[i] = j->n_train ? !base_rows[i] : true;
    rc = build_features(&j->ds, train_flags, &sch, m, err, errlen);
    free(train_flags);
    if (rc < 0)
        goto out;
    if ((rc = parse_class_labels(o, j->task, j->k, m, err, errlen)) < 0)
        goto out;

    char created[ISO8601_LEN];
    util_iso8601(util_now_ms(), created);
    m->format_version = MODEL_FORMAT_VERSION;
    m->task = j->task;
    m->synthetic = o->synthetic;
    m->threshold = o->threshold;
    m->name = strdup(o->name);
    m->version = strdup(o->version);
    m->description = strdup(o->description ? o->description : default_description);
    m->created_at = strdup(created);
    m->label = strdup(o->label);
    m->backend = strdup("xgboost");
    m->booster_file = strdup(j->booster_file);
    m->booster_format = strdup(j->booster_format);
    m->training_metrics = json_incref(j->training_metrics);
    m->holdout_metrics = json_incref(j->holdout_metrics);
    m->extra = json_pack("{s:O}", "provenance", j->provenance);
    if (!m->name || !m->version || !m->description || !m->created_at || !m->label || !m->backend ||
        !m->booster_file || !m->booster_format || !m->extra) {
        rc = -ENOMEM;
        util_errf(err, errlen, "out of memory");
        goto out;
    }
    char bpath[PATH_MAX];
    if (snprintf(bpath, sizeof(bpath), "%s/%s", j->tmpdir, j->booster_file) >= (int)sizeof(bpath)) {
        rc = -ENAMETOOLONG;
        util_errf(err, errlen, "path too long");
        goto out;
    }
    if ((rc = util_sha256_file(bpath, m->booster_sha256)) < 0) {
        util_errf(err, errlen, "cannot hash %s: %s", bpath, strerror(-rc));
        goto out;
    }
    if ((rc = model_manifest_save(m, j->tmpdir)) < 0) {
        util_errf(err, errlen, "cannot write the manifest: %s", strerror(-rc));
        rc = rc == -EINVAL ? -EIO : rc;
        goto out;
    }
    /* Round trip through the parser: a manifest we cannot load must not be registered. */
    model_manifest_t *check = NULL;
    char sub[512] = "";
    if ((rc = model_manifest_load(j->tmpdir, &check, sub, sizeof(sub))) < 0) {
        util_errf(err, errlen, "internal: generated manifest does not load: %s", sub);
        rc = rc == -EINVAL ? -EIO : rc; /* -EINVAL is kept for wrong options (train.h) */
        goto out;
    }
    model_manifest_free(check);

    if ((rc = write_validation(j, pending, sizeof(pending), final, sizeof(final), err, errlen)) < 0)
        goto out;
    char rerr[1024] = "";
    rc = model_register_hooked(o->store, o->storage_path, j->tmpdir, o->set_stable, o->register_hook, &info, rerr,
                               sizeof(rerr));
    if (rc < 0) {
        util_errf(err, errlen, "registration refused: %s", rerr);
        rc = rc == -EINVAL ? -EIO : rc; /* -EINVAL is kept for wrong options (train.h) */
        unlink(pending);
        goto out;
    }
    if (rename(pending, final) < 0) {
        rc = -errno;
        util_errf(err, errlen, "registered %s %s, but cannot move the validation CSV into %s: %s", o->name,
                  o->version, final, strerror(errno));
        unlink(pending);
        goto out;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/baseline", o->data_dir);
    /* The version's own copy (a hard link: the next training replaces the model's file,
     * not this one); rollout gates prefer it, so training another version does not change the
     * rows this one is judged on */
    char vfinal[PATH_MAX] = "";
    if (snprintf(vfinal, sizeof(vfinal), "%s/%s_%s_validation.csv", dir, o->name, o->version) <
        (int)sizeof(vfinal)) {
        unlink(vfinal);
        if (link(final, vfinal) < 0) {
            char w[PATH_MAX + 128];
            snprintf(w, sizeof(w), "could not keep the version's validation CSV %s: %s", vfinal, strerror(errno));
            json_array_append_new(j->warnings, json_string(w));
            vfinal[0] = '\0';
        }
    } else {
        vfinal[0] = '\0';
    }
    util_fsync_dir(dir);

    if (ret_summary) {
        json_t *names = json_array();
        for (size_t c = 0; names && c < j->ds.d; c++)
            json_array_append_new(names, json_string(j->ds.names[c]));
        *ret_summary =
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:{s:O, s:O}, s:O, s:O, s:O, s:s, s:O}", "name",
                      o->name, "version", o->version, "task", model_task_name(j->task), "n_train",
                      (json_int_t)j->n_train, "n_validation", (json_int_t)j->n_val, "features", names,
                      "metrics", "training", j->training_metrics, "holdout", j->holdout_metrics, "path",
                      json_object_get(info, "path"), "sha256", json_object_get(info, "sha256"), "stable",
                      json_object_get(info, "stable"), "validation_csv", final, "warnings", j->warnings);
        if (*ret_summary && vfinal[0]) /* what the rollout gates read for this version */
            json_object_set_new(*ret_summary, "version_validation_csv", json_string(vfinal));
        if (!*ret_summary) {
            rc = -ENOMEM;
            util_errf(err, errlen, "registered, but out of memory building the summary");
            goto out;
        }
    }
    rc = 0;
out:
    schema_in_free(&sch);
    model_manifest_free(m);
    json_decref(info);
    return rc;
}

/* ---- train ---- */

typedef struct param {
    char key[64];
    char value[128];
} param_t;

static int set_param(param_t *ps, size_t *n, const char *k, const char *v)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(ps[i].key, k) == 0) {
            snprintf(ps[i].value, sizeof(ps[i].value), "%s", v);
            return 0;
        }
    if (*n >= MAX_PARAMS)
        return -E2BIG;
    snprintf(ps[*n].key, sizeof(ps[*n].key), "%s", k);
    snprintf(ps[*n].value, sizeof(ps[*n].value), "%s", v);
    (*n)++;
    return 0;
}

static const char *get_param(const param_t *ps, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].key, k) == 0)
            return ps[i].value;
    return NULL;
}

/* Sets every --param key=value over ps (the syntax is checked here, before any data is
 * read, so that a malformed one is a usage error whatever the data holds). */
static int add_user_params(const model_train_opts_t *o, param_t *ps, size_t *n, char *err, size_t errlen)
{
    for (size_t i = 0; i < o->n_params; i++) {
        const char *kv = o->params[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(ps[0].key) ||
            strlen(eq + 1) >= sizeof(ps[0].value) || eq[1] == '\0') {
            util_errf(err, errlen, "--param %s: expected key=value (key < 64, value < 128 characters)", kv);
            return -EINVAL;
        }
        char key[64];
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = '\0';
        if (strcmp(key, "validate_parameters") == 0 || strcmp(key, "verbosity") == 0) {
            util_errf(err, errlen,
                      "--param %s: set by aimedres (XGBoost must validate parameters so that a mistyped "
                      "one is refused)",
                      key);
            return -EINVAL;
        }
        if (set_param(ps, n, key, eq + 1) < 0) {
            util_errf(err, errlen, "--param: more than %d parameters", MAX_PARAMS);
            return -EINVAL;
        }
    }
    return 0;
}

static int build_params(const model_train_opts_t *o, model_task_t task, size_t k, param_t *ps, size_t *n,
                        char *err, size_t errlen)
{
    char tmp[32];
    *n = 0;
    set_param(ps, n, "objective",
              task == MODEL_TASK_BINARY       ? "binary:logistic"
              : task == MODEL_TASK_MULTICLASS ? "multi:softprob"
                                              : "reg:squarederror");
    if (task == MODEL_TASK_MULTICLASS) {
        snprintf(tmp, sizeof(tmp), "%zu", k);
        set_param(ps, n, "num_class", tmp);
    }
    set_param(ps, n, "max_depth", "4");
    set_param(ps, n, "eta", "0.1");
    set_param(ps, n, "nthread", "2");
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)(o->seed & 0x7fffffffULL));
    set_param(ps, n, "seed", tmp);
    int rc = add_user_params(o, ps, n, err, errlen);
    if (rc < 0)
        return rc;
    const char *obj = get_param(ps, *n, "objective");
    bool ok = task == MODEL_TASK_BINARY ? strcmp(obj, "binary:logistic") == 0
              : task == MODEL_TASK_MULTICLASS
                  ? strcmp(obj, "multi:softprob") == 0
                  : strncmp(obj, "reg:", 4) == 0 || strcmp(obj, "count:poisson") == 0;
    if (!ok) {
        util_errf(
            err, errlen,
            "--param objective=%s does not fit a %s model: the server needs %s (probabilities or values)",
            obj, model_task_name(task),
            task == MODEL_TASK_BINARY       ? "binary:logistic"
            : task == MODEL_TASK_MULTICLASS ? "multi:softprob"
                                            : "a reg:* or count:poisson objective");
        return -EINVAL;
    }
    const char *nc = get_param(ps, *n, "num_class");
    if (nc && task == MODEL_TASK_BINARY) {
        util_errf(err, errlen,
                  "--param num_class=%s: the labels (0/1) make a binary model, which takes no num_class; "
                  "remove the parameter (multiclass needs labels 0..K-1 with K >= 3)",
                  nc);
        return -EINVAL;
    }
    if (nc && task == MODEL_TASK_REGRESSION) {
        util_errf(err, errlen,
                  "--param num_class=%s: a regression model has no classes; remove the parameter", nc);
        return -EINVAL;
    }
    if (nc && strtoul(nc, NULL, 10) != k) {
        util_errf(err, errlen, "--param num_class=%s does not match the %zu classes in the labels", nc, k);
        return -EINVAL;
    }
    return 0;
}

/* ---- unknown parameters: XGBoost's own validation, captured from its log ---- */

/* With validate_parameters=1, XGBoost's first training iteration logs a warning
 * 'Parameters: { "max_dpeth", ... } are not used.' naming every parameter no component of
 * the model took (unknown, mistyped, or meaningless for this objective and booster). The
 * log callback is per thread in XGBoost, and so is this capture. */
#define UNUSED_MAX 1024
static _Thread_local struct {
    bool on;
    char names[UNUSED_MAX]; /* "a\0b\0" */
    size_t len;
} unused_cap;

static void capture_unused(const char *msg)
{
    const char *p = strstr(msg, "Parameters: {");
    const char *end = p ? strchr(p, '}') : NULL;
    if (!end)
        return;
    for (p = strchr(p, '"'); p && p < end; p = strchr(p, '"')) {
        const char *q = strchr(p + 1, '"');
        if (!q || q > end)
            break;
        size_t n = (size_t)(q - p - 1);
        if (n > 0 && unused_cap.len + n + 1 <= UNUSED_MAX) {
            memcpy(unused_cap.names + unused_cap.len, p + 1, n);
            unused_cap.names[unused_cap.len + n] = '\0';
            unused_cap.len += n + 1;
        }
        p = q + 1;
    }
}

/* XGBoost's log, routed to log.c as model/xgboost.c does (parameter names and file locations,
 * never data values), except the unused-parameter warning while a capture is on. */
static void train_xgb_log(const char *msg)
{
    if (unused_cap.on && strstr(msg, "are not used") && strstr(msg, "Parameters: {")) {
        capture_unused(msg);
        return;
    }
    model_xgboost_log(msg);
}

static bool user_param(const model_train_opts_t *o, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < o->n_params; i++)
        if (strncmp(o->params[i], key, kl) == 0 && o->params[i][kl] == '=')
            return true;
    return false;
}

/* Runs the first boosting round with the unused-parameter capture on. Unused parameters the
 * user gave are refused (-EINVAL, naming them); unused defaults of ours (e.g. max_depth
 * under booster=gblinear) are dropped from ps so provenance records only what applied. */
static int first_round(const model_train_opts_t *o, model_task_t task, BoosterHandle bst,
                       DMatrixHandle dtrain, param_t *ps, size_t *n, char *err, size_t errlen)
{
    unused_cap.on = true;
    unused_cap.len = 0;
    XGBRegisterLogCallback(train_xgb_log);
    int xrc = XGBoosterUpdateOneIter(bst, 0, dtrain);
    unused_cap.on = false;
    if (xrc != 0)
        return xgb_fail(err, errlen, "training failed");
    char bad[512] = "";
    size_t blen = 0;
    for (size_t off = 0; off < unused_cap.len; off += strlen(unused_cap.names + off) + 1) {
        const char *name = unused_cap.names + off;
        if (!user_param(o, name)) {
            size_t i = 0;
            while (i < *n && strcmp(ps[i].key, name) != 0)
                i++;
            if (i < *n) { /* one of our defaults: not applied, so not recorded */
                memmove(&ps[i], &ps[i + 1], (*n - i - 1) * sizeof(*ps));
                (*n)--;
                continue;
            }
        }
        int w = snprintf(bad + blen, sizeof(bad) - blen, "%s%s", blen ? ", " : "", name);
        if (w > 0 && (size_t)w < sizeof(bad) - blen)
            blen += (size_t)w;
    }
    if (blen > 0) {
        util_errf(err, errlen,
                  "--param: unknown XGBoost parameter(s): %s (XGBoost does not use them: mistyped, or not "
                  "for a %s model with these settings; see the XGBoost parameter reference)",
                  bad, model_task_name(task));
        return -EINVAL;
    }
    return 0;
}

/* Registers the job's version described as "XGBoost <task> model <verb> by aimedres from
 * <source's file name>"; -ENOMEM when the job has no provenance (it could not be built). */
static int register_job(job_t *j, const char *verb, const char *source, json_t **ret_summary, char *err,
                        size_t errlen)
{
    if (!j->provenance)
        return -ENOMEM;
    char desc[512];
    snprintf(desc, sizeof(desc), "XGBoost %s model %s by aimedres from %s", model_task_name(j->task), verb,
             util_basename(source));
    return build_and_register(j, desc, ret_summary, err, errlen);
}

/* 0 when o's name and version are not registered yet; else -EEXIST or the store's error,
 * explained in err. */
static int check_unregistered(const model_train_opts_t *o, char *err, size_t errlen)
{
    int rc = model_train_is_registered(o->store, o->name, o->version);
    if (rc > 0) {
        util_errf(err, errlen, "%s version %s is already registered", o->name, o->version);
        return -EEXIST;
    }
    if (rc < 0)
        util_errf(err, errlen, "cannot read the model registry: %s", strerror(-rc));
    return rc;
}

/* Makes the job's temporary version directory and puts the path of its booster file in
 * buf; 0 or -errno explained in err. */
static int tmp_booster_path(job_t *j, char *buf, size_t n, char *err, size_t errlen)
{
    int rc = make_tmpdir(j, err, errlen);
    if (rc < 0)
        return rc;
    if (snprintf(buf, n, "%s/%s", j->tmpdir, j->booster_file) >= (int)n) {
        util_errf(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    return 0;
}

int model_train(const model_train_opts_t *o, json_t **ret_summary, char *err, size_t errlen)
{
    job_t j = {.o = o, .tool = "train", .booster_format = "json"};
    snprintf(j.booster_file, sizeof(j.booster_file), "model.json");
    DMatrixHandle dtrain = NULL;
    BoosterHandle bst = NULL;
    double *ptrain = NULL, *pval = NULL;
    param_t params[MAX_PARAMS];
    size_t n_params = 0;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if ((rc = check_common_opts(o, err, errlen)) < 0)
        goto out;
    if (o->rounds < 1 || o->rounds > MODEL_TRAIN_MAX_ROUNDS) {
        util_errf(err, errlen, "--rounds: expected 1..%d", MODEL_TRAIN_MAX_ROUNDS);
        rc = -EINVAL;
        goto out;
    }
    if (!(o->validation_fraction > 0 && o->validation_fraction <= 0.9)) {
        util_errf(err, errlen, "--validation-fraction: expected a number in (0, 0.9]");
        rc = -EINVAL;
        goto out;
    }
    model_task_t forced;
    if (o->task && model_task_parse(o->task, &forced) < 0) {
        util_errf(err, errlen, "--task: expected binary, multiclass or regression");
        rc = -EINVAL;
        goto out;
    }
    if ((rc = add_user_params(o, params, &n_params, err, errlen)) < 0) /* syntax only: rebuilt below */
        goto out;
    if ((rc = check_unregistered(o, err, errlen)) < 0)
        goto out;
    if ((rc = dataset_load(o, &j.ds, err, errlen)) < 0)
        goto out;
    if (!(j.warnings = data_warnings(o, &j.ds))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = resolve_task(o, &j.ds, o->task, &j.task, &j.k, err, errlen)) < 0)
        goto out;
    if ((rc = build_params(o, j.task, j.k, params, &n_params, err, errlen)) < 0)
        goto out;
    j.is_val = calloc(j.ds.n, sizeof(bool));
    if (!j.is_val) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = split_rows(&j.ds, j.task, j.k, o->validation_fraction, o->seed, j.is_val, &j.n_train, &j.n_val,
                         err, errlen)) < 0)
        goto out;
    if ((rc = rows_from_flags(&j)) < 0)
        goto out;

    if ((rc = make_dmatrix(&j.ds, j.train_rows, j.n_train, true, true, &dtrain, err, errlen)) < 0)
        goto out;
    if (XGBoosterCreate(&dtrain, 1, &bst) != 0) {
        rc = xgb_fail(err, errlen, "cannot create a booster");
        goto out;
    }
    /* The C API does not copy the DMatrix's names into the booster (Python does): set
     * them so model.json carries them and `model import` can check column order. */
    if (XGBoosterSetStrFeatureInfo(bst, "feature_name", j.ds.names, (bst_ulong)j.ds.d) != 0) {
        rc = xgb_fail(err, errlen, "cannot store feature names");
        goto out;
    }
    for (size_t i = 0; i < n_params; i++)
        if (XGBoosterSetParam(bst, params[i].key, params[i].value) != 0) {
            char what[256];
            snprintf(what, sizeof(what), "parameter %s=%s", params[i].key, params[i].value);
            rc = xgb_fail(err, errlen, what);
            goto out;
        }
    /* Validation on, and warnings through, whatever verbosity an earlier caller set. */
    if (XGBoosterSetParam(bst, "validate_parameters", "1") != 0 ||
        XGBoosterSetParam(bst, "verbosity", "1") != 0) {
        rc = xgb_fail(err, errlen, "cannot enable parameter validation");
        goto out;
    }
    if ((rc = first_round(o, j.task, bst, dtrain, params, &n_params, err, errlen)) < 0)
        goto out;
    for (int it = 1; it < o->rounds; it++)
        if (XGBoosterUpdateOneIter(bst, it, dtrain) != 0) {
            rc = xgb_fail(err, errlen, "training failed");
            goto out;
        }
    size_t outputs = j.task == MODEL_TASK_MULTICLASS ? j.k : 1;
    if ((rc = predict_rows(bst, &j.ds, j.train_rows, j.n_train, outputs, &ptrain, err, errlen)) < 0 ||
        (rc = predict_rows(bst, &j.ds, j.val_rows, j.n_val, outputs, &pval, err, errlen)) < 0)
        goto out;
    j.training_metrics = score_rows(&j.ds, j.task, j.k, j.train_rows, j.n_train, ptrain, o->threshold);
    j.holdout_metrics = score_rows(&j.ds, j.task, j.k, j.val_rows, j.n_val, pval, o->threshold);
    if (!j.training_metrics || !j.holdout_metrics) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_set_new(j.training_metrics, "source", json_string("training split"));
    json_object_set_new(j.holdout_metrics, "source", json_string("holdout split"));

    char bpath[PATH_MAX];
    if ((rc = tmp_booster_path(&j, bpath, sizeof(bpath), err, errlen)) < 0)
        goto out;
    if (XGBoosterSaveModel(bst, bpath) != 0) {
        rc = xgb_fail(err, errlen, "cannot save the booster");
        goto out;
    }

    char data_sha[SHA256_HEX_LEN] = "";
    util_sha256_file(o->data_path, data_sha);
    json_t *jparams = json_object();
    for (size_t i = 0; jparams && i < n_params; i++)
        json_object_set_new(jparams, params[i].key, json_string(params[i].value));
    j.provenance = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:o}", "tool", "aimedres model train",
        "aimedres_version", AIMEDRES_VERSION, "data_file", util_basename(o->data_path), "data_sha256", data_sha,
        "n_rows", (json_int_t)j.ds.n, "seed", (json_int_t)o->seed, "n_validation", (json_int_t)j.n_val,
        "validation_fraction", o->validation_fraction, "rounds", (json_int_t)o->rounds, "params", jparams);
    rc = register_job(&j, "trained", o->data_path, ret_summary, err, errlen);
out:
    if (rc == -ENOMEM && err && !err[0])
        util_errf(err, errlen, "out of memory");
    free(ptrain);
    free(pval);
    if (bst)
        XGBoosterFree(bst);
    if (dtrain)
        XGDMatrixFree(dtrain);
    job_free(&j);
    return rc;
}

/* ---- import ---- */

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcasecmp(s + n - k, suffix) == 0;
}

/* Task from the booster's saved configuration (learner.objective.name, num_class). */
static int booster_task(BoosterHandle bst, model_task_t *ret_task, size_t *ret_k, char *err, size_t errlen)
{
    bst_ulong len = 0;
    const char *cfg = NULL;
    if (XGBoosterSaveJsonConfig(bst, &len, &cfg) != 0)
        return xgb_fail(err, errlen, "cannot read the booster configuration");
    json_t *root = json_loadb(cfg, (size_t)len, 0, NULL);
    if (!root)
        return util_errf(err, errlen, "cannot parse the booster configuration"), -EBADMSG;
    const json_t *learner = json_object_get(root, "learner");
    const char *obj = json_string_value(json_object_get(json_object_get(learner, "objective"), "name"));
    const json_t *nc = json_object_get(json_object_get(learner, "learner_model_param"), "num_class");
    unsigned long k = 0;
    if (json_is_string(nc))
        k = strtoul(json_string_value(nc), NULL, 10);
    else if (json_is_integer(nc) && json_integer_value(nc) > 0)
        k = (unsigned long)json_integer_value(nc);
    int rc = 0;
    if (!obj) {
        util_errf(err, errlen, "the booster configuration has no learner.objective.name");
        rc = -EBADMSG;
    } else if (strcmp(obj, "binary:logistic") == 0) {
        *ret_task = MODEL_TASK_BINARY;
        *ret_k = 2;
    } else if (strcmp(obj, "multi:softprob") == 0) {
        if (k < 3 || k > MAX_EXPLICIT_CLASSES) {
            util_errf(err, errlen, "multi:softprob booster with num_class=%lu is not supported (3..%d)", k,
                      MAX_EXPLICIT_CLASSES);
            rc = -EBADMSG;
        } else {
            *ret_task = MODEL_TASK_MULTICLASS;
            *ret_k = k;
        }
    } else if (strncmp(obj, "reg:", 4) == 0 || strcmp(obj, "count:poisson") == 0) {
        *ret_task = MODEL_TASK_REGRESSION;
        *ret_k = 0;
    } else {
        util_errf(
            err, errlen,
            "booster objective '%.64s' is not supported: the server needs binary:logistic, multi:softprob "
            "or a reg:*/count:poisson objective",
            obj);
        rc = -EBADMSG;
    }
    json_decref(root);
    return rc;
}

/* A booster saved after early stopping holds every round it ran, and best_iteration names
 * the one to use: XGBClassifier and XGBRegressor predict with rounds 0..best_iteration,
 * Booster.predict with all of them. Which one the team validated is not in the file, so
 * import refuses to guess unless --all-rounds says "all". */
static int check_early_stopping(BoosterHandle bst, const model_train_opts_t *o, char *err, size_t errlen)
{
    const char *best = NULL;
    int found = 0, rounds = 0;
    if (XGBoosterGetAttr(bst, "best_iteration", &best, &found) != 0)
        return xgb_fail(err, errlen, "cannot read the booster's attributes");
    int64_t b;
    if (!found || !best || util_parse_int64(best, 0, INT32_MAX, &b) < 0 || o->all_rounds)
        return 0;
    if (XGBoosterBoostedRounds(bst, &rounds) != 0)
        return xgb_fail(err, errlen, "cannot read the booster's round count");
    if (b + 1 >= rounds)
        return 0;
    util_errf(err, errlen,
              "the booster was saved after early stopping: best_iteration is %lld but it holds %d rounds. "
              "XGBClassifier/XGBRegressor predict with the first %lld rounds, Booster.predict with all %d. "
              "Save the rounds you validated (booster[:%lld].save_model(...)) and import that file, or pass "
              "--all-rounds to serve all %d",
              (long long)b, rounds, (long long)b + 1, rounds, (long long)b + 1, rounds);
    return -EBADMSG;
}

int model_import(const model_train_opts_t *o, json_t **ret_summary, char *err, size_t errlen)
{
    job_t j = {.o = o, .tool = "import"};
    BoosterHandle bst = NULL;
    double *pred = NULL;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if ((rc = check_common_opts(o, err, errlen)) < 0)
        goto out;
    if (!o->booster_path) {
        util_errf(err, errlen, "--booster is required");
        rc = -EINVAL;
        goto out;
    }
    if (util_ends_with(o->booster_path, ".json")) {
        j.booster_format = "json";
    } else if (util_ends_with(o->booster_path, ".ubj")) {
        j.booster_format = "ubj";
    } else {
        /* in lower case, as libxgboost reads it (review49 #6: X.JSON passed here, then failed there) */
        util_errf(err, errlen,
                  "--booster: expected a .json or .ubj file saved by XGBoost (save_model), the extension in lower "
                  "case (XGBoost picks the format by it)%s: %.200s",
                  ends_with_ci(o->booster_path, ".json") || ends_with_ci(o->booster_path, ".ubj") ? "; rename it"
                                                                                                  : "",
                  o->booster_path);
        rc = -EINVAL;
        goto out;
    }
    snprintf(j.booster_file, sizeof(j.booster_file), "model.%s", j.booster_format);
    if ((rc = check_unregistered(o, err, errlen)) < 0)
        goto out;
    if ((rc = dataset_load(o, &j.ds, err, errlen)) < 0)
        goto out;
    if (!(j.warnings = data_warnings(o, &j.ds))) {
        rc = -ENOMEM;
        goto out;
    }
    if (XGBoosterCreate(NULL, 0, &bst) != 0) {
        rc = xgb_fail(err, errlen, "cannot create a booster");
        goto out;
    }
    if ((rc = model_xgboost_load_file(bst, o->booster_path, err, errlen)) < 0) {
        rc = rc == -EINVAL ? -EBADMSG : rc;
        goto out;
    }
    XGBoosterSetParam(bst, "nthread", "2");
    bst_ulong nf = 0;
    if (XGBoosterGetNumFeature(bst, &nf) != 0) {
        rc = xgb_fail(err, errlen, "cannot read the booster's feature count");
        goto out;
    }
    if ((size_t)nf != j.ds.d) {
        util_errf(
            err, errlen,
            "the booster expects %llu features but %s has %zu feature columns (all columns except the label "
            "'%s' and --drop ones)",
            (unsigned long long)nf, o->data_path, j.ds.d, o->label);
        rc = -EBADMSG;
        goto out;
    }
    bst_ulong nn = 0;
    const char **bnames = NULL;
    if (XGBoosterGetStrFeatureInfo(bst, "feature_name", &nn, &bnames) != 0) {
        rc = xgb_fail(err, errlen, "cannot read the booster's feature names");
        goto out;
    }
    if (nn > 0) {
        if ((size_t)nn != j.ds.d) {
            util_errf(err, errlen, "the booster stores %llu feature names but %s has %zu feature columns",
                      (unsigned long long)nn, o->data_path, j.ds.d);
            rc = -EBADMSG;
            goto out;
        }
        for (size_t c = 0; c < j.ds.d; c++)
            if (!bnames[c] || strcmp(bnames[c], j.ds.names[c]) != 0) {
                util_errf(
                    err, errlen,
                    "feature %zu: the booster was trained with '%.128s' but column %zu of the data is '%s' "
                    "(the CSV's feature columns must be in the booster's order)",
                    c + 1, bnames[c] ? bnames[c] : "", c + 1, j.ds.names[c]);
                rc = -EBADMSG;
                goto out;
            }
    }
    if ((rc = booster_task(bst, &j.task, &j.k, err, errlen)) < 0)
        goto out;
    size_t outputs = j.task == MODEL_TASK_MULTICLASS ? j.k : 1;
    if ((rc = model_xgboost_check(bst, j.ds.d, outputs, err, errlen)) < 0) {
        rc = rc == -EINVAL ? -EBADMSG : rc;
        goto out;
    }
    if ((rc = check_early_stopping(bst, o, err, errlen)) < 0)
        goto out;
    if ((rc = check_labels(o, &j.ds, j.task, j.k, false, err, errlen)) < 0)
        goto out;

    /* Every row is holdout; the baseline is taken from all of them. */
    j.is_val = calloc(j.ds.n, sizeof(bool));
    if (!j.is_val) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < j.ds.n; i++)
        j.is_val[i] = true;
    if ((rc = rows_from_flags(&j)) < 0)
        goto out;
    if ((rc = predict_rows(bst, &j.ds, j.val_rows, j.n_val, outputs, &pred, err, errlen)) < 0)
        goto out;
    j.training_metrics = json_object();
    j.holdout_metrics = score_rows(&j.ds, j.task, j.k, j.val_rows, j.n_val, pred, o->threshold);
    if (!j.training_metrics || !j.holdout_metrics) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_set_new(j.holdout_metrics, "source", json_string("import data"));

    char bpath[PATH_MAX];
    if ((rc = tmp_booster_path(&j, bpath, sizeof(bpath), err, errlen)) < 0)
        goto out;
    if ((rc = util_copy_file_atomic(o->booster_path, bpath, 0644)) < 0) {
        util_errf(err, errlen, "cannot copy %s: %s", o->booster_path, strerror(-rc));
        goto out;
    }
    char data_sha[SHA256_HEX_LEN] = "";
    util_sha256_file(o->data_path, data_sha);
    j.provenance =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "tool", "aimedres model import", "aimedres_version",
                  AIMEDRES_VERSION, "booster_file", util_basename(o->booster_path), "data_file",
                  util_basename(o->data_path), "data_sha256", data_sha, "n_rows", (json_int_t)j.ds.n);
    rc = register_job(&j, "imported", o->booster_path, ret_summary, err, errlen);
out:
    if (rc == -ENOMEM && err && !err[0])
        util_errf(err, errlen, "out of memory");
    free(pred);
    if (bst)
        XGBoosterFree(bst);
    job_free(&j);
    return rc;
}
