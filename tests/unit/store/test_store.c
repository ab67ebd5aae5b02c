/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the store through its public API (store.h) on real SQLite files: URL
 * forms, migrations and refusals, the model registry and its generation counter seen
 * from a second connection, prediction records, integrity checks and thread safety. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <sqlite3.h>

#include "common/lockfile.h"
#include "common/util.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "testutil.h"

static char tmpdir[PATH_MAX / 2]; /* leaves room for file names below it */

static int group_setup(void **state)
{
    (void)state;
    if (test_tmpdir(tmpdir, sizeof(tmpdir), "store") < 0)
        return -1;
    char abs[PATH_MAX];
    if (!realpath(tmpdir, abs)) /* the URL tests chdir and need an absolute path */
        return -1;
    if (strlen(abs) >= sizeof(tmpdir))
        return -1;
    memcpy(tmpdir, abs, strlen(abs) + 1);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    util_rmtree(tmpdir);
    return 0;
}

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static store_t *open_path(const char *path)
{
    char err[512] = "";
    store_t *s = NULL;
    int r = store_open(path, &s, err, sizeof(err));
    if (r < 0)
        print_error("store_open(%s): %d %s\n", path, r, err);
    assert_int_equal(r, 0);
    assert_non_null(s);
    return s;
}

static store_t *open_named(const char *name)
{
    char path[PATH_MAX];
    path_in(path, sizeof(path), name);
    return open_path(path);
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        print_error("raw_exec: %s\n", msg ? msg : "?");
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void expect_open_fails(const char *url, int want, const char *needle)
{
    char err[512] = "";
    store_t *s = NULL;
    int r = store_open(url, &s, err, sizeof(err));
    if (r != want || !strstr(err, needle))
        print_error("store_open(%s) = %d, err \"%s\"; want %d containing \"%s\"\n", url, r, err, want,
                    needle);
    assert_int_equal(r, want);
    assert_null(s);
    assert_non_null(strstr(err, needle));
}

/* ---- open / URLs / migrations ---------------------------------------------------- */

static void test_open_migrate_reopen(void **state)
{
    (void)state;
    char path[PATH_MAX], url[PATH_MAX + 16];
    path_in(path, sizeof(path), "migrate.db");
    snprintf(url, sizeof(url), "sqlite://%s", path); /* path is absolute: sqlite:///... */
    assert_int_equal(url[9], '/');

    store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(store_open(url, &s, err, sizeof(err)), 0);
    int v1 = 0;
    assert_int_equal(store_schema_version(s, &v1), 0);
    assert_true(v1 >= 1);
    assert_int_equal(store_ping(s), 0);
    int64_t g1 = -1, g2 = -2;
    assert_int_equal(store_registry_generation(s, &g1), 0);
    int64_t probes = raw_int(path, "PRAGMA user_version");
    assert_int_equal(store_ping_write(s, 0), 0); /* a committed write that changes no data */
    assert_int_equal(store_registry_generation(s, &g2), 0);
    assert_int_equal(g1, g2);
    /* review48 #2: it really writes (a row rewritten with its own value wrote nothing) */
    assert_int_equal(raw_int(path, "PRAGMA user_version"), probes + 1);
    store_close(s);

    s = open_path(url);
    int v2 = 0;
    assert_int_equal(store_schema_version(s, &v2), 0);
    assert_int_equal(v2, v1);
    store_close(s);

    /* One row per applied migration, WAL on disk, our application id, no world access. */
    assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_migrations"), v1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM registry_meta"), 1);
    assert_int_equal(raw_int(path, "PRAGMA application_id"), 0x41694d52);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0007, 0);
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "newer.db");
    store_close(open_path(path));
    raw_exec(path, "INSERT INTO schema_migrations (version, applied_at) VALUES (1000, 'future')");
    expect_open_fails(path, -EPROTO, "newer aimedres");
}

static void test_foreign_database_refused(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "foreign.db");
    raw_exec(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)");
    expect_open_fails(path, -EEXIST, "another application");
    /* and it was left alone */
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'predictions'"), 0);
}

static void test_not_a_database(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "garbage.db");
    const char junk[] = "this is not a sqlite database, just some text that is long enough to matter\n";
    char big[8192];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = junk[i % (sizeof(junk) - 1)];
    assert_int_equal(util_write_file_atomic(path, big, sizeof(big), 0600), 0);
    char err[512] = "";
    store_t *s = NULL;
    assert_true(store_open(path, &s, err, sizeof(err)) < 0);
    assert_null(s);
    assert_non_null(strstr(err, path));
}

static void test_postgres_refused(void **state)
{
    (void)state;
    expect_open_fails("postgresql://aimedres:s3cret@db:5432/aimedres", -ENOTSUP,
                      "PostgreSQL backend is not supported yet");
    expect_open_fails("postgres://aimedres:s3cret@db/aimedres", -ENOTSUP,
                      "not supported yet (use sqlite:///path)");
    char err[512] = "";
    store_t *s = NULL;
    store_open("postgresql://aimedres:s3cret@db:5432/aimedres", &s, err, sizeof(err));
    assert_null(strstr(err, "s3cret")); /* never echo credentials */
}

