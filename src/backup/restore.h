/* SPDX-License-Identifier: Apache-2.0 */
/* Restoring a backup, in place (the configured paths) or into a target directory laid
 * out like a fresh installation (<target>/<db file>, models/, data/baseline/,
 * data/results/, audit/, config/).
 *
 * DESIGN
 * Nothing in place changes until everything is known good:
 *   0. a target inside BACKUP_PATH or BACKUP_OFFSITE_DIR is refused (decrypted PHI must not
 *      sit in the backup storage); an in-place restore takes the repository's write lock
 *      (before its read lock, as prune does), so no backup runs meanwhile;
 *   1. the manifest authenticates under the key; every stored file it needs exists;
 *   2. the data lock of the destination database is taken (a running server holds it:
 *      refuse); it is held until the end. Staging entries of restores that died without
 *      cleaning up (SIGKILL: decrypted data) are removed then;
 *   3. every file is decrypted into a staging area beside its destination (same file
 *      system, so the final step is a rename), each chunk authenticated, each file's size
 *      and sha256 checked: any mismatch removes the staging area and refuses;
 *   4. the staged data is checked as the server would use it: PRAGMA integrity_check and
 *      record counts of the database, every model's booster sha256 against its manifest,
 *      every registered model version present; a failure refuses as in 3. The database is
 *      read through a read-only, immutable connection (never written or migrated: it stays
 *      byte for byte the verified file; the server migrates it when it starts). The
 *      integrity_check is, by default, the one the backup ran on its snapshot: its result is
 *      in the authenticated manifest with the snapshot's sha256, and step 3 proved the
 *      restored file has that sha256, i.e. is the very file that was checked (same bytes,
 *      same answer). full_db_check (or a backup without that record) runs the PRAGMA again
 *      on the restored file; a backup whose check failed is refused either way;
 *   5. swap: whatever is in place is renamed aside to "<path>.pre-restore-<id>" (or -1,
 *      -2...: an earlier restore's set-aside data is never overwritten; replaced audit files
 *      go to "<audit dir>/.pre-restore-<id>[-N]/"), the staged copy renamed in, directories
 *      fsynced. All or nothing: the staged trees are fsynced, then the restore journal (below)
 *      is written, signals are held (SIGINT/SIGTERM/SIGHUP are noted, not acted on) until the
 *      last rename, and a failed rename keeps the journal and the staged data for the next
 *      restore to finish. A signal noted during the swap: an in-place restore finishes normally
 *      (its RESTORE audit record is written); a --target restore ends 128+signal afterwards,
 *      saying the backup is in place.
 * Models, baselines and results are replaced as whole directories (the backup's state);
 * audit files are put back file by file into the audit directory, which may hold others. */
#ifndef AIMEDRES_BACKUP_RESTORE_H
#define AIMEDRES_BACKUP_RESTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "backup/crypto.h"
#include "backup/manifest.h"
#include "backup/settings.h"

#define BACKUP_C_DB (1u << 0)
#define BACKUP_C_MODELS (1u << 1)
#define BACKUP_C_CONFIG (1u << 2)
#define BACKUP_C_RESULTS (1u << 3)
#define BACKUP_C_AUDIT (1u << 4)
#define BACKUP_C_ALL 0x1fu

/* "db,models,..." (names of BACKUP_COMPONENTS) into a mask. 0 or -EINVAL naming the bad one. */
int backup_components_parse(const char *list, unsigned *ret, char *err, size_t errlen);

typedef struct backup_restore_opts {
    const char *target;      /* NULL: in place */
    unsigned components;     /* mask; 0 = every component the backup holds */
    const char *config_dest; /* in place: where the env file goes (NULL: the path it was backed up from) */
    bool progress;
    bool full_db_check; /* run PRAGMA integrity_check on the restored database (see 4) */
} backup_restore_opts_t;

/* The restore journal, "<destination database><suffix>": written (fsynced) before the first
 * rename of step 5, removed (directory fsynced) after the last. Signals are held from writing it
 * to removing it, so only kill -9, a power cut or a failed rename leaves it: the data is then a
 * mix of the backup and what was there. It names the backup, every area's destination, staging
 * path and the name what was there is set aside under (env_file_aside: the env file's). While it
 * exists `aimedres serve` refuses to start and `backup check` fails; the next restore into the
 * same place (any backup) first finishes the journal's swap (renames what is still staged into
 * place: that data was verified before the journal was written) and removes it. */
#define BACKUP_RESTORE_JOURNAL_SUFFIX ".restore-journal"

/* 0 when no restore journal sits beside db_path; -EUCLEAN with a message in err naming the
 * journal, the backup and the command that finishes it; other -errno when it cannot be seen. */
int backup_restore_journal_check(const char *db_path, char *err, size_t errlen);

/* What a restore of m would write where (for the confirmation prompt), without touching
 * anything: {"id","type","timestamp","files","bytes","components":[..],"destinations":{area:path}}.
 * -EINVAL with err when a destination cannot be determined (e.g. audit in place without
 * AUDIT_LOG_PATH). */
int backup_restore_plan(const backup_settings_t *s, const backup_manifest_t *m,
                        const backup_restore_opts_t *o, json_t **ret, char *err, size_t errlen);

/* Restores backup id from s->backup_path (see DESIGN). *ret_report (new reference, also
 * on failure): {"ok","id","target","components","files","bytes","seconds",
 * "phases":{"prepare","decrypt","checks","swap"},"destinations",
 * "moved_aside":[..],"checks":{"database":{..},"models":{..},"registry":{..},"audit":{..}},
 * "audit_log"? (the restored active audit log, when audit files were restored),
 * "bad":[..]?,"error"?}. Returns 0, or:
 *   -EBUSY         a server holds the destination's data lock
 *   -EKEYREJECTED  the backup was made with another key
 *   -EBADMSG       the manifest or a file failed verification (report "bad" names them)
 *   -EUCLEAN       a post-restore check failed (nothing was swapped in), or an interrupted
 *                  restore's journal could not be finished (err says which)
 *   -ENOENT        no such backup, or a stored file is missing
 *   other -errno */
int backup_restore(const backup_settings_t *s, const backup_key_t *key, const char *id,
                   const backup_restore_opts_t *o, json_t **ret_report, char *err, size_t errlen);

#endif
