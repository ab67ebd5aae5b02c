/* SPDX-License-Identifier: Apache-2.0 */
/* The backup manifest (BACKUP_PATH/<id>/manifest.json): what a backup holds, where each
 * file's bytes are stored (here or, for an unchanged file of an incremental, in an older
 * backup of the chain), and an HMAC over the whole under the backup key, so an edited
 * manifest is refused. Only integers and strings, so the canonical form (sorted keys,
 * compact, ASCII) is stable across jansson versions. docs/backup.md lists the fields. */
#ifndef AIMEDRES_BACKUP_MANIFEST_H
#define AIMEDRES_BACKUP_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backup/crypto.h"
#include "common/util.h"

#define BACKUP_MANIFEST_FILE "manifest.json"
#define BACKUP_MANIFEST_MAX (64u << 20) /* refuse bigger manifests */
#define BACKUP_FORMAT_VERSION 1
#define BACKUP_ID_MAX 32

/* Components an operator can name (restore --components); each file belongs to one. */
#define BACKUP_COMPONENTS "db,models,config,results,audit"

typedef struct backup_file {
    char *path;      /* "<area>/<relative path>", area = db|models|baseline|config|results|audit */
    char *component; /* db|models|config|results|audit */
    uint64_t size;   /* plaintext bytes */
    int64_t mtime_ns;
    uint32_t mode; /* permission bits to restore */
    char sha256[SHA256_HEX_LEN];
    char holder[BACKUP_ID_MAX]; /* backup whose directory stores the bytes (== id if stored here) */
    char *stored;               /* path inside the holder, e.g. "data/000001" */
    uint64_t stored_size;
    char nonce[2 * BACKUP_NONCE_BYTES + 1]; /* hex */
} backup_file_t;

typedef struct backup_manifest {
    char id[BACKUP_ID_MAX];
    char type[16]; /* "full" | "incremental" | "audit-only" (reduced by prune) */
    int64_t timestamp_ms;
    char parent[BACKUP_ID_MAX]; /* "" for a full backup */
    char key_fingerprint[BACKUP_FINGERPRINT_LEN];
    char *key_id; /* BACKUP_ENCRYPTION_KEY_ID label or NULL */
    char *tool_version;
    char *host;
    json_t *components; /* owned: {"db":{"files":n,"bytes":n,"note":s?}, ...} */
    json_t *source;     /* owned: where the data came from {"database":path,...} */
    json_t *db;         /* owned or NULL: {"file","predictions","model_versions","schema_version"} */
    json_t *notes;      /* owned: array of strings (skipped items, fallbacks) */
    size_t n_files;
    backup_file_t *files;
    uint64_t total_size;  /* plaintext bytes of every file */
    uint64_t stored_here; /* bytes stored in this backup's directory */
} backup_manifest_t;

backup_manifest_t *backup_manifest_new(void);
void backup_manifest_free(backup_manifest_t *m);
/* Appends a copy of f (strings duplicated). 0 or -ENOMEM. */
int backup_manifest_add_file(backup_manifest_t *m, const backup_file_t *f);
/* Looks a file up by path; NULL if absent. Linear (manifests are loaded once per command). */
const backup_file_t *backup_manifest_find(const backup_manifest_t *m, const char *path);

/* Serialises with an "auth" member: {"alg":"HMAC-SHA256","mac":hex} over the canonical
 * form of everything else. Returns a malloc'd NUL-terminated string or NULL. */
char *backup_manifest_dump(const backup_manifest_t *m, const backup_key_t *key);

/* Parses manifest text. If key is not NULL, authenticates first:
 *   -EKEYREJECTED  the manifest names another key fingerprint than key's (err says both)
 *   -EBADMSG       the MAC does not match: the manifest was edited or damaged
 * Without a key the content is unauthenticated (list, freshness gauges).
 * -EPROTO for malformed JSON or fields (err names the field). Caller frees *ret. */
int backup_manifest_parse(const char *text, size_t len, const backup_key_t *key, backup_manifest_t **ret,
                          char *err, size_t errlen);
/* Reads dir/manifest.json and parses it as above; -ENOENT if missing. */
int backup_manifest_load(const char *dir, const backup_key_t *key, backup_manifest_t **ret, char *err,
                         size_t errlen);

/* True for a well-formed backup id: YYYYmmddTHHMMSSZ with an optional -N (N 1..999). */
bool backup_id_valid(const char *s);
/* Orders ids by time, then by suffix number. */
int backup_id_compare(const char *a, const char *b);

#endif
