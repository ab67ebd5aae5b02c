/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for model/train.c with a real SQLite store and real XGBoost: binary,
 * multiclass and regression training on generated data (sane holdout metrics, inferred
 * schema, baselines, stratified and seeded split, validation CSV with a label column,
 * manifest loadable by model_manifest_load), sidecar and --units overrides, clear data
 * errors, and import of boosters trained here through the C API, including refusals
 * (feature count, feature names) that register nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include "common/log.h"
#include "common/util.h"
#include "model/csv.h"
#include "model/manifest.h"
#include "model/train.h"
#include "store/store.h"
#include "testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static char tmp[4096], storage[4200], datadir[4200], url[4300];
static store_t *store;

static uint64_t rng_state;
static double urand(void) /* xorshift64*, [0,1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_CRITICAL);
    if (test_tmpdir(tmp, sizeof(tmp), "train") < 0)
        return -1;
    snprintf(storage, sizeof(storage), "%s/models", tmp);
    snprintf(datadir, sizeof(datadir), "%s/data", tmp);
    snprintf(url, sizeof(url), "sqlite://%s/db.sqlite", tmp);
    char err[512];
    if (store_open(url, &store, err, sizeof(err)) < 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(store);
    util_rmtree(tmp);
    return 0;
}

static void opts_for(model_train_opts_t *o, const char *data, const char *label, const char *name)
{
    model_train_opts_init(o);
    o->data_path = data;
    o->label = label;
    o->name = name;
    o->version = "1";
    o->storage_path = storage;
    o->data_dir = datadir;
    o->store = store;
}

/* Binary data: x1 number (5% missing), x2 integer 0..9, flag boolean, id text column;
 * P(y=1) rises with x1 and flag; about 30% positives. */
static void write_binary(const char *path, size_t n, uint64_t seed, size_t *ret_pos)
{
    rng_state = seed;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "id,x1,x2,flag,y\n");
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        double x1 = nrand() * 2 + 5;
        int x2 = (int)(urand() * 10);
        int flag = urand() < 0.4;
        double z = 1.6 * (x1 - 5) + 1.5 * flag - 1.6 + 0.1 * x2 + nrand() * 0.8;
        int y = z > 0;
        pos += (size_t)y;
        if (urand() < 0.05)
            fprintf(f, "p%zu,,%d,%d,%d\n", i, x2, flag, y);
        else
            fprintf(f, "p%zu,%.4f,%d,%d,%d\n", i, x1, x2, flag, y);
    }
    fclose(f);
    if (ret_pos)
        *ret_pos = pos;
}

