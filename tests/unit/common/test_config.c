/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/config: the env-file syntax (including the deployment guide's own
 * §1.2 block), precedence of the environment over the file, one error per malformed
 * variable, the production refusals, and secret redaction in config_print. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/util.h"

static char tmpdir[4096];

/* Every variable config reads; cleared before each test so the caller's environment
 * cannot leak in. */
static const char *const all_vars[] = {
    "ENVIRONMENT",
    "DEBUG",
    "LOG_LEVEL",
    "LOG_FILE",
    "HOST",
    "PORT",
    "MAX_WORKERS",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "SECRET_KEY",
    "JWT_SECRET_KEY",
    "API_KEY_SALT",
    "TLS_ENABLED",
    "TLS_CERT_PATH",
    "TLS_KEY_PATH",
    "TLS_MIN_VERSION",
    "MODEL_STORAGE_PATH",
    "DATA_DIR",
    "PROMETHEUS_ENABLED",
    "PROMETHEUS_PORT",
    "AUDIT_LOG_PATH",
    "AUDIT_LOG_RETENTION_DAYS",
    "SIEM_INTEGRATION_ENABLED",
    "SYSLOG_SERVER",
    "BACKUP_ENABLED",
    "BACKUP_PATH",
    "BACKUP_RETENTION_DAYS",
    "BACKUP_ENCRYPTION_KEY_ID",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_BATCH_SIZE",
    "READ_TIMEOUT",
    "WRITE_TIMEOUT",
    "SHUTDOWN_DRAIN_TIMEOUT",
    "CORS_ALLOWED_ORIGINS",
    "STORE_PREDICTION_INPUTS",
    "MODEL_POLL_INTERVAL",
};

#define SECRET_A "3f9a1c7e5b2d4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
#define SECRET_B "b7e1d3c5a9f2e4d6c8b0a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d2c4b6a8f0e2d4"
#define SECRET_C "0c2e4a6b8d1f3a5c7e9b2d4f6a8c0e2b4d6f8a1c3e5b7d9f2a4c6e8b0d2f4a6c"

/* §1.2 of the production deployment guide, verbatim. */
static const char guide_block[] =
    "# Application Environment\n"
    "ENVIRONMENT=production\n"
    "DEBUG=false\n"
    "LOG_LEVEL=INFO\n"
    "\n"
    "# Database (use production DB credentials)\n"
    "DATABASE_URL=postgresql://aimedres_prod:SECURE_PASSWORD@prod-db.internal:5432/aimedres_prod\n"
    "DATABASE_SSL_MODE=require\n"
    "DATABASE_POOL_SIZE=20\n"
    "DATABASE_MAX_OVERFLOW=10\n"
    "\n"
    "# Redis Cache\n"
    "REDIS_URL=redis://prod-redis.internal:6379/0\n"
    "REDIS_PASSWORD=SECURE_REDIS_PASSWORD\n"
    "REDIS_SSL=true\n"
    "\n"
    "# Security\n"
    "SECRET_KEY=GENERATE_SECURE_KEY_HERE\n"
    "JWT_SECRET_KEY=GENERATE_SECURE_JWT_KEY_HERE\n"
    "API_KEY_SALT=GENERATE_SECURE_SALT_HERE\n"
    "SESSION_COOKIE_SECURE=true\n"
    "SESSION_COOKIE_HTTPONLY=true\n"
    "SESSION_COOKIE_SAMESITE=Strict\n"
    "\n"
    "# HTTPS/TLS\n"
    "TLS_ENABLED=true\n"
    "TLS_CERT_PATH=/etc/ssl/certs/aimedres.crt\n"
    "TLS_KEY_PATH=/etc/ssl/private/aimedres.key\n"
    "TLS_MIN_VERSION=1.2\n"
    "\n"
    "# Model Storage\n"
    "MODEL_STORAGE_PATH=/var/aimedres/models\n"
    "MODEL_REGISTRY_URL=https://mlflow.internal.hospital.org\n"
    "MLFLOW_TRACKING_URI=postgresql://mlflow:PASSWORD@prod-db.internal:5432/mlflow\n"
    "\n"
    "# Monitoring\n"
    "PROMETHEUS_ENABLED=true\n"
    "PROMETHEUS_PORT=9090\n"
    "GRAFANA_URL=https://grafana.internal.hospital.org\n"
    "SENTRY_DSN=https://your-sentry-dsn@sentry.io/project-id\n"
    "\n"
    "# Audit Logging\n"
    "AUDIT_LOG_PATH=/var/log/aimedres/audit.log\n"
    "AUDIT_LOG_RETENTION_DAYS=2555  # 7 years for HIPAA\n"
    "SIEM_INTEGRATION_ENABLED=true\n"
    "SYSLOG_SERVER=syslog.internal.hospital.org:514\n"
    "\n"
    "# Backup\n"
    "BACKUP_ENABLED=true\n"
    "BACKUP_PATH=/var/backup/aimedres\n"
    "BACKUP_RETENTION_DAYS=90\n"
    "BACKUP_ENCRYPTION_KEY_ID=arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012\n"
    "\n"
    "# Resource Limits\n"
    "MAX_WORKERS=4\n"
    "MAX_REQUESTS_PER_CHILD=1000\n"
    "MEMORY_LIMIT=4G\n"
    "CPU_LIMIT=2.0\n";

