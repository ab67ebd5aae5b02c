/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for audit/configfp: the per-setting fingerprint state never holds a secret,
 * the diff names changed settings (values for plain ones, "hidden" for secrets, URLs and
 * commands), a tampered or foreign-key state is "unverifiable", and audit_config_record
 * writes one CONFIG_CHANGE record per change into a chain that still verifies. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "audit/configfp.h"
#include "common/config.h"
#include "common/util.h"

#define SECRET "unit-config-secret-0123456789abcdef0123456789"
#define JWT_A "jwt-secret-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define JWT_B "jwt-secret-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
#define HOOK_A "https://hooks.example/T000/SECRETTOKENA"
#define HOOK_B "https://hooks.example/T000/SECRETTOKENB"

static char tmpdir[512];
static char logpath[600];

static config_t *load(void)
{
    config_t *cfg = NULL;
    char err[2048] = "";
    int rc = config_load(NULL, &cfg, err, sizeof(err));
    if (rc < 0)
        fail_msg("config_load: %s", err);
    return cfg;
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (base)
        util_mkdir_p(base, 0750);
    snprintf(tmpdir, sizeof(tmpdir), "%s/configfp-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(logpath, sizeof(logpath), "%s/audit/audit.log", tmpdir);
    setenv("SECRET_KEY", SECRET, 1);
    setenv("JWT_SECRET_KEY", JWT_A, 1);
    setenv("ALERT_WEBHOOK_URL", HOOK_A, 1);
    setenv("PORT", "8080", 1);
    setenv("AUDIT_LOG_PATH", logpath, 1);
    unsetenv("AUDIT_SIGNING_KEY_PATH");
    unsetenv("ENVIRONMENT");
    return 0;
}

static void assert_no_secrets(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(s);
    assert_null(strstr(s, SECRET));
    assert_null(strstr(s, JWT_A));
    assert_null(strstr(s, JWT_B));
    assert_null(strstr(s, "SECRETTOKEN"));
    free(s);
}

static json_t *find_change(const json_t *detail, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(detail, "changed"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "setting")), name) == 0)
            return e;
    }
    return NULL;
}

static void test_state_holds_no_secret(void **state)
{
    (void)state;
    config_t *cfg = load();
    json_t *st = audit_config_state(cfg);
    assert_non_null(st);
    assert_no_secrets(st);
    json_t *s = json_object_get(st, "settings");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "PORT"), "v")), "8080");
    assert_null(json_object_get(json_object_get(s, "JWT_SECRET_KEY"), "v"));
    assert_null(json_object_get(json_object_get(s, "SECRET_KEY"), "v"));
    assert_null(json_object_get(json_object_get(s, "ALERT_WEBHOOK_URL"), "v"));
    assert_null(json_object_get(json_object_get(s, "DATABASE_URL"), "v"));
    assert_int_equal(strlen(json_string_value(json_object_get(json_object_get(s, "JWT_SECRET_KEY"), "h"))),
                     64);
    /* one entry per setting in the table */
    size_t n = 0;
    while (config_setting_name(n))
        n++;
    assert_int_equal(json_object_size(s), n);
    /* same configuration, same state; unchanged -> no record */
    json_t *again = audit_config_state(cfg);
    assert_true(json_equal(st, again));
    assert_null(audit_config_diff(cfg, st, again));
    /* first start: a baseline */
    json_t *d = audit_config_diff(cfg, NULL, st);
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "baseline");
    assert_null(json_object_get(d, "previous_state"));
    json_decref(d);
    json_decref(again);
    json_decref(st);
    config_free(cfg);
}

