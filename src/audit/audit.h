/* SPDX-License-Identifier: Apache-2.0 */
/* The tamper-evident audit trail (AUDIT_LOG_PATH): one JSON record per security-relevant
 * event, HMAC-SHA256 chained, made durable by a writer thread with group commit, rotated
 * daily without breaking the chain, covered by Ed25519-signed checkpoints and optionally
 * forwarded to a SIEM. Also the offline operations on the files: verify, query, prune. */
#ifndef AIMEDRES_AUDIT_AUDIT_H
#define AIMEDRES_AUDIT_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

typedef struct audit_log audit_log_t;

/* One event. Every pointer is borrowed for the duration of the call (submit copies).
 * NULL fields are left out of the record. Never put PHI here: patient ids only as
 * pseudonyms (security/pseudonym.h, "p_" + 30 hex); anything else in patient_pseudonym is
 * refused with -EINVAL so a raw identifier cannot reach the log by mistake. */
typedef struct audit_event {
    const char *type; /* one of audit_event_types or DEPLOYMENT_* (a new one goes in that list,
                         or queries refuse it; required, [A-Z0-9_], at most AUDIT_MAX_TYPE = 64
                         chars) */
    const char *user, *role, *action, *entity_type, *entity_id, *source_ip, *outcome, *request_id;
    const char *patient_pseudonym;
    json_t *detail; /* borrowed; small object of non-PHI fields e.g. model, version, arm, prediction_id */
} audit_event_t;

/* Opens the log named by cfg->audit_log_path and starts its writer thread (the SIEM
 * forwarder is separate: audit/siem.h, started by `serve` only). When AUDIT_LOG_PATH is unset, audit is off:
 * returns 0 with *ret = NULL (every function below accepts NULL and does nothing; healthy is
 * true). Refuses (-EINVAL, reason in err) when SECRET_KEY is unset (the chain key derives
 * from it), when ENVIRONMENT=production has no AUDIT_SIGNING_KEY_PATH, or when a key file is
 * unreadable. Creates the directory (0750) and the file (0640). A torn last record (a crash
 * between write and fdatasync; never acknowledged) is trimmed and the trim is logged.
 * Caller frees *ret with audit_log_close. */
int audit_log_open(const config_t *cfg, audit_log_t **ret, char *err, size_t errlen);
/* What audit_log_open would refuse in the settings alone (keys), without opening the log:
 * for `config check`. 0 when AUDIT_LOG_PATH is unset or the keys are usable. */
int audit_settings_check(const config_t *cfg, char *err, size_t errlen);

/* done(arg, status): status 0 when the record is durable, <0 (-ENOSPC, -EROFS, -EIO...) when
 * it could not be written (fail closed). Called exactly once, from the writer thread. */
typedef void (*audit_done_fn)(void *arg, int status);

/* Queues a copy of ev. done (may be NULL) runs on the writer thread once the record is on disk:
 * after fdatasync in strict mode (records of one batch share one fdatasync: group commit),
 * after write(2) in async mode. Returns 0 (done will be called), -EINVAL for a bad event or
 * -ESHUTDOWN when closing (done is then NOT called). a NULL: returns 0 and calls done(arg, 0)
 * at once (audit off). */
int audit_log_submit(audit_log_t *a, const audit_event_t *ev, audit_done_fn done, void *arg);
/* audit_log_submit whose done means durable (fdatasync) in async mode too: what
 * audit_log_append_sync waits for, for a caller that must not wait where it submits. */
int audit_log_submit_durable(audit_log_t *a, const audit_event_t *ev, audit_done_fn done, void *arg);

/* The MODEL_INFERENCE record of one prediction, as plain strings (borrowed for the call):
 * the predict hot path's submit without a JSON tree. The record is byte for byte the one
 * audit_log_submit writes for {type MODEL_INFERENCE, action "E", entity_type "model",
 * entity_id "<model>/<version>", outcome "success", detail {arm, model, prediction_id, rows,
 * version}} (NULL members left out). model and version are required; patient_pseudonym as
 * in audit_event_t. */
typedef struct audit_inference {
    const char *user, *role, *source_ip, *request_id, *patient_pseudonym;
    const char *model, *version, *arm, *prediction_id;
    int64_t rows;
} audit_inference_t;

/* audit_log_submit for an inference: same contract (0, -EINVAL, -ESHUTDOWN; a NULL: done(arg,
 * 0) at once). */
int audit_log_submit_inference(audit_log_t *a, const audit_inference_t *inf, audit_done_fn done, void *arg);

/* For CLI commands: submits and waits until the record is durable (strict, whatever the
 * mode). 0 or the negative status. */
int audit_log_append_sync(audit_log_t *a, const audit_event_t *ev);

/* Writes a signed checkpoint now (over the log's last record) and waits for it: 0, -ENOKEY
 * without AUDIT_SIGNING_KEY_PATH, -ENOENT for NULL, or the write error. (`audit checkpoint`) */
int audit_log_checkpoint(audit_log_t *a);

/* False after a write failure until a later write succeeds (the writer retries queued work).
 * /ready uses it. True for NULL. */
bool audit_log_healthy(audit_log_t *a);
/* Since when (ms) signed checkpoints fail to be written while records still are (tail
 * truncation is then not detectable), 0 when the last one was written. */
int64_t audit_log_checkpoints_failing_since(audit_log_t *a);

/* Shutdown's first half: waits until every record queued before the call is written or
 * failed (its callback has run), bounding lock waits from now on as close does. New records
 * are still taken: what those callbacks submit (MODEL_INFERENCE_NOT_DELIVERED) reaches the
 * log at audit_log_close. NULL-safe. */
void audit_log_quiesce(audit_log_t *a);

