/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server on libevent's event loop; see server.h for the threading model and
 * lifecycle, parse.h for the request parser.
 *
 * DESIGN
 * - One worker = one thread, one event_base, one listening socket bound with SO_REUSEPORT
 *   to the same address. Nothing on the request path is shared between workers except
 *   atomic counters.
 * - Connections are ours, not evhttp's (it used to be evhttp; see docs/benchmarks.md for the
 *   measurements that moved us): each has one input buffer that the request head is parsed
 *   in place in and the body stays in (no copy), one output buffer that responses are
 *   appended to, and one read event that stays registered while the connection lives, so a
 *   keep-alive request costs no epoll_ctl. Responses of a loop round go out after the
 *   round, each connection's in one write (after the round's log lines), so pipelined
 *   answers share a write.
 * - A connection serves one request at a time (HTTP/1.1 pipelining is answered in order);
 *   the request's http_ctx lives inside the connection. While a handler has deferred its
 *   answer (http_ctx_post), the connection stays open whatever the client does (a hang-up
 *   or a read timeout is acted on after the answer), so a late reply always has its
 *   context; only a write error closes the socket early, leaving the context to the reply.
 * - Cross-thread work reaches a worker through its post queue (mutex-protected list) and
 *   its wake event, activated with event_active() (libevent is initialised with pthreads
 *   locking, so that call is thread-safe). Control commands (drain, stop) use the same
 *   wake event with atomic flags.
 * - inflight counts requests from dispatch until their response is fully written (or their
 *   connection dies); draining waits for it to reach zero.
 * - Refusals by the protocol layer (400, 408, 413, 414, 431, 501) are JSON errors like every
 *   other, logged and counted with route "unmatched", and close the connection after a
 *   lingering close (the unread rest of the request is read and dropped for a moment, so
 *   the client sees the answer rather than a reset). */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h> /* security (issue 5): TLS */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "http/parse.h"
#include "monitor/metrics.h"

#define MAX_WORKERS 256
#define CMD_DRAIN 1
#define CMD_STOP 2
#define IN_INITIAL 4096
#define OUT_HIGH (256 * 1024) /* stop parsing pipelined requests while this much is unsent */
#define ACCEPTS_PER_ROUND 64
#define LINGER_S 2
#define LINGER_MAX_BYTES (1 << 20)

typedef struct post_item {
    struct post_item *next;
    http_ctx_t *ctx;
    http_post_fn fn;
    void *arg;
} post_item_t;

typedef struct conn conn_t;

typedef struct worker {
    http_server_t *srv;
    int index;
    pthread_t thread;
    bool started;
    struct event_base *base;
    int listen_fd;
    struct event *listener;
    struct event *accept_resume; /* re-enables accepting after EMFILE */
    struct event *wake;
    atomic_int cmd;
    bool drained; /* drain_in ran */
    pthread_mutex_t lock;
    post_item_t *head, *tail;
    conn_t *conns; /* every open connection (doubly linked) */
    conn_t *dirty; /* connections with output to write after this round */
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
    struct timeval read_tv, write_tv, linger_tv;
    size_t in_limit; /* input buffer cap: head + body + framing slack */
    atomic_bool draining;
    atomic_bool stopping;  /* http_server_stop or _free was called: the drain deadline is past */
    atomic_int drained_in; /* workers that ran drain_in */
    atomic_uint_fast64_t inflight;
    atomic_uint_fast64_t requests;
    pthread_mutex_t tls_lock; /* guards opts.tls_ctx: replaced while serving (http_server_swap_tls) */
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
    conn_t *conn;
    worker_t *worker;
    const http_route_t *route;
    const http_head_t *head; /* NULL for a request refused before its head was parsed */
    const char *body;
    size_t body_len;
    unsigned method;
    int64_t start_ns;
    char request_id[64];
    char peer[64];
    char origin_ok; /* 1 if the request's Origin is allowed */
    char user[128];
    char role[48]; /* the granting role, or every role held (roles_names) */
    char *extra; /* response headers added by the handler, "Name: value\r\n"... */
    size_t extra_len, extra_cap;
    router_match_t match;
};

enum conn_state {
    ST_HEAD,    /* reading a request head (or idle between requests) */
    ST_BODY,    /* head parsed, reading its body */
    ST_BUSY,    /* dispatched: the handler or a deferred completion owns the request */
    ST_CLOSING, /* the last response is queued; close once it is written */
    ST_LINGER,  /* response written, write side shut: reading and dropping until EOF */
};

struct conn {
    worker_t *w;
    conn_t *prev, *next;
    conn_t *dirty_next;
    bool dirty;
    bool in_dispatch; /* inside dispatch(): a reply must not re-enter conn_process */
    bool eof;         /* the peer closed its side */
    bool zombie;      /* socket closed while a request was busy; freed by its reply */
    bool read_paused; /* read event removed (buffer full while busy, EOF, linger) */
    bool close_after; /* no further request on this connection */
    bool sent_continue;
    bool drain_cut; /* the drain read this connection: nothing more is read from it */
    bool tls_ready;
    bool tls_read_wants_write;
    enum conn_state state;
    int fd;
    SSL *ssl;
    struct event *rev, *wev;
    bool wev_added;
    char peer[64];
    char *in;
    size_t in_len, in_cap, consumed;
    http_head_t head;
    size_t head_len, raw_off, body_len;
    http_chunk_state_t chunk;
    char *out;
    size_t out_len, out_off, out_cap;
    unsigned out_responses; /* responses in out not yet fully written */
    uint64_t req_start_ns;  /* first byte of the request being read (0: none); READ_TIMEOUT
                               bounds the whole request from here, not only each silence */
    bool deadline_armed;    /* rev's timeout is the request's rest, not read_tv */
    size_t lingered;
    http_ctx_t ctx;
};

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static void init_evthread(void)
{
    evthread_use_pthreads();
}

/* ---------- listeners ---------- */

/* True if a socket without SO_REUSEPORT can not bind the address: some process listens on
 * it. Our listeners use SO_REUSEPORT, which would otherwise let a second server (another
 * aimedres of the same user, started by mistake) join the group and take half the traffic. */