static csv_table_t *read_csv(const char *path)
{
    csv_table_t *t = NULL;
    char err[512] = "";
    int rc = csv_read_file(path, &t, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return t;
}

static void test_train_binary(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    snprintf(data, sizeof(data), "%s/bin.csv", tmp);
    size_t pos = 0;
    write_binary(data, 600, 7, &pos);
    model_train_opts_t o;
    opts_for(&o, data, "y", "bin");
    const char *drop[] = {"id"};
    o.drop = drop;
    o.n_drop = 1;
    o.class_labels = "negative, positive";
    o.units = "x1=mg/dL";
    o.synthetic = true;
    json_t *sum = NULL;
    int rc = model_train(&o, &sum, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(sum, "task")), "binary");
    size_t ntr = (size_t)json_integer_value(json_object_get(sum, "n_train"));
    size_t nval = (size_t)json_integer_value(json_object_get(sum, "n_validation"));
    assert_int_equal(ntr + nval, 600);
    assert_int_equal(nval, (size_t)llround(0.2 * (double)pos) + (size_t)llround(0.2 * (double)(600 - pos)));
    json_t *h = json_object_get(json_object_get(sum, "metrics"), "holdout");
    double auc = json_number_value(json_object_get(h, "auc"));
    double acc = json_number_value(json_object_get(h, "accuracy"));
    assert_true(auc > 0.85 && auc <= 1.0);
    assert_true(acc > 0.75 && acc <= 1.0);
    assert_true(json_is_true(json_object_get(sum, "stable")));

    /* Validation CSV: features in order + label, holdout rows only, class ratio kept. */
    const char *vpath = json_string_value(json_object_get(sum, "validation_csv"));
    char want[4300];
    snprintf(want, sizeof(want), "%s/baseline/bin_validation.csv", datadir);
    assert_string_equal(vpath, want);
    csv_table_t *v = read_csv(vpath);
    assert_int_equal(v->n_cols, 4);
    assert_string_equal(v->header[0], "x1");
    assert_string_equal(v->header[1], "x2");
    assert_string_equal(v->header[2], "flag");
    assert_string_equal(v->header[3], "label");
    assert_int_equal(v->n_rows, nval);
    size_t vpos = 0;
    for (size_t i = 0; i < v->n_rows; i++)
        vpos += strcmp(csv_cell(v, i, 3), "1") == 0;
    assert_int_equal(vpos, (size_t)llround(0.2 * (double)pos)); /* stratified */
    csv_free(v);

    /* The registered manifest loads and describes the data. */
    model_manifest_t *m = NULL;
    rc = model_manifest_load(json_string_value(json_object_get(sum, "path")), &m, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(m->task, MODEL_TASK_BINARY);
    assert_true(m->synthetic);
    assert_string_equal(m->label, "y");
    assert_int_equal(m->n_classes, 2);
    assert_string_equal(m->class_labels[0], "negative");
    assert_string_equal(m->class_labels[1], "positive");
    assert_int_equal(m->n_features, 3);
    const model_feature_t *x1 = &m->features[0], *x2 = &m->features[1], *flag = &m->features[2];
    assert_string_equal(x1->name, "x1");
    assert_int_equal(x1->type, FEATURE_NUMBER);
    assert_false(x1->required); /* has missing values */
    assert_string_equal(x1->unit, "mg/dL");
    assert_int_equal(x2->type, FEATURE_INTEGER);
    assert_true(x2->required);
    assert_true(x2->has_min && x2->has_max);
    assert_true(x2->min == 0);                 /* 0 - 10% of 9, clamped at 0 */
    assert_true(x2->max == ceil(9 + 0.1 * 9)); /* widened, integral */
    assert_int_equal(flag->type, FEATURE_BOOLEAN);
    assert_true(flag->min == 0 && flag->max == 1);
    assert_int_equal(flag->n_bins, 2);
    for (size_t j = 0; j < m->n_features; j++) {
        const model_feature_t *f = &m->features[j];
        assert_true(f->n_bins >= 2 && f->n_bins <= 10);
        double sum_p = 0;
        for (size_t b = 0; b < f->n_bins; b++)
            sum_p += f->bin_probs[b];
        assert_float_equal(sum_p, 1.0, 1e-9);
        for (size_t b = 1; b <= f->n_bins; b++)
            assert_true(f->bin_edges[b] > f->bin_edges[b - 1]);
        assert_true(f->std > 0);
    }
    assert_int_equal(x1->n_bins, 10); /* continuous: all ten quantile bins survive */
    assert_true(x1->min < x1->bin_edges[0] && x1->max > x1->bin_edges[10]);
    assert_string_equal(json_string_value(json_object_get(m->holdout_metrics, "source")), "holdout split");
    assert_non_null(json_object_get(m->training_metrics, "auc"));
    assert_non_null(json_object_get(json_object_get(m->extra, "provenance"), "data_sha256"));
    model_manifest_free(m);

    /* Same name and version again: refused before any work. */
    json_t *again = NULL;
    err[0] = '\0';
    assert_int_equal(model_train(&o, &again, err, sizeof(err)), -EEXIST);
    assert_null(again);
    assert_non_null(strstr(err, "already registered"));
    json_decref(sum);

    /* The split is a function of the seed: a second model with the same seed holds out
     * exactly the same rows. */
    opts_for(&o, data, "y", "bin2");
    o.drop = drop;
    o.n_drop = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), 0);
    char a[4300], b[4300];
    snprintf(a, sizeof(a), "%s/baseline/bin_validation.csv", datadir);
    snprintf(b, sizeof(b), "%s/baseline/bin2_validation.csv", datadir);
    char *ba = NULL, *bb = NULL;
    size_t la = 0, lb = 0;
    assert_int_equal(util_read_file(a, 1 << 20, &ba, &la), 0);
    assert_int_equal(util_read_file(b, 1 << 20, &bb, &lb), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
}

