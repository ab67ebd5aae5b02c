/* SPDX-License-Identifier: Apache-2.0 */
/* aimedres: one binary for serving, model management, rollouts, monitoring, audit and
 * backups. This file only dispatches to the command groups in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"serve", cli_serve, "run the HTTP server (models, predictions)"},
    {"model", cli_model, "train | import | register | list | show model versions"},
    {"config", cli_config, "check: print the effective configuration, secrets redacted"},
    {"demo", cli_demo, "generate | init: synthetic demo cohorts and the three demo models"},
    {"backup", cli_backup, "full | incremental | verify | list | prune | check: encrypted backups"},
    {"restore", cli_restore, "restore a backup (verified first)"},
    {"dr-drill", cli_dr_drill, "disaster-recovery drill: backup, restore, start, smoke, RTO/RPO report"},
    /* rollouts (issue 3) */
    {"deploy", cli_deploy, "canary | blue-green | direct | status | promote | pause | resume | rollback"},
    {"rollback", cli_rollback, "roll a model back to its previous (or a given) version"},
    {"verify", cli_verify, "post-deployment verification of a running server"},
    {"smoke", cli_smoke, "API smoke tests against a running server"},
    {"apikey", cli_apikey, "create | list | revoke API keys"}, /* security (issue 5) */
    {"audit", cli_audit, "verify | events | checkpoint | prune | keygen: the audit trail"}, /* audit (issue 5) */
};

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'aimedres <command> --help' describes each command.\n"
                 "Settings come from environment variables (see docs/configuration.md).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("aimedres %s\n", AIMEDRES_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "aimedres: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
