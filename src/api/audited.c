/* SPDX-License-Identifier: Apache-2.0 */
/* Answers held until the request's own audit record is durable (issue 5): a handler that
 * must not answer before the trail holds its record (reading the trail, posting ground
 * truth) queues the record and leaves the answer here. The worker does not wait (its other
 * connections go on): the audit writer's callback posts the answer back to it, as predict's
 * MODEL_INFERENCE does. When the record fails, the answer is a 503 instead. */
#include <stdlib.h>

#include "api/api.h"
#include "audit/audit.h"
#include "common/log.h"

static void send_held(http_ctx_t *ctx, void *arg)
{
    api_held_reply_t *r = arg;
    if (!ctx) { /* the server stopped first (http_ctx_post) */
        json_decref(r->body);
    } else if (r->audit_status < 0) {
        json_decref(r->body);
        log_msg(LOG_ERROR, "audit record failed; answered 503", "{s:s,s:i}", "request_id",
                http_ctx_request_id(ctx), "errno", -r->audit_status);
        http_reply_error(ctx, 503, "service_unavailable", NULL, "%s", r->unaudited);
    } else if (r->status == 200) {
        http_reply_json(ctx, 200, r->body);
    } else {
        http_reply_error(ctx, r->status, r->code, r->body, "%s", r->message);
    }
    free(r);
}

static void held_audited(void *arg, int status) /* the audit writer's thread */
{
    api_held_reply_t *r = arg;
    r->audit_status = status;
    http_ctx_post(r->ctx, send_held, r);
}

void api_reply_when_audited(http_ctx_t *ctx, api_held_reply_t *r, const audit_event_t *ev)
{
    api_app_t *app = http_ctx_app(ctx);
    r->ctx = ctx;
    int rc = audit_log_submit(app->audit, ev, held_audited, r);
    if (rc < 0) /* not queued: no callback will come */
        held_audited(r, rc);
}
