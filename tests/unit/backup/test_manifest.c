/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/manifest: a signed manifest round trips; any edit of its text (a
 * size, a hash, a file removed, the type) fails authentication; another key is reported
 * as a wrong key before anything else; unsafe paths and stored names are refused even
 * when correctly signed; backup ids validate and order by time then suffix. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backup/manifest.h"

static backup_key_t key, other;

static int setup(void **state)
{
    (void)state;
    uint8_t m[32] = {7}, o[32] = {8};
    backup_key_derive(m, &key);
    backup_key_derive(o, &other);
    return 0;
}

static backup_manifest_t *sample(void)
{
    backup_manifest_t *m = backup_manifest_new();
    assert_non_null(m);
    snprintf(m->id, sizeof(m->id), "20261127T010203Z-2");
    snprintf(m->type, sizeof(m->type), "incremental");
    snprintf(m->parent, sizeof(m->parent), "20261127T010203Z");
    m->timestamp_ms = 1795741323000;
    memcpy(m->key_fingerprint, key.fingerprint, sizeof(m->key_fingerprint));
    m->key_id = strdup("arn:aws:kms:eu-west-1:1:key/x");
    m->tool_version = strdup("aimedres test");
    m->host = strdup("host-\xc3\xa9"); /* non-ASCII survives the canonical form */
    m->db = json_pack("{s:s,s:i}", "file", "aimedres.db", "predictions", 42);
    backup_file_t f = {
        .path = "db/aimedres.db",
        .component = "db",
        .size = 69632,
        .mtime_ns = 1795741323123456789LL,
        .mode = 0640,
        .holder = "20261127T010203Z-2",
        .stored = "data/000001",
        .stored_size = 1234,
    };
    memset(f.sha256, 'a', 64);
    memset(f.nonce, '0', 24);
    assert_int_equal(backup_manifest_add_file(m, &f), 0);
    backup_file_t g = f;
    g.path = "models/alzheimer_classifier/1.0.0/model.json";
    g.component = "models";
    snprintf(g.holder, sizeof(g.holder), "20261127T010203Z");
    g.stored = "data/000007";
    memset(g.sha256, 'b', 64);
    assert_int_equal(backup_manifest_add_file(m, &g), 0);
    m->total_size = 2 * 69632;
    m->stored_here = 1234;
    return m;
}

static char *signed_text(backup_manifest_t *m)
{
    char *t = backup_manifest_dump(m, &key);
    assert_non_null(t);
    return t;
}

static int parse(const char *text, const backup_key_t *k, backup_manifest_t **ret, char *err)
{
    return backup_manifest_parse(text, strlen(text), k, ret, err, 512);
}

static void test_round_trip(void **state)
{
    (void)state;
    backup_manifest_t *m = sample(), *p = NULL;
    char *t = signed_text(m), err[512] = "";
    int r = parse(t, &key, &p, err);
    if (r)
        fail_msg("%s", err);
    assert_string_equal(p->id, m->id);
    assert_string_equal(p->type, "incremental");
    assert_string_equal(p->parent, m->parent);
    assert_int_equal(p->timestamp_ms, m->timestamp_ms);
    assert_string_equal(p->host, m->host);
    assert_int_equal(p->n_files, 2);
    assert_string_equal(p->files[1].path, "models/alzheimer_classifier/1.0.0/model.json");
    assert_string_equal(p->files[1].holder, "20261127T010203Z");
    assert_int_equal(p->files[0].mtime_ns, 1795741323123456789LL);
    assert_int_equal(p->files[0].mode, 0640);
    assert_int_equal(json_integer_value(json_object_get(p->db, "predictions")), 42);
    assert_non_null(backup_manifest_find(p, "db/aimedres.db"));
    assert_null(backup_manifest_find(p, "db/other.db"));
    /* without a key it parses unauthenticated */
    backup_manifest_free(p);
    assert_int_equal(parse(t, NULL, &p, err), 0);
    backup_manifest_free(p);
    free(t);
    backup_manifest_free(m);
}

