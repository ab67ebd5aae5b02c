/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics registry: sharded counters summed across threads, histogram buckets and
 * quantiles, gauges, escaping and the exposition text. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "monitor/metrics.h"

#define THREADS 8
#define PER_THREAD 100000

static uint32_t shared_slot;

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++)
        metrics_counter_add(shared_slot, 1);
    return NULL;
}

static void test_counter_threads(void **state)
{
    (void)state;
    metric_family_t *f = metrics_family("t_requests_total", "Test requests.", METRIC_COUNTER, NULL, 0);
    shared_slot = metrics_series(f, "route=\"/x\"");
    assert_int_equal(metrics_series(f, "route=\"/x\""), shared_slot); /* idempotent */
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, adder, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(metrics_counter_value(shared_slot), (uint64_t)THREADS * PER_THREAD);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double b[] = {0.1, 0.2, 0.5};
    metric_family_t *f = metrics_family("t_latency_seconds", "Test latency.", METRIC_HISTOGRAM, b, 3);
    uint32_t s = metrics_series(f, "");
    for (int i = 0; i < 50; i++)
        metrics_histogram_observe(f, s, 0.05); /* bucket 0.1 */
    for (int i = 0; i < 50; i++)
        metrics_histogram_observe(f, s, 0.15); /* bucket 0.2 */
    metrics_histogram_observe(f, s, 3.0);      /* +Inf */
    assert_int_equal(metrics_histogram_count(f, s), 101);
    double p50 = metrics_histogram_quantile(f, s, 0.5);
    assert_true(p50 > 0.09 && p50 <= 0.11);
    double p95 = metrics_histogram_quantile(f, s, 0.95);
    assert_true(p95 > 0.1 && p95 <= 0.2);
    assert_true(fabs(metrics_histogram_quantile(f, s, 1.0) - 0.5) < 1e-12);

    size_t len = 0;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_non_null(strstr(text, "# TYPE t_latency_seconds histogram\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.1\"} 50\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"+Inf\"} 101\n"));
    assert_non_null(strstr(text, "t_latency_seconds_count 101\n"));
    assert_non_null(strstr(text, "t_latency_seconds_sum 13\n"));
    free(text);
}

static metric_family_t *conc_family;
static uint32_t conc_slot;
static atomic_bool conc_stop;

static void *observer(void *arg)
{
    (void)arg;
    while (!atomic_load(&conc_stop))
        metrics_histogram_observe(conc_family, conc_slot, 7.0); /* +Inf */
    return NULL;
}

static unsigned long long sample_of(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);
    assert_non_null(p);
    return strtoull(p + strlen(prefix), NULL, 10);
}

/* Under concurrent observations every rendering's _count equals its own +Inf bucket. */
static void test_histogram_count_matches_inf_bucket(void **state)
{
    (void)state;
    static const double b[] = {0.5, 1.0};
    conc_family = metrics_family("t_conc_seconds", "Test concurrent histogram.", METRIC_HISTOGRAM, b, 2);
    conc_slot = metrics_series(conc_family, "");
    atomic_store(&conc_stop, false);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, observer, NULL), 0);
    int mismatches = 0;
    for (int i = 0; i < 3000; i++) {
        char *text = metrics_render(NULL);
        assert_non_null(text);
        unsigned long long inf = sample_of(text, "t_conc_seconds_bucket{le=\"+Inf\"} ");
        unsigned long long count = sample_of(text, "t_conc_seconds_count ");
        mismatches += inf != count;
        free(text);
    }
    atomic_store(&conc_stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(mismatches, 0);
}

static void test_gauge_and_escape(void **state)
{
    (void)state;
    metric_family_t *f = metrics_family("t_drift_score", "Test gauge.", METRIC_GAUGE, NULL, 0);
    char esc[64], labels[96];
    metrics_escape("we\"ird\\na\nme", esc, sizeof(esc));
    assert_string_equal(esc, "we\\\"ird\\\\na\\nme");
    snprintf(labels, sizeof(labels), "model=\"%s\"", esc);
    uint32_t s = metrics_series(f, labels);
    metrics_gauge_set(s, 0.25);
    char *text = metrics_render(NULL);
    assert_non_null(strstr(text, "t_drift_score{model=\"we\\\"ird\\\\na\\nme\"} 0.25\n"));
    free(text);
}

static void append_labels(const char *labels, void *arg)
{
    strcat(arg, labels);
    strcat(arg, "|");
}

/* The monitor follows every (version, arm) series of a model through this (no pair limit). */
static void test_series_each_by_prefix(void **state)
{
    (void)state;
    metric_family_t *f = metrics_family("t_each_total", "Test counter.", METRIC_COUNTER, NULL, 0);
    metrics_series(f, "model=\"a\",version=\"1\"");
    metrics_series(f, "model=\"ab\",version=\"1\"");
    metrics_series(f, "model=\"a\",version=\"2\"");
    metrics_series(f, "model=\"a\",version=\"1\""); /* the same series: listed once */
    char got[256] = "";
    metrics_series_each(f, "model=\"a\",", append_labels, got);
    assert_string_equal(got, "model=\"a\",version=\"1\"|model=\"a\",version=\"2\"|");
    got[0] = '\0';
    metrics_series_each(f, "model=\"zz\",", append_labels, got);
    assert_string_equal(got, "");
    metrics_series_each(NULL, "", append_labels, got); /* no family: nothing, no crash */
    assert_string_equal(got, "");
}

static void collector(FILE *out, void *arg)
{
    fprintf(out, "# HELP t_up Test.\n# TYPE t_up gauge\nt_up %d\n", *(int *)arg);
}

static void test_collector(void **state)
{
    (void)state;
    static int v = 7;
    metrics_register_collector(collector, &v);
    char *text = metrics_render(NULL);
    assert_non_null(strstr(text, "t_up 7\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_threads),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_count_matches_inf_bucket),
        cmocka_unit_test(test_gauge_and_escape),
        cmocka_unit_test(test_series_each_by_prefix),
        cmocka_unit_test(test_collector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
