/* SPDX-License-Identifier: Apache-2.0 */
/* Taking a backup: the database (online snapshot), the models and their baselines, the
 * env file, results and audit files, each compressed and encrypted into
 * BACKUP_PATH/<id>/, verified by reading it back, then published by a rename and by
 * moving `latest`; then copied to BACKUP_OFFSITE_DIR and verified there.
 *
 * DESIGN
 * States of a backup directory, and who moves it:
 *   .<id>.partial/  being written by backup_create (holds the repository write lock);
 *                   each file is read back from the disk by its worker once written and
 *                   fsynced, then the manifest is read back and checked against them;
 *                   a crash leaves it here, the next backup or prune deletes it
 *   <id>/           complete and verified (renamed by backup_create after verification)
 *   latest -> <id>  moved only after the rename, so it always names a verified backup
 * Incremental: a file whose size, mtime (not for the database snapshot, which is new every
 * time) and sha256 equal the entry of the parent (the backup `latest` names) is not stored
 * again: its entry points at the holder, the backup that stores the bytes. Holders are
 * always ancestors, so prune keeps every ancestor of a kept backup. An incremental whose
 * latest cannot be a parent becomes full (noted), except when latest was made under the
 * same BACKUP_ENCRYPTION_KEY_ID with another key: -EKEYREJECTED, nothing written (the key
 * configured now is suspect; BACKUP_FULL starts over with it on purpose). */
#ifndef AIMEDRES_BACKUP_BACKUP_H
#define AIMEDRES_BACKUP_BACKUP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "backup/crypto.h"
#include "backup/manifest.h"
#include "backup/settings.h"

typedef enum { BACKUP_FULL = 0, BACKUP_INCREMENTAL } backup_type_t;

typedef struct backup_create_opts {
    backup_type_t type;
    const char *env_file; /* the configuration component; NULL = not backed up (noted) */
    bool progress;        /* draw progress on stderr */
    bool no_offsite;      /* skip BACKUP_OFFSITE_DIR (the drill's own backups use it as configured) */
    /* backup/interrupt.h armed: from the publishing on, a signal is deferred (the offsite copy
     * stops early); false: backup_create ends the deferral before it returns; true: the caller
     * does (backup_interrupt_resume), after it has written the backup's audit record */
    bool hold_signals_after_publish;
} backup_create_opts_t;

/* Takes a backup into s->backup_path. *ret_summary (always set when not NULL, also on
 * failure, new reference): {"ok","id","type","parent","files","stored_files",
 * "referenced_files","total_bytes","stored_bytes","seconds","phases":{...} (wall seconds per
 * step, docs/backup.md),"components","notes","offsite":{...},"bad":[...]? (files whose
 * read-back failed),"error"?}. Returns 0; -EWOULDBLOCK if another backup runs; -EIO
 * (or another -errno) with err when anything fails, in which case nothing that looks
 * complete is left and `latest` is unchanged. An offsite copy failure returns -EREMOTEIO
 * after the local backup completed (latest has moved). */
int backup_create(const backup_settings_t *s, const backup_key_t *key, const backup_create_opts_t *o,
                  json_t **ret_summary, char *err, size_t errlen);

/* Copies backup id (and any holder of its files missing there) from s->backup_path to
 * s->offsite_dir (aside + rename), verifies the copy by decrypting it, and moves the
 * offsite `latest`. *ret (new reference): {"dir","ok","copied":[ids],"error"?}. */
int backup_offsite_copy(const backup_settings_t *s, const backup_key_t *key, const char *id, json_t **ret,
                        char *err, size_t errlen);

#endif
