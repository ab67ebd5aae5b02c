/* SPDX-License-Identifier: Apache-2.0 */
/* Deployment records (rollouts) in the store: one row per deployment holding the full
 * record as JSON plus the columns the store filters on, and an append-only event
 * timeline. At most one active deployment per model is enforced by the database (a
 * partial unique index), so two writers can not both start one. */
#ifndef AIMEDRES_STORE_DEPLOYMENTS_H
#define AIMEDRES_STORE_DEPLOYMENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* Inserts or updates the deployment `id` (all strings borrowed). record is serialised
 * as is. Returns 0, -EEXIST when active and another active deployment exists for the
 * model, -ENOTSUP when the store is not SQLite, or another -errno. */
int store_deployment_put(store_t *st, const char *id, const char *model, const char *version,
                         const char *strategy, const char *status, bool active, const json_t *record,
                         int64_t created_ms);
/* Appends an event to the deployment's timeline (seq = previous + 1). */
int store_deployment_event_add(store_t *st, const char *id, int64_t at_ms, const json_t *event);
/* Records of deployments, newest first; status/model NULL = any; active_only limits to
 * active ones; limit caps the count (<= 0: 1000). *ret is a new array of records. */
int store_deployment_list(store_t *st, const char *status, const char *model, bool active_only, int limit,
                          json_t **ret);
/* The record of one deployment; -ENOENT if unknown. New reference. */
int store_deployment_get(store_t *st, const char *id, json_t **ret);
/* Its events in order: [{event...}]. New reference. */
int store_deployment_events(store_t *st, const char *id, json_t **ret);

/* Per arm of model's predictions since since_ms that have ground-truth feedback:
 * {"<arm>":{"<version>":{"labels":n,"correct":k}}}, comparing the recorded output's
 * "label" with the feedback label (a class name, or a class index into class_labels,
 * NULL = compare as text). New reference. */
int store_deployment_feedback_accuracy(store_t *st, const char *model, int64_t since_ms,
                                       const char *const *class_labels, size_t n_classes, json_t **ret);

/* The p95 (nearest rank) of the recorded request latency (latency_ms) of the newest
 * `limit` (<= 0: 5000) answered predictions of model/version on arm made in [since_ms,
 * until_ms), and how many there were (*n_ret). *p95_ret is NAN when there were none. */
int store_deployment_latency_p95(store_t *st, const char *model, const char *version, const char *arm,
                                 int64_t since_ms, int64_t until_ms, int limit, double *p95_ret, long *n_ret);

/* How many answered predictions (status 200; a failed prediction is not recorded) of
 * model/version on arm were recorded in [since_ms, until_ms), into *n_ret. A time range is a
 * key range of the UUIDv7 ids, so this reads only that part of the table. */
int store_deployment_count_answered(store_t *st, const char *model, const char *version, const char *arm,
                                    int64_t since_ms, int64_t until_ms, long *n_ret);

#endif
