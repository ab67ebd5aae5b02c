/* SPDX-License-Identifier: Apache-2.0 */
/* `backup prune`: retention with chain and audit awareness (see retention.h). */
#include "backup/retention.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup/fsutil.h"
#include "backup/manifest.h"
#include "backup/repo.h"
#include "common/util.h"

#define DAY_MS (86400LL * 1000)
#define LOCK_WAIT_MS 2000
/* How long prune keeps trying while a reader (an hourly check, a weekly verify, a restore)
 * holds the repository: it runs once a day from a timer, and failing it whenever a check
 * happens to be reading would let the repository grow until the disk is full. (A backup, which
 * holds the write lock, makes prune give up after LOCK_WAIT_MS, as before.) */
#define READERS_WAIT_MS (10 * 60 * 1000)

typedef enum { ST_DELETE = 0, ST_KEEP, ST_REDUCE, ST_UNTOUCHED } state_t;

typedef struct entry {
    char *id;
    backup_manifest_t *m; /* NULL when it does not authenticate */
    state_t state;
    char error[512];
} entry_t;

static int find(entry_t *e, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].id, id) == 0)
            return (int)i;
    return -1;
}

static bool has_audit(const backup_manifest_t *m)
{
    for (size_t i = 0; i < m->n_files; i++)
        if (strcmp(m->files[i].component, "audit") == 0)
            return true;
    return false;
}

static void need(json_t *needed, const backup_file_t *f)
{
    char k[BACKUP_ID_MAX + 64];
    snprintf(k, sizeof(k), "%s/%s", f->holder, f->stored);
    json_object_set_new(needed, k, json_true());
}

static bool holds_needed(json_t *needed, const char *id)
{
    const char *k;
    json_t *v;
    size_t n = strlen(id);
    json_object_foreach(needed, k, v)
    {
        if (strncmp(k, id, n) == 0 && k[n] == '/')
            return true;
    }
    return false;
}

static uint64_t tree_bytes(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return (uint64_t)st.st_size;
    uint64_t sum = 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) < (int)sizeof(sub))
            sum += tree_bytes(sub);
    }
    closedir(d);
    return sum;
}

/* Removes the data files of backup e (directory dir) that nothing needs; counts the bytes. */
static void drop_unneeded(const char *dir, const entry_t *e, json_t *needed, uint64_t *freed)
{
    char data[PATH_MAX];
    DIR *d = backup_path_join(data, sizeof(data), dir, "data") < 0 ? NULL : opendir(data);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char k[BACKUP_ID_MAX + 64], p[PATH_MAX];
        char kd[BACKUP_ID_MAX + 8];
        if (backup_path_join(kd, sizeof(kd), e->id, "data") < 0 ||
            backup_path_join(k, sizeof(k), kd, de->d_name) < 0 || json_object_get(needed, k) ||
            backup_path_join(p, sizeof(p), data, de->d_name) < 0)
            continue;
        uint64_t sz = tree_bytes(p);
        if (unlink(p) == 0)
            *freed += sz;
    }
    closedir(d);
    util_fsync_dir(data);
}

/* Rewrites e's manifest as audit-only, then removes data files nobody needs. On a full
 * repository (review47 #2) the new manifest has no room before they are gone: then they go
 * first. An interruption between the two leaves this expired backup naming files it no
 * longer has (verify says so) until the next prune rewrites its manifest; nothing kept
 * needs them. */
