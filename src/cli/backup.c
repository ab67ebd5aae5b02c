/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres backup [full|incremental] | verify | list | prune | check | keygen`,
 * `aimedres restore` and `aimedres dr-drill`: flag parsing, confirmation and output only;
 * the work is in src/backup/. On a terminal: progress on stderr and readable lines; else
 * (or with --json) one JSON document on stdout.
 *
 * Exit status, the same for every command here (EXIT_HELP below, docs/backup.md):
 *   0  success
 *   1  the operation ran and failed: a damaged backup, a failed check or drill, a restore
 *      refused on a mismatch or a held lock, a configuration or environment problem (no key,
 *      unmounted repository)
 *   2  usage: a bad argument, or something named on the command line that does not exist
 *      (an unknown backup id, no `latest` in an empty repository, a missing --env-file),
 *      or restore without --yes and without a terminal to ask on. Nothing was done. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "backup/backup.h"
#include "backup/check.h"
#include "backup/drill.h"
#include "backup/events.h"
#include "backup/keys.h"
#include "backup/pool.h"
#include "backup/progress.h"
#include "backup/repo.h"
#include "backup/restore.h"
#include "backup/retention.h"
#include "backup/settings.h"
#include "common/httpc.h"
#include "backup/interrupt.h"
#include "backup/verify.h"
#include "cli/cli.h"
#include "security/apikey.h"
#include "common/log.h"
#include "common/util.h"

#define EXIT_HELP                                                                                            \
    "\nExit status: 0 success; 1 the operation ran and failed (damaged backup, failed check or drill,\n"     \
    "restore refused, no key, repository missing); 2 usage error or a named thing that does not exist\n"     \
    "(unknown backup id, no latest backup, missing --env-file, restore without --yes off a terminal).\n"

/* What the invocation owes stdout when it fails. When stdout is not a terminal (cron, systemd,
 * a script) or with --json, every failure, the early ones included (a missing key file, bad
 * settings, an unknown id), ends with exactly one JSON document on stdout: the command's own
 * report when it printed one (with "ok": false and "error"), else {"ok": false, "error": ...}
 * with what was said on stderr. dr-drill --report FILE gets that failure report too, so an
 * old success is never left there. */
static struct {
    bool json;          /* a JSON document is owed on stdout */
    bool printed;       /* one was printed */
    char error[2048];   /* the errors said on stderr, "; "-separated */
    const char *report; /* dr-drill --report FILE, NULL when none */
    bool report_written;
} g_out;

/* The message kept for the failure document (appended to what is there). */
static void note(const char *msg)
{
    size_t n = strlen(g_out.error);
    if (n + 3 < sizeof(g_out.error))
        snprintf(g_out.error + n, sizeof(g_out.error) - n, "%s%s", n ? "; " : "", msg);
}

/* "aimedres: <message>" on stderr, and the message kept for the failure document. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "aimedres: %s\n", msg);
    note(msg);
}

/* getopt has already said on stderr what is wrong with an option; the failure document
 * names it too. Exit status 2. */
static int bad_option(char **argv, void (*usage)(FILE *))
{
    char msg[512], opt[3] = {'-', (char)optopt, '\0'};
    /* getopt names a short option in optopt: inside a cluster ("-qz") argv[optind - 1] is not
     * the argument that holds it. An unknown long option has optopt 0; a long option without
     * its value has its own name in argv[optind - 1]. */
    const char *arg = argv[optind - 1];
    if (optopt > ' ' && optopt < 127 && strncmp(arg, "--", 2) != 0)
        arg = opt;
    snprintf(msg, sizeof(msg), "invalid option, or an option without its value: %s (see --help)", arg);
    note(msg);
    usage(stderr);
    return 2;
}

static void say_report(const char *msg, void *arg)
{
    (void)arg;
    say("%s", msg);
}

static void out_begin(const char *report)
{
    memset(&g_out, 0, sizeof(g_out));
    g_out.json = !isatty(STDOUT_FILENO);
    g_out.report = report;
}

static json_t *failure_doc(int rc)
{
    char iso[ISO8601_LEN];
    util_iso8601(util_now_ms(), iso);
    const char *why = g_out.error[0] ? g_out.error
                      : rc == 2      ? "usage error (see --help)"
                                     : "failed (see the messages on stderr)";
    return json_pack("{s:b,s:s,s:s}", "ok", 0, "error", why, "timestamp", iso);
}

/* The end of every command: rc unchanged, the failure document printed (and written to
 * --report) when the command did not produce its own. */
static int out_end(int rc)
{
    bool to_report = g_out.report && !g_out.report_written, to_stdout = g_out.json && !g_out.printed;
    if (rc == 0 || (!to_report && !to_stdout))
        return rc;
    json_t *doc = failure_doc(rc);
    char *text = json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    if (to_report) {
        int r = text ? util_write_file_atomic(g_out.report, text, strlen(text), 0640) : -ENOMEM;
        if (r < 0)
            fprintf(stderr, "aimedres: cannot write the failure report %s: %s\n", g_out.report, strerror(-r));
    }
    if (to_stdout) {
        if (text)
            puts(text);
        fflush(stdout);
    }
    free(text);
    return rc;
}

/* Shared state of one invocation. */
typedef struct ctx {
    config_t *cfg;
    backup_settings_t s;
    backup_key_t key;
    bool have_key;
    bool json; /* JSON on stdout instead of lines */
} ctx_t;

static void backup_usage(FILE *out)
{
    fprintf(out,
            "usage: aimedres backup [full|incremental] [--dest DIR] [--env-file FILE] [--json]\n"
            "       aimedres backup verify [ID|latest|--all] [--dest DIR] [--json]\n"
            "       aimedres backup list [--dest DIR] [--json]\n"
            "       aimedres backup prune [--dry-run] [--dest DIR] [--json]\n"
            "       aimedres backup check [--dest DIR]\n"
            "       aimedres backup keygen FILE\n\n"
            "Backs up the database (online snapshot), models and baselines, the env file given with\n"
            "--env-file, results and audit files into BACKUP_PATH/<UTC time>/, compressed (zstd) and\n"
            "encrypted (AES-256-GCM, key from BACKUP_ENCRYPTION_KEY_FILE or BACKUP_KEY_COMMAND), verified,\n"
            "then moves BACKUP_PATH/latest and copies it to BACKUP_OFFSITE_DIR. The default type is\n"
            "incremental: files unchanged since the latest backup are referenced, not stored again.\n"
            "  verify   decrypt and check every file of a backup (default latest) or of all backups\n"
            "  list     the backups, newest last\n"
            "  prune    apply BACKUP_RETENTION_DAYS / BACKUP_KEEP_MIN / AUDIT_LOG_RETENTION_DAYS\n"
            "  check    latest age, integrity, offsite copy, free disk: JSON report, exit 0/1\n"
            "  keygen   write a new random key (hex, mode 0600) to FILE\n"
            "  --all            verify: every backup in the repository\n"
            "  --dry-run        prune: list what would be removed, remove nothing\n"
            "  --dest DIR       use DIR instead of BACKUP_PATH\n"
            "  --env-file FILE  read settings from FILE (the environment overrides it); backup also\n"
            "                   stores FILE itself (encrypted) as the configuration component\n"
            "  --json           print JSON even on a terminal\n" EXIT_HELP "See docs/backup.md.\n");
}

static void restore_usage(FILE *out)
{
    fprintf(
        out,
        "usage: aimedres restore ID|latest [--target DIR] [--components LIST] [--yes] [--from DIR]\n"
        "                        [--env-file FILE] [--config-dest FILE] [--full-db-check] [--json]\n\n"
        "Verifies the backup, then restores it. Without --target the configured paths are replaced\n"
        "(what was there is renamed to *.pre-restore-<id>); refuses while a server holds the data.\n"
        "  --target DIR       restore into DIR (DIR/<db file>, models/, data/, audit/, config/)\n"
        "  --components LIST  comma list of db,models,config,results,audit (default: all)\n"
        "  --yes              do not ask for confirmation (required without a terminal)\n"
        "  --from DIR         read backups from DIR (e.g. BACKUP_OFFSITE_DIR) instead of BACKUP_PATH\n"
        "  --env-file FILE    read settings from FILE\n"
        "  --config-dest FILE in place: where the backed-up env file goes (default: where it came from)\n"
        "  --full-db-check    run PRAGMA integrity_check on the restored database again; by default the\n"
        "                     backup's own check of the snapshot counts, as the restored file is proven\n"
        "                     identical to it by sha256 (backups without that record are checked anyway)\n"
        "  --json             print JSON even on a terminal\n" EXIT_HELP);
}

static void drill_usage(FILE *out)
{
    fprintf(
        out,
        "usage: aimedres dr-drill [--report FILE] [--url URL [--api-key-file FILE]] [--env-file FILE]\n"
        "                         [--use-latest] [--full] [--work-dir DIR] [--keep] [--timeout SECONDS]\n\n"
        "Disaster-recovery drill: backup, restore into a temporary directory, start a server on it on a\n"
        "free loopback port, check health, models, predictions and record counts against production,\n"
        "stop it, clean up. Prints (and with --report writes) a JSON report with the measured RTO and\n"
        "RPO next to the targets (4h, 6h).\n"
        "  --url URL      production server (http[s]://host:port, or PROD_URL) to compare predictions with;\n"
        "                 default: score the production model files in this process\n"
        "  --api-key-file FILE  an API key (role clinician or admin) sent to --url when production\n"
        "                 has AUTH_ENABLED (default: AIMEDRES_API_KEY, as for deploy and verify); the\n"
        "                 drill's own server is checked with a temporary key of its own, minted in\n"
        "                 the restored copy of the store\n"
        "  --report FILE  also write the JSON report to FILE\n"
        "  --env-file FILE  read settings from FILE (the environment overrides it); the backup\n"
        "                 stores it as the configuration component\n"
        "  --use-latest   drill on the latest backup instead of taking a new one\n"
        "  --full         take a full backup (default incremental)\n"
        "  --work-dir DIR  where the temporary restore target is made (default $TMPDIR or /tmp);\n"
        "                 it needs room for a full restore of the backup\n"
        "  --keep         keep the temporary directory for inspection\n"
        "  --timeout SECONDS  how long the drill's server may take to become ready (1..86400,\n"
        "                 default 120); a schema upgrade of a large store needs more\n" EXIT_HELP
        "The drill exits 1 when any step failed or a target was missed (the report says which).\n");
}

/* 2 (usage) with a message when --env-file names a file that does not exist; else 0. */
static int env_file_status(const char *env_file)
{
    if (!env_file || access(env_file, F_OK) == 0 || errno != ENOENT)
        return 0;
    say("--env-file %s: no such file", env_file);
    return 2;
}

/* Exit status when a backup named on the command line could not be resolved
 * (backup_repo_resolve): unknown or malformed is a usage error, a damaged one a failure. */
static int resolve_status(int r)
{
    return r == -ENOENT || r == -EINVAL ? 2 : 1;
}

static int load(ctx_t *c, const char *env_file, const char *dest, bool need_key)
{
    memset(c, 0, sizeof(*c));
    c->json = !isatty(STDOUT_FILENO);
    c->cfg = cli_load_config_reporting(env_file, say_report, NULL);
    if (!c->cfg)
        return -EINVAL;
    char err[1024] = "";
    if (backup_settings_from_config(c->cfg, &c->s, err, sizeof(err)) < 0) {
        say("%s", err);
        return -EINVAL;
    }
    if (dest)
        c->s.backup_path = dest;
    if (need_key) {
        if (backup_key_load(&c->s, &c->key, err, sizeof(err)) < 0) {
            say("backup key: %s", err);
            return -ENOKEY;
        }
        c->have_key = true;
    }
    return 0;
}

/* Commands that append BACKUP/RESTORE audit records check, before any work, that the audit
 * log could be written (keys), instead of finding out after the backup is published. */
static int audit_ready(const ctx_t *c)
{
    char err[1024] = "";
    if (audit_settings_check(c->cfg, err, sizeof(err)) == 0)
        return 0;
    say("the audit log can not be written, so nothing was started: %s", err);
    return -EINVAL;
}

static void unload(ctx_t *c)
{
    backup_key_wipe(&c->key);
    config_free(c->cfg);
}

/* "name: message; ..." of the failing entries of a check report's "checks" object. */
static void failed_checks(const json_t *checks, char *buf, size_t len)
{
    const char *k;
    json_t *v;
    buf[0] = '\0';
    json_object_foreach((json_t *)checks, k, v)
    {
        size_t n = strlen(buf);
        const char *msg = json_string_value(json_object_get(v, "message"));
        if (json_is_false(json_object_get(v, "ok")) && n + 3 < len)
            snprintf(buf + n, len - n, "%s%s: %s", n ? "; " : "", k, msg ? msg : "failed");
    }
}

/* A failing document gets "error" when it has none: its failed checks, else what was said on
 * stderr. */
static void print_json(json_t *j)
{
    if (json_is_false(json_object_get(j, "ok")) && !json_object_get(j, "error")) {
        char why[2048];
        failed_checks(json_object_get(j, "checks"), why, sizeof(why));
        json_object_set_new(j, "error",
                            json_string(why[0]           ? why
                                        : g_out.error[0] ? g_out.error
                                                         : "failed (see the report's details)"));
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s) {
        puts(s);
        free(s);
        g_out.printed = true;
    }
    fflush(stdout);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void print_notes(const json_t *notes)
{
    size_t i;
    json_t *n;
    json_array_foreach(notes, i, n) printf("  note: %s\n", json_string_value(n));
}

static void print_bad(const json_t *bad)
{
    size_t i;
    json_t *b;
    json_array_foreach(bad, i, b) printf("  BAD %s (%s/%s): %s\n", jstr(b, "path"), jstr(b, "holder"),
                                         jstr(b, "stored"), jstr(b, "error"));
}

/* ------------------------------------------------------------------ backup */

static int do_create(ctx_t *c, backup_type_t type, const char *env_file)
{
    backup_create_opts_t o = {.type = type,
                              .env_file = env_file,
                              .progress = backup_progress_tty(),
                              .hold_signals_after_publish = true};
    json_t *sum = NULL;
    char err[2048] = "";
    /* SIGTERM (a pod deleted, a node drained, systemd stop), SIGINT, SIGHUP: the plaintext
     * snapshot and the unfinished backup directory go before the process ends (it would
     * otherwise wait, as pid 1 in a container, for the SIGKILL) */
    backup_interrupt_arm();
    int r = backup_create(&c->s, &c->key, &o, &sum, err, sizeof(err));
    /* BACKUP audit record, after the backup read the audit files (backup/events.h) */
    char aerr[1024] = "";
    int ar = backup_event_backup(&c->s, sum, r, false, aerr, sizeof(aerr));
    if (ar < 0) {
        json_object_set_new(sum, "audit_error", json_string(aerr));
        json_object_set_new(sum, "ok", json_false());
        if (!json_object_get(sum, "error"))
            json_object_set_new(sum, "error", json_string(aerr));
    }
    if (c->json) {
        print_json(sum);
    } else if (r == 0 || r == -EREMOTEIO) {
        char tb[24], sb[24], db[24];
        backup_format_bytes((uint64_t)json_integer_value(json_object_get(sum, "total_bytes")), tb,
                            sizeof(tb));
        backup_format_bytes((uint64_t)json_integer_value(json_object_get(sum, "stored_bytes")), sb,
                            sizeof(sb));
        backup_format_duration((int64_t)(json_number_value(json_object_get(sum, "seconds")) * 1000), db,
                               sizeof(db));
        printf("%s backup %s complete and verified: %lld files (%lld stored, %lld unchanged), %s, %s stored, "
               "in %s\n",
               jstr(sum, "type"), jstr(sum, "id"),
               (long long)json_integer_value(json_object_get(sum, "files")),
               (long long)json_integer_value(json_object_get(sum, "stored_files")),
               (long long)json_integer_value(json_object_get(sum, "referenced_files")), tb, sb, db);
        if (json_object_get(sum, "parent") && !json_is_null(json_object_get(sum, "parent")))
            printf("  parent: %s\n", jstr(sum, "parent"));
        json_t *off = json_object_get(sum, "offsite");
        if (json_is_true(json_object_get(off, "ok")))
            printf("  offsite copy verified in %s\n", jstr(off, "dir"));
        print_notes(json_object_get(sum, "notes"));
    }
    if (r < 0)
        say("backup failed: %s", err);
    if (ar < 0)
        say("%s", aerr);
    json_decref(sum);
    fflush(stdout);
    backup_interrupt_resume(); /* a signal after the publishing ends the process only now: 128+sig */
    return r == 0 && ar == 0 ? 0 : 1;
}

static int do_verify(ctx_t *c, const char *spec, bool all)
{
    json_t *out = json_pack("{s:b,s:[]}", "ok", 1, "backups");
    json_t *list = json_object_get(out, "backups");
    char **ids = NULL, err[1024] = "";
    size_t n = 0;
    int rc = 0;
    int lock = backup_repo_lock(c->s.backup_path, BACKUP_LOCK_READ_SHARED, false, 2000, err, sizeof(err));
    if (lock < 0) {
        say("%s", err);
        json_decref(out);
        return 1;
    }
    if (err[0]) { /* a read-only repository (WORM volume): read without the lock */
        fprintf(stderr, "aimedres: note: %s\n", err);
        json_object_set_new(out, "notes", json_pack("[s]", err));
    }
    if (all) {
        backup_repo_list(c->s.backup_path, &ids, &n);
        if (n == 0)
            say("no backups in %s", c->s.backup_path);
    } else {
        char id[BACKUP_ID_MAX];
        int r = backup_repo_resolve(c->s.backup_path, spec, id, err, sizeof(err));
        if (r < 0) {
            say("%s", err);
            backup_repo_unlock(lock);
            json_decref(out);
            return resolve_status(r);
        }
        ids = calloc(1, sizeof(*ids));
        ids[0] = strdup(id);
        n = 1;
    }
    json_t *cache = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *rep = NULL;
        int r = backup_verify_one(c->s.backup_path, ids[i], &c->key, backup_thread_count(c->s.threads),
                                  backup_progress_tty(), cache, &rep);
        if (r < 0) {
            rc = 1;
            json_object_set_new(out, "ok", json_false());
        }
        if (!c->json) {
            if (r == 0)
                printf("%s: ok (%lld files)\n", ids[i],
                       (long long)json_integer_value(json_object_get(rep, "files")));
            else if (json_object_get(rep, "error"))
                printf("%s: FAILED: %s\n", ids[i], jstr(rep, "error"));
            else
                printf("%s: FAILED: %zu bad file(s)\n", ids[i], json_array_size(json_object_get(rep, "bad")));
            print_bad(json_object_get(rep, "bad"));
        }
        json_array_append_new(list, rep);
    }
    if (n == 0) {
        rc = 1;
        json_object_set_new(out, "ok", json_false());
        json_object_set_new(out, "error", json_sprintf("no backups in %s", c->s.backup_path));
    } else if (rc) {
        size_t failed = 0, i;
        json_t *b;
        json_array_foreach(list, i, b) failed += !json_is_true(json_object_get(b, "ok"));
        json_object_set_new(out, "error",
                            json_sprintf("%zu of %zu backup(s) failed verification", failed, n));
    }
    json_decref(cache);
    backup_repo_unlock(lock);
    if (c->json)
        print_json(out);
    json_decref(out);
    backup_repo_ids_free(ids, n);
    return rc;
}

static int do_list(ctx_t *c)
{
    char **ids = NULL, latest[BACKUP_ID_MAX] = "";
    size_t n = 0;
    char rerr[1024];
    if (backup_repo_require(c->s.backup_path, rerr, sizeof(rerr)) < 0) {
        say("%s", rerr); /* "no backups" would hide a typo or an unmounted volume */
        return 1;
    }
    if (backup_repo_list(c->s.backup_path, &ids, &n) < 0) {
        say("cannot list %s", c->s.backup_path);
        return 1;
    }
    backup_repo_latest(c->s.backup_path, latest);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char dir[4096], err[1024] = "";
        backup_repo_path(c->s.backup_path, ids[i], NULL, dir, sizeof(dir));
        backup_manifest_t *m = NULL;
        const char *auth = "unverified (no key)";
        int r = backup_manifest_load(dir, c->have_key ? &c->key : NULL, &m, err, sizeof(err));
        if (r < 0 && c->have_key) {
            auth = r == -EKEYREJECTED ? "other key" : "FAILS authentication";
            backup_manifest_load(dir, NULL, &m, err, sizeof(err));
        } else if (c->have_key) {
            auth = "ok";
        }
        json_t *e =
            json_pack("{s:s,s:b,s:s}", "id", ids[i], "latest", strcmp(ids[i], latest) == 0, "manifest", auth);
        if (m) {
            char ts[ISO8601_LEN];
            util_iso8601(m->timestamp_ms, ts);
            json_object_set_new(e, "type", json_string(m->type));
            json_object_set_new(e, "timestamp", json_string(ts));
            json_object_set_new(e, "parent", m->parent[0] ? json_string(m->parent) : json_null());
            json_object_set_new(e, "files", json_integer((json_int_t)m->n_files));
            json_object_set_new(e, "total_bytes", json_integer((json_int_t)m->total_size));
            json_object_set_new(e, "stored_bytes", json_integer((json_int_t)m->stored_here));
            json_object_set_new(e, "key_fingerprint", json_string(m->key_fingerprint));
            json_object_set_new(e, "components", json_deep_copy(m->components));
            backup_manifest_free(m);
        }
        json_array_append_new(arr, e);
    }
    if (c->json) {
        json_t *out = json_pack("{s:s,s:o}", "backup_path", c->s.backup_path, "backups", arr);
        print_json(out);
        json_decref(out);
    } else {
        if (n == 0)
            printf("no backups in %s\n", c->s.backup_path);
        else
            printf("%-20s %-12s %-24s %8s %10s %10s  %s\n", "ID", "TYPE", "TIME", "FILES", "SIZE", "STORED",
                   "MANIFEST");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e)
        {
            char tb[24], sb[24];
            backup_format_bytes((uint64_t)json_integer_value(json_object_get(e, "total_bytes")), tb,
                                sizeof(tb));
            backup_format_bytes((uint64_t)json_integer_value(json_object_get(e, "stored_bytes")), sb,
                                sizeof(sb));
            printf("%-20s %-12s %-24s %8lld %10s %10s  %s%s\n", jstr(e, "id"), jstr(e, "type"),
                   jstr(e, "timestamp"), (long long)json_integer_value(json_object_get(e, "files")), tb, sb,
                   jstr(e, "manifest"), json_is_true(json_object_get(e, "latest")) ? "  <- latest" : "");
        }
        json_decref(arr);
    }
    backup_repo_ids_free(ids, n);
    return 0;
}

static int do_prune(ctx_t *c, bool dry_run)
{
    backup_prune_opts_t o = {.dry_run = dry_run};
    json_t *out = json_pack("{s:b,s:[]}", "ok", 1, "repositories");
    const char *repos[2] = {c->s.backup_path, c->s.offsite_dir};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (!repos[i])
            continue;
        json_t *rep = NULL;
        char err[1024] = "";
        /* BACKUP_OFFSITE_DIR is never created by `backup`: its own message, not BACKUP_PATH's */
        int r = i == 1 ? backup_repo_require_offsite(repos[i], err, sizeof(err)) : 0;
        if (r < 0)
            rep = json_pack("{s:s,s:b,s:s}", "repository", repos[i], "ok", 0, "error", err);
        else
            r = backup_prune(repos[i], &c->s, &c->key, &o, &rep, err, sizeof(err));
        if (r < 0) {
            rc = 1;
            json_object_set_new(out, "ok", json_false());
            say("prune %s: %s", repos[i], err);
        }
        if (!c->json) {
            char fb[24];
            backup_format_bytes((uint64_t)json_integer_value(json_object_get(rep, "freed_bytes")), fb,
                                sizeof(fb));
            printf("%s%s: kept %zu, reduced to audit files %zu, deleted %zu, freed %s\n",
                   dry_run ? "(dry run) " : "", repos[i], json_array_size(json_object_get(rep, "kept")),
                   json_array_size(json_object_get(rep, "reduced")),
                   json_array_size(json_object_get(rep, "deleted")), fb);
            size_t k;
            json_t *v;
            json_array_foreach(json_object_get(rep, "deleted"), k, v)
                printf("  deleted %s\n", json_string_value(v));
            json_array_foreach(json_object_get(rep, "reduced"), k, v)
                printf("  reduced %s\n", json_string_value(v));
            json_array_foreach(json_object_get(rep, "untouched"), k, v)
                printf("  left alone %s: %s\n", jstr(v, "id"), jstr(v, "error"));
            json_array_foreach(json_object_get(rep, "failed"), k, v)
                printf("  failed %s: %s\n", jstr(v, "id"), jstr(v, "error"));
        }
        json_array_append_new(json_object_get(out, "repositories"), rep);
    }
    if (c->json)
        print_json(out);
    json_decref(out);
    return rc;
}

static int do_check(ctx_t *c, const char *env_file, const char *dest)
{
    /* check reports a missing key as a failed check instead of stopping */
    char err[1024] = "";
    memset(c, 0, sizeof(*c));
    if (env_file_status(env_file))
        return 2;
    /* a monitor parses the report: a setting that cannot be used is a failed check in it too */
    char cerr[4096] = "";
    int cr = config_load(env_file, &c->cfg, cerr, sizeof(cerr));
    if (cr == 0 && log_init(c->cfg->log_level, c->cfg->log_file) < 0) {
        snprintf(cerr, sizeof(cerr), "cannot open LOG_FILE %s", c->cfg->log_file);
        cr = -EINVAL;
    }
    if (cr == 0 && backup_settings_from_config(c->cfg, &c->s, cerr, sizeof(cerr)) < 0)
        cr = -EINVAL;
    if (cr < 0) {
        for (char *line = cerr, *nl; *line; line = nl ? nl + 1 : line + strlen(line)) {
            nl = strchr(line, '\n');
            say("config: %.*s", nl ? (int)(nl - line) : (int)strlen(line), line);
        }
        char iso[ISO8601_LEN];
        util_iso8601(util_now_ms(), iso);
        json_t *rep = json_pack("{s:b,s:s,s:n,s:{s:{s:b,s:s}}}", "ok", 0, "timestamp", iso, "latest",
                                "checks", "configuration", "ok", 0, "message", cerr);
        print_json(rep);
        json_decref(rep);
        return 1;
    }
    if (dest)
        c->s.backup_path = dest;
    c->have_key = backup_key_load(&c->s, &c->key, err, sizeof(err)) == 0;
    json_t *rep = NULL;
    bool ok = backup_check(&c->s, c->have_key ? &c->key : NULL, err, &rep);
    print_json(rep);
    json_decref(rep);
    return ok ? 0 : 1;
}

static int backup_main(int argc, char **argv)
{
    const char *env_file = NULL, *dest = NULL;
    bool json = false, all = false, dry_run = false;
    static const struct option opts[] = {
        {"env-file", required_argument, NULL, 'e'},
        {"dest", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"all", no_argument, NULL, 'a'},
        {"dry-run", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "e:d:jh", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': env_file = optarg; break;
        case 'd': dest = optarg; break;
        case 'j': json = g_out.json = true; break;
        case 'a': all = true; break;
        case 'n': dry_run = true; break;
        case 'h': backup_usage(stdout); return 0;
        default: return bad_option(argv, backup_usage);
        }
    }
    /* --dest is BACKUP_PATH for this run: relative is refused the same way */
    char derr[1024];
    if (dest && backup_settings_check_absolute("--dest", dest, derr, sizeof(derr)) < 0) {
        say("%s", derr);
        return 2;
    }
    /* GNU getopt moved the positionals (subcommand, argument) to the end. */
    const char *sub = optind < argc ? argv[optind++] : "incremental";
    const char *arg = optind < argc ? argv[optind++] : NULL;
    if (optind < argc) {
        say("backup: unexpected '%s'", argv[optind]);
        backup_usage(stderr);
        return 2;
    }
    if (strcmp(sub, "keygen") == 0) {
        g_out.json = false; /* says what it did in words, also to a script */
        if (!arg) {
            backup_usage(stderr);
            return 2;
        }
        char err[512];
        if (backup_key_generate(arg, err, sizeof(err)) < 0) {
            say("keygen: %s", err);
            return 1;
        }
        printf("wrote a new backup key to %s (mode 0600); set BACKUP_ENCRYPTION_KEY_FILE=%s and keep a copy "
               "somewhere safe: backups cannot be restored without it\n",
               arg, arg);
        return 0;
    }
    if (strcmp(sub, "check") == 0) {
        ctx_t c;
        int rc = do_check(&c, env_file, dest);
        unload(&c);
        return rc;
    }
    bool is_create = strcmp(sub, "full") == 0 || strcmp(sub, "incremental") == 0;
    bool known =
        is_create || strcmp(sub, "verify") == 0 || strcmp(sub, "list") == 0 || strcmp(sub, "prune") == 0;
    if (!known || (arg && strcmp(sub, "verify") != 0) || (all && strcmp(sub, "verify") != 0) ||
        (dry_run && strcmp(sub, "prune") != 0) || (all && arg)) {
        say("backup: unexpected '%s'", known ? (arg ? arg : "option") : sub);
        backup_usage(stderr);
        return 2;
    }
    if (env_file_status(env_file))
        return 2;
    ctx_t c;
    bool is_list = strcmp(sub, "list") == 0;
    int r = load(&c, env_file, dest, !is_list);
    if (r == 0 && is_create)
        r = audit_ready(&c);
    if (r < 0) {
        unload(&c);
        return 1;
    }
    if (is_list) {
        char err[512];
        c.have_key = backup_key_load(&c.s, &c.key, err, sizeof(err)) == 0;
    }
    if (json)
        c.json = true;
    int rc;
    if (is_create)
        rc = do_create(&c, strcmp(sub, "full") == 0 ? BACKUP_FULL : BACKUP_INCREMENTAL, env_file);
    else if (strcmp(sub, "verify") == 0)
        rc = do_verify(&c, arg ? arg : "latest", all);
    else if (is_list)
        rc = do_list(&c);
    else
        rc = do_prune(&c, dry_run);
    unload(&c);
    return rc;
}

int cli_backup(int argc, char **argv)
{
    out_begin(NULL);
    return out_end(backup_main(argc, argv));
}

/* ------------------------------------------------------------------ restore */

static bool confirm(const json_t *plan)
{
    fprintf(stderr, "About to restore backup %s (%s, taken %s): %lld files.\n", jstr(plan, "id"),
            jstr(plan, "type"), jstr(plan, "timestamp"),
            (long long)json_integer_value(json_object_get(plan, "files")));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(plan, "destinations"), k, v)
        fprintf(stderr, "  %-9s -> %s\n", k, json_string_value(v));
    fprintf(stderr, "Whatever is there now is renamed to *.pre-restore-%s. Type 'yes' to continue: ",
            jstr(plan, "id"));
    fflush(stderr);
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return false;
    line[strcspn(line, "\r\n")] = '\0';
    return strcmp(line, "yes") == 0;
}

static int restore_main(int argc, char **argv)
{
    const char *env_file = NULL, *target = NULL, *comps = NULL, *from = NULL, *config_dest = NULL;
    bool yes = false, json = false, full_db_check = false;
    static const struct option opts[] = {
        {"env-file", required_argument, NULL, 'e'},
        {"target", required_argument, NULL, 't'},
        {"full-db-check", no_argument, NULL, 'F'},
        {"components", required_argument, NULL, 'c'},
        {"from", required_argument, NULL, 'f'},
        {"config-dest", required_argument, NULL, 'C'},
        {"yes", no_argument, NULL, 'y'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "e:t:c:f:yjh", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': env_file = optarg; break;
        case 't': target = optarg; break;
        case 'c': comps = optarg; break;
        case 'f': from = optarg; break;
        case 'C': config_dest = optarg; break;
        case 'y': yes = true; break;
        case 'j': json = g_out.json = true; break;
        case 'F': full_db_check = true; break;
        case 'h': restore_usage(stdout); return 0;
        default: return bad_option(argv, restore_usage);
        }
    }
    if (optind != argc - 1) {
        if (optind == argc)
            say("restore: which backup? give its ID or 'latest'");
        else
            say("restore: one backup at a time (got '%s' after '%s')", argv[argc - 1], argv[optind]);
        restore_usage(stderr);
        return 2;
    }
    const char *spec = argv[optind];
    char err[2048] = "";
    unsigned mask = 0;
    if (comps && backup_components_parse(comps, &mask, err, sizeof(err)) < 0) {
        say("%s", err);
        return 2;
    }
    if (env_file_status(env_file))
        return 2;
    ctx_t c;
    if (load(&c, env_file, from, true) < 0 || audit_ready(&c) < 0) {
        unload(&c);
        return 1;
    }
    if (json)
        c.json = true;
    int rc = 1;
    char id[BACKUP_ID_MAX], dir[4096];
    backup_manifest_t *m = NULL;
    json_t *plan = NULL, *rep = NULL;
    /* a missing repository is an unmounted volume or a typo in BACKUP_PATH/--from (1), an
     * unknown id in an existing one a usage error (2) */
    if (backup_repo_require(c.s.backup_path, err, sizeof(err)) < 0) {
        say("%s", err);
        goto out;
    }
    int rr = backup_repo_resolve(c.s.backup_path, spec, id, err, sizeof(err));
    if (rr < 0) {
        say("%s", err);
        rc = resolve_status(rr);
        goto out;
    }
    backup_repo_path(c.s.backup_path, id, NULL, dir, sizeof(dir));
    backup_restore_opts_t o = {.target = target,
                               .components = mask,
                               .config_dest = config_dest,
                               .progress = backup_progress_tty(),
                               .full_db_check = full_db_check};
    int mr = backup_manifest_load(dir, &c.key, &m, err, sizeof(err));
    if (mr < 0) {
        say("refusing to restore %s: %s", id, err);
        /* a refused restore is audited too (a failure in the live log) */
        json_t *frep = json_pack("{s:s}", "error", err);
        char aerr[1024] = "";
        if (backup_event_restore(&c.s, id, frep, mr, &o, false, aerr, sizeof(aerr)) < 0)
            say("%s", aerr);
        json_decref(frep);
        goto out;
    }
    if (backup_restore_plan(&c.s, m, &o, &plan, err, sizeof(err)) < 0) {
        say("%s", err);
        goto out;
    }
    if (!yes) {
        if (!isatty(STDIN_FILENO)) {
            say("refusing to restore %s without confirmation: no terminal to ask on; pass --yes", id);
            rc = 2;
            goto out;
        }
        if (!confirm(plan)) {
            say("restore cancelled");
            goto out;
        }
    }
    backup_interrupt_arm(); /* Ctrl-C from here on removes what this restore staged */
    int r = backup_restore(&c.s, &c.key, id, &o, &rep, err, sizeof(err));
    /* RESTORE audit record(s), after the restored data is in place (backup/events.h) */
    char aerr[1024] = "";
    int ar = backup_event_restore(&c.s, id, rep, r, &o, false, aerr, sizeof(aerr));
    if (ar < 0)
        json_object_set_new(rep, "audit_error", json_string(aerr));
    if (c.json) {
        print_json(rep);
    } else if (r == 0) {
        json_t *dbc = json_object_get(json_object_get(rep, "checks"), "database");
        char took[24];
        backup_format_duration((int64_t)(json_number_value(json_object_get(rep, "seconds")) * 1000), took,
                               sizeof(took));
        printf(
            "restored %s: %lld files in %s, verified%s\n", id,
            (long long)json_integer_value(json_object_get(rep, "files")), took,
            !dbc ? ""
            : strcmp(jstr(dbc, "method"), "backup-time") == 0
                ? "; database identical (sha256) to the snapshot whose integrity_check passed at backup time"
                : "; database integrity_check ok");
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(rep, "destinations"), k, v)
            printf("  %-9s %s\n", k, json_string_value(v));
        size_t i;
        json_array_foreach(json_object_get(rep, "moved_aside"), i, v)
            printf("  previous data kept at %s\n", json_string_value(v));
    } else {
        print_bad(json_object_get(rep, "bad"));
    }
    if (r < 0)
        say("restore failed: %s", err);
    if (ar < 0)
        say("%s", aerr);
    rc = r == 0 && ar == 0 ? 0 : 1;
out:
    json_decref(plan);
    json_decref(rep);
    backup_manifest_free(m);
    unload(&c);
    return rc;
}

int cli_restore(int argc, char **argv)
{
    out_begin(NULL);
    return out_end(restore_main(argc, argv));
}

/* ------------------------------------------------------------------ dr-drill */

/* An API key from a file (surrounding whitespace ignored) into key; -1 with the reason. */
static int read_api_key(const char *path, char key[APIKEY_KEY_SIZE])
{
    char *buf = NULL, id[APIKEY_ID_SIZE], secret[APIKEY_SECRET_SIZE];
    size_t len = 0;
    int r = util_read_file(path, 4096, &buf, &len);
    if (r < 0) {
        say("dr-drill: --api-key-file %s: %s", path, strerror(-r));
        return -1;
    }
    const char *b = buf;
    size_t size = len;
    while (len && strchr(" \t\r\n", b[len - 1]))
        len--;
    while (len && strchr(" \t\r\n", *b)) {
        b++;
        len--;
    }
    r = apikey_parse(b, len, id, secret);
    if (r == 0)
        snprintf(key, APIKEY_KEY_SIZE, "%.*s", (int)len, b);
    else
        say("dr-drill: --api-key-file %s: not an API key (amr_<16 hex>_<43 base64url>)", path);
    explicit_bzero(buf, size);
    free(buf);
    explicit_bzero(secret, sizeof(secret));
    return r < 0 ? -1 : 0;
}

/* 0 when the drill's --report FILE can be written (its directory exists and is writable,
 * FILE is not a directory); else -1 with the reason on stderr. Checked before the drill runs:
 * finding out after an hour-long drill loses its report. */
static int report_writable(const char *report)
{
    char dir[4096];
    const char *slash = strrchr(report, '/');
    util_dirname(report, dir, sizeof(dir));
    struct stat st;
    const char *why = NULL;
    if (slash && !slash[1])
        why = "names a directory, not a file";
    else if (stat(dir, &st) < 0)
        why = errno == ENOENT ? "its directory does not exist" : strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        why = "its directory is not a directory";
    else if (access(dir, W_OK | X_OK) < 0)
        why = "its directory is not writable";
    else if (stat(report, &st) == 0 && S_ISDIR(st.st_mode))
        why = "names a directory, not a file";
    if (!why)
        return 0;
    say("dr-drill: --report %s: %s (%s); nothing was done", report, why, dir);
    return -1;
}

/* Says on stderr why the drill missed its target `which` ("rpo" or "rto": report fields
 * <which>_ok, <which>_s and targets.<which>_s), if it did: "<before> <measured><after>
 * (target <target>)". */
static void drill_target_missed(const json_t *rep, const char *which, const char *before, const char *after)
{
    char ok_key[16], s_key[16], got[24], want[24];
    snprintf(ok_key, sizeof(ok_key), "%s_ok", which);
    snprintf(s_key, sizeof(s_key), "%s_s", which);
    if (!json_is_false(json_object_get(rep, ok_key)))
        return;
    json_t *target = json_object_get(json_object_get(rep, "targets"), s_key);
    backup_format_duration((int64_t)(json_number_value(json_object_get(rep, s_key)) * 1000), got,
                           sizeof(got));
    util_format_duration_ms(json_integer_value(target) * 1000, want, sizeof(want));
    say("dr-drill: %s %s%s (target %s)", before, got, after, want);
}

static int drill_main(int argc, char **argv)
{
    const char *env_file = NULL, *report = NULL, *url = NULL, *work = NULL, *key_file = NULL;
    bool use_latest = false, full = false, keep = false;
    int64_t timeout = 120;
    static const struct option opts[] = {
        {"env-file", required_argument, NULL, 'e'}, {"report", required_argument, NULL, 'r'},
        {"url", required_argument, NULL, 'u'},      {"work-dir", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 'T'},  {"use-latest", no_argument, NULL, 'L'},
        {"full", no_argument, NULL, 'F'},           {"keep", no_argument, NULL, 'k'},
        {"api-key-file", required_argument, NULL, 'K'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "e:r:u:w:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': env_file = optarg; break;
        case 'r': /* at once: a later bad option's failure goes to this report too */
            report = g_out.report = optarg;
            break;
        case 'u': url = optarg; break;
        case 'w': work = optarg; break;
        case 'T':
            if (util_parse_int64(optarg, 1, 86400, &timeout) < 0) {
                say("--timeout: expected seconds 1..86400");
                return 2;
            }
            break;
        case 'L': use_latest = true; break;
        case 'F': full = true; break;
        case 'k': keep = true; break;
        case 'K': key_file = optarg; break;
        case 'h': drill_usage(stdout); return 0;
        default: return bad_option(argv, drill_usage);
        }
    }
    g_out.report = report;
    if (optind != argc || (use_latest && full)) {
        if (optind != argc)
            say("dr-drill: unexpected '%s'", argv[optind]);
        else
            say("dr-drill: --use-latest and --full exclude each other (--use-latest restores the latest "
                "backup, --full takes a new full one)");
        drill_usage(stderr);
        return 2;
    }
    if (env_file_status(env_file))
        return 2;
    ctx_t c;
    if (load(&c, env_file, NULL, true) < 0 || audit_ready(&c) < 0) {
        unload(&c);
        return 1;
    }
    if (!url)
        url = c.s.prod_url;
    if (use_latest) {
        /* --use-latest names `latest`: with none (an empty repository) that is 2, like restore;
         * a missing repository or a damaged `latest` is the drill's failure (its report says so) */
        char id[BACKUP_ID_MAX], rerr[1024];
        int rr = backup_repo_require(c.s.backup_path, rerr, sizeof(rerr)) < 0
                     ? 0
                     : backup_repo_resolve(c.s.backup_path, "latest", id, rerr, sizeof(rerr));
        if (rr == -ENOENT) {
            say("dr-drill: --use-latest: %s", rerr);
            unload(&c);
            return 2;
        }
    }
    /* arguments are checked before the drill takes a backup, not when it reaches them */
    if (report && report_writable(report) < 0) {
        g_out.report = NULL; /* it cannot take the failure report either */
        unload(&c);
        return 2;
    }
    char uerr[256], prod_key[APIKEY_KEY_SIZE] = "";
    httpc_url_t parsed;
    if (url && httpc_parse_url(url, &parsed, uerr, sizeof(uerr)) < 0) {
        say("dr-drill: --url: %s", uerr);
        unload(&c);
        return 2;
    }
    if (key_file && !url) {
        say("dr-drill: --api-key-file is the key for --url (or PROD_URL); neither is set");
        unload(&c);
        return 2;
    }
    if (key_file && read_api_key(key_file, prod_key) < 0) {
        unload(&c);
        return 2;
    }
    /* as `deploy` and `verify`: AIMEDRES_API_KEY when no file is given */
    const char *env_key = getenv("AIMEDRES_API_KEY");
    if (!key_file && url && env_key && *env_key) {
        char id[APIKEY_ID_SIZE], secret[APIKEY_SECRET_SIZE];
        if (apikey_parse(env_key, strlen(env_key), id, secret) < 0) {
            say("dr-drill: AIMEDRES_API_KEY is not an API key (amr_<16 hex>_<43 base64url>)");
            unload(&c);
            return 2;
        }
        explicit_bzero(secret, sizeof(secret));
        snprintf(prod_key, sizeof(prod_key), "%s", env_key);
    }
    /* production's https is trusted as deploy and verify trust it, from the same settings
     * (the env file and the environment: review59 #2) */
    httpc_server_t trust;
    httpc_opts_t prod_trust = {0};
    if (url && (httpc_server_settings(env_file, &trust, uerr, sizeof(uerr)) < 0 ||
                httpc_server_check_url(&trust, &parsed, uerr, sizeof(uerr)) < 0)) {
        say("dr-drill: --url: %s", uerr);
        unload(&c);
        return 2;
    }
    if (url)
        httpc_server_trust(&trust, &parsed, &prod_trust);
    backup_drill_opts_t o = {
        .prod_url = url,
        .prod_api_key = prod_key[0] ? prod_key : NULL,
        .prod_ca_file = url ? prod_trust.ca_file : NULL,
        .prod_pin_file = url ? prod_trust.pin_file : NULL,
        .env_file = env_file,
        .work_dir = work,
        .use_latest = use_latest,
        .type = full ? BACKUP_FULL : BACKUP_INCREMENTAL,
        .keep = keep,
        .ready_timeout_s = (int)timeout,
        .progress = backup_progress_tty(),
    };
    json_t *rep = NULL;
    backup_interrupt_arm(); /* Ctrl-C removes the drill's plaintext copy and stops its server */
    bool ok = backup_drill(&c.s, &c.key, &o, &rep);
    if (!ok && !json_object_get(rep, "error")) {
        /* the report says why in one line too: the failed steps, the missed targets */
        char why[2048] = "";
        size_t i;
        json_t *st;
        json_array_foreach(json_object_get(rep, "steps"), i, st) if (!json_is_true(json_object_get(st, "ok")))
        {
            size_t n = strlen(why);
            snprintf(why + n, sizeof(why) - n, "%s%s failed: %s", n ? "; " : "", jstr(st, "name"),
                     jstr(st, "error"));
        }
        const char *tg[2] = {"rpo", "rto"};
        for (int t = 0; t < 2; t++) {
            char k[16];
            snprintf(k, sizeof(k), "%s_ok", tg[t]);
            size_t n = strlen(why);
            if (json_is_false(json_object_get(rep, k)))
                snprintf(why + n, sizeof(why) - n, "%s%s target missed", n ? "; " : "", t ? "RTO" : "RPO");
        }
        json_object_set_new(rep, "error", json_string(why[0] ? why : "the drill did not complete"));
    }
    char *text = json_dumps(rep, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    int rc = ok ? 0 : 1;
    if (report && text) {
        g_out.report_written = true;
        int r = util_write_file_atomic(report, text, strlen(text), 0640);
        if (r < 0) {
            say("cannot write the report %s: %s", report, strerror(-r));
            rc = 1;
        }
    }
    if (text) {
        puts(text);
        g_out.printed = true;
    }
    if (!ok) {
        size_t i;
        json_t *st;
        json_array_foreach(json_object_get(rep, "steps"), i, st) if (!json_is_true(json_object_get(st, "ok")))
            say("dr-drill: %s failed: %s", jstr(st, "name"), jstr(st, "error"));
        drill_target_missed(rep, "rpo", "RPO target missed: the backup used was", " old");
        drill_target_missed(rep, "rto", "RTO target missed: restore and start took", "");
    }
    free(text);
    json_decref(rep);
    unload(&c);
    return rc;
}

int cli_dr_drill(int argc, char **argv)
{
    out_begin(NULL);
    return out_end(drill_main(argc, argv));
}
