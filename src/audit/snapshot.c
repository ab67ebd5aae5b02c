/* SPDX-License-Identifier: Apache-2.0 */
/* A consistent cut of the active audit log and its checkpoints file (see snapshot.h): the
 * files are opened and measured under the writer's flock, which is released at once (the
 * writer fails closed after waiting AUDIT_SNAPSHOT_LOCK_WAIT_MS for it), and read later
 * from the open descriptors up to the measured sizes, in bounded blocks. */
#include "audit/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "audit/record.h"

#define BLOCK (64 * 1024)

static void file_reset(audit_snapshot_file_t *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
}

static int lock_wait(int fd, int wait_ms)
{
    int64_t t0 = util_now_ms();
    long pause_us = 200;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return -errno;
        if (util_now_ms() - t0 >= wait_ms)
            return -ETIMEDOUT;
        nanosleep(&(struct timespec){.tv_nsec = pause_us * 1000}, NULL);
        pause_us = pause_us < 10000 ? pause_us * 2 : 10000;
    }
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
    int r = lock_wait(lfd, wait_ms);
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

typedef int (*block_fn)(void *arg, const void *data, size_t n);

/* Calls fn on the first n bytes of fd, in blocks of at most BLOCK. */
static int for_blocks(int fd, uint64_t n, block_fn fn, void *arg)
{
    char *buf = malloc(BLOCK);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    uint64_t off = 0;
    while (off < n) {
        size_t want = n - off < BLOCK ? (size_t)(n - off) : BLOCK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = -errno;
            break;
        }
        if (got == 0) {
            r = -ENODATA; /* shorter than at the cut */
            break;
        }
        if ((r = fn(arg, buf, (size_t)got)) < 0)
            break;
        off += (uint64_t)got;
    }
    free(buf);
    return r;
}

static int digest_block(void *arg, const void *data, size_t n)
{
    return EVP_DigestUpdate(arg, data, n) == 1 ? 0 : -EIO;
}

int audit_snapshot_sha256(int fd, uint64_t n, char ret_hex[SHA256_HEX_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    int r = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
    if (r == 0)
        r = for_blocks(fd, n, digest_block, ctx);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (r == 0 && (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32))
        r = -EIO;
    EVP_MD_CTX_free(ctx);
    if (r < 0)
        return r;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        ret_hex[2 * i] = hex[md[i] >> 4];
        ret_hex[2 * i + 1] = hex[md[i] & 15];
    }
    ret_hex[2 * len] = '\0';
    return 0;
}