static void test_train_regression_and_multiclass(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    snprintf(data, sizeof(data), "%s/reg.csv", tmp);
    rng_state = 99;
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    fprintf(f, "a,b,target\n");
    for (int i = 0; i < 500; i++) {
        double a = urand() * 10, b2 = urand() * 4;
        fprintf(f, "%.3f,%.3f,%.4f\n", a, b2, 3 * a - 2 * b2 + nrand() * 0.5);
    }
    fclose(f);
    model_train_opts_t o;
    opts_for(&o, data, "target", "reg");
    json_t *sum = NULL;
    int rc = model_train(&o, &sum, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(sum, "task")), "regression");
    assert_int_equal(json_integer_value(json_object_get(sum, "n_validation")), 100);
    json_t *h = json_object_get(json_object_get(sum, "metrics"), "holdout");
    assert_true(json_number_value(json_object_get(h, "r2")) > 0.9);
    assert_true(json_number_value(json_object_get(h, "rmse")) < 2.0);
    assert_non_null(json_object_get(h, "mae"));
    model_manifest_t *m = NULL;
    assert_int_equal(
        model_manifest_load(json_string_value(json_object_get(sum, "path")), &m, err, sizeof(err)), 0);
    assert_int_equal(m->task, MODEL_TASK_REGRESSION);
    assert_int_equal(m->n_classes, 0);
    model_manifest_free(m);
    json_decref(sum);

    /* Integer labels 0..2 -> multiclass with num_class 3. */
    snprintf(data, sizeof(data), "%s/multi.csv", tmp);
    f = fopen(data, "w");
    assert_non_null(f);
    fprintf(f, "u,v,cls\n");
    for (int i = 0; i < 450; i++) {
        int c = i % 3;
        fprintf(f, "%.3f,%.3f,%d\n", c * 2.0 + nrand(), urand(), c);
    }
    fclose(f);
    opts_for(&o, data, "cls", "multi");
    o.class_labels = "low,mid,high";
    sum = NULL;
    rc = model_train(&o, &sum, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(sum, "task")), "multiclass");
    h = json_object_get(json_object_get(sum, "metrics"), "holdout");
    assert_true(json_number_value(json_object_get(h, "accuracy")) > 0.6);
    assert_string_equal(json_string_value(json_object_get(h, "f1_average")), "macro");
    assert_int_equal(json_integer_value(json_object_get(h, "n_classes")), 3);
    assert_int_equal(json_integer_value(json_object_get(sum, "n_validation")), 90); /* 30 per class */
    json_decref(sum);

    /* Forcing binary on 0..2 labels is explained, not attempted. */
    opts_for(&o, data, "cls", "multi_as_binary");
    o.task = "binary";
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "labels 0 and 1"));
}

static void test_train_errors(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    snprintf(data, sizeof(data), "%s/bad.csv", tmp);
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    fprintf(f, "age,site,y\n");
    for (int i = 0; i < 40; i++)
        fprintf(f, "%d,%s,%d\n", 40 + i, i % 2 ? "north" : "south", i % 2);
    fclose(f);
    model_train_opts_t o;
    opts_for(&o, data, "y", "bad");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "column 'site' is not numeric (line 2)"));
    assert_non_null(strstr(err, "recode it as numbers")); /* review49 #5: --drop alone misled import */
    assert_non_null(strstr(err, "--drop site"));

    opts_for(&o, data, "outcome", "bad");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no label column 'outcome'"));

    const char *drop[] = {"nope"};
    opts_for(&o, data, "y", "bad");
    o.drop = drop;
    o.n_drop = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--drop nope: no such column"));

    const char *drop_site[] = {"site"};
    opts_for(&o, data, "y", "bad");
    o.drop = drop_site;
    o.n_drop = 1;
    const char *params[] = {"objective=multi:softmax"};
    o.params = params;
    o.n_params = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "objective=multi:softmax"));

    opts_for(&o, data, "y", "bad/../x");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--name"));

    /* Nothing of the refused attempts was registered or left in storage. */
    assert_int_equal(model_train_is_registered(store, "bad", "1"), 0);
    char bad_dir[4300];
    snprintf(bad_dir, sizeof(bad_dir), "%s/bad", storage);
    assert_false(util_path_exists(bad_dir));

    /* With the text column dropped it trains. */
    opts_for(&o, data, "y", "bad");
    o.drop = drop_site;
    o.n_drop = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), 0);
    assert_int_equal(model_train_is_registered(store, "bad", "1"), 1);
}

