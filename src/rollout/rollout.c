/* SPDX-License-Identifier: Apache-2.0 */
/* The rollout controller: deployment state machine, traffic router and shadow scorer.
 *
 * DESIGN
 * States (status / mode) of one deployment and who moves between them:
 *
 *   pending --ctl--> validating --ctl: offline gates fail--> failed (inactive)
 *                         |
 *                         +--ctl: gates pass--> canary:     monitoring/shadow (if shadow_duration > 0)
 *                         |                                 --ctl: shadow gates pass or API promote-->
 *                         |                                 deploying/canary stage 0, 1, ... n-1
 *                         |                                 --ctl: stage end + checks pass + auto_promote,
 *                         |                                   or API promote--> next stage; after the
 *                         |                                 last (100%) stage --> stable/stable (inactive)
 *                         +--ctl--> blue-green: deploying/canary at 0% (warm, smoke) --ctl--> monitoring/
 *                         |         canary at 100% (watch window) --ctl--> stable/stable
 *                         +--ctl--> direct: stable replaced, verified --> stable/stable, or restored
 *
 *   any active --ctl: live check fails, auto_rollback--> rolled_back/rollback (inactive)
 *   any active --ctl: live check fails, no auto_rollback--> paused (traffic frozen)
 *   any active --API pause--> paused --API resume--> the status it had (timers continue)
 *   any active, or stable within its rollback window --API rollback--> rolled_back/rollback
 *
 * "ctl" is the controller thread, the only one that runs gates and timers; API
 * handlers change state through rollout_action/rollout_create under the same mutex.
 * Every change is written to the store (record + event) before the mutex is released,
 * so a restart resumes: validation re-runs, and a shadow phase, stage or blue/green watch
 * goes on from its stored start with its evidence (the snapshot stored with the record plus
 * the predictions recorded since: rebuild_evidence); other timers are wall-clock too.
 *
 * Invariants: at most one active deployment per model (the store's unique index is the
 * arbiter); dep_t objects are never freed while the controller lives (the hot path may
 * hold a pointer); the candidate handle is swapped under the rwlock `rw`, which the hot
 * path takes only when some deployment routes traffic (n_routing > 0), so with no
 * deployment a request costs one relaxed atomic load. Rollback stores route_mode NONE
 * first: from that instant no new request reaches the candidate. */
#include "rollout/rollout.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "common/log.h"
#include "common/util.h"
#include "model/registry.h"
#include "model/schema.h"
#include "monitor/metrics.h"
#include "rollout/config.h"
#include "rollout/gates.h"
#include "store/deployments.h"

/* the reason the created and validation_passed events give for a deployment that opted out */
#define FAIRNESS_GATES_OFF "fairness gates not run: fairness_gates=false in the deployment's config"
#define SHADOW_QUEUE 1024
#define MAX_DEPS 4096
#define TICK_MS 50
/* A step forward first probes the store with a write (store_refuses_writes): it waits this
 * long for the connection, which prediction traffic keeps busy, and after a failed probe
 * the next one comes no sooner than the retry interval (a full disk is not probed, and
 * logged, every tick). */
#define WRITE_PROBE_WAIT_MS 250
#define WRITE_PROBE_RETRY_MS 1000
#define GAUGE_REFRESH_MS 1000

enum { ROUTE_NONE = 0, ROUTE_SHADOW, ROUTE_SPLIT };
enum { PH_VALIDATE = 0, PH_SHADOW, PH_STAGE, PH_BG_WATCH, PH_DONE };

typedef struct arm_stats {
    unsigned long long requests, errors; /* atomic */
    rollout_latency_t lat;
} arm_stats_t;

typedef struct shadow_stats {
    unsigned long long jobs, rows, agree, errors, dropped; /* atomic */
    rollout_latency_t lat;
} shadow_stats_t;

typedef struct dep {
    char id[32], model[129], version[129], strategy[16], prev_version[129];
    char status[16], mode[16], paused_from[16];
    rollout_config_t cfg;
    int phase;      /* PH_* */
    int stage;      /* index into cfg.stages during PH_STAGE, -1 otherwise */
    double traffic; /* percent to the candidate */
    int64_t started_ms, completed_ms, phase_started_ms, last_check_ms, paused_elapsed_ms, window_until_ms;
    bool active, rollback_triggered, awaiting_promote;
    bool awaiting_evidence; /* the phase's time is up but it has fewer than min_requests */
    bool held_for_audit;    /* the audit trail is failing: no step forward (see step) */
    bool validated;         /* its offline gates ran and let it go on (status still "validating") */
    /* not yet in the store (it was busy or failing): the controller retries every second */
    bool unsaved;
    json_t *pending_events; /* [ms, event] not yet stored, in order */
    json_t *late_audit;     /* events to audit once stored and the trail is writable */
    int64_t retry_ms;
    char rollback_reason[512];
    json_t *tests, *timeline, *last_checks;
    json_t *frozen_perf; /* a finished deployment loaded from its record: its stored figures */
    double stable_p95_ref; /* stable arm p95 last seen with enough samples */
    bool ref_queried;      /* blue/green reference asked of the store (once per process) */
    long ref_n;            /* recorded stable predictions it found */
    int awaiting_kind;     /* what awaiting_evidence waits for: 1 requests, 2 a latency reference */
    int64_t stats_at_ms;   /* when the stored evidence snapshot this process resumed from was taken */
    json_t *restored; /* how this phase's evidence was rebuilt after a restart (NULL: it was not) */
    /* hot path */
    _Atomic int route_mode;
    _Atomic unsigned traffic_bp, epoch;
    model_handle_t *cand;        /* under rw */
    model_handle_t *prev_stable; /* kept loaded for the rollback window */
    arm_stats_t arms[2];         /* 0 stable, 1 candidate; reset at each phase start */
    shadow_stats_t shadow;
} dep_t;

/* A deployment_stage (version "") or deployment_traffic_percent series shown so far. */
typedef struct gauge_series {
    char model[129], version[129];
    bool traffic;
    uint32_t slot;
    double want; /* refresh_gauges: the value it is about to be set to */
    bool stable; /* refresh_gauges: the registry's stable version of its model */
} gauge_series_t;

typedef struct shadow_job {
    dep_t *dep;
    model_handle_t *h;
    float *rows, *stable_out;
    size_t n_rows, nf, no;
} shadow_job_t;

struct rollout {
    store_t *store;
    struct audit_log *audit; /* DEPLOYMENT_* audit events; NULL = audit off */
    model_registry_t *registry;
    char *data_dir;
    rollout_config_t defaults;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_rwlock_t rw;
    _Atomic unsigned n_routing;
    dep_t *deps[MAX_DEPS];
    size_t n_deps;
    pthread_t thread, shadow_thread;
    bool started, stop;
    /* shadow queue */
    pthread_mutex_t qmu;
    pthread_cond_t qcond;
    shadow_job_t queue[SHADOW_QUEUE];
    size_t qhead, qlen;
    bool qstop;
    uint32_t m_dropped;
    metric_family_t *f_stage, *f_traffic;
    gauge_series_t *gauges; /* under mu; see refresh_gauges */
    size_t n_gauges, cap_gauges;
    int64_t gauges_ms; /* the controller's last refresh */
    rollout_fault_t fault; /* ROLLOUT_FAULT_INJECT (tests); version "" = off */
    unsigned save_failures; /* under mu: an API call compares it before and after */
    int64_t probe_failed_ms; /* under mu: when the last write probe failed (0: it passed) */
    int probe_rc;            /* under mu: and its error */
    /* audit records queued (the controller's and API calls') and not yet written; failed ones
     * come back through audit_failed (own lock: the audit writer's callback never takes mu) */
    _Atomic int audit_inflight;
    pthread_mutex_t amu;
    json_t *audit_failed; /* [[deployment_id, event], ...] */
    bool audit_detached;  /* serve is closing the log: nothing moves forward unaudited */
    struct api_wait *api_wait; /* under mu: the API call in progress, which waits for its audit records */
};

/* ---- small helpers ----------------------------------------------------------------- */

void rollout_new_id(char buf[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned char rnd[3] = {0};
    util_random(rnd, sizeof(rnd));
    char ts[16];
    strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
    snprintf(buf, 32, "deploy_%s_%02x%02x%02x", ts, rnd[0], rnd[1], rnd[2]);
}

unsigned rollout_bucket(const char *deployment_id, const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = deployment_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = key ? key : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (unsigned)(h % 10000);
}

static const char *arm_name(const dep_t *d)
{
    return strcmp(d->strategy, "blue-green") == 0 ? "green" : "canary";
}

static json_t *iso(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char b[ISO8601_LEN];
    util_iso8601(ms, b);
    return json_string(b);
}

static double num_or_nan(const json_t *j)
{
    return json_is_number(j) ? json_number_value(j) : NAN;
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *arm_json(const arm_stats_t *a)
{
    unsigned long long req = __atomic_load_n(&a->requests, __ATOMIC_RELAXED);
    unsigned long long err = __atomic_load_n(&a->errors, __ATOMIC_RELAXED);
    return json_pack("{s:I,s:I,s:o,s:o}", "requests", (json_int_t)req, "errors", (json_int_t)err,
                     "error_rate", req ? json_real((double)err / (double)req) : json_null(), "p95_latency_ms",
                     jnum(rollout_latency_quantile_ms(&a->lat, 0.95)));
}

/* A latency histogram as [[bucket, count], ...] (non-empty buckets) and back. */
static json_t *lat_json(const rollout_latency_t *h)
{
    json_t *a = json_array();
    for (size_t i = 0; i < ROLLOUT_LAT_BUCKETS; i++) {
        unsigned long long c = __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
        if (c)
            json_array_append_new(a, json_pack("[I,I]", (json_int_t)i, (json_int_t)c));
    }
    return a;
}

static void lat_restore(rollout_latency_t *h, const json_t *a)
{
    size_t i;
    json_t *it;
    json_array_foreach(a, i, it)
    {
        json_int_t b = json_integer_value(json_array_get(it, 0)),
                   c = json_integer_value(json_array_get(it, 1));
        if (b >= 0 && b < ROLLOUT_LAT_BUCKETS && c > 0)
            __atomic_store_n(&h->counts[b], (unsigned long long)c, __ATOMIC_RELAXED);
    }
}

static json_int_t jcount(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? v : 0;
}

/* The live evidence of the current phase (per-arm requests, errors and latency
 * histograms, shadow counts), stored with every record so that a restart resumes it, adding
 * the store's records made from "at_ms" on (rebuild_evidence). A request in flight at that
 * instant (counted, not yet recorded: microseconds) may be counted twice or not at all. */
static json_t *stats_json(const dep_t *d)
{
    json_t *arms = json_array();
    for (int i = 0; i < 2; i++)
        json_array_append_new(
            arms, json_pack("{s:I,s:I,s:o}", "requests",
                            (json_int_t)__atomic_load_n(&d->arms[i].requests, __ATOMIC_RELAXED), "errors",
                            (json_int_t)__atomic_load_n(&d->arms[i].errors, __ATOMIC_RELAXED), "lat",
                            lat_json(&d->arms[i].lat)));
    const shadow_stats_t *sh = &d->shadow;
    json_t *o =
        json_pack("{s:o,s:{s:I,s:I,s:I,s:I,s:I,s:o}}", "arms", arms, "shadow", "jobs",
                  (json_int_t)__atomic_load_n(&sh->jobs, __ATOMIC_RELAXED), "rows",
                  (json_int_t)__atomic_load_n(&sh->rows, __ATOMIC_RELAXED), "agree",
                  (json_int_t)__atomic_load_n(&sh->agree, __ATOMIC_RELAXED), "errors",
                  (json_int_t)__atomic_load_n(&sh->errors, __ATOMIC_RELAXED), "dropped",
                  (json_int_t)__atomic_load_n(&sh->dropped, __ATOMIC_RELAXED), "lat", lat_json(&sh->lat));
    json_object_set_new(o, "at_ms", json_integer(util_now_ms()));
    return o;
}

static void stats_restore(dep_t *d, const json_t *st)
{
    const json_t *arms = json_object_get(st, "arms");
    for (int i = 0; i < 2; i++) {
        const json_t *a = json_array_get(arms, (size_t)i);
        __atomic_store_n(&d->arms[i].requests, (unsigned long long)jcount(a, "requests"), __ATOMIC_RELAXED);
        __atomic_store_n(&d->arms[i].errors, (unsigned long long)jcount(a, "errors"), __ATOMIC_RELAXED);
        lat_restore(&d->arms[i].lat, json_object_get(a, "lat"));
    }
    const json_t *sh = json_object_get(st, "shadow");
    __atomic_store_n(&d->shadow.jobs, (unsigned long long)jcount(sh, "jobs"), __ATOMIC_RELAXED);
    __atomic_store_n(&d->shadow.rows, (unsigned long long)jcount(sh, "rows"), __ATOMIC_RELAXED);
    __atomic_store_n(&d->shadow.agree, (unsigned long long)jcount(sh, "agree"), __ATOMIC_RELAXED);
    __atomic_store_n(&d->shadow.errors, (unsigned long long)jcount(sh, "errors"), __ATOMIC_RELAXED);
    __atomic_store_n(&d->shadow.dropped, (unsigned long long)jcount(sh, "dropped"), __ATOMIC_RELAXED);
    lat_restore(&d->shadow.lat, json_object_get(sh, "lat"));
    d->stats_at_ms = json_integer_value(json_object_get(st, "at_ms"));
}

static json_t *dep_json(const dep_t *d)
{
    json_t *perf = json_object();
    json_object_set_new(perf, "stable", arm_json(&d->arms[0]));
    json_object_set_new(perf, arm_name(d), arm_json(&d->arms[1]));
    unsigned long long rows = __atomic_load_n(&d->shadow.rows, __ATOMIC_RELAXED);
    unsigned long long agree = __atomic_load_n(&d->shadow.agree, __ATOMIC_RELAXED);
    unsigned long long serr = __atomic_load_n(&d->shadow.errors, __ATOMIC_RELAXED);
    unsigned long long jobs = __atomic_load_n(&d->shadow.jobs, __ATOMIC_RELAXED);
    json_object_set_new(perf, "shadow",
                        json_pack("{s:I,s:I,s:I,s:o,s:o,s:o}", "requests", (json_int_t)jobs, "rows",
                                  (json_int_t)rows, "dropped",
                                  (json_int_t)__atomic_load_n(&d->shadow.dropped, __ATOMIC_RELAXED),
                                  "agreement", rows ? json_real((double)agree / (double)rows) : json_null(),
                                  "error_rate", jobs ? json_real((double)serr / (double)jobs) : json_null(),
                                  "p95_latency_ms", jnum(rollout_latency_quantile_ms(&d->shadow.lat, 0.95))));
    /* Deep copies: the caller serialises the answer after the mutex is released, while the
     * controller goes on appending to the live timeline and checks. */
    if (d->last_checks)
        json_object_set_new(perf, "last_check", json_deep_copy(d->last_checks));
    if (d->restored) /* what of this phase's evidence a restart rebuilt, and what not */
        json_object_set_new(perf, "restored_after_restart", json_deep_copy(d->restored));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:o,s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:o,s:b}", "deployment_id",
                  d->id, "model", d->model, "version", d->version, "strategy", d->strategy, "mode", d->mode,
                  "status", d->status, "traffic_percentage", d->traffic, "current_stage",
                  d->stage >= 0 ? json_integer(d->stage) : json_null(), "started_at", iso(d->started_ms),
                  "completed_at", iso(d->completed_ms), "validation_tests", json_deep_copy(d->tests),
                  "performance_metrics",
                  perf, "rollback_triggered", d->rollback_triggered, "rollback_reason",
                  d->rollback_reason[0] ? json_string(d->rollback_reason) : json_null(), "timeline",
                  json_deep_copy(d->timeline), "config", rollout_config_to_json(&d->cfg), "active", d->active);
    json_object_set_new(o, "previous_version",
                        d->prev_version[0] ? json_string(d->prev_version) : json_null());
    json_object_set_new(o, "awaiting_promotion", json_boolean(d->awaiting_promote));
    json_object_set_new(o, "awaiting_evidence", json_boolean(d->awaiting_evidence));
    json_object_set_new(o, "rollback_available_until", iso(d->window_until_ms));
    /* the previous stable version is loaded, so a rollback is a switch, not a deployment */
    json_object_set_new(o, "previous_version_loaded", json_boolean(d->prev_stable != NULL));
    if (d->frozen_perf) /* not the zeros of arms that no longer run */
        json_object_set_new(o, "performance_metrics", json_deep_copy(d->frozen_perf));
    /* controller state for restarts */
    if (json_array_size(d->late_audit) > 0)
        json_object_set_new(o, "_late_audit", json_deep_copy(d->late_audit));
    json_object_set_new(o, "_state",
                        json_pack("{s:i,s:I,s:I,s:I,s:I,s:s,s:f,s:I}", "phase", d->phase, "started_ms",
                                  (json_int_t)d->started_ms, "phase_started_ms",
                                  (json_int_t)d->phase_started_ms, "paused_elapsed_ms",
                                  (json_int_t)d->paused_elapsed_ms, "completed_ms",
                                  (json_int_t)d->completed_ms, "paused_from", d->paused_from,
                                  "stable_p95_ref", isfinite(d->stable_p95_ref) ? d->stable_p95_ref : -1.0,
                                  "window_until_ms", (json_int_t)d->window_until_ms));
    if (d->active && (d->phase == PH_SHADOW || d->phase == PH_STAGE || d->phase == PH_BG_WATCH))
        json_object_set_new(json_object_get(o, "_state"), "stats", stats_json(d));
    return o;
}

