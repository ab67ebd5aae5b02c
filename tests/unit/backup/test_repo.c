/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/repo locks and messages: a busy write lock names who may hold it
 * (a backup, prune or in-place restore), the reader lock names a prune; a missing offsite
 * directory is reported as an unmounted volume that aimedres never creates; a reader on a
 * repository it cannot write to, on a writable file system (a permission problem, not a
 * WORM volume), still fails rather than reading unlocked. The read-only mount case is tested
 * end to end (tests/e2e/test_backup_review6b.py) since it needs mount(8). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/repo.h"
#include "common/util.h"
#include "testutil.h"

static char dir[2048];

static int setup(void **state)
{
    (void)state;
    return test_tmpdir(dir, sizeof(dir), "backup-repo") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    chmod(dir, 0700);
    util_rmtree(dir);
    return 0;
}

static void test_busy_messages(void **state)
{
    (void)state;
    char err[1024] = "";
    int held = backup_repo_lock(dir, BACKUP_LOCK_WRITE, true, 0, err, sizeof(err));
    assert_true(held >= 0);
    assert_string_equal(err, ""); /* no note after an ordinary success */
    /* the lock is per open file description: a second open in this process conflicts */
    int r = backup_repo_lock(dir, BACKUP_LOCK_WRITE, false, 100, err, sizeof(err));
    assert_int_equal(r, -EWOULDBLOCK);
    assert_non_null(strstr(err, "is busy: a backup, prune or in-place restore is running (pid "));
    backup_repo_unlock(held);

    held = backup_repo_lock(dir, BACKUP_LOCK_READ_EXCLUSIVE, false, 0, err, sizeof(err));
    assert_true(held >= 0);
    r = backup_repo_lock(dir, BACKUP_LOCK_READ_SHARED, false, 100, err, sizeof(err));
    assert_int_equal(r, -EWOULDBLOCK);
    assert_non_null(strstr(err, "is busy: a prune is running"));
    backup_repo_unlock(held);

    held = backup_repo_lock(dir, BACKUP_LOCK_READ_SHARED, false, 0, err, sizeof(err));
    assert_true(held >= 0);
    r = backup_repo_lock(dir, BACKUP_LOCK_READ_EXCLUSIVE, false, 100, err, sizeof(err));
    assert_int_equal(r, -EWOULDBLOCK);
    assert_non_null(strstr(err, "a verify, check, restore or prune is reading it"));
    /* readers write no pid: the file's (the last prune's, above) is not named as theirs */
    assert_null(strstr(err, "(pid "));
    backup_repo_unlock(held);
    /* a prune holding it exclusively is named */
    held = backup_repo_lock(dir, BACKUP_LOCK_READ_EXCLUSIVE, false, 0, err, sizeof(err));
    assert_true(held >= 0);
    r = backup_repo_lock(dir, BACKUP_LOCK_READ_EXCLUSIVE, false, 100, err, sizeof(err));
    assert_int_equal(r, -EWOULDBLOCK);
    assert_non_null(strstr(err, "(pid "));
    backup_repo_unlock(held);
}

static void test_missing_offsite_message(void **state)
{
    (void)state;
    char missing[2100], err[1024] = "";
    snprintf(missing, sizeof(missing), "%s/not-mounted", dir);
    assert_int_equal(backup_repo_require_offsite(missing, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "(BACKUP_OFFSITE_DIR) does not exist: is the volume mounted?"));
    assert_null(strstr(err, "created by the first"));
    assert_int_equal(backup_repo_require_offsite(dir, err, sizeof(err)), 0);
    /* BACKUP_PATH's message still says backup creates it */
    assert_int_equal(backup_repo_require(missing, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "created by the first `aimedres backup`"));
}

/* EACCES on a writable file system is a permission problem: no unlocked fallback. Root
 * ignores directory permissions, so as root the lock is tried in a child that has become
 * nobody (65534). */
/* Unfinished backups are removed, also one an interrupted run had renamed aside when a SIGKILL
 * cut its cleanup short; finished backups and other hidden entries stay. */
static void test_clean_partials(void **state)
{
    (void)state;
    static const char *const gone[] = {".20261127T010203Z.partial", ".20261127T010203Z.partial.interrupted-1"};
    static const char *const kept[] = {"20261127T010203Z", ".write.lock", ".read.lock"};
    char p[2300];
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, gone[i]);
        assert_int_equal(mkdir(p, 0700), 0);
    }
    snprintf(p, sizeof(p), "%s/%s", dir, kept[0]);
    assert_int_equal(mkdir(p, 0700), 0);
    for (size_t i = 1; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, kept[i]);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
    }
    assert_int_equal(backup_repo_clean_partials(dir), 2);
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, gone[i]);
        assert_false(util_path_exists(p));
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, kept[i]);
        assert_true(util_path_exists(p));
    }
}

static void test_eacces_on_writable_fs_still_fails(void **state)
{
    (void)state;
    char repo[2100], err[1024] = "";
    snprintf(repo, sizeof(repo), "%s/noperm", dir);
    assert_int_equal(mkdir(repo, 0555), 0);
    chmod(dir, 0755); /* nobody may reach repo, not write in it */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
            _exit(3);
        int r = backup_repo_lock(repo, BACKUP_LOCK_READ_SHARED, false, 0, err, sizeof(err));
        _exit(r == -EACCES ? 0 : r >= 0 ? 1 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    chmod(repo, 0700);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_busy_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_offsite_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eacces_on_writable_fs_still_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_partials, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
