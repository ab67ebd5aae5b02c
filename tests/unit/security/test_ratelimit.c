/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for security/ratelimit and security/lockout (time is passed in, so nothing
 * here sleeps): spec parsing, bursts, refill, Retry-After, key independence, bounded
 * memory under many keys, lockout threshold/window/duration, and concurrent use. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "security/lockout.h"
#include "security/ratelimit.h"
#include "security/roles.h"

static void test_parse_spec(void **state)
{
    (void)state;
    ratelimit_spec_t s;
    assert_int_equal(ratelimit_parse_spec("10/s", &s), 0);
    assert_true(s.rate_per_s == 10.0 && s.burst == 10.0);
    assert_int_equal(ratelimit_parse_spec("120/m:30", &s), 0);
    assert_true(s.rate_per_s == 2.0 && s.burst == 30.0);
    assert_int_equal(ratelimit_parse_spec("off", &s), 0);
    assert_true(s.rate_per_s == 0);
    assert_int_equal(ratelimit_parse_spec("0", &s), 0);
    const char *bad[] = {"",      "10",     "10/h",   "/s",    "-1/s",   "0/s",
                         "10/s:", "10/s:0", "10/s:x", "1.5/s", "10/sec", NULL};
    for (size_t i = 0; bad[i]; i++) {
        s.rate_per_s = 42;
        assert_int_equal(ratelimit_parse_spec(bad[i], &s), -EINVAL);
        assert_true(s.rate_per_s == 42); /* untouched */
    }
    assert_int_equal(ratelimit_parse_spec(NULL, &s), -EINVAL);
}

