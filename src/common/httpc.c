/* SPDX-License-Identifier: Apache-2.0 */
/* Blocking HTTP/1.1 client (see httpc.h). A non-blocking socket polled against one deadline,
 * so that connect, the TLS handshake, the send and every read share the caller's timeout;
 * TLS through OpenSSL on the same descriptor. */
#include "common/httpc.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config.h"
#include "common/util.h"

int httpc_parse_url(const char *url, httpc_url_t *ret, char *err, size_t errlen)
{
    memset(ret, 0, sizeof(*ret));
    const char *h;
    if (url && strncmp(url, "http://", 7) == 0) {
        h = url + 7;
    } else if (url && strncmp(url, "https://", 8) == 0) {
        h = url + 8;
        ret->tls = true;
    } else {
        snprintf(err, errlen, "URL must start with http:// or https:// (got '%.64s')", url ? url : "");
        return -EINVAL;
    }
    const char *end = h + strcspn(h, "/?#"), *colon;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb || rb == h + 1 || (size_t)(rb - h - 1) >= sizeof(ret->host) || (rb[1] != ':' && rb + 1 != end))
            goto bad;
        snprintf(ret->host, sizeof(ret->host), "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *he = colon ? colon : end;
        if (he == h || (size_t)(he - h) >= sizeof(ret->host) || memchr(h, '@', (size_t)(he - h)))
            goto bad;
        snprintf(ret->host, sizeof(ret->host), "%.*s", (int)(he - h), h);
    }
    ret->port = ret->tls ? 443 : 80;
    if (*end && strcmp(end, "/") != 0) {
        /* the commands call /api/v1/... from the root: a prefix would be dropped silently */
        snprintf(err, errlen, "URL '%.64s': a path, query or fragment is not supported (http[s]://host[:port])",
                 url);
        return -EINVAL;
    }
    if (colon) {
        char digits[8];
        size_t n = (size_t)(end - colon - 1);
        int64_t p;
        if (n == 0 || n >= sizeof(digits))
            goto bad;
        memcpy(digits, colon + 1, n);
        digits[n] = '\0';
        if (strspn(digits, "0123456789") != n || util_parse_int64(digits, 1, 65535, &p) < 0)
            goto bad;
        ret->port = (int)p;
    }
    return 0;
bad:
    snprintf(err, errlen, "malformed URL '%.64s' (expected http[s]://host[:port])", url);
    return -EINVAL;
}

void httpc_response_free(httpc_response_t *r)
{
    if (r) {
        free(r->body);
        r->body = NULL;
    }
}

json_t *httpc_json(const httpc_response_t *r)
{
    return r && r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
}

/* ---- the server the commands talk to ---- */

typedef struct server_env {
    char host[256], port[24], tls[16], cert[4096];
} server_env_t;

static void take(const char *key, const char *value, server_env_t *e)
{
    if (strcmp(key, "HOST") == 0)
        snprintf(e->host, sizeof(e->host), "%s", value);
    else if (strcmp(key, "PORT") == 0)
        snprintf(e->port, sizeof(e->port), "%s", value);
    else if (strcmp(key, "TLS_ENABLED") == 0)
        snprintf(e->tls, sizeof(e->tls), "%s", value);
    else if (strcmp(key, "TLS_CERT_PATH") == 0)
        snprintf(e->cert, sizeof(e->cert), "%s", value);
}

static int take_cb(const char *key, const char *value, void *arg)
{
    take(key, value, arg);
    return 0;
}