static void clear_env(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(all_vars); i++)
        unsetenv(all_vars[i]);
    /* every setting the table knows, including ones added after this list was written */
    for (size_t i = 0; config_setting_name(i); i++)
        unsetenv(config_setting_name(i));
}

static int setup_tmp(void **state)
{
    (void)state;
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (base && *base) {
        if (util_mkdir_p(base, 0700) < 0)
            return -1;
        snprintf(tmpdir, sizeof(tmpdir), "%s/config.XXXXXX", base);
    } else {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/aimedres-config.XXXXXX");
    }
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    return util_rmtree(tmpdir);
}

static int before_each(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

/* Writes text to <tmpdir>/<name> and returns the path (static buffer). */
static const char *write_env(const char *name, const char *text)
{
    static char path[4200];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0600), 0);
    return path;
}

static int count_lines(const char *s)
{
    if (!*s)
        return 0;
    int n = 1;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Collected pairs from the parser. */
struct pairs {
    int n;
    char key[32][64];
    char val[32][256];
};

static int collect(const char *key, const char *value, void *arg)
{
    struct pairs *p = arg;
    assert_true(p->n < 32);
    snprintf(p->key[p->n], sizeof(p->key[0]), "%s", key);
    snprintf(p->val[p->n], sizeof(p->val[0]), "%s", value);
    p->n++;
    return 0;
}

static void test_env_syntax(void **state)
{
    (void)state;
    static const char text[] = "# a comment line\n"
                               "\n"
                               "   \t\n"
                               "PLAIN=value\n"
                               "export EXPORTED=yes\n"
                               "TRAILING=2555  # 7 years for HIPAA\n"
                               "HASH_INSIDE=a#b\n"
                               "SINGLE='literal \\n # not a comment'  # comment\n"
                               "DOUBLE=\"line1\\nline2 \\\"q\\\" back\\\\slash\"\n"
                               "SPACES=  padded value   \n"
                               "EMPTY=\n"
                               "EMPTY_COMMENT= # nothing\n"
                               "HASH_FIRST=#not-a-comment\n"
                               "CRLF=windows\r\n"
                               "  INDENTED = x\n"
                               "URL=postgresql://u:p@h:5432/db?sslmode=require";
    struct pairs p = {0};
    char err[512] = "";
    assert_int_equal(config_parse_env_buffer(text, strlen(text), "t.env", collect, &p, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    const char *expect[][2] = {
        {"PLAIN", "value"},
        {"EXPORTED", "yes"},
        {"TRAILING", "2555"},
        {"HASH_INSIDE", "a#b"},
        {"SINGLE", "literal \\n # not a comment"},
        {"DOUBLE", "line1\nline2 \"q\" back\\slash"},
        {"SPACES", "padded value"},
        {"EMPTY", ""},
        {"EMPTY_COMMENT", ""},
        {"HASH_FIRST", "#not-a-comment"},
        {"CRLF", "windows"},
        {"INDENTED", "x"},
        {"URL", "postgresql://u:p@h:5432/db?sslmode=require"},
    };
    assert_int_equal(p.n, (int)ARRAY_SIZE(expect));
    for (size_t i = 0; i < ARRAY_SIZE(expect); i++) {
        assert_string_equal(p.key[i], expect[i][0]);
        assert_string_equal(p.val[i], expect[i][1]);
    }
}

static void test_env_bad_lines(void **state)
{
    (void)state;
    static const char text[] = "GOOD=1\n"
                               "no equals sign here\n"
                               "1BAD=x\n"
                               "BAD-KEY=x\n"
                               "=novalue\n"
                               "OPEN=\"never closed\n"
                               "OPEN2='never closed\n"
                               "AFTER=\"quoted\" junk\n"
                               "ALSO_GOOD=2\n";
    struct pairs p = {0};
    char err[2048] = "";
    assert_int_equal(config_parse_env_buffer(text, strlen(text), "bad.env", collect, &p, err, sizeof(err)),
                     -EINVAL);
    /* Nothing is applied from a file with syntax errors, and every bad line is reported. */
    assert_int_equal(p.n, 0);
    assert_int_equal(count_lines(err), 7);
    assert_non_null(strstr(err, "bad.env:2: expected KEY=VALUE"));
    assert_non_null(strstr(err, "bad.env:3: invalid variable name"));
    assert_non_null(strstr(err, "bad.env:4: invalid variable name"));
    assert_non_null(strstr(err, "bad.env:5: missing variable name"));
    assert_non_null(strstr(err, "bad.env:6: unterminated double quote"));
    assert_non_null(strstr(err, "bad.env:7: unterminated single quote"));
    assert_non_null(strstr(err, "bad.env:8: unexpected text after the closing quote"));
    assert_null(strstr(err, "bad.env:1:"));
    assert_null(strstr(err, "bad.env:9:"));
    /* The bad line's content (possibly a secret) is not echoed. */
    assert_null(strstr(err, "never closed"));

    /* Through config_load the same errors come back with the file name. */
    const char *path = write_env("bad.env", text);
    config_t *cfg = NULL;
    err[0] = '\0';
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(err, ":2: expected KEY=VALUE"));
}

static void test_env_file_limits(void **state)
{
    (void)state;
    config_t *cfg = NULL;
    char err[512] = "";
    char path[4200];
    snprintf(path, sizeof(path), "%s/does-not-exist.env", tmpdir);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot read"));

    size_t n = 1024 * 1024 + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (i % 64 == 63) ? '\n' : '#';
    big[n] = '\0';
    const char *bigpath = write_env("big.env", big);
    free(big);
    err[0] = '\0';
    assert_int_equal(config_load(bigpath, &cfg, err, sizeof(err)), -EFBIG);
    assert_non_null(strstr(err, "larger than"));
}

static void test_defaults(void **state)
{
    (void)state;
    config_t *cfg = NULL;
    char err[1024] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->environment, ENV_DEVELOPMENT);
    assert_false(cfg->debug);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_null(cfg->log_file);
    assert_string_equal(cfg->host, "127.0.0.1");
    assert_int_equal(cfg->port, 8080);
    assert_int_equal(cfg->max_workers, 4);
    assert_string_equal(cfg->database_url, "sqlite:///var/lib/aimedres/aimedres.db");
    assert_int_equal(cfg->database_pool_size, 20);
    assert_null(cfg->secret_key);
    assert_string_equal(cfg->tls_min_version, "1.2");
    assert_string_equal(cfg->model_storage_path, "/var/aimedres/models");
    assert_string_equal(cfg->data_dir, "/var/aimedres/data");
    assert_true(cfg->prometheus_enabled);
    assert_int_equal(cfg->prometheus_port, 0);
    assert_int_equal(cfg->audit_log_retention_days, 2555);
    assert_string_equal(cfg->backup_path, "/var/backup/aimedres");
    assert_int_equal(cfg->backup_retention_days, 90);
    assert_int_equal(cfg->max_body_bytes, 1024 * 1024);
    assert_int_equal(cfg->max_header_bytes, 16 * 1024);
    assert_int_equal(cfg->max_batch, 256);
    assert_int_equal(cfg->read_timeout_s, 30);
    assert_int_equal(cfg->write_timeout_s, 30);
    assert_int_equal(cfg->drain_timeout_s, 30);
    assert_null(cfg->cors_allowed_origins);
    assert_false(cfg->store_prediction_inputs);
    assert_int_equal(cfg->model_poll_interval_ms, 1000);
    config_free(cfg);
}

static void test_guide_file(void **state)
{
    (void)state;
    const char *path = write_env("guide.env", guide_block);
    config_t *cfg = NULL;
    char err[4096] = "";

    /* As shipped, the guide's template is refused in production: placeholders everywhere. */
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    assert_null(cfg);
    assert_int_equal(count_lines(err), 4);
    assert_non_null(strstr(err, "SECRET_KEY: is a template placeholder"));
    assert_non_null(strstr(err, "JWT_SECRET_KEY: is a template placeholder"));
    assert_non_null(strstr(err, "API_KEY_SALT: is a template placeholder"));
    assert_non_null(strstr(err, "DATABASE_URL: the password is a template placeholder"));
    /* Keys of other components are not errors; secret values are never echoed. */
    assert_null(strstr(err, "REDIS"));
    assert_null(strstr(err, "SENTRY"));
    assert_null(strstr(err, "GENERATE_SECURE_KEY_HERE"));

    /* With real secrets from the environment (which wins over the file) it loads. */
    setenv("SECRET_KEY", SECRET_A, 1);
    setenv("JWT_SECRET_KEY", SECRET_B, 1);
    setenv("API_KEY_SALT", SECRET_C, 1);
    setenv("DATABASE_URL", "postgresql://aimedres_prod:s3cr3t-Pa55@prod-db.internal:5432/aimedres_prod", 1);
    err[0] = '\0';
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(cfg->environment, ENV_PRODUCTION);
    assert_string_equal(cfg->secret_key, SECRET_A);
    assert_string_equal(cfg->database_url,
                        "postgresql://aimedres_prod:s3cr3t-Pa55@prod-db.internal:5432/aimedres_prod");
    assert_int_equal(cfg->audit_log_retention_days, 2555);
    assert_true(cfg->tls_enabled);
    assert_string_equal(cfg->tls_cert_path, "/etc/ssl/certs/aimedres.crt");
    assert_string_equal(cfg->tls_key_path, "/etc/ssl/private/aimedres.key");
    assert_int_equal(cfg->prometheus_port, 9090);
    assert_true(cfg->siem_integration_enabled);
    assert_string_equal(cfg->syslog_server, "syslog.internal.hospital.org:514");
    assert_true(cfg->backup_enabled);
    assert_string_equal(cfg->backup_encryption_key_id,
                        "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012");
    assert_int_equal(cfg->max_workers, 4);
    assert_string_equal(cfg->audit_log_path, "/var/log/aimedres/audit.log");
    config_free(cfg);
}

static void test_env_overrides_file(void **state)
{
    (void)state;
    const char *path = write_env("override.env", "PORT=9000\nHOST=0.0.0.0\nLOG_LEVEL=debug\nMAX_WORKERS=8\n"
                                                 "MODEL_STORAGE_PATH=/srv/ai/models/\n");
    setenv("PORT", "9100", 1);
    setenv("MAX_WORKERS", "", 1); /* empty = not set: falls back to the default, not the file */
    config_t *cfg = NULL;
    char err[1024] = "";
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->port, 9100);
    assert_string_equal(cfg->host, "0.0.0.0");
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->max_workers, 4);
    assert_string_equal(cfg->data_dir, "/srv/ai/data");
    config_free(cfg);

    setenv("DATA_DIR", "/elsewhere", 1);
    setenv("MODEL_STORAGE_PATH", "models", 1);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->data_dir, "/elsewhere");
    assert_string_equal(cfg->model_storage_path, "models");
    config_free(cfg);
    unsetenv("DATA_DIR");
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->data_dir, "./data");
    config_free(cfg);
}