static void test_bad_url(void **state)
{
    (void)state;
    expect_open_fails("mysql://root:hunter2@db/x", -EINVAL, "sqlite:///");
    expect_open_fails("mysql://root:hunter2@db/x", -EINVAL, "\"mysql\"");
    char err[512] = "";
    store_t *s = NULL;
    store_open("mysql://root:hunter2@db/x", &s, err, sizeof(err));
    assert_null(strstr(err, "hunter2"));
    expect_open_fails("", -EINVAL, "DATABASE_URL");
    expect_open_fails("sqlite://", -EINVAL, "needs a file path");
    expect_open_fails("sqlite:relative.db", -EINVAL, "sqlite:///");
    expect_open_fails("sqlite:///tmp/x.db?check_same_thread=false", -EINVAL, "query parameters");
}

static void test_url_forms_and_parent_dirs(void **state)
{
    (void)state;
    char cwd[PATH_MAX], p[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpdir), 0);

    store_close(open_path("sqlite://rel/sub/r.db")); /* relative URL, missing parents */
    path_in(p, sizeof(p), "rel/sub/r.db");
    assert_true(util_path_exists(p));

    store_close(open_path("plain/dir/p.db")); /* plain relative path */
    path_in(p, sizeof(p), "plain/dir/p.db");
    assert_true(util_path_exists(p));
    struct stat sb;
    path_in(p, sizeof(p), "plain/dir");
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0750);

    assert_int_equal(chdir(cwd), 0);

    path_in(p, sizeof(p), "abs/a/b/c.db"); /* plain absolute path */
    store_close(open_path(p));
    assert_true(util_path_exists(p));
}

static bool fd_points_to_prefix(int fd, const char *prefix)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return false;
    target[n] = '\0';
    return strncmp(target, prefix, strlen(prefix)) == 0;
}

static void test_fds_are_cloexec(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "cloexec.db");
    store_t *s = open_path(path);
    store_prediction_t p = {.id = "c1", .model = "m", .version = "1", .arm = "stable", .outputs_json = "[1]"};
    assert_int_equal(store_predictions_put(s, &p, 1), 0); /* opens -wal and -shm too */

    int seen = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (!fd_points_to_prefix(fd, path))
            continue;
        int fl = fcntl(fd, F_GETFD);
        assert_true(fl >= 0);
        assert_true(fl & FD_CLOEXEC);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 2); /* the database and its WAL */
    store_close(s);
}

/* ---- registry ------------------------------------------------------------------------ */

/* store_model_version_put leaving the stable version as it is (put), or making it stable. */
static int put(store_t *s, const char *name, const char *version, const char *path, const char *sha,
               const char *task, const char *manifest)
{
    return store_model_version_put(s, name, version, path, sha, task, manifest, STORE_STABLE_KEEP, NULL, NULL);
}

static int put_stable(store_t *s, const char *name, const char *version, const char *path, const char *sha,
                      const char *task, const char *manifest)
{
    return store_model_version_put(s, name, version, path, sha, task, manifest, STORE_STABLE_SET, NULL, NULL);
}

static const char *SHA_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *SHA_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

static void test_model_version_put_idempotent(void **state)
{
    (void)state;
    store_t *s = open_named("registry_put.db");
    int64_t g0 = -1, g1 = -1, g2 = -1;
    assert_int_equal(store_registry_generation(s, &g0), 0);
    assert_int_equal(put(s, "alz", "1.0", "/m/alz/1.0", SHA_A, "binary", "{\"a\":1}"), 0);
    assert_int_equal(store_registry_generation(s, &g1), 0);
    assert_int_equal(g1, g0 + 1);

    /* same sha: accepted, nothing changes */
    assert_int_equal(put(s, "alz", "1.0", "/elsewhere", SHA_A, "binary", "{}"), 0);
    assert_int_equal(store_registry_generation(s, &g2), 0);
    assert_int_equal(g2, g1);

    /* different sha: refused, nothing changes */
    assert_int_equal(put(s, "alz", "1.0", "/m/alz/1.0", SHA_B, "binary", "{}"), -EEXIST);
    assert_int_equal(store_registry_generation(s, &g2), 0);
    assert_int_equal(g2, g1);

    json_t *list = NULL;
    assert_int_equal(store_model_list(s, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    json_t *row = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(row, "sha256")), SHA_A);
    assert_string_equal(json_string_value(json_object_get(row, "path")), "/m/alz/1.0");
    json_decref(list);

    assert_int_equal(put(s, NULL, "1", "/p", SHA_A, "binary", "{}"), -EINVAL);
    assert_int_equal(put(s, "x", "", "/p", SHA_A, "binary", "{}"), -EINVAL);
    assert_int_equal(put(s, "x", "1", "/p", NULL, "binary", "{}"), -EINVAL);
    store_close(s);
}

