/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres serve`: opens the store, loads the models, starts the HTTP workers and runs
 * the control loop on the main thread: signals (SIGTERM/SIGINT drain and exit, SIGHUP
 * reloads models) and the registry poll that picks up models registered by other
 * processes. Shutdown order matters: stop accepting, let in-flight requests finish (each
 * waits for its durable record), stop the workers, flush the recorder, close the store. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cli.h"
#include "common/buildinfo.h"
#include "common/lockfile.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/util.h"
#include "monitor/process.h"
#include "monitor/monitor.h" /* monitor (issue 4) */
#include "security/pseudonym.h"
#include "audit/audit.h"       /* audit (issue 5) */
#include "audit/siem.h"        /* audit (issue 5) */
#include "security/security.h" /* security (issue 5) */
#include "security/tls.h"      /* security (issue 5) */
#include "audit/configfp.h"      /* audit (issue 5, audit3): CONFIG_CHANGE at start */
#include "security/clientaddr.h" /* security (issue 5, audit3): TRUSTED_PROXIES */
#include "rollout/rollout.h"   /* rollouts (issue 3) */
#include "backup/restore.h"   /* backup: the restore journal */

typedef struct serve_state {
    api_app_t app;
    audit_siem_t *audit_siem;      /* audit (issue 5): SIEM forwarder, NULL = off */
    http_server_t *metrics_server; /* on PROMETHEUS_PORT, when set */
    struct event_base *base;
    struct event *drain_timer;
    int64_t drain_deadline_ms;
    bool stopping;
    SSL_CTX *tls_ctx;             /* security (issue 5): the context new connections get */
    tls_files_stamp_t tls_stamp;  /* the certificate and key files it was built from */
    int64_t tls_retry_s;          /* a refused, not yet valid renewal: try it again then (0: none) */
} serve_state_t;

/* A certificate expiring within this many days is warned about at each load. */
#define TLS_EXPIRY_WARN_DAYS 14

/* Says, at start and at each reload, when the certificate cannot work or soon will not. */
static void tls_check_dates(SSL_CTX *ctx)
{
    int64_t nb, na, now = util_now_ms() / 1000;
    tls_validity_t v = tls_ctx_valid_at(ctx, now, &nb, &na);
    if (v == TLS_DATES_UNKNOWN) {
        log_msg(LOG_WARNING, "TLS certificate dates cannot be read", NULL);
        return;
    }
    char at[ISO8601_LEN];
    util_iso8601(na * 1000, at);
    tls_metrics_set_expiry(na);
    if (v == TLS_EXPIRED) {
        log_msg(LOG_ERROR, "TLS certificate has expired: clients refuse it; renew TLS_CERT_PATH (it is reloaded "
                           "when the file changes, or on SIGHUP)", "{s:s}", "not_after", at);
    } else if (v == TLS_NOT_YET) {
        char from[ISO8601_LEN];
        util_iso8601(nb * 1000, from);
        log_msg(LOG_ERROR, "TLS certificate is not valid yet: clients refuse it until not_before (is the clock "
                           "right?)", "{s:s,s:s}", "not_before", from, "not_after", at);
    } else if (na - now < TLS_EXPIRY_WARN_DAYS * 86400) {
        log_msg(LOG_WARNING, "TLS certificate expires soon", "{s:s,s:I}", "not_after", at, "days_left",
                (json_int_t)((na - now) / 86400));
    }
}

/* Replaces the served certificate with what TLS_CERT_PATH and TLS_KEY_PATH hold now; on any
 * error the server keeps presenting the one it has. */
static void tls_reload(serve_state_t *st, const char *trigger)
{
    const config_t *cfg = st->app.cfg;
    char err[512];
    SSL_CTX *ctx = NULL;
    /* noted first: files that do not load are not retried until they change again */
    tls_files_stamp(cfg->tls_cert_path, cfg->tls_key_path, &st->tls_stamp);
    st->tls_retry_s = 0;
    if (tls_ctx_new(cfg->tls_cert_path, cfg->tls_key_path, cfg->tls_min_version, &ctx, err, sizeof(err)) < 0) {
        log_msg(LOG_ERROR, "TLS certificate not reloaded; still presenting the previous one", "{s:s,s:s}",
                "trigger", trigger, "error", err);
        return;
    }
    /* A renewal that no client would take (expired, or not valid yet) does not replace one
     * they take now (review63 #4); a not yet valid one is tried again when it becomes valid. */
    int64_t nb_new = 0, na_new = 0, nb_old, na_old, now = util_now_ms() / 1000;
    tls_validity_t v_new = tls_ctx_valid_at(ctx, now, &nb_new, &na_new);
    if (v_new != TLS_VALID && tls_ctx_valid_at(st->tls_ctx, now, &nb_old, &na_old) == TLS_VALID) {
        char when[ISO8601_LEN];
        bool early = v_new == TLS_NOT_YET;
        util_iso8601((early ? nb_new : na_new) * 1000, when);
        if (early)
            st->tls_retry_s = nb_new;
        log_msg(LOG_ERROR, early ? "TLS certificate not reloaded: the new one is not valid yet (it is taken then); "
                                   "still presenting the previous one"
                                 : "TLS certificate not reloaded: the new one has expired or its dates cannot be "
                                   "read; still presenting the previous one",
                "{s:s,s:s}", "trigger", trigger, early ? "not_before" : "not_after", when);
        tls_ctx_free(ctx);
        return;
    }
    /* both listeners (PROMETHEUS_PORT's too) shared the old context, which st held */
    http_server_swap_tls(st->app.server, ctx);
    if (st->metrics_server)
        http_server_swap_tls(st->metrics_server, ctx);
    tls_ctx_free(st->tls_ctx);
    st->tls_ctx = ctx;
    char at[ISO8601_LEN] = "";
    if (v_new != TLS_DATES_UNKNOWN)
        util_iso8601(na_new * 1000, at);
    log_msg(LOG_INFO, "TLS certificate reloaded", "{s:s,s:s}", "trigger", trigger, "not_after", at);
    tls_check_dates(ctx);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres serve [--host ADDR] [--port N] [--env-file FILE]\n\n"
                 "Runs the HTTP server with the models registered in the store.\n"
                 "  --host ADDR      listen address (default HOST or 127.0.0.1)\n"
                 "  --port N         listen port, 0 for an ephemeral one (default PORT or 8080)\n"
                 "  --env-file FILE  read settings from FILE first; the environment overrides it\n"
                 "Signals: SIGTERM/SIGINT drain in-flight requests and exit 0; SIGHUP reloads models,\n"
                 "reopens LOG_FILE and reloads the TLS certificate (also reloaded when its files change).\n"
                 "With NOTIFY_SOCKET set (systemd Type=notify), reports READY=1 and its port\n"
                 "(X_AIMEDRES_PORT) once it answers, RELOADING=1 around SIGHUP, STOPPING=1 at SIGTERM.\n");
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    serve_state_t *st = arg;
    uint64_t inflight = http_server_inflight(st->app.server);
    /* inflight counts only what the workers have dispatched: first every worker must have
     * taken in the requests that reached it before the drain */
    bool done = inflight == 0 && http_server_drained_in(st->app.server);
    if (done || util_now_ms() >= st->drain_deadline_ms) {
        if (inflight)
            log_msg(LOG_WARNING, "drain deadline reached", "{s:I}", "inflight", (json_int_t)inflight);
        event_base_loopbreak(st->base);
    }
}

/* State changes for the service manager (notify.h), sent from the main loop without blocking
 * it. A listener whose queue is full gets the latest state again every 100 ms until it takes it
 * (a newer state replaces a waiting one: READY=1 after RELOADING=1, STOPPING=1 after READY=1),
 * so READY=1 is delayed, not lost (review69 #5). Any other failure is logged, not fatal: the
 * manager then times the service out, as it should when it cannot hear it. */
static struct {
    struct event *retry;
    char pending[256];  /* the state waiting for room in the listener's queue ("" none) */
    char ready[256];    /* READY=1 with STATUS, MAINPID and X_AIMEDRES_PORT, after a reload too */
} manager;

static void manager_send(const char *state, bool retrying)
{
    int r = notify_send(state);
    if (r == -EAGAIN && manager.retry) {
        if (!retrying && !manager.pending[0])
            log_msg(LOG_WARNING, "the service manager's notify queue is full; sending the state again until it "
                    "takes it", "{s:s}", "state", state);
        if (state != manager.pending)
            snprintf(manager.pending, sizeof(manager.pending), "%s", state);
        event_add(manager.retry, &(struct timeval){0, 100000});
        return;
    }
    manager.pending[0] = '\0';
    if (r < 0)
        log_msg(LOG_WARNING, "cannot notify the service manager (NOTIFY_SOCKET)", "{s:s,s:s}", "state", state, "error",
                strerror(-r));
}

static void tell_manager(const char *state)
{
    manager_send(state, false);
}

static void manager_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (manager.pending[0])
        manager_send(manager.pending, true);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    serve_state_t *st = arg;
    if (sig == SIGHUP) {
        char state[96];
        snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%lld", (long long)(util_mono_ns() / 1000));
        tell_manager(state);
        int lr = log_reopen(); /* logrotate: `postrotate kill -HUP` */
        if (lr < 0)
            log_msg(LOG_ERROR, "cannot reopen LOG_FILE; still writing to the old file", "{s:s}", "error",
                    strerror(-lr));
        int n = model_registry_sync(st->app.registry);
        log_msg(LOG_INFO, "models reloaded", "{s:i,s:I}", "changes", n, "loaded",
                (json_int_t)model_registry_loaded_count(st->app.registry));
        if (st->tls_ctx)
            tls_reload(st, "SIGHUP");
        tell_manager(manager.ready);
        return;
    }
    if (st->stopping)
        return;
    st->stopping = true;
    tell_manager("STOPPING=1\nSTATUS=draining");
    log_msg(LOG_INFO, "draining", "{s:s,s:I,s:i}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            "inflight", (json_int_t)http_server_inflight(st->app.server), "deadline_s",
            st->app.cfg->drain_timeout_s);
    http_server_drain(st->app.server);
    if (st->metrics_server)
        http_server_drain(st->metrics_server);
    st->drain_deadline_ms = util_now_ms() + (int64_t)st->app.cfg->drain_timeout_s * 1000;
    struct timeval tv = {0, 10000};
    st->drain_timer = event_new(st->base, -1, EV_PERSIST, drain_tick, st);
    event_add(st->drain_timer, &tv);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    serve_state_t *st = arg;
    if (st->stopping)
        return;
    model_registry_poll(st->app.registry);
    tls_files_stamp_t now;
    /* a renewed certificate (certbot, a Kubernetes secret) is picked up without a signal */
    if (st->tls_ctx &&
        tls_files_stamp(st->app.cfg->tls_cert_path, st->app.cfg->tls_key_path, &now) == 0 &&
        memcmp(&now, &st->tls_stamp, sizeof(now)) != 0)
        tls_reload(st, "files changed");
    else if (st->tls_retry_s && util_now_ms() / 1000 >= st->tls_retry_s)
        tls_reload(st, "renewal now valid");
}

int cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"env-file", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *host = NULL, *port_s = NULL, *env_file = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port_s = optarg; break;
        case 'e': env_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aimedres serve: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    int64_t port = -1;
    if (port_s && util_parse_int64(port_s, 0, 65535, &port) < 0) {
        fprintf(stderr, "aimedres serve: --port: expected an integer 0..65535, got '%s'\n", port_s);
        return 2;
    }

    config_t *cfg = cli_load_config(env_file);
    if (!cfg)
        return 1;
    /* systemd's Type=notify (and dr-drill's server): READY=1 once serving. NOTIFY_SOCKET leaves
     * the environment here, before any thread or child process starts. */
    if (notify_init() < 0)
        log_msg(LOG_WARNING,
                "NOTIFY_SOCKET names no AF_UNIX socket ('/path' or '@name', at most 107 bytes): readiness is not "
                "reported",
                NULL);
    int rc = 1;
    serve_state_t st = {0};
    st.app.cfg = cfg;
    st.app.started_ms = util_now_ms();
    struct event *sigs[4] = {0}, *poll_ev = NULL;
    int data_lock = -1;
    char err[512] = "";

    /* security (issue 5): native TLS; a bad certificate or key refuses to start. */
    if (cfg->tls_enabled) {
        tls_files_stamp(cfg->tls_cert_path, cfg->tls_key_path, &st.tls_stamp);
        if (tls_ctx_new(cfg->tls_cert_path, cfg->tls_key_path, cfg->tls_min_version, &st.tls_ctx, err,
                        sizeof(err)) < 0) {
            fprintf(stderr, "aimedres serve: %s\n", err);
            goto out;
        }
        int64_t nb, na;
        tls_metrics_register(tls_ctx_validity(st.tls_ctx, &nb, &na) == 0 ? na : 0);
        tls_check_dates(st.tls_ctx);
    }
    if (pseudonym_init(cfg->secret_key) < 0) {
        fprintf(stderr, "aimedres serve: cannot initialise patient pseudonyms\n");
        goto out;
    }
    if (!cfg->secret_key || !*cfg->secret_key)
        log_msg(LOG_WARNING, "SECRET_KEY unset: patient pseudonyms use a per-process key", NULL);
    signal(SIGPIPE, SIG_IGN);
    /* audit (issue 5): the durable audit trail (NULL when AUDIT_LOG_PATH is unset) and the
     * SIEM forwarder; a log that cannot be opened refuses to start. */
    if (audit_log_open(cfg, (audit_log_t **)&st.app.audit, err, sizeof(err)) < 0 ||
        audit_siem_start(cfg, &st.audit_siem, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres serve: audit: %s\n", err);
        goto out;
    }
    if (!st.app.audit)
        log_msg(LOG_WARNING, "AUDIT_LOG_PATH unset: no audit trail", NULL);
    if (!st.app.audit && cfg->siem_integration_enabled)
        log_msg(LOG_WARNING, AUDIT_SIEM_WITHOUT_TRAIL, NULL);
    /* security (issue 5, audit3): client addresses behind trusted proxies */
    if (clientaddr_configure(cfg->trusted_proxies, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres serve: %s\n", err);
        goto out;
    }
    int mk = util_mkdir_p(cfg->model_storage_path, 0750);
    if (mk < 0) {
        fprintf(stderr, "aimedres serve: MODEL_STORAGE_PATH: cannot create %s: %s\n", cfg->model_storage_path,
                strerror(-mk));
        goto out;
    }

    /* The data lock says "a server holds this database": restore refuses to overwrite it
     * while held. The kernel drops it if we die, so kill -9 leaves no stale lock. */
    char dbpath[4096], lockpath[4200];
    if (store_url_file_path(cfg->database_url, dbpath, sizeof(dbpath), err, sizeof(err)) == 0) {
        char *slash = strrchr(dbpath, '/');
        if (slash && slash != dbpath) {
            *slash = '\0';
            util_mkdir_p(dbpath, 0750);
            *slash = '/';
        }
        lockfile_path_for_db(dbpath, lockpath, sizeof(lockpath));
        data_lock = lockfile_acquire(lockpath);
        if (data_lock < 0) {
            fprintf(stderr, "aimedres serve: %s: %s\n", lockpath,
                    data_lock == -EWOULDBLOCK ? "another aimedres server already holds this database"
                                              : strerror(-data_lock));
            goto out;
        }
        /* backup: a restore cut short in its swap left a mix of backup and old data */
        char jerr[2048] = "";
        int jr = backup_restore_journal_check(dbpath, jerr, sizeof(jerr));
        if (jr < 0) {
            fprintf(stderr, "aimedres serve: refusing to start: %s\n", jr == -EUCLEAN ? jerr : strerror(-jr));
            goto out;
        }
    }
    st.app.store = cli_open_store(cfg);
    if (!st.app.store)
        goto out;
    if ((rc = recorder_new(st.app.store, 0, &st.app.recorder)) < 0) {
        fprintf(stderr, "aimedres serve: cannot start the prediction recorder: %s\n", strerror(-rc));
        rc = 1;
        goto out;
    }
    rc = 1;
    if (model_registry_new(st.app.store, cfg->model_storage_path, &st.app.registry) < 0) {
        fprintf(stderr, "aimedres serve: cannot create the model registry\n");
        goto out;
    }
    model_registry_sync(st.app.registry);
    if (model_registry_loaded_count(st.app.registry) == 0)
        log_msg(LOG_WARNING, "no models loaded; /ready answers 503 until one is registered", "{s:s}",
                "model_storage_path", cfg->model_storage_path);
    /* rollouts (issue 3): the deployment controller resumes stored deployments */
    int rrc = rollout_new(st.app.store, st.app.registry, cfg, (rollout_t **)&st.app.rollout, err,
                          sizeof(err));
    if (rrc == 0)
        rollout_set_audit(st.app.rollout, st.app.audit); /* audit (issue 5): DEPLOYMENT_* events */
    if (rrc < 0 || rollout_start(st.app.rollout) < 0) {
        fprintf(stderr, "aimedres serve: rollouts: %s\n", err[0] ? err : "cannot start the controller");
        goto out;
    }

    http_server_opts_t hopts = {
        .host = host ? host : cfg->host,
        .port = port >= 0 ? (int)port : cfg->port,
        .workers = cfg->max_workers,
        .max_body_bytes = cfg->max_body_bytes,
        .max_header_bytes = cfg->max_header_bytes,
        .timeout_s = cfg->read_timeout_s,
        .write_timeout_s = cfg->write_timeout_s,
        .cors_allowed_origins = cfg->cors_allowed_origins,
        .hsts = cfg->tls_enabled,
        /* security (issue 5): authentication, roles, rate limits; TLS */
        .authorize = security_authorize,
        .authorize_arg = &st.app,
        .tls_ctx = st.tls_ctx,
    };
    /* security (issue 5): AUTH_ENABLED builds the authenticator; off, every route is open. */
    if (cfg->auth_enabled &&
        security_new(cfg, st.app.store, (security_t **)&st.app.security, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres serve: %s\n", err[0] ? err : "cannot set up authentication");
        goto out;
    }
    if (!cfg->auth_enabled)
        log_msg(LOG_WARNING, "AUTH_ENABLED=false: every endpoint is open (development only)", NULL);
    if (http_server_new(&hopts, api_routes, api_routes_count, &st.app, &st.app.server, err, sizeof(err)) <
        0) {
        fprintf(stderr, "aimedres serve: HOST/PORT (%s:%d): %s\n", hopts.host, hopts.port, err);
        goto out;
    }
    if (cfg->prometheus_enabled && cfg->prometheus_port > 0) {
        http_server_opts_t mopts = hopts;
        mopts.port = cfg->prometheus_port;
        /* its own address: the API behind nginx on loopback, /metrics where Prometheus reaches it */
        if (cfg->prometheus_host && *cfg->prometheus_host)
            mopts.host = cfg->prometheus_host;
        mopts.workers = 1;
        mopts.cors_allowed_origins = NULL;
        if (http_server_new(&mopts, api_metrics_routes, api_metrics_routes_count, &st.app, &st.metrics_server,
                            err, sizeof(err)) < 0) {
            fprintf(stderr, "aimedres serve: PROMETHEUS_HOST/PROMETHEUS_PORT (%s:%d): %s\n", mopts.host,
                    mopts.port, err);
            goto out;
        }
    }
    /* monitor (issue 4): drift, data quality, accuracy, alerts and their delivery */
    if (cfg->monitor_enabled) {
        monitor_settings_t ms;
        char base[300];
        if (monitor_settings_from_config(cfg, &ms, err, sizeof(err)) < 0 ||
            monitor_new(&ms, st.app.store, st.app.registry, &st.app.monitor, err, sizeof(err)) < 0) {
            fprintf(stderr, "aimedres serve: monitor: %s\n", err[0] ? err : "cannot start");
            goto out;
        }
        snprintf(base, sizeof(base), "http://%s:%d", hopts.host, http_server_port(st.app.server));
        monitor_set_base_url(st.app.monitor, base);
        if (monitor_start(st.app.monitor) < 0) {
            fprintf(stderr, "aimedres serve: monitor: cannot start its thread\n");
            goto out;
        }
    }
    process_metrics_register(cfg->model_storage_path);
    if (cfg->backup_enabled) /* this server's data is backed up: export the backup's age */
        backup_metrics_register(cfg->backup_path);
    /* audit (issue 5, audit3): CONFIG_CHANGE when the configuration differs from the last
     * start's, recorded once everything is set up and before serving (fingerprints only; a
     * failure to record it refuses to start) */
    if (audit_config_record(st.app.audit, cfg, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres serve: audit: %s\n", err);
        goto out;
    }
    st.base = event_base_new();
    /* audit3: the signal handlers go in before the workers answer /health, so a SIGTERM sent
     * as soon as the server looks up drains it instead of killing it */
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; st.base && i < ARRAY_SIZE(signums); i++) {
        sigs[i] = evsignal_new(st.base, signums[i], on_signal, &st);
        event_add(sigs[i], NULL);
    }
    if (!st.base || http_server_start(st.app.server) < 0 ||
        (st.metrics_server && http_server_start(st.metrics_server) < 0)) {
        fprintf(stderr, "aimedres serve: cannot start worker threads\n");
        goto out;
    }
    poll_ev = event_new(st.base, -1, EV_PERSIST, on_poll, &st);
    struct timeval ptv = {cfg->model_poll_interval_ms / 1000, (cfg->model_poll_interval_ms % 1000) * 1000};
    event_add(poll_ev, &ptv);

    json_t *where = json_pack("{s:s,s:i,s:i,s:I,s:s,s:s}", "host", hopts.host, "port",
                              http_server_port(st.app.server), "workers", hopts.workers, "models",
                              (json_int_t)model_registry_loaded_count(st.app.registry), "version", AIMEDRES_VERSION,
                              "build", aimedres_build);
    if (where && st.metrics_server) {
        json_object_set_new(where, "metrics_host",
                            json_string(cfg->prometheus_host && *cfg->prometheus_host ? cfg->prometheus_host
                                                                                      : hopts.host));
        json_object_set_new(where, "metrics_port", json_integer(http_server_port(st.metrics_server)));
    }
    log_json(LOG_INFO, "listening", where);
    snprintf(manager.ready, sizeof(manager.ready), "READY=1\nSTATUS=serving on %s:%d\nMAINPID=%ld\nX_AIMEDRES_PORT=%d",
             hopts.host, http_server_port(st.app.server), (long)getpid(), http_server_port(st.app.server));
    manager.retry = evtimer_new(st.base, manager_retry, NULL);
    tell_manager(manager.ready);
    event_base_dispatch(st.base);

    http_server_stop(st.app.server);
    if (st.metrics_server)
        http_server_stop(st.metrics_server);
    recorder_free(st.app.recorder); /* writes what is queued; their requests are gone */
    st.app.recorder = NULL;
    uint64_t total = http_server_requests_total(st.app.server);
    log_msg(LOG_INFO, "stopped", "{s:I}", "requests", (json_int_t)total);
    rc = 0;
out:
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (poll_ev)
        event_free(poll_ev);
    if (manager.retry) {
        if (manager.pending[0]) /* a last try: STOPPING=1 may still be waiting */
            notify_send(manager.pending);
        event_free(manager.retry);
        manager.retry = NULL;
    }
    if (st.drain_timer)
        event_free(st.drain_timer);
    if (st.app.server)
        http_server_stop(st.app.server);
    if (st.metrics_server)
        http_server_stop(st.metrics_server);
    recorder_free(st.app.recorder);
    audit_siem_stop(st.audit_siem); /* audit (issue 5): workers stopped; pending callbacks fire here */
    /* requests the drain deadline cut off: once the recorder and the trail have said how their
     * writes ended, each says what became of it, to the log and (MODEL_INFERENCE_NOT_DELIVERED)
     * to the trail, which is still open (review57 #1) */
    audit_log_quiesce(st.app.audit);
    http_server_run_unanswerable(st.app.server);
    rollout_set_audit(st.app.rollout, NULL); /* audit (issue 5): the controller runs on; never a freed log */
    audit_log_close(st.app.audit);           /* audit (issue 5): before the server frees deferred requests */
    http_server_free(st.metrics_server);
    http_server_free(st.app.server);
    security_free(st.app.security); /* security (issue 5) */
    clientaddr_deconfigure();       /* security (issue 5, audit3) */
    tls_ctx_free(st.tls_ctx);       /* security (issue 5) */
    monitor_free(st.app.monitor);   /* monitor (issue 4): after the workers, before store and registry */
    rollout_free(st.app.rollout);   /* rollouts (issue 3): after the workers, before the registry */
    model_registry_free(st.app.registry);
    store_close(st.app.store);
    lockfile_release(data_lock);
    if (st.base)
        event_base_free(st.base);
    config_free(cfg);
    return rc;
}