static void test_value_forms(void **state)
{
    (void)state;
    setenv("MAX_BODY_BYTES", "4M", 1);
    setenv("MAX_HEADER_BYTES", "8192", 1);
    setenv("READ_TIMEOUT", "2m", 1);
    setenv("WRITE_TIMEOUT", "45", 1);
    setenv("SHUTDOWN_DRAIN_TIMEOUT", "0", 1);
    setenv("MODEL_POLL_INTERVAL", "250ms", 1);
    setenv("DEBUG", "On", 1);
    setenv("STORE_PREDICTION_INPUTS", "YES", 1);
    setenv("TLS_MIN_VERSION", "1.3", 1);
    setenv("ENVIRONMENT", "Staging", 1);
    setenv("CORS_ALLOWED_ORIGINS",
           " https://A.example.org:443 , http://localhost:3000, http://b.example.org:80 ,http://10.0.0.7:8080,"
           "http://a1.0x7f.example,http://example.com.,http://foo.0xg,"
           "http://[2001:0DB8:0::1]:3000,https://[::FFFF:127.0.0.1]:443,http://[fd00::1],http://[1:0:0:2::]:8080,"
           "http://[0:0:0:0:0:0:0:0],http://[1:0:2:0:0:3:0:0]",
           1);
    setenv("SYSLOG_SERVER", "[fd00::1]:6514", 1);
    setenv("PROMETHEUS_PORT", "9090", 1);
    config_t *cfg = NULL;
    char err[1024] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->max_body_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg->max_header_bytes, 8192);
    assert_int_equal(cfg->read_timeout_s, 120);
    assert_int_equal(cfg->write_timeout_s, 45);
    assert_int_equal(cfg->drain_timeout_s, 0);
    assert_int_equal(cfg->model_poll_interval_ms, 250);
    assert_true(cfg->debug);
    assert_true(cfg->store_prediction_inputs);
    assert_string_equal(cfg->tls_min_version, "1.3");
    assert_int_equal(cfg->environment, ENV_STAGING);
    /* as browsers send Origin: IPv6 literals canonical (review62 #7) */
    assert_string_equal(cfg->cors_allowed_origins,
                        "https://a.example.org,http://localhost:3000,http://b.example.org,http://10.0.0.7:8080,"
                        "http://a1.0x7f.example,http://example.com.,http://foo.0xg,http://[2001:db8::1]:3000,https://[::ffff:7f00:1],http://[fd00::1],http://[1:0:0:2::]:8080,"
                        "http://[::],http://[1:0:2::3:0:0]");
    assert_string_equal(cfg->syslog_server, "[fd00::1]:6514");
    assert_int_equal(cfg->prometheus_port, 9090);
    config_free(cfg);
}

