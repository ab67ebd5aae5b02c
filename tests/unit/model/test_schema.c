/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for model/schema.c: every problem class, null as absent, integer vs real,
 * booleans, deterministic error order, no submitted value in any message, probe rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>

#include "fixture.h"
#include "model/schema.h"

static model_manifest_t *m;

/* age: integer [0,120] required; bmi: number [10,80] optional; smoker: boolean required;
 * score: number, no range, required; dose: number >= 0 optional; cap: integer <= 5 optional. */
static int setup(void **state)
{
    (void)state;
    m = fx_manifest("[{\"name\": \"age\", \"type\": \"integer\", \"required\": true, \"min\": 0, \"max\": 120},"
                    " {\"name\": \"bmi\", \"type\": \"number\", \"required\": false, \"min\": 10, \"max\": 80},"
                    " {\"name\": \"smoker\", \"type\": \"boolean\", \"required\": true},"
                    " {\"name\": \"score\", \"type\": \"number\", \"required\": true},"
                    " {\"name\": \"dose\", \"type\": \"number\", \"required\": false, \"min\": 0},"
                    " {\"name\": \"cap\", \"type\": \"integer\", \"required\": false, \"max\": 5.5}]");
    return m ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    model_manifest_free(m);
    return 0;
}

static json_t *parse(const char *s)
{
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    if (!o)
        fail_msg("bad test JSON: %s", e.text);
    return o;
}

/* Runs validation; returns the errors array (caller decrefs). */
static json_t *check(const char *features, int expect_rc, float *row)
{
    json_t *f = parse(features);
    json_t *errors = json_array();
    float tmp_row[6];
    int r = model_schema_row(m, f, row ? row : tmp_row, errors);
    json_decref(f);
    if (r != expect_rc) {
        char *s = json_dumps(errors, 0);
        fail_msg("rc %d (want %d) for %s: %s", r, expect_rc, features, s);
    }
    return errors;
}

static void expect_error(const json_t *errors, size_t i, const char *feature, const char *problem,
                         const char *message_part)
{
    const json_t *e = json_array_get(errors, i);
    if (!e)
        fail_msg("no error #%zu", i);
    assert_string_equal(json_string_value(json_object_get(e, "feature")), feature);
    assert_string_equal(json_string_value(json_object_get(e, "problem")), problem);
    const char *msg = json_string_value(json_object_get(e, "message"));
    assert_non_null(msg);
    if (message_part && !strstr(msg, message_part))
        fail_msg("message '%s' lacks '%s'", msg, message_part);
    assert_int_equal(json_object_size(e), 3);
}

static void test_valid_row(void **state)
{
    (void)state;
    float row[6];
    json_t *errors = check(
        "{\"age\": 42, \"bmi\": 22.5, \"smoker\": true, \"score\": -3.25, \"dose\": 0, \"cap\": 5}", 0, row);
    assert_int_equal(json_array_size(errors), 0);
    assert_true(row[0] == 42.0f);
    assert_true(row[1] == 22.5f);
    assert_true(row[2] == 1.0f);
    assert_true(row[3] == -3.25f);
    assert_true(row[4] == 0.0f);
    assert_true(row[5] == 5.0f);
    json_decref(errors);
}

static void test_null_is_absent(void **state)
{
    (void)state;
    float row[6];
    /* Optional features absent or null become NAN (missing for XGBoost). */
    json_t *errors = check("{\"age\": 1, \"bmi\": null, \"smoker\": false, \"score\": 0}", 0, row);
    assert_true(isnan(row[1]));
    assert_true(isnan(row[4]));
    assert_true(isnan(row[5]));
    assert_true(row[2] == 0.0f);
    json_decref(errors);
    /* Required features null = missing. */
    errors = check("{\"age\": null, \"smoker\": true}", -EINVAL, NULL);
    assert_int_equal(json_array_size(errors), 2);
    expect_error(errors, 0, "age", "missing", "required");
    expect_error(errors, 1, "score", "missing", "required");
    json_decref(errors);
}

static void test_integer_vs_real(void **state)
{
    (void)state;
    float row[6];
    json_t *errors = check("{\"age\": 42.0, \"bmi\": 25, \"smoker\": 1, \"score\": 7}", 0, row);
    assert_true(row[0] == 42.0f);
    assert_true(row[1] == 25.0f);
    json_decref(errors);
    errors = check("{\"age\": 42.5, \"smoker\": 1, \"score\": 7}", -EINVAL, NULL);
    assert_int_equal(json_array_size(errors), 1);
    expect_error(errors, 0, "age", "wrong_type", "expected an integer");
    json_decref(errors);
    errors = check("{\"age\": \"42\", \"smoker\": 1, \"score\": \"7\"}", -EINVAL, NULL);
    assert_int_equal(json_array_size(errors), 2);
    expect_error(errors, 0, "age", "wrong_type", "expected an integer");
    expect_error(errors, 1, "score", "wrong_type", "expected a number");
    json_decref(errors);
    errors = check("{\"age\": 1, \"smoker\": 1, \"score\": true, \"bmi\": [20]}", -EINVAL, NULL);
    expect_error(errors, 0, "bmi", "wrong_type", "expected a number");
    expect_error(errors, 1, "score", "wrong_type", "expected a number");
    json_decref(errors);
}

static void test_booleans(void **state)
{
    (void)state;
    float row[6];
    const char *ok[] = {"true", "false", "0", "1", "1.0", "0.0"};
    const float want[] = {1, 0, 0, 1, 1, 0};
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{\"age\": 1, \"smoker\": %s, \"score\": 0}", ok[i]);
        json_decref(check(buf, 0, row));
        assert_true(row[2] == want[i]);
    }
    const char *bad[] = {"2", "-1", "0.5", "\"true\"", "{}"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{\"age\": 1, \"smoker\": %s, \"score\": 0}", bad[i]);
        json_t *errors = check(buf, -EINVAL, NULL);
        assert_int_equal(json_array_size(errors), 1);
        expect_error(errors, 0, "smoker", "wrong_type", "expected a boolean (true/false or 0/1)");
        json_decref(errors);
    }
}

