/* SPDX-License-Identifier: Apache-2.0 */
/* API keys in the store (table api_keys, migration 3): id, name, role, the HMAC of the
 * secret (never the secret), creation, expiry, revocation and last use. SQLite only for
 * now (-ENOTSUP on another backend). All calls are thread-safe (store mutex). */
#ifndef AIMEDRES_STORE_APIKEYS_H
#define AIMEDRES_STORE_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct store_apikey {
    char key_id[32];
    char name[128];
    char role[32];
    char secret_hmac[72]; /* lowercase hex HMAC-SHA256 */
    int64_t created_ms;
    int64_t expires_ms;   /* 0 = never */
    int64_t revoked_ms;   /* 0 = active */
    int64_t last_used_ms; /* 0 = never */
} store_apikey_t;

/* Inserts a new key; -EEXIST when key_id is taken, -errno on store errors. */
int store_apikey_insert(store_t *st, const store_apikey_t *key);
/* Reads one key; 0, -ENOENT, or -errno. *ret untouched on failure. */
int store_apikey_get(store_t *st, const char *key_id, store_apikey_t *ret);
/* All keys, oldest first; *ret is a malloc'd array the caller frees (NULL when n = 0). */
int store_apikey_list(store_t *st, store_apikey_t **ret, size_t *ret_n);
/* Marks a key revoked at now_ms; -ENOENT unknown, -EALREADY already revoked. */
int store_apikey_revoke(store_t *st, const char *key_id, int64_t now_ms);
/* Records a use (the caller rate-limits this). */
int store_apikey_touch(store_t *st, const char *key_id, int64_t now_ms);

#endif
