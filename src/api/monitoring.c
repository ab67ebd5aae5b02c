/* SPDX-License-Identifier: Apache-2.0 */
/* GET /api/v1/alerts (active and recently resolved alerts) and GET
 * /api/v1/monitoring/{model} (the monitor's latest evaluation of one model). Both read
 * snapshots the monitor loop made; nothing is computed on the request. */
#include "api/api.h"
#include "common/util.h"
#include "monitor/monitor.h"

static bool monitor_on(http_ctx_t *ctx, api_app_t *app)
{
    if (app->monitor)
        return true;
    http_reply_error(ctx, 404, "not_found", NULL, "monitoring is disabled (MONITOR_ENABLED=false)");
    return false;
}

void api_alerts(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!monitor_on(ctx, app))
        return;
    json_t *body = monitor_alerts_json(app->monitor);
    char now[ISO8601_LEN];
    util_iso8601(util_now_ms(), now);
    json_object_set_new(body, "generated_at", json_string(now));
    http_reply_json(ctx, 200, body);
}

void api_monitoring_model(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    const char *name = http_ctx_param(ctx, 0);
    if (!monitor_on(ctx, app))
        return;
    if (!util_is_safe_name(name)) {
        http_reply_error(ctx, 404, "model_not_found", NULL, "no model with that name (invalid model name)");
        return;
    }
    json_t *snap = monitor_model_json(app->monitor, name);
    if (!snap) {
        http_reply_error(ctx, 404, "model_not_found", NULL,
                         "no monitoring data for model '%s' (unknown model, or not evaluated yet)", name);
        return;
    }
    http_reply_json(ctx, 200, snap);
}