/* The series of model (and version, for traffic), created on first use; NULL when the
 * metrics slot space or memory is exhausted. Caller holds mu. */
static gauge_series_t *gauge(rollout_t *r, bool traffic, const char *model, const char *version)
{
    for (size_t i = 0; i < r->n_gauges; i++) {
        gauge_series_t *g = &r->gauges[i];
        if (g->traffic == traffic && strcmp(g->model, model) == 0 && strcmp(g->version, version) == 0)
            return g;
    }
    if (r->n_gauges == r->cap_gauges) {
        size_t cap = r->cap_gauges ? 2 * r->cap_gauges : 16;
        gauge_series_t *n = realloc(r->gauges, cap * sizeof(*n));
        if (!n)
            return NULL;
        r->gauges = n;
        r->cap_gauges = cap;
    }
    char m[260], v[260], lv[540];
    metrics_escape(model, m, sizeof(m));
    metrics_escape(version, v, sizeof(v));
    if (traffic)
        snprintf(lv, sizeof(lv), "model=\"%s\",version=\"%s\"", m, v);
    else
        snprintf(lv, sizeof(lv), "model=\"%s\"", m);
    uint32_t slot = metrics_series(traffic ? r->f_traffic : r->f_stage, lv);
    if (slot == UINT32_MAX)
        return NULL;
    gauge_series_t *g = &r->gauges[r->n_gauges++];
    snprintf(g->model, sizeof(g->model), "%s", model);
    snprintf(g->version, sizeof(g->version), "%s", version);
    g->traffic = traffic;
    g->slot = slot;
    g->want = 0;
    g->stable = false;
    return g;
}

static void want_stable(const char *model, const char *version, void *arg)
{
    gauge_series_t *g = gauge(arg, true, model, version);
    if (g) {
        g->want = 100;
        g->stable = true;
    }
}

/* deployment_stage and deployment_traffic_percent, computed whole from what serves now:
 * each model's stable version in the registry serves 100 % unless an active deployment
 * splits its traffic (the candidate its share, the stable version the rest); every other
 * version ever shown gets 0, and so does the stage of a model with no canary stage
 * running. So a rollback, a promotion, a stable version set by another process or a late
 * save of an old deployment can not leave a stale value behind. Caller holds mu. */
static void refresh_gauges(rollout_t *r)
{
    for (size_t i = 0; i < r->n_gauges; i++) {
        r->gauges[i].want = 0;
        r->gauges[i].stable = false;
    }
    model_registry_each_stable(r->registry, want_stable, r);
    for (size_t i = 0; i < r->n_deps; i++) {
        dep_t *d = r->deps[i];
        if (!d->active)
            continue;
        gauge_series_t *g = gauge(r, false, d->model, "");
        if (g && d->phase == PH_STAGE)
            g->want = d->stage + 1;
        if (atomic_load(&d->route_mode) != ROUTE_SPLIT)
            continue;
        for (size_t j = 0; j < r->n_gauges; j++) {
            gauge_series_t *t = &r->gauges[j];
            if (t->traffic && t->stable && strcmp(t->model, d->model) == 0)
                t->want = 100 - d->traffic; /* the stable version serves the rest */
        }
        if ((g = gauge(r, true, d->model, d->version)) != NULL)
            g->want = d->traffic;
    }
    for (size_t i = 0; i < r->n_gauges; i++)
        metrics_gauge_set(r->gauges[i].slot, r->gauges[i].want);
}

/* Stores the events still pending, oldest first; stops at the first failure. */
static int flush_events(rollout_t *r, dep_t *d)
{
    while (json_array_size(d->pending_events) > 0) {
        json_t *p = json_array_get(d->pending_events, 0); /* [ms, event] */
        int rc = store_deployment_event_add(r->store, d->id, json_integer_value(json_array_get(p, 0)),
                                            json_array_get(p, 1));
        if (rc < 0)
            return rc;
        json_array_remove(d->pending_events, 0);
    }
    return 0;
}

/* A change of d (its record or an event) is not in the store yet. */
static bool unstored(const dep_t *d)
{
    return d->unsaved || json_array_size(d->pending_events) > 0;
}

/* The store does not take a write now: no step forward is taken that would hold in this
 * process alone (review47 #4, review48 #2). A store still busy after WRITE_PROBE_WAIT_MS
 * refuses too: under prediction traffic a probe that gave up at once passed while the disk
 * was full (review51 #2). 0, or the probe's error (-EBUSY: busy). Caller holds mu. */
static int store_refuses_writes(rollout_t *r)
{
    int64_t now = util_now_ms();
    if (r->probe_failed_ms && now >= r->probe_failed_ms && now - r->probe_failed_ms < WRITE_PROBE_RETRY_MS)
        return r->probe_rc; /* failed less than a second ago (review51 #5) */
    int rc = store_ping_write(r->store, WRITE_PROBE_WAIT_MS);
    r->probe_failed_ms = rc < 0 ? now : 0;
    r->probe_rc = rc < 0 ? rc : 0;
    return r->probe_rc;
}

/* The record, after the pending events. 0, or <0 with d->unsaved set. */
static int store_record(rollout_t *r, dep_t *d)
{
    int rc = flush_events(r, d);
    if (rc == 0) {
        json_t *rec = dep_json(d);
        rc = store_deployment_put(r->store, d->id, d->model, d->version, d->strategy, d->status, d->active, rec,
                                  d->started_ms);
        json_decref(rec);
    }
    bool was = d->unsaved;
    d->unsaved = rc < 0;
    d->retry_ms = util_now_ms() + 1000;
    if (rc < 0 && !was)
        log_msg(LOG_ERROR, "deployment record not stored; retrying every second", "{s:s,s:s}", "deployment_id",
                d->id, "error", strerror(-rc));
    else if (rc == 0 && was)
        log_msg(LOG_WARNING, "deployment record stored after a failure", "{s:s}", "deployment_id", d->id);
    return rc;
}

static const char UNSAVED_MSG[] =
    "the change is in effect in this server but could not be made durable (the database or the audit trail is "
    "unavailable; see the server log); the server keeps trying to store it: check the deployment before "
    "relying on it";

/* An API call's audit records: queued under mu (in order with the controller's); the call
 * is acknowledged by its ack callback once they are durable, so an fdatasync that takes long
 * holds no lock, no HTTP worker and no other deployment call. Freed by whichever of api_end
 * and the last record's callback comes second (decided under its mu). */
typedef struct api_wait {
    pthread_mutex_t mu;
    int pending;
    bool failed, armed; /* armed: api_end has returned ROLLOUT_PENDING */
    rollout_ack_fn ack;
    void *ack_arg;
    int rc;        /* the call's own result (0, or an error found after its records were queued) */
    char err[512]; /* and its message */
} api_wait_t;

static void api_wait_free(api_wait_t *w)
{
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* One of w's records is written (failed: not). The last one of an armed call acknowledges it. */
static void api_wait_done(api_wait_t *w, bool failed)
{
    pthread_mutex_lock(&w->mu);
    w->failed |= failed;
    bool last = --w->pending == 0 && w->armed;
    pthread_mutex_unlock(&w->mu);
    if (!last)
        return;
    if (w->ack)
        w->ack(w->ack_arg, w->rc < 0 ? w->rc : w->failed ? -EIO : 0,
               w->rc < 0 ? w->err : w->failed ? UNSAVED_MSG : "");
    api_wait_free(w);
}

typedef struct audit_cb {
    rollout_t *r;
    char dep_id[32];
    json_t *ev;
    api_wait_t *w; /* NULL for the controller's own records */
} audit_cb_t;

/* The audit writer's thread: a failed record goes back to be audited late (the controller
 * moves it to its deployment, see take_failed_audits); an API call waiting for it learns the
 * outcome. Never takes mu. */
static void audit_written(void *arg, int status)
{
    audit_cb_t *cb = arg;
    rollout_t *r = cb->r;
    if (status < 0) {
        pthread_mutex_lock(&r->amu);
        if (!r->audit_failed)
            r->audit_failed = json_array();
        json_array_append_new(r->audit_failed, json_pack("[s,O]", cb->dep_id, cb->ev));
        pthread_mutex_unlock(&r->amu);
    }
    json_decref(cb->ev);
    atomic_fetch_sub(&r->audit_inflight, 1);
    if (cb->w)
        api_wait_done(cb->w, status < 0);
    free(cb);
}

static dep_t *find_dep(rollout_t *r, const char *id);
static int store_record(rollout_t *r, dep_t *d);

/* Controller: controller audit records that failed after being queued join their
 * deployment's late audits (stored with its record, so a restart does not lose them). */
static void take_failed_audits(rollout_t *r)
{
    pthread_mutex_lock(&r->amu);
    json_t *failed = r->audit_failed;
    r->audit_failed = NULL;
    pthread_mutex_unlock(&r->amu);
    size_t i;
    json_t *it;
    json_array_foreach(failed, i, it)
    {
        dep_t *d = find_dep(r, json_string_value(json_array_get(it, 0)));
        if (!d) {
            log_msg(LOG_CRITICAL, "deployment audit event lost: its deployment is gone", "{s:s}", "deployment_id",
                    json_string_value(json_array_get(it, 0)));
            continue;
        }
        if (!d->late_audit)
            d->late_audit = json_array();
        json_array_append(d->late_audit, json_array_get(it, 1));
        store_record(r, d);
    }
    json_decref(failed);
}

/* One DEPLOYMENT_<EVENT> audit record for ev. outcome "failure" (with "stored": false in the
 * detail) when the change is in effect but not stored; late: written after the fact, once the
 * store and the trail took it. from_api: durable (fdatasync) even with AUDIT_DURABILITY=async,
 * and the API call in progress (r->api_wait) is acknowledged once it is. 0 when queued,
 * <0 when it could not be (a failure after queueing comes back through audit_written). */
static int audit_event(rollout_t *r, dep_t *d, json_t *ev, bool stored, bool late, bool from_api)
{
    const char *event = json_string_value(json_object_get(ev, "event"));
    char type[96]; /* longer than the audit limit (64): a name past it is refused, not cut */
    snprintf(type, sizeof(type), "DEPLOYMENT_%s", event ? event : "");
    for (char *c = type; *c; c++)
        *c = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32) : (*c == '-' || *c == ' ') ? '_' : *c;
    json_t *detail = json_copy(ev);
    if (!stored)
        json_object_set_new(detail, "stored", json_false());
    if (late)
        json_object_set_new(detail, "recorded_late", json_true());
    audit_event_t aev = {.type = type,
                         .user = json_string_value(json_object_get(ev, "actor")),
                         .action = "U",
                         .entity_type = "deployment",
                         .entity_id = d->id,
                         .outcome = stored ? "success" : "failure",
                         .detail = detail};
    int rc;
    if (!r->audit || !audit_log_healthy(r->audit)) {
        rc = -EIO;
    } else {
        /* queued: the callback tells whether it was written; a failure comes back to be
         * audited late, and the controller holds candidates while any is outstanding */
        audit_cb_t *cb = malloc(sizeof(*cb));
        rc = -ENOMEM;
        if (cb) {
            cb->r = r;
            snprintf(cb->dep_id, sizeof(cb->dep_id), "%s", d->id);
            cb->ev = json_incref(ev);
            cb->w = from_api ? r->api_wait : NULL;
            if (cb->w) {
                pthread_mutex_lock(&cb->w->mu);
                cb->w->pending++;
                pthread_mutex_unlock(&cb->w->mu);
            }
            atomic_fetch_add(&r->audit_inflight, 1);
            rc = from_api ? audit_log_submit_durable(r->audit, &aev, audit_written, cb)
                          : audit_log_submit(r->audit, &aev, audit_written, cb);
            if (rc < 0) {
                atomic_fetch_sub(&r->audit_inflight, 1);
                if (cb->w) {
                    pthread_mutex_lock(&cb->w->mu);
                    cb->w->pending--; /* not armed yet: api_end runs after save() */
                    pthread_mutex_unlock(&cb->w->mu);
                }
                json_decref(cb->ev);
                free(cb);
            }
        }
    }
    json_decref(detail);
    return rc;
}

