/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the audit writer and verifier on real files: group commit from several
 * threads, two writers on one file (the flock path other processes take), torn-tail trim,
 * daily rotation continuing the chain, signed checkpoints, each kind of tampering detected
 * at the exact record, and fail-closed behaviour on a full disk (a 64 KiB tmpfs when we may
 * mount, else RLIMIT_FSIZE) including recovery. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "common/util.h"
#include "testutil.h"

#define SECRET "unit-test-secret-key-0123456789abcdef"

static char tmpdir[PATH_MAX / 2];
static int case_no;

static int group_setup(void **state)
{
    (void)state;
    if (test_tmpdir(tmpdir, sizeof(tmpdir), "audit-log") < 0)
        return -1;
    char priv[PATH_MAX], pub[PATH_MAX], err[256];
    snprintf(priv, sizeof(priv), "%s/sign.pem", tmpdir);
    snprintf(pub, sizeof(pub), "%s/verify.pem", tmpdir);
    return audit_keygen(priv, pub, err, sizeof(err));
}

static int group_teardown(void **state)
{
    (void)state;
    util_rmtree(tmpdir);
    return 0;
}

typedef struct tcfg {
    config_t cfg;
    char path[PATH_MAX];
    char sign[PATH_MAX];
    char verify[PATH_MAX];
} tcfg_t;

/* A config for a fresh log in its own directory. */
static void make_cfg(tcfg_t *t, bool signing, int ckpt_every)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s/case%d/audit.log", tmpdir, ++case_no);
    snprintf(t->sign, sizeof(t->sign), "%s/sign.pem", tmpdir);
    snprintf(t->verify, sizeof(t->verify), "%s/verify.pem", tmpdir);
    t->cfg.audit_log_path = t->path;
    t->cfg.secret_key = SECRET;
    t->cfg.audit_durability = "strict";
    t->cfg.audit_checkpoint_records = ckpt_every;
    t->cfg.audit_checkpoint_interval_s = 3600;
    t->cfg.audit_log_retention_days = 2555;
    if (signing) {
        t->cfg.audit_signing_key_path = t->sign;
        t->cfg.audit_verify_key_path = t->verify;
    }
}

static audit_log_t *open_log(const config_t *cfg)
{
    audit_log_t *a = NULL;
    char err[512] = "";
    int rc = audit_log_open(cfg, &a, err, sizeof(err));
    if (rc < 0)
        fail_msg("audit_log_open: %s", err);
    assert_non_null(a);
    return a;
}

static void append_n(audit_log_t *a, int n, const char *user)
{
    for (int i = 0; i < n; i++) {
        char rid[32];
        snprintf(rid, sizeof(rid), "req-%d", i);
        audit_event_t ev = {.type = "DATA_ACCESS",
                            .user = user,
                            .role = "clinician",
                            .action = "R",
                            .outcome = "success",
                            .request_id = rid};
        assert_int_equal(audit_log_append_sync(a, &ev), 0);
    }
}

static void verify(const config_t *cfg, audit_verify_result_t *res)
{
    char err[512] = "";
    int rc = audit_verify(cfg, NULL, res, err, sizeof(err));
    if (rc < 0)
        fail_msg("audit_verify: %s", err);
}

/* ---- group commit from threads ---- */

typedef struct counter {
    atomic_int ok, bad;
} counter_t;

static void on_done(void *arg, int status)
{
    counter_t *c = arg;
    if (status == 0)
        atomic_fetch_add(&c->ok, 1);
    else
        atomic_fetch_add(&c->bad, 1);
}

typedef struct worker {
    audit_log_t *a;
    counter_t *c;
    int n;
} worker_t;

static void *submit_many(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < w->n; i++) {
        json_t *detail = json_pack("{s:s,s:i}", "model", "m", "i", i);
        audit_event_t ev = {.type = "MODEL_INFERENCE",
                            .user = "svc",
                            .role = "clinician",
                            .action = "E",
                            .outcome = "success",
                            .patient_pseudonym = "p_0123456789abcdef0123456789abcd",
                            .detail = detail};
        assert_int_equal(audit_log_submit(w->a, &ev, on_done, w->c), 0);
        json_decref(detail);
    }
    return NULL;
}

static void test_threads_group_commit(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, false, 1000);
    audit_log_t *a = open_log(&t.cfg);
    counter_t c = {0};
    pthread_t th[4];
    worker_t w = {a, &c, 250};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, submit_many, &w);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    audit_log_close(a); /* flushes: every callback has run */
    assert_int_equal(atomic_load(&c.ok), 1000);
    assert_int_equal(atomic_load(&c.bad), 0);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok);
    assert_int_equal(res.records, 1000);
    assert_int_equal(res.last_seq, 1000);
    /* NULL log: audit off */
    atomic_store(&c.ok, 0);
    audit_event_t ev = {.type = "X"};
    assert_int_equal(audit_log_submit(NULL, &ev, on_done, &c), 0);
    assert_int_equal(atomic_load(&c.ok), 1);
    assert_true(audit_log_healthy(NULL));
    audit_log_close(NULL);
}

