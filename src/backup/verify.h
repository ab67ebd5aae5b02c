/* SPDX-License-Identifier: Apache-2.0 */
/* Verification: a backup is good when its manifest authenticates under the configured
 * key and every file it needs (stored in it or, for an incremental, in an older backup of
 * its chain) decrypts chunk by chunk with valid tags to exactly the recorded size and
 * sha256. Each bad file is named with the reason. */
#ifndef AIMEDRES_BACKUP_VERIFY_H
#define AIMEDRES_BACKUP_VERIFY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backup/crypto.h"
#include "backup/manifest.h"
#include "backup/progress.h"

/* Results of stored files already checked in this run, keyed "holder/stored", so
 * `verify --all` decrypts a file shared by many incrementals once. Owned by the caller
 * (a json object; may be NULL for no caching). */
typedef json_t backup_verify_cache_t;

/* Verifies the files of m (already authenticated). Stored files whose holder is m->id are
 * read from self_dir when not NULL (a backup not yet renamed into place), else from
 * repo/<holder>/. Appends {"path","holder","stored","error"} to bad (a json array) for
 * every bad file. *ret_bytes (optional): plaintext bytes checked. Returns 0 if all files
 * are good, -EBADMSG if any is bad (see bad), -ENOMEM. Files are checked on `threads`
 * threads (backup_thread_count); the cache is shared safely. */
int backup_verify_files(const char *repo, const backup_manifest_t *m, const char *self_dir,
                        const backup_key_t *key, int threads, backup_progress_t *prog,
                        backup_verify_cache_t *cache, json_t *bad, uint64_t *ret_bytes);

/* Loads and authenticates repo/<id>/manifest.json, then verifies its files. report gets
 * {"id","ok","files","bytes","bad":[...],"error"?}. Returns 0 if good, -EKEYREJECTED
 * (wrong key), -EBADMSG (manifest or files bad), -ENOENT, other -errno. */
int backup_verify_one(const char *repo, const char *id, const backup_key_t *key, int threads, bool progress,
                      backup_verify_cache_t *cache, json_t **ret_report);

/* Decrypts one stored file to out_fd (-1: verify only) and checks it against f.
 * path_override: read from here instead of repo/<holder>/<stored>. 0 or a negative error
 * with the reason in err (see backup_stream_decrypt; -ENOENT missing; -EBADMSG size or
 * sha256 mismatch). */
int backup_file_decrypt(const char *repo, const backup_file_t *f, const char *path_override,
                        const backup_key_t *key, int out_fd, backup_progress_t *prog, char *err,
                        size_t errlen);

#endif
