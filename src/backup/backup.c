/* SPDX-License-Identifier: Apache-2.0 */
/* backup_create and the offsite copy (see backup.h for the states of a backup). Files are
 * streamed one at a time through backup_stream_encrypt, so memory stays bounded whatever
 * their size; the only plaintext copy made is the database snapshot, next to the database. */
#include "backup/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/record.h"
#include "audit/snapshot.h"
#include "backup/fsutil.h"
#include "backup/interrupt.h"
#include "backup/pool.h"
#include "backup/progress.h"
#include "backup/repo.h"
#include "backup/restore.h"
#include "backup/snapshot.h"
#include "backup/verify.h"
#include "common/buildinfo.h"
#include "common/util.h"

#define MAX_DEPTH 32
#define LOCK_WAIT_MS 2000

/* One file to back up. */
typedef struct item {
    char *src;             /* absolute source path (the snapshot for the database) */
    char *path;            /* manifest path "<area>/<rel>" */
    const char *component; /* static string */
    uint64_t size;
    int64_t mtime_ns;
    uint32_t mode;
    bool is_db;
    int fd; /* owned; >= 0: the audit cut (add_audit): exactly size bytes of this open file */
} item_t;

typedef struct plan {
    item_t *items;
    size_t n, cap;
    uint64_t bytes;
    json_t *notes; /* borrowed: the manifest's notes array */
} plan_t;

static void plan_free(plan_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].src);
        free(p->items[i].path);
        if (p->items[i].fd >= 0)
            close(p->items[i].fd);
    }
    free(p->items);
}

static void note(json_t *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(json_t *notes, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(notes, json_string(buf));
}

static int64_t mtime_ns_of(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

static int plan_add(plan_t *p, const char *src, const char *path, const char *component,
                    const struct stat *st, bool is_db)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        item_t *ni = realloc(p->items, cap * sizeof(*ni));
        if (!ni)
            return -ENOMEM;
        p->items = ni;
        p->cap = cap;
    }
    item_t *it = &p->items[p->n];
    it->src = strdup(src);
    it->path = strdup(path);
    if (!it->src || !it->path) {
        free(it->src);
        free(it->path);
        return -ENOMEM;
    }
    it->component = component;
    it->size = (uint64_t)st->st_size;
    it->mtime_ns = mtime_ns_of(st);
    it->mode = st->st_mode & 07777;
    it->is_db = is_db;
    it->fd = -1;
    p->n++;
    p->bytes += it->size;
    return 0;
}

typedef struct walk_stats {
    size_t hidden, symlinks, other;
} walk_stats_t;

/* Adds every regular file under dir (recursively) as "<rel>/<name>". Hidden entries
 * (names starting with '.': staging areas of writers in progress) are skipped and counted;
 * so are symlinks, except in the models component, where they are followed. */
static int walk(plan_t *p, const char *dir, const char *rel, const char *component, int depth,
                walk_stats_t *ws)
{
    if (depth > MAX_DEPTH)
        return -ELOOP;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (name[0] == '.') {
            ws->hidden++;
            continue;
        }
        char src[PATH_MAX], sub[PATH_MAX];
        if (snprintf(src, sizeof(src), "%s/%s", dir, name) >= (int)sizeof(src) ||
            snprintf(sub, sizeof(sub), "%s/%s", rel, name) >= (int)sizeof(sub)) {
            r = -ENAMETOOLONG;
            break;
        }
        struct stat st;
        if (lstat(src, &st) < 0) {
            if (errno == ENOENT)
                continue; /* removed while we walk */
            r = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode))
            r = walk(p, src, sub, component, depth + 1, ws);
        else if (S_ISREG(st.st_mode))
            r = plan_add(p, src, sub, component, &st, false);
        else if (S_ISLNK(st.st_mode) && strcmp(component, "models") == 0 && stat(src, &st) == 0 &&
                 (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
            /* the server serves a model through a link, so the backup takes what it points at
             * (stored as ordinary files; MAX_DEPTH stops a loop) */
            r = S_ISDIR(st.st_mode) ? walk(p, src, sub, component, depth + 1, ws)
                                    : plan_add(p, src, sub, component, &st, false);
        else if (S_ISLNK(st.st_mode))
            ws->symlinks++;
        else
            ws->other++;
        if (r < 0)
            break;
    }
    closedir(d);
    return r;
}

static int add_tree(plan_t *p, const char *root, const char *area, const char *component, const char *what,
                    char *err, size_t errlen)
{
    struct stat st;
    if (!root || stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
        note(p->notes, "%s: %s does not exist, nothing to back up", what, root ? root : "(unset)");
        return 0;
    }
    walk_stats_t ws = {0};
    int r = walk(p, root, area, component, 0, &ws);
    if (r < 0) {
        snprintf(err, errlen, "%s: reading %s: %s", what, root, strerror(-r));
        return r;
    }
    if (ws.hidden)
        note(p->notes, "%s: skipped %zu hidden entries (staging areas)", what, ws.hidden);
    if (ws.symlinks)
        note(p->notes, "%s: skipped %zu symbolic links", what, ws.symlinks);
    if (ws.other)
        note(p->notes, "%s: skipped %zu special files", what, ws.other);
    return 0;
}

/* A repository (or the offsite copy) inside a tree the backup reads would put every backup
 * into the next one, which then grows without end: refused. */
static int repo_outside_sources(const backup_settings_t *s, char *err, size_t errlen)
{
    char baseline[PATH_MAX];
    backup_path_join(baseline, sizeof(baseline), s->data_dir, "baseline");
    const struct {
        const char *name, *path;
    } sources[] = {{"MODEL_STORAGE_PATH", s->model_storage_path},
                   {"DATA_DIR/baseline", baseline},
                   {"RESULTS_PATH", s->results_path}};
    const struct {
        const char *name, *path;
    } repos[] = {{"BACKUP_PATH", s->backup_path}, {"BACKUP_OFFSITE_DIR", s->offsite_dir}};
    for (size_t i = 0; i < ARRAY_SIZE(repos); i++)
        for (size_t k = 0; k < ARRAY_SIZE(sources); k++)
            if (backup_path_within(repos[i].path, sources[k].path)) {
                snprintf(err, errlen,
                         "%s %s lies inside %s %s, which is backed up: every backup would contain the "
                         "previous ones; put the repository elsewhere",
                         repos[i].name, repos[i].path, sources[k].name, sources[k].path);
                return -EINVAL;
            }
    return 0;
}

/* Adds one file of the audit cut (its descriptor moves into the plan): the bytes it held
 * under the writer's lock, whatever is appended after. */
static int add_cut(plan_t *p, const char *src, const char *name, audit_snapshot_file_t *f)
{
    char path[PATH_MAX];
    if (backup_path_join(path, sizeof(path), "audit", name) < 0)
        return -ENAMETOOLONG;
    int r = plan_add(p, src, path, "audit", &f->st, false);
    if (r < 0)
        return r;
    p->items[p->n - 1].fd = f->fd;
    f->fd = -1;
    return 0;
}

static bool same_file(const struct stat *a, const audit_snapshot_file_t *f)
{
    return f->st.st_nlink > 0 && a->st_dev == f->st.st_dev && a->st_ino == f->st.st_ino;
}

