/* SPDX-License-Identifier: Apache-2.0 */
/* Model listing and details, answered from the in-memory registry, with what a running
 * deployment changes in it (rollouts: a candidate's share of the traffic, the versions the
 * controller holds loaded). */
#include <string.h>

#include "api/api.h"
#include "common/util.h"
#include "rollout/rollout.h" /* rollouts (issue 3) */

/* {"<stable>": 100} or, while a deployment splits the traffic, {"<stable>": 100 - t,
 * "<candidate>": t}: the split deployment_traffic_percent shows. */
static json_t *percent_json(double x)
{
    return x == (double)(json_int_t)x ? json_integer((json_int_t)x) : json_real(x);
}

static json_t *traffic_json(const char *stable, const rollout_model_view_t *v)
{
    json_t *t = json_object();
    double share = v->split_version[0] ? v->split_traffic : 0;
    if (stable && strcmp(stable, v->split_version) != 0)
        json_object_set_new(t, stable, percent_json(100 - share));
    if (v->split_version[0])
        json_object_set_new(t, v->split_version, percent_json(share));
    return t;
}

/* Adds the deployment's view to one model's object: "traffic", and "shadow" (the version a
 * shadow phase scores) while there is one. */
static void add_rollout_view(api_app_t *app, json_t *model, const char *name, const char *stable,
                             rollout_model_view_t *v)
{
    rollout_model_view(app->rollout, name, v);
    json_object_set_new(model, "traffic", traffic_json(stable, v));
    if (v->shadow_version[0])
        json_object_set_new(model, "shadow", json_string(v->shadow_version));
}

void api_models_list(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    json_t *models = model_registry_list_json(app->registry);
    if (!models) {
        http_reply_error(ctx, 500, "internal_error", NULL, "cannot list models");
        return;
    }
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m)
    {
        rollout_model_view_t v;
        add_rollout_view(app, m, json_string_value(json_object_get(m, "name")),
                         json_string_value(json_object_get(m, "version")), &v);
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
    rollout_model_view_t v;
    add_rollout_view(app, m, name, json_string_value(json_object_get(m, "serving_version")), &v);
    size_t i;
    json_t *ver;
    json_array_foreach(json_object_get(m, "versions"), i, ver)
    {
        const char *s = json_string_value(json_object_get(ver, "version"));
        for (size_t k = 0; s && k < v.n_loaded; k++)
            if (strcmp(v.loaded[k], s) == 0)
                json_object_set_new(ver, "loaded", json_true());
    }
    http_reply_json(ctx, 200, m);
}