static void test_set_stable(void **state)
{
    (void)state;
    store_t *s = open_named("registry_stable.db");
    char v[32];
    assert_int_equal(store_model_set_stable(s, "nope", "1.0"), -ENOENT);
    assert_int_equal(store_model_get_stable(s, "nope", v, sizeof(v)), -ENOENT);
    assert_int_equal(put(s, "park", "1.0", "/m/p/1", SHA_A, "binary", "{}"), 0);
    assert_int_equal(put(s, "park", "2.0", "/m/p/2", SHA_B, "binary", "{}"), 0);
    assert_int_equal(store_model_set_stable(s, "park", "3.0"), -ENOENT);
    assert_int_equal(store_model_get_stable(s, "park", v, sizeof(v)), -ENOENT);

    int64_t g0, g1, g2;
    assert_int_equal(store_registry_generation(s, &g0), 0);
    assert_int_equal(store_model_set_stable(s, "park", "1.0"), 0);
    assert_int_equal(store_model_get_stable(s, "park", v, sizeof(v)), 0);
    assert_string_equal(v, "1.0");
    assert_int_equal(store_registry_generation(s, &g1), 0);
    assert_int_equal(g1, g0 + 1);

    assert_int_equal(store_model_set_stable(s, "park", "1.0"), 0); /* no change, no bump */
    assert_int_equal(store_registry_generation(s, &g2), 0);
    assert_int_equal(g2, g1);

    assert_int_equal(store_model_set_stable(s, "park", "2.0"), 0);
    assert_int_equal(store_model_get_stable(s, "park", v, sizeof(v)), 0);
    assert_string_equal(v, "2.0");
    assert_int_equal(store_registry_generation(s, &g2), 0);
    assert_int_equal(g2, g1 + 1);

    char small[3] = {'x', 'y', 'z'};
    assert_int_equal(store_model_get_stable(s, "park", small, sizeof(small)), -ERANGE);
    assert_memory_equal(small, "xyz", 3); /* untouched on failure */
    store_close(s);
}

/* review50 (leftover): the version and its serving role are one transaction, so the
 * MODEL_REGISTERED record written before it says what took effect. */
static void test_model_version_put_make_stable(void **state)
{
    (void)state;
    store_t *s = open_named("registry_put_stable.db");
    char v[32];
    int64_t g0, g1, g2;
    assert_int_equal(put_stable(s, "als", "1.0", "/m/a/1", SHA_A, "binary", "{}"), 0);
    assert_int_equal(store_model_get_stable(s, "als", v, sizeof(v)), 0);
    assert_string_equal(v, "1.0");
    assert_int_equal(store_registry_generation(s, &g0), 0);

    /* a new version without make_stable leaves the stable one */
    assert_int_equal(put(s, "als", "2.0", "/m/a/2", SHA_B, "binary", "{}"), 0);
    assert_int_equal(store_model_get_stable(s, "als", v, sizeof(v)), 0);
    assert_string_equal(v, "1.0");

    /* re-registering the same artifact with make_stable makes it stable: one bump */
    assert_int_equal(store_registry_generation(s, &g1), 0);
    assert_int_equal(put_stable(s, "als", "2.0", "/m/a/2", SHA_B, "binary", "{}"), 0);
    assert_int_equal(store_model_get_stable(s, "als", v, sizeof(v)), 0);
    assert_string_equal(v, "2.0");
    assert_int_equal(store_registry_generation(s, &g2), 0);
    assert_int_equal(g2, g1 + 1);

    /* again: nothing changes, no bump */
    assert_int_equal(put_stable(s, "als", "2.0", "/m/a/2", SHA_B, "binary", "{}"), 0);
    assert_int_equal(store_registry_generation(s, &g1), 0);
    assert_int_equal(g1, g2);

    /* a refused registration (another booster under that version) changes the stable one not */
    assert_int_equal(put_stable(s, "als", "1.0", "/m/a/1", SHA_B, "binary", "{}"), -EEXIST);
    assert_int_equal(store_model_get_stable(s, "als", v, sizeof(v)), 0);
    assert_string_equal(v, "2.0");
    assert_int_equal(store_registry_generation(s, &g1), 0);
    assert_int_equal(g1, g2);
    store_close(s);
}

typedef struct {
    int calls, refuse;
    bool make_stable;
    char prev[32];
} hook_seen_t;

static int seen_hook(void *arg, bool make_stable, const char *previous_stable)
{
    hook_seen_t *h = arg;
    h->calls++;
    h->make_stable = make_stable;
    snprintf(h->prev, sizeof(h->prev), "%s", previous_stable ? previous_stable : "(none)");
    return h->refuse;
}

/* review53 #4: the hook sees, inside the transaction, whether the version becomes stable and
 * what was stable; a refusal writes nothing. */
