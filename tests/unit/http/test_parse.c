/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.x request parser: heads split in place, incomplete input, the framing refusals
 * that stop request smuggling, limits (414 vs 431), obs-fold, and the chunked decoder fed
 * byte by byte. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/http.h>

#include "http/parse.h"

#define MAX_HEAD 1024
#define MAX_BODY 100

typedef struct head_case {
    const char *req;
    int rc;
} head_case_t;

static int parse(const char *text, http_head_t *h, char *buf, size_t cap)
{
    size_t n = strlen(text);
    assert_true(n < cap);
    memcpy(buf, text, n + 1);
    return http_parse_head(buf, n, MAX_HEAD, MAX_BODY, h);
}

static void check_cases(const head_case_t *cases, size_t n)
{
    char buf[256];
    http_head_t h;
    for (size_t i = 0; i < n; i++) {
        int rc = parse(cases[i].req, &h, buf, sizeof(buf));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): got %d, want %d", i, cases[i].req, rc, cases[i].rc);
    }
}

static void test_simple_get(void **state)
{
    (void)state;
    char buf[512];
    http_head_t h;
    const char *req = "GET /api/v1/models/x?verbose=1 HTTP/1.1\r\nHost: a\r\nX-Request-ID:  abc \r\n\r\nNEXT";
    int rc = parse(req, &h, buf, sizeof(buf));
    assert_int_equal(rc, (int)(strlen(req) - 4));
    assert_int_equal(h.method, EVHTTP_REQ_GET);
    assert_string_equal(h.method_name, "GET");
    assert_string_equal(h.target, "/api/v1/models/x?verbose=1");
    assert_int_equal(h.minor, 1);
    assert_true(h.keep_alive);
    assert_false(h.has_length);
    assert_false(h.chunked);
    assert_int_equal(h.n_fields, 2);
    assert_string_equal(http_head_field(&h, "host"), "a");
    assert_int_equal(h.n_host, 1);
    assert_string_equal(http_head_field(&h, "x-request-id"), "abc"); /* whitespace trimmed */
    assert_null(http_head_field(&h, "Origin"));
    assert_memory_equal(buf + rc, "NEXT", 4); /* a pipelined request stays untouched */
}

static void test_incomplete_then_complete(void **state)
{
    (void)state;
    const char *req = "POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n";
    size_t n = strlen(req);
    for (size_t cut = 0; cut < n; cut++) {
        char buf[256];
        http_head_t h;
        memcpy(buf, req, cut);
        assert_int_equal(http_parse_head(buf, cut, MAX_HEAD, MAX_BODY, &h), 0);
    }
    char buf[256];
    http_head_t h;
    assert_int_equal(parse(req, &h, buf, sizeof(buf)), (int)n);
    assert_true(h.has_length);
    assert_int_equal(h.content_length, 2);
}

static void test_bare_lf_and_leading_empty_lines(void **state)
{
    (void)state;
    char buf[256];
    http_head_t h;
    assert_true(parse("\r\n\r\nGET / HTTP/1.0\nConnection: keep-alive\n\n", &h, buf, sizeof(buf)) > 0);
    assert_int_equal(h.minor, 0);
    assert_true(h.keep_alive);
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", &h, buf, sizeof(buf)) > 0);
    assert_false(h.keep_alive); /* HTTP/1.0 closes unless asked */
    assert_true(parse("GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n", &h, buf, sizeof(buf)) > 0);
    assert_false(h.keep_alive);
}

static void test_obs_fold_becomes_spaces(void **state)
{
    (void)state;
    char buf[256];
    http_head_t h;
    assert_true(parse("GET / HTTP/1.1\r\nX-A: one\r\n two\r\nX-B: b\r\n\r\n", &h, buf, sizeof(buf)) > 0);
    assert_int_equal(h.n_fields, 2);
    assert_string_equal(http_head_field(&h, "X-A"), "one   two");
    assert_string_equal(http_head_field(&h, "X-B"), "b");
    /* a fold right after the request line has nothing to continue */
    assert_int_equal(parse("GET / HTTP/1.1\r\n X: y\r\n\r\n", &h, buf, sizeof(buf)), -400);
}

