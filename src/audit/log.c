/* SPDX-License-Identifier: Apache-2.0 */
/* The audit writer: a queue drained by one thread that appends records with group commit
 * (one write(2) and one fdatasync per batch), continues the HMAC chain across processes and
 * daily files, and writes signed checkpoints.
 *
 * DESIGN
 * - Submitters only enqueue (a copy of the event) and return; the event loop never blocks.
 *   The writer takes the whole queue as one batch, so under load many requests share one
 *   fdatasync. done() runs on the writer thread after the batch is durable (strict) or
 *   written (async), or with <0 when it failed.
 * - Several processes (serve, CLI commands) may append: every batch runs under an exclusive
 *   flock on <log>.lock. On taking the lock the writer checks the file's inode and size
 *   against what it left; if they differ another process appended (or rotated), so it
 *   re-reads the last record and continues the chain from there. The file is therefore the
 *   only truth: (last_seq, last_hash) in memory are a cache valid while (ino, size) match.
 *   Under load the writer keeps the lock across back-to-back batches (a lease of at most
 *   LEASE_MS, dropped as soon as the queue runs dry), so those batches cost one write and
 *   one fdatasync and no flock/stat.
 * - The hot path is cheap: the submitter formats the record once into one allocation that
 *   is also the queue node (record.h: audit_record_prepare_in), and the writer seals the
 *   lines straight into a buffer reused from batch to batch.
 * - Rotation: when the date (UTC) of the file's last record differs from today, the active
 *   file is renamed to <log>.<that date> (".N" appended if taken) and a new one started; the
 *   chain continues (seq and prev_hash carry over). Rotation never deletes.
 * - Failure: a failed write or fdatasync truncates back to the size before the batch, fails
 *   the whole batch (fail closed) and marks the log unhealthy. While unhealthy the writer
 *   retries every second by appending an AUDIT_RECOVERED record (how many records failed and
 *   since when); its success makes the log healthy again, so /ready recovers without traffic.
 * - A torn last line (crash between write and fdatasync, never acknowledged) is trimmed
 *   under the lock and the trim is logged; so is one of <log>.checkpoints, before the next
 *   checkpoint, and a failed checkpoint append is truncated back like a failed batch.
 * - Checkpoints: after every AUDIT_CHECKPOINT_RECORDS records, or AUDIT_CHECKPOINT_INTERVAL
 *   after a record when fewer came, and at close, the writer signs (seq, hash, ts) of the
 *   file's last record, appends it to <log>.checkpoints (fdatasync) and then appends an
 *   AUDIT_CHECKPOINT record carrying it, so the SIEM receives every checkpoint too. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/checkpoint.h"
#include "audit/record.h"
#include "common/lockfile.h"
#include "common/log.h"
#include "common/util.h"

#define MAX_BATCH 4096
#define MAX_RECORD_BYTES (16 * 1024)
#define RETRY_MS 1000
#define LEASE_MS 20 /* longest the writer keeps the flock across back-to-back batches */
/* Another writer holds the flock for a batch (a write and an fdatasync). Holding it for
 * AUDIT_LOCK_WAIT_MS (record.h) means a stuck process: the batch fails closed (503s, /ready)
 * instead of hanging its requests, and the writer retries every RETRY_MS. */
/* A checkpoint line is about 220 bytes: an unterminated tail of the checkpoints file up to
 * this long is a torn line (trimmed); a longer one was not written by us (left for verify). */
#define CKPT_TORN_MAX 4096

/* A queued record: the node and the record serialised by the submitter share one
 * allocation (audit_record_prepare_in), freed with free(). */
typedef struct item {
    audit_prepared_t *rec; /* NULL = checkpoint request */
    audit_done_fn done;
    void *arg;
    bool sync; /* fdatasync even in async mode (append_sync) */
    struct item *next;
} item_t;

struct audit_log {
    char *path;
    char lock_path[4200];
    char ckpt_path[4200];
    unsigned char key[AUDIT_KEY_LEN];
    bool strict;
    EVP_PKEY *sign_key; /* NULL = no checkpoints */
    uint64_t ckpt_every;
    int64_t ckpt_interval_ms;

