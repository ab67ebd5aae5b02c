/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for model/manifest.c: round trips (JSON and file), unknown keys kept,
 * defaults, and one refusal per validation rule with the field named in the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>

#include "fixture.h"
#include "model/manifest.h"

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = fx_tmpdir("manifest");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(tmp);
    free(tmp);
    return 0;
}

static json_t *valid(model_task_t task)
{
    /* No booster needed: sha256 is only checked for its format here. */
    return fx_manifest_json("alz", "1.0.0", task, 3, tmp, "model.json");
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int t = MODEL_TASK_BINARY; t <= MODEL_TASK_REGRESSION; t++) {
        json_t *in = valid((model_task_t)t);
        json_object_set_new(in, "x_custom", json_pack("{s:[i,i]}", "k", 1, 2));
        char err[512] = "";
        model_manifest_t *m = NULL;
        int r = model_manifest_from_json(in, &m, err, sizeof(err));
        if (r < 0)
            fail_msg("from_json: %s", err);
        assert_int_equal(m->format_version, 1);
        assert_string_equal(m->name, "alz");
        assert_string_equal(m->version, "1.0.0");
        assert_int_equal(m->task, t);
        assert_true(m->synthetic);
        assert_string_equal(m->backend, "xgboost");
        assert_string_equal(m->booster_file, "model.json");
        assert_string_equal(m->booster_format, "json");
        assert_int_equal(m->n_features, 3);
        assert_string_equal(m->features[1].name, "f1");
        assert_int_equal(m->features[1].type, FEATURE_NUMBER);
        assert_string_equal(m->features[1].unit, "mg");
        assert_null(m->features[1].description);
        assert_false(m->features[1].required);
        assert_true(m->features[1].has_min && m->features[1].has_max);
        assert_true(m->features[1].max == 10.0);
        assert_int_equal(m->features[1].n_bins, 2);
        assert_true(m->features[1].bin_edges[2] == 10.0);
        assert_true(m->features[1].bin_probs[0] == 0.5);
        assert_true(m->features[1].std == 2.9);
        assert_int_equal(m->n_classes, t == MODEL_TASK_BINARY ? 2 : t == MODEL_TASK_MULTICLASS ? 3 : 0);
        assert_true(m->threshold == 0.5);
        assert_true(json_real_value(json_object_get(m->holdout_metrics, "accuracy")) == 0.9);
        assert_non_null(json_object_get(m->extra, "x_custom"));
        assert_int_equal(json_object_size(m->extra), 1);
        assert_int_equal(model_manifest_feature_index(m, "f2"), 2);
        assert_int_equal(model_manifest_feature_index(m, "nope"), -1);

        /* to_json is the inverse of from_json. */
        json_t *out = model_manifest_to_json(m);
        assert_non_null(out);
        assert_true(json_equal(json_object_get(out, "x_custom"), json_object_get(in, "x_custom")));
        assert_true(json_equal(json_object_get(out, "booster"), json_object_get(in, "booster")));
        assert_true(json_equal(json_object_get(out, "class_labels"), json_object_get(in, "class_labels")));
        model_manifest_t *m2 = NULL;
        assert_int_equal(model_manifest_from_json(out, &m2, err, sizeof(err)), 0);
        json_t *out2 = model_manifest_to_json(m2);
        assert_true(json_equal(out, out2));

        /* Saved file loads back to the same manifest (by dir and by file path). */
        char dir[4096], file[4096];
        snprintf(dir, sizeof(dir), "%s/rt%d", tmp, t);
        util_mkdir_p(dir, 0755);
        assert_int_equal(model_manifest_save(m, dir), 0);
        snprintf(file, sizeof(file), "%s/%s", dir, MODEL_MANIFEST_FILE);
        assert_true(util_path_exists(file));
        model_manifest_t *m3 = NULL, *m4 = NULL;
        assert_int_equal(model_manifest_load(dir, &m3, err, sizeof(err)), 0);
        assert_int_equal(model_manifest_load(file, &m4, err, sizeof(err)), 0);
        json_t *out3 = model_manifest_to_json(m3), *out4 = model_manifest_to_json(m4);
        assert_true(json_equal(out, out3));
        assert_true(json_equal(out, out4));

        json_decref(out4);
        json_decref(out3);
        json_decref(out2);
        json_decref(out);
        json_decref(in);
        model_manifest_free(m4);
        model_manifest_free(m3);
        model_manifest_free(m2);
        model_manifest_free(m);
    }
}

