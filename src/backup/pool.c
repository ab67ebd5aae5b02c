/* SPDX-License-Identifier: Apache-2.0 */
/* Parallel-for over independent items (see pool.h): workers take the next index from a
 * shared atomic counter; an error stops the hand-out. */
#include "backup/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 8

typedef struct job {
    size_t n;
    const size_t *order;
    int (*fn)(void *arg, size_t i);
    void *arg;
    size_t next; /* atomic */
    int error;   /* atomic: first error */
} job_t;

static void *worker(void *p)
{
    job_t *j = p;
    for (;;) {
        if (__atomic_load_n(&j->error, __ATOMIC_ACQUIRE) != 0)
            break;
        size_t k = __atomic_fetch_add(&j->next, 1, __ATOMIC_ACQ_REL);
        if (k >= j->n)
            break;
        int r = j->fn(j->arg, j->order ? j->order[k] : k);
        if (r != 0) {
            int zero = 0;
            __atomic_compare_exchange_n(&j->error, &zero, r, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        }
    }
    return NULL;
}

int backup_parallel(size_t n, const size_t *order, int threads, int (*fn)(void *arg, size_t i), void *arg)
{
    job_t j = {.n = n, .order = order, .fn = fn, .arg = arg, .next = 0, .error = 0};
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((size_t)threads > n)
        threads = n ? (int)n : 1;
    pthread_t tids[MAX_THREADS];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tids[started], NULL, worker, &j) != 0)
            break; /* fewer threads is still correct */
        started++;
    }
    worker(&j);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    return j.error;
}

static int threads_per_cpu(int threads_setting, long per_cpu)
{
    if (threads_setting > 0)
        return threads_setting > MAX_THREADS ? MAX_THREADS : threads_setting;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    n *= per_cpu;
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

int backup_thread_count(int threads_setting)
{
    return threads_per_cpu(threads_setting, 1);
}

int backup_restore_thread_count(int threads_setting)
{
    return threads_per_cpu(threads_setting, 2);
}
