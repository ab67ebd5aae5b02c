/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration from the environment and an optional env file. One descriptor table lists
 * every setting (name, type, default, secrecy, range, field); loading, validation, printing
 * and freeing all walk that table, so a new setting is one line in `settings[]`.
 *
 * DESIGN: loading is three layers of raw strings (defaults < env file < process environment),
 * then one typed parse of the winning string per setting. An empty string means "not set" at
 * whatever layer it appears, so the default applies. Every problem is collected (one line
 * each) before failing, so an operator fixes a file in one pass. Secret values never appear
 * in messages or in config_print; DATABASE_URL is shown with its password replaced. */
#include "common/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/util.h"
#include "security/ratelimit.h" /* security (issue 5): RATE_LIMIT_* form */
#include "security/clientaddr.h" /* security (issue 5, audit3): TRUSTED_PROXIES form */

#define ENV_FILE_MAX (1024 * 1024)
#define ECHO_MAX 80 /* longest value echoed back in an error message */

enum kind {
    K_STR,      /* char *, free-form (optionally checked) */
    K_CHOICE,   /* char *, one of `choices` (case-insensitive, stored canonical) */
    K_ENUM,     /* int-sized enum, index into `choices` */
    K_LOGLEVEL, /* log_level_t via log_level_parse */
    K_BOOL,     /* bool */
    K_INT,      /* int in [min, max] */
    K_SIZE,     /* size_t bytes in [min, max], K/M/G suffixes */
    K_SECONDS,  /* int seconds; parsed as a duration, [min, max] in ms, whole seconds */
    K_MILLIS,   /* int milliseconds; parsed as a duration, [min, max] in ms */
};

enum secrecy {
    PUBLIC = 0,
    SECRET,          /* never shown */
    SECRET_URL,      /* shown with the URL's password replaced */
    SECRET_URL_TAIL, /* shown as scheme://host:port/<redacted>: path and query may be a token */
};

/* Extra validation for a string: returns 0 if valid; may store a normalised malloc'd copy
 * in *ret_norm (left NULL to keep the value as given). */
typedef int (*check_fn)(const char *value, char **ret_norm);

struct setting {
    const char *name;
    enum kind kind;
    const char *def; /* default as it would be written in the env file; NULL = unset */
    enum secrecy secret;
    int64_t min, max;
    size_t offset;
    const char *form; /* expected form for K_STR checks and K_CHOICE/K_ENUM choices */
    check_fn check;   /* K_STR only */
};

static int check_database_url(const char *v, char **ret_norm);
static int check_host_port(const char *v, char **ret_norm);
static int check_label_value(const char *v, char **ret_norm);
static int check_cors(const char *v, char **ret_norm);
static int check_rate(const char *v, char **ret_norm); /* security (issue 5) */
static int check_proxies(const char *v, char **ret_norm); /* security (issue 5, audit3) */

/* rollouts (issue 3): one check per CanaryConfig field of rollout/fields.h, each asking
 * rollout/config.c (the field list and its parsing live there, not here). */
#define ROLLOUT_CHECK_FN(n, N, t, d, m)                                                                      \
    static int check_rollout_##n(const char *v, char **ret_norm)                                             \
    {                                                                                                        \
        (void)ret_norm;                                                                                      \
        return rollout_config_check_text(ROLLOUT_F_##n, v);                                                  \
    }
ROLLOUT_CONFIG_FIELDS(ROLLOUT_CHECK_FN)
#undef ROLLOUT_CHECK_FN
static int check_rollout_fault(const char *v, char **ret_norm)
{
    (void)ret_norm;
    return rollout_fault_check(v);
}

// clang-format off
/* One setting per line reads better than the formatter's layout. */
#define F(field) offsetof(config_t, field)
#define STR(n, d, fld) {n, K_STR, d, PUBLIC, 0, 0, F(fld), NULL, NULL}
#define STRCHK(n, d, sec, fld, form, fn) {n, K_STR, d, sec, 0, 0, F(fld), form, fn}
#define SECRETSTR(n, fld) {n, K_STR, NULL, SECRET, 0, 0, F(fld), NULL, NULL}
#define CHOICE(n, d, fld, choices) {n, K_CHOICE, d, PUBLIC, 0, 0, F(fld), choices, NULL}
#define ENUMV(n, d, fld, choices) {n, K_ENUM, d, PUBLIC, 0, 0, F(fld), choices, NULL}
#define LOGLEVEL(n, d, fld) {n, K_LOGLEVEL, d, PUBLIC, 0, 0, F(fld), "DEBUG|INFO|WARNING|ERROR|CRITICAL", NULL}
#define BOOLV(n, d, fld) {n, K_BOOL, d, PUBLIC, 0, 0, F(fld), NULL, NULL}
#define INTV(n, d, lo, hi, fld) {n, K_INT, d, PUBLIC, lo, hi, F(fld), NULL, NULL}
#define SIZEV(n, d, lo, hi, fld) {n, K_SIZE, d, PUBLIC, lo, hi, F(fld), NULL, NULL}
#define SECONDS(n, d, lo, hi, fld) {n, K_SECONDS, d, PUBLIC, (lo) * 1000LL, (hi) * 1000LL, F(fld), NULL, NULL}
#define MILLIS(n, d, lo, hi, fld) {n, K_MILLIS, d, PUBLIC, lo, hi, F(fld), NULL, NULL}
// clang-format on

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)
#define HOUR 3600