static void test_defaults(void **state)
{
    (void)state;
    /* Minimal manifest: optional fields absent. */
    json_t *in = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:[{s:s, s:s}], s:[s,s]}",
                           "format_version", 1, "name", "m", "version", "v1", "task", "binary", "booster",
                           "backend", "xgboost", "file", "b.ubj", "format", "ubj", "sha256",
                           "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "features",
                           "name", "age", "type", "integer", "class_labels", "no", "yes");
    char err[512] = "";
    model_manifest_t *m = NULL;
    int r = model_manifest_from_json(in, &m, err, sizeof(err));
    if (r < 0)
        fail_msg("%s", err);
    assert_true(m->threshold == 0.5);
    assert_false(m->synthetic);
    assert_null(m->description);
    assert_null(m->created_at);
    assert_true(m->features[0].required);
    assert_false(m->features[0].has_min);
    assert_false(m->features[0].has_max);
    assert_int_equal(m->features[0].n_bins, 0);
    assert_int_equal(json_object_size(m->training_metrics), 0);
    assert_int_equal(json_object_size(m->extra), 0);
    json_t *out = model_manifest_to_json(m);
    model_manifest_t *m2 = NULL;
    assert_int_equal(model_manifest_from_json(out, &m2, err, sizeof(err)), 0);
    assert_true(m2->features[0].required);
    assert_null(json_object_get(json_array_get(json_object_get(out, "features"), 0), "baseline"));
    model_manifest_free(m2);
    json_decref(out);
    model_manifest_free(m);
    json_decref(in);
}

typedef void (*mutate_fn)(json_t *m);

static json_t *feature(json_t *m, size_t i)
{
    return json_array_get(json_object_get(m, "features"), i);
}
static json_t *baseline(json_t *m, size_t i)
{
    return json_object_get(feature(m, i), "baseline");
}

