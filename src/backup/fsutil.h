/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers of the backup modules: path joining that reports truncation instead of
 * silently cutting a path, and an error formatter for the err buffers (where cutting a
 * long message short is fine). */
#ifndef AIMEDRES_BACKUP_FSUTIL_H
#define AIMEDRES_BACKUP_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* buf = a + "/" + b; 0 or -ENAMETOOLONG (buf then holds a truncated path: do not use it). */
int backup_path_join(char *buf, size_t len, const char *a, const char *b);
/* buf = a + b; 0 or -ENAMETOOLONG. */
int backup_path_cat(char *buf, size_t len, const char *a, const char *b);
/* True if path is root or lies below it, both resolved through symlinks (a path not created
 * yet through its parent); false when root does not exist. */
bool backup_path_within(const char *path, const char *root);
/* The room a backup's database snapshot needs and has: the database's size (*ret_db) and the
 * free space (*ret_free) of its directory (in dir[dirlen]), where the snapshot is written.
 * 0 or -errno (the database or its directory can not be stat'ed). */
int backup_db_room(const char *db_path, char *dir, size_t dirlen, uint64_t *ret_db, uint64_t *ret_free);
/* snprintf into an error buffer; long messages are cut. */
void backup_errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