/* Each malformed value yields exactly one line naming its variable and expected form. */
static void test_every_error_reported(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *expect;
    } cases[] = {
        {"PORT", "abc", "PORT: expected an integer 1..65535, got 'abc'"},
        {"MAX_WORKERS", "0", "MAX_WORKERS: expected an integer 1..256, got '0'"},
        {"PROMETHEUS_PORT", "70000", "PROMETHEUS_PORT: expected an integer 0..65535 (0 = off), got '70000'"},
        {"DEBUG", "maybe", "DEBUG: expected a boolean (true/false, 1/0, yes/no, on/off), got 'maybe'"},
        {"LOG_LEVEL", "verbose",
         "LOG_LEVEL: expected one of DEBUG|INFO|WARNING|ERROR|CRITICAL, got 'verbose'"},
        {"ENVIRONMENT", "prod", "ENVIRONMENT: expected one of development|staging|production, got 'prod'"},
        {"TLS_MIN_VERSION", "1.1", "TLS_MIN_VERSION: expected one of 1.2|1.3, got '1.1'"},
        {"MAX_BODY_BYTES", "10X",
         "MAX_BODY_BYTES: expected a size in bytes with optional K/M/G suffix, 1..1G, "
         "got '10X'"},
        {"MAX_HEADER_BYTES", "100", "MAX_HEADER_BYTES: expected a size"},
        {"READ_TIMEOUT", "1500ms", "READ_TIMEOUT: expected a duration in whole seconds"},
        {"WRITE_TIMEOUT", "soon", "WRITE_TIMEOUT: expected a duration"},
        {"SHUTDOWN_DRAIN_TIMEOUT", "2h", "SHUTDOWN_DRAIN_TIMEOUT: expected a duration"},
        {"MODEL_POLL_INTERVAL", "1ms", "MODEL_POLL_INTERVAL: expected a duration like 250ms"},
        {"DATABASE_POOL_SIZE", "-1", "DATABASE_POOL_SIZE: expected an integer 1..1000, got '-1'"},
        {"AUDIT_LOG_RETENTION_DAYS", "forever", "AUDIT_LOG_RETENTION_DAYS: expected an integer 1..36500"},
        {"BACKUP_RETENTION_DAYS", "0", "BACKUP_RETENTION_DAYS: expected an integer 1..36500, got '0'"},
        {"MAX_BATCH_SIZE", "1e3", "MAX_BATCH_SIZE: expected an integer 1..100000, got '1e3'"},
        {"SYSLOG_SERVER", "syslog.internal", "SYSLOG_SERVER: expected host:port, got 'syslog.internal'"},
        {"CORS_ALLOWED_ORIGINS", "https://a.org/path", "CORS_ALLOWED_ORIGINS: expected '*' or a comma"},
        {"TLS_ENABLED", "2", "TLS_ENABLED: expected a boolean"},
        {"PROMETHEUS_ENABLED", "enabled", "PROMETHEUS_ENABLED: expected a boolean"},
        {"SIEM_INTEGRATION_ENABLED", "y", "SIEM_INTEGRATION_ENABLED: expected a boolean"},
        {"BACKUP_ENABLED", "nope", "BACKUP_ENABLED: expected a boolean"},
        {"STORE_PREDICTION_INPUTS", "x", "STORE_PREDICTION_INPUTS: expected a boolean"},
        {"DATABASE_URL", "mysql://root:hunter2@db/app", "DATABASE_URL: expected sqlite:///path"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        setenv(cases[i].name, cases[i].value, 1);
    config_t *cfg = NULL;
    char err[8192] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_null(cfg);
    assert_int_equal(count_lines(err), (int)ARRAY_SIZE(cases));
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (!strstr(err, cases[i].expect))
            fail_msg("missing '%s' in:\n%s", cases[i].expect, err);
    }
    /* The database password is not echoed even in a malformed URL. */
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "mysql://root:<redacted>@db/app"));

    /* One variable alone produces exactly its own line. */
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        clear_env();
        setenv(cases[i].name, cases[i].value, 1);
        err[0] = '\0';
        assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
        assert_int_equal(count_lines(err), 1);
        assert_true(strncmp(err, cases[i].name, strlen(cases[i].name)) == 0);
    }
    /* review62 #7: a bracket only around a real IPv6 literal, then nothing or a port */
    clear_env();
    static const char *const bad_origins[] = {"http://a]b",    "http://[2001:db8::g]", "http://[::1]x",
                                              "http://[::1]:",  "http://[]",            "https://[::1",
                                              "http://::1",     "http://[::1]:3000:4",  "http://a.org:080",
                                              "http://a:65536", "http://:80",           "http://a.org:",
                                              "http://127.1",   "http://0x7f.0.0.1",    "http://2130706433",
                                              "http://127.0.0.1.", "http://127.000.0.1", "http://1.2.3.4.5",
                                              "http://256.1.1.1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_origins); i++) {
        setenv("CORS_ALLOWED_ORIGINS", bad_origins[i], 1);
        err[0] = '\0';
        if (config_load(NULL, &cfg, err, sizeof(err)) != -EINVAL ||
            !strstr(err, "CORS_ALLOWED_ORIGINS: expected '*' or a comma"))
            fail_msg("'%s' accepted: %s", bad_origins[i], err);
    }
}

