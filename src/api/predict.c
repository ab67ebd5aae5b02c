/* SPDX-License-Identifier: Apache-2.0 */
/* POST /api/v1/models/{name}/predict: decode and validate the body, score the rows on a
 * referenced model handle, record the prediction through the group-commit recorder and
 * answer only once the record is durable. Input values never leave this file except
 * into the store, and only when STORE_PREDICTION_INPUTS is on. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "model/rowjson.h" /* predict4: body and answer without a JSON tree */
#include "model/schema.h"
#include "monitor/modelmetrics.h"
#include "audit/audit.h"
#include "monitor/monitor.h" /* monitor (issue 4) */
#include "rollout/rollout.h" /* rollouts (issue 3) */
#include "security/pseudonym.h"

#define MAX_PATIENT_ID PATIENT_ID_MAX
#define MAX_REPORTED_PROBLEMS 100 /* feature problems listed in one 422 answer */

/* A 200 goes out only when every durable write of the request has completed: the
 * prediction record (recorder) and, when the audit trail is on, the MODEL_INFERENCE
 * audit record. The writers' threads call write_done; the last one hands the answer back
 * to the request's worker thread. Any failure answers 503: nothing is acknowledged. */
typedef struct pending {
    http_ctx_t *ctx;
    char *body; /* the 200 answer (JSON text, malloc'd) */
    size_t body_len;
    atomic_int remaining; /* durable writes outstanding */
    atomic_int status;    /* first failure (negative errno), 0 if none */
    atomic_int failed;    /* WRITE_RECORD or WRITE_AUDIT: which failed first */
    atomic_int audit_status; /* the MODEL_INFERENCE record's own outcome (0 = durable) */
    struct audit_log *audit;
    char pid[40], model[129], version[129];
} pending_t;

enum { WRITE_RECORD = 1, WRITE_AUDIT = 2 };

typedef struct undelivered {
    char pid[40], rid[64];
} undelivered_t;

static void not_delivered_done(void *arg, int status)
{
    undelivered_t *u = arg;
    if (status < 0)
        log_msg(LOG_ERROR, "audit record failed: MODEL_INFERENCE_NOT_DELIVERED not written", "{s:s,s:s,s:i}",
                "request_id", u->rid, "prediction_id", u->pid, "errno", -status);
    free(u);
}

/* The trail holds a MODEL_INFERENCE for an answer that was never given: say so, with the
 * same prediction id, so that an auditor can tell the two apart. who: the request's context
 * (still readable when the server stopped first, see http_ctx_post). */
static void audit_not_delivered(const pending_t *p, const http_ctx_t *who, const char *reason)
{
    json_t *det = json_pack("{s:s,s:s,s:s,s:s}", "prediction_id", p->pid, "model", p->model, "version",
                            p->version, "reason", reason);
    audit_event_t ev = {.type = "MODEL_INFERENCE_NOT_DELIVERED",
                        .user = http_ctx_user(who),
                        .role = http_ctx_role(who),
                        .action = "E",
                        .entity_type = "prediction",
                        .entity_id = p->pid,
                        .source_ip = http_ctx_peer(who),
                        .outcome = "failure",
                        .request_id = http_ctx_request_id(who),
                        .detail = det};
    /* a record that then fails (the trail's lock held at shutdown, a full disk) is said in the
     * log with the ids it carried: nothing else would name it (review59 #6) */
    undelivered_t *u = malloc(sizeof(*u));
    if (u) {
        snprintf(u->pid, sizeof(u->pid), "%s", p->pid);
        snprintf(u->rid, sizeof(u->rid), "%s", http_ctx_request_id(who));
    }
    if (audit_log_submit(p->audit, &ev, u ? not_delivered_done : NULL, u) < 0) {
        log_msg(LOG_ERROR, "audit record not queued", "{s:s,s:s}", "request_id", http_ctx_request_id(who),
                "prediction_id", p->pid);
        free(u);
    }
    json_decref(det);
}

