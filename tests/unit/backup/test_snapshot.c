/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/snapshot: the online copy of a live store (made without a journal
 * or fsync, as a scratch file) holds what the store holds; the record counts and the model
 * list that backup and restore read from a snapshot or a restored file are read-only: the
 * file's bytes do not change and no -wal/-shm appears; integrity_check says "ok" for a good
 * copy and fails on a damaged one. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/snapshot.h"
#include "common/util.h"
#include "store/store.h"
#include "testutil.h"

static char dir[2048], live[2100], snap[2100];

static int setup(void **state)
{
    (void)state;
    if (test_tmpdir(dir, sizeof(dir), "backup-snapshot") < 0)
        return -1;
    snprintf(live, sizeof(live), "%s/live.db", dir);
    snprintf(snap, sizeof(snap), "%s/live.db.backup-snapshot-1", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(dir);
    return 0;
}

/* A store with two model versions and n predictions, left open (a live server's). */
static store_t *make_live(int n)
{
    char err[256] = "";
    store_t *st = NULL;
    assert_int_equal(store_open(live, &st, err, sizeof(err)), 0);
    assert_int_equal(
        store_model_version_put(st, "m1", "1.0.0", "/models/m1/1.0.0", "aa", "classification", "{}",
                                STORE_STABLE_KEEP, NULL, NULL),
        0);
    assert_int_equal(
        store_model_version_put(st, "m2", "2.0.0", "/models/m2/2.0.0", "bb", "regression", "{}", STORE_STABLE_KEEP,
                                NULL, NULL),
        0);
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "0190a0b0-0000-7000-8000-%012d", i);
        store_prediction_t p = {.id = id,
                                .created_ms = 1795741323000LL + i,
                                .model = "m1",
                                .version = "1.0.0",
                                .arm = "stable",
                                .outputs_json = "[{\"label\":\"a\"}]",
                                .n_rows = 1,
                                .latency_ms = 1.5,
                                .status = 200};
        assert_int_equal(store_predictions_put(st, &p, 1), 0);
    }
    return st;
}

static void sha_of(const char *path, char out[SHA256_HEX_LEN])
{
    assert_int_equal(util_sha256_file(path, out), 0);
}

static bool exists_with(const char *path, const char *suffix)
{
    char p[2200];
    snprintf(p, sizeof(p), "%s%s", path, suffix);
    return util_path_exists(p);
}

