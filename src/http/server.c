/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP server on libevent; see server.h for the threading model and lifecycle.
 *
 * DESIGN
 * - One worker = one thread, one event_base, one evhttp, one listening socket bound with
 *   SO_REUSEPORT to the same address. Nothing on the request path is shared between
 *   workers except atomic counters.
 * - Cross-thread work reaches a worker through its post queue (mutex-protected list) and
 *   its wake event, activated with event_active() (libevent is initialised with pthreads
 *   locking, so that call is thread-safe). Control commands (drain, stop) use the same
 *   wake event with atomic flags.
 * - A deferred request stays owned by libevent's connection; if the client goes away,
 *   libevent detaches the request and frees it when we reply, so replying late is safe.
 * - inflight counts requests from the generic callback until their response is fully
 *   written (or their connection dies); draining waits for it to reach zero. */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h> /* security (issue 5): TLS */
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h> /* security (issue 5): TLS */
#include <netinet/tcp.h> /* security (issue 5): TCP_NODELAY for TLS */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "monitor/metrics.h"

#define MAX_WORKERS 256
#define CMD_DRAIN 1
#define CMD_STOP 2

typedef struct post_item {
    struct post_item *next;
    http_ctx_t *ctx;
    http_post_fn fn;
    void *arg;
} post_item_t;

typedef struct worker {
    http_server_t *srv;
    int index;
    pthread_t thread;
    bool started;
    struct event_base *base;
    struct evhttp *http;
    int listen_fd;
    struct evhttp_bound_socket *bound;
    struct event *wake;
    atomic_int cmd;
    pthread_mutex_t lock;
    post_item_t *head, *tail;
} worker_t;

struct http_server {
    http_server_opts_t opts;
    char *host;
    char *cors;
    const http_route_t *routes;
    size_t n_routes;
    void *app;
    int port;
    int n_workers;
    worker_t *workers;
    atomic_bool draining;
    atomic_uint_fast64_t inflight;
    atomic_uint_fast64_t requests;
    /* Request metrics: series slots cached by (method, route, status) so the hot path
     * never looks a series up; 0 = not created yet, else slot + 1. */
    metric_family_t *m_requests, *m_duration;
    _Atomic uint32_t *count_slots; /* N_METHODS * (n_routes + 1) * N_STATUS */
    _Atomic uint32_t *dur_slots;   /* N_METHODS * (n_routes + 1) */
};

#define N_METHODS 9
static const int known_status[] = {200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408,
                                   409, 413, 414, 415, 422, 429, 431, 500, 501, 502, 503, 504};
#define N_STATUS (sizeof(known_status) / sizeof(known_status[0]))

struct http_ctx {
    struct evhttp_request *req;
    worker_t *worker;
    const http_route_t *route;
    unsigned method;
    int64_t start_ns;
    char request_id[64];
    char peer[64];
    char origin_ok; /* 1 if the request's Origin is allowed */
    char user[128];
    char role[32];
    router_match_t match;
};

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static void init_evthread(void)
{
    evthread_use_pthreads();
}

/* ---------- listeners ---------- */

