/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for security/clientaddr: TRUSTED_PROXIES parsing (IPv4, IPv6, CIDR, blanks,
 * every malformed form refused), membership (prefix boundaries, IPv4-mapped peers, zones)
 * and the choice of the client address from the peer and X-Forwarded-For (untrusted peer
 * ignores the header; right-most untrusted entry; ports and brackets; garbage; caps). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"
#include "security/clientaddr.h"

static clientaddr_proxies_t *parse_ok(const char *spec)
{
    clientaddr_proxies_t *p = NULL;
    char err[256] = "";
    assert_int_equal(clientaddr_proxies_parse(spec, &p, err, sizeof(err)), 0);
    return p;
}

static void test_parse(void **state)
{
    (void)state;
    clientaddr_proxies_t *p = (clientaddr_proxies_t *)1;
    char err[256] = "";
    assert_int_equal(clientaddr_proxies_parse(NULL, &p, err, sizeof(err)), 0);
    assert_null(p);
    assert_int_equal(clientaddr_proxies_parse("  ", &p, err, sizeof(err)), 0);
    assert_null(p);
    p = parse_ok(" 10.0.0.0/8 ,127.0.0.1, ::1 , fd00::/8,192.168.1.7/32,::ffff:10.1.0.0/112");
    assert_non_null(p);
    clientaddr_proxies_free(p);

    const char *bad[] = {"bogus",         "10.0.0.0/33", "::/129",       "10.0.0.0/",   "10.0.0.0/-1",
                         "10.0.0.0/8/8",  "10.0.0",      "1.2.3.4,",     ",1.2.3.4",    "1.2.3.4,,5.6.7.8",
                         "10.0.0.1:80",   "[::1]",       "fe80::1%eth0", "10.0.0.0/8x", "256.1.1.1",
                         "10.0.0.0/0008", NULL};
    for (size_t i = 0; bad[i]; i++) {
        p = (clientaddr_proxies_t *)1;
        err[0] = '\0';
        assert_int_equal(clientaddr_proxies_parse(bad[i], &p, err, sizeof(err)), -EINVAL);
        assert_null(p);
        assert_true(strlen(err) > 0);
    }
    /* the message names the offending item */
    clientaddr_proxies_parse("127.0.0.1, nope", &p, err, sizeof(err));
    assert_non_null(strstr(err, "'nope'"));
    /* review58 S1: a /0 trusts every address */
    assert_int_equal(clientaddr_proxies_parse("127.0.0.1, 0.0.0.0/0", &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'0.0.0.0/0' trusts every address"));
    assert_int_equal(clientaddr_proxies_parse("::/0", &p, err, sizeof(err)), -EINVAL);
    /* review62 #6: nor more than a /8 of IPv4, however written, or of IPv6 */
    const char *wide[] = {"10.0.0.0/1", "0.0.0.0/1,128.0.0.0/1", "8.0.0.0/7", "::ffff:0.0.0.0/96",
                          "::ffff:0:0/100", "::ffff:128.0.0.0/97", "::/8", "::/1", "::/80", "2000::/3", NULL};
    for (size_t i = 0; wide[i]; i++) {
        p = (clientaddr_proxies_t *)1;
        err[0] = '\0';
        if (clientaddr_proxies_parse(wide[i], &p, err, sizeof(err)) != -EINVAL || !strstr(err, "trusts"))
            fail_msg("'%s' accepted (%s)", wide[i], err);
        assert_null(p);
    }
    assert_non_null(strstr(err, "'2000::/3' trusts too much of IPv6"));
    clientaddr_proxies_parse("::ffff:0.0.0.0/96", &p, err, sizeof(err));
    assert_non_null(strstr(err, "trusts too much of IPv4"));
    p = parse_ok("10.0.0.0/8,fd00::/8,::ffff:10.0.0.0/104,2001:db8::/32");
    clientaddr_proxies_free(p);
    /* review63 #3: nor together more than two /8s (64 /8s are a quarter of IPv4) */
    assert_int_equal(clientaddr_proxies_parse("10.0.0.0/8, 11.0.0.0/8, 12.0.0.0/32", &p, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "together trust more than two /8s of IPv4"));
    assert_int_equal(clientaddr_proxies_parse("fd00::/8, fc00::/8, fe80::/10", &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "together trust more than two /8s of IPv6"));
    p = parse_ok("10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 127.0.0.1, fd00::/8, fc00::/9, ::1/128");
    clientaddr_proxies_free(p);
    /* review65 #6: repeated or nested entries count once */
    p = parse_ok("10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.1.0.0/16, 11.0.0.0/8, ::ffff:10.0.0.0/104");
    clientaddr_proxies_free(p);
    /* too many entries */
    char many[4096] = "";
    for (int i = 0; i <= CLIENTADDR_MAX_PROXIES; i++) {
        char one[32];
        snprintf(one, sizeof(one), "%s10.0.%d.1", i ? "," : "", i);
        strcat(many, one);
    }
    assert_int_equal(clientaddr_proxies_parse(many, &p, err, sizeof(err)), -EINVAL);
}

static void test_membership(void **state)
{
    (void)state;
    clientaddr_proxies_t *p = parse_ok("10.0.0.0/8,192.168.1.128/25,2001:db8::/32,::1,172.16.5.5");
    assert_true(clientaddr_is_trusted(p, "10.0.0.1"));
    assert_true(clientaddr_is_trusted(p, "10.255.255.255"));
    assert_false(clientaddr_is_trusted(p, "11.0.0.1"));
    assert_false(clientaddr_is_trusted(p, "9.255.255.255"));
    assert_true(clientaddr_is_trusted(p, "192.168.1.128"));
    assert_true(clientaddr_is_trusted(p, "192.168.1.255"));
    assert_false(clientaddr_is_trusted(p, "192.168.1.127"));
    assert_true(clientaddr_is_trusted(p, "172.16.5.5"));
    assert_false(clientaddr_is_trusted(p, "172.16.5.6"));
    assert_true(clientaddr_is_trusted(p, "::ffff:10.1.2.3")); /* dual-stack socket */
    assert_true(clientaddr_is_trusted(p, "2001:db8:ffff::1"));
    assert_false(clientaddr_is_trusted(p, "2001:db9::1"));
    assert_true(clientaddr_is_trusted(p, "::1"));
    assert_true(clientaddr_is_trusted(p, "0:0:0:0:0:0:0:1"));
    assert_false(clientaddr_is_trusted(p, "::2"));
    assert_false(clientaddr_is_trusted(p, "not-an-ip"));
    assert_false(clientaddr_is_trusted(p, ""));
    assert_false(clientaddr_is_trusted(NULL, "10.0.0.1"));
    clientaddr_proxies_free(p);
    /* an IPv4 entry never matches a non-mapped IPv6 address with the same low bits */
    p = parse_ok("0.0.0.0/8,203.0.0.0/8");
    assert_true(clientaddr_is_trusted(p, "203.0.113.9"));
    assert_true(clientaddr_is_trusted(p, "0.0.0.1"));
    assert_false(clientaddr_is_trusted(p, "2001:db8::1"));
    clientaddr_proxies_free(p);
}

/* The chosen address for peer/xff, and whether it came from the header. */
static const char *pick(const clientaddr_proxies_t *p, const char *peer, const char *xff, bool *from_header)
{
    static char out[CLIENTADDR_LEN];
    *from_header = clientaddr_select(p, peer, xff, out, sizeof(out));
    return out;
}

static void test_select(void **state)
{
    (void)state;
    bool fh;
    clientaddr_proxies_t *p = parse_ok("127.0.0.1,10.0.0.0/8,::1");

    /* no proxies configured, or an untrusted peer: the header is ignored */
    assert_string_equal(pick(NULL, "127.0.0.1", "203.0.113.7", &fh), "127.0.0.1");
    assert_false(fh);
    assert_string_equal(pick(p, "198.51.100.2", "203.0.113.7", &fh), "198.51.100.2");
    assert_false(fh);
    /* trusted peer: the right-most entry that is not a trusted proxy */
    assert_string_equal(pick(p, "127.0.0.1", "203.0.113.7", &fh), "203.0.113.7");
    assert_true(fh);
    assert_string_equal(pick(p, "127.0.0.1", "6.6.6.6, 203.0.113.7", &fh),
                        "203.0.113.7"); /* spoof on the left */
    assert_string_equal(pick(p, "127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2", &fh), "203.0.113.7");
    assert_true(fh);
    /* no header, an empty one: the peer */
    assert_string_equal(pick(p, "127.0.0.1", NULL, &fh), "127.0.0.1");
    assert_false(fh);
    assert_string_equal(pick(p, "127.0.0.1", "", &fh), "127.0.0.1");
    assert_false(fh);
    assert_string_equal(pick(p, "127.0.0.1", "  ", &fh), "127.0.0.1");
    assert_false(fh);
    /* ports, brackets, blanks, IPv6 and canonical output */
    assert_string_equal(pick(p, "127.0.0.1", "203.0.113.7:51234", &fh), "203.0.113.7");
    assert_string_equal(pick(p, "::1", "[2001:DB8::0001]:443", &fh), "2001:db8::1");
    assert_string_equal(pick(p, "::1", "\t2001:db8::5 ", &fh), "2001:db8::5");
    assert_string_equal(pick(p, "::ffff:127.0.0.1", "::ffff:203.0.113.9", &fh), "203.0.113.9");
    assert_string_equal(pick(NULL, "::ffff:127.0.0.1", NULL, &fh), "127.0.0.1");
    /* garbage: the walk stops at the last trusted hop */
    assert_string_equal(pick(p, "127.0.0.1", "unknown", &fh), "127.0.0.1");
    assert_false(fh);
    assert_string_equal(pick(p, "127.0.0.1", "203.0.113.7, garbage, 10.0.0.9", &fh), "10.0.0.9");
    assert_true(fh);
    assert_string_equal(pick(p, "127.0.0.1", "1.2.3.4:", &fh), "127.0.0.1");
    assert_string_equal(pick(p, "127.0.0.1", "[::1", &fh), "127.0.0.1");
    assert_string_equal(pick(p, "127.0.0.1", "1.2.3.4:80x", &fh), "127.0.0.1");
    assert_string_equal(pick(p, "127.0.0.1", "203.0.113.7,", &fh), "127.0.0.1"); /* empty last entry */
    /* every entry trusted: the left-most examined */
    assert_string_equal(pick(p, "127.0.0.1", "10.0.0.3, 10.0.0.2", &fh), "10.0.0.3");
    assert_true(fh);
    /* at most CLIENTADDR_MAX_HOPS entries are examined */
    char chain[2048] = "203.0.113.7";
    for (int i = 0; i < CLIENTADDR_MAX_HOPS + 5; i++) {
        char one[32];
        snprintf(one, sizeof(one), ",10.0.%d.1", i);
        strcat(chain, one);
    }
    const char *got = pick(p, "127.0.0.1", chain, &fh);
    assert_true(strncmp(got, "10.0.", 5) == 0);
    /* an oversized header is ignored */
    char *huge = malloc(CLIENTADDR_MAX_XFF + 64);
    memset(huge, ' ', CLIENTADDR_MAX_XFF + 10);
    strcpy(huge + CLIENTADDR_MAX_XFF + 10, "203.0.113.7");
    assert_string_equal(pick(p, "127.0.0.1", huge, &fh), "127.0.0.1");
    assert_false(fh);
    free(huge);
    /* review58 #1: a client that pads the header past the limit is still the client: the
     * end (what the trusted proxies appended) is examined, not the whole ignored */
    char *padded = malloc(CLIENTADDR_MAX_XFF * 2);
    padded[0] = '\0';
    for (int i = 0; i < 520; i++)
        strcat(padded, "6.6.6.6,");
    strcat(padded, " 203.0.113.7");
    assert_true(strlen(padded) > CLIENTADDR_MAX_XFF);
    assert_string_equal(pick(p, "127.0.0.1", padded, &fh), "203.0.113.7");
    assert_true(fh);
    strcat(padded, ", 10.0.0.2"); /* behind two proxies */
    assert_string_equal(pick(p, "127.0.0.1", padded, &fh), "203.0.113.7");
    free(padded);
    /* a peer that is not an address (unix socket, empty) is passed through */
    assert_string_equal(pick(p, "", "203.0.113.7", &fh), "");
    clientaddr_proxies_free(p);
}

static void test_configure_names_the_variable(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(clientaddr_configure("127.0.0.1,::1", err, sizeof(err)), 0);
    assert_int_equal(clientaddr_configure("127.0.0.1,300.1.1.1", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "TRUSTED_PROXIES: "));
    assert_non_null(strstr(err, "300.1.1.1"));
    clientaddr_deconfigure();
    /* the configuration refuses it too, naming the variable */
    setenv("TRUSTED_PROXIES", "10.0.0.0/8, bad/99", 1);
    config_t *cfg = NULL;
    char cerr[2048] = "";
    assert_int_equal(config_load(NULL, &cfg, cerr, sizeof(cerr)), -EINVAL);
    assert_non_null(strstr(cerr, "TRUSTED_PROXIES"));
    setenv("TRUSTED_PROXIES", " 10.0.0.0/8 , ::1 ", 1);
    assert_int_equal(config_load(NULL, &cfg, cerr, sizeof(cerr)), 0);
    assert_string_equal(cfg->trusted_proxies, " 10.0.0.0/8 , ::1 ");
    config_free(cfg);
    unsetenv("TRUSTED_PROXIES");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_configure_names_the_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