/* Replaces the first occurrence of a by b in text (same or other length). */
static char *edit(const char *text, const char *a, const char *b)
{
    const char *at = strstr(text, a);
    assert_non_null(at);
    size_t n = strlen(text) - strlen(a) + strlen(b);
    char *out = malloc(n + 1);
    size_t pre = (size_t)(at - text);
    memcpy(out, text, pre);
    memcpy(out + pre, b, strlen(b));
    strcpy(out + pre + strlen(b), at + strlen(a));
    return out;
}

static void test_edits_detected(void **state)
{
    (void)state;
    backup_manifest_t *m = sample(), *p = NULL;
    char *t = signed_text(m), err[512];
    const char *edits[][2] = {
        {"\"size\": 69632", "\"size\": 69633"},
        {"aaaaaaaa", "aaaaaaab"},
        {"\"type\": \"incremental\"", "\"type\": \"full\""},
        {"data/000007", "data/000008"},
        {"\"predictions\": 42", "\"predictions\": 43"},
        {"\"mac\": \"", "\"mac\": \"0"},
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *x = edit(t, edits[i][0], edits[i][1]);
        assert_int_equal(parse(x, &key, &p, err), -EBADMSG);
        free(x);
    }
    /* whitespace does not matter: the MAC covers the canonical form */
    char *x = edit(t, "{", "{  \n");
    assert_int_equal(parse(x, &key, &p, err), 0);
    backup_manifest_free(p);
    free(x);
    /* no auth at all */
    x = edit(t, "\"auth\"", "\"auth_\"");
    assert_int_equal(parse(x, &key, &p, err), -EBADMSG);
    free(x);
    free(t);
    backup_manifest_free(m);
}

static void test_wrong_key(void **state)
{
    (void)state;
    backup_manifest_t *m = sample(), *p = NULL;
    char *t = signed_text(m), err[512];
    assert_int_equal(parse(t, &other, &p, err), -EKEYREJECTED);
    assert_non_null(strstr(err, key.fingerprint));
    assert_non_null(strstr(err, other.fingerprint));
    assert_non_null(strstr(err, "arn:aws:kms"));
    free(t);
    backup_manifest_free(m);
}

static void test_unsafe_paths_refused(void **state)
{
    (void)state;
    const char *paths[] = {"../etc/passwd", "/etc/passwd", "models/../../x", "models/.hidden",
                           "models//x",     "nodir",       "models/x/"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        backup_manifest_t *m = sample(), *p = NULL;
        free(m->files[1].path);
        m->files[1].path = strdup(paths[i]);
        char *t = signed_text(m), err[512];
        assert_int_equal(parse(t, &key, &p, err), -EPROTO);
        free(t);
        backup_manifest_free(m);
    }
    backup_manifest_t *m = sample(), *p = NULL;
    free(m->files[0].stored);
    m->files[0].stored = strdup("../../x");
    char *t = signed_text(m), err[512];
    assert_int_equal(parse(t, &key, &p, err), -EPROTO);
    free(t);
    backup_manifest_free(m);
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(backup_id_valid("20261127T010203Z"));
    assert_true(backup_id_valid("20261127T010203Z-1"));
    assert_true(backup_id_valid("20261127T010203Z-999"));
    assert_false(backup_id_valid("20261127T010203Z-0"));
    assert_false(backup_id_valid("20261127T010203Z-1000"));
    assert_false(backup_id_valid("20261127-010203"));
    assert_false(backup_id_valid("latest"));
    assert_false(backup_id_valid("../20261127T010203Z"));
    assert_true(backup_id_compare("20261127T010203Z", "20261127T010203Z-1") < 0);
    assert_true(backup_id_compare("20261127T010203Z-2", "20261127T010203Z-10") < 0);
    assert_true(backup_id_compare("20261127T010203Z-10", "20261127T010204Z") < 0);
    assert_int_equal(backup_id_compare("20261127T010203Z-3", "20261127T010203Z-3"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_edits_detected),
        cmocka_unit_test(test_wrong_key),  cmocka_unit_test(test_unsafe_paths_refused),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
