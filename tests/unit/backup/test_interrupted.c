/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for what review29 found around interruptions: a signal during a hold
 * (backup_interrupt_hold, a restore's swap) is only noted, a second one too, and acts only at
 * the release, with the message saying what is in place; the backup age comes from the id
 * (backup_id_time_ms); a `.latest.<pid>` of a dead backup is removed by
 * backup_repo_clean_partials while a running process's stays. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/interrupt.h"
#include "backup/repo.h"
#include "common/util.h"
#include "testutil.h"

static char dir[2048];

static int setup(void **state)
{
    (void)state;
    return test_tmpdir(dir, sizeof(dir), "backup-interrupted") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(dir);
    return 0;
}

static void test_id_time(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(backup_id_time_ms("20261127T073651Z", &ms), 0);
    struct tm tm = {.tm_year = 126, .tm_mon = 10, .tm_mday = 27, .tm_hour = 7, .tm_min = 36, .tm_sec = 51};
    assert_int_equal(ms, (int64_t)timegm(&tm) * 1000);
    int64_t ms2 = 0;
    assert_int_equal(backup_id_time_ms("20261127T073651Z-12", &ms2), 0);
    assert_int_equal(ms2, ms);
    assert_int_equal(backup_id_time_ms("latest", &ms2), -EINVAL);
    assert_int_equal(backup_id_time_ms("20261327T073651Z", &ms2), -EINVAL); /* month 13 */
}

static void test_stale_latest_symlink(void **state)
{
    (void)state;
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    char stale[2200], mine[2200], latest[2200];
    snprintf(stale, sizeof(stale), "%s/.latest.%ld", dir, (long)dead);
    snprintf(mine, sizeof(mine), "%s/.latest.%ld", dir, (long)getppid()); /* a running process */
    snprintf(latest, sizeof(latest), "%s/latest", dir);
    assert_int_equal(symlink("20261127T073651Z", stale), 0);
    assert_int_equal(symlink("20261127T073651Z", mine), 0);
    assert_int_equal(symlink("20261127T073651Z", latest), 0);
    assert_int_equal(backup_repo_clean_partials(dir), 1);
    struct stat st;
    assert_int_equal(lstat(stale, &st), -1);
    assert_int_equal(lstat(mine, &st), 0);
    assert_int_equal(lstat(latest, &st), 0);
}

/* In a child: arm, register a file, hold, take two SIGTERMs, go on (writes a marker), then
 * forget the file (it is "in place") and release: exits 143 with the state in its message. */
static void test_hold_notes_signals_until_release(void **state)
{
    (void)state;
    char file[2200], marker[2200], errpath[2200];
    snprintf(file, sizeof(file), "%s/swapped", dir);
    snprintf(marker, sizeof(marker), "%s/went-on", dir);
    snprintf(errpath, sizeof(errpath), "%s/stderr", dir);
    assert_int_equal(util_write_file_atomic(file, "x", 1, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        dup2(fd, 2);
        if (backup_interrupt_arm() < 0)
            _exit(3);
        backup_interrupt_add(file);
        backup_interrupt_hold("swapping: finishing that first");
        kill(getpid(), SIGTERM);
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
        kill(getpid(), SIGTERM); /* a second one waits too */
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
        if (backup_interrupt_pending() != SIGTERM)
            _exit(4);
        if (util_write_file_atomic(marker, "y", 1, 0600) < 0)
            _exit(5);
        backup_interrupt_forget(file);
        backup_interrupt_release(false, "backup X is restored into T");
        _exit(6); /* not reached: the noted signal ends the process at the release */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
    assert_true(util_path_exists(marker));
    assert_true(util_path_exists(file)); /* forgotten before the release: never removed */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(errpath, 1 << 16, &text, &len), 0);
    assert_non_null(strstr(text, "signal 15: swapping: finishing that first"));
    assert_non_null(strstr(text, "interrupted by signal 15: backup X is restored into T"));
    assert_null(strstr(text, "removed the data this run had written"));
    free(text);
}

/* release(defer=true): the noted signal stays pending, the process goes on; a later signal
 * ends it at once, saying what is in place. */
static void test_release_deferred(void **state)
{
    (void)state;
    char errpath[2200], marker[2200];
    snprintf(errpath, sizeof(errpath), "%s/stderr2", dir);
    snprintf(marker, sizeof(marker), "%s/after-release", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        dup2(fd, 2);
        if (backup_interrupt_arm() < 0)
            _exit(3);
        backup_interrupt_hold("swapping");
        kill(getpid(), SIGINT);
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
        backup_interrupt_release(true, "backup X is restored in place");
        if (util_write_file_atomic(marker, "y", 1, 0600) < 0)
            _exit(5);
        kill(getpid(), SIGTERM);
        nanosleep(&(struct timespec){.tv_sec = 5}, NULL);
        _exit(6);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
    assert_true(util_path_exists(marker));
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(errpath, 1 << 16, &text, &len), 0);
    assert_non_null(strstr(text, "interrupted by signal 15: backup X is restored in place"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_time),
        cmocka_unit_test_setup_teardown(test_stale_latest_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_notes_signals_until_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_deferred, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
