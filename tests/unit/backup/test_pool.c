/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/pool: every item runs exactly once in the given order's set, the
 * first error stops new items and is returned, and the thread counts follow BACKUP_THREADS
 * or the CPUs (one per CPU for backup and verify, two per CPU for restore, at most 8). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/pool.h"

#define N_ITEMS 100

typedef struct {
    atomic_int runs[N_ITEMS];
    atomic_int started;
    int fail_at; /* item that fails with -EIO, or -1 */
} job_t;

static int run_item(void *arg, size_t i)
{
    job_t *j = arg;
    atomic_fetch_add(&j->started, 1);
    atomic_fetch_add(&j->runs[i], 1);
    return (int)i == j->fail_at ? -EIO : 0;
}

static void test_each_item_once(void **state)
{
    (void)state;
    size_t order[N_ITEMS];
    for (size_t i = 0; i < N_ITEMS; i++)
        order[i] = N_ITEMS - 1 - i;
    for (int threads = 1; threads <= 8; threads++) {
        job_t j = {.fail_at = -1};
        assert_int_equal(backup_parallel(N_ITEMS, order, threads, run_item, &j), 0);
        for (size_t i = 0; i < N_ITEMS; i++)
            assert_int_equal(atomic_load(&j.runs[i]), 1);
    }
}

static void test_first_error_stops(void **state)
{
    (void)state;
    job_t j = {.fail_at = 0};
    assert_int_equal(backup_parallel(N_ITEMS, NULL, 1, run_item, &j), -EIO);
    assert_int_equal(atomic_load(&j.started), 1); /* one thread: nothing after the failure */
}

static void test_thread_counts(void **state)
{
    (void)state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    assert_int_equal(backup_thread_count(3), 3);
    assert_int_equal(backup_restore_thread_count(3), 3);
    assert_int_equal(backup_thread_count(50), 8);
    assert_int_equal(backup_restore_thread_count(50), 8);
    assert_int_equal(backup_thread_count(0), cpus > 8 ? 8 : cpus);
    assert_int_equal(backup_restore_thread_count(0), 2 * cpus > 8 ? 8 : 2 * cpus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_item_once),
        cmocka_unit_test(test_first_error_stops),
        cmocka_unit_test(test_thread_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
