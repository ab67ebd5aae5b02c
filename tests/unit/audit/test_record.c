/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the audit record format and the pure helpers: build/seal/parse round trip
 * and HMAC chain, event validation (no raw patient ids), calendar arithmetic including leap
 * years, retention pruning at its exact boundary, RFC 5424 formatting and escaping, and
 * RFC 6587 octet counting. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "audit/siem.h"
#include "common/util.h"
#include "security/pseudonym.h"
#include "testutil.h"

static char tmpdir[PATH_MAX / 2];

static int group_setup(void **state)
{
    (void)state;
    return test_tmpdir(tmpdir, sizeof(tmpdir), "audit-record");
}

static int group_teardown(void **state)
{
    (void)state;
    util_rmtree(tmpdir);
    return 0;
}

static const unsigned char *test_key(void)
{
    static unsigned char key[AUDIT_KEY_LEN];
    assert_int_equal(audit_chain_key("unit-test-secret-key-0123456789abcdef", key), 0);
    return key;
}

static void test_round_trip_and_chain(void **state)
{
    (void)state;
    const unsigned char *key = test_key();
    json_t *detail = json_pack("{s:s,s:s,s:i}", "model", "alzheimer_classifier", "version", "1.0.0", "n", 3);
    audit_event_t ev = {.type = "MODEL_INFERENCE",
                        .user = "dr \"quote\"",
                        .role = "clinician",
                        .action = "E",
                        .outcome = "success",
                        .request_id = "r-1",
                        .detail = detail};
    json_t *r1 = audit_record_build(&ev, 1, 1764230400123, AUDIT_GENESIS_HASH);
    char h1[AUDIT_HASH_HEX];
    assert_int_equal(audit_record_seal(r1, key, h1), 0);
    size_t len;
    char *line = audit_record_line(r1, &len);
    assert_non_null(line);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', len - 1)); /* one record, one line */
    json_t *back = audit_record_parse(line, len - 1);
    assert_non_null(back);
    assert_true(json_equal(back, r1));
    assert_true(audit_record_hash_ok(back, key));
    assert_string_equal(json_string_value(json_object_get(back, "ts")), "2025-11-27T08:00:00.123Z");
    assert_string_equal(json_string_value(json_object_get(back, "user")), "dr \"quote\"");

    /* the second record links to the first; any change breaks its HMAC */
    json_t *r2 = audit_record_build(&ev, 2, 1764230400200, h1);
    char h2[AUDIT_HASH_HEX];
    assert_int_equal(audit_record_seal(r2, key, h2), 0);
    assert_string_equal(json_string_value(json_object_get(r2, "prev_hash")), h1);
    assert_string_not_equal(h1, h2);
    json_object_set_new(back, "outcome", json_string("failure"));
    assert_false(audit_record_hash_ok(back, key));
    json_object_set_new(back, "outcome", json_string("success"));
    assert_true(audit_record_hash_ok(back, key));
    /* another key (another SECRET_KEY) does not verify */
    unsigned char other[AUDIT_KEY_LEN];
    assert_int_equal(audit_chain_key("another-secret", other), 0);
    assert_false(audit_record_hash_ok(back, other));
    assert_int_equal(audit_chain_key(NULL, other), -EINVAL);
    assert_int_equal(audit_chain_key("", other), -EINVAL);

    /* malformed lines are refused */
    assert_null(audit_record_parse("{\"seq\":1}", 9));
    assert_null(audit_record_parse("not json", 8));
    assert_null(audit_record_parse("{\"seq\":0,\"prev_hash\":\"x\"}", 25));
    free(line);
    json_decref(back);
    json_decref(r1);
    json_decref(r2);
    json_decref(detail);
}

/* The writer's pre-serialised canonical form must be byte for byte what the verifier
 * recomputes with jansson, whatever the strings hold. */