static int open_listener(const char *host, int port, int *ret_port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "HOST: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(saved));
        return -saved;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* ---------- request context ---------- */

void *http_ctx_app(const http_ctx_t *ctx)
{
    return ctx->worker->srv->app;
}

const char *http_ctx_param(const http_ctx_t *ctx, size_t i)
{
    return i < ctx->match.n_params ? ctx->match.params[i] : NULL;
}

const char *http_ctx_request_id(const http_ctx_t *ctx)
{
    return ctx->request_id;
}

const http_route_t *http_ctx_route(const http_ctx_t *ctx)
{
    return ctx->route;
}

void http_ctx_set_principal(http_ctx_t *ctx, const char *user, const char *role)
{
    snprintf(ctx->user, sizeof(ctx->user), "%s", user ? user : "");
    snprintf(ctx->role, sizeof(ctx->role), "%s", role ? role : "");
}

const char *http_ctx_user(const http_ctx_t *ctx)
{
    return ctx->user[0] ? ctx->user : NULL;
}

const char *http_ctx_role(const http_ctx_t *ctx)
{
    return ctx->role[0] ? ctx->role : NULL;
}

double http_ctx_elapsed_ms(const http_ctx_t *ctx)
{
    return (double)(util_mono_ns() - ctx->start_ns) / 1e6;
}

const char *http_ctx_peer(const http_ctx_t *ctx)
{
    return ctx->peer;
}

/* security (issue 5, audit3): the authorizer replaces the peer with the client address found
 * behind a trusted proxy (security/clientaddr.c). */
void http_ctx_set_peer(http_ctx_t *ctx, const char *addr)
{
    snprintf(ctx->peer, sizeof(ctx->peer), "%s", addr ? addr : "");
}

const char *http_ctx_query(const http_ctx_t *ctx)
{
    const char *uri = evhttp_request_get_uri(ctx->req);
    const char *q = uri ? strchr(uri, '?') : NULL;
    if (!q)
        return NULL;
    return q + 1;
}

int http_query_param(const http_ctx_t *ctx, const char *name, char *buf, size_t len)
{
    const char *q = http_ctx_query(ctx);
    if (!q)
        return -ENOENT;
    /* the fragment, if a client sent one, is not part of the query */
    char tmp[ROUTER_MAX_PATH + 1];
    size_t n = strcspn(q, "#");
    if (n > ROUTER_MAX_PATH)
        return -EINVAL;
    memcpy(tmp, q, n);
    tmp[n] = '\0';
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(tmp, &params) < 0) {
        evhttp_clear_headers(&params);
        return -EINVAL;
    }
    const char *v = evhttp_find_header(&params, name);
    int rc = -ENOENT;
    if (v) {
        snprintf(buf, len, "%s", v);
        rc = 0;
    }
    evhttp_clear_headers(&params);
    return rc;
}

bool http_ctx_is_json(const http_ctx_t *ctx)
{
    const char *ct = http_ctx_header(ctx, "Content-Type");
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    char next = ct[sizeof(want) - 1];
    return next == '\0' || next == ';' || next == ' ';
}

const char *http_ctx_header(const http_ctx_t *ctx, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(ctx->req), name);
}

void http_ctx_body(http_ctx_t *ctx, const char **ret_data, size_t *ret_len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(ctx->req);
    size_t len = evbuffer_get_length(in);
    *ret_len = len;
    *ret_data = len ? (const char *)evbuffer_pullup(in, -1) : "";
}

void http_ctx_add_header(http_ctx_t *ctx, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(ctx->req), name, value);
}

static bool origin_allowed(const char *list, const char *origin)
{
    if (!list || !origin || !*origin)
        return false;
    if (strcmp(list, "*") == 0)
        return true;
    size_t olen = strlen(origin);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if ((size_t)(t - p) == olen && strncmp(p, origin, olen) == 0)
            return true;
        p = e;
    }
    return false;
}

static void add_common_headers(http_ctx_t *ctx, const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(ctx->req);
    http_server_t *srv = ctx->worker->srv;
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-ID", ctx->request_id);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Content-Security-Policy", "frame-ancestors 'none'");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    if (srv->opts.hsts)
        evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
    if (ctx->origin_ok) {
        const char *origin = http_ctx_header(ctx, "Origin");
        evhttp_add_header(h, "Access-Control-Allow-Origin", strcmp(srv->cors, "*") == 0 ? "*" : origin);
        evhttp_add_header(h, "Vary", "Origin");
    }
    if (atomic_load(&srv->draining))
        evhttp_add_header(h, "Connection", "close");
}

static int method_index(unsigned method)
{
    for (int i = 0; i < N_METHODS; i++)
        if (method == (1u << i))
            return i;
    return 0;
}

