/* SPDX-License-Identifier: Apache-2.0 */
/* A consistent copy of the live SQLite store while the server keeps writing: SQLite's
 * online backup API run as one step, i.e. inside one read transaction, which WAL mode lets
 * writers proceed beside. The copy is a plaintext database, so it is made next to the
 * source (same permissions domain, never in the backup storage) and removed right after
 * it was encrypted; leftovers of a killed backup are removed by the next one. */
#ifndef AIMEDRES_BACKUP_SNAPSHOT_H
#define AIMEDRES_BACKUP_SNAPSHOT_H

#include <stddef.h>

/* Path of this process's snapshot of db_path into buf: "<db>.backup-snapshot-<pid>". */
int backup_snapshot_path(const char *db_path, char *buf, size_t len);
/* Copies db_path into dest (created 0600, must not exist). Waits up to 30 s for a busy
 * database. 0, -ENOENT if db_path does not exist, -EIO with SQLite's message. */
int backup_snapshot_take(const char *db_path, const char *dest, char *err, size_t errlen);
/* Removes dest and its journal files. */
void backup_snapshot_remove(const char *dest);
/* PRAGMA integrity_check of the database file at path, which nothing else may be using (a
 * restored copy before it is put in place): opened read-only and immutable, memory-mapped
 * so the check costs no read(2) copies. 0 if "ok"; -EIO with the first problems in err. */
int backup_db_integrity_check(const char *path, char *err, size_t errlen);

/* Removes snapshots left by processes that no longer exist. Returns how many. */
int backup_snapshot_cleanup_stale(const char *db_path);

#endif
