/* SPDX-License-Identifier: Apache-2.0 */
/* `backup check`, the backup monitor of the guide §3.4 made strict: the latest backup is
 * younger than BACKUP_MAX_AGE, decrypts and verifies completely, its offsite copy exists
 * and verifies too (when BACKUP_OFFSITE_DIR is set), the backup disk has at least
 * BACKUP_MIN_FREE bytes free, and no restore was left half done. One JSON report for cron
 * or a monitoring agent. */
#ifndef AIMEDRES_BACKUP_CHECK_H
#define AIMEDRES_BACKUP_CHECK_H

#include <jansson.h>
#include <stdbool.h>

#include "backup/crypto.h"
#include "backup/settings.h"

/* How long the check waits for a prune to release the repository (ms); then it fails
 * with a "lock" check naming the holder. */
#define BACKUP_CHECK_LOCK_WAIT_MS 30000

/* Takes the shared reader lock of BACKUP_PATH (and of BACKUP_OFFSITE_DIR for the offsite
 * part), like verify and restore: backups may run meanwhile, prune waits (and is waited for).
 * key may be NULL when it could not be loaded (key_error says why): integrity then fails.
 * *ret (new reference): {"ok","timestamp","backup_path","latest","checks":{"freshness",
 * "integrity","offsite","disk","restore"}} where each check is {"ok", ...details, "message"}.
 * freshness takes the time from latest's id, and fails when its manifest names another id or
 * does not authenticate under key; restore fails while a restore journal sits beside the
 * database (restore.h: a restore cut short in its swap). Returns true when every check passed. */
bool backup_check(const backup_settings_t *s, const backup_key_t *key, const char *key_error, json_t **ret);

#endif
