/* SPDX-License-Identifier: Apache-2.0 */
/* Path router; see router.h. Matching is a linear scan: the table has a dozen routes
 * and each comparison is a few segment compares, cheaper than any index. */
#include "http/router.h"

#include <errno.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>

typedef struct segments {
    size_t n;
    char seg[ROUTER_MAX_SEGMENTS][256];
} segments_t;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits and percent-decodes each segment. An empty segment (double slash) is refused
 * except a single trailing slash, which is ignored. */
static int split_path(const char *path, segments_t *out)
{
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/' || len > ROUTER_MAX_PATH)
        return -EINVAL;
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
            return -EINVAL;
        }
        if (out->n >= ROUTER_MAX_SEGMENTS)
            return -EINVAL;
        char *dst = out->seg[out->n];
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (c == '%') {
                if (i + 2 >= n)
                    return -EINVAL;
                int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
                if (hi < 0 || lo < 0)
                    return -EINVAL;
                c = (char)(hi * 16 + lo);
                if (c == '\0')
                    return -EINVAL;
                i += 2;
            }
            if (o + 1 >= sizeof(out->seg[0]))
                return -EINVAL;
            dst[o++] = c;
        }
        dst[o] = '\0';
        out->n++;
        if (!end)
            return 0;
        p = end + 1;
        if (*p == '\0')
            return 0;
    }
}

static int match_pattern(const char *pattern, const segments_t *segs, router_match_t *ret)
{
    size_t i = 0, np = 0;
    const char *p = pattern + 1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (i >= segs->n)
            return 0;
        if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
            if (ret && np < ROUTER_MAX_PARAMS)
                memcpy(ret->params[np], segs->seg[i], strlen(segs->seg[i]) + 1);
            np++;
        } else if (strlen(segs->seg[i]) != n || memcmp(segs->seg[i], p, n) != 0) {
            return 0;
        }
        i++;
        p = end ? end + 1 : p + n;
    }
    if (i != segs->n)
        return 0;
    if (ret)
        ret->n_params = np;
    return 1;
}

int router_match(const http_route_t *routes, size_t n, const char *path, unsigned method, router_match_t *ret)
{
    segments_t segs;
    ret->route = NULL;
    ret->allowed = 0;
    ret->n_params = 0;
    if (split_path(path, &segs) < 0)
        return -EINVAL;
    for (size_t r = 0; r < n; r++) {
        if (!match_pattern(routes[r].pattern, &segs, NULL))
            continue;
        ret->allowed |= routes[r].methods;
        if ((routes[r].methods & method) && ret->route == NULL) {
            match_pattern(routes[r].pattern, &segs, ret);
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
