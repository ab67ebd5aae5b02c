/* SPDX-License-Identifier: Apache-2.0 */
/* Online SQLite snapshot for backups. See snapshot.h. This is the one place outside the
 * store backend that opens the database with SQLite directly: the backup API is how
 * SQLite itself says to copy a live database, and it needs two raw connections. */
#include "backup/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define SNAP_TAG ".backup-snapshot-"
#define BUSY_WAIT_MS 30000
#define PREFETCH_MAX ((off_t)1 << 30) /* bytes of the database read ahead */

#define RANDOM_HEX 16
#define STALE_EMPTY_S 60 /* an empty unlocked snapshot younger than this may be one being created */

int backup_snapshot_path(const char *db_path, char *buf, size_t len)
{
    uint8_t rnd[RANDOM_HEX / 2];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -EIO;
    char hex[RANDOM_HEX + 1];
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    int n = snprintf(buf, len, "%s%s%ld-%s", db_path, SNAP_TAG, (long)getpid(), hex);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void backup_snapshot_remove(const char *dest, int hold)
{
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s%s", dest, suffixes[i]) < (int)sizeof(p))
            unlink(p);
    }
    if (hold >= 0)
        close(hold); /* after the unlink: nobody can take it for stale in between */
}

int backup_snapshot_take(const char *db_path, const char *dest, int *ret_hold, char *err, size_t errlen)
{
    *ret_hold = -1;
    if (!util_path_exists(db_path)) {
        snprintf(err, errlen, "database %s does not exist", db_path);
        return -ENOENT;
    }
    /* Start reading the database in (asynchronously) before SQLite pages through it: its
     * page faults then find the pages in the cache instead of waiting for each readahead
     * window in turn. Only a hint, bounded so a huge database does not flush the cache. */
    int rfd = open(db_path, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
        posix_fadvise(rfd, 0, PREFETCH_MAX, POSIX_FADV_WILLNEED);
        close(rfd);
    }
    int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create the snapshot %s: %s", dest, strerror(e));
        return -e;
    }
    /* held until backup_snapshot_remove: a snapshot nobody holds is a killed run's leftover */
    if (flock(fd, LOCK_EX) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot lock the snapshot %s: %s", dest, strerror(e));
        backup_snapshot_remove(dest, fd);
        return -e;
    }

    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b = NULL;
    int r = 0, rc;
    rc = sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_open_v2(dest, &dst, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "sqlite open: %s", sqlite3_errstr(rc));
        r = -EIO;
        goto out;
    }
    sqlite3_busy_timeout(src, BUSY_WAIT_MS);
    /* The copy is a private scratch file, encrypted and removed within the run; it never
     * needs to reach the disk: no rollback journal and no fsync (synchronous=OFF) for it.
     * A crash leaves a file the next run removes. What the backup stores is what the
     * stream then reads back and hashes, whatever the disk holds. Pages of the source are
     * read through a memory map (no read(2) copy per page). */
    sqlite3_exec(dst, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF", NULL, NULL, NULL);
    sqlite3_exec(src, "PRAGMA mmap_size = 4294967296", NULL, NULL, NULL);
    b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(err, errlen, "sqlite backup: %s", sqlite3_errmsg(dst));
        r = -EIO;
        goto out;
    }
    /* One step copies every page inside a single read transaction: a consistent
     * snapshot, however busy the writers are (WAL readers do not block them). */
    int64_t deadline = util_mono_ns() / 1000000 + BUSY_WAIT_MS;
    for (;;) {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_DONE)
            break;
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && util_mono_ns() / 1000000 < deadline) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        snprintf(err, errlen, "sqlite backup step: %s", sqlite3_errstr(rc));
        r = -EIO;
        goto out;
    }
out:
    if (b && sqlite3_backup_finish(b) != SQLITE_OK && r == 0) {
        snprintf(err, errlen, "sqlite backup finish: %s", sqlite3_errmsg(dst));
        r = -EIO;
    }
    sqlite3_close(src);
    sqlite3_close(dst);
    if (r < 0)
        backup_snapshot_remove(dest, fd);
    else
        *ret_hold = fd;
    return r;
}

static int query_count(sqlite3 *db, const char *sql, int64_t *ret, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : -EIO;
}

/* A read-only, immutable connection to a database file nothing writes (a snapshot, a
 * staged restore): never writes, syncs or migrates it, makes no -wal/-shm files. */
