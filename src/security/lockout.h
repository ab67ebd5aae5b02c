/* SPDX-License-Identifier: Apache-2.0 */
/* Brute-force lockout per client address: after `threshold` failed authentications within
 * `window`, the address is refused for `duration` (upstream: 5 failures, 15 minutes).
 * Striped and bounded like the rate limiter, so it is safe on every worker thread. */
#ifndef AIMEDRES_SECURITY_LOCKOUT_H
#define AIMEDRES_SECURITY_LOCKOUT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct lockout lockout_t;

/* threshold 0 disables lockout: *ret is NULL and the functions below accept NULL. */
int lockout_new(int threshold, int64_t window_ms, int64_t duration_ms, lockout_t **ret);
void lockout_free(lockout_t *lo);

/* True if addr is locked out at now_ms (monotonic); *ret_retry_after_s gets the whole
 * seconds left (>= 1). */
bool lockout_locked(lockout_t *lo, const char *addr, int64_t now_ms, int *ret_retry_after_s);
/* Records a failure; returns true when this failure locked the address. */
bool lockout_fail(lockout_t *lo, const char *addr, int64_t now_ms);

#endif
