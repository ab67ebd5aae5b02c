/* SPDX-License-Identifier: Apache-2.0 */
/* Group-commit writer for prediction records: handlers queue a copy of each record, one
 * writer thread writes whatever has accumulated in a single durable transaction and then
 * completes every record of that batch through its callback. One fsync thus
 * acknowledges many requests, and nothing is acknowledged before it is on disk. */

/* DESIGN
 *
 * Queue: a FIFO singly linked list of items under `mu`; each item is one allocation
 * holding the record and copies of all its strings, so the submitter's buffers may be
 * reused as soon as recorder_submit returns. `queued` is capped (MAX_QUEUED): past it
 * submit fails with -EAGAIN and the caller answers 503 instead of growing without bound.
 *
 * Writer: waits on `cv` until the queue is non-empty or `stopping`; takes up to
 * max_batch items, drops `mu`, calls store_predictions_put once (one transaction), then
 * calls each callback with the store's result and frees the item. While it writes, new
 * submissions accumulate: that is the group commit. A failed batch completes every one
 * of its records with the error (<0); no record is retried behind the caller's back and
 * none is dropped.
 *
 * Shutdown: recorder_free sets `stopping` (after which submit returns -ESHUTDOWN and the
 * callback is not called), the writer drains the queue completely, exits, and is joined.
 * Callbacks run on the writer thread without `mu` held: they may submit, but must not
 * call recorder_free. */
#include "store/recorder.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define DEFAULT_BATCH 512
#define MAX_BATCH 65536
#define MAX_QUEUED 65536                    /* records waiting for the writer */
#define MAX_RECORD_BYTES (16 * 1024 * 1024) /* all strings of one record */

typedef struct item {
    struct item *next;
    store_prediction_t p; /* string pointers point into `strings` */
    recorder_done_fn done;
    void *arg;
    char strings[];
} item_t;

struct recorder {
    store_t *store; /* borrowed */
    size_t max_batch;
    pthread_t thread;

    pthread_mutex_t mu; /* guards everything down to `stopping` */
    pthread_cond_t cv;
    item_t *head, *tail;
    size_t queued;
    bool stopping;

    /* writer thread only */
    item_t **batch_items;
    store_prediction_t *batch;
    /* an outage of the store is logged when it starts and when it ends, not per batch (review53
     * #7: on a full disk, thousands of lines a second, on the disk that may hold the log) */
    uint64_t failed_batches, failed_records;
    int64_t failed_from_ms; /* 0: the last batch was written */

    _Atomic uint64_t records;
    _Atomic uint64_t batches;
    _Atomic int64_t failing_since_ms; /* 0: the last batch was written */
};

