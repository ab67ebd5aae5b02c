/* SPDX-License-Identifier: Apache-2.0 */
/* A consistent copy of the live SQLite store while the server keeps writing: SQLite's
 * online backup API run as one step, i.e. inside one read transaction, which WAL mode lets
 * writers proceed beside. The copy is a plaintext database, so it is made next to the
 * source (same permissions domain, never in the backup storage) and removed right after
 * it was encrypted; leftovers of a killed backup are removed by the next one. */
#ifndef AIMEDRES_BACKUP_SNAPSHOT_H
#define AIMEDRES_BACKUP_SNAPSHOT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A fresh snapshot path for db_path in buf: "<db>.backup-snapshot-<pid>-<16 random hex>" (the
 * pid alone repeats: every backup in a container is pid 1). */
int backup_snapshot_path(const char *db_path, char *buf, size_t len);
/* Copies db_path into dest (created 0600, must not exist). Waits up to 30 s for a busy
 * database. *ret_hold: a descriptor holding an exclusive flock on dest for as long as the
 * snapshot is in use (backup_snapshot_cleanup_stale leaves it alone); give it to
 * backup_snapshot_remove. 0, -ENOENT if db_path does not exist, -EIO with SQLite's message. */
int backup_snapshot_take(const char *db_path, const char *dest, int *ret_hold, char *err, size_t errlen);
/* Removes dest and its journal files, then closes hold (-1: none). */
void backup_snapshot_remove(const char *dest, int hold);
/* PRAGMA integrity_check of the database file at path, which nothing else may be using (a
 * restored copy before it is put in place): opened read-only and immutable, memory-mapped
 * so the check costs no read(2) copies. 0 if "ok"; -EIO with the first problems in err. */
int backup_db_integrity_check(const char *path, char *err, size_t errlen);

/* What the manifest records about a snapshot (db.predictions, db.model_versions,
 * db.schema_version), read through a read-only, immutable connection, so it never writes
 * to or syncs the file (it may run beside backup_db_integrity_check). The queries are the
 * store's (src/store/sqlite.c: Q_PRED_COUNT, Q_SCHEMA_VERSION; model versions = rows of
 * model_versions, what store_model_list lists). 0 or -EIO with SQLite's message. */
int backup_db_counts(const char *path, int64_t *ret_predictions, int64_t *ret_model_versions,
                     int *ret_schema_version, char *err, size_t errlen);

/* The registered model versions of the database file at path, [{"name","version"}] (the
 * rows of model_versions, as store_model_list lists them), read-only and immutable like
 * backup_db_counts. 0, -ENOMEM or -EIO with SQLite's message. */
int backup_db_model_versions(const char *path, json_t **ret, char *err, size_t errlen);

/* Removes snapshots of db_path that no run holds any more (killed backups: kill -9, an OOM
 * kill, a pod deleted mid-run), whatever their pid: a snapshot is live while its flock is
 * held. A name without the random part (made before 2026-11-27) is judged by its pid, as
 * then. Returns how many. */
int backup_snapshot_cleanup_stale(const char *db_path);

#endif
