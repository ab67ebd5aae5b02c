/* SPDX-License-Identifier: Apache-2.0 */
/* Alert delivery thread and its HTTP/1.1 client; see alertmanager.h for the design. */
#include "monitor/alertmanager.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "monitor/metrics.h"

#define RESPONSE_HEAD_MAX 16384

typedef struct job {
    struct job *next;
    delivery_receiver_t receiver;
    char *body;
    int attempts;
    int64_t due_ms;
} job_t;

typedef struct target {
    bool set;
    char host[256], port[16], path[1024];
} target_t;

enum { OUT_SUCCESS, OUT_FAILURE, OUT_DROPPED, OUT_N };

struct alert_delivery {
    alert_delivery_opts_t o;
    target_t targets[DELIVERY_RECEIVERS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    job_t *queue;
    size_t queued;
    int stop_pipe[2];
    uint32_t slots[DELIVERY_RECEIVERS][OUT_N];
};

static const char *const receiver_names[] = {"alertmanager", "webhook"};
static const char *const outcome_names[] = {"success", "failure", "dropped"};

int alert_http_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen, char *path,
                         size_t pathlen, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "only http:// URLs are supported (put a local proxy in front for https)");
        return -EINVAL;
    }
    const char *p = url + 7, *hs, *he;
    const char *at = memchr(p, '@', strcspn(p, "/?#"));
    if (at) {
        snprintf(err, errlen, "credentials in the URL (user:password@host) are not supported: the "
                              "alert receivers are reached without authentication (put a local proxy "
                              "in front for that)");
        return -EINVAL;
    }
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) {
            snprintf(err, errlen, "unterminated [IPv6] host");
            return -EINVAL;
        }
        p = he + 1;
    } else {
        hs = p;
        while (*p && *p != ':' && *p != '/')
            p++;
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= hostlen) {
        snprintf(err, errlen, "missing or too long host");
        return -EINVAL;
    }
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    snprintf(port, portlen, "80");
    if (*p == ':') {
        const char *ps = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        int64_t pn;
        char buf[16];
        if (p == ps || (size_t)(p - ps) >= sizeof(buf)) {
            snprintf(err, errlen, "bad port");
            return -EINVAL;
        }
        memcpy(buf, ps, (size_t)(p - ps));
        buf[p - ps] = '\0';
        if (util_parse_int64(buf, 1, 65535, &pn) < 0) {
            snprintf(err, errlen, "bad port");
            return -EINVAL;
        }
        snprintf(port, portlen, "%d", (int)pn);
    }
    if (*p && *p != '/') {
        snprintf(err, errlen, "unexpected character after the host");
        return -EINVAL;
    }
    const char *path_s = *p ? p : "/";
    if (strlen(path_s) >= pathlen) {
        snprintf(err, errlen, "path too long");
        return -EINVAL;
    }
    for (const char *c = path_s; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf(err, errlen, "control character or space in the path");
            return -EINVAL;
        }
    snprintf(path, pathlen, "%s", path_s);
    return 0;
}

/* Waits for events on fd or stop_fd until deadline. 0 ready, -ETIMEDOUT, -ECANCELED. */
static int wait_fd(int fd, short events, int stop_fd, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - util_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = stop_fd, .events = POLLIN}};
        int n = poll(p, stop_fd >= 0 ? 2 : 1, (int)(left > 1000 ? 1000 : left));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n <= 0)
            continue;
        if (stop_fd >= 0 && (p[1].revents & POLLIN))
            return -ECANCELED;
        if (p[0].revents)
            return 0;
    }
}