static bool address_in_use(const struct addrinfo *ai)
{
    int p = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (p < 0)
        return false;
    int one = 1;
    setsockopt(p, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* TIME_WAIT leftovers are fine */
    bool in_use = bind(p, ai->ai_addr, ai->ai_addrlen) < 0 && errno == EADDRINUSE;
    close(p);
    return in_use;
}

/* A listening socket on host:port with SO_REUSEPORT (one per worker). exclusive: refuse an
 * address that another process listens on (the first worker's; later workers join it). */
static int open_listener(const char *host, int port, bool exclusive, int *ret_port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s' to listen on: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = -1, saved = 0;
    bool taken = false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (exclusive && port != 0 && address_in_use(ai)) {
            taken = true;
            saved = EADDRINUSE;
            continue;
        }
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
        snprintf(err, errlen, "cannot listen on %s:%d: %s%s", host, port, strerror(saved),
                 taken ? " (another process listens on it: a second aimedres, or another server)" : "");
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
    const char *q = ctx->head ? strchr(ctx->head->target, '?') : NULL;
    return q ? q + 1 : NULL;
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
        return -E2BIG;
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
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    char next = ct[sizeof(want) - 1];
    return next == '\0' || next == ';' || next == ' ';
}

const char *http_ctx_header(const http_ctx_t *ctx, const char *name)
{
    return ctx->head ? http_head_field(ctx->head, name) : NULL;
}

void *http_server_swap_tls(http_server_t *s, void *tls_ctx)
{
    if (!s->opts.tls_ctx || !tls_ctx)
        return NULL; /* plain HTTP stays plain; TLS stays TLS */
    pthread_mutex_lock(&s->tls_lock);
    void *old = s->opts.tls_ctx;
    s->opts.tls_ctx = tls_ctx;
    pthread_mutex_unlock(&s->tls_lock);
    return old;
}

size_t http_ctx_header_count(const http_ctx_t *ctx, const char *name)
{
    return ctx->head ? http_head_field_count(ctx->head, name) : 0;
}

int http_ctx_header_list(const http_ctx_t *ctx, const char *name, char *buf, size_t len)
{
    size_t total = 0, count = 0;
    for (size_t i = 0; ctx->head && i < ctx->head->n_fields; i++)
        if (strcasecmp(ctx->head->fields[i].name, name) == 0)
            total += (count++ ? 2 : 0) + strlen(ctx->head->fields[i].value);
    if (len)
        buf[0] = '\0';
    if (count == 0)
        return -ENOENT;
    if (len == 0)
        return -ENOSPC;
    /* the joined list from byte skip on: the whole, or its last len - 1 bytes */
    size_t skip = total + 1 > len ? total - (len - 1) : 0, pos = 0, o = 0;
    bool found = false;
    for (size_t i = 0; i < ctx->head->n_fields; i++) {
        const http_field_t *f = &ctx->head->fields[i];
        if (strcasecmp(f->name, name) != 0)
            continue;
        const char *parts[2] = {found ? ", " : "", f->value};
        for (int k = 0; k < 2; k++)
            for (const char *c = parts[k]; *c; c++, pos++)
                if (pos >= skip)
                    buf[o++] = *c;
        found = true;
    }
    buf[o] = '\0';
    if (!skip)
        return 0;
    /* cut: from the first whole entry on */
    char *comma = strchr(buf, ',');
    if (!comma) {
        buf[0] = '\0';
        return -ENOSPC;
    }
    memmove(buf, comma + 1, strlen(comma + 1) + 1);
    return 1;
}

void http_ctx_body(http_ctx_t *ctx, const char **ret_data, size_t *ret_len)
{
    *ret_len = ctx->body_len;
    *ret_data = ctx->body_len ? ctx->body : "";
}

static bool ctx_extra_append(http_ctx_t *ctx, const char *s, size_t n)
{
    if (ctx->extra_len + n > ctx->extra_cap) {
        size_t cap = ctx->extra_cap ? ctx->extra_cap : 256;
        while (cap < ctx->extra_len + n)
            cap *= 2;
        char *p = realloc(ctx->extra, cap);
        if (!p)
            return false;
        ctx->extra = p;
        ctx->extra_cap = cap;
    }
    memcpy(ctx->extra + ctx->extra_len, s, n);
    ctx->extra_len += n;
    return true;
}

/* A name or value with CR, LF or NUL would split the response: such a header is dropped. */
void http_ctx_add_header(http_ctx_t *ctx, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") || !*name)
        return;
    size_t before = ctx->extra_len;
    if (!ctx_extra_append(ctx, name, strlen(name)) || !ctx_extra_append(ctx, ": ", 2) ||
        !ctx_extra_append(ctx, value, strlen(value)) || !ctx_extra_append(ctx, "\r\n", 2))
        ctx->extra_len = before;
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
        if ((size_t)(t - p) == olen && strncasecmp(p, origin, olen) == 0) /* scheme and host: any case */
            return true;
        p = e;
    }
    return false;
}

/* Index of a known method, or -1 (method="OTHER", uncached) for any other (fix24). */
static int method_index(unsigned method)
{
    for (int i = 0; i < N_METHODS; i++)
        if (method == (1u << i))
            return i;
    return -1;
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
    const char *mname = mi < 0 ? "OTHER" : router_method_name(1u << mi);
    if (with_status)
        snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\",status=\"%d\"", mname, route, status);
    else
        snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", mname, route);
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
    _Atomic uint32_t *cc = si < N_STATUS && mi >= 0
                               ? &srv->count_slots[((size_t)mi * (srv->n_routes + 1) + ri) * N_STATUS + si]
                               : NULL;
    metrics_counter_add(series_for(srv, srv->m_requests, cc, mi, ri, status, true), 1);
    _Atomic uint32_t *dc = mi >= 0 ? &srv->dur_slots[(size_t)mi * (srv->n_routes + 1) + ri] : NULL;
    metrics_histogram_observe(srv->m_duration, series_for(srv, srv->m_duration, dc, mi, ri, status, false),
                              seconds);
}

/* ---------- output ---------- */

static bool out_reserve(conn_t *c, size_t n)
{
    if (c->out_len + n <= c->out_cap)
        return true;
    if (c->out_off > 0) { /* slide the unsent rest down first */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n <= c->out_cap)
            return true;
    }
    size_t cap = c->out_cap ? c->out_cap : 2048;
    while (cap < c->out_len + n)
        cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p)
        return false;
    c->out = p;
    c->out_cap = cap;
    return true;
}