static void test_snapshot_counts_and_read_only_reads(void **state)
{
    (void)state;
    store_t *st = make_live(25);
    char err[512] = "";
    /* taken while the live store is open (WAL with uncheckpointed frames) */
    int hold = -1;
    assert_int_equal(backup_snapshot_take(live, snap, &hold, err, sizeof(err)), 0);
    assert_true(hold >= 0);
    store_close(st);
    assert_false(exists_with(snap, "-journal")); /* journal_mode=OFF: no rollback journal */
    struct stat sb;
    assert_int_equal(stat(snap, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    char before[SHA256_HEX_LEN], after[SHA256_HEX_LEN];
    sha_of(snap, before);
    int64_t preds = -1, nver = -1;
    int schema = -1;
    assert_int_equal(backup_db_counts(snap, &preds, &nver, &schema, err, sizeof(err)), 0);
    assert_int_equal(preds, 25);
    assert_int_equal(nver, 2);
    assert_true(schema >= 4);
    json_t *models = NULL;
    assert_int_equal(backup_db_model_versions(snap, &models, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(models), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(models, 1), "name")), "m2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(models, 1), "version")), "2.0.0");
    json_decref(models);
    assert_int_equal(backup_db_integrity_check(snap, err, sizeof(err)), 0);
    /* none of the reads wrote the file or left SQLite's side files */
    sha_of(snap, after);
    assert_string_equal(before, after);
    assert_false(exists_with(snap, "-wal"));
    assert_false(exists_with(snap, "-shm"));
    backup_snapshot_remove(snap, hold);
    assert_false(util_path_exists(snap));
}

static void test_damaged_copy_fails_the_check(void **state)
{
    (void)state;
    store_close(make_live(400));
    char err[512] = "";
    int hold = -1;
    assert_int_equal(backup_snapshot_take(live, snap, &hold, err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(snap, &sb), 0);
    assert_true(sb.st_size >= 8 * 4096);
    /* overwrite the middle of the file (b-tree pages of predictions and its indexes) */
    int fd = open(snap, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(pwrite(fd, junk, sizeof(junk), (sb.st_size / 4096 / 2) * 4096), (ssize_t)sizeof(junk));
    close(fd);
    err[0] = '\0';
    assert_int_equal(backup_db_integrity_check(snap, err, sizeof(err)), -EIO);
    assert_true(err[0] != '\0');
    backup_snapshot_remove(snap, hold);
}

/* SQLite reads '?', '#' and '%' in a URI filename as syntax: every read-only open of a
 * snapshot escapes them (the integrity check did not, and failed every backup of a store
 * under such a directory with a false "damaged" verdict). */
static void test_uri_characters_in_the_path(void **state)
{
    (void)state;
    store_close(make_live(10));
    char odd[2200], err[512] = "";
    snprintf(odd, sizeof(odd), "%s/a?b#c%%41.db.backup-snapshot-2", dir);
    int hold = -1;
    assert_int_equal(backup_snapshot_take(live, odd, &hold, err, sizeof(err)), 0);
    assert_int_equal(backup_db_integrity_check(odd, err, sizeof(err)), 0);
    int64_t preds = -1, nver = -1;
    int schema = -1;
    assert_int_equal(backup_db_counts(odd, &preds, &nver, &schema, err, sizeof(err)), 0);
    assert_int_equal(preds, 10);
    backup_snapshot_remove(odd, hold);
    assert_false(util_path_exists(odd));
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Leftovers of killed backups go, whatever their pid (in a container every backup is pid 1,
 * so a pid test kept them forever and each later snapshot of the same name failed): a
 * snapshot is live while its run holds its flock. Kept: a live one (this process holds it),
 * an empty one just created (its creator may not have locked it yet), another database's,
 * and an old-style "<pid>" name whose process runs. */
static void test_stale_snapshots_are_removed_by_lock_not_pid(void **state)
{
    (void)state;
    store_close(make_live(5));
    char err[512] = "", mine[2200], dead1[2200], fresh_empty[2200], other_db[2200], old_dead[2200],
        old_alive[2200], wal[2300];
    /* a live snapshot of this process, taken the way a backup does */
    assert_int_equal(backup_snapshot_path(live, mine, sizeof(mine)), 0);
    char again[2200];
    assert_int_equal(backup_snapshot_path(live, again, sizeof(again)), 0);
    assert_string_not_equal(mine, again); /* a fresh name every time, even with the same pid */
    int hold = -1;
    assert_int_equal(backup_snapshot_take(live, mine, &hold, err, sizeof(err)), 0);
    /* what a backup killed as pid 1 leaves: unlocked, not empty, with its -wal sibling */
    snprintf(dead1, sizeof(dead1), "%s/live.db.backup-snapshot-1-0123456789abcdef", dir);
    write_file(dead1, "SQLite format 3");
    snprintf(wal, sizeof(wal), "%s-wal", dead1);
    write_file(wal, "x");
    snprintf(fresh_empty, sizeof(fresh_empty), "%s/live.db.backup-snapshot-1-fedcba9876543210", dir);
    write_file(fresh_empty, "");
    snprintf(other_db, sizeof(other_db), "%s/other.db.backup-snapshot-1-0123456789abcdef", dir);
    write_file(other_db, "x");
    snprintf(old_dead, sizeof(old_dead), "%s/live.db.backup-snapshot-999999999", dir);
    write_file(old_dead, "x");
    snprintf(old_alive, sizeof(old_alive), "%s/live.db.backup-snapshot-%ld", dir, (long)getppid());
    write_file(old_alive, "x");
    /* an old-style name of pid 1: a container's backup (init takes none on a host) */
    char old_pid1[2200], aside[2300];
    snprintf(old_pid1, sizeof(old_pid1), "%s/live.db.backup-snapshot-1", dir);
    write_file(old_pid1, "x");
    /* renamed aside by an interrupted run that a SIGKILL then cut short */
    snprintf(aside, sizeof(aside), "%s/live.db.backup-snapshot-7-0123456789abcdef.interrupted-7", dir);
    write_file(aside, "x");

    assert_int_equal(backup_snapshot_cleanup_stale(live), 4);
    assert_false(util_path_exists(dead1));
    assert_false(util_path_exists(wal));
    assert_false(util_path_exists(old_dead));
    assert_false(util_path_exists(old_pid1));
    assert_false(util_path_exists(aside));
    assert_true(util_path_exists(mine));
    assert_true(util_path_exists(fresh_empty));
    assert_true(util_path_exists(other_db));
    assert_true(util_path_exists(old_alive));
    /* released (the run ended without removing it: killed): now it is stale too */
    close(hold);
    assert_int_equal(backup_snapshot_cleanup_stale(live), 1);
    assert_false(util_path_exists(mine));
    unlink(fresh_empty);
    unlink(other_db);
    unlink(old_alive);
}

static void test_missing_table_is_an_error(void **state)
{
    (void)state;
    char path[2200], err[512] = "";
    snprintf(path, sizeof(path), "%s/empty.db", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    int64_t preds = 0, nver = 0;
    int schema = 0;
    assert_int_equal(backup_db_counts(path, &preds, &nver, &schema, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "predictions"));
    json_t *models = NULL;
    assert_int_equal(backup_db_model_versions(path, &models, err, sizeof(err)), -EIO);
    assert_null(models);
    assert_int_equal(backup_db_counts("/nonexistent/dir/x.db", &preds, &nver, &schema, err, sizeof(err)), -EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_snapshot_counts_and_read_only_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_copy_fails_the_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uri_characters_in_the_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_snapshots_are_removed_by_lock_not_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_table_is_an_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
