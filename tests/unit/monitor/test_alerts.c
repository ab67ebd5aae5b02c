/* SPDX-License-Identifier: Apache-2.0 */
/* Alert state machine (fire, stay, resolve, re-fire, severities, retention), the
 * Alertmanager v2 payload, URL parsing and the delivery client against loopback
 * receivers: one that answers, one that never answers (timeout), one that is closed. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

#include "common/util.h"
#include "monitor/alertmanager.h"
#include "monitor/alerts.h"

static alert_spec_t spec(const char *name, alert_severity_t sev, const char *model)
{
    return (alert_spec_t){name, sev, "model_performance", model, NULL, "summary", "description"};
}

static void test_fire_resolve(void **state)
{
    (void)state;
    alerts_t *a = NULL;
    assert_int_equal(alerts_new(60000, &a), 0);
    alert_spec_t d = spec("DataDriftDetected", ALERT_WARNING, "m1");
    int64_t t0 = 1700000000000;
    assert_int_equal(alerts_update(a, &d, false, 0.01, 0.1, t0), ALERT_UNCHANGED);
    assert_int_equal(alerts_update(a, &d, true, 0.5, 0.1, t0 + 1000), ALERT_FIRED);
    assert_int_equal(alerts_update(a, &d, true, 0.6, 0.1, t0 + 2000), ALERT_UNCHANGED);
    assert_int_equal(alerts_model_severity(a, "m1"), ALERT_WARNING);
    assert_int_equal(alerts_model_severity(a, "m2"), 0);

    json_t *l = alerts_list_json(a, NULL, t0 + 2000);
    assert_int_equal(json_array_size(json_object_get(l, "active")), 1);
    json_t *al = json_array_get(json_object_get(l, "active"), 0);
    assert_string_equal(json_string_value(json_object_get(al, "state")), "firing");
    assert_near(json_real_value(json_object_get(al, "value")), 0.6, 1e-12); /* latest value */
    char iso[ISO8601_LEN];
    util_iso8601(t0 + 1000, iso);
    assert_string_equal(json_string_value(json_object_get(al, "starts_at")), iso); /* not moved */
    assert_true(json_is_null(json_object_get(al, "ends_at")));
    json_decref(l);

    assert_int_equal(alerts_update(a, &d, false, 0.02, 0.1, t0 + 3000), ALERT_RESOLVED);
    assert_int_equal(alerts_update(a, &d, false, 0.02, 0.1, t0 + 4000), ALERT_UNCHANGED);
    assert_int_equal(alerts_model_severity(a, "m1"), 0);
    l = alerts_list_json(a, "m1", t0 + 4000);
    assert_int_equal(json_array_size(json_object_get(l, "active")), 0);
    assert_int_equal(json_array_size(json_object_get(l, "resolved")), 1);
    util_iso8601(t0 + 3000, iso);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(l, "resolved"), 0), "ends_at")),
        iso);
    json_decref(l);

    /* true again: a new firing record; the old resolved one stays listed */
    assert_int_equal(alerts_update(a, &d, true, 0.3, 0.1, t0 + 5000), ALERT_FIRED);
    l = alerts_list_json(a, NULL, t0 + 5000);
    assert_int_equal(json_array_size(json_object_get(l, "active")), 1);
    assert_int_equal(json_array_size(json_object_get(l, "resolved")), 1);
    json_decref(l);
    /* after the retention the resolved record is gone */
    l = alerts_list_json(a, NULL, t0 + 3000 + 60001);
    assert_int_equal(json_array_size(json_object_get(l, "resolved")), 0);
    assert_int_equal(json_array_size(json_object_get(l, "active")), 1);
    json_decref(l);
    alerts_free(a);
}