/* Callers reserve first. */
static void out_put(conn_t *c, const char *s, size_t n)
{
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

#define OUT_LIT(c, lit) out_put((c), (lit), sizeof(lit) - 1)

static void out_str(conn_t *c, const char *s)
{
    out_put(c, s, strlen(s));
}

static void out_uint(conn_t *c, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_put(c, tmp + i, sizeof(tmp) - i);
}

/* "Date: <IMF-fixdate>\r\n", formatted once a second per thread. */
static const char *date_header(size_t *len)
{
    static _Thread_local time_t cached_at;
    static _Thread_local char buf[64];
    static _Thread_local size_t n;
    time_t now = time(NULL);
    if (now != cached_at || n == 0) {
        struct tm tm;
        gmtime_r(&now, &tm);
        n = strftime(buf, sizeof(buf), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        cached_at = now;
    }
    *len = n;
    return buf;
}

static void mark_dirty(conn_t *c)
{
    if (c->dirty || c->zombie)
        return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

/* ---------- connection I/O (plain or TLS) ---------- */

enum { IO_AGAIN = -1, IO_EOF = -2, IO_ERR = -3 };

/* Asks for on_write once the socket can take more (bounded by WRITE_TIMEOUT). */
static void want_writable(conn_t *c)
{
    if (!c->wev_added) {
        event_add(c->wev, &c->w->srv->write_tv);
        c->wev_added = true;
    }
}

static int tls_result(conn_t *c, int rc, bool reading)
{
    int e = SSL_get_error(c->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ: return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        if (reading) {
            c->tls_read_wants_write = true;
            want_writable(c);
        }
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN: return IO_EOF;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0)
            return IO_EOF; /* the peer closed without close_notify */
        return errno == EAGAIN ? IO_AGAIN : IO_ERR;
    default:
        ERR_clear_error(); /* handshake failure, bad record: the connection is done */
        return IO_ERR;
    }
}

static ssize_t io_read(conn_t *c, char *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r = read(c->fd, buf, n);
        if (r > 0)
            return r;
        if (r == 0)
            return IO_EOF;
        return errno == EAGAIN || errno == EINTR ? IO_AGAIN : IO_ERR;
    }
    /* OpenSSL's error queue is per thread, and SSL_get_error reads it: whatever another
     * connection of this worker left there (a failed SSL_shutdown to a peer that reset)
     * would make this one's WANT_READ look fatal. Clear it before every call. */
    ERR_clear_error();
    if (!c->tls_ready) {
        errno = 0;
        int rc = SSL_accept(c->ssl);
        if (rc != 1)
            return tls_result(c, rc, true);
        c->tls_ready = true;
    }
    errno = 0;
    int rc = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    return rc > 0 ? rc : tls_result(c, rc, true);
}

static ssize_t io_write(conn_t *c, const char *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        return errno == EAGAIN || errno == EINTR ? IO_AGAIN : IO_ERR;
    }
    if (!c->tls_ready)
        return IO_AGAIN; /* nothing is written before the handshake ends */
    ERR_clear_error(); /* see io_read */
    errno = 0;
    int rc = SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    return rc > 0 ? rc : tls_result(c, rc, false);
}

static void dirty_unlink(conn_t *c)
{
    if (!c->dirty)
        return;
    for (conn_t **pp = &c->w->dirty; *pp; pp = &(*pp)->dirty_next)
        if (*pp == c) {
            *pp = c->dirty_next;
            break;
        }
    c->dirty = false;
}

/* Closes the socket side: events, TLS (with one close_notify, not waited for, when
 * notify), descriptor. */
static void release_io(conn_t *c, bool notify)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    c->rev = c->wev = NULL;
    if (c->ssl) {
        if (notify && c->tls_ready)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        ERR_clear_error(); /* a shutdown to a peer that reset leaves errors: not the next conn's */
    }
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void conn_free(conn_t *c)
{
    worker_t *w = c->w;
    dirty_unlink(c);
    if (c->prev)
        c->prev->next = c->next;
    else if (w->conns == c)
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    release_io(c, !c->zombie);
    free(c->ctx.extra);
    free(c->in);
    free(c->out);
    free(c);
}

/* Unwritten responses die with the connection. A busy request keeps the connection's memory
 * (its context, headers and body) until its reply, which then frees it. */
static void conn_close(conn_t *c)
{
    http_server_t *srv = c->w->srv;
    atomic_fetch_sub(&srv->inflight, c->out_responses);
    c->out_responses = 0;
    if (c->state != ST_BUSY) {
        conn_free(c);
        return;
    }
    release_io(c, false);
    c->zombie = true;
    dirty_unlink(c);
}

static void pause_reading(conn_t *c)
{
    if (!c->read_paused && c->rev) {
        event_del(c->rev);
        c->read_paused = true;
    }
}

static void resume_reading(conn_t *c)
{
    if (c->read_paused && c->rev && !c->eof) {
        event_add(c->rev, &c->w->srv->read_tv);
        c->read_paused = false;
    }
}

/* After the last response of a connection is written: shut the write side and drop what the
 * client still sends for a moment, so that an answer to a request we did not read whole
 * (413, 431...) is not destroyed by a reset. */
static void start_linger(conn_t *c)
{
    if (c->ssl || c->eof) {
        conn_free(c);
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = ST_LINGER;
    c->lingered = 0;
    event_del(c->rev);
    event_add(c->rev, &c->w->srv->linger_tv);
    c->read_paused = false;
}

static bool conn_process(conn_t *c);

/* Writes the output buffer; returns false if the connection was closed. */
static bool conn_flush(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = io_write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n == IO_AGAIN) {
            want_writable(c);
            return true;
        }
        if (n < 0) {
            conn_close(c);
            return false;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_responses) {
        atomic_fetch_sub(&c->w->srv->inflight, c->out_responses);
        c->out_responses = 0;
    }
    if (c->wev_added && !c->tls_read_wants_write) {
        event_del(c->wev);
        c->wev_added = false;
    }
    if (c->state == ST_CLOSING) {
        start_linger(c);
        return false;
    }
    return true;
}

/* conn_flush, then the pipelined requests that waited for a backed-up output to drain. */
static void conn_write(conn_t *c)
{
    bool backed_up = c->out_len - c->out_off > OUT_HIGH;
    if (conn_flush(c) && backed_up && c->out_len == 0)
        conn_process(c);
}