static void test_sidecar(void **state)
{
    (void)state;
    char data[4200], side[4300], err[2048] = "";
    snprintf(data, sizeof(data), "%s/side.csv", tmp);
    write_binary(data, 300, 11, NULL);
    snprintf(side, sizeof(side), "%s.schema.json", data);
    FILE *f = fopen(side, "w");
    assert_non_null(f);
    fprintf(f, "{\"features\":{\"x1\":{\"unit\":\"mmol/L\",\"description\":\"first\",\"min\":-50,\"max\":50},"
               "\"x2\":{\"type\":\"number\",\"required\":false},\"y\":{\"description\":\"the label\"}}}");
    fclose(f);
    model_train_opts_t o;
    opts_for(&o, data, "y", "side");
    const char *drop[] = {"id"};
    o.drop = drop;
    o.n_drop = 1;
    json_t *sum = NULL;
    int rc = model_train(&o, &sum, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    model_manifest_t *m = NULL;
    assert_int_equal(
        model_manifest_load(json_string_value(json_object_get(sum, "path")), &m, err, sizeof(err)), 0);
    assert_string_equal(m->features[0].unit, "mmol/L");
    assert_string_equal(m->features[0].description, "first");
    assert_true(m->features[0].min == -50 && m->features[0].max == 50);
    assert_int_equal(m->features[1].type, FEATURE_NUMBER);
    assert_false(m->features[1].required);
    model_manifest_free(m);
    json_decref(sum);

    /* A declared range the data violates is refused, naming the feature. */
    f = fopen(side, "w");
    fprintf(f, "{\"features\":{\"x1\":{\"min\":0,\"max\":6}}}");
    fclose(f);
    opts_for(&o, data, "y", "side_bad");
    o.drop = drop;
    o.n_drop = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "feature 'x1'"));
    assert_non_null(strstr(err, "outside the declared range"));

    /* Unknown feature names and keys are errors, not silently ignored. */
    f = fopen(side, "w");
    fprintf(f, "{\"features\":{\"x9\":{\"unit\":\"m\"}}}");
    fclose(f);
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "feature 'x9' is not a column"));
    f = fopen(side, "w");
    fprintf(f, "{\"features\":{\"x1\":{\"units\":\"m\"}}}");
    fclose(f);
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "unknown key 'units'"));
    unlink(side);
}

/* Trains a 300-round-free small booster through the C API on the binary CSV's features
 * (x1, x2, flag, optionally an extra column) and saves it as path. */