static void test_prepared_matches_canonical(void **state)
{
    (void)state;
    const unsigned char *key = test_key();
    json_t *detail =
        json_pack("{s:s,s:f,s:f,s:b,s:n,s:{s:[i,s]},s:s}", "z\u00e9\u4e2d\U0001F600", "\t\"\\/\x01", "p", 0.1,
                  "big", 1e300, "flag", 1, "nothing", "nested", "a", 1, "x", "ascii", "</script>");
    assert_non_null(detail);
    const char *odd = "quote\" back\\ slash/ ctl\x02\x1f nl\n uni \xc3\xa9 \xf0\x9f\x98\x80";
    audit_event_t evs[] = {
        {.type = "MODEL_INFERENCE",
         .user = odd,
         .role = odd,
         .action = odd,
         .entity_type = odd,
         .entity_id = odd,
         .source_ip = odd,
         .outcome = odd,
         .request_id = odd,
         .patient_pseudonym = "p_0123456789abcdef0123456789abcd",
         .detail = detail},
        {.type = "X"}, /* nothing but the type */
        {.type = "AUTH_FAILURE", .source_ip = "::1"},
        {.type = "BACKUP", .role = "admin", .detail = detail},
    };
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++) {
        audit_prepared_t *p = audit_record_prepare(&evs[i]);
        assert_non_null(p);
        char h1[AUDIT_HASH_HEX], h2[AUDIT_HASH_HEX];
        size_t len;
        char *line = audit_prepared_seal(p, 77, 1764230400123, AUDIT_GENESIS_HASH, key, h1, &len);
        assert_non_null(line);
        json_t *parsed = audit_record_parse(line, len - 1);
        assert_non_null(parsed);
        assert_true(audit_record_hash_ok(parsed, key));
        json_t *built = audit_record_build(&evs[i], 77, 1764230400123, AUDIT_GENESIS_HASH);
        assert_int_equal(audit_record_seal(built, key, h2), 0);
        assert_string_equal(h1, h2);
        assert_true(json_equal(parsed, built));
        json_decref(parsed);
        json_decref(built);
        free(line);
        audit_prepared_free(p);
    }
    json_decref(detail);
}

/* The chain HMAC (a per-thread context re-initialised per message) against OpenSSL's
 * one-shot HMAC over the canonical form, several times in a row. */
static void test_hmac_known_answer(void **state)
{
    (void)state;
    const unsigned char *key = test_key();
    for (int i = 0; i < 5; i++) {
        char user[32];
        snprintf(user, sizeof(user), "user-%d", i);
        audit_event_t ev = {.type = "DATA_ACCESS", .user = user, .outcome = "success"};
        json_t *rec = audit_record_build(&ev, (uint64_t)i + 1, 1764230400123 + i, AUDIT_GENESIS_HASH);
        char *canon = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
        unsigned char mac[32];
        unsigned int ml = sizeof(mac);
        assert_non_null(
            HMAC(EVP_sha256(), key, AUDIT_KEY_LEN, (const unsigned char *)canon, strlen(canon), mac, &ml));
        char want[AUDIT_HASH_HEX];
        for (int j = 0; j < 32; j++)
            snprintf(want + 2 * j, 3, "%02x", mac[j]);
        char got[AUDIT_HASH_HEX];
        assert_int_equal(audit_record_seal(rec, key, got), 0);
        assert_string_equal(got, want);
        free(canon);
        json_decref(rec);
    }
}

/* audit_log_submit_inference's record is byte for byte the MODEL_INFERENCE record predict
 * used to submit as an event with a json_pack'ed detail, whatever the strings hold. */