/* Files in dirname(AUDIT_LOG_PATH) whose names start with basename(AUDIT_LOG_PATH): the
 * log, its rotated archives and checkpoints. The active log and <log>.checkpoints are one
 * consistent cut, taken first (audit/snapshot.h: opened and measured under the writer's
 * flock, released at once, read later only up to those sizes), so a backup of a server
 * that is writing never holds a checkpoint beyond its log, nor the reverse. Archives are
 * immutable and listed after the cut; one that is the cut's log renamed by a rotation
 * since is skipped (its bytes are the cut's). A lock that stays held, or checkpoints or
 * archives without the active log, fail the backup: never an inconsistent pair. */
static int add_audit(plan_t *p, const char *audit_log_path, char *err, size_t errlen)
{
    if (!audit_log_path) {
        note(p->notes, "audit: AUDIT_LOG_PATH is not set, no audit files backed up");
        return 0;
    }
    char dir[PATH_MAX], prefix[NAME_MAX + 1], ckpt_path[PATH_MAX];
    util_dirname(audit_log_path, dir, sizeof(dir));
    snprintf(prefix, sizeof(prefix), "%s", util_basename(audit_log_path));
    audit_path_checkpoints(audit_log_path, ckpt_path, sizeof(ckpt_path));
    const char *ckpt_name = util_basename(ckpt_path);
    DIR *d = opendir(dir);
    if (!d) {
        note(p->notes, "audit: %s does not exist, no audit files backed up", dir);
        return 0;
    }
    size_t plen = strlen(prefix), n = 0;
    audit_snapshot_t cut = {.log = {.fd = -1}, .ckpt = {.fd = -1}};
    struct stat lst;
    bool have_log = plen > 0 && stat(audit_log_path, &lst) == 0;
    int r = 0;
    if (have_log) {
        char serr[1024] = "";
        r = audit_snapshot_take(audit_log_path, AUDIT_LOCK_WAIT_MS, &cut, serr, sizeof(serr));
        if (r == 0 && cut.log.fd < 0) {
            r = -ENOENT;
            snprintf(serr, sizeof(serr), "the audit log %s vanished while the backup took it",
                     audit_log_path);
        }
        if (r < 0) {
            snprintf(err, errlen, "audit: %s", serr);
            goto done;
        }
        if ((r = add_cut(p, audit_log_path, prefix, &cut.log)) < 0 ||
            (cut.ckpt.fd >= 0 && (r = add_cut(p, ckpt_path, ckpt_name, &cut.ckpt)) < 0)) {
            snprintf(err, errlen, "audit: %s", strerror(-r));
            goto done;
        }
        n = 1 + (cut.ckpt.st.st_nlink > 0);
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t nlen = strlen(de->d_name);
        if (plen == 0 || strncmp(de->d_name, prefix, plen) != 0 ||
            (nlen > 5 && strcmp(de->d_name + nlen - 5, ".lock") == 0)) /* the writer's lock, not data */
            continue;
        bool is_log = strcmp(de->d_name, prefix) == 0, is_ckpt = strcmp(de->d_name, ckpt_name) == 0;
        if (have_log && (is_log || is_ckpt))
            continue; /* taken in the cut */
        char src[PATH_MAX], path[PATH_MAX];
        struct stat st;
        if (backup_path_join(src, sizeof(src), dir, de->d_name) < 0 ||
            backup_path_join(path, sizeof(path), "audit", de->d_name) < 0 || lstat(src, &st) < 0 ||
            !S_ISREG(st.st_mode) || is_log) /* is_log: created since the stat above (a starting writer) */
            continue;
        if (same_file(&st, &cut.log) || same_file(&st, &cut.ckpt))
            continue; /* renamed by a rotation after the cut: its bytes are in the cut */
        if (!have_log && (is_ckpt || (de->d_name[plen] == '.' && de->d_name[plen + 1] >= '0' &&
                                      de->d_name[plen + 1] <= '9'))) {
            r = -ENOENT;
            snprintf(err, errlen,
                     "audit: the audit log %s does not exist, but %s does: the audit files are incomplete "
                     "(run `aimedres audit verify`); no backup was made rather than an inconsistent copy",
                     audit_log_path, src);
            goto done;
        }
        if ((r = plan_add(p, src, path, "audit", &st, false)) < 0) {
            snprintf(err, errlen, "audit: %s", strerror(-r));
            goto done;
        }
        n++;
    }
    if (n == 0)
        note(p->notes, "audit: no files named %s* in %s yet", prefix, dir);
    else if (!have_log)
        note(p->notes, "audit: the audit log %s does not exist yet", audit_log_path);
done:
    audit_snapshot_release(&cut);
    closedir(d);
    return r;
}

static int cmp_items(const void *a, const void *b)
{
    return strcmp(((const item_t *)a)->path, ((const item_t *)b)->path);
}

/* ------------------------------------------------------------------ writing */

/* What a worker decided for one plan item. */
typedef struct slot {
    backup_file_t f; /* f.stored is owned when the file was stored here */
    bool referenced;
    bool verified; /* stored here, read back from the disk and checked (store_item) */
    bool done;
} slot_t;

typedef struct run {
    const backup_settings_t *s;
    const backup_key_t *key;
    backup_manifest_t *m;
    const backup_manifest_t *parent; /* NULL for full */
    plan_t *plan;
    slot_t *slots;
    char partial[PATH_MAX];
    char snap[PATH_MAX]; /* the database snapshot ("" when none) */
    bool snap_made;
    int snap_hold; /* its flock (backup_snapshot_take) while snap_made */
    /* PRAGMA integrity_check of the snapshot, on its own thread beside the file streams */
    pthread_t ic_thread;
    bool ic_started;
    int ic_rc;
    double ic_seconds;
    char ic_err[1024];
    /* the snapshot's removal, on its own thread while the manifest is written and checked */
    pthread_t rm_thread;
    bool rm_started;
    int64_t snap_ns, dbinfo_ns; /* wall time of the snapshot and of db_info (phases) */
    json_t *bad;                /* files whose read-back failed: {"path","stored","error"} */
    json_t *damaged; /* referenced copies that failed to decrypt, stored afresh: {"path","holder",…} */
    backup_progress_t prog;
    pthread_mutex_t mu; /* guards notes, m->db, err */
    char err[2048];
} run_t;

static void run_note(run_t *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run_note(run_t *run, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&run->mu);
    json_array_append_new(run->m->notes, json_string(buf));
    pthread_mutex_unlock(&run->mu);
}