static void train_booster(const char *csv, size_t nfeat, const char *const *names, const char *path)
{
    csv_table_t *t = read_csv(csv);
    size_t n = t->n_rows;
    float *x = malloc(n * nfeat * sizeof(float)), *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < nfeat; j++) {
            double v = 0;
            int r = j < 3 ? csv_parse_number(csv_cell(t, i, j + 1), &v) : 0;
            x[i * nfeat + j] = r == 0 ? (float)(j < 3 ? v : (double)i) : NAN;
        }
        double lab;
        csv_parse_number(csv_cell(t, i, 4), &lab);
        y[i] = (float)lab;
    }
    DMatrixHandle d;
    assert_int_equal(XGDMatrixCreateFromMat(x, n, nfeat, NAN, &d), 0);
    assert_int_equal(XGDMatrixSetFloatInfo(d, "label", y, n), 0);
    if (names) {
        const char *nm[8];
        for (size_t j = 0; j < nfeat; j++)
            nm[j] = names[j];
        assert_int_equal(XGDMatrixSetStrFeatureInfo(d, "feature_name", nm, nfeat), 0);
    }
    BoosterHandle b;
    assert_int_equal(XGBoosterCreate(&d, 1, &b), 0);
    if (names) { /* as Python's Booster does */
        const char *nm[8];
        for (size_t j = 0; j < nfeat; j++)
            nm[j] = names[j];
        assert_int_equal(XGBoosterSetStrFeatureInfo(b, "feature_name", nm, nfeat), 0);
    }
    XGBoosterSetParam(b, "objective", "binary:logistic");
    XGBoosterSetParam(b, "max_depth", "3");
    XGBoosterSetParam(b, "nthread", "1");
    for (int it = 0; it < 20; it++)
        assert_int_equal(XGBoosterUpdateOneIter(b, it, d), 0);
    assert_int_equal(XGBoosterSaveModel(b, path), 0);
    XGBoosterFree(b);
    XGDMatrixFree(d);
    free(x);
    free(y);
    csv_free(t);
}