/* Audits, as written late, the events whose change was not stored or not audited when it was
 * made: once the record is stored and the trail is writable again (controller, every tick). */
static void audit_late(rollout_t *r, dep_t *d)
{
    bool removed = false;
    while (json_array_size(d->late_audit) > 0 && !unstored(d) &&
           r->audit && audit_log_healthy(r->audit)) {
        if (audit_event(r, d, json_array_get(d->late_audit, 0), true, true, false) < 0)
            break;
        json_array_remove(d->late_audit, 0);
        removed = true;
    }
    if (removed)
        store_record(r, d); /* the stored list of late audits shrinks too */
}

/* Writes the record (and an event when event != NULL), then audits the event: "success" only
 * when the change is stored. A change made through the API (actor other than the controller)
 * has its audit record durable before the call is acknowledged (api_end, then the record's
 * callback); the controller's own are queued. On
 * any failure r->save_failures counts it (the API answers 503: not acknowledged), the store
 * write is retried by the controller, and the event is audited again ("recorded_late") once
 * both took it. The change is in effect in this process either way (a rollback stops
 * traffic at once). Caller holds mu. */
static int save_ex(rollout_t *r, dep_t *d, const char *event, const char *actor, const char *reason,
                   const json_t *extra)
{
    int64_t now = util_now_ms();
    json_t *ev = NULL;
    if (event) {
        ev = json_pack("{s:o,s:s,s:s,s:s,s:s,s:f}", "at", iso(now), "event", event, "actor",
                       actor ? actor : "controller", "status", d->status, "mode", d->mode, "traffic_percentage",
                       d->traffic);
        if (reason)
            json_object_set_new(ev, "reason", json_string(reason));
        if (extra) /* e.g. a model rollback's from_version/to_version, in the event and its audit */
            json_object_update(ev, (json_t *)extra);
        json_array_append(d->timeline, ev);
        if (!d->pending_events)
            d->pending_events = json_array();
        json_array_append_new(d->pending_events, json_pack("[I,O]", (json_int_t)now, ev));
        log_msg(LOG_INFO, "deployment", "{s:s,s:s,s:s,s:s,s:s,s:f}", "deployment_id", d->id, "model",
                d->model, "event", event, "status", d->status, "actor", actor ? actor : "controller",
                "traffic", d->traffic);
    }
    bool stored = store_record(r, d) == 0, audited = true;
    if (ev && r->audit) {
        /* audit (issue 5): every deployment state change */
        audited = audit_event(r, d, ev, stored, false, actor && strcmp(actor, "controller") != 0) == 0;
        if (!stored || !audited) {
            if (!d->late_audit)
                d->late_audit = json_array();
            json_array_append(d->late_audit, ev);
            if (stored)
                store_record(r, d); /* kept with the record: a restart audits it */
        }
        if (!audited)
            log_msg(LOG_ERROR, "deployment audit event not written; written late once the trail recovers",
                    "{s:s,s:s}", "deployment_id", d->id, "event", event);
    }
    json_decref(ev);
    refresh_gauges(r);
    if (!stored || !audited)
        r->save_failures++;
    return stored && audited ? 0 : -EIO;
}

static int save(rollout_t *r, dep_t *d, const char *event, const char *actor, const char *reason)
{
    return save_ex(r, d, event, actor, reason, NULL);
}

/* mode NULL (or d->mode itself): the mode stays. */
static void set_state(dep_t *d, const char *status, const char *mode)
{
    snprintf(d->status, sizeof(d->status), "%s", status);
    if (mode && mode != d->mode) /* snprintf onto its own source is undefined (glibc writes "") */
        snprintf(d->mode, sizeof(d->mode), "%s", mode);
}

/* Routing changes: caller holds mu. */
static void set_route(rollout_t *r, dep_t *d, int mode, double pct)
{
    int old = atomic_load(&d->route_mode);
    pthread_rwlock_wrlock(&r->rw);
    atomic_store(&d->traffic_bp, (unsigned)lround(pct * 100));
    atomic_store(&d->route_mode, mode);
    pthread_rwlock_unlock(&r->rw);
    if (old == ROUTE_NONE && mode != ROUTE_NONE)
        atomic_fetch_add(&r->n_routing, 1);
    else if (old != ROUTE_NONE && mode == ROUTE_NONE)
        atomic_fetch_sub(&r->n_routing, 1);
    d->traffic = mode == ROUTE_SPLIT ? pct : 0;
}

static void reset_stats(dep_t *d)
{
    d->awaiting_evidence = false;
    json_decref(d->restored); /* a new phase, measured in this process */
    d->restored = NULL;
    atomic_fetch_add(&d->epoch, 1);
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&d->arms[i].requests, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&d->arms[i].errors, 0, __ATOMIC_RELAXED);
        rollout_latency_reset(&d->arms[i].lat);
    }
}

static void drop_candidate(rollout_t *r, dep_t *d)
{
    pthread_rwlock_wrlock(&r->rw);
    model_handle_t *h = d->cand;
    d->cand = NULL;
    pthread_rwlock_unlock(&r->rw);
    model_handle_unref(h);
}

static void finish(rollout_t *r, dep_t *d, const char *status, const char *mode, const char *event,
                   const char *actor, const char *reason)
{
    set_route(r, d, ROUTE_NONE, 0);
    if (strcmp(status, "stable") == 0)
        d->traffic = 100;
    d->active = false;
    d->awaiting_promote = d->awaiting_evidence = false;
    d->phase = PH_DONE;
    d->stage = -1;
    d->completed_ms = util_now_ms();
    set_state(d, status, mode);
    drop_candidate(r, d);
    save(r, d, event, actor, reason);
}

/* Immediate rollback: all traffic back to stable at once, candidate unloaded. */
static void do_rollback(rollout_t *r, dep_t *d, const char *actor, const char *reason)
{
    set_route(r, d, ROUTE_NONE, 0); /* first: no new request reaches the candidate */
    d->rollback_triggered = true;
    snprintf(d->rollback_reason, sizeof(d->rollback_reason), "%s", reason);
    finish(r, d, "rolled_back", "rollback", "rolled_back", actor, reason);
}

/* The candidate becomes stable; the previous stable stays loaded for the window. */
static int make_stable(rollout_t *r, dep_t *d, const char *actor, const char *why)
{
    model_handle_t *prev = model_registry_acquire(r->registry, d->model, NULL, NULL);
    int rc = store_model_set_stable(r->store, d->model, d->version);
    if (rc < 0) {
        model_handle_unref(prev);
        return rc;
    }
    model_registry_sync(r->registry);
    model_handle_unref(d->prev_stable);
    d->prev_stable = prev;
    d->window_until_ms = util_now_ms() + d->cfg.rollback_window_ms;
    finish(r, d, "stable", "stable", "promoted_to_stable", actor, why);
    return 0;
}

/* Appends under the rwlock too: the hot path walks deps[] holding only the read lock. */
static void add_dep(rollout_t *r, dep_t *d)
{
    pthread_rwlock_wrlock(&r->rw);
    r->deps[r->n_deps++] = d;
    pthread_rwlock_unlock(&r->rw);
}

static dep_t *find_dep(rollout_t *r, const char *id)
{
    for (size_t i = 0; i < r->n_deps; i++)
        if (strcmp(r->deps[i]->id, id) == 0)
            return r->deps[i];
    return NULL;
}

static dep_t *active_for_model(rollout_t *r, const char *model)
{
    for (size_t i = 0; i < r->n_deps; i++)
        if (r->deps[i]->active && strcmp(r->deps[i]->model, model) == 0)
            return r->deps[i];
    return NULL;
}

static void dep_free(dep_t *d)
{
    if (!d)
        return;
    model_handle_unref(d->cand);
    model_handle_unref(d->prev_stable);
    json_decref(d->tests);
    json_decref(d->timeline);
    json_decref(d->last_checks);
    json_decref(d->pending_events);
    json_decref(d->late_audit);
    json_decref(d->frozen_perf);
    json_decref(d->restored);
    free(d);
}

/* Loads the candidate version's own handle (unloaded on rollback by dropping it). */
/* 0 with *ret, -ENOENT (not registered), -EINVAL (registered but does not load) or -EIO (the
 * registry could not be read); err says which. */
static int open_version(rollout_t *r, const char *model, const char *version, model_handle_t **ret, char *err,
                        size_t n)
{
    json_t *list = NULL;
    model_handle_t *h = NULL;
    *ret = NULL;
    if (store_model_list(r->store, &list) < 0) {
        snprintf(err, n, "cannot read the model registry");
        return -EIO;
    }
    size_t i;
    json_t *it, *row = NULL;
    json_array_foreach(list, i, it)
    {
        const char *nm = json_string_value(json_object_get(it, "name"));
        const char *v = json_string_value(json_object_get(it, "version"));
        if (nm && v && strcmp(nm, model) == 0 && strcmp(v, version) == 0)
            row = it;
    }
    int rc = 0;
    if (!row) {
        snprintf(err, n, "model '%s' has no registered version '%s'", model, version);
        rc = -ENOENT;
    } else if (model_registry_open_version(r->registry, row, &h, err, n) < 0) {
        /* opened and checked as serve does: where it loads from (review71 #2), the registered
         * name, version and booster sha256 (review72 #1: a swapped booster was deployed) */
        h = NULL;
        rc = -EINVAL;
    }
    json_decref(list);
    *ret = h;
    return rc;
}

static model_handle_t *load_version(rollout_t *r, const char *model, const char *version, char *err, size_t n)
{
    model_handle_t *h;
    open_version(r, model, version, &h, err, n);
    return h;
}

/* ---- hot path ---------------------------------------------------------------------- */

void rollout_route(rollout_t *r, const char *model, const char *patient_id, const char *request_id,
                   rollout_route_t *rt)
{
    rt->arm = "stable";
    if (!r || atomic_load_explicit(&r->n_routing, memory_order_relaxed) == 0)
        return;
    pthread_rwlock_rdlock(&r->rw);
    for (size_t i = 0; i < r->n_deps; i++) {
        dep_t *d = r->deps[i];
        int mode = atomic_load_explicit(&d->route_mode, memory_order_acquire);
        if (mode == ROUTE_NONE || !d->cand || strcmp(d->model, model) != 0)
            continue;
        rt->dep = d;
        rt->epoch = atomic_load_explicit(&d->epoch, memory_order_relaxed);
        if (mode == ROUTE_SHADOW) {
            rt->shadow = true;
            break;
        }
        unsigned bp = atomic_load_explicit(&d->traffic_bp, memory_order_relaxed);
        const char *key = patient_id ? patient_id : request_id;
        if (bp >= 10000 || rollout_bucket(d->id, key) < bp) {
            rt->handle = model_handle_ref(d->cand);
            rt->arm = arm_name(d);
            if (r->fault.version[0] && strcmp(r->fault.version, d->version) == 0) {
                rt->fault_delay_ms = r->fault.delay_ms;
                rt->fault_fail = r->fault.error_rate > 0 && rollout_bucket("fault", request_id) <
                                                                (unsigned)(r->fault.error_rate * 10000);
            }
        }
        break;
    }
    pthread_rwlock_unlock(&r->rw);
}