    /* writer-thread state (also used by close after the thread is joined) */
    int fd;      /* active file, O_APPEND; -1 = not open */
    dev_t dev;   /* identity of fd */
    ino_t ino;   /* identity of fd */
    off_t known; /* file size after our last write; -1 = unknown (re-read the tail) */
    int lock_fd; /* <log>.lock */
    uint64_t last_seq;
    char last_hash[AUDIT_HASH_HEX];
    int64_t last_ts_days; /* date of the active file's last record, -1 if the file is empty */
    uint64_t since_ckpt;  /* records appended since our last checkpoint */
    int64_t first_unckpt_ms;
    bool dirty;        /* async: written but not yet fdatasync'ed */
    bool locked;       /* the flock is held (kept across back-to-back batches, see LEASE_MS) */
    int64_t locked_ms; /* when it was taken */
    char *wbuf;        /* a batch's sealed lines, reused */
    size_t wcap;
    uint64_t failed_records;
    int64_t failing_since_ms;
    uint64_t gap_found; /* sync_state found records missing (last seq still there + 1): AUDIT_GAP due */
    bool gap_due;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    item_t *head, *tail;
    size_t queued;
    uint64_t pushed, finished; /* items queued and items done (callback run), ever */
    pthread_cond_t done_cv;    /* finished moved (audit_log_quiesce) */
    bool stopping;
    _Atomic int64_t stop_ms; /* when shutdown began (quiesce or close; 0: running): bounds the lock wait */
    bool thread_started;
    pthread_t thread;
    atomic_bool healthy;
    _Atomic int64_t ckpt_failing_since_ms; /* 0: the last checkpoint was written (review47 #7) */
    int64_t ckpt_retry_ms; /* after a failed checkpoint, the next is not tried before (review48 #3) */
};

static int64_t day_of_ms(int64_t ms)
{
    return ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
}

static int64_t ts_days(const char *ts)
{
    char d[11];
    int64_t days;
    if (!ts || strlen(ts) < 10)
        return -1;
    memcpy(d, ts, 10);
    d[10] = '\0';
    return audit_date_parse(d, &days) < 0 ? -1 : days;
}

static void item_free(item_t *it)
{
    free(it); /* the record lives in the same allocation */
}

/* ---- under the flock ---- */

