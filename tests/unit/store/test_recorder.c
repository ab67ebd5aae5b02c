/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the group-commit recorder against real SQLite stores: every callback
 * exactly once, group commit observable in the stats, max_batch honoured, the queue
 * flushed by recorder_free, and store failures reported to every callback. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/util.h"
#include "store/recorder.h"
#include "store/store.h"
#include "testutil.h"

static char tmpdir[PATH_MAX / 2]; /* leaves room for file names below it */

static int group_setup(void **state)
{
    (void)state;
    return test_tmpdir(tmpdir, sizeof(tmpdir), "recorder");
}

static int group_teardown(void **state)
{
    (void)state;
    util_rmtree(tmpdir);
    return 0;
}

static store_t *open_named(const char *name, char *ret_path, size_t n)
{
    snprintf(ret_path, n, "%s/%s", tmpdir, name);
    char err[512] = "";
    store_t *s = NULL;
    int r = store_open(ret_path, &s, err, sizeof(err));
    if (r < 0)
        print_error("store_open: %s\n", err);
    assert_int_equal(r, 0);
    return s;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ---- completion bookkeeping --------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    atomic_int status;
} slot_t;

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static long done_total;

static void reset_done(void)
{
    pthread_mutex_lock(&done_mu);
    done_total = 0;
    pthread_mutex_unlock(&done_mu);
}

static void on_done(void *arg, int status)
{
    slot_t *sl = arg;
    atomic_store(&sl->status, status);
    atomic_fetch_add(&sl->calls, 1);
    pthread_mutex_lock(&done_mu);
    done_total++;
    pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&done_mu);
}

/* Waits until `want` callbacks ran (fails the test after 60 s rather than hanging). */
static void wait_done(long want)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&done_mu);
    int e = 0;
    while (done_total < want && e == 0)
        e = pthread_cond_timedwait(&done_cv, &done_mu, &deadline);
    long got = done_total;
    pthread_mutex_unlock(&done_mu);
    assert_int_equal(got, want);
}

/* A callback that holds the writer thread until the test opens the gate: while it is
 * closed, submissions can only queue, which makes batching deterministic. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, open;
    slot_t slot;
} gate_t;

static void gate_init(gate_t *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gate_done(void *arg, int status)
{
    gate_t *g = arg;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    on_done(&g->slot, status);
}

static void gate_wait_entered(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static store_prediction_t record(const char *id)
{
    return (store_prediction_t){.id = id,
                                .created_ms = util_now_ms(),
                                .model = "parkinsons_predictor",
                                .version = "1.0.0",
                                .arm = "stable",
                                .request_id = "req",
                                .outputs_json = "[{\"label\":\"healthy\"}]",
                                .n_rows = 1,
                                .latency_ms = 0.3,
                                .status = 200};
}

static int64_t db_count(store_t *s)
{
    int64_t n = -1;
    assert_int_equal(store_prediction_count(s, &n), 0);
    return n;
}

/* ---- tests ----------------------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 500

typedef struct {
    recorder_t *r;
    slot_t *slots;
    int t;
    int submit_errors;
} submitter_t;

static void *submitter(void *arg)
{
    submitter_t *a = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char id[48];
        snprintf(id, sizeof(id), "t%d-%04d", a->t, i); /* stack buffer: the recorder must copy */
        store_prediction_t p = record(id);
        if (recorder_submit(a->r, &p, on_done, &a->slots[a->t * PER_THREAD + i]) != 0)
            a->submit_errors++;
    }
    return NULL;
}

static void test_many_threads_every_callback_once(void **state)
{
    (void)state;
    char path[PATH_MAX];
    store_t *s = open_named("threads.db", path, sizeof(path));
    recorder_t *r = NULL;
    assert_int_equal(recorder_new(s, 0, &r), 0);
    slot_t *slots = calloc(THREADS * PER_THREAD, sizeof(*slots));
    assert_non_null(slots);
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        atomic_store(&slots[i].status, 1);
    reset_done();

    pthread_t th[THREADS];
    submitter_t args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (submitter_t){.r = r, .slots = slots, .t = t};
        assert_int_equal(pthread_create(&th[t], NULL, submitter, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].submit_errors, 0);
    }
    wait_done(THREADS * PER_THREAD);

    uint64_t records = 0, batches = 0;
    recorder_stats(r, &records, &batches);
    recorder_free(r);
    for (int i = 0; i < THREADS * PER_THREAD; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
        assert_int_equal(atomic_load(&slots[i].status), 0);
    }
    assert_int_equal(records, THREADS * PER_THREAD);
    assert_true(batches >= 1);
    assert_true(batches < records); /* group commit happened */
    assert_int_equal(db_count(s), THREADS * PER_THREAD);

    json_t *o = NULL;
    assert_int_equal(store_prediction_get(s, "t3-0499", &o), 0);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "parkinsons_predictor");
    json_decref(o);
    free(slots);
    store_close(s);
}