static void test_out_of_range(void **state)
{
    (void)state;
    json_t *errors =
        check("{\"age\": 121, \"bmi\": 9.99, \"smoker\": 0, \"score\": 1e39, \"dose\": -0.5, \"cap\": 6}",
              -EINVAL, NULL);
    assert_int_equal(json_array_size(errors), 5);
    expect_error(errors, 0, "age", "out_of_range", "must be between 0 and 120");
    expect_error(errors, 1, "bmi", "out_of_range", "must be between 10 and 80");
    expect_error(errors, 2, "score", "out_of_range", "single precision");
    expect_error(errors, 3, "dose", "out_of_range", "must be at least 0");
    expect_error(errors, 4, "cap", "out_of_range", "must be at most 5.5");
    json_decref(errors);
    /* Bounds are inclusive. */
    float row[6];
    json_decref(check("{\"age\": 120, \"bmi\": 10, \"smoker\": 0, \"score\": -3.4e38, \"dose\": 0}", 0, row));
    assert_true(row[0] == 120.0f);
    /* A huge integral real for an integer feature is out of range, not accepted. */
    errors = check("{\"age\": 1e300, \"smoker\": 0, \"score\": 0}", -EINVAL, NULL);
    expect_error(errors, 0, "age", "out_of_range", NULL);
    json_decref(errors);
}

static void test_order_and_unknown(void **state)
{
    (void)state;
    /* Manifest order first (age, smoker, score, dose), then unknown keys in object order. */
    json_t *errors =
        check("{\"zeta\": 1, \"dose\": -1, \"smoker\": \"y\", \"alpha\": null, \"age\": 500}", -EINVAL, NULL);
    assert_int_equal(json_array_size(errors), 6);
    expect_error(errors, 0, "age", "out_of_range", NULL);
    expect_error(errors, 1, "smoker", "wrong_type", NULL);
    expect_error(errors, 2, "score", "missing", NULL);
    expect_error(errors, 3, "dose", "out_of_range", NULL);
    expect_error(errors, 4, "zeta", "unknown", "unknown feature");
    expect_error(errors, 5, "alpha", "unknown", "unknown feature");
    json_decref(errors);
    /* Same input, same answer. */
    json_t *a = check("{\"q\": 1, \"p\": 2, \"age\": 1, \"smoker\": 1, \"score\": 1}", -EINVAL, NULL);
    json_t *b = check("{\"q\": 1, \"p\": 2, \"age\": 1, \"smoker\": 1, \"score\": 1}", -EINVAL, NULL);
    assert_true(json_equal(a, b));
    expect_error(a, 0, "q", "unknown", NULL);
    expect_error(a, 1, "p", "unknown", NULL);
    json_decref(a);
    json_decref(b);
}

static void test_no_values_in_messages(void **state)
{
    (void)state;
    json_t *errors =
        check("{\"age\": 987654, \"bmi\": \"SECRETVALUE\", \"smoker\": 31337, \"score\": [424242],"
              " \"dose\": -55555, \"unknown_k\": \"PATIENTNAME\"}",
              -EINVAL, NULL);
    char *s = json_dumps(errors, 0);
    assert_null(strstr(s, "987654"));
    assert_null(strstr(s, "SECRETVALUE"));
    assert_null(strstr(s, "31337"));
    assert_null(strstr(s, "424242"));
    assert_null(strstr(s, "55555"));
    assert_null(strstr(s, "PATIENTNAME"));
    assert_int_equal(json_array_size(errors), 6);
    free(s);
    json_decref(errors);
}

static void test_not_an_object(void **state)
{
    (void)state;
    float row[6];
    json_t *errors = json_array();
    json_t *arr = json_array();
    assert_int_equal(model_schema_row(m, arr, row, errors), -EINVAL);
    assert_int_equal(json_array_size(errors), 1);
    assert_int_equal(model_schema_row(m, NULL, row, errors), -EINVAL);
    /* errors may be NULL: the return code still tells. */
    json_t *f = parse("{\"age\": -1}");
    assert_int_equal(model_schema_row(m, f, row, NULL), -EINVAL);
    json_decref(f);
    json_decref(arr);
    json_decref(errors);
}

static void test_probe_row(void **state)
{
    (void)state;
    float row[6];
    model_schema_probe_row(m, row);
    assert_true(row[0] == 60.0f); /* integer midpoint of [0,120] */
    assert_true(row[1] == 45.0f); /* midpoint of [10,80] */
    assert_true(row[2] == 0.0f);  /* boolean */
    assert_true(row[3] == 0.0f);  /* no range */
    assert_true(row[4] == 0.0f);  /* min only */
    assert_true(row[5] == 5.0f);  /* integer, max 5.5 */
    /* The probe row passes validation. */
    json_t *f =
        json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "age", (double)row[0], "bmi", (double)row[1], "smoker",
                  (double)row[2], "score", (double)row[3], "dose", (double)row[4], "cap", (double)row[5]);
    json_t *errors = json_array();
    float again[6];
    assert_int_equal(model_schema_row(m, f, again, errors), 0);
    json_decref(errors);
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_row),
        cmocka_unit_test(test_null_is_absent),
        cmocka_unit_test(test_integer_vs_real),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_order_and_unknown),
        cmocka_unit_test(test_no_values_in_messages),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_probe_row),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