int httpc_server_settings(const char *env_file, httpc_server_t *ret, char *err, size_t errlen)
{
    memset(ret, 0, sizeof(*ret));
    server_env_t e = {0};
    if (env_file) {
        int r = config_parse_env_file(env_file, take_cb, &e, err, errlen);
        if (r < 0)
            return r;
    }
    static const char *const keys[] = {"HOST", "PORT", "TLS_ENABLED", "TLS_CERT_PATH"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = getenv(keys[i]);
        if (v)
            take(keys[i], v, &e);
    }
    bool on = false;
    ret->tls = e.tls[0] && util_parse_bool(e.tls, &on) == 0 && on;
    const char *host = e.host;
    if (!*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1";
    snprintf(ret->host, sizeof(ret->host), "%s", host);
    snprintf(ret->port, sizeof(ret->port), "%s", e.port[0] ? e.port : "8080");
    bool v6 = strchr(host, ':') != NULL;
    snprintf(ret->url, sizeof(ret->url), "%s://%s%s%s:%s", ret->tls ? "https" : "http", v6 ? "[" : "", host,
             v6 ? "]" : "", ret->port);
    const char *ca = getenv("AIMEDRES_CA_FILE");
    if (ca && *ca)
        snprintf(ret->ca_file, sizeof(ret->ca_file), "%s", ca);
    else if (ret->tls && e.cert[0] && access(e.cert, R_OK) == 0)
        snprintf(ret->pin_file, sizeof(ret->pin_file), "%s", e.cert);
    return 0;
}

/* An address of this machine: loopback, unspecified (0.0.0.0, ::, as a destination they
 * reach this machine), or one of its interfaces'. */
static bool local_address(const struct sockaddr *sa, const struct ifaddrs *ifs)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        if ((a >> 24) == 127 || a == 0)
            return true;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
            (IN6_IS_ADDR_V4MAPPED(a) && (a->s6_addr[12] == 127 || (a->s6_addr[12] | a->s6_addr[13] |
                                                                    a->s6_addr[14] | a->s6_addr[15]) == 0)))
            return true;
    } else {
        return false;
    }
    for (const struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        const struct sockaddr *ia = i->ifa_addr;
        if (!ia || ia->sa_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET && ((const struct sockaddr_in *)ia)->sin_addr.s_addr ==
                                            ((const struct sockaddr_in *)sa)->sin_addr.s_addr)
            return true;
        if (sa->sa_family == AF_INET6 && memcmp(&((const struct sockaddr_in6 *)ia)->sin6_addr,
                                                &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0)
            return true;
    }
    return false;
}

/* The URL names this machine's server (the one the settings describe): its port, and a host
 * that is this machine by any spelling (review60 #3: LOCALHOST, 0.0.0.0, ::ffff:127.0.0.1,
 * 2130706433, the machine's own address or name), or the configured HOST. */
static bool names_this_server(const httpc_server_t *srv, const httpc_url_t *u)
{
    int64_t port; /* as serve reads PORT: leading zeros and '+' taken (review61 #1) */
    if (util_parse_int64(srv->port, 1, 65535, &port) < 0 || port != u->port)
        return false;
    if (strcasecmp(u->host, srv->host) == 0)
        return true;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(u->host, NULL, &hints, &res) != 0)
        return false;
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) < 0)
        ifs = NULL;
    bool local = false;
    for (struct addrinfo *ai = res; ai && !local; ai = ai->ai_next)
        local = local_address(ai->ai_addr, ifs);
    freeifaddrs(ifs);
    freeaddrinfo(res);
    return local;
}

void httpc_server_trust(const httpc_server_t *srv, const httpc_url_t *u, httpc_opts_t *o)
{
    o->ca_file = srv->ca_file[0] ? srv->ca_file : NULL;
    /* the server's own certificate, only for the server it belongs to (review60 #2): another
     * host (a load balancer, production seen from a drill) is checked against the CAs */
    o->pin_file = srv->pin_file[0] && names_this_server(srv, u) ? srv->pin_file : NULL;
}

int httpc_server_check_url(const httpc_server_t *srv, const httpc_url_t *u, char *err, size_t errlen)
{
    if (!srv->tls || u->tls || !names_this_server(srv, u))
        return 0;
    snprintf(err, errlen,
             "the server speaks TLS on port %s (TLS_ENABLED=true): an http:// URL would send the request, and its "
             "API key, in clear; use https://",
             srv->port);
    return -EPROTONOSUPPORT;
}

/* ---- the connection ---- */

typedef struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int64_t deadline_ms;
} conn_t;

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

