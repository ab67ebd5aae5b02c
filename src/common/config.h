/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration: every setting comes from an environment variable named as in the
 * deployment guide §1.2, optionally read from an env file first (the environment wins).
 * Values are validated once at load; a bad value names the variable and expected form. */
#ifndef AIMEDRES_COMMON_CONFIG_H
#define AIMEDRES_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/log.h"
#include "rollout/fields.h" /* rollouts (issue 3): ROLLOUT_N_FIELDS */

/* The longest SQLite database path taken (DATABASE_URL): the store, its backup snapshot and
 * a restore's staged copy beside it each fit SQLite's 512-byte paths. */
#define CONFIG_SQLITE_PATH_MAX 448

typedef enum { ENV_DEVELOPMENT = 0, ENV_STAGING, ENV_PRODUCTION } config_environment_t;

/* All strings are owned by the config and freed by config_free; never NULL for
 * settings that have a default, NULL for unset optional ones. */
typedef struct config {
    config_environment_t environment; /* ENVIRONMENT: development|staging|production */
    bool debug;                       /* DEBUG */
    log_level_t log_level;            /* LOG_LEVEL */
    char *log_file;                   /* LOG_FILE (NULL = stderr) */

    char *host;      /* HOST, default 127.0.0.1 */
    int port;        /* PORT, default 8080 */
    int max_workers; /* MAX_WORKERS, 1..256, default 4 */

    char *database_url;     /* DATABASE_URL, default sqlite:///var/lib/aimedres/aimedres.db */
    int database_pool_size; /* DATABASE_POOL_SIZE, default 20 */

    char *secret_key;     /* SECRET_KEY (secret) */
    char *jwt_secret_key; /* JWT_SECRET_KEY (secret) */
    char *api_key_salt;   /* API_KEY_SALT (secret) */

    bool tls_enabled;      /* TLS_ENABLED */
    char *tls_cert_path;   /* TLS_CERT_PATH (required when TLS_ENABLED) */
    char *tls_key_path;    /* TLS_KEY_PATH (required when TLS_ENABLED) */
    char *tls_min_version; /* TLS_MIN_VERSION: 1.2|1.3, default 1.2 */

    /* security (issue 5, auth): see docs/security.md */
    bool auth_enabled;            /* AUTH_ENABLED; default true unless ENVIRONMENT=development */
    char *jwt_public_keys;        /* JWT_PUBLIC_KEYS: kid=path[,kid=path...] or a directory of *.pem */
    char *jwt_issuer;             /* JWT_ISSUER: required iss when set */
    char *jwt_audience;           /* JWT_AUDIENCE: required aud when set */
    char *jwt_roles_claim;        /* JWT_ROLES_CLAIM, default "roles" */
    int jwt_leeway_s;             /* JWT_LEEWAY: clock skew allowed on exp/nbf, default 30 s */
    int auth_lockout_threshold;   /* AUTH_LOCKOUT_THRESHOLD: failures before lockout, default 5; 0 = off */
    int auth_lockout_window_s;    /* AUTH_LOCKOUT_WINDOW: failures counted within, default 15 min */
    int auth_lockout_duration_s;  /* AUTH_LOCKOUT_DURATION, default 15 min */
    char *rate_limit_per_key;     /* RATE_LIMIT_PER_KEY: "N/s" or "N/m" [":burst"] or "off" */
    char *rate_limit_per_ip;      /* RATE_LIMIT_PER_IP: same form */
    char *trusted_proxies;        /* TRUSTED_PROXIES: proxies whose X-Forwarded-For is believed (audit3) */

    char *model_storage_path; /* MODEL_STORAGE_PATH, default /var/aimedres/models */
    char *data_dir;           /* DATA_DIR: where baseline/<name>_validation.csv live; default
                                 <dirname(MODEL_STORAGE_PATH)>/data */

    bool prometheus_enabled; /* PROMETHEUS_ENABLED, default true */
    int prometheus_port;     /* PROMETHEUS_PORT, 0 = not served separately */
    char *prometheus_host;   /* PROMETHEUS_HOST: the metrics port's address; NULL = HOST */
    /* monitor (issue 4): drift, data quality, accuracy, alerts; see docs/monitoring.md */
    bool monitor_enabled;                /* MONITOR_ENABLED, default true */
    int monitor_interval_s;              /* MONITOR_INTERVAL, default 300 s */
    int accuracy_window_s;               /* ACCURACY_WINDOW: feedback received within, default 24h */
    int drift_window;                    /* DRIFT_WINDOW: recent rows per model, default 1000 */
    char *alert_accuracy_drop_critical;  /* ALERT_ACCURACY_DROP_CRITICAL, default 0.05 (parsed by monitor) */
    char *alert_accuracy_drop_warning;   /* ALERT_ACCURACY_DROP_WARNING, default 0.02 */
    char *alert_error_rate_critical;     /* ALERT_ERROR_RATE_CRITICAL, default 0.02 */
    char *alert_error_rate_warning;      /* ALERT_ERROR_RATE_WARNING, default 0.01 */
    char *alert_latency_p95_critical;    /* ALERT_LATENCY_P95_CRITICAL seconds, default 0.5 */
    char *alert_latency_p95_warning;     /* ALERT_LATENCY_P95_WARNING seconds, default 0.2 */
    char *alert_drift_threshold;         /* ALERT_DRIFT_THRESHOLD, default 0.1 */
    char *alert_data_quality_threshold;  /* ALERT_DATA_QUALITY_THRESHOLD, default 0.95 */
    int alert_accuracy_min_labels;       /* ALERT_ACCURACY_MIN_LABELS, default 30 */
    char *alertmanager_url;              /* ALERTMANAGER_URL: http://host:9093 (NULL = off) */
    char *alert_webhook_url;             /* ALERT_WEBHOOK_URL: generic JSON webhook (NULL = off) */
    char *alert_instance;                /* ALERT_INSTANCE: the alerts' instance label (NULL: host:port) */
    int alert_delivery_timeout_ms;       /* ALERT_DELIVERY_TIMEOUT per attempt, default 5s */

    char *audit_log_path;          /* AUDIT_LOG_PATH */
    int audit_log_retention_days;  /* AUDIT_LOG_RETENTION_DAYS, default 2555 */
    bool siem_integration_enabled; /* SIEM_INTEGRATION_ENABLED */
    char *syslog_server;           /* SYSLOG_SERVER host:port */
    /* audit (issue 5): durability, checkpoints, signing keys, SIEM transport */
    char *audit_durability;          /* AUDIT_DURABILITY: strict|async, default strict */
    int audit_checkpoint_records;    /* AUDIT_CHECKPOINT_RECORDS: checkpoint every N records, default 1000 */
    int audit_checkpoint_interval_s; /* AUDIT_CHECKPOINT_INTERVAL: and at least every M, default 5m */
    char *audit_signing_key_path;    /* AUDIT_SIGNING_KEY_PATH: Ed25519 private key PEM */
    char *audit_verify_key_path;     /* AUDIT_VERIFY_KEY_PATH: Ed25519 public key PEM */
    char *syslog_protocol;           /* SYSLOG_PROTOCOL: udp|tcp|tls|relp|relp-tls, default tcp */
    int syslog_facility;             /* SYSLOG_FACILITY: 0..23, default 13 (log audit) */
    char *syslog_ca_path;            /* SYSLOG_CA_PATH: CA bundle for tls (NULL = system store) */
    char *syslog_tls_cert_path;      /* SYSLOG_TLS_CERT_PATH: client certificate chain for tls (PEM) */
    char *syslog_tls_key_path;       /* SYSLOG_TLS_KEY_PATH: its private key (PEM) */

    bool backup_enabled;            /* BACKUP_ENABLED */
    char *backup_path;              /* BACKUP_PATH, default /var/backup/aimedres */
    int backup_retention_days;      /* BACKUP_RETENTION_DAYS, default 90 */
    char *backup_encryption_key_id; /* BACKUP_ENCRYPTION_KEY_ID */
    char *backup_encryption_key_file; /* BACKUP_ENCRYPTION_KEY_FILE: the 32-byte backup key, mode 0600 */
    char *backup_key_command;         /* BACKUP_KEY_COMMAND: prints the backup key (e.g. a KMS client) */
    int backup_key_command_timeout_ms; /* BACKUP_KEY_COMMAND_TIMEOUT: killed (with its group) after this */
    char *backup_offsite_dir;         /* BACKUP_OFFSITE_DIR: offsite copy of each backup (a mounted path) */
    int backup_keep_min;              /* BACKUP_KEEP_MIN, default 3: backups prune always keeps */
    int backup_max_age_s;             /* BACKUP_MAX_AGE, default 12h: `backup check` freshness limit */
    size_t backup_min_free_bytes;     /* BACKUP_MIN_FREE, default 1G: `backup check` free-space limit */
    int backup_compression_level;     /* BACKUP_COMPRESSION_LEVEL 1..19 (zstd), default 1 */
    int backup_threads;               /* BACKUP_THREADS 0..8, 0 = one per CPU */
    char *results_path;               /* RESULTS_PATH, default <DATA_DIR>/results (backed up) */
    char *prod_url;                   /* PROD_URL: production server `dr-drill` compares predictions with */

    /* HTTP limits */
    size_t max_body_bytes;        /* MAX_BODY_BYTES, default 1 MiB */
    size_t max_header_bytes;      /* MAX_HEADER_BYTES, default 16 KiB */
    int max_batch;                /* MAX_BATCH_SIZE, default 256 rows per predict */
    int read_timeout_s;           /* READ_TIMEOUT, default 30 s */
    int write_timeout_s;          /* WRITE_TIMEOUT, default 30 s */
    int drain_timeout_s;          /* SHUTDOWN_DRAIN_TIMEOUT, default 30 s */
    char *cors_allowed_origins;   /* CORS_ALLOWED_ORIGINS: comma list or "*"; NULL = no CORS */
    bool store_prediction_inputs; /* STORE_PREDICTION_INPUTS, default false (inputs are PHI) */
    int model_poll_interval_ms;   /* MODEL_POLL_INTERVAL, default 1s: registry change polling */

    /* rollouts (issue 3): ROLLOUT_<FIELD>, the defaults of each deployment's CanaryConfig, one per
     * field of rollout/fields.h (index ROLLOUT_F_*), validated at load by rollout/config.c and
     * parsed by rollout_config_from_settings; never NULL after a successful load. */
    char *rollout[ROLLOUT_N_FIELDS];
    char *rollout_fault_inject; /* ROLLOUT_FAULT_INJECT: tests only, NULL = off */
} config_t;

