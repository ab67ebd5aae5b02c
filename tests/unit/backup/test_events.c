/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/events: the BACKUP record of a backup summary lands in the live audit
 * log with its fields and the chain still verifies; RESTORE goes to the restored log and to
 * the live log when they differ (once when they are the same file), a failure only to the
 * live log; without AUDIT_LOG_PATH nothing is written; an unusable log is an error. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "backup/events.h"
#include "backup/settings.h"
#include "common/config.h"
#include "common/util.h"
#include "testutil.h"

static char dir[2048], live[2300], restored[2300];

typedef struct fx {
    config_t *cfg;
    backup_settings_t s;
} fx_t;

static int setup(void **state)
{
    if (test_tmpdir(dir, sizeof(dir), "backup-events") < 0)
        return -1;
    snprintf(live, sizeof(live), "%s/log/audit.log", dir);
    snprintf(restored, sizeof(restored), "%s/target/audit/audit.log", dir);
    char db[2300];
    snprintf(db, sizeof(db), "sqlite://%s/aimedres.db", dir);
    setenv("DATABASE_URL", db, 1);
    setenv("MODEL_STORAGE_PATH", dir, 1);
    setenv("DATA_DIR", dir, 1);
    setenv("AUDIT_LOG_PATH", live, 1);
    setenv("SECRET_KEY", "unit-test-secret-key-0123456789abcdef", 1);
    setenv("LOG_LEVEL", "ERROR", 1);
    unsetenv("AUDIT_SIGNING_KEY_PATH");
    unsetenv("ENVIRONMENT");
    fx_t *f = calloc(1, sizeof(*f));
    char err[512] = "";
    if (!f || config_load(NULL, &f->cfg, err, sizeof(err)) < 0 ||
        backup_settings_from_config(f->cfg, &f->s, err, sizeof(err)) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    config_free(f->cfg);
    free(f);
    util_rmtree(dir);
    return 0;
}

/* Every record of the log at path, as a JSON array. */
static json_t *read_records(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    json_t *out = json_array();
    if (util_read_file(path, 1u << 20, &text, &len) < 0)
        return out;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        json_array_append_new(out, json_loads(line, 0, NULL));
    free(text);
    return out;
}

static bool chain_ok(const fx_t *f, const char *path)
{
    config_t c = *f->cfg;
    char buf[2300];
    snprintf(buf, sizeof(buf), "%s", path);
    c.audit_log_path = buf;
    audit_verify_result_t res;
    memset(&res, 0, sizeof(res));
    char err[512] = "";
    return audit_verify(&c, NULL, &res, err, sizeof(err)) == 0 && res.ok;
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void test_backup_record(void **state)
{
    fx_t *f = *state;
    json_t *sum = json_pack("{s:b,s:s,s:s,s:n,s:I,s:I,s:I,s:{s:{},s:{}},s:{s:b,s:b}}", "ok", 1, "id",
                            "20261127T101500Z", "type", "full", "parent", "files", (json_int_t)7,
                            "total_bytes", (json_int_t)1000, "stored_bytes", (json_int_t)400, "components",
                            "db", "audit", "offsite", "configured", 1, "ok", 1);
    char err[1024] = "";
    assert_int_equal(backup_event_backup(&f->s, sum, 0, false, err, sizeof(err)), 0);
    json_decref(sum);
    json_t *recs = read_records(live);
    assert_int_equal(json_array_size(recs), 1);
    json_t *r = json_array_get(recs, 0);
    assert_string_equal(str(r, "type"), "BACKUP");
    assert_string_equal(str(r, "entity_type"), "backup");
    assert_string_equal(str(r, "entity_id"), "20261127T101500Z");
    assert_string_equal(str(r, "outcome"), "success");
    assert_string_equal(str(r, "action"), "C");
    assert_true(str(r, "user")[0] != '\0');
    json_t *d = json_object_get(r, "detail");
    assert_string_equal(str(d, "type"), "full");
    assert_int_equal(json_integer_value(json_object_get(d, "total_bytes")), 1000);
    assert_int_equal(json_integer_value(json_object_get(d, "stored_bytes")), 400);
    assert_int_equal(json_integer_value(json_object_get(d, "files")), 7);
    assert_int_equal(json_array_size(json_object_get(d, "components")), 2);
    assert_true(json_is_true(json_object_get(d, "offsite")));
    assert_true(json_is_false(json_object_get(d, "drill")));
    json_decref(recs);

    /* a failed backup: outcome failure, the reason in the detail, the chain continues */
    sum = json_pack("{s:b,s:s,s:s}", "ok", 0, "id", "20261127T101600Z", "error", "disk full");
    assert_int_equal(backup_event_backup(&f->s, sum, -ENOSPC, true, err, sizeof(err)), 0);
    json_decref(sum);
    recs = read_records(live);
    assert_int_equal(json_array_size(recs), 2);
    r = json_array_get(recs, 1);
    assert_string_equal(str(r, "outcome"), "failure");
    assert_string_equal(str(json_object_get(r, "detail"), "error"), "disk full");
    assert_true(json_is_true(json_object_get(json_object_get(r, "detail"), "drill")));
    assert_int_equal(json_integer_value(json_object_get(r, "seq")),
                     json_integer_value(json_object_get(json_array_get(recs, 0), "seq")) + 1);
    json_decref(recs);
    assert_true(chain_ok(f, live));
}

static void test_restore_records(void **state)
{
    fx_t *f = *state;
    char err[1024] = "";
    json_t *sum = json_pack("{s:s}", "id", "20261127T101500Z");
    assert_int_equal(backup_event_backup(&f->s, sum, 0, false, err, sizeof(err)), 0);
    json_decref(sum);
    /* the restored log: a copy of the live one (what a restore puts into the target) */
    char tdir[2300];
    snprintf(tdir, sizeof(tdir), "%s/target/audit", dir);
    assert_int_equal(util_mkdir_p(tdir, 0750), 0);
    assert_int_equal(util_copy_file_atomic(live, restored, 0640), 0);

    backup_restore_opts_t o = {.target = "/srv/restore-test"};
    json_t *rep = json_pack("{s:b,s:s,s:[s,s],s:I,s:I}", "ok", 1, "audit_log", restored, "components", "db",
                            "audit", "files", (json_int_t)5, "bytes", (json_int_t)123);
    assert_int_equal(backup_event_restore(&f->s, "20261127T101500Z", rep, 0, &o, false, err, sizeof(err)), 0);
    json_decref(rep);
    json_t *rr = read_records(restored), *lr = read_records(live);
    assert_int_equal(json_array_size(rr), 2);
    assert_int_equal(json_array_size(lr), 2);
    json_t *a = json_array_get(rr, 1), *b = json_array_get(lr, 1);
    assert_string_equal(str(a, "type"), "RESTORE");
    assert_string_equal(str(b, "type"), "RESTORE");
    assert_string_equal(str(a, "action"), "C");
    assert_string_equal(str(json_object_get(a, "detail"), "log"), "restored");
    assert_string_equal(str(json_object_get(b, "detail"), "log"), "live");
    assert_string_equal(str(json_object_get(a, "detail"), "target"), "/srv/restore-test");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "detail"), "bytes")), 123);
    json_decref(rr);
    json_decref(lr);
    assert_true(chain_ok(f, restored));
    assert_true(chain_ok(f, live));

    /* in place: the restored log is the live log, one record */
    backup_restore_opts_t inplace = {.target = NULL};
    rep = json_pack("{s:b,s:s}", "ok", 1, "audit_log", live);
    assert_int_equal(
        backup_event_restore(&f->s, "20261127T101500Z", rep, 0, &inplace, false, err, sizeof(err)), 0);
    json_decref(rep);
    lr = read_records(live);
    assert_int_equal(json_array_size(lr), 3);
    assert_string_equal(str(json_array_get(lr, 2), "action"), "U");
    assert_true(json_is_true(json_object_get(json_object_get(json_array_get(lr, 2), "detail"), "in_place")));
    json_decref(lr);

    /* a failure: only the live log, never the (untouched) restored one */
    rep = json_pack("{s:b,s:s,s:s}", "ok", 0, "audit_log", restored, "error", "refusing to restore: damaged");
    assert_int_equal(
        backup_event_restore(&f->s, "20261127T101500Z", rep, -EBADMSG, &o, false, err, sizeof(err)), 0);
    json_decref(rep);
    rr = read_records(restored);
    lr = read_records(live);
    assert_int_equal(json_array_size(rr), 2);
    assert_int_equal(json_array_size(lr), 4);
    assert_string_equal(str(json_array_get(lr, 3), "outcome"), "failure");
    assert_string_equal(str(json_object_get(json_array_get(lr, 3), "detail"), "error"),
                        "refusing to restore: damaged");
    json_decref(rr);
    json_decref(lr);
    assert_true(chain_ok(f, live));
}

static void test_no_audit_log_and_errors(void **state)
{
    fx_t *f = *state;
    char err[1024] = "";
    backup_settings_t s = f->s;
    s.audit_log_path = NULL;
    json_t *sum = json_pack("{s:s}", "id", "x");
    assert_int_equal(backup_event_backup(&s, sum, 0, false, err, sizeof(err)), 0);
    struct stat st;
    assert_int_not_equal(stat(live, &st), 0); /* nothing created */

    /* an audit log whose last line is not a record: the append is refused and explained */
    assert_int_equal(util_mkdir_p(dir, 0750), 0);
    char logdir[2300];
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    assert_int_equal(util_mkdir_p(logdir, 0750), 0);
    assert_int_equal(util_write_file_atomic(live, "garbage\n", 8, 0640), 0);
    assert_true(backup_event_backup(&f->s, sum, 0, false, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "BACKUP audit record"));
    json_decref(sum);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backup_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_audit_log_and_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
