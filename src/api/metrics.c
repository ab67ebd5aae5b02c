/* SPDX-License-Identifier: Apache-2.0 */
/* GET /metrics: the Prometheus text exposition of every registered metric, summed over
 * the per-thread shards at scrape time. */
#include <stdlib.h>

#include "api/api.h"
#include "monitor/metrics.h"

void api_metrics(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!app->cfg->prometheus_enabled) {
        http_reply_error(ctx, 404, "not_found", NULL, "metrics are disabled (PROMETHEUS_ENABLED=false)");
        return;
    }
    size_t len = 0;
    char *text = metrics_render(&len);
    if (!text) {
        http_reply_error(ctx, 500, "internal_error", NULL, "cannot render metrics");
        return;
    }
    http_reply_text(ctx, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