typedef struct flood {
    audit_log_t *a;
    counter_t c;
    atomic_bool stop;
    int submitted;
} flood_t;

/* Submits inference records, up to 256 in flight, until told to stop. */
static void *submit_inferences(void *arg)
{
    flood_t *f = arg;
    while (!atomic_load(&f->stop)) {
        if (f->submitted - atomic_load(&f->c.ok) - atomic_load(&f->c.bad) >= 256) {
            usleep(100);
            continue;
        }
        char pid[32];
        snprintf(pid, sizeof(pid), "pred-%d", f->submitted);
        audit_inference_t inf = {.user = "svc",
                                 .role = "clinician",
                                 .source_ip = "127.0.0.1",
                                 .request_id = pid,
                                 .patient_pseudonym = "p_0123456789abcdef0123456789abcd",
                                 .model = "m",
                                 .version = "1.0.0",
                                 .arm = "stable",
                                 .prediction_id = pid,
                                 .rows = 1};
        assert_int_equal(audit_log_submit_inference(f->a, &inf, on_done, &f->c), 0);
        f->submitted++;
    }
    return NULL;
}

static size_t count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, f) > 0)
        n += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return n;
}

/* The predict path's submit (no JSON tree) through the writer, with a second writer on the
 * same file (as a CLI process) appending while the first is busy: the first keeps the flock
 * across back-to-back batches only for a bounded lease, so the second gets its turn; the
 * chain and the checkpoints verify and every record is there exactly once. */
static void test_inference_submit_and_lease(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, true, 100);
    audit_log_t *a = open_log(&t.cfg), *b = open_log(&t.cfg);
    flood_t f = {.a = a};
    pthread_t th;
    pthread_create(&th, NULL, submit_inferences, &f);
    for (int i = 0; i < 30000 && atomic_load(&f.c.ok) < 500; i++) /* the first writer is busy */
        usleep(1000);
    assert_true(atomic_load(&f.c.ok) >= 500);
    int64_t t0 = util_now_ms();
    append_n(b, 20, "cli"); /* each waits until durable: gets the lock between a's leases */
    int64_t took = util_now_ms() - t0;
    atomic_store(&f.stop, true);
    pthread_join(th, NULL);
    audit_log_close(a);
    audit_log_close(b);
    printf("second writer: 20 appends in %lld ms while the first wrote %d records\n", (long long)took,
           f.submitted);
    assert_true(took < 20000);
    assert_int_equal(atomic_load(&f.c.ok), f.submitted);
    assert_int_equal(atomic_load(&f.c.bad), 0);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    if (!res.ok)
        fail_msg("%s", res.message);
    assert_true(res.checkpoints > 0);
    assert_int_equal(count_in_file(t.path, "\"type\":\"MODEL_INFERENCE\""), (size_t)f.submitted);
    assert_int_equal(count_in_file(t.path, "\"entity_id\":\"m/1.0.0\""), (size_t)f.submitted);
    assert_int_equal(count_in_file(t.path, "\"type\":\"DATA_ACCESS\""), 20);
    /* refusals and audit off */
    a = open_log(&t.cfg);
    audit_inference_t raw = {.model = "m", .version = "1", .patient_pseudonym = "MRN-0042"};
    assert_int_equal(audit_log_submit_inference(a, &raw, on_done, &f.c), -EINVAL);
    audit_log_close(a);
    counter_t c = {0};
    assert_int_equal(audit_log_submit_inference(NULL, &raw, on_done, &c), 0);
    assert_int_equal(atomic_load(&c.ok), 1);
}

static void test_open_refusals(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, false, 1000);
    audit_log_t *a = (audit_log_t *)1;
    char err[512] = "";
    t.cfg.secret_key = NULL;
    assert_int_equal(audit_log_open(&t.cfg, &a, err, sizeof(err)), -EINVAL);
    assert_null(a);
    assert_non_null(strstr(err, "SECRET_KEY"));
    t.cfg.secret_key = SECRET;
    t.cfg.environment = ENV_PRODUCTION; /* production needs signed checkpoints */
    assert_int_equal(audit_log_open(&t.cfg, &a, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "AUDIT_SIGNING_KEY_PATH"));
    t.cfg.audit_log_path = NULL; /* audit off */
    assert_int_equal(audit_log_open(&t.cfg, &a, err, sizeof(err)), 0);
    assert_null(a);
    /* a raw patient id never reaches the log */
    make_cfg(&t, false, 1000);
    a = open_log(&t.cfg);
    audit_event_t ev = {.type = "DATA_ACCESS", .patient_pseudonym = "MRN-0042"};
    assert_int_equal(audit_log_append_sync(a, &ev), -EINVAL);
    audit_log_close(a);
}