static void test_inference_matches_event(void **state)
{
    (void)state;
    const unsigned char *key = test_key();
    const char *odd = "quote\" back\\ slash/ ctl\x02\x1f\x7f nl\n uni \xc3\xa9 \xf0\x9f\x98\x80";
    audit_inference_t infs[] = {
        {.user = "dr-a",
         .role = "clinician",
         .source_ip = "127.0.0.1",
         .request_id = "r-1",
         .patient_pseudonym = "p_0123456789abcdef0123456789abcd",
         .model = "parkinsons_predictor",
         .version = "1.0.0",
         .arm = "stable",
         .prediction_id = "pred-1",
         .rows = 1},
        {.user = odd,
         .role = odd,
         .source_ip = odd,
         .request_id = odd,
         .model = odd,
         .version = odd,
         .arm = odd,
         .prediction_id = odd,
         .rows = -9000000000LL},
        {.user = "bad \xff utf8", .model = "m", .version = "v\xc3", .rows = 0}, /* invalid UTF-8: left out */
        {.model = "m", .version = "2"},                                         /* the least */
    };
    for (size_t i = 0; i < ARRAY_SIZE(infs); i++) {
        const audit_inference_t *inf = &infs[i];
        assert_int_equal(audit_inference_validate(inf), 0);
        audit_prepared_t *p = NULL;
        void *mem = audit_inference_prepare_in(inf, 40, &p);
        assert_non_null(mem);
        assert_ptr_equal((char *)p, (char *)mem + 48); /* head rounded up to 16 */
        char h1[AUDIT_HASH_HEX], h2[AUDIT_HASH_HEX];
        size_t len;
        char *line = audit_prepared_seal(p, 5, 1764230400123, AUDIT_GENESIS_HASH, key, h1, &len);
        assert_non_null(line);
        assert_int_equal(strlen(line), len);
        json_t *parsed = audit_record_parse(line, len - 1);
        assert_non_null(parsed);
        assert_true(audit_record_hash_ok(parsed, key));

        json_t *detail = json_object();
        const char *dk[] = {"arm", "model", "prediction_id", "version"};
        const char *dv[] = {inf->arm, inf->model, inf->prediction_id, inf->version};
        for (size_t k = 0; k < ARRAY_SIZE(dk); k++)
            if (dv[k])
                json_object_set_new(detail, dk[k], json_string(dv[k]));
        json_object_set_new(detail, "rows", json_integer(inf->rows));
        char entity[4096];
        snprintf(entity, sizeof(entity), "%s/%s", inf->model, inf->version);
        audit_event_t ev;
        audit_inference_event(inf, &ev);
        ev.entity_id = entity;
        ev.detail = detail;
        json_t *built = audit_record_build(&ev, 5, 1764230400123, AUDIT_GENESIS_HASH);
        assert_int_equal(audit_record_seal(built, key, h2), 0);
        assert_string_equal(h1, h2);
        assert_true(json_equal(parsed, built));
        /* and the generic path gives the same bytes */
        audit_prepared_t *q = audit_record_prepare(&ev);
        assert_non_null(q);
        char h3[AUDIT_HASH_HEX];
        size_t len2;
        char *line2 = audit_prepared_seal(q, 5, 1764230400123, AUDIT_GENESIS_HASH, key, h3, &len2);
        assert_int_equal(len2, len);
        assert_memory_equal(line2, line, len);
        if (i == 2) {
            assert_null(json_object_get(parsed, "user"));
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(parsed, "detail"), "model")), "m");
            assert_null(json_object_get(json_object_get(parsed, "detail"), "version"));
        }
        free(line2);
        audit_prepared_free(q);
        json_decref(built);
        json_decref(detail);
        json_decref(parsed);
        free(line);
        free(mem);
    }
    audit_inference_t bad = {.model = "m", .version = "1", .patient_pseudonym = "MRN-0042"};
    assert_int_equal(audit_inference_validate(&bad), -EINVAL); /* a raw identifier is refused */
    bad.patient_pseudonym = NULL;
    bad.version = NULL;
    assert_int_equal(audit_inference_validate(&bad), -EINVAL);
}

static void test_event_validation(void **state)
{
    (void)state;
    char ps[PSEUDONYM_LEN];
    pseudonym_init("k");
    pseudonym_of("patient-123", 11, ps);
    audit_event_t ev = {.type = "DATA_ACCESS", .patient_pseudonym = ps};
    assert_int_equal(audit_event_validate(&ev), 0);
    ev.patient_pseudonym = "patient-123"; /* a raw identifier is refused */
    assert_int_equal(audit_event_validate(&ev), -EINVAL);
    ev.patient_pseudonym = NULL;
    ev.type = "bad type";
    assert_int_equal(audit_event_validate(&ev), -EINVAL);
    ev.type = NULL;
    assert_int_equal(audit_event_validate(&ev), -EINVAL);
    ev.type = "DEPLOYMENT_PROMOTED";
    json_t *arr = json_array();
    ev.detail = arr;
    assert_int_equal(audit_event_validate(&ev), -EINVAL);
    json_decref(arr);
}

static int64_t d(const char *s)
{
    int64_t v = 0;
    assert_int_equal(audit_date_parse(s, &v), 0);
    return v;
}