static void reply_after_writes(http_ctx_t *ctx, void *arg)
{
    pending_t *p = arg;
    int status = atomic_load(&p->status);
    bool audit_failed = status != 0 && atomic_load(&p->failed) == WRITE_AUDIT;
    /* a record that failed while the MODEL_INFERENCE record was written: the trail says so */
    bool say_undelivered = status != 0 && !audit_failed && p->audit && atomic_load(&p->audit_status) == 0;
    if (!ctx) { /* the server stopped first (http_ctx_post): no answer was given, none can be */
        const http_ctx_t *who = p->ctx;
        if (status == 0)
            log_msg(LOG_WARNING, "prediction stored but not answered: the server stopped first", "{s:s}",
                    "prediction_id", p->pid);
        else if (audit_failed) /* review57 #1: the store has it, the trail does not */
            log_msg(LOG_ERROR,
                    "prediction stored but not answered: its audit record failed and the server stopped first",
                    "{s:s,s:s,s:i}", "request_id", http_ctx_request_id(who), "prediction_id", p->pid, "errno",
                    -status);
        else
            log_msg(LOG_ERROR, "prediction record failed; not answered: the server stopped first",
                    "{s:s,s:s,s:i}", "request_id", http_ctx_request_id(who), "prediction_id", p->pid, "errno",
                    -status);
        if (say_undelivered)
            audit_not_delivered(p, who,
                                "the prediction record could not be stored; not answered: the server stopped first");
        free(p->body);
    } else if (status == 0) {
        http_reply_text(ctx, 200, "application/json", p->body, p->body_len); /* takes the buffer */
    } else {
        free(p->body);
        /* the prediction id says which row of the store has no audit record (audit_failed) */
        log_msg(LOG_ERROR, audit_failed ? "audit record failed" : "prediction record failed", "{s:s,s:s,s:i}",
                "request_id", http_ctx_request_id(ctx), "prediction_id", p->pid, "errno", -status);
        if (say_undelivered)
            audit_not_delivered(p, ctx, "the prediction record could not be stored; answered 503");
        http_reply_error(
            ctx, 503, "service_unavailable", NULL, "%s",
            audit_failed ? "the audit record could not be written durably; the prediction is not "
                           "acknowledged; retry later"
                         : "the prediction could not be recorded durably and is not acknowledged; retry later");
    }
    free(p);
}

static void write_done(pending_t *p, int status, int which)
{
    if (status < 0) {
        int none = 0;
        if (atomic_compare_exchange_strong(&p->status, &none, status))
            atomic_store(&p->failed, which);
    }
    if (atomic_fetch_sub(&p->remaining, 1) == 1)
        http_ctx_post(p->ctx, reply_after_writes, p);
}

/* Writer threads. */
static void record_done(void *arg, int status)
{
    write_done(arg, status, WRITE_RECORD);
}

static void audit_done(void *arg, int status)
{
    atomic_store(&((pending_t *)arg)->audit_status, status < 0 ? status : 0);
    write_done(arg, status, WRITE_AUDIT);
}

/* An unknown model is the first thing wrong with a request for it: a body error is only
 * reported for a model that exists (checked here, off the hot path). True when it replied. */
static bool replied_unknown_model(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    const char *name = http_ctx_param(ctx, 0);
    int err = 0;
    model_handle_t *h = model_registry_acquire(app->registry, name, NULL, &err);
    model_handle_unref(h);
    if (h || err != -ENOENT)
        return false;
    http_reply_error(ctx, 404, "model_not_found", NULL, "no model named '%s'", name);
    return true;
}

/* Parses the body; on failure replies and returns NULL. The parser's message is cut
 * before "near '...'" so that no fragment of the submitted body is echoed. */