int rollout_fault(const rollout_route_t *rt)
{
    if (rt->fault_delay_ms > 0) {
        struct timespec ts = {rt->fault_delay_ms / 1000, (long)(rt->fault_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return rt->fault_fail ? -EIO : 0;
}

void rollout_observe(rollout_route_t *rt, double seconds, bool failed)
{
    dep_t *d = rt->dep;
    if (!d || atomic_load_explicit(&d->epoch, memory_order_relaxed) != rt->epoch)
        return;
    /* in a shadow phase the stable version answers (rt->handle NULL): its arm counts, as in a
     * stage; the candidate's copies are counted by the shadow thread */
    arm_stats_t *a = &d->arms[rt->handle ? 1 : 0];
    __atomic_fetch_add(&a->requests, 1, __ATOMIC_RELAXED);
    if (failed)
        __atomic_fetch_add(&a->errors, 1, __ATOMIC_RELAXED);
    else
        rollout_latency_observe(&a->lat, seconds);
}

void rollout_route_done(rollout_route_t *rt)
{
    model_handle_unref(rt->handle);
    rt->handle = NULL;
}

void rollout_shadow_submit(rollout_t *r, const rollout_route_t *rt, const float *rows, size_t n_rows,
                           size_t nf, const float *stable_out, size_t no, double stable_seconds)
{
    (void)stable_seconds;
    dep_t *d = rt->dep;
    if (!r || !d || !rt->shadow)
        return;
    shadow_job_t job = {d, NULL, NULL, NULL, n_rows, nf, no};
    pthread_mutex_lock(&r->qmu);
    bool full = r->qlen == SHADOW_QUEUE || r->qstop;
    pthread_mutex_unlock(&r->qmu);
    if (full)
        goto drop;
    pthread_rwlock_rdlock(&r->rw);
    job.h = atomic_load(&d->route_mode) == ROUTE_SHADOW ? model_handle_ref(d->cand) : NULL;
    pthread_rwlock_unlock(&r->rw);
    if (!job.h)
        return;
    job.rows = malloc(sizeof(float) * n_rows * nf);
    job.stable_out = malloc(sizeof(float) * n_rows * no);
    if (!job.rows || !job.stable_out)
        goto drop_job;
    memcpy(job.rows, rows, sizeof(float) * n_rows * nf);
    memcpy(job.stable_out, stable_out, sizeof(float) * n_rows * no);
    pthread_mutex_lock(&r->qmu);
    if (r->qlen == SHADOW_QUEUE || r->qstop) {
        pthread_mutex_unlock(&r->qmu);
        goto drop_job;
    }
    r->queue[(r->qhead + r->qlen++) % SHADOW_QUEUE] = job;
    pthread_cond_signal(&r->qcond);
    pthread_mutex_unlock(&r->qmu);
    return;
drop_job:
    free(job.rows);
    free(job.stable_out);
    model_handle_unref(job.h);
drop:
    __atomic_fetch_add(&d->shadow.dropped, 1, __ATOMIC_RELAXED);
    if (r->m_dropped != UINT32_MAX)
        metrics_counter_add(r->m_dropped, 1);
}

/* Same decision? Each version decides under its own manifest: binary: the class each
 * one's own threshold gives (cm for the candidate's output a, sm for the stable version's b;
 * sm NULL = the candidate's threshold); multiclass: same argmax; regression: within 1%
 * (relative) or 1e-6. */
static bool agrees(const model_manifest_t *cm, const model_manifest_t *sm, const float *a, const float *b,
                   size_t no)
{
    if (cm->task == MODEL_TASK_BINARY)
        return (a[0] >= cm->threshold) == (b[0] >= (sm ? sm->threshold : cm->threshold));
    if (cm->task == MODEL_TASK_MULTICLASS) {
        size_t ia = 0, ib = 0;
        for (size_t k = 1; k < no; k++) {
            if (a[k] > a[ia])
                ia = k;
            if (b[k] > b[ib])
                ib = k;
        }
        return ia == ib;
    }
    return fabs((double)a[0] - b[0]) <= fmax(1e-6, 0.01 * fabs((double)b[0]));
}

static void *shadow_main(void *arg)
{
    rollout_t *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->qmu);
        while (r->qlen == 0 && !r->qstop)
            pthread_cond_wait(&r->qcond, &r->qmu);
        if (r->qlen == 0 && r->qstop) {
            pthread_mutex_unlock(&r->qmu);
            return NULL;
        }
        shadow_job_t job = r->queue[r->qhead];
        r->qhead = (r->qhead + 1) % SHADOW_QUEUE;
        r->qlen--;
        pthread_mutex_unlock(&r->qmu);

        dep_t *d = job.dep;
        const model_manifest_t *m = model_handle_manifest(job.h);
        size_t no = model_handle_outputs(job.h);
        float *out = malloc(sizeof(float) * job.n_rows * (no ? no : 1));
        char perr[128];
        int64_t t0 = util_mono_ns();
        int rc = (!out || m->n_features != job.nf || no != job.no)
                     ? -EINVAL
                     : model_handle_predict(job.h, job.rows, job.n_rows, out, perr, sizeof(perr));
        double secs = (double)(util_mono_ns() - t0) / 1e9;
        __atomic_fetch_add(&d->shadow.jobs, 1, __ATOMIC_RELAXED);
        if (rc < 0) {
            __atomic_fetch_add(&d->shadow.errors, 1, __ATOMIC_RELAXED);
        } else {
            rollout_latency_observe(&d->shadow.lat, secs);
            /* The stable outputs were made by the serving version, under its threshold */
            model_handle_t *sh = model_registry_acquire(r->registry, d->model, NULL, NULL);
            const model_manifest_t *sm = sh ? model_handle_manifest(sh) : NULL;
            if (sm && sm->task != m->task)
                sm = NULL;
            unsigned long long ag = 0;
            for (size_t i = 0; i < job.n_rows; i++)
                ag += agrees(m, sm, out + i * no, job.stable_out + i * no, no);
            model_handle_unref(sh);
            __atomic_fetch_add(&d->shadow.rows, job.n_rows, __ATOMIC_RELAXED);
            __atomic_fetch_add(&d->shadow.agree, ag, __ATOMIC_RELAXED);
        }
        free(out);
        free(job.rows);
        free(job.stable_out);
        model_handle_unref(job.h);
    }
}

/* ---- controller ------------------------------------------------------------------------ */

static void add_test(dep_t *d, json_t *t)
{
    json_array_append_new(d->tests, t);
}

/* The live accuracy gate on correct of labels: fails only when the one-sided 95% Wilson
 * upper bound is below min_accuracy; the bound goes into the check, the test entry and the reason. */
static void accuracy_check(dep_t *d, json_t *checks, const char *prefix, unsigned long long correct,
                           unsigned long long labels, bool final, bool *ok, char *reason, size_t n)
{
    double thr = d->cfg.min_accuracy, acc = (double)correct / (double)labels;
    double ub = rollout_wilson_upper95(correct, labels);
    bool pass = !(ub < thr);
    char name[96];
    snprintf(name, sizeof(name), "%s_accuracy", prefix);
    json_object_set_new(checks, "accuracy",
                        json_pack("{s:f,s:f,s:b,s:I,s:I,s:f,s:s}", "score", acc, "threshold", thr, "passed",
                                  pass, "labels", (json_int_t)labels, "correct", (json_int_t)correct,
                                  "upper_bound_95", ub, "rule",
                                  "fails when the one-sided 95% Wilson upper bound < threshold"));
    if (final || !pass) {
        json_t *t = rollout_gate_test(name, "live", acc, thr, true, pass);
        json_object_set_new(t, "labels", json_integer((json_int_t)labels));
        json_object_set_new(t, "correct", json_integer((json_int_t)correct));
        json_object_set_new(t, "upper_bound_95", json_real(ub));
        add_test(d, t);
    }
    if (!pass && *ok) {
        *ok = false;
        snprintf(
            reason, n,
            "gate %s failed: accuracy %.4f (%llu of %llu labels), one-sided 95%% upper bound %.4f < %.4f",
            name, acc, correct, labels, ub, thr);
    }
}

/* Blue/green. The stable version serves nothing during the watch, so its p95 reference
 * is its recorded request latency (predictions.latency_ms, arm "stable") over the BG_REF_WINDOW
 * before the switch, asked once per process; green's p95 is the same measure since the switch.
 * Returns green's p95 (NAN: none yet) and notes both in checks. */
#define BG_REF_WINDOW_MS (15 * 60 * 1000)
static void bg_reference(rollout_t *r, dep_t *d)
{
    if (isfinite(d->stable_p95_ref) || d->ref_queried || !d->prev_version[0])
        return;
    double p95 = NAN;
    long nref = 0;
    if (store_deployment_latency_p95(r->store, d->model, d->prev_version, "stable",
                                     d->phase_started_ms - BG_REF_WINDOW_MS, d->phase_started_ms, 0, &p95,
                                     &nref) < 0)
        return; /* the store failed: asked again at the next check */
    d->ref_queried = true;
    d->ref_n = nref;
    if (nref >= d->cfg.min_requests && isfinite(p95))
        d->stable_p95_ref = p95;
}

static double bg_latency(rollout_t *r, dep_t *d, json_t *checks)
{
    bg_reference(r, d);
    double p95 = NAN;
    long n = 0;
    if (store_deployment_latency_p95(r->store, d->model, d->version, "green", d->phase_started_ms,
                                     util_now_ms() + 1, 0, &p95, &n) < 0)
        p95 = NAN;
    json_object_set_new(checks, "stable_p95_reference",
                        isfinite(d->stable_p95_ref)
                            ? json_pack("{s:f,s:s}", "p95_ms", d->stable_p95_ref, "source",
                                        "recorded latency of the stable version before the switch")
                            : json_pack("{s:n,s:I,s:i,s:s}", "p95_ms", "stable_predictions",
                                        (json_int_t)d->ref_n, "needed", d->cfg.min_requests, "source",
                                        "none: too few recorded stable predictions in the 15 minutes before "
                                        "the switch; the watch does not end (promote or roll back by hand)"));
    json_object_set_new(checks, "green_p95_ms", jnum(p95));
    return p95;
}

/* Checks live arm figures; returns false with reason when a gate fails. final: the
 * stage/window is ending (records the verdicts as validation tests). */
static bool live_checks(rollout_t *r, dep_t *d, bool final, char *reason, size_t n)
{
    const rollout_config_t *c = &d->cfg;
    json_t *checks = json_object();
    bool ok = true;
    char prefix[48];
    if (d->phase == PH_SHADOW)
        snprintf(prefix, sizeof(prefix), "shadow");
    else if (d->phase == PH_STAGE)
        snprintf(prefix, sizeof(prefix), "canary_stage_%g", c->stages[d->stage]);
    else
        snprintf(prefix, sizeof(prefix), "blue_green_watch");
    char name[96];
#define CHECK(suffix, score, thr, is_min)                                                                    \
    do {                                                                                                     \
        double s_ = (score), t_ = (thr);                                                                     \
        bool p_ = is_min ? s_ >= t_ : s_ <= t_;                                                              \
        snprintf(name, sizeof(name), "%s_%s", prefix, suffix);                                               \
        json_object_set_new(checks, suffix,                                                                  \
                            json_pack("{s:f,s:f,s:b}", "score", s_, "threshold", t_, "passed", p_));         \
        if (final || !p_)                                                                                    \
            add_test(d, rollout_gate_test(name, "live", s_, t_, is_min, p_));                                \
        if (!p_ && ok) {                                                                                     \
            ok = false;                                                                                      \
            snprintf(reason, n, "gate %s failed: %s %.4f %s %.4f", name, suffix, s_, is_min ? "<" : ">",     \
                     t_);                                                                                    \
        }                                                                                                    \
    } while (0)

    if (d->phase == PH_SHADOW) {
        unsigned long long jobs = __atomic_load_n(&d->shadow.jobs, __ATOMIC_RELAXED);
        unsigned long long rows = __atomic_load_n(&d->shadow.rows, __ATOMIC_RELAXED);
        unsigned long long agree = __atomic_load_n(&d->shadow.agree, __ATOMIC_RELAXED);
        unsigned long long errs = __atomic_load_n(&d->shadow.errors, __ATOMIC_RELAXED);
        if (jobs > 0 && jobs >= (unsigned long long)c->min_requests) {
            CHECK("error_rate", (double)errs / (double)jobs, c->max_error_rate, false);
            if (rows)
                CHECK("agreement", (double)agree / (double)rows, c->min_shadow_agreement, true);
        }
    } else {
        const arm_stats_t *sa = &d->arms[0], *ca = &d->arms[1];
        unsigned long long creq = __atomic_load_n(&ca->requests, __ATOMIC_RELAXED);
        unsigned long long cerr = __atomic_load_n(&ca->errors, __ATOMIC_RELAXED);
        unsigned long long sreq = __atomic_load_n(&sa->requests, __ATOMIC_RELAXED);
        double sp95 = rollout_latency_quantile_ms(&sa->lat, 0.95);
        if (d->phase != PH_BG_WATCH && sreq >= (unsigned long long)c->min_requests && isfinite(sp95))
            d->stable_p95_ref = sp95;
        if ((creq > 0 && creq >= (unsigned long long)c->min_requests) ||
            (creq > 0 && cerr * 1.0 / creq > c->max_error_rate && cerr >= 3)) {
            CHECK("error_rate", (double)cerr / (double)creq, c->max_error_rate, false);
            double cp95 = rollout_latency_quantile_ms(&ca->lat, 0.95);
            if (d->phase == PH_BG_WATCH)
                cp95 = bg_latency(r, d, checks); /* both sides from the recorded latency */
            if (isfinite(cp95) && isfinite(d->stable_p95_ref)) {
                double fl = c->latency_floor_ms;
                CHECK("p95_latency_ratio", fmax(cp95, fl) / fmax(d->stable_p95_ref, fl),
                      1 + c->max_performance_degradation, false);
            }
        }
        /* Accuracy from the feedback labels of every prediction the candidate made in this
         * deployment (since it started: labels that arrive after their stage still count), once
         * there are min_labels; it fails only on evidence: when the one-sided 95% Wilson upper
         * bound of the accuracy is below min_accuracy (docs/rollouts.md, Gates) */
        json_t *acc = NULL;
        const model_manifest_t *m = d->cand ? model_handle_manifest(d->cand) : NULL;
        if (m && store_deployment_feedback_accuracy(r->store, d->model, d->started_ms,
                                                    (const char *const *)m->class_labels, m->n_classes,
                                                    &acc) == 0) {
            json_t *v = json_object_get(json_object_get(acc, arm_name(d)), d->version);
            json_int_t labels = json_integer_value(json_object_get(v, "labels"));
            json_int_t correct = json_integer_value(json_object_get(v, "correct"));
            json_object_set_new(checks, "labels", json_integer(labels));
            json_t *sv =
                d->prev_version[0] ? json_object_get(json_object_get(acc, "stable"), d->prev_version) : NULL;
            json_int_t slabels = json_integer_value(json_object_get(sv, "labels"));
            if (slabels > 0) /* context for the operator: the stable arm's labelled predictions */
                json_object_set_new(
                    checks, "stable_accuracy",
                    json_pack("{s:f,s:I}", "score",
                              (double)json_integer_value(json_object_get(sv, "correct")) / (double)slabels,
                              "labels", slabels));
            if (labels >= c->min_labels && labels > 0 && correct >= 0 && correct <= labels)
                accuracy_check(d, checks, prefix, (unsigned long long)correct, (unsigned long long)labels,
                               final, &ok, reason, n);
            json_decref(acc);
        }
    }
#undef CHECK
    json_decref(d->last_checks);
    d->last_checks = checks;
    return ok;
}

/* Nonzero when the current phase has seen fewer than min_requests requests (shadow predictions
 * in the shadow phase, candidate requests in a stage or blue/green watch): 1, its end can not be
 * judged yet; or when a blue/green watch has no stable p95 reference: 2. why says what
 * is missing. */
static int short_of_evidence(rollout_t *r, dep_t *d, char *why, size_t n)
{
    unsigned long long have, need = (unsigned long long)d->cfg.min_requests;
    const char *what;
    char phase[48];
    if (d->phase == PH_SHADOW) {
        have = __atomic_load_n(&d->shadow.jobs, __ATOMIC_RELAXED);
        what = "shadow predictions";
        snprintf(phase, sizeof(phase), "shadow phase");
    } else {
        have = __atomic_load_n(&d->arms[1].requests, __ATOMIC_RELAXED);
        what = "candidate requests";
        if (d->phase == PH_STAGE)
            snprintf(phase, sizeof(phase), "canary stage %g%%", d->cfg.stages[d->stage]);
        else
            snprintf(phase, sizeof(phase), "blue/green watch");
    }
    if (have >= need) {
        if (d->phase != PH_BG_WATCH)
            return 0;
        /* A blue/green watch is not passed without the stable version's p95 reference */
        bg_reference(r, d);
        if (isfinite(d->stable_p95_ref))
            return 0;
        snprintf(why, n,
                 "blue/green watch has no stable p95 latency reference: %ld of the %llu recorded stable "
                 "predictions min_requests asks for in the 15 minutes before the switch; it goes on until "
                 "promoted or rolled back by hand",
                 d->ref_n, need);
        return 2;
    }
    snprintf(why, n, "%s ran its time with %llu of the %llu %s min_requests asks for; it goes on until it has them",
             phase, have, need, what);
    return 1;
}

static void start_stage(rollout_t *r, dep_t *d, int stage, const char *actor, const char *why)
{
    d->phase = PH_STAGE;
    d->stage = stage;
    d->awaiting_promote = false;
    d->phase_started_ms = d->last_check_ms = util_now_ms();
    d->paused_elapsed_ms = 0;
    reset_stats(d);
    set_state(d, "deploying", "canary");
    set_route(r, d, ROUTE_SPLIT, d->cfg.stages[stage]);
    char ev[48];
    snprintf(ev, sizeof(ev), "stage_%d_started", stage);
    save(r, d, ev, actor, why);
}

static void start_shadow(rollout_t *r, dep_t *d)
{
    d->phase = PH_SHADOW;
    d->stage = -1;
    d->phase_started_ms = d->last_check_ms = util_now_ms();
    set_state(d, "monitoring", "shadow");
    set_route(r, d, ROUTE_SHADOW, 0);
    save(r, d, "shadow_started", NULL, NULL);
}

static void live_failure(rollout_t *r, dep_t *d, const char *reason)
{
    if (d->cfg.auto_rollback_enabled) {
        do_rollback(r, d, "controller", reason);
    } else {
        snprintf(d->paused_from, sizeof(d->paused_from), "%s", d->status);
        d->paused_elapsed_ms = util_now_ms() - d->phase_started_ms;
        set_state(d, "paused", NULL);
        snprintf(d->rollback_reason, sizeof(d->rollback_reason), "%s", reason);
        save(r, d, "paused_on_failed_check", "controller", reason);
    }
}

/* Post-deployment verification of a direct deployment: the registry serves the new
 * version and it predicts its probe row. */
static bool verify_serving(rollout_t *r, dep_t *d, char *reason, size_t n)
{
    model_handle_t *h = model_registry_acquire(r->registry, d->model, NULL, NULL);
    const model_manifest_t *m = h ? model_handle_manifest(h) : NULL;
    bool ok = false;
    if (!m) {
        snprintf(reason, n, "post-deployment verification failed: model not loaded");
    } else if (strcmp(m->version, d->version) != 0) {
        snprintf(reason, n, "post-deployment verification failed: serving %s, expected %s", m->version,
                 d->version);
    } else {
        float *row = malloc(sizeof(float) * (m->n_features ? m->n_features : 1));
        float *out = malloc(sizeof(float) * model_handle_outputs(h));
        char perr[128] = "";
        if (row && out) {
            model_schema_probe_row(m, row);
            ok = model_handle_predict(h, row, 1, out, perr, sizeof(perr)) == 0 &&
                 rollout_fault(&(rollout_route_t){.fault_fail = r->fault.version[0] &&
                                                                strcmp(r->fault.version, d->version) == 0 &&
                                                                r->fault.error_rate >= 1}) == 0;
        }
        if (!ok)
            snprintf(reason, n, "post-deployment verification failed: %s %s does not predict%s%s", d->model,
                     d->version, perr[0] ? ": " : "", perr);
        free(row);
        free(out);
    }
    model_handle_unref(h);
    return ok;
}

static void run_validation(rollout_t *r, dep_t *d)
{
    char reason[512] = "", path[1024];
    snprintf(path, sizeof(path), "%s/baseline/%s_validation.csv", r->data_dir, d->model);
    model_handle_t *cand = d->cand ? model_handle_ref(d->cand) : NULL;
    model_handle_t *stable = model_registry_acquire(r->registry, d->model, NULL, NULL);
    json_t *tests = json_array();
    rollout_config_t cfg = d->cfg;
    pthread_mutex_unlock(&r->mu); /* gates take a while; API calls go on meanwhile */
    int rc = cand ? rollout_gates_offline(&cfg, cand, stable, path, tests, reason, sizeof(reason)) : -ENOENT;
    pthread_mutex_lock(&r->mu);
    model_handle_unref(cand);
    model_handle_unref(stable);
    if (!d->active || strcmp(d->status, "validating") != 0) { /* rolled back meanwhile */
        json_decref(tests);
        return;
    }
    json_array_extend(d->tests, tests);
    json_decref(tests);
    if (rc != 0 && (rc < 0 || d->cfg.rollback_on_validation_failure)) {
        d->rollback_triggered = d->cfg.rollback_on_validation_failure;
        snprintf(d->rollback_reason, sizeof(d->rollback_reason), "%s", reason);
        finish(r, d, "failed", NULL, "validation_failed", "controller", reason);
        return;
    }
    /* an opt-out of the fairness gates is said in the event (and so in its audit record) */
    char note[sizeof(reason) + 96];
    snprintf(note, sizeof(note), "%s%s%s", rc ? reason : "", rc && !d->cfg.fairness_gates ? "; " : "",
             d->cfg.fairness_gates ? "" : FAIRNESS_GATES_OFF);
    save(r, d, rc == 0 ? "validation_passed" : "validation_failed_ignored", "controller", note[0] ? note : NULL);
    d->validated = true; /* the first step forward comes from step(), held like any other */
}

/* The step out of validation: the direct switch, the blue/green switch, the shadow phase or
 * the first stage. */
static void first_step(rollout_t *r, dep_t *d)
{
    if (strcmp(d->strategy, "direct") == 0) {
        char vr[512];
        if (make_stable(r, d, "controller", "direct deployment") < 0) {
            do_rollback(r, d, "controller", "could not make the candidate stable in the store");
            return;
        }
        if (!verify_serving(r, d, vr, sizeof(vr))) {
            if (d->prev_version[0] && store_model_set_stable(r->store, d->model, d->prev_version) == 0)
                model_registry_sync(r->registry);
            d->rollback_triggered = true;
            snprintf(d->rollback_reason, sizeof(d->rollback_reason), "%s", vr);
            set_state(d, "rolled_back", "rollback");
            d->traffic = 0; /* the previous version serves again, none of this one */
            d->window_until_ms = 0;
            model_handle_unref(d->prev_stable);
            d->prev_stable = NULL;
            save(r, d, "restored_previous_version", "controller", vr);
        }
        return;
    }
    if (strcmp(d->strategy, "blue-green") == 0) {
        /* green is loaded and warm (scored the validation set) at 0%; now switch */
        char vr[256] = "";
        if (d->cand) {
            const model_manifest_t *m = model_handle_manifest(d->cand);
            float row[4096], out[64];
            model_schema_probe_row(m, row);
            if (m->n_features > 4096 || model_handle_outputs(d->cand) > 64 ||
                model_handle_predict(d->cand, row, 1, out, vr, sizeof(vr)) < 0) {
                do_rollback(r, d, "controller", "blue/green smoke test failed");
                return;
            }
        }
        d->phase = PH_BG_WATCH;
        d->phase_started_ms = d->last_check_ms = util_now_ms();
        reset_stats(d);
        /* the stable p95 reference of the 15 minutes before the switch, taken now: a pause
         * moves phase_started_ms, so a first check after it would look at another window */
        bg_reference(r, d);
        set_state(d, "monitoring", "canary");
        set_route(r, d, ROUTE_SPLIT, 100);
        save(r, d, "switched_to_green", "controller", NULL);
        return;
    }
    if (d->cfg.shadow_duration_ms > 0)
        start_shadow(r, d);
    else
        start_stage(r, d, 0, "controller", "no shadow phase");
}

/* Whether a step forward must wait. Nothing moves a candidate forward while its audit record
 * can not be written (*trail_down); checks and rollbacks (the safe direction) go on, audited
 * late. Nor for the moment its own last records are queued (a stalled writer stops it here),
 * nor while its last change is not in the store (review47 #4). */
static bool forward_held(rollout_t *r, dep_t *d, bool *trail_down)
{
    *trail_down = r->audit_detached || (r->audit && !audit_log_healthy(r->audit));
    return *trail_down || (r->audit && atomic_load(&r->audit_inflight) > 0) || unstored(d);
}

static void step(rollout_t *r, dep_t *d, int64_t now)
{
    if (!d->active)
        return;
    bool trail_down;
    bool hold = forward_held(r, d, &trail_down);
    if (trail_down != d->held_for_audit) {
        d->held_for_audit = trail_down;
        log_msg(trail_down ? LOG_WARNING : LOG_INFO,
                trail_down ? "deployment held: the audit trail can not be written"
                           : "deployment goes on: audit trail writable",
                "{s:s,s:s}", "deployment_id", d->id, "status", d->status);
    }
    if (hold && (strcmp(d->status, "pending") == 0 || strcmp(d->status, "validating") == 0))
        return;
    if (strcmp(d->status, "pending") == 0) {
        set_state(d, "validating", NULL);
        save(r, d, "validation_started", NULL, NULL);
    }
    if (strcmp(d->status, "validating") == 0) {
        if (!d->validated)
            run_validation(r, d);
        /* review53 #2: the first step forward went on in the same call whatever the store and
         * the trail said (a blue/green switch to 100 % while the store was write-locked); it
         * waits now as every other step does (the gates do not run again) */
        hold = forward_held(r, d, &trail_down);
        if (d->active && d->validated && strcmp(d->status, "validating") == 0 && !hold &&
            store_refuses_writes(r) == 0)
            first_step(r, d);
        return;
    }
    if (strcmp(d->status, "paused") == 0)
        return;
    int64_t dur = d->phase == PH_SHADOW ? d->cfg.shadow_duration_ms : d->cfg.stage_duration_ms;
    bool ending = now - d->phase_started_ms >= dur;
    bool extended_now = false;
    char why[256];
    if (hold)
        ending = false; /* checked every interval, ended once the trail is back */
    int short_kind = 0;
    if (ending && !d->awaiting_promote && (short_kind = short_of_evidence(r, d, why, sizeof(why))) != 0) {
        /* no evidence, no promotion: the phase goes on until it has min_requests */
        ending = false;
        if (!d->awaiting_evidence || d->awaiting_kind != short_kind) {
            d->awaiting_evidence = extended_now = true;
            d->awaiting_kind = short_kind;
            save(r, d, "extended_awaiting_evidence", "controller", why);
        }
    }
    bool due = now - d->last_check_ms >= d->cfg.check_interval_ms;
    /* checks run every interval; a phase's end is checked at once (also when it is extended
     * for want of evidence), except while a stage waits for a manual promotion */
    if (!due && !extended_now && !(ending && !d->awaiting_promote))
        return;
    d->last_check_ms = now;
    char reason[512] = "";
    bool ok = live_checks(r, d, ending && !d->awaiting_promote, reason, sizeof(reason));
    if (!ok) {
        live_failure(r, d, reason);
        return;
    }
    if (!ending) {
        save(r, d, NULL, NULL, NULL);
        return;
    }
    /* a step forward the store could not record: checked again at a later tick */
    if (store_refuses_writes(r) < 0)
        return;
    if (d->phase == PH_BG_WATCH) {
        make_stable(r, d, "controller", "blue/green watch window passed");
    } else if (d->phase == PH_SHADOW) {
        start_stage(r, d, 0, "controller", "shadow phase passed");
    } else if (!d->cfg.auto_promote) {
        if (!d->awaiting_promote) {
            d->awaiting_promote = true;
            save(r, d, "stage_complete_awaiting_promotion", NULL, NULL);
        }
    } else if ((size_t)d->stage + 1 < d->cfg.n_stages) {
        start_stage(r, d, d->stage + 1, "controller", "stage passed (auto_promote)");
    } else {
        make_stable(r, d, "controller", "final stage passed (auto_promote)");
    }
}

static void *controller_main(void *arg)
{
    rollout_t *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        int64_t now = util_now_ms();
        take_failed_audits(r);
        for (size_t i = 0; i < r->n_deps && !r->stop; i++) {
            dep_t *d = r->deps[i];
            if (unstored(d) && now >= d->retry_ms)
                store_record(r, d);
            audit_late(r, d);
            step(r, d, now);
            if (!d->active && d->prev_stable && d->window_until_ms && now >= d->window_until_ms) {
                model_handle_unref(d->prev_stable); /* rollback window over */
                d->prev_stable = NULL;
                save(r, d, NULL, NULL, NULL); /* the stored record says so too */
            }
        }
        if (now - r->gauges_ms >= GAUGE_REFRESH_MS) { /* the registry may change from outside */
            refresh_gauges(r);
            r->gauges_ms = now;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cond, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

void rollout_set_audit(rollout_t *r, struct audit_log *audit)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu); /* the controller reads it under mu */
    if (!audit && r->audit)
        r->audit_detached = true; /* the controller runs on until rollout_free: it holds */
    for (size_t i = 0; !audit && r->audit && i < r->n_deps; i++) {
        audit_late(r, r->deps[i]); /* queued before the log closes, which drains its queue */
        if (json_array_size(r->deps[i]->late_audit) > 0)
            log_msg(LOG_WARNING, "deployment audit events not written at shutdown: kept with the record, written at the next start",
                    "{s:s,s:I}", "deployment_id", r->deps[i]->id, "events",
                    (json_int_t)json_array_size(r->deps[i]->late_audit));
    }
    r->audit = audit;
    pthread_mutex_unlock(&r->mu);
}

int rollout_new(store_t *store, model_registry_t *registry, const config_t *cfg, rollout_t **ret, char *err,
                size_t errlen)
{
    rollout_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    char msg[256];
    if (rollout_config_from_settings(&r->defaults, cfg ? (const char *const *)cfg->rollout : NULL, err,
                                     errlen) < 0)
        goto invalid;
    if (rollout_fault_parse(cfg ? cfg->rollout_fault_inject : NULL, &r->fault, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "ROLLOUT_FAULT_INJECT: %s", msg);
        goto invalid;
    }
    if (!r->defaults.fairness_gates)
        log_msg(LOG_WARNING, ROLLOUT_FAIRNESS_OFF_WARNING, NULL);
    r->store = store;
    r->registry = registry;
    r->data_dir = strdup(cfg && cfg->data_dir ? cfg->data_dir : ".");
    if (!r->data_dir) {
        free(r);
        return -ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->amu, NULL);
    pthread_cond_init(&r->cond, NULL);
    pthread_rwlock_init(&r->rw, NULL);
    pthread_mutex_init(&r->qmu, NULL);
    pthread_cond_init(&r->qcond, NULL);
    r->f_stage = metrics_family("deployment_stage",
                                "Canary stage of the model's active deployment (1-based; 0 = none)",
                                METRIC_GAUGE, NULL, 0);
    r->f_traffic = metrics_family("deployment_traffic_percent",
                                  "Share of a model's traffic each version serves", METRIC_GAUGE, NULL, 0);
    metric_family_t *fd =
        metrics_family("rollout_shadow_dropped_total",
                       "Shadow scoring jobs dropped because the queue was full", METRIC_COUNTER, NULL, 0);
    r->m_dropped = fd ? metrics_series(fd, "") : UINT32_MAX;
    if (r->fault.version[0])
        log_msg(LOG_WARNING, "rollout fault injection is ON (test setting ROLLOUT_FAULT_INJECT)",
                "{s:s,s:f,s:i}", "version", r->fault.version, "error_rate", r->fault.error_rate, "delay_ms",
                r->fault.delay_ms);
    *ret = r;
    return 0;
invalid:
    free(r);
    return -EINVAL;
}

/* Rebuilds a deployment from its stored record. */
static dep_t *dep_from_record(rollout_t *r, const json_t *rec)
{
    dep_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    snprintf(d->id, sizeof(d->id), "%s", json_string_value(json_object_get(rec, "deployment_id")));
    snprintf(d->model, sizeof(d->model), "%s", json_string_value(json_object_get(rec, "model")));
    snprintf(d->version, sizeof(d->version), "%s", json_string_value(json_object_get(rec, "version")));
    snprintf(d->strategy, sizeof(d->strategy), "%s", json_string_value(json_object_get(rec, "strategy")));
    const char *pv = json_string_value(json_object_get(rec, "previous_version"));
    snprintf(d->prev_version, sizeof(d->prev_version), "%s", pv ? pv : "");
    set_state(d, json_string_value(json_object_get(rec, "status")),
              json_string_value(json_object_get(rec, "mode")));
    rollout_config_defaults(&d->cfg);
    const char *field;
    char e[128];
    rollout_config_apply_json(&d->cfg, json_object_get(rec, "config"), &field, e, sizeof(e));
    d->traffic = num_or_nan(json_object_get(rec, "traffic_percentage"));
    d->stage = json_is_integer(json_object_get(rec, "current_stage"))
                   ? (int)json_integer_value(json_object_get(rec, "current_stage"))
                   : -1;
    d->rollback_triggered = json_is_true(json_object_get(rec, "rollback_triggered"));
    const char *rr = json_string_value(json_object_get(rec, "rollback_reason"));
    snprintf(d->rollback_reason, sizeof(d->rollback_reason), "%s", rr ? rr : "");
    d->awaiting_promote = json_is_true(json_object_get(rec, "awaiting_promotion"));
    d->tests = json_deep_copy(json_object_get(rec, "validation_tests"));
    if (json_array_size(json_object_get(rec, "_late_audit")) > 0)
        d->late_audit = json_deep_copy(json_object_get(rec, "_late_audit"));
    d->timeline = json_deep_copy(json_object_get(rec, "timeline"));
    if (!d->tests)
        d->tests = json_array();
    if (!d->timeline)
        d->timeline = json_array();
    json_t *s = json_object_get(rec, "_state");
    d->phase = (int)json_integer_value(json_object_get(s, "phase"));
    d->started_ms = json_integer_value(json_object_get(s, "started_ms"));
    d->phase_started_ms = json_integer_value(json_object_get(s, "phase_started_ms"));
    d->paused_elapsed_ms = json_integer_value(json_object_get(s, "paused_elapsed_ms"));
    d->completed_ms = json_integer_value(json_object_get(s, "completed_ms"));
    d->window_until_ms = json_integer_value(json_object_get(s, "window_until_ms"));
    const char *pf = json_string_value(json_object_get(s, "paused_from"));
    snprintf(d->paused_from, sizeof(d->paused_from), "%s", pf ? pf : "");
    double ref = num_or_nan(json_object_get(s, "stable_p95_ref"));
    d->stable_p95_ref = ref >= 0 ? ref : NAN;
    if (json_is_object(json_object_get(s, "stats"))) /* the phase's evidence as last stored */
        stats_restore(d, json_object_get(s, "stats"));
    d->active = true;
    d->last_check_ms = util_now_ms();
    (void)r;
    return d;
}

/* After a restart, the last promotion of each model that is still inside its rollback
 * window gets its previous stable version loaded again (before the restart it was kept
 * loaded), so `rollback` works as it would have: the record is back in memory and the
 * previous version is ready. Only a promotion whose version still serves counts. The
 * controller unloads it when the window ends, as for one promoted in this process.
 * Caller holds mu. */
static void resume_rollback_windows(rollout_t *r)
{
    json_t *list = NULL;
    if (store_deployment_list(r->store, "stable", NULL, false, 0, &list) < 0)
        return;
    int64_t now = util_now_ms();
    size_t i;
    json_t *rec;
    json_array_foreach(list, i, rec) /* newest first */
    {
        const char *model = json_string_value(json_object_get(rec, "model"));
        const char *version = json_string_value(json_object_get(rec, "version"));
        const char *prev = json_string_value(json_object_get(rec, "previous_version"));
        const char *id = json_string_value(json_object_get(rec, "deployment_id"));
        if (!model || !version || !prev || !*prev || !id || find_dep(r, id))
            continue;
        bool seen = false; /* an older promotion of a model already handled */
        for (size_t k = 0; k < i; k++)
            seen |=
                json_equal(json_object_get(json_array_get(list, k), "model"), json_object_get(rec, "model"));
        if (seen)
            continue;
        char stable_v[129] = "";
        if (store_model_get_stable(r->store, model, stable_v, sizeof(stable_v)) < 0 ||
            strcmp(stable_v, version))
            continue; /* rolled back or replaced since */
        dep_t *d = dep_from_record(r, rec);
        if (!d)
            continue;
        /* Its stored figures, not the zeros of arms that no longer run */
        d->frozen_perf = json_incref(json_object_get(rec, "performance_metrics"));
        if (!d->window_until_ms && d->completed_ms) /* records written before window_until_ms was kept */
            d->window_until_ms = d->completed_ms + d->cfg.rollback_window_ms;
        d->active = false;
        d->phase = PH_DONE;
        d->stage = -1;
        if (d->window_until_ms <= now || r->n_deps == MAX_DEPS) {
            dep_free(d);
            continue;
        }
        char err[512];
        d->prev_stable = load_version(r, model, d->prev_version, err, sizeof(err));
        if (!d->prev_stable) {
            log_msg(LOG_WARNING, "previous stable version not reloaded; rollback will load it",
                    "{s:s,s:s,s:s}", "deployment_id", d->id, "model", d->model, "error", err);
            dep_free(d);
            continue;
        }
        add_dep(r, d);
        char reason[256], until[ISO8601_LEN];
        util_iso8601(d->window_until_ms, until);
        snprintf(reason, sizeof(reason), "previous stable version %s loaded again for rollback until %s",
                 d->prev_version, until);
        save(r, d, "rollback_window_resumed", "controller", reason);
    }
    json_decref(list);
}

/* After a restart, the evidence of the current phase: the snapshot stored with the record
 * (dep_from_record restored it) plus, per arm, the answered predictions its version recorded in
 * the store from the snapshot's time on (from the phase start for a record without one).
 * Failed predictions are not recorded and the recorded latency is the request's total time, not
 * the model time the p95 gate compares, so those requests add to the request counts only; the
 * record says so (performance_metrics.restored_after_restart). Caller holds mu. */
static void rebuild_evidence(rollout_t *r, dep_t *d, int64_t now)
{
    bool snap = d->stats_at_ms > 0;
    int64_t since = snap && d->stats_at_ms > d->phase_started_ms ? d->stats_at_ms : d->phase_started_ms;
    json_t *note = json_pack("{s:o,s:o,s:o}", "at", iso(now), "phase_started_at", iso(d->phase_started_ms),
                             "snapshot_at", snap ? iso(d->stats_at_ms) : json_null());
    /* per arm, the answered predictions recorded since; in a shadow phase the stable arm only
     * (the candidate's copies are not recorded) */
    json_t *added = json_object();
    const char *arm[2] = {"stable", arm_name(d)};
    const char *ver[2] = {d->prev_version, d->version};
    for (int i = 0; i < (d->phase == PH_SHADOW ? 1 : 2); i++) {
        long n = 0;
        if (!ver[i][0])
            continue;
        if (store_deployment_count_answered(r->store, d->model, ver[i], arm[i], since, now + 1, &n) < 0) {
            json_object_set_new(added, arm[i], json_null()); /* the store failed: not added */
            continue;
        }
        __atomic_fetch_add(&d->arms[i].requests, (unsigned long long)n, __ATOMIC_RELAXED);
        json_object_set_new(added, arm[i], json_integer(n));
    }
    json_object_set_new(note, "requests_added_from_store", added);
    if (d->phase == PH_SHADOW) {
        json_object_set_new(
            note, "not_rebuilt",
            json_string(snap ? "shadow predictions made after the snapshot (the store does not "
                               "record shadow predictions)"
                             : "the shadow predictions of this phase (the record predates "
                               "evidence snapshots; the store does not record them)"));
    } else {
        json_object_set_new(
            note, "not_rebuilt",
            json_string(snap
                            ? "errors and latency samples of the requests made after the snapshot: failed "
                              "predictions are not recorded, and the recorded latency is the request's total "
                              "time, not the model time the p95 check compares; those requests count in "
                              "requests only"
                            : "errors and latency samples of this phase (the record predates evidence "
                              "snapshots): requests are the answered predictions recorded since the phase "
                              "started"));
    }
    json_decref(d->restored);
    d->restored = note;
    log_msg(LOG_INFO, "deployment phase resumed with its evidence", "{s:s,s:I,s:I}", "deployment_id", d->id,
            "candidate_requests", (json_int_t)__atomic_load_n(&d->arms[1].requests, __ATOMIC_RELAXED),
            "shadow_predictions", (json_int_t)__atomic_load_n(&d->shadow.jobs, __ATOMIC_RELAXED));
}

int rollout_start(rollout_t *r)
{
    json_t *list = NULL;
    int rc = store_deployment_list(r->store, NULL, NULL, true, 0, &list);
    if (rc < 0 && rc != -ENOTSUP)
        return rc;
    pthread_mutex_lock(&r->mu);
    size_t i;
    json_t *rec;
    json_array_foreach(list, i, rec)
    {
        dep_t *d = dep_from_record(r, rec);
        if (!d || r->n_deps == MAX_DEPS) {
            dep_free(d);
            continue;
        }
        char err[512];
        d->cand = load_version(r, d->model, d->version, err, sizeof(err));
        add_dep(r, d);
        if (!d->cand) {
            do_rollback(r, d, "controller", err);
            continue;
        }
        if (strcmp(d->status, "validating") == 0)
            set_state(d, "pending", NULL); /* validation re-runs */
        else if (d->phase == PH_SHADOW)
            set_route(r, d, ROUTE_SHADOW, 0);
        else if (d->phase == PH_STAGE && d->stage >= 0 && (size_t)d->stage < d->cfg.n_stages)
            set_route(r, d, ROUTE_SPLIT, d->cfg.stages[d->stage]);
        else if (d->phase == PH_BG_WATCH)
            set_route(r, d, ROUTE_SPLIT, 100);
        char why[512] = "";
        if (d->phase == PH_SHADOW || d->phase == PH_STAGE || d->phase == PH_BG_WATCH) {
            /* The phase resumes where it was: its timer runs from its stored start (a
             * phase whose time passed while the server was down is judged at once), its
             * evidence is the stored snapshot plus what the store recorded since (see
             * rebuild_evidence: what can not be rebuilt is said in the record). A paused
             * phase keeps the time it had run (paused_elapsed_ms). */
            int64_t now = util_now_ms();
            if (d->phase_started_ms <= 0 || d->phase_started_ms > now)
                d->phase_started_ms = now; /* no usable start stored: it starts now */
            d->last_check_ms = now;
            rebuild_evidence(r, d, now);
            char at[ISO8601_LEN];
            util_iso8601(d->phase_started_ms, at);
            snprintf(why, sizeof(why),
                     "the current phase resumes: timer from its start at %s, evidence from the stored record "
                     "and the predictions recorded since (performance_metrics.restored_after_restart)",
                     at);
        }
        save(r, d, "resumed_after_restart", "controller", why[0] ? why : NULL);
    }
    json_decref(list);
    resume_rollback_windows(r);
    /* finished deployments whose audit events are still to be written (the trail failed,
     * then the server stopped): kept, inactive, until the controller audits them */
    list = NULL;
    if (store_deployment_list(r->store, NULL, NULL, false, 1000, &list) == 0) {
        json_array_foreach(list, i, rec)
        {
            const char *id = json_string_value(json_object_get(rec, "deployment_id"));
            if (!id || find_dep(r, id) || json_array_size(json_object_get(rec, "_late_audit")) == 0 ||
                r->n_deps == MAX_DEPS)
                continue;
            dep_t *d = dep_from_record(r, rec);
            if (!d)
                continue;
            d->frozen_perf = json_incref(json_object_get(rec, "performance_metrics"));
            d->active = false;
            add_dep(r, d);
        }
    }
    json_decref(list);
    r->started = true;
    pthread_mutex_unlock(&r->mu);
    if (pthread_create(&r->shadow_thread, NULL, shadow_main, r) != 0)
        return -EAGAIN;
    if (pthread_create(&r->thread, NULL, controller_main, r) != 0) {
        pthread_mutex_lock(&r->qmu);
        r->qstop = true;
        pthread_cond_broadcast(&r->qcond);
        pthread_mutex_unlock(&r->qmu);
        pthread_join(r->shadow_thread, NULL);
        r->started = false;
        return -EAGAIN;
    }
    return 0;
}

void rollout_free(rollout_t *r)
{
    if (!r)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
        pthread_mutex_lock(&r->qmu);
        r->qstop = true;
        pthread_cond_broadcast(&r->qcond);
        pthread_mutex_unlock(&r->qmu);
        pthread_join(r->shadow_thread, NULL);
    }
    take_failed_audits(r); /* records that failed as the log closed: kept with the record below */
    for (size_t i = 0; i < r->qlen; i++) {
        shadow_job_t *j = &r->queue[(r->qhead + i) % SHADOW_QUEUE];
        free(j->rows);
        free(j->stable_out);
        model_handle_unref(j->h);
    }
    for (size_t i = 0; i < r->n_deps; i++) {
        dep_t *d = r->deps[i];
        if (unstored(d) && store_record(r, d) < 0)
            log_msg(LOG_CRITICAL, "deployment change lost at shutdown: the store could not record it", "{s:s,s:s}",
                    "deployment_id", d->id, "status", d->status);
        else if (d->active && r->started && !d->unsaved)
            store_record(r, d); /* the phase's evidence as it is now, for the next start */
        dep_free(d);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->amu);
    json_decref(r->audit_failed);
    pthread_cond_destroy(&r->cond);
    pthread_rwlock_destroy(&r->rw);
    pthread_mutex_destroy(&r->qmu);
    pthread_cond_destroy(&r->qcond);
    free(r->gauges);
    free(r->data_dir);
    free(r);
}

