/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny parallel-for for the backup commands: files are independent, so backup, verify
 * and restore spread them over a few threads (largest first) to use the CPUs that zstd,
 * SHA-256 and AES-GCM keep busy. */
#ifndef AIMEDRES_BACKUP_POOL_H
#define AIMEDRES_BACKUP_POOL_H

#include <stddef.h>

/* Runs fn(arg, order[k]) for k = 0..n-1 on `threads` threads (the caller is one of them;
 * order NULL = 0..n-1). After the first error no new item starts. Returns 0 or the first
 * error an fn returned. */
int backup_parallel(size_t n, const size_t *order, int threads, int (*fn)(void *arg, size_t i), void *arg);

/* Threads to use: threads_setting when > 0 (BACKUP_THREADS), else the online CPUs, capped at 8. */
int backup_thread_count(int threads_setting);
/* Threads for a restore: threads_setting when > 0, else two per online CPU, capped at 8. A
 * restore's threads wait on the disk (each file is written and fsynced) more than they
 * compute, so with one per CPU the disk's queue ran short: on the 2-vCPU bench machine 4
 * threads restored the 633 MB set in 1.09-1.38 s against 1.56-1.59 s with 2 and 1.47-1.60 s
 * with 8 (docs/benchmarks.md). */
int backup_restore_thread_count(int threads_setting);

#endif