static int run_fail(run_t *run, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_fail(run_t *run, int r, const char *fmt, ...)
{
    pthread_mutex_lock(&run->mu);
    if (!run->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(run->err, sizeof(run->err), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&run->mu);
    return r;
}

static int fsync_fd_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Can the parent's entry for it be referenced? Hashes the source only when size (and
 * mtime) already match; the referenced bytes must still be where the parent says. */
static int try_reference(run_t *run, const item_t *it, backup_file_t *out, bool *ret_ok)
{
    *ret_ok = false;
    if (!run->parent)
        return 0;
    const backup_file_t *pf = backup_manifest_find(run->parent, it->path);
    if (!pf || pf->size != it->size || (!it->is_db && pf->mtime_ns != it->mtime_ns))
        return 0;
    char held[PATH_MAX];
    struct stat st;
    if (backup_repo_path(run->s->backup_path, pf->holder, pf->stored, held, sizeof(held)) < 0 ||
        stat(held, &st) < 0 || (uint64_t)st.st_size != pf->stored_size) {
        run_note(run, "%s: the copy in %s is missing or damaged; stored again", it->path, pf->holder);
        return 0;
    }
    char sha[SHA256_HEX_LEN];
    int r = it->fd >= 0 ? util_sha256_fd(it->fd, it->size, sha) : util_sha256_file(it->src, sha);
    if (r < 0)
        return r;
    backup_progress_add(&run->prog, it->size);
    if (strcmp(sha, pf->sha256) != 0)
        return 0; /* same size and mtime but other content: store it */
    out->size = pf->size;
    memcpy(out->sha256, pf->sha256, sizeof(out->sha256));
    memcpy(out->holder, pf->holder, sizeof(out->holder));
    out->stored = pf->stored; /* borrowed from the parent manifest */
    out->stored_size = pf->stored_size;
    memcpy(out->nonce, pf->nonce, sizeof(out->nonce));
    *ret_ok = true;
    return 0;
}

/* Tests only: AIMEDRES_BACKUP_FAULT_INJECT="flip-after-write=<manifest path>" flips one bit
 * in the middle of that file's stored stream once it is written and fsynced, i.e. damage on
 * the disk between the write and the read-back, which the read-back must catch (the backup
 * then fails and `latest` stays where it was). Unset: nothing happens. */
static void inject_fault(const char *path, const char *dst, uint64_t stored_size)
{
    static const char prefix[] = "flip-after-write=";
    const char *f = getenv("AIMEDRES_BACKUP_FAULT_INJECT");
    if (!f || strncmp(f, prefix, sizeof(prefix) - 1) != 0 || strcmp(f + sizeof(prefix) - 1, path) != 0)
        return;
    int fd = open(dst, O_RDWR | O_CLOEXEC);
    uint8_t b;
    off_t at = (off_t)(stored_size / 2);
    if (fd >= 0 && pread(fd, &b, 1, at) == 1) {
        b ^= 0x10;
        if (pwrite(fd, &b, 1, at) == 1 && fsync(fd) == 0)
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    }
    if (fd >= 0)
        close(fd);
}

static int store_item(run_t *run, size_t idx, const item_t *it, backup_file_t *out)
{
    char stored[32], dst[PATH_MAX], binding[BACKUP_ID_MAX + 40];
    snprintf(stored, sizeof(stored), "data/%06zu", idx + 1);
    if (backup_path_join(dst, sizeof(dst), run->partial, stored) < 0)
        return run_fail(run, -ENAMETOOLONG, "path too long");
    snprintf(binding, sizeof(binding), "%s/%s", run->m->id, stored);
    /* the audit cut (it->fd): exactly its bytes, from its start, whatever was appended since */
    bool cut = it->fd >= 0;
    int in = cut ? it->fd : open(it->src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0 || (cut && lseek(in, 0, SEEK_SET) < 0)) {
        int e = errno;
        return run_fail(run, -e, "%s: %s", it->src, strerror(e));
    }
    posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
    struct stat st;
    if (!cut && fstat(in, &st) == 0 && !it->is_db)
        out->mtime_ns = mtime_ns_of(&st); /* the cut's: taken with it */
    int o = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (o < 0) {
        int e = errno;
        if (!cut)
            close(in);
        return run_fail(run, -e, "%s: %s", dst, strerror(e));
    }
    backup_stream_opts_t so = {
        .binding = binding,
        .level = run->s->compression_level,
        .exact = cut,
        .exact_size = it->size,
        .progress = backup_progress_add,
        .progress_arg = &run->prog,
    };
    backup_stream_result_t res;
    char serr[512] = "";
    int r = backup_stream_encrypt(run->key, in, o, &so, &res, serr, sizeof(serr));
    if (!cut)
        close(in);
    else if (r == -ENODATA)
        snprintf(serr, sizeof(serr), "the audit cut of %s: the file is shorter than when the backup took it "
                 "(truncated since)", it->src);
    if (r == 0 && fsync(o) < 0) {
        r = -errno;
        snprintf(serr, sizeof(serr), "fsync: %s", strerror(errno));
    }
    /* Drop the now clean pages so the verification pass reads what is on the disk, not
     * what is still in the page cache. */
    if (r == 0)
        posix_fadvise(o, 0, 0, POSIX_FADV_DONTNEED);
    if (close(o) < 0 && r == 0) {
        r = -errno;
        snprintf(serr, sizeof(serr), "close: %s", strerror(errno));
    }
    if (r < 0 && (r == -ENOSPC || r == -EDQUOT)) /* the repository's volume, not the source's (review47 #9) */
        return run_fail(run, r, "%s: %s: the repository is full (BACKUP_PATH %s)", it->path, serr,
                        run->s->backup_path);
    if (r < 0)
        return run_fail(run, r, "%s: %s", it->path, serr);
    out->size = res.plain_size; /* what was read, should the file have changed since listed */
    memcpy(out->sha256, res.sha256, SHA256_HEX_LEN);
    snprintf(out->holder, sizeof(out->holder), "%s", run->m->id);
    out->stored = strdup(stored);
    out->stored_size = res.stored_size;
    backup_hex(res.nonce, BACKUP_NONCE_BYTES, out->nonce);
    if (!out->stored)
        return -ENOMEM;
    inject_fault(it->path, dst, res.stored_size);
    /* Read it back now, from the disk (fsynced, its pages dropped from the cache above),
     * while the other workers still compress: every chunk must authenticate under this
     * backup's binding, and the file must decrypt to the size and sha256 just recorded.
     * The final pass (verify_written) checks the manifest read back against these results,
     * so the whole backup is still read back before it is published. */
    r = backup_file_decrypt(run->s->backup_path, out, dst, run->key, -1, &run->prog, serr, sizeof(serr));
    if (r < 0) {
        pthread_mutex_lock(&run->mu);
        json_array_append_new(run->bad,
                              json_pack("{s:s,s:s,s:s}", "path", it->path, "stored", stored, "error", serr));
        pthread_mutex_unlock(&run->mu);
        return run_fail(run, -EIO, "verification failed: %s: %s", it->path, serr);
    }
    return 0;
}

/* Record counts of the snapshot, for restore checks and the drill (read-only: the file is
 * not written, so it may run beside the integrity_check). */
static json_t *db_info(const char *snapshot, const char *db_path)
{
    char err[256];
    int64_t preds = -1, nver = 0;
    int schema = -1;
    if (backup_db_counts(snapshot, &preds, &nver, &schema, err, sizeof(err)) < 0)
        return json_pack("{s:s,s:s}", "file", util_basename(db_path), "error", err);
    return json_pack("{s:s,s:I,s:I,s:i}", "file", util_basename(db_path), "predictions", (json_int_t)preds,
                     "model_versions", (json_int_t)nver, "schema_version", schema);
}

static void *integrity_main(void *arg)
{
    run_t *run = arg;
    int64_t t0 = util_mono_ns();
    run->ic_rc = backup_db_integrity_check(run->snap, run->ic_err, sizeof(run->ic_err));
    run->ic_seconds = (double)(util_mono_ns() - t0) / 1e9;
    return NULL;
}

/* Waits for the snapshot's integrity_check (if started) and records it in the manifest's
 * db object, bound to the sha256 of the bytes that were checked, which are the bytes the
 * backup stored: the snapshot is private to this process (created O_EXCL, 0600, named with
 * our pid), the SQLite backup API closed it before the check started, and nothing writes
 * it after (db_info and the check open it read-only and immutable, the stream reads it). */
static void integrity_join(run_t *run, const char *sha256)
{
    if (!run->ic_started)
        return;
    pthread_join(run->ic_thread, NULL);
    run->ic_started = false;
    if (!sha256 || !run->m->db)
        return;
    bool ok = run->ic_rc == 0;
    json_t *ic =
        json_pack("{s:s,s:s,s:s,s:s,s:f}", "pragma", "integrity_check", "result", ok ? "ok" : "failed",
                  "sha256", sha256, "sqlite_version", sqlite3_libversion(), "seconds", run->ic_seconds);
    if (!ok)
        json_object_set_new(ic, "error",
                            json_string(run->ic_err[0] ? run->ic_err : "integrity_check failed"));
    json_object_set_new(run->m->db, "integrity", ic);
    if (!ok)
        note(run->m->notes,
             "db: PRAGMA integrity_check of the snapshot FAILED (%s): the live database is damaged; restore "
             "will refuse this backup's database",
             run->ic_err);
}

/* The database item: take the snapshot first (in this worker, while others stream files),
 * start its integrity_check, read its record counts, then stream it. */
static int snapshot_item(run_t *run, item_t *it)
{
    char serr[512] = "";
    int64_t t0 = util_mono_ns();
    backup_interrupt_add(run->snap); /* plaintext: SIGTERM/SIGINT remove it (and end the run) */
    int r = backup_snapshot_take(run->s->db_path, run->snap, &run->snap_hold, serr, sizeof(serr));
    if (r < 0) {
        /* the snapshot is written next to the database: a full database volume reads as "disk
         * I/O error" in SQLite's words (review47 #8, #9), so say how much room there was */
        char room[256] = "", dir[PATH_MAX];
        uint64_t db_bytes, free_b;
        if (backup_db_room(run->s->db_path, dir, sizeof(dir), &db_bytes, &free_b) == 0 &&
            free_b < db_bytes + (1u << 20)) {
            char f[24], d[24];
            backup_format_bytes(free_b, f, sizeof(f));
            backup_format_bytes(db_bytes, d, sizeof(d));
            snprintf(room, sizeof(room), " (the snapshot is written next to the database: %.120s has %s free, the "
                     "database is %s)", dir, f, d);
        }
        return run_fail(run, r, "database snapshot: %s%s", serr, room);
    }
    run->snap_made = true;
    int64_t t1 = util_mono_ns();
    run->snap_ns = t1 - t0;
    struct stat st;
    if (stat(run->snap, &st) < 0) {
        int e = errno;
        return run_fail(run, -e, "snapshot vanished: %s", strerror(e));
    }
    run->prog.total += (uint64_t)st.st_size - it->size; /* the estimate was the database file */
    it->size = (uint64_t)st.st_size;
    /* the full PRAGMA integrity_check, once per backup, while this worker streams the same
     * (now immutable) file: restore proves its copy identical by sha256 (see restore.h) */
    if (pthread_create(&run->ic_thread, NULL, integrity_main, run) == 0)
        run->ic_started = true;
    else
        run_note(run, "db: could not start the integrity_check thread; restore will run the check");
    int64_t t2 = util_mono_ns();
    json_t *info = db_info(run->snap, run->s->db_path); /* read-only, beside the check */
    run->dbinfo_ns = util_mono_ns() - t2;
    pthread_mutex_lock(&run->mu);
    run->m->db = info;
    pthread_mutex_unlock(&run->mu);
    return 0;
}

static int process_item(void *arg, size_t i)
{
    run_t *run = arg;
    item_t *it = &run->plan->items[i];
    slot_t *sl = &run->slots[i];
    int r;
    if (it->is_db && (r = snapshot_item(run, it)) < 0)
        return r;
    backup_file_t *f = &sl->f;
    memset(f, 0, sizeof(*f));
    f->size = it->size;
    f->mtime_ns = it->mtime_ns;
    f->mode = it->mode;
    if ((r = try_reference(run, it, f, &sl->referenced)) < 0)
        return run_fail(run, r, "%s: %s", it->src, strerror(-r));
    if (sl->referenced) {
        /* Read the referenced bytes back from their holder now, on this worker: a damaged
         * copy in an old backup must not fail every later incremental at the very end. The
         * live file has the sha256 the reference wanted, so it is stored afresh here and the
         * damaged holder is named for the operator. */
        char derr[512] = "";
        f->path = it->path;
        r = backup_file_decrypt(run->s->backup_path, f, NULL, run->key, -1, &run->prog, derr, sizeof(derr));
        if (r == 0) {
            sl->verified = true;
        } else {
            char holder[BACKUP_ID_MAX], stored[32];
            snprintf(holder, sizeof(holder), "%s", f->holder);
            snprintf(stored, sizeof(stored), "%s", f->stored ? f->stored : "?");
            run_note(run,
                     "%s: its copy in backup %s (%s) is damaged (%s): stored afresh from the live file; "
                     "run `aimedres backup verify --all` (older backups referencing it are damaged too) "
                     "and `aimedres backup full`",
                     it->path, holder, stored, derr);
            pthread_mutex_lock(&run->mu);
            json_array_append_new(run->damaged, json_pack("{s:s,s:s,s:s,s:s}", "path", it->path, "holder",
                                                          holder, "stored", stored, "error", derr));
            pthread_mutex_unlock(&run->mu);
            memset(f, 0, sizeof(*f));
            f->size = it->size;
            f->mtime_ns = it->mtime_ns;
            f->mode = it->mode;
            sl->referenced = false;
        }
    }
    if (!sl->referenced) {
        if ((r = store_item(run, i, it, f)) < 0) {
            free(f->stored); /* slots_free only frees finished slots */
            f->stored = NULL;
            return r;
        }
        sl->verified = true;
    }
    f->path = it->path;
    f->component = (char *)it->component;
    sl->done = true;
    return 0;
}

static size_t *largest_first(const plan_t *p)
{
    size_t *order = malloc((p->n + 1) * sizeof(*order));
    if (!order)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        order[i] = i;
    for (size_t i = 1; i < p->n; i++)
        for (size_t j = i; j > 0 && p->items[order[j - 1]].size < p->items[order[j]].size; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return order;
}

/* Adds every slot to the manifest in path order, with the per-component totals. */
static int assemble(run_t *run, size_t *ret_stored, size_t *ret_referenced)
{
    backup_manifest_t *m = run->m;
    for (size_t i = 0; i < run->plan->n; i++) {
        slot_t *sl = &run->slots[i];
        const item_t *it = &run->plan->items[i];
        if (!sl->done)
            continue;
        if (sl->referenced)
            (*ret_referenced)++;
        else {
            (*ret_stored)++;
            m->stored_here += sl->f.stored_size;
        }
        m->total_size += sl->f.size;
        json_t *c = json_object_get(m->components, it->component);
        if (!c) {
            c = json_pack("{s:I,s:I}", "files", (json_int_t)0, "bytes", (json_int_t)0);
            json_object_set_new(m->components, it->component, c);
        }
        json_object_set_new(c, "files", json_integer(json_integer_value(json_object_get(c, "files")) + 1));
        json_object_set_new(
            c, "bytes",
            json_integer(json_integer_value(json_object_get(c, "bytes")) + (json_int_t)sl->f.size));
        int r = backup_manifest_add_file(m, &sl->f);
        if (r < 0)
            return r;
    }
    return 0;
}

static void slots_free(run_t *run)
{
    if (!run->slots)
        return;
    for (size_t i = 0; i < run->plan->n; i++)
        if (run->slots[i].done && !run->slots[i].referenced)
            free(run->slots[i].f.stored);
    free(run->slots);
    run->slots = NULL;
}

/* Whether two BACKUP_ENCRYPTION_KEY_ID labels are the same (both unset counts). */
static bool same_key_id(const char *a, const char *b)
{
    return (!a || !*a) ? (!b || !*b) : (b && strcmp(a, b) == 0);
}

/* Picks the parent of an incremental: the backup `latest` names, if it authenticates
 * under this key. Otherwise the backup becomes full, with a note saying why, except when
 * latest was made under the same BACKUP_ENCRYPTION_KEY_ID with another key: then the key
 * configured now is wrong (a key command printing something else, a replaced key file), and
 * a full backup under it would move latest to a backup the real key cannot read: -EKEYREJECTED
 * (`backup full` is the way to start over with a new key on purpose). */
static int pick_parent(const backup_settings_t *s, const backup_key_t *key, json_t *notes,
                       backup_manifest_t **ret, char *err, size_t errlen)
{
    char id[BACKUP_ID_MAX], dir[PATH_MAX], lerr[512];
    *ret = NULL;
    if (backup_repo_latest(s->backup_path, id) < 0) {
        note(notes, "incremental requested but there is no previous backup: made a full backup");
        return 0;
    }
    backup_manifest_t *m = NULL;
    int r = backup_repo_path(s->backup_path, id, NULL, dir, sizeof(dir));
    if (r == 0)
        r = backup_manifest_load(dir, key, &m, lerr, sizeof(lerr));
    if (r == -EKEYREJECTED) {
        backup_manifest_t *u = NULL;
        char uerr[512];
        bool same =
            backup_manifest_load(dir, NULL, &u, uerr, sizeof(uerr)) == 0 && same_key_id(u->key_id, s->key_id);
        backup_manifest_free(u);
        if (same) {
            snprintf(err, errlen,
                     "key mismatch: the latest backup %s was made under the same BACKUP_ENCRYPTION_KEY_ID "
                     "(%s) with another key (%s). The key configured now is probably wrong (check "
                     "BACKUP_ENCRYPTION_KEY_FILE or what BACKUP_KEY_COMMAND prints); nothing was written. To "
                     "start over with this key on purpose, run `aimedres backup full` (or give the new key "
                     "a new BACKUP_ENCRYPTION_KEY_ID)",
                     id, s->key_id && *s->key_id ? s->key_id : "unset", lerr);
            return -EKEYREJECTED;
        }
    }
    if (r < 0) {
        note(notes,
             "incremental requested but the latest backup %s cannot be used as parent (%s): made a full "
             "backup",
             id, lerr);
        return 0;
    }
    if (strcmp(m->type, "audit-only") == 0) {
        backup_manifest_free(m);
        note(notes, "latest backup %s was reduced to audit files: made a full backup", id);
        return 0;
    }
    *ret = m;
    return 0;
}

static void summary_set(json_t *sum, const char *key, json_t *v)
{
    json_object_set_new(sum, key, v);
}

static void snapshot_remove(run_t *run)
{
    backup_snapshot_remove(run->snap, run->snap_hold);
    run->snap_hold = -1;
    backup_interrupt_forget(run->snap);
}

static void *remove_main(void *arg)
{
    snapshot_remove(arg);
    return NULL;
}

/* Removes the plaintext snapshot on a thread of its own (freeing a file of hundreds of MB
 * takes a while); remove_join waits for it, on every path out of backup_create. */
static void remove_start(run_t *run)
{
    if (!run->snap_made)
        return;
    run->snap_made = false;
    if (pthread_create(&run->rm_thread, NULL, remove_main, run) == 0)
        run->rm_started = true;
    else
        snapshot_remove(run);
}

static void remove_join(run_t *run)
{
    if (run->rm_started)
        pthread_join(run->rm_thread, NULL);
    run->rm_started = false;
}

static int cmp_item_path(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const item_t *)elem)->path);
}

