/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres audit`: verify the chain and checkpoints (exit 1 naming the first bad record),
 * list events, write a checkpoint now, prune archives past retention, and generate the
 * Ed25519 checkpoint keys. verify (when the chain is intact), checkpoint and prune record what
 * they did in the log; prune records the first seq it keeps before removing anything. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "security/pseudonym.h"
#include "cli/cli.h"
#include "common/log.h"
#include "common/util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: aimedres audit <verify|events|pseudonym|checkpoint|prune|keygen> [options]\n\n"
            "  verify [--from YYYY-MM-DD] [--json]  check the hash chain and the signed checkpoints;\n"
            "                                       exit 1 naming the first bad record\n"
            "  events [filters]                     print records (JSON lines) in seq order\n"
            "  pseudonym < IDS                      the pseudonym of each patient id read from stdin\n"
            "  checkpoint                           write a signed checkpoint now\n"
            "  prune [--dry-run]                    remove archives older than AUDIT_LOG_RETENTION_DAYS\n"
            "  keygen --private FILE --public FILE  create an Ed25519 key pair for checkpoints\n"
            "Every subcommand takes --env-file FILE and answers --help.\n");
}

typedef struct opts {
    const char *env_file, *from, *to, *type, *user, *patient, *priv, *pub;
    int64_t limit, after;
    bool json, dry_run, allow_empty;
} opts_t;

/* Parses the options a subcommand accepts (allowed: letters of the long options below). */
static int parse(int argc, char **argv, const char *allowed, opts_t *o, void (*help)(FILE *))
{
    static const struct option lo[] = {
        {"env-file", required_argument, NULL, 'e'}, {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},       {"type", required_argument, NULL, 'y'},
        {"user", required_argument, NULL, 'u'},     {"patient", required_argument, NULL, 'p'},
        {"limit", required_argument, NULL, 'l'},    {"after", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},           {"dry-run", no_argument, NULL, 'n'},
        {"private", required_argument, NULL, 'P'},  {"public", required_argument, NULL, 'Q'},
        {"allow-empty", no_argument, NULL, 'E'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            return 1;
        }
        if (c == '?' || (c != 'e' && !strchr(allowed, c))) {
            if (c != '?')
                fprintf(stderr, "aimedres audit %s: option not accepted here\n", argv[0]);
            help(stderr);
            return -2;
        }
        switch (c) {
        case 'e': o->env_file = optarg; break;
        case 'f': o->from = optarg; break;
        case 't': o->to = optarg; break;
        case 'y': o->type = optarg; break;
        case 'u': o->user = optarg; break;
        case 'p': o->patient = optarg; break;
        case 'j': o->json = true; break;
        case 'n': o->dry_run = true; break;
        case 'E': o->allow_empty = true; break;
        case 'P': o->priv = optarg; break;
        case 'Q': o->pub = optarg; break;
        case 'l':
            if (util_parse_int64(optarg, 1, 1000, &o->limit) < 0) {
                fprintf(stderr, "aimedres audit: --limit: expected 1..1000, got '%s'\n", optarg);
                return -2;
            }
            break;
        case 'a':
            if (util_parse_int64(optarg, 0, INT64_MAX, &o->after) < 0) {
                fprintf(stderr, "aimedres audit: --after: expected a seq, got '%s'\n", optarg);
                return -2;
            }
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aimedres audit: unexpected argument '%s'\n", argv[optind]);
        help(stderr);
        return -2;
    }
    return 0;
}

static config_t *load(const opts_t *o)
{
    config_t *cfg = cli_load_config(o->env_file);
    if (cfg && !cfg->audit_log_path) {
        fprintf(stderr, "aimedres audit: AUDIT_LOG_PATH is not set\n");
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Appends one event from this command; a failure is reported but does not change the exit
 * code of a read-only command's result. */
static int record_event(const config_t *cfg, const audit_event_t *ev)
{
    char err[1024] = "";
    audit_log_t *a = NULL;
    int rc = audit_log_open(cfg, &a, err, sizeof(err));
    if (rc == 0)
        rc = audit_log_append_sync(a, ev);
    audit_log_close(a);
    if (rc < 0)
        fprintf(stderr, "aimedres audit: cannot record the %s event: %s\n", ev->type,
                err[0] ? err : strerror(-rc));
    return rc;
}

/* The actor of CLI records: the OS account running the command (uid), never $USER, which
 * whoever runs the command can set to anything (review22). */
static const char *os_user(char *buf, size_t len)
{
    audit_os_user(buf, len);
    return buf;
}

static void verify_help(FILE *out)
{
    fprintf(out,
            "usage: aimedres audit verify [--from YYYY-MM-DD] [--json] [--allow-empty] [--env-file FILE]\n\n"
            "Checks every record (seq continuity, prev_hash links, HMAC under the key derived from\n"
            "SECRET_KEY) and every checkpoint (Ed25519 signature with AUDIT_VERIFY_KEY_PATH or\n"
            "AUDIT_SIGNING_KEY_PATH, the hash of the record it names, that the log reaches it).\n"
            "--from starts at the archive of that date (its first record anchors the chain).\n"
            "Without --from the log must start at seq 1, or where an AUDIT_PRUNE record says\n"
            "`audit prune` left it; the checkpoints file must reach the chain's last AUDIT_CHECKPOINT.\n"
            "Exit 0 when intact, 1 naming the first bad record (file, line, seq, kind), 2 usage.\n"
            "No record at AUDIT_LOG_PATH at all is exit 1 (nothing to verify: never written, deleted,\n"
            "or the path is wrong) unless --allow-empty (a new installation: the trail begins here).\n"
            "Records an AUDIT_VERIFY event when the chain is intact (a broken chain is left as found).\n");
}

static int cmd_verify(int argc, char **argv)
{
    opts_t o = {0};
    int p = parse(argc, argv, "fjE", &o, verify_help);
    if (p)
        return p > 0 ? 0 : 2;
    config_t *cfg = load(&o);
    if (!cfg)
        return 1;
    audit_verify_result_t res;
    char err[1024] = "";
    int rc = audit_verify(cfg, o.from, &res, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "aimedres audit verify: %s\n", err);
        config_free(cfg);
        return rc == -EINVAL && o.from && strstr(err, "--from") ? 2 : 1;
    }
    /* nothing there is nothing verified, and appending AUDIT_VERIFY would start a new chain
     * over the loss */
    if (!o.allow_empty && audit_verify_refuse_empty(&res, cfg->audit_log_path)) {
        fprintf(stderr, "aimedres audit verify: %s; not recorded in the trail (--allow-empty begins a new one)\n",
                res.message);
        if (o.json) {
            json_t *j = audit_verify_result_json(&res);
            char *t = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
            printf("%s\n", t ? t : "{}");
            free(t);
            json_decref(j);
        }
        config_free(cfg);
        return 1;
    }
    if (o.json) {
        json_t *j = audit_verify_result_json(&res);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else if (res.ok) {
        printf("audit log intact: %llu records (seq %llu..%llu), %llu checkpoints verified%s%s%s%s\n",
               (unsigned long long)res.records, (unsigned long long)res.first_seq,
               (unsigned long long)res.last_seq, (unsigned long long)res.checkpoints,
               res.checkpoints_signed ? "" : " (signatures NOT checked: no key)",
               res.torn_tail_ignored ? "; a torn last line (never acknowledged) was ignored" : "",
               res.torn_checkpoint_ignored ? "; a torn last checkpoint line (never acknowledged) was ignored"
                                           : "",
               res.legacy_prune_head ? "; the chain starts after archives an earlier version's prune "
                                       "removed (that start is not proven by the chain)"
                                     : "");
    } else {
        printf("audit log TAMPERED: first bad record: seq %llu, %s line %llu (%s)\n  %s\n",
               (unsigned long long)res.bad_seq, res.bad_file, (unsigned long long)res.bad_line, res.bad_kind,
               res.message);
    }
    if (res.ok) {
        char user[256];
        json_t *detail =
            json_pack("{s:I,s:I}", "records", (json_int_t)res.records, "last_seq", (json_int_t)res.last_seq);
        audit_event_t ev = {.type = "AUDIT_VERIFY",
                            .user = os_user(user, sizeof(user)),
                            .role = "cli",
                            .action = "E",
                            .entity_type = "audit_log",
                            .outcome = "success",
                            .detail = detail};
        record_event(cfg, &ev);
        json_decref(detail);
    } else {
        /* appending to a broken chain would bury the damage under a record that links to it
         * (and change what the next run reports): leave the trail as found, and say it in the
         * structured log (stderr, or LOG_FILE) where log shippers and alerting look */
        fprintf(stderr, "aimedres audit verify: not recorded in the trail: the chain is broken\n");
        log_msg(LOG_CRITICAL, "audit chain broken: tampering or loss detected by audit verify",
                "{s:s,s:I,s:I,s:s}", "file", res.bad_file, "line", (json_int_t)res.bad_line, "seq",
                (json_int_t)res.bad_seq, "kind", res.bad_kind);
    }
    config_free(cfg);
    return res.ok ? 0 : 1;
}

static void events_help(FILE *out)
{
    fprintf(
        out,
        "usage: aimedres audit events [--from TS] [--to TS] [--type TYPE] [--user USER]\n"
        "                             [--patient PSEUDONYM] [--limit N] [--after SEQ] [--env-file FILE]\n\n"
        "Prints matching records as JSON lines in seq order (TS: ISO 8601 UTC, e.g. 2026-11-27 or\n"
        "2026-11-27T08:00:00Z; --from inclusive, --to exclusive). At most --limit (default 100);\n"
        "when more match, stderr says which --after to pass next. A malformed filter is exit 2.\n");
}

static int cmd_events(int argc, char **argv)
{
    opts_t o = {0};
    int p = parse(argc, argv, "ftyupla", &o, events_help);
    if (p)
        return p > 0 ? 0 : 2;
    audit_query_t q = {.from = o.from,
                       .to = o.to,
                       .type = o.type,
                       .user = o.user,
                       .patient_pseudonym = o.patient,
                       .after_seq = (uint64_t)o.after,
                       .limit = o.limit ? (size_t)o.limit : 100};
    char err[512] = "";
    /* the same check as the API's: a mistyped filter is a usage error, not "no records" */
    if (audit_query_check(&q, "--", err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres audit events: %s\n", err);
        return 2;
    }
    config_t *cfg = load(&o);
    if (!cfg)
        return 1;
    json_t *recs = NULL;
    uint64_t next = 0;
    int rc = audit_query_run(cfg, &q, &recs, &next, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "aimedres audit events: %s\n", err);
        config_free(cfg);
        return 1;
    }
    size_t i;
    json_t *r;
    json_array_foreach(recs, i, r)
    {
        char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", s ? s : "{}");
        free(s);
    }
    if (next)
        fprintf(stderr, "aimedres audit events: more records match; next page: --after %llu\n",
                (unsigned long long)next);
    json_decref(recs);
    config_free(cfg);
    return 0;
}

static void pseudonym_help(FILE *out)
{
    fprintf(out,
            "usage: aimedres audit pseudonym [--env-file FILE] < FILE-OF-PATIENT-IDS\n\n"
            "Prints the pseudonym (p_...) under which the server records a patient id, for\n"
            "`audit events --patient`: one line out for each id read from standard input, one id per\n"
            "line, so that ids stay out of the shell history and the process list. Exit 1 if a line\n"
            "is empty or longer than %d bytes (it is named on stderr). Needs the server's SECRET_KEY:\n"
            "pseudonyms are keyed by it.\n",
            PATIENT_ID_MAX);
}

/* Reads one line of at most cap - 1 bytes (without its newline and a CR before it) into buf:
 * its length (0 for an empty line or none), or cap when the line is longer (the rest is
 * consumed); *eof when input ended. */
static size_t read_id_line(char *buf, size_t cap, bool *eof)
{
    size_t n = 0;
    int ch;
    bool over = false;
    while ((ch = getchar()) != EOF && ch != '\n') {
        if (n < cap - 1)
            buf[n++] = (char)ch;
        else
            over = true;
    }
    *eof = ch == EOF;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    return over ? cap : n;
}

/* review22: an auditor looking up one patient's records had no way to get the pseudonym. */
static int cmd_pseudonym(int argc, char **argv)
{
    opts_t o = {0};
    int p = parse(argc, argv, "", &o, pseudonym_help);
    if (p)
        return p > 0 ? 0 : 2;
    config_t *cfg = cli_load_config(o.env_file);
    if (!cfg)
        return 1;
    if (!cfg->secret_key || !cfg->secret_key[0] || pseudonym_init(cfg->secret_key) < 0) {
        fprintf(stderr, "aimedres audit pseudonym: SECRET_KEY is not set: pseudonyms are keyed by it\n");
        config_free(cfg);
        return 1;
    }
    /* one id per line, each answered as soon as its line ends (on a terminal too) */
    int rc = 0;
    size_t lines = 0;
    char id[PATIENT_ID_MAX + 1];
    for (bool eof = false; !eof;) {
        size_t n = read_id_line(id, sizeof(id), &eof);
        if (n == 0 && eof)
            break;
        lines++;
        if (n == 0 || n > PATIENT_ID_MAX) {
            fprintf(stderr, "aimedres audit pseudonym: line %zu: expected a patient id of 1..%d bytes\n", lines,
                    PATIENT_ID_MAX);
            rc = 1;
            continue;
        }
        char out[PSEUDONYM_LEN];
        pseudonym_of(id, n, out);
        printf("%s\n", out);
        fflush(stdout);
    }
    if (lines == 0) {
        fprintf(stderr, "aimedres audit pseudonym: no patient id on standard input\n");
        rc = 1;
    }
    OPENSSL_cleanse(id, sizeof(id));
    config_free(cfg);
    return rc;
}

static void checkpoint_help(FILE *out)
{
    fprintf(out,
            "usage: aimedres audit checkpoint [--env-file FILE]\n\n"
            "Signs the position of the log's last record now with AUDIT_SIGNING_KEY_PATH and appends it\n"
            "to <AUDIT_LOG_PATH>.checkpoints (and an AUDIT_CHECKPOINT record to the log).\n");
}

static int cmd_checkpoint(int argc, char **argv)
{
    opts_t o = {0};
    int p = parse(argc, argv, "", &o, checkpoint_help);
    if (p)
        return p > 0 ? 0 : 2;
    config_t *cfg = load(&o);
    if (!cfg)
        return 1;
    char err[1024] = "";
    audit_log_t *a = NULL;
    int rc = audit_log_open(cfg, &a, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "aimedres audit checkpoint: %s\n", err);
    } else if ((rc = audit_log_checkpoint(a)) < 0) {
        fprintf(stderr, "aimedres audit checkpoint: %s\n",
                rc == -ENOKEY    ? "AUDIT_SIGNING_KEY_PATH is not set"
                : rc == -ENODATA ? "the log has no records yet"
                                 : strerror(-rc));
    } else {
        printf("checkpoint written to %s.checkpoints\n", cfg->audit_log_path);
    }
    audit_log_close(a);
    config_free(cfg);
    return rc < 0 ? 1 : 0;
}

/* Before removing anything, prune works out where the remaining chain will start: the first
 * record of the first archive it keeps (or of the active file), else the seq the next record
 * will take. The AUDIT_PRUNE record carries it (first_kept_seq, kept_prev_hash) so that
 * `audit verify` can tell a retention prune from a deleted head. Returns the number of
 * archives the prune would remove (their names appended to names) or -errno. */
static int prune_plan(const char *log_path, int retention_days, int64_t today, json_t *names,
                      uint64_t *ret_seq, char ret_prev[AUDIT_HASH_HEX], char *err, size_t errlen)
{
    audit_file_t *files;
    size_t n;
    int rc = audit_files_list(log_path, &files, &n);
    if (rc < 0) {
        snprintf(err, errlen, "cannot list %s: %s", log_path, strerror(-rc));
        return rc;
    }
    int count = 0;
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (audit_file_expired(&files[i], retention_days, today)) {
            json_array_append_new(names, json_string(util_basename(files[i].path)));
            count++;
            continue;
        }
        FILE *f = found ? NULL : fopen(files[i].path, "re");
        if (!f)
            continue;
        char *line;
        size_t len;
        bool term;
        int r;
        while (!found && (r = audit_read_line(f, &line, &len, &term)) != 0) {
            json_t *rec = r > 0 && term ? audit_record_parse(line, len) : NULL;
            if (r > 0)
                free(line);
            if (rec) {
                *ret_seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
                snprintf(ret_prev, AUDIT_HASH_HEX, "%s",
                         json_string_value(json_object_get(rec, "prev_hash")));
                found = true;
            }
            json_decref(rec);
        }
        fclose(f);
    }
    audit_files_free(files, n);
    if (!found) {
        /* nothing left after the prune: the chain goes on from the last record removed */
        json_t *last = NULL;
        if ((rc = audit_log_last_record(log_path, &last)) < 0) {
            snprintf(err, errlen, "cannot read the last record of %s: %s", log_path, strerror(-rc));
            return rc;
        }
        *ret_seq = last ? (uint64_t)json_integer_value(json_object_get(last, "seq")) + 1 : 1;
        snprintf(ret_prev, AUDIT_HASH_HEX, "%s",
                 last ? json_string_value(json_object_get(last, "hash")) : AUDIT_GENESIS_HASH);
        json_decref(last);
    }
    return count;
}

static void prune_help(FILE *out)
{
    fprintf(out, "usage: aimedres audit prune [--dry-run] [--env-file FILE]\n\n"
                 "Removes rotated archives (<AUDIT_LOG_PATH>.YYYY-MM-DD) dated more than\n"
                 "AUDIT_LOG_RETENTION_DAYS (default 2555, 7 years) calendar days before today (UTC).\n"
                 "Never the active file or the checkpoints. Records an AUDIT_PRUNE event naming the\n"
                 "archives and the first seq kept before removing them (`audit verify` then accepts\n"
                 "a log starting there), and prints each file removed.\n");
}

static int cmd_prune(int argc, char **argv)
{
    opts_t o = {0};
    int p = parse(argc, argv, "n", &o, prune_help);
    if (p)
        return p > 0 ? 0 : 2;
    config_t *cfg = load(&o);
    if (!cfg)
        return 1;
    int64_t today = util_now_ms() / 86400000;
    char err[1024] = "";
    json_t *removed = json_array();
    int rc;
    if (o.dry_run) {
        /* same rule as audit_prune, without removing */
        char cutoff[11];
        audit_date_format(today - cfg->audit_log_retention_days - 1, cutoff);
        printf("dry run: archives dated %s or earlier would be removed (retention %d days)\n", cutoff,
               cfg->audit_log_retention_days);
        rc = 0;
    } else {
        char user[256];
        json_t *planned = json_array();
        uint64_t kept_seq = 0;
        char kept_prev[AUDIT_HASH_HEX] = "";
        rc = prune_plan(cfg->audit_log_path, cfg->audit_log_retention_days, today, planned, &kept_seq,
                        kept_prev, err, sizeof(err));
        if (rc > 0) {
            /* the trail says what goes, and where the chain will start, before anything goes */
            json_t *detail = json_pack("{s:O,s:i,s:I,s:s}", "removed", planned, "retention_days",
                                       cfg->audit_log_retention_days, "first_kept_seq", (json_int_t)kept_seq,
                                       "kept_prev_hash", kept_prev);
            audit_event_t ev = {.type = "AUDIT_PRUNE",
                                .user = os_user(user, sizeof(user)),
                                .role = "cli",
                                .action = "D",
                                .entity_type = "audit_log",
                                .outcome = "success",
                                .detail = detail};
            if (record_event(cfg, &ev) < 0) {
                snprintf(err, sizeof(err), "nothing removed: the prune could not be recorded in the trail");
                rc = -EIO;
            }
            json_decref(detail);
        }
        /* only what the record named: writing it may have rotated the active file into an
         * archive that is already past retention (review46 #1) */
        if (rc > 0)
            rc = audit_prune(cfg->audit_log_path, cfg->audit_log_retention_days, today, planned, removed, err,
                             sizeof(err));
        json_decref(planned);
        size_t i;
        json_t *v;
        json_array_foreach(removed, i, v) printf("removed %s\n", json_string_value(v));
        if (rc < 0)
            fprintf(stderr, "aimedres audit prune: %s\n", err);
        else
            printf("%d archive(s) removed (retention %d days)\n", rc, cfg->audit_log_retention_days);
        if (rc < 0 && json_array_size(removed) > 0) {
            /* part of the plan went: say which (the earlier record named the whole plan) */
            json_t *detail =
                json_pack("{s:O,s:i}", "removed", removed, "retention_days", cfg->audit_log_retention_days);
            audit_event_t ev = {.type = "AUDIT_PRUNE",
                                .user = os_user(user, sizeof(user)),
                                .role = "cli",
                                .action = "D",
                                .entity_type = "audit_log",
                                .outcome = "failure",
                                .detail = detail};
            record_event(cfg, &ev);
            json_decref(detail);
        }
    }
    json_decref(removed);
    config_free(cfg);
    return rc < 0 ? 1 : 0;
}

static void keygen_help(FILE *out)
{
    fprintf(out, "usage: aimedres audit keygen --private FILE --public FILE\n\n"
                 "Creates an Ed25519 key pair (PEM; private 0600, public 0644) for signed checkpoints:\n"
                 "AUDIT_SIGNING_KEY_PATH=private (the server), AUDIT_VERIFY_KEY_PATH=public (auditors).\n"
                 "Refuses to overwrite existing files.\n");
}

static int cmd_keygen(int argc, char **argv)
{
    opts_t o = {0};
    int p = parse(argc, argv, "PQ", &o, keygen_help);
    if (p)
        return p > 0 ? 0 : 2;
    if (!o.priv || !o.pub) {
        keygen_help(stderr);
        return 2;
    }
    char err[1024] = "";
    if (audit_keygen(o.priv, o.pub, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres audit keygen: %s\n", err);
        return 1;
    }
    printf("private key: %s\npublic key: %s\n", o.priv, o.pub);
    return 0;
}

int cli_audit(int argc, char **argv)
{
    static const cli_sub_t subs[] = {{"verify", cmd_verify},
                                     {"events", cmd_events},
                                     {"pseudonym", cmd_pseudonym},
                                     {"checkpoint", cmd_checkpoint},
                                     {"prune", cmd_prune},
                                     {"keygen", cmd_keygen}};
    return cli_dispatch("audit", subs, ARRAY_SIZE(subs), usage, argc, argv);
}