static int reduce(const char *repo, entry_t *e, const backup_key_t *key, json_t *needed, int64_t now,
                  uint64_t *freed, char *err, size_t errlen)
{
    backup_manifest_t *old = e->m, *m = backup_manifest_new();
    if (!m)
        return -ENOMEM;
    int r = 0;
    memcpy(m->id, old->id, sizeof(m->id));
    snprintf(m->type, sizeof(m->type), "audit-only");
    m->timestamp_ms = old->timestamp_ms;
    memcpy(m->key_fingerprint, old->key_fingerprint, sizeof(m->key_fingerprint));
    m->key_id = old->key_id ? strdup(old->key_id) : NULL;
    m->tool_version = old->tool_version ? strdup(old->tool_version) : NULL;
    m->host = old->host ? strdup(old->host) : NULL;
    json_object_update(m->source, old->source);
    json_array_extend(m->notes, old->notes);
    char ts[ISO8601_LEN], note[256];
    util_iso8601(now, ts);
    snprintf(note, sizeof(note),
             "reduced to its audit files by prune at %s (was %s%s%s): other components expired after "
             "BACKUP_RETENTION_DAYS",
             ts, old->type, old->parent[0] ? ", parent " : "", old->parent);
    json_array_append_new(m->notes, json_string(note));
    uint64_t files = 0, bytes = 0;
    for (size_t i = 0; i < old->n_files && r == 0; i++) {
        const backup_file_t *f = &old->files[i];
        if (strcmp(f->component, "audit") != 0)
            continue;
        r = backup_manifest_add_file(m, f);
        m->total_size += f->size;
        if (strcmp(f->holder, m->id) == 0)
            m->stored_here += f->stored_size;
        files++;
        bytes += f->size;
    }
    if (files)
        json_object_set_new(m->components, "audit",
                            json_pack("{s:I,s:I}", "files", (json_int_t)files, "bytes", (json_int_t)bytes));
    char dir[PATH_MAX], mpath[PATH_MAX];
    backup_repo_path(repo, e->id, NULL, dir, sizeof(dir));
    backup_repo_path(repo, e->id, BACKUP_MANIFEST_FILE, mpath, sizeof(mpath));
    char *text = r == 0 ? backup_manifest_dump(m, key) : NULL;
    if (!text) {
        backup_manifest_free(m);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = util_write_file_atomic(mpath, text, strlen(text), 0600);
    if (r == -ENOSPC || r == -EDQUOT) {
        drop_unneeded(dir, e, needed, freed);
        r = util_write_file_atomic(mpath, text, strlen(text), 0600);
    }
    free(text);
    backup_manifest_free(m);
    if (r < 0) {
        snprintf(err, errlen, "rewriting %s: %s", mpath, strerror(-r));
        return r;
    }
    /* The new manifest is durable: now drop unneeded data files. */
    drop_unneeded(dir, e, needed, freed);
    return 0;
}

static int delete_backup(const char *repo, const char *id, uint64_t *freed, char *err, size_t errlen)
{
    char dir[PATH_MAX], hidden[PATH_MAX];
    backup_repo_path(repo, id, NULL, dir, sizeof(dir));
    snprintf(hidden, sizeof(hidden), "%s/.%s.deleting", repo, id);
    uint64_t sz = tree_bytes(dir);
    util_rmtree(hidden);
    if (rename(dir, hidden) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot remove %s: %s", dir, strerror(e));
        return -e;
    }
    util_fsync_dir(repo);
    util_rmtree(hidden);
    *freed += sz;
    return 0;
}

/* The write lock (no backup, prune or in-place restore runs: waited for LOCK_WAIT_MS, then
 * prune gives up, as a backup does) and the reader lock exclusively (no check, verify or
 * restore reads). Readers are waited for up to READERS_WAIT_MS, but not while holding the
 * write lock: a backup that starts meanwhile runs (and prune, finding it, gives up).
 * 0, or -EWOULDBLOCK with err naming who is busy. */
static int lock_both(const char *repo, int *wlock, int *rlock, char *err, size_t errlen)
{
    int64_t deadline = util_mono_ns() / 1000000 + READERS_WAIT_MS;
    bool said = false;
    for (;;) {
        *wlock = backup_repo_lock(repo, BACKUP_LOCK_WRITE, false, LOCK_WAIT_MS, err, errlen);
        if (*wlock < 0)
            return *wlock;
        *rlock = backup_repo_lock(repo, BACKUP_LOCK_READ_EXCLUSIVE, false, 0, err, errlen);
        if (*rlock >= 0)
            return 0;
        backup_repo_unlock(*wlock);
        *wlock = -1;
        if (*rlock != -EWOULDBLOCK || util_mono_ns() / 1000000 >= deadline)
            return *rlock;
        if (!said) {
            fprintf(stderr, "aimedres: prune: %s; waiting (up to %d minutes)\n", err, READERS_WAIT_MS / 60000);
            said = true;
        }
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
}

static void cleanup_deleting(const char *repo)
{
    DIR *d = opendir(repo);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' && n > 9 && strcmp(de->d_name + n - 9, ".deleting") == 0) {
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/%s", repo, de->d_name);
            util_rmtree(p);
        }
    }
    closedir(d);
}

