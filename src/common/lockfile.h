/* SPDX-License-Identifier: Apache-2.0 */
/* Advisory data locks (flock) that say "a server holds this data". `serve` takes the
 * lock of its database exclusively for its whole life; restore refuses to overwrite data
 * whose lock it cannot take. The kernel drops the lock when the process dies, so a
 * kill -9 never leaves a stale lock. */
#ifndef AIMEDRES_COMMON_LOCKFILE_H
#define AIMEDRES_COMMON_LOCKFILE_H

/* Path of the lock file guarding a database location: "<db path>.lock". For non-file
 * URLs (PostgreSQL later) the caller picks another path. Writes into buf. */
void lockfile_path_for_db(const char *db_path, char *buf, unsigned long len);
/* Opens (creating 0640) and locks path exclusively without waiting. Returns the fd
 * (keep it open to hold the lock) or -EWOULDBLOCK when another process holds it, or
 * -errno. Writes our pid into the file for operators. */
int lockfile_acquire(const char *path);
void lockfile_release(int fd);
/* 1 if another process holds the lock, 0 if free, <0 on error. Does not keep the lock. */
int lockfile_is_held(const char *path);
/* The pid the lock's last holder wrote into it (informational), 0 if none can be read. */
long lockfile_holder(const char *path);
/* flock(fd, op) (LOCK_EX or LOCK_SH) waiting at most wait_ms: flock(2) has no timeout, so it
 * polls, pausing 0.2 ms at first and up to 10 ms. 0, -ETIMEDOUT, or -errno. */
int lockfile_wait(int fd, int op, int wait_ms);

#endif