static void test_severities(void **state)
{
    (void)state;
    alerts_t *a = NULL;
    assert_int_equal(alerts_new(60000, &a), 0);
    alert_spec_t w = spec("ModelErrorRateHigh", ALERT_WARNING, "m"),
                 c = spec("ModelErrorRateHigh", ALERT_CRITICAL, "m");
    int64_t t = 1700000000000;
    /* 3% error rate: above both thresholds, both alerts fire (Alertmanager inhibits the warning) */
    assert_int_equal(alerts_update(a, &c, true, 0.03, 0.02, t), ALERT_FIRED);
    assert_int_equal(alerts_update(a, &w, true, 0.03, 0.01, t), ALERT_FIRED);
    assert_int_equal(alerts_model_severity(a, "m"), ALERT_CRITICAL);
    json_t *counts = alerts_model_counts(a, "m");
    assert_int_equal(json_integer_value(json_object_get(counts, "critical")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "warning")), 1);
    json_decref(counts);
    /* 1.5%: critical resolves, warning stays */
    assert_int_equal(alerts_update(a, &c, false, 0.015, 0.02, t + 1000), ALERT_RESOLVED);
    assert_int_equal(alerts_update(a, &w, true, 0.015, 0.01, t + 1000), ALERT_UNCHANGED);
    assert_int_equal(alerts_model_severity(a, "m"), ALERT_WARNING);

    /* Alertmanager payload: the firing one valid until now + 4 min, the resolved one ended */
    json_t *p = alerts_alertmanager_payload(a, t + 2000, 240000, "http://127.0.0.1:8080");
    assert_non_null(p);
    assert_int_equal(json_array_size(p), 2);
    size_t i;
    json_t *al;
    int seen = 0;
    json_array_foreach(p, i, al)
    {
        json_t *labels = json_object_get(al, "labels");
        assert_string_equal(json_string_value(json_object_get(labels, "alertname")), "ModelErrorRateHigh");
        assert_string_equal(json_string_value(json_object_get(labels, "category")), "model_performance");
        assert_string_equal(json_string_value(json_object_get(labels, "model")), "m");
        assert_non_null(json_string_value(json_object_get(json_object_get(al, "annotations"), "summary")));
        assert_string_equal(json_string_value(json_object_get(al, "generatorURL")),
                            "http://127.0.0.1:8080/api/v1/monitoring/m");
        char iso[ISO8601_LEN];
        const char *sev = json_string_value(json_object_get(labels, "severity"));
        if (strcmp(sev, "critical") == 0) {
            util_iso8601(t + 1000, iso);
            seen |= 1;
        } else {
            util_iso8601(t + 2000 + 240000, iso);
            seen |= 2;
        }
        assert_string_equal(json_string_value(json_object_get(al, "endsAt")), iso);
    }
    assert_int_equal(seen, 3);
    json_decref(p);
    alerts_free(a);
    assert_int_equal(alerts_new(1, &a), 0);
    assert_null(alerts_alertmanager_payload(a, t, 1000, NULL)); /* nothing to send */
    alerts_free(a);
}

