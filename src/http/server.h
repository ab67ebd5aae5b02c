/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server: MAX_WORKERS threads, each with its own libevent base, connections
 * and SO_REUSEPORT listener, so the kernel spreads connections and no lock is shared on
 * the request path (requests parsed by http/parse.h). Handlers run on their worker thread; a handler may defer its answer
 * (e.g. until the prediction record is durable) and finish it later through
 * http_ctx_post(), which is the only function here safe to call from other threads
 * besides http_server_drain() and the counters.
 *
 * Lifecycle: new (binds, so a busy port fails early) -> start -> drain (stop accepting;
 * in-flight requests finish, responses carry Connection: close) -> stop (loops exit,
 * threads joined) -> free. Every response gets the security headers, CORS when the
 * Origin is allowed, X-Request-ID and one JSON log line. */
#ifndef AIMEDRES_HTTP_SERVER_H
#define AIMEDRES_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/router.h"

typedef struct http_server_opts {
    const char *host;
    int port; /* 0 = ephemeral (http_server_port tells which) */
    int workers;
    size_t max_body_bytes;
    size_t max_header_bytes;
    int timeout_s;       /* read: a request's bytes, and idle keep-alive connections */
    int write_timeout_s; /* a client that stops reading its answer; 0 = timeout_s */
    const char *cors_allowed_origins; /* comma list, "*", or NULL = no CORS */
    bool hsts;                        /* add Strict-Transport-Security (TLS) */
    /* Called before every routed handler (not for 404/405/OPTIONS). Returns 0 to run the
     * handler, or non-zero after it has replied itself (401/403/429...). NULL = open. */
    int (*authorize)(http_ctx_t *ctx, const http_route_t *route, void *arg);
    void *authorize_arg;
    /* security (issue 5): an OpenSSL SSL_CTX * (security/tls.h); when set, every accepted
     * connection is wrapped in TLS (one SSL per connection, this context shared). Borrowed:
     * must outlive the server, or its replacement (http_server_swap_tls). NULL = plain HTTP. */
    void *tls_ctx;
} http_server_opts_t;

typedef struct http_server http_server_t;

/* Binds the listeners. routes and app are borrowed and must outlive the server. */
int http_server_new(const http_server_opts_t *opts, const http_route_t *routes, size_t n_routes, void *app,
                    http_server_t **ret, char *err, size_t errlen);
int http_server_port(const http_server_t *s);
/* Starts the worker threads. */
int http_server_start(http_server_t *s);
/* Connections accepted from now on use tls_ctx (a renewed certificate); thread-safe. Returns
 * the context it replaces, which the caller releases (connections made with it hold their own
 * references), or NULL, changing nothing, when the server does not speak TLS. */
void *http_server_swap_tls(http_server_t *s, void *tls_ctx);
/* Stops accepting new connections (thread-safe, idempotent). Each worker first takes in what
 * reached it: the connections queued on its listener, and the requests already in the sockets
 * of connections between requests. */
void http_server_drain(http_server_t *s);
bool http_server_draining(const http_server_t *s);
/* True once every worker has taken in what reached it before the drain: from then on,
 * inflight == 0 means every such request has been answered. */
bool http_server_drained_in(const http_server_t *s);
/* Requests received and not yet answered. */
uint64_t http_server_inflight(const http_server_t *s);
uint64_t http_server_requests_total(const http_server_t *s);
/* Breaks the worker loops and joins the threads. Deferred requests not yet answered
 * stay pending until http_server_run_unanswerable or http_server_free. */
void http_server_stop(http_server_t *s);
/* After http_server_stop: runs, on the calling thread, the completions posted since
 * (fn(NULL, arg), see http_ctx_post), so that what they report (say, an audit record)
 * happens while the rest of the process is still up. http_server_free runs the rest. */
void http_server_run_unanswerable(http_server_t *s);
void http_server_free(http_server_t *s);

/* ---- per-request API for handlers (worker thread only, except http_ctx_post) ---- */

