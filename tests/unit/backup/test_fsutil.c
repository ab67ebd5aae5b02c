/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/fsutil: backup_path_within, which keeps backups out of the trees they
 * read and restores out of the backup storage, resolves symlinks and paths not created yet
 * (through their nearest existing ancestor, however deep) and does not mistake a sibling
 * with a common prefix for a subdirectory. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/fsutil.h"
#include "testutil.h"

static char dir[1024];

static void path(char *buf, const char *rel)
{
    snprintf(buf, PATH_MAX, "%s/%s", dir, rel);
}

static void test_within(void **state)
{
    (void)state;
    char repo[PATH_MAX], sib[PATH_MAX], p[PATH_MAX], link[PATH_MAX];
    assert_int_equal(test_tmpdir(dir, sizeof(dir), "fsutil"), 0);
    path(repo, "repo");
    path(sib, "repo2");
    assert_int_equal(mkdir(repo, 0700), 0);
    assert_int_equal(mkdir(sib, 0700), 0);

    assert_true(backup_path_within(repo, repo));
    path(p, "repo/plain");
    assert_true(backup_path_within(p, repo)); /* not created yet */
    path(p, "repo/a/b/c/d");
    assert_true(backup_path_within(p, repo)); /* several levels not created yet */
    path(p, "repo2/x");
    assert_false(backup_path_within(p, repo)); /* a sibling sharing the prefix */
    assert_false(backup_path_within(sib, repo));
    path(p, "elsewhere/x/y");
    assert_false(backup_path_within(p, repo));

    /* through a symlink into the repository */
    path(link, "link");
    assert_int_equal(symlink(repo, link), 0);
    path(p, "link/new/deeper");
    assert_true(backup_path_within(p, repo));

    /* relative paths resolve against the working directory */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_true(backup_path_within("repo/rel/x", repo));
    assert_false(backup_path_within("repo2/rel", repo));
    assert_int_equal(chdir(cwd), 0);

    /* the root of everything holds everything; a missing root holds nothing */
    assert_true(backup_path_within(p, "/"));
    path(p, "no-such-root");
    assert_false(backup_path_within(repo, p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
