/* SPDX-License-Identifier: Apache-2.0 */
/* The rollout controller: safe model rollouts inside the server (direct, blue/green,
 * shadow + staged canary), with computed gates, automatic promotion and rollback, and
 * state that survives restarts. The running server owns one controller; the HTTP API
 * (api/deployments.c) is its only writer, the prediction hot path (api/predict.c) asks
 * it which arm serves each request. See rollout.c for the state machine. */
#ifndef AIMEDRES_ROLLOUT_ROLLOUT_H
#define AIMEDRES_ROLLOUT_ROLLOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"
#include "model/registry.h"
#include "model/runtime.h"
#include "store/store.h"

typedef struct rollout rollout_t;

/* What the hot path got from rollout_route. Zero-initialise; always pass to
 * rollout_route_done. */
typedef struct rollout_route {
    model_handle_t *handle; /* new reference to the candidate when it serves this request, else NULL
                               (the caller serves the stable version as usual) */
    const char *arm;        /* "stable", "canary" or "green" (static) */
    void *dep;              /* internal: the deployment (lives as long as the controller) */
    unsigned epoch;         /* internal: stats epoch the request counts towards */
    bool shadow;            /* a shadow candidate wants a copy (rollout_shadow_submit) */
    bool fault_fail;        /* test fault injection (ROLLOUT_FAULT_INJECT) for this request */
    int fault_delay_ms;
} rollout_route_t;

/* store and registry are borrowed and must outlive the controller. cfg (borrowed for the
 * call; NULL = built-in defaults, data dir ".") gives DATA_DIR, which holds
 * baseline/<model>_validation.csv, the deployment defaults (ROLLOUT_<FIELD>) and
 * ROLLOUT_FAULT_INJECT. -EINVAL with err naming the setting when one does not parse.
 * Does not start anything (see rollout_start). */
int rollout_new(store_t *store, model_registry_t *registry, const config_t *cfg, rollout_t **ret, char *err,
                size_t errlen);
/* DEPLOYMENT_<EVENT> audit records for every state change (borrowed; NULL = none). Call
 * before rollout_start. */
struct audit_log;
void rollout_set_audit(rollout_t *r, struct audit_log *audit);
/* Resumes the active deployments found in the store (stages and timers continue where
 * they were), reloads the previous stable version of each model whose last promotion is
 * still inside its rollback window (so rollback stays instant across a restart), and
 * starts the controller and shadow threads. */
int rollout_start(rollout_t *r);
/* Stops the threads (deployments stay stored as they are) and frees everything. NULL ok. */
void rollout_free(rollout_t *r);

/* ---- hot path (any worker thread) ---- */

/* Decides the arm for one request of model. patient_id (may be NULL) gives sticky routing;
 * without it the request id splits. With no deployment routing anywhere this is one
 * atomic load. */
void rollout_route(rollout_t *r, const char *model, const char *patient_id, const char *request_id,
                   rollout_route_t *rt);
/* Test fault injection: sleeps and/or returns -EIO when ROLLOUT_FAULT_INJECT asks for it
 * on this request's arm; 0 otherwise. */
int rollout_fault(const rollout_route_t *rt);
/* Counts the outcome of the request on its arm (model time in seconds). */
void rollout_observe(rollout_route_t *rt, double seconds, bool failed);
/* Queues rows (n_rows x nf, copied) with the stable outputs (n_rows x no, copied) for
 * scoring by the shadow candidate off the response path. Never blocks: when the queue
 * is full the job is dropped and counted. */
void rollout_shadow_submit(rollout_t *r, const rollout_route_t *rt, const float *rows, size_t n_rows,
                           size_t nf, const float *stable_out, size_t no, double stable_seconds);
/* Releases what rollout_route took. */
void rollout_route_done(rollout_route_t *rt);

/* What a model's deployments add to the registry's view of it (GET /api/v1/models/...): the
 * candidate that answers part of the live requests, with its share (as
 * deployment_traffic_percent shows it), the candidate a shadow phase scores, and the versions
 * whose handles the controller holds loaded (candidates, and a previous stable version within
 * its rollback window). */
#define ROLLOUT_VIEW_LOADED 4
typedef struct rollout_model_view {
    char split_version[129];  /* "" when no deployment splits the model's traffic */
    double split_traffic;     /* percent of live requests split_version answers */
    char shadow_version[129]; /* "" when no shadow phase runs */
    char loaded[ROLLOUT_VIEW_LOADED][129];
    size_t n_loaded;
} rollout_model_view_t;
void rollout_model_view(rollout_t *r, const char *model, rollout_model_view_t *ret);

/* ---- control (API handlers) ---- */

/* A change made through the API is acknowledged only once it is stored and its audit
 * records are durable. The three calls below answer at once (0, or <0 with err) when no
 * audit record of theirs is outstanding, else return ROLLOUT_PENDING (*ret set, or NULL when
 * the answer will be an error): ack(arg, rc, err) then runs once, on the audit writer's
 * thread, after those records are written or failed, with rc 0 (durable: answer *ret) or <0
 * (err says why; -EIO: not durable, 503). The call itself never waits for the audit writer. */
#define ROLLOUT_PENDING 1
typedef void (*rollout_ack_fn)(void *arg, int rc, const char *err);

/* Starts a deployment from a JSON body {"model","version","strategy":"canary"|"blue-green"|
 * "direct","config":{CanaryConfig fields}} (config fields may also sit at the top level).
 * Returns 0 with *ret the new record; -EINVAL (invalid; *ret_field names the field),
 * -ENOENT (unknown model or version), -EEXIST (the model has an active deployment). */
int rollout_create(rollout_t *r, const json_t *body, const char *actor, rollout_ack_fn ack, void *ack_arg,
                   json_t **ret, const char **ret_field, char *err, size_t errlen);
/* action: "promote" (body {"to": percent} optional), "pause", "resume", "rollback" (body
 * {"reason"} optional). 0 with *ret the record; -ENOENT unknown id; -EBUSY when the
 * deployment's state does not allow it (err says why); -EINVAL bad body (*ret_field). */
int rollout_action(rollout_t *r, const char *id, const char *action, const json_t *body, const char *actor,
                   rollout_ack_fn ack, void *ack_arg, json_t **ret, const char **ret_field, char *err,
                   size_t errlen);
/* Rolls model back: its active deployment if any, else to to_version or, without it, to the
 * previous_version recorded by the promotion in force (never to a version that did not serve
 * as stable: -EBUSY/409 when there is none). The target is checked before anything changes.
 * 0 with *ret {"model","from","to","deployment_id"}. */
int rollout_model_rollback(rollout_t *r, const char *model, const char *to_version, const char *actor,
                           rollout_ack_fn ack, void *ack_arg, json_t **ret, char *err, size_t errlen);
/* One record (memory first, then the store); -ENOENT. */
int rollout_get(rollout_t *r, const char *id, json_t **ret);
/* Records filtered by status/model (NULL = any), newest first. */
int rollout_list(rollout_t *r, const char *status, const char *model, json_t **ret);
/* {"active":[records],"count":n} for every active deployment. */
json_t *rollout_status(rollout_t *r);

/* Deployment id "deploy_YYYYmmddHHMMSS_xxxxxx" (UTC, 6 random hex) into buf[32]. */
void rollout_new_id(char buf[32]);
/* Stable 0..9999 bucket of key for deployment id (sticky routing). */
unsigned rollout_bucket(const char *deployment_id, const char *key);

#endif