static int open_immutable(const char *path, sqlite3 **ret, char *err, size_t errlen)
{
    /* a URI filename: '%', '?' and '#' in the path must be escaped */
    size_t n = strlen(path);
    char *uri = malloc(3 * n + 32);
    if (!uri)
        return -ENOMEM;
    size_t o = (size_t)sprintf(uri, "file:");
    for (size_t i = 0; i < n; i++)
        o += strchr("%?#", path[i]) ? (size_t)sprintf(uri + o, "%%%02X", (unsigned char)path[i])
                                    : (size_t)sprintf(uri + o, "%c", path[i]);
    strcpy(uri + o, "?immutable=1");
    int rc = sqlite3_open_v2(uri, ret, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    free(uri);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, sqlite3_errstr(rc));
        sqlite3_close(*ret);
        *ret = NULL;
        return -EIO;
    }
    sqlite3_exec(*ret, "PRAGMA mmap_size = 4294967296", NULL, NULL, NULL);
    return 0;
}

int backup_db_integrity_check(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int r = open_immutable(path, &db, err, errlen);
    if (r < 0)
        return r;
    r = -EIO;
    int rc;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check(20)", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "integrity_check: %s", sqlite3_errmsg(db));
        goto out;
    }
    size_t used = 0;
    bool ok = false;
    err[0] = '\0';
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (line && strcmp(line, "ok") == 0) {
            ok = true;
            continue;
        }
        if (line && used + 3 < errlen)
            used += (size_t)snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", line);
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "integrity_check: %s", sqlite3_errmsg(db));
        goto out;
    }
    r = ok && used == 0 ? 0 : -EIO;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

int backup_db_model_versions(const char *path, json_t **ret, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    int r = arr ? open_immutable(path, &db, err, errlen) : -ENOMEM;
    if (r < 0)
        goto out;
    int rc = sqlite3_prepare_v2(db, "SELECT name, version FROM model_versions ORDER BY name, version", -1, &st,
                                NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        const char *n = (const char *)sqlite3_column_text(st, 0), *v = (const char *)sqlite3_column_text(st, 1);
        if (json_array_append_new(arr, json_pack("{s:s?,s:s?}", "name", n, "version", v)) < 0) {
            r = -ENOMEM;
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "model_versions: %s", sqlite3_errmsg(db));
        r = -EIO;
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (r == 0)
        *ret = arr;
    else
        json_decref(arr);
    return r;
}

int backup_db_counts(const char *path, int64_t *ret_predictions, int64_t *ret_model_versions,
                     int *ret_schema_version, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int64_t schema = 0;
    int r = open_immutable(path, &db, err, errlen);
    if (r < 0)
        return r;
    if ((r = query_count(db, "SELECT count(*) FROM predictions", ret_predictions, err, errlen)) < 0 ||
        (r = query_count(db, "SELECT count(*) FROM model_versions", ret_model_versions, err, errlen)) < 0 ||
        (r = query_count(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", &schema, err,
                         errlen)) < 0)
        goto out;
    *ret_schema_version = (int)schema;
out:
    sqlite3_close(db);
    return r;
}

int backup_snapshot_cleanup_stale(const char *db_path)
{
    char dir[PATH_MAX], base[NAME_MAX + 1];
    util_dirname(db_path, dir, sizeof(dir));
    snprintf(base, sizeof(base), "%s%s", util_basename(db_path), SNAP_TAG);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    size_t blen = strlen(base);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, base, blen) != 0)
            continue;
        char *end = NULL;
        long pid = strtol(de->d_name + blen, &end, 10);
        if (pid <= 0 || end == de->d_name + blen)
            continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= (int)sizeof(p))
            continue;
        if (strstr(end, ".interrupted-")) { /* renamed aside by an interrupted run, then SIGKILLed */
            backup_snapshot_remove(p, -1);
            removed++;
            continue;
        }
        if (*end == '\0') { /* "<pid>": an older version's name, judged by its pid; pid 1 is a
                            * container's backup (on a host, init takes no backups) */
            if (pid != 1 && (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH))
                continue;
            if (unlink(p) == 0)
                removed++;
            continue;
        }
        if (*end != '-' || strlen(end + 1) != RANDOM_HEX)
            continue; /* a -wal/-shm/-journal sibling goes with its snapshot */
        int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
            continue;
        struct stat st;
        /* unlocked: its run is gone, unless it is an empty file a run has just created and not
         * yet locked (microseconds; an empty leftover goes once it is a minute old) */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
            (st.st_size > 0 || time(NULL) - st.st_mtime > STALE_EMPTY_S)) {
            backup_snapshot_remove(p, -1);
            removed++;
        }
        close(fd);
    }
    closedir(d);
    return removed;
}