static void test_import(void **state)
{
    (void)state;
    char data[4200], booster[4300], err[2048] = "";
    snprintf(data, sizeof(data), "%s/imp.csv", tmp);
    write_binary(data, 400, 21, NULL);
    const char *drop[] = {"id"};
    const char *names3[] = {"x1", "x2", "flag"};
    const char *names_swapped[] = {"x1", "flag", "x2"};
    const char *names4[] = {"x1", "x2", "flag", "extra"};
    model_train_opts_t o;

    /* Wrong feature count: refused, nothing registered. */
    snprintf(booster, sizeof(booster), "%s/four.json", tmp);
    train_booster(data, 4, names4, booster);
    opts_for(&o, data, "y", "imp");
    o.drop = drop;
    o.n_drop = 1;
    o.booster_path = booster;
    assert_int_equal(model_import(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "expects 4 features but"));
    assert_non_null(strstr(err, "3 feature columns"));
    assert_int_equal(model_train_is_registered(store, "imp", "1"), 0);

    /* Stored names in another order: refused, naming the first mismatch. */
    snprintf(booster, sizeof(booster), "%s/swapped.ubj", tmp);
    train_booster(data, 3, names_swapped, booster);
    o.booster_path = booster;
    assert_int_equal(model_import(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "feature 2: the booster was trained with 'flag'"));
    assert_int_equal(model_train_is_registered(store, "imp", "1"), 0);

    /* Unsupported file type. */
    o.booster_path = data;
    assert_int_equal(model_import(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ".json or .ubj"));

    /* Matching booster (UBJSON, with names): imported byte for byte, whole CSV = holdout. */
    snprintf(booster, sizeof(booster), "%s/good.ubj", tmp);
    train_booster(data, 3, names3, booster);
    o.booster_path = booster;
    json_t *sum = NULL;
    int rc = model_import(&o, &sum, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(json_integer_value(json_object_get(sum, "n_train")), 0);
    assert_int_equal(json_integer_value(json_object_get(sum, "n_validation")), 400);
    json_t *h = json_object_get(json_object_get(sum, "metrics"), "holdout");
    assert_string_equal(json_string_value(json_object_get(h, "source")), "import data");
    assert_true(json_number_value(json_object_get(h, "auc")) > 0.85);
    char src_sha[SHA256_HEX_LEN];
    assert_int_equal(util_sha256_file(booster, src_sha), 0);
    assert_string_equal(json_string_value(json_object_get(sum, "sha256")), src_sha);
    model_manifest_t *m = NULL;
    assert_int_equal(
        model_manifest_load(json_string_value(json_object_get(sum, "path")), &m, err, sizeof(err)), 0);
    assert_string_equal(m->booster_file, "model.ubj");
    assert_string_equal(m->booster_format, "ubj");
    assert_int_equal(json_object_size(m->training_metrics), 0);
    model_manifest_free(m);
    json_decref(sum);

    /* A booster without stored names only needs the right count. */
    snprintf(booster, sizeof(booster), "%s/nameless.json", tmp);
    train_booster(data, 3, NULL, booster);
    opts_for(&o, data, "y", "imp");
    o.version = "2";
    o.drop = drop;
    o.n_drop = 1;
    o.booster_path = booster;
    assert_int_equal(model_import(&o, NULL, err, sizeof(err)), 0);
    assert_int_equal(model_train_is_registered(store, "imp", "2"), 1);
}

/* ---- reviewer findings (wave 6): label coding, unknown parameters, degenerate data ---- */

/* n rows "a,b,<label>" where the label of row i is labels[i % n_labels] (text as given);
 * a separates the classes, b is noise, k (when with_const) is 7 everywhere. */
static void write_coded(const char *path, size_t n, const char *const *labels, size_t n_labels,
                        bool with_const)
{
    rng_state = 5;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,b,%sy\n", with_const ? "k," : "");
    for (size_t i = 0; i < n; i++) {
        size_t c = i % n_labels;
        fprintf(f, "%.3f,%.3f,%s%s\n", (double)c * 3 + nrand(), urand(), with_const ? "7," : "", labels[c]);
    }
    fclose(f);
}

/* Nothing of a refused attempt at name is registered or left in storage or DATA_DIR. */
static void assert_nothing_left(const char *name)
{
    char path[4400];
    assert_int_equal(model_train_is_registered(store, name, "1"), 0);
    snprintf(path, sizeof(path), "%s/%s", storage, name);
    assert_false(util_path_exists(path));
    snprintf(path, sizeof(path), "%s/baseline/%s_validation.csv", datadir, name);
    assert_false(util_path_exists(path));
    /* no temporary version directory (.train-XXXXXX) either */
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' 2>/dev/null | grep -q '^\\.'", storage);
    assert_int_not_equal(system(cmd), 0);
}

static void test_train_label_coding(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    model_train_opts_t o;

    /* 1/2 coding: was a 3-class model with a class 0 that never occurs. */
    static const char *const one_two[] = {"1", "2"};
    snprintf(data, sizeof(data), "%s/lab12.csv", tmp);
    write_coded(data, 200, one_two, 2, false);
    opts_for(&o, data, "y", "lab12");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "no rows of class 0:"));
    assert_non_null(strstr(err, "0..K-1 with every class present"));
    assert_non_null(strstr(err, "recode the label column to 0..1"));
    assert_non_null(strstr(err, "--class-labels"));
    assert_nothing_left("lab12");
    /* ... and with --task multiclass too. */
    o.task = "multiclass";
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "no rows of class 0:"));

    /* A gap in the middle: 0, 2, 4 -> classes 1 and 3 are named. */
    static const char *const gaps[] = {"0", "2", "4"};
    snprintf(data, sizeof(data), "%s/gaps.csv", tmp);
    write_coded(data, 300, gaps, 3, false);
    opts_for(&o, data, "y", "gaps");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "no rows of classes 1, 3:"));
    assert_non_null(strstr(err, "recode the label column to 0..2"));
    assert_nothing_left("gaps");

    /* Text labels: the error says how to fix it. */
    static const char *const yes_no[] = {"no", "yes"};
    snprintf(data, sizeof(data), "%s/textlab.csv", tmp);
    write_coded(data, 200, yes_no, 2, false);
    opts_for(&o, data, "y", "yesno");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "is not a number at line 2"));
    assert_non_null(strstr(err, "recode the label column to 0..K-1"));
    assert_non_null(strstr(err, "--class-labels"));
    assert_null(strstr(err, "yes"));
    assert_nothing_left("yesno");

    /* Recoded to 0/1 with names it trains. */
    static const char *const zero_one[] = {"0", "1"};
    write_coded(data, 200, zero_one, 2, false);
    o.class_labels = "no,yes";
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), 0);
}