/* ---- control ------------------------------------------------------------------------------ */

/* An API call holds mu from api_begin (NULL: out of memory, nothing changed) to api_end,
 * which releases it. rc: the call's own result so far. A change that save() could not store
 * or queue for the trail is not acknowledged: -EIO (503), *ret freed. While audit records
 * the call queued are still being written (a change not stored is audited as such before
 * its 503, too): ROLLOUT_PENDING, and ack runs with the result once they are (rollout.h). */
static api_wait_t *api_begin(rollout_t *r, rollout_ack_fn ack, void *ack_arg, char *err, size_t errlen)
{
    api_wait_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory; nothing was changed");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    w->ack = ack;
    w->ack_arg = ack_arg;
    pthread_mutex_lock(&r->mu);
    r->api_wait = w;
    return w;
}

static int api_end(rollout_t *r, api_wait_t *w, unsigned before, int rc, json_t **ret, char *err, size_t errlen)
{
    r->api_wait = NULL;
    if (rc == 0 && r->save_failures != before) {
        snprintf(err, errlen, "%s", UNSAVED_MSG);
        rc = -EIO;
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&w->mu);
    bool mine = w->pending == 0; /* else the last record's callback answers and frees it */
    if (rc == 0 && w->failed) {
        snprintf(err, errlen, "%s", UNSAVED_MSG);
        rc = -EIO;
    }
    if (rc < 0 && ret && *ret) {
        json_decref(*ret); /* the answer, now or later, is the error */
        *ret = NULL;
    }
    if (!mine) {
        w->rc = rc;
        snprintf(w->err, sizeof(w->err), "%s", rc < 0 ? err : "");
        rc = ROLLOUT_PENDING;
    }
    w->armed = true;
    pthread_mutex_unlock(&w->mu);
    if (mine)
        api_wait_free(w);
    return rc;
}

