/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for demo/cohorts.c: generation is deterministic (two runs, same bytes;
 * demo_cohorts_write leaves identical files alone), every cohort has the documented
 * shape (columns, row count, sex column, 0/1 label with the intended class balance, a
 * few % missing only in optional features, values inside the sidecar's clinical ranges),
 * and a model trained on each cohort has realistic class overlap (holdout accuracy
 * neither chance nor perfect). */
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

#include "common/log.h"
#include "common/util.h"
#include "demo/cohorts.h"
#include "model/csv.h"
#include "model/train.h"
#include "store/store.h"
#include "testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static char tmp[4096];

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_CRITICAL);
    return test_tmpdir(tmp, sizeof(tmp), "cohorts");
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(tmp);
    return 0;
}

static void test_deterministic(void **state)
{
    (void)state;
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++) {
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        assert_int_equal(demo_cohort_csv(&demo_cohorts[i], &a, &la), 0);
        assert_int_equal(demo_cohort_csv(&demo_cohorts[i], &b, &lb), 0);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        assert_int_equal(strlen(a), la);
        free(a);
        free(b);
        assert_int_equal(demo_cohort_schema_json(&demo_cohorts[i], &a, &la), 0);
        assert_int_equal(demo_cohort_schema_json(&demo_cohorts[i], &b, &lb), 0);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
    }
    /* The cohorts differ from one another (distinct seeds and generators). */
    char *x = NULL, *y = NULL;
    size_t lx, ly;
    demo_cohort_csv(&demo_cohorts[DEMO_ALZHEIMER], &x, &lx);
    demo_cohort_csv(&demo_cohorts[DEMO_ALS], &y, &ly);
    assert_true(lx != ly || memcmp(x, y, lx) != 0);
    free(x);
    free(y);

    /* Files: the first write creates 6, the second finds them identical. */
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/gen", tmp);
    char err[512];
    int written = -1;
    assert_int_equal(demo_cohorts_write(dir, &written, err, sizeof(err)), 0);
    assert_int_equal(written, 2 * DEMO_COHORT_COUNT);
    char sha1[SHA256_HEX_LEN], sha2[SHA256_HEX_LEN], path[4300];
    snprintf(path, sizeof(path), "%s/parkinsons.csv", dir);
    assert_int_equal(util_sha256_file(path, sha1), 0);
    assert_int_equal(demo_cohorts_write(dir, &written, err, sizeof(err)), 0);
    assert_int_equal(written, 0);
    assert_int_equal(util_sha256_file(path, sha2), 0);
    assert_string_equal(sha1, sha2);

    assert_ptr_equal(demo_cohort_find("als_classifier"), &demo_cohorts[DEMO_ALS]);
    assert_ptr_equal(demo_cohort_find("parkinsons"), &demo_cohorts[DEMO_PARKINSONS]);
    assert_null(demo_cohort_find("diabetes"));
}