static void test_parse_url(void **state)
{
    (void)state;
    char host[64], port[8], path[128], err[128];
    assert_int_equal(alert_http_parse_url("http://am.local:9093", host, sizeof(host), port, sizeof(port),
                                          path, sizeof(path), err, sizeof(err)),
                     0);
    assert_string_equal(host, "am.local");
    assert_string_equal(port, "9093");
    assert_string_equal(path, "/");
    assert_int_equal(alert_http_parse_url("http://[::1]/hook?x=1", host, sizeof(host), port, sizeof(port),
                                          path, sizeof(path), err, sizeof(err)),
                     0);
    assert_string_equal(host, "::1");
    assert_string_equal(port, "80");
    assert_string_equal(path, "/hook?x=1");
    assert_int_equal(alert_http_parse_url("https://am:9093", host, sizeof(host), port, sizeof(port), path,
                                          sizeof(path), err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(alert_http_parse_url("http://am:99999", host, sizeof(host), port, sizeof(port), path,
                                          sizeof(path), err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(alert_http_parse_url("http://am:80/a b", host, sizeof(host), port, sizeof(port), path,
                                          sizeof(path), err, sizeof(err)),
                     -EINVAL);
}

/* ---- loopback receivers ---- */

typedef struct receiver {
    int lfd, port;
    int answer;   /* 0 = never answer (hang), else the status to send */
    int requests; /* completed */
    char last[4096];
} receiver_t;

static void *receiver_main(void *arg)
{
    receiver_t *r = arg;
    /* a client that never comes fails the test's asserts after 30 s, not ctest's timeout */
    struct pollfd p = {r->lfd, POLLIN, 0};
    if (poll(&p, 1, 30000) != 1)
        return NULL;
    int fd = accept(r->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, r->last + got, sizeof(r->last) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        r->last[got] = '\0';
        char *hdr_end = strstr(r->last, "\r\n\r\n");
        const char *cl = strstr(r->last, "Content-Length: ");
        if (hdr_end && cl && got >= (size_t)(hdr_end + 4 - r->last) + (size_t)atoi(cl + 16))
            break;
    }
    if (r->answer) {
        char resp[128];
        int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", r->answer);
        ssize_t w = send(fd, resp, (size_t)n, 0);
        (void)w;
        r->requests++;
    } else {
        sleep(3); /* hang past the client's deadline */
    }
    close(fd);
    return NULL;
}

static void receiver_start(receiver_t *r, pthread_t *th)
{
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(r->lfd, 4), 0);
    getsockname(r->lfd, (struct sockaddr *)&sa, &sl);
    r->port = ntohs(sa.sin_port);
    pthread_create(th, NULL, receiver_main, r);
}

static void test_post_answers(void **state)
{
    (void)state;
    receiver_t r = {.answer = 200};
    pthread_t th;
    receiver_start(&r, &th);
    char port[8], err[256] = "";
    snprintf(port, sizeof(port), "%d", r.port);
    int status = 0;
    const char body[] = "[{\"labels\":{\"alertname\":\"X\"}}]";
    assert_int_equal(alert_http_post("127.0.0.1", port, "/api/v2/alerts", body, strlen(body), 2000, -1,
                                     &status, err, sizeof(err)),
                     0);
    pthread_join(th, NULL);
    close(r.lfd);
    assert_int_equal(status, 200);
    assert_true(strncmp(r.last, "POST /api/v2/alerts HTTP/1.1\r\n", 30) == 0);
    assert_non_null(strstr(r.last, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(r.last, body));
}

static void test_post_hanging_receiver_times_out(void **state)
{
    (void)state;
    receiver_t r = {.answer = 0};
    pthread_t th;
    receiver_start(&r, &th);
    char port[8], err[256] = "";
    snprintf(port, sizeof(port), "%d", r.port);
    int status = 0;
    int64_t t0 = util_now_ms();
    int rc = alert_http_post("127.0.0.1", port, "/", "{}", 2, 300, -1, &status, err, sizeof(err));
    int64_t took = util_now_ms() - t0;
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(took >= 250 && took < 2500);
    pthread_join(th, NULL);
    close(r.lfd);
    /* a closed port is refused */
    rc = alert_http_post("127.0.0.1", port, "/", "{}", 2, 1000, -1, &status, err, sizeof(err));
    assert_int_equal(rc, -ECONNREFUSED);
}

static void test_delivery_thread_retries(void **state)
{
    (void)state;
    /* a receiver that first refuses (nothing listening yet), then answers: the job is retried */
    receiver_t r = {.answer = 200};
    r.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int one = 1;
    setsockopt(r.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(r.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(r.lfd, (struct sockaddr *)&sa, &sl);
    r.port = ntohs(sa.sin_port);
    char url[64], err[256] = "";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", r.port);
    alert_delivery_opts_t o = {.webhook_url = url,
                               .timeout_ms = 1000,
                               .max_attempts = 5,
                               .backoff_initial_ms = 200,
                               .backoff_max_ms = 1000,
                               .queue_max = 8};
    alert_delivery_t *d = NULL;
    assert_int_equal(alert_delivery_new(&o, &d, err, sizeof(err)), 0);
    assert_true(alert_delivery_has(d, DELIVERY_WEBHOOK));
    assert_false(alert_delivery_has(d, DELIVERY_ALERTMANAGER));
    alert_delivery_send(d, DELIVERY_WEBHOOK, strdup("{\"status\":\"firing\"}")); /* refused: not listening */
    usleep(100 * 1000);
    assert_int_equal(listen(r.lfd, 4), 0);
    pthread_t th;
    pthread_create(&th, NULL, receiver_main, &r);
    pthread_join(th, NULL); /* returns once the retried POST was answered */
    assert_int_equal(r.requests, 1);
    assert_non_null(strstr(r.last, "POST /hook HTTP/1.1"));
    assert_non_null(strstr(r.last, "{\"status\":\"firing\"}"));
    alert_delivery_free(d);
    close(r.lfd);

    /* a bad URL is refused with the variable's name */
    o.webhook_url = "https://x";
    assert_int_equal(alert_delivery_new(&o, &d, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ALERT_WEBHOOK_URL"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_resolve),
        cmocka_unit_test(test_severities),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_post_answers),
        cmocka_unit_test(test_post_hanging_receiver_times_out),
        cmocka_unit_test(test_delivery_thread_retries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
