/* SPDX-License-Identifier: Apache-2.0 */
/* CanaryConfig: the seed's defaults, durations in s/m/h, stage lists, refusals that name
 * the offending field, and the ROLLOUT_* settings of the configuration: one field list
 * (rollout/fields.h) behind the settings table, --env-file, the environment overriding the
 * file, malformed values refused at load naming the variable, `config check` output and the
 * test-only fault injection. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/util.h"
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

static void clear_rollout_env(void)
{
    for (size_t i = 0; config_setting_name(i); i++)
        if (strncmp(config_setting_name(i), "ROLLOUT_", 8) == 0)
            unsetenv(config_setting_name(i));
}

/* Every field is a setting named ROLLOUT_<FIELD upper-cased>, in the configuration's table,
 * and the table's defaults are the seed's (test_defaults) and valid. */
static void test_field_list_is_the_settings(void **state)
{
    (void)state;
    size_t n = 0;
    for (; rollout_config_field_name(n); n++) {
        char want[96];
        snprintf(want, sizeof(want), "ROLLOUT_%s", rollout_config_field_name(n));
        for (char *p = want; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        assert_string_equal(rollout_config_setting_name(n), want);
        bool found = false;
        for (size_t i = 0; config_setting_name(i); i++)
            found |= strcmp(config_setting_name(i), want) == 0;
        assert_true(found);
    }
    assert_int_equal(n, ROLLOUT_N_FIELDS);
    assert_null(rollout_config_setting_name(n));
    bool fault = false;
    for (size_t i = 0; config_setting_name(i); i++)
        fault |= strcmp(config_setting_name(i), "ROLLOUT_FAULT_INJECT") == 0;
    assert_true(fault);
    /* the loaded configuration gives exactly the built-in defaults */
    clear_rollout_env();
    config_t *cfg = NULL;
    char err[2048] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    rollout_config_t a, b;
    assert_int_equal(rollout_config_from_settings(&a, (const char *const *)cfg->rollout, err, sizeof(err)),
                     0);
    rollout_config_defaults(&b);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_null(cfg->rollout_fault_inject);
    config_free(cfg);
}

static void test_settings_override_defaults(void **state)
{
    (void)state;
    const char *v[ROLLOUT_N_FIELDS] = {0};
    v[ROLLOUT_F_stage_duration] = "45s";
    v[ROLLOUT_F_canary_stages] = "10,100";
    v[ROLLOUT_F_auto_promote] = "true";
    v[ROLLOUT_F_min_requests] = ""; /* empty = default */
    rollout_config_t c;
    char err[256];
    assert_int_equal(rollout_config_from_settings(&c, v, err, sizeof(err)), 0);
    assert_int_equal(c.stage_duration_ms, 45000);
    assert_int_equal(c.n_stages, 2);
    assert_true(c.auto_promote);
    assert_int_equal(c.min_requests, 20);
    v[ROLLOUT_F_max_error_rate] = "lots";
    assert_int_equal(rollout_config_from_settings(&c, v, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ROLLOUT_MAX_ERROR_RATE"));
    assert_non_null(strstr(err, "expected a number in [0, 1]"));
}

static char tmpdir[512];

static const char *write_env(const char *name, const char *text)
{
    static char path[700];
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (!tmpdir[0]) {
        if (!base || !*base)
            base = "/tmp";
        util_mkdir_p(base, 0700);
        snprintf(tmpdir, sizeof(tmpdir), "%s/rollout-config-XXXXXX", base);
        assert_non_null(mkdtemp(tmpdir));
    }
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0600), 0);
    return path;
}

static char *print_config(const config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_print(cfg, f);
    fclose(f);
    return buf;
}

/* --env-file supplies ROLLOUT_* defaults, the environment wins over the file, and
 * `config check` (config_print) shows the effective values. */
static void test_env_file_and_environment(void **state)
{
    (void)state;
    clear_rollout_env();
    const char *path = write_env("rollout.env", "ROLLOUT_STAGE_DURATION=45s\n"
                                                "ROLLOUT_CANARY_STAGES=10,100\n"
                                                "ROLLOUT_MIN_ACCURACY=0.7\n"
                                                "export ROLLOUT_AUTO_PROMOTE=yes  # comment\n");
    setenv("ROLLOUT_MIN_ACCURACY", "0.75", 1);
    config_t *cfg = NULL;
    char err[2048] = "";
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    rollout_config_t c;
    assert_int_equal(rollout_config_from_settings(&c, (const char *const *)cfg->rollout, err, sizeof(err)),
                     0);
    assert_int_equal(c.stage_duration_ms, 45000);
    assert_int_equal(c.n_stages, 2);
    assert_true(c.stages[0] == 10 && c.stages[1] == 100);
    assert_true(c.min_accuracy == 0.75); /* the environment overrides the file */
    assert_true(c.auto_promote);
    assert_int_equal(c.shadow_duration_ms, 24LL * 3600 * 1000); /* untouched: default */
    char *out = print_config(cfg);
    assert_non_null(strstr(out, "\nROLLOUT_STAGE_DURATION=45s\n"));
    assert_non_null(strstr(out, "\nROLLOUT_MIN_ACCURACY=0.75\n"));
    assert_non_null(strstr(out, "\nROLLOUT_SHADOW_DURATION=24h\n"));
    assert_non_null(strstr(out, "\nROLLOUT_FAULT_INJECT=\n"));
    free(out);
    config_free(cfg);
    clear_rollout_env();
}

/* Malformed values refuse the whole configuration, each naming its variable and form. */
static void test_malformed_values_refused_at_load(void **state)
{
    (void)state;
    clear_rollout_env();
    setenv("ROLLOUT_STAGE_DURATION", "abc", 1);
    setenv("ROLLOUT_MIN_ACCURACY", "1.7", 1);
    setenv("ROLLOUT_CANARY_STAGES", "5,200", 1);
    setenv("ROLLOUT_CHECK_INTERVAL", "10ms", 1);
    setenv("ROLLOUT_AUTO_PROMOTE", "perhaps", 1);
    config_t *cfg = NULL;
    char err[4096] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(err, "ROLLOUT_STAGE_DURATION: expected a duration like 30s, 5m or 2h"));
    assert_non_null(strstr(err, "got 'abc'"));
    assert_non_null(strstr(err, "ROLLOUT_MIN_ACCURACY: expected a number in [0, 1], got '1.7'"));
    assert_non_null(strstr(err, "ROLLOUT_CANARY_STAGES: expected 1..16 strictly ascending percentages"));
    assert_non_null(strstr(err, "got '5,200'"));
    assert_non_null(strstr(err, "ROLLOUT_CHECK_INTERVAL: expected a duration of at least 100ms"));
    assert_non_null(strstr(err, "ROLLOUT_AUTO_PROMOTE: expected a boolean"));
    clear_rollout_env();
    /* the same refusal from the file */
    const char *path = write_env("bad.env", "ROLLOUT_MAX_ERROR_RATE=-0.1\nROLLOUT_CANARY_STAGES=50,10,100\n");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ROLLOUT_MAX_ERROR_RATE: expected a number in [0, 1]"));
    assert_non_null(strstr(err, "ROLLOUT_CANARY_STAGES: expected"));
}

