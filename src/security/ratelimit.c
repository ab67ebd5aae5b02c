/* SPDX-License-Identifier: Apache-2.0 */
/* Striped token buckets; see ratelimit.h.
 *
 * DESIGN: 64 stripes chosen by a hash of the key; each stripe holds 256 slots probed
 * linearly from the key's hash (at most 16 probes). A bucket stores its token count and
 * the time it was last refilled; refilling is lazy (on take). When no probed slot holds
 * the key or is free, the least recently used probed slot is recycled: a recycled key
 * starts with a full bucket, which only ever errs towards allowing, and an attacker needs
 * many keys colliding in one stripe to get there. */
#include "security/ratelimit.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define STRIPES 64
#define SLOTS 256
#define PROBES 16
#define KEY_MAX 64

typedef struct bucket {
    char key[KEY_MAX]; /* "" = free */
    double tokens;
    int64_t refilled_ms;
    uint64_t refused; /* takes refused since the last allowed one */
} bucket_t;

typedef struct stripe {
    pthread_mutex_t mu;
    bucket_t slots[SLOTS];
} stripe_t;

struct ratelimit {
    ratelimit_spec_t spec;
    stripe_t stripes[STRIPES];
};

int ratelimit_parse_spec(const char *s, ratelimit_spec_t *ret)
{
    if (!s)
        return -EINVAL;
    if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0) {
        *ret = (ratelimit_spec_t){0, 0};
        return 0;
    }
    char num[24], unit;
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n >= sizeof(num) || s[n] != '/')
        return -EINVAL;
    memcpy(num, s, n);
    num[n] = '\0';
    unit = s[n + 1];
    if (unit != 's' && unit != 'm')
        return -EINVAL;
    int64_t count, burst = -1;
    if (util_parse_int64(num, 1, 1000000000, &count) < 0)
        return -EINVAL;
    const char *rest = s + n + 2;
    if (*rest == ':') {
        if (util_parse_int64(rest + 1, 1, 1000000000, &burst) < 0)
            return -EINVAL;
    } else if (*rest) {
        return -EINVAL;
    }
    ret->rate_per_s = unit == 's' ? (double)count : (double)count / 60.0;
    ret->burst = burst > 0 ? (double)burst : (double)count;
    return 0;
}

int ratelimit_new(const ratelimit_spec_t *spec, ratelimit_t **ret)
{
    *ret = NULL;
    if (spec->rate_per_s <= 0)
        return 0;
    ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return -ENOMEM;
    rl->spec = *spec;
    if (rl->spec.burst < 1)
        rl->spec.burst = 1;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&rl->stripes[i].mu, NULL);
    *ret = rl;
    return 0;
}

void ratelimit_free(ratelimit_t *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&rl->stripes[i].mu);
    free(rl);
}

/* FNV-1a, 64 bits: the stripe from the high bits, the first slot from the low ones. */
static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int ratelimit_take(ratelimit_t *rl, const char *key, int64_t now_ms, int *ret_retry_after_s)
{
    uint64_t ignored;
    return ratelimit_take_counted(rl, key, now_ms, ret_retry_after_s, &ignored);
}

int ratelimit_take_counted(ratelimit_t *rl, const char *key, int64_t now_ms, int *ret_retry_after_s,
                           uint64_t *ret_refused)
{
    *ret_refused = 0;
    if (!rl)
        return 0;
    char k[KEY_MAX];
    size_t kl = key ? strlen(key) : 0;
    if (kl < KEY_MAX) {
        memcpy(k, key ? key : "", kl + 1);
    } else {
        /* a longer key (a JWT subject is up to 127 bytes) by its digest: cut short, two keys
         * sharing their first 63 bytes shared a bucket (review58 #2). "#" starts no short key. */
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        EVP_Digest(key, kl, md, &mdlen, EVP_sha256(), NULL);
        k[0] = '#';
        for (unsigned i = 0; i < (KEY_MAX - 2) / 2 && i < mdlen; i++)
            snprintf(k + 1 + 2 * i, 3, "%02x", md[i]);
    }
    uint64_t h = hash_key(k, strlen(k));
    stripe_t *st = &rl->stripes[(h >> 32) % STRIPES];
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    bucket_t *b = NULL, *victim = NULL;
    for (int p = 0; p < PROBES; p++) {
        bucket_t *s = &st->slots[(h + (uint64_t)p) % SLOTS];
        if (strcmp(s->key, k) == 0 && s->key[0]) {
            b = s;
            break;
        }
        if (!s->key[0]) {
            if (!victim || victim->key[0])
                victim = s;
        } else if (!victim || (victim->key[0] && s->refilled_ms < victim->refilled_ms)) {
            victim = s;
        }
    }
    if (!b) {
        b = victim;
        memcpy(b->key, k, sizeof(b->key));
        b->tokens = rl->spec.burst;
        b->refilled_ms = now_ms;
        b->refused = 0;
    }
    if (now_ms > b->refilled_ms) {
        b->tokens += (double)(now_ms - b->refilled_ms) / 1000.0 * rl->spec.rate_per_s;
        if (b->tokens > rl->spec.burst)
            b->tokens = rl->spec.burst;
        b->refilled_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        *ret_refused = b->refused;
        b->refused = 0;
    } else {
        b->refused++;
        double wait_s = (1.0 - b->tokens) / rl->spec.rate_per_s;
        int secs = (int)ceil(wait_s);
        *ret_retry_after_s = secs < 1 ? 1 : secs;
        rc = -EAGAIN;
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}