static void test_cross_checks(void **state)
{
    (void)state;
    config_t *cfg = NULL;
    char err[2048] = "";
    setenv("TLS_ENABLED", "true", 1);
    setenv("SIEM_INTEGRATION_ENABLED", "true", 1);
    setenv("PROMETHEUS_PORT", "8080", 1);
    /* without a trail SIEM has no effect (warned about by config check and serve): SYSLOG_SERVER
     * is not required (review67 #2) */
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_int_equal(count_lines(err), 3);
    assert_null(strstr(err, "SYSLOG_SERVER"));
    setenv("AUDIT_LOG_PATH", "/var/log/aimedres/audit.log", 1);
    err[0] = '\0';
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_int_equal(count_lines(err), 4);
    assert_non_null(strstr(err, "TLS_CERT_PATH: required when TLS_ENABLED=true"));
    assert_non_null(strstr(err, "TLS_KEY_PATH: required when TLS_ENABLED=true"));
    assert_non_null(strstr(err, "SYSLOG_SERVER: required when SIEM_INTEGRATION_ENABLED=true"));
    assert_non_null(strstr(err, "PROMETHEUS_PORT: must differ from PORT"));
}

static void set_good_production(void)
{
    setenv("ENVIRONMENT", "production", 1);
    setenv("SECRET_KEY", SECRET_A, 1);
    setenv("JWT_SECRET_KEY", SECRET_B, 1);
    setenv("API_KEY_SALT", SECRET_C, 1);
    setenv("AUDIT_LOG_PATH", "/var/log/aimedres/audit.log", 1);
}