static int dial(const httpc_url_t *u, int64_t deadline, char *err, size_t errlen)
{
    char ports[8];
    snprintf(ports, sizeof(ports), "%d", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(u->host, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(g));
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
    bool v6 = strchr(u->host, ':') != NULL;
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s%s%s:%d: %s", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port,
                 r == -ETIMEDOUT ? "timed out" : strerror(-r));
    return fd < 0 ? r : fd;
}

/* Waits for what an SSL call asked for; 0 to retry it, <0 to give up. */
static int ssl_wait(conn_t *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(c->fd, POLLIN, c->deadline_ms);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(c->fd, POLLOUT, c->deadline_ms);
    return -EPROTO;
}

/* The first certificate of a PEM file, or NULL. */
static X509 *read_leaf(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509_AUX(f, NULL, NULL, NULL); /* as the server reads its chain (review60 #6) */
    fclose(f);
    return x;
}

static int tls_start(conn_t *c, const httpc_url_t *u, const httpc_opts_t *o, char *err, size_t errlen)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION)) {
        snprintf(err, errlen, "TLS: cannot set up the client");
        return -ENOMEM;
    }
    X509 *pin = NULL;
    if (o->pin_file) {
        /* the server's own certificate: the peer must present exactly it (checked after the
         * handshake, before anything is sent); its issuer and names do not matter then */
        if (!(pin = read_leaf(o->pin_file))) {
            snprintf(err, errlen, "TLS: cannot read a certificate from %s (TLS_CERT_PATH)", o->pin_file);
            return -EINVAL;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (o->ca_file ? SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            unsigned long e = ERR_peek_last_error();
            snprintf(err, errlen, "TLS: cannot load the trusted certificates%s%s%s: %s", o->ca_file ? " from " : "",
                     o->ca_file ? o->ca_file : "", o->ca_file ? " (AIMEDRES_CA_FILE)" : "",
                     e ? ERR_reason_error_string(e) : "no certificate found");
            ERR_clear_error();
            return -EINVAL;
        }
        /* a leaf or an intermediate in AIMEDRES_CA_FILE is an anchor too (review59 #1) */
        if (o->ca_file)
            X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(c->ctx), X509_V_FLAG_PARTIAL_CHAIN);
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        X509_free(pin);
        snprintf(err, errlen, "TLS: cannot set up the connection");
        return -ENOMEM;
    }
    /* the certificate must name what was dialled: an address as an IP SAN, a name as a DNS SAN */
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, u->host, ip) == 1 || inet_pton(AF_INET6, u->host, ip) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if ((!is_ip && SSL_set_tlsext_host_name(c->ssl, u->host) != 1) ||
        (!pin && (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1 : SSL_set1_host(c->ssl, u->host) != 1))) {
        X509_free(pin);
        snprintf(err, errlen, "TLS: cannot set the name to verify (%s)", u->host);
        return -EINVAL;
    }
    int rc;
    while ((rc = SSL_connect(c->ssl)) != 1) {
        int w = ssl_wait(c, rc);
        if (w == 0)
            continue;
        long vr = SSL_get_verify_result(c->ssl);
        unsigned long e = ERR_peek_last_error();
        if (w == -ETIMEDOUT)
            snprintf(err, errlen, "TLS handshake with %s:%d: timed out", u->host, u->port);
        else if (vr != X509_V_OK)
            snprintf(err, errlen,
                     "TLS handshake with %s:%d: the server's certificate is not trusted (%s)%s", u->host, u->port,
                     X509_verify_cert_error_string(vr),
                     o->ca_file ? ""
                                : "; set AIMEDRES_CA_FILE to the CA that issued it (or to the certificate itself)");
        else
            snprintf(err, errlen, "TLS handshake with %s:%d failed: %s", u->host, u->port,
                     e ? ERR_reason_error_string(e) : "the connection closed (is it a TLS port?)");
        ERR_clear_error();
        X509_free(pin);
        return w == -ETIMEDOUT ? w : -EPROTO;
    }
    if (pin) {
        X509 *peer = SSL_get1_peer_certificate(c->ssl);
        bool same = peer && X509_cmp(peer, pin) == 0;
        bool expired = same && X509_cmp_current_time(X509_get0_notAfter(peer)) < 0;
        bool early = same && X509_cmp_current_time(X509_get0_notBefore(peer)) > 0;
        X509_free(peer);
        X509_free(pin);
        if (!same)
            snprintf(err, errlen,
                     "TLS handshake with %s:%d: the server does not present the certificate this machine's server "
                     "is configured with (TLS_CERT_PATH %s); set AIMEDRES_CA_FILE to the CA that issued the one it "
                     "presents",
                     u->host, u->port, o->pin_file);
        else if (expired || early)
            snprintf(err, errlen, "TLS handshake with %s:%d: the server's certificate (TLS_CERT_PATH %s) %s",
                     u->host, u->port, o->pin_file, expired ? "has expired: renew it" : "is not valid yet");
        if (!same || expired || early)
            return -EPROTO;
    }
    return 0;
}

