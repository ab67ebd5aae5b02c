/* SPDX-License-Identifier: Apache-2.0 */
/* Path router: a static table of (method mask, pattern) -> handler. Patterns are
 * slash-separated literal segments and {param} segments ("/api/v1/models/{name}/predict").
 * Each path segment is percent-decoded on its own, so an encoded "/" stays inside a
 * parameter (and is then refused by the handler's name check) instead of changing the
 * route. A path that matches a pattern with another method yields 405 and the Allow set. */
#ifndef AIMEDRES_HTTP_ROUTER_H
#define AIMEDRES_HTTP_ROUTER_H

#include <stddef.h>

#define ROUTER_MAX_PARAMS 4
#define ROUTER_MAX_SEGMENTS 16
#define ROUTER_MAX_PATH 2048

typedef struct http_ctx http_ctx_t;
typedef void (*http_handler_fn)(http_ctx_t *ctx);

/* Methods are the libevent EVHTTP_REQ_* bits. */
typedef struct http_route {
    unsigned methods;
    const char *pattern;
    http_handler_fn handler;
    const char *description; /* for the /api/v1 endpoint index */
    const char *role;        /* role required (security/roles.h names); NULL = public */
} http_route_t;

typedef struct router_match {
    const http_route_t *route;      /* NULL when nothing matched */
    const http_route_t *path_route; /* first route whose pattern matches the path, whatever
                                       its methods (labels 405 and OPTIONS answers) */
    unsigned allowed;               /* methods of routes matching the path (for 405) */
    size_t n_params;
    char params[ROUTER_MAX_PARAMS][256]; /* decoded parameter values */
    /* after -EINVAL only: what is wrong with the path (a static string) and in which segment
     * (1-based; 0 for the path as a whole) */
    const char *why;
    size_t bad_segment;
} router_match_t;

/* Matches path (the raw, still-encoded path of the request target, without query) against
 * routes for method. Returns 0 with ret->route set on a match; -ENOENT when no pattern
 * matches the path; -EPERM when patterns match the path only with other methods
 * (ret->allowed holds them); -EINVAL for a malformed path (bad escape, NUL, too long,
 * too many segments, parameter over 255 bytes), with ret->why and ret->bad_segment. */
int router_match(const http_route_t *routes, size_t n, const char *path, unsigned method,
                 router_match_t *ret);

/* Writes "GET, POST, OPTIONS" for a method mask into buf. */
void router_allow_header(unsigned methods, char *buf, size_t len);
const char *router_method_name(unsigned method);

#endif