/* Every setting. Keep docs/configuration.md in step with this table. */
static const struct setting settings[] = {
    ENUMV("ENVIRONMENT", "development", environment, "development|staging|production"),
    BOOLV("DEBUG", "false", debug),
    LOGLEVEL("LOG_LEVEL", "INFO", log_level),
    STR("LOG_FILE", NULL, log_file),

    STR("HOST", "127.0.0.1", host),
    INTV("PORT", "8080", 1, 65535, port),
    INTV("MAX_WORKERS", "4", 1, 256, max_workers),

    STRCHK("DATABASE_URL", "sqlite:///var/lib/aimedres/aimedres.db", SECRET_URL, database_url,
           "sqlite:///path or a plain file path (at most 448 characters: backups and restores open copies "
           "beside it, and SQLite takes paths of at most 512 bytes), or postgresql://user:password@host:port/db",
           check_database_url),
    INTV("DATABASE_POOL_SIZE", "20", 1, 1000, database_pool_size),

    SECRETSTR("SECRET_KEY", secret_key),
    SECRETSTR("JWT_SECRET_KEY", jwt_secret_key),
    SECRETSTR("API_KEY_SALT", api_key_salt),

    BOOLV("TLS_ENABLED", "false", tls_enabled),
    STR("TLS_CERT_PATH", NULL, tls_cert_path),
    STR("TLS_KEY_PATH", NULL, tls_key_path),
    CHOICE("TLS_MIN_VERSION", "1.2", tls_min_version, "1.2|1.3"),

    /* security (issue 5, auth): AUTH_ENABLED's default depends on ENVIRONMENT (config_load) */
    BOOLV("AUTH_ENABLED", NULL, auth_enabled),
    STR("JWT_PUBLIC_KEYS", NULL, jwt_public_keys),
    STR("JWT_ISSUER", NULL, jwt_issuer),
    STR("JWT_AUDIENCE", NULL, jwt_audience),
    STR("JWT_ROLES_CLAIM", "roles", jwt_roles_claim),
    SECONDS("JWT_LEEWAY", "30s", 0, 600, jwt_leeway_s),
    INTV("AUTH_LOCKOUT_THRESHOLD", "5", 0, 1000, auth_lockout_threshold),
    SECONDS("AUTH_LOCKOUT_WINDOW", "15m", 1, 24 * HOUR, auth_lockout_window_s),
    SECONDS("AUTH_LOCKOUT_DURATION", "15m", 1, 24 * HOUR, auth_lockout_duration_s),
    STRCHK("RATE_LIMIT_PER_KEY", "100/s", PUBLIC, rate_limit_per_key, "N/s or N/m, optional :burst, or off",
           check_rate),
    STRCHK("RATE_LIMIT_PER_IP", "1000/s", PUBLIC, rate_limit_per_ip, "N/s or N/m, optional :burst, or off",
           check_rate),
    STRCHK("TRUSTED_PROXIES", NULL, PUBLIC, trusted_proxies, "comma-separated IPv4/IPv6 addresses or CIDRs",
           check_proxies), /* security (audit3) */

    STR("MODEL_STORAGE_PATH", "/var/aimedres/models", model_storage_path),
    STR("DATA_DIR", NULL, data_dir), /* default derived from MODEL_STORAGE_PATH */

    BOOLV("PROMETHEUS_ENABLED", "true", prometheus_enabled),
    INTV("PROMETHEUS_PORT", "0", 0, 65535, prometheus_port),
    STR("PROMETHEUS_HOST", NULL, prometheus_host),
    BOOLV("MONITOR_ENABLED", "true", monitor_enabled), /* monitor */
    SECONDS("MONITOR_INTERVAL", "300s", 1, 24 * HOUR, monitor_interval_s), /* monitor */
    SECONDS("ACCURACY_WINDOW", "24h", 1, 90 * 24 * HOUR, accuracy_window_s), /* monitor */
    INTV("DRIFT_WINDOW", "1000", 10, 1000000, drift_window), /* monitor */
    STR("ALERT_ACCURACY_DROP_CRITICAL", "0.05", alert_accuracy_drop_critical), /* monitor */
    STR("ALERT_ACCURACY_DROP_WARNING", "0.02", alert_accuracy_drop_warning), /* monitor */
    STR("ALERT_ERROR_RATE_CRITICAL", "0.02", alert_error_rate_critical), /* monitor */
    STR("ALERT_ERROR_RATE_WARNING", "0.01", alert_error_rate_warning), /* monitor */
    STR("ALERT_LATENCY_P95_CRITICAL", "0.5", alert_latency_p95_critical), /* monitor */
    STR("ALERT_LATENCY_P95_WARNING", "0.2", alert_latency_p95_warning), /* monitor */
    STR("ALERT_DRIFT_THRESHOLD", "0.1", alert_drift_threshold), /* monitor */
    STR("ALERT_DATA_QUALITY_THRESHOLD", "0.95", alert_data_quality_threshold), /* monitor */
    INTV("ALERT_ACCURACY_MIN_LABELS", "30", 1, 1000000, alert_accuracy_min_labels), /* monitor */
    STRCHK("ALERTMANAGER_URL", NULL, SECRET_URL, alertmanager_url, NULL, NULL), /* monitor */
    STRCHK("ALERT_WEBHOOK_URL", NULL, SECRET_URL_TAIL, alert_webhook_url, NULL, NULL), /* monitor */
    STRCHK("ALERT_INSTANCE", NULL, PUBLIC, alert_instance,
           "a label value: 1..255 printable ASCII characters, no space, double quote or backslash", check_label_value),
    MILLIS("ALERT_DELIVERY_TIMEOUT", "5s", 100, 60 * 1000LL, alert_delivery_timeout_ms), /* monitor */

    STR("AUDIT_LOG_PATH", NULL, audit_log_path),
    INTV("AUDIT_LOG_RETENTION_DAYS", "2555", 1, 36500, audit_log_retention_days),
    BOOLV("SIEM_INTEGRATION_ENABLED", "false", siem_integration_enabled),
    STRCHK("SYSLOG_SERVER", NULL, PUBLIC, syslog_server, "host:port", check_host_port),
    CHOICE("AUDIT_DURABILITY", "strict", audit_durability, "strict|async"), /* audit */
    INTV("AUDIT_CHECKPOINT_RECORDS", "1000", 1, 100000000, audit_checkpoint_records), /* audit */
    SECONDS("AUDIT_CHECKPOINT_INTERVAL", "5m", 1, 24 * HOUR, audit_checkpoint_interval_s), /* audit */
    STR("AUDIT_SIGNING_KEY_PATH", NULL, audit_signing_key_path), /* audit */
    STR("AUDIT_VERIFY_KEY_PATH", NULL, audit_verify_key_path), /* audit */
    CHOICE("SYSLOG_PROTOCOL", "tcp", syslog_protocol, "udp|tcp|tls|relp|relp-tls"), /* audit */
    INTV("SYSLOG_FACILITY", "13", 0, 23, syslog_facility), /* audit */
    STR("SYSLOG_CA_PATH", NULL, syslog_ca_path), /* audit */
    STR("SYSLOG_TLS_CERT_PATH", NULL, syslog_tls_cert_path), /* audit: RFC 5425 client certificate */
    STR("SYSLOG_TLS_KEY_PATH", NULL, syslog_tls_key_path),   /* audit */

    BOOLV("BACKUP_ENABLED", "false", backup_enabled),
    STR("BACKUP_PATH", "/var/backup/aimedres", backup_path),
    INTV("BACKUP_RETENTION_DAYS", "90", 1, 36500, backup_retention_days),
    STR("BACKUP_ENCRYPTION_KEY_ID", NULL, backup_encryption_key_id),
    STR("BACKUP_ENCRYPTION_KEY_FILE", NULL, backup_encryption_key_file),
    STR("BACKUP_KEY_COMMAND", NULL, backup_key_command),
    MILLIS("BACKUP_KEY_COMMAND_TIMEOUT", "30s", 1000, HOUR * 1000LL, backup_key_command_timeout_ms),
    STR("BACKUP_OFFSITE_DIR", NULL, backup_offsite_dir),
    INTV("BACKUP_KEEP_MIN", "3", 1, 100000, backup_keep_min),
    SECONDS("BACKUP_MAX_AGE", "12h", 1, 366 * 24 * HOUR, backup_max_age_s),
    SIZEV("BACKUP_MIN_FREE", "1G", 0, 1LL << 50, backup_min_free_bytes),
    INTV("BACKUP_COMPRESSION_LEVEL", "1", 1, 19, backup_compression_level),
    INTV("BACKUP_THREADS", "0", 0, 8, backup_threads),
    STR("RESULTS_PATH", NULL, results_path),
    STRCHK("PROD_URL", NULL, SECRET_URL, prod_url, NULL, NULL),

    SIZEV("MAX_BODY_BYTES", "1M", 1, GIB, max_body_bytes),
    SIZEV("MAX_HEADER_BYTES", "16K", KIB, MIB, max_header_bytes),
    INTV("MAX_BATCH_SIZE", "256", 1, 100000, max_batch),
    SECONDS("READ_TIMEOUT", "30s", 1, HOUR, read_timeout_s),
    SECONDS("WRITE_TIMEOUT", "30s", 1, HOUR, write_timeout_s),
    SECONDS("SHUTDOWN_DRAIN_TIMEOUT", "30s", 0, HOUR, drain_timeout_s),
    STRCHK("CORS_ALLOWED_ORIGINS", NULL, PUBLIC, cors_allowed_origins,
           "'*' or a comma-separated list of origins like https://app.example.org", check_cors),
    BOOLV("STORE_PREDICTION_INPUTS", "false", store_prediction_inputs),
    MILLIS("MODEL_POLL_INTERVAL", "1s", 10, HOUR * 1000LL, model_poll_interval_ms),

    /* rollouts (issue 3): ROLLOUT_<FIELD> for every field of rollout/fields.h, then the test fault */
#define ROLLOUT_SETTING(n, N, t, d, m)                                                                       \
    STRCHK("ROLLOUT_" #N, d, PUBLIC, rollout[ROLLOUT_F_##n], ROLLOUT_FORM_##t, check_rollout_##n),
    ROLLOUT_CONFIG_FIELDS(ROLLOUT_SETTING)
#undef ROLLOUT_SETTING
    STRCHK("ROLLOUT_FAULT_INJECT", NULL, PUBLIC, rollout_fault_inject, ROLLOUT_FORM_FAULT, check_rollout_fault),
};

#define N_SETTINGS ARRAY_SIZE(settings)

const char *config_setting_name(size_t i)
{
    return i < N_SETTINGS ? settings[i].name : NULL;
}

/* audit (issue 5, audit3): raw string values for configuration fingerprints. */
int config_setting_raw(const config_t *cfg, size_t i, const char **ret_value, bool *ret_secret)
{
    if (i >= N_SETTINGS)
        return -ENOENT;
    const struct setting *s = &settings[i];
    *ret_secret = s->secret != PUBLIC;
    if (s->kind != K_STR && s->kind != K_CHOICE) {
        *ret_value = NULL;
        return -EINVAL;
    }
    *ret_value = *(char *const *)((const char *)cfg + s->offset);
    return 0;
}

/* Substrings (case-insensitive) that mark a template value nobody replaced. */
static const char *const placeholders[] = {"GENERATE_",       "CHANGE_ME",  "CHANGEME",
                                           "SECURE_PASSWORD", "REPLACE_ME", "YOUR_"};

#define SECRET_MIN_LEN 32
#define SECRET_MIN_DISTINCT 8 /* a hex secret of 32+ random characters has ~15 */

/* ---- error collection ---- */

struct errs {
    char *buf;
    size_t cap;
    size_t len;
    int count;
};

__attribute__((format(printf, 2, 3))) static void add_err(struct errs *e, const char *fmt, ...)
{
    e->count++;
    if (!e->buf || e->cap == 0 || e->len + 1 >= e->cap)
        return;
    if (e->len > 0)
        e->buf[e->len++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    e->len += (size_t)n;
    if (e->len >= e->cap)
        e->len = e->cap - 1;
    e->buf[e->len] = '\0';
}

/* Copy of a user value safe to echo: control characters shown as '?', long values cut. */
static void echo_value(const char *v, char *out, size_t outlen)
{
    size_t n = 0, i = 0;
    for (; v[i] && n + 4 < outlen && i < ECHO_MAX; i++)
        out[n++] = iscntrl((unsigned char)v[i]) ? '?' : v[i];
    if (v[i] && n + 4 < outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* ---- URL redaction ---- */

/* Finds the authority of url ("scheme://user:password@host:port"): returns its end (the
 * first '/', '?' or '#' after it, or the NUL), NULL when url has no "://". [*ret_pw,
 * *ret_pw_end) is the userinfo password, both NULL when there is none. */
static const char *url_authority(const char *url, const char **ret_pw, const char **ret_pw_end)
{
    *ret_pw = *ret_pw_end = NULL;
    const char *scheme = strstr(url, "://");
    if (!scheme)
        return NULL;
    const char *auth = scheme + 3;
    const char *auth_end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < auth_end; q++)
        if (*q == '@')
            at = q;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon) {
        *ret_pw = colon + 1;
        *ret_pw_end = at;
    }
    return auth_end;
}

/* True at the '?' or '&' that starts a "password=" query parameter (libpq accepts one). */
static bool is_password_param(const char *q)
{
    return (*q == '?' || *q == '&') && strncasecmp(q + 1, "password=", 9) == 0;
}

/* Returns a malloc'd copy of url with the userinfo password and any "password=" query
 * parameter replaced by "<redacted>"; with tail, also everything after the authority (a
 * webhook's path or query is often its secret token). */
static char *redact_url(const char *url, bool tail)
{
    static const char mark[] = "<redacted>";
    size_t len = strlen(url);
    /* Each replacement adds at most one marker: one for the userinfo, one per '?' or '&'. */
    size_t marks = 1;
    for (const char *q = url; *q; q++)
        marks += *q == '?' || *q == '&';
    char *out = malloc(len + marks * sizeof(mark) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const char *p = url;
    const char *pw, *pw_end;
    const char *auth_end = url_authority(url, &pw, &pw_end);
    if (pw) {
        o = (size_t)(pw - url);
        memcpy(out, url, o);
        memcpy(out + o, mark, sizeof(mark) - 1);
        o += sizeof(mark) - 1;
        p = pw_end;
    }
    if (tail && auth_end && *auth_end) {
        memcpy(out + o, p, (size_t)(auth_end - p));
        o += (size_t)(auth_end - p);
        out[o++] = '/';
        memcpy(out + o, mark, sizeof(mark));
        return out;
    }
    /* Query parameters named password. */
    while (*p) {
        if (is_password_param(p)) {
            memcpy(out + o, p, 10);
            o += 10;
            memcpy(out + o, mark, sizeof(mark) - 1);
            o += sizeof(mark) - 1;
            p += 10;
            p += strcspn(p, "&#");
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

/* Whether redact_url would hide part of url (a password; with tail, a path or query). */
static bool url_hides_secret(const char *url, bool tail)
{
    char *shown = redact_url(url, tail);
    bool hides = !shown || strcmp(shown, url) != 0;
    free(shown);
    return hides;
}

bool config_value_is_secret(const char *name, const char *value)
{
    if (!value || !*value)
        return false;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (strcmp(settings[i].name, name) != 0)
            continue;
        if (settings[i].secret == PUBLIC)
            return false;
        if (settings[i].secret != SECRET_URL && settings[i].secret != SECRET_URL_TAIL)
            return true;
        return url_hides_secret(value, settings[i].secret == SECRET_URL_TAIL);
    }
    /* another program's setting in the same file (the seed guide's .env keeps REDIS_PASSWORD,
     * SENTRY_DSN, MLFLOW_TRACKING_URI beside ours): judged by the words of its name, in any
     * case: a word holding PASSWORD, PASSWD, PASSPHRASE or SECRET (PGPASSWORD, SECRET_KEY_BASE),
     * or a word that is TOKEN, KEY, PASS, PWD, DSN, APIKEY, CREDENTIAL(S) or their plural
     * (API_KEY_1, FERNET_KEYS, SMTP_PASS), unless the last word (numbers aside) says it is a
     * limit, a duration or a place (PASSWORD_MIN_LENGTH, TOKEN_EXPIRY_MINUTES, SECRET_KEY_FILE);
     * or by a URL's password */
    static const char *const holds[] = {"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET"};
    static const char *const is[] = {"TOKEN", "TOKENS", "KEY", "KEYS", "PASS", "PWD", "DSN", "APIKEY", "APIKEYS",
                                     "CREDENTIAL", "CREDENTIALS"};
    static const char *const not_secret[] = {"LENGTH", "LEN", "MIN", "MAX", "EXPIRY", "EXPIRES", "TTL",
                                             "TIMEOUT", "SECONDS", "MINUTES", "HOURS", "DAYS", "PATH",
                                             "FILE", "DIR", "URL", "ENABLED", "HEADER", "ID", "NAME",
                                             "REGION", "REQUIRE", "UPPERCASE", "LOWERCASE", "ROTATION"};
    char up[128];
    size_t n = strlen(name);
    if (n < sizeof(up)) {
        for (size_t i = 0; i <= n; i++)
            up[i] = (char)toupper((unsigned char)name[i]);
        bool secret = false, qualifier = false;
        const char *last = NULL;
        for (char *w = up, *next; w; w = next) { /* every word, empty ones (A__B) passed over */
            next = strchr(w, '_');
            if (next)
                *next++ = '\0';
            if (*w && strspn(w, "0123456789") != strlen(w))
                last = w; /* the last word that is not a number */
            for (size_t i = 0; i < sizeof(holds) / sizeof(holds[0]); i++)
                secret |= strstr(w, holds[i]) != NULL;
            for (size_t i = 0; i < sizeof(is) / sizeof(is[0]); i++)
                secret |= strcmp(w, is[i]) == 0;
        }
        for (size_t i = 0; last && i < sizeof(not_secret) / sizeof(not_secret[0]); i++)
            qualifier |= strcmp(last, not_secret[i]) == 0;
        if (secret && !qualifier)
            return true;
    }
    return url_hides_secret(value, false);
}

/* Password inside a URL (userinfo or ?password=) into a malloc'd string, or NULL if none. */
static char *url_password(const char *url)
{
    const char *pw, *pw_end;
    const char *auth_end = url_authority(url, &pw, &pw_end);
    if (!auth_end)
        return NULL;
    if (pw)
        return strndup(pw, (size_t)(pw_end - pw));
    for (const char *q = auth_end; *q; q++)
        if (is_password_param(q))
            return strndup(q + 10, strcspn(q + 10, "&#"));
    return NULL;
}

/* ---- string checks ---- */

/* The path SQLite opens, made absolute as a restore makes it (a relative one counts from the
 * working directory: review61 #2), fits CONFIG_SQLITE_PATH_MAX. */
static bool sqlite_path_fits(const char *path)
{
    size_t n = strlen(path);
    char cwd[PATH_MAX];
    if (path[0] != '/' && getcwd(cwd, sizeof(cwd)))
        n += strlen(cwd) + 1;
    return n <= CONFIG_SQLITE_PATH_MAX;
}

static int check_database_url(const char *v, char **ret_norm)
{
    (void)ret_norm;
    const char *scheme = strstr(v, "://");
    if (!scheme) /* a plain path for SQLite */
        return sqlite_path_fits(v) ? 0 : -EINVAL;
    size_t slen = (size_t)(scheme - v);
    const char *rest = scheme + 3;
    if (slen == 6 && strncasecmp(v, "sqlite", 6) == 0) /* review60 #4: one limit, the restore's */
        return *rest && sqlite_path_fits(rest) ? 0 : -EINVAL;
    if ((slen == 10 && strncasecmp(v, "postgresql", 10) == 0) ||
        (slen == 8 && strncasecmp(v, "postgres", 8) == 0))
        return *rest ? 0 : -EINVAL;
    return -EINVAL;
}

/* A Prometheus label value an operator types: printable ASCII, no quote or backslash (they
 * would need escaping in every receiver's templates), 1..255 characters. */
static int check_label_value(const char *v, char **ret_norm)
{
    (void)ret_norm;
    size_t n = strlen(v);
    if (n == 0 || n > 255)
        return -EINVAL;
    for (const char *q = v; *q; q++)
        if (*q < 0x21 || *q > 0x7e || *q == '"' || *q == '\\')
            return -EINVAL;
    return 0;
}

static int check_host_port(const char *v, char **ret_norm)
{
    (void)ret_norm;
    const char *colon;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close == v + 1 || close[1] != ':')
            return -EINVAL;
        for (const char *q = v + 1; q < close; q++)
            if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
                return -EINVAL;
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || colon == v)
            return -EINVAL;
        for (const char *q = v; q < colon; q++)
            if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' && *q != '_')
                return -EINVAL;
    }
    int64_t port;
    return util_parse_int64(colon + 1, 1, 65535, &port) < 0 ? -EINVAL : 0;
}

/* A host that the URL standard reads as an IPv4 address (its last label a number: 127.1,
 * 0x7f.0.0.1, 2130706433) is sent by browsers as a dotted quad (127.0.0.1): only that form can
 * ever match (review65 #5). True for that form and for any name; false for other numeric forms
 * and for a trailing dot. */
static bool ipv4_as_browsers_write(const char *h, size_t n)
{
    /* the last label, before one trailing dot (which a name may keep, as browsers do) */
    size_t m = n > 0 && h[n - 1] == '.' ? n - 1 : n;
    const char *last = h + m;
    while (last > h && last[-1] != '.')
        last--;
    size_t ln = (size_t)(h + m - last);
    bool hex = ln >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X');
    bool numeric = ln > 0 && (hex ? strspn(last + 2, "0123456789abcdefABCDEF") >= ln - 2
                                  : strspn(last, "0123456789") >= ln);
    if (!numeric)
        return true; /* a name (example.com., foo.0xg) */
    if (m != n)
        return false; /* 127.0.0.1. is sent as 127.0.0.1 */
    /* inet_pton takes exactly the dotted quad: four decimal parts of 0..255, no leading zero */
    char quad[INET_ADDRSTRLEN];
    struct in_addr a;
    if (n >= sizeof(quad))
        return false;
    memcpy(quad, h, n);
    quad[n] = '\0';
    return inet_pton(AF_INET, quad, &a) == 1;
}

static bool valid_origin(const char *s, size_t n)
{
    size_t skip;
    if (n > 7 && strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (n > 8 && strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    const char *host = s + skip, *end = s + n;
    if (host < end && *host == '[') { /* an IPv6 literal, then nothing or ":port" */
        const char *close_b = memchr(host, ']', (size_t)(end - host));
        char lit[INET6_ADDRSTRLEN + 1];
        unsigned char ip[16];
        size_t ln = close_b ? (size_t)(close_b - host - 1) : 0;
        if (!close_b || ln == 0 || ln >= sizeof(lit))
            return false;
        memcpy(lit, host + 1, ln);
        lit[ln] = '\0';
        if (inet_pton(AF_INET6, lit, ip) != 1)
            return false;
        host = close_b + 1;
        if (host < end && (*host != ':' || host + 1 == end))
            return false;
    }
    const char *colon = memchr(host, ':', (size_t)(end - host));
    const char *hend = colon ? colon : end;
    for (const char *q = host; q < hend; q++) {
        unsigned char c = (unsigned char)*q;
        if (!isalnum(c) && c != '.' && c != '-' && c != '_')
            return false; /* no path, no trailing slash: browsers send the bare origin */
    }
    if (hend > host && !ipv4_as_browsers_write(host, (size_t)(hend - host)))
        return false;
    if (!colon)
        return host < end || s[skip] == '[';
    /* a port: 1..65535 as a browser writes it (no leading zero: :080 is sent as :80) */
    const char *d = colon + 1;
    size_t nd = (size_t)(end - d);
    if (nd == 0 || nd > 5 || d[0] == '0' || strspn(d, "0123456789") < nd)
        return false;
    long port = 0;
    for (size_t i = 0; i < nd; i++)
        port = port * 10 + (d[i] - '0');
    return port <= 65535 && (colon > host || s[skip] == '[');
}

/* An IPv6 address as the URL standard writes it (and so browsers, in Origin): hexadecimal
 * pieces without leading zeros, the first longest run of two or more zero pieces as "::", never
 * an embedded IPv4 (inet_ntop writes ::ffff:127.0.0.1 where a browser sends ::ffff:7f00:1). */
static void ipv6_url_form(const unsigned char ip[16], char *out, size_t len)
{
    int best = -1, best_n = 1;
    for (int i = 0; i < 8;) {
        int n = 0;
        while (i + n < 8 && ip[2 * (i + n)] == 0 && ip[2 * (i + n) + 1] == 0)
            n++;
        if (n > best_n) {
            best = i;
            best_n = n;
        }
        i += n ? n : 1;
    }
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < 8 && o < len; i++) {
        if (i == best) {
            o += (size_t)snprintf(out + o, len - o, "::"); /* the piece before it wrote no ':' */
            i += best_n - 1;
            continue;
        }
        o += (size_t)snprintf(out + o, len - o, "%x%s", (unsigned)(ip[2 * i] << 8 | ip[2 * i + 1]),
                              i < 7 && i + 1 != best ? ":" : "");
    }
}

/* Appends origin a (n bytes, valid_origin) to out at *o as a browser sends it: scheme and host
 * in lower case, no default port, an IPv6 literal as the URL standard writes it
 * (http://[2001:0DB8::1] is sent as http://[2001:db8::1]). */
static void put_origin(char *out, size_t *o, const char *a, size_t n)
{
    if (n > 12 && strncasecmp(a, "https://", 8) == 0 && memcmp(a + n - 4, ":443", 4) == 0)
        n -= 4;
    else if (n > 10 && strncasecmp(a, "http://", 7) == 0 && memcmp(a + n - 3, ":80", 3) == 0)
        n -= 3;
    const char *open_b = memchr(a, '[', n);
    size_t head = open_b ? (size_t)(open_b - a) + 1 : n;
    for (size_t i = 0; i < head; i++)
        out[(*o)++] = (char)tolower((unsigned char)a[i]);
    if (!open_b)
        return;
    const char *close_b = memchr(open_b, ']', n - head + 1);
    char lit[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
    unsigned char ip[16];
    size_t ln = (size_t)(close_b - open_b - 1);
    memcpy(lit, open_b + 1, ln);
    lit[ln] = '\0';
    inet_pton(AF_INET6, lit, ip);
    ipv6_url_form(ip, canon, sizeof(canon));
    for (const char *c = canon; *c; c++)
        out[(*o)++] = *c;
    for (const char *c = close_b; c < a + n; c++)
        out[(*o)++] = (char)tolower((unsigned char)*c);
}

/* security (issue 5): RATE_LIMIT_* values, parsed by the rate limiter itself. */
static int check_rate(const char *v, char **ret_norm)
{
    (void)ret_norm;
    ratelimit_spec_t spec;
    return ratelimit_parse_spec(v, &spec);
}

/* Why the last check_* refused its value, when it says more than the expected form
 * (config_load runs at start and in the CLI, one thread). */
static char check_reason[240];

/* security (issue 5, audit3): TRUSTED_PROXIES, parsed by security/clientaddr.c itself. */
static int check_proxies(const char *v, char **ret_norm)
{
    (void)ret_norm;
    clientaddr_proxies_t *p = NULL;
    int rc = clientaddr_proxies_parse(v, &p, check_reason, sizeof(check_reason));
    clientaddr_proxies_free(p);
    return rc;
}

/* "*" or a comma list of origins; normalised to a comma list without blanks, each origin in
 * lower case and without its scheme's default port (https://EHR.example.org:443 is what a
 * browser sends as https://ehr.example.org). */
static int check_cors(const char *v, char **ret_norm)
{
    /* a canonical IPv6 literal is at most INET6_ADDRSTRLEN long, whatever was written */
    char *out = malloc(strlen(v) * 2 + INET6_ADDRSTRLEN + 1);
    if (!out)
        return -ENOMEM;
    size_t o = 0;
    int items = 0;
    bool star = false;
    const char *cur = v, *a;
    size_t n;
    while (util_list_next(&cur, &a, &n)) {
        if (n == 1 && *a == '*')
            star = true;
        else if (!valid_origin(a, n))
            goto fail;
        if (o > 0)
            out[o++] = ',';
        if (star && n == 1)
            out[o++] = '*';
        else
            put_origin(out, &o, a, n);
        items++;
    }
    if (star && items > 1)
        goto fail;
    out[o] = '\0';
    *ret_norm = out;
    return 0;
fail:
    free(out);
    return -EINVAL;
}

/* ---- typed parsing ---- */

/* Formats a byte count with the largest exact binary suffix ("1M", "16K", "100"). */
static void fmt_size(int64_t v, char *buf, size_t len)
{
    if (v >= GIB && v % GIB == 0)
        snprintf(buf, len, "%lldG", (long long)(v / GIB));
    else if (v >= MIB && v % MIB == 0)
        snprintf(buf, len, "%lldM", (long long)(v / MIB));
    else if (v >= KIB && v % KIB == 0)
        snprintf(buf, len, "%lldK", (long long)(v / KIB));
    else
        snprintf(buf, len, "%lld", (long long)v);
}

/* Formats milliseconds as the shortest exact duration ("30s", "5m", "250ms"). */
static int parse_size(const char *s, int64_t *ret)
{
    static const util_unit_t units[] = {{"", 1},      {"K", KIB}, {"KiB", KIB}, {"M", MIB},
                                        {"MiB", MIB}, {"G", GIB}, {"GiB", GIB}};
    return util_parse_scaled(s, units, ARRAY_SIZE(units), true, ret);
}

/* Index of v in a '|'-separated choice list (case-insensitive), or -1. */
static int choice_index(const char *choices, const char *v)
{
    size_t vlen = strlen(v);
    int idx = 0;
    for (const char *p = choices;; idx++) {
        size_t n = strcspn(p, "|");
        if (n == vlen && strncasecmp(p, v, n) == 0)
            return idx;
        if (!p[n])
            return -1;
        p += n + 1;
    }
}

/* Writes "expected <form>" for s into buf. */
static void expected_form(const struct setting *s, char *buf, size_t len)
{
    char lo[32], hi[32];
    switch (s->kind) {
    case K_STR: snprintf(buf, len, "%s", s->form ? s->form : "a string"); break;
    case K_CHOICE:
    case K_ENUM:
    case K_LOGLEVEL: snprintf(buf, len, "one of %s", s->form); break;
    case K_BOOL: snprintf(buf, len, "a boolean (true/false, 1/0, yes/no, on/off)"); break;
    case K_INT:
        if (strcmp(s->name, "PROMETHEUS_PORT") == 0)
            snprintf(buf, len, "an integer %lld..%lld (0 = off)", (long long)s->min, (long long)s->max);
        else
            snprintf(buf, len, "an integer %lld..%lld", (long long)s->min, (long long)s->max);
        break;
    case K_SIZE:
        fmt_size(s->min, lo, sizeof(lo));
        fmt_size(s->max, hi, sizeof(hi));
        snprintf(buf, len, "a size in bytes with optional K/M/G suffix, %s..%s", lo, hi);
        break;
    case K_SECONDS:
        util_format_duration_ms(s->min, lo, sizeof(lo));
        util_format_duration_ms(s->max, hi, sizeof(hi));
        snprintf(buf, len, "a duration in whole seconds like 30s, 5m or 30, %s..%s", lo, hi);
        break;
    case K_MILLIS:
        util_format_duration_ms(s->min, lo, sizeof(lo));
        util_format_duration_ms(s->max, hi, sizeof(hi));
        snprintf(buf, len, "a duration like 250ms, 1s or 5m, %s..%s", lo, hi);
        break;
    }
}

/* Stores copy (malloc'd; NULL when it could not be made) in the string field, freeing the
 * old value; 0 or -ENOMEM. */
static int set_string(void *field, char *copy)
{
    if (!copy)
        return -ENOMEM;
    free(*(char **)field);
    *(char **)field = copy;
    return 0;
}

/* Parses v into the field of s; 0, -EINVAL (malformed/out of range) or -ENOMEM. */
static int parse_setting(const struct setting *s, const char *v, config_t *cfg)
{
    void *field = (char *)cfg + s->offset;
    int64_t n = 0;
    int idx;
    bool b;
    switch (s->kind) {
    case K_STR: {
        char *norm = NULL;
        if (s->check) {
            int r = s->check(v, &norm);
            if (r < 0)
                return r;
        }
        return set_string(field, norm ? norm : strdup(v));
    }
    case K_CHOICE: {
        idx = choice_index(s->form, v);
        if (idx < 0)
            return -EINVAL;
        const char *p = s->form;
        for (int i = 0; i < idx; i++)
            p += strcspn(p, "|") + 1;
        return set_string(field, strndup(p, strcspn(p, "|")));
    }
    case K_ENUM:
        idx = choice_index(s->form, v);
        if (idx < 0)
            return -EINVAL;
        *(config_environment_t *)field = (config_environment_t)idx;
        return 0;
    case K_LOGLEVEL: return log_level_parse(v, (log_level_t *)field) < 0 ? -EINVAL : 0;
    case K_BOOL:
        if (util_parse_bool(v, &b) < 0)
            return -EINVAL;
        *(bool *)field = b;
        return 0;
    case K_INT:
        if (util_parse_int64(v, s->min, s->max, &n) < 0)
            return -EINVAL;
        *(int *)field = (int)n;
        return 0;
    case K_SIZE:
        if (parse_size(v, &n) < 0 || n < s->min || n > s->max)
            return -EINVAL;
        *(size_t *)field = (size_t)n;
        return 0;
    case K_SECONDS:
    case K_MILLIS: {
        bool whole_s = s->kind == K_SECONDS;
        if (util_parse_duration_ms(v, &n) < 0 || n < s->min || n > s->max || (whole_s && n % 1000 != 0))
            return -EINVAL;
        *(int *)field = (int)(whole_s ? n / 1000 : n);
        return 0;
    }
    }
    return -EINVAL;
}

/* ---- env-file parser ---- */

static bool is_key_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static bool is_key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses one line (without its newline) into key/value (malloc'd). Returns 1 for a pair,
 * 0 for a blank or comment line, -EINVAL with the reason in why. */
static int parse_line(const char *line, size_t len, char **ret_key, char **ret_val, const char **why)
{
    const char *p = line, *end = line + len;
    if (p < end && end[-1] == '\r')
        end--;
    while (p < end && is_blank(*p))
        p++;
    if (p == end || *p == '#')
        return 0;
    if ((size_t)(end - p) > 7 && strncmp(p, "export", 6) == 0 && is_blank(p[6])) {
        p += 6;
        while (p < end && is_blank(*p))
            p++;
    }
    const char *key = p;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (!eq) {
        *why = "expected KEY=VALUE";
        return -EINVAL;
    }
    const char *key_end = eq;
    while (key_end > key && is_blank(key_end[-1]))
        key_end--;
    if (key_end == key) {
        *why = "missing variable name before '='";
        return -EINVAL;
    }
    if (!is_key_start(*key)) {
        *why = "invalid variable name (letters, digits and '_', not starting with a digit)";
        return -EINVAL;
    }
    for (const char *q = key; q < key_end; q++) {
        if (!is_key_char(*q)) {
            *why = "invalid variable name (letters, digits and '_', not starting with a digit)";
            return -EINVAL;
        }
    }

    p = eq + 1;
    while (p < end && is_blank(*p))
        p++;
    char *val = malloc((size_t)(end - p) + 1);
    if (!val)
        return -ENOMEM;
    size_t o = 0;
    if (p < end && (*p == '\'' || *p == '"')) {
        char q = *p++;
        bool closed = false;
        while (p < end) {
            if (*p == q) {
                closed = true;
                p++;
                break;
            }
            if (q == '"' && *p == '\\' && p + 1 < end) {
                char c = p[1];
                if (c == 'n') {
                    val[o++] = '\n';
                    p += 2;
                    continue;
                }
                if (c == '"' || c == '\\') {
                    val[o++] = c;
                    p += 2;
                    continue;
                }
            }
            val[o++] = *p++;
        }
        if (!closed) {
            free(val);
            *why = q == '"' ? "unterminated double quote" : "unterminated single quote";
            return -EINVAL;
        }
        while (p < end && is_blank(*p))
            p++;
        if (p < end && *p != '#') {
            free(val);
            *why = "unexpected text after the closing quote";
            return -EINVAL;
        }
    } else {
        const char *v_end = p;
        for (const char *q = p; q < end; q++) {
            if (*q == '#' && q > eq + 1 && is_blank(q[-1]))
                break; /* trailing " # comment" */
            v_end = q + 1;
        }
        while (v_end > p && is_blank(v_end[-1]))
            v_end--;
        memcpy(val, p, (size_t)(v_end - p));
        o = (size_t)(v_end - p);
    }
    val[o] = '\0';
    char *k = strndup(key, (size_t)(key_end - key));
    if (!k) {
        free(val);
        return -ENOMEM;
    }
    *ret_key = k;
    *ret_val = val;
    return 1;
}

/* One pass over buf: with cb == NULL only collects syntax errors; else calls cb per pair. */
static int env_pass(const char *buf, size_t len, const char *filename, config_env_cb cb, void *arg,
                    struct errs *e)
{
    const char *p = buf, *end = buf + len;
    int lineno = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *key = NULL, *val = NULL;
        const char *why = NULL;
        int r;
        if (memchr(p, '\0', n)) {
            r = -EINVAL;
            why = "NUL byte in line";
        } else {
            r = parse_line(p, n, &key, &val, &why);
        }
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            add_err(e, "%s:%d: %s", filename, lineno, why);
        } else if (r > 0 && cb) {
            r = cb(key, val, arg);
            free(key);
            free(val);
            if (r != 0)
                return r;
        } else {
            free(key);
            free(val);
        }
        p += n + (nl ? 1 : 0);
    }
    return e->count > 0 ? -EINVAL : 0;
}

int config_parse_env_buffer(const char *buf, size_t len, const char *filename, config_env_cb cb, void *arg,
                            char *err, size_t errlen)
{
    struct errs e = {err, errlen, 0, 0};
    if (err && errlen)
        err[0] = '\0';
    if (!filename)
        filename = "<env>";
    /* Validate the whole file first so a bad file has no partial effect. */
    int r = env_pass(buf, len, filename, NULL, NULL, &e);
    if (r < 0)
        return r;
    return env_pass(buf, len, filename, cb, arg, &e);
}

int config_parse_env_file(const char *path, config_env_cb cb, void *arg, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int r = util_read_file(path, ENV_FILE_MAX, &buf, &len);
    if (r < 0) {
        if (r == -EFBIG)
            snprintf(err, errlen, "%s: larger than %d bytes, not an env file", path, ENV_FILE_MAX);
        else
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
        return r;
    }
    /* a UTF-8 byte-order mark (Windows editors write one) is not part of the first name */
    size_t bom = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    r = config_parse_env_buffer(buf + bom, len - bom, path, cb, arg, err, errlen);
    free(buf);
    return r;
}

/* ---- loading ---- */

static const struct setting *find_setting(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

/* Raw string layers: raw[i] is the winning string for settings[i] (NULL = not given). */
struct raw {
    char *v[N_SETTINGS];
};

static int take_file_value(const char *key, const char *value, void *arg)
{
    struct raw *raw = arg;
    const struct setting *s = find_setting(key);
    if (!s)
        return 0; /* belongs to another component (REDIS_URL, SENTRY_DSN, ...) */
    size_t i = (size_t)(s - settings);
    char *copy = strdup(value);
    if (!copy)
        return -ENOMEM;
    free(raw->v[i]);
    raw->v[i] = copy;
    return 0;
}

static bool has_placeholder(const char *v, const char **ret_which)
{
    for (size_t i = 0; i < ARRAY_SIZE(placeholders); i++) {
        if (strcasestr(v, placeholders[i])) {
            *ret_which = placeholders[i];
            return true;
        }
    }
    return false;
}

/* dirname(MODEL_STORAGE_PATH) + "/data". */
static char *derive_data_dir(const char *models)
{
    size_t n = strlen(models);
    while (n > 1 && models[n - 1] == '/')
        n--;
    while (n > 0 && models[n - 1] != '/')
        n--;
    while (n > 1 && models[n - 1] == '/')
        n--;
    char *out;
    if (n == 0)
        return strdup("./data");
    if (n == 1 && models[0] == '/')
        return strdup("/data");
    if (asprintf(&out, "%.*s/data", (int)n, models) < 0)
        return NULL;
    return out;
}

static void check_cross(const config_t *cfg, struct errs *e)
{
    if (cfg->tls_enabled && !cfg->tls_cert_path)
        add_err(e, "TLS_CERT_PATH: required when TLS_ENABLED=true");
    if (cfg->tls_enabled && !cfg->tls_key_path)
        add_err(e, "TLS_KEY_PATH: required when TLS_ENABLED=true");
    if (cfg->prometheus_enabled && cfg->prometheus_port != 0 && cfg->prometheus_port == cfg->port)
        add_err(e, "PROMETHEUS_PORT: must differ from PORT (%d), or be 0 to serve metrics on PORT",
                cfg->port);
    /* without a trail SIEM forwards nothing: then it is warned about (AUDIT_SIEM_WITHOUT_TRAIL),
     * not refused; the forms of the SYSLOG_* settings are checked all the same */
    if (cfg->siem_integration_enabled && cfg->audit_log_path && !cfg->syslog_server)
        add_err(e, "SYSLOG_SERVER: required when SIEM_INTEGRATION_ENABLED=true");
}

/* Number of different bytes in s (a secret of spaces or one repeated character has 1). */
static size_t distinct_chars(const char *s)
{
    bool seen[256] = {false};
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!seen[*p]) {
            seen[*p] = true;
            n++;
        }
    return n;
}

/* What `config check` prints in place of a secret is never one: a printed configuration read
 * back whole made "<unset>" the JWT signing key in staging (review54 #3). In every
 * environment. */
static void check_printed_placeholders(const config_t *cfg, struct errs *e)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (s->secret == PUBLIC || (s->kind != K_STR && s->kind != K_CHOICE))
            continue;
        const char *v = *(char *const *)((const char *)cfg + s->offset);
        if (v && (strcmp(v, "<unset>") == 0 || strstr(v, "<redacted>")))
            add_err(e,
                    "%s: holds what `config check` prints in place of a secret (%s), not a secret: put the "
                    "secret itself, or leave the line out",
                    s->name, strcmp(v, "<unset>") == 0 ? "<unset>" : "<redacted>");
    }
}

static void check_production(const config_t *cfg, struct errs *e)
{
    if (cfg->environment != ENV_PRODUCTION)
        return;
    if (cfg->debug)
        add_err(e, "DEBUG: must be false when ENVIRONMENT=production");
    if (!cfg->auth_enabled) /* security (issue 5) */
        add_err(e, "AUTH_ENABLED: must be true when ENVIRONMENT=production");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (s->secret != SECRET)
            continue;
        const char *v = *(char *const *)((const char *)cfg + s->offset);
        const char *which;
        /* with an identity provider's keys, HS256 may be left off: unset, no token is minted or
         * taken with a shared secret (review58 S4: anyone reading the env file could mint admin) */
        if (!v && cfg->jwt_public_keys && strcmp(s->name, "JWT_SECRET_KEY") == 0)
            continue;
        if (!v)
            add_err(e, "%s: must be set when ENVIRONMENT=production", s->name);
        else if (has_placeholder(v, &which))
            add_err(e,
                    "%s: is a template placeholder (contains '%s'); generate a real secret, e.g. "
                    "openssl rand -hex 32",
                    s->name, which);
        else if (strlen(v) < SECRET_MIN_LEN)
            add_err(e, "%s: must be at least %d characters when ENVIRONMENT=production", s->name,
                    SECRET_MIN_LEN);
        else if (distinct_chars(v) < SECRET_MIN_DISTINCT)
            add_err(e,
                    "%s: has only %zu distinct characters (spaces, a repeated character?): not a random "
                    "secret; e.g. openssl rand -hex 32",
                    s->name, distinct_chars(v));
        else
            for (size_t k = 0; k < i; k++) {
                const char *w = settings[k].secret == SECRET ? *(char *const *)((const char *)cfg +
                                                                                  settings[k].offset)
                                                             : NULL;
                if (w && strcmp(v, w) == 0)
                    add_err(e, "%s: must differ from %s (one leaked secret must not give away the other)",
                            s->name, settings[k].name);
            }
    }
    /* HIPAA's audit controls: production keeps the trail (review58 S9). */
    if (!cfg->audit_log_path)
        add_err(e, "AUDIT_LOG_PATH: must be set when ENVIRONMENT=production (the audit trail of every "
                   "prediction, access decision and change)");
    /* An identity provider signs tokens for many applications: without an audience, each of
     * them (with realm-wide roles such as admin) would be accepted here (review58 S8). */
    if (cfg->jwt_public_keys && !cfg->jwt_audience)
        add_err(e, "JWT_AUDIENCE: must be set when ENVIRONMENT=production and JWT_PUBLIC_KEYS is set "
                   "(the aud claim this server's tokens carry; without it a token the identity provider "
                   "issued for any other application is accepted)");
    char *pw = cfg->database_url ? url_password(cfg->database_url) : NULL;
    const char *which;
    if (pw && has_placeholder(pw, &which))
        add_err(e, "DATABASE_URL: the password is a template placeholder (contains '%s')", which);
    free(pw);
}

