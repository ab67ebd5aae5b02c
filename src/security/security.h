/* SPDX-License-Identifier: Apache-2.0 */
/* Access control for the HTTP API: authenticates API keys and JWTs, checks the route's
 * role (security/roles.h), applies brute-force lockout and rate limits, sets the principal
 * on the request and emits AUTH_SUCCESS / AUTH_FAILURE audit events. Installed as the
 * server's authorize hook when AUTH_ENABLED (see docs/security.md for the matrix and the
 * status codes: 401 no/bad credential, 403 wrong role, 429 locked out or rate limited). */
#ifndef AIMEDRES_SECURITY_SECURITY_H
#define AIMEDRES_SECURITY_SECURITY_H

#include <stddef.h>

#include "common/config.h"
#include "http/server.h"
#include "store/store.h"

struct security;
typedef struct security security_t;

/* API key records are cached this long, so a revocation (from `aimedres apikey revoke`,
 * another process) takes effect within this time. */
#define SECURITY_KEY_CACHE_MS 500

/* Builds the authenticator from cfg (JWT keys, limits) over store (api_keys table).
 * cfg and store are borrowed and must outlive it. -errno with the reason in err.
 * Caller frees with security_free. */
int security_new(const config_t *cfg, store_t *store, security_t **ret, char *err, size_t errlen);
void security_free(security_t *sec);

/* The http_server_opts_t.authorize hook; arg is the api_app_t (its security and audit
 * members are read at each call; a NULL security lets every request through). Returns 0
 * to run the handler, 1 after replying 401/403/429 itself. Worker threads only. */
int security_authorize(http_ctx_t *ctx, const http_route_t *route, void *arg);

#endif
