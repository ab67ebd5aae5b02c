/* SPDX-License-Identifier: Apache-2.0 */
/* flock-based data locks; see lockfile.h. */
#include "common/lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

int lockfile_wait(int fd, int op, int wait_ms)
{
    int64_t deadline = util_mono_ns() + (int64_t)(wait_ms > 0 ? wait_ms : 0) * 1000000;
    long pause_us = 200;
    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return -errno;
        if (util_mono_ns() >= deadline)
            return -ETIMEDOUT;
        nanosleep(&(struct timespec){.tv_nsec = pause_us * 1000}, NULL);
        pause_us = pause_us < 10000 ? pause_us * 2 : 10000;
    }
}

void lockfile_path_for_db(const char *db_path, char *buf, unsigned long len)
{
    snprintf(buf, len, "%s.lock", db_path);
}

int lockfile_acquire(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) {
        /* the pid is informational only; the lock is what counts */
    }
    return fd;
}

void lockfile_release(int fd)
{
    if (fd >= 0)
        close(fd); /* closing drops the flock */
}

int lockfile_is_held(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO there must not hang us */
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int held = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0)
        held = errno == EWOULDBLOCK ? 1 : -errno;
    close(fd);
    return held;
}

long lockfile_holder(const char *path)
{
    char buf[32] = "";
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}
