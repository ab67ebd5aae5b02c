/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for audit/relp: frames as librelp writes and reads them, partial input, what is
 * not RELP, rsp codes and texts, the open's command list, transaction number wrap. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/relp.h"

static void test_frames(void **state)
{
    (void)state;
    char *f;
    size_t n;
    assert_int_equal(relp_frame(2, "syslog", "<110>1 hello", 12, &f, &n), 0);
    assert_string_equal(f, "2 syslog 12 <110>1 hello\n");
    assert_int_equal(n, strlen(f));
    free(f);
    assert_int_equal(relp_frame(7, "close", NULL, 0, &f, &n), 0);
    assert_string_equal(f, "7 close 0\n");
    free(f);
    /* data with a newline is counted, not ended */
    assert_int_equal(relp_frame(1, "open", "a=1\nb=2", 7, &f, &n), 0);
    assert_string_equal(f, "1 open 7 a=1\nb=2\n");
    free(f);
    assert_int_equal(relp_frame(1, "sys log", "x", 1, &f, &n), -EINVAL);
    assert_int_equal(relp_frame(1, "", "x", 1, &f, &n), -EINVAL);
    assert_int_equal(relp_frame(RELP_TXNR_MAX + 1, "syslog", "x", 1, &f, &n), -EINVAL);
    assert_int_equal(relp_frame(1, "syslog", "x", RELP_MAX_DATA + 1, &f, &n), -EINVAL);
}

static void test_txnr_wraps(void **state)
{
    (void)state;
    assert_int_equal(relp_next_txnr(0), 1);
    assert_int_equal(relp_next_txnr(41), 42);
    assert_int_equal(relp_next_txnr(RELP_TXNR_MAX), 1);
}

static void test_parse_answers_as_librelp_sends_them(void **state)
{
    (void)state;
    /* what rsyslog 8.2302 / librelp 1.11 answered in a session (open, two records, close) */
    const char *in = "1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
                     "commands=syslog\n2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 0\n0 serverclose 0\n";
    size_t len = strlen(in), pos = 0, used;
    relp_msg_t m;
    assert_int_equal(relp_parse(in + pos, len - pos, &m, &used), 1);
    assert_int_equal(m.txnr, 1);
    assert_string_equal(m.command, "rsp");
    assert_int_equal(m.code, 200);
    assert_true(relp_offers(&m, "syslog"));
    assert_false(relp_offers(&m, "sys"));
    assert_false(relp_offers(&m, "relp_version"));
    char text[64];
    relp_rsp_text(&m, text, sizeof(text));
    assert_string_equal(text, "OK");
    pos += used;
    for (unsigned t = 2; t <= 3; t++) {
        assert_int_equal(relp_parse(in + pos, len - pos, &m, &used), 1);
        assert_int_equal(m.txnr, t);
        assert_int_equal(m.code, 200);
        assert_false(relp_offers(&m, "syslog"));
        pos += used;
    }
    assert_int_equal(relp_parse(in + pos, len - pos, &m, &used), 1);
    assert_int_equal(m.txnr, 4);
    assert_string_equal(m.command, "rsp");
    assert_int_equal(m.code, -1); /* close's answer has no data */
    assert_int_equal(m.data_len, 0);
    pos += used;
    assert_int_equal(relp_parse(in + pos, len - pos, &m, &used), 1);
    assert_int_equal(m.txnr, 0);
    assert_string_equal(m.command, "serverclose");
    pos += used;
    assert_int_equal(pos, len);
    assert_int_equal(relp_parse(in + pos, 0, &m, &used), 0);
}

static void test_every_prefix_asks_for_more(void **state)
{
    (void)state;
    const char *in = "12 rsp 25 500 queue full, try later\n";
    relp_msg_t m;
    size_t used;
    for (size_t n = 0; n < strlen(in); n++)
        assert_int_equal(relp_parse(in, n, &m, &used), 0);
    assert_int_equal(relp_parse(in, strlen(in), &m, &used), 1);
    assert_int_equal(m.code, 500);
    char text[64], small[6];
    relp_rsp_text(&m, text, sizeof(text));
    assert_string_equal(text, "queue full, try later");
    relp_rsp_text(&m, small, sizeof(small));
    assert_string_equal(small, "queue");
}

static void test_not_relp(void **state)
{
    (void)state;
    const char *bad[] = {
        "<110>1 2026-11-29T06:00:00Z host app - - - hello\n", /* plain syslog */
        "HTTP/1.1 400 Bad Request\r\n",
        "1 rsp 3 200\r\n",             /* no LF after the data */
        "1  rsp 6 200 OK\n",           /* two spaces */
        "1 rsp -6 200 OK\n",
        "1 rsp 6\n",                   /* a length without data */
        "1 rsp 0 x\n",                 /* no data announced, some given */
        "1234567890 rsp 0\n",          /* TXNR over 9 digits */
        "1 rsp 9999999999 x",          /* DATALEN over 9 digits */
        "1 rsp 2000000 x",             /* DATALEN over RELP_MAX_DATA */
        "1 r5p 0\n",
        "1 abcdefghijklmnopqrstuvwxyzabcdefg 0\n", /* command over 32 letters */
        " 1 rsp 0\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        relp_msg_t m;
        size_t used;
        int r = relp_parse(bad[i], strlen(bad[i]), &m, &used);
        if (r != -EPROTO)
            fail_msg("case %zu (%s): %d, expected -EPROTO", i, bad[i], r);
    }
}

static void test_codes(void **state)
{
    (void)state;
    relp_msg_t m;
    size_t used;
    assert_int_equal(relp_parse("5 rsp 3 200\n", 12, &m, &used), 1);
    assert_int_equal(m.code, 200);
    assert_int_equal(relp_parse("5 rsp 4 20x \n", 13, &m, &used), 1);
    assert_int_equal(m.code, -1);
    assert_int_equal(relp_parse("5 rsp 4 2000\n", 13, &m, &used), 1);
    assert_int_equal(m.code, -1); /* four digits: not a code */
    assert_int_equal(relp_parse("5 syslog 3 200\n", 15, &m, &used), 1);
    assert_int_equal(m.code, -1); /* only an rsp has one */
    char text[16];
    const char ctl[] = "6 rsp 9 500 a\tb\x01z\n";
    assert_int_equal(relp_parse(ctl, strlen(ctl), &m, &used), 1);
    relp_rsp_text(&m, text, sizeof(text));
    assert_string_equal(text, "a?b?z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_txnr_wraps),
        cmocka_unit_test(test_parse_answers_as_librelp_sends_them),
        cmocka_unit_test(test_every_prefix_asks_for_more),
        cmocka_unit_test(test_not_relp),
        cmocka_unit_test(test_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
