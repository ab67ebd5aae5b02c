/* SPDX-License-Identifier: Apache-2.0 */
/* A consistent cut of the active audit log and its checkpoints file (see snapshot.h): the
 * files are opened and measured under the writer's flock, which is released at once (the
 * writer fails closed after waiting AUDIT_LOCK_WAIT_MS for it), and read later from the
 * open descriptors up to the measured sizes. */
#include "audit/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "audit/record.h"
#include "common/lockfile.h"

static void file_reset(audit_snapshot_file_t *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
}

/* Opens path read-only and fstats it; a missing file leaves f->fd at -1. */
static int open_measure(const char *path, audit_snapshot_file_t *f, char *err, size_t errlen)
{
    file_reset(f);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (fstat(fd, &f->st) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(f->st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    f->fd = fd;
    f->size = (uint64_t)f->st.st_size;
    return 0;
}

int audit_snapshot_take(const char *log_path, int wait_ms, audit_snapshot_t *ret, char *err, size_t errlen)
{
    file_reset(&ret->log);
    file_reset(&ret->ckpt);
    char lock_path[PATH_MAX], ckpt_path[PATH_MAX];
    audit_path_lock(log_path, lock_path, sizeof(lock_path));
    audit_path_checkpoints(log_path, ckpt_path, sizeof(ckpt_path));
    /* flock works on a read-only descriptor: a reader that may not create files still can
     * take the lock the writer made */
    int lfd = open(lock_path, O_RDONLY | O_CLOEXEC);
    if (lfd < 0 && errno == ENOENT)
        lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lfd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open the audit log's lock file %s: %s", lock_path, strerror(e));
        return -e;
    }
    int r = lockfile_wait(lfd, LOCK_EX, wait_ms);
    if (r < 0) {
        if (r == -ETIMEDOUT)
            snprintf(err, errlen,
                     "the audit log %s: its lock %s stayed held for %d ms (a stuck writer?): no consistent "
                     "copy of the log and its checkpoints could be taken",
                     log_path, lock_path, wait_ms);
        else
            snprintf(err, errlen, "the audit log %s: locking %s: %s", log_path, lock_path, strerror(-r));
        close(lfd);
        return r;
    }
    /* under the lock: no batch or checkpoint is half done, so the pair is consistent */
    r = open_measure(log_path, &ret->log, err, errlen);
    if (r == 0)
        r = open_measure(ckpt_path, &ret->ckpt, err, errlen);
    flock(lfd, LOCK_UN);
    close(lfd);
    if (r < 0)
        audit_snapshot_release(ret);
    return r;
}

void audit_snapshot_release(audit_snapshot_t *s)
{
    if (s->log.fd >= 0)
        close(s->log.fd);
    if (s->ckpt.fd >= 0)
        close(s->ckpt.fd);
    s->log.fd = s->ckpt.fd = -1;
}
