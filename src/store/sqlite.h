/* SPDX-License-Identifier: Apache-2.0 */
/* The SQLite backend of the store (store/sqlite.c): the embedded default, one WAL
 * database file per installation. store.c dispatches "sqlite://" URLs and plain paths
 * to it; nothing else should call it directly. */
#ifndef AIMEDRES_STORE_SQLITE_H
#define AIMEDRES_STORE_SQLITE_H

#include "store/store.h"

typedef struct sqlite3 sqlite3;

/* Runs fn(db, arg) with the store's connection, holding its mutex, and returns fn's
 * result; -ENOTSUP when st is not a SQLite store. For store modules beyond the core
 * registry (store/feedback.c, store/apikeys.c, store/deployments.c): they keep their SQL
 * in the store subsystem, use BEGIN IMMEDIATE for writes, and map errors to -errno. The
 * tables they use are created by the migrations in sqlite.c (append-only). */
typedef int (*store_sqlite_fn)(sqlite3 *db, void *arg);
int store_sqlite_with_db(store_t *st, store_sqlite_fn fn, void *arg);

/* ops->open takes a filesystem path (not a URL); the parent directory must exist. */
extern const store_ops_t store_sqlite_ops;

#endif