/* End of a loop round: every connection with new output writes it. */
static void flush_dirty(worker_t *w)
{
    while (w->dirty) {
        conn_t *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        conn_write(c);
    }
}

/* ---------- responses ---------- */

/* Appends the response to the connection's output and ends the request. body may be NULL. */
static void finish(http_ctx_t *ctx, int status, const char *content_type, const char *body, size_t len)
{
    conn_t *c = ctx->conn;
    http_server_t *srv = ctx->worker->srv;
    double ms = (double)(util_mono_ns() - ctx->start_ns) / 1e6;
    count_request(ctx, status, ms / 1e3);
    log_request(ctx->request_id, ctx->head ? router_method_name(ctx->method) : "UNKNOWN",
                ctx->route ? ctx->route->pattern : "unmatched", status, ms);
    if (c->zombie) { /* the client went away while the request was busy */
        atomic_fetch_sub(&srv->inflight, 1);
        conn_free(c);
        return;
    }
    bool keep = ctx->head && ctx->head->keep_alive && !c->close_after && !c->eof &&
                !atomic_load_explicit(&srv->draining, memory_order_relaxed);
    bool no_body = status == 204 || status == 304 || status < 200;
    bool head_only = ctx->method == EVHTTP_REQ_HEAD;
    const char *origin = ctx->origin_ok ? http_ctx_header(ctx, "Origin") : NULL;
    size_t dlen;
    const char *date = date_header(&dlen);
    size_t need = 512 + dlen + ctx->extra_len + strlen(content_type) + (origin ? strlen(origin) : 0) +
                  (no_body || head_only ? 0 : len);
    if (!out_reserve(c, need)) { /* out of memory: the connection closes after what is queued */
        c->out_responses++;
        c->close_after = true;
        c->state = ST_CLOSING;
        mark_dirty(c);
        return;
    }
    OUT_LIT(c, "HTTP/1.1 ");
    out_uint(c, (uint64_t)status);
    OUT_LIT(c, " ");
    out_str(c, http_reason(status));
    OUT_LIT(c, "\r\n");
    out_put(c, date, dlen);
    if (!no_body) {
        OUT_LIT(c, "Content-Type: ");
        out_str(c, content_type);
        OUT_LIT(c, "\r\nContent-Length: ");
        out_uint(c, len);
        OUT_LIT(c, "\r\n");
    }
    OUT_LIT(c, "X-Request-ID: ");
    out_str(c, ctx->request_id);
    OUT_LIT(c, "\r\nX-Content-Type-Options: nosniff\r\n"
               "Cache-Control: no-store\r\n"
               "X-Frame-Options: DENY\r\n"
               "Content-Security-Policy: frame-ancestors 'none'\r\n"
               "Referrer-Policy: no-referrer\r\n");
    if (srv->opts.hsts)
        OUT_LIT(c, "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n");
    if (origin) {
        OUT_LIT(c, "Access-Control-Allow-Origin: ");
        out_str(c, strcmp(srv->cors, "*") == 0 ? "*" : origin);
        OUT_LIT(c, "\r\nVary: Origin\r\n");
    }
    if (ctx->extra_len)
        out_put(c, ctx->extra, ctx->extra_len);
    if (!keep)
        OUT_LIT(c, "Connection: close\r\n");
    else if (ctx->head->minor == 0)
        OUT_LIT(c, "Connection: keep-alive\r\n");
    OUT_LIT(c, "\r\n");
    if (!no_body && !head_only && len)
        out_put(c, body, len);
    c->out_responses++;
    ctx->extra_len = 0;
    if (!keep)
        c->close_after = true;
    c->state = c->close_after ? ST_CLOSING : ST_HEAD;
    mark_dirty(c);
    if (!c->in_dispatch && c->state == ST_HEAD)
        conn_process(c); /* a deferred answer: go on with what the client sent meanwhile */
}

void http_reply_json(http_ctx_t *ctx, int status, json_t *body)
{
    char stack[4096], *big = NULL;
    const char *data = NULL;
    size_t n = 0;
    if (body && status != 204) {
        /* 9 significant digits read back every float32 model output exactly. */
        const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(9);
        n = json_dumpb(body, stack, sizeof(stack), flags);
        data = stack;
        if (n > sizeof(stack)) {
            big = malloc(n);
            if (big && json_dumpb(body, big, n, flags) == n) {
                data = big;
            } else { /* out of memory, or a tree another thread changed between the two dumps */
                log_msg(LOG_ERROR, "response not serialised", "{s:s,s:i}", "request_id", ctx->request_id,
                        "status", status);
                n = 0;
                status = 500;
            }
        }
    }
    json_decref(body);
    finish(ctx, status, "application/json", data, n);
    free(big);
}