static uint32_t series_for(http_server_t *srv, metric_family_t *fam, _Atomic uint32_t *cache, int mi,
                           size_t ri, int status, bool with_status)
{
    if (cache) {
        uint32_t c = atomic_load_explicit(cache, memory_order_relaxed);
        if (c)
            return c - 1;
    }
    char route[300], labels[400];
    metrics_escape(ri < srv->n_routes ? srv->routes[ri].pattern : "unmatched", route, sizeof(route));
    if (with_status)
        snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\",status=\"%d\"",
                 router_method_name(1u << mi), route, status);
    else
        snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", router_method_name(1u << mi), route);
    uint32_t slot = metrics_series(fam, labels);
    if (cache && slot != UINT32_MAX)
        atomic_store_explicit(cache, slot + 1, memory_order_relaxed);
    return slot;
}

static void count_request(http_ctx_t *ctx, int status, double seconds)
{
    http_server_t *srv = ctx->worker->srv;
    int mi = method_index(ctx->method);
    size_t ri = ctx->route ? (size_t)(ctx->route - srv->routes) : srv->n_routes;
    size_t si = 0;
    while (si < N_STATUS && known_status[si] != status)
        si++;
    _Atomic uint32_t *cc =
        si < N_STATUS ? &srv->count_slots[((size_t)mi * (srv->n_routes + 1) + ri) * N_STATUS + si] : NULL;
    metrics_counter_add(series_for(srv, srv->m_requests, cc, mi, ri, status, true), 1);
    _Atomic uint32_t *dc = &srv->dur_slots[(size_t)mi * (srv->n_routes + 1) + ri];
    metrics_histogram_observe(srv->m_duration, series_for(srv, srv->m_duration, dc, mi, ri, status, false),
                              seconds);
}

/* A request stays in flight until its response is fully written (on_complete) or its
 * connection dies first (closecb): draining on "reply queued" would let the workers stop
 * with responses half-sent. evhttp serves one request at a time per connection, so one
 * closecb slot per connection is enough; on_complete clears it before the connection can
 * be freed. */
static void response_written(struct evhttp_request *req, void *arg)
{
    http_server_t *srv = arg;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        evhttp_connection_set_closecb(conn, NULL, NULL);
    atomic_fetch_sub(&srv->inflight, 1);
}

static void connection_lost(struct evhttp_connection *conn, void *arg)
{
    http_server_t *srv = arg;
    evhttp_connection_set_closecb(conn, NULL, NULL);
    atomic_fetch_sub(&srv->inflight, 1);
}

static void finish(http_ctx_t *ctx, int status, const char *content_type, struct evbuffer *body)
{
    http_server_t *srv = ctx->worker->srv;
    add_common_headers(ctx, content_type);
    struct evhttp_connection *conn = evhttp_request_get_connection(ctx->req);
    if (conn) {
        evhttp_request_set_on_complete_cb(ctx->req, response_written, srv);
        evhttp_connection_set_closecb(conn, connection_lost, srv);
    } else {
        atomic_fetch_sub(&srv->inflight, 1); /* client already gone: the reply is dropped */
    }
    evhttp_send_reply(ctx->req, status, NULL, body);
    double ms = (double)(util_mono_ns() - ctx->start_ns) / 1e6;
    count_request(ctx, status, ms / 1e3);
    log_request(ctx->request_id, router_method_name(ctx->method),
                ctx->route ? ctx->route->pattern : "unmatched", status, ms);
    free(ctx);
}