static int conn_write(conn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            size_t done = 0;
            int rc = SSL_write_ex(c->ssl, p, n, &done);
            if (rc != 1) {
                int r = ssl_wait(c, rc);
                if (r < 0)
                    return r;
                continue;
            }
            w = (ssize_t)done;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                int r = wait_fd(c->fd, POLLOUT, c->deadline_ms);
                if (r < 0)
                    return r;
                continue;
            }
            if (w < 0)
                return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Up to n bytes; 0 at the end of the stream. */
static ssize_t conn_read(conn_t *c, char *p, size_t n)
{
    for (;;) {
        if (c->ssl) {
            size_t got = 0;
            int rc = SSL_read_ex(c->ssl, p, n, &got);
            if (rc == 1)
                return (ssize_t)got;
            int e = SSL_get_error(c->ssl, rc);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) {
                /* a peer that closes without close_notify: the end, if the answer is whole
                 * (checked by the caller against its framing) */
                ERR_clear_error();
                return 0;
            }
            int r = ssl_wait(c, rc);
            if (r < 0)
                return r;
            continue;
        }
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        int w = wait_fd(c->fd, POLLIN, c->deadline_ms);
        if (w < 0)
            return w;
    }
}

static void conn_close(conn_t *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* best effort: one close_notify, no wait for the peer's */
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
}

/* OpenSSL writes the socket without MSG_NOSIGNAL: a peer that closes first would raise SIGPIPE
 * and kill the command. SIGPIPE is blocked for an https exchange, and one it raised is taken
 * back before the mask is restored. */
typedef struct pipe_guard {
    bool on, pending_before;
    sigset_t set, old;
} pipe_guard_t;

