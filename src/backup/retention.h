/* SPDX-License-Identifier: Apache-2.0 */
/* Retention (`backup prune`): which backups to keep, reduce or delete.
 *
 * DESIGN
 * Kept whole: the newest BACKUP_KEEP_MIN backups, every backup younger than
 * BACKUP_RETENTION_DAYS, and, transitively, every ancestor (parent) of a kept backup and
 * every backup holding bytes a kept backup references — so no kept incremental ever loses
 * a file. Audit files outlive the rest (AUDIT_LOG_RETENTION_DAYS, 7 years for HIPAA): an
 * expired backup younger than that, or holding audit bytes such a backup references, is
 * reduced to "audit-only": a new authenticated manifest listing its audit files is written
 * first (atomically), then its other data files are removed. Everything else is deleted:
 * renamed to a hidden name first, then removed, so a crash never leaves a half-deleted
 * backup under its final name. A manifest that does not authenticate is never touched. */
#ifndef AIMEDRES_BACKUP_RETENTION_H
#define AIMEDRES_BACKUP_RETENTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "backup/crypto.h"
#include "backup/settings.h"

typedef struct backup_prune_opts {
    bool dry_run;
    int64_t now_ms; /* 0 = the current time */
} backup_prune_opts_t;

/* Applies retention to the repository at repo (BACKUP_PATH or the offsite copy) with the
 * settings' retention figures. *ret (new reference): {"repo","dry_run","kept":[..],
 * "reduced":[..],"deleted":[..],"untouched":[{"id","error"}],"freed_bytes"}. 0 or -errno
 * (-EWOULDBLOCK when a backup or restore is running). */
int backup_prune(const char *repo, const backup_settings_t *s, const backup_key_t *key,
                 const backup_prune_opts_t *o, json_t **ret, char *err, size_t errlen);

#endif