static void test_calendar(void **state)
{
    (void)state;
    assert_int_equal(d("1970-01-01"), 0);
    assert_int_equal(d("2000-03-01") - d("2000-02-28"), 2); /* 2000 is a leap year (divisible by 400) */
    assert_int_equal(d("2100-03-01") - d("2100-02-28"), 1); /* 2100 is not (divisible by 100) */
    assert_int_equal(d("2024-03-01") - d("2024-02-28"), 2);
    assert_int_equal(d("2025-03-01") - d("2025-02-28"), 1);
    int64_t x;
    assert_int_equal(audit_date_parse("2023-02-29", &x), -EINVAL);
    assert_int_equal(audit_date_parse("2100-02-29", &x), -EINVAL);
    assert_int_equal(audit_date_parse("2024-02-29", &x), 0);
    assert_int_equal(audit_date_parse("2024-04-31", &x), -EINVAL);
    assert_int_equal(audit_date_parse("2024-13-01", &x), -EINVAL);
    assert_int_equal(audit_date_parse("2024-1-01", &x), -EINVAL);
    /* 7 years of retention = 2555 days; across 2020 and 2024 (two leap days) that is 2 days
     * short of 7 calendar years */
    assert_int_equal(d("2026-01-01") - d("2019-01-01"), 2557);
    char buf[11];
    audit_date_format(d("2019-01-01") + 2555, buf);
    assert_string_equal(buf, "2025-12-30");
    for (int64_t day = d("1999-12-25"); day < d("2101-01-05"); day += 1) {
        audit_date_format(day, buf);
        assert_int_equal(d(buf), day);
    }
}

static void touch(const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    assert_int_equal(util_write_file_atomic(p, "x\n", 2, 0640), 0);
}

static bool exists(const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    return util_path_exists(p);
}

static void test_prune_boundary(void **state)
{
    (void)state;
    char log[PATH_MAX];
    snprintf(log, sizeof(log), "%s/audit.log", tmpdir);
    touch("audit.log");
    touch("audit.log.2017-02-28");
    touch("audit.log.2017-03-01");
    touch("audit.log.2017-03-02");
    touch("audit.log.2017-03-02.1");
    touch("audit.log.checkpoints");
    touch("audit.log.2017-03-01.tmp"); /* not an archive name */
    /* today 2024-03-01; retention 2557 days reaches back to 2017-03-04 - 2557... compute:
     * kept while today - D <= retention */
    int64_t today = d("2024-03-01");
    int retention = (int)(today - d("2017-03-01")); /* 2017-03-01 is exactly at the limit: kept */
    json_t *removed = json_array();
    char err[256];
    int n = audit_prune(log, retention, today, NULL, removed, err, sizeof(err));
    assert_int_equal(n, 1);
    assert_int_equal(json_array_size(removed), 1);
    assert_string_equal(json_string_value(json_array_get(removed, 0)), "audit.log.2017-02-28");
    assert_false(exists("audit.log.2017-02-28"));
    assert_true(exists("audit.log.2017-03-01"));
    assert_true(exists("audit.log.2017-03-02"));
    assert_true(exists("audit.log.2017-03-02.1"));
    assert_true(exists("audit.log"));
    assert_true(exists("audit.log.checkpoints"));
    assert_true(exists("audit.log.2017-03-01.tmp"));
    /* review46 #1: with a plan, an expired archive it does not name stays */
    json_t *plan = json_pack("[s]", "audit.log.2017-03-01");
    n = audit_prune(log, retention, today + 2, plan, removed, err, sizeof(err));
    json_decref(plan);
    assert_int_equal(n, 1);
    assert_false(exists("audit.log.2017-03-01"));
    assert_true(exists("audit.log.2017-03-02"));
    /* without one, the next day's goes */
    n = audit_prune(log, retention, today + 2, NULL, removed, err, sizeof(err));
    assert_int_equal(n, 2);
    assert_false(exists("audit.log.2017-03-02"));
    assert_false(exists("audit.log.2017-03-02.1"));
    assert_int_equal(audit_prune(log, 0, today, NULL, NULL, err, sizeof(err)), -EINVAL);

    /* files list: archives in chain order (the suffix as a number: review40 #3), then the
     * active file */
    touch("audit.log.2017-03-02");
    touch("audit.log.2017-03-02.1");
    touch("audit.log.2017-03-02.10");
    touch("audit.log.2017-03-02.2");
    touch("audit.log.2017-03-02.1234567890"); /* not an archive name: suffix too long */
    touch("audit.log.2017-03-02.01");         /* nor with a leading zero (review46) */
    touch("audit.log.2017-03-02.0");
    audit_file_t *files;
    size_t nf;
    assert_int_equal(audit_files_list(log, &files, &nf), 0);
    assert_int_equal(nf, 5);
    const char *want[] = {"/audit.log.2017-03-02", "/audit.log.2017-03-02.1", "/audit.log.2017-03-02.2",
                          "/audit.log.2017-03-02.10"};
    for (size_t i = 0; i < 4; i++) {
        size_t pl = strlen(files[i].path), wl = strlen(want[i]);
        assert_true(pl > wl);
        assert_string_equal(files[i].path + pl - wl, want[i]);
    }
    assert_int_equal(files[3].part, 10);
    assert_int_equal(files[4].date_days, -1);
    audit_files_free(files, nf);
    json_decref(removed);
}

