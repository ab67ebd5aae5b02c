/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP API: the route table and the application state handlers share. One file per
 * resource (health.c, models.c, predict.c); routes.c holds the table and the index. */
#ifndef AIMEDRES_API_API_H
#define AIMEDRES_API_API_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "http/server.h"
#include "model/registry.h"
#include "store/recorder.h"
#include "store/store.h"

struct monitor;   /* monitor/monitor.h (issue 4) */
struct audit_log; /* audit/audit.h (issue 5) */
struct security;  /* security/security.h (issue 5) */
struct rollout;   /* rollout/rollout.h (issue 3: rollouts) */

/* Borrowed by every handler; owned by the serve command. Optional subsystems are NULL
 * when disabled. */
typedef struct api_app {
    const config_t *cfg;
    store_t *store;
    recorder_t *recorder;
    model_registry_t *registry;
    http_server_t *server;     /* set after the server is created */
    struct monitor *monitor;   /* drift, quality, accuracy, alerts; NULL = off */
    struct audit_log *audit;   /* durable audit trail; NULL = off */
    struct security *security; /* authentication, roles, rate limits; NULL = open */
    struct rollout *rollout;   /* rollouts: deployment controller and router; NULL = off */
    int64_t started_ms;
} api_app_t;

extern const http_route_t api_routes[];
extern const size_t api_routes_count;

void api_root(http_ctx_t *ctx);
void api_index(http_ctx_t *ctx);
void api_health(http_ctx_t *ctx);
void api_ready(http_ctx_t *ctx);
void api_models_list(http_ctx_t *ctx);
void api_model_get(http_ctx_t *ctx);
void api_predict(http_ctx_t *ctx);
void api_metrics(http_ctx_t *ctx);
/* monitor (issue 4): api/feedback.c, api/monitoring.c */
void api_feedback(http_ctx_t *ctx);
void api_alerts(http_ctx_t *ctx);
void api_monitoring_model(http_ctx_t *ctx);
/* rollouts (api/deployments.c) */
void api_deployments_create(http_ctx_t *ctx);
void api_deployments_list(http_ctx_t *ctx);
void api_deployments_status(http_ctx_t *ctx);
void api_deployment_get(http_ctx_t *ctx);
void api_deployment_action(http_ctx_t *ctx);
void api_model_rollback(http_ctx_t *ctx);
/* audit (issue 5, api/audit.c): role auditor */
void api_audit_events(http_ctx_t *ctx);
void api_audit_verify(http_ctx_t *ctx);

/* An answer held until the request's audit record is durable (api/audited.c): 200 with body,
 * or the error status, code, details (body) and message; `unaudited` is the 503's message when
 * the record fails. malloc'd (calloc) by the handler, taken by api_reply_when_audited. */
typedef struct api_held_reply {
    http_ctx_t *ctx;
    int status;
    const char *code;
    json_t *body;
    char message[512];
    const char *unaudited; /* a string literal */
    int audit_status;
} api_held_reply_t;
struct audit_event;
/* Queues ev (copied) and sends r's answer once the record is durable, or a 503 saying
 * r->unaudited when it fails or can not be queued. */
void api_reply_when_audited(http_ctx_t *ctx, api_held_reply_t *r, const struct audit_event *ev);

/* The routes served on PROMETHEUS_PORT when it is set: /metrics and /health only. */
extern const http_route_t api_metrics_routes[];
extern const size_t api_metrics_routes_count;

#endif
