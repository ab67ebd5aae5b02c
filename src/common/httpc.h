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
    const char *ca_file;    /* https: the certificates trusted (PEM; a leaf or an intermediate
                             * in it is an anchor too); NULL: the system's */
    const char *pin_file;   /* https, instead: the server's own certificate (PEM, the first one
                             * is the leaf): the peer must present exactly it, whatever its name */
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

/* Where the commands that talk to a server (deploy, rollback, verify, smoke) find it: the
 * server's own settings, HOST, PORT, TLS_ENABLED and TLS_CERT_PATH, from env_file (the
 * server's env file; NULL for none) with the environment overriding it, as `serve` reads them. */
typedef struct httpc_server {
    char url[300];          /* http[s]://HOST:PORT, 0.0.0.0 and :: meaning loopback */
    bool tls;               /* TLS_ENABLED=true */
    char host[256];         /* HOST as the URL names it (loopback for 0.0.0.0, ::, unset) */
    char port[24];
    char ca_file[4096];     /* AIMEDRES_CA_FILE (the environment only), or "" */
    char pin_file[4096];    /* without it, with TLS: TLS_CERT_PATH when readable, or "" */
} httpc_server_t;

/* 0, or -errno with err (an env file that can not be read or parsed). */
int httpc_server_settings(const char *env_file, httpc_server_t *ret, char *err, size_t errlen);
/* The https trust for u into o: AIMEDRES_CA_FILE, and the server's own certificate as a pin
 * only when u names this machine's server (its port, and this machine by any spelling). */
void httpc_server_trust(const httpc_server_t *srv, const httpc_url_t *u, httpc_opts_t *o);
/* A URL that would send a request in clear to the server's TLS port (http:// to PORT on this
 * machine, by any spelling, or HOST, with TLS_ENABLED=true): -EPROTONOSUPPORT with err saying
 * to use https. */
int httpc_server_check_url(const httpc_server_t *srv, const httpc_url_t *u, char *err, size_t errlen);

#endif