static void test_request_line_refusals(void **state)
{
    (void)state;
    static const head_case_t cases[] = {
        {"FOO / HTTP/1.1\r\n\r\n", -501},      {"get / HTTP/1.1\r\n\r\n", -501},
        {"TRACE / HTTP/1.1\r\n\r\n", -501},    {"CONNECT a:1 HTTP/1.1\r\n\r\n", -501},
        {"G\001T / HTTP/1.1\r\n\r\n", -400},   {"GET /\r\n\r\n", -400},
        {"GET / HTTP/2.0\r\n\r\n", -400},      {"GET / http/1.1\r\n\r\n", -400},
        {"GET / HTTP/1.1 x\r\n\r\n", -400},    {"GET  / HTTP/1.1\r\n\r\n", -400},
        {"GET /a\177 HTTP/1.1\r\n\r\n", -400}, {"GET HTTP/1.1\r\n\r\n", -400},
    };
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_field_refusals(void **state)
{
    (void)state;
    char buf[256];
    http_head_t h;
    assert_int_equal(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &h, buf, sizeof(buf)), -400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &h, buf, sizeof(buf)), -400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nName : x\r\n\r\n", &h, buf, sizeof(buf)), -400);
    assert_int_equal(parse("GET / HTTP/1.1\r\n: x\r\n\r\n", &h, buf, sizeof(buf)), -400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", &h, buf, sizeof(buf)), -400); /* bare CR */
}

/* review58 #6: a NUL in a field was kept (value_len longer than strlen), so a credential read as a
 * C string was cut at it and accepted; RFC 9110 section 5.5: refuse or replace. Refused. */
static void test_nul_in_a_field_is_refused(void **state)
{
    (void)state;
    char buf[] = "GET / HTTP/1.1\r\nX-API-Key: ab\0cd\r\n\r\n";
    http_head_t h;
    assert_int_equal(http_parse_head(buf, sizeof(buf) - 1, MAX_HEAD, MAX_BODY, &h), -400);
    assert_string_equal(h.why, "NUL in a header field (RFC 9110 section 5.5)");
    char cl[] = "POST / HTTP/1.1\r\nContent-Length: 2\0x\r\n\r\n";
    assert_int_equal(http_parse_head(cl, sizeof(cl) - 1, MAX_HEAD, MAX_BODY, &h), -400);
    char name[] = "GET / HTTP/1.1\r\nX\0Y: 1\r\n\r\n";
    assert_int_equal(http_parse_head(name, sizeof(name) - 1, MAX_HEAD, MAX_BODY, &h), -400);
}

static void test_framing_refusals(void **state)
{
    (void)state;
    char buf[256];
    http_head_t h;
    static const head_case_t cases[] = {
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length: 1.5\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", -413},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400},
    };
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
    assert_true(
        parse("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", &h, buf, sizeof(buf)) > 0);
    assert_true(parse("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n", &h,
                      buf, sizeof(buf)) > 0);
    assert_true(h.chunked);
    assert_true(h.expect_continue);
    /* over max_body (100 here): the head parses, so that the 413 keeps its request id */
    assert_true(parse("POST / HTTP/1.1\r\nContent-Length: 101\r\nX-Request-ID: r1\r\n\r\n", &h, buf,
                      sizeof(buf)) > 0);
    assert_true(h.body_too_large);
    assert_true(parse("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", &h, buf, sizeof(buf)) > 0);
    assert_false(h.body_too_large);
}

static void test_limits_414_431(void **state)
{
    (void)state;
    static char buf[4096];
    http_head_t h;
    /* a request line alone over the limit: 414, even before its end arrives */
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', 1100);
    assert_int_equal(http_parse_head(buf, 1105, MAX_HEAD, MAX_BODY, &h), -414);
    /* a short request line, then fields over the limit: 431 */
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
    memset(buf + n, 'v', 1100);
    assert_int_equal(http_parse_head(buf, (size_t)n + 1100, MAX_HEAD, MAX_BODY, &h), -431);
    /* complete, but longer than the limit */
    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
    memset(buf + n, 'v', 1100);
    memcpy(buf + n + 1100, "\r\n\r\n", 4);
    assert_int_equal(http_parse_head(buf, (size_t)n + 1104, MAX_HEAD, MAX_BODY, &h), -431);
    /* more fields than HTTP_MAX_FIELDS */
    size_t len = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= HTTP_MAX_FIELDS; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "A%d: 1\r\n", i);
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "\r\n");
    assert_int_equal(http_parse_head(buf, len, sizeof(buf), MAX_BODY, &h), -431);
}

/* Feeds raw chunked bytes one at a time as a connection would, closing the gap the decoder
 * leaves as the server does; returns the decoder's final answer and the body. */
static int decode_bytewise(const char *raw, size_t n, char *body, size_t *body_len, size_t *left)
{
    char buf[512];
    size_t len = 0, off = 0;
    *body_len = 0;
    http_chunk_state_t st = {0};
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        buf[len++] = raw[i];
        rc = http_decode_chunked(buf, len, 0, &off, body_len, MAX_BODY, &st);
        if (rc != 0)
            break;
        memmove(buf + *body_len, buf + off, len - off);
        len -= off - *body_len;
        off = *body_len;
    }
    memcpy(body, buf, *body_len);
    *left = len - off;
    return rc;
}

