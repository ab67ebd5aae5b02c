/* SPDX-License-Identifier: Apache-2.0 */
/* POST /api/v1/feedback: ground-truth labels for earlier predictions, one
 * ({"prediction_id","label","row"?}) or a batch ({"feedback":[...]}), all-or-nothing:
 * stored only if every item is new or a repeat of the same label. Statuses: 200 (stored
 * and/or duplicates), 422 (shape or label type), 404 (unknown prediction), 409 (another
 * label already stored for that prediction row). Labels are never logged or echoed.
 *
 * audit (issue 5): every answer given after the store was asked (stored, duplicates or a
 * refusal by the store) has a FEEDBACK_RECORDED record (prediction ids and counts, never a
 * label), durable before the answer, as predict's MODEL_INFERENCE: ground truth is clinical
 * data, and an attempt to change a stored label (409) is worth an auditor's eye. While the trail
 * fails, feedback is refused (503) before anything is stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "audit/audit.h"
#include "common/log.h"
#include "common/util.h"
#include "store/feedback.h"

#define FEEDBACK_MAX_BATCH 1000
#define PREDICTION_ID_MAX 64
#define AUDITED_IDS 100 /* prediction ids named in one FEEDBACK_RECORDED record */

static void add_problem(json_t *details, long index, const char *field, const char *problem,
                        const char *message)
{
    json_t *d = json_pack("{s:s,s:s,s:s}", "field", field, "problem", problem, "message", message);
    if (index >= 0)
        json_object_set_new(d, "index", json_integer(index));
    json_array_append_new(details, d);
}

/* Checks one item's shape; fills it or appends problems. */
static void check_item(json_t *obj, long index, store_feedback_item_t *it, json_t *details)
{
    if (!json_is_object(obj)) {
        add_problem(details, index, "feedback", "wrong_type",
                    "each feedback item must be an object with prediction_id and label");
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (strcmp(key, "prediction_id") && strcmp(key, "label") && strcmp(key, "row")) {
            add_problem(details, index, "body", "unknown",
                        "unknown field (allowed: prediction_id, label, row)");
            return;
        }
    }
    json_t *pid = json_object_get(obj, "prediction_id"), *label = json_object_get(obj, "label"),
           *row = json_object_get(obj, "row");
    if (!json_is_string(pid) || json_string_length(pid) == 0 || json_string_length(pid) > PREDICTION_ID_MAX)
        add_problem(details, index, "prediction_id", pid ? "wrong_type" : "missing",
                    "\"prediction_id\" must be the prediction's id (a string of 1..64 characters)");
    if (!label || !(json_is_string(label) || json_is_number(label)))
        add_problem(
            details, index, "label", label ? "wrong_type" : "missing",
            "\"label\" must be a class label (string), its index (integer) or, for regression, a number");
    if (row && (!json_is_integer(row) || json_integer_value(row) < 0 || json_integer_value(row) > 1000000))
        add_problem(details, index, "row", "wrong_type",
                    "\"row\" must be a non-negative integer (batch row)");
    it->prediction_id = json_string_value(pid);
    it->label = label;
    it->row = row && json_is_integer(row) ? (int)json_integer_value(row) : 0;
}

static const char *outcome_name(store_feedback_outcome_t o)
{
    switch (o) {
    case FEEDBACK_STORED: return "stored";
    case FEEDBACK_DUPLICATE: return "duplicate";
    case FEEDBACK_CONFLICT: return "conflict";
    case FEEDBACK_NOT_FOUND: return "not_found";
    default: return "invalid";
    }
}

static bool is_refusal(store_feedback_outcome_t o)
{
    return o == FEEDBACK_INVALID || o == FEEDBACK_NOT_FOUND || o == FEEDBACK_CONFLICT;
}

/* Queues the FEEDBACK_RECORDED record; the answer goes out once it is durable. Takes r.
 * worst: the outcome that gave the status of a refused batch (nothing was stored: the store
 * rolled it back), FEEDBACK_STORED when it was taken. The record counts every refusal by kind
 * (one bogus id must not hide an attempt to change a stored label) and names the ids of the
 * items that decided the answer (every item when taken, every refused one when not), up to
 * AUDITED_IDS, but never an id that names no prediction: that string is the client's. */
