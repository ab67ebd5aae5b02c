/* SPDX-License-Identifier: Apache-2.0 */
/* The client address behind reverse proxies (TRUSTED_PROXIES). When the TCP peer is a
 * trusted proxy, the client is the right-most address in X-Forwarded-For that is not itself
 * a trusted proxy; otherwise the header is ignored (a client can write anything there).
 * That address feeds lockout, per-address rate limits and the audit "source_ip". */
#ifndef AIMEDRES_SECURITY_CLIENTADDR_H
#define AIMEDRES_SECURITY_CLIENTADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"

#define CLIENTADDR_MAX_PROXIES 64 /* entries in TRUSTED_PROXIES */
#define CLIENTADDR_MAX_HOPS 32    /* X-Forwarded-For entries examined, right to left */
#define CLIENTADDR_MAX_XFF 4096   /* of a longer header, the last 4 KiB are examined */
#define CLIENTADDR_LEN 64         /* room for any address as text (INET6_ADDRSTRLEN is 46) */

typedef struct clientaddr_proxies clientaddr_proxies_t;

/* Parses TRUSTED_PROXIES: a comma-separated list of IPv4/IPv6 addresses or CIDR blocks
 * ("10.0.0.0/8, 127.0.0.1, ::1, fd00::/8"); blanks around items are ignored. NULL or
 * empty: trust nobody (*ret = NULL, 0). -EINVAL with the offending item in err. Caller
 * frees with clientaddr_proxies_free. */
int clientaddr_proxies_parse(const char *spec, clientaddr_proxies_t **ret, char *err, size_t errlen);
void clientaddr_proxies_free(clientaddr_proxies_t *p);

/* True if addr (text; IPv4-mapped IPv6 counts as IPv4; a %zone is ignored) is in the set.
 * False for NULL p or an unparsable addr. */
bool clientaddr_is_trusted(const clientaddr_proxies_t *p, const char *addr);

/* Chooses the client address of a request from the peer address and the X-Forwarded-For
 * value (may be NULL) and writes it to out (canonical text: inet_ntop, IPv4-mapped shown as
 * IPv4). Rules: the peer is untrusted, or there is no usable header -> the peer; else walk
 * the header right to left over at most CLIENTADDR_MAX_HOPS entries and take the first that
 * is not a trusted proxy. Entries may carry a port ("1.2.3.4:5", "[::1]:5"). A malformed
 * entry stops the walk: the last trusted hop is used (it handed us garbage). When every
 * entry is trusted, the left-most examined one is used. Returns true if the result came
 * from the header. */
bool clientaddr_select(const clientaddr_proxies_t *p, const char *peer, const char *xff, char *out,
                       size_t outlen);

/* Process-wide set for the server, configured once by `serve` before the workers start
 * (read-only afterwards). -EINVAL with "TRUSTED_PROXIES: ..." in err. */
int clientaddr_configure(const char *spec, char *err, size_t errlen);
void clientaddr_deconfigure(void);

/* Called by the authorize hook for every routed request: when the peer is a trusted proxy,
 * replaces the request's peer address with the client address (http_ctx_set_peer), so
 * everything downstream (lockout, rate limits, audit source_ip) keys on the client. No-op
 * without TRUSTED_PROXIES. */
void clientaddr_apply(http_ctx_t *ctx);

#endif