static void test_train_unknown_param(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    static const char *const zero_one[] = {"0", "1"};
    snprintf(data, sizeof(data), "%s/params.csv", tmp);
    write_coded(data, 200, zero_one, 2, false);
    model_train_opts_t o;

    /* A typo XGBoost would ignore is refused, naming it; a valid one beside it is not named. */
    const char *typo[] = {"eta=0.3", "max_dpeth=8", "colsample_bytre=0.5"};
    opts_for(&o, data, "y", "typo");
    o.params = typo;
    o.n_params = 3;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--param: unknown XGBoost parameter(s): "));
    assert_non_null(strstr(err, "max_dpeth"));
    assert_non_null(strstr(err, "colsample_bytre"));
    assert_null(strstr(err, "eta"));
    assert_nothing_left("typo");

    /* Valid for XGBoost but not for this objective: also unused, also refused. */
    static const char *const three[] = {"0", "1", "2"};
    char mdata[4200];
    snprintf(mdata, sizeof(mdata), "%s/params3.csv", tmp);
    write_coded(mdata, 300, three, 3, false);
    const char *spw[] = {"scale_pos_weight=3"};
    opts_for(&o, mdata, "y", "spw");
    o.params = spw;
    o.n_params = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown XGBoost parameter(s): scale_pos_weight"));
    assert_nothing_left("spw");

    /* Switching validation off is not an option. */
    const char *novalid[] = {"validate_parameters=0"};
    opts_for(&o, data, "y", "novalid");
    o.params = novalid;
    o.n_params = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "validate_parameters"));

    /* Parameters that apply are recorded; a default the chosen booster does not use
     * (max_depth under gblinear) is not claimed in provenance. */
    const char *linear[] = {"booster=gblinear", "lambda=0.5"};
    opts_for(&o, data, "y", "linear");
    o.params = linear;
    o.n_params = 2;
    o.rounds = 5;
    json_t *sum = NULL;
    int rc = model_train(&o, &sum, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    model_manifest_t *m = NULL;
    assert_int_equal(
        model_manifest_load(json_string_value(json_object_get(sum, "path")), &m, err, sizeof(err)), 0);
    json_t *params = json_object_get(json_object_get(m->extra, "provenance"), "params");
    assert_string_equal(json_string_value(json_object_get(params, "booster")), "gblinear");
    assert_string_equal(json_string_value(json_object_get(params, "lambda")), "0.5");
    assert_null(json_object_get(params, "max_depth"));
    assert_non_null(json_object_get(params, "eta"));
    model_manifest_free(m);
    json_decref(sum);
}

static void test_train_num_class_message(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    static const char *const zero_one[] = {"0", "1"};
    snprintf(data, sizeof(data), "%s/nc.csv", tmp);
    write_coded(data, 100, zero_one, 2, false);
    model_train_opts_t o;
    const char *nc2[] = {"num_class=2"};
    opts_for(&o, data, "y", "nc");
    o.params = nc2;
    o.n_params = 1;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "0 classes"));
    assert_non_null(strstr(err, "--param num_class=2: the labels (0/1) make a binary model"));

    static const char *const three[] = {"0", "1", "2"};
    write_coded(data, 150, three, 3, false);
    const char *nc4[] = {"num_class=4"};
    o.params = nc4;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "num_class=4 does not match the 3 classes"));
    assert_nothing_left("nc");
}