int backup_prune(const char *repo, const backup_settings_t *s, const backup_key_t *key,
                 const backup_prune_opts_t *o, json_t **ret, char *err, size_t errlen)
{
    int64_t now = o->now_ms ? o->now_ms : util_now_ms();
    int wlock = -1, rlock = -1, r = 0;
    char **ids = NULL;
    size_t n = 0;
    entry_t *e = NULL;
    json_t *needed = json_object();
    json_t *rep = json_pack("{s:s,s:b,s:[],s:[],s:[],s:[],s:[],s:I}", "repo", repo, "dry_run", o->dry_run, "kept",
                            "reduced", "deleted", "untouched", "failed", "freed_bytes", (json_int_t)0);
    if ((r = backup_repo_require(repo, err, errlen)) < 0)
        goto out;
    if (!o->dry_run) {
        if ((r = lock_both(repo, &wlock, &rlock, err, errlen)) < 0)
            goto out;
        backup_repo_clean_partials(repo);
        cleanup_deleting(repo);
    }
    if ((r = backup_repo_list(repo, &ids, &n)) < 0) {
        snprintf(err, errlen, "cannot list %s: %s", repo, strerror(-r));
        goto out;
    }
    e = calloc(n + 1, sizeof(*e));
    if (!e) {
        r = -ENOMEM;
        goto out;
    }
    char latest[BACKUP_ID_MAX] = "";
    backup_repo_latest(repo, latest);
    for (size_t i = 0; i < n; i++) {
        char dir[PATH_MAX];
        e[i].id = ids[i];
        backup_repo_path(repo, ids[i], NULL, dir, sizeof(dir));
        if (backup_manifest_load(dir, key, &e[i].m, e[i].error, sizeof(e[i].error)) < 0)
            e[i].state = ST_UNTOUCHED;
    }
    /* Keep: the newest keep_min, the young, latest. */
    int keep_min = s->keep_min < 1 ? 1 : s->keep_min, count = 0;
    for (size_t k = n; k-- > 0;) {
        if (e[k].state == ST_UNTOUCHED || strcmp(e[k].m->type, "audit-only") == 0)
            continue;
        if (count < keep_min || now - e[k].m->timestamp_ms < (int64_t)s->retention_days * DAY_MS ||
            strcmp(e[k].id, latest) == 0) {
            e[k].state = ST_KEEP;
            count++;
        }
    }
    /* ...and, transitively, their parents and the holders of their files. */
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < n; i++) {
            if (e[i].state != ST_KEEP)
                continue;
            int p = e[i].m->parent[0] ? find(e, n, e[i].m->parent) : -1;
            if (p >= 0 && e[p].state == ST_DELETE) {
                e[p].state = ST_KEEP;
                changed = true;
            }
            for (size_t f = 0; f < e[i].m->n_files; f++) {
                int h = find(e, n, e[i].m->files[f].holder);
                if (h >= 0 && e[h].state == ST_DELETE) {
                    e[h].state = ST_KEEP;
                    changed = true;
                }
            }
        }
    }
    /* Reduce: expired but within the audit retention and holding audit files. */
    for (size_t i = 0; i < n; i++)
        if (e[i].state == ST_DELETE &&
            now - e[i].m->timestamp_ms < (int64_t)s->audit_retention_days * DAY_MS && has_audit(e[i].m))
            e[i].state = ST_REDUCE;
    for (bool changed = true; changed;) {
        changed = false;
        json_object_clear(needed);
        for (size_t i = 0; i < n; i++) {
            if (e[i].state == ST_KEEP)
                for (size_t f = 0; f < e[i].m->n_files; f++)
                    need(needed, &e[i].m->files[f]);
            if (e[i].state == ST_REDUCE)
                for (size_t f = 0; f < e[i].m->n_files; f++)
                    if (strcmp(e[i].m->files[f].component, "audit") == 0)
                        need(needed, &e[i].m->files[f]);
        }
        for (size_t i = 0; i < n; i++)
            if (e[i].state == ST_DELETE && holds_needed(needed, e[i].id)) {
                e[i].state = ST_REDUCE;
                changed = true;
            }
    }

    /* Deletions first (they write nothing, and free what a full repository's reductions need),
     * then reductions; one that fails does not stop the others (review47 #2): the run fails
     * with the first error, and each failed backup is listed under "failed". */
    uint64_t freed = 0;
    int first = 0;
    char one[PATH_MAX + 256];
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < n; i++) {
            const char *list = NULL;
            int rc = 0;
            one[0] = '\0';
            if (pass == 0 && e[i].state == ST_DELETE) {
                list = "deleted";
                if (!o->dry_run)
                    rc = delete_backup(repo, e[i].id, &freed, one, sizeof(one));
            } else if (pass == 1 && e[i].state == ST_REDUCE) {
                list = strcmp(e[i].m->type, "audit-only") == 0 ? "kept" : "reduced";
                if (!o->dry_run && strcmp(list, "reduced") == 0)
                    rc = reduce(repo, &e[i], key, needed, now, &freed, one, sizeof(one));
            } else if (pass == 2 && e[i].state == ST_KEEP) {
                list = "kept";
            } else if (pass == 2 && e[i].state == ST_UNTOUCHED) {
                json_array_append_new(json_object_get(rep, "untouched"),
                                      json_pack("{s:s,s:s}", "id", e[i].id, "error", e[i].error));
            }
            if (rc < 0) {
                json_array_append_new(json_object_get(rep, "failed"),
                                      json_pack("{s:s,s:s}", "id", e[i].id, "error", one));
                if (first == 0) {
                    first = rc;
                    snprintf(err, errlen, "%s", one);
                }
            } else if (list) {
                json_array_append_new(json_object_get(rep, list), json_string(e[i].id));
            }
        }
    }
    json_object_set_new(rep, "freed_bytes", json_integer((json_int_t)freed));
    r = first;
out:
    if (r < 0)
        json_object_set_new(rep, "error", json_string(err));
    if (e)
        for (size_t i = 0; i < n; i++)
            backup_manifest_free(e[i].m);
    free(e);
    backup_repo_ids_free(ids, n);
    json_decref(needed);
    backup_repo_unlock(rlock);
    backup_repo_unlock(wlock);
    *ret = rep;
    return r;
}