int alert_http_post(const char *host, const char *port, const char *path, const char *body, size_t len,
                    int timeout_ms, int stop_fd, int *ret_status, char *err, size_t errlen)
{
    int64_t deadline = util_now_ms() + timeout_ms;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int fd = -1, rc;
    char *req = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -EHOSTUNREACH;
    }
    rc = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            rc = 0;
            break;
        }
        if (errno == EINPROGRESS) {
            rc = wait_fd(fd, POLLOUT, stop_fd, deadline);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
            if (rc == 0)
                rc = -(soerr ? soerr : ECONNREFUSED);
        } else {
            rc = -errno;
        }
        close(fd);
        fd = -1;
        if (rc == -ETIMEDOUT || rc == -ECANCELED)
            break;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errlen, "connect %s:%s: %s", host, port, strerror(-rc));
        return rc;
    }
    int hl =
        asprintf(&req,
                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: aimedres/" AIMEDRES_VERSION
                 "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                 path, host, port, len);
    if (hl < 0) {
        req = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    const char *parts[2] = {req, body};
    size_t lens[2] = {(size_t)hl, len};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t w = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                if ((rc = wait_fd(fd, POLLOUT, stop_fd, deadline)) < 0)
                    goto fail_msg;
                continue;
            }
            rc = -errno;
            goto fail_msg;
        }
    }
    char head[RESPONSE_HEAD_MAX];
    size_t got = 0;
    for (;;) {
        if (got > 0 && memchr(head, '\n', got))
            break;
        if (got + 1 >= sizeof(head)) {
            rc = -EPROTO;
            goto fail_msg;
        }
        ssize_t r = recv(fd, head + got, sizeof(head) - 1 - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0) {
            rc = -EPROTO;
            goto fail_msg;
        }
        if (errno == EAGAIN || errno == EINTR) {
            if ((rc = wait_fd(fd, POLLIN, stop_fd, deadline)) < 0)
                goto fail_msg;
            continue;
        }
        rc = -errno;
        goto fail_msg;
    }
    head[got] = '\0';
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %3d", &status) != 1 || status < 100 || status > 599) {
        rc = -EPROTO;
        goto fail_msg;
    }
    *ret_status = status;
    free(req);
    close(fd);
    return 0;
fail_msg:
    snprintf(err, errlen, "%s:%s%s: %s", host, port, path,
             rc == -EPROTO ? "not an HTTP response" : strerror(-rc));
fail:
    free(req);
    close(fd);
    return rc;
}

/* ---- delivery thread ---- */

static void count(alert_delivery_t *d, delivery_receiver_t r, int outcome)
{
    metrics_counter_add(d->slots[r][outcome], 1);
}

static void job_free(job_t *j)
{
    if (j) {
        free(j->body);
        free(j);
    }
}

/* Inserts j keeping the queue ordered by due time. Caller holds mu. */
static void insert_job(alert_delivery_t *d, job_t *j)
{
    job_t **pp = &d->queue;
    while (*pp && (*pp)->due_ms <= j->due_ms)
        pp = &(*pp)->next;
    j->next = *pp;
    *pp = j;
    d->queued++;
}

