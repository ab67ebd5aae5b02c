/* SPDX-License-Identifier: Apache-2.0 */
/* The SQLite backend of the store (store/sqlite.c): the embedded default, one WAL
 * database file per installation. store.c dispatches "sqlite://" URLs and plain paths
 * to it; nothing else should call it directly. */
#ifndef AIMEDRES_STORE_SQLITE_H
#define AIMEDRES_STORE_SQLITE_H

#include "store/store.h"

/* ops->open takes a filesystem path (not a URL); the parent directory must exist. */
extern const store_ops_t store_sqlite_ops;

#endif