static void free_cleanup(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

void http_reply_json(http_ctx_t *ctx, int status, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    if (body && status != 204) {
        /* 9 significant digits read back every float32 model output exactly. Dumped into
         * one buffer, then added whole: jansson's callback form costs an evbuffer_add per
         * token. */
        const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(9);
        char stack[4096];
        size_t n = json_dumpb(body, stack, sizeof(stack), flags);
        if (n > 0 && n <= sizeof(stack)) {
            evbuffer_add(buf, stack, n);
        } else if (n > sizeof(stack)) {
            char *big = malloc(n);
            if (big && json_dumpb(body, big, n, flags) == n)
                evbuffer_add_reference(buf, big, n, free_cleanup, NULL); /* freed once written */
            else
                free(big);
        }
    }
    json_decref(body);
    finish(ctx, status, "application/json", buf);
    evbuffer_free(buf);
}

void http_reply_text(http_ctx_t *ctx, int status, const char *content_type, char *data, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (data)
        evbuffer_add_reference(buf, data, len, free_cleanup, NULL); /* freed once written */
    finish(ctx, status, content_type, buf);
    evbuffer_free(buf);
}

void http_reply_error(http_ctx_t *ctx, int status, const char *code, json_t *details, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *err =
        json_pack("{s:s,s:s,s:o}", "code", code, "message", msg, "details", details ? details : json_null());
    http_reply_json(ctx, status, json_pack("{s:o}", "error", err));
}

/* ---------- cross-thread posting ---------- */

void http_ctx_post(http_ctx_t *ctx, http_post_fn fn, void *arg)
{
    worker_t *w = ctx->worker;
    post_item_t *it = malloc(sizeof(*it));
    if (!it)
        abort(); /* cannot lose a completion; out of memory here is not recoverable */
    it->next = NULL;
    it->ctx = ctx;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wake, EV_READ, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    pthread_mutex_lock(&w->lock);
    post_item_t *it = w->head;
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (it) {
        post_item_t *next = it->next;
        it->fn(it->ctx, it->arg);
        free(it);
        it = next;
    }
    int cmd = atomic_exchange(&w->cmd, 0);
    if ((cmd & CMD_DRAIN) && w->bound) {
        evhttp_del_accept_socket(w->http, w->bound); /* closes the listening fd */
        w->bound = NULL;
        w->listen_fd = -1;
    }
    if (cmd & CMD_STOP)
        event_base_loopbreak(w->base);
}

/* ---------- dispatch ---------- */

static bool sane_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 63 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         c == '-' || c == '_' || c == '.'))
            return false;
    }
    return n > 0;
}

static void options_reply(http_ctx_t *ctx, unsigned allowed)
{
    char allow[128];
    router_allow_header(allowed | EVHTTP_REQ_OPTIONS, allow, sizeof(allow));
    http_ctx_add_header(ctx, "Allow", allow);
    if (ctx->origin_ok) {
        http_ctx_add_header(ctx, "Access-Control-Allow-Methods", allow);
        http_ctx_add_header(ctx, "Access-Control-Allow-Headers",
                            "Content-Type, Authorization, X-API-Key, X-Request-ID");
        http_ctx_add_header(ctx, "Access-Control-Max-Age", "600");
    }
    http_reply_json(ctx, 204, NULL);
}

static void generic_cb(struct evhttp_request *req, void *arg)
{
    worker_t *w = arg;
    http_server_t *srv = w->srv;
    http_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    atomic_fetch_add(&srv->inflight, 1);
    atomic_fetch_add(&srv->requests, 1);
    ctx->req = req;
    ctx->worker = w;
    ctx->start_ns = util_mono_ns();
    ctx->method = (unsigned)evhttp_request_get_command(req);

    const char *rid = http_ctx_header(ctx, "X-Request-ID");
    if (rid && sane_request_id(rid))
        snprintf(ctx->request_id, sizeof(ctx->request_id), "%s", rid);
    else
        util_uuid7(ctx->request_id);

    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(conn, &addr, &port);
        snprintf(ctx->peer, sizeof(ctx->peer), "%s", addr ? addr : "");
    }
    ctx->origin_ok = origin_allowed(srv->cors, http_ctx_header(ctx, "Origin"));

    /* The path, without query string, still percent-encoded. */
    const char *uri = evhttp_request_get_uri(req);
    char path[ROUTER_MAX_PATH + 1];
    size_t plen = strcspn(uri, "?#");
    if (plen > ROUTER_MAX_PATH) {
        http_reply_error(ctx, 414, "uri_too_long", NULL, "request path longer than %d bytes",
                         ROUTER_MAX_PATH);
        return;
    }
    memcpy(path, uri, plen);
    path[plen] = '\0';

    unsigned m = ctx->method == EVHTTP_REQ_HEAD ? EVHTTP_REQ_GET : ctx->method;
    int rc = router_match(srv->routes, srv->n_routes, path, m, &ctx->match);
    ctx->route = ctx->match.route;
    if (ctx->method == EVHTTP_REQ_OPTIONS && (rc == 0 || rc == -EPERM)) {
        options_reply(ctx, ctx->match.allowed);
        return;
    }
    if (rc == -EPERM) {
        char allow[128];
        router_allow_header(ctx->match.allowed | EVHTTP_REQ_OPTIONS |
                                (ctx->match.allowed & EVHTTP_REQ_GET ? EVHTTP_REQ_HEAD : 0),
                            allow, sizeof(allow));
        http_ctx_add_header(ctx, "Allow", allow);
        http_reply_error(ctx, 405, "method_not_allowed", NULL, "method %s is not allowed here; allowed: %s",
                         router_method_name(ctx->method), allow);
        return;
    }
    if (rc < 0) {
        http_reply_error(ctx, rc == -EINVAL ? 400 : 404, rc == -EINVAL ? "invalid_path" : "not_found", NULL,
                         rc == -EINVAL ? "malformed request path" : "no resource at this path");
        return;
    }
    if (srv->opts.authorize && srv->opts.authorize(ctx, ctx->route, srv->opts.authorize_arg) != 0)
        return; /* the authorizer answered */
    ctx->route->handler(ctx);
}