static void test_two_writers_one_file(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, false, 1000);
    audit_log_t *a = open_log(&t.cfg),
                *b = open_log(&t.cfg); /* two open file descriptions: as two processes */
    for (int i = 0; i < 20; i++) {
        append_n(i % 3 ? a : b, 1 + i % 2, i % 3 ? "a" : "b");
    }
    audit_log_close(a);
    audit_log_close(b);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok);
    assert_int_equal(res.records, 30);
}

static void test_torn_tail_trimmed(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, false, 1000);
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 5, "u");
    audit_log_close(a);
    int fd = open(t.path, O_WRONLY | O_APPEND);
    const char torn[] = "{\"action\":\"R\",\"seq\":6,\"ty";
    assert_int_equal(write(fd, torn, sizeof(torn) - 1), (ssize_t)(sizeof(torn) - 1));
    close(fd);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok); /* never acknowledged: ignored by verify, reported */
    assert_true(res.torn_tail_ignored);
    struct stat before, after;
    stat(t.path, &before);
    a = open_log(&t.cfg); /* trims */
    stat(t.path, &after);
    assert_int_equal(before.st_size - after.st_size, (off_t)(sizeof(torn) - 1));
    append_n(a, 2, "u");
    audit_log_close(a);
    verify(&t.cfg, &res);
    assert_true(res.ok);
    assert_false(res.torn_tail_ignored);
    assert_int_equal(res.last_seq, 7);
}

static void test_rotation_continues_chain(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, false, 1000);
    /* an active file whose last record is from two days ago (written with the chain key) */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", t.path);
    *strrchr(dir, '/') = '\0';
    util_mkdir_p(dir, 0750);
    unsigned char key[AUDIT_KEY_LEN];
    audit_chain_key(SECRET, key);
    int64_t old_ms = util_now_ms() - 2 * 86400000LL;
    char prev[AUDIT_HASH_HEX] = AUDIT_GENESIS_HASH;
    FILE *f = fopen(t.path, "w");
    for (int i = 1; i <= 3; i++) {
        audit_event_t ev = {.type = "BACKUP", .user = "ops", .outcome = "success"};
        json_t *r = audit_record_build(&ev, (uint64_t)i, old_ms + i, prev);
        audit_record_seal(r, key, prev);
        size_t len;
        char *line = audit_record_line(r, &len);
        fwrite(line, 1, len, f);
        free(line);
        json_decref(r);
    }
    fclose(f);
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 2, "u");
    audit_log_close(a);
    char date[11], archive[PATH_MAX + 16];
    audit_date_format(old_ms / 86400000, date);
    snprintf(archive, sizeof(archive), "%s.%s", t.path, date);
    assert_true(util_path_exists(archive));
    json_t *first = NULL;
    char *data;
    size_t len;
    assert_int_equal(util_read_file(t.path, 1 << 20, &data, &len), 0);
    first = audit_record_parse(data, strchr(data, '\n') - data);
    assert_non_null(first);
    assert_int_equal(json_integer_value(json_object_get(first, "seq")), 4);
    assert_string_equal(json_string_value(json_object_get(first, "prev_hash")), prev); /* continues */
    free(data);
    json_decref(first);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok);
    assert_int_equal(res.records, 5);
    /* --from today skips the archive and anchors on the first record of today */
    char today[11];
    audit_date_format(util_now_ms() / 86400000, today);
    char err[256];
    assert_int_equal(audit_verify(&t.cfg, today, &res, err, sizeof(err)), 0);
    assert_true(res.ok);
    assert_int_equal(res.first_seq, 4);
    assert_int_equal(res.records, 2);
    /* a whole archive removed: its records are missing at the start of the next file... but
     * the verifier anchors on the first file it has, so it is the checkpoints that catch it
     * (see test_checkpoints); deleting a file in the middle is caught as deleted records: */
}

/* ---- tampering ---- */

typedef struct lines {
    char *l[64];
    size_t n;
} lines_t;

static void read_lines(const char *path, lines_t *ls)
{
    char *data;
    size_t len;
    assert_int_equal(util_read_file(path, 1 << 20, &data, &len), 0);
    ls->n = 0;
    for (char *p = data, *nl; (nl = strchr(p, '\n')); p = nl + 1)
        ls->l[ls->n++] = strndup(p, (size_t)(nl - p));
    free(data);
}

