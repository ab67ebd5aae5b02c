/* SPDX-License-Identifier: Apache-2.0 */
/* store/deployments.c on a real SQLite store: records round-trip, the one-active-per-
 * model rule (-EEXIST), filters, the event timeline, and per-arm accuracy from feedback. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/util.h"
#include "store/deployments.h"
#include "store/sqlite.h"
#include "store/store.h"

static store_t *open_store(void)
{
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    util_mkdir_p(base, 0755);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/deploys-XXXXXX", base);
    assert_non_null(mkdtemp(dir));
    char url[600];
    snprintf(url, sizeof(url), "%s/t.db", dir);
    store_t *st = NULL;
    char err[256];
    assert_int_equal(store_open(url, &st, err, sizeof(err)), 0);
    return st;
}

static json_t *rec(const char *id, const char *status)
{
    return json_pack("{s:s,s:s,s:[]}", "deployment_id", id, "status", status, "validation_tests");
}

static void test_put_get_and_one_active(void **state)
{
    (void)state;
    store_t *st = open_store();
    json_t *r1 = rec("d1", "pending"), *r2 = rec("d2", "pending"), *r3 = rec("d3", "pending");
    assert_int_equal(store_deployment_put(st, "d1", "m", "2", "canary", "pending", true, r1, 1000), 0);
    /* a second active deployment for the same model is refused by the database */
    assert_int_equal(store_deployment_put(st, "d2", "m", "3", "canary", "pending", true, r2, 2000), -EEXIST);
    /* another model is fine */
    assert_int_equal(store_deployment_put(st, "d3", "other", "2", "direct", "pending", true, r3, 3000), 0);
    /* finishing d1 frees the slot */
    json_object_set_new(r1, "status", json_string("rolled_back"));
    assert_int_equal(store_deployment_put(st, "d1", "m", "2", "canary", "rolled_back", false, r1, 1000), 0);
    assert_int_equal(store_deployment_put(st, "d2", "m", "3", "canary", "pending", true, r2, 2000), 0);

    json_t *got = NULL;
    assert_int_equal(store_deployment_get(st, "d1", &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "status")), "rolled_back");
    json_decref(got);
    assert_int_equal(store_deployment_get(st, "nope", &got), -ENOENT);

    json_t *list = NULL;
    assert_int_equal(store_deployment_list(st, NULL, NULL, false, 0, &list), 0);
    assert_int_equal(json_array_size(list), 3);
    /* newest first */
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "deployment_id")), "d3");
    json_decref(list);
    assert_int_equal(store_deployment_list(st, NULL, "m", true, 0, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "deployment_id")), "d2");
    json_decref(list);
    assert_int_equal(store_deployment_list(st, "rolled_back", NULL, false, 0, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    json_decref(r1);
    json_decref(r2);
    json_decref(r3);
    store_close(st);
}

static void test_events_in_order(void **state)
{
    (void)state;
    store_t *st = open_store();
    json_t *r = rec("d1", "pending");
    assert_int_equal(store_deployment_put(st, "d1", "m", "2", "canary", "pending", true, r, 1), 0);
    for (int i = 0; i < 5; i++) {
        json_t *ev = json_pack("{s:i,s:s}", "n", i, "actor", "tester");
        assert_int_equal(store_deployment_event_add(st, "d1", 100 + i, ev), 0);
        json_decref(ev);
    }
    json_t *evs = NULL;
    assert_int_equal(store_deployment_events(st, "d1", &evs), 0);
    assert_int_equal(json_array_size(evs), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, (size_t)i), "n")), i);
    json_decref(evs);
    json_decref(r);
    store_close(st);
}

typedef struct fb {
    const char *id, *arm, *version, *out_label, *truth_json;
} fb_t;

static int insert_fb(sqlite3 *db, void *arg)
{
    const fb_t *f = arg;
    char sql[1024];
    snprintf(
        sql, sizeof(sql),
        "INSERT INTO predictions (id, created_ms, model, version, arm, request_id, outputs_json, n_rows, "
        "latency_ms, status) VALUES ('%s', 5000, 'm', '%s', '%s', 'r', '[{\"label\":\"%s\"}]', 1, 1.0, 200);"
        "INSERT INTO feedback (prediction_id, row_index, label_json, received_ms) VALUES ('%s', 0, '%s', "
        "6000);",
        f->id, f->version, f->arm, f->out_label, f->id, f->truth_json);
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static void test_feedback_accuracy(void **state)
{
    (void)state;
    store_t *st = open_store();
    const fb_t rows[] = {
        {"a", "canary", "2", "sick", "\"sick\""}, {"b", "canary", "2", "sick", "0"},
        {"c", "canary", "2", "well", "0"},        {"d", "stable", "1", "well", "{\"label\":\"well\"}"},
        {"e", "stable", "1", "sick", "1"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_int_equal(store_sqlite_with_db(st, insert_fb, (void *)&rows[i]), 0);
    const char *const labels[] = {"well", "sick"};
    json_t *acc = NULL;
    assert_int_equal(store_deployment_feedback_accuracy(st, "m", 0, labels, 2, &acc), 0);
    json_t *c = json_object_get(json_object_get(acc, "canary"), "2");
    assert_int_equal(json_integer_value(json_object_get(c, "labels")), 3);
    assert_int_equal(json_integer_value(json_object_get(c, "correct")), 2);
    json_t *s = json_object_get(json_object_get(acc, "stable"), "1");
    assert_int_equal(json_integer_value(json_object_get(s, "labels")), 2);
    assert_int_equal(json_integer_value(json_object_get(s, "correct")), 2);
    json_decref(acc);
    /* since_ms after the predictions: nothing */
    assert_int_equal(store_deployment_feedback_accuracy(st, "m", 10000, labels, 2, &acc), 0);
    assert_int_equal(json_object_size(acc), 0);
    json_decref(acc);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_and_one_active),
        cmocka_unit_test(test_events_in_order),
        cmocka_unit_test(test_feedback_accuracy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