/* The final check before publishing, on the manifest as read back from the disk and
 * authenticated (check): it must list exactly the files this run wrote or referenced, each
 * with the size, sha256, place, stored size and nonce of a file that was read back and
 * verified during this run: stored here (store_item) or, for a reference, decrypted from its
 * holder by the worker that decided to reference it (process_item). Appends {"path","error"}
 * to bad; 0 or -EBADMSG (err names the first problem). */
static int verify_written(run_t *run, const backup_manifest_t *check, json_t *bad, char *err, size_t errlen)
{
    size_t done = 0;
    for (size_t i = 0; i < run->plan->n; i++)
        done += run->slots[i].done;
    if (check->n_files != done) {
        snprintf(err, errlen, "the manifest read back lists %zu files, %zu were written", check->n_files,
                 done);
        return -EBADMSG;
    }
    int r = 0;
    for (size_t k = 0; k < check->n_files && r == 0; k++) {
        const backup_file_t *f = &check->files[k];
        const item_t *it = bsearch(f->path, run->plan->items, run->plan->n, sizeof(item_t), cmp_item_path);
        const slot_t *sl = it ? &run->slots[it - run->plan->items] : NULL;
        bool here = strcmp(f->holder, check->id) == 0;
        const char *why = NULL;
        if (!sl || !sl->done)
            why = "not a file this backup wrote";
        else if (here != !sl->referenced || !sl->verified)
            why = "was not read back";
        else if (f->size != sl->f.size || strcmp(f->sha256, sl->f.sha256) != 0 ||
                 strcmp(f->holder, sl->f.holder) != 0 || !f->stored || strcmp(f->stored, sl->f.stored) != 0 ||
                 f->stored_size != sl->f.stored_size || strcmp(f->nonce, sl->f.nonce) != 0)
            why = "differs from the file written and verified";
        if (why) {
            snprintf(err, errlen, "%s: the manifest read back %s", f->path, why);
            json_array_append_new(bad, json_pack("{s:s,s:s}", "path", f->path, "error", why));
            r = -EBADMSG;
        }
    }
    return r;
}

