/* SPDX-License-Identifier: Apache-2.0 */
/* Path router; see router.h. Matching is a linear scan over patterns compiled once per
 * thread: the table has two dozen routes and most are rejected on their segment count. */
#include "http/router.h"

#include <errno.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

typedef struct segments {
    size_t n;
    size_t len[ROUTER_MAX_SEGMENTS];
    char seg[ROUTER_MAX_SEGMENTS][256];
} segments_t;

/* the messages below name these limits */
_Static_assert(ROUTER_MAX_PATH == 2048 && ROUTER_MAX_SEGMENTS == 16, "update split_path's messages");

/* Sets what is wrong with the path, for the 400 (on failure only: nothing on the way of a
 * good path), and returns -EINVAL. */
static int bad_path(router_match_t *ret, const char *why, size_t segment)
{
    ret->why = why;
    ret->bad_segment = segment;
    return -EINVAL;
}

/* Splits and percent-decodes each segment. An empty segment (double slash) is refused
 * except a single trailing slash, which is ignored. -EINVAL with ret->why on a bad path. */
static int split_path(const char *path, segments_t *out, router_match_t *ret)
{
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/')
        return bad_path(ret, "the request target does not start with /", 0);
    if (len > ROUTER_MAX_PATH)
        return bad_path(ret, "longer than 2048 bytes", 0);
    out->n = 0;
    const char *p = path + 1;
    if (*p == '\0')
        return 0; /* "/" */
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0) {
            if (end == NULL || end[1] == '\0')
                return 0; /* trailing slash */
            return bad_path(ret, "empty (//)", out->n + 1);
        }
        if (out->n >= ROUTER_MAX_SEGMENTS)
            return bad_path(ret, "more than 16 segments", 0);
        char *dst = out->seg[out->n];
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (c == '%') {
                if (i + 2 >= n)
                    return bad_path(ret, "malformed percent-escape (expected % and two hex digits)",
                                    out->n + 1);
                int hi = util_hexval(p[i + 1]), lo = util_hexval(p[i + 2]);
                if (hi < 0 || lo < 0)
                    return bad_path(ret, "malformed percent-escape (expected % and two hex digits)",
                                    out->n + 1);
                c = (char)(hi * 16 + lo);
                if (c == '\0')
                    return bad_path(ret, "NUL byte (%00)", out->n + 1);
                i += 2;
            }
            if (o + 1 >= sizeof(out->seg[0]))
                return bad_path(ret, "longer than 255 bytes decoded", out->n + 1);
            dst[o++] = c;
        }
        dst[o] = '\0';
        out->len[out->n] = o;
        out->n++;
        if (!end)
            return 0;
        p = end + 1;
        if (*p == '\0')
            return 0;
    }
}

/* A pattern split into segments once: literal text and length, or a parameter. */
typedef struct cpattern {
    size_t n;
    struct {
        const char *lit;
        size_t len;
        bool param;
    } seg[ROUTER_MAX_SEGMENTS + 1];
} cpattern_t;

static void compile_pattern(const char *pattern, cpattern_t *c)
{
    c->n = 0;
    const char *p = pattern + 1;
    while (*p && c->n <= ROUTER_MAX_SEGMENTS) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        c->seg[c->n].lit = p;
        c->seg[c->n].len = n;
        c->seg[c->n].param = n >= 2 && p[0] == '{' && p[n - 1] == '}';
        c->n++;
        p = end ? end + 1 : p + n;
    }
}

/* Each worker thread compiles the route table it serves on first use (a table is static for
 * the server's life; another table recompiles), so matching a route is a segment count and a
 * few length-checked compares instead of re-scanning every pattern per request. */
#define CACHED_ROUTES 64
static _Thread_local const http_route_t *cached_table;
static _Thread_local size_t cached_n;
static _Thread_local cpattern_t cached[CACHED_ROUTES];

static const cpattern_t *pattern_of(const http_route_t *routes, size_t n, size_t r, cpattern_t *tmp)
{
    if (n > CACHED_ROUTES) {
        compile_pattern(routes[r].pattern, tmp);
        return tmp;
    }
    if (cached_table != routes || cached_n != n) {
        for (size_t i = 0; i < n; i++)
            compile_pattern(routes[i].pattern, &cached[i]);
        cached_table = routes;
        cached_n = n;
    }
    return &cached[r];
}

static bool match_pattern(const cpattern_t *c, const segments_t *segs)
{
    if (c->n != segs->n)
        return false;
    for (size_t i = 0; i < c->n; i++)
        if (!c->seg[i].param &&
            (c->seg[i].len != segs->len[i] || memcmp(c->seg[i].lit, segs->seg[i], c->seg[i].len) != 0))
            return false;
    return true;
}

int router_match(const http_route_t *routes, size_t n, const char *path, unsigned method, router_match_t *ret)
{
    segments_t segs;
    ret->route = NULL;
    ret->path_route = NULL;
    ret->allowed = 0;
    ret->n_params = 0;
    if (split_path(path, &segs, ret) < 0)
        return -EINVAL;
    for (size_t r = 0; r < n; r++) {
        cpattern_t tmp;
        const cpattern_t *c = pattern_of(routes, n, r, &tmp);
        if (!match_pattern(c, &segs))
            continue;
        ret->allowed |= routes[r].methods;
        if (!ret->path_route)
            ret->path_route = &routes[r];
        if ((routes[r].methods & method) && ret->route == NULL) {
            size_t np = 0;
            for (size_t i = 0; i < c->n; i++) {
                if (!c->seg[i].param)
                    continue;
                if (np < ROUTER_MAX_PARAMS)
                    memcpy(ret->params[np], segs.seg[i], segs.len[i] + 1);
                np++;
            }
            ret->n_params = np;
            ret->route = &routes[r];
        }
    }
    if (ret->route)
        return 0;
    return ret->allowed ? -EPERM : -ENOENT;
}

static const struct {
    unsigned bit;
    const char *name;
} method_names[] = {
    {EVHTTP_REQ_GET, "GET"},         {EVHTTP_REQ_HEAD, "HEAD"},   {EVHTTP_REQ_POST, "POST"},
    {EVHTTP_REQ_PUT, "PUT"},         {EVHTTP_REQ_PATCH, "PATCH"}, {EVHTTP_REQ_DELETE, "DELETE"},
    {EVHTTP_REQ_OPTIONS, "OPTIONS"}, {EVHTTP_REQ_TRACE, "TRACE"}, {EVHTTP_REQ_CONNECT, "CONNECT"},
};

void router_allow_header(unsigned methods, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (!(methods & method_names[i].bit))
            continue;
        int w = snprintf(buf + o, len - o, "%s%s", o ? ", " : "", method_names[i].name);
        if (w < 0 || (size_t)w >= len - o)
            return;
        o += (size_t)w;
    }
}

const char *router_method_name(unsigned method)
{
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
        if (method == method_names[i].bit)
            return method_names[i].name;
    return "UNKNOWN";
}