static void write_lines(const char *path, char **l, size_t n)
{
    FILE *f = fopen(path, "w");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", l[i]);
    fclose(f);
}

static void free_lines(lines_t *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->l[i]);
}

/* Builds a 10-record log (no checkpoints) and returns its lines. */
static void ten_records(tcfg_t *t, lines_t *ls)
{
    make_cfg(t, false, 1000);
    audit_log_t *a = open_log(&t->cfg);
    append_n(a, 10, "alice");
    audit_log_close(a);
    read_lines(t->path, ls);
    assert_int_equal(ls->n, 10);
}

static void expect_bad(const tcfg_t *t, uint64_t seq, uint64_t line, const char *kind)
{
    audit_verify_result_t res;
    verify(&t->cfg, &res);
    assert_false(res.ok);
    if (res.bad_seq != seq || res.bad_line != line || strcmp(res.bad_kind, kind) != 0)
        fail_msg("expected seq %llu line %llu %s, got seq %llu line %llu %s: %s", (unsigned long long)seq,
                 (unsigned long long)line, kind, (unsigned long long)res.bad_seq,
                 (unsigned long long)res.bad_line, res.bad_kind, res.message);
}

static void test_tamper_kinds(void **state)
{
    (void)state;
    tcfg_t t;
    lines_t ls;
    char *l[64];

    /* edited: a field of record 4 changed */
    ten_records(&t, &ls);
    char *e = strstr(ls.l[3], "\"alice\"");
    memcpy(e, "\"mallo\"", 7);
    write_lines(t.path, ls.l, ls.n);
    expect_bad(&t, 4, 4, "edited");
    free_lines(&ls);

    /* deleted: record 4 removed */
    ten_records(&t, &ls);
    memcpy(l, ls.l, sizeof(char *) * 3);
    memcpy(l + 3, ls.l + 4, sizeof(char *) * 6);
    write_lines(t.path, l, 9);
    expect_bad(&t, 4, 4, "deleted");
    free_lines(&ls);

    /* reordered: records 5 and 6 swapped */
    ten_records(&t, &ls);
    memcpy(l, ls.l, sizeof(char *) * 10);
    l[4] = ls.l[5];
    l[5] = ls.l[4];
    write_lines(t.path, l, 10);
    expect_bad(&t, 5, 5, "reordered");
    free_lines(&ls);

    /* inserted: a copy of record 2 replayed after record 3 */
    ten_records(&t, &ls);
    memcpy(l, ls.l, sizeof(char *) * 3);
    l[3] = ls.l[1];
    memcpy(l + 4, ls.l + 3, sizeof(char *) * 7);
    write_lines(t.path, l, 11);
    expect_bad(&t, 4, 4, "inserted");
    free_lines(&ls);

    /* inserted: a made-up record claiming seq 7 before the genuine one */
    ten_records(&t, &ls);
    memcpy(l, ls.l, sizeof(char *) * 6);
    char *fake = strdup(ls.l[6]);
    memcpy(strstr(fake, "\"alice\""), "\"admin\"", 7);
    l[6] = fake;
    memcpy(l + 7, ls.l + 6, sizeof(char *) * 4);
    write_lines(t.path, l, 11);
    expect_bad(&t, 7, 7, "inserted");
    free(fake);
    free_lines(&ls);

    /* forged: records 8..10 rewritten and rechained with a key that is not the chain key */
    ten_records(&t, &ls);
    unsigned char wrong[AUDIT_KEY_LEN];
    audit_chain_key("guessed-secret", wrong);
    json_t *r7 = audit_record_parse(ls.l[6], strlen(ls.l[6]));
    char prev[AUDIT_HASH_HEX];
    snprintf(prev, sizeof(prev), "%s", json_string_value(json_object_get(r7, "hash")));
    json_decref(r7);
    for (int i = 7; i < 10; i++) {
        json_t *r = audit_record_parse(ls.l[i], strlen(ls.l[i]));
        json_object_set_new(r, "user", json_string("mallory"));
        json_object_set_new(r, "prev_hash", json_string(prev));
        audit_record_seal(r, wrong, prev);
        size_t len;
        char *line = audit_record_line(r, &len);
        line[len - 1] = '\0';
        free(ls.l[i]);
        ls.l[i] = line;
        json_decref(r);
    }
    write_lines(t.path, ls.l, ls.n);
    expect_bad(&t, 8, 8, "forged");
    free_lines(&ls);

    /* a malformed line */
    ten_records(&t, &ls);
    free(ls.l[2]);
    ls.l[2] = strdup("garbage");
    write_lines(t.path, ls.l, ls.n);
    expect_bad(&t, 3, 3, "malformed");
    free_lines(&ls);
}