static void *delivery_main(void *arg)
{
    alert_delivery_t *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        if (!d->queue) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        int64_t now = util_now_ms();
        if (d->queue->due_ms > now) {
            int64_t due = d->queue->due_ms;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait_ms = due - now;
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&d->cv, &d->mu, &ts);
            continue;
        }
        job_t *j = d->queue;
        d->queue = j->next;
        d->queued--;
        pthread_mutex_unlock(&d->mu);

        const target_t *t = &d->targets[j->receiver];
        char err[512] = "";
        int status = 0;
        j->attempts++;
        int rc = alert_http_post(t->host, t->port, t->path, j->body, strlen(j->body), d->o.timeout_ms,
                                 d->stop_pipe[0], &status, err, sizeof(err));
        bool ok = rc == 0 && status >= 200 && status < 300;
        if (ok) {
            count(d, j->receiver, OUT_SUCCESS);
        } else if (rc != -ECANCELED) {
            count(d, j->receiver, OUT_FAILURE);
            log_msg(LOG_WARNING, "alert delivery failed", "{s:s,s:i,s:s,s:i}", "receiver",
                    receiver_names[j->receiver], "status", status, "error", rc < 0 ? err : "non-2xx answer",
                    "attempt", j->attempts);
        }
        pthread_mutex_lock(&d->mu);
        if (ok || rc == -ECANCELED || d->stop) {
            job_free(j);
        } else if (j->attempts >= d->o.max_attempts) {
            count(d, j->receiver, OUT_DROPPED);
            job_free(j);
        } else {
            int64_t backoff = d->o.backoff_initial_ms;
            for (int i = 1; i < j->attempts && backoff < d->o.backoff_max_ms; i++)
                backoff *= 2;
            if (backoff > d->o.backoff_max_ms)
                backoff = d->o.backoff_max_ms;
            j->due_ms = util_now_ms() + backoff;
            bool newer = false; /* a newer Alertmanager state supersedes this one */
            for (job_t *q = d->queue; q; q = q->next)
                newer |= j->receiver == DELIVERY_ALERTMANAGER && q->receiver == DELIVERY_ALERTMANAGER;
            if (newer) {
                count(d, j->receiver, OUT_DROPPED);
                job_free(j);
            } else {
                insert_job(d, j);
            }
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int alert_delivery_new(const alert_delivery_opts_t *opts, alert_delivery_t **ret, char *err, size_t errlen)
{
    alert_delivery_t *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->o = *opts;
    d->stop_pipe[0] = d->stop_pipe[1] = -1;
    const char *urls[DELIVERY_RECEIVERS] = {opts->alertmanager_url, opts->webhook_url};
    const char *vars[DELIVERY_RECEIVERS] = {"ALERTMANAGER_URL", "ALERT_WEBHOOK_URL"};
    for (int r = 0; r < DELIVERY_RECEIVERS; r++) {
        if (!urls[r] || !*urls[r])
            continue;
        target_t *t = &d->targets[r];
        char why[256];
        if (alert_http_parse_url(urls[r], t->host, sizeof(t->host), t->port, sizeof(t->port), t->path,
                                 sizeof(t->path), why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: %s", vars[r], why);
            free(d);
            return -EINVAL;
        }
        if (r == DELIVERY_ALERTMANAGER) {
            /* the base URL of Alertmanager (optionally with a route prefix) */
            size_t pl = strlen(t->path);
            while (pl > 0 && t->path[pl - 1] == '/')
                t->path[--pl] = '\0';
            static const char api[] = "/api/v2/alerts";
            if (pl < sizeof(api) - 1 || strcmp(t->path + pl - (sizeof(api) - 1), api) != 0) {
                if (pl + sizeof(api) > sizeof(t->path)) {
                    snprintf(err, errlen, "%s: path too long", vars[r]);
                    free(d);
                    return -EINVAL;
                }
                memcpy(t->path + pl, api, sizeof(api));
            }
        }
        t->set = true;
    }
    metric_family_t *f = metrics_family("alert_deliveries_total",
                                        "Alert delivery attempts by receiver and outcome (success, failure = "
                                        "attempt failed, dropped = given up or superseded).",
                                        METRIC_COUNTER, NULL, 0);
    for (int r = 0; r < DELIVERY_RECEIVERS; r++)
        for (int o = 0; o < OUT_N; o++) {
            char labels[128];
            snprintf(labels, sizeof(labels), "receiver=\"%s\",outcome=\"%s\"", receiver_names[r],
                     outcome_names[o]);
            d->slots[r][o] = d->targets[r].set ? metrics_series(f, labels) : UINT32_MAX;
        }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pipe2(d->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pthread_create(&d->thread, NULL, delivery_main, d)) {
        snprintf(err, errlen, "cannot start the alert delivery thread");
        alert_delivery_free(d);
        return -EAGAIN;
    }
    d->started = true;
    *ret = d;
    return 0;
}

void alert_delivery_free(alert_delivery_t *d)
{
    if (!d)
        return;
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        ssize_t w = write(d->stop_pipe[1], "x", 1);
        (void)w;
        pthread_join(d->thread, NULL);
    }
    while (d->queue) {
        job_t *j = d->queue;
        d->queue = j->next;
        job_free(j);
    }
    if (d->stop_pipe[0] >= 0)
        close(d->stop_pipe[0]);
    if (d->stop_pipe[1] >= 0)
        close(d->stop_pipe[1]);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}

int alert_delivery_has(const alert_delivery_t *d, delivery_receiver_t r)
{
    return d && r < DELIVERY_RECEIVERS && d->targets[r].set;
}

void alert_delivery_send(alert_delivery_t *d, delivery_receiver_t r, char *body)
{
    if (!alert_delivery_has(d, r) || !body) {
        free(body);
        return;
    }
    job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        free(body);
        return;
    }
    j->receiver = r;
    j->body = body;
    j->due_ms = util_now_ms();
    pthread_mutex_lock(&d->mu);
    if (r == DELIVERY_ALERTMANAGER) {
        for (job_t **pp = &d->queue; *pp;) {
            if ((*pp)->receiver == DELIVERY_ALERTMANAGER) {
                job_t *old = *pp;
                *pp = old->next;
                d->queued--;
                count(d, r, OUT_DROPPED);
                job_free(old);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    while (d->queued >= d->o.queue_max && d->queue) {
        /* full: drop the oldest queued job */
        job_t **pp = &d->queue, **oldest = pp;
        for (; *pp; pp = &(*pp)->next)
            if ((*pp)->due_ms < (*oldest)->due_ms)
                oldest = pp;
        job_t *old = *oldest;
        *oldest = old->next;
        d->queued--;
        count(d, old->receiver, OUT_DROPPED);
        job_free(old);
    }
    insert_job(d, j);
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}
