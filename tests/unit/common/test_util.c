/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/util and common/log: UUIDv7 layout and ordering, SHA-256 vectors,
 * crash-safe writes, safe names, the strict parsers, and the JSON log line format. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/lockfile.h"
#include "common/log.h"
#include "common/util.h"

static char tmpdir[4096];

static int setup_tmp(void **state)
{
    (void)state;
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (base && *base) {
        if (util_mkdir_p(base, 0700) < 0)
            return -1;
        snprintf(tmpdir, sizeof(tmpdir), "%s/util.XXXXXX", base);
    } else {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/aimedres-util.XXXXXX");
    }
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    return util_rmtree(tmpdir);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void test_uuid7_format(void **state)
{
    (void)state;
    char id[UUID_STR_LEN];
    int64_t before = util_now_ms();
    util_uuid7(id);
    int64_t after = util_now_ms();
    assert_int_equal(strlen(id), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else
            assert_true(is_hex(id[i]));
    }
    assert_int_equal(id[14], '7');           /* version */
    assert_non_null(strchr("89ab", id[19])); /* variant 10xx */
    char ts_hex[13];
    memcpy(ts_hex, id, 8);
    memcpy(ts_hex + 8, id + 9, 4);
    ts_hex[12] = '\0';
    int64_t ts = (int64_t)strtoll(ts_hex, NULL, 16);
    assert_true(ts >= before && ts <= after);
}

static void test_uuid7_order_and_unique(void **state)
{
    (void)state;
    enum { N = 2000 };
    static char ids[N][UUID_STR_LEN];
    for (int i = 0; i < N; i++) {
        util_uuid7(ids[i]);
        if (i > 0) {
            /* The 48-bit ms prefix never goes backwards. */
            assert_true(memcmp(ids[i - 1], ids[i], 13) <= 0);
        }
    }
    qsort(ids, N, UUID_STR_LEN, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
}

static void test_random(void **state)
{
    (void)state;
    unsigned char a[32] = {0}, b[32] = {0};
    assert_int_equal(util_random(a, sizeof(a)), 0);
    assert_int_equal(util_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[SHA256_HEX_LEN];
    util_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    util_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* File hashing streams in blocks: use a file larger than one block. */
    size_t n = 200 * 1024;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 31 + 7);
    char path[4200], expect[SHA256_HEX_LEN];
    snprintf(path, sizeof(path), "%s/blob", tmpdir);
    assert_int_equal(util_write_file_atomic(path, data, n, 0600), 0);
    util_sha256_hex(data, n, expect);
    assert_int_equal(util_sha256_file(path, hex), 0);
    assert_string_equal(hex, expect);
    free(data);

    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    assert_int_equal(util_sha256_file(path, hex), -ENOENT);
}

static void test_atomic_write_and_read(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/sub/dir/file.json", tmpdir);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/sub/dir", tmpdir);
    assert_int_equal(util_mkdir_p(dir, 0700), 0);
    assert_int_equal(util_mkdir_p(dir, 0700), 0); /* idempotent */

    assert_int_equal(util_write_file_atomic(path, "first", 5, 0640), 0);
    assert_int_equal(util_write_file_atomic(path, "second!", 7, 0640), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 1024, &buf, &len), 0);
    assert_int_equal(len, 7);
    assert_string_equal(buf, "second!");
    free(buf);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    /* No temporary files are left behind. */
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -c tmp", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int count = -1;
    assert_int_equal(fscanf(p, "%d", &count), 1);
    pclose(p);
    assert_int_equal(count, 0);

    /* Cap enforced. */
    buf = NULL;
    assert_int_equal(util_read_file(path, 6, &buf, &len), -EFBIG);
    assert_null(buf);
    assert_int_equal(util_read_file(path, 7, &buf, &len), 0);
    free(buf);

    /* Writing into a missing directory fails cleanly. */
    snprintf(path, sizeof(path), "%s/nope/file", tmpdir);
    assert_int_equal(util_write_file_atomic(path, "x", 1, 0600), -ENOENT);

    /* Copy. */
    char src[4200], dst[4200];
    snprintf(src, sizeof(src), "%s/sub/dir/file.json", tmpdir);
    snprintf(dst, sizeof(dst), "%s/copy.json", tmpdir);
    assert_int_equal(util_copy_file_atomic(src, dst, 0600), 0);
    assert_int_equal(util_read_file(dst, 1024, &buf, &len), 0);
    assert_string_equal(buf, "second!");
    free(buf);

    /* rmtree removes nested content. */
    snprintf(dir, sizeof(dir), "%s/sub", tmpdir);
    assert_true(util_path_exists(dir));
    assert_int_equal(util_rmtree(dir), 0);
    assert_false(util_path_exists(dir));
}

