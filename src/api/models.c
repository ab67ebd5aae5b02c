/* SPDX-License-Identifier: Apache-2.0 */
/* Model listing and details, answered from the in-memory registry. */
#include "api/api.h"
#include "common/util.h"

void api_models_list(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    json_t *models = model_registry_list_json(app->registry);
    if (!models) {
        http_reply_error(ctx, 500, "internal_error", NULL, "cannot list models");
        return;
    }
    size_t n = json_array_size(models);
    http_reply_json(ctx, 200, json_pack("{s:o,s:I}", "models", models, "total", (json_int_t)n));
}

void api_model_get(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    const char *name = http_ctx_param(ctx, 0);
    json_t *m = util_is_safe_name(name) ? model_registry_model_json(app->registry, name) : NULL;
    if (!m) {
        http_reply_error(ctx, 404, "model_not_found", NULL, "no model named '%s'",
                         util_is_safe_name(name) ? name : "(invalid name)");
        return;
    }
    http_reply_json(ctx, 200, m);
}