static void pipe_block(pipe_guard_t *g)
{
    sigset_t pending;
    g->on = true;
    sigemptyset(&g->set);
    sigaddset(&g->set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &g->set, &g->old);
    g->pending_before = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

static void pipe_restore(pipe_guard_t *g)
{
    sigset_t pending;
    if (!g->on)
        return;
    if (!g->pending_before && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&g->set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- the exchange ---- */

/* Decodes a chunked body in place; the decoded length or -EPROTO (also when incomplete). */
static long dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        if (in >= len)
            return -EPROTO;
        unsigned long n = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (!end || end == b + in || !crlf || end > crlf)
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

/* The answer in buf (got bytes, NUL-terminated) into ret; -EPROTO when it is not whole. */
static int parse_answer(char *buf, size_t got, httpc_response_t *ret)
{
    int status = 0;
    char *hdr_end;
    for (;;) { /* interim answers (100 Continue...) come before the one that counts */
        hdr_end = strstr(buf, "\r\n\r\n");
        if (strncmp(buf, "HTTP/1.", 7) != 0 || !hdr_end || sscanf(buf + 8, " %d", &status) != 1 || status < 100 ||
            status > 999)
            return -EPROTO;
        if (status >= 200)
            break;
        got -= (size_t)(hdr_end + 4 - buf);
        buf = hdr_end + 4;
    }
    *hdr_end = '\0';
    char *b = hdr_end + 4;
    size_t blen = got - (size_t)(b - buf);
    bool chunked = false;
    for (char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, "transfer-encoding:", 18) == 0 && strcasestr(l, "chunked"))
            chunked = true;
        if (strncasecmp(l, "content-length:", 15) == 0) {
            char *e = NULL;
            unsigned long long cl = strtoull(l + 15, &e, 10);
            if (cl > blen)
                return -EPROTO; /* cut short */
            blen = (size_t)cl;
        }
    }
    if (chunked) {
        long d = dechunk(b, blen);
        if (d < 0)
            return -EPROTO;
        blen = (size_t)d;
    }
    ret->body = malloc(blen + 1);
    if (!ret->body)
        return -ENOMEM;
    memcpy(ret->body, b, blen);
    ret->body[blen] = '\0';
    ret->len = blen;
    ret->status = status;
    return 0;
}

int httpc_request(const httpc_url_t *u, const char *method, const char *path, const char *body,
                  const httpc_opts_t *o, httpc_response_t *ret, char *err, size_t errlen)
{
    memset(ret, 0, sizeof(*ret));
    int64_t t0 = util_mono_ns();
    conn_t c = {.fd = -1, .deadline_ms = now_ms() + (o->timeout_ms > 0 ? o->timeout_ms : 10000)};
    size_t cap_max = o->max_response ? o->max_response : HTTPC_MAX_RESPONSE;
    char *req = NULL, *buf = NULL;
    const char *what = "connecting";
    pipe_guard_t guard = {0};
    int r = dial(u, c.deadline_ms, err, errlen);
    if (r < 0)
        return r;
    c.fd = r;
    if (u->tls)
        pipe_block(&guard);
    if (u->tls && (r = tls_start(&c, u, o, err, errlen)) < 0) {
        conn_close(&c);
        pipe_restore(&guard);
        return r;
    }
    bool v6 = strchr(u->host, ':') != NULL;
    int n = asprintf(&req,
                     "%s %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: %s\r\nAccept: application/json\r\n"
                     "Connection: close\r\n%s%s%s%sContent-Length: %zu\r\n\r\n",
                     method, path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port,
                     o->user_agent ? o->user_agent : "aimedres-cli/" AIMEDRES_VERSION,
                     body ? "Content-Type: application/json\r\n" : "", o->api_key ? "X-API-Key: " : "",
                     o->api_key ? o->api_key : "", o->api_key ? "\r\n" : "", body ? strlen(body) : (size_t)0);
    if (n < 0) {
        req = NULL;
        r = -ENOMEM;
        goto fail;
    }
    what = "sending to";
    if ((r = conn_write(&c, req, (size_t)n)) < 0 || (body && (r = conn_write(&c, body, strlen(body))) < 0))
        goto fail;
    what = "reading from";
    size_t cap = 64 * 1024, got = 0;
    if (!(buf = malloc(cap + 1))) {
        r = -ENOMEM;
        goto fail;
    }
    for (;;) {
        if (got == cap) {
            if (cap >= cap_max) {
                r = -EFBIG;
                goto fail;
            }
            cap = cap * 2 < cap_max ? cap * 2 : cap_max;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                r = -ENOMEM;
                goto fail;
            }
            buf = nb;
        }
        ssize_t rd = conn_read(&c, buf + got, cap - got);
        if (rd < 0) {
            r = (int)rd;
            goto fail;
        }
        if (rd == 0)
            break;
        got += (size_t)rd;
    }
    buf[got] = '\0';
    if ((r = parse_answer(buf, got, ret)) < 0)
        goto fail;
    ret->elapsed_ms = (double)(util_mono_ns() - t0) / 1e6;
    free(buf);
    free(req);
    conn_close(&c);
    pipe_restore(&guard);
    return 0;
fail:
    snprintf(err, errlen, "%s %s://%s%s%s:%d: %s", what, u->tls ? "https" : "http", v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port,
             r == -EPROTO    ? "unparsable or incomplete HTTP answer"
             : r == -EFBIG   ? "answer larger than the limit"
             : r == -ETIMEDOUT ? "timed out"
                             : strerror(-r));
    free(buf);
    free(req);
    conn_close(&c);
    pipe_restore(&guard);
    return r;
}
