/* SPDX-License-Identifier: Apache-2.0 */
/* SQL for the api_keys table; see apikeys.h. Each call is one statement (autocommit),
 * run with the store's connection under its mutex (store_sqlite_with_db). */
#include "store/apikeys.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite.h"

#define LIST_MAX 100000

static int map(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return 0;
    case SQLITE_CONSTRAINT: return -EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_NOMEM: return -ENOMEM;
    default: return -EIO;
    }
}

static void copy_col(sqlite3_stmt *q, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void read_row(sqlite3_stmt *q, store_apikey_t *k)
{
    memset(k, 0, sizeof(*k));
    copy_col(q, 0, k->key_id, sizeof(k->key_id));
    copy_col(q, 1, k->name, sizeof(k->name));
    copy_col(q, 2, k->role, sizeof(k->role));
    copy_col(q, 3, k->secret_hmac, sizeof(k->secret_hmac));
    k->created_ms = sqlite3_column_int64(q, 4);
    k->expires_ms = sqlite3_column_int64(q, 5);
    k->revoked_ms = sqlite3_column_int64(q, 6);
    k->last_used_ms = sqlite3_column_int64(q, 7);
}

#define COLUMNS "key_id, name, role, secret_hmac, created_ms, expires_ms, revoked_ms, last_used_ms"

static int do_insert(sqlite3 *db, void *arg)
{
    const store_apikey_t *k = arg;
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(
        db, "INSERT INTO api_keys (" COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)", -1, &q, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(q, 1, k->key_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, k->role, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, k->secret_hmac, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, k->created_ms);
        if (k->expires_ms > 0)
            sqlite3_bind_int64(q, 6, k->expires_ms);
        else
            sqlite3_bind_null(q, 6);
        rc = sqlite3_step(q);
    }
    sqlite3_finalize(q);
    return map(rc);
}

int store_apikey_insert(store_t *st, const store_apikey_t *key)
{
    return store_sqlite_with_db(st, do_insert, (void *)key);
}

struct get_arg {
    const char *id;
    store_apikey_t *out;
};

static int do_get(sqlite3 *db, void *arg)
{
    struct get_arg *g = arg;
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT " COLUMNS " FROM api_keys WHERE key_id = ?1", -1, &q, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(q, 1, g->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
            read_row(q, g->out);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : map(rc);
}

int store_apikey_get(store_t *st, const char *key_id, store_apikey_t *ret)
{
    store_apikey_t tmp;
    struct get_arg g = {key_id, &tmp};
    int rc = store_sqlite_with_db(st, do_get, &g);
    if (rc == 0)
        *ret = tmp;
    return rc;
}

struct list_arg {
    store_apikey_t *v;
    size_t n, cap;
};

static int do_list(sqlite3 *db, void *arg)
{
    struct list_arg *l = arg;
    sqlite3_stmt *q = NULL;
    int rc =
        sqlite3_prepare_v2(db, "SELECT " COLUMNS " FROM api_keys ORDER BY created_ms, key_id", -1, &q, NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(q);
        if (rc != SQLITE_ROW)
            break;
        if (l->n == l->cap) {
            size_t nc = l->cap ? l->cap * 2 : 16;
            store_apikey_t *nv = nc <= LIST_MAX ? realloc(l->v, nc * sizeof(*nv)) : NULL;
            if (!nv) {
                sqlite3_finalize(q);
                return -ENOMEM;
            }
            l->v = nv;
            l->cap = nc;
        }
        read_row(q, &l->v[l->n++]);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : map(rc);
}

int store_apikey_list(store_t *st, store_apikey_t **ret, size_t *ret_n)
{
    struct list_arg l = {0};
    int rc = store_sqlite_with_db(st, do_list, &l);
    if (rc < 0) {
        free(l.v);
        return rc;
    }
    *ret = l.v;
    *ret_n = l.n;
    return 0;
}

struct upd_arg {
    const char *id;
    int64_t now;
    bool revoke;
};

static int do_update(sqlite3 *db, void *arg)
{
    struct upd_arg *u = arg;
    sqlite3_stmt *q = NULL;
    const char *sql = u->revoke
                          ? "UPDATE api_keys SET revoked_ms = ?2 WHERE key_id = ?1 AND revoked_ms IS NULL"
                          : "UPDATE api_keys SET last_used_ms = ?2 WHERE key_id = ?1";
    int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(q, 1, u->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, u->now);
        rc = sqlite3_step(q);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return map(rc);
    if (sqlite3_changes(db) > 0)
        return 0;
    if (!u->revoke)
        return -ENOENT;
    /* nothing changed: unknown, or already revoked? */
    rc = sqlite3_prepare_v2(db, "SELECT 1 FROM api_keys WHERE key_id = ?1", -1, &q, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(q, 1, u->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(q);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? -EALREADY : rc == SQLITE_DONE ? -ENOENT : map(rc);
}

int store_apikey_revoke(store_t *st, const char *key_id, int64_t now_ms)
{
    struct upd_arg u = {key_id, now_ms, true};
    return store_sqlite_with_db(st, do_update, &u);
}

int store_apikey_touch(store_t *st, const char *key_id, int64_t now_ms)
{
    struct upd_arg u = {key_id, now_ms, false};
    return store_sqlite_with_db(st, do_update, &u);
}
