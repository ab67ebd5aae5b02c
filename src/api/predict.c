/* SPDX-License-Identifier: Apache-2.0 */
/* POST /api/v1/models/{name}/predict: decode and validate the body, score the rows on a
 * referenced model handle, record the prediction through the group-commit recorder and
 * answer only once the record is durable. Input values never leave this file except
 * into the store, and only when STORE_PREDICTION_INPUTS is on. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "model/schema.h"
#include "monitor/modelmetrics.h"
#include "security/pseudonym.h"

#define MAX_PATIENT_ID 256

typedef struct pending {
    json_t *body; /* the 200 answer, sent once durable */
    int status;   /* recorder result */
} pending_t;

static void reply_after_record(http_ctx_t *ctx, void *arg)
{
    pending_t *p = arg;
    if (p->status == 0) {
        http_reply_json(ctx, 200, p->body);
    } else {
        json_decref(p->body);
        log_msg(LOG_ERROR, "prediction record failed", "{s:s,s:i}", "request_id", http_ctx_request_id(ctx),
                "errno", -p->status);
        http_reply_error(ctx, 503, "service_unavailable", NULL,
                         "the prediction could not be recorded durably and is not acknowledged; retry later");
    }
    free(p);
}

typedef struct done_arg {
    http_ctx_t *ctx;
    pending_t *p;
} done_arg_t;

/* Writer thread: hand the result back to the request's worker thread. */
static void record_done(void *arg, int status)
{
    done_arg_t *d = arg;
    d->p->status = status;
    http_ctx_post(d->ctx, reply_after_record, d->p);
    free(d);
}

static bool is_json_content_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    char next = ct[sizeof(want) - 1];
    return next == '\0' || next == ';' || next == ' ';
}

/* Parses the body; on failure replies and returns NULL. The parser's message is cut
 * before "near '...'" so that no fragment of the submitted body is echoed. */
