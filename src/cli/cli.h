/* SPDX-License-Identifier: Apache-2.0 */
/* Command groups of the aimedres binary. main.c only dispatches; each group parses its
 * own flags (every command answers --help) and calls the library modules.
 * Exit codes: 0 success, 1 failure, 2 usage error. */
#ifndef AIMEDRES_CLI_CLI_H
#define AIMEDRES_CLI_CLI_H

#include <stdio.h>

#include "common/config.h"
#include "common/httpc.h"
#include "store/store.h"

int cli_serve(int argc, char **argv);  /* cli/serve.c */
int cli_model(int argc, char **argv);  /* cli/model.c: train | import | register | list | show */
int cli_config(int argc, char **argv); /* cli/config.c: check */
int cli_demo(int argc, char **argv);   /* cli/demo.c: generate | init */
int cli_backup(int argc,
               char **argv); /* cli/backup.c: full | incremental | verify | list | prune | check | keygen */
int cli_restore(int argc, char **argv);  /* cli/backup.c */
int cli_dr_drill(int argc, char **argv); /* cli/backup.c: disaster-recovery drill */
/* rollouts (issue 3) */
int cli_deploy(int argc, char **argv);   /* cli/deploy.c: canary | blue-green | direct | status | promote ... */
int cli_rollback(int argc, char **argv); /* cli/deploy.c: roll a model back */
int cli_verify(int argc, char **argv);   /* cli/verify.c: post-deployment verification */
int cli_smoke(int argc, char **argv);    /* cli/verify.c: API smoke tests */
int cli_apikey(int argc, char **argv);   /* cli/apikey.c: create | list | revoke (security, issue 5) */
int cli_audit(int argc, char **argv);    /* cli/audit.c: verify | events | checkpoint | prune | keygen (audit) */

/* Loads the configuration (env_file may be NULL), prints every problem to stderr as
 * "aimedres: config: ..." and returns NULL on failure. Also initialises logging. */
config_t *cli_load_config(const char *env_file);
/* The same, with each problem ("config: ...", without the "aimedres: " prefix) passed to
 * report instead of printed (the backup commands also keep it for their failure document). */
typedef void (*cli_report_fn)(const char *msg, void *arg);
config_t *cli_load_config_reporting(const char *env_file, cli_report_fn report, void *arg);
/* The same, but logging goes to stderr and LOG_FILE is neither opened nor created (for
 * `config check`, which writes nothing). */
config_t *cli_load_config_logging_to_stderr(const char *env_file);
/* Opens cfg->database_url, printing the reason on failure. */
store_t *cli_open_store(const config_t *cfg);

/* The server a command talks to through its API (deploy, rollback, verify, smoke). */
typedef struct cli_target {
    httpc_server_t srv; /* its own settings (env file, then the environment) */
    char url_text[512]; /* --url, else srv.url */
    httpc_url_t url;
    httpc_opts_t opts; /* AIMEDRES_API_KEY, the https trust, timeout_ms */
} cli_target_t;
/* Fills ret from --env-file (NULL: none) and --url (NULL: the server's own HOST, PORT and
 * TLS_ENABLED). Prints what is wrong, prefixed with prog, and returns 2 (a usage error: an
 * unreadable env file, a malformed URL, an http:// URL to the server's TLS port), else 0. */
int cli_target(const char *prog, const char *env_file, const char *url, int timeout_ms, cli_target_t *ret);
/* True if arg is -h or --help. */
int cli_is_help(const char *arg);

/* A subcommand of a command group ("model train", "audit verify"...). run gets argv from
 * the subcommand's name on. */
typedef struct cli_sub {
    const char *name;
    int (*run)(int argc, char **argv);
} cli_sub_t;

/* Runs the subcommand named by argv[1] of `aimedres <group>`: usage on stdout and 0 for
 * -h/--help, usage on stderr and 2 when it is missing or unknown. */
int cli_dispatch(const char *group, const cli_sub_t *subs, size_t n, void (*usage)(FILE *), int argc,
                 char **argv);

#endif