static void expect_refused(const char *needle)
{
    config_t *cfg = NULL;
    char err[2048] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_null(cfg);
    if (!strstr(err, needle))
        fail_msg("expected '%s' in:\n%s", needle, err);
}

static void test_production_rules(void **state)
{
    (void)state;
    config_t *cfg = NULL;
    char err[2048] = "";

    set_good_production();
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    config_free(cfg);

    setenv("DEBUG", "true", 1);
    expect_refused("DEBUG: must be false when ENVIRONMENT=production");
    unsetenv("DEBUG");

    unsetenv("SECRET_KEY");
    expect_refused("SECRET_KEY: must be set when ENVIRONMENT=production");
    setenv("SECRET_KEY", "", 1);
    expect_refused("SECRET_KEY: must be set when ENVIRONMENT=production");
    setenv("SECRET_KEY", "short-but-real", 1);
    expect_refused("SECRET_KEY: must be at least 32 characters");
    setenv("SECRET_KEY", "please-change_me-before-going-live-0123456789", 1);
    expect_refused("SECRET_KEY: is a template placeholder (contains 'CHANGE_ME')");
    set_good_production();

    setenv("JWT_SECRET_KEY", "generate_secure_jwt_key_here_aaaaaaaaaaaaaaaa", 1);
    expect_refused("JWT_SECRET_KEY: is a template placeholder (contains 'GENERATE_')");
    set_good_production();

    setenv("API_KEY_SALT", "xxxxxxxxxxxxxxxxSECURE_PASSWORDxxxxxxxxxxxxxx", 1);
    expect_refused("API_KEY_SALT: is a template placeholder");
    set_good_production();

    setenv("DATABASE_URL", "postgresql://app:Change_Me@db:5432/app", 1);
    expect_refused("DATABASE_URL: the password is a template placeholder");
    setenv("DATABASE_URL", "postgresql://db:5432/app?user=app&password=SECURE_PASSWORD", 1);
    expect_refused("DATABASE_URL: the password is a template placeholder");
    setenv("DATABASE_URL", "postgresql://app:9f8e7d6c5b4a@db:5432/app", 1);
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    config_free(cfg);
    unsetenv("DATABASE_URL");

    /* the audit trail (review58 S9) */
    unsetenv("AUDIT_LOG_PATH");
    expect_refused("AUDIT_LOG_PATH: must be set when ENVIRONMENT=production");
    set_good_production();

    /* an identity provider's keys without an audience (review58 S8) */
    setenv("JWT_PUBLIC_KEYS", "/etc/aimedres/jwt-keys", 1);
    expect_refused("JWT_AUDIENCE: must be set when ENVIRONMENT=production and JWT_PUBLIC_KEYS is set");
    setenv("JWT_AUDIENCE", "aimedres", 1);
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    config_free(cfg);
    /* with them, HS256 may be left off (review58 S4); a placeholder is still refused */
    unsetenv("JWT_SECRET_KEY");
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    config_free(cfg);
    setenv("JWT_SECRET_KEY", "GENERATE_SECURE_JWT_KEY_HERE_0123456789abcdef", 1);
    expect_refused("JWT_SECRET_KEY: is a template placeholder");
    unsetenv("JWT_PUBLIC_KEYS");
    unsetenv("JWT_AUDIENCE");
    unsetenv("JWT_SECRET_KEY");
    expect_refused("JWT_SECRET_KEY: must be set when ENVIRONMENT=production");
    set_good_production();

    /* The same weak values are accepted outside production. */
    setenv("ENVIRONMENT", "development", 1);
    setenv("SECRET_KEY", "dev", 1);
    setenv("DEBUG", "true", 1);
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    config_free(cfg);

    /* All production problems at once, one line each. */
    clear_env();
    setenv("ENVIRONMENT", "production", 1);
    setenv("DEBUG", "1", 1);
    err[0] = '\0';
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_int_equal(count_lines(err), 5); /* DEBUG, the three secrets, AUDIT_LOG_PATH */
}