static void test_syslog_format(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(audit_siem_escape("a\"b\\c]d", out, sizeof(out)), 10);
    assert_string_equal(out, "a\\\"b\\\\c\\]d");
    assert_int_equal(audit_siem_escape("abcdef", out, 4), 6); /* truncated, NUL-terminated */
    assert_string_equal(out, "abc");

    const unsigned char *key = test_key();
    json_t *detail = json_pack("{s:s,s:i,s:{}}", "model", "m]1", "n", 7, "nested");
    audit_event_t ev = {.type = "AUTH_FAILURE", .user = "eve \"x\"", .outcome = "failure", .detail = detail};
    json_t *rec = audit_record_build(&ev, 42, 1764230400000, AUDIT_GENESIS_HASH);
    char h[AUDIT_HASH_HEX];
    audit_record_seal(rec, key, h);
    char *msg;
    size_t len;
    assert_int_equal(audit_siem_format(rec, 13, "host1", &msg, &len), 0);
    assert_int_equal(strlen(msg), len);
    /* facility 13 (log audit) * 8 + severity 4 (warning: outcome failure) = 108 */
    const char *want_head =
        "<108>1 2025-11-27T08:00:00.000Z host1 aimedres - AUTH_FAILURE [audit@32473 seq=\"42\" "
        "type=\"AUTH_FAILURE\" user=\"eve \\\"x\\\"\" outcome=\"failure\" hash=\"";
    assert_memory_equal(msg, want_head, strlen(want_head));
    assert_non_null(strstr(msg, " d.model=\"m\\]1\" d.n=\"7\"] {"));
    assert_null(strstr(msg, "d.nested"));
    /* MSG is the record's JSON line, verifiable by the SIEM */
    const char *js = strstr(msg, "] {") + 2;
    json_t *back = audit_record_parse(js, strlen(js));
    assert_non_null(back);
    assert_true(audit_record_hash_ok(back, key));
    free(msg);

    json_object_set_new(rec, "outcome", json_string("success"));
    assert_int_equal(audit_siem_format(rec, 16, NULL, &msg, &len), 0);
    assert_memory_equal(msg, "<134>1 2025-11-27T08:00:00.000Z - aimedres - AUTH_FAILURE [", 59);
    assert_int_equal(audit_siem_format(rec, 24, NULL, &msg, &len) == -EINVAL, 1);

    size_t flen;
    char *framed = audit_siem_frame(msg, len, &flen);
    char pre[32];
    int p = snprintf(pre, sizeof(pre), "%zu ", len);
    assert_int_equal(flen, (size_t)p + len);
    assert_memory_equal(framed, pre, (size_t)p);
    assert_memory_equal(framed + p, msg, len);
    free(framed);
    framed = audit_siem_frame("hello", 5, &flen);
    assert_string_equal(framed, "5 hello");
    free(framed);
    free(msg);
    json_decref(back);
    json_decref(rec);
    json_decref(detail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_chain), cmocka_unit_test(test_prepared_matches_canonical),
        cmocka_unit_test(test_event_validation),     cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_prune_boundary),       cmocka_unit_test(test_syslog_format),
        cmocka_unit_test(test_hmac_known_answer),    cmocka_unit_test(test_inference_matches_event),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
