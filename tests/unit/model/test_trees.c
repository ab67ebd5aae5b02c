/* SPDX-License-Identifier: Apache-2.0 */
/* Compiled trees against libxgboost: boosters trained here for each supported objective
 * must give bit-identical outputs on data rows, rows with missing values and the probe
 * rows; models the compiler must not take (dart, categorical splits, unknown objectives,
 * malformed trees) are refused with the right code. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <xgboost/c_api.h>

#include "fixture.h"
#include "model/ubjson.h"
#include "model/trees.h"

#define NFEAT 6
#define NROWS 300

/* The booster at path as libxgboost's model JSON (what xgboost.c compiles). */
static char *model_json(const char *path, size_t *ret_len)
{
    BoosterHandle b;
    bst_ulong len = 0;
    const char *buf = NULL;
    assert_int_equal(XGBoosterCreate(NULL, 0, &b), 0);
    assert_int_equal(XGBoosterLoadModel(b, path), 0);
    assert_int_equal(XGBoosterSaveModelToBuffer(b, "{\"format\":\"json\"}", &len, &buf), 0);
    char *copy = malloc((size_t)len + 1);
    assert_non_null(copy);
    memcpy(copy, buf, (size_t)len);
    copy[len] = '\0';
    XGBoosterFree(b);
    *ret_len = (size_t)len;
    return copy;
}

/* Data rows, a third of the values missing in the second half. */
static float *rows_with_missing(void)
{
    float *x = fx_data(NROWS, NFEAT, 991);
    for (size_t i = NROWS / 2; i < NROWS; i++)
        for (size_t j = 0; j < NFEAT; j++)
            if ((i * 7 + j * 3) % 3 == 0)
                x[i * NFEAT + j] = NAN;
    return x;
}

static void assert_same_bits(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("output %zu: compiled %.9g, libxgboost %.9g", i, (double)a[i], (double)b[i]);
    }
}

