/* SPDX-License-Identifier: Apache-2.0 */
/* Traffic routing primitives: deployment ids, sticky buckets (same key -> same bucket,
 * shares close to the stage percentage, independent across deployments), the latency
 * histogram's quantiles, and the no-deployment fast path of rollout_route. */
#include <math.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rollout/gates.h"
#include "rollout/rollout.h"

static void test_id_format(void **state)
{
    (void)state;
    regex_t re;
    assert_int_equal(regcomp(&re, "^deploy_[0-9]{14}_[0-9a-f]{6}$", REG_EXTENDED | REG_NOSUB), 0);
    char a[32], b[32];
    rollout_new_id(a);
    rollout_new_id(b);
    assert_int_equal(regexec(&re, a, 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, b, 0, NULL, 0), 0);
    assert_string_not_equal(a, b);
    regfree(&re);
}

static void test_buckets_sticky_and_proportional(void **state)
{
    (void)state;
    const unsigned shares[] = {500, 1000, 2500, 5000};
    for (size_t s = 0; s < 4; s++) {
        unsigned in = 0;
        const unsigned n = 20000;
        for (unsigned i = 0; i < n; i++) {
            char key[32];
            snprintf(key, sizeof(key), "patient-%u", i);
            unsigned b = rollout_bucket("deploy_20260101000000_abcdef", key);
            assert_true(b < 10000);
            assert_int_equal(b, rollout_bucket("deploy_20260101000000_abcdef", key)); /* sticky */
            in += b < shares[s];
        }
        double got = (double)in / n, want = shares[s] / 10000.0;
        assert_true(fabs(got - want) < 4 * sqrt(want * (1 - want) / n) + 0.002);
    }
    /* monotone stages: a patient on the candidate at 5% stays on it at 10% */
    for (unsigned i = 0; i < 1000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "p%u", i);
        unsigned b = rollout_bucket("d1", key);
        if (b < 500)
            assert_true(b < 1000);
    }
    /* different deployments pick different patients */
    unsigned same = 0;
    for (unsigned i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "p%u", i);
        same += (rollout_bucket("d1", key) < 5000) == (rollout_bucket("d2", key) < 5000);
    }
    assert_true(same > 800 && same < 1200);
}

static void test_latency_quantiles(void **state)
{
    (void)state;
    static rollout_latency_t h;
    assert_true(isnan(rollout_latency_quantile_ms(&h, 0.95)));
    for (int i = 1; i <= 100; i++)
        rollout_latency_observe(&h, i * 1e-3); /* 1..100 ms */
    double p50 = rollout_latency_quantile_ms(&h, 0.5), p95 = rollout_latency_quantile_ms(&h, 0.95);
    assert_true(p50 >= 50 && p50 <= 50 * 1.06);
    assert_true(p95 >= 95 && p95 <= 95 * 1.06);
    rollout_latency_reset(&h);
    assert_true(isnan(rollout_latency_quantile_ms(&h, 0.95)));
}

static void test_route_without_controller(void **state)
{
    (void)state;
    rollout_route_t rt = {0};
    rollout_route(NULL, "m", "p", "r", &rt);
    assert_null(rt.handle);
    assert_string_equal(rt.arm, "stable");
    assert_false(rt.shadow);
    assert_int_equal(rollout_fault(&rt), 0);
    rollout_observe(&rt, 0.001, false);
    rollout_route_done(&rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_format),
        cmocka_unit_test(test_buckets_sticky_and_proportional),
        cmocka_unit_test(test_latency_quantiles),
        cmocka_unit_test(test_route_without_controller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
