/* SPDX-License-Identifier: Apache-2.0 */
/* The BACKUP and RESTORE audit records (issue 5) of the backup commands and the DR drill,
 * appended through the audit writer's out-of-process path (audit_log_open +
 * audit_log_append_sync: the writer's flock on <log>.lock lets a CLI process append while a
 * server appends too, continuing the chain).
 *
 * DESIGN
 * When each record is written decides what a backup contains:
 *   - BACKUP describing backup X goes to the live log (AUDIT_LOG_PATH) after backup_create
 *     returned, i.e. after X read the audit files: X holds the log up to just before its own
 *     record, and the next backup holds that record.
 *   - RESTORE goes to the live log, and, when the restore put audit files somewhere else (a
 *     --target, the drill), also to the restored log after it was swapped in, so the restored
 *     chain records its own restore and still verifies. A restore in place appends once: the
 *     restored log is the live log. A failed restore appends a failure to the live log only.
 * Records hold no PHI: ids, counts, sizes, component names, paths of the installation. */
#ifndef AIMEDRES_BACKUP_EVENTS_H
#define AIMEDRES_BACKUP_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "backup/restore.h"
#include "backup/settings.h"

/* The actor recorded: the name of the effective uid, else "uid:<n>". Never NULL (a
 * thread-local buffer). */
const char *backup_event_actor(void);

/* Appends BACKUP for a backup_create result (summary as returned, may be NULL; rc its return)
 * to s->audit_log_path. outcome "success" for rc 0, "failure" otherwise (an offsite failure
 * after a complete local backup is "failure" with the id). drill marks the DR drill's backup.
 * 0 (also when AUDIT_LOG_PATH is unset: nothing to do) or -errno with err. */
int backup_event_backup(const backup_settings_t *s, const json_t *summary, int rc, bool drill, char *err,
                        size_t errlen);

/* Appends RESTORE for a backup_restore result (report as returned, may be NULL; rc its return;
 * o the options it ran with) as described above. 0 or -errno with err (the first failure; the
 * other log is still attempted). */
int backup_event_restore(const backup_settings_t *s, const char *id, const json_t *report, int rc,
                         const backup_restore_opts_t *o, bool drill, char *err, size_t errlen);

#endif