void *http_ctx_app(const http_ctx_t *ctx);
/* Decoded path parameter i (in pattern order). */
const char *http_ctx_param(const http_ctx_t *ctx, size_t i);
const char *http_ctx_request_id(const http_ctx_t *ctx);
/* The raw query string (after '?', still percent-encoded), or NULL if none. Decode
 * with http_query_param. */
const char *http_ctx_query(const http_ctx_t *ctx);
/* Decoded value of query parameter name into buf (truncated to len); 0, -ENOENT if
 * absent, -EINVAL if the query is malformed (HTTP_QUERY_MALFORMED says how), -E2BIG if it is
 * longer than ROUTER_MAX_PATH. */
int http_query_param(const http_ctx_t *ctx, const char *name, char *buf, size_t len);
/* What libevent's query parser refuses, for the 400 of a malformed query string. */
#define HTTP_QUERY_MALFORMED                                                                                 \
    "malformed query string: each parameter must be name=value (a non-empty name), joined by &"
/* True if the request's Content-Type is application/json (any case, optional parameters
 * such as charset). */
bool http_ctx_is_json(const http_ctx_t *ctx);
/* Request header value or NULL (the first, if the header is repeated). */
const char *http_ctx_header(const http_ctx_t *ctx, const char *name);
/* How many times the request carries the header. */
size_t http_ctx_header_count(const http_ctx_t *ctx, const char *name);
/* Every value of a list-valued header (X-Forwarded-For...), in order, joined with ", " as
 * RFC 9110 section 5.3 combines repeated fields, into buf: 0, or -ENOENT if absent. When the
 * whole does not fit in len - 1 bytes, its end: the entries after the first comma of its last
 * len - 1 bytes, and 1 (the right-most entries are what proxies append); -ENOSPC when that
 * holds no comma (buf then holds nothing usable). */
int http_ctx_header_list(const http_ctx_t *ctx, const char *name, char *buf, size_t len);
/* Request body (contiguous, not NUL-terminated); length 0 if none. */
void http_ctx_body(http_ctx_t *ctx, const char **ret_data, size_t *ret_len);
const http_route_t *http_ctx_route(const http_ctx_t *ctx);
/* Milliseconds since the request arrived. */
double http_ctx_elapsed_ms(const http_ctx_t *ctx);
/* Peer address as text (for rate limits/audit later). */
const char *http_ctx_peer(const http_ctx_t *ctx);
/* security (issue 5, audit3): replaces the address http_ctx_peer reports; the authorizer
 * sets the client address found behind a trusted proxy (TRUSTED_PROXIES). */
void http_ctx_set_peer(http_ctx_t *ctx, const char *addr);

/* The authenticated principal, set by the authorizer: user (key name or JWT subject)
 * and role; both NULL for anonymous requests. Strings are copied (max 127 bytes). */
void http_ctx_set_principal(http_ctx_t *ctx, const char *user, const char *role);
const char *http_ctx_user(const http_ctx_t *ctx);
const char *http_ctx_role(const http_ctx_t *ctx);

/* Sends body as JSON with status and ends the request (ctx is freed). Steals body. */
void http_reply_json(http_ctx_t *ctx, int status, json_t *body);
/* Sends data (malloc'd; ownership transferred, freed by the server) with a content type. */
void http_reply_text(http_ctx_t *ctx, int status, const char *content_type, char *data, size_t len);
/* Sends {"error":{"code","message","details"}}. Steals details (may be NULL). */
void http_reply_error(http_ctx_t *ctx, int status, const char *code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Adds a response header before replying. */
void http_ctx_add_header(http_ctx_t *ctx, const char *name, const char *value);

/* Runs fn(ctx, arg) on ctx's worker thread soon. Thread-safe. The handler must have
 * returned without replying (deferral) and fn must eventually reply. When the workers
 * stopped before fn ran, fn(NULL, arg) runs instead (http_server_run_unanswerable or
 * http_server_free): free arg and reply to nothing. The ctx given to http_ctx_post is still
 * readable then (http_ctx_request_id, _user, _role, _peer: the connection is freed after),
 * never to be replied to. */
typedef void (*http_post_fn)(http_ctx_t *ctx, void *arg);
void http_ctx_post(http_ctx_t *ctx, http_post_fn fn, void *arg);

#endif
