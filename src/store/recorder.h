/* SPDX-License-Identifier: Apache-2.0 */
/* Group-commit writer for prediction records. Handlers submit a record and a
 * completion callback; a single writer thread drains the queue, writes each batch in
 * one durable transaction, then calls every callback of the batch (on the writer
 * thread) with 0 or a negative errno. The HTTP layer answers only from the callback,
 * so nothing acknowledged is lost. */
#ifndef AIMEDRES_STORE_RECORDER_H
#define AIMEDRES_STORE_RECORDER_H

#include "store/store.h"

typedef struct recorder recorder_t;
typedef void (*recorder_done_fn)(void *arg, int status);

/* Starts the writer thread. The store is borrowed and must outlive the recorder.
 * max_batch bounds records per transaction (0 = 512). */
int recorder_new(store_t *store, size_t max_batch, recorder_t **ret);
/* Queues a copy of *p (all strings copied). done(arg, status) is called exactly once,
 * from the writer thread, after the record is durable (status 0) or failed (<0).
 * Returns -ESHUTDOWN after recorder_free began (done is then not called). */
int recorder_submit(recorder_t *r, const store_prediction_t *p, recorder_done_fn done, void *arg);
/* Records written since start and batches committed (for metrics/benchmarks). */
void recorder_stats(recorder_t *r, uint64_t *ret_records, uint64_t *ret_batches);
/* When the last batch failed, the time (ms since the epoch) batches started failing; 0 when
 * the last one was written. For /ready, which probes the store (store_ping_write) while it is
 * set and clears it once a write commits again (with no traffic no batch would). */
int64_t recorder_failing_since(recorder_t *r);
void recorder_clear_failing(recorder_t *r);
/* Writes everything still queued, calls their callbacks, stops the thread, frees. */
void recorder_free(recorder_t *r);

#endif
