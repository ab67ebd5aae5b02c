/* SPDX-License-Identifier: Apache-2.0 */
/* CanaryConfig: the seed's defaults, durations in s/m/h, stage lists, the environment
 * overrides and refusals that name the offending field. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rollout/config.h"

static void test_defaults(void **state)
{
    (void)state;
    rollout_config_t c;
    rollout_config_defaults(&c);
    assert_int_equal(c.shadow_duration_ms, 24LL * 3600 * 1000);
    assert_int_equal(c.stage_duration_ms, 2LL * 3600 * 1000);
    assert_int_equal(c.n_stages, 5);
    double want[] = {5, 10, 25, 50, 100};
    for (size_t i = 0; i < 5; i++)
        assert_true(c.stages[i] == want[i]);
    assert_true(c.min_accuracy == 0.85 && c.min_f1_score == 0.80);
    assert_true(c.max_performance_degradation == 0.10 && c.max_error_rate == 0.05);
    assert_true(c.max_demographic_disparity == 0.10);
    assert_true(c.auto_rollback_enabled && c.rollback_on_validation_failure && !c.auto_promote);
    assert_string_equal(c.sensitive_column, "sex");
}

static void test_apply_json(void **state)
{
    (void)state;
    rollout_config_t c;
    rollout_config_defaults(&c);
    json_t *o = json_pack("{s:s,s:s,s:i,s:[i,i,i],s:b,s:f,s:s}", "stage_duration", "30s", "shadow_duration",
                          "2m", "check_interval", 5, "canary_stages", 5, 25, 100, "auto_promote", 1,
                          "min_accuracy", 0.7, "rollback_window", "1h");
    const char *field = NULL;
    char err[256];
    assert_int_equal(rollout_config_apply_json(&c, o, &field, err, sizeof(err)), 0);
    assert_int_equal(c.stage_duration_ms, 30000);
    assert_int_equal(c.shadow_duration_ms, 120000);
    assert_int_equal(c.check_interval_ms, 5000);
    assert_int_equal(c.rollback_window_ms, 3600000);
    assert_int_equal(c.n_stages, 3);
    assert_true(c.stages[1] == 25 && c.auto_promote && c.min_accuracy == 0.7);
    /* the JSON echo reads back to the same config */
    json_t *echo = rollout_config_to_json(&c);
    rollout_config_t d;
    rollout_config_defaults(&d);
    assert_int_equal(rollout_config_apply_json(&d, echo, &field, err, sizeof(err)), 0);
    assert_memory_equal(&c, &d, sizeof(c));
    json_decref(echo);
    json_decref(o);
}

static void expect_refused(const char *json, const char *want_field)
{
    rollout_config_t c;
    rollout_config_defaults(&c);
    json_t *o = json_loads(json, 0, NULL);
    assert_non_null(o);
    const char *field = NULL;
    char err[256] = "";
    assert_int_equal(rollout_config_apply_json(&c, o, &field, err, sizeof(err)), -EINVAL);
    assert_non_null(field);
    assert_string_equal(field, want_field);
    assert_true(strlen(err) > 0);
    json_decref(o);
}

static void test_refusals_name_the_field(void **state)
{
    (void)state;
    expect_refused("{\"stage_duration\":\"soon\"}", "stage_duration");
    expect_refused("{\"canary_stages\":[5,50]}", "canary_stages");      /* must end at 100 */
    expect_refused("{\"canary_stages\":[50,10,100]}", "canary_stages"); /* ascending */
    expect_refused("{\"canary_stages\":[]}", "canary_stages");
    expect_refused("{\"min_accuracy\":1.5}", "min_accuracy");
    expect_refused("{\"max_error_rate\":-0.1}", "max_error_rate");
    expect_refused("{\"auto_promote\":\"perhaps\"}", "auto_promote");
    expect_refused("{\"check_interval\":\"10ms\"}", "check_interval");
    expect_refused("{\"no_such_knob\":1}", "config");
}

static void test_env_overrides(void **state)
{
    (void)state;
    setenv("ROLLOUT_STAGE_DURATION", "45s", 1);
    setenv("ROLLOUT_CANARY_STAGES", "10,100", 1);
    setenv("ROLLOUT_AUTO_PROMOTE", "true", 1);
    rollout_config_t c;
    char err[256];
    assert_int_equal(rollout_config_from_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.stage_duration_ms, 45000);
    assert_int_equal(c.n_stages, 2);
    assert_true(c.auto_promote);
    setenv("ROLLOUT_MAX_ERROR_RATE", "lots", 1);
    assert_int_equal(rollout_config_from_env(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ROLLOUT_MAX_ERROR_RATE"));
    unsetenv("ROLLOUT_MAX_ERROR_RATE");
    unsetenv("ROLLOUT_STAGE_DURATION");
    unsetenv("ROLLOUT_CANARY_STAGES");
    unsetenv("ROLLOUT_AUTO_PROMOTE");
}

static void test_format_duration(void **state)
{
    (void)state;
    char b[32];
    rollout_format_duration(2 * 3600000, b, sizeof(b));
    assert_string_equal(b, "2h");
    rollout_format_duration(90000, b, sizeof(b));
    assert_string_equal(b, "90s");
    rollout_format_duration(120000, b, sizeof(b));
    assert_string_equal(b, "2m");
    rollout_format_duration(1500, b, sizeof(b));
    assert_string_equal(b, "1500ms");
    rollout_format_duration(0, b, sizeof(b));
    assert_string_equal(b, "0s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_apply_json),
        cmocka_unit_test(test_refusals_name_the_field),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_format_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
