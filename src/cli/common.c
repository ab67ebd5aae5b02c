/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the command groups: configuration and store opening with errors
 * printed for an operator. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

static void to_stderr(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "aimedres: %s\n", msg);
}

static config_t *load_config(const char *env_file, bool open_log_file, cli_report_fn report, void *arg)
{
    char err[4096] = "", msg[4200];
    config_t *cfg = NULL;
    if (config_load(env_file, &cfg, err, sizeof(err)) < 0) {
        const char *line = err;
        while (*line) {
            const char *nl = strchr(line, '\n');
            int len = nl ? (int)(nl - line) : (int)strlen(line);
            if (len > 0) {
                snprintf(msg, sizeof(msg), "config: %.*s", len, line);
                report(msg, arg);
            }
            line += len + (nl ? 1 : 0);
        }
        if (!err[0])
            report("config: cannot be loaded", arg);
        return NULL;
    }
    if (log_init(cfg->log_level, open_log_file ? cfg->log_file : NULL) < 0) {
        snprintf(msg, sizeof(msg), "cannot open LOG_FILE %s", cfg->log_file);
        report(msg, arg);
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

config_t *cli_load_config(const char *env_file)
{
    return load_config(env_file, true, to_stderr, NULL);
}

config_t *cli_load_config_reporting(const char *env_file, cli_report_fn report, void *arg)
{
    return load_config(env_file, true, report, arg);
}

config_t *cli_load_config_logging_to_stderr(const char *env_file)
{
    return load_config(env_file, false, to_stderr, NULL);
}

store_t *cli_open_store(const config_t *cfg)
{
    char err[1024] = "";
    store_t *s = NULL;
    if (store_open(cfg->database_url, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: database: %s\n", err[0] ? err : "cannot open");
        return NULL;
    }
    return s;
}

int cli_target(const char *prog, const char *env_file, const char *url, int timeout_ms, cli_target_t *ret)
{
    char err[600];
    memset(ret, 0, sizeof(*ret));
    if (httpc_server_settings(env_file, &ret->srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres %s: --env-file: %s\n", prog, err);
        return 2;
    }
    snprintf(ret->url_text, sizeof(ret->url_text), "%s", url ? url : ret->srv.url);
    if (httpc_parse_url(ret->url_text, &ret->url, err, sizeof(err)) < 0 ||
        httpc_server_check_url(&ret->srv, &ret->url, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres %s: --url: %s\n", prog, err);
        return 2;
    }
    ret->opts.api_key = getenv("AIMEDRES_API_KEY");
    ret->opts.timeout_ms = timeout_ms;
    httpc_server_trust(&ret->srv, &ret->url, &ret->opts);
    return 0;
}

int cli_is_help(const char *arg)
{
    return arg && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0);
}

int cli_dispatch(const char *group, const cli_sub_t *subs, size_t n, void (*usage)(FILE *), int argc,
                 char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "aimedres: %s: unknown subcommand '%s'\n", group, argv[1]);
    usage(stderr);
    return 2;
}