/* ROLLOUT_FAULT_INJECT: off unless set, strictly parsed, refused at load when malformed. */
static void test_fault_injection_setting(void **state)
{
    (void)state;
    rollout_fault_t f;
    char err[256];
    assert_int_equal(rollout_fault_parse(NULL, &f, err, sizeof(err)), 0);
    assert_string_equal(f.version, "");
    assert_int_equal(rollout_fault_parse("version=2.0.0,error_rate=0.5,delay_ms=25", &f, err, sizeof(err)),
                     0);
    assert_string_equal(f.version, "2.0.0");
    assert_true(f.error_rate == 0.5 && f.delay_ms == 25);
    static const char *const bad[] = {"error_rate=1", "version=2.0.0,error_rate=2", "version=2.0.0,delay=5",
                                      "version=../x", "version=2.0.0,delay_ms=-1",  "on"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rollout_fault_parse(bad[i], &f, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "version=V"));
    }
    clear_rollout_env();
    setenv("ROLLOUT_FAULT_INJECT", "error_rate=1", 1);
    config_t *cfg = NULL;
    char cerr[2048] = "";
    assert_int_equal(config_load(NULL, &cfg, cerr, sizeof(cerr)), -EINVAL);
    assert_non_null(strstr(cerr, "ROLLOUT_FAULT_INJECT: expected version=V"));
    setenv("ROLLOUT_FAULT_INJECT", "version=2.0.0,error_rate=1", 1);
    assert_int_equal(config_load(NULL, &cfg, cerr, sizeof(cerr)), 0);
    assert_string_equal(cfg->rollout_fault_inject, "version=2.0.0,error_rate=1");
    config_free(cfg);
    clear_rollout_env();
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
        cmocka_unit_test(test_field_list_is_the_settings),
        cmocka_unit_test(test_settings_override_defaults),
        cmocka_unit_test(test_env_file_and_environment),
        cmocka_unit_test(test_malformed_values_refused_at_load),
        cmocka_unit_test(test_fault_injection_setting),
        cmocka_unit_test(test_format_duration),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (tmpdir[0])
        util_rmtree(tmpdir);
    return rc;
}
