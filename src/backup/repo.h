/* SPDX-License-Identifier: Apache-2.0 */
/* A backup repository is a directory (BACKUP_PATH, or the offsite copy) holding one
 * directory per complete backup named by its id, a `latest` symlink to the newest verified
 * one, and hidden work areas (".<id>.partial" while a backup is written). Only complete
 * backups ever carry their final name: a backup is renamed into place after it verified.
 *
 * Locks (flock, dropped by the kernel if the process dies): ".write.lock" exclusive for
 * backup and prune; ".read.lock" shared for verify/restore/check, exclusive for prune, so
 * nothing is deleted under a reader. */
#ifndef AIMEDRES_BACKUP_REPO_H
#define AIMEDRES_BACKUP_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backup/manifest.h"

#define BACKUP_LATEST "latest"

typedef enum { BACKUP_LOCK_WRITE, BACKUP_LOCK_READ_SHARED, BACKUP_LOCK_READ_EXCLUSIVE } backup_lock_kind_t;

/* Takes a repository lock, waiting up to wait_ms. Returns the fd (close it to release),
 * -EWOULDBLOCK with the holder's pid in err when still held, or -errno. create: make the
 * repository directory (0700) when needed (only `backup` does: a missing BACKUP_PATH for a
 * reader, or a missing offsite directory, is an unmounted volume or a typo, -ENOENT).
 * The busy message names who may hold it: BACKUP_LOCK_WRITE "a backup, prune or in-place
 * restore", the shared reader lock "a prune", the exclusive one the readers.
 * A shared reader lock on a repository that cannot be written (open fails with EROFS, or
 * EACCES on a read-only mount: a WORM volume) still succeeds: the lock file is opened
 * read-only when it exists (flock works on it), else the fd is the directory itself and
 * nothing is locked (no backup or prune can change a read-only repository either). Then,
 * and only then, err holds a note saying so on success (err is "" after other successes). */
int backup_repo_lock(const char *repo, backup_lock_kind_t kind, bool create, int wait_ms, char *err,
                     size_t errlen);
/* 0 if repo is a directory, else -errno with "no backup repository at ..." in err. */
int backup_repo_require(const char *repo, char *err, size_t errlen);
/* The same for BACKUP_OFFSITE_DIR, which is never created: "the offsite directory ...
 * (BACKUP_OFFSITE_DIR) does not exist: is the volume mounted? ..." in err. */
int backup_repo_require_offsite(const char *dir, char *err, size_t errlen);
void backup_repo_unlock(int fd);

/* Ids of complete backups (directory with a manifest), oldest first. Caller frees each
 * string and the array (backup_repo_ids_free). *ret_n may be 0. A missing repository is
 * an empty list. */
int backup_repo_list(const char *repo, char ***ret_ids, size_t *ret_n);
void backup_repo_ids_free(char **ids, size_t n);

/* The id `latest` points at; -ENOENT if there is none (or it dangles). */
int backup_repo_latest(const char *repo, char ret_id[BACKUP_ID_MAX]);
/* Points `latest` at id atomically (symlink aside, rename, fsync the directory). */
int backup_repo_set_latest(const char *repo, const char *id);
/* "latest" or an id of a complete backup into ret_id. With a message in err otherwise:
 *   -ENOENT   no backup of that id (or no `latest`: an empty repository)
 *   -EINVAL   spec is neither an id nor "latest"
 *   -EUCLEAN  it is there but damaged: `latest` dangles, or the id's directory has no manifest */
int backup_repo_resolve(const char *repo, const char *spec, char ret_id[BACKUP_ID_MAX], char *err,
                        size_t errlen);

/* A new id for a backup started at now_ms: the UTC second, with -1, -2 ... appended when
 * that name is taken (complete or partial). */
int backup_repo_new_id(const char *repo, int64_t now_ms, char ret_id[BACKUP_ID_MAX]);

/* Removes ".<id>.partial" leftovers of crashed backups, and ".latest.<pid>" symlinks of
 * backups killed between making and renaming it (pid no longer running). Call with the write
 * lock held. Returns how many were removed. */
int backup_repo_clean_partials(const char *repo);

/* "<repo>/<id>" into buf; -ENAMETOOLONG. */
int backup_repo_path(const char *repo, const char *id, const char *sub, char *buf, size_t len);

/* For metrics: time (epoch ms) and id of the backup `latest` points at. The time is the one
 * in the id (the directory name: the UTC second the backup started, backup_id_time_ms), used
 * only when latest's manifest, read without the key, names that same id; the manifest's own
 * timestamp is not trusted (it is not authenticated here: `backup check` also authenticates
 * it). ret_id may be NULL. -ENOENT when there is no backup; -EBADMSG when the manifest names
 * another id; other -errno on unreadable manifests. */
int backup_latest_info(const char *backup_path, int64_t *ret_ts_ms, char *ret_id, size_t idlen);
/* The UTC second in a backup id ("20261127T073651Z[-N]") as epoch ms; -EINVAL. */
int backup_id_time_ms(const char *id, int64_t *ret_ms);

#endif
