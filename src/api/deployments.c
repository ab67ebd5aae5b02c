/* SPDX-License-Identifier: Apache-2.0 */
/* /api/v1/deployments: start, list and steer model rollouts. The handlers only parse and
 * answer; every state change is made by the rollout controller (rollout/rollout.c).
 * Unknown id 404, a second active deployment for a model 409, an invalid config 422
 * naming the field. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "audit/audit.h"
#include "common/util.h"
#include "rollout/rollout.h"

static json_t *body_json(http_ctx_t *ctx, bool required)
{
    const char *data;
    size_t len;
    http_ctx_body(ctx, &data, &len);
    if (len == 0) {
        if (required)
            http_reply_error(ctx, 400, "invalid_json", NULL, "request body is empty; expected a JSON object");
        return required ? NULL : json_object();
    }
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        http_reply_error(ctx, 400, "invalid_json", NULL, "invalid JSON at line %d, column %d", jerr.line,
                         jerr.column);
    return root;
}

static const char *actor_of(http_ctx_t *ctx)
{
    const char *u = http_ctx_user(ctx);
    return u ? u : "api";
}

static void reply_rc(http_ctx_t *ctx, int rc, const char *field, const char *err)
{
    switch (rc) {
    case -ENOENT: http_reply_error(ctx, 404, "not_found", NULL, "%s", err); break;
    case -EEXIST: http_reply_error(ctx, 409, "deployment_active", NULL, "%s", err); break;
    case -EBUSY: http_reply_error(ctx, 409, "invalid_state", NULL, "%s", err); break;
    case -EINVAL:
        http_reply_error(ctx, 422, "validation_failed",
                         json_pack("[{s:s,s:s,s:s}]", "field", field ? field : "body", "problem", "invalid",
                                   "message", err),
                         "%s", err);
        break;
    default:
        http_reply_error(ctx, 503, "service_unavailable", NULL, "%s", err[0] ? err : "rollouts unavailable");
    }
}

/* A record as the API shows it: without "_state", the controller's own fields that the
 * stored record keeps for a restart (phase numbers, internal timestamps). Records are fresh
 * copies (dep_json, or parsed from the store). */
static json_t *public_record(json_t *rec)
{
    json_object_del(rec, "_state");
    json_object_del(rec, "_late_audit");
    return rec;
}

static json_t *public_records(json_t *arr)
{
    size_t i;
    json_t *rec;
    json_array_foreach(arr, i, rec)
    {
        public_record(rec);
    }
    return arr;
}

/* A change answered once its audit records are durable (ROLLOUT_PENDING, rollout.h): the
 * request is deferred and answered on its worker thread; the worker serves others meanwhile. */
typedef struct pending_ack {
    http_ctx_t *ctx;
    json_t *rec; /* the answer's body, public already */
    int status, rc;
    char err[512];
} pending_ack_t;

static void ack_answer(http_ctx_t *ctx, void *arg)
{
    pending_ack_t *pa = arg;
    if (!ctx) { /* the server stopped first: the change stands, its answer is gone */
        json_decref(pa->rec);
    } else if (pa->rc < 0) {
        json_decref(pa->rec);
        reply_rc(ctx, pa->rc, NULL, pa->err);
    } else {
        http_reply_json(ctx, pa->status, pa->rec);
    }
    free(pa);
}

/* The audit writer's thread. */
static void ack_done(void *arg, int rc, const char *err)
{
    pending_ack_t *pa = arg;
    pa->rc = rc;
    snprintf(pa->err, sizeof(pa->err), "%s", err);
    http_ctx_post(pa->ctx, ack_answer, pa);
}

static pending_ack_t *pending_new(http_ctx_t *ctx, int status)
{
    pending_ack_t *pa = calloc(1, sizeof(*pa));
    if (!pa) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory; nothing was changed");
        return NULL;
    }
    pa->ctx = ctx;
    pa->status = status;
    return pa;
}

/* Answers a change call's result: now, or (ROLLOUT_PENDING) once ack_done has run. Takes pa. */
static void answer_change(http_ctx_t *ctx, pending_ack_t *pa, int rc, json_t *rec, const char *field,
                          const char *err)
{
    if (rc == ROLLOUT_PENDING) {
        pa->rec = rec; /* ack_answer runs on this thread, after this handler returns */
        return;
    }
    int status = pa->status;
    free(pa);
    if (rc < 0)
        reply_rc(ctx, rc, field, err);
    else
        http_reply_json(ctx, status, rec);
}

static bool have_rollout(http_ctx_t *ctx, api_app_t *app)
{
    if (app->rollout)
        return true;
    http_reply_error(ctx, 503, "service_unavailable", NULL, "the rollout controller is not running");
    return false;
}

/* A change that moves a candidate forward (create, promote, resume) is refused while the
 * audit trail cannot be written (fail closed, as predict). A rollback or pause (the safe
 * direction) goes through: it takes effect, is answered 503 (its audit record is not
 * durable yet) and is audited late by the controller once the trail recovers. */
static bool can_change(http_ctx_t *ctx, api_app_t *app, bool forward)
{
    if (!have_rollout(ctx, app))
        return false;
    if (!forward || !app->audit || audit_log_healthy(app->audit))
        return true;
    http_reply_error(ctx, 503, "service_unavailable", NULL,
                     "the audit trail cannot be written; deployments are not started, promoted or resumed "
                     "until it recovers (rollback and pause still work)");
    return false;
}

