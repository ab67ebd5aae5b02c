/* SPDX-License-Identifier: Apache-2.0 */
/* The disaster-recovery drill (`aimedres dr-drill`): back up, restore into an isolated
 * temporary directory, start a server on it on a free loopback port, smoke-check it
 * against production, stop it, clean up, and report the measured RTO and RPO next to the
 * guide's targets (RTO 4 h, RPO 6 h). Production data is only read: the drill server's
 * settings all point into the temporary directory, and it sends nothing outside (no SIEM,
 * Alertmanager, webhook, offsite copy, metrics port). Each drill flocks a file in its own
 * directory while it runs and first removes the aimedres-drill-* directories that drills
 * killed outright (SIGKILL) left in the work dir: their lock is free.
 *
 * Steps (each recorded with its outcome and duration):
 *   backup    a new backup (incremental by default) or, with use_latest, the latest one
 *   restore   every component into <tmp>/ (verification and post-restore checks included)
 *   start     `<this binary> serve` on 127.0.0.1:<free port>; wait for /health then /ready
 *   models    GET /api/v1/models/list equals production's registry (stable versions)
 *   predict   per model, one prediction on a valid row equals production's answer (PROD_URL
 *             when given, else the production model files scored in this process)
 *   records   predictions table count equals the snapshot's, and grows by the
 *             predictions the drill made (the restored store records durably)
 *   audit     the audit chain verifies (skipped until the audit log exists)
 *   stop      SIGTERM, exit status 0
 * RTO = restore + start until ready; RPO = age of the backup used when the restore began. */
#ifndef AIMEDRES_BACKUP_DRILL_H
#define AIMEDRES_BACKUP_DRILL_H

#include <jansson.h>
#include <stdbool.h>

#include "backup/backup.h"
#include "backup/crypto.h"
#include "backup/settings.h"

#define BACKUP_DRILL_RTO_TARGET_S (4 * 3600)
#define BACKUP_DRILL_RPO_TARGET_S (6 * 3600)

typedef struct backup_drill_opts {
    const char *prod_url; /* production server (http[s]://host:port) or NULL: in-process scoring */
    const char *prod_api_key; /* X-API-Key for prod_url (a well-formed key) or NULL */
    const char *prod_ca_file, *prod_pin_file; /* https trust for prod_url (httpc_opts_t) */
    const char *env_file; /* given to the backup (config component) and the drill server */
    const char *work_dir; /* parent of the temporary target (NULL: TMPDIR or /tmp) */
    const char *exe;      /* the aimedres binary to start (NULL: /proc/self/exe) */
    bool use_latest;      /* drill on the latest backup instead of taking one */
    backup_type_t type;   /* of the drill's backup */
    bool keep;            /* keep the temporary target (for inspection) */
    int ready_timeout_s;  /* wait for /ready (0: 120 s) */
    bool progress;
} backup_drill_opts_t;

/* Runs the drill; *ret_report (new reference) is the JSON report: {"ok","started_at",
 * "backup":{"id","type","timestamp"},"rto_s","rpo_s","targets":{"rto_s","rpo_s"},"rto_ok",
 * "rpo_ok","steps":[{"name","ok","seconds","detail"|"error"}],"target","stale_work_dirs_removed"}.
 * Returns true when every step passed. */
bool backup_drill(const backup_settings_t *s, const backup_key_t *key, const backup_drill_opts_t *o,
                  json_t **ret_report);

#endif