static void check_objective(model_task_t task, const char *objective, const char *file, size_t outputs)
{
    char *dir = fx_tmpdir("trees");
    fx_train(task, objective, NFEAT, 25, 5, false, dir, file);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    size_t len;
    char *json = model_json(path, &len);
    model_trees_t *t = NULL;
    char err[256] = "";
    int rc = model_trees_from_json(json, len, NFEAT, outputs, &t, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", objective ? objective : "default objective", err);

    float *x = rows_with_missing();
    size_t n_ref;
    float *ref = fx_reference(path, x, NROWS, NFEAT, &n_ref);
    assert_int_equal(n_ref, (size_t)NROWS * outputs);
    float *mine = malloc(n_ref * sizeof(float));
    model_trees_predict(t, x, NROWS, mine);
    assert_same_bits(mine, ref, n_ref);
    free(ref);

    float *probe = malloc((size_t)NROWS * NFEAT * sizeof(float));
    model_trees_probe_rows(t, probe, NROWS);
    size_t nan_seen = 0;
    for (size_t i = 0; i < (size_t)NROWS * NFEAT; i++)
        nan_seen += isnan(probe[i]) != 0;
    assert_true(nan_seen > 0); /* the probes exercise default directions */
    ref = fx_reference(path, probe, NROWS, NFEAT, &n_ref);
    model_trees_predict(t, probe, NROWS, mine);
    assert_same_bits(mine, ref, n_ref);

    free(ref);
    free(probe);
    free(mine);
    free(x);
    free(json);
    model_trees_free(t);
    free(dir);
}

static void test_binary_json(void **state)
{
    (void)state;
    check_objective(MODEL_TASK_BINARY, NULL, "model.json", 1);
}

static void test_binary_ubj(void **state)
{
    (void)state;
    check_objective(MODEL_TASK_BINARY, NULL, "model.ubj", 1);
}

static void test_multiclass(void **state)
{
    (void)state;
    check_objective(MODEL_TASK_MULTICLASS, NULL, "model.json", 3);
}

static void test_regression(void **state)
{
    (void)state;
    check_objective(MODEL_TASK_REGRESSION, NULL, "model.json", 1);
}

static void test_reg_logistic(void **state)
{
    (void)state;
    check_objective(MODEL_TASK_BINARY, "reg:logistic", "model.json", 1);
}

/* A freshly trained binary booster's model JSON, edited by edit (if any), as text. */
static char *edited_json(void (*edit)(json_t *learner))
{
    char *dir = fx_tmpdir("trees-edit");
    fx_train(MODEL_TASK_BINARY, NULL, NFEAT, 5, 7, false, dir, "model.json");
    char path[4200];
    snprintf(path, sizeof(path), "%s/model.json", dir);
    size_t len;
    char *json = model_json(path, &len);
    json_t *root = json_loadb(json, len, 0, NULL);
    assert_non_null(root);
    if (edit)
        edit(json_object_get(root, "learner"));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    free(json);
    free(dir);
    return text;
}

/* A binary booster's JSON, edited by fn, must be refused with want. */
static void check_refused(void (*edit)(json_t *learner), int want)
{
    char *text = edited_json(edit);
    model_trees_t *t = NULL;
    char err[256] = "";
    assert_int_equal(model_trees_from_json(text, strlen(text), NFEAT, 1, &t, err, sizeof(err)), want);
    assert_null(t);
    assert_true(err[0] != '\0');
    free(text);
}

static json_t *first_tree(json_t *learner)
{
    return json_array_get(json_object_get(json_object_get(json_object_get(learner, "gradient_booster"), "model"),
                                          "trees"),
                          0);
}

static void to_dart(json_t *l)
{
    json_object_set_new(json_object_get(l, "gradient_booster"), "name", json_string("dart"));
}

static void to_poisson(json_t *l)
{
    json_object_set_new(json_object_get(l, "objective"), "name", json_string("count:poisson"));
}

static void categorical(json_t *l)
{
    json_array_set_new(json_object_get(first_tree(l), "split_type"), 0, json_integer(1));
}

static void backwards_child(json_t *l)
{
    json_array_set_new(json_object_get(first_tree(l), "left_children"), 0, json_integer(0));
}

static void feature_out_of_range(json_t *l)
{
    json_array_set_new(json_object_get(first_tree(l), "split_indices"), 0, json_integer(NFEAT));
}

static void one_child(json_t *l)
{
    json_array_set_new(json_object_get(first_tree(l), "left_children"), 0, json_integer(-1));
}

static void test_refusals(void **state)
{
    (void)state;
    check_refused(to_dart, -ENOTSUP);
    check_refused(to_poisson, -ENOTSUP);
    check_refused(categorical, -ENOTSUP);
    check_refused(backwards_child, -ENOTSUP);
    check_refused(feature_out_of_range, -EINVAL);
    check_refused(one_child, -EINVAL);

    model_trees_t *t = NULL;
    char err[256];
    assert_int_equal(model_trees_from_json("{\"learner\":", 11, NFEAT, 1, &t, err, sizeof(err)), -EINVAL);
    assert_int_equal(model_trees_from_json("{}", 2, NFEAT, 1, &t, err, sizeof(err)), -ENOTSUP);
    assert_null(t);
}

/* model_trees_check on a binary booster's JSON edited by fn: want, with an err naming it. */
static void check_checked(void (*edit)(json_t *learner), int want, const char *why)
{
    char *text = edited_json(edit);
    char err[256] = "";
    assert_int_equal(model_trees_check(text, strlen(text), NFEAT, 1, err, sizeof(err)), want);
    if (why && !strstr(err, why))
        fail_msg("err '%s' does not say '%s'", err, why);
    free(text);
}

static void child_outside(json_t *l)
{
    json_array_set_new(json_object_get(first_tree(l), "left_children"), 0, json_integer(1000000));
}

static void shared_child(json_t *l)
{
    json_t *t = first_tree(l);
    json_array_set(json_object_get(t, "right_children"), 0, json_array_get(json_object_get(t, "left_children"), 0));
}

static void group_out_of_range(json_t *l)
{
    json_t *model = json_object_get(json_object_get(l, "gradient_booster"), "model");
    json_array_set_new(json_object_get(model, "tree_info"), 0, json_integer(1));
}

static void short_node_array(json_t *l)
{
    json_array_remove(json_object_get(first_tree(l), "split_indices"), 0);
}

static void test_check(void **state)
{
    (void)state;
    check_checked(NULL, 0, NULL);
    check_checked(feature_out_of_range, -EINVAL, "tree 0 node 0 splits on feature 6; the booster has 6 features");
    check_checked(backwards_child, -EINVAL, "leads back to a node already reached");
    check_checked(shared_child, -EINVAL, "leads back to a node already reached");
    check_checked(child_outside, -EINVAL, "child index outside the tree");
    check_checked(one_child, -EINVAL, "child index outside the tree");
    check_checked(group_out_of_range, -EINVAL, "tree 0 adds to output 1; the booster has 1");
    check_checked(short_node_array, -EINVAL, "node arrays of different lengths");
    /* a node marked categorical with no categories listed: libxgboost's export aborts */
    check_checked(categorical, -EINVAL, "tree 0 node 0 is marked categorical but has no categories");
    check_checked(to_dart, -EINVAL, "no trees where dart keeps them");

    /* gblinear: the weight count follows features and outputs */
    const char *lin = "{\"learner\":{\"gradient_booster\":{\"name\":\"gblinear\",\"model\":{\"weights\":[1,2,3]}}}}";
    char err[256] = "";
    assert_int_equal(model_trees_check(lin, strlen(lin), 2, 1, err, sizeof(err)), 0);
    assert_int_equal(model_trees_check(lin, strlen(lin), 3, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "has 3 weights; 3 features and 1 outputs need 4"));

    /* libxgboost writes NaN and infinities as bare tokens; inside strings they stay text */
    const char *bare = "{\"x\":[NaN,Infinity,-Infinity,\"NaN \\\" NaN\"],\"learner\":{\"gradient_booster\":"
                       "{\"name\":\"gblinear\",\"model\":{\"weights\":[NaN,2,3]}}}}";
    assert_int_equal(model_trees_check(bare, strlen(bare), 2, 1, err, sizeof(err)), 0);
    assert_int_equal(model_trees_check("{\"a\":", 5, 2, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "cannot parse the model JSON"));
}

/* review51 #4: one limit of keys and values for JSON and UBJSON, keys counted, said as a size
 * limit (not "malformed"), and checked before jansson builds the values. */
static void test_size_limit(void **state)
{
    (void)state;
    char err[256] = "";
    size_t n = MODEL_BOOSTER_MAX_VALUES + 1; /* commas: one more unit than allowed */
    char *big = malloc(2 * n + 3);
    assert_non_null(big);
    big[0] = '[';
    for (size_t i = 0; i < n; i++) {
        big[1 + 2 * i] = '0';
        big[2 + 2 * i] = ',';
    }
    memcpy(big + 1 + 2 * n, "0]", 2);
    assert_int_equal(model_trees_check(big, 2 * n + 3, 0, 0, err, sizeof(err)), -E2BIG);
    assert_string_equal(err, MODEL_BOOSTER_TOO_LARGE);
    free(big);

    /* an object of two keys: the object (a container: review53 #5) + 2 keys + 2 values */
    const size_t w = MODEL_BOOSTER_CONTAINER_WEIGHT;
    const unsigned char obj[] = {'{', 'U', 1, 'a', 'Z', 'U', 1, 'b', 'Z', '}'};
    json_t *doc = model_ubjson_decode_limit(obj, sizeof(obj), w + 4, err, sizeof(err));
    assert_non_null(doc);
    json_decref(doc);
    assert_null(model_ubjson_decode_limit(obj, sizeof(obj), w + 3, err, sizeof(err)));
    assert_string_equal(err, MODEL_BOOSTER_TOO_LARGE);
    /* a typed, counted array of four bytes: the array + 4 */
    const unsigned char arr[] = {'[', '$', 'U', '#', 'U', 4, 1, 2, 3, 4};
    assert_non_null(doc = model_ubjson_decode_limit(arr, sizeof(arr), w + 4, err, sizeof(err)));
    json_decref(doc);
    assert_null(model_ubjson_decode_limit(arr, sizeof(arr), w + 3, err, sizeof(err)));
    assert_string_equal(err, MODEL_BOOSTER_TOO_LARGE);
    /* empty containers weigh as much in JSON: a list of them reaches the limit sooner */
    size_t m = MODEL_BOOSTER_MAX_VALUES / (w + 1) + 1;
    char *empties = malloc(3 * m + 16);
    assert_non_null(empties);
    size_t o = (size_t)sprintf(empties, "{\"x\":[");
    for (size_t i = 0; i < m; i++)
        o += (size_t)sprintf(empties + o, "{},");
    memcpy(empties + o, "{}]}", 4);
    assert_int_equal(model_trees_check(empties, o + 4, 0, 0, err, sizeof(err)), -E2BIG);
    free(empties);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_json),  cmocka_unit_test(test_binary_ubj),
        cmocka_unit_test(test_multiclass),   cmocka_unit_test(test_regression),
        cmocka_unit_test(test_reg_logistic), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_check),        cmocka_unit_test(test_size_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