/* util_copy_file_atomic streams in blocks: a file of several blocks plus a tail comes out
 * byte for byte, and a missing source leaves no temporary file behind. */
static void test_copy_multiblock(void **state)
{
    (void)state;
    size_t n = 3 * 64 * 1024 + 123;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 17 + 3);
    char src[4200], dst[4200];
    snprintf(src, sizeof(src), "%s/big.src", tmpdir);
    snprintf(dst, sizeof(dst), "%s/big.dst", tmpdir);
    assert_int_equal(util_write_file_atomic(src, data, n, 0600), 0);
    assert_int_equal(util_copy_file_atomic(src, dst, 0640), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(dst, n, &buf, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(buf, data, n);
    free(buf);
    struct stat st;
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    free(data);

    snprintf(src, sizeof(src), "%s/absent.src", tmpdir);
    snprintf(dst, sizeof(dst), "%s/absent.dst", tmpdir);
    assert_int_equal(util_copy_file_atomic(src, dst, 0600), -ENOENT);
    assert_false(util_path_exists(dst));
}

static void test_write_all(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(util_write_all(p[1], "hello, ", 7), 0);
    assert_int_equal(util_write_all(p[1], "world", 5), 0);
    assert_int_equal(util_write_all(p[1], "", 0), 0);
    close(p[1]);
    char got[32] = "";
    assert_int_equal(read(p[0], got, sizeof(got) - 1), 12);
    assert_string_equal(got, "hello, world");
    close(p[0]);
    assert_int_equal(util_write_all(-1, "x", 1), -EBADF);
}

static void test_errf(void **state)
{
    (void)state;
    char err[8] = "unset";
    util_errf(err, sizeof(err), "%s %d", "code", 42);
    assert_string_equal(err, "code 42");
    util_errf(err, sizeof(err), "%s", "much too long");
    assert_string_equal(err, "much to"); /* truncated, NUL-terminated */
    util_errf(err, 0, "%s", "ignored");
    assert_string_equal(err, "much to");
    util_errf(NULL, 16, "%s", "ignored"); /* no buffer: nothing happens */
}

static void test_parse_scaled(void **state)
{
    (void)state;
    static const util_unit_t units[] = {{"", 1}, {"K", 1024}, {"KiB", 1024}, {"x", 3}};
    static const struct {
        const char *in;
        bool ignore_case;
        int rc;
        int64_t value; /* when rc == 0 */
    } cases[] = {
        {"12", false, 0, 12},
        {"2K", false, 0, 2048},
        {"3KiB", false, 0, 3072},
        {"2k", false, -EINVAL, 0},
        {"3kib", false, -EINVAL, 0},
        {"2k", true, 0, 2048},
        {"3kib", true, 0, 3072},
        {"7X", true, 0, 21},
        {"K", true, -EINVAL, 0},
        {"-1", true, -EINVAL, 0},
        {" 1", true, -EINVAL, 0},
        {"1M", true, -EINVAL, 0},
        {NULL, true, -EINVAL, 0},
        {"9223372036854775807", true, 0, INT64_MAX},
        {"9007199254740991K", true, 0, INT64_C(9007199254740991) * 1024},
        {"9007199254740992K", true, -ERANGE, 0},
        {"99999999999999999999", true, -ERANGE, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int64_t v = -5;
        int rc = util_parse_scaled(cases[i].in, units, ARRAY_SIZE(units), cases[i].ignore_case, &v);
        if (rc != cases[i].rc || v != (rc == 0 ? cases[i].value : -5))
            fail_msg("case %zu (\"%s\"): rc %d value %lld", i, cases[i].in ? cases[i].in : "NULL", rc,
                     (long long)v);
    }
}

static void test_safe_names(void **state)
{
    (void)state;
    assert_true(util_is_safe_name("alzheimer_classifier"));
    assert_true(util_is_safe_name("v1.2.3-rc_1"));
    assert_true(util_is_safe_name("a"));
    assert_false(util_is_safe_name(""));
    assert_false(util_is_safe_name(NULL));
    assert_false(util_is_safe_name("../x"));
    assert_false(util_is_safe_name(".."));
    assert_false(util_is_safe_name(".hidden"));
    assert_false(util_is_safe_name("a/b"));
    assert_false(util_is_safe_name("a b"));
    assert_false(util_is_safe_name("caf\xc3\xa9"));
    char name[130];
    memset(name, 'a', 128);
    name[128] = '\0';
    assert_true(util_is_safe_name(name));
    name[128] = 'a';
    name[129] = '\0';
    assert_false(util_is_safe_name(name));
}

static void test_parse_duration(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_int_equal(util_parse_duration_ms("30s", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(util_parse_duration_ms("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(util_parse_duration_ms("2h", &ms), 0);
    assert_int_equal(ms, 7200000);
    assert_int_equal(util_parse_duration_ms("1d", &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(util_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(util_parse_duration_ms("45", &ms), 0);
    assert_int_equal(ms, 45000);
    assert_int_equal(util_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    ms = 7;
    assert_int_equal(util_parse_duration_ms("", &ms), -EINVAL);
    assert_int_equal(util_parse_duration_ms("-5s", &ms), -EINVAL);
    assert_int_equal(util_parse_duration_ms("5 s", &ms), -EINVAL);
    assert_int_equal(util_parse_duration_ms("5x", &ms), -EINVAL);
    assert_int_equal(util_parse_duration_ms("s", &ms), -EINVAL);
    assert_int_equal(util_parse_duration_ms("1.5s", &ms), -EINVAL);
    assert_int_equal(util_parse_duration_ms("99999999999999999999d", &ms), -ERANGE);
    assert_int_equal(ms, 7); /* untouched on failure */
}

static void test_parse_numbers(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(util_parse_int64("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(util_parse_int64("-3", -5, 5, &v), 0);
    assert_int_equal(v, -3);
    assert_int_equal(util_parse_int64("101", 0, 100, &v), -ERANGE);
    assert_int_equal(util_parse_int64("4x", 0, 100, &v), -EINVAL);
    assert_int_equal(util_parse_int64(" 4", 0, 100, &v), -EINVAL);
    assert_int_equal(util_parse_int64("", 0, 100, &v), -EINVAL);
    double d = 0;
    assert_int_equal(util_parse_double("0.25", &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(util_parse_double("1e3", &d), 0);
    assert_true(d == 1000.0);
    assert_int_equal(util_parse_double("nan", &d), -ERANGE);
    assert_int_equal(util_parse_double("1.0abc", &d), -EINVAL);
    bool b = false;
    const char *yes[] = {"true", "TRUE", "1", "yes", "On"};
    const char *no[] = {"false", "False", "0", "no", "OFF"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        b = false;
        assert_int_equal(util_parse_bool(yes[i], &b), 0);
        assert_true(b);
        assert_int_equal(util_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    assert_int_equal(util_parse_bool("maybe", &b), -EINVAL);
    assert_int_equal(util_parse_bool("", &b), -EINVAL);
}

static void test_iso8601(void **state)
{
    (void)state;
    char buf[ISO8601_LEN];
    util_iso8601(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    util_iso8601(1795764402123LL, buf);
    assert_string_equal(buf, "2026-11-27T07:26:42.123Z");
    /* the per-thread cache of the seconds part: same second, next second, back again */
    util_iso8601(1795764402999LL, buf);
    assert_string_equal(buf, "2026-11-27T07:26:42.999Z");
    util_iso8601(1795764403000LL, buf);
    assert_string_equal(buf, "2026-11-27T07:26:43.000Z");
    util_iso8601(1795764402007LL, buf);
    assert_string_equal(buf, "2026-11-27T07:26:42.007Z");
    util_iso8601(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
}

static void test_list_next(void **state)
{
    (void)state;
    const char *cur = " a, bb ,,c ", *item;
    size_t n;
    const char *want[] = {"a", "bb", "", "c"};
    for (size_t i = 0; i < 4; i++) {
        assert_true(util_list_next(&cur, &item, &n));
        assert_int_equal(n, strlen(want[i]));
        assert_memory_equal(item, want[i], n);
    }
    assert_false(util_list_next(&cur, &item, &n));
    cur = "";
    assert_true(util_list_next(&cur, &item, &n)); /* one empty item */
    assert_int_equal(n, 0);
    assert_false(util_list_next(&cur, &item, &n));
    cur = "x,";
    assert_true(util_list_next(&cur, &item, &n));
    assert_true(util_list_next(&cur, &item, &n)); /* a trailing comma: a last, empty item */
    assert_int_equal(n, 0);
    assert_false(util_list_next(&cur, &item, &n));
}

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Batched request lines (event-loop threads): nothing is written until a flush, any other
 * line flushes first so order holds, and every line comes out whole and parseable. */
static void test_log_batch(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/batch.jsonl", tmpdir);
    assert_int_equal(log_init(LOG_INFO, path), 0);
    log_thread_batch(true);
    log_request("rid-1", "GET", "/health", 200, 0.0734);
    log_request("rid-2", "POST", "/api/v1/models/{name}/predict", 422, 12.5);
    assert_int_equal(file_size(path), 0);
    log_info("other", NULL); /* flushes the two request lines first */
    size_t after_other = file_size(path);
    assert_true(after_other > 0);
    for (int i = 0; i < 400; i++) /* more than one buffer's worth: flushed as it fills */
        log_request("rid-loop", "GET", "/ready", 503, 1000.0 + i);
    assert_true(file_size(path) > after_other);
    log_thread_flush();
    log_thread_batch(false);
    log_request("rid-last", "GET", "/health", 200, 1.0); /* unbatched: written at once */
    assert_int_equal(log_init(LOG_INFO, NULL), 0);

    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 1 << 22, &buf, &len), 0);
    int lines = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        assert_non_null(o);
        const char *rid = json_string_value(json_object_get(o, "request_id"));
        if (lines == 0) {
            assert_string_equal(rid, "rid-1");
            assert_true(fabs(json_real_value(json_object_get(o, "duration_ms")) - 0.073) < 1e-9);
        } else if (lines == 1) {
            assert_string_equal(rid, "rid-2");
            assert_string_equal(json_string_value(json_object_get(o, "route")), "/api/v1/models/{name}/predict");
            assert_int_equal(json_integer_value(json_object_get(o, "status")), 422);
            assert_true(fabs(json_real_value(json_object_get(o, "duration_ms")) - 12.5) < 1e-9);
        } else if (lines == 2) {
            assert_string_equal(json_string_value(json_object_get(o, "msg")), "other");
        } else if (lines < 403) {
            assert_string_equal(rid, "rid-loop");
            assert_true(fabs(json_real_value(json_object_get(o, "duration_ms")) - (1000.0 + lines - 3)) < 1e-9);
        } else {
            assert_string_equal(rid, "rid-last");
        }
        json_decref(o);
    }
    assert_int_equal(lines, 404);
    free(buf);
}

/* A busy server's log file gets its writeback started every 4 MiB (so 30 s of dirty pages
 * never go out at once behind the store's fdatasync); a sink that is not a regular file
 * (here /dev/null, like a pipe to journald) never, and no line is lost or split. */
static void test_log_writeback(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/writeback.jsonl", tmpdir);
    assert_int_equal(log_init(LOG_INFO, path), 0);
    assert_int_equal(log_writeback_kicks(), 0);
    log_thread_batch(true);
    int n = 0;
    while (file_size(path) < (9u << 20)) {
        for (int i = 0; i < 1000; i++, n++)
            log_request("0190a1b2-0000-7000-8000-000000000001", "POST", "/api/v1/models/{name}/predict", 200,
                        1.0 + i);
        log_thread_flush();
    }
    log_thread_batch(false);
    size_t size = file_size(path);
    assert_int_equal(log_writeback_kicks(), size / (4u << 20));
    assert_int_equal(log_init(LOG_INFO, "/dev/null"), 0);
    assert_int_equal(log_writeback_kicks(), 0);
    for (int i = 0; i < 60000; i++) /* ~9 MiB to a character device */
        log_request("0190a1b2-0000-7000-8000-000000000001", "POST", "/api/v1/models/{name}/predict", 200, 1.0);
    assert_int_equal(log_writeback_kicks(), 0);
    assert_int_equal(log_init(LOG_INFO, NULL), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 1 << 26, &buf, &len), 0);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, n);
    assert_int_equal(buf[len - 1], '\n');
    free(buf);
}

static void test_log_lines(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/log.jsonl", tmpdir);
    assert_int_equal(log_init(LOG_INFO, path), 0);
    log_debug("hidden", NULL);
    log_info("request done", "{s:s, s:i}", "route", "/health", "status", 200);
    log_msg(LOG_ERROR, "quote \" and\nnewline", NULL);
    log_json(LOG_WARNING, "spoof", json_pack("{s:s, s:s}", "level", "DEBUG", "k", "v"));
    assert_int_equal(log_init(LOG_INFO, NULL), 0); /* back to stderr, closes the file */

    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 1 << 20, &buf, &len), 0);
    int lines = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        assert_non_null(o);
        assert_true(json_is_string(json_object_get(o, "ts")));
        assert_int_equal(strlen(json_string_value(json_object_get(o, "ts"))), 24);
        const char *level = json_string_value(json_object_get(o, "level"));
        const char *msg = json_string_value(json_object_get(o, "msg"));
        if (lines == 0) {
            assert_string_equal(level, "INFO");
            assert_string_equal(msg, "request done");
            assert_string_equal(json_string_value(json_object_get(o, "route")), "/health");
            assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
        } else if (lines == 1) {
            assert_string_equal(level, "ERROR");
            assert_string_equal(msg, "quote \" and\nnewline");
        } else {
            assert_string_equal(level, "WARNING");
            assert_string_equal(json_string_value(json_object_get(o, "k")), "v");
        }
        json_decref(o);
    }
    assert_int_equal(lines, 3);
    free(buf);

    log_level_t lv;
    assert_int_equal(log_level_parse("warning", &lv), 0);
    assert_int_equal(lv, LOG_WARNING);
    assert_int_equal(log_level_parse("verbose", &lv), -EINVAL);
    assert_string_equal(log_level_name(LOG_CRITICAL), "CRITICAL");
    log_set_level(LOG_ERROR);
    assert_false(log_enabled(LOG_WARNING));
    assert_true(log_enabled(LOG_CRITICAL));
    log_set_level(LOG_INFO);
}

enum { LOG_THREADS = 8, LOG_PER_THREAD = 500 };

static void *log_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LOG_PER_THREAD; i++)
        log_info("concurrent", "{s:i, s:i, s:s}", "thread", id, "i", i, "pad",
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxx");
    return NULL;
}

/* Lines from many threads never interleave: each line is one whole JSON object. */
static void test_log_threads(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/threads.jsonl", tmpdir);
    assert_int_equal(log_init(LOG_INFO, path), 0);
    pthread_t t[LOG_THREADS];
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LOG_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(log_init(LOG_INFO, NULL), 0);

    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 16 << 20, &buf, &len), 0);
    int seen[LOG_THREADS] = {0};
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        int id = (int)json_integer_value(json_object_get(o, "thread"));
        assert_true(id >= 0 && id < LOG_THREADS);
        assert_int_equal(json_integer_value(json_object_get(o, "i")), seen[id]); /* in order per thread */
        seen[id]++;
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, LOG_THREADS * LOG_PER_THREAD);
    free(buf);
}

static void test_dirname(void **state)
{
    (void)state;
    char b[64];
    util_dirname("/var/lib/aimedres/aimedres.db", b, sizeof(b));
    assert_string_equal(b, "/var/lib/aimedres");
    util_dirname("/aimedres.db", b, sizeof(b));
    assert_string_equal(b, "/");
    util_dirname("aimedres.db", b, sizeof(b));
    assert_string_equal(b, ".");
    util_dirname("data/audit.log", b, sizeof(b));
    assert_string_equal(b, "data");
    assert_string_equal(util_basename("/var/log/aimedres/audit.log"), "audit.log");
    assert_string_equal(util_basename("audit.log"), "audit.log");
    assert_string_equal(util_basename("/x"), "x");
}

/* The first n bytes of a file, as a backup reads the audit log's cut: whatever follows is not
 * hashed, and a file now shorter than n is -ENODATA; the descriptor's offset is not moved. */
static void test_sha256_fd(void **state)
{
    (void)state;
    char path[4200], want[SHA256_HEX_LEN], got[SHA256_HEX_LEN];
    snprintf(path, sizeof(path), "%s/prefix.bin", tmpdir);
    char data[200000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7);
    assert_int_equal(util_write_file_atomic(path, data, sizeof(data), 0600), 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    util_sha256_hex(data, 123457, want);
    assert_int_equal(util_sha256_fd(fd, 123457, got), 0);
    assert_string_equal(got, want);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
    util_sha256_hex(data, sizeof(data), want);
    assert_int_equal(util_sha256_fd(fd, UINT64_MAX, got), 0);
    assert_string_equal(got, want);
    assert_int_equal(util_sha256_file(path, got), 0);
    assert_string_equal(got, want);
    assert_int_equal(util_sha256_fd(fd, sizeof(data) + 1, got), -ENODATA);
    close(fd);
}

/* A held flock times out after the wait; a free one is taken at once. Two open() of one file
 * are two holders for flock, so one process can play both. */
static void test_lockfile_wait(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/wait.lock", tmpdir);
    int a = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600), b = open(path, O_RDWR | O_CLOEXEC);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(lockfile_wait(a, LOCK_EX, 0), 0);
    int64_t t0 = util_mono_ns();
    assert_int_equal(lockfile_wait(b, LOCK_EX, 50), -ETIMEDOUT);
    assert_true(util_mono_ns() - t0 >= 50 * 1000000LL);
    assert_int_equal(lockfile_wait(b, LOCK_SH, 0), -ETIMEDOUT);
    flock(a, LOCK_UN);
    assert_int_equal(lockfile_wait(b, LOCK_SH, 50), 0);
    assert_int_equal(lockfile_wait(a, LOCK_SH, 50), 0); /* shared with b */
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirname),
        cmocka_unit_test(test_sha256_fd),
        cmocka_unit_test(test_lockfile_wait),
        cmocka_unit_test(test_uuid7_format),
        cmocka_unit_test(test_uuid7_order_and_unique),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_atomic_write_and_read),
        cmocka_unit_test(test_copy_multiblock),
        cmocka_unit_test(test_write_all),
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_parse_scaled),
        cmocka_unit_test(test_safe_names),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_log_batch),
        cmocka_unit_test(test_list_next),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_log_writeback),
        cmocka_unit_test(test_log_threads),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
