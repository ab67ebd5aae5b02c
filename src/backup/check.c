/* SPDX-License-Identifier: Apache-2.0 */
/* Backup health check (see check.h). */
#include "backup/check.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "backup/fsutil.h"
#include "backup/pool.h"
#include "backup/progress.h"
#include "backup/repo.h"
#include "backup/restore.h"
#include "backup/verify.h"
#include "common/util.h"

/* The age of latest: its time is the one in its id (the directory name; backup_latest_info
 * checks the manifest names the same id), and only counts when the manifest authenticates
 * under the key: a forged or damaged manifest (or one a key cannot vouch for) gives no age.
 * info_r: backup_latest_info's result; id: what `latest` points at (NULL: nothing). */
static json_t *freshness(const backup_settings_t *s, const backup_key_t *key, const char *id, int info_r,
                         int64_t ts, int64_t now)
{
    if (!id)
        return json_pack("{s:b,s:s}", "ok", 0, "message", "no backup found (latest is missing)");
    char msg[1024];
    if (info_r < 0) {
        snprintf(msg, sizeof(msg),
                 "the manifest of latest backup %s is unreadable or names another backup (%s): its age is "
                 "unknown",
                 id, strerror(-info_r));
        return json_pack("{s:b,s:s,s:s}", "ok", 0, "latest", id, "message", msg);
    }
    if (key) {
        char dir[PATH_MAX], merr[512] = "";
        backup_manifest_t *m = NULL;
        int r = backup_repo_path(s->backup_path, id, NULL, dir, sizeof(dir));
        if (r == 0)
            r = backup_manifest_load(dir, key, &m, merr, sizeof(merr));
        backup_manifest_free(m);
        if (r < 0) {
            snprintf(msg, sizeof(msg),
                     "the manifest of latest backup %s does not authenticate under the key (%s): its age "
                     "is unknown",
                     id, merr[0] ? merr : strerror(-r));
            return json_pack("{s:b,s:s,s:s}", "ok", 0, "latest", id, "message", msg);
        }
    }
    double age = (double)(now - ts) / 1000.0, max = (double)s->max_age_ms / 1000.0;
    bool ok = age <= max;
    /* text in the units the limit was configured in (BACKUP_MAX_AGE=1m is "1m", not "0.0 h");
     * age_s and max_age_s stay numbers of seconds */
    char a[24], m[24];
    backup_format_duration(now - ts, a, sizeof(a));
    util_format_duration_ms(s->max_age_ms, m, sizeof(m));
    snprintf(msg, sizeof(msg), "latest backup %s is %s old (max %s)", id, a, m);
    return json_pack("{s:b,s:s,s:f,s:f,s:s}", "ok", ok, "latest", id, "age_s", age, "max_age_s", max,
                     "message", msg);
}

static json_t *verify_in(const char *repo, const char *id, const backup_key_t *key, int threads)
{
    json_t *vrep = NULL;
    int r = backup_verify_one(repo, id, key, threads, false, NULL, &vrep);
    json_object_set_new(vrep, "ok", json_boolean(r == 0));
    if (r < 0 && !json_object_get(vrep, "message")) {
        json_t *first = json_array_get(json_object_get(vrep, "bad"), 0);
        char msg[1024];
        if (first)
            snprintf(msg, sizeof(msg), "%zu bad file(s), first %s: %s",
                     json_array_size(json_object_get(vrep, "bad")),
                     json_string_value(json_object_get(first, "path")),
                     json_string_value(json_object_get(first, "error")));
        else
            snprintf(msg, sizeof(msg), "%s", json_string_value(json_object_get(vrep, "error")));
        json_object_set_new(vrep, "message", json_string(msg));
    } else if (r == 0) {
        json_object_set_new(vrep, "message", json_string("every file decrypts and matches its sha256"));
    }
    return vrep;
}