static void test_model_version_put_hook(void **state)
{
    (void)state;
    store_t *s = open_named("registry_put_hook.db");
    char v[32];
    hook_seen_t h = {0};
    assert_int_equal(store_model_version_put(s, "m", "1", "/m/1", SHA_A, "binary", "{}", STORE_STABLE_IF_NONE,
                                             seen_hook, &h),
                     0);
    assert_true(h.calls == 1 && h.make_stable);
    assert_string_equal(h.prev, "(none)");
    h = (hook_seen_t){0};
    assert_int_equal(store_model_version_put(s, "m", "2", "/m/2", SHA_B, "binary", "{}", STORE_STABLE_IF_NONE,
                                             seen_hook, &h),
                     0);
    assert_true(h.calls == 1 && !h.make_stable);
    assert_string_equal(h.prev, "1");
    assert_int_equal(store_model_get_stable(s, "m", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    h = (hook_seen_t){.refuse = -EIO};
    int64_t g0, g1;
    assert_int_equal(store_registry_generation(s, &g0), 0);
    assert_int_equal(store_model_version_put(s, "m", "3", "/m/3", SHA_A, "binary", "{}", STORE_STABLE_SET,
                                             seen_hook, &h),
                     -EIO);
    assert_true(h.calls == 1 && h.make_stable);
    assert_string_equal(h.prev, "1");
    assert_int_equal(store_model_get_stable(s, "m", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    assert_int_equal(store_registry_generation(s, &g1), 0);
    assert_int_equal(g1, g0);
    json_t *list = NULL;
    assert_int_equal(store_model_list(s, &list), 0);
    assert_int_equal(json_array_size(list), 2);
    json_decref(list);
    store_close(s);
}

static void test_model_list_shape(void **state)
{
    (void)state;
    store_t *s = open_named("registry_list.db");
    json_t *list = NULL;
    assert_int_equal(store_model_list(s, &list), 0);
    assert_true(json_is_array(list));
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    assert_int_equal(put(s, "zeta", "1", "/z/1", SHA_A, "regression", "{}"), 0);
    assert_int_equal(put(s, "alpha", "2", "/a/2", SHA_A, "binary", "{}"), 0);
    assert_int_equal(put(s, "alpha", "10", "/a/10", SHA_B, "multiclass", "{}"), 0);
    assert_int_equal(store_model_set_stable(s, "alpha", "10"), 0);

    assert_int_equal(store_model_list(s, &list), 0);
    assert_int_equal(json_array_size(list), 3);
    const char *want[3][3] = {
        {"alpha", "2", "binary"}, {"alpha", "10", "multiclass"}, {"zeta", "1", "regression"}};
    const bool want_stable[3] = {false, true, false};
    for (size_t i = 0; i < 3; i++) {
        json_t *o = json_array_get(list, i);
        assert_true(json_is_object(o));
        assert_int_equal(json_object_size(o), 7);
        assert_string_equal(json_string_value(json_object_get(o, "name")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(o, "version")), want[i][1]);
        assert_string_equal(json_string_value(json_object_get(o, "task")), want[i][2]);
        assert_true(json_is_string(json_object_get(o, "path")));
        assert_int_equal(strlen(json_string_value(json_object_get(o, "sha256"))), 64);
        assert_true(json_is_boolean(json_object_get(o, "stable")));
        assert_int_equal(json_is_true(json_object_get(o, "stable")), want_stable[i]);
        const char *at = json_string_value(json_object_get(o, "registered_at"));
        assert_non_null(at);
        assert_int_equal(strlen(at), 24); /* 2026-11-27T07:26:42.123Z */
        assert_int_equal(at[10], 'T');
        assert_int_equal(at[23], 'Z');
    }
    json_decref(list);
    store_close(s);
}

static void test_generation_visible_to_second_store(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "generation.db");
    store_t *writer = open_path(path);
    store_t *poller = open_path(path);
    int64_t g0, g;
    assert_int_equal(store_registry_generation(poller, &g0), 0);

    assert_int_equal(put(writer, "als", "1", "/als/1", SHA_A, "binary", "{}"), 0);
    assert_int_equal(store_registry_generation(poller, &g), 0);
    assert_int_equal(g, g0 + 1);

    assert_int_equal(store_model_set_stable(writer, "als", "1"), 0);
    assert_int_equal(store_registry_generation(poller, &g), 0);
    assert_int_equal(g, g0 + 2);

    char v[16];
    assert_int_equal(store_model_get_stable(poller, "als", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    /* the second connection writes too; the first sees it */
    assert_int_equal(put(poller, "als", "2", "/als/2", SHA_B, "binary", "{}"), 0);
    assert_int_equal(store_registry_generation(writer, &g), 0);
    assert_int_equal(g, g0 + 3);
    store_close(writer);
    store_close(poller);
}

/* ---- predictions -------------------------------------------------------------------- */

/* The version-5 predictions table (a rowid table, its TEXT key in a second b-tree, the
 * partial patient index), for the upgrade tests below. */
static const char *const v5_predictions =
    "DROP TABLE predictions;"
    "CREATE TABLE predictions (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, model TEXT NOT NULL,"
    " version TEXT NOT NULL, arm TEXT NOT NULL, request_id TEXT, patient_pseudonym TEXT,"
    " outputs_json TEXT NOT NULL, inputs_json TEXT, n_rows INTEGER NOT NULL, latency_ms REAL NOT NULL,"
    " status INTEGER NOT NULL);"
    "CREATE INDEX predictions_patient ON predictions (patient_pseudonym) WHERE patient_pseudonym IS NOT NULL;"
    "INSERT INTO predictions VALUES ('0190a1b2-0000-7000-8000-0000000000b2', 2, 'm', '1', 'stable', NULL,"
    " 'ps_x', '[{\"value\":2}]', NULL, 1, 0.5, 200);"
    "INSERT INTO predictions VALUES ('0190a1b2-0000-7000-8000-0000000000b1', 1, 'm', '1', 'canary', 'r1',"
    " NULL, '[{\"value\":1}]', '[{\"x\":1}]', 1, 0.25, 200);"
    "DELETE FROM schema_migrations WHERE version = 6;";

static const char *const is_v6 = "SELECT count(*) FROM sqlite_schema WHERE name = 'predictions' "
                                 "AND sql LIKE '%WITHOUT ROWID' AND NOT EXISTS (SELECT 1 FROM "
                                 "sqlite_schema WHERE tbl_name = 'predictions' AND type = 'index')";

static int delete_referenced(sqlite3 *db, void *arg)
{
    (void)arg;
    return sqlite3_exec(db, "DELETE FROM predictions WHERE id = '0190a1b2-0000-7000-8000-0000000000b1'", NULL,
                        NULL, NULL);
}

/* Migration 6: predictions is keyed by its id alone (WITHOUT ROWID: one b-tree, not two) and
 * has no patient index (no query used it). A version-5 store is rebuilt in place with every
 * record and its feedback intact, and foreign keys are enforced again afterwards. */
static void test_predictions_table_v6(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "v6.db");
    store_t *s = open_path(path);
    int v = 0;
    assert_int_equal(store_schema_version(s, &v), 0);
    assert_true(v >= 6);
    store_close(s);
    assert_int_equal(raw_int(path, is_v6), 1);

    /* back to version 5, with feedback on one record, then reopen */
    raw_exec(path, v5_predictions);
    raw_exec(path, "INSERT INTO feedback (prediction_id, row_index, label_json, received_ms) VALUES "
                   "('0190a1b2-0000-7000-8000-0000000000b1', 0, '1', 3);");
    assert_int_equal(raw_int(path, is_v6), 0);
    s = open_path(path);
    int64_t n = 0;
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 2);
    json_t *rec = NULL;
    assert_int_equal(store_prediction_get(s, "0190a1b2-0000-7000-8000-0000000000b1", &rec), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "arm")), "canary");
    assert_string_equal(json_string_value(json_object_get(rec, "request_id")), "r1");
    assert_string_equal(json_string_value(json_object_get(rec, "created_at")), "1970-01-01T00:00:00.001Z");
    json_decref(rec);
    char err[512] = "";
    assert_int_equal(store_integrity_check(s, err, sizeof(err)), 0);
    /* foreign keys are on again: a record referenced by feedback can not go */
    assert_int_equal(store_sqlite_with_db(s, delete_referenced, NULL), SQLITE_CONSTRAINT_FOREIGNKEY);
    store_close(s);
    assert_int_equal(raw_int(path, is_v6), 1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM feedback f JOIN predictions p ON p.id = f.prediction_id"),
                     1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_migrations WHERE version = 6"), 1);
}

/* A new store taken back to version 5 (its two records in the version-5 table). */
static void make_v5(char *path, size_t len, const char *name)
{
    path_in(path, len, name);
    store_close(open_path(path));
    raw_exec(path, v5_predictions);
}

/* A version-5 store whose feedback names a record that is not there (written with foreign
 * keys off) is not migrated: the rebuild would keep a broken reference. The open fails with
 * a message that says the reference was already broken (not the migration's doing), names
 * it and how to find it, and the store stays at version 5, unchanged. */
static void test_migration_refuses_broken_reference(void **state)
{
    (void)state;
    char path[PATH_MAX];
    make_v5(path, sizeof(path), "v6-broken.db");
    raw_exec(path, "PRAGMA foreign_keys = OFF; INSERT INTO feedback (prediction_id, row_index, label_json, "
                   "received_ms) VALUES ('no-such-prediction', 0, '1', 3);");
    char err[512] = "";
    store_t *s = NULL;
    assert_int_equal(store_open(path, &s, err, sizeof(err)), -EPROTO);
    assert_null(s);
    assert_non_null(strstr(err, "1 row(s) already reference a missing row"));
    assert_non_null(strstr(err, "migration 6 was not applied and nothing was changed"));
    assert_non_null(strstr(err, "feedback"));
    assert_non_null(strstr(err, "PRAGMA foreign_key_check"));
    assert_int_equal(raw_int(path, is_v6), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM predictions"), 2);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_migrations WHERE version = 6"), 0);
}

/* review42 #4: a newer binary's command (say `model list`) migrated a store under a running
 * older server, which went on writing to tables it no longer knew. An upgrade is refused while
 * another process holds the store's lock (nothing changes); the process that holds it (serve,
 * which takes the lock before it opens the store) migrates. */
static void test_no_upgrade_under_a_running_server(void **state)
{
    (void)state;
    char path[PATH_MAX], lock[PATH_MAX + 8];
    make_v5(path, sizeof(path), "v6-locked.db");
    lockfile_path_for_db(path, lock, sizeof(lock));
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* the "older server": holds the lock until killed */
        int fd = lockfile_acquire(lock);
        (void)!write(ready[1], fd >= 0 ? "y" : "n", 1);
        for (;;)
            pause();
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %ld", (long)child);
    expect_open_fails(path, -EBUSY, pid);
    expect_open_fails(path, -EBUSY, "stop that server first");
    assert_int_equal(raw_int(path, is_v6), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_migrations WHERE version = 6"), 0);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(ready[0]);
    close(ready[1]);
    /* review45 leftover: a lock file that can not be checked (here a symlink loop) is not
     * taken for "no server": nothing is upgraded */
    assert_int_equal(unlink(lock), 0);
    assert_int_equal(symlink(lock, lock), 0);
    expect_open_fails(path, -EBUSY, "can not tell whether a server is running on it");
    assert_int_equal(raw_int(path, is_v6), 0);
    assert_int_equal(unlink(lock), 0);
    /* the lock's holder itself migrates */
    int fd = lockfile_acquire(lock);
    assert_true(fd >= 0);
    store_close(open_path(path));
    lockfile_release(fd);
    assert_int_equal(raw_int(path, is_v6), 1);
}

/* review43 #7: the DR drill read production's registry through store_open, which upgraded
 * production. STORE_OPEN_NO_UPGRADE neither creates nor migrates a store. */
static void test_open_without_upgrade(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512] = "";
    make_v5(path, sizeof(path), "v6-readonly.db");
    store_t *s = NULL;
    assert_int_equal(store_open_flags(path, STORE_OPEN_NO_UPGRADE, &s, err, sizeof(err)), -ESTALE);
    assert_null(s);
    assert_non_null(strstr(err, "not upgraded here"));
    assert_int_equal(raw_int(path, is_v6), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_migrations WHERE version = 6"), 0);
    /* nothing created where there is no store */
    char none[PATH_MAX];
    path_in(none, sizeof(none), "never-created.db");
    assert_int_equal(store_open_flags(none, STORE_OPEN_NO_UPGRADE, &s, err, sizeof(err)), -ENOENT);
    assert_int_equal(access(none, F_OK), -1);
    /* a store of this version opens */
    store_close(open_path(path));
    assert_int_equal(store_open_flags(path, STORE_OPEN_NO_UPGRADE, &s, err, sizeof(err)), 0);
    store_close(s);
}

static int secure_delete_of(sqlite3 *db, void *arg)
{
    (void)arg;
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA secure_delete", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A store another process holds the write lock of (a server, or another command upgrading
 * it) can not be migrated: the open fails after the busy timeout with a message that says
 * so and what to do, and nothing changes. */
static void test_migration_busy_is_explained(void **state)
{
    (void)state;
    char path[PATH_MAX];
    make_v5(path, sizeof(path), "v6-busy.db");
    sqlite3 *holder = NULL;
    assert_int_equal(sqlite3_open(path, &holder), SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    char err[1024] = "";
    store_t *s = NULL;
    assert_true(store_open(path, &s, err, sizeof(err)) < 0);
    assert_null(s);
    assert_non_null(strstr(err, "database is locked"));
    assert_non_null(strstr(err, "another process holds the store's write lock"));
    sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(holder);
    assert_int_equal(raw_int(path, is_v6), 0);
    s = open_path(path); /* free again: migrates */
    /* and the store's connection zeroes freed pages, whatever SQLite's compiled default */
    assert_int_equal(store_sqlite_with_db(s, secure_delete_of, NULL), 1);
    store_close(s);
    assert_int_equal(raw_int(path, is_v6), 1);
}

static void test_predictions_put_get_count(void **state)
{
    (void)state;
    store_t *s = open_named("predictions.db");
    int64_t n = -1;
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_predictions_put(s, NULL, 0), 0);

    store_prediction_t p[3] = {
        {.id = "0190a1b2-0000-7000-8000-000000000001",
         .created_ms = 1764228402123,
         .model = "alz",
         .version = "1.0",
         .arm = "stable",
         .request_id = "req-1",
         .patient_pseudonym = "ps_abc",
         .outputs_json = "[{\"label\":\"Demented\",\"probabilities\":{\"Demented\":0.81}}]",
         .inputs_json = "[{\"MMSE\":22,\"Age\":77}]",
         .n_rows = 1,
         .latency_ms = 0.75,
         .status = 200},
        {.id = "0190a1b2-0000-7000-8000-000000000002",
         .created_ms = 1764228402200,
         .model = "alz",
         .version = "1.0",
         .arm = "stable",
         .request_id = "req-2",
         .patient_pseudonym = NULL,
         .outputs_json = "[{\"label\":\"Nondemented\"},{\"label\":\"Demented\"}]",
         .inputs_json = NULL,
         .n_rows = 2,
         .latency_ms = 1.5,
         .status = 200},
        {.id = "0190a1b2-0000-7000-8000-000000000003",
         .created_ms = 1764228402300,
         .model = "park",
         .version = "2",
         .arm = "canary",
         .request_id = NULL,
         .outputs_json = "[0.5]",
         .n_rows = 1,
         .latency_ms = 0.25,
         .status = 200},
    };
    assert_int_equal(store_predictions_put(s, p, 3), 0);
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 3);

    json_t *o = NULL;
    assert_int_equal(store_prediction_get(s, p[0].id, &o), 0);
    assert_int_equal(json_object_size(o), 12);
    assert_string_equal(json_string_value(json_object_get(o, "id")), p[0].id);
    assert_string_equal(json_string_value(json_object_get(o, "created_at")), "2025-11-27T07:26:42.123Z");
    assert_string_equal(json_string_value(json_object_get(o, "model")), "alz");
    assert_string_equal(json_string_value(json_object_get(o, "version")), "1.0");
    assert_string_equal(json_string_value(json_object_get(o, "arm")), "stable");
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "req-1");
    assert_string_equal(json_string_value(json_object_get(o, "patient_pseudonym")), "ps_abc");
    json_t *outputs = json_object_get(o, "outputs");
    assert_true(json_is_array(outputs));
    assert_string_equal(json_string_value(json_object_get(json_array_get(outputs, 0), "label")), "Demented");
    json_t *inputs = json_object_get(o, "inputs");
    assert_true(json_is_array(inputs));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(inputs, 0), "MMSE")), 22);
    assert_int_equal(json_integer_value(json_object_get(o, "n_rows")), 1);
    assert_true(json_real_value(json_object_get(o, "latency_ms")) == 0.75);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    json_decref(o);

    assert_int_equal(store_prediction_get(s, p[1].id, &o), 0);
    assert_true(json_is_null(json_object_get(o, "inputs")));
    assert_true(json_is_null(json_object_get(o, "patient_pseudonym")));
    assert_int_equal(json_array_size(json_object_get(o, "outputs")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "n_rows")), 2);
    json_decref(o);

    assert_int_equal(store_prediction_get(s, p[2].id, &o), 0);
    assert_true(json_is_null(json_object_get(o, "request_id")));
    assert_string_equal(json_string_value(json_object_get(o, "arm")), "canary");
    json_decref(o);

    o = NULL;
    assert_int_equal(store_prediction_get(s, "no-such-id", &o), -ENOENT);
    assert_null(o);

    /* a batch is one transaction: a duplicate id fails it whole */
    store_prediction_t dup[2] = {p[2], p[2]};
    dup[0].id = "0190a1b2-0000-7000-8000-000000000004";
    assert_int_equal(store_predictions_put(s, dup, 2), -EEXIST);
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(store_prediction_get(s, dup[0].id, &o), -ENOENT);

    store_prediction_t bad = p[0];
    bad.id = NULL;
    assert_int_equal(store_predictions_put(s, &bad, 1), -EINVAL);
    bad = p[0];
    bad.outputs_json = NULL;
    assert_int_equal(store_predictions_put(s, &bad, 1), -EINVAL);
    store_close(s);

    /* durable across reopen */
    s = open_named("predictions.db");
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 3);
    store_close(s);
}