void http_reply_text(http_ctx_t *ctx, int status, const char *content_type, char *data, size_t len)
{
    finish(ctx, status, content_type, data, data ? len : 0);
    free(data);
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

static bool conn_fill(conn_t *c);
static void conn_open(worker_t *w, int fd, const struct sockaddr_storage *ss);

/* The drain, on each worker: what reached this worker before it is taken in. Connections
 * waiting in its listener's queue are accepted (closing the socket would reset them). Then
 * every connection between requests reads what its socket holds, once, and nothing more after
 * that (drain_cut): what was whole by then is taken in, oldest connection first; a request
 * still arriving then is not, and its connection closes, as does an idle one with nothing owed
 * (review46 #2: a body completed while the drain dispatched slow requests was read and taken
 * in ahead of requests that had arrived whole before it). What is taken in is dispatched
 * (counted in inflight) before the worker says it has drained in: serve waits for every
 * worker's word (http_server_drained_in) before it trusts inflight == 0. */
static void drain_in(worker_t *w)
{
    w->drained = true;
    if (w->listener) {
        /* past the drain deadline (the stop came with the drain: the worker was busy until
         * then) nothing more is taken in: it could not be answered */
        while (!atomic_load(&w->srv->stopping)) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            int cfd = accept4(w->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (cfd < 0)
                break; /* the queue is empty (or out of descriptors: those are reset) */
            conn_open(w, cfd, &ss);
        }
        event_free(w->listener);
        w->listener = NULL;
        if (w->accept_resume)
            event_del(w->accept_resume);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    /* 1. read, without dispatching (a busy connection is cut too: it closes after its answer;
     * a closing or lingering one goes its own way) */
    for (conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->zombie || c->state == ST_CLOSING || c->state == ST_LINGER)
            continue;
        bool between = c->state == ST_HEAD || c->state == ST_BODY;
        if (between && !c->read_paused && !conn_fill(c))
            continue; /* closed */
        c->drain_cut = true;
        if (between)
            pause_reading(c);
    }
    /* 2. oldest connection first (the list is newest first), so that the requests that waited
     * longest are the ones taken in; each dispatch may run a slow handler on this thread, so
     * the deadline is checked before each. The answers of this round go out after it. */
    conn_t *oldest = w->conns;
    while (oldest && oldest->next)
        oldest = oldest->next;
    for (conn_t *c = oldest, *prev; c && !atomic_load(&w->srv->stopping); c = prev) {
        prev = c->prev;
        if ((c->state != ST_HEAD && c->state != ST_BODY) || c->zombie)
            continue;
        if (c->in_len > c->consumed && !conn_process(c)) /* may dispatch, answer or free c */
            continue;
        if ((c->state == ST_HEAD || c->state == ST_BODY) && c->out_len == c->out_off)
            conn_close(c); /* nothing whole, nothing owed */
    }
    atomic_fetch_add(&w->srv->drained_in, 1);
}

/* The completions posted to the worker (http_ctx_post), in order. Once the loop has stopped
 * their requests can not be answered any more (answerable false): fn(NULL, arg) lets each
 * free what it carries and say what became of it. */
static void run_posted(worker_t *w, bool answerable)
{
    pthread_mutex_lock(&w->lock);
    post_item_t *it = w->head;
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (it) {
        post_item_t *next = it->next;
        it->fn(answerable ? it->ctx : NULL, it->arg);
        free(it);
        it = next;
    }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    run_posted(w, true);
    int cmd = atomic_exchange(&w->cmd, 0);
    if ((cmd & CMD_DRAIN) && !w->drained)
        drain_in(w); /* a stop (http_server_stop, _free) sets srv->stopping before it posts */
    if (cmd & CMD_STOP)
        event_base_loopbreak(w->base);
}

/* ---------- dispatch ---------- */

static bool sane_request_id(const char *s, size_t len)
{
    if (len == 0 || len > 63 || strlen(s) != len) /* 1-63 characters (docs/api.md) */
        return false;
    for (size_t n = 0; n < len; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* The Allow header's methods for a route allowing `allowed`: also OPTIONS, and HEAD where GET
 * is (dispatch answers HEAD as GET without the body). */
static void allow_header(unsigned allowed, char *buf, size_t len)
{
    router_allow_header(allowed | EVHTTP_REQ_OPTIONS | (allowed & EVHTTP_REQ_GET ? EVHTTP_REQ_HEAD : 0), buf,
                        len);
}

static void options_reply(http_ctx_t *ctx, unsigned allowed)
{
    char allow[128];
    allow_header(allowed, allow, sizeof(allow));
    http_ctx_add_header(ctx, "Allow", allow);
    if (ctx->origin_ok) {
        http_ctx_add_header(ctx, "Access-Control-Allow-Methods", allow);
        http_ctx_add_header(ctx, "Access-Control-Allow-Headers",
                            "Content-Type, Authorization, X-API-Key, X-Request-ID");
        http_ctx_add_header(ctx, "Access-Control-Max-Age", "600");
    }
    http_reply_json(ctx, 204, NULL);
}

/* A fresh context for the connection's current request; head may be NULL. */
static http_ctx_t *ctx_begin(conn_t *c, const http_head_t *head)
{
    http_server_t *srv = c->w->srv;
    http_ctx_t *ctx = &c->ctx;
    char *extra = ctx->extra;
    size_t extra_cap = ctx->extra_cap;
    memset(ctx, 0, offsetof(http_ctx_t, match));
    ctx->match.route = NULL;
    ctx->match.n_params = 0;
    ctx->extra = extra;
    ctx->extra_cap = extra_cap;
    ctx->conn = c;
    ctx->worker = c->w;
    ctx->head = head;
    ctx->method = head ? head->method : 0;
    ctx->start_ns = util_mono_ns();
    atomic_fetch_add_explicit(&srv->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->requests, 1, memory_order_relaxed);
    c->state = ST_BUSY;
    memcpy(ctx->peer, c->peer, sizeof(ctx->peer));
    const char *rid = NULL;
    if (head)
        for (size_t i = 0; i < head->n_fields; i++)
            if (strcasecmp(head->fields[i].name, "X-Request-ID") == 0) {
                if (sane_request_id(head->fields[i].value, head->fields[i].value_len))
                    rid = head->fields[i].value;
                break;
            }
    if (rid)
        memcpy(ctx->request_id, rid, strlen(rid) + 1);
    else
        util_uuid7(ctx->request_id);
    ctx->origin_ok = srv->cors && origin_allowed(srv->cors, http_ctx_header(ctx, "Origin"));
    return ctx;
}

/* The protocol layer refuses the request with status and closes after the answer. why: for a
 * 400, the rule the parser found broken (NULL: a generic message). */
static void refuse(conn_t *c, int status, const http_head_t *head, const char *why)
{
    http_server_t *srv = c->w->srv;
    c->close_after = true;
    c->in_dispatch = true;
    http_ctx_t *ctx = ctx_begin(c, head);
    if (status == 408 && c->req_start_ns)
        ctx->start_ns = c->req_start_ns; /* logged and observed as the time the request took */
    switch (status) {
    case 408:
        http_reply_error(ctx, 408, "request_timeout", NULL,
                         "the request did not arrive within READ_TIMEOUT (%ld s)", (long)srv->read_tv.tv_sec);
        break;
    case 413:
        http_reply_error(ctx, 413, "payload_too_large", NULL,
                         "request body larger than MAX_BODY_BYTES (%zu bytes)", srv->opts.max_body_bytes);
        break;
    case 414:
        http_reply_error(ctx, 414, "uri_too_long", NULL,
                         "request line longer than MAX_HEADER_BYTES (%zu bytes)", srv->opts.max_header_bytes);
        break;
    case 431:
        http_reply_error(
            ctx, 431, "header_too_large", NULL,
            "request head larger than MAX_HEADER_BYTES (%zu bytes) or more than %d header fields",
            srv->opts.max_header_bytes, HTTP_MAX_FIELDS);
        break;
    case 501:
        http_reply_error(ctx, 501, "not_implemented", NULL, "%s",
                         "method or transfer coding not implemented (methods: GET, HEAD, POST, PUT, "
                         "PATCH, DELETE, OPTIONS; transfer coding: chunked)");
        break;
    default:
        http_reply_error(ctx, 400, "bad_request", NULL, "%s",
                         why ? why
                             : "malformed HTTP request (request line, header fields or message framing)");
        break;
    }
    c->in_dispatch = false;
}

static void dispatch(conn_t *c, const char *body, size_t body_len)
{
    http_server_t *srv = c->w->srv;
    c->in_dispatch = true;
    http_ctx_t *ctx = ctx_begin(c, &c->head);
    ctx->body = body;
    ctx->body_len = body_len;

    /* The path, without query string, still percent-encoded. An absolute-form target
     * ("http://host/path", RFC 9112 section 3.2.2, which a server must accept) is its path. */
    const char *uri = c->head.target;
    if (strncasecmp(uri, "http://", 7) == 0 || strncasecmp(uri, "https://", 8) == 0) {
        uri = strstr(uri, "//") + 2;
        uri += strcspn(uri, "/?#");
        if (*uri != '/')
            uri = "/";
    }
    char path[ROUTER_MAX_PATH + 1];
    size_t plen = strcspn(uri, "?#");
    if (plen > ROUTER_MAX_PATH) {
        http_reply_error(ctx, 414, "uri_too_long", NULL, "request path longer than %d bytes",
                         ROUTER_MAX_PATH);
        goto out;
    }
    memcpy(path, uri, plen);
    path[plen] = '\0';
    if (c->head.minor == 1 ? c->head.n_host != 1 : c->head.n_host > 1) {
        c->close_after = true; /* RFC 9112 section 3.2: 400, and which host was meant is unknown */
        http_reply_error(ctx, 400, "bad_request", NULL, "%s",
                         c->head.n_host ? "more than one Host header"
                                        : "HTTP/1.1 request without a Host header");
        goto out;
    }

    if (ctx->method == EVHTTP_REQ_OPTIONS && strcmp(path, "*") == 0) {
        /* RFC 9110 section 9.3.7: the server as a whole; Allow lists the methods it implements */
        options_reply(ctx, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
        goto out;
    }
    unsigned m = ctx->method == EVHTTP_REQ_HEAD ? EVHTTP_REQ_GET : ctx->method;
    int rc = router_match(srv->routes, srv->n_routes, path, m, &ctx->match);
    /* a 405 or an OPTIONS answer is counted and logged under the path's route, not as
     * "unmatched": only paths no route knows are */
    ctx->route = rc == -EPERM ? ctx->match.path_route : ctx->match.route;
    if (ctx->method == EVHTTP_REQ_OPTIONS && (rc == 0 || rc == -EPERM)) {
        options_reply(ctx, ctx->match.allowed);
        goto out;
    }
    if (rc == -EPERM) {
        char allow[128];
        allow_header(ctx->match.allowed, allow, sizeof(allow));
        http_ctx_add_header(ctx, "Allow", allow);
        http_reply_error(ctx, 405, "method_not_allowed", NULL, "method %s is not allowed here; allowed: %s",
                         router_method_name(ctx->method), allow);
        goto out;
    }
    if (rc == -EINVAL) {
        if (ctx->match.bad_segment)
            http_reply_error(ctx, 400, "invalid_path", NULL, "malformed request path: segment %zu: %s",
                             ctx->match.bad_segment, ctx->match.why);
        else
            http_reply_error(ctx, 400, "invalid_path", NULL, "malformed request path: %s", ctx->match.why);
        goto out;
    }
    if (rc < 0) {
        http_reply_error(ctx, 404, "not_found", NULL, "no resource at this path");
        goto out;
    }
    if (srv->opts.authorize && srv->opts.authorize(ctx, ctx->route, srv->opts.authorize_arg) != 0)
        goto out; /* the authorizer answered */
    ctx->route->handler(ctx);
out:
    c->in_dispatch = false;
}

/* READ_TIMEOUT is also a deadline for each request as a whole, from its first byte: a client
 * that trickles a byte now and then (slowloris) is answered 408 when it has spent READ_TIMEOUT
 * on one request, not kept forever by the silence timeout that each byte resets. While a
 * request is partly read, the read event's timeout is the rest of its time; afterwards it is
 * read_tv again (the idle keep-alive timeout). Returns false when it refused the request. */
static bool arm_request_deadline(conn_t *c)
{
    http_server_t *srv = c->w->srv;
    bool partial = (c->state == ST_HEAD || c->state == ST_BODY) && c->in_len > c->consumed;
    if (!partial) {
        c->req_start_ns = 0;
        if (c->deadline_armed && !c->read_paused && c->rev)
            event_add(c->rev, &srv->read_tv);
        c->deadline_armed = false;
        return true;
    }
    uint64_t now = util_mono_ns(), limit = (uint64_t)srv->read_tv.tv_sec * 1000000000ull;
    if (!c->req_start_ns)
        c->req_start_ns = now;
    uint64_t spent = now - c->req_start_ns;
    if (spent >= limit) {
        refuse(c, 408, c->state == ST_BODY ? &c->head : NULL, NULL);
        return false;
    }
    if (!c->read_paused && c->rev) {
        uint64_t rest = limit - spent;
        struct timeval tv = {(time_t)(rest / 1000000000ull), (suseconds_t)(rest % 1000000000ull / 1000)};
        event_add(c->rev, &tv);
        c->deadline_armed = true;
    }
    return true;
}

/* Parses and dispatches what the input buffer holds, request after request, until it needs
 * more bytes, a request is busy, or the connection is closing. false: c was freed. */
static bool conn_process(conn_t *c)
{
    http_server_t *srv = c->w->srv;
    while (!c->zombie && (c->state == ST_HEAD || c->state == ST_BODY)) {
        if (c->out_len - c->out_off > OUT_HIGH)
            break; /* the client is not reading its answers: wait for the output to drain */
        if (c->state == ST_HEAD && c->consumed) {
            memmove(c->in, c->in + c->consumed, c->in_len - c->consumed);
            c->in_len -= c->consumed;
            c->consumed = 0;
        }
        if (c->state == ST_HEAD) {
            if (c->in_len == 0)
                break;
            int rc = http_parse_head(c->in, c->in_len, srv->opts.max_header_bytes, srv->opts.max_body_bytes,
                                     &c->head);
            if (rc == 0)
                break;
            if (rc < 0) {
                refuse(c, -rc, NULL, c->head.why);
                break;
            }
            if (c->head.body_too_large) {
                refuse(c, 413, &c->head, NULL); /* with its request id and CORS headers */
                break;
            }
            c->head_len = (size_t)rc;
            c->raw_off = c->head_len;
            c->body_len = 0;
            memset(&c->chunk, 0, sizeof(c->chunk));
            c->sent_continue = false;
            c->state = ST_BODY;
        }
        size_t end;
        if (c->head.chunked) {
            int rc = http_decode_chunked(c->in, c->in_len, c->head_len, &c->raw_off, &c->body_len,
                                         srv->opts.max_body_bytes, &c->chunk);
            if (rc < 0) {
                refuse(c, -rc, &c->head, c->chunk.why);
                break;
            }
            if (rc == 0) { /* close the gap between decoded data and the raw rest */
                size_t dec_end = c->head_len + c->body_len;
                memmove(c->in + dec_end, c->in + c->raw_off, c->in_len - c->raw_off);
                c->in_len -= c->raw_off - dec_end;
                c->raw_off = dec_end;
            }
            if (rc == 0)
                goto need_body;
            end = c->raw_off;
        } else {
            end = c->head_len + (size_t)c->head.content_length;
            if (c->in_len < end)
                goto need_body;
            c->body_len = (size_t)c->head.content_length;
        }
        c->consumed = end;
        dispatch(c, c->in + c->head_len, c->body_len);
        continue;
    need_body:
        /* not while draining: a body the drain will not read must not be invited (review48 #7) */
        if (c->head.expect_continue && !c->sent_continue && c->head.minor == 1 && !c->drain_cut &&
            !atomic_load_explicit(&srv->draining, memory_order_relaxed) && out_reserve(c, 32)) {
            OUT_LIT(c, "HTTP/1.1 100 Continue\r\n\r\n");
            c->sent_continue = true;
            mark_dirty(c);
        }
        break;
    }
    if (c->zombie || c->state == ST_LINGER)
        return true;
    if (c->eof && (c->state == ST_HEAD || c->state == ST_BODY) && c->out_len == c->out_off) {
        conn_free(c); /* the client is gone and nothing is owed to it */
        return false;
    }
    if (c->read_paused && c->state != ST_BUSY && !c->drain_cut)
        resume_reading(c); /* a busy request no longer pins the buffer */
    if (!arm_request_deadline(c))
        return true; /* refused with 408 */
    if (c->ssl && c->state != ST_BUSY && c->in_len < c->in_cap && SSL_pending(c->ssl) > 0 && !c->drain_cut)
        event_active(c->rev, EV_READ, 0); /* decrypted bytes wait inside OpenSSL */
    return true;
}

/* ---------- connection events ---------- */

static void on_timeout(conn_t *c)
{
    switch (c->state) {
    case ST_HEAD:
        if (c->in_len > c->consumed) {
            refuse(c, 408, NULL, NULL); /* a request began and stalled */
            return;
        }
        conn_close(c); /* idle keep-alive */
        return;
    case ST_BODY: refuse(c, 408, &c->head, NULL); return;
    case ST_LINGER: conn_free(c); return;
    default: return; /* busy: the handler answers; closing: the write timeout governs */
    }
}

/* Grows the input buffer; a parsed head's pointers move with it. */
static bool grow_input(conn_t *c, size_t cap)
{
    http_head_t *h = &c->head;
    bool parsed = c->state == ST_BODY;
    size_t off_method = 0, off_target = 0, off_name[HTTP_MAX_FIELDS], off_value[HTTP_MAX_FIELDS];
    if (parsed) {
        off_method = (size_t)(h->method_name - c->in);
        off_target = (size_t)(h->target - c->in);
        for (size_t i = 0; i < h->n_fields; i++) {
            off_name[i] = (size_t)(h->fields[i].name - c->in);
            off_value[i] = (size_t)(h->fields[i].value - c->in);
        }
    }
    char *p = realloc(c->in, cap);
    if (!p)
        return false;
    c->in = p;
    c->in_cap = cap;
    if (parsed) {
        h->method_name = p + off_method;
        h->target = p + off_target;
        for (size_t i = 0; i < h->n_fields; i++) {
            h->fields[i].name = p + off_name[i];
            h->fields[i].value = p + off_value[i];
        }
    }
    return true;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    conn_t *c = arg;
    if (what & EV_TIMEOUT) {
        on_timeout(c);
        return;
    }
    if (c->state == ST_LINGER) {
        char drop[16384];
        ssize_t n = read(c->fd, drop, sizeof(drop));
        if (n > 0 && (c->lingered += (size_t)n) < LINGER_MAX_BYTES)
            return;
        if (n < 0 && errno == EAGAIN)
            return;
        conn_free(c);
        return;
    }
    if (c->drain_cut) { /* the drain took in what this connection held (drain_in) */
        pause_reading(c);
        return;
    }
    if (!conn_fill(c))
        return;
    if (c->tls_read_wants_write || c->out_len > c->out_off)
        mark_dirty(c);
    conn_process(c);
}

/* Reads what the socket holds into the input buffer. false: c was closed. */
static bool conn_fill(conn_t *c)
{
    http_server_t *srv = c->w->srv;
    for (;;) {
        if (c->in_len == c->in_cap) {
            /* grow, unless a busy request points into the buffer or the cap is reached */
            if (c->state == ST_BUSY || c->in_cap >= srv->in_limit) {
                pause_reading(c);
                break;
            }
            size_t cap = c->in_cap * 2 < srv->in_limit ? c->in_cap * 2 : srv->in_limit;
            if (c->state == ST_BODY && c->head.has_length && c->head_len + c->head.content_length > cap)
                cap = c->head_len + (size_t)c->head.content_length; /* the whole body in one step */
            if (!grow_input(c, cap)) {
                conn_close(c);
                return false;
            }
        }
        size_t room = c->in_cap - c->in_len;
        ssize_t n = io_read(c, c->in + c->in_len, room);
        if (n > 0) {
            c->in_len += (size_t)n;
            if ((size_t)n < room && !c->ssl)
                break; /* the socket is drained; level-triggered epoll reports more */
            continue;
        }
        if (n == IO_AGAIN)
            break;
        if (n == IO_EOF) {
            c->eof = true;
            pause_reading(c);
            break;
        }
        conn_close(c); /* reset, TLS failure */
        return false;
    }
    return true;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    conn_t *c = arg;
    if (what & EV_TIMEOUT) {
        conn_close(c); /* the client stopped reading for WRITE_TIMEOUT */
        return;
    }
    if (c->tls_read_wants_write) {
        c->tls_read_wants_write = false;
        if (c->out_len == c->out_off) {
            event_del(c->wev);
            c->wev_added = false;
        }
        on_read(c->fd, EV_READ, c);
        return;
    }
    conn_write(c);
}

static void conn_open(worker_t *w, int fd, const struct sockaddr_storage *ss)
{
    http_server_t *srv = w->srv;
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->in_cap = IN_INITIAL;
    c->in = malloc(c->in_cap);
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    bool tls = srv->opts.tls_ctx != NULL; /* set at start; only its value changes */
    if (tls) { /* security (issue 5): TLS */
        /* the connection holds its own reference to the context (SSL_new counts it), so a
         * replaced certificate stays valid for the connections made with it */
        pthread_mutex_lock(&srv->tls_lock);
        c->ssl = SSL_new((SSL_CTX *)srv->opts.tls_ctx);
        pthread_mutex_unlock(&srv->tls_lock);
        if (c->ssl) {
            SSL_set_fd(c->ssl, fd);
            SSL_set_accept_state(c->ssl);
            SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        }
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    if (!c->in || !c->rev || !c->wev || (tls && !c->ssl)) {
        conn_free(c);
        return;
    }
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer, sizeof(c->peer));
    else if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr))
        /* an IPv4 client of a server listening on "::": written as IPv4, as it is behind a
         * proxy, so lockout, rate limits and the trail see one client (review62 #5) */
        inet_ntop(AF_INET, ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr + 12, c->peer, sizeof(c->peer));
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer, sizeof(c->peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    event_add(c->rev, &srv->read_tv);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker_t *w = arg;
    for (int i = 0; i < ACCEPTS_PER_ROUND; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            conn_open(w, cfd, &ss);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* out of descriptors: stop accepting for a moment instead of spinning */
            log_msg(LOG_WARNING, "accept paused", "{s:s}", "error", strerror(errno));
            event_del(w->listener);
            struct timeval tv = {0, 200000};
            event_add(w->accept_resume, &tv);
        }
        return; /* EAGAIN, or a connection that died in the queue */
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    if (w->listener)
        event_add(w->listener, NULL);
}

/* One round of callbacks at a time: the round's request log lines go out in one write
 * (log_thread_batch), then each connection's responses in one write. */
static void *worker_main(void *arg)
{
    worker_t *w = arg;
    log_thread_batch(true);
    for (;;) {
        /* NO_EXIT_ON_EMPTY: a draining worker may have nothing pending (no listener, a busy
         * connection whose reading is paused) while a completion is still to be posted to it
         * (http_ctx_post activates the wake event, which is never added): it must wait for
         * that, not return and end the thread with the request unanswered. */
        int rc = event_base_loop(w->base, EVLOOP_ONCE | EVLOOP_NO_EXIT_ON_EMPTY);
        log_thread_flush();
        flush_dirty(w);
        if (rc != 0 || event_base_got_break(w->base) || event_base_got_exit(w->base))
            break;
    }
    log_thread_batch(false);
    return NULL;
}

/* epoll with a changelist: interest changes within a round fold into one epoll_ctl. */
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
    pthread_mutex_init(&s->tls_lock, NULL);
    s->read_tv.tv_sec = opts->timeout_s > 0 ? opts->timeout_s : 30;
    s->write_tv.tv_sec = opts->write_timeout_s > 0 ? opts->write_timeout_s : s->read_tv.tv_sec;
    s->linger_tv.tv_sec = LINGER_S;
    /* head + body + room for chunk framing and one read's worth of a pipelined request */
    s->in_limit = opts->max_header_bytes + opts->max_body_bytes + 65536;
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
        int fd = open_listener(s->host, port, i == 0, &port, err, errlen);
        if (fd < 0) {
            http_server_free(s);
            return fd;
        }
        w->listen_fd = fd;
        w->base = new_base();
        if (w->base) {
            w->wake = event_new(w->base, -1, EV_PERSIST | EV_READ, wake_cb, w);
            w->listener = event_new(w->base, fd, EV_READ | EV_PERSIST, on_accept, w);
            w->accept_resume = evtimer_new(w->base, on_accept_resume, w);
        }
        if (!w->wake || !w->listener || !w->accept_resume || event_add(w->listener, NULL) != 0) {
            http_server_free(s);
            snprintf(err, errlen, "cannot create event loop");
            return -ENOMEM;
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

bool http_server_drained_in(const http_server_t *s)
{
    int started = 0;
    for (int i = 0; i < s->n_workers; i++)
        started += s->workers[i].started;
    return atomic_load(&s->drained_in) >= started;
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
    atomic_store(&s->stopping, true);
    command(s, CMD_STOP);
    for (int i = 0; i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        if (w->started) {
            pthread_join(w->thread, NULL);
            w->started = false;
        }
    }
}

void http_server_run_unanswerable(http_server_t *s)
{
    for (int i = 0; s && s->workers && i < s->n_workers; i++)
        if (!s->workers[i].started)
            run_posted(&s->workers[i], false);
}

void http_server_free(http_server_t *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    for (int i = 0; s->workers && i < s->n_workers; i++) {
        worker_t *w = &s->workers[i];
        if (w->started) {
            atomic_fetch_or(&w->cmd, CMD_STOP);
            event_active(w->wake, EV_READ, 0);
            pthread_join(w->thread, NULL);
        }
        run_posted(w, false); /* before the connections: fn may still read its ctx */
        while (w->conns)
            conn_free(w->conns);
        if (w->listener)
            event_free(w->listener);
        if (w->listen_fd >= 0)
            close(w->listen_fd);
        if (w->accept_resume)
            event_free(w->accept_resume);
        if (w->wake)
            event_free(w->wake);
        if (w->base)
            event_base_free(w->base);
        pthread_mutex_destroy(&w->lock);
    }
    free(s->workers);
    free(s->count_slots);
    free(s->dur_slots);
    pthread_mutex_destroy(&s->tls_lock);
    free(s->host);
    free(s->cors);
    free(s);
}
