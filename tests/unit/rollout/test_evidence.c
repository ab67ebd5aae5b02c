/* SPDX-License-Identifier: Apache-2.0 */
/* The statistics behind the live rollout gates: the one-sided 95% Wilson upper bound
 * the accuracy gate compares with min_accuracy (known values from scipy's binomtest Wilson
 * interval at 90% two-sided), and the recorded-latency p95 of one version on one arm that the
 * blue/green watch takes its stable reference from (window, arm, version and status filters). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "rollout/gates.h"
#include "store/deployments.h"
#include "store/store.h"
#include "testutil.h"

static void test_wilson_upper_known_values(void **state)
{
    (void)state;
    /* scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.90, method="wilson").high */
    static const struct {
        unsigned long long k, n;
        double want;
    } v[] = {
        {20, 30, 0.789163}, {25, 30, 0.916438}, {24, 30, 0.892876},   {118, 140, 0.886888},
        {0, 30, 0.082724},  {30, 30, 1.000000}, {266, 397, 0.707576}, {85, 100, 0.899463},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        double got = rollout_wilson_upper95(v[i].k, v[i].n);
        if (fabs(got - v[i].want) > 1e-5)
            fail_msg("%llu/%llu: %.6f, want %.6f", v[i].k, v[i].n, got, v[i].want);
    }
    assert_true(isnan(rollout_wilson_upper95(0, 0)));
    assert_true(isnan(rollout_wilson_upper95(5, 4)));
    /* what the gate decides at min_accuracy 0.85: 25/30 (0.833, under 0.85 raw) is no evidence
     * of a bad candidate; 20/30 (0.667) is; 118/140 (0.843) is not */
    assert_false(rollout_wilson_upper95(25, 30) < 0.85);
    assert_true(rollout_wilson_upper95(20, 30) < 0.85);
    assert_false(rollout_wilson_upper95(118, 140) < 0.85);
}

static store_t *open_store(void)
{
    char dir[512];
    assert_int_equal(test_tmpdir(dir, sizeof(dir), "evidence"), 0);
    char url[600];
    snprintf(url, sizeof(url), "%s/t.db", dir);
    store_t *st = NULL;
    char err[256];
    assert_int_equal(store_open(url, &st, err, sizeof(err)), 0);
    return st;
}

/* A realistic epoch (2026-11-28) under the test's small offsets */
#define T0 1764288000000LL

static void put(store_t *st, int i, int64_t at, const char *version, const char *arm, double ms)
{
    /* a UUIDv7 as the server makes it: 48-bit milliseconds first (the queries read a key range
     * of the ids by time) */
    char id[80]; /* room for the widest the format can make (-Wformat-truncation) */
    uint64_t t = (uint64_t)(T0 + at);
    snprintf(id, sizeof(id), "%08llx-%04llx-7000-8000-%012x", (unsigned long long)(t >> 16),
             (unsigned long long)(t & 0xffff), (unsigned)i);
    store_prediction_t p = {.id = id,
                            .created_ms = T0 + at,
                            .model = "m",
                            .version = version,
                            .arm = arm,
                            .request_id = "r",
                            .outputs_json = "[{\"label\":\"a\"}]",
                            .n_rows = 1,
                            .latency_ms = ms,
                            .status = 200};
    assert_int_equal(store_predictions_put(st, &p, 1), 0);
}

static void test_latency_p95_from_records(void **state)
{
    (void)state;
    store_t *st = open_store();
    double p95 = 0;
    long n = -1;
    assert_int_equal(store_deployment_latency_p95(st, "m", "1", "stable", T0, T0 + 100000, 0, &p95, &n), 0);
    assert_true(isnan(p95));
    assert_int_equal(n, 0);
    /* stable 1: 1..100 ms at t = 1000..1099; noise that must not count: other arm, version,
     * window */
    for (int i = 1; i <= 100; i++)
        put(st, i, 1000 + i - 1, "1", "stable", i);
    put(st, 1001, 1050, "1", "pinned", 900);
    put(st, 1002, 1050, "2", "stable", 900);
    put(st, 1003, 5000, "1", "stable", 900); /* after the window */
    put(st, 1004, 10, "1", "stable", 900);   /* before it */
    assert_int_equal(store_deployment_latency_p95(st, "m", "1", "stable", T0 + 1000, T0 + 2000, 0, &p95, &n),
                     0);
    assert_int_equal(n, 100);
    assert_true(fabs(p95 - 95.0) < 1e-9); /* nearest rank: the 95th of 100 */
    /* the newest `limit` only: 81..100 -> p95 = the 19th of 20 = 99 */
    assert_int_equal(store_deployment_latency_p95(st, "m", "1", "stable", T0 + 1000, T0 + 2000, 20, &p95, &n),
                     0);
    assert_int_equal(n, 20);
    assert_true(fabs(p95 - 99.0) < 1e-9);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson_upper_known_values),
        cmocka_unit_test(test_latency_p95_from_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
