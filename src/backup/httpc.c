/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal HTTP/1.1 client (see httpc.h). */
#include "backup/httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

int backup_http_parse_url(const char *url, char *host, size_t hostlen, int *ret_port, char *err,
                          size_t errlen)
{
    if (!url || strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen,
                 "URL %s: only http://host[:port] is supported (run the drill where plain HTTP reaches the "
                 "server, e.g. on its host)",
                 url ? url : "(null)");
        return -EINVAL;
    }
    const char *h = url + 7;
    size_t n = strcspn(h, ":/");
    if (n == 0 || n >= hostlen) {
        snprintf(err, errlen, "URL %s: bad host", url);
        return -EINVAL;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    int port = 80;
    if (h[n] == ':') {
        char *end = NULL;
        long p = strtol(h + n + 1, &end, 10);
        if (p < 1 || p > 65535 || (*end && *end != '/')) {
            snprintf(err, errlen, "URL %s: bad port", url);
            return -EINVAL;
        }
        port = (int)p;
    }
    *ret_port = port;
    return 0;
}

void backup_http_response_free(backup_http_response_t *r)
{
    if (r) {
        free(r->body);
        r->body = NULL;
    }
}

static int64_t now_ms(void)
{
    return util_mono_ns() / 1000000;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r > 0)
            return 0;
    }
}

static int connect_to(const char *host, int port, int64_t deadline, char *err, size_t errlen)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int fd = -1, r = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && (r = wait_fd(fd, POLLOUT, deadline)) == 0) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr == 0)
                break;
            r = -soerr;
        } else if (errno != EINPROGRESS) {
            r = -errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(-r));
    return fd < 0 ? r : fd;
}

/* Decodes a chunked body in place; returns the decoded length or -EPROTO. */
static long dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        if (in >= len)
            return -EPROTO;
        unsigned long n = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (!end || !crlf || end > crlf)
            return -EPROTO;
        in = (size_t)(crlf - b) + 2;
        if (n == 0)
            break;
        if (n > len - in || len - in - n < 2)
            return -EPROTO;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
    }
    b[out] = '\0';
    return (long)out;
}

int backup_http_request(const char *host, int port, const char *method, const char *path, const char *body,
                        const char *api_key, int timeout_ms, backup_http_response_t *ret, char *err,
                        size_t errlen)
{
    int64_t deadline = now_ms() + timeout_ms;
    int fd = connect_to(host, port, deadline, err, errlen);
    if (fd < 0)
        return fd;
    char *req = NULL, *buf = NULL;
    int r = 0;
    int n = asprintf(
        &req,
        "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: aimedres-dr-drill\r\nAccept: application/json\r\n"
        "Connection: close\r\n%s%s%s%sContent-Length: %zu\r\n\r\n%s",
        method, path, host, port, body ? "Content-Type: application/json\r\n" : "",
        api_key ? "X-API-Key: " : "", api_key ? api_key : "", api_key ? "\r\n" : "",
        body ? strlen(body) : (size_t)0, body ? body : "");
    if (n < 0) {
        close(fd);
        return -ENOMEM;
    }
    size_t sent = 0, total = strlen(req);
    while (sent < total) {
        ssize_t w = send(fd, req + sent, total - sent, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if ((r = wait_fd(fd, POLLOUT, deadline)) < 0)
                goto fail;
            continue;
        }
        if (w < 0) {
            r = -errno;
            goto fail;
        }
        sent += (size_t)w;
    }
    size_t cap = 64 * 1024, got = 0;
    buf = malloc(cap + 1);
    if (!buf) {
        r = -ENOMEM;
        goto fail;
    }
    for (;;) {
        if (got == cap) {
            if (cap >= BACKUP_HTTP_MAX_RESPONSE) {
                r = -EFBIG;
                goto fail;
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                r = -ENOMEM;
                goto fail;
            }
            buf = nb;
        }
        ssize_t rd = recv(fd, buf + got, cap - got, 0);
        if (rd < 0 && (errno == EAGAIN || errno == EINTR)) {
            if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
                goto fail;
            continue;
        }
        if (rd < 0) {
            r = -errno;
            goto fail;
        }
        if (rd == 0)
            break;
        got += (size_t)rd;
    }
    buf[got] = '\0';
    int status = 0;
    char *hdr_end = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !hdr_end) {
        r = -EPROTO;
        goto fail;
    }
    *hdr_end = '\0';
    char *bstart = hdr_end + 4;
    size_t body_len = got - (size_t)(bstart - buf);
    bool chunked = false;
    for (char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "transfer-encoding:", 18) == 0 && strcasestr(l, "chunked"))
            chunked = true;
        if (strncasecmp(l, "content-length:", 15) == 0) {
            unsigned long cl = strtoul(l + 15, NULL, 10);
            if (cl < body_len)
                body_len = cl;
        }
    }
    if (chunked) {
        long dl = dechunk(bstart, body_len);
        if (dl < 0) {
            r = -EPROTO;
            goto fail;
        }
        body_len = (size_t)dl;
    }
    char *out = malloc(body_len + 1);
    if (!out) {
        r = -ENOMEM;
        goto fail;
    }
    memcpy(out, bstart, body_len);
    out[body_len] = '\0';
    ret->status = status;
    ret->body = out;
    ret->body_len = body_len;
    free(buf);
    free(req);
    close(fd);
    return 0;
fail:
    snprintf(err, errlen, "%s %s on %s:%d: %s", method, path, host, port,
             r == -EPROTO ? "unparsable HTTP response" : strerror(-r));
    free(buf);
    free(req);
    close(fd);
    return r;
}