static char *print_to_string(const config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_print(cfg, f);
    fclose(f);
    return buf;
}

static void test_print_redacts(void **state)
{
    (void)state;
    setenv("SECRET_KEY", SECRET_A, 1);
    setenv("API_KEY_SALT", SECRET_C, 1);
    setenv("DATABASE_URL", "postgresql://aimedres_prod:hunter2hunter2@prod-db.internal:5432/aimedres_prod",
           1);
    setenv("CORS_ALLOWED_ORIGINS", "*", 1);
    setenv("LOG_FILE", "/tmp/with space.log", 1);
    config_t *cfg = NULL;
    char err[1024] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    char *out = print_to_string(cfg);
    config_free(cfg);

    assert_null(strstr(out, SECRET_A));
    assert_null(strstr(out, SECRET_C));
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "\nSECRET_KEY=<redacted>\n"));
    assert_non_null(strstr(out, "\nAPI_KEY_SALT=<redacted>\n"));

    assert_non_null(strstr(out, "\nJWT_SECRET_KEY=<unset>\n"));
    assert_non_null(strstr(out, "\nDATABASE_URL=postgresql://aimedres_prod:<redacted>@prod-db.internal:5432/"
                                "aimedres_prod\n"));
    assert_non_null(strstr(out, "\nPORT=8080\n"));
    assert_non_null(strstr(out, "\nREAD_TIMEOUT=30s\n"));
    assert_non_null(strstr(out, "\nMODEL_POLL_INTERVAL=1s\n"));
    assert_non_null(strstr(out, "\nLOG_FILE=\"/tmp/with space.log\"\n"));
    assert_non_null(strstr(out, "\nTLS_CERT_PATH=\n"));

    /* Sorted by key, one line per setting. */
    int lines = 0;
    char prev[64] = "";
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)strcspn(line, "="), line);
        assert_true(strcmp(prev, key) < 0);
        snprintf(prev, sizeof(prev), "%s", key);
        lines++;
    }
    size_t n_settings = 0;
    while (config_setting_name(n_settings))
        n_settings++;
    assert_int_equal(lines, (int)n_settings);
    assert_true(n_settings >= ARRAY_SIZE(all_vars));
    free(out);
}