int backup_create(const backup_settings_t *s, const backup_key_t *key, const backup_create_opts_t *o,
                  json_t **ret_summary, char *err, size_t errlen)
{
    int64_t t0 = util_mono_ns();
    json_t *sum = json_pack("{s:b}", "ok", 0);
    bool deferred = false;
    plan_t plan = {0};
    run_t run;
    memset(&run, 0, sizeof(run));
    pthread_mutex_init(&run.mu, NULL);
    run.snap_hold = -1;
    run.s = s;
    run.key = key;
    run.plan = &plan;
    run.bad = json_array();
    run.damaged = json_array();
    char final_dir[PATH_MAX];
    bool partial_made = false;
    backup_manifest_t *parent = NULL;
    size_t *order = NULL;
    int wlock = -1, r;

    if ((r = repo_outside_sources(s, err, errlen)) < 0)
        goto fail;
    /* a restore cut short in its swap left a mix of two states: backing that up would make
     * it latest */
    if ((r = backup_restore_journal_check(s->db_path, err, errlen)) < 0)
        goto fail;
    wlock = backup_repo_lock(s->backup_path, BACKUP_LOCK_WRITE, true, LOCK_WAIT_MS, err, errlen);
    if (wlock < 0) {
        r = wlock;
        goto fail;
    }
    backup_repo_clean_partials(s->backup_path);
    backup_snapshot_cleanup_stale(s->db_path);

    run.m = backup_manifest_new();
    if (!run.m) {
        r = -ENOMEM;
        goto fail;
    }
    backup_manifest_t *m = run.m;
    plan.notes = m->notes;
    m->timestamp_ms = util_now_ms();
    if ((r = backup_repo_new_id(s->backup_path, m->timestamp_ms, m->id)) < 0) {
        snprintf(err, errlen, "cannot name the backup: %s", strerror(-r));
        goto fail;
    }
    if (o->type == BACKUP_INCREMENTAL && (r = pick_parent(s, key, m->notes, &parent, err, errlen)) < 0)
        goto fail;
    run.parent = parent;
    snprintf(m->type, sizeof(m->type), "%s", parent ? "incremental" : "full");
    if (parent)
        snprintf(m->parent, sizeof(m->parent), "%s", parent->id);
    memcpy(m->key_fingerprint, key->fingerprint, sizeof(m->key_fingerprint));
    m->key_id = s->key_id ? strdup(s->key_id) : NULL;
    char tool[128];
    snprintf(tool, sizeof(tool), "aimedres %s (build %s)", AIMEDRES_VERSION, aimedres_build);
    m->tool_version = strdup(tool);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    m->host = strdup(host);
    json_object_set_new(m->source, "database", json_string(s->db_path));
    json_object_set_new(m->source, "models", json_string(s->model_storage_path));
    json_object_set_new(m->source, "data_dir", json_string(s->data_dir));
    json_object_set_new(m->source, "results", json_string(s->results_path));
    if (s->audit_log_path)
        json_object_set_new(m->source, "audit_log", json_string(s->audit_log_path));
    if (o->env_file) {
        char real[PATH_MAX];
        json_object_set_new(m->source, "config",
                            json_string(realpath(o->env_file, real) ? real : o->env_file));
    }

    if (snprintf(run.partial, sizeof(run.partial), "%s/.%s.partial", s->backup_path, m->id) >=
            (int)sizeof(run.partial) ||
        backup_repo_path(s->backup_path, m->id, NULL, final_dir, sizeof(final_dir)) < 0) {
        snprintf(err, errlen, "BACKUP_PATH is too long");
        r = -ENAMETOOLONG;
        goto fail;
    }
    char data_dir[PATH_MAX];
    backup_interrupt_add(run.partial); /* SIGTERM/SIGINT remove it (a run killed harder: the next run) */
    if (backup_path_join(data_dir, sizeof(data_dir), run.partial, "data") < 0 ||
        mkdir(run.partial, 0700) < 0 || mkdir(data_dir, 0700) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot create %s: %s", data_dir, strerror(errno));
        goto fail;
    }
    partial_made = true;

    /* 1. the database: a consistent snapshot beside it, taken by the worker that streams it */
    struct stat dbst;
    if (stat(s->db_path, &dbst) < 0) {
        r = -errno;
        snprintf(err, errlen,
                 "the database %s (DATABASE_URL) %s: a backup without it could not restore this installation",
                 s->db_path, errno == ENOENT ? "does not exist" : strerror(errno));
        goto fail;
    } else {
        char path[PATH_MAX];
        if ((r = backup_snapshot_path(s->db_path, run.snap, sizeof(run.snap))) < 0 ||
            (r = backup_path_join(path, sizeof(path), "db", util_basename(s->db_path))) < 0) {
            snprintf(err, errlen, "database path too long");
            goto fail;
        }
        if ((r = plan_add(&plan, run.snap, path, "db", &dbst, true)) < 0)
            goto fail;
    }

    /* 2. models and their drift baselines, 3. the env file, 4. results, 5. audit */
    char baseline[PATH_MAX];
    backup_path_join(baseline, sizeof(baseline), s->data_dir, "baseline");
    if ((r = add_tree(&plan, s->model_storage_path, "models", "models", "models", err, errlen)) < 0 ||
        (r = add_tree(&plan, baseline, "baseline", "models", "baseline", err, errlen)) < 0)
        goto fail;
    if (o->env_file) {
        struct stat st;
        char path[PATH_MAX];
        if (stat(o->env_file, &st) < 0 || !S_ISREG(st.st_mode)) {
            r = -ENOENT;
            snprintf(err, errlen, "env file %s: not a readable file", o->env_file);
            goto fail;
        }
        const char *bn = util_basename(o->env_file);
        backup_path_join(path, sizeof(path), "config", bn[0] == '.' ? bn + 1 : bn); /* no hidden names */
        if ((r = plan_add(&plan, o->env_file, path, "config", &st, false)) < 0)
            goto fail;
    } else {
        note(m->notes, "config: no --env-file given, configuration not backed up");
    }
    if ((r = add_tree(&plan, s->results_path, "results", "results", "results", err, errlen)) < 0 ||
        (r = add_audit(&plan, s->audit_log_path, err, errlen)) < 0)
        goto fail;
    qsort(plan.items, plan.n, sizeof(*plan.items), cmp_items);

    /* Stream every file, several at a time, the largest first. */
    run.slots = calloc(plan.n + 1, sizeof(*run.slots));
    order = largest_first(&plan);
    if (!run.slots || !order) {
        r = -ENOMEM;
        goto fail;
    }
    char label[64];
    snprintf(label, sizeof(label), "backup %s", m->id);
    int64_t t_plan = util_mono_ns();
    backup_progress_start(&run.prog, label, plan.bytes, o->progress);
    run.prog.passes = 2; /* every byte is read (and stored or hashed), then read back and verified */
    r = backup_parallel(plan.n, order, backup_thread_count(s->threads), process_item, &run);
    backup_progress_finish(&run.prog);
    if (r < 0) {
        snprintf(err, errlen, "%s", run.err[0] ? run.err : strerror(-r));
        goto fail;
    }
    int64_t t_streams = util_mono_ns();
    for (size_t i = 0; i < plan.n; i++)
        if (plan.items[i].is_db && run.slots[i].done)
            integrity_join(&run, run.slots[i].f.sha256);
    integrity_join(&run, NULL);
    json_t *ic = m->db ? json_object_get(m->db, "integrity") : NULL;
    if (ic && strcmp(json_string_value(json_object_get(ic, "result")) ?: "", "ok") != 0) {
        /* a backup whose database restore would refuse is not a good backup: not published */
        r = -EIO;
        snprintf(err, errlen,
                 "the database %s fails PRAGMA integrity_check (%s): it is damaged, and a backup of it could "
                 "not be restored; nothing published (copy the file aside for analysis, then repair it or "
                 "restore the last good backup)",
                 s->db_path, run.ic_err[0] ? run.ic_err : "integrity_check failed");
        goto fail;
    }
    int64_t t_integrity = util_mono_ns();
    remove_start(&run);
    size_t stored_files = 0, referenced_files = 0;
    if ((r = assemble(&run, &stored_files, &referenced_files)) < 0)
        goto fail;

    /* The manifest, authenticated; then everything durable. */
    char *text = backup_manifest_dump(m, key);
    if (!text) {
        r = -ENOMEM;
        goto fail;
    }
    char mpath[PATH_MAX];
    backup_path_join(mpath, sizeof(mpath), run.partial, BACKUP_MANIFEST_FILE);
    r = util_write_file_atomic(mpath, text, strlen(text), 0600);
    free(text);
    if (r < 0 || (r = fsync_fd_path(data_dir)) < 0 || (r = util_fsync_dir(run.partial)) < 0) {
        snprintf(err, errlen, "writing the manifest: %s", strerror(-r));
        goto fail;
    }

    int64_t t_manifest = util_mono_ns();

    /* Verify what is on disk: the manifest read back authenticates and lists exactly the
     * files written, each already read back from the disk and verified by its worker
     * (store_item); files referenced from older backups are decrypted now. */
    backup_manifest_t *check = NULL;
    char verr[1024] = "";
    r = backup_manifest_load(run.partial, key, &check, verr, sizeof(verr));
    if (r < 0) {
        snprintf(err, errlen, "verification: %s", verr);
        goto fail;
    }
    json_t *bad = json_array();
    r = verify_written(&run, check, bad, verr, sizeof(verr));
    backup_manifest_free(check);
    if (r < 0) {
        snprintf(err, errlen, "verification failed: %s", verr);
        summary_set(sum, "bad", bad);
        r = r == -ENOMEM ? r : -EIO;
        goto fail;
    }
    json_decref(bad);
    int64_t t_verify = util_mono_ns();

    /* Publish: rename into place, then move latest. */
    /* From here on it is (about to be) a complete backup: a signal no longer removes anything
     * and waits until the backup's audit record is written (hold_signals_after_publish) */
    backup_interrupt_defer();
    deferred = true;
    backup_interrupt_forget(run.partial);
    if (rename(run.partial, final_dir) < 0) {
        r = -errno;
        snprintf(err, errlen, "rename %s: %s", run.partial, strerror(errno));
        goto fail;
    }
    partial_made = false;
    if ((r = util_fsync_dir(s->backup_path)) < 0 || (r = backup_repo_set_latest(s->backup_path, m->id)) < 0) {
        /* a backup reported failed must not stay listed as good (review47 #5): unless latest
         * already names it, it goes back to its partial name, which the fail path removes */
        char named[BACKUP_ID_MAX] = "";
        bool latest = backup_repo_latest(s->backup_path, named) == 0 && strcmp(named, m->id) == 0;
        if (!latest && rename(final_dir, run.partial) == 0) {
            partial_made = true;
            util_fsync_dir(s->backup_path);
            snprintf(err, errlen, "publishing %s: %s; not published", m->id, strerror(-r));
        } else {
            snprintf(err, errlen, "publishing %s: %s; the backup is in the repository, %s", m->id, strerror(-r),
                     latest ? "and latest names it" : "but latest does not name it");
        }
        goto fail;
    }
    backup_repo_unlock(wlock);
    wlock = -1;
    remove_join(&run);

    int64_t t_end = util_mono_ns();
    double secs = (double)(t_end - t0) / 1e9;
    /* where the time went (wall seconds): "streams" includes the snapshot, db_info and every
     * file's read-back; "integrity_wait" is what the integrity_check still took after them */
    summary_set(sum, "phases",
                json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "plan", (double)(t_plan - t0) / 1e9, "snapshot",
                          (double)run.snap_ns / 1e9, "db_info", (double)run.dbinfo_ns / 1e9, "streams",
                          (double)(t_streams - t_plan) / 1e9, "integrity_wait",
                          (double)(t_integrity - t_streams) / 1e9, "manifest",
                          (double)(t_manifest - t_integrity) / 1e9, "verify",
                          (double)(t_verify - t_manifest) / 1e9, "publish", (double)(t_end - t_verify) / 1e9));
    summary_set(sum, "id", json_string(m->id));
    summary_set(sum, "path", json_string(final_dir));
    summary_set(sum, "type", json_string(m->type));
    summary_set(sum, "parent", m->parent[0] ? json_string(m->parent) : json_null());
    summary_set(sum, "timestamp", json_integer(m->timestamp_ms));
    summary_set(sum, "files", json_integer((json_int_t)m->n_files));
    summary_set(sum, "stored_files", json_integer((json_int_t)stored_files));
    summary_set(sum, "referenced_files", json_integer((json_int_t)referenced_files));
    summary_set(sum, "total_bytes", json_integer((json_int_t)m->total_size));
    summary_set(sum, "stored_bytes", json_integer((json_int_t)m->stored_here));
    summary_set(sum, "seconds", json_real(secs));
    summary_set(sum, "components", json_deep_copy(m->components));
    summary_set(sum, "notes", json_deep_copy(m->notes));
    if (json_array_size(run.damaged)) /* damaged copies in older backups, stored afresh here */
        summary_set(sum, "damaged_references", json_incref(run.damaged));
    summary_set(sum, "key_fingerprint", json_string(key->fingerprint));
    summary_set(sum, "verified", json_true());
    if (m->db)
        summary_set(sum, "db", json_deep_copy(m->db));
    summary_set(sum, "ok", json_true());
    r = 0;
    if (s->offsite_dir && !o->no_offsite) {
        json_t *off = NULL;
        char oerr[1024] = "";
        int orr = backup_offsite_copy(s, key, m->id, &off, oerr, sizeof(oerr));
        summary_set(sum, "offsite", off ? off : json_null());
        if (orr < 0) {
            snprintf(err, errlen, "the backup %s is complete locally, but the offsite copy failed: %s", m->id,
                     oerr);
            summary_set(sum, "ok", json_false());
            summary_set(sum, "error", json_string(err));
            r = -EREMOTEIO;
        }
    } else {
        summary_set(sum, "offsite",
                    json_pack("{s:b,s:s}", "configured", 0, "note",
                              s->offsite_dir ? "skipped" : "BACKUP_OFFSITE_DIR is not set"));
    }
    goto out;

