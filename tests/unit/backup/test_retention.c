/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/retention (`backup prune`) on a repository of hand-made, signed
 * manifests with chosen ages: the newest BACKUP_KEEP_MIN and the young are kept; parents
 * and holders of a kept incremental are kept however old; expired backups inside the audit
 * retention are reduced to their audit files (re-signed manifest, other data removed) and
 * so is an older one holding audit bytes they reference; the rest is deleted; a dry run
 * changes nothing; a manifest that does not authenticate is left alone. */
#include <errno.h>
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

#include "backup/manifest.h"
#include "backup/repo.h"
#include "backup/retention.h"
#include "common/util.h"
#include "testutil.h"

#define DAY (86400LL * 1000)

static char repo[2048];
static backup_key_t key;
static const int64_t NOW = 1795741323000LL;

static int setup(void **state)
{
    (void)state;
    if (test_tmpdir(repo, sizeof(repo), "backup-retention") < 0)
        return -1;
    uint8_t m[32] = {3};
    backup_key_derive(m, &key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(repo);
    return 0;
}

typedef struct spec {
    const char *path, *component, *holder, *stored;
} spec_t;

/* Writes repo/<id>/manifest.json and a data file for every entry this backup holds. */
static void make_backup(const char *id, const char *type, const char *parent, int64_t age_days,
                        const spec_t *files, size_t n)
{
    backup_manifest_t *m = backup_manifest_new();
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->type, sizeof(m->type), "%s", type);
    if (parent)
        snprintf(m->parent, sizeof(m->parent), "%s", parent);
    m->timestamp_ms = NOW - age_days * DAY;
    memcpy(m->key_fingerprint, key.fingerprint, sizeof(m->key_fingerprint));
    char dir[4096], data[4200];
    snprintf(dir, sizeof(dir), "%s/%s", repo, id);
    snprintf(data, sizeof(data), "%s/data", dir);
    assert_int_equal(util_mkdir_p(data, 0700), 0);
    for (size_t i = 0; i < n; i++) {
        backup_file_t f = {.path = (char *)files[i].path,
                           .component = (char *)files[i].component,
                           .size = 10,
                           .stored = (char *)files[i].stored,
                           .stored_size = 50};
        snprintf(f.holder, sizeof(f.holder), "%s", files[i].holder ? files[i].holder : id);
        memset(f.sha256, 'c', 64);
        memset(f.nonce, '1', 24);
        assert_int_equal(backup_manifest_add_file(m, &f), 0);
        if (strcmp(f.holder, id) == 0) {
            char p[4300];
            snprintf(p, sizeof(p), "%s/%s", dir, f.stored);
            assert_int_equal(
                util_write_file_atomic(p, "01234567890123456789012345678901234567890123456789", 50, 0600), 0);
        }
    }
    char *text = backup_manifest_dump(m, &key);
    char mp[4200];
    snprintf(mp, sizeof(mp), "%s/manifest.json", dir);
    assert_int_equal(util_write_file_atomic(mp, text, strlen(text), 0600), 0);
    free(text);
    backup_manifest_free(m);
}

static bool exists(const char *id, const char *sub)
{
    char p[4300];
    if (sub)
        snprintf(p, sizeof(p), "%s/%s/%s", repo, id, sub);
    else
        snprintf(p, sizeof(p), "%s/%s", repo, id);
    return util_path_exists(p);
}

static bool in(const json_t *arr, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), id) == 0) return true;
    return false;
}