int rollout_create(rollout_t *r, const json_t *body, const char *actor, rollout_ack_fn ack, void *ack_arg,
                   json_t **ret, const char **ret_field, char *err, size_t errlen)
{
    static const char *const top[] = {"model", "version", "strategy", "config"};
    if (!json_is_object(body)) {
        *ret_field = "body";
        snprintf(err, errlen, "the body must be a JSON object");
        return -EINVAL;
    }
    const char *model = json_string_value(json_object_get(body, "model"));
    const char *version = json_string_value(json_object_get(body, "version"));
    const char *strategy = json_string_value(json_object_get(body, "strategy"));
    if (!model || !util_is_safe_name(model)) {
        *ret_field = "model";
        snprintf(err, errlen, "\"model\" must be a model name");
        return -EINVAL;
    }
    if (!version || !util_is_safe_name(version)) {
        *ret_field = "version";
        snprintf(err, errlen, "\"version\" must be a version string");
        return -EINVAL;
    }
    if (!strategy)
        strategy = "canary";
    if (strcmp(strategy, "canary") && strcmp(strategy, "blue-green") && strcmp(strategy, "direct")) {
        *ret_field = "strategy";
        snprintf(err, errlen, "\"strategy\" must be canary, blue-green or direct");
        return -EINVAL;
    }
    rollout_config_t cfg = r->defaults;
    json_t *cfgobj = json_object_get(body, "config");
    if (cfgobj && !json_is_object(cfgobj)) {
        *ret_field = "config";
        snprintf(err, errlen, "\"config\" must be an object");
        return -EINVAL;
    }
    if (cfgobj && rollout_config_apply_json(&cfg, cfgobj, ret_field, err, errlen) < 0)
        return -EINVAL;
    json_t *rest = json_object();
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(top); i++)
            known |= strcmp(key, top[i]) == 0;
        if (!known)
            json_object_set(rest, key, val);
    }
    int rc = rollout_config_apply_json(&cfg, rest, ret_field, err, errlen);
    json_decref(rest);
    if (rc < 0)
        return -EINVAL;

    char stable_v[129] = "";
    if (store_model_get_stable(r->store, model, stable_v, sizeof(stable_v)) < 0) {
        snprintf(err, errlen, "no model named '%s' with a stable version", model);
        return -ENOENT;
    }
    if (strcmp(stable_v, version) == 0) {
        *ret_field = "version";
        snprintf(err, errlen, "version '%s' is already the stable version of '%s'", version, model);
        return -EINVAL;
    }
    model_handle_t *cand = load_version(r, model, version, err, errlen);
    if (!cand)
        return -ENOENT;

    api_wait_t *w = api_begin(r, ack, ack_arg, err, errlen);
    if (!w) {
        model_handle_unref(cand);
        return -ENOMEM;
    }
    unsigned before = r->save_failures;
    dep_t *other = active_for_model(r, model);
    if (other) {
        snprintf(err, errlen, "model '%s' already has an active deployment %s (%s)", model, other->id,
                 other->status);
        model_handle_unref(cand);
        return api_end(r, w, before, -EEXIST, NULL, err, errlen);
    }
    if (r->n_deps == MAX_DEPS) {
        model_handle_unref(cand);
        snprintf(err, errlen, "too many deployments in this process; restart the server");
        return api_end(r, w, before, -ENOSPC, NULL, err, errlen);
    }
    dep_t *d = calloc(1, sizeof(*d));
    if (!d) {
        model_handle_unref(cand);
        return api_end(r, w, before, -ENOMEM, NULL, err, errlen);
    }
    rollout_new_id(d->id);
    snprintf(d->model, sizeof(d->model), "%s", model);
    snprintf(d->version, sizeof(d->version), "%s", version);
    snprintf(d->strategy, sizeof(d->strategy), "%s", strategy);
    snprintf(d->prev_version, sizeof(d->prev_version), "%s", stable_v);
    d->cfg = cfg;
    d->cand = cand;
    d->stage = -1;
    d->active = true;
    d->stable_p95_ref = NAN;
    d->started_ms = d->phase_started_ms = util_now_ms();
    d->tests = json_array();
    d->timeline = json_array();
    set_state(d, "pending",
              strcmp(strategy, "canary") == 0 && cfg.shadow_duration_ms > 0 ? "shadow" : "canary");
    json_t *rec = dep_json(d);
    rc = store_deployment_put(r->store, d->id, d->model, d->version, d->strategy, d->status, true, rec,
                              d->started_ms);
    json_decref(rec);
    if (rc < 0) {
        dep_free(d);
        if (rc == -EEXIST) {
            snprintf(err, errlen, "model '%s' already has an active deployment", model);
            return api_end(r, w, before, -EEXIST, NULL, err, errlen);
        }
        snprintf(err, errlen, "the deployment could not be stored (%s); nothing was started", strerror(-rc));
        return api_end(r, w, before, rc == -EBUSY ? -EAGAIN : rc, NULL, err, errlen);
    }
    add_dep(r, d);
    /* an opt-out of the fairness gates is in the record of the deployment's creation too, in the
     * same words (a SIEM rule matches one string; review67 #4) */
    save(r, d, "created", actor, d->cfg.fairness_gates ? NULL : FAIRNESS_GATES_OFF);
    *ret = dep_json(d);
    return api_end(r, w, before, 0, ret, err, errlen);
}