fail:
    integrity_join(&run, NULL); /* before the snapshot goes */
    if (run.snap_made)
        snapshot_remove(&run);
    else
        backup_interrupt_forget(run.snap); /* registered before it was (or was not) made */
    remove_join(&run);
    if (json_array_size(run.bad) && !json_object_get(sum, "bad"))
        summary_set(sum, "bad", json_incref(run.bad));
    if (partial_made)
        util_rmtree(run.partial);
    backup_interrupt_forget(run.partial);
    backup_repo_unlock(wlock);
    if (run.m)
        summary_set(sum, "id", json_string(run.m->id));
    summary_set(sum, "error", json_string(err));
    if (r >= 0)
        r = -EIO;
out:
    free(order);
    slots_free(&run);
    plan_free(&plan);
    backup_manifest_free(parent);
    backup_manifest_free(run.m);
    pthread_mutex_destroy(&run.mu);
    json_decref(run.bad);
    json_decref(run.damaged);
    if (ret_summary)
        *ret_summary = sum;
    else
        json_decref(sum);
    if (deferred && !o->hold_signals_after_publish)
        backup_interrupt_resume(); /* a signal noted meanwhile ends the process here */
    return r;
}

/* ------------------------------------------------------------------ offsite */

static int copy_tree_files(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    if (!d)
        return -errno;
    int r = mkdir(dst, 0700) < 0 && errno != EEXIST ? -errno : 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (backup_interrupt_pending()) { /* a signal while deferred (backup_offsite_copy) */
            r = -EINTR;
            break;
        }
        char a[PATH_MAX], b[PATH_MAX];
        snprintf(a, sizeof(a), "%s/%s", src, de->d_name);
        snprintf(b, sizeof(b), "%s/%s", dst, de->d_name);
        struct stat st;
        if (lstat(a, &st) < 0)
            r = -errno;
        else if (S_ISDIR(st.st_mode))
            r = copy_tree_files(a, b);
        else if (S_ISREG(st.st_mode) && (r = util_copy_file_atomic(a, b, 0600)) == 0) {
            /* drop the copy from the page cache: the verification must read the offsite disk */
            int fd = open(b, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
                close(fd);
            }
        }
    }
    closedir(d);
    if (r == 0)
        r = util_fsync_dir(dst);
    return r;
}