/* The printed configuration (without secrets) reads back to the same configuration. */
static void test_print_round_trip(void **state)
{
    (void)state;
    setenv("ENVIRONMENT", "staging", 1);
    setenv("MAX_BODY_BYTES", "3000", 1);
    setenv("SHUTDOWN_DRAIN_TIMEOUT", "90s", 1);
    setenv("MODEL_POLL_INTERVAL", "1500ms", 1);
    setenv("BACKUP_ENCRYPTION_KEY_ID", "key #1 \"quoted\"", 1);
    config_t *cfg = NULL;
    char err[1024] = "";
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    char *first = print_to_string(cfg);
    config_free(cfg);

    /* Secrets print as <unset>/<redacted>, which are not values: leave them out. */
    char *plain = calloc(1, strlen(first) + 1);
    assert_non_null(plain);
    for (const char *line = first; *line;) {
        size_t n = strcspn(line, "\n") + 1;
        if (!strstr(line, "=<unset>\n") || strstr(line, "=<unset>\n") > line + n)
            strncat(plain, line, n);
        line += n;
    }
    assert_null(strstr(plain, "SECRET_KEY"));
    const char *path = write_env("printed.env", plain);
    free(plain);
    clear_env();
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->backup_encryption_key_id, "key #1 \"quoted\"");
    char *second = print_to_string(cfg);
    config_free(cfg);
    assert_string_equal(first, second);
    free(first);
    free(second);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_env_syntax, before_each),
        cmocka_unit_test_setup(test_env_bad_lines, before_each),
        cmocka_unit_test_setup(test_env_file_limits, before_each),
        cmocka_unit_test_setup(test_defaults, before_each),
        cmocka_unit_test_setup(test_guide_file, before_each),
        cmocka_unit_test_setup(test_env_overrides_file, before_each),
        cmocka_unit_test_setup(test_value_forms, before_each),
        cmocka_unit_test_setup(test_every_error_reported, before_each),
        cmocka_unit_test_setup(test_cross_checks, before_each),
        cmocka_unit_test_setup(test_production_rules, before_each),
        cmocka_unit_test_setup(test_print_redacts, before_each),
        cmocka_unit_test_setup(test_print_round_trip, before_each),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
