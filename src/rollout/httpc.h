/* SPDX-License-Identifier: Apache-2.0 */
/* A small blocking HTTP/1.1 client for the CLI commands that act through the server's
 * API (deploy, rollback, verify, smoke): plain http:// only, one request per
 * connection, timeouts on connect/send/receive and a cap on the response size. */
#ifndef AIMEDRES_ROLLOUT_HTTPC_H
#define AIMEDRES_ROLLOUT_HTTPC_H

#include <jansson.h>
#include <stddef.h>

#define ROLLOUT_HTTPC_MAX_RESPONSE ((size_t)16 << 20)

typedef struct rollout_http_response {
    int status;
    char *body; /* NUL-terminated; caller frees (rollout_http_response_free) */
    size_t len;
    double elapsed_ms;
} rollout_http_response_t;

/* base_url "http://host:port" (a trailing path is ignored). body NULL = none (sent as
 * application/json otherwise). api_key NULL = no X-API-Key. Returns 0 with *ret filled
 * (any HTTP status), or -errno with err explaining (connection refused, timeout...). */
int rollout_http_request(const char *base_url, const char *method, const char *path, const char *body,
                         const char *api_key, int timeout_ms, rollout_http_response_t *ret, char *err,
                         size_t errlen);
void rollout_http_response_free(rollout_http_response_t *r);
/* The response body parsed as JSON (new reference) or NULL. */
json_t *rollout_http_json(const rollout_http_response_t *r);

#endif