void api_deployments_create(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!can_change(ctx, app, true))
        return;
    json_t *body = body_json(ctx, true);
    if (!body)
        return;
    pending_ack_t *pa = pending_new(ctx, 201);
    if (!pa) {
        json_decref(body);
        return;
    }
    json_t *rec = NULL;
    const char *field = NULL;
    char err[512] = "";
    int rc = rollout_create(app->rollout, body, actor_of(ctx), ack_done, pa, &rec, &field, err, sizeof(err));
    json_decref(body);
    answer_change(ctx, pa, rc, rc < 0 ? NULL : public_record(rec), field, err);
}

/* GET /api/v1/deployments[?status=S&model=M] and GET /api/v1/models/{name}/deployments. */
void api_deployments_list(http_ctx_t *ctx)
{
    static const char *const statuses[] = {"pending", "validating", "deploying",   "monitoring",
                                           "stable",  "failed",     "rolled_back", "paused"};
    api_app_t *app = http_ctx_app(ctx);
    if (!have_rollout(ctx, app))
        return;
    const http_route_t *route = http_ctx_route(ctx);
    char qmodel[160] = "", qstatus[32] = "";
    const char *model = route && strstr(route->pattern, "{name}") ? http_ctx_param(ctx, 0) : NULL;
    int qrc = http_query_param(ctx, "status", qstatus, sizeof(qstatus));
    if (qrc == -EINVAL || qrc == -E2BIG) {
        if (qrc == -E2BIG)
            http_reply_error(ctx, 400, "invalid_query", NULL, "query string longer than %d bytes",
                             ROUTER_MAX_PATH);
        else
            http_reply_error(ctx, 400, "invalid_query", NULL, "%s", HTTP_QUERY_MALFORMED);
        return;
    }
    const char *status = NULL;
    if (qrc == 0) {
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
            if (strcmp(qstatus, statuses[i]) == 0)
                status = statuses[i];
        if (!status) { /* details[0].field names the parameter, as for a body (review67 #3) */
            reply_rc(ctx, -EINVAL, "status",
                     "status: expected one of pending, validating, deploying, monitoring, stable, failed, "
                     "rolled_back, paused");
            return;
        }
    }
    if (!model && http_query_param(ctx, "model", qmodel, sizeof(qmodel)) == 0) {
        if (!util_is_safe_name(qmodel)) {
            reply_rc(ctx, -EINVAL, "model", "model: not a valid model name");
            return;
        }
        model = qmodel;
    }
    json_t *list = NULL;
    int rc = rollout_list(app->rollout, status, model, &list);
    if (rc < 0) {
        reply_rc(ctx, rc, NULL, "the deployments could not be read");
        return;
    }
    http_reply_json(ctx, 200,
                    json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(list), "deployments",
                              public_records(list)));
}

void api_deployments_status(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!have_rollout(ctx, app))
        return;
    json_t *st = rollout_status(app->rollout);
    public_records(json_object_get(st, "active"));
    http_reply_json(ctx, 200, st);
}

void api_deployment_get(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!have_rollout(ctx, app))
        return;
    const char *id = http_ctx_param(ctx, 0);
    json_t *rec = NULL;
    int rc = rollout_get(app->rollout, id, &rec);
    if (rc < 0) {
        char err[256];
        snprintf(err, sizeof(err), "no deployment with id '%.64s'", id);
        reply_rc(ctx, rc, NULL, rc == -ENOENT ? err : "the deployment could not be read");
        return;
    }
    http_reply_json(ctx, 200, public_record(rec));
}

void api_deployment_action(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    const char *id = http_ctx_param(ctx, 0);
    const char *action = http_ctx_param(ctx, 1);
    static const char *const actions[] = {"promote", "pause", "resume", "rollback"};
    bool known = false;
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        known |= strcmp(action, actions[i]) == 0;
    /* an unknown action is reported as such (by the controller), whatever the trail's state */
    if (!can_change(ctx, app, known && strcmp(action, "rollback") != 0 && strcmp(action, "pause") != 0))
        return;
    json_t *body = body_json(ctx, false);
    if (!body)
        return;
    if (!json_is_object(body)) {
        json_decref(body);
        reply_rc(ctx, -EINVAL, "body", "the body must be a JSON object");
        return;
    }
    pending_ack_t *pa = pending_new(ctx, 200);
    if (!pa) {
        json_decref(body);
        return;
    }
    json_t *rec = NULL;
    const char *field = NULL;
    char err[512] = "";
    int rc = rollout_action(app->rollout, id, action, body, actor_of(ctx), ack_done, pa, &rec, &field, err,
                            sizeof(err));
    json_decref(body);
    answer_change(ctx, pa, rc, rc < 0 ? NULL : public_record(rec), field, err);
}

void api_model_rollback(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!can_change(ctx, app, false))
        return;
    const char *name = http_ctx_param(ctx, 0);
    json_t *body = body_json(ctx, false);
    if (!body)
        return;
    json_t *to = json_object_get(body, "to");
    if (to && (!json_is_string(to) || !util_is_safe_name(json_string_value(to)))) {
        json_decref(body);
        reply_rc(ctx, -EINVAL, "to", "\"to\" must be a version string");
        return;
    }
    pending_ack_t *pa = pending_new(ctx, 200);
    if (!pa) {
        json_decref(body);
        return;
    }
    json_t *res = NULL;
    char err[512] = "";
    int rc = rollout_model_rollback(app->rollout, name, to ? json_string_value(to) : NULL, actor_of(ctx),
                                    ack_done, pa, &res, err, sizeof(err));
    json_decref(body);
    answer_change(ctx, pa, rc, res, "to", err);
}
