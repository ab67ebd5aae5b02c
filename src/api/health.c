/* SPDX-License-Identifier: Apache-2.0 */
/* Liveness (/health: the process answers, no dependencies) and readiness (/ready: the
 * database answers, at least one model is loaded, the data disk has room, and the
 * server is not draining). Load balancers route on /ready. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "api/api.h"
#include "audit/audit.h" /* audit (issue 5) */
#include "common/util.h"

/* Below either figure the disk check fails: writes (predictions, audit) would soon. */
#define READY_MIN_FREE_BYTES (64ull << 20)
#define READY_MIN_FREE_PERCENT 1.0

/* Liveness is polled by every balancer and orchestrator: the body is formatted directly
 * (no JSON tree) since only the timestamp varies and no field needs escaping. */
void api_health(http_ctx_t *ctx)
{
    char ts[ISO8601_LEN];
    util_iso8601(util_now_ms(), ts);
    char *body = NULL;
    int n = asprintf(&body, "{\"status\":\"healthy\",\"timestamp\":\"%s\",\"version\":\"%s\"}", ts,
                     AIMEDRES_VERSION);
    if (n < 0) {
        http_reply_error(ctx, 503, "out_of_memory", NULL, "cannot build the health answer");
        return;
    }
    http_reply_text(ctx, 200, "application/json", body, (size_t)n);
}

static json_t *disk_check(const char *path, const char *what, bool *ok)
{
    struct statvfs st;
    if (statvfs(path, &st) != 0) {
        *ok = false;
        char msg[96];
        snprintf(msg, sizeof(msg), "cannot stat the %s", what);
        return json_pack("{s:s,s:s}", "status", "fail", "message", msg);
    }
    unsigned long long free_b = (unsigned long long)st.f_bavail * st.f_frsize;
    unsigned long long total = (unsigned long long)st.f_blocks * st.f_frsize;
    double pct = total ? 100.0 * (double)free_b / (double)total : 0.0;
    bool good = free_b >= READY_MIN_FREE_BYTES && pct >= READY_MIN_FREE_PERCENT;
    if (!good)
        *ok = false;
    return json_pack("{s:s,s:I,s:f}", "status", good ? "ok" : "fail", "free_bytes", (json_int_t)free_b,
                     "free_percent", pct);
}

void api_ready(http_ctx_t *ctx)
{
    api_app_t *app = http_ctx_app(ctx);
    bool ok = true;
    char ts[ISO8601_LEN];
    util_iso8601(util_now_ms(), ts);

    int prc = store_ping(app->store);
    bool db_ok = prc == 0 || prc == -EBUSY; /* busy: a write is under way; writes failing shows below */
    /* the database's own file system (it may be a volume of its own) */
    json_t *db_disk = NULL;
    char db_path[4096], db_dir[4096], perr[128];
    if (store_url_file_path(app->cfg->database_url, db_path, sizeof(db_path), perr, sizeof(perr)) == 0) {
        util_dirname(db_path, db_dir, sizeof(db_dir));
        bool disk_ok = true;
        db_disk = disk_check(db_dir, "database directory", &disk_ok);
        db_ok = db_ok && disk_ok;
    }
    /* writes can fail while reads work (a full disk, another writer's lock): after a failed
     * prediction batch, ready again once a write commits (the probe gives up at once when the
     * store is busy, so this worker is not held) and the disk has room */
    int64_t failing = recorder_failing_since(app->recorder);
    if (db_ok && failing) {
        if (store_ping_write(app->store, 0) == 0)
            recorder_clear_failing(app->recorder);
        else
            db_ok = false;
    }
    ok = ok && db_ok;
    size_t loaded = model_registry_loaded_count(app->registry);
    bool models_ok = loaded > 0;
    ok = ok && models_ok;
    /* A registered model that fails to load is reported ("degraded") but does not by itself
     * take the replica out of rotation: with shared model storage one broken artifact would
     * otherwise stop every replica from serving the models that work. */
    json_t *failed = model_registry_failed_json(app->registry);
    const char *models_status = !models_ok ? "fail" : json_array_size(failed) ? "degraded" : "ok";
    json_t *disk = disk_check(app->cfg->model_storage_path, "model storage path", &ok);
    bool draining = app->server && http_server_draining(app->server);
    ok = ok && !draining;

    json_t *body = json_pack("{s:b,s:{s:{s:s},s:{s:s,s:I},s:o,s:{s:s}},s:s}", "ready", ok, "checks",
                             "database", "status", db_ok ? "ok" : "fail", "models", "status",
                             models_status, "loaded", (json_int_t)loaded, "disk", disk, "server",
                             "status", draining ? "draining" : "ok", "timestamp", ts);
    if (db_disk)
        json_object_set_new(json_object_get(json_object_get(body, "checks"), "database"), "disk", db_disk);
    if (!db_ok && failing) {
        char since[ISO8601_LEN];
        util_iso8601(failing, since);
        json_object_set_new(json_object_get(json_object_get(body, "checks"), "database"), "writes_failing_since",
                            json_string(since));
    }
    if (json_array_size(failed))
        json_object_set(json_object_get(json_object_get(body, "checks"), "models"), "failed", failed);
    json_decref(failed);
    /* audit (issue 5): a failing audit disk fails closed, so the balancer stops routing here */
    if (app->audit) {
        bool audit_ok = audit_log_healthy(app->audit);
        /* records are written but their signed checkpoints are not (review47 #7): reported,
         * not a reason to stop serving (the chain still holds every record) */
        int64_t ckpt_failing = audit_log_checkpoints_failing_since(app->audit);
        json_t *audit = json_pack("{s:s}", "status", !audit_ok ? "fail" : ckpt_failing ? "degraded" : "ok");
        if (ckpt_failing) {
            char since[ISO8601_LEN];
            util_iso8601(ckpt_failing, since);
            json_object_set_new(audit, "checkpoints_failing_since", json_string(since));
        }
        json_object_set_new(json_object_get(body, "checks"), "audit", audit);
        if (!audit_ok) {
            ok = false;
            json_object_set_new(body, "ready", json_false());
        }
    }
    http_reply_json(ctx, ok ? 200 : 503, body);
}