static void test_chunked_decoding(void **state)
{
    (void)state;
    char body[512];
    size_t blen, left;
    const char *ok = "3\r\n{\"a\r\n2;ext=1\r\n\":\r\nA\r\n1234567890\r\n0\r\nTrailer: x\r\n\r\n";
    assert_int_equal(decode_bytewise(ok, strlen(ok), body, &blen, &left), 1);
    assert_int_equal(blen, 15);
    assert_memory_equal(body, "{\"a\":1234567890", 15);
    assert_int_equal(left, 0);
    const char *lf = "2\n{}\n0\n\n";
    assert_int_equal(decode_bytewise(lf, strlen(lf), body, &blen, &left), 1);
    assert_int_equal(blen, 2);

    static const struct {
        const char *raw;
        int rc;
    } bad[] = {
        {"zz\r\n{}\r\n0\r\n\r\n", -400},
        {"-1\r\n{}\r\n0\r\n\r\n", -400},
        {"2\r\n{}0\r\n\r\n", -400},
        {"0x2\r\n{}\r\n0\r\n\r\n", -400},
        {"2 3\r\n{}\r\n0\r\n\r\n", -400},
        {"\r\n", -400},
        {"65\r\n", -413},
        {"fffffffffffffffff\r\n", -413},
        {"40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n40\r\n", -413},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = decode_bytewise(bad[i].raw, strlen(bad[i].raw), body, &blen, &left);
        if (rc != bad[i].rc)
            fail_msg("case %zu: got %d, want %d", i, rc, bad[i].rc);
    }
}

/* review52 #6: every 400 says which rule was broken (one generic message covered them all). */
static void test_400_says_why(void **state)
{
    (void)state;
    static const struct {
        const char *req, *why;
    } cases[] = {
        {"GET\r\n\r\n", "malformed request line"},
        {"G\001T / HTTP/1.1\r\n\r\n", "malformed request line"},
        {"GET /health\r\n\r\n", "malformed request line"},
        {"GET / http/1.1\r\n\r\n", "malformed request line"},
        {"GET / HTTP/1.1 x\r\n\r\n", "malformed request line"},
        {"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"},
        {"GET / HTTP/1.2\r\n\r\n", "unsupported HTTP version"},
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "bare CR in the request head"},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "malformed header field"},
        {"GET / HTTP/1.1\r\nName : x\r\n\r\n", "malformed header field"},
        {"GET / HTTP/1.1\r\n X: y\r\n\r\n", "malformed header field"},
        {"POST / HTTP/1.1\r\nContent-Length: 1.5\r\n\r\n", "malformed Content-Length"},
        {"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", "two different Content-Length values"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "Transfer-Encoding: chunked given more"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         "Transfer-Encoding: chunked given more"},
        {"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
         "Content-Length and Transfer-Encoding both present"},
    };
    char buf[256];
    http_head_t h;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(cases[i].req, &h, buf, sizeof(buf));
        if (rc != -400 || !h.why || strncmp(h.why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("case %zu: got %d '%s', want -400 '%s...'", i, rc, h.why ? h.why : "(null)", cases[i].why);
    }
    /* a good head leaves it unset (parse clears it) */
    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &h, buf, sizeof(buf)) > 0);
    assert_null(h.why);

    static const struct {
        const char *raw, *why;
    } chunks[] = {
        {"zz\r\n{}\r\n0\r\n\r\n", "malformed chunk size"},
        {"0x2\r\n{}\r\n0\r\n\r\n", "malformed chunk size"},
        {"2 3\r\n{}\r\n0\r\n\r\n", "malformed chunk size"},
        {"2\r\n{}0\r\n\r\n", "chunk data not followed by CRLF"},
    };
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        char tmp[64];
        size_t n = strlen(chunks[i].raw), off = 0, blen = 0;
        memcpy(tmp, chunks[i].raw, n);
        http_chunk_state_t st = {0};
        int rc = http_decode_chunked(tmp, n, 0, &off, &blen, MAX_BODY, &st);
        if (rc != -400 || !st.why || strncmp(st.why, chunks[i].why, strlen(chunks[i].why)) != 0)
            fail_msg("chunk case %zu: got %d '%s', want -400 '%s...'", i, rc, st.why ? st.why : "(null)",
                     chunks[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_incomplete_then_complete),
        cmocka_unit_test(test_bare_lf_and_leading_empty_lines),
        cmocka_unit_test(test_obs_fold_becomes_spaces),
        cmocka_unit_test(test_request_line_refusals),
        cmocka_unit_test(test_field_refusals),
        cmocka_unit_test(test_nul_in_a_field_is_refused),
        cmocka_unit_test(test_framing_refusals),
        cmocka_unit_test(test_limits_414_431),
        cmocka_unit_test(test_chunked_decoding),
        cmocka_unit_test(test_400_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