static void test_integrity_check_ok(void **state)
{
    (void)state;
    store_t *s = open_named("integrity.db");
    assert_int_equal(put(s, "m", "1", "/m/1", SHA_A, "binary", "{}"), 0);
    assert_int_equal(store_model_set_stable(s, "m", "1"), 0);
    char err[256] = "unset";
    assert_int_equal(store_integrity_check(s, err, sizeof(err)), 0);
    store_close(s);
}

static void test_integrity_check_detects_corruption(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, sizeof(path), "corrupt.db");
    store_t *s = open_path(path);
    char id[64], out[300];
    memset(out, 0, sizeof(out));
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "id-%06d", i);
        snprintf(out, sizeof(out), "[{\"label\":\"x\",\"pad\":\"%0200d\"}]", i);
        store_prediction_t p = {.id = id,
                                .model = "m",
                                .version = "1",
                                .arm = "stable",
                                .outputs_json = out,
                                .n_rows = 1,
                                .status = 200};
        assert_int_equal(store_predictions_put(s, &p, 1), 0);
    }
    store_close(s); /* last connection: checkpoints the WAL into the file */

    int64_t page = raw_int(path, "PRAGMA page_size");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size > 100 * page);
    off_t at = (off_t)((sb.st_size / page) / 2) * page;
    char *junk = malloc((size_t)page);
    assert_non_null(junk);
    memset(junk, 0xa5, (size_t)page);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, (size_t)page, at), page);
    close(fd);
    free(junk);

    s = open_path(path);
    char err[512] = "";
    assert_int_equal(store_integrity_check(s, err, sizeof(err)), -EIO);
    assert_true(strlen(err) > 0);
    store_close(s);
}

