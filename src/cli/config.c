/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres config check [--env-file F]`: loads the configuration exactly as `serve` would
 * and prints the effective settings with secrets redacted, so an operator can validate an
 * env file before a deployment. Exit 0 when valid, 1 on configuration errors, 2 on usage. */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/siem.h"
#include "common/httpc.h"
#include "cli/cli.h"
#include "common/config.h"
#include "common/util.h"
#include "monitor/alertmanager.h"
#include "monitor/monitor.h"
#include "rollout/config.h"
#include "security/jwt.h"
#include "security/tls.h"
#include "store/store.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres config <subcommand> [options]\n\n"
                 "subcommands:\n"
                 "  check    validate the configuration and print the effective settings\n\n"
                 "'aimedres config check --help' describes the options.\n");
}

static void usage_check(FILE *out)
{
    fprintf(out, "usage: aimedres config check [--env-file FILE]\n\n"
                 "Loads the settings as 'aimedres serve' does (defaults, then FILE, then the\n"
                 "process environment, which wins), validates them, and prints every setting as\n"
                 "KEY=value sorted by name, with secrets shown as <redacted> or <unset>.\n"
                 "Exits 0 when the configuration is valid, 1 with every problem on stderr otherwise.\n\n"
                 "options:\n"
                 "  --env-file FILE   read KEY=VALUE settings from FILE first\n"
                 "  -h, --help        show this help\n\n"
                 "Every variable is described in docs/configuration.md.\n");
}

/* A file serve appends to, creating it: it must be writable, or its directory must be.
 * With mkdirs (AUDIT_LOG_PATH: serve creates its missing directories, and lock, checkpoint
 * and state files beside it) the directory must be writable even when the file exists (the
 * nearest existing one when it does not). Checked without creating anything. Prints the
 * problem; 1 when there is one. */
static int check_appendable(const char *name, const char *file, bool mkdirs)
{
    if (!file || !*file)
        return 0;
    if (access(file, F_OK) == 0) {
        if (access(file, W_OK) != 0) {
            fprintf(stderr, "aimedres: config: %s: %s can not be written by this user: %s\n", name, file,
                    strerror(errno));
            return 1;
        }
        if (!mkdirs)
            return 0;
    }
    /* its directory (with mkdirs: the nearest one that exists) */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", file);
    char *slash;
    do {
        slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        else
            snprintf(dir, sizeof(dir), ".");
    } while (mkdirs && slash && slash != dir && access(dir, F_OK) != 0);
    if (access(dir, W_OK | X_OK) == 0)
        return 0;
    fprintf(stderr, "aimedres: config: %s: %s: the directory %s can not be written by this user: %s%s\n", name,
            file, dir, strerror(errno),
            mkdirs ? " (serve creates the lock, checkpoint and state files beside the log)" : "");
    return 1;
}

/* What `serve` refuses beyond the settings' syntax: the database URL it can open, the HOST
 * it resolves, the files it appends to, the monitor's thresholds and alert receiver URLs, the
 * TLS certificate and key it loads, the audit keys it needs, the JWT keys it loads with
 * AUTH_ENABLED, the SIEM forwarder's address and CA. Same functions as serve, nothing
 * opened for writing. Prints each problem; the number found. */
static int preflight(const config_t *cfg)
{
    int bad = 0;
    char err[1024], path[4096];
    if (cfg->database_url &&
        store_url_file_path(cfg->database_url, path, sizeof(path), err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: config: %s%s\n", strncmp(err, "DATABASE_URL", 12) ? "DATABASE_URL: " : "",
                err);
        bad++;
    }
    /* PROMETHEUS_HOST binds nothing while the metrics port is off (config_check warns) */
    bool metrics_on = cfg->prometheus_enabled && cfg->prometheus_port != 0;
    const char *hosts[2][2] = {{"HOST", cfg->host}, {"PROMETHEUS_HOST", metrics_on ? cfg->prometheus_host : NULL}};
    for (int i = 0; i < 2; i++) {
        if (!hosts[i][1] || !*hosts[i][1])
            continue;
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int gai = getaddrinfo(hosts[i][1], NULL, &hints, &res);
        if (gai != 0) {
            fprintf(stderr, "aimedres: config: %s: cannot listen on '%s': %s\n", hosts[i][0], hosts[i][1],
                    gai_strerror(gai));
            bad++;
        }
        if (res)
            freeaddrinfo(res);
    }
    bad += check_appendable("LOG_FILE", cfg->log_file, false);
    bad += check_appendable("AUDIT_LOG_PATH", cfg->audit_log_path, true);
    monitor_settings_t ms;
    if (monitor_settings_from_config(cfg, &ms, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: config: %s\n", err);
        bad++;
    }
    const struct {
        const char *name, *url;
    } urls[] = {{"ALERTMANAGER_URL", cfg->alertmanager_url}, {"ALERT_WEBHOOK_URL", cfg->alert_webhook_url}};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        char host[256], port[16], upath[1024];
        if (urls[i].url && *urls[i].url &&
            alert_http_parse_url(urls[i].url, host, sizeof(host), port, sizeof(port), upath, sizeof(upath),
                                 err, sizeof(err)) < 0) {
            fprintf(stderr, "aimedres: config: %s: %s\n", urls[i].name, err);
            bad++;
        }
    }
    if (cfg->tls_enabled) {
        SSL_CTX *ctx = NULL;
        if (tls_ctx_new(cfg->tls_cert_path, cfg->tls_key_path, cfg->tls_min_version, &ctx, err, sizeof(err)) <
            0) {
            fprintf(stderr, "aimedres: config: %s\n", err);
            bad++;
        }
        /* serve starts with it (and says so), but no client takes it (review65 #7) */
        int64_t nb, na;
        char when[ISO8601_LEN];
        tls_validity_t v = ctx ? tls_ctx_valid_at(ctx, util_now_ms() / 1000, &nb, &na) : TLS_DATES_UNKNOWN;
        if (v == TLS_NOT_YET || v == TLS_EXPIRED) {
            util_iso8601((v == TLS_NOT_YET ? nb : na) * 1000, when);
            fprintf(stderr, "aimedres: config: warning: TLS_CERT_PATH: the certificate %s %s: clients refuse it\n",
                    v == TLS_NOT_YET ? "is not valid before" : "expired at", when);
        }
        tls_ctx_free(ctx);
    }
    if (audit_settings_check(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: config: %s\n", err);
        bad++;
    }
    if (cfg->prod_url && *cfg->prod_url) {
        httpc_url_t u;
        const char *auth = strstr(cfg->prod_url, "://") ? strstr(cfg->prod_url, "://") + 3 : "";
        if (auth[strcspn(auth, "@/")] == '@') {
            fprintf(stderr, "aimedres: config: PROD_URL: credentials in the URL are not used: dr-drill "
                            "sends an API key (--api-key-file or AIMEDRES_API_KEY)\n");
            bad++;
        } else if (httpc_parse_url(cfg->prod_url, &u, err, sizeof(err)) < 0) {
            /* err quotes the URL: printed without it */
            fprintf(stderr, "aimedres: config: PROD_URL: expected http[s]://host[:port]\n");
            bad++;
        }
    }
    if (audit_siem_settings_check(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: config: %s\n", err);
        bad++;
    }
    if (cfg->auth_enabled) {
        jwt_keyset_t *ks = NULL;
        err[0] = '\0';
        if (jwt_keyset_new(cfg->jwt_secret_key, cfg->jwt_public_keys, &ks, err, sizeof(err)) < 0) {
            fprintf(stderr, "aimedres: config: %s%s\n", strstr(err, "JWT_") ? "" : "JWT_PUBLIC_KEYS: ",
                    err[0] ? err : "cannot load the JWT keys");
            bad++;
        }
        jwt_keyset_free(ks);
    }
    return bad;
}

/* config_parse_env_file callback: 1 (stop) at the first line that holds a secret, its name
 * copied into arg (64 bytes). */
static int sets_a_secret(const char *key, const char *value, void *arg)
{
    if (!config_value_is_secret(key, value))
        return 0;
    snprintf(arg, 64, "%s", key);
    return 1;
}

/* Secrets in a file every user of the machine can read: a warning (serve does not refuse
 * them), naming the file, its mode and (for an env file) the first setting that is one. */
static void warn_world_readable(const char *what, const char *path, const char *setting)
{
    struct stat st;
    if (path && stat(path, &st) == 0 && (st.st_mode & 0004))
        fprintf(stderr,
                "aimedres: config: warning: %s %s is readable by every user (mode %04o) and holds secrets%s%s%s: "
                "chmod o-rwx (e.g. 0640, group of the service user)\n",
                what, path, (unsigned)(st.st_mode & 07777), setting ? " (" : "", setting ? setting : "",
                setting ? ")" : "");
}

static int config_check(int argc, char **argv)
{
    const char *env_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage_check(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--env-file") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "aimedres: config check: --env-file needs a file name\n");
                usage_check(stderr);
                return 2;
            }
            env_file = argv[++i];
        } else if (strncmp(argv[i], "--env-file=", 11) == 0) {
            env_file = argv[i] + 11;
        } else {
            fprintf(stderr, "aimedres: config check: unknown option '%s'\n", argv[i]);
            usage_check(stderr);
            return 2;
        }
    }
    config_t *cfg = cli_load_config_logging_to_stderr(env_file);
    if (!cfg)
        return 1;
    config_print(cfg, stdout);
    int bad = preflight(cfg);
    /* an env file without secrets (e.g. `config check` output with its secret lines removed)
     * may be world-readable (review67 #7) */
    char perr[256], first[64] = "";
    if (env_file && config_parse_env_file(env_file, sets_a_secret, first, perr, sizeof(perr)) == 1)
        warn_world_readable("the env file", env_file, first);
    if (cfg->tls_enabled)
        warn_world_readable("TLS_KEY_PATH", cfg->tls_key_path, NULL);
    if (cfg->prometheus_host && *cfg->prometheus_host && (!cfg->prometheus_enabled || cfg->prometheus_port == 0))
        fprintf(stderr,
                "aimedres: config: warning: PROMETHEUS_HOST=%s has no effect: it binds the PROMETHEUS_PORT "
                "listener, which is off (PROMETHEUS_PORT=0 or PROMETHEUS_ENABLED=false)\n",
                cfg->prometheus_host);
    if (cfg->siem_integration_enabled && !cfg->audit_log_path)
        fprintf(stderr, "aimedres: config: warning: " AUDIT_SIEM_WITHOUT_TRAIL "\n");
    if (rollout_settings_fairness_off((const char *const *)cfg->rollout))
        fprintf(stderr, "aimedres: config: warning: " ROLLOUT_FAIRNESS_OFF_WARNING "\n");
    /* stderr: stdout stays the configuration alone, a valid env file (configuration.md) */
    if (!bad)
        fprintf(stderr, "configuration OK\n");
    config_free(cfg);
    return fflush(stdout) == 0 && !bad ? 0 : 1;
}

int cli_config(int argc, char **argv)
{
    static const cli_sub_t subs[] = {{"check", config_check}};
    return cli_dispatch("config", subs, ARRAY_SIZE(subs), usage, argc, argv);
}