static void test_bucket(void **state)
{
    (void)state;
    ratelimit_spec_t s;
    ratelimit_t *rl = NULL;
    assert_int_equal(ratelimit_parse_spec("2/s:5", &s), 0);
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    int ra = 0;
    int64_t t = 1000000;
    for (int i = 0; i < 5; i++)
        assert_int_equal(ratelimit_take(rl, "k1", t, &ra), 0); /* the burst */
    assert_int_equal(ratelimit_take(rl, "k1", t, &ra), -EAGAIN);
    assert_int_equal(ra, 1);                               /* 0.5 s to the next token, rounded up */
    assert_int_equal(ratelimit_take(rl, "k2", t, &ra), 0); /* other keys are independent */
    assert_int_equal(ratelimit_take(rl, "k1", t + 499, &ra), -EAGAIN);
    assert_int_equal(ratelimit_take(rl, "k1", t + 500, &ra), 0); /* refilled one */
    assert_int_equal(ratelimit_take(rl, "k1", t + 500, &ra), -EAGAIN);
    /* refill caps at the burst */
    for (int i = 0; i < 5; i++)
        assert_int_equal(ratelimit_take(rl, "k1", t + 100000, &ra), 0);
    assert_int_equal(ratelimit_take(rl, "k1", t + 100000, &ra), -EAGAIN);
    ratelimit_free(rl);

    /* review58 #2: keys longer than a slot (a JWT subject is up to 127 bytes) that share
     * their first 63 bytes are still different keys; the same long key is the same bucket */
    assert_int_equal(ratelimit_parse_spec("1/m", &s), 0);
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    char la[130], lb[130];
    memset(la, 'x', 127);
    la[127] = '\0';
    memcpy(lb, la, sizeof(la));
    la[126] = 'a';
    lb[126] = 'b';
    assert_int_equal(ratelimit_take(rl, la, t, &ra), 0);
    assert_int_equal(ratelimit_take(rl, lb, t, &ra), 0);
    assert_int_equal(ratelimit_take(rl, la, t, &ra), -EAGAIN);
    assert_int_equal(ratelimit_take(rl, lb, t, &ra), -EAGAIN);
    ratelimit_free(rl);

    /* slow rates give long Retry-After */
    assert_int_equal(ratelimit_parse_spec("1/m", &s), 0);
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    assert_int_equal(ratelimit_take(rl, "x", t, &ra), 0);
    assert_int_equal(ratelimit_take(rl, "x", t, &ra), -EAGAIN);
    assert_int_equal(ra, 60);
    ratelimit_free(rl);

    /* counted: an allowed take says how many were refused since the last allowed one */
    assert_int_equal(ratelimit_parse_spec("1/m", &s), 0);
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    uint64_t refused = 99;
    assert_int_equal(ratelimit_take_counted(rl, "c", t, &ra, &refused), 0);
    assert_int_equal(refused, 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(ratelimit_take_counted(rl, "c", t + i * 1000, &ra, &refused), -EAGAIN);
    assert_int_equal(ratelimit_take(rl, "c", t + 8000, &ra), -EAGAIN); /* the plain take counts too */
    assert_int_equal(ratelimit_take_counted(rl, "d", t, &ra, &refused), 0); /* per key */
    assert_int_equal(refused, 0);
    assert_int_equal(ratelimit_take_counted(rl, "c", t + 60000, &ra, &refused), 0);
    assert_int_equal(refused, 8);
    assert_int_equal(ratelimit_take_counted(rl, "c", t + 120000, &ra, &refused), 0);
    assert_int_equal(refused, 0); /* and starts again */
    ratelimit_free(rl);

    /* off: no limiter at all, every take passes */
    assert_int_equal(ratelimit_parse_spec("off", &s), 0);
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    assert_null(rl);
    assert_int_equal(ratelimit_take(rl, "x", t, &ra), 0);
    refused = 99;
    assert_int_equal(ratelimit_take_counted(rl, "x", t, &ra, &refused), 0);
    assert_int_equal(refused, 0);
}

static void test_many_keys_bounded(void **state)
{
    (void)state;
    ratelimit_spec_t s = {1.0, 1.0};
    ratelimit_t *rl = NULL;
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    int ra;
    char k[32];
    /* 200k distinct keys fit in fixed memory (recycling); a recent key keeps its state */
    assert_int_equal(ratelimit_take(rl, "victim", 5, &ra), 0);
    for (int i = 0; i < 200000; i++) {
        snprintf(k, sizeof(k), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        ratelimit_take(rl, k, 1, &ra);
    }
    /* the most recently used keys survive: "victim" was used at t=5, later than the flood */
    assert_int_equal(ratelimit_take(rl, "victim", 5, &ra), -EAGAIN);
    ratelimit_free(rl);
}

typedef struct {
    ratelimit_t *rl;
    int allowed;
} thr_arg_t;

static void *hammer(void *arg)
{
    thr_arg_t *a = arg;
    int ra;
    for (int i = 0; i < 10000; i++)
        if (ratelimit_take(a->rl, "shared", 1000, &ra) == 0)
            a->allowed++;
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    ratelimit_spec_t s = {1.0, 1000.0};
    ratelimit_t *rl = NULL;
    assert_int_equal(ratelimit_new(&s, &rl), 0);
    pthread_t th[8];
    thr_arg_t args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (thr_arg_t){rl, 0};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += args[i].allowed;
    }
    assert_int_equal(total, 1000); /* exactly the burst, no token lost or duplicated */
    ratelimit_free(rl);
}

static void test_lockout(void **state)
{
    (void)state;
    lockout_t *lo = NULL;
    assert_int_equal(lockout_new(5, 60000, 900000, &lo), 0);
    int ra = 0;
    int64_t t = 10000000;
    for (int i = 0; i < 4; i++) {
        assert_false(lockout_fail(lo, "10.0.0.1", t + i));
        assert_false(lockout_locked(lo, "10.0.0.1", t + i, &ra));
    }
    assert_true(lockout_fail(lo, "10.0.0.1", t + 4)); /* the 5th failure locks */
    assert_true(lockout_locked(lo, "10.0.0.1", t + 5, &ra));
    assert_int_equal(ra, 900);
    assert_false(lockout_locked(lo, "10.0.0.2", t + 5, &ra)); /* per address */
    assert_true(lockout_locked(lo, "10.0.0.1", t + 4 + 899000, &ra));
    assert_int_equal(ra, 1);
    assert_false(lockout_locked(lo, "10.0.0.1", t + 4 + 900000, &ra)); /* 15 minutes later */

    /* failures spread wider than the window never lock */
    for (int i = 0; i < 20; i++)
        assert_false(lockout_fail(lo, "10.0.0.3", t + (int64_t)i * 20000));
    assert_false(lockout_locked(lo, "10.0.0.3", t + 400000, &ra));
    lockout_free(lo);

    /* threshold 0 = off */
    assert_int_equal(lockout_new(0, 1, 1, &lo), 0);
    assert_null(lo);
    assert_false(lockout_fail(lo, "x", 1));
    assert_false(lockout_locked(lo, "x", 1, &ra));
}

static void test_lockout_survives_flood(void **state)
{
    (void)state;
    lockout_t *lo = NULL;
    assert_int_equal(lockout_new(2, 60000, 900000, &lo), 0);
    int ra;
    lockout_fail(lo, "attacker", 100);
    assert_true(lockout_fail(lo, "attacker", 101));
    char k[32];
    for (int i = 0; i < 100000; i++) { /* single failures from many other addresses */
        snprintf(k, sizeof(k), "192.168.%d.%d", i >> 8, i & 255);
        lockout_fail(lo, k, 200 + i);
    }
    assert_true(lockout_locked(lo, "attacker", 200000, &ra)); /* locked entries are kept */
    lockout_free(lo);
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(roles_bit("clinician"), ROLE_CLINICIAN);
    assert_int_equal(roles_bit("Clinician"), 0);
    assert_int_equal(roles_bit(NULL), 0);
    assert_true(roles_satisfies(0, NULL)); /* public */
    assert_false(roles_satisfies(0, "read"));
    const char *route_roles[] = {"read", "clinician", "deployer", "auditor", "monitor", "admin", "bogus"};
    const unsigned held[] = {ROLE_ADMIN, ROLE_DEPLOYER, ROLE_CLINICIAN, ROLE_AUDITOR, ROLE_MONITOR};
    /* expected[held][route]: the matrix of docs/security.md */
    const bool expected[5][7] = {
        {true, true, true, true, true, true, true},      /* admin */
        {true, false, true, false, false, false, false}, /* deployer */
        {true, true, false, false, false, false, false}, /* clinician */
        {true, false, false, true, false, false, false}, /* auditor */
        {true, false, false, false, true, false, false}, /* monitor */
    };
    for (int h = 0; h < 5; h++)
        for (int r = 0; r < 7; r++)
            assert_int_equal(roles_satisfies(held[h], route_roles[r]), expected[h][r]);
    assert_true(roles_satisfies(ROLE_MONITOR | ROLE_CLINICIAN, "clinician"));
    assert_string_equal(roles_primary(ROLE_MONITOR | ROLE_ADMIN), "admin");
    assert_null(roles_primary(0));
    /* review58 #5: the role recorded is the one that grants the route */
    assert_string_equal(roles_granting(ROLE_AUDITOR | ROLE_CLINICIAN, "auditor"), "auditor");
    assert_string_equal(roles_granting(ROLE_AUDITOR | ROLE_CLINICIAN, "clinician"), "clinician");
    assert_string_equal(roles_granting(ROLE_ADMIN | ROLE_MONITOR, "deployer"), "admin");
    assert_string_equal(roles_granting(ROLE_ADMIN | ROLE_MONITOR, "monitor"), "monitor");
    assert_string_equal(roles_granting(ROLE_MONITOR | ROLE_CLINICIAN, "read"), "clinician");
    assert_null(roles_granting(ROLE_MONITOR | ROLE_CLINICIAN, "auditor"));
    char names[64];
    assert_string_equal(roles_names(ROLE_MONITOR | ROLE_CLINICIAN, names, sizeof(names)), "clinician,monitor");
    assert_string_equal(roles_names(0, names, sizeof(names)), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_spec),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_many_keys_bounded),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_lockout),
        cmocka_unit_test(test_lockout_survives_flood),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
