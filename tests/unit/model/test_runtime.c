/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for model/runtime.c and the XGBoost backend: boosters trained in the test
 * through the C API, saved as JSON and UBJSON, opened through manifests; predictions
 * compared with XGBoost's own DMatrix path, refusals, refcounting, concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>
#include <pthread.h>

#include "fixture.h"
#include "model/runtime.h"

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = fx_tmpdir("runtime");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(tmp);
    free(tmp);
    return 0;
}

/* A version dir with the booster in the given file, manifest written. */
static char *make_dir(const char *tag, model_task_t task, size_t nfeat, const char *file, bool names)
{
    char *dir = malloc(4096);
    snprintf(dir, 4096, "%s/%s", tmp, tag);
    util_mkdir_p(dir, 0755);
    fx_train(task, NULL, nfeat, 5, 7, names, dir, file);
    json_t *m = fx_manifest_json("m", "1", task, nfeat, dir, file);
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    return dir;
}

static void check_predictions(model_task_t task, const char *file)
{
    const size_t nfeat = 4;
    char tag[64];
    snprintf(tag, sizeof(tag), "pred-%d-%s", (int)task, file);
    char *dir = make_dir(tag, task, nfeat, file, false);
    char err[1024] = "";
    model_handle_t *h = NULL;
    int r = model_handle_open(dir, &h, err, sizeof(err));
    if (r < 0)
        fail_msg("open: %s", err);
    size_t outputs = model_handle_outputs(h);
    assert_int_equal(outputs, task == MODEL_TASK_MULTICLASS ? 3 : 1);

    /* Fresh rows (other seed) with missing values: must equal XGBoost's DMatrix predict. */
    float *x = fx_data(100, nfeat, 99);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    size_t ref_len = 0;
    float *ref = fx_reference(path, x, 100, nfeat, &ref_len);
    assert_int_equal(ref_len, 100 * outputs);

    float *batch = calloc(100 * outputs, sizeof(float));
    assert_int_equal(model_handle_predict(h, x, 100, batch, err, sizeof(err)), 0);
    int nan_rows = 0;
    for (size_t i = 0; i < 100; i++) {
        float single[3];
        assert_int_equal(model_handle_predict(h, x + i * nfeat, 1, single, err, sizeof(err)), 0);
        for (size_t k = 0; k < outputs; k++) {
            assert_true(batch[i * outputs + k] == ref[i * outputs + k]);
            assert_true(single[k] == ref[i * outputs + k]);
        }
        for (size_t j = 0; j < nfeat; j++)
            if (isnan(x[i * nfeat + j])) {
                nan_rows++;
                break;
            }
    }
    assert_true(nan_rows > 0); /* missing values were exercised */
    /* A row of all-missing values and a row with zeros (0 is not "missing") differ in
     * general; both must match the reference. */
    float special[2 * 4] = {NAN, NAN, NAN, NAN, 0, 0, 0, 0};
    float *sref = fx_reference(path, special, 2, nfeat, &ref_len);
    float sout[6];
    assert_int_equal(model_handle_predict(h, special, 2, sout, err, sizeof(err)), 0);
    for (size_t k = 0; k < 2 * outputs; k++)
        assert_true(sout[k] == sref[k]);
    assert_int_equal(model_handle_predict(h, x, 0, batch, err, sizeof(err)), 0);

    free(sref);
    free(batch);
    free(ref);
    free(x);
    model_handle_unref(h);
    free(dir);
}

static void test_predict_binary_json(void **state)
{
    (void)state;
    check_predictions(MODEL_TASK_BINARY, "model.json");
}

static void test_predict_binary_ubj(void **state)
{
    (void)state;
    check_predictions(MODEL_TASK_BINARY, "model.ubj");
}

static void test_predict_multiclass(void **state)
{
    (void)state;
    check_predictions(MODEL_TASK_MULTICLASS, "model.json");
    check_predictions(MODEL_TASK_MULTICLASS, "model.ubj");
}

static void test_predict_regression(void **state)
{
    (void)state;
    check_predictions(MODEL_TASK_REGRESSION, "model.json");
    check_predictions(MODEL_TASK_REGRESSION, "model.ubj");
}

