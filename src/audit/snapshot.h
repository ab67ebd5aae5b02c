/* SPDX-License-Identifier: Apache-2.0 */
/* A consistent cut of the active audit log and its <log>.checkpoints file, for a backup
 * taken while a server appends. Both files are opened and measured under the writer's own
 * exclusive flock (<log>.lock, taken with the writer's bounded wait and released at once),
 * so the pair is one the writer left between two batches; the bytes are then read from
 * the open descriptors, up to those sizes only, whatever is appended or rotated after. */
#ifndef AIMEDRES_AUDIT_SNAPSHOT_H
#define AIMEDRES_AUDIT_SNAPSHOT_H

#include <stdint.h>
#include <sys/stat.h>

#include "common/util.h"

typedef struct audit_snapshot_file {
    int fd;         /* open read-only (O_CLOEXEC); -1 when the file did not exist at the cut */
    uint64_t size;  /* its size at the cut: the bytes that belong to the cut */
    struct stat st; /* fstat at the cut (st_size == size) */
} audit_snapshot_file_t;

typedef struct audit_snapshot {
    audit_snapshot_file_t log;  /* the active log, AUDIT_LOG_PATH */
    audit_snapshot_file_t ckpt; /* <log>.checkpoints */
} audit_snapshot_t;

/* Takes the cut: under the exclusive flock on <log>.lock (created if absent, as the writer
 * does), waiting at most wait_ms (the writer's own bound is AUDIT_LOCK_WAIT_MS, record.h), opens both files and fstats them, then unlocks. A file
 * that does not exist gets fd -1 (no error). Errors: -ETIMEDOUT when the lock stayed held
 * for wait_ms (a stuck writer), -errno from open/fstat/flock; err names the file. On error
 * nothing is left open. */
int audit_snapshot_take(const char *log_path, int wait_ms, audit_snapshot_t *ret, char *err, size_t errlen);

/* Closes what audit_snapshot_take opened (idempotent; the fds become -1). */
void audit_snapshot_release(audit_snapshot_t *s);

#endif