/* Loads defaults, then env_file (if not NULL), then the process environment; an empty value
 * at any layer means "not set" (the default applies). Unknown keys in the file are ignored.
 * On error returns -EINVAL and writes every problem, one per line, into err
 * ("PORT: expected an integer 1..65535, got 'abc'"); secret values are never echoed.
 * An unreadable env file gives its -errno (-ENOENT, -EFBIG over 1 MiB) with the reason in err.
 * Caller frees *ret with config_free; *ret is untouched on failure. */
int config_load(const char *env_file, config_t **ret, char *err, size_t errlen);
void config_free(config_t *cfg);

/* Name of setting i in the settings table (NULL past the end): every variable the
 * configuration reads, for tools and tests. */
const char *config_setting_name(size_t i);

/* audit (issue 5, audit3): for configuration fingerprints. *ret_secret tells whether setting i
 * is a secret (never print it: hash it). For string settings *ret_value is the raw value
 * (borrowed; NULL = unset) and 0 is returned; other kinds give -EINVAL with *ret_value NULL
 * (use config_print's text). -ENOENT past the end. */
int config_setting_raw(const config_t *cfg, size_t i, const char **ret_value, bool *ret_secret);

/* Whether name=value (a line of an env file) holds a secret: one of our secret settings with a
 * value (a URL setting only with a password, or a webhook's path or query, in it), or another
 * program's setting whose name says it is one (PASSWORD, SECRET, TOKEN, DSN, ..._KEY) or whose
 * value is a URL with a password. */
bool config_value_is_secret(const char *name, const char *value);

/* Prints "KEY=value" lines of the effective configuration, secrets shown as
 * "<redacted>" (or "<unset>"), sorted by key. */
void config_print(const config_t *cfg, FILE *out);

/* Env-file parser: KEY=VALUE lines, '#' comments (whole line or trailing after
 * whitespace when the value is unquoted), optional "export ", single or double quotes
 * (double quotes honour \n \" \\). Calls cb for each pair; returns 0, or -EINVAL with
 * "file:line: reason" in err, one line per bad line (no cb call happens for a buffer with any
 * syntax error). A cb returning non-zero stops parsing and is returned. The key and value
 * passed to cb are borrowed for the duration of the call. */
typedef int (*config_env_cb)(const char *key, const char *value, void *arg);
int config_parse_env_buffer(const char *buf, size_t len, const char *filename, config_env_cb cb, void *arg,
                            char *err, size_t errlen);
int config_parse_env_file(const char *path, config_env_cb cb, void *arg, char *err, size_t errlen);

#endif