static void test_sha_mismatch(void **state)
{
    (void)state;
    char *dir = make_dir("sha", MODEL_TASK_BINARY, 3, "model.json", false);
    json_t *m = fx_manifest_json("m", "1", MODEL_TASK_BINARY, 3, dir, "model.json");
    json_object_set_new(json_object_get(m, "booster"), "sha256",
                        json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    char err[1024] = "";
    model_handle_t *h = NULL;
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -EBADMSG);
    assert_null(h);
    assert_non_null(strstr(err, "booster sha256 mismatch: manifest says 0000"));
    assert_non_null(strstr(err, ", file is "));
    free(dir);
}

static void test_feature_count_mismatch(void **state)
{
    (void)state;
    char *dir = make_dir("nfeat", MODEL_TASK_BINARY, 4, "model.json", false);
    json_t *m = fx_manifest_json("m", "1", MODEL_TASK_BINARY, 3, dir, "model.json"); /* 3 != 4 */
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    char err[1024] = "";
    model_handle_t *h = NULL;
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "booster expects 4 features, manifest lists 3"));
    free(dir);
}

static void test_feature_names_checked(void **state)
{
    (void)state;
    /* Booster stores names f0..f3; the manifest lists them in another order. */
    char *dir = make_dir("names", MODEL_TASK_BINARY, 4, "model.json", true);
    char err[1024] = "";
    model_handle_t *h = NULL;
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), 0);
    const char **names = NULL;
    size_t n = 0;
    model_handle_unref(h);
    void *st = NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/model.json", dir);
    assert_int_equal(model_backend_xgboost.load(path, &st, err, sizeof(err)), 0);
    assert_int_equal(model_backend_xgboost.feature_names(st, &names, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(names[2], "f2");
    model_backend_xgboost.free(st);

    json_t *m = fx_manifest_json("m", "1", MODEL_TASK_BINARY, 4, dir, "model.json");
    json_t *features = json_object_get(m, "features");
    json_object_set_new(json_array_get(features, 1), "name", json_string("f2"));
    json_object_set_new(json_array_get(features, 2), "name", json_string("f1"));
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "feature 1 is 'f1' in the booster but 'f2' in the manifest"));
    free(dir);
}

static void test_task_mismatch(void **state)
{
    (void)state;
    char err[1024] = "";
    model_handle_t *h = NULL;
    /* A regression booster described as binary. */
    char *dir = make_dir("task", MODEL_TASK_REGRESSION, 3, "model.json", false);
    json_t *m = fx_manifest_json("m", "1", MODEL_TASK_BINARY, 3, dir, "model.json");
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "booster objective is a regression model, manifest says binary"));
    free(dir);

    /* A 3-class booster with 4 labels. */
    dir = make_dir("classes", MODEL_TASK_MULTICLASS, 3, "model.json", false);
    m = fx_manifest_json("m", "1", MODEL_TASK_MULTICLASS, 3, dir, "model.json");
    json_array_append_new(json_object_get(m, "class_labels"), json_string("extra"));
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "booster predicts 3 classes, manifest lists 4 class labels"));
    free(dir);
}

static void test_unsupported_objectives(void **state)
{
    (void)state;
    char err[1024] = "";
    void *st = NULL;
    char dir[4096], path[4096];
    snprintf(dir, sizeof(dir), "%s/objectives", tmp);
    util_mkdir_p(dir, 0755);
    fx_train(MODEL_TASK_MULTICLASS, "multi:softmax", 3, 2, 3, false, dir, "softmax.json");
    snprintf(path, sizeof(path), "%s/softmax.json", dir);
    assert_int_equal(model_backend_xgboost.load(path, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "multi:softmax predicts class indices"));

    fx_train(MODEL_TASK_BINARY, "binary:logitraw", 3, 2, 3, false, dir, "raw.json");
    snprintf(path, sizeof(path), "%s/raw.json", dir);
    assert_int_equal(model_backend_xgboost.load(path, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "objective 'binary:logitraw' is not supported"));

    /* Supported: check task and output counts reported by the backend. */
    fx_train(MODEL_TASK_MULTICLASS, NULL, 3, 2, 3, false, dir, "prob.ubj");
    snprintf(path, sizeof(path), "%s/prob.ubj", dir);
    assert_int_equal(model_backend_xgboost.load(path, &st, err, sizeof(err)), 0);
    model_task_t task;
    size_t outputs, nf;
    assert_int_equal(model_backend_xgboost.task(st, &task, &outputs), 0);
    assert_int_equal(task, MODEL_TASK_MULTICLASS);
    assert_int_equal(outputs, 3);
    assert_int_equal(model_backend_xgboost.num_features(st, &nf), 0);
    assert_int_equal(nf, 3);
    const char **names = NULL;
    size_t n = 99;
    assert_int_equal(model_backend_xgboost.feature_names(st, &names, &n), 0);
    assert_int_equal(n, 0);
    model_backend_xgboost.free(st);

    /* Wrong extension: XGBoost would read it as the legacy binary format. */
    snprintf(path, sizeof(path), "%s/prob.bin", dir);
    assert_int_equal(model_backend_xgboost.load(path, &st, err, sizeof(err)), -EINVAL);
}