/* With the writer held in a callback, 100 submissions queue up; once released they must
 * go in ceil(100 / max_batch) transactions. */
static void check_batching(size_t max_batch, uint64_t want_batches)
{
    char path[PATH_MAX], name[64];
    snprintf(name, sizeof(name), "batch-%zu.db", max_batch);
    store_t *s = open_named(name, path, sizeof(path));
    recorder_t *r = NULL;
    assert_int_equal(recorder_new(s, max_batch, &r), 0);
    reset_done();

    gate_t g;
    gate_init(&g);
    store_prediction_t first = record("first");
    assert_int_equal(recorder_submit(r, &first, gate_done, &g), 0);
    gate_wait_entered(&g);

    slot_t slots[100];
    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < 100; i++) {
        char id[32];
        snprintf(id, sizeof(id), "q-%03d", i);
        store_prediction_t p = record(id);
        assert_int_equal(recorder_submit(r, &p, on_done, &slots[i]), 0);
    }
    gate_open(&g);
    wait_done(101);

    uint64_t records = 0, batches = 0;
    recorder_stats(r, &records, &batches);
    assert_int_equal(records, 101);
    assert_int_equal(batches, 1 + want_batches);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
        assert_int_equal(atomic_load(&slots[i].status), 0);
    }
    assert_int_equal(atomic_load(&g.slot.status), 0);
    recorder_free(r);
    assert_int_equal(db_count(s), 101);
    store_close(s);
}

static void test_group_commit_and_max_batch(void **state)
{
    (void)state;
    check_batching(0, 1);   /* default 512: one transaction for the 100 */
    check_batching(10, 10); /* bounded: 10 transactions of 10 */
    check_batching(7, 15);  /* 14 x 7 + 2 */
}

static void test_record_is_copied(void **state)
{
    (void)state;
    char path[PATH_MAX];
    store_t *s = open_named("copy.db", path, sizeof(path));
    recorder_t *r = NULL;
    assert_int_equal(recorder_new(s, 0, &r), 0);
    reset_done();

    gate_t g;
    gate_init(&g);
    store_prediction_t first = record("gate");
    assert_int_equal(recorder_submit(r, &first, gate_done, &g), 0);
    gate_wait_entered(&g); /* the next record stays queued while we scribble on our buffers */

    char id[] = "copied-1", model[] = "als_classifier", out[] = "[{\"label\":\"ALS\"}]", in[] = "[{\"x\":1}]",
         pseud[] = "ps_123";
    store_prediction_t p = record(id);
    p.model = model;
    p.outputs_json = out;
    p.inputs_json = in;
    p.patient_pseudonym = pseud;
    slot_t sl = {0};
    assert_int_equal(recorder_submit(r, &p, on_done, &sl), 0);
    memset(id, 'X', sizeof(id) - 1);
    memset(model, 'X', sizeof(model) - 1);
    memset(out, 'X', sizeof(out) - 1);
    memset(in, 'X', sizeof(in) - 1);
    memset(pseud, 'X', sizeof(pseud) - 1);
    gate_open(&g);
    wait_done(2);
    assert_int_equal(atomic_load(&sl.status), 0);

    json_t *o = NULL;
    assert_int_equal(store_prediction_get(s, "copied-1", &o), 0);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "als_classifier");
    assert_string_equal(json_string_value(json_object_get(o, "patient_pseudonym")), "ps_123");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(o, "outputs"), 0), "label")), "ALS");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(json_object_get(o, "inputs"), 0), "x")), 1);
    json_decref(o);

    store_prediction_t bad = record("bad");
    bad.outputs_json = NULL;
    slot_t never = {0};
    assert_int_equal(recorder_submit(r, &bad, on_done, &never), -EINVAL);
    recorder_free(r);
    assert_int_equal(atomic_load(&never.calls), 0);
    store_close(s);
}

typedef struct {
    recorder_t *r;
} freer_t;

static void *freer(void *arg)
{
    recorder_free(((freer_t *)arg)->r);
    return NULL;
}

#define MAX_EXTRA 70000