int config_load(const char *env_file, config_t **ret, char *err, size_t errlen)
{
    struct errs e = {err, errlen, 0, 0};
    struct raw raw = {{0}};
    config_t *cfg = NULL;
    int r = 0;
    if (err && errlen)
        err[0] = '\0';

    if (env_file) {
        r = config_parse_env_file(env_file, take_file_value, &raw, err, errlen);
        if (r < 0)
            goto fail;
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].name);
        if (!v)
            continue;
        char *copy = strdup(v);
        if (!copy) {
            r = -ENOMEM;
            goto fail;
        }
        free(raw.v[i]);
        raw.v[i] = copy;
    }

    cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        bool given = raw.v[i] && raw.v[i][0];
        const char *v = given ? raw.v[i] : s->def;
        if (!v)
            continue;
        check_reason[0] = '\0';
        r = parse_setting(s, v, cfg);
        if (r == -ENOMEM)
            goto fail;
        if (r < 0) {
            char form[400];
            expected_form(s, form, sizeof(form));
            if (check_reason[0] && s->secret == PUBLIC) {
                /* a well-formed value refused for a reason of its own (review63 #2) */
                add_err(&e, "%s: %s", s->name, check_reason);
            } else if (!given) {
                add_err(&e, "%s: built-in default '%s' is invalid (bug)", s->name, v);
            } else if (s->secret == SECRET) {
                add_err(&e, "%s: expected %s, got a malformed value", s->name, form);
            } else {
                char *shown = s->secret == SECRET_URL || s->secret == SECRET_URL_TAIL
                                  ? redact_url(v, s->secret == SECRET_URL_TAIL)
                                  : NULL;
                char echo[ECHO_MAX + 8];
                echo_value(shown ? shown : v, echo, sizeof(echo));
                free(shown);
                add_err(&e, "%s: expected %s, got '%s'", s->name, form, echo);
            }
            r = 0;
        }
    }
    /* security (issue 5): AUTH_ENABLED unset -> on everywhere but development. */
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].name, "AUTH_ENABLED") == 0 && !(raw.v[i] && raw.v[i][0]))
            cfg->auth_enabled = cfg->environment != ENV_DEVELOPMENT;
    if (!cfg->data_dir && cfg->model_storage_path) {
        cfg->data_dir = derive_data_dir(cfg->model_storage_path);
        if (!cfg->data_dir) {
            r = -ENOMEM;
            goto fail;
        }
    }
    if (e.count == 0) {
        /* Cross-field and production rules only make sense on well-formed values. */
        check_cross(cfg, &e);
        check_printed_placeholders(cfg, &e);
        check_production(cfg, &e);
    }
    if (e.count > 0) {
        r = -EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < N_SETTINGS; i++)
        free(raw.v[i]);
    *ret = cfg;
    return 0;
