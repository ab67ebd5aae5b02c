/* SPDX-License-Identifier: Apache-2.0 */
/* Backup repository layout, locks, ids and the `latest` pointer. See repo.h. */
#include "backup/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/lockfile.h"
#include "common/util.h"

int backup_repo_path(const char *repo, const char *id, const char *sub, char *buf, size_t len)
{
    int n = sub ? snprintf(buf, len, "%s/%s/%s", repo, id, sub) : snprintf(buf, len, "%s/%s", repo, id);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* 0 if path is a directory, else -errno of stat or -ENOTDIR. */
static int dir_status(const char *path)
{
    struct stat st;
    return stat(path, &st) < 0 ? -errno : !S_ISDIR(st.st_mode) ? -ENOTDIR : 0;
}

int backup_repo_require(const char *repo, char *err, size_t errlen)
{
    int r = dir_status(repo);
    if (r < 0)
        snprintf(err, errlen,
                 "no backup repository at %s (%s): is the volume mounted? a repository is created by the "
                 "first `aimedres backup`",
                 repo, r == -ENOENT ? "no such directory" : strerror(-r));
    return r;
}

int backup_repo_require_offsite(const char *dir, char *err, size_t errlen)
{
    int r = dir_status(dir);
    if (r < 0)
        snprintf(err, errlen,
                 "the offsite directory %s (BACKUP_OFFSITE_DIR) %s: is the volume mounted? aimedres never "
                 "creates it (that would put the offsite copy on the local disk); mount the volume, or "
                 "create the directory on it",
                 dir,
                 r == -ENOENT    ? "does not exist"
                 : r == -ENOTDIR ? "is not a directory"
                                 : strerror(-r));
    return r;
}

/* Is path on a file system mounted read-only? */
static bool on_readonly_fs(const char *path)
{
    struct statvfs sv;
    return statvfs(path, &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

/* A reader's lock on a repository it cannot write to (a WORM volume, a read-only mount):
 * the existing lock file opened read-only (flock works on it), else the directory itself,
 * unlocked: nothing can delete or add anything there either. Note in err; fd or -errno. */
static int readonly_read_lock(const char *repo, const char *path, int open_errno, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        snprintf(err, errlen, "%s is read-only (%s): its %s was opened read-only", repo, strerror(open_errno),
                 ".read.lock");
        return fd;
    }
    if (open_errno == EACCES && !on_readonly_fs(repo))
        return -open_errno; /* a permission problem, not a read-only volume */
    fd = open(repo, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    snprintf(err, errlen,
             "%s is read-only (%s): read without the repository lock (no backup or prune can change it)",
             repo, strerror(open_errno));
    return fd;
}

int backup_repo_lock(const char *repo, backup_lock_kind_t kind, bool create, int wait_ms, char *err,
                     size_t errlen)
{
    if (err && errlen)
        err[0] = '\0'; /* stays empty on success unless there is a note (read-only repository) */
    int r = create ? util_mkdir_p(repo, 0700) : backup_repo_require(repo, err, errlen);
    if (r < 0) {
        if (create)
            snprintf(err, errlen, "cannot create %s: %s", repo, strerror(-r));
        return r;
    }
    char path[PATH_MAX];
    const char *name = kind == BACKUP_LOCK_WRITE ? ".write.lock" : ".read.lock";
    if (snprintf(path, sizeof(path), "%s/%s", repo, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 && kind == BACKUP_LOCK_READ_SHARED && (errno == EROFS || errno == EACCES)) {
        int e = errno;
        char note[1024] = "";
        fd = readonly_read_lock(repo, path, e, note, sizeof(note));
        if (fd < 0)
            errno = e;
        else if (err && errlen)
            snprintf(err, errlen, "%s", note); /* success: err holds the note */
    }
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return r;
    }
    r = lockfile_wait(fd, kind == BACKUP_LOCK_READ_SHARED ? LOCK_SH : LOCK_EX, wait_ms);
    if (r < 0 && r != -ETIMEDOUT) {
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    if (r == -ETIMEDOUT) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        /* the file holds the pid of the last exclusive holder (a prune); readers share the
         * lock and write none: when a shared lock is free to take, readers hold it */
        if (kind == BACKUP_LOCK_READ_EXCLUSIVE && flock(fd, LOCK_SH | LOCK_NB) == 0) {
            flock(fd, LOCK_UN);
            pid[0] = '\0';
        }
        snprintf(err, errlen, "%s is busy: %s%s%s%s", repo,
                 kind == BACKUP_LOCK_WRITE         ? "a backup, prune or in-place restore is running"
                 : kind == BACKUP_LOCK_READ_SHARED ? "a prune is running"
                                                   : "a verify, check, restore or prune is reading it",
                 pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        close(fd);
        return -EWOULDBLOCK;
    }
    if (kind != BACKUP_LOCK_READ_SHARED) {
        char pid[32];
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) {
            /* informational only */
        }
    }
    return fd;
}

void backup_repo_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

static int cmp_ids(const void *a, const void *b)
{
    return backup_id_compare(*(char *const *)a, *(char *const *)b);
}

void backup_repo_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

int backup_repo_list(const char *repo, char ***ret_ids, size_t *ret_n)
{
    *ret_ids = NULL;
    *ret_n = 0;
    DIR *d = opendir(repo);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    char **ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d))) {
        if (!backup_id_valid(de->d_name))
            continue;
        char mpath[PATH_MAX];
        if (backup_repo_path(repo, de->d_name, BACKUP_MANIFEST_FILE, mpath, sizeof(mpath)) < 0)
            continue;
        struct stat st;
        if (stat(mpath, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nids = realloc(ids, cap * sizeof(*ids));
            if (!nids) {
                r = -ENOMEM;
                break;
            }
            ids = nids;
        }
        if (!(ids[n] = strdup(de->d_name))) {
            r = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (r < 0) {
        backup_repo_ids_free(ids, n);
        return r;
    }
    if (n)
        qsort(ids, n, sizeof(*ids), cmp_ids);
    *ret_ids = ids;
    *ret_n = n;
    return 0;
}

int backup_repo_latest(const char *repo, char ret_id[BACKUP_ID_MAX])
{
    char path[PATH_MAX], target[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", repo, BACKUP_LATEST) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return errno == EINVAL ? -EPROTO : -errno;
    target[n] = '\0';
    const char *base = util_basename(target);
    if (!backup_id_valid(base))
        return -EPROTO;
    char mpath[PATH_MAX];
    if (backup_repo_path(repo, base, BACKUP_MANIFEST_FILE, mpath, sizeof(mpath)) < 0 ||
        !util_path_exists(mpath))
        return -ENOENT;
    memcpy(ret_id, base, strlen(base) + 1); /* valid ids fit BACKUP_ID_MAX */
    return 0;
}

int backup_repo_set_latest(const char *repo, const char *id)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/.latest.%ld", repo, (long)getpid()) >= (int)sizeof(tmp) ||
        snprintf(path, sizeof(path), "%s/%s", repo, BACKUP_LATEST) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    unlink(tmp);
    if (symlink(id, tmp) < 0)
        return -errno;
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return util_fsync_dir(repo);
}

int backup_repo_resolve(const char *repo, const char *spec, char ret_id[BACKUP_ID_MAX], char *err,
                        size_t errlen)
{
    struct stat st;
    char path[PATH_MAX];
    if (!spec || strcmp(spec, BACKUP_LATEST) == 0) {
        int r = backup_repo_latest(repo, ret_id);
        if (r == 0)
            return 0;
        /* no `latest` at all (an empty repository) vs one that dangles or is not ours */
        bool exists = snprintf(path, sizeof(path), "%s/%s", repo, BACKUP_LATEST) < (int)sizeof(path) &&
                      lstat(path, &st) == 0;
        if (!exists) {
            snprintf(err, errlen, "%s has no latest backup", repo);
            return -ENOENT;
        }
        snprintf(err, errlen, "%s/latest does not point at a complete backup (%s): the repository is damaged",
                 repo, r == -ENOENT ? "its manifest is missing" : "unreadable or not a backup id");
        return -EUCLEAN;
    }
    if (!backup_id_valid(spec)) {
        snprintf(err, errlen, "'%s' is not a backup id (YYYYmmddTHHMMSSZ) or 'latest'", spec);
        return -EINVAL;
    }
    char mpath[PATH_MAX];
    if (backup_repo_path(repo, spec, BACKUP_MANIFEST_FILE, mpath, sizeof(mpath)) < 0 ||
        !util_path_exists(mpath)) {
        /* a backup's directory only gets its final name once the backup is complete: one
         * without its manifest is a damaged backup, not an unknown id */
        if (backup_repo_path(repo, spec, NULL, path, sizeof(path)) == 0 && stat(path, &st) == 0) {
            snprintf(err, errlen, "backup %s in %s is damaged: its %s is missing", spec, repo,
                     BACKUP_MANIFEST_FILE);
            return -EUCLEAN;
        }
        snprintf(err, errlen, "no backup %s in %s", spec, repo);
        return -ENOENT;
    }
    snprintf(ret_id, BACKUP_ID_MAX, "%s", spec);
    return 0;
}

int backup_repo_new_id(const char *repo, int64_t now_ms, char ret_id[BACKUP_ID_MAX])
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    char base[20];
    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < 1000; i++) {
        char id[BACKUP_ID_MAX], a[PATH_MAX], b[PATH_MAX];
        if (i == 0)
            snprintf(id, sizeof(id), "%s", base);
        else
            snprintf(id, sizeof(id), "%s-%d", base, i);
        snprintf(a, sizeof(a), "%s/%s", repo, id);
        snprintf(b, sizeof(b), "%s/.%s.partial", repo, id);
        if (!util_path_exists(a) && !util_path_exists(b)) {
            memcpy(ret_id, id, sizeof(id));
            return 0;
        }
    }
    return -EEXIST;
}

/* ".latest.<pid>" of a process that no longer exists: the symlink backup_repo_set_latest makes
 * before renaming it over `latest`, left by a backup killed in between. */
static bool stale_latest_tmp(const char *name)
{
    static const char pre[] = ".latest.";
    if (strncmp(name, pre, sizeof(pre) - 1) != 0)
        return false;
    const char *digits = name + sizeof(pre) - 1;
    char *end;
    long pid = strtol(digits, &end, 10);
    if (end == digits || *end || *digits == '-' || *digits == '+' || pid <= 0 || pid == (long)getpid())
        return false;
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int backup_repo_clean_partials(const char *repo)
{
    DIR *d = opendir(repo);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (stale_latest_tmp(de->d_name)) {
            char path[PATH_MAX];
            if (snprintf(path, sizeof(path), "%s/%s", repo, de->d_name) < (int)sizeof(path) &&
                unlink(path) == 0)
                removed++;
            continue;
        }
        /* ".<id>.partial", and ".<id>.partial.interrupted-<pid>": one an interrupted run had
         * renamed aside to remove when a SIGKILL cut that short */
        if (de->d_name[0] != '.' || ((n < 10 || strcmp(de->d_name + n - 8, ".partial") != 0) &&
                                     !strstr(de->d_name, ".partial.interrupted-")))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", repo, de->d_name) >= (int)sizeof(path))
            continue;
        if (util_rmtree(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

int backup_latest_info(const char *backup_path, int64_t *ret_ts_ms, char *ret_id, size_t idlen)
{
    char id[BACKUP_ID_MAX], dir[PATH_MAX], err[256];
    int r = backup_repo_latest(backup_path, id);
    if (r < 0)
        return r == -EPROTO ? -ENOENT : r;
    if ((r = backup_repo_path(backup_path, id, NULL, dir, sizeof(dir))) < 0)
        return r;
    backup_manifest_t *m = NULL;
    if ((r = backup_manifest_load(dir, NULL, &m, err, sizeof(err))) < 0)
        return r;
    /* the time comes from the id (the directory name, the UTC second the backup started), and
     * only when the manifest (read without the key) names that very id: a manifest edited to
     * claim a fresh timestamp moves nothing; one copied from elsewhere is refused */
    bool same = strcmp(m->id, id) == 0;
    backup_manifest_free(m);
    int64_t ts = 0;
    if (!same || (r = backup_id_time_ms(id, &ts)) < 0)
        return -EBADMSG;
    *ret_ts_ms = ts;
    if (ret_id && idlen)
        snprintf(ret_id, idlen, "%s", id);
    return 0;
}

int backup_id_time_ms(const char *id, int64_t *ret_ms)
{
    if (!backup_id_valid(id))
        return -EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(id, "%Y%m%dT%H%M%SZ", &tm);
    if (!end || (*end && *end != '-'))
        return -EINVAL;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ret_ms = (int64_t)t * 1000;
    return 0;
}