static json_t *parse_body(http_ctx_t *ctx)
{
    const char *data;
    size_t len;
    http_ctx_body(ctx, &data, &len);
    if (len == 0) {
        if (!replied_unknown_model(ctx))
            http_reply_error(ctx, 400, "invalid_json", NULL, "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t jerr;
    /* DECODE_ANY: a bare scalar is valid JSON, refused below as a shape problem (422) */
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    /* An integer beyond int64 is valid JSON: read that body with every integer as a double,
     * so that the schema names the feature whose value is out of its range (422) */
    if (!root && strstr(jerr.text, "too big"))
        root =
            json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!root) {
        if (replied_unknown_model(ctx))
            return NULL;
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
    if (replied_unknown_model(ctx))
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *details = json_pack("[{s:s,s:s,s:s}]", "field", field, "problem", "invalid", "message", msg);
    http_reply_error(ctx, 422, "validation_failed", details, "%s", msg);
}

/* predict4: the 200 answer {"prediction_id","request_id","model","version","predictions",
 * ["prediction",] "latency_ms"} written directly, as http_reply_json would have dumped the
 * tree (JSON_COMPACT | JSON_REAL_PRECISION(9)). preds is the encoded "predictions" array.
 * NULL on allocation failure. */
static char *encode_answer(const char *pid, const char *request_id, const model_manifest_t *m,
                           const rowjson_buf_t *preds, bool one_row, double latency_ms, size_t *ret_len)
{
    rowjson_buf_t b = {0};
    rowjson_put(&b, "{\"prediction_id\":", 17);
    rowjson_put_string(&b, pid);
    rowjson_put(&b, ",\"request_id\":", 14);
    rowjson_put_string(&b, request_id);
    rowjson_put(&b, ",\"model\":", 9);
    rowjson_put_string(&b, m->name);
    rowjson_put(&b, ",\"version\":", 11);
    rowjson_put_string(&b, m->version);
    rowjson_put(&b, ",\"predictions\":", 15);
    rowjson_put(&b, preds->data, preds->len);
    if (one_row) { /* the single row's result again, without the array brackets */
        rowjson_put(&b, ",\"prediction\":", 14);
        rowjson_put(&b, preds->data + 1, preds->len - 2);
    }
    rowjson_put(&b, ",\"latency_ms\":", 14);
    rowjson_put_real(&b, latency_ms);
    rowjson_put(&b, "}", 1);
    if (b.failed || preds->failed) {
        free(b.data);
        return NULL;
    }
    *ret_len = b.len;
    return b.data;
}

void api_predict(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    const char *name = http_ctx_param(ctx, 0);
    json_t *root = NULL, *errors = NULL;
    json_t *features = NULL, *instances = NULL, *jpid = NULL, *jver = NULL;
    json_t *own_pid = NULL, *own_ver = NULL; /* predict4: the fast path's strings */
    rowjson_buf_t preds = {0};               /* predict4: the encoded "predictions" array */
    rowjson_body_t fb;                       /* predict4: the fast path's scan */
    bool fast = false;
    model_handle_t *h = NULL;
    float *rows = NULL, *out = NULL;
    rollout_route_t rt = {.arm = "stable"}; /* rollouts (issue 3) */

    if (!http_ctx_is_json(ctx)) {
        http_reply_error(ctx, 415, "unsupported_media_type", NULL, "Content-Type must be application/json");
        return;
    }
    if (!util_is_safe_name(name)) {
        http_reply_error(ctx, 404, "model_not_found", NULL, "no model with that name (invalid model name)");
        return;
    }
    if (app->audit && !audit_log_healthy(app->audit)) {
        /* audit (issue 5): fail closed; no inference without its durable audit record */
        http_reply_error(ctx, 503, "service_unavailable", NULL,
                         "the audit trail cannot be written; inference is refused until it recovers");
        return;
    }
    /* predict4: the common single-row body is decoded without a JSON tree; any other body
     * (or STORE_PREDICTION_INPUTS, which stores the tree) takes the jansson path, which
     * answers every error. Phase 1 success means jansson would accept the same object. */
    if (!app->cfg->store_prediction_inputs) {
        const char *data;
        size_t len;
        http_ctx_body(ctx, &data, &len);
        fast = rowjson_scan(data, len, &fb);
    }
    if (fast) {
        if (fb.patient_id)
            jpid = own_pid = json_stringn(fb.patient_id, fb.patient_id_len);
        if (fb.version)
            jver = own_ver = json_stringn(fb.version, fb.version_len);
        if ((fb.patient_id && !jpid) || (fb.version && !jver)) {
            http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
            goto out;
        }
        goto validate_strings;
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
    features = json_object_get(root, "features");
    instances = json_object_get(root, "instances");
    jpid = json_object_get(root, "patient_id");
    jver = json_object_get(root, "version");
    if (json_is_null(jpid)) /* EHR serialisers send absent optional fields as null */
        jpid = NULL;
    if (json_is_null(jver))
        jver = NULL;
    if ((features == NULL) == (instances == NULL)) {
        shape_error(ctx, "body", "%s",
                    "give exactly one of \"features\" (one row) or \"instances\" (a batch)");
        goto out;
    }
    if (features && !json_is_object(features)) {
        shape_error(ctx, "features", "%s", "\"features\" must be an object of feature name to value");
        goto out;
    }
    if (instances) {
        if (!json_is_array(instances) || json_array_size(instances) == 0) {
            shape_error(ctx, "instances", "%s", "\"instances\" must be a non-empty array of feature objects");
            goto out;
        }
        if (json_array_size(instances) > (size_t)app->cfg->max_batch) {
            shape_error(ctx, "instances",
                        "batch too large: at most %d instances per request (MAX_BATCH_SIZE)",
                        app->cfg->max_batch);
            goto out;
        }
    }
validate_strings:; /* predict4: both paths check patient_id and version alike */
    size_t n_rows = instances ? json_array_size(instances) : 1;
    bool one_row = !instances;
    if (jpid && (!json_is_string(jpid) || json_string_length(jpid) == 0 ||
                 json_string_length(jpid) > MAX_PATIENT_ID)) {
        shape_error(ctx, "patient_id", "%s", "\"patient_id\" must be a string of 1..256 bytes (UTF-8)");
        goto out;
    }
    if (jver && (!json_is_string(jver) || !util_is_safe_name(json_string_value(jver)))) {
        shape_error(ctx, "version", "%s", "\"version\" must be a version string ([A-Za-z0-9._-], 1..128)");
        goto out;
    }

    int err = 0;
    const char *pin = jver ? json_string_value(jver) : NULL;
    /* rollouts (issue 3): without a version pin, an active deployment may route this request
     * to its candidate (sticky by patient_id, else by request id); one atomic load otherwise */
    if (!pin)
        rollout_route(app->rollout, name, jpid ? json_string_value(jpid) : NULL, http_ctx_request_id(ctx),
                      &rt);
    else /* a pinned version bypasses routing: label it as such in metrics and records */
        rt.arm = "pinned";
    model_unavailable_t why; /* written only when the acquire fails */
    why.version[0] = why.error[0] = '\0';
    h = rt.handle ? model_handle_ref(rt.handle) : model_registry_acquire_why(app->registry, name, pin, &err, &why);
    if (!h && err != -ENOENT) {
        /* the version and the reason, as `model failed to load` gave them (review67 #6) */
        log_msg(LOG_ERROR, "model unavailable", "{s:s,s:s,s:s,s:s}", "request_id", http_ctx_request_id(ctx),
                "model", name, "version", why.version[0] ? why.version : (pin ? pin : ""), "error",
                why.error[0] ? why.error : strerror(-err));
        http_reply_error(ctx, 503, "model_unavailable", NULL,
                         "model '%s' is registered but could not be loaded", name);
        /* failed rows of the model, so its per-model error rate and alerts see the outage: the
         * pinned version, else "unavailable" (the stable version that failed to load) */
        model_metrics_observe(name, pin ? pin : "unavailable", rt.arm, n_rows, 0, true);
        goto out;
    }
    if (!h) {
        int stable_err = -ENOENT;
        model_handle_t *any = pin ? model_registry_acquire(app->registry, name, NULL, &stable_err) : NULL;
        /* a model whose stable version does not load is known all the same (review71 #3) */
        if (any || (pin && stable_err != -ENOENT)) {
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
    if (!rows || !out) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
        goto out;
    }
    if (fast && !rowjson_row(m, &fb, rows)) {
        /* predict4: a problem in the row: the jansson path explains it (phase 1 accepted
         * the body, so it parses; should it not, parse_body answers) */
        fast = false;
        root = parse_body(ctx);
        if (!root)
            goto out;
        features = json_object_get(root, "features");
    }
    if (!fast && !(errors = json_array())) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; !fast && i < n_rows; i++) {
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
    if (errors && json_array_size(errors) > 0) {
        size_t ne = json_array_size(errors);
        if (app->monitor) /* monitor (issue 4): data quality counts the problems */
            monitor_observe_rejected(app->monitor, m->name, errors);
        /* a body of thousands of bad keys must not get an answer of hundreds of kilobytes */
        char listed[48] = "";
        if (ne > MAX_REPORTED_PROBLEMS)
            snprintf(listed, sizeof(listed), " (the first %d are listed)", MAX_REPORTED_PROBLEMS);
        while (json_array_size(errors) > MAX_REPORTED_PROBLEMS)
            json_array_remove(errors, json_array_size(errors) - 1);
        http_reply_error(ctx, 422, "validation_failed", errors, "%zu feature problem%s for model '%s'%s", ne,
                         ne == 1 ? "" : "s", name, listed);
        errors = NULL;
        goto out;
    }

    char perr[256] = "";
    int64_t t0 = util_mono_ns();
    /* rollouts (issue 3): test fault injection on the candidate arm, per-arm counts */
    int prc = rt.handle ? rollout_fault(&rt) : 0;
    if (prc == 0)
        prc = model_handle_predict(h, rows, n_rows, out, perr, sizeof(perr));
    double model_s = (double)(util_mono_ns() - t0) / 1e9;
    rollout_observe(&rt, model_s, prc < 0);
    model_metrics_observe(m->name, m->version, rt.arm, n_rows, model_s, prc < 0);
    if (prc < 0) {
        log_msg(LOG_ERROR, "prediction failed", "{s:s,s:s,s:s,s:s}", "request_id", http_ctx_request_id(ctx),
                "model", m->name, "version", m->version, "error", perr);
        http_reply_error(ctx, 500, "internal_error", NULL, "the model failed to predict");
        goto out;
    }
    if (app->monitor) /* monitor (issue 4): drift and quality windows, lock-free */
        monitor_observe(app->monitor, h, rows, n_rows);
    /* predict4: the results are encoded once, for the record and for the answer */
    rowjson_put(&preds, "[", 1);
    for (size_t i = 0; i < n_rows; i++) {
        if (i)
            rowjson_put(&preds, ",", 1);
        rowjson_put_result(&preds, m, out + i * no);
    }
    rowjson_put(&preds, "]", 1);
    /* rollouts (issue 3): a shadow candidate scores a copy off the response path */
    if (rt.shadow)
        rollout_shadow_submit(app->rollout, &rt, rows, n_rows, nf, out, no, model_s);

    char pid[UUID_STR_LEN];
    util_uuid7(pid);
    char pseud[PSEUDONYM_LEN];
    if (jpid)
        pseudonym_of(json_string_value(jpid), json_string_length(jpid), pseud);
    const char *outputs_json = preds.failed ? NULL : preds.data;
    char *inputs_json = NULL;
    if (app->cfg->store_prediction_inputs) {
        /* reliability (issue 7): the one-row wrapper array is ours to free (LSan found it leaking) */
        json_t *wrapped = features ? json_pack("[O]", features) : json_incref(instances);
        inputs_json = json_dumps(wrapped, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(wrapped);
    }

    store_prediction_t rec = {
        .id = pid,
        .created_ms = util_now_ms(),
        .model = m->name,
        .version = m->version,
        .arm = rt.arm, /* rollouts (issue 3) */
        .request_id = http_ctx_request_id(ctx),
        .patient_pseudonym = jpid ? pseud : NULL,
        .outputs_json = outputs_json,
        .inputs_json = inputs_json,
        .n_rows = (int)n_rows,
        .status = 200,
    };
    pending_t *p = outputs_json ? calloc(1, sizeof(*p)) : NULL;
    int rc = -ENOMEM;
    if (p) {
        p->ctx = ctx;
        atomic_store(&p->remaining, app->audit ? 2 : 1);
        p->audit = app->audit;
        snprintf(p->pid, sizeof(p->pid), "%s", pid);
        snprintf(p->model, sizeof(p->model), "%s", m->name);
        snprintf(p->version, sizeof(p->version), "%s", m->version);
        rec.latency_ms = http_ctx_elapsed_ms(ctx);
        p->body =
            encode_answer(pid, http_ctx_request_id(ctx), m, &preds, one_row, rec.latency_ms, &p->body_len);
        rc = p->body ? 0 : -ENOMEM;
        if (rc == 0 && app->audit) {
            /* audit (issue 5): MODEL_INFERENCE, durable before the answer like the record;
             * submitted as plain strings (no JSON tree on the hot path) */
            audit_inference_t inf = {
                .user = http_ctx_user(ctx),
                .role = http_ctx_role(ctx),
                .source_ip = http_ctx_peer(ctx),
                .request_id = http_ctx_request_id(ctx),
                .patient_pseudonym = jpid ? pseud : NULL,
                .model = m->name,
                .version = m->version,
                .arm = rec.arm,
                .prediction_id = pid,
                .rows = (int64_t)n_rows,
            };
            rc = audit_log_submit_inference(app->audit, &inf, audit_done, p);
        }
        if (rc == 0) {
            int rrc = recorder_submit(app->recorder, &rec, record_done, p);
            if (rrc < 0) {
                if (app->audit)
                    write_done(p, rrc, WRITE_RECORD); /* the audit callback answers 503 */
                else
                    rc = rrc;
            }
        }
        if (rc < 0) {
            free(p->body);
            free(p);
        }
    }
    free(inputs_json);
    if (rc < 0)
        http_reply_error(ctx, 503, "service_unavailable", NULL, "%s",
                         rc == -ESHUTDOWN
                             ? "the server is shutting down; retry"
                             : "the prediction could not be queued for durable recording; retry");
    /* else: the answer goes out from reply_after_writes once every write is durable */
out:
    free(preds.data);
    json_decref(own_pid);
    json_decref(own_ver);
    json_decref(errors);
    json_decref(root);
    model_handle_unref(h);
    rollout_route_done(&rt); /* rollouts (issue 3) */
    free(rows);
    free(out);
}