static void audit_and_reply(http_ctx_t *ctx, api_held_reply_t *r, const store_feedback_item_t *items, size_t n,
                            const size_t counts[5], store_feedback_outcome_t worst)
{
    bool taken = worst == FEEDBACK_STORED;
    json_t *ids = json_array();
    /* distinct ids; of a refused batch the conflicts first (an attempt to change a stored
     * label), so that no padding of the batch pushes them out of the record */
    const store_feedback_outcome_t order[] = {FEEDBACK_CONFLICT, FEEDBACK_INVALID};
    for (size_t pass = 0; pass < (taken ? 1 : 2); pass++)
        for (size_t i = 0; i < n && json_array_size(ids) < AUDITED_IDS; i++) {
            if (taken ? false : items[i].outcome != order[pass])
                continue;
            bool seen = false;
            for (size_t k = 0; k < json_array_size(ids) && !seen; k++)
                seen = strcmp(json_string_value(json_array_get(ids, k)), items[i].prediction_id) == 0;
            if (!seen)
                json_array_append_new(ids, json_string(items[i].prediction_id));
        }
    json_t *detail = json_pack("{s:I,s:I,s:I,s:o}", "items", (json_int_t)n, "stored",
                               (json_int_t)(taken ? counts[FEEDBACK_STORED] : 0), "duplicates",
                               (json_int_t)(taken ? counts[FEEDBACK_DUPLICATE] : 0), "prediction_ids", ids);
    if (detail && !taken) {
        json_t *kinds = json_object();
        size_t refused = 0;
        for (int o = 0; o < 5; o++)
            if (is_refusal((store_feedback_outcome_t)o) && counts[o] > 0) {
                json_object_set_new(kinds, outcome_name((store_feedback_outcome_t)o),
                                    json_integer((json_int_t)counts[o]));
                refused += counts[o];
            }
        json_object_set_new(detail, "problem", json_string(outcome_name(worst)));
        json_object_set_new(detail, "refused", json_integer((json_int_t)refused));
        json_object_set_new(detail, "problems", kinds);
    }
    audit_event_t ev = {.type = "FEEDBACK_RECORDED",
                        .user = http_ctx_user(ctx),
                        .role = http_ctx_role(ctx),
                        .action = "C",
                        .entity_type = "prediction",
                        .entity_id = n == 1 && items[0].outcome != FEEDBACK_NOT_FOUND ? items[0].prediction_id : NULL,
                        .source_ip = http_ctx_peer(ctx),
                        .outcome = taken ? "success" : "failure",
                        .request_id = http_ctx_request_id(ctx),
                        .detail = detail};
    r->unaudited = r->status == 200 ? "the feedback was stored but its audit record could not be written; retry "
                                      "(a repeat is answered as a duplicate)"
                                    : "the audit record could not be written; retry later";
    api_reply_when_audited(ctx, r, &ev);
    json_decref(detail);
}