static void test_diff_names_changes(void **state)
{
    (void)state;
    config_t *c1 = load();
    json_t *s1 = audit_config_state(c1);
    setenv("PORT", "9090", 1);
    setenv("JWT_SECRET_KEY", JWT_B, 1);
    setenv("ALERT_WEBHOOK_URL", HOOK_B, 1);
    config_t *c2 = load();
    json_t *s2 = audit_config_state(c2);
    json_t *d = audit_config_diff(c2, s1, s2);
    assert_non_null(d);
    assert_no_secrets(d);
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "changed");
    assert_int_equal(json_array_size(json_object_get(d, "changed")), 3);
    json_t *port = find_change(d, "PORT");
    assert_string_equal(json_string_value(json_object_get(port, "old")), "8080");
    assert_string_equal(json_string_value(json_object_get(port, "new")), "9090");
    json_t *jwt = find_change(d, "JWT_SECRET_KEY");
    assert_string_equal(json_string_value(json_object_get(jwt, "value")), "hidden");
    assert_null(json_object_get(jwt, "old"));
    json_t *hook = find_change(d, "ALERT_WEBHOOK_URL");
    assert_string_equal(json_string_value(json_object_get(hook, "value")), "hidden");
    assert_string_not_equal(json_string_value(json_object_get(d, "fingerprint")),
                            json_string_value(json_object_get(d, "previous_fingerprint")));
    json_decref(d);

    /* a state edited without the key (here: the old PORT value) is unverifiable */
    json_t *forged = json_deep_copy(s1);
    json_object_set_new(json_object_get(json_object_get(forged, "settings"), "PORT"), "v", json_string("1"));
    d = audit_config_diff(c2, forged, s2);
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "baseline");
    assert_non_null(json_object_get(d, "previous_state"));
    json_decref(d);
    json_decref(forged);
    /* ...and so is one written under another SECRET_KEY */
    setenv("SECRET_KEY", SECRET "-rotated", 1);
    config_t *c3 = load();
    json_t *s3 = audit_config_state(c3);
    d = audit_config_diff(c3, s2, s3);
    assert_non_null(json_object_get(d, "previous_state"));
    json_decref(d);
    setenv("SECRET_KEY", SECRET, 1);
    /* an unsigned edit (a setting dropped, one invented, the mac removed) is refused too */
    json_t *older = json_deep_copy(s2);
    json_object_del(json_object_get(older, "settings"), "PORT");
    json_object_set_new(json_object_get(older, "settings"), "GONE_SETTING", json_pack("{s:s}", "h", "00"));
    json_object_del(older, "mac");
    d = audit_config_diff(c2, older, s2);
    assert_non_null(json_object_get(d, "previous_state"));
    json_decref(d);
    json_decref(older);
    json_decref(s1);
    json_decref(s2);
    json_decref(s3);
    config_free(c1);
    config_free(c2);
    config_free(c3);
    setenv("PORT", "8080", 1);
    setenv("JWT_SECRET_KEY", JWT_A, 1);
    setenv("ALERT_WEBHOOK_URL", HOOK_A, 1);
}

static json_t *read_records(void)
{
    char *text = NULL;
    size_t len = 0;
    json_t *arr = json_array();
    if (util_read_file(logpath, 16 * 1024 * 1024, &text, &len) < 0)
        return arr;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        json_array_append_new(arr, json_loads(line, 0, NULL));
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return arr;
}

static size_t count_type(const json_t *recs, const char *type)
{
    size_t i, n = 0;
    json_t *r;
    json_array_foreach(recs, i, r) n += strcmp(json_string_value(json_object_get(r, "type")), type) == 0;
    return n;
}

static void start_once(int *ret_changed)
{
    config_t *cfg = load();
    audit_log_t *a = NULL;
    char err[1024] = "";
    assert_int_equal(audit_log_open(cfg, &a, err, sizeof(err)), 0);
    assert_int_equal(audit_config_record(a, cfg, ret_changed, err, sizeof(err)), 0);
    audit_log_close(a);
    config_free(cfg);
}

static void test_record_at_start(void **state)
{
    (void)state;
    int changed = 0;
    start_once(&changed);
    assert_int_equal(changed, -1); /* baseline */
    json_t *recs = read_records();
    assert_int_equal(count_type(recs, "CONFIG_CHANGE"), 1);
    json_t *r = json_array_get(recs, json_array_size(recs) - 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "detail"), "reason")),
                        "baseline");
    assert_string_equal(json_string_value(json_object_get(r, "entity_type")), "configuration");
    assert_non_null(json_object_get(r, "user"));
    json_decref(recs);
    char sp[700];
    audit_path_config_state(logpath, sp, sizeof(sp));
    assert_int_equal(access(sp, R_OK), 0);

    start_once(&changed); /* unchanged: no record */
    assert_int_equal(changed, 0);
    recs = read_records();
    assert_int_equal(count_type(recs, "CONFIG_CHANGE"), 1);
    json_decref(recs);

    setenv("PORT", "8181", 1);
    setenv("JWT_SECRET_KEY", JWT_B, 1);
    start_once(&changed);
    assert_int_equal(changed, 2);
    recs = read_records();
    assert_int_equal(count_type(recs, "CONFIG_CHANGE"), 2);
    assert_no_secrets(recs);
    r = json_array_get(recs, json_array_size(recs) - 1);
    json_t *d = json_object_get(r, "detail");
    assert_string_equal(json_string_value(json_object_get(find_change(d, "PORT"), "new")), "8181");
    assert_non_null(find_change(d, "JWT_SECRET_KEY"));
    json_decref(recs);

    /* the chain still verifies with the CONFIG_CHANGE records in it */
    config_t *cfg = load();
    audit_verify_result_t res;
    char err[512];
    assert_int_equal(audit_verify(cfg, NULL, &res, err, sizeof(err)), 0);
    assert_true(res.ok);
    assert_int_equal(res.records, 2);
    config_free(cfg);

    /* audit off: nothing happens */
    assert_int_equal(audit_config_record(NULL, NULL, &changed, err, sizeof(err)), 0);
    setenv("PORT", "8080", 1);
    setenv("JWT_SECRET_KEY", JWT_A, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_holds_no_secret),
        cmocka_unit_test(test_diff_names_changes),
        cmocka_unit_test(test_record_at_start),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
