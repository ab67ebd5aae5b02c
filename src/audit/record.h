/* SPDX-License-Identifier: Apache-2.0 */
/* Audit record format shared by the writer, the verifier, the query and the SIEM forwarder:
 * building and sealing a record (HMAC-SHA256 chain over its canonical JSON), parsing one
 * line back, and finding the files of one log (dated archives in chain order, then the
 * active file). */
#ifndef AIMEDRES_AUDIT_RECORD_H
#define AIMEDRES_AUDIT_RECORD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit/audit.h"

#define AUDIT_MAX_LINE (64 * 1024) /* a record line longer than this is refused / malformed */
/* The longest anyone (the writer, a backup taking its cut) waits for <log>.lock: past it the
 * holder is taken to be stuck. */
#define AUDIT_LOCK_WAIT_MS 5000
#define AUDIT_HASH_HEX 65
#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_KEY_LEN 32

/* The chain key: HMAC-SHA256(SECRET_KEY, "aimedres/audit-chain/v1"). 0, or -EINVAL when
 * secret_key is NULL or empty. */
int audit_chain_key(const char *secret_key, unsigned char key[AUDIT_KEY_LEN]);

/* The longest event type (DEPLOYMENT_<EVENT> names of the rollout controller run to 44). */
#define AUDIT_MAX_TYPE 64

/* 0 if ev is acceptable (type present and [A-Z0-9_]{1,64}, strings under 1 KiB, a pseudonym
 * that looks like one, detail an object or NULL), else -EINVAL. */
int audit_event_validate(const audit_event_t *ev);

/* A record object (without "hash") for ev at seq/ts chained to prev_hash. New reference. */
json_t *audit_record_build(const audit_event_t *ev, uint64_t seq, int64_t ts_ms, const char *prev_hash);

/* Computes the hash of rec (over its canonical form without "hash"), stores it in rec and
 * writes it to ret_hash. Canonical form: compact JSON, keys sorted, no "hash" member. */
int audit_record_seal(json_t *rec, const unsigned char key[AUDIT_KEY_LEN], char ret_hash[AUDIT_HASH_HEX]);

/* The writer's fast path: for rec without "hash", computes the hash of its canonical form
 * and returns the line ending in '\n' with "hash" as its first member followed by the
 * canonical members (malloc'd; NULL on failure). rec is not modified. */
char *audit_record_seal_line(const json_t *rec, const unsigned char key[AUDIT_KEY_LEN],
                             char ret_hash[AUDIT_HASH_HEX], size_t *ret_len);

/* An event serialised ahead of time (on the submitting thread), so that the writer only
 * splices in seq, ts and prev_hash, computes the HMAC and writes: the canonical form is built
 * from fixed pieces in the key order json_dumps(JSON_SORT_KEYS) uses, byte for byte what the
 * verifier recomputes from the parsed line. Formatted directly (no JSON tree) into one
 * allocation; text holds the member groups a, b, c, d back to back (seg = their lengths). */
typedef struct audit_prepared {
    uint32_t seg[4];
    uint32_t len;
    char text[];
} audit_prepared_t;
audit_prepared_t *audit_record_prepare(const audit_event_t *ev); /* NULL on ENOMEM */
void audit_prepared_free(audit_prepared_t *p);
size_t audit_prepared_size(const audit_prepared_t *p); /* bytes of the event's members */
/* The same in one allocation that starts with head bytes for the caller (a queue node), so a
 * queued record costs one malloc: returns the allocation (free() it; NULL on ENOMEM) and the
 * record in *ret. Does not validate (audit_event_validate / audit_inference_validate). */
void *audit_record_prepare_in(const audit_event_t *ev, size_t head, audit_prepared_t **ret);
void *audit_inference_prepare_in(const audit_inference_t *inf, size_t head, audit_prepared_t **ret);
/* The MODEL_INFERENCE event inf stands for, without entity_id ("model/version") and detail. */
void audit_inference_event(const audit_inference_t *inf, audit_event_t *ev);
int audit_inference_validate(const audit_inference_t *inf); /* 0 or -EINVAL */
/* Upper bound of a sealed line of p (bytes). */
#define AUDIT_PREPARED_LINE_MAX(p) ((size_t)(p)->len + 256)
/* Writes the sealed line of p at seq/ts (ISO 8601) chained to prev_hash into out (at least
 * AUDIT_PREPARED_LINE_MAX(p) bytes, not NUL-terminated; ends in '\n', "hash" first) and its
 * hash into ret_hash. Returns the line's length, 0 on failure (HMAC). */