/* security (issue 5): TLS. evhttp asks for each accepted connection's bufferevent; we hand
 * it an OpenSSL one in accepting state with a fresh SSL from the shared context. A client
 * speaking plain HTTP or an old protocol fails the handshake and the connection closes. */
static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new((SSL_CTX *)arg);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    else
        SSL_free(ssl);
    return bev;
}

/* One round of callbacks at a time, so the request lines logged by a round go out in one
 * write (log_thread_batch) as soon as the round ends: batches under load, line by line idle. */
static void *worker_main(void *arg)
{
    worker_t *w = arg;
    log_thread_batch(true);
    for (;;) {
        int rc = event_base_loop(w->base, EVLOOP_ONCE);
        log_thread_flush();
        if (rc != 0 || event_base_got_break(w->base) || event_base_got_exit(w->base))
            break;
    }
    log_thread_batch(false);
    return NULL;
}

/* epoll with a changelist: evhttp turns a connection's read and write interest on and off
 * for every request; the changelist folds those into at most one epoll_ctl per fd per round. */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* ---------- lifecycle ---------- */

int http_server_new(const http_server_opts_t *opts, const http_route_t *routes, size_t n_routes, void *app,
                    http_server_t **ret, char *err, size_t errlen)
{
    pthread_once(&evthread_once, init_evthread);
    if (opts->workers < 1 || opts->workers > MAX_WORKERS) {
        snprintf(err, errlen, "MAX_WORKERS: expected 1..%d", MAX_WORKERS);
        return -EINVAL;
    }
    http_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->opts = *opts;
    s->host = strdup(opts->host);
    s->cors = opts->cors_allowed_origins ? strdup(opts->cors_allowed_origins) : NULL;
    s->routes = routes;
    s->n_routes = n_routes;
    s->app = app;
    s->n_workers = opts->workers;
    s->workers = calloc((size_t)s->n_workers, sizeof(worker_t));
    s->m_requests =
        metrics_family("http_requests_total", "HTTP requests answered, by method, route and status.",
                       METRIC_COUNTER, NULL, 0);
    s->m_duration = metrics_family("http_request_duration_seconds",
                                   "Time from a request's arrival to its answer, by method and route.",
                                   METRIC_HISTOGRAM, metrics_latency_buckets, metrics_latency_buckets_n);
    s->count_slots = calloc(N_METHODS * (n_routes + 1) * N_STATUS, sizeof(*s->count_slots));
    s->dur_slots = calloc(N_METHODS * (n_routes + 1), sizeof(*s->dur_slots));
    if (!s->host || !s->workers || (opts->cors_allowed_origins && !s->cors) || !s->count_slots ||
        !s->dur_slots) {
        http_server_free(s);
        return -ENOMEM;
    }
    int port = opts->port;
    for (int i = 0; i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        w->srv = s;
        w->index = i;
        w->listen_fd = -1;
        pthread_mutex_init(&w->lock, NULL);
        int fd = open_listener(s->host, port, &port, err, errlen);
        if (fd < 0) {
            http_server_free(s);
            return fd;
        }
        w->listen_fd = fd;
        w->base = new_base();
        w->http = w->base ? evhttp_new(w->base) : NULL;
        w->wake = w->base ? event_new(w->base, -1, EV_PERSIST | EV_READ, wake_cb, w) : NULL;
        if (!w->http || !w->wake) {
            close(fd);
            w->listen_fd = -1;
            http_server_free(s);
            snprintf(err, errlen, "cannot create event loop");
            return -ENOMEM;
        }
        evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                                EVHTTP_REQ_PATCH);
        evhttp_set_max_body_size(w->http, (ev_ssize_t)opts->max_body_bytes);
        evhttp_set_max_headers_size(w->http, (ev_ssize_t)opts->max_header_bytes);
        evhttp_set_timeout(w->http, opts->timeout_s);
        evhttp_set_default_content_type(w->http, "application/json");
        evhttp_set_gencb(w->http, generic_cb, w);
        if (opts->tls_ctx) { /* security (issue 5): TLS */
            /* TLS writes a response as several records; without TCP_NODELAY (inherited by
             * accepted sockets) Nagle holds the last one for the client's delayed ACK. */
            int nodelay = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
            evhttp_set_bevcb(w->http, tls_bevcb, opts->tls_ctx);
        }
        w->bound = evhttp_accept_socket_with_handle(w->http, fd);
        if (!w->bound) {
            close(fd);
            w->listen_fd = -1;
            http_server_free(s);
            snprintf(err, errlen, "cannot accept on listener");
            return -EIO;
        }
    }
    s->port = port;
    *ret = s;
    return 0;
}