/* review22: deleting the head of the log used to pass (the first record present anchored the
 * chain). Now the chain starts at seq 1 unless an AUDIT_PRUNE record names the first seq kept
 * and the prev_hash it continues from (what `audit prune` writes before removing archives). */
static void prune_log(tcfg_t *t, lines_t *ls, uint64_t kept, bool right_prev)
{
    make_cfg(t, false, 1000);
    audit_log_t *a = open_log(&t->cfg);
    append_n(a, 6, "carol");
    audit_log_close(a);
    read_lines(t->path, ls);
    json_t *r = audit_record_parse(ls->l[kept - 1], strlen(ls->l[kept - 1]));
    json_t *detail =
        json_pack("{s:[s],s:i,s:I,s:s}", "removed", "audit.log.2019-01-01", "retention_days", 2555,
                  "first_kept_seq", (json_int_t)kept, "kept_prev_hash",
                  right_prev ? json_string_value(json_object_get(r, "prev_hash")) : AUDIT_GENESIS_HASH);
    audit_event_t ev = {.type = "AUDIT_PRUNE",
                        .user = "ops",
                        .role = "cli",
                        .action = "D",
                        .outcome = "success",
                        .detail = detail};
    a = open_log(&t->cfg);
    assert_int_equal(audit_log_append_sync(a, &ev), 0);
    append_n(a, 2, "carol");
    audit_log_close(a);
    json_decref(detail);
    json_decref(r);
    free_lines(ls);
    read_lines(t->path, ls);
    assert_int_equal(ls->n, 9);
}

/* review25: a log pruned by an earlier version (its AUDIT_PRUNE names the removed archives,
 * not the first seq kept) verified before the head check and failed after it: accepted when
 * the chain starts at the first line of a file after every archive the record names, and
 * flagged (legacy_prune_head) as a start the chain itself does not prove. */
static void test_legacy_prune_head(void **state)
{
    (void)state;
    tcfg_t t;
    audit_verify_result_t res;
    for (int named = 0; named < 2; named++) {
        make_cfg(&t, false, 1000);
        audit_log_t *a = open_log(&t.cfg);
        append_n(a, 3, "dave");
        audit_log_close(a);
        char archive[PATH_MAX + 16];
        snprintf(archive, sizeof(archive), "%s.2019-01-01", t.path);
        assert_int_equal(rename(t.path, archive), 0);
        json_t *detail = named ? json_pack("{s:[s],s:i}", "removed", "audit.log.2019-01-01", "retention_days", 1)
                               : json_pack("{s:[],s:i}", "removed", "retention_days", 1);
        audit_event_t ev = {.type = "AUDIT_PRUNE",
                            .user = "ops",
                            .role = "cli",
                            .action = "D",
                            .outcome = "success",
                            .detail = detail};
        a = open_log(&t.cfg);
        assert_int_equal(audit_log_append_sync(a, &ev), 0);
        append_n(a, 2, "dave");
        audit_log_close(a);
        json_decref(detail);
        assert_int_equal(unlink(archive), 0);
        verify(&t.cfg, &res);
        if (named) {
            assert_true(res.ok);
            assert_true(res.legacy_prune_head);
            assert_int_equal(res.first_seq, 4);
        } else {
            expect_bad(&t, 1, 1, "deleted"); /* a prune that names nothing accounts for nothing */
        }
    }
}

static void test_head_deleted(void **state)
{
    (void)state;
    tcfg_t t;
    lines_t ls;
    audit_verify_result_t res;

    /* record 1 removed, then records 1..5 */
    ten_records(&t, &ls);
    write_lines(t.path, ls.l + 1, ls.n - 1);
    expect_bad(&t, 1, 1, "deleted");
    write_lines(t.path, ls.l + 5, ls.n - 5);
    expect_bad(&t, 1, 1, "deleted");
    verify(&t.cfg, &res);
    assert_non_null(strstr(res.message, "starts at seq 6"));
    /* --from keeps its meaning: verify from that day's file, anchored on its first record */
    char today[11], err[256];
    audit_date_format(util_now_ms() / 86400000, today);
    assert_int_equal(audit_verify(&t.cfg, today, &res, err, sizeof(err)), 0);
    assert_true(res.ok);
    assert_int_equal(res.first_seq, 6);
    free_lines(&ls);

    /* a prune that kept seq 4: the chain may start at 4 (or earlier: a prune cut short) */
    prune_log(&t, &ls, 4, true);
    write_lines(t.path, ls.l + 3, ls.n - 3);
    verify(&t.cfg, &res);
    assert_true(res.ok);
    assert_int_equal(res.first_seq, 4);
    write_lines(t.path, ls.l + 1, ls.n - 1);
    verify(&t.cfg, &res);
    assert_true(res.ok);
    /* ...but not later: record 4 deleted on top of the prune */
    write_lines(t.path, ls.l + 4, ls.n - 4);
    expect_bad(&t, 4, 1, "deleted");
    free_lines(&ls);

    /* a prune record whose prev_hash is not the one of the record it names does not count */
    prune_log(&t, &ls, 4, false);
    write_lines(t.path, ls.l + 3, ls.n - 3);
    expect_bad(&t, 1, 1, "deleted");
    free_lines(&ls);
}