/* ---- threads -------------------------------------------------------------------------- */

typedef struct {
    store_t *s;
    int t;
    int failures;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char id[64];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "t%d-%d", w->t, i);
        store_prediction_t p = {.id = id,
                                .model = "m",
                                .version = "1",
                                .arm = "stable",
                                .outputs_json = "[1]",
                                .n_rows = 1,
                                .status = 200};
        if (store_predictions_put(w->s, &p, 1) != 0)
            w->failures++;
        json_t *o = NULL;
        if (store_prediction_get(w->s, id, &o) != 0)
            w->failures++;
        json_decref(o);
        int64_t g;
        if (store_registry_generation(w->s, &g) != 0)
            w->failures++;
    }
    return NULL;
}

/* review21: the monitor's accuracy window (a join over up to 200k labels, about 1 s) ran on
 * the writer's connection under its mutex, so every prediction waited for it. A long read
 * now has its own read-only connection: a write commits while the read is in progress. */
typedef struct reader_probe {
    store_t *s;
    sqlite3 *writer_db;
    int ping_write_rc, put_rc;
    int64_t seen;
} reader_probe_t;

static int note_db(sqlite3 *db, void *arg)
{
    *(sqlite3 **)arg = db;
    return 0;
}

static int read_while_writing(sqlite3 *db, void *arg)
{
    reader_probe_t *p = arg;
    assert_ptr_not_equal(db, p->writer_db);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM predictions", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW); /* a read transaction is open from here */
    p->seen = sqlite3_column_int64(st, 0);
    p->ping_write_rc = store_ping_write(p->s, 0); /* -EBUSY if the writer's mutex were held */
    store_prediction_t pr = {.id = "0190a1b2-0000-7000-8000-0000000000ff",
                             .created_ms = 1764228402123,
                             .model = "alz",
                             .version = "1.0",
                             .arm = "stable",
                             .outputs_json = "[0.5]",
                             .n_rows = 1,
                             .latency_ms = 0.5,
                             .status = 200};
    p->put_rc = store_predictions_put(p->s, &pr, 1);
    int rc = sqlite3_exec(db, "CREATE TABLE x(a)", NULL, NULL, NULL); /* read-only */
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? -EPERM : 0;
}