static json_t *parse_body(http_ctx_t *ctx)
{
    const char *data;
    size_t len;
    http_ctx_body(ctx, &data, &len);
    if (len == 0) {
        http_reply_error(ctx, 400, "invalid_json", NULL, "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t jerr;
    /* DECODE_ANY: a bare scalar is valid JSON, refused below as a shape problem (422) */
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        char *near = strstr(jerr.text, " near ");
        if (near)
            *near = '\0';
        http_reply_error(
            ctx, 400, "invalid_json",
            json_pack("{s:i,s:i,s:i}", "line", jerr.line, "column", jerr.column, "position", jerr.position),
            "invalid JSON at line %d, column %d (byte %d): %s", jerr.line, jerr.column, jerr.position,
            jerr.text);
        return NULL;
    }
    return root;
}

static void shape_error(http_ctx_t *ctx, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void shape_error(http_ctx_t *ctx, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *details = json_pack("[{s:s,s:s,s:s}]", "field", field, "problem", "invalid", "message", msg);
    http_reply_error(ctx, 422, "validation_failed", details, "%s", msg);
}

void api_predict(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    const char *name = http_ctx_param(ctx, 0);
    json_t *root = NULL, *errors = NULL, *preds = NULL;
    model_handle_t *h = NULL;
    float *rows = NULL, *out = NULL;

    if (!is_json_content_type(http_ctx_header(ctx, "Content-Type"))) {
        http_reply_error(ctx, 415, "unsupported_media_type", NULL, "Content-Type must be application/json");
        return;
    }
    if (!util_is_safe_name(name)) {
        http_reply_error(ctx, 404, "model_not_found", NULL, "no model with that name (invalid model name)");
        return;
    }
    root = parse_body(ctx);
    if (!root)
        return;
    if (!json_is_object(root)) {
        shape_error(ctx, "body", "%s",
                    "request body must be a JSON object with \"features\" or \"instances\"");
        goto out;
    }

    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "features") && strcmp(key, "instances") && strcmp(key, "patient_id") &&
            strcmp(key, "version")) {
            shape_error(ctx, "body",
                        "unknown field '%.64s' (allowed: features, instances, patient_id, version)", key);
            goto out;
        }
    }
    json_t *features = json_object_get(root, "features");
    json_t *instances = json_object_get(root, "instances");
    json_t *jpid = json_object_get(root, "patient_id");
    json_t *jver = json_object_get(root, "version");
    if ((features == NULL) == (instances == NULL)) {
        shape_error(ctx, "body", "%s",
                    "give exactly one of \"features\" (one row) or \"instances\" (a batch)");
        goto out;
    }
    if (features && !json_is_object(features)) {
        shape_error(ctx, "features", "%s", "\"features\" must be an object of feature name to value");
        goto out;
    }
    size_t n_rows = 1;
    if (instances) {
        if (!json_is_array(instances) || json_array_size(instances) == 0) {
            shape_error(ctx, "instances", "%s", "\"instances\" must be a non-empty array of feature objects");
            goto out;
        }
        n_rows = json_array_size(instances);
        if (n_rows > (size_t)app->cfg->max_batch) {
            shape_error(ctx, "instances",
                        "batch too large: at most %d instances per request (MAX_BATCH_SIZE)",
                        app->cfg->max_batch);
            goto out;
        }
    }
    if (jpid && (!json_is_string(jpid) || json_string_length(jpid) == 0 ||
                 json_string_length(jpid) > MAX_PATIENT_ID)) {
        shape_error(ctx, "patient_id", "%s", "\"patient_id\" must be a string of 1..256 characters");
        goto out;
    }
    if (jver && (!json_is_string(jver) || !util_is_safe_name(json_string_value(jver)))) {
        shape_error(ctx, "version", "%s", "\"version\" must be a version string ([A-Za-z0-9._-], 1..128)");
        goto out;
    }

    int err = 0;
    const char *pin = jver ? json_string_value(jver) : NULL;
    h = model_registry_acquire(app->registry, name, pin, &err);
    if (!h && err != -ENOENT) {
        log_msg(LOG_ERROR, "model unavailable", "{s:s,s:s,s:i}", "request_id", http_ctx_request_id(ctx),
                "model", name, "errno", -err);
        http_reply_error(ctx, 503, "model_unavailable", NULL,
                         "model '%s' is registered but could not be loaded", name);
        goto out;
    }
    if (!h) {
        model_handle_t *any = pin ? model_registry_acquire(app->registry, name, NULL, &err) : NULL;
        if (any) {
            model_handle_unref(any);
            http_reply_error(ctx, 404, "version_not_found", NULL, "model '%s' has no version '%s'", name,
                             pin);
        } else {
            http_reply_error(ctx, 404, "model_not_found", NULL, "no model named '%s'", name);
        }
        goto out;
    }
    const model_manifest_t *m = model_handle_manifest(h);
    size_t nf = m->n_features, no = model_handle_outputs(h);
    rows = malloc(sizeof(float) * (nf ? nf : 1) * n_rows);
    out = malloc(sizeof(float) * no * n_rows);
    errors = json_array();
    if (!rows || !out || !errors) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_rows; i++) {
        json_t *row = features ? features : json_array_get(instances, i);
        size_t before = json_array_size(errors);
        if (!json_is_object(row)) {
            json_array_append_new(errors,
                                  json_pack("{s:s,s:s}", "problem", "wrong_type", "message",
                                            "each instance must be an object of feature name to value"));
        } else {
            model_schema_row(m, row, rows + i * nf, errors);
        }
        if (instances)
            for (size_t e = before; e < json_array_size(errors); e++)
                json_object_set_new(json_array_get(errors, e), "instance", json_integer((json_int_t)i));
    }
    if (json_array_size(errors) > 0) {
        size_t ne = json_array_size(errors);
        http_reply_error(ctx, 422, "validation_failed", errors, "%zu feature problem%s for model '%s'", ne,
                         ne == 1 ? "" : "s", name);
        errors = NULL;
        goto out;
    }

    char perr[256] = "";
    int64_t t0 = util_mono_ns();
    int prc = model_handle_predict(h, rows, n_rows, out, perr, sizeof(perr));
    model_metrics_observe(m->name, m->version, "stable", n_rows, (double)(util_mono_ns() - t0) / 1e9,
                          prc < 0);
    if (prc < 0) {
        log_msg(LOG_ERROR, "prediction failed", "{s:s,s:s,s:s,s:s}", "request_id", http_ctx_request_id(ctx),
                "model", m->name, "version", m->version, "error", perr);
        http_reply_error(ctx, 500, "internal_error", NULL, "the model failed to predict");
        goto out;
    }
    preds = json_array();
    for (size_t i = 0; i < n_rows; i++)
        json_array_append_new(preds, model_handle_row_result(h, out + i * no));

    char pid[UUID_STR_LEN];
    util_uuid7(pid);
    char pseud[PSEUDONYM_LEN];
    if (jpid)
        pseudonym_of(json_string_value(jpid), json_string_length(jpid), pseud);
    char *outputs_json = json_dumps(preds, JSON_COMPACT | JSON_REAL_PRECISION(9));
    char *inputs_json = NULL;
    if (app->cfg->store_prediction_inputs)
        inputs_json = json_dumps(features ? json_pack("[O]", features) : instances,
                                 JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:s,s:O}", "prediction_id", pid, "request_id", http_ctx_request_id(ctx),
                  "model", m->name, "version", m->version, "predictions", preds);
    if (features)
        json_object_set(body, "prediction", json_array_get(preds, 0));

    store_prediction_t rec = {
        .id = pid,
        .created_ms = util_now_ms(),
        .model = m->name,
        .version = m->version,
        .arm = "stable",
        .request_id = http_ctx_request_id(ctx),
        .patient_pseudonym = jpid ? pseud : NULL,
        .outputs_json = outputs_json,
        .inputs_json = inputs_json,
        .n_rows = (int)n_rows,
        .status = 200,
    };
    pending_t *p = calloc(1, sizeof(*p));
    done_arg_t *d = calloc(1, sizeof(*d));
    int rc = -ENOMEM;
    if (p && d) {
        p->body = body;
        d->ctx = ctx;
        d->p = p;
        rec.latency_ms = http_ctx_elapsed_ms(ctx);
        json_object_set_new(body, "latency_ms", json_real(rec.latency_ms));
        rc = recorder_submit(app->recorder, &rec, record_done, d);
    }
    free(outputs_json);
    free(inputs_json);
    if (rc < 0) {
        free(p);
        free(d);
        json_decref(body);
        http_reply_error(ctx, 503, "service_unavailable", NULL, "%s",
                         rc == -ESHUTDOWN ? "the server is shutting down; retry"
                                          : "the prediction could not be queued for recording; retry");
    }
    /* else: the answer goes out from reply_after_record once the record is durable */
out:
    json_decref(preds);
    json_decref(errors);
    json_decref(root);
    model_handle_unref(h);
    free(rows);
    free(out);
}
