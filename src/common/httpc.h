/* SPDX-License-Identifier: Apache-2.0 */
/* The one HTTP/1.1 client of the CLI commands that talk to a server (deploy, rollback, verify,
 * smoke, dr-drill): blocking, one request per connection (Connection: close), http:// or
 * https:// (OpenSSL, the peer's certificate and name verified), a deadline on the whole
 * exchange and a cap on the response. Content-Length, chunked or read-to-close bodies. */
#ifndef AIMEDRES_COMMON_HTTPC_H
#define AIMEDRES_COMMON_HTTPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTPC_MAX_RESPONSE ((size_t)16 << 20)

typedef struct httpc_url {
    bool tls;       /* https:// */
    char host[256]; /* without brackets for IPv6 */
    int port;       /* 80 or 443 unless given */
} httpc_url_t;

typedef struct httpc_opts {
    const char *api_key;    /* sent as X-API-Key; NULL for none */
    const char *ca_file;    /* https: the certificates trusted (PEM); NULL: the system's */
    const char *user_agent; /* NULL: aimedres-cli/<version> */
    int timeout_ms;         /* the whole exchange */
    size_t max_response;    /* 0: HTTPC_MAX_RESPONSE */
} httpc_opts_t;

typedef struct httpc_response {
    int status;
    char *body; /* NUL-terminated; httpc_response_free */
    size_t len;
    double elapsed_ms;
} httpc_response_t;

/* "http[s]://host[:port][/...]" (the path is ignored; IPv6 in brackets). 0 or -EINVAL with err
 * naming what is wrong (the URL is quoted only up to 64 characters). */
int httpc_parse_url(const char *url, httpc_url_t *ret, char *err, size_t errlen);

/* Sends method path (body, when not NULL, as application/json) and reads the whole answer.
 * 0 with *ret filled (any HTTP status), or -errno with err: -ETIMEDOUT, -ECONNREFUSED,
 * -EHOSTUNREACH (no such name), -EPROTO (TLS handshake or certificate refused, or an
 * unparsable answer), -EFBIG (over the cap). */
int httpc_request(const httpc_url_t *u, const char *method, const char *path, const char *body,
                  const httpc_opts_t *o, httpc_response_t *ret, char *err, size_t errlen);
void httpc_response_free(httpc_response_t *r);
/* The body as JSON (new reference) or NULL. */
json_t *httpc_json(const httpc_response_t *r);

/* For the CLIs' default target, the server configured by the environment (HOST, PORT,
 * TLS_ENABLED): "https://..." when TLS_ENABLED=true, else "http://...", with 0.0.0.0 and ::
 * meaning loopback. */
void httpc_default_url(char *buf, size_t n);
/* The certificates a CLI trusts for https: AIMEDRES_CA_FILE, else, when TLS_ENABLED=true, the
 * server's own certificate (TLS_CERT_PATH, when set and readable: the CLI runs beside the
 * server), else NULL (the system's CAs). */
const char *httpc_default_ca(void);

#endif