/* A promotion whose version stops serving because the model was rolled back (to
 * version `to`): closed as rolled_back, the previous stable it kept loaded released, and the
 * event (and its audit record) saying who moved the model from which version to which. */
static void close_promotion(rollout_t *r, dep_t *d, const char *to, const char *event, const char *actor,
                            const char *reason)
{
    json_t *extra = json_pack("{s:s,s:s}", "from_version", d->version, "to_version", to);
    d->rollback_triggered = true;
    snprintf(d->rollback_reason, sizeof(d->rollback_reason), "%s", reason);
    set_state(d, "rolled_back", "rollback");
    d->traffic = 0;
    model_handle_unref(d->prev_stable); /* it serves again through the registry */
    d->prev_stable = NULL;
    d->window_until_ms = 0;
    save_ex(r, d, event, actor, d->rollback_reason, extra);
    json_decref(extra);
}

/* The deployment id held in memory, else loaded (inactive) from its stored record so
 * that an event can be added to it; NULL when unknown. Caller holds mu. */
static dep_t *held_or_loaded(rollout_t *r, const char *id)
{
    dep_t *d = find_dep(r, id);
    json_t *rec = NULL;
    if (d || r->n_deps == MAX_DEPS || store_deployment_get(r->store, id, &rec) < 0)
        return d;
    d = dep_from_record(r, rec);
    if (d)
        d->frozen_perf = json_incref(json_object_get(rec, "performance_metrics"));
    json_decref(rec);
    if (!d)
        return NULL;
    d->active = false;
    d->phase = PH_DONE;
    d->stage = -1;
    add_dep(r, d);
    return d;
}

static bool has_event(const json_t *rec, const char *event)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(rec, "timeline"), i, e)
    {
        const char *name = json_string_value(json_object_get(e, "event"));
        if (name && strcmp(name, event) == 0)
            return true;
    }
    return false;
}

/* What the stored deployments of a model say about rolling it back from its stable
 * version `from`: the promotion in force (the newest record with status stable and version
 * from: its id and previous_version), whether `version` ever served as stable (the version of
 * a promotion not undone by a failed verification, or the stable version a deployment started
 * from), and the newest record. */
typedef struct history {
    char last_id[32], last_prev[129], newest_id[32];
    bool was_stable;
} history_t;

static int read_history(rollout_t *r, const char *model, const char *from, const char *version, history_t *h)
{
    memset(h, 0, sizeof(*h));
    json_t *list = NULL;
    int rc = store_deployment_list(r->store, NULL, model, false, 0, &list);
    if (rc == -ENOTSUP)
        return 0;
    if (rc < 0)
        return rc;
    size_t i;
    json_t *rec;
    json_array_foreach(list, i, rec) /* newest first */
    {
        const char *id = json_string_value(json_object_get(rec, "deployment_id"));
        const char *v = json_string_value(json_object_get(rec, "version"));
        const char *st = json_string_value(json_object_get(rec, "status"));
        const char *pv = json_string_value(json_object_get(rec, "previous_version"));
        if (!id || !v)
            continue;
        if (!h->newest_id[0])
            snprintf(h->newest_id, sizeof(h->newest_id), "%s", id);
        if (!h->last_id[0] && st && strcmp(st, "stable") == 0 && strcmp(v, from) == 0) {
            snprintf(h->last_id, sizeof(h->last_id), "%s", id);
            snprintf(h->last_prev, sizeof(h->last_prev), "%s", pv ? pv : "");
        }
        if (version && ((pv && strcmp(pv, version) == 0) ||
                        (strcmp(v, version) == 0 && has_event(rec, "promoted_to_stable") &&
                         !has_event(rec, "restored_previous_version"))))
            h->was_stable = true;
    }
    json_decref(list);
    return 0;
}

