/* SPDX-License-Identifier: Apache-2.0 */
/* Blocking HTTP/1.1 client over a TCP socket (see httpc.h). Reads the whole response
 * (Connection: close) and decodes Content-Length or chunked bodies. */
#include "rollout/httpc.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/util.h"

static int parse_url(const char *url, char *host, size_t hn, char *port, size_t pn, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "URL must start with http:// (got '%.64s')", url);
        return -EINVAL;
    }
    const char *h = url + 7, *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            goto bad;
        snprintf(host, hn, "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        snprintf(host, hn, "%.*s", (int)((colon ? colon : end) - h), h);
    }
    if (colon)
        snprintf(port, pn, "%.*s", (int)(end - colon - 1), colon + 1);
    else
        snprintf(port, pn, "80");
    if (!host[0] || !port[0])
        goto bad;
    return 0;
bad:
    snprintf(err, errlen, "malformed URL '%.64s'", url);
    return -EINVAL;
}

static int dial(const char *host, const char *port, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int fd = -1, rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            rc = 0;
            break;
        }
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(-rc));
        return rc;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decodes a chunked body in place; returns its length or -1. */
static long dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *e;
        unsigned long sz = strtoul(b + in, &e, 16);
        char *nl = strstr(b + in, "\r\n");
        if (!nl || e == b + in)
            return -1;
        in = (size_t)(nl - b) + 2;
        if (sz == 0)
            return (long)out;
        if (in + sz > n)
            return -1;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz + 2;
        if (in > n)
            return -1;
    }
}

int rollout_http_request(const char *base_url, const char *method, const char *path, const char *body,
                         const char *api_key, int timeout_ms, rollout_http_response_t *ret, char *err,
                         size_t errlen)
{
    char host[256], port[16];
    memset(ret, 0, sizeof(*ret));
    int rc = parse_url(base_url, host, sizeof(host), port, sizeof(port), err, errlen);
    if (rc < 0)
        return rc;
    int64_t t0 = util_mono_ns();
    int fd = dial(host, port, timeout_ms, err, errlen);
    if (fd < 0)
        return fd;
    char head[2048];
    size_t blen = body ? strlen(body) : 0;
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nAccept: application/json\r\n"
                      "User-Agent: aimedres-cli/" AIMEDRES_VERSION "\r\n%s%s%s%s%zu\r\n\r\n",
                      method, path, host, port, api_key ? "X-API-Key: " : "", api_key ? api_key : "",
                      api_key ? "\r\n" : "",
                      body ? "Content-Type: application/json\r\nContent-Length: " : "Content-Length: ", blen);
    char *buf = NULL;
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        snprintf(err, errlen, "request too long");
        rc = -EINVAL;
        goto out;
    }
    if ((rc = send_all(fd, head, (size_t)hl)) < 0 || (blen && (rc = send_all(fd, body, blen)) < 0)) {
        snprintf(err, errlen, "sending to %s: %s", base_url, strerror(-rc));
        goto out;
    }
    size_t cap = 65536, len = 0;
    buf = malloc(cap);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= ROLLOUT_HTTPC_MAX_RESPONSE) {
                snprintf(err, errlen, "response larger than %zu bytes", ROLLOUT_HTTPC_MAX_RESPONSE);
                rc = -EFBIG;
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            snprintf(err, errlen, "reading from %s: %s", base_url,
                     rc == -EAGAIN ? "timed out" : strerror(-rc));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !sep || sscanf(buf + 8, " %d", &ret->status) != 1) {
        snprintf(err, errlen, "malformed HTTP response from %s", base_url);
        rc = -EPROTO;
        goto out;
    }
    *sep = '\0';
    bool chunked = strcasestr(buf, "\r\nTransfer-Encoding: chunked") != NULL;
    char *b = sep + 4;
    size_t bl = len - (size_t)(b - buf);
    if (chunked) {
        long d = dechunk(b, bl);
        if (d < 0) {
            snprintf(err, errlen, "malformed chunked response from %s", base_url);
            rc = -EPROTO;
            goto out;
        }
        bl = (size_t)d;
    }
    ret->body = malloc(bl + 1);
    if (!ret->body) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(ret->body, b, bl);
    ret->body[bl] = '\0';
    ret->len = bl;
    ret->elapsed_ms = (double)(util_mono_ns() - t0) / 1e6;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

void rollout_http_response_free(rollout_http_response_t *r)
{
    free(r->body);
    r->body = NULL;
}

json_t *rollout_http_json(const rollout_http_response_t *r)
{
    return r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
}