static int lock_log(audit_log_t *a)
{
    if (a->lock_fd < 0) {
        a->lock_fd = open(a->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (a->lock_fd < 0)
            return -errno;
    }
    /* bounded: AUDIT_LOCK_WAIT_MS, and once closing began no later than that after it (a wait
     * begun before the close ends first by its own bound) */
    int64_t t0 = util_now_ms(), stop = atomic_load(&a->stop_ms), wait = AUDIT_LOCK_WAIT_MS;
    if (stop && stop + AUDIT_LOCK_WAIT_MS - t0 < wait)
        wait = stop + AUDIT_LOCK_WAIT_MS - t0;
    int rc = lockfile_wait(a->lock_fd, LOCK_EX, (int)(wait > 0 ? wait : 0));
    if (rc == -ETIMEDOUT)
        log_msg(LOG_ERROR, "audit log lock held by another process", "{s:s,s:I}", "lock", a->lock_path,
                "waited_ms", (json_int_t)(util_now_ms() - t0));
    return rc;
}

static void unlock_log(audit_log_t *a)
{
    if (a->lock_fd >= 0)
        flock(a->lock_fd, LOCK_UN);
    a->locked = false;
}

static void adopt_record(audit_log_t *a, const json_t *rec, bool in_active)
{
    a->last_seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
    snprintf(a->last_hash, sizeof(a->last_hash), "%s", json_string_value(json_object_get(rec, "hash")));
    a->last_ts_days = in_active ? ts_days(json_string_value(json_object_get(rec, "ts"))) : -1;
}

/* Makes (fd, last_seq, last_hash) match the files. Called with the flock held. */
static int sync_state(audit_log_t *a)
{
    struct stat st;
    bool same = false;
    if (stat(a->path, &st) == 0 && a->fd >= 0 && st.st_ino == a->ino && st.st_dev == a->dev)
        same = true;
    if (!same) {
        if (a->fd >= 0)
            close(a->fd);
        a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (a->fd < 0)
            return -errno;
        if (fstat(a->fd, &st) < 0)
            return -errno;
        a->dev = st.st_dev;
        a->ino = st.st_ino;
        a->known = -1;
    }
    if (a->known == st.st_size)
        return 0;

    /* another process appended or rotated, or first use: re-read the last record */
    uint64_t had_seq = a->last_seq;
    char had_hash[AUDIT_HASH_HEX];
    snprintf(had_hash, sizeof(had_hash), "%s", a->last_hash);
    int rfd = open(a->path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return -errno;
    json_t *rec = NULL;
    off_t valid = 0;
    int rc = audit_file_tail(rfd, st.st_size, &rec, &valid);
    close(rfd);
    if (rc < 0) {
        log_msg(LOG_CRITICAL, "audit log: last complete line is not a valid record; refusing to append",
                "{s:s}", "path", a->path);
        return rc;
    }
    if (valid < st.st_size) {
        if (ftruncate(a->fd, valid) < 0 || fdatasync(a->fd) < 0) {
            json_decref(rec);
            return -errno;
        }
        log_msg(LOG_WARNING, "audit log: trimmed a torn last record (written, never acknowledged)",
                "{s:s,s:I,s:I}", "path", a->path, "trimmed_bytes", (json_int_t)(st.st_size - valid), "size",
                (json_int_t)valid);
    }
    if (rec) {
        adopt_record(a, rec, true);
        json_decref(rec);
    } else {
        /* empty active file: the chain continues from the newest archive */
        rc = audit_log_last_record(a->path, &rec);
        if (rc < 0)
            return rc;
        if (rec) {
            adopt_record(a, rec, false);
            json_decref(rec);
        } else {
            a->last_seq = 0;
            snprintf(a->last_hash, sizeof(a->last_hash), "%s", AUDIT_GENESIS_HASH);
            a->last_ts_days = -1;
        }
    }
    uint64_t found = a->last_seq;
    if (a->last_seq < had_seq) {
        /* Appends and rotation only move the chain forward: records this process wrote are
         * gone (the file was deleted, replaced or truncated outside aimedres). The chain
         * continues from what we wrote, so `audit verify` reports the gap instead of a new,
         * intact-looking chain starting at seq 1. */
        log_msg(LOG_CRITICAL, "audit log: records this server wrote are missing from the files", "{s:s,s:I,s:I}",
                "path", a->path, "last_seq_written", (json_int_t)had_seq, "last_seq_found",
                (json_int_t)a->last_seq);
        a->last_seq = had_seq;
        snprintf(a->last_hash, sizeof(a->last_hash), "%s", had_hash);
        a->gap_found = found;
        a->gap_due = true;
    }
    a->known = valid;
    return 0;
}

/* True when the archive at path ends in a record of this chain no later than seq. */
static bool archive_precedes(const char *path, uint64_t seq)
{
    /* never blocks: a FIFO named like an archive would hold the writer, lock and all (review46 #3) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    json_t *rec = NULL;
    off_t valid;
    bool yes = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && audit_file_tail(fd, st.st_size, &rec, &valid) == 0 &&
               rec &&
               (uint64_t)json_integer_value(json_object_get(rec, "seq")) <= seq;
    json_decref(rec);
    close(fd);
    return yes;
}

static int rotate_if_needed(audit_log_t *a, int64_t now_ms)
{
    if (a->last_ts_days < 0 || a->known <= 0 || a->last_ts_days == day_of_ms(now_ms))
        return 0;
    /* The archive is named by its last record's day, but not by a day before the newest
     * archive's: when the clock was stepped back across midnight (by hours or by days), a day
     * already archived comes round again, and its name must still sort after every earlier
     * archive (chain order is name order: audit_files_list). Which names count is told by the
     * chain, not by the clock being distrusted: an archive counts when it holds records of this
     * chain up to ours (its last record's seq <= a->last_seq); a stray file does not. Only
     * archives dated after the last record's day are read (none, unless the clock went back). */
    int64_t day = a->last_ts_days;
    audit_file_t *files;
    size_t n;
    int rc = audit_files_list(a->path, &files, &n);
    if (rc < 0)
        return rc;
    /* each archive dated on or after the last record's day is read once (precedes[i]) */
    bool *precedes = calloc(n ? n : 1, sizeof(*precedes));
    if (!precedes) {
        audit_files_free(files, n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        precedes[i] = files[i].date_days >= day && archive_precedes(files[i].path, a->last_seq);
        if (precedes[i] && files[i].date_days > day)
            day = files[i].date_days;
    }
    /* the next suffix of that day: one past the highest archive of this chain there, so that
     * the new one sorts after it (a stray name, say "….999999999", does not count); then the
     * first free name from there: never renaming over a file */
    long next = -1;
    for (size_t i = 0; i < n; i++)
        if (files[i].date_days == day && (long)files[i].part > next && precedes[i])
            next = (long)files[i].part;
    free(precedes);
    audit_files_free(files, n);
    char date[11], dst[4300];
    audit_date_format(day, date);
    for (int tries = 0;; tries++, next++) {
        if (tries == 1000 || next >= AUDIT_ARCHIVE_PART_MAX)
            return -EEXIST; /* past the last name archive listers read (review46 #4) */
        if (next < 0)
            snprintf(dst, sizeof(dst), "%s.%s", a->path, date);
        else
            snprintf(dst, sizeof(dst), "%s.%s.%ld", a->path, date, next + 1);
        if (!util_path_exists(dst))
            break;
    }
    if (fdatasync(a->fd) < 0 || rename(a->path, dst) < 0)
        return -errno;
    char dir[4200];
    util_dirname(a->path, dir, sizeof(dir));
    close(a->fd);
    a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (a->fd < 0)
        return -errno;
    struct stat st;
    if (fstat(a->fd, &st) < 0)
        return -errno;
    a->dev = st.st_dev;
    a->ino = st.st_ino;
    a->known = 0;
    a->last_ts_days = -1;
    util_fsync_dir(dir);
    log_msg(LOG_INFO, "audit log rotated", "{s:s,s:I}", "archive", dst, "last_seq", (json_int_t)a->last_seq);
    return 0;
}

/* Appends the records (seq/ts/prev_hash filled here) as one write; durable if sync. With
 * the flock held and state synced. On failure the file and the cache are as before. The
 * lines are sealed straight into a->wbuf (reused from batch to batch). */
static int append_records(audit_log_t *a, audit_prepared_t **recs, size_t n, bool sync)
{
    uint64_t seq = a->last_seq;
    char hash[AUDIT_HASH_HEX];
    snprintf(hash, sizeof(hash), "%s", a->last_hash);
    int rc = 0;
    int64_t now = util_now_ms();
    if ((rc = rotate_if_needed(a, now)) < 0)
        return rc;
    char ts[ISO8601_LEN];
    util_iso8601(now, ts);
    size_t need = 0, len = 0;
    for (size_t i = 0; i < n; i++)
        need += AUDIT_PREPARED_LINE_MAX(recs[i]);
    if (need > a->wcap) {
        size_t nc = need > 64 * 1024 ? need : 64 * 1024;
        char *nb = realloc(a->wbuf, nc);
        if (!nb)
            return -ENOMEM;
        a->wbuf = nb;
        a->wcap = nc;
    }
    for (size_t i = 0; i < n; i++) {
        char prev[AUDIT_HASH_HEX];
        memcpy(prev, hash, sizeof(prev));
        size_t l = audit_prepared_seal_into(recs[i], ++seq, ts, prev, a->key, hash, a->wbuf + len);
        if (l == 0)
            return -EIO;
        len += l;
    }
    rc = util_write_all(a->fd, a->wbuf, len);
    if (rc == 0 && sync && fdatasync(a->fd) < 0)
        rc = -errno;
    if (rc < 0) {
        /* undo a partial or unsynced append; if even that fails, re-read the tail next time */
        if (ftruncate(a->fd, a->known) < 0 || fdatasync(a->fd) < 0)
            a->known = -1;
        return rc;
    }
    a->dirty = !sync;
    a->known += (off_t)len;
    a->last_seq = seq;
    memcpy(a->last_hash, hash, sizeof(a->last_hash));
    a->last_ts_days = day_of_ms(now);
    return 0;
}

/* The offset just after the last '\n' of the checkpoints file (fd, size): where a torn last
 * line (a crash between write and fdatasync, never acknowledged) begins; size when the file
 * ends with '\n'. An unterminated tail longer than any line is not a torn line: -EBADMSG. */
static int ckpt_complete_len(int fd, off_t size, off_t *ret)
{
    *ret = size;
    if (size == 0)
        return 0;
    char *buf;
    size_t want;
    off_t start;
    int rc = audit_read_tail(fd, size, CKPT_TORN_MAX, &buf, &want, &start);
    if (rc < 0)
        return rc;
    ssize_t end = (ssize_t)want - 1;
    while (end >= 0 && buf[end] != '\n')
        end--;
    free(buf);
    if (end < 0 && start > 0)
        return -EBADMSG;
    *ret = start + (off_t)end + 1;
    return 0;
}

/* Signs the position of the file's last record and records the checkpoint. Flock held.
 * Like the log's own records: a torn last checkpoint line is trimmed first, and a failed or
 * partial append is truncated away, so the next checkpoint never lands on a partial line
 * (which `audit verify` would report as a malformed checkpoint for good). */
static int write_checkpoint(audit_log_t *a)
{
    if (!a->sign_key)
        return 0;
    if (a->last_seq == 0)
        return -ENODATA; /* nothing to sign yet */
    char ts[ISO8601_LEN];
    util_iso8601(util_now_ms(), ts);
    char *line = NULL;
    size_t len;
    int rc = audit_ckpt_sign(a->sign_key, a->last_seq, a->last_hash, ts, &line, &len);
    if (rc < 0)
        return rc;
    int fd = open(a->ckpt_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = -errno;
        free(line);
        return rc;
    }
    struct stat st;
    off_t keep = 0;
    rc = fstat(fd, &st) < 0 ? -errno : ckpt_complete_len(fd, st.st_size, &keep);
    if (rc == -EBADMSG) {
        /* not ours to trim (evidence): append as before; verify reports the line as malformed */
        log_msg(LOG_CRITICAL,
                "audit checkpoints: the file ends with an unterminated tail longer than any checkpoint "
                "line (not a torn line); left in place",
                "{s:s}", "path", a->ckpt_path);
        keep = st.st_size;
        rc = 0;
    }
    if (rc == 0 && keep < st.st_size) {
        if (ftruncate(fd, keep) < 0 || fdatasync(fd) < 0)
            rc = -errno;
        else
            log_msg(LOG_WARNING,
                    "audit checkpoints: trimmed a torn last checkpoint line (written, never acknowledged)",
                    "{s:s,s:I,s:I}", "path", a->ckpt_path, "trimmed_bytes", (json_int_t)(st.st_size - keep),
                    "size", (json_int_t)keep);
    }
    if (rc == 0) {
        rc = util_write_all(fd, line, len);
        if (rc == 0 && fdatasync(fd) < 0)
            rc = -errno;
        /* undo a partial or unsynced append; if even that fails, the next checkpoint trims a
         * partial line first */
        if (rc < 0 && (ftruncate(fd, keep) < 0 || fdatasync(fd) < 0))
            log_msg(LOG_ERROR, "audit checkpoints: could not truncate a failed append", "{s:s,s:s}", "path",
                    a->ckpt_path, "error", strerror(errno));
    }
    close(fd);
    json_t *ck = rc == 0 ? json_loadb(line, len, 0, NULL) : NULL;
    free(line);
    if (rc < 0)
        return rc;
    a->since_ckpt = 0;
    json_t *detail =
        json_pack("{s:O,s:O,s:O}", "checkpoint_seq", json_object_get(ck, "seq"), "checkpoint_hash",
                  json_object_get(ck, "hash"), "sig", json_object_get(ck, "sig"));
    json_decref(ck);
    audit_event_t ev = {.type = "AUDIT_CHECKPOINT", .action = "E", .outcome = "success", .detail = detail};
    audit_prepared_t *rec = audit_record_prepare(&ev);
    json_decref(detail);
    if (!rec)
        return -ENOMEM;
    rc = append_records(a, &rec, 1, true);
    audit_prepared_free(rec);
    if (rc == 0)
        a->since_ckpt = 0; /* the checkpoint record itself does not call for another one */
    return rc;
}

static bool checkpoint_due(const audit_log_t *a, int64_t now)
{
    return a->sign_key && a->since_ckpt > 0 && now >= a->ckpt_retry_ms &&
           (a->since_ckpt >= a->ckpt_every || now - a->first_unckpt_ms >= a->ckpt_interval_ms);
}

/* One locked round: append the batch (may be empty), then a checkpoint when due.
 * force_ckpt: 0 = when due, 1 = also when records were added since the last one, 2 = always.
 * keep: on success keep the flock for the next batch (the writer loop releases it when the
 * queue runs dry or after LEASE_MS); while it is held no other process can have touched the
 * file, so the next round skips the stat and the tail check. */
/* The chain's own account of a loss sync_state found, durable before anything follows it:
 * `audit verify` fails at it for good (the records are gone; the trail says so). */
static int append_gap(audit_log_t *a)
{
    json_t *detail = json_pack("{s:I,s:I,s:s}", "missing_from_seq", (json_int_t)(a->gap_found + 1),
                               "missing_to_seq", (json_int_t)a->last_seq, "reason",
                               "records written by this server were no longer in the log files (deleted, "
                               "replaced or truncated outside aimedres)");
    audit_event_t ev = {.type = "AUDIT_GAP", .action = "E", .outcome = "failure", .detail = detail};
    audit_prepared_t *rec = audit_record_prepare(&ev);
    json_decref(detail);
    if (!rec)
        return -ENOMEM;
    int rc = append_records(a, &rec, 1, true);
    audit_prepared_free(rec);
    if (rc == 0)
        a->gap_due = false;
    return rc;
}

static int run_batch(audit_log_t *a, audit_prepared_t **recs, size_t n, bool sync, int force_ckpt, bool keep)
{
    int rc = 0;
    if (!a->locked || a->known < 0) {
        if (!a->locked) {
            if ((rc = lock_log(a)) < 0)
                return rc;
            a->locked = true;
            a->locked_ms = util_now_ms();
        }
        rc = sync_state(a);
    }
    if (rc == 0 && a->gap_due)
        rc = append_gap(a);
    if (rc == 0 && n > 0) {
        rc = append_records(a, recs, n, sync);
        if (rc == 0) {
            if (a->since_ckpt == 0)
                a->first_unckpt_ms = util_now_ms();
            a->since_ckpt += n;
        }
    }
    if (rc == 0 &&
        (checkpoint_due(a, util_now_ms()) || (force_ckpt == 1 && a->since_ckpt > 0) || force_ckpt == 2)) {
        int crc = write_checkpoint(a);
        int64_t none = 0;
        if (crc < 0) {
            log_msg(LOG_ERROR, "audit checkpoint failed", "{s:s,s:s}", "path", a->ckpt_path, "error",
                    strerror(-crc));
            atomic_compare_exchange_strong(&a->ckpt_failing_since_ms, &none, util_now_ms());
            a->ckpt_retry_ms = util_now_ms() + RETRY_MS; /* an idle writer must not spin on it */
        } else {
            atomic_store(&a->ckpt_failing_since_ms, 0);
            a->ckpt_retry_ms = 0;
        }
        if (force_ckpt == 2)
            rc = crc;
    }
    if (rc < 0 || !keep)
        unlock_log(a);
    return rc;
}

static void note_failure(audit_log_t *a, size_t n, int rc)
{
    if (atomic_load(&a->healthy)) {
        a->failing_since_ms = util_now_ms();
        log_msg(LOG_CRITICAL, "audit log write failed: failing closed", "{s:s,s:s}", "path", a->path, "error",
                strerror(-rc));
    }
    a->failed_records += n;
    atomic_store(&a->healthy, false);
}

/* While unhealthy: try to write the AUDIT_RECOVERED record; success makes us healthy. */
static void try_recover(audit_log_t *a)
{
    char since[ISO8601_LEN];
    util_iso8601(a->failing_since_ms, since);
    json_t *detail =
        json_pack("{s:I,s:s}", "failed_records", (json_int_t)a->failed_records, "failing_since", since);
    audit_event_t ev = {.type = "AUDIT_RECOVERED", .action = "E", .outcome = "success", .detail = detail};
    audit_prepared_t *rec = audit_record_prepare(&ev);
    json_decref(detail);
    if (!rec)
        return;
    int rc = run_batch(a, &rec, 1, true, 0, false);
    audit_prepared_free(rec);
    if (rc == 0) {
        log_msg(LOG_WARNING, "audit log writable again", "{s:s,s:I}", "path", a->path, "failed_records",
                (json_int_t)a->failed_records);
        a->failed_records = 0;
        atomic_store(&a->healthy, true);
    }
}

static void *writer_main(void *arg)
{
    audit_log_t *a = arg;
    audit_prepared_t *recs[MAX_BATCH];
    item_t *items[MAX_BATCH];
    int64_t last_retry = 0;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->head && !a->stopping) {
            int64_t now = util_now_ms();
            if (!atomic_load(&a->healthy) && now - last_retry >= RETRY_MS)
                break;
            /* while unhealthy the retry above writes (and checkpoints): a checkpoint that
             * can not be written must not spin this loop */
            if (atomic_load(&a->healthy) && checkpoint_due(a, now))
                break;
            if (a->dirty)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait_ms = 250;
            ts.tv_sec += (ts.tv_nsec / 1000000 + wait_ms) / 1000;
            ts.tv_nsec = ((ts.tv_nsec / 1000000 + wait_ms) % 1000) * 1000000 + ts.tv_nsec % 1000000;
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        }
        if (!a->head && a->stopping)
            break;
        size_t n = 0, nrec = 0;
        bool sync = a->strict, ckpt_req = false;
        while (a->head && n < MAX_BATCH) {
            item_t *it = a->head;
            a->head = it->next;
            items[n] = it;
            if (it->rec)
                recs[nrec++] = it->rec;
            else
                ckpt_req = true; /* audit_log_checkpoint */
            sync = sync || it->sync;
            n++;
        }
        if (!a->head)
            a->tail = NULL;
        a->queued -= n;
        pthread_mutex_unlock(&a->mu);

        /* Recovery is always recorded: before any batch while unhealthy (and every RETRY_MS
         * without traffic) the AUDIT_RECOVERED record is written first, and only its success
         * makes the log healthy again. */
        if (!atomic_load(&a->healthy) && (n > 0 || util_now_ms() - last_retry >= RETRY_MS)) {
            last_retry = util_now_ms();
            try_recover(a);
        }
        int rc = 0;
        if (n > 0 && !atomic_load(&a->healthy)) {
            rc = -EIO; /* not even the recovery record could be written (a lock wait is long) */
            note_failure(a, nrec, rc);
        } else if (n > 0 || (atomic_load(&a->healthy) && checkpoint_due(a, util_now_ms()))) {
            rc = run_batch(a, recs, nrec, sync, ckpt_req ? 2 : 0, true);
            if (rc < 0) {
                /* a checkpoint that fails alone fails closed too: the trail can no longer be
                 * sealed */
                note_failure(a, nrec, rc);
                last_retry = util_now_ms(); /* the first retry waits RETRY_MS */
            }
        } else if (a->dirty && a->fd >= 0) {
            a->dirty = false;
            if (fdatasync(a->fd) < 0)
                note_failure(a, 0, -errno);
        }
        for (size_t i = 0; i < n; i++) {
            if (items[i]->done)
                items[i]->done(items[i]->arg, rc);
            item_free(items[i]);
        }
        pthread_mutex_lock(&a->mu);
        a->finished += n;
        if (n)
            pthread_cond_broadcast(&a->done_cv);
        if (a->locked && (!a->head || util_now_ms() - a->locked_ms >= LEASE_MS)) {
            /* the queue ran dry (or the lease is up): let other processes append. After a
             * lease, pause briefly so that a process blocked in flock gets the lock rather
             * than us again at once (flock is not fair). */
            bool busy = a->head != NULL;
            pthread_mutex_unlock(&a->mu);
            unlock_log(a);
            if (busy)
                nanosleep(&(struct timespec){.tv_nsec = 200 * 1000}, NULL);
            pthread_mutex_lock(&a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---- public API ---- */

/* The chain key (from SECRET_KEY) and the checkpoint signing key (AUDIT_SIGNING_KEY_PATH,
 * required in production), or the reason they can not be had. */
static int load_keys(const config_t *cfg, unsigned char chain[AUDIT_KEY_LEN], EVP_PKEY **ret_sign, char *err,
                     size_t errlen)
{
    if (audit_chain_key(cfg->secret_key, chain) < 0) {
        snprintf(err, errlen,
                 "AUDIT_LOG_PATH is set but SECRET_KEY is not: the audit chain key derives from SECRET_KEY "
                 "(set it, e.g. openssl rand -hex 32, or unset AUDIT_LOG_PATH to run without audit)");
        return -EINVAL;
    }
    if (cfg->audit_signing_key_path) {
        char kerr[512] = "";
        int rc = audit_ckpt_load_private(cfg->audit_signing_key_path, ret_sign, kerr, sizeof(kerr));
        if (rc < 0)
            snprintf(err, errlen, "AUDIT_SIGNING_KEY_PATH: %s", kerr);
        return rc;
    }
    if (cfg->environment == ENV_PRODUCTION) {
        snprintf(err, errlen,
                 "AUDIT_SIGNING_KEY_PATH: required when ENVIRONMENT=production and AUDIT_LOG_PATH is set "
                 "(signed checkpoints detect truncation; create keys with `aimedres audit keygen`)");
        return -EINVAL;
    }
    return 0;
}

int audit_settings_check(const config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->audit_log_path || !*cfg->audit_log_path)
        return 0;
    unsigned char chain[AUDIT_KEY_LEN];
    EVP_PKEY *sign = NULL;
    int rc = load_keys(cfg, chain, &sign, err, errlen);
    OPENSSL_cleanse(chain, sizeof(chain));
    EVP_PKEY_free(sign);
    return rc;
}

int audit_log_open(const config_t *cfg, audit_log_t **ret, char *err, size_t errlen)
{
    *ret = NULL;
    if (!cfg->audit_log_path || !*cfg->audit_log_path)
        return 0;
    audit_log_t *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    int rc;
    a->fd = -1;
    a->lock_fd = -1;
    a->known = -1;
    atomic_init(&a->healthy, true);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    pthread_cond_init(&a->done_cv, NULL);
    a->path = strdup(cfg->audit_log_path);
    if (!a->path) {
        rc = -ENOMEM;
        goto fail;
    }
    audit_path_lock(a->path, a->lock_path, sizeof(a->lock_path));
    audit_path_checkpoints(a->path, a->ckpt_path, sizeof(a->ckpt_path));
    a->strict = !cfg->audit_durability || strcmp(cfg->audit_durability, "async") != 0;
    a->ckpt_every = cfg->audit_checkpoint_records > 0 ? (uint64_t)cfg->audit_checkpoint_records : 1000;
    a->ckpt_interval_ms =
        (int64_t)(cfg->audit_checkpoint_interval_s > 0 ? cfg->audit_checkpoint_interval_s : 300) * 1000;
    if ((rc = load_keys(cfg, a->key, &a->sign_key, err, errlen)) < 0)
        goto fail;
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s", a->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if ((rc = util_mkdir_p(dir, 0750)) < 0) {
            snprintf(err, errlen, "AUDIT_LOG_PATH: cannot create %s: %s", dir, strerror(-rc));
            goto fail;
        }
    }
    /* open, trim a torn tail and learn the chain position now, so a broken log fails at start */
    rc = lock_log(a);
    if (rc < 0) { /* the lock file beside the log: its directory must be writable too */
        snprintf(err, errlen, "AUDIT_LOG_PATH: cannot open the lock file %s: %s (the log's directory must be "
                 "writable by the service user: the lock, checkpoint and state files live beside the log)",
                 a->lock_path, strerror(-rc));
        goto fail;
    }
    rc = sync_state(a);
    unlock_log(a);
    if (rc < 0) {
        snprintf(err, errlen, "AUDIT_LOG_PATH: cannot open %s: %s", a->path,
                 rc == -EBADMSG ? "its last line is not a valid audit record (run `aimedres audit verify`)"
                                : strerror(-rc));
        goto fail;
    }
    if ((rc = -pthread_create(&a->thread, NULL, writer_main, a)) < 0) {
        snprintf(err, errlen, "cannot start the audit writer thread");
        goto fail;
    }
    a->thread_started = true;
    if (!a->sign_key)
        log_msg(LOG_WARNING,
                "audit checkpoints disabled: AUDIT_SIGNING_KEY_PATH unset (tail truncation is not "
                "detectable)",
                NULL);
    *ret = a;
    return 0;
fail:
    audit_log_close(a);
    return rc;
}

/* Appends it to the queue and wakes the writer (a no-op in glibc when it is not waiting, e.g.
 * during an fdatasync: one wake-up per group, not per record). Frees it when closing. */
static int push(audit_log_t *a, item_t *it)
{
    pthread_mutex_lock(&a->mu);
    if (a->stopping) {
        pthread_mutex_unlock(&a->mu);
        item_free(it);
        return -ESHUTDOWN;
    }
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    a->queued++;
    a->pushed++;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* The record's node once formatted (mem from audit_*_prepare_in with head sizeof(item_t)). */
static int push_record(audit_log_t *a, void *mem, audit_prepared_t *rec, audit_done_fn done, void *arg,
                       bool sync)
{
    if (!mem)
        return -ENOMEM;
    item_t *it = mem;
    *it = (item_t){.rec = rec, .done = done, .arg = arg, .sync = sync};
    if (audit_prepared_size(rec) > MAX_RECORD_BYTES) {
        item_free(it);
        return -EINVAL; /* a record must stay one bounded line */
    }
    return push(a, it);
}

static int enqueue(audit_log_t *a, const audit_event_t *ev, audit_done_fn done, void *arg, bool sync)
{
    if (!ev) {
        /* a checkpoint request: an item without a record */
        item_t *ck = calloc(1, sizeof(*ck));
        if (!ck)
            return -ENOMEM;
        ck->done = done;
        ck->arg = arg;
        ck->sync = true;
        return push(a, ck);
    }
    if (audit_event_validate(ev) < 0)
        return -EINVAL;
    audit_prepared_t *rec = NULL;
    void *mem = audit_record_prepare_in(ev, sizeof(item_t), &rec);
    return push_record(a, mem, rec, done, arg, sync);
}

static int submit(audit_log_t *a, const audit_event_t *ev, audit_done_fn done, void *arg, bool sync)
{
    if (!a) {
        if (done)
            done(arg, 0);
        return 0;
    }
    return enqueue(a, ev, done, arg, sync);
}

int audit_log_submit(audit_log_t *a, const audit_event_t *ev, audit_done_fn done, void *arg)
{
    return submit(a, ev, done, arg, false);
}

int audit_log_submit_durable(audit_log_t *a, const audit_event_t *ev, audit_done_fn done, void *arg)
{
    return submit(a, ev, done, arg, true);
}

int audit_log_submit_inference(audit_log_t *a, const audit_inference_t *inf, audit_done_fn done, void *arg)
{
    if (!a) {
        if (done)
            done(arg, 0);
        return 0;
    }
    if (!inf || audit_inference_validate(inf) < 0)
        return -EINVAL;
    audit_prepared_t *rec = NULL;
    void *mem = audit_inference_prepare_in(inf, sizeof(item_t), &rec);
    return push_record(a, mem, rec, done, arg, false);
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool finished;
    int status;
} waiter_t;

static void wake(void *arg, int status)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->finished = true;
    w->status = status;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int submit_wait(audit_log_t *a, const audit_event_t *ev)
{
    waiter_t w = {.finished = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = enqueue(a, ev, wake, &w, true);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.finished)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.status;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

int audit_log_append_sync(audit_log_t *a, const audit_event_t *ev)
{
    if (!a)
        return 0;
    if (!ev)
        return -EINVAL;
    return submit_wait(a, ev);
}

int audit_log_checkpoint(audit_log_t *a)
{
    if (!a)
        return -ENOENT;
    if (!a->sign_key)
        return -ENOKEY;
    return submit_wait(a, NULL);
}

int64_t audit_log_checkpoints_failing_since(audit_log_t *a)
{
    return a ? atomic_load(&a->ckpt_failing_since_ms) : 0;
}

bool audit_log_healthy(audit_log_t *a)
{
    return !a || atomic_load(&a->healthy);
}

void audit_log_quiesce(audit_log_t *a)
{
    if (!a || !a->thread_started)
        return;
    int64_t none = 0; /* lock waits from now on are bounded as at close */
    atomic_compare_exchange_strong(&a->stop_ms, &none, util_now_ms());
    pthread_mutex_lock(&a->mu);
    uint64_t target = a->pushed;
    pthread_cond_signal(&a->cv);
    while (a->finished < target)
        pthread_cond_wait(&a->done_cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

void audit_log_close(audit_log_t *a)
{
    if (!a)
        return;
    if (a->thread_started) {
        int64_t none = 0; /* or when audit_log_quiesce began */
        atomic_compare_exchange_strong(&a->stop_ms, &none, util_now_ms());
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
        /* final checkpoint over what we appended; fdatasync what async left */
        if (a->sign_key && a->since_ckpt > 0 && atomic_load(&a->healthy))
            run_batch(a, NULL, 0, true, 1, false);
        if (a->dirty && a->fd >= 0)
            fdatasync(a->fd);
    }
    if (a->fd >= 0)
        close(a->fd);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    EVP_PKEY_free(a->sign_key);
    OPENSSL_cleanse(a->key, sizeof(a->key));
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    pthread_cond_destroy(&a->done_cv);
    free(a->wbuf);
    free(a->path);
    free(a);
}