static void test_free_flushes_queue(void **state)
{
    (void)state;
    char path[PATH_MAX];
    store_t *s = open_named("flush.db", path, sizeof(path));
    recorder_t *r = NULL;
    assert_int_equal(recorder_new(s, 64, &r), 0);
    reset_done();

    gate_t g;
    gate_init(&g);
    store_prediction_t first = record("gate");
    assert_int_equal(recorder_submit(r, &first, gate_done, &g), 0);
    gate_wait_entered(&g);

    slot_t *slots = calloc(MAX_EXTRA, sizeof(*slots));
    assert_non_null(slots);
    long accepted = 0;
    for (; accepted < 300; accepted++) {
        char id[32];
        snprintf(id, sizeof(id), "f-%06ld", accepted);
        store_prediction_t p = record(id);
        assert_int_equal(recorder_submit(r, &p, on_done, &slots[accepted]), 0);
    }

    /* recorder_free starts while 300 records are queued and the writer is held. Keep
     * submitting until it refuses: from then on the recorder is shutting down. */
    pthread_t th;
    freer_t fa = {.r = r};
    assert_int_equal(pthread_create(&th, NULL, freer, &fa), 0);
    long rejected_slot = -1;
    for (;;) {
        assert_true(accepted < MAX_EXTRA);
        char id[32];
        snprintf(id, sizeof(id), "f-%06ld", accepted);
        store_prediction_t p = record(id);
        int e = recorder_submit(r, &p, on_done, &slots[accepted]);
        if (e == 0) {
            accepted++;
        } else if (e == -ESHUTDOWN) {
            rejected_slot = accepted;
            break;
        } else {
            assert_int_equal(e, -EAGAIN); /* queue cap; keep trying */
        }
    }
    gate_open(&g);
    pthread_join(th, NULL); /* returns only once everything queued was written */

    wait_done(accepted + 1); /* already true: free drained before returning */
    for (long i = 0; i < accepted; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
        assert_int_equal(atomic_load(&slots[i].status), 0);
    }
    assert_int_equal(atomic_load(&slots[rejected_slot].calls), 0); /* refused: never called */
    assert_int_equal(db_count(s), accepted + 1);
    free(slots);
    store_close(s);
}

static void test_failing_store_fails_every_callback(void **state)
{
    (void)state;
    char path[PATH_MAX];
    store_t *s = open_named("failing.db", path, sizeof(path));
    /* Another connection makes every insert fail, as a full disk or a broken file would. */
    raw_exec(path, "CREATE TRIGGER fail_inserts BEFORE INSERT ON predictions "
                   "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
    recorder_t *r = NULL;
    assert_int_equal(recorder_new(s, 16, &r), 0);
    reset_done();

    slot_t slots[100];
    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < 100; i++) {
        char id[32];
        snprintf(id, sizeof(id), "x-%03d", i);
        store_prediction_t p = record(id);
        assert_int_equal(recorder_submit(r, &p, on_done, &slots[i]), 0);
    }
    wait_done(100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
        assert_true(atomic_load(&slots[i].status) < 0);
    }
    uint64_t records = 1, batches = 1;
    recorder_stats(r, &records, &batches);
    assert_int_equal(records, 0);
    assert_int_equal(batches, 0);
    assert_int_equal(db_count(s), 0);

    /* the failure clears: the same recorder writes again */
    raw_exec(path, "DROP TRIGGER fail_inserts");
    reset_done();
    slot_t ok[10];
    memset(ok, 0, sizeof(ok));
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof(id), "y-%03d", i);
        store_prediction_t p = record(id);
        assert_int_equal(recorder_submit(r, &p, on_done, &ok[i]), 0);
    }
    wait_done(10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(atomic_load(&ok[i].status), 0);
    recorder_free(r);
    assert_int_equal(db_count(s), 10);
    store_close(s);
}

/* A backend whose every other transaction fails with -EIO: each callback must get the
 * status of its own batch, unchanged. */
static atomic_int fake_calls;

static int fake_put(store_t *s, const store_prediction_t *p, size_t n)
{
    (void)s;
    (void)p;
    (void)n;
    return atomic_fetch_add(&fake_calls, 1) % 2 ? -EIO : 0;
}

static void test_status_of_each_batch_propagates(void **state)
{
    (void)state;
    static const store_ops_t fake_ops = {.name = "fake", .predictions_put = fake_put};
    store_t fake = {.ops = &fake_ops};
    atomic_store(&fake_calls, 0);
    recorder_t *r = NULL;
    assert_int_equal(recorder_new(&fake, 5, &r), 0);
    reset_done();

    gate_t g;
    gate_init(&g);
    store_prediction_t first = record("gate");
    assert_int_equal(recorder_submit(r, &first, gate_done, &g), 0); /* batch 0: ok */
    gate_wait_entered(&g);
    slot_t slots[20];
    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < 20; i++) {
        store_prediction_t p = record("same-id-is-fine-here");
        assert_int_equal(recorder_submit(r, &p, on_done, &slots[i]), 0);
    }
    gate_open(&g);
    wait_done(21);
    /* batches 1..4 of 5 records: -EIO, 0, -EIO, 0 */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
        assert_int_equal(atomic_load(&slots[i].status), (i / 5) % 2 == 0 ? -EIO : 0);
    }
    uint64_t records = 0, batches = 0;
    recorder_stats(r, &records, &batches);
    assert_int_equal(records, 11);
    assert_int_equal(batches, 3);
    recorder_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_every_callback_once),
        cmocka_unit_test(test_group_commit_and_max_batch),
        cmocka_unit_test(test_record_is_copied),
        cmocka_unit_test(test_free_flushes_queue),
        cmocka_unit_test(test_failing_store_fails_every_callback),
        cmocka_unit_test(test_status_of_each_batch_propagates),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