size_t audit_prepared_seal_into(const audit_prepared_t *p, uint64_t seq, const char *ts,
                                const char *prev_hash, const unsigned char key[AUDIT_KEY_LEN],
                                char ret_hash[AUDIT_HASH_HEX], char *out);
/* The sealed line (malloc'd, ends in '\n', "hash" first) for p at seq/ts chained to prev_hash;
 * its hash into ret_hash. NULL on ENOMEM/EIO. */
char *audit_prepared_seal(const audit_prepared_t *p, uint64_t seq, int64_t ts_ms, const char *prev_hash,
                          const unsigned char key[AUDIT_KEY_LEN], char ret_hash[AUDIT_HASH_HEX],
                          size_t *ret_len);

/* The record as one line ending in '\n' (malloc'd, caller frees). */
char *audit_record_line(const json_t *rec, size_t *ret_len);

/* True when rec's "hash" equals the HMAC of its canonical form. */
bool audit_record_hash_ok(const json_t *rec, const unsigned char key[AUDIT_KEY_LEN]);

/* Parses one line (without the '\n') into an object with integer seq >= 1 and string
 * prev_hash/hash of 64 hex chars and string ts/type. New reference or NULL. */
json_t *audit_record_parse(const char *line, size_t len);

/* The largest N of an archive name "<log>.YYYY-MM-DD.N" (9 digits): past it no lister reads it. */
#define AUDIT_ARCHIVE_PART_MAX 999999999L

typedef struct audit_file {
    char *path;
    int64_t date_days; /* archive date, -1 for the active file */
    unsigned part;     /* N of "<log>.YYYY-MM-DD.N", 0 without a suffix */
} audit_file_t;

/* The files of the log at log_path: archives "<log>.YYYY-MM-DD[.N]" in chain order (by date,
 * then by N as a number), then the active file if it exists. *ret (caller frees with
 * audit_files_free). 0 or -errno. */
int audit_files_list(const char *log_path, audit_file_t **ret, size_t *ret_n);
void audit_files_free(audit_file_t *f, size_t n);
/* True when f is an archive that retention removes: dated more than retention_days before
 * today_days (kept while today - date <= retention_days). Never the active file. */
bool audit_file_expired(const audit_file_t *f, int retention_days, int64_t today_days);

/* Reads the last min(size, max) bytes of the file at fd (size bytes long) into a new buffer
 * (*ret_buf, caller frees; *ret_len bytes) that starts at file offset *ret_start. 0 or -errno. */
int audit_read_tail(int fd, off_t size, size_t max, char **ret_buf, size_t *ret_len, off_t *ret_start);
/* Reads the last complete record of the file at fd (size bytes long). *ret_rec is NULL if
 * the file holds no complete line. *ret_valid_len is the length up to and including the
 * last '\n' (shorter than size when the file ends in a torn line). 0 or -errno/-EBADMSG
 * (the last complete line is not a record). */
int audit_file_tail(int fd, off_t size, json_t **ret_rec, off_t *ret_valid_len);

/* Last record of the whole log (active file, else the newest archive that has one);
 * *ret NULL when the log is empty. 0 or -errno. */
int audit_log_last_record(const char *log_path, json_t **ret);

/* Extra paths beside the log. */
void audit_path_checkpoints(const char *log_path, char *buf, size_t len); /* <log>.checkpoints */
void audit_path_lock(const char *log_path, char *buf, size_t len);        /* <log>.lock */
void audit_path_cursor(const char *log_path, char *buf, size_t len);      /* <log>.siem-cursor */

/* Reads lines from an open FILE; returns 1 with a malloc'd line (no '\n') and whether it was
 * terminated, 0 at EOF, -EFBIG for a line over AUDIT_MAX_LINE (skipped). */
int audit_read_line(FILE *f, char **ret_line, size_t *ret_len, bool *ret_terminated);

#endif