/* Writes what is queued, a final checkpoint when records were added since the last one,
 * stops the threads and frees. NULL-safe. */
void audit_log_close(audit_log_t *a);

/* ---- offline operations on the files (CLI, API) ---- */

/* Result of audit_verify. When ok is false, bad_* name the first bad record exactly. */
typedef struct audit_verify_result {
    bool ok;
    uint64_t records;        /* records checked */
    uint64_t first_seq;      /* first seq checked (after pruning or --from, >1) */
    uint64_t last_seq;       /* last good seq */
    uint64_t checkpoints;    /* checkpoints whose signature and hash were checked */
    bool torn_tail_ignored;  /* the active file ends in a partial line (never acknowledged) */
    bool torn_checkpoint_ignored; /* so does the checkpoints file (trimmed at the next checkpoint) */
    bool legacy_prune_head;  /* the chain starts after archives that an AUDIT_PRUNE record of an
                                earlier version (no first_kept_seq) names as removed: accepted,
                                but where the chain starts is not proven by the chain itself */
    bool checkpoints_signed; /* a verify key was available */
    char bad_file[512];      /* file holding the bad record (or the checkpoint file) */
    uint64_t bad_line;       /* 1-based line in bad_file, 0 if not applicable */
    uint64_t bad_seq;        /* seq the record should have had (0 if not applicable) */
    char bad_kind[32];       /* "edited", "deleted", "reordered", "inserted", "truncated",
                                "forged", "malformed", "checkpoint" */
    char message[512];       /* one sentence for an operator */
} audit_verify_result_t;

/* Verifies the chain in every file (archives in chain order, then the active file) from
 * from_date ("YYYY-MM-DD", NULL = all) and the checkpoints. Returns 0 when verification ran
 * (see res->ok) or -errno when it could not (no log, unreadable key; reason in err). */
int audit_verify(const config_t *cfg, const char *from_date, audit_verify_result_t *res, char *err,
                 size_t errlen);
json_t *audit_verify_result_json(const audit_verify_result_t *res); /* new reference */
/* No record at all is not an intact trail (a wiped trail, or AUDIT_LOG_PATH naming the wrong
 * place): when res is ok with 0 records, turns it into a failure of kind "missing" naming
 * log_path, and returns true. The CLI's `audit verify --allow-empty` skips this for a new
 * installation; restore and the DR drill check the chain of whatever they restored. */
bool audit_verify_refuse_empty(audit_verify_result_t *res, const char *log_path);

/* Query filter for audit_query; NULL/0 = no constraint. from/to are ISO 8601 UTC timestamps
 * compared as text (inclusive from, exclusive to). */
typedef struct audit_query {
    const char *from, *to, *type, *user, *patient_pseudonym;
    uint64_t after_seq; /* cursor: records with seq > after_seq */
    size_t limit;       /* 1..1000 */
} audit_query_t;

/* The event types the server writes, NULL-terminated (the table in audit.md). Deployment
 * types are not listed: they are DEPLOYMENT_ + the controller's event name in capitals
 * (DEPLOYMENT_STAGE_2_STARTED...), made at run time (rollout.c), and records of events an
 * earlier version named differently stay in the trail for years. */
extern const char *const audit_event_types[];
/* True when type is one of audit_event_types or DEPLOYMENT_ followed by [A-Z0-9_]. */
bool audit_event_type_known(const char *type);
/* True when s has the form of a patient pseudonym: "p_" + 30 lowercase hex digits. */
bool audit_pseudonym_valid(const char *s);

/* Checks the filters of q as a user typed them, for the API and the CLI alike, so that a
 * mistake is an error rather than an empty answer ("nobody looked at this patient"): from
 * and to must be ISO 8601 UTC times ("YYYY-MM-DD", optionally followed by "T..."), or a text
 * comparison would answer "nothing" or "everything"; patient a pseudonym (never a raw
 * patient id, which the message does not repeat); type a known event type
 * (audit_event_type_known). prefix is put before the filter's name in the message ("" for
 * the API's from=, "--" for the CLI's --from). 0, or -EINVAL with the reason in err. */
int audit_query_check(const audit_query_t *q, const char *prefix, char *err, size_t errlen);

/* Matching records in seq order as a JSON array (new reference in *ret_records);
 * *ret_next_cursor is the seq to pass as after_seq for the next page, 0 when no more. */
int audit_query_run(const config_t *cfg, const audit_query_t *q, json_t **ret_records,
                    uint64_t *ret_next_cursor, char *err, size_t errlen);

/* Removes the rotated archives whose date is more than retention_days before today_days
 * (days since 1970-01-01, UTC) and, when planned is not NULL, whose basename it lists (the
 * names the AUDIT_PRUNE record gave: an archive rotated out after the plan, by that very
 * record for one, is not removed; review46 #1). Never the active file. removed (may be NULL)
 * receives the basenames removed. Returns the number removed or -errno. */
int audit_prune(const char *log_path, int retention_days, int64_t today_days, const json_t *planned,
                json_t *removed, char *err, size_t errlen);

/* Calendar helpers (proleptic Gregorian, UTC): "YYYY-MM-DD" -> days since 1970-01-01;
 * 0 or -EINVAL (validates month lengths and leap years). */
int audit_date_parse(const char *s, int64_t *ret_days);
void audit_date_format(int64_t days, char buf[11]);

/* The OS user running this process (effective uid's name, else "uid:N"), the actor of the
 * records CLI commands and the server's start write. */
void audit_os_user(char *buf, size_t len);

/* Writes a new Ed25519 key pair as PEM files (private 0600, public 0644; refuses to
 * overwrite). 0 or -errno with the reason in err. */
int audit_keygen(const char *private_path, const char *public_path, char *err, size_t errlen);

#endif