static void test_train_degenerate_data(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    model_train_opts_t o;

    /* One positive in 20 rows: it cannot be in both splits. */
    snprintf(data, sizeof(data), "%s/onepos.csv", tmp);
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    fprintf(f, "a,b,y\n");
    for (int i = 0; i < 20; i++)
        fprintf(f, "%d,%d,%d\n", i, i % 3, i == 0);
    fclose(f);
    opts_for(&o, data, "y", "onepos");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "class 1 has 1 row: every class needs at least 2 rows"));
    assert_nothing_left("onepos");

    /* Below the minimum row count (train and import alike). */
    snprintf(data, sizeof(data), "%s/few.csv", tmp);
    f = fopen(data, "w");
    assert_non_null(f);
    fprintf(f, "a,b,y\n1,2,0\n2,3,1\n3,1,0\n4,4,1\n");
    fclose(f);
    opts_for(&o, data, "y", "few");
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "4 data rows: a model needs at least 10"));
    assert_nothing_left("few");
    char booster[4300];
    snprintf(booster, sizeof(booster), "%s/few.json", tmp);
    f = fopen(booster, "w"); /* never loaded: the row count is checked first */
    assert_non_null(f);
    fprintf(f, "{}");
    fclose(f);
    o.booster_path = booster;
    assert_int_equal(model_import(&o, NULL, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "at least 10"));
    assert_nothing_left("few");

    /* Exactly the minimum trains. */
    f = fopen(data, "w");
    assert_non_null(f);
    fprintf(f, "a,b,y\n");
    for (int i = 0; i < MODEL_TRAIN_MIN_ROWS; i++)
        fprintf(f, "%d,%d,%d\n", i, (i * 7) % 5, i % 2);
    fclose(f);
    opts_for(&o, data, "y", "ten");
    o.rounds = 3;
    assert_int_equal(model_train(&o, NULL, err, sizeof(err)), 0);

    /* A constant column trains, with a warning naming it and the option to drop it. */
    static const char *const zero_one[] = {"0", "1"};
    snprintf(data, sizeof(data), "%s/const.csv", tmp);
    write_coded(data, 200, zero_one, 2, true);
    opts_for(&o, data, "y", "const");
    json_t *sum = NULL;
    assert_int_equal(model_train(&o, &sum, err, sizeof(err)), 0);
    json_t *w = json_object_get(sum, "warnings");
    assert_int_equal(json_array_size(w), 1);
    const char *msg = json_string_value(json_array_get(w, 0));
    assert_non_null(strstr(msg, "column 'k' has the same value in every row"));
    assert_non_null(strstr(msg, "--drop k"));
    json_decref(sum);
    /* ... and none once it is dropped. */
    const char *drop[] = {"k"};
    opts_for(&o, data, "y", "const_dropped");
    o.drop = drop;
    o.n_drop = 1;
    assert_int_equal(model_train(&o, &sum, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(json_object_get(sum, "warnings")), 0);
    json_decref(sum);
}

static void test_train_stray_missing_cell(void **state)
{
    (void)state;
    char data[4200], err[2048] = "";
    static const char *const markers[] = {"N/A", "NULL", "?", "SMITH-4411"};
    for (size_t m = 0; m < ARRAY_SIZE(markers); m++) {
        snprintf(data, sizeof(data), "%s/stray.csv", tmp);
        FILE *f = fopen(data, "w");
        assert_non_null(f);
        fprintf(f, "age,score,y\n");
        for (int i = 0; i < 50; i++) { /* data row 2 is line 4 */
            if (i == 2)
                fprintf(f, "%s,%d,%d\n", markers[m], i % 7, i % 2);
            else
                fprintf(f, "%d,%d,%d\n", 40 + i, i % 7, i % 2);
        }
        fclose(f);
        model_train_opts_t o;
        opts_for(&o, data, "y", "stray");
        assert_int_equal(model_train(&o, NULL, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "line 4, column 'age': value is not a number"));
        assert_non_null(strstr(err, "only an empty cell, NA or nan mean missing"));
        assert_null(strstr(err, "not numeric"));
        assert_null(strstr(err, markers[m])); /* the cell could be PHI: never echoed */
        assert_nothing_left("stray");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_binary),
        cmocka_unit_test(test_train_regression_and_multiclass),
        cmocka_unit_test(test_train_errors),
        cmocka_unit_test(test_sidecar),
        cmocka_unit_test(test_import),
        cmocka_unit_test(test_train_label_coding),
        cmocka_unit_test(test_train_unknown_param),
        cmocka_unit_test(test_train_num_class_message),
        cmocka_unit_test(test_train_degenerate_data),
        cmocka_unit_test(test_train_stray_missing_cell),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