static void *writer_main(void *arg)
{
    recorder_t *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->head && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->head)
            break; /* stopping and drained */
        size_t n = 0;
        while (r->head && n < r->max_batch) {
            item_t *it = r->head;
            r->head = it->next;
            r->batch_items[n] = it;
            r->batch[n] = it->p;
            n++;
        }
        if (!r->head)
            r->tail = NULL;
        r->queued -= n;
        pthread_mutex_unlock(&r->mu);

        int status = store_predictions_put(r->store, r->batch, n);
        if (status > 0)
            status = -EIO;
        if (status == 0) {
            atomic_fetch_add(&r->records, n);
            atomic_fetch_add(&r->batches, 1);
            atomic_store(&r->failing_since_ms, 0);
            if (r->failed_from_ms) {
                log_msg(LOG_WARNING, "recorder: batches are written again", "{s:I,s:I,s:I}", "failed_batches",
                        (json_int_t)r->failed_batches, "failed_records", (json_int_t)r->failed_records,
                        "failing_ms", (json_int_t)(util_now_ms() - r->failed_from_ms));
                r->failed_from_ms = 0;
                r->failed_batches = r->failed_records = 0;
            }
        } else {
            int64_t none = 0, now = util_now_ms();
            atomic_compare_exchange_strong(&r->failing_since_ms, &none, now);
            if (!r->failed_from_ms) {
                r->failed_from_ms = now;
                log_msg(LOG_ERROR,
                        "recorder: batch not written; failing its requests (said once, until a batch is written "
                        "again)",
                        "{s:I, s:i}", "records", (json_int_t)n, "errno", -status);
            }
            r->failed_batches++;
            r->failed_records += n;
        }
        for (size_t i = 0; i < n; i++) {
            item_t *it = r->batch_items[i];
            if (it->done)
                it->done(it->arg, status);
            free(it);
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int recorder_new(store_t *store, size_t max_batch, recorder_t **ret)
{
    if (!store || max_batch > MAX_BATCH)
        return -EINVAL;
    recorder_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->store = store;
    r->max_batch = max_batch ? max_batch : DEFAULT_BATCH;
    r->batch_items = calloc(r->max_batch, sizeof(*r->batch_items));
    r->batch = calloc(r->max_batch, sizeof(*r->batch));
    if (!r->batch_items || !r->batch) {
        free(r->batch_items);
        free(r->batch);
        free(r);
        return -ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);

    /* The writer must not take process signals (SIGTERM, SIGHUP): block them all in it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&r->thread, NULL, writer_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r->batch_items);
        free(r->batch);
        free(r);
        return -e;
    }
    pthread_setname_np(r->thread, "aimedres-rec");
    *ret = r;
    return 0;
}

static size_t len0(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *copy_str(char **cursor, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = *cursor;
    memcpy(d, s, n);
    *cursor += n;
    return d;
}

int recorder_submit(recorder_t *r, const store_prediction_t *p, recorder_done_fn done, void *arg)
{
    if (!p || !p->id || !p->model || !p->version || !p->arm || !p->outputs_json)
        return -EINVAL;
    size_t bytes = len0(p->id) + len0(p->model) + len0(p->version) + len0(p->arm) + len0(p->request_id) +
                   len0(p->patient_pseudonym) + len0(p->outputs_json) + len0(p->inputs_json);
    if (bytes > MAX_RECORD_BYTES)
        return -E2BIG;
    item_t *it = malloc(sizeof(*it) + bytes);
    if (!it)
        return -ENOMEM;
    char *cur = it->strings;
    it->next = NULL;
    it->done = done;
    it->arg = arg;
    it->p = *p;
    it->p.id = copy_str(&cur, p->id);
    it->p.model = copy_str(&cur, p->model);
    it->p.version = copy_str(&cur, p->version);
    it->p.arm = copy_str(&cur, p->arm);
    it->p.request_id = copy_str(&cur, p->request_id);
    it->p.patient_pseudonym = copy_str(&cur, p->patient_pseudonym);
    it->p.outputs_json = copy_str(&cur, p->outputs_json);
    it->p.inputs_json = copy_str(&cur, p->inputs_json);

    int e = 0;
    pthread_mutex_lock(&r->mu);
    if (r->stopping)
        e = -ESHUTDOWN;
    else if (r->queued >= MAX_QUEUED)
        e = -EAGAIN;
    if (e == 0) {
        if (r->tail)
            r->tail->next = it;
        else
            r->head = it;
        r->tail = it;
        r->queued++;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    if (e < 0)
        free(it);
    return e;
}

void recorder_stats(recorder_t *r, uint64_t *ret_records, uint64_t *ret_batches)
{
    if (ret_records)
        *ret_records = atomic_load(&r->records);
    if (ret_batches)
        *ret_batches = atomic_load(&r->batches);
}

void recorder_free(recorder_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->batch_items);
    free(r->batch);
    free(r);
}

int64_t recorder_failing_since(recorder_t *r)
{
    return r ? atomic_load(&r->failing_since_ms) : 0;
}

void recorder_clear_failing(recorder_t *r)
{
    if (r)
        atomic_store(&r->failing_since_ms, 0);
}