static void test_prune(void **state)
{
    (void)state;
    /* A (400 d, full)  <- B (380 d, incremental, references A's db and A's old audit file)
     * C (200 d, full, holds audit)  <- D (100 d, incremental; audit references C)
     * E (50 d, full)  <- F (2 d, incremental; references E's model)
     * G (1 d, full)
     * retention 30 d, keep at least 1, audit kept 300 d. */
    spec_t a[] = {{"db/aimedres.db", "db", NULL, "data/000001"},
                  {"audit/audit.log.1", "audit", NULL, "data/000002"}};
    spec_t b[] = {{"db/aimedres.db", "db", "20250101T000000Z", "data/000001"},
                  {"audit/audit.log.1", "audit", "20250101T000000Z", "data/000002"}};
    spec_t c[] = {{"db/aimedres.db", "db", NULL, "data/000001"},
                  {"audit/audit.log.2", "audit", NULL, "data/000002"}};
    spec_t d[] = {{"db/aimedres.db", "db", NULL, "data/000001"},
                  {"audit/audit.log.2", "audit", "20250501T000000Z", "data/000002"},
                  {"models/m/1/model.json", "models", NULL, "data/000003"}};
    spec_t e[] = {{"models/m/1/model.json", "models", NULL, "data/000001"},
                  {"db/aimedres.db", "db", NULL, "data/000002"}};
    spec_t f[] = {{"models/m/1/model.json", "models", "20250901T000000Z", "data/000001"},
                  {"db/aimedres.db", "db", NULL, "data/000002"}};
    spec_t g[] = {{"db/aimedres.db", "db", NULL, "data/000001"}};
    make_backup("20250101T000000Z", "full", NULL, 400, a, 2);
    make_backup("20250120T000000Z", "incremental", "20250101T000000Z", 380, b, 2);
    make_backup("20250501T000000Z", "full", NULL, 200, c, 2);
    make_backup("20250801T000000Z", "incremental", "20250501T000000Z", 100, d, 3);
    make_backup("20250901T000000Z", "full", NULL, 50, e, 2);
    make_backup("20251101T000000Z", "incremental", "20250901T000000Z", 2, f, 2);
    make_backup("20251102T000000Z", "full", NULL, 1, g, 1);
    assert_int_equal(backup_repo_set_latest(repo, "20251102T000000Z"), 0);

    backup_settings_t s;
    memset(&s, 0, sizeof(s));
    s.retention_days = 30;
    s.keep_min = 1;
    s.audit_retention_days = 300;
    char err[512] = "";
    json_t *rep = NULL;

    /* dry run: same decisions, nothing removed */
    backup_prune_opts_t dry = {.dry_run = true, .now_ms = NOW};
    assert_int_equal(backup_prune(repo, &s, &key, &dry, &rep, err, sizeof(err)), 0);
    assert_true(in(json_object_get(rep, "deleted"), "20250101T000000Z"));
    json_decref(rep);
    assert_true(exists("20250101T000000Z", NULL));

    backup_prune_opts_t o = {.now_ms = NOW};
    int r = backup_prune(repo, &s, &key, &o, &rep, err, sizeof(err));
    if (r)
        fail_msg("%s", err);
    json_t *kept = json_object_get(rep, "kept"), *reduced = json_object_get(rep, "reduced"),
           *deleted = json_object_get(rep, "deleted");
    /* young, and the parent/holder of a young incremental, however old */
    assert_true(in(kept, "20251102T000000Z"));
    assert_true(in(kept, "20251101T000000Z"));
    assert_true(in(kept, "20250901T000000Z"));
    /* expired, inside the audit retention: reduced; C too, as the holder D's audit needs */
    assert_true(in(reduced, "20250801T000000Z"));
    assert_true(in(reduced, "20250501T000000Z"));
    /* beyond the audit retention and not needed */
    assert_true(in(deleted, "20250101T000000Z"));
    assert_true(in(deleted, "20250120T000000Z"));
    assert_true(json_integer_value(json_object_get(rep, "freed_bytes")) > 0);
    json_decref(rep);

    assert_false(exists("20250101T000000Z", NULL));
    assert_false(exists("20250120T000000Z", NULL));
    assert_true(exists("20250901T000000Z", "data/000001"));
    /* D keeps its manifest (audit only), loses its own db and model data */
    assert_false(exists("20250801T000000Z", "data/000001"));
    assert_false(exists("20250801T000000Z", "data/000003"));
    assert_true(exists("20250501T000000Z", "data/000002")); /* the audit bytes D references */
    assert_false(exists("20250501T000000Z", "data/000001"));

    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/20250801T000000Z", repo);
    backup_manifest_t *m = NULL;
    assert_int_equal(backup_manifest_load(dir, &key, &m, err, sizeof(err)), 0);
    assert_string_equal(m->type, "audit-only");
    assert_int_equal(m->n_files, 1);
    assert_string_equal(m->files[0].path, "audit/audit.log.2");
    assert_string_equal(m->parent, "");
    backup_manifest_free(m);

    /* idempotent: a second run changes nothing more */
    assert_int_equal(backup_prune(repo, &s, &key, &o, &rep, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(json_object_get(rep, "deleted")), 0);
    assert_int_equal(json_array_size(json_object_get(rep, "reduced")), 0);
    json_decref(rep);

    /* past the audit retention too: everything reduced goes */
    backup_prune_opts_t later = {.now_ms = NOW + 400 * DAY};
    s.keep_min = 1;
    assert_int_equal(backup_prune(repo, &s, &key, &later, &rep, err, sizeof(err)), 0);
    assert_true(in(json_object_get(rep, "deleted"), "20250801T000000Z"));
    assert_true(in(json_object_get(rep, "kept"), "20251102T000000Z"));
    json_decref(rep);
}

static void test_keep_min_and_untouched(void **state)
{
    (void)state;
    util_rmtree(repo);
    util_mkdir_p(repo, 0700);
    spec_t g[] = {{"db/aimedres.db", "db", NULL, "data/000001"}};
    make_backup("20240101T000000Z", "full", NULL, 700, g, 1);
    make_backup("20240201T000000Z", "full", NULL, 690, g, 1);
    make_backup("20240301T000000Z", "full", NULL, 680, g, 1);
    make_backup("20240401T000000Z", "full", NULL, 670, g, 1);
    /* a manifest signed with another key is left alone */
    backup_key_t saved = key;
    uint8_t other[32] = {9};
    backup_key_derive(other, &key);
    make_backup("20240115T000000Z", "full", NULL, 695, g, 1);
    key = saved;
    backup_settings_t s;
    memset(&s, 0, sizeof(s));
    s.retention_days = 30;
    s.keep_min = 2;
    s.audit_retention_days = 300;
    json_t *rep = NULL;
    char err[512];
    backup_prune_opts_t o = {.now_ms = NOW};
    assert_int_equal(backup_prune(repo, &s, &key, &o, &rep, err, sizeof(err)), 0);
    assert_true(in(json_object_get(rep, "kept"), "20240401T000000Z"));
    assert_true(in(json_object_get(rep, "kept"), "20240301T000000Z"));
    assert_true(in(json_object_get(rep, "deleted"), "20240201T000000Z"));
    assert_true(in(json_object_get(rep, "deleted"), "20240101T000000Z"));
    assert_int_equal(json_array_size(json_object_get(rep, "untouched")), 1);
    assert_true(exists("20240115T000000Z", NULL));
    json_decref(rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_keep_min_and_untouched),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
