/* SPDX-License-Identifier: Apache-2.0 */
/* The route table, the service root and the /api/v1 endpoint index (generated from the
 * table, so it cannot drift from what is served). */
#include <event2/http.h>

#include "api/api.h"
#include "common/buildinfo.h"
#include "common/util.h"

/* The role column is the minimum role (see docs/security.md): NULL = public, "read" =
 * any authenticated principal. Enforced by the security authorizer when enabled. */
const http_route_t api_routes[] = {
    {EVHTTP_REQ_GET, "/", api_root, "service name, version and links", NULL},
    {EVHTTP_REQ_GET, "/api/v1", api_index, "API version and endpoint index", NULL},
    {EVHTTP_REQ_GET, "/health", api_health, "liveness: the process answers", NULL},
    {EVHTTP_REQ_GET, "/ready", api_ready, "readiness: database, models and disk", NULL},
    {EVHTTP_REQ_GET, "/api/v1/models/list", api_models_list, "serving models", "read"},
    {EVHTTP_REQ_GET, "/api/v1/model/list", api_models_list, "serving models (upstream client path)", "read"},
    {EVHTTP_REQ_GET, "/api/v1/models/{name}", api_model_get, "a model's versions, schema and metrics",
     "read"},
    {EVHTTP_REQ_POST, "/api/v1/models/{name}/predict", api_predict,
     "predict one row (features) or a batch (instances)", "clinician"},
    {EVHTTP_REQ_GET, "/metrics", api_metrics, "Prometheus metrics (text format 0.0.4)", "monitor"},
    /* monitor (issue 4) */
    {EVHTTP_REQ_POST, "/api/v1/feedback", api_feedback,
     "ground-truth labels for earlier predictions (one or a batch)", "clinician"},
    {EVHTTP_REQ_GET, "/api/v1/alerts", api_alerts, "active and recently resolved alerts", "monitor"},
    {EVHTTP_REQ_GET, "/api/v1/monitoring/{model}", api_monitoring_model,
     "a model's accuracy, latency, errors, drift, data quality, alerts and status", "monitor"},
    /* rollouts (issue 3) */
    {EVHTTP_REQ_POST, "/api/v1/deployments", api_deployments_create,
     "start a deployment (canary, blue-green, direct)", "deployer"},
    {EVHTTP_REQ_GET, "/api/v1/deployments", api_deployments_list, "deployments, newest first", "read"},
    {EVHTTP_REQ_GET, "/api/v1/deployments/status", api_deployments_status, "active deployments", "read"},
    {EVHTTP_REQ_GET, "/api/v1/deployments/{id}", api_deployment_get, "one deployment record", "read"},
    {EVHTTP_REQ_POST, "/api/v1/deployments/{id}/{action}", api_deployment_action,
     "promote | pause | resume | rollback a deployment", "deployer"},
    {EVHTTP_REQ_GET, "/api/v1/models/{name}/deployments", api_deployments_list, "a model's deployments",
     "read"},
    {EVHTTP_REQ_POST, "/api/v1/models/{name}/rollback", api_model_rollback,
     "roll a model back to its previous (or a given) version", "deployer"},
    /* audit (issue 5) */
    {EVHTTP_REQ_GET, "/api/v1/audit/events", api_audit_events,
     "audit records; filters from, to, type, user, patient; paged by limit and cursor", "auditor"},
    {EVHTTP_REQ_GET, "/api/v1/audit/verify", api_audit_verify, "verify the audit chain and checkpoints",
     "auditor"},
};
const size_t api_routes_count = ARRAY_SIZE(api_routes);

const http_route_t api_metrics_routes[] = {
    {EVHTTP_REQ_GET, "/metrics", api_metrics, "Prometheus metrics (text format 0.0.4)", NULL},
    {EVHTTP_REQ_GET, "/health", api_health, "liveness", NULL},
};
const size_t api_metrics_routes_count = ARRAY_SIZE(api_metrics_routes);

void api_root(http_ctx_t *ctx)
{
    http_reply_json(ctx, 200,
                    json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "name", "aimedres", "version",
                              AIMEDRES_VERSION, "build", aimedres_build, "description", "clinical ML model serving", "links", "health",
                              "/health", "ready", "/ready", "api", "/api/v1", "models",
                              "/api/v1/models/list"));
}

void api_index(http_ctx_t *ctx)
{
    json_t *eps = json_array();
    for (size_t i = 0; i < api_routes_count; i++) {
        const http_route_t *r = &api_routes[i];
        for (unsigned bit = 1; bit <= EVHTTP_REQ_PATCH; bit <<= 1)
            if (r->methods & bit) {
                json_t *ep = json_pack("{s:s,s:s,s:s}", "method", router_method_name(bit), "path", r->pattern,
                                       "description", r->description);
                /* security (issue 5): the minimum role (docs/security.md); null = public */
                json_object_set_new(ep, "role", r->role ? json_string(r->role) : json_null());
                json_array_append_new(eps, ep);
            }
    }
    http_reply_json(
        ctx, 200,
        json_pack("{s:s,s:s,s:s,s:o}", "version", "v1", "server_version", AIMEDRES_VERSION, "server_build",
                  aimedres_build, "endpoints", eps));
}