static void test_long_reads_do_not_hold_the_writer(void **state)
{
    (void)state;
    store_t *s = open_named("reader.db");
    reader_probe_t p = {.s = s, .ping_write_rc = 1, .put_rc = 1, .seen = -1};
    assert_int_equal(store_sqlite_with_db(s, note_db, &p.writer_db), 0);
    assert_int_equal(store_sqlite_with_reader(s, read_while_writing, &p), 0);
    assert_int_equal(p.seen, 0);
    assert_int_equal(p.ping_write_rc, 0);
    assert_int_equal(p.put_rc, 0);
    int64_t n = -1;
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 1);
    store_close(s);
}

/* review67 #1, review69 #1: the registry's reads (serve's main thread polls them; request
 * workers list models) must not wait for the writer's connection, whose mutex a recorder holds
 * while another process has the write lock, nor for a long read such as the monitor's window.
 * While each is held in this thread, another thread reads the generation and the model list. */
typedef struct registry_probe {
    store_t *s;
    pthread_t th;
    int gen_rc, list_rc;
    size_t models;
    int done; /* under lock */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool in_time;
} registry_probe_t;

static void *registry_reads(void *arg)
{
    registry_probe_t *p = arg;
    int64_t gen = -1;
    json_t *list = NULL;
    p->gen_rc = store_registry_generation(p->s, &gen);
    p->list_rc = store_model_list(p->s, &list);
    p->models = json_array_size(list);
    json_decref(list);
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Held connection callback: the registry reads from another thread, waited for up to 5 s. */
static int hold_while_registry_reads(sqlite3 *db, void *arg)
{
    (void)db;
    registry_probe_t *p = arg;
    p->done = 0;
    assert_int_equal(pthread_create(&p->th, NULL, registry_reads, p), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&p->lock);
    while (!p->done && pthread_cond_timedwait(&p->cv, &p->lock, &ts) == 0)
        ;
    p->in_time = p->done;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static void test_registry_reads_wait_neither_for_the_writer_nor_for_long_reads(void **state)
{
    (void)state;
    store_t *s = open_named("regreads.db");
    char dir[PATH_MAX];
    path_in(dir, sizeof(dir), "regreads-models");
    assert_int_equal(put_stable(s, "alz", "1.0.0", dir, SHA_A, "binary", "{}"), 0);
    registry_probe_t p = {.s = s, .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(store_sqlite_with_db(s, hold_while_registry_reads, &p), 0);
    pthread_join(p.th, NULL);
    assert_true(p.in_time);
    assert_int_equal(p.gen_rc, 0);
    assert_int_equal(p.list_rc, 0);
    assert_int_equal(p.models, 1);
    p.in_time = false;
    assert_int_equal(store_sqlite_with_reader(s, hold_while_registry_reads, &p), 0);
    pthread_join(p.th, NULL);
    assert_true(p.in_time);
    assert_int_equal(p.list_rc, 0);
    assert_int_equal(p.models, 1);
    store_close(s);
}

static void test_shared_store_from_threads(void **state)
{
    (void)state;
    store_t *s = open_named("threads.db");
    pthread_t th[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){.s = s, .t = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    int64_t n;
    assert_int_equal(store_prediction_count(s, &n), 0);
    assert_int_equal(n, 800);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_migrate_reopen),
        cmocka_unit_test(test_long_reads_do_not_hold_the_writer),
        cmocka_unit_test(test_registry_reads_wait_neither_for_the_writer_nor_for_long_reads),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_foreign_database_refused),
        cmocka_unit_test(test_not_a_database),
        cmocka_unit_test(test_postgres_refused),
        cmocka_unit_test(test_bad_url),
        cmocka_unit_test(test_url_forms_and_parent_dirs),
        cmocka_unit_test(test_fds_are_cloexec),
        cmocka_unit_test(test_model_version_put_idempotent),
        cmocka_unit_test(test_set_stable),
        cmocka_unit_test(test_model_version_put_make_stable),
        cmocka_unit_test(test_model_version_put_hook),
        cmocka_unit_test(test_model_list_shape),
        cmocka_unit_test(test_generation_visible_to_second_store),
        cmocka_unit_test(test_predictions_put_get_count),
        cmocka_unit_test(test_predictions_table_v6),
        cmocka_unit_test(test_migration_refuses_broken_reference),
        cmocka_unit_test(test_no_upgrade_under_a_running_server),
        cmocka_unit_test(test_open_without_upgrade),
        cmocka_unit_test(test_migration_busy_is_explained),
        cmocka_unit_test(test_integrity_check_ok),
        cmocka_unit_test(test_integrity_check_detects_corruption),
        cmocka_unit_test(test_shared_store_from_threads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