/* review22: the AUDIT_CHECKPOINT records of the chain prove checkpoints were written, so the
 * checkpoints file cannot be deleted or cut (to hide a truncated tail) without verify failing. */
static void test_checkpoints_file_removed(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, true, 5);
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 12, "dave");
    audit_log_close(a);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok);
    char ck[PATH_MAX + 16], *data;
    size_t len;
    snprintf(ck, sizeof(ck), "%s.checkpoints", t.path);
    assert_int_equal(util_read_file(ck, 1 << 20, &data, &len), 0);
    assert_int_equal(unlink(ck), 0);
    verify(&t.cfg, &res);
    assert_false(res.ok);
    assert_string_equal(res.bad_kind, "checkpoint");
    assert_non_null(strstr(res.message, "is missing"));
    /* the last checkpoint line removed */
    char *end = data + len - 1;
    while (end > data && end[-1] != '\n')
        end--;
    FILE *f = fopen(ck, "w");
    fwrite(data, 1, (size_t)(end - data), f);
    fclose(f);
    verify(&t.cfg, &res);
    assert_false(res.ok);
    assert_string_equal(res.bad_kind, "checkpoint");
    assert_non_null(strstr(res.message, "shortened"));
    /* restored */
    f = fopen(ck, "w");
    fwrite(data, 1, len, f);
    fclose(f);
    verify(&t.cfg, &res);
    assert_true(res.ok);
    free(data);
}

static void test_checkpoints(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, true, 5);
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 12, "bob");
    /* an explicit checkpoint covers everything so far */
    assert_int_equal(audit_log_checkpoint(a), 0);
    append_n(a, 1, "bob");
    audit_log_close(a); /* final checkpoint over the last record */
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok);
    assert_true(res.checkpoints_signed);
    assert_true(res.checkpoints >= 4);
    uint64_t last = res.last_seq;

    /* tail cut: the last two records removed; the checkpoint still names the last seq */
    lines_t ls;
    read_lines(t.path, &ls);
    assert_int_equal(ls.n, last);
    write_lines(t.path, ls.l, ls.n - 2);
    verify(&t.cfg, &res);
    assert_false(res.ok);
    assert_string_equal(res.bad_kind, "truncated");
    assert_int_equal(res.bad_seq, last - 1);
    write_lines(t.path, ls.l, ls.n); /* restored */
    verify(&t.cfg, &res);
    assert_true(res.ok);

    /* a checkpoint line with a signature of another key */
    char ck[PATH_MAX + 16], priv2[PATH_MAX], pub2[PATH_MAX], err[256];
    snprintf(ck, sizeof(ck), "%s.checkpoints", t.path);
    snprintf(priv2, sizeof(priv2), "%s/other.pem", tmpdir);
    snprintf(pub2, sizeof(pub2), "%s/other.pub", tmpdir);
    assert_int_equal(audit_keygen(priv2, pub2, err, sizeof(err)), 0);
    assert_int_equal(audit_keygen(priv2, pub2, err, sizeof(err)) < 0, 1); /* no overwrite */
    tcfg_t t2 = t;
    t2.cfg.audit_verify_key_path = pub2;
    verify(&t2.cfg, &res);
    assert_false(res.ok);
    assert_string_equal(res.bad_kind, "checkpoint");
    assert_int_equal(res.bad_line, 1);
    assert_true(res.bad_seq > 0); /* the line's seq, read before the line was freed (review37) */

    /* the whole chain rewritten with the chain key (SECRET_KEY leaked) but without the signing
     * key: the record at a checkpointed seq no longer matches the signed hash */
    unsigned char key[AUDIT_KEY_LEN];
    audit_chain_key(SECRET, key);
    char prev[AUDIT_HASH_HEX] = AUDIT_GENESIS_HASH;
    for (size_t i = 0; i < ls.n; i++) {
        json_t *r = audit_record_parse(ls.l[i], strlen(ls.l[i]));
        if (i == 2)
            json_object_set_new(r, "user", json_string("mallory"));
        json_object_set_new(r, "prev_hash", json_string(prev));
        audit_record_seal(r, key, prev);
        size_t len;
        char *line = audit_record_line(r, &len);
        line[len - 1] = '\0';
        free(ls.l[i]);
        ls.l[i] = line;
        json_decref(r);
    }
    write_lines(t.path, ls.l, ls.n);
    verify(&t.cfg, &res);
    assert_false(res.ok);
    assert_string_equal(res.bad_kind, "forged");
    assert_int_equal(res.bad_seq, 5); /* the first checkpointed seq at or after the change */
    free_lines(&ls);
}