static void mut_version(json_t *m)
{
    json_object_set_new(m, "format_version", json_integer(2));
}
static void mut_no_version(json_t *m)
{
    json_object_del(m, "format_version");
}
static void mut_name_unsafe(json_t *m)
{
    json_object_set_new(m, "name", json_string("../etc"));
}
static void mut_name_dot(json_t *m)
{
    json_object_set_new(m, "name", json_string(".hidden"));
}
static void mut_name_type(json_t *m)
{
    json_object_set_new(m, "name", json_integer(3));
}
static void mut_version_slash(json_t *m)
{
    json_object_set_new(m, "version", json_string("1/2"));
}
static void mut_no_name(json_t *m)
{
    json_object_del(m, "name");
}
static void mut_task(json_t *m)
{
    json_object_set_new(m, "task", json_string("ranking"));
}
static void mut_synthetic(json_t *m)
{
    json_object_set_new(m, "synthetic", json_string("yes"));
}
static void mut_backend(json_t *m)
{
    json_object_set_new(json_object_get(m, "booster"), "backend", json_string("onnx"));
}
static void mut_file(json_t *m)
{
    json_object_set_new(json_object_get(m, "booster"), "file", json_string("../x.json"));
}
static void mut_format(json_t *m)
{
    json_object_set_new(json_object_get(m, "booster"), "format", json_string("bin"));
}
static void mut_format_ext(json_t *m)
{
    json_object_set_new(json_object_get(m, "booster"), "format", json_string("ubj"));
}
static void mut_sha_upper(json_t *m)
{
    json_object_set_new(json_object_get(m, "booster"), "sha256",
                        json_string("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
}
static void mut_sha_short(json_t *m)
{
    json_object_set_new(json_object_get(m, "booster"), "sha256", json_string("abc"));
}
static void mut_no_booster(json_t *m)
{
    json_object_del(m, "booster");
}
static void mut_features_empty(json_t *m)
{
    json_object_set_new(m, "features", json_array());
}
static void mut_features_obj(json_t *m)
{
    json_object_set_new(m, "features", json_object());
}
static void mut_feature_dup(json_t *m)
{
    json_object_set_new(feature(m, 2), "name", json_string("f0"));
}
static void mut_feature_name_long(json_t *m)
{
    char name[130];
    memset(name, 'x', 129);
    name[129] = '\0';
    json_object_set_new(feature(m, 1), "name", json_string(name));
}
static void mut_feature_name_empty(json_t *m)
{
    json_object_set_new(feature(m, 1), "name", json_string(""));
}
static void mut_feature_name_ctrl(json_t *m)
{
    json_object_set_new(feature(m, 1), "name", json_string("a\nb"));
}
static void mut_feature_type(json_t *m)
{
    json_object_set_new(feature(m, 0), "type", json_string("string"));
}
static void mut_feature_max_type(json_t *m)
{
    json_object_set_new(feature(m, 2), "max", json_string("10"));
}
static void mut_min_gt_max(json_t *m)
{
    json_object_set_new(feature(m, 1), "min", json_real(11));
}
static void mut_required_type(json_t *m)
{
    json_object_set_new(feature(m, 0), "required", json_integer(1));
}
static void mut_edges_desc(json_t *m)
{
    json_object_set_new(baseline(m, 0), "edges", json_pack("[f,f,f]", 0.0, 6.0, 5.0));
}
static void mut_edges_equal(json_t *m)
{
    json_object_set_new(baseline(m, 0), "edges", json_pack("[f,f,f]", 0.0, 5.0, 5.0));
}
static void mut_probs_len(json_t *m)
{
    json_object_set_new(baseline(m, 0), "probs", json_pack("[f,f,f]", 0.2, 0.3, 0.5));
}
static void mut_probs_sum(json_t *m)
{
    json_object_set_new(baseline(m, 0), "probs", json_pack("[f,f]", 0.5, 0.6));
}
static void mut_probs_neg(json_t *m)
{
    json_object_set_new(baseline(m, 0), "probs", json_pack("[f,f]", -0.5, 1.5));
}
static void mut_edges_one(json_t *m)
{
    json_object_set_new(baseline(m, 0), "edges", json_pack("[f]", 0.0));
    json_object_set_new(baseline(m, 0), "probs", json_array());
}
static void mut_std_neg(json_t *m)
{
    json_object_set_new(baseline(m, 0), "std", json_real(-1));
}
static void mut_labels_one(json_t *m)
{
    json_object_set_new(m, "class_labels", json_pack("[s]", "a"));
}
static void mut_labels_dup(json_t *m)
{
    json_object_set_new(m, "class_labels", json_pack("[s,s]", "a", "a"));
}
static void mut_labels_type(json_t *m)
{
    json_object_set_new(m, "class_labels", json_pack("[s,i]", "a", 1));
}
static void mut_multi_two(json_t *m)
{
    json_object_set_new(m, "task", json_string("multiclass"));
    json_object_set_new(m, "class_labels", json_pack("[s,s]", "a", "b"));
}
static void mut_regression_labels(json_t *m)
{
    json_object_set_new(m, "task", json_string("regression"));
}
static void mut_threshold_one(json_t *m)
{
    json_object_set_new(m, "threshold", json_real(1.0));
}
static void mut_threshold_zero(json_t *m)
{
    json_object_set_new(m, "threshold", json_integer(0));
}
static void mut_metrics(json_t *m)
{
    json_object_set_new(m, "metrics", json_pack("{s:[]}", "holdout"));
}

static void test_validation_errors(void **state)
{
    (void)state;
    static const struct {
        mutate_fn fn;
        const char *expect; /* prefix of the error message */
    } cases[] = {
        {mut_version, "format_version: expected 1"},
        {mut_no_version, "format_version: required"},
        {mut_name_unsafe, "name: expected"},
        {mut_name_dot, "name: expected"},
        {mut_name_type, "name: expected a string"},
        {mut_version_slash, "version: expected"},
        {mut_no_name, "name: required"},
        {mut_task, "task: expected"},
        {mut_synthetic, "synthetic: expected true or false"},
        {mut_backend, "booster.backend: unsupported"},
        {mut_file, "booster.file: must be a plain file name"},
        {mut_format, "booster.format: expected"},
        {mut_format_ext, "booster.file: must end in .ubj"},
        {mut_sha_upper, "booster.sha256: expected 64 lowercase hex"},
        {mut_sha_short, "booster.sha256: expected 64 lowercase hex"},
        {mut_no_booster, "booster: required"},
        {mut_features_empty, "features: expected a non-empty array"},
        {mut_features_obj, "features: expected a non-empty array"},
        {mut_feature_dup, "features[2].name: duplicate feature name"},
        {mut_feature_name_long, "features[1].name: expected a string of 1..128"},
        {mut_feature_name_empty, "features[1].name: expected a string of 1..128"},
        {mut_feature_name_ctrl, "features[1].name: expected a string of 1..128"},
        {mut_feature_type, "features[0].type: expected"},
        {mut_feature_max_type, "features[2].max: expected a number"},
        {mut_min_gt_max, "features[1].max: must be >= min"},
        {mut_required_type, "features[0].required: expected true or false"},
        {mut_edges_desc, "features[0].baseline.edges[2]: edges must be strictly ascending"},
        {mut_edges_equal, "features[0].baseline.edges[2]: edges must be strictly ascending"},
        {mut_probs_len, "features[0].baseline.probs: expected 2 entries"},
        {mut_probs_sum, "features[0].baseline.probs: must sum to 1"},
        {mut_probs_neg, "features[0].baseline.probs[0]: must be between 0 and 1"},
        {mut_edges_one, "features[0].baseline.edges: need at least 2 edges"},
        {mut_std_neg, "features[0].baseline.std: expected a non-negative number"},
        {mut_labels_one, "class_labels: a binary model needs exactly 2 labels, got 1"},
        {mut_labels_dup, "class_labels[1]: duplicate label"},
        {mut_labels_type, "class_labels[1]: expected a string"},
        {mut_multi_two, "class_labels: a multiclass model needs at least 3 labels, got 2"},
        {mut_regression_labels, "class_labels: a regression model has no class labels"},
        {mut_threshold_one, "threshold: must be strictly between 0 and 1"},
        {mut_threshold_zero, "threshold: must be strictly between 0 and 1"},
        {mut_metrics, "metrics.holdout: expected an object"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *in = valid(MODEL_TASK_BINARY);
        cases[i].fn(in);
        char err[512] = "";
        model_manifest_t *m = NULL;
        int r = model_manifest_from_json(in, &m, err, sizeof(err));
        if (r != -EINVAL || strncmp(err, cases[i].expect, strlen(cases[i].expect)) != 0)
            fail_msg("case %zu: r=%d err='%s', expected '%s'", i, r, err, cases[i].expect);
        assert_null(m);
        json_decref(in);
    }
    /* Not an object at all. */
    char err[256];
    model_manifest_t *m = NULL;
    json_t *arr = json_array();
    assert_int_equal(model_manifest_from_json(arr, &m, err, sizeof(err)), -EINVAL);
    json_decref(arr);
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[1024] = "", path[4096];
    model_manifest_t *m = NULL;
    snprintf(path, sizeof(path), "%s/none.json", tmp);
    assert_int_equal(model_manifest_load(path, &m, err, sizeof(err)), -ENOENT);

    snprintf(path, sizeof(path), "%s/bad.json", tmp);
    const char *bad = "{\"format_version\": 1,\n  \"name\": }";
    util_write_file_atomic(path, bad, strlen(bad), 0644);
    assert_int_equal(model_manifest_load(path, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "invalid JSON at line 2"));

    snprintf(path, sizeof(path), "%s/dup.json", tmp);
    const char *dup = "{\"name\":\"a\",\"name\":\"b\"}";
    util_write_file_atomic(path, dup, strlen(dup), 0644);
    assert_int_equal(model_manifest_load(path, &m, err, sizeof(err)), -EINVAL);

    /* Validation errors are prefixed with the file. */
    json_t *in = valid(MODEL_TASK_BINARY);
    mut_threshold_one(in);
    snprintf(path, sizeof(path), "%s/thr.json", tmp);
    json_dump_file(in, path, 0);
    json_decref(in);
    assert_int_equal(model_manifest_load(path, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "thr.json: threshold: must be strictly between 0 and 1"));

    /* Over the 16 MiB cap. */
    snprintf(path, sizeof(path), "%s/big.json", tmp);
    FILE *f = fopen(path, "w");
    fputc('[', f);
    for (int i = 0; i < 17 * 1024 * 1024 / 2; i++)
        fputs("0,", f);
    fputs("0]", f);
    fclose(f);
    assert_int_equal(model_manifest_load(path, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "larger than"));
    assert_null(m);
}

static void test_names(void **state)
{
    (void)state;
    model_task_t t;
    feature_type_t ft;
    assert_int_equal(model_task_parse("multiclass", &t), 0);
    assert_int_equal(t, MODEL_TASK_MULTICLASS);
    assert_int_equal(model_task_parse("Binary", &t), -EINVAL);
    assert_int_equal(model_task_parse(NULL, &t), -EINVAL);
    assert_string_equal(model_task_name(MODEL_TASK_REGRESSION), "regression");
    assert_int_equal(feature_type_parse("boolean", &ft), 0);
    assert_int_equal(ft, FEATURE_BOOLEAN);
    assert_int_equal(feature_type_parse("float", &ft), -EINVAL);
    assert_string_equal(feature_type_name(FEATURE_INTEGER), "integer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
