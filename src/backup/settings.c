/* SPDX-License-Identifier: Apache-2.0 */
/* Gathers the backup settings from the configuration and derives the database file and
 * the results directory. See settings.h. */
#include "backup/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "store/store.h"

int backup_settings_from_config(const config_t *cfg, backup_settings_t *ret, char *err, size_t errlen)
{
    backup_settings_t s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.backup_path = cfg->backup_path;
    s.offsite_dir = cfg->backup_offsite_dir;
    s.key_file = cfg->backup_encryption_key_file;
    s.key_command = cfg->backup_key_command;
    s.key_id = cfg->backup_encryption_key_id;
    s.retention_days = cfg->backup_retention_days;
    s.keep_min = cfg->backup_keep_min;
    s.max_age_ms = (int64_t)cfg->backup_max_age_s * 1000;
    s.min_free_bytes = cfg->backup_min_free_bytes;
    s.compression_level = cfg->backup_compression_level;
    s.threads = cfg->backup_threads;
    s.key_command_timeout_ms = cfg->backup_key_command_timeout_ms;
    s.database_url = cfg->database_url;
    s.model_storage_path = cfg->model_storage_path;
    s.data_dir = cfg->data_dir;
    s.audit_log_path = cfg->audit_log_path;
    s.audit_retention_days = cfg->audit_log_retention_days;
    s.prod_url = cfg->prod_url;
    /* A relative path would be resolved against the current directory, which is $HOME under
     * cron and / under systemd: the backups would silently land somewhere else. */
    if (backup_settings_check_absolute("BACKUP_PATH", s.backup_path, err, errlen) < 0 ||
        backup_settings_check_absolute("BACKUP_OFFSITE_DIR", s.offsite_dir, err, errlen) < 0)
        return -EINVAL;
    /* the store owns URL resolution; PostgreSQL backups (pg_dump) come with that backend */
    int r = store_url_file_path(cfg->database_url, s.db_path, sizeof(s.db_path), err, errlen);
    if (r == -ENOTSUP) {
        snprintf(
            err, errlen,
            "DATABASE_URL names a PostgreSQL database: backup, restore and the DR drill are not supported "
            "yet for PostgreSQL (pg_dump -Fc comes with the PostgreSQL store backend, which does not "
            "exist yet); only a SQLite store (sqlite:///path) can be backed up, see docs/backup.md");
        return r;
    }
    if (r < 0)
        return r;
    const char *results = cfg->results_path;
    if (results) {
        s.results_path = results;
    } else {
        if (snprintf(s.results_buf, sizeof(s.results_buf), "%s/results", cfg->data_dir) >=
            (int)sizeof(s.results_buf)) {
            snprintf(err, errlen, "DATA_DIR: path too long");
            return -ENAMETOOLONG;
        }
        s.results_path = s.results_buf;
    }
    *ret = s;
    /* results_path may point into the struct itself: fix it up after the copy. */
    if (!results)
        ret->results_path = ret->results_buf;
    return 0;
}

int backup_settings_check_absolute(const char *name, const char *path, char *err, size_t errlen)
{
    if (!path || !path[0] || path[0] == '/')
        return 0;
    snprintf(err, errlen,
             "%s=%s must be an absolute path (a relative one is resolved against the current directory, "
             "which is $HOME under cron and / under systemd)",
             name, path);
    return -EINVAL;
}