/* review25 (fix27): every line of the checkpoints file parses as a checkpoint and the file
 * ends with '\n'; returns the number of lines. */
static size_t assert_ckpt_lines_parse(const char *ck)
{
    char *data;
    size_t len, n = 0;
    assert_int_equal(util_read_file(ck, 1 << 20, &data, &len), 0);
    assert_true(len > 0);
    assert_int_equal(data[len - 1], '\n');
    for (char *p = data, *nl; p < data + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(data + len - p));
        assert_non_null(nl);
        json_t *ck_line = json_loadb(p, (size_t)(nl - p), 0, NULL);
        if (!ck_line || !json_is_integer(json_object_get(ck_line, "seq")))
            fail_msg("checkpoint line %zu does not parse: %.*s", n + 1, (int)(nl - p), p);
        json_decref(ck_line);
        n++;
    }
    free(data);
    return n;
}

/* review25 (fix27): a crash while appending a checkpoint line leaves a torn last line; the
 * next checkpoint must not be appended onto it (verify would report "checkpoint line N is
 * malformed" for good): it is trimmed first. */
static void test_torn_checkpoint_line_trimmed(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, true, 1000);
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 3, "erin");
    assert_int_equal(audit_log_checkpoint(a), 0);
    append_n(a, 2, "erin");
    audit_log_close(a); /* final checkpoint */
    char ck[PATH_MAX + 16], *data;
    size_t len;
    snprintf(ck, sizeof(ck), "%s.checkpoints", t.path);
    assert_int_equal(assert_ckpt_lines_parse(ck), 2);
    /* half of the last line appended again, as a crash between write and fdatasync leaves it */
    assert_int_equal(util_read_file(ck, 1 << 20, &data, &len), 0);
    char *last = data + len - 1;
    while (last > data && last[-1] != '\n')
        last--;
    size_t half = (size_t)(data + len - last) / 2;
    int fd = open(ck, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, last, half), (ssize_t)half);
    close(fd);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok); /* a torn last checkpoint line alone is ignored */

    a = open_log(&t.cfg);
    append_n(a, 4, "erin");
    assert_int_equal(audit_log_checkpoint(a), 0); /* trims the torn line, then appends */
    struct stat st;
    assert_int_equal(stat(ck, &st), 0);
    assert_true(st.st_size > (off_t)len); /* the two old lines kept, one new */
    append_n(a, 1, "erin");
    audit_log_close(a);
    verify(&t.cfg, &res);
    if (!res.ok)
        fail_msg("verify after a torn checkpoint line: %s", res.message);
    assert_true(res.checkpoints_signed);
    assert_int_equal(res.checkpoints, 4);
    assert_int_equal(assert_ckpt_lines_parse(ck), 4);
    free(data);
}

/* review25 (fix27): a short checkpoint write (here RLIMIT_FSIZE, as a full disk would) is
 * truncated away, so the next checkpoint starts on a line of its own. */
static void test_checkpoint_short_write_truncated(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, true, 1000);
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 5, "frank");
    assert_int_equal(audit_log_checkpoint(a), 0);
    char ck[PATH_MAX + 16];
    snprintf(ck, sizeof(ck), "%s.checkpoints", t.path);
    struct stat before, log_st;
    assert_int_equal(stat(ck, &before), 0);
    assert_int_equal(stat(t.path, &log_st), 0);
    assert_true(log_st.st_size > before.st_size + 60); /* the log can not grow under the limit */
    /* room for 60 more bytes of the checkpoints file: the next line is cut short (EFBIG) */
    struct rlimit old, lim;
    signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old);
    lim = (struct rlimit){(rlim_t)before.st_size + 60, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = audit_log_checkpoint(a);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, -EFBIG);
    struct stat after;
    assert_int_equal(stat(ck, &after), 0);
    assert_int_equal(after.st_size, before.st_size); /* the partial line truncated away */
    for (int i = 0; i < 50 && !audit_log_healthy(a); i++)
        usleep(100 * 1000);
    assert_true(audit_log_healthy(a));
    append_n(a, 1, "frank");
    assert_int_equal(audit_log_checkpoint(a), 0);
    audit_log_close(a);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    if (!res.ok)
        fail_msg("verify after a short checkpoint write: %s", res.message);
    assert_int_equal(assert_ckpt_lines_parse(ck), res.checkpoints);
}