static json_t *offsite(const backup_settings_t *s, const char *id, const backup_key_t *key)
{
    if (!s->offsite_dir)
        return json_pack("{s:b,s:b,s:s}", "ok", 1, "configured", 0, "message",
                         "BACKUP_OFFSITE_DIR is not set");
    char rerr[1024];
    if (backup_repo_require_offsite(s->offsite_dir, rerr, sizeof(rerr)) < 0)
        return json_pack("{s:b,s:b,s:b,s:s,s:s}", "ok", 0, "configured", 1, "exists", 0, "dir",
                         s->offsite_dir, "message", rerr);
    if (!id)
        return json_pack("{s:b,s:b,s:s,s:s}", "ok", 0, "configured", 1, "dir", s->offsite_dir, "message",
                         "no local latest backup to compare");
    char a[PATH_MAX], b[PATH_MAX];
    backup_repo_path(s->backup_path, id, BACKUP_MANIFEST_FILE, a, sizeof(a));
    backup_repo_path(s->offsite_dir, id, BACKUP_MANIFEST_FILE, b, sizeof(b));
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    json_t *out;
    if (util_read_file(b, 64u << 20, &tb, &lb) < 0) {
        out = json_pack("{s:b,s:b,s:s,s:s}", "ok", 0, "configured", 1, "dir", s->offsite_dir, "message",
                        "the latest backup has no offsite copy");
    } else if (util_read_file(a, 64u << 20, &ta, &la) < 0 || la != lb || memcmp(ta, tb, la) != 0) {
        out = json_pack("{s:b,s:b,s:s,s:s}", "ok", 0, "configured", 1, "dir", s->offsite_dir, "message",
                        "the offsite manifest differs from the local one");
    } else if (!key) {
        out = json_pack("{s:b,s:b,s:s,s:s}", "ok", 0, "configured", 1, "dir", s->offsite_dir, "message",
                        "no key to verify the offsite copy");
    } else {
        out = verify_in(s->offsite_dir, id, key, backup_thread_count(s->threads));
        json_object_set_new(out, "configured", json_true());
        json_object_set_new(out, "dir", json_string(s->offsite_dir));
    }
    free(ta);
    free(tb);
    return out;
}

static json_t *disk(const backup_settings_t *s)
{
    struct statvfs st;
    if (statvfs(s->backup_path, &st) != 0)
        return json_pack("{s:b,s:s}", "ok", 0, "message", "cannot stat BACKUP_PATH");
    uint64_t free_b = (uint64_t)st.f_bavail * st.f_frsize;
    bool ok = free_b >= s->min_free_bytes;
    char f[24], m[24], msg[128];
    backup_format_bytes(free_b, f, sizeof(f));
    backup_format_bytes_exact(s->min_free_bytes, m, sizeof(m)); /* 1G is 2^30: "1 GiB" */
    snprintf(msg, sizeof(msg), "%s free (min %s)", f, m);
    return json_pack("{s:b,s:I,s:I,s:s}", "ok", ok, "free_bytes", (json_int_t)free_b, "min_free_bytes",
                     (json_int_t)s->min_free_bytes, "message", msg);
}

/* Room for the database snapshot a backup writes next to the database (review47 #8). */
static json_t *db_disk(const backup_settings_t *s)
{
    if (!s->db_path[0])
        return json_pack("{s:b,s:s}", "ok", 1, "message", "no database path");
    char dir[PATH_MAX];
    uint64_t need, free_b;
    if (backup_db_room(s->db_path, dir, sizeof(dir), &need, &free_b) < 0)
        return json_pack("{s:b,s:s}", "ok", 0, "message", "cannot stat the database or its directory");
    char f[24], n[24], msg[PATH_MAX + 160];
    backup_format_bytes(free_b, f, sizeof(f));
    backup_format_bytes(need, n, sizeof(n));
    snprintf(msg, sizeof(msg), "%s free in %s; a backup's database snapshot needs about %s there", f, dir, n);
    return json_pack("{s:b,s:I,s:I,s:s}", "ok", free_b > need, "free_bytes", (json_int_t)free_b, "needed_bytes",
                     (json_int_t)need, "message", msg);
}

/* No restore journal beside the database: a restore cut short in its swap (restore.h) left a
 * mix of backup and old data that the server refuses to start on. */
