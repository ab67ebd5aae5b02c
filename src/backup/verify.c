/* SPDX-License-Identifier: Apache-2.0 */
/* Backup verification (see verify.h): decrypt to nowhere, compare with the manifest. */
#include "backup/verify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backup/fsutil.h"
#include "backup/pool.h"
#include "backup/repo.h"

int backup_file_decrypt(const char *repo, const backup_file_t *f, const char *path_override,
                        const backup_key_t *key, int out_fd, backup_progress_t *prog, char *err,
                        size_t errlen)
{
    char path[PATH_MAX], binding[BACKUP_ID_MAX + 64];
    if (path_override)
        snprintf(path, sizeof(path), "%s", path_override);
    else if (backup_repo_path(repo, f->holder, f->stored, path, sizeof(path)) < 0) {
        snprintf(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    snprintf(binding, sizeof(binding), "%s/%s", f->holder, f->stored);
    uint8_t nonce[BACKUP_NONCE_BYTES];
    if (backup_from_hex(f->nonce, nonce, sizeof(nonce)) < 0) {
        snprintf(err, errlen, "bad nonce in the manifest");
        return -EPROTO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            snprintf(err, errlen, "missing: %s does not exist", path);
        else
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    backup_stream_opts_t o = {
        .binding = binding,
        .max_plain = f->size,
        .progress = prog ? backup_progress_add : NULL,
        .progress_arg = prog,
    };
    backup_stream_result_t res;
    int r = backup_stream_decrypt(key, fd, out_fd, &o, nonce, &res, err, errlen);
    close(fd);
    if (r == -EFBIG) {
        snprintf(err, errlen, "decrypts to more than the %llu bytes recorded", (unsigned long long)f->size);
        return -EBADMSG;
    }
    if (r < 0)
        return r;
    if (res.plain_size != f->size) {
        snprintf(err, errlen, "decrypts to %llu bytes, the manifest records %llu",
                 (unsigned long long)res.plain_size, (unsigned long long)f->size);
        return -EBADMSG;
    }
    if (strcmp(res.sha256, f->sha256) != 0) {
        snprintf(err, errlen, "sha256 %s differs from the manifest's %s", res.sha256, f->sha256);
        return -EBADMSG;
    }
    if (res.stored_size != f->stored_size) {
        snprintf(err, errlen, "stored size %llu differs from the manifest's %llu",
                 (unsigned long long)res.stored_size, (unsigned long long)f->stored_size);
        return -EBADMSG;
    }
    return 0;
}

typedef struct vjob {
    const char *repo;
    const backup_manifest_t *m;
    const char *self_dir;
    const backup_key_t *key;
    backup_progress_t *prog;
    backup_verify_cache_t *cache;
    pthread_mutex_t mu; /* guards cache */
    char (*errs)[512];  /* per file: "" = good */
} vjob_t;

static int verify_one_file(void *arg, size_t i)
{
    vjob_t *j = arg;
    const backup_file_t *f = &j->m->files[i];
    char cache_key[BACKUP_ID_MAX + 64];
    snprintf(cache_key, sizeof(cache_key), "%s/%s", f->holder, f->stored);
    char *err = j->errs[i];
    err[0] = '\0';
    if (j->cache) {
        pthread_mutex_lock(&j->mu);
        const char *cached = json_string_value(json_object_get(j->cache, cache_key));
        if (cached)
            snprintf(err, 512, "%s", strcmp(cached, "ok") == 0 ? "" : cached);
        pthread_mutex_unlock(&j->mu);
        if (cached) {
            if (j->prog)
                backup_progress_add(j->prog, f->size);
            return 0;
        }
    }
    char over[PATH_MAX];
    const char *override = NULL;
    if (j->self_dir && strcmp(f->holder, j->m->id) == 0) {
        if (backup_path_join(over, sizeof(over), j->self_dir, f->stored) < 0) {
            snprintf(err, 512, "path too long");
            return 0;
        }
        override = over;
    }
    int r = backup_file_decrypt(j->repo, f, override, j->key, -1, j->prog, err, 512);
    if (r == -ENOMEM)
        return r;
    if (r == 0)
        err[0] = '\0';
    else if (!err[0])
        snprintf(err, 512, "%s", strerror(-r));
    if (j->cache) {
        pthread_mutex_lock(&j->mu);
        json_object_set_new(j->cache, cache_key, json_string(err[0] ? err : "ok"));
        pthread_mutex_unlock(&j->mu);
    }
    return 0;
}

int backup_verify_files(const char *repo, const backup_manifest_t *m, const char *self_dir,
                        const backup_key_t *key, int threads, backup_progress_t *prog,
                        backup_verify_cache_t *cache, json_t *bad, uint64_t *ret_bytes)
{
    vjob_t j = {.repo = repo, .m = m, .self_dir = self_dir, .key = key, .prog = prog, .cache = cache};
    j.errs = calloc(m->n_files + 1, sizeof(*j.errs));
    if (!j.errs)
        return -ENOMEM;
    pthread_mutex_init(&j.mu, NULL);
    int r = backup_parallel(m->n_files, NULL, threads, verify_one_file, &j);
    pthread_mutex_destroy(&j.mu);
    int result = r;
    uint64_t bytes = 0;
    for (size_t i = 0; r == 0 && i < m->n_files; i++) {
        const backup_file_t *f = &m->files[i];
        if (!j.errs[i][0]) {
            bytes += f->size;
            continue;
        }
        result = -EBADMSG;
        if (json_array_append_new(bad, json_pack("{s:s,s:s,s:s,s:s}", "path", f->path, "holder", f->holder,
                                                 "stored", f->stored, "error", j.errs[i])) < 0)
            result = -ENOMEM;
    }
    free(j.errs);
    if (ret_bytes)
        *ret_bytes = bytes;
    return result;
}

int backup_verify_one(const char *repo, const char *id, const backup_key_t *key, int threads, bool progress,
                      backup_verify_cache_t *cache, json_t **ret_report)
{
    char dir[PATH_MAX], err[1024] = "";
    json_t *rep = json_pack("{s:s,s:b,s:[]}", "id", id, "ok", 0, "bad");
    if (!rep)
        return -ENOMEM;
    backup_manifest_t *m = NULL;
    int r = backup_repo_path(repo, id, NULL, dir, sizeof(dir));
    if (r == 0)
        r = backup_manifest_load(dir, key, &m, err, sizeof(err));
    if (r < 0) {
        json_object_set_new(rep, "error", json_string(err[0] ? err : strerror(-r)));
        *ret_report = rep;
        return r == -EPROTO ? -EBADMSG : r;
    }
    backup_progress_t prog;
    char label[64];
    snprintf(label, sizeof(label), "verify %s", id);
    backup_progress_start(&prog, label, m->total_size, progress);
    uint64_t bytes = 0;
    r = backup_verify_files(repo, m, NULL, key, threads, &prog, cache, json_object_get(rep, "bad"), &bytes);
    backup_progress_finish(&prog);
    json_object_set_new(rep, "ok", json_boolean(r == 0));
    json_object_set_new(rep, "type", json_string(m->type));
    json_object_set_new(rep, "files", json_integer((json_int_t)m->n_files));
    json_object_set_new(rep, "bytes", json_integer((json_int_t)m->total_size));
    backup_manifest_free(m);
    *ret_report = rep;
    return r;
}
