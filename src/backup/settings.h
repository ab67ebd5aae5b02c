/* SPDX-License-Identifier: Apache-2.0 */
/* The settings the backup subsystem reads, gathered from config_t in one place so every
 * backup module takes a small borrowed struct instead of the whole configuration, and
 * derived values (the database file, RESULTS_PATH's default) are computed once. */
#ifndef AIMEDRES_BACKUP_SETTINGS_H
#define AIMEDRES_BACKUP_SETTINGS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

typedef struct backup_settings {
    const config_t *cfg; /* borrowed: the whole configuration (audit chain checks need it) */
    /* Strings are borrowed from the config_t (or the CLI's argv) and must outlive this. */
    const char *backup_path;    /* BACKUP_PATH (or --dest) */
    const char *offsite_dir;    /* BACKUP_OFFSITE_DIR, NULL = no offsite copy */
    const char *key_file;       /* BACKUP_ENCRYPTION_KEY_FILE */
    const char *key_command;    /* BACKUP_KEY_COMMAND */
    const char *key_id;         /* BACKUP_ENCRYPTION_KEY_ID: a label (KMS ARN), not a secret */
    int key_command_timeout_ms; /* BACKUP_KEY_COMMAND_TIMEOUT; 0: BACKUP_KEY_COMMAND_TIMEOUT_MS (keys.h) */
    int retention_days;         /* BACKUP_RETENTION_DAYS */
    int keep_min;               /* BACKUP_KEEP_MIN */
    int64_t max_age_ms;         /* BACKUP_MAX_AGE */
    uint64_t min_free_bytes;    /* BACKUP_MIN_FREE */
    int compression_level;      /* BACKUP_COMPRESSION_LEVEL (zstd) */
    int threads;                /* BACKUP_THREADS, 0 = one per CPU */
    const char *database_url;   /* DATABASE_URL */
    const char *model_storage_path;
    const char *data_dir;
    const char *results_path;   /* RESULTS_PATH, default <DATA_DIR>/results */
    const char *audit_log_path; /* AUDIT_LOG_PATH, NULL = no audit log */
    int audit_retention_days;   /* AUDIT_LOG_RETENTION_DAYS */
    const char *prod_url;       /* PROD_URL: production server the dr-drill compares with, or NULL */
    char db_path[PATH_MAX];     /* the SQLite file DATABASE_URL names */
    char results_buf[PATH_MAX];
} backup_settings_t;

/* Fills ret from cfg. -ENOTSUP with the reason when DATABASE_URL is not a SQLite file
 * (PostgreSQL backups come with that backend), -EINVAL for an unusable path. */
int backup_settings_from_config(const config_t *cfg, backup_settings_t *ret, char *err, size_t errlen);

/* 0 when path (a repository: BACKUP_PATH, BACKUP_OFFSITE_DIR, --dest, named `name` in the
 * message) is absolute or empty; else -EINVAL with the reason: a relative path would be
 * resolved against the current directory, $HOME under cron and / under systemd. */
int backup_settings_check_absolute(const char *name, const char *path, char *err, size_t errlen);

#endif