static json_t *restore_state(const backup_settings_t *s)
{
    if (!s->db_path[0])
        return json_pack("{s:b,s:s}", "ok", 1, "message", "no database path");
    char msg[2048] = "";
    int r = backup_restore_journal_check(s->db_path, msg, sizeof(msg));
    if (r == 0)
        return json_pack("{s:b,s:s}", "ok", 1, "message", "no interrupted restore");
    if (r != -EUCLEAN)
        snprintf(msg, sizeof(msg), "cannot look for a restore journal beside %.1024s: %s", s->db_path,
                 strerror(-r));
    return json_pack("{s:b,s:s}", "ok", 0, "message", msg);
}

/* The shared reader lock of a repository that exists (prune takes it exclusively before it
 * deletes anything, so the check never reads a half-pruned repository). -1 with nothing to
 * lock (no repository, nothing to race); -2 with err when it stays busy or fails. A
 * read-only repository (a WORM volume) is read without it: the note goes to notes. */
static int lock_repo(const char *repo, json_t *notes, char *err, size_t errlen)
{
    struct stat st;
    if (!repo || stat(repo, &st) < 0 || !S_ISDIR(st.st_mode))
        return -1;
    int fd = backup_repo_lock(repo, BACKUP_LOCK_READ_SHARED, false, BACKUP_CHECK_LOCK_WAIT_MS, err, errlen);
    if (fd >= 0 && err[0])
        json_array_append_new(notes, json_string(err));
    return fd >= 0 ? fd : -2;
}

bool backup_check(const backup_settings_t *s, const backup_key_t *key, const char *key_error, json_t **ret)
{
    int64_t now = util_now_ms();
    char id[BACKUP_ID_MAX];
    int64_t ts = 0;
    char lerr[1024] = "";
    json_t *notes = json_array();
    int lock = lock_repo(s->backup_path, notes, lerr, sizeof(lerr)), olock = -1;
    if (lock == -2) {
        json_decref(notes);
        char iso[ISO8601_LEN];
        util_iso8601(now, iso);
        *ret = json_pack("{s:b,s:s,s:s,s:n,s:{s:{s:b,s:s}}}", "ok", 0, "timestamp", iso, "backup_path",
                         s->backup_path, "latest", "checks", "lock", "ok", 0, "message", lerr);
        return false;
    }
    if (s->offsite_dir)
        olock = lock_repo(s->offsite_dir, notes, lerr, sizeof(lerr));
    bool have = backup_repo_latest(s->backup_path, id) == 0;
    int info_r = have ? backup_latest_info(s->backup_path, &ts, NULL, 0) : -ENOENT;
    json_t *checks = json_object();
    json_object_set_new(checks, "freshness", freshness(s, key, have ? id : NULL, info_r, ts, now));
    if (!have)
        json_object_set_new(checks, "integrity",
                            json_pack("{s:b,s:s}", "ok", 0, "message", "no backup to verify"));
    else if (!key)
        json_object_set_new(
            checks, "integrity",
            json_pack("{s:b,s:s}", "ok", 0, "message", key_error ? key_error : "no backup key"));
    else
        json_object_set_new(checks, "integrity",
                            verify_in(s->backup_path, id, key, backup_thread_count(s->threads)));
    if (olock == -2)
        json_object_set_new(
            checks, "offsite",
            json_pack("{s:b,s:b,s:s,s:s}", "ok", 0, "configured", 1, "dir", s->offsite_dir, "message", lerr));
    else
        json_object_set_new(checks, "offsite", offsite(s, have ? id : NULL, key));
    if (olock >= 0)
        backup_repo_unlock(olock);
    if (lock >= 0)
        backup_repo_unlock(lock);
    json_object_set_new(checks, "disk", disk(s));
    json_object_set_new(checks, "db_disk", db_disk(s));
    json_object_set_new(checks, "restore", restore_state(s));
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach(checks, k, v) ok = ok && json_is_true(json_object_get(v, "ok"));
    char iso[ISO8601_LEN];
    util_iso8601(now, iso);
    *ret = json_pack("{s:b,s:s,s:s,s:o,s:o}", "ok", ok, "timestamp", iso, "backup_path", s->backup_path,
                     "latest", have ? json_string(id) : json_null(), "checks", checks);
    if (json_array_size(notes))
        json_object_set(*ret, "notes", notes);
    json_decref(notes);
    return ok;
}