int rollout_action(rollout_t *r, const char *id, const char *action, const json_t *body, const char *actor,
                   rollout_ack_fn ack, void *ack_arg, json_t **ret, const char **ret_field, char *err,
                   size_t errlen)
{
    api_wait_t *w = api_begin(r, ack, ack_arg, err, errlen);
    if (!w)
        return -ENOMEM;
    dep_t *d = find_dep(r, id);
    int rc = 0;
    unsigned before = r->save_failures;
    json_t *jreason = json_object_get(body, "reason");
    const char *reason = json_string_value(jreason);
    if (jreason && !json_is_null(jreason) && !json_is_string(jreason)) { /* never dropped silently */
        *ret_field = "reason";
        snprintf(err, errlen, "\"reason\" must be a string");
        return api_end(r, w, before, -EINVAL, NULL, err, errlen);
    }
    /* The model's stable version; a finished deployment acts only on its own */
    char serving[129] = "";
    if (d && !d->active && store_model_get_stable(r->store, d->model, serving, sizeof(serving)) < 0)
        serving[0] = '\0';
    if (d && !d->active && strcmp(d->status, "stable") == 0 && strcmp(serving, d->version) != 0 &&
        strcmp(action, "rollback") == 0) {
        snprintf(err, errlen,
                 "deployment %s is closed: its version %s no longer serves (the stable version of %s is %s); "
                 "nothing was changed (roll the model back with `aimedres rollback %s [--to VERSION]`)",
                 id, d->version, d->model, serving[0] ? serving : "none", d->model);
        return api_end(r, w, before, -EBUSY, NULL, err, errlen);
    }
    if (d && !d->active &&
        (strcmp(action, "promote") == 0 || strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0)) {
        char why[400] = "";
        if (strcmp(d->status, "stable") == 0 && strcmp(serving, d->version) != 0)
            snprintf(why, sizeof(why),
                     "; superseded: its version %s no longer serves, the stable version is %s", d->version,
                     serving[0] ? serving : "none");
        snprintf(err, errlen,
                 "deployment %s is finished (status %s%s): %s applies only to an active deployment; "
                 "nothing was changed",
                 id, d->status, why, action);
        return api_end(r, w, before, -EBUSY, NULL, err, errlen);
    }
    if (!d) {
        json_t *rec = NULL;
        rc = store_deployment_get(r->store, id, &rec);
        json_decref(rec);
        if (rc == 0) {
            snprintf(err, errlen, "deployment %s is finished; it can no longer be changed", id);
            return api_end(r, w, before, -EBUSY, NULL, err, errlen);
        }
        snprintf(err, errlen, "no deployment with id '%s'", id);
        return api_end(r, w, before, -ENOENT, NULL, err, errlen);
    }
    if (d->active && (strcmp(action, "promote") == 0 || strcmp(action, "resume") == 0)) {
        /* review47 #4: a move forward takes effect, then is stored; with the database failing
         * it would hold in this server alone, and a client retrying its 503 moved the candidate
         * a stage per retry. Refused instead, as while the audit trail fails (the safe
         * direction, rollback and pause, still goes through). A busy store is no answer. */
        bool behind = unstored(d);
        int probe = behind ? 0 : store_refuses_writes(r);
        if (behind || probe < 0) {
            char why[160];
            if (behind)
                snprintf(why, sizeof(why),
                         "its last change is not stored (the database can not be written; see the server log)");
            else if (probe == -EBUSY)
                snprintf(why, sizeof(why), "the database is busy (no write went through in %d ms; try again)",
                         WRITE_PROBE_WAIT_MS);
            else
                snprintf(why, sizeof(why), "the database can not be written");
            snprintf(err, errlen,
                     "deployment %s is not moved forward while %s; nothing was changed (rollback and pause "
                     "still work)",
                     id, why);
            return api_end(r, w, before, -EAGAIN, NULL, err, errlen);
        }
    }
    if (strcmp(action, "rollback") == 0) {
        if (d->active) {
            do_rollback(r, d, actor, reason ? reason : "manual rollback");
        } else if (strcmp(d->status, "stable") == 0 && d->prev_stable && d->prev_version[0]) {
            rc = store_model_set_stable(r->store, d->model, d->prev_version);
            if (rc == 0) {
                model_registry_sync(r->registry);
                close_promotion(r, d, d->prev_version, "rolled_back_to_previous_stable", actor,
                                reason ? reason : "manual rollback");
            } else {
                snprintf(err, errlen, "could not restore version %s: %s", d->prev_version, strerror(-rc));
            }
        } else {
            rc = -EBUSY;
            const char *hint = " and its rollback window is over (`aimedres rollback MODEL` still goes back "
                               "to its previous version, loading it)";
            snprintf(err, errlen, "deployment %s is %s%s; nothing to roll back", id, d->status,
                     strcmp(d->status, "stable") == 0 ? hint : "");
        }
    } else if (strcmp(action, "pause") == 0) {
        if (!d->active || strcmp(d->status, "paused") == 0) {
            rc = -EBUSY;
            snprintf(err, errlen, "deployment %s is %s; only an active, running deployment can be paused", id,
                     d->status);
        } else {
            snprintf(d->paused_from, sizeof(d->paused_from), "%s", d->status);
            d->paused_elapsed_ms = util_now_ms() - d->phase_started_ms;
            set_state(d, "paused", NULL);
            save(r, d, "paused", actor, reason);
        }
    } else if (strcmp(action, "resume") == 0) {
        if (!d->active || strcmp(d->status, "paused") != 0) {
            rc = -EBUSY;
            snprintf(err, errlen, "deployment %s is %s; only a paused deployment can be resumed", id,
                     d->status);
        } else {
            set_state(d, d->paused_from[0] ? d->paused_from : "deploying", NULL);
            d->phase_started_ms = util_now_ms() - d->paused_elapsed_ms;
            d->last_check_ms = util_now_ms();
            save(r, d, "resumed", actor, reason);
        }
    } else if (strcmp(action, "promote") == 0) {
        json_t *to = json_object_get(body, "to");
        /* Promote moves forward only, to one of the stages ahead (100: stable) */
        double cur = d->phase == PH_STAGE && d->stage >= 0 ? d->cfg.stages[d->stage] : 0;
        bool a_stage = false;
        for (size_t i = 0; to && i < d->cfg.n_stages; i++)
            a_stage |= fabs(d->cfg.stages[i] - json_number_value(to)) < 1e-9;
        if (to && (!json_is_number(to) || json_number_value(to) <= 0 || json_number_value(to) > 100)) {
            *ret_field = "to";
            snprintf(err, errlen, "\"to\" must be a traffic percentage in (0, 100]");
            rc = -EINVAL;
        } else if (to && d->active && d->phase == PH_STAGE && json_number_value(to) <= cur) {
            rc = -EBUSY;
            snprintf(err, errlen,
                     "deployment %s is at stage %d (%g%%); promote moves forward only, \"to\" %g is not "
                     "above it; nothing was changed",
                     id, d->stage + 1, cur, json_number_value(to));
        } else if (to && d->active && (d->phase == PH_STAGE || d->phase == PH_SHADOW) &&
                   json_number_value(to) < 100 && !a_stage) {
            *ret_field = "to";
            snprintf(err, errlen, "\"to\" must be one of the deployment's stages (canary_stages) or 100");
            rc = -EINVAL;
        } else if (!d->active || strcmp(d->status, "validating") == 0 || strcmp(d->status, "pending") == 0 ||
                   strcmp(d->status, "paused") == 0) {
            rc = -EBUSY;
            snprintf(err, errlen,
                     "deployment %s is %s; it can be promoted once it is running (resume it first "
                     "if paused)",
                     id, d->status);
        } else if ((to && json_number_value(to) >= 100) || d->phase == PH_BG_WATCH ||
                   (d->phase == PH_STAGE && (size_t)d->stage + 1 >= d->cfg.n_stages)) {
            rc = make_stable(r, d, actor, reason ? reason : "manual promotion");
            if (rc < 0)
                snprintf(err, errlen, "could not make %s stable: %s", d->version, strerror(-rc));
        } else {
            int next = d->phase == PH_SHADOW ? 0 : d->stage + 1;
            if (to)
                while ((size_t)next + 1 < d->cfg.n_stages && d->cfg.stages[next] < json_number_value(to))
                    next++;
            start_stage(r, d, next, actor, reason ? reason : "manual promotion");
        }
    } else {
        rc = -EINVAL;
        *ret_field = "action";
        snprintf(err, errlen, "unknown action '%s'", action);
    }
    if (rc == 0)
        *ret = dep_json(d);
    return api_end(r, w, before, rc, ret, err, errlen);
}

int rollout_model_rollback(rollout_t *r, const char *model, const char *to_version, const char *actor,
                           rollout_ack_fn ack, void *ack_arg, json_t **ret, char *err, size_t errlen)
{
    char from[129] = "";
    if (store_model_get_stable(r->store, model, from, sizeof(from)) < 0) {
        snprintf(err, errlen, "no model named '%s' with a stable version", model);
        return -ENOENT;
    }
    /* Where the model goes is decided and checked (registered, loads, served as stable)
     * before anything changes: a refused rollback leaves a running canary as it was */
    history_t hist;
    if (read_history(r, model, from, to_version, &hist) < 0) {
        snprintf(err, errlen, "the deployment history of '%s' could not be read; nothing was changed", model);
        return -EIO;
    }
    pthread_mutex_lock(&r->mu);
    bool had_active = active_for_model(r, model) != NULL;
    dep_t *held = hist.last_id[0] ? find_dep(r, hist.last_id) : NULL;
    char loaded[129] = ""; /* the previous stable version a promotion keeps loaded (known to load) */
    if (held && held->prev_stable)
        snprintf(loaded, sizeof(loaded), "%s", held->prev_version);
    pthread_mutex_unlock(&r->mu);
    const char *target = to_version;
    if (!target && !had_active) {
        if (!hist.last_prev[0]) {
            snprintf(
                err, errlen,
                "model '%s' has no recorded previous stable version to roll back to: no promotion in force "
                "made %s stable (give --to VERSION, a version that served as stable); nothing was changed",
                model, from);
            return -EBUSY;
        }
        target = hist.last_prev;
    }
    if (target && strcmp(target, from) == 0 && !had_active) {
        snprintf(err, errlen, "version %s is already the stable version of '%s'; nothing was changed", target,
                 model);
        return -EBUSY;
    }
    if (target && strcmp(target, from) != 0) {
        model_handle_t *h = NULL;
        int orc = strcmp(target, loaded) == 0 ? 0 : open_version(r, model, target, &h, err, errlen);
        model_handle_unref(h);
        if (orc == -EINVAL) {
            char why[400];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, errlen, "version %s of '%s' does not load (%s); nothing was changed", target, model,
                     why);
        } else if (orc < 0) {
            size_t l = strlen(err);
            snprintf(err + l, errlen - l, "; nothing was changed");
        }
        if (orc < 0)
            return orc;
        if (to_version && !hist.was_stable) {
            snprintf(err, errlen,
                     "version %s of '%s' never served as the stable version: a rollback switches only to a "
                     "version that did (deploy this one with `aimedres deploy direct %s %s`, which runs its "
                     "gates); nothing was changed",
                     target, model, model, target);
            return -EBUSY;
        }
    }
    api_wait_t *w = api_begin(r, ack, ack_arg, err, errlen);
    if (!w)
        return -ENOMEM;
    unsigned before = r->save_failures;
    dep_t *d = active_for_model(r, model);
    char now_stable[129] = "";
    if (store_model_get_stable(r->store, model, now_stable, sizeof(now_stable)) < 0 ||
        strcmp(now_stable, from) != 0 || (d != NULL) != had_active) {
        snprintf(err, errlen,
                 "the deployments of '%s' changed while the rollback was prepared; nothing was "
                 "changed: try again",
                 model);
        return api_end(r, w, before, -EBUSY, NULL, err, errlen);
    }
    if (d && (!target || strcmp(target, from) == 0)) {
        do_rollback(r, d, actor, "manual rollback of the model");
        *ret = json_pack("{s:s,s:s,s:s,s:s,s:s}", "model", model, "from", d->version, "to", from,
                         "deployment_id", d->id, "action", "deployment_rolled_back");
        return api_end(r, w, before, 0, ret, err, errlen);
    }
    /* the stable version changes, from -> target: the promotion in force is closed, else the
     * change is recorded (and audited) in the model's newest deployment */
    dep_t *last = hist.last_id[0] ? held_or_loaded(r, hist.last_id) : NULL;
    if (last && (last->active || strcmp(last->status, "stable") != 0 || strcmp(last->version, from) != 0))
        last = NULL;
    dep_t *holder = last ? last : d ? d : hist.newest_id[0] ? held_or_loaded(r, hist.newest_id) : NULL;
    if (!holder) {
        snprintf(err, errlen, "no deployment of '%s' to record the rollback in; nothing was changed", model);
        return api_end(r, w, before, -EBUSY, NULL, err, errlen);
    }
    if (d)
        do_rollback(r, d, actor, "manual rollback of the model");
    int rc = store_model_set_stable(r->store, model, target);
    if (rc < 0) {
        snprintf(err, errlen, "could not make version %s of '%s' stable (%s)%s", target, model, strerror(-rc),
                 d ? "; its active deployment was rolled back" : "; nothing was changed");
        return api_end(r, w, before, -EIO, NULL, err, errlen);
    }
    model_registry_sync(r->registry);
    char reason[320];
    snprintf(reason, sizeof(reason), "manual rollback of the model from %s to %s", from, target);
    if (last) {
        close_promotion(r, last, target,
                        strcmp(target, last->prev_version) == 0 ? "rolled_back_to_previous_stable"
                                                                : "rolled_back_to_version",
                        actor, reason);
    } else {
        json_t *extra = json_pack("{s:s,s:s}", "from_version", from, "to_version", target);
        save_ex(r, holder, "model_rolled_back", actor, reason, extra);
        json_decref(extra);
    }
    log_msg(LOG_INFO, "model rolled back", "{s:s,s:s,s:s,s:s}", "model", model, "from", from, "to", target,
            "actor", actor ? actor : "");
    *ret = json_pack("{s:s,s:s,s:s,s:s,s:s}", "model", model, "from", from, "to", target, "deployment_id",
                     holder->id, "action", "stable_version_restored");
    return api_end(r, w, before, 0, ret, err, errlen);
}

int rollout_get(rollout_t *r, const char *id, json_t **ret)
{
    pthread_mutex_lock(&r->mu);
    dep_t *d = find_dep(r, id);
    if (d) {
        *ret = dep_json(d);
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    pthread_mutex_unlock(&r->mu);
    int rc = store_deployment_get(r->store, id, ret);
    if (rc == 0) /* not held by this process: nothing of it is loaded */
        json_object_set_new(*ret, "previous_version_loaded", json_false());
    return rc;
}

int rollout_list(rollout_t *r, const char *status, const char *model, json_t **ret)
{
    json_t *list = NULL;
    int rc = store_deployment_list(r->store, status, model, false, 0, &list);
    if (rc < 0)
        return rc;
    /* live figures for the ones this controller holds */
    pthread_mutex_lock(&r->mu);
    size_t i;
    json_t *rec;
    json_array_foreach(list, i, rec)
    {
        dep_t *d = find_dep(r, json_string_value(json_object_get(rec, "deployment_id")));
        if (d)
            json_array_set_new(list, i, dep_json(d));
        else /* not held by this process: nothing of it is loaded */
            json_object_set_new(rec, "previous_version_loaded", json_false());
    }
    pthread_mutex_unlock(&r->mu);
    *ret = list;
    return 0;
}

static void view_loaded(rollout_model_view_t *v, model_handle_t *h)
{
    if (!h || v->n_loaded == ROLLOUT_VIEW_LOADED)
        return;
    const char *version = model_handle_manifest(h)->version;
    for (size_t i = 0; i < v->n_loaded; i++)
        if (strcmp(v->loaded[i], version) == 0)
            return;
    snprintf(v->loaded[v->n_loaded++], sizeof(v->loaded[0]), "%s", version);
}

void rollout_model_view(rollout_t *r, const char *model, rollout_model_view_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!r || !model)
        return;
    pthread_mutex_lock(&r->mu);
    pthread_rwlock_rdlock(&r->rw); /* d->cand is swapped under it */
    for (size_t i = 0; i < r->n_deps; i++) {
        dep_t *d = r->deps[i];
        if (strcmp(d->model, model) != 0)
            continue;
        view_loaded(ret, d->cand);
        view_loaded(ret, d->prev_stable);
        if (!d->active)
            continue;
        int mode = atomic_load(&d->route_mode);
        if (mode == ROUTE_SPLIT) {
            snprintf(ret->split_version, sizeof(ret->split_version), "%s", d->version);
            ret->split_traffic = d->traffic;
        } else if (mode == ROUTE_SHADOW) {
            snprintf(ret->shadow_version, sizeof(ret->shadow_version), "%s", d->version);
        }
    }
    pthread_rwlock_unlock(&r->rw);
    pthread_mutex_unlock(&r->mu);
}

json_t *rollout_status(rollout_t *r)
{
    json_t *a = json_array();
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_deps; i++)
        if (r->deps[i]->active)
            json_array_append_new(a, dep_json(r->deps[i]));
    pthread_mutex_unlock(&r->mu);
    return json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(a), "active", a);
}