void api_feedback(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    json_t *root = NULL, *details = NULL;
    store_feedback_item_t *items = NULL;

    if (!http_ctx_is_json(ctx)) {
        http_reply_error(ctx, 415, "unsupported_media_type", NULL, "Content-Type must be application/json");
        return;
    }
    const char *data;
    size_t len;
    http_ctx_body(ctx, &data, &len);
    if (len == 0) {
        http_reply_error(ctx, 400, "invalid_json", NULL, "request body is empty; expected a JSON object");
        return;
    }
    json_error_t jerr;
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        char *near = strstr(jerr.text, " near ");
        if (near)
            *near = '\0';
        http_reply_error(
            ctx, 400, "invalid_json",
            json_pack("{s:i,s:i,s:i}", "line", jerr.line, "column", jerr.column, "position", jerr.position),
            "invalid JSON at line %d, column %d (byte %d): %s", jerr.line, jerr.column, jerr.position,
            jerr.text);
        return;
    }
    details = json_array();
    json_t *batch = json_is_object(root) ? json_object_get(root, "feedback") : NULL;
    size_t n = 1;
    if (!json_is_object(root)) {
        add_problem(details, -1, "body", "invalid", "request body must be a JSON object");
    } else if (batch) {
        if (json_object_size(root) != 1)
            add_problem(details, -1, "body", "invalid",
                        "give either \"feedback\" (a batch) or one item, not both");
        else if (!json_is_array(batch) || json_array_size(batch) == 0)
            add_problem(details, -1, "feedback", "invalid",
                        "\"feedback\" must be a non-empty array of items");
        else if (json_array_size(batch) > FEEDBACK_MAX_BATCH)
            add_problem(details, -1, "feedback", "invalid",
                        "batch too large: at most 1000 items per request");
        else
            n = json_array_size(batch);
    }
    if (json_array_size(details) > 0)
        goto invalid;
    items = calloc(n, sizeof(*items));
    if (!items) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        check_item(batch ? json_array_get(batch, i) : root, batch ? (long)i : -1, &items[i], details);
    if (json_array_size(details) > 0)
        goto invalid;

    if (!audit_log_healthy(app->audit)) { /* fail closed, as predict: nothing is stored */
        http_reply_error(ctx, 503, "service_unavailable", NULL,
                         "the audit trail cannot be written; feedback is refused until it recovers");
        goto out;
    }
    api_held_reply_t *reply = calloc(1, sizeof(*reply));
    if (!reply) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
        goto out;
    }
    char err[256] = "";
    int rc = store_feedback_submit(app->store, items, n, http_ctx_user(ctx), util_now_ms(), err, sizeof(err));
    if (rc < 0) {
        log_msg(LOG_ERROR, "feedback store failed", "{s:s,s:i}", "request_id", http_ctx_request_id(ctx),
                "errno", -rc);
        http_reply_error(ctx, 503, "service_unavailable", NULL,
                         "the feedback could not be stored; retry later");
        free(reply);
        goto out;
    }
    size_t counts[5] = {0};
    for (size_t i = 0; i < n; i++)
        counts[items[i].outcome]++;
    store_feedback_outcome_t worst = counts[FEEDBACK_INVALID]     ? FEEDBACK_INVALID
                                     : counts[FEEDBACK_NOT_FOUND] ? FEEDBACK_NOT_FOUND
                                     : counts[FEEDBACK_CONFLICT]  ? FEEDBACK_CONFLICT
                                                                  : FEEDBACK_STORED;
    if (worst != FEEDBACK_STORED) {
        for (size_t i = 0; i < n; i++) { /* every refused item, each with its own problem */
            if (!is_refusal(items[i].outcome))
                continue;
            json_t *d = json_pack("{s:s,s:I,s:s,s:s}", "prediction_id", items[i].prediction_id, "row",
                                  (json_int_t)items[i].row, "problem", outcome_name(items[i].outcome), "message",
                                  items[i].message);
            if (batch)
                json_object_set_new(d, "index", json_integer((json_int_t)i));
            json_array_append_new(details, d);
        }
        snprintf(reply->message, sizeof(reply->message), "%s",
                 n == 1 ? items[0].message : "some feedback items were refused; nothing was stored");
        reply->status = worst == FEEDBACK_INVALID ? 422 : worst == FEEDBACK_NOT_FOUND ? 404 : 409;
        reply->code = worst == FEEDBACK_INVALID     ? "validation_failed"
                      : worst == FEEDBACK_NOT_FOUND ? "prediction_not_found"
                                                    : "feedback_conflict";
        reply->body = details;
        details = NULL;
        audit_and_reply(ctx, reply, items, n, counts, worst);
        goto out;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(results,
                              json_pack("{s:s,s:I,s:s}", "prediction_id", items[i].prediction_id, "row",
                                        (json_int_t)items[i].row, "status", outcome_name(items[i].outcome)));
    json_t *body = json_pack("{s:I,s:I,s:o}", "stored", (json_int_t)counts[FEEDBACK_STORED], "duplicates",
                             (json_int_t)counts[FEEDBACK_DUPLICATE], "results", results);
    if (!batch) {
        json_object_set_new(body, "status", json_string(outcome_name(items[0].outcome)));
        json_object_set_new(body, "duplicate", json_boolean(items[0].outcome == FEEDBACK_DUPLICATE));
    }
    reply->status = 200;
    reply->body = body;
    audit_and_reply(ctx, reply, items, n, counts, FEEDBACK_STORED);
    goto out;
invalid:
    http_reply_error(ctx, 422, "validation_failed", details, "%zu feedback problem%s",
                     json_array_size(details), json_array_size(details) == 1 ? "" : "s");
    details = NULL;
out:
    free(items);
    json_decref(details);
    json_decref(root);
}
