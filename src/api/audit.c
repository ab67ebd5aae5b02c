/* SPDX-License-Identifier: Apache-2.0 */
/* Audit API (role auditor): GET /api/v1/audit/events lists records with filters and a seq
 * cursor; GET /api/v1/audit/verify runs the verifier. Both read the files directly (the log
 * is the truth) and both are themselves audited (DATA_ACCESS, AUDIT_VERIFY). They run on the
 * worker thread: a verify of a long history blocks that worker while it reads. */
#include <errno.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "audit/audit.h"
#include "common/util.h"

/* Fills q from the query string; on a bad parameter writes the reason into err. */
/* jansson takes only valid UTF-8: a filter it would refuse could not be recorded in the
 * DATA_ACCESS record that says which filters were used */
static bool utf8_valid(const char *v)
{
    json_t *t = json_string(v);
    bool ok = t != NULL;
    json_decref(t);
    return ok;
}

static int parse_query(const char *qs, audit_query_t *q, struct evkeyvalq *kv, char *err, size_t errlen)
{
    q->limit = 100;
    if (!qs || !*qs)
        return 0;
    if (evhttp_parse_query_str(qs, kv) < 0) {
        snprintf(err, errlen, "%s", HTTP_QUERY_MALFORMED);
        return -EINVAL;
    }
    struct evkeyval *e;
    TAILQ_FOREACH(e, kv, next)
    {
        const char *k = e->key, *v = e->value;
        int64_t n;
        if (!utf8_valid(k) || !utf8_valid(v)) {
            snprintf(err, errlen, "a query parameter is not valid UTF-8 (percent-encode UTF-8 text)");
            return -EINVAL;
        }
        if (strcmp(k, "from") == 0 || strcmp(k, "to") == 0) {
            *(k[0] == 'f' ? &q->from : &q->to) = v;
        } else if (strcmp(k, "type") == 0) {
            q->type = v;
        } else if (strcmp(k, "user") == 0) {
            q->user = v;
        } else if (strcmp(k, "patient") == 0) {
            q->patient_pseudonym = v;
        } else if (strcmp(k, "limit") == 0) {
            if (util_parse_int64(v, 1, 1000, &n) < 0) {
                snprintf(err, errlen, "limit: expected an integer 1..1000");
                return -EINVAL;
            }
            q->limit = (size_t)n;
        } else if (strcmp(k, "cursor") == 0) {
            if (util_parse_int64(v, 0, INT64_MAX, &n) < 0) {
                snprintf(err, errlen, "cursor: expected the next_cursor of a previous page");
                return -EINVAL;
            }
            q->after_seq = (uint64_t)n;
        } else {
            snprintf(err, errlen, "unknown parameter '%.64s' (from, to, type, user, patient, limit, cursor)",
                     k);
            return -EINVAL;
        }
    }
    return audit_query_check(q, "", err, errlen);
}

#define UNAUDITED                                                                                        \
    "the audit trail cannot be written; reading it is refused until it recovers (every read of it is "  \
    "itself audited)"

/* The record of this read of the audit trail (detail borrowed). */
static audit_event_t access_event(http_ctx_t *ctx, const char *type, const char *action, const char *outcome,
                                  json_t *detail)
{
    return (audit_event_t){.type = type,
                           .user = http_ctx_user(ctx),
                           .role = http_ctx_role(ctx),
                           .action = action,
                           .entity_type = "audit_log",
                           .source_ip = http_ctx_peer(ctx),
                           .outcome = outcome,
                           .request_id = http_ctx_request_id(ctx),
                           .detail = detail};
}

static void refuse_unaudited(http_ctx_t *ctx)
{
    http_reply_error(ctx, 503, "service_unavailable", NULL, UNAUDITED);
}

void api_audit_events(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!app->cfg->audit_log_path) {
        http_reply_error(ctx, 503, "audit_disabled", NULL, "audit is not enabled (AUDIT_LOG_PATH unset)");
        return;
    }
    if (!audit_log_healthy(app->audit)) { /* fail closed, as predict */
        refuse_unaudited(ctx);
        return;
    }
    audit_query_t q = {0};
    struct evkeyvalq kv;
    TAILQ_INIT(&kv);
    /* a page names users and patient pseudonyms: it is sent only once its own DATA_ACCESS
     * record is durable */
    api_held_reply_t *pg = calloc(1, sizeof(*pg));
    if (!pg) {
        http_reply_error(ctx, 503, "service_unavailable", NULL, "out of memory");
        return;
    }
    pg->unaudited = UNAUDITED;
    if (parse_query(http_ctx_query(ctx), &q, &kv, pg->message, sizeof(pg->message)) < 0) {
        evhttp_clear_headers(&kv);
        http_reply_error(ctx, 400, "invalid_parameter", NULL, "%s", pg->message);
        free(pg);
        return;
    }
    json_t *recs = NULL;
    uint64_t next = 0;
    int rc = audit_query_run(app->cfg, &q, &recs, &next, pg->message, sizeof(pg->message));
    json_t *detail = json_pack("{s:s?,s:s?,s:s?,s:s?,s:I}", "type", q.type, "user", q.user, "from", q.from,
                               "to", q.to, "returned", (json_int_t)(recs ? json_array_size(recs) : 0));
    if (q.patient_pseudonym && strncmp(q.patient_pseudonym, "p_", 2) == 0 &&
        strlen(q.patient_pseudonym) == 32)
        json_object_set_new(detail, "patient", json_string(q.patient_pseudonym));
    evhttp_clear_headers(&kv);
    if (rc == 0) {
        pg->status = 200;
        pg->body = json_pack("{s:o,s:I}", "events", recs, "count", (json_int_t)json_array_size(recs));
        json_object_set_new(pg->body, "next_cursor", next ? json_integer((json_int_t)next) : json_null());
    } else {
        json_decref(recs);
        pg->status = 500;
        pg->code = "audit_read_failed";
    }
    audit_event_t ev = access_event(ctx, "DATA_ACCESS", "R", rc < 0 ? "failure" : "success", detail);
    api_reply_when_audited(ctx, pg, &ev);
    json_decref(detail);
}

void api_audit_verify(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    if (!app->cfg->audit_log_path) {
        http_reply_error(ctx, 503, "audit_disabled", NULL, "audit is not enabled (AUDIT_LOG_PATH unset)");
        return;
    }
    audit_verify_result_t res;
    char err[1024] = "";
    int rc = audit_verify(app->cfg, NULL, &res, err, sizeof(err));
    if (rc == 0) /* a serving server has written records: none there is a wiped trail */
        audit_verify_refuse_empty(&res, app->cfg->audit_log_path);
    json_t *detail = rc < 0 ? json_pack("{s:s}", "error", err)
                            : json_pack("{s:I,s:I}", "records", (json_int_t)res.records, "last_seq",
                                        (json_int_t)res.last_seq);
    if (rc == 0 && !res.ok) {
        json_object_set_new(detail, "first_bad_seq", json_integer((json_int_t)res.bad_seq));
        json_object_set_new(detail, "kind", json_string(res.bad_kind));
    }
    /* queued, not waited for: the result discloses counts only, and is needed most when the
     * log is failing */
    audit_event_t ev = access_event(ctx, "AUDIT_VERIFY", "E", rc == 0 && res.ok ? "success" : "failure", detail);
    audit_log_submit(app->audit, &ev, NULL, NULL);
    json_decref(detail);
    if (rc < 0) {
        http_reply_error(ctx, 500, "audit_verify_failed", NULL, "%s", err);
        return;
    }
    http_reply_json(ctx, 200, audit_verify_result_json(&res));
}
