/* SPDX-License-Identifier: Apache-2.0 */
/* Alert delivery off the request path: Alertmanager's v2 API (POST /api/v2/alerts with
 * a JSON array of alerts) and an optional generic webhook, each POST made by one delivery
 * thread with a minimal HTTP/1.1 client (plain http, deadline per attempt), retried with
 * exponential backoff. The queue is bounded: when a receiver is down or hangs, jobs are
 * dropped (counted), never waited for, so nothing upstream ever blocks on a receiver.
 *
 * DESIGN: producers (the monitor loop) append jobs under the queue mutex and signal; the
 * thread takes the job that is due first, sends it without holding the mutex, and on
 * failure puts it back with due = now + backoff (initial * 2^attempt, capped) until
 * max_attempts. A new Alertmanager job replaces one still queued (each carries the whole
 * alert state, as Prometheus re-sends it); webhook jobs are transitions and are kept in
 * order. Shutdown writes to a pipe that every wait in the client also polls. */
#ifndef AIMEDRES_MONITOR_ALERTMANAGER_H
#define AIMEDRES_MONITOR_ALERTMANAGER_H

#include <stddef.h>

typedef enum { DELIVERY_ALERTMANAGER = 0, DELIVERY_WEBHOOK, DELIVERY_RECEIVERS } delivery_receiver_t;

typedef struct alert_delivery_opts {
    const char *alertmanager_url; /* http://host:port[/prefix]; NULL = none */
    const char *webhook_url;      /* http://host:port/path; NULL = none */
    int timeout_ms;               /* per attempt (connect + send + status line) */
    int max_attempts;
    int backoff_initial_ms, backoff_max_ms;
    size_t queue_max;
} alert_delivery_opts_t;

typedef struct alert_delivery alert_delivery_t;

/* Parses the URLs (only http:// is supported; the message says so) and starts the thread.
 * -EINVAL with err for a bad URL. */
int alert_delivery_new(const alert_delivery_opts_t *opts, alert_delivery_t **ret, char *err, size_t errlen);
/* Stops the thread (an attempt in flight is abandoned at once) and drops queued jobs. */
void alert_delivery_free(alert_delivery_t *d);

/* True if a receiver is configured. */
int alert_delivery_has(const alert_delivery_t *d, delivery_receiver_t r);
/* Queues body (JSON text, ownership transferred) for receiver r. Never blocks. */
void alert_delivery_send(alert_delivery_t *d, delivery_receiver_t r, char *body);

/* Parses "http://host[:port][/path]": host (IPv6 in brackets), port (default 80), path
 * (default "/"). -EINVAL with the reason. */
int alert_http_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen, char *path,
                         size_t pathlen, char *err, size_t errlen);

/* One POST of body as application/json to host:port path within timeout_ms; stop_fd
 * (or -1) readable aborts. Returns 0 with *ret_status, or -errno (-ETIMEDOUT,
 * -ECONNREFUSED, -EPROTO, -ECANCELED) with err. */
int alert_http_post(const char *host, const char *port, const char *path, const char *body, size_t len,
                    int timeout_ms, int stop_fd, int *ret_status, char *err, size_t errlen);

#endif
