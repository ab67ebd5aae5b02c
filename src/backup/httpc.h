/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal blocking HTTP/1.1 client for the disaster-recovery drill: one request per
 * connection (Connection: close), plain HTTP, Content-Length or chunked bodies, a hard cap
 * on the response size and a deadline on the whole exchange. Enough to talk to our own
 * server on loopback and to a production URL; no TLS (put the drill next to the server). */
#ifndef AIMEDRES_BACKUP_HTTPC_H
#define AIMEDRES_BACKUP_HTTPC_H

#include <stddef.h>

#define BACKUP_HTTP_MAX_RESPONSE (8u << 20)

typedef struct backup_http_response {
    int status;
    char *body; /* NUL-terminated, owned (free with backup_http_response_free) */
    size_t body_len;
} backup_http_response_t;

/* "http://host[:port][/...]" into host and port (default 80). -EINVAL (https:// and others
 * are refused with the reason). */
int backup_http_parse_url(const char *url, char *host, size_t hostlen, int *ret_port, char *err,
                          size_t errlen);

/* Sends method path (with body as application/json when not NULL, and X-API-Key when
 * api_key is not NULL) to host:port and reads the whole response within timeout_ms. 0 (any
 * HTTP status) or -errno with err (-ETIMEDOUT, -ECONNREFUSED, -EPROTO for an unparsable
 * response, -EFBIG over the cap). */
int backup_http_request(const char *host, int port, const char *method, const char *path, const char *body,
                        const char *api_key, int timeout_ms, backup_http_response_t *ret, char *err,
                        size_t errlen);
void backup_http_response_free(backup_http_response_t *r);

#endif