static void test_truncated_booster(void **state)
{
    (void)state;
    char *dir = make_dir("trunc", MODEL_TASK_BINARY, 3, "model.json", false);
    char path[4096];
    snprintf(path, sizeof(path), "%s/model.json", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    /* The manifest is rewritten with the truncated file's sha: only the load can fail. */
    json_t *m = fx_manifest_json("m", "1", MODEL_TASK_BINARY, 3, dir, "model.json");
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    char err[1024] = "";
    model_handle_t *h = NULL;
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "cannot load booster"));
    free(dir);
}

static void test_missing_files(void **state)
{
    (void)state;
    char err[1024] = "";
    model_handle_t *h = NULL;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/does-not-exist", tmp);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), -ENOENT);
    char *d = make_dir("nobooster", MODEL_TASK_BINARY, 3, "model.json", false);
    char path[4096];
    snprintf(path, sizeof(path), "%s/model.json", d);
    unlink(path);
    assert_int_equal(model_handle_open(d, &h, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot read booster"));
    free(d);
}

static void test_refcount_swap(void **state)
{
    (void)state;
    char *dir = make_dir("refs", MODEL_TASK_BINARY, 3, "model.json", false);
    char err[1024] = "";
    model_handle_t *slot = NULL;
    assert_int_equal(model_handle_open(dir, &slot, err, sizeof(err)), 0);
    /* A request takes a reference, then a reload swaps the slot and drops its ref. */
    model_handle_t *req = model_handle_ref(slot);
    assert_ptr_equal(req, slot);
    model_handle_t *next = NULL;
    assert_int_equal(model_handle_open(dir, &next, err, sizeof(err)), 0);
    model_handle_t *old = slot;
    slot = next;
    model_handle_unref(old);
    /* The in-flight request still predicts on the old handle. */
    float row[3] = {1, 2, 3}, a, b;
    assert_int_equal(model_handle_predict(req, row, 1, &a, err, sizeof(err)), 0);
    assert_int_equal(model_handle_predict(slot, row, 1, &b, err, sizeof(err)), 0);
    assert_true(a == b);
    assert_string_equal(model_handle_manifest(req)->name, "m");
    assert_string_equal(model_handle_dir(req), dir);
    model_handle_unref(req);
    model_handle_unref(slot);
    assert_null(model_handle_ref(NULL));
    model_handle_unref(NULL);
    free(dir);
}

typedef struct {
    model_handle_t *h;
    const float *x;
    size_t nrows, nfeat, outputs;
    const float *expect;
    int mismatches;
    int errors;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char err[512];
    float *out = malloc(w->nrows * w->outputs * sizeof(float));
    for (int iter = 0; iter < 60; iter++) {
        /* Alternate single rows and the whole batch. */
        if (iter % 2) {
            if (model_handle_predict(w->h, w->x, w->nrows, out, err, sizeof(err)) < 0)
                w->errors++;
        } else {
            for (size_t i = 0; i < w->nrows; i++)
                if (model_handle_predict(w->h, w->x + i * w->nfeat, 1, out + i * w->outputs, err,
                                         sizeof(err)) < 0)
                    w->errors++;
        }
        for (size_t k = 0; k < w->nrows * w->outputs; k++)
            if (out[k] != w->expect[k])
                w->mismatches++;
    }
    free(out);
    return NULL;
}

static void concurrent(model_task_t task)
{
    const size_t nfeat = 5, nrows = 64;
    char tag[32];
    snprintf(tag, sizeof(tag), "conc-%d", (int)task);
    char *dir = make_dir(tag, task, nfeat, "model.ubj", false);
    char err[1024] = "";
    model_handle_t *h = NULL;
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), 0);
    size_t outputs = model_handle_outputs(h);
    float *x = fx_data(nrows, nfeat, 1234);
    float *expect = malloc(nrows * outputs * sizeof(float));
    assert_int_equal(model_handle_predict(h, x, nrows, expect, err, sizeof(err)), 0);
    worker_t w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] =
            (worker_t){.h = h, .x = x, .nrows = nrows, .nfeat = nfeat, .outputs = outputs, .expect = expect};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
        assert_int_equal(w[i].mismatches, 0);
    }
    free(expect);
    free(x);
    model_handle_unref(h);
    free(dir);
}

