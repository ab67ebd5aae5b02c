/* SPDX-License-Identifier: Apache-2.0 */
/* aimedres: one binary for serving, model management, rollouts, monitoring, audit and
 * backups. This file only dispatches to the command groups in src/cli/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "common/buildinfo.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"serve", cli_serve, "run the HTTP server (models, predictions)"},
    {"model", cli_model, "train | import | register | list | show model versions"},
    {"config", cli_config, "check: print the effective configuration, secrets redacted"},
    {"demo", cli_demo, "generate | init: synthetic demo cohorts and the three demo models"},
    {"backup", cli_backup, "full | incremental | verify | list | prune | check | keygen: encrypted backups"},
    {"restore", cli_restore, "restore a backup (verified first)"},
    {"dr-drill", cli_dr_drill, "disaster-recovery drill: backup, restore, start, smoke, RTO/RPO report"},
    /* rollouts (issue 3) */
    {"deploy", cli_deploy, "canary | blue-green | direct | status | promote | pause | resume | rollback"},
    {"rollback", cli_rollback, "roll a model back to its previous (or a given) version"},
    {"verify", cli_verify, "post-deployment verification of a running server"},
    {"smoke", cli_smoke, "API smoke tests against a running server"},
    {"apikey", cli_apikey, "create | list | revoke API keys"}, /* security (issue 5) */
    /* audit (issue 5) */
    {"audit", cli_audit, "verify | events | pseudonym | checkpoint | prune | keygen: the audit trail"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'aimedres <command> --help' describes each command.\n"
                 "Settings come from environment variables (see docs/configuration.md).\n");
}

/* A core file of this process would hold patient data (feature values, patient ids in
 * request buffers) and every secret (SECRET_KEY, API and JWT keys, backup keys): none is
 * written, by the kernel or a core handler, unless AIMEDRES_ALLOW_CORE_DUMPS=1 (debugging
 * on a machine cleared for PHI). Also keeps other processes of the same user from
 * attaching to it (ptrace) or reading its memory. */
static void no_core_dumps(void)
{
    const char *allow = getenv("AIMEDRES_ALLOW_CORE_DUMPS");
    if (allow && strcmp(allow, "1") == 0)
        return;
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        perror("aimedres: cannot disable core dumps");
}

int main(int argc, char **argv)
{
    no_core_dumps();
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("aimedres %s (build %s)\n", AIMEDRES_VERSION, aimedres_build);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "aimedres: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