fail:
    if (r == -ENOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "out of memory while loading the configuration");
    for (size_t i = 0; i < N_SETTINGS; i++)
        free(raw.v[i]);
    config_free(cfg);
    return r;
}

void config_free(config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (settings[i].kind == K_STR || settings[i].kind == K_CHOICE) {
            char **field = (char **)((char *)cfg + settings[i].offset);
            free(*field);
        }
    }
    free(cfg);
}

/* ---- printing ---- */

static int cmp_setting(const void *a, const void *b)
{
    const struct setting *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Writes v so the env-file parser reads it back: bare when safe, else double-quoted. */
static void print_value(FILE *out, const char *v)
{
    bool plain = *v != '\0';
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c) || iscntrl(c) || c == '"' || c == '\'' || c == '\\' || c == '#')
            plain = false;
    }
    if (plain || !*v) {
        fputs(v, out);
        return;
    }
    fputc('"', out);
    for (const char *p = v; *p; p++) {
        if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void config_print(const config_t *cfg, FILE *out)
{
    const struct setting *sorted[N_SETTINGS];
    for (size_t i = 0; i < N_SETTINGS; i++)
        sorted[i] = &settings[i];
    qsort(sorted, N_SETTINGS, sizeof(sorted[0]), cmp_setting);

    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = sorted[i];
        const void *field = (const char *)cfg + s->offset;
        char buf[64];
        fprintf(out, "%s=", s->name);
        switch (s->kind) {
        case K_STR:
        case K_CHOICE: {
            const char *v = *(char *const *)field;
            if (s->secret == SECRET) {
                fputs(v ? "<redacted>" : "<unset>", out);
            } else if ((s->secret == SECRET_URL || s->secret == SECRET_URL_TAIL) && v) {
                char *red = redact_url(v, s->secret == SECRET_URL_TAIL);
                print_value(out, red ? red : "<redacted>");
                free(red);
            } else {
                print_value(out, v ? v : "");
            }
            break;
        }
        case K_ENUM: {
            int idx = (int)*(const config_environment_t *)field;
            const char *p = s->form;
            for (int k = 0; k < idx && strchr(p, '|'); k++)
                p = strchr(p, '|') + 1;
            fprintf(out, "%.*s", (int)strcspn(p, "|"), p);
            break;
        }
        case K_LOGLEVEL: fputs(log_level_name(*(const log_level_t *)field), out); break;
        case K_BOOL: fputs(*(const bool *)field ? "true" : "false", out); break;
        case K_INT: fprintf(out, "%d", *(const int *)field); break;
        case K_SIZE: fprintf(out, "%zu", *(const size_t *)field); break;
        case K_SECONDS:
            util_format_duration_ms((int64_t)(*(const int *)field) * 1000, buf, sizeof(buf));
            fputs(buf, out);
            break;
        case K_MILLIS:
            util_format_duration_ms(*(const int *)field, buf, sizeof(buf));
            fputs(buf, out);
            break;
        }
        fputc('\n', out);
    }
}