static void test_concurrent_predict(void **state)
{
    (void)state;
    concurrent(MODEL_TASK_BINARY);
    concurrent(MODEL_TASK_MULTICLASS);
}

static void test_row_result(void **state)
{
    (void)state;
    char err[1024] = "";
    model_handle_t *h = NULL;

    char *dir = make_dir("res-bin", MODEL_TASK_BINARY, 3, "model.json", false);
    json_t *m = fx_manifest_json("m", "1", MODEL_TASK_BINARY, 3, dir, "model.json");
    json_object_set_new(m, "threshold", json_real(0.7));
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), 0);
    float p = 0.6f;
    json_t *res = model_handle_row_result(h, &p);
    assert_string_equal(json_string_value(json_object_get(res, "label")), "neg"); /* 0.6 < 0.7 */
    json_t *probs = json_object_get(res, "probabilities");
    assert_int_equal(json_object_size(probs), 2);
    assert_true(json_is_real(json_object_get(probs, "pos")));
    assert_true(json_real_value(json_object_get(probs, "pos")) == (double)0.6f);
    assert_true(fabs(json_real_value(json_object_get(probs, "neg")) - (1.0 - (double)0.6f)) < 1e-12);
    json_decref(res);
    p = 0.7f; /* float 0.7 is just above double 0.7: the label flips at >= */
    res = model_handle_row_result(h, &p);
    assert_string_equal(json_string_value(json_object_get(res, "label")), (double)p >= 0.7 ? "pos" : "neg");
    json_decref(res);
    p = 0.95f;
    res = model_handle_row_result(h, &p);
    assert_string_equal(json_string_value(json_object_get(res, "label")), "pos");
    json_decref(res);
    model_handle_unref(h);
    free(dir);

    dir = make_dir("res-multi", MODEL_TASK_MULTICLASS, 3, "model.json", false);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), 0);
    float q[3] = {0.2f, 0.5f, 0.3f};
    res = model_handle_row_result(h, q);
    assert_string_equal(json_string_value(json_object_get(res, "label")), "mid");
    probs = json_object_get(res, "probabilities");
    assert_int_equal(json_object_size(probs), 3);
    assert_true(json_real_value(json_object_get(probs, "high")) == (double)0.3f);
    json_decref(res);
    float tie[3] = {0.4f, 0.4f, 0.2f};
    res = model_handle_row_result(h, tie);
    assert_string_equal(json_string_value(json_object_get(res, "label")), "low");
    json_decref(res);
    model_handle_unref(h);
    free(dir);

    dir = make_dir("res-reg", MODEL_TASK_REGRESSION, 3, "model.json", false);
    assert_int_equal(model_handle_open(dir, &h, err, sizeof(err)), 0);
    float v = 12.25f;
    res = model_handle_row_result(h, &v);
    assert_true(json_is_real(json_object_get(res, "value")));
    assert_true(json_real_value(json_object_get(res, "value")) == 12.25);
    assert_null(json_object_get(res, "label"));
    json_decref(res);
    v = NAN;
    res = model_handle_row_result(h, &v);
    assert_true(json_is_null(json_object_get(res, "value")));
    json_decref(res);
    model_handle_unref(h);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_binary_json),    cmocka_unit_test(test_predict_binary_ubj),
        cmocka_unit_test(test_predict_multiclass),     cmocka_unit_test(test_predict_regression),
        cmocka_unit_test(test_sha_mismatch),           cmocka_unit_test(test_feature_count_mismatch),
        cmocka_unit_test(test_feature_names_checked),  cmocka_unit_test(test_task_mismatch),
        cmocka_unit_test(test_unsupported_objectives), cmocka_unit_test(test_truncated_booster),
        cmocka_unit_test(test_missing_files),          cmocka_unit_test(test_refcount_swap),
        cmocka_unit_test(test_concurrent_predict),     cmocka_unit_test(test_row_result),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