/* ---- fail closed ---- */

static void test_disk_full_fails_closed(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, false, 1000);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", t.path);
    *strrchr(dir, '/') = '\0';
    util_mkdir_p(dir, 0750);
    bool mounted = mount("tmpfs", dir, "tmpfs", 0, "size=64k") == 0;
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    if (!mounted) {
        /* no privilege to mount: limit the file size of this process instead (EFBIG) */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {48 * 1024, old.rlim_max};
        setrlimit(RLIMIT_FSIZE, &lim);
        print_message("no tmpfs (%s): using RLIMIT_FSIZE\n", strerror(errno));
    }
    audit_log_t *a = open_log(&t.cfg);
    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    if (mounted) {
        /* leave about 8 KiB free */
        int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        char block[4096] = {0};
        for (int i = 0; i < 14; i++)
            assert_int_equal(write(fd, block, sizeof(block)), 4096);
        close(fd);
    }
    int rc = 0, n = 0;
    json_t *detail =
        json_pack("{s:s}", "pad",
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    while (rc == 0 && n < 5000) {
        audit_event_t ev = {.type = "MODEL_INFERENCE", .user = "u", .outcome = "success", .detail = detail};
        rc = audit_log_append_sync(a, &ev);
        n++;
    }
    assert_true(rc < 0);
    assert_true(rc == -ENOSPC || rc == -EFBIG);
    assert_false(audit_log_healthy(a));
    /* make room: the writer's retry (AUDIT_RECOVERED) turns it healthy without new traffic */
    if (mounted)
        unlink(filler);
    else
        setrlimit(RLIMIT_FSIZE, &old);
    if (!mounted) {
        /* RLIMIT: the file is still at its limit; raising the limit is the "room" */
    }
    for (int i = 0; i < 50 && !audit_log_healthy(a); i++)
        usleep(100 * 1000);
    assert_true(audit_log_healthy(a));
    audit_event_t ev = {.type = "MODEL_INFERENCE", .user = "u", .outcome = "success"};
    assert_int_equal(audit_log_append_sync(a, &ev), 0);
    audit_log_close(a);
    audit_verify_result_t res;
    verify(&t.cfg, &res);
    assert_true(res.ok);                            /* the failed batch left no partial record */
    assert_int_equal(res.records, (uint64_t)n + 1); /* n-1 written, AUDIT_RECOVERED, the last one */
    json_decref(detail);
    if (mounted)
        umount2(dir, MNT_DETACH);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The log's directory disappears while a checkpoint is due: the writer fails closed and
 * retries once a second (AUDIT_RECOVERED) instead of retrying the checkpoint in a tight
 * loop (seen as a server burning a core on flock/open after its test directory was
 * removed). It recovers once the directory is back. */
static void test_checkpoint_failure_backs_off(void **state)
{
    (void)state;
    tcfg_t t;
    make_cfg(&t, true, 1000);
    t.cfg.audit_checkpoint_interval_s = 1;
    audit_log_t *a = open_log(&t.cfg);
    append_n(a, 1, "u");
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", t.path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(util_rmtree(dir), 0);
    for (int i = 0; i < 50 && audit_log_healthy(a); i++) /* the checkpoint falls due after 1 s */
        usleep(100 * 1000);
    assert_false(audit_log_healthy(a));
    double before = cpu_seconds();
    usleep(1500 * 1000);
    double used = cpu_seconds() - before;
    /* a spinning writer uses the whole 1.5 s; retrying once a second uses milliseconds */
    if (used > 0.5)
        fail_msg("the audit writer used %.2f s of CPU in 1.5 s while the log was unwritable", used);
    assert_int_equal(util_mkdir_p(dir, 0750), 0);
    for (int i = 0; i < 50 && !audit_log_healthy(a); i++)
        usleep(100 * 1000);
    assert_true(audit_log_healthy(a));
    audit_log_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_group_commit),   cmocka_unit_test(test_inference_submit_and_lease),
        cmocka_unit_test(test_open_refusals),          cmocka_unit_test(test_two_writers_one_file),
        cmocka_unit_test(test_torn_tail_trimmed),      cmocka_unit_test(test_rotation_continues_chain),
        cmocka_unit_test(test_tamper_kinds),           cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_legacy_prune_head),
        cmocka_unit_test(test_head_deleted),           cmocka_unit_test(test_checkpoints_file_removed),
        cmocka_unit_test(test_disk_full_fails_closed), cmocka_unit_test(test_checkpoint_failure_backs_off),
        cmocka_unit_test(test_torn_checkpoint_line_trimmed),
        cmocka_unit_test(test_checkpoint_short_write_truncated),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