/* The offsite copy's error when a signal came after the publishing (backup_interrupt_pending). */
static void interrupted_copy(char *err, size_t errlen)
{
    snprintf(err, errlen,
             "interrupted by signal %d before the offsite copy was complete (the next backup copies what is "
             "missing)",
             backup_interrupt_pending());
}

/* Copies repo/<id> to offsite/<id> through offsite/.<id>.partial. */
static int copy_one(const char *repo, const char *offsite, const char *id, char *err, size_t errlen)
{
    char src[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(src, sizeof(src), "%s/%s", repo, id);
    snprintf(tmp, sizeof(tmp), "%s/.%s.partial", offsite, id);
    snprintf(dst, sizeof(dst), "%s/%s", offsite, id);
    util_rmtree(tmp);
    int r = copy_tree_files(src, tmp);
    if (r == 0 && rename(tmp, dst) < 0)
        r = -errno;
    if (r == 0)
        r = util_fsync_dir(offsite);
    if (r < 0) {
        util_rmtree(tmp);
        if (r == -EINTR)
            interrupted_copy(err, errlen);
        else
            snprintf(err, errlen, "copying %s to %s: %s", id, offsite, strerror(-r));
    }
    return r;
}

int backup_offsite_copy(const backup_settings_t *s, const backup_key_t *key, const char *id, json_t **ret,
                        char *err, size_t errlen)
{
    json_t *rep = json_pack("{s:b,s:s,s:b,s:[]}", "configured", 1, "dir", s->offsite_dir, "ok", 0, "copied");
    /* never created: a missing one is an unmounted volume (say so, not "created by backup") */
    int lock = backup_repo_require_offsite(s->offsite_dir, err, errlen);
    if (lock == 0)
        lock = backup_repo_lock(s->offsite_dir, BACKUP_LOCK_WRITE, false, LOCK_WAIT_MS, err, errlen);
    backup_manifest_t *m = NULL;
    int r = lock;
    if (lock < 0)
        goto out;
    backup_repo_clean_partials(s->offsite_dir);
    char dir[PATH_MAX];
    backup_repo_path(s->backup_path, id, NULL, dir, sizeof(dir));
    if ((r = backup_manifest_load(dir, key, &m, err, errlen)) < 0)
        goto out;
    /* Holders first (oldest first), then the backup itself. */
    json_t *holders = json_object();
    for (size_t i = 0; i < m->n_files; i++)
        json_object_set_new(holders, m->files[i].holder, json_true());
    json_object_set_new(holders, id, json_true());
    const char *h;
    json_t *v;
    char **order = calloc(json_object_size(holders) + 1, sizeof(*order));
    size_t n = 0;
    json_object_foreach(holders, h, v) order[n++] = (char *)h;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && backup_id_compare(order[j - 1], order[j]) > 0; j--) {
            char *t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (size_t i = 0; i < n && r >= 0; i++) {
        char have[PATH_MAX];
        backup_repo_path(s->offsite_dir, order[i], BACKUP_MANIFEST_FILE, have, sizeof(have));
        if (util_path_exists(have) && strcmp(order[i], id) != 0)
            continue;
        if (util_path_exists(have)) {
            /* re-copy of the same id: replace it */
            char old[PATH_MAX];
            backup_repo_path(s->offsite_dir, order[i], NULL, old, sizeof(old));
            util_rmtree(old);
        }
        r = copy_one(s->backup_path, s->offsite_dir, order[i], err, errlen);
        if (r == 0)
            json_array_append_new(json_object_get(rep, "copied"), json_string(order[i]));
    }
    free(order);
    json_decref(holders);
    if (r < 0)
        goto out;

    /* Verify the copy as a restore from the offsite directory would read it (not after a
     * signal: reading the whole copy back would outlast a stop's grace period) */
    if (backup_interrupt_pending()) {
        interrupted_copy(err, errlen);
        r = -EINTR;
        goto out;
    }
    json_t *vrep = NULL;
    r = backup_verify_one(s->offsite_dir, id, key, backup_thread_count(s->threads), false, NULL, &vrep);
    if (r < 0) {
        json_t *first = json_array_get(json_object_get(vrep, "bad"), 0);
        const char *why = first ? json_string_value(json_object_get(first, "error"))
                                : json_string_value(json_object_get(vrep, "error"));
        snprintf(err, errlen, "the offsite copy of %s does not verify: %s%s%s", id,
                 first ? json_string_value(json_object_get(first, "path")) : "", first ? ": " : "",
                 why ? why : "");
        json_decref(vrep);
        r = -EIO;
        goto out;
    }
    json_decref(vrep);
    if ((r = backup_repo_set_latest(s->offsite_dir, id)) < 0) {
        snprintf(err, errlen, "moving the offsite latest: %s", strerror(-r));
        goto out;
    }
    json_object_set_new(rep, "ok", json_true());
    json_object_set_new(rep, "verified", json_true());
out:
    if (r < 0)
        json_object_set_new(rep, "error", json_string(err));
    backup_manifest_free(m);
    backup_repo_unlock(lock);
    *ret = rep;
    return r < 0 ? r : 0;
}