static void check_shape(const demo_cohort_t *c, double p1_lo, double p1_hi)
{
    char *buf = NULL, *schema = NULL;
    size_t len = 0, slen = 0;
    assert_int_equal(demo_cohort_csv(c, &buf, &len), 0);
    assert_int_equal(demo_cohort_schema_json(c, &schema, &slen), 0);
    csv_table_t *t = NULL;
    char err[512];
    assert_int_equal(csv_parse(buf, len, &t, err, sizeof(err)), 0);
    json_t *js = json_loads(schema, 0, NULL);
    assert_non_null(js);
    json_t *feats = json_object_get(js, "features");
    assert_int_equal(json_object_size(feats), t->n_cols - 1);
    assert_true(json_is_true(json_object_get(js, "synthetic")));

    assert_int_equal(t->n_rows, c->n_rows);
    assert_true(c->n_rows >= 1000 && c->n_rows <= 2000);
    assert_string_equal(t->header[t->n_cols - 1], c->label);
    int sex = csv_column_index(t, "sex");
    assert_true(sex >= 0);
    size_t pos = 0, males = 0, missing_total = 0;
    for (size_t i = 0; i < t->n_rows; i++) {
        const char *l = csv_cell(t, i, t->n_cols - 1);
        assert_true(strcmp(l, "0") == 0 || strcmp(l, "1") == 0);
        pos += l[0] == '1';
        const char *s = csv_cell(t, i, (size_t)sex);
        assert_true(strcmp(s, "0") == 0 || strcmp(s, "1") == 0);
        males += s[0] == '1';
    }
    double p1 = (double)pos / (double)t->n_rows;
    assert_true(p1 >= p1_lo && p1 <= p1_hi);
    assert_true(males > t->n_rows / 5 && males < t->n_rows * 4 / 5);

    for (size_t j = 0; j + 1 < t->n_cols; j++) {
        json_t *f = json_object_get(feats, t->header[j]);
        assert_non_null(f);
        assert_non_null(json_object_get(f, "description"));
        double lo = json_number_value(json_object_get(f, "min")),
               hi = json_number_value(json_object_get(f, "max"));
        bool required = json_is_true(json_object_get(f, "required"));
        size_t miss = 0;
        for (size_t i = 0; i < t->n_rows; i++) {
            double v;
            int r = csv_parse_number(csv_cell(t, i, j), &v);
            assert_true(r >= 0);
            if (r == 1) {
                miss++;
                continue;
            }
            assert_true(v >= lo && v <= hi);
        }
        if (required)
            assert_int_equal(miss, 0);
        else
            assert_true(miss > 0 && miss < t->n_rows / 10); /* a few %, not more */
        missing_total += miss;
    }
    assert_true(missing_total > 0);
    json_decref(js);
    csv_free(t);
    free(buf);
    free(schema);
}

static void test_shapes(void **state)
{
    (void)state;
    check_shape(&demo_cohorts[DEMO_ALZHEIMER], 0.38, 0.48);
    check_shape(&demo_cohorts[DEMO_PARKINSONS], 0.70, 0.80);
    check_shape(&demo_cohorts[DEMO_ALS], 0.55, 0.65);
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++)
        assert_non_null(strstr(demo_cohorts[i].description, "NOT FOR CLINICAL USE"));
}

static void test_trainable_with_overlap(void **state)
{
    (void)state;
    char dir[4200], url[4300], storage[4300], data[4300], csv[4400], err[2048];
    snprintf(dir, sizeof(dir), "%s/train", tmp);
    snprintf(url, sizeof(url), "sqlite://%s/db.sqlite", dir);
    snprintf(storage, sizeof(storage), "%s/models", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    assert_int_equal(demo_cohorts_write(data, NULL, err, sizeof(err)), 0);
    store_t *store = NULL;
    assert_int_equal(store_open(url, &store, err, sizeof(err)), 0);
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++) {
        const demo_cohort_t *c = &demo_cohorts[i];
        snprintf(csv, sizeof(csv), "%s/%s", data, c->file);
        model_train_opts_t o;
        model_train_opts_init(&o);
        o.data_path = csv;
        o.label = c->label;
        o.name = c->model_name;
        o.version = "1.0.0";
        o.class_labels = c->class_labels;
        o.description = c->description;
        o.synthetic = true;
        o.storage_path = storage;
        o.data_dir = data;
        o.store = store;
        json_t *sum = NULL;
        int rc = model_train(&o, &sum, err, sizeof(err));
        if (rc < 0)
            fprintf(stderr, "%s: %s\n", c->model_name, err);
        assert_int_equal(rc, 0);
        json_t *h = json_object_get(json_object_get(sum, "metrics"), "holdout");
        double acc = json_number_value(json_object_get(h, "accuracy"));
        double auc = json_number_value(json_object_get(h, "auc"));
        printf("%s: holdout accuracy %.3f auc %.3f\n", c->model_name, acc, auc);
        assert_true(acc >= 0.78 && acc <= 0.96);
        assert_true(auc >= 0.85 && auc < 0.995);
        json_decref(sum);
    }
    store_close(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_trainable_with_overlap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
