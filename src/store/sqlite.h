/* SPDX-License-Identifier: Apache-2.0 */
/* The SQLite backend of the store (store/sqlite.c): the embedded default, one WAL
 * database file per installation. store.c dispatches "sqlite://" URLs and plain paths
 * to it; nothing else should call it directly. */
#ifndef AIMEDRES_STORE_SQLITE_H
#define AIMEDRES_STORE_SQLITE_H

#include "store/store.h"

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

/* Runs fn(db, arg) with the store's connection, holding its mutex, and returns fn's
 * result; -ENOTSUP when st is not a SQLite store. For store modules beyond the core
 * registry (store/feedback.c, store/apikeys.c, store/deployments.c): they keep their SQL
 * in the store subsystem, use BEGIN IMMEDIATE for writes, and map errors to -errno. The
 * tables they use are created by the migrations in sqlite.c (append-only). */
typedef int (*store_sqlite_fn)(sqlite3 *db, void *arg);
int store_sqlite_with_db(store_t *st, store_sqlite_fn fn, void *arg);
/* store_sqlite_with_db for a long read-only query (a window over many records): fn gets
 * a second, read-only connection under its own mutex, so the writer (the prediction
 * recorder) goes on meanwhile (WAL: the reader sees the last commit before it began). Falls
 * back to the main connection while a second one can not be opened (an in-memory store). The
 * registry's short reads have a read-only connection of their own. */
int store_sqlite_with_reader(store_t *st, store_sqlite_fn fn, void *arg);

/* A SQLite (extended) result code as 0 or -errno, the same mapping the store uses
 * (unique/primary-key constraint -EEXIST, busy/locked -EBUSY, full -ENOSPC, I/O errors
 * the OS errno of db when known...). */
int store_sqlite_errno(sqlite3 *db, int rc);

/* One statement as its own write transaction, for the area files: BEGIN IMMEDIATE,
 * prepare sql, bind(st, arg), step to completion, COMMIT; on any failure ROLLBACK and
 * nothing changed. 0 or -errno. Call inside a store_sqlite_fn. */
int store_sqlite_write(sqlite3 *db, const char *sql, void (*bind)(sqlite3_stmt *st, const void *arg),
                       const void *arg);

/* ops->open takes a filesystem path (not a URL); the parent directory must exist. */
extern const store_ops_t store_sqlite_ops;

#endif
