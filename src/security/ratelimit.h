/* SPDX-License-Identifier: Apache-2.0 */
/* Token-bucket rate limits keyed by a short string (an API key id, a JWT subject, a peer
 * address). The table is split into stripes, each with its own mutex and a fixed number
 * of slots, so worker threads rarely contend and memory stays bounded however many
 * distinct keys an attacker invents (the least recently seen bucket is evicted). */
#ifndef AIMEDRES_SECURITY_RATELIMIT_H
#define AIMEDRES_SECURITY_RATELIMIT_H

#include <stdint.h>

typedef struct ratelimit_spec {
    double rate_per_s; /* tokens added per second; 0 = unlimited */
    double burst;      /* bucket capacity (>= 1 when limited) */
} ratelimit_spec_t;

/* Parses "N/s", "N/m" (N a positive integer) with an optional ":B" burst, or "off"/"0"
 * (unlimited). The burst defaults to N (one period's worth, at least 1). 0 or -EINVAL;
 * *ret untouched on failure. */
int ratelimit_parse_spec(const char *s, ratelimit_spec_t *ret);

typedef struct ratelimit ratelimit_t;

/* Creates a limiter; *ret is NULL (and 0 returned) when spec is unlimited, and
 * ratelimit_take accepts a NULL limiter. Caller frees with ratelimit_free. */
int ratelimit_new(const ratelimit_spec_t *spec, ratelimit_t **ret);
void ratelimit_free(ratelimit_t *rl);

/* Takes one token from key's bucket at time now_ms (monotonic). Returns 0 when allowed;
 * -EAGAIN when the bucket is empty, with *ret_retry_after_s set to the whole seconds
 * (>= 1) until a token is available. Keys of 64 bytes or more are replaced by their SHA-256
 * (so two long keys never share a bucket by their start). Thread-safe. */
int ratelimit_take(ratelimit_t *rl, const char *key, int64_t now_ms, int *ret_retry_after_s);

/* ratelimit_take that also counts refusals: when allowed, *ret_refused is the number of takes
 * refused for this key since its last allowed one (0 with a NULL limiter; a lower bound if
 * the bucket was evicted meanwhile), and the count starts again. For "at most one record a
 * minute, with the number left out" (security.c's bounded audit records). */
int ratelimit_take_counted(ratelimit_t *rl, const char *key, int64_t now_ms, int *ret_retry_after_s,
                           uint64_t *ret_refused);

#endif
