/* SPDX-License-Identifier: Apache-2.0 */
/* Per-address failure counting and lockout; see lockout.h.
 *
 * DESIGN: 64 stripes x 256 slots, linear probing (16 probes) from the address hash. An
 * entry counts failures in a window that opens at its first failure; reaching the
 * threshold sets locked_until and clears the count. A success does not reset the count
 * (a client holding one valid key must not be able to interleave guesses). When a stripe
 * is full, an unlocked entry is recycled before a locked one, oldest first. */
#include "security/lockout.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 64
#define SLOTS 256
#define PROBES 16
#define ADDR_MAX 64

typedef struct entry {
    char addr[ADDR_MAX]; /* "" = free */
    int failures;
    int64_t window_start_ms;
    int64_t locked_until_ms;
    int64_t seen_ms;
} entry_t;

typedef struct stripe {
    pthread_mutex_t mu;
    entry_t slots[SLOTS];
} stripe_t;

struct lockout {
    int threshold;
    int64_t window_ms, duration_ms;
    stripe_t stripes[STRIPES];
};

int lockout_new(int threshold, int64_t window_ms, int64_t duration_ms, lockout_t **ret)
{
    *ret = NULL;
    if (threshold <= 0)
        return 0;
    lockout_t *lo = calloc(1, sizeof(*lo));
    if (!lo)
        return -ENOMEM;
    lo->threshold = threshold;
    lo->window_ms = window_ms;
    lo->duration_ms = duration_ms;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&lo->stripes[i].mu, NULL);
    *ret = lo;
    return 0;
}

void lockout_free(lockout_t *lo)
{
    if (!lo)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&lo->stripes[i].mu);
    free(lo);
}

static uint64_t hash_addr(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Recycling preference of a slot: free (0) < unlocked (1) < locked (2). */
static int recycle_rank(const entry_t *e, int64_t now_ms)
{
    return !e->addr[0] ? 0 : e->locked_until_ms > now_ms ? 2 : 1;
}

/* Finds addr's entry (create: recycle a slot when absent). Stripe lock held. */
static entry_t *find(stripe_t *st, uint64_t h, const char *addr, int64_t now_ms, bool create)
{
    entry_t *victim = NULL;
    for (int p = 0; p < PROBES; p++) {
        entry_t *e = &st->slots[(h + (uint64_t)p) % SLOTS];
        if (e->addr[0] && strcmp(e->addr, addr) == 0)
            return e;
        if (!create)
            continue;
        /* preference: free < unlocked (oldest) < locked (oldest) */
        int rank = recycle_rank(e, now_ms);
        int vrank = victim ? recycle_rank(victim, now_ms) : 3;
        if (rank < vrank || (rank == vrank && victim && e->seen_ms < victim->seen_ms))
            victim = e;
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof(*victim));
    snprintf(victim->addr, sizeof(victim->addr), "%s", addr);
    return victim;
}

/* Copies addr as entries keep it (truncated to ADDR_MAX - 1 bytes) into key, hashes it into
 * *ret_hash and returns its stripe. */
static stripe_t *stripe_of(lockout_t *lo, const char *addr, char key[ADDR_MAX], uint64_t *ret_hash)
{
    snprintf(key, ADDR_MAX, "%s", addr);
    *ret_hash = hash_addr(key);
    return &lo->stripes[(*ret_hash >> 32) % STRIPES];
}

bool lockout_locked(lockout_t *lo, const char *addr, int64_t now_ms, int *ret_retry_after_s)
{
    if (!lo || !addr)
        return false;
    char a[ADDR_MAX];
    uint64_t h;
    stripe_t *st = stripe_of(lo, addr, a, &h);
    bool locked = false;
    pthread_mutex_lock(&st->mu);
    entry_t *e = find(st, h, a, now_ms, false);
    if (e && e->locked_until_ms > now_ms) {
        int64_t left = e->locked_until_ms - now_ms;
        *ret_retry_after_s = (int)((left + 999) / 1000);
        locked = true;
    }
    pthread_mutex_unlock(&st->mu);
    return locked;
}

bool lockout_fail(lockout_t *lo, const char *addr, int64_t now_ms)
{
    if (!lo || !addr)
        return false;
    char a[ADDR_MAX];
    uint64_t h;
    stripe_t *st = stripe_of(lo, addr, a, &h);
    bool locked_now = false;
    pthread_mutex_lock(&st->mu);
    entry_t *e = find(st, h, a, now_ms, true);
    e->seen_ms = now_ms;
    if (e->failures == 0 || now_ms - e->window_start_ms > lo->window_ms) {
        e->failures = 0;
        e->window_start_ms = now_ms;
    }
    if (++e->failures >= lo->threshold) {
        e->locked_until_ms = now_ms + lo->duration_ms;
        e->failures = 0;
        locked_now = true;
    }
    pthread_mutex_unlock(&st->mu);
    return locked_now;
}