int http_server_port(const http_server_t *s)
{
    return s->port;
}

int http_server_start(http_server_t *s)
{
    for (int i = 0; i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0)
            return -rc;
        w->started = true;
    }
    return 0;
}

static void command(http_server_t *s, int cmd)
{
    for (int i = 0; i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        if (!w->wake)
            continue;
        atomic_fetch_or(&w->cmd, cmd);
        event_active(w->wake, EV_READ, 0);
    }
}

void http_server_drain(http_server_t *s)
{
    if (!atomic_exchange(&s->draining, true))
        command(s, CMD_DRAIN);
}

bool http_server_draining(const http_server_t *s)
{
    return atomic_load(&s->draining);
}

uint64_t http_server_inflight(const http_server_t *s)
{
    return atomic_load(&s->inflight);
}

uint64_t http_server_requests_total(const http_server_t *s)
{
    return atomic_load(&s->requests);
}

void http_server_stop(http_server_t *s)
{
    command(s, CMD_STOP);
    for (int i = 0; i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        if (w->started) {
            pthread_join(w->thread, NULL);
            w->started = false;
        }
    }
}

void http_server_free(http_server_t *s)
{
    if (!s)
        return;
    for (int i = 0; s->workers && i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        if (w->started) {
            atomic_fetch_or(&w->cmd, CMD_STOP);
            event_active(w->wake, EV_READ, 0);
            pthread_join(w->thread, NULL);
        }
        /* Completions posted after the loop stopped: their requests die with evhttp. */
        for (post_item_t *it = w->head; it;) {
            post_item_t *next = it->next;
            free(it->ctx);
            free(it);
            it = next;
        }
        if (w->http)
            evhttp_free(w->http); /* closes bound listeners and connections */
        else if (w->listen_fd >= 0)
            close(w->listen_fd);
        if (w->wake)
            event_free(w->wake);
        if (w->base)
            event_base_free(w->base);
        pthread_mutex_destroy(&w->lock);
    }
    free(s->workers);
    free(s->count_slots);
    free(s->dur_slots);
    free(s->host);
    free(s->cors);
    free(s);
}
