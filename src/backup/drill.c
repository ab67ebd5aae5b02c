/* SPDX-License-Identifier: Apache-2.0 */
/* Disaster-recovery drill (see drill.h for the steps). The drill server is this same
 * binary started with every data setting pointing into the temporary target, talking to
 * us over loopback through backup/httpc.c. */
#include "backup/drill.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "backup/events.h"
#include "backup/fsutil.h"
#include "common/httpc.h"
#include "backup/interrupt.h"
#include "backup/manifest.h"
#include "backup/repo.h"
#include "backup/restore.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/util.h"
#include "model/manifest.h"
#include "model/runtime.h"
#include "security/apikey.h"
#include "store/apikeys.h"
#include "store/store.h"

extern char **environ;

#define HTTP_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 30000
#define PROB_TOLERANCE 1e-6
/* Each drill's work dir holds LOCK_NAME, flocked while the drill runs (the kernel drops the
 * lock however the drill ends, SIGKILL included); KEPT_NAME marks a --keep directory. */
#define WORK_PREFIX "aimedres-drill-"
#define LOCK_NAME ".drill.lock"
#define KEPT_NAME ".drill.kept"
/* a work dir without a lock file (a drill of an older version, or one killed between mkdtemp
 * and taking its lock) is stale once it is this old */
#define UNLOCKED_STALE_S 600

typedef struct drill {
    const backup_settings_t *s;
    const backup_drill_opts_t *o;
    json_t *report, *steps;
    char target[PATH_MAX];
    char db_file[PATH_MAX];
    pid_t server;
    int notify_fd; /* where the server says READY=1 and its port (notify.h), -1 before */
    int port;      /* the drill server's, from its READY=1 (it binds port 0: nothing can take it first) */
    char log[PATH_MAX];
    char env_file[PATH_MAX]; /* the restored env file, "" if the backup has none */
    char salt[APIKEY_SECRET_SIZE];    /* the drill server's API_KEY_SALT (fresh) */
    char api_key[APIKEY_KEY_SIZE];    /* the drill's own key in the restored store */
    bool ok;
} drill_t;

static double secs_since(int64_t t0)
{
    return (double)(util_mono_ns() - t0) / 1e9;
}

static json_t *step(drill_t *d, const char *name, bool ok, int64_t t0, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static json_t *step(drill_t *d, const char *name, bool ok, int64_t t0, const char *fmt, ...)
{
    char msg[2048] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    json_t *st = json_pack("{s:s,s:b,s:f}", "name", name, "ok", ok, "seconds", t0 ? secs_since(t0) : 0.0);
    if (msg[0])
        json_object_set_new(st, ok ? "detail" : "error", json_string(msg));
    json_array_append_new(d->steps, st);
    if (!ok)
        d->ok = false;
    return st;
}

static void log_tail(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)len - 1 ? end - (off_t)len + 1 : 0;
    ssize_t n = pread(fd, buf, len - 1, from);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
}

/* ------------------------------------------------------------------ work dirs */

/* Whether work dir path (an aimedres-drill-* directory) was left by a drill that is gone:
 * its lock file is not locked, or it has none and is older than UNLOCKED_STALE_S. Kept
 * (--keep) directories are never stale. */
static bool stale_work_dir(const char *path)
{
    char f[PATH_MAX];
    struct stat st;
    if (backup_path_join(f, sizeof(f), path, KEPT_NAME) < 0 || lstat(f, &st) == 0)
        return false;
    if (backup_path_join(f, sizeof(f), path, LOCK_NAME) < 0)
        return false;
    int fd = open(f, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT && lstat(path, &st) == 0 && time(NULL) - st.st_mtime > UNLOCKED_STALE_S;
    bool free_lock = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd); /* drops the probe's lock too */
    return free_lock;
}

/* Removes the work dirs in base that drills killed without cleaning up (SIGKILL, OOM, power
 * loss) left behind: each is a decrypted copy of production. Returns how many. */
static int remove_stale_work_dirs(const char *base)
{
    DIR *dir = opendir(base);
    if (!dir)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        char path[PATH_MAX];
        struct stat st;
        if (strncmp(e->d_name, WORK_PREFIX, strlen(WORK_PREFIX)) != 0 ||
            backup_path_join(path, sizeof(path), base, e->d_name) < 0 || lstat(path, &st) < 0 ||
            !S_ISDIR(st.st_mode) || !stale_work_dir(path))
            continue;
        if (util_rmtree(path) == 0)
            n++;
        else
            log_warning("dr-drill: cannot remove a stale work directory", "{s:s}", "dir", path);
    }
    closedir(dir);
    return n;
}

/* Creates and flocks the work dir's lock file: held until the drill ends. The file is locked
 * under a temporary name and then renamed to LOCK_NAME, so another drill's stale_work_dir never
 * sees it unlocked (review34: it removed a starting drill's directory in that gap); until then
 * the directory has no lock file and is young, which stale_work_dir leaves alone. */
static int lock_work_dir(const char *target, char *err, size_t errlen)
{
    char f[PATH_MAX], tmp[PATH_MAX];
    int fd = -1;
    if (backup_path_join(f, sizeof(f), target, LOCK_NAME) == 0 &&
        backup_path_join(tmp, sizeof(tmp), target, LOCK_NAME ".new") == 0)
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0 || rename(tmp, f) < 0) {
        snprintf(err, errlen, "cannot lock the work directory %.1024s: %s", target, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    return fd;
}

/* ------------------------------------------------------------------ server */

static const char *const overridden[] = {
    "MODEL_STORAGE_PATH", "DATABASE_URL", "DATA_DIR", "RESULTS_PATH", "AUDIT_LOG_PATH", "LOG_FILE", "HOST",
    "PORT", "PROMETHEUS_PORT", "BACKUP_ENABLED", "BACKUP_PATH", "BACKUP_OFFSITE_DIR", "API_KEY_SALT",
    /* the outside world: production's SIEM, Alertmanager and webhook must not hear from a
     * drill (its records are under production's host name; its alerts would page) */
    "SIEM_INTEGRATION_ENABLED", "SYSLOG_SERVER", "ALERTMANAGER_URL", "ALERT_WEBHOOK_URL",
    /* the drill talks to its own server on loopback in plain HTTP, whatever production's
     * TLS settings (its certificate files are not part of a backup) */
    "TLS_ENABLED",
    /* the drill's own readiness socket, not a service manager's the drill may run under */
    "NOTIFY_SOCKET"};

static bool is_overridden(const char *kv)
{
    for (size_t i = 0; i < ARRAY_SIZE(overridden); i++) {
        size_t n = strlen(overridden[i]);
        if (strncmp(kv, overridden[i], n) == 0 && kv[n] == '=')
            return true;
    }
    return false;
}

/* The drill's credential: a clinician key (read models, predict), valid for an hour, in the
 * restored store, which is a private copy deleted after the drill. Its HMAC uses a fresh
 * salt that the drill server gets as API_KEY_SALT, so the checks pass through the restored
 * server's real authentication whatever AUTH_ENABLED says, without any production secret. */
static int mint_key(drill_t *d, char *err, size_t errlen)
{
    char id[APIKEY_ID_SIZE], secret[APIKEY_SECRET_SIZE], unused[APIKEY_KEY_SIZE];
    if (apikey_generate(id, d->salt, unused) < 0 || apikey_generate(id, secret, d->api_key) < 0) {
        snprintf(err, errlen, "cannot generate the drill's API key: no randomness");
        return -EIO;
    }
    store_apikey_t rec = {0};
    snprintf(rec.key_id, sizeof(rec.key_id), "%s", id);
    snprintf(rec.name, sizeof(rec.name), "dr-drill");
    snprintf(rec.role, sizeof(rec.role), "clinician");
    apikey_hmac_hex(d->salt, secret, rec.secret_hmac);
    rec.created_ms = util_now_ms();
    rec.expires_ms = rec.created_ms + 3600 * 1000LL;
    store_t *st = NULL;
    int r = store_open(d->db_file, &st, err, errlen);
    if (r == 0) {
        r = store_apikey_insert(st, &rec);
        if (r < 0)
            snprintf(err, errlen, "cannot add the drill's API key to the restored store: %s", strerror(-r));
        store_close(st);
    }
    explicit_bzero(secret, sizeof(secret));
    return r;
}

static int start_server(drill_t *d, char *err, size_t errlen)
{
    char exe[PATH_MAX];
    const char *src = d->o->exe ? d->o->exe : "/proc/self/exe";
    ssize_t n = readlink(src, exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    else
        snprintf(exe, sizeof(exe), "%s", src);
    char notify_addr[64];
    d->notify_fd = notify_listen(notify_addr, sizeof(notify_addr));
    if (d->notify_fd < 0) {
        snprintf(err, errlen, "cannot open the socket the drill server reports its readiness to: %s",
                 strerror(-d->notify_fd));
        return d->notify_fd;
    }
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + ARRAY_SIZE(overridden) + 1, sizeof(*envp));
    char *own[ARRAY_SIZE(overridden)] = {0};
    if (!envp)
        return -ENOMEM;
    size_t k = 0, o = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!is_overridden(environ[i]))
            envp[k++] = environ[i];
    const char *audit_base = NULL;
    if (d->s->audit_log_path)
        audit_base = util_basename(d->s->audit_log_path);
    int r = 0;
    r |= asprintf(&own[o++], "MODEL_STORAGE_PATH=%s/models", d->target) < 0;
    r |= asprintf(&own[o++], "DATABASE_URL=sqlite://%s", d->db_file) < 0;
    r |= asprintf(&own[o++], "DATA_DIR=%s/data", d->target) < 0;
    r |= asprintf(&own[o++], "RESULTS_PATH=%s/data/results", d->target) < 0;
    if (audit_base)
        r |= asprintf(&own[o++], "AUDIT_LOG_PATH=%s/audit/%s", d->target, audit_base) < 0;
    r |= asprintf(&own[o++], "LOG_FILE=%s", d->log) < 0;
    r |= asprintf(&own[o++], "HOST=127.0.0.1") < 0;
    r |= asprintf(&own[o++], "NOTIFY_SOCKET=%s", notify_addr) < 0;
    r |= asprintf(&own[o++], "PROMETHEUS_PORT=0") < 0;
    r |= asprintf(&own[o++], "BACKUP_ENABLED=false") < 0;
    r |= asprintf(&own[o++], "BACKUP_PATH=%s/backups", d->target) < 0;
    r |= asprintf(&own[o++], "BACKUP_OFFSITE_DIR=") < 0;
    r |= asprintf(&own[o++], "API_KEY_SALT=%s", d->salt) < 0;
    r |= asprintf(&own[o++], "SIEM_INTEGRATION_ENABLED=false") < 0;
    r |= asprintf(&own[o++], "SYSLOG_SERVER=") < 0;
    r |= asprintf(&own[o++], "ALERTMANAGER_URL=") < 0;
    r |= asprintf(&own[o++], "ALERT_WEBHOOK_URL=") < 0;
    r |= asprintf(&own[o++], "TLS_ENABLED=false") < 0;
    for (size_t i = 0; i < o; i++)
        envp[k++] = own[i];
    envp[k] = NULL;
    char *argv[] = {exe, "serve", "--host", "127.0.0.1", "--port", "0", NULL, NULL, NULL};
    /* The server reads the env file restored from the backup (the configuration is part of
     * what is being drilled); without one, the drill's own. */
    const char *env_file = d->env_file[0] ? d->env_file : d->o->env_file;
    if (env_file) {
        argv[6] = "--env-file";
        argv[7] = (char *)env_file;
    }
    int logfd = r ? -1 : open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = -1;
    if (!r && logfd >= 0 && devnull >= 0)
        pid = fork();
    if (pid == 0) {
        /* the drill server must not outlive the drill, however the drill ends */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(127);
        dup2(devnull, STDIN_FILENO);
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        execve(exe, argv, envp);
        _exit(127);
    }
    int e = errno;
    if (logfd >= 0)
        close(logfd);
    if (devnull >= 0)
        close(devnull);
    for (size_t i = 0; i < o; i++)
        free(own[i]);
    free(envp);
    if (pid < 0) {
        snprintf(err, errlen, "cannot start the drill server: %s", r ? "out of memory" : strerror(e));
        return r ? -ENOMEM : -e;
    }
    d->server = pid;
    backup_interrupt_child(pid);
    return 0;
}

/* The drill server has been waited for: nothing left to stop, here or on interruption. */
static void server_reaped(drill_t *d)
{
    d->server = -1;
    backup_interrupt_child(0);
}

/* Whether the drill server has exited; then it is reaped and err says so, with its status and
 * log tail ("before <what>"). */
static bool server_exited(drill_t *d, const char *what, char *err, size_t errlen)
{
    int status;
    if (waitpid(d->server, &status, WNOHANG) != d->server)
        return false;
    server_reaped(d);
    char tail[1024];
    log_tail(d->log, tail, sizeof(tail));
    snprintf(err, errlen, "the drill server exited (status %d) before %s; log tail: %s",
             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), what, tail);
    return true;
}

/* Until the drill server, and only it (the sender's pid), says READY=1 with its port. */
static int wait_ready(drill_t *d, int64_t deadline, char *err, size_t errlen)
{
    for (;;) {
        if (server_exited(d, "it was ready", err, errlen))
            return -ECHILD;
        char msg[1024], port[16];
        pid_t from = 0;
        ssize_t n = notify_recv(d->notify_fd, 50, msg, sizeof(msg), &from);
        if (n < 0) {
            snprintf(err, errlen, "cannot read the drill server's readiness: %s", strerror((int)-n));
            return (int)n;
        }
        int64_t p;
        if (n > 0 && from == d->server && notify_field(msg, "READY", port, sizeof(port)) &&
            !strcmp(port, "1") && notify_field(msg, "X_AIMEDRES_PORT", port, sizeof(port)) &&
            util_parse_int64(port, 1, 65535, &p) == 0) {
            d->port = (int)p;
            return 0;
        }
        if (util_mono_ns() / 1000000 >= deadline) {
            char tail[1024];
            log_tail(d->log, tail, sizeof(tail));
            snprintf(err, errlen, "the drill server did not report ready in time; log tail: %s", tail);
            return -ETIMEDOUT;
        }
    }
}

/* GET until 200; fails early if the server exits. */
static int wait_status(drill_t *d, const char *path, int64_t deadline, char *err, size_t errlen)
{
    char last[512] = "no answer", what[64];
    snprintf(what, sizeof(what), "%s answered 200", path);
    for (;;) {
        if (server_exited(d, what, err, errlen))
            return -ECHILD;
        httpc_response_t resp = {0};
        char herr[256];
        httpc_url_t self = {.host = "127.0.0.1", .port = d->port};
        httpc_opts_t ho = {.user_agent = "aimedres-dr-drill", .timeout_ms = 2000};
        if (httpc_request(&self, "GET", path, NULL, &ho, &resp, herr, sizeof(herr)) == 0) {
            int st = resp.status;
            snprintf(last, sizeof(last), "status %d: %.300s", st, resp.body);
            httpc_response_free(&resp);
            if (st == 200)
                return 0;
        } else {
            snprintf(last, sizeof(last), "%s", herr);
        }
        if (util_mono_ns() / 1000000 >= deadline) {
            snprintf(err, errlen, "%s did not answer 200 in time (last: %s)", path, last);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* SIGTERM and wait; returns the exit status or -ETIMEDOUT (then SIGKILLed). */
static int stop_server(drill_t *d)
{
    if (d->server <= 0)
        return -ECHILD;
    kill(d->server, SIGTERM);
    int64_t deadline = util_mono_ns() / 1000000 + STOP_TIMEOUT_MS;
    for (;;) {
        int status;
        pid_t p = waitpid(d->server, &status, WNOHANG);
        if (p == d->server) {
            server_reaped(d);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (util_mono_ns() / 1000000 >= deadline) {
            kill(d->server, SIGKILL);
            waitpid(d->server, &status, 0);
            server_reaped(d);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------ smoke checks */

/* A request to the drill server (prod NULL: with the drill's key) or to production (with
 * --api-key-file's key, if any; https trusted as the other commands do, httpc_server_trust). */
static int http_json(drill_t *d, const httpc_url_t *prod, const char *method, const char *path, const char *body,
                     int want_status, json_t **ret, char *err, size_t errlen)
{
    httpc_response_t resp = {0};
    httpc_url_t self = {.host = "127.0.0.1", .port = d->port};
    httpc_opts_t ho = {.api_key = prod ? d->o->prod_api_key : d->api_key,
                       .ca_file = prod ? d->o->prod_ca_file : NULL,
                       .pin_file = prod ? d->o->prod_pin_file : NULL,
                       .user_agent = "aimedres-dr-drill",
                       .timeout_ms = HTTP_TIMEOUT_MS,
                       .max_response = 8u << 20};
    int r = httpc_request(prod ? prod : &self, method, path, body, &ho, &resp, err, errlen);
    if (r < 0)
        return r;
    json_error_t jerr;
    json_t *j = json_loadb(resp.body, resp.len, 0, &jerr);
    if (resp.status != want_status || !j) {
        snprintf(err, errlen, "%s %s answered %d: %.300s", method, path, resp.status, resp.body);
        json_decref(j);
        httpc_response_free(&resp);
        return -EPROTO;
    }
    httpc_response_free(&resp);
    *ret = j;
    return 0;
}

/* Production's serving set: {"name": "stable version"}. Production's store is only read: a
 * drill run with a newer binary must not upgrade it (review43 #7). */
static json_t *production_registry(const backup_settings_t *s, char *err, size_t errlen)
{
    store_t *st = NULL;
    if (store_open_flags(s->database_url, STORE_OPEN_NO_UPGRADE, &st, err, errlen) < 0)
        return NULL;
    json_t *rows = NULL, *out = json_object();
    if (store_model_list(st, &rows) == 0) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            if (json_is_true(json_object_get(row, "stable")))
                json_object_set(out, json_string_value(json_object_get(row, "name")),
                                json_object_get(row, "version"));
        }
    }
    json_decref(rows);
    store_close(st);
    return out;
}

/* A valid row for the manifest: mid-range values (JSON for the API, floats for the runtime). */
static json_t *valid_row(const model_manifest_t *m, float *row)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < m->n_features; i++) {
        const model_feature_t *f = &m->features[i];
        if (f->type == FEATURE_BOOLEAN) {
            json_object_set_new(obj, f->name, json_true());
            row[i] = 1.0f;
            continue;
        }
        double v = f->has_min && f->has_max ? (f->min + f->max) / 2
                   : f->has_min             ? f->min
                   : f->has_max             ? f->max
                                            : f->mean;
        if (!isfinite(v))
            v = 0;
        if (f->type == FEATURE_INTEGER) {
            v = round(v);
            if (f->has_min && v < f->min)
                v = ceil(f->min);
            if (f->has_max && v > f->max)
                v = floor(f->max);
            json_object_set_new(obj, f->name, json_integer((json_int_t)v));
        } else {
            json_object_set_new(obj, f->name, json_real(v));
        }
        row[i] = (float)v;
    }
    return obj;
}

static bool near(double a, double b)
{
    return fabs(a - b) <= PROB_TOLERANCE * (fabs(a) > 1 ? fabs(a) : 1);
}

/* Same label and probabilities (or value) within float tolerance. */
static bool same_result(const json_t *a, const json_t *b, char *why, size_t len)
{
    const json_t *la = json_object_get(a, "label"), *lb = json_object_get(b, "label");
    if ((la || lb) && !json_equal(la, lb)) {
        snprintf(why, len, "label %s vs %s", json_string_value(la) ? json_string_value(la) : "?",
                 json_string_value(lb) ? json_string_value(lb) : "?");
        return false;
    }
    const json_t *pa = json_object_get(a, "probabilities"), *pb = json_object_get(b, "probabilities");
    if (pa || pb) {
        if (!json_is_object(pa) || !json_is_object(pb) || json_object_size(pa) != json_object_size(pb)) {
            snprintf(why, len, "different class probabilities");
            return false;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)pa, k, v)
        {
            json_t *w = json_object_get(pb, k);
            if (!json_is_number(w) || !near(json_number_value(v), json_number_value(w))) {
                snprintf(why, len, "P(%s) %.9g vs %.9g", k, json_number_value(v), json_number_value(w));
                return false;
            }
        }
    }
    const json_t *va = json_object_get(a, "value"), *vb = json_object_get(b, "value");
    if ((va || vb) &&
        (!json_is_number(va) || !json_is_number(vb) || !near(json_number_value(va), json_number_value(vb)))) {
        snprintf(why, len, "value %.9g vs %.9g", json_number_value(va), json_number_value(vb));
        return false;
    }
    if (!pa && !pb && !va && !vb) {
        snprintf(why, len, "no prediction in the answer");
        return false;
    }
    return true;
}

static int check_models_and_predict(drill_t *d, int *ret_predictions)
{
    char err[2048] = "";
    int64_t t0 = util_mono_ns();
    *ret_predictions = 0;
    json_t *prod = production_registry(d->s, err, sizeof(err));
    json_t *list = NULL;
    if (!prod) {
        step(d, "models", false, t0, "cannot read production's registry: %s", err);
        return -EIO;
    }
    if (http_json(d, NULL, "GET", "/api/v1/models/list", NULL, 200, &list, err, sizeof(err)) <
        0) {
        step(d, "models", false, t0, "%s", err);
        json_decref(prod);
        return -EIO;
    }
    json_t *served = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(list, "models"), i, row) json_object_set(
        served, json_string_value(json_object_get(row, "name")), json_object_get(row, "version"));
    json_decref(list);
    bool same = json_equal(prod, served);
    char *a = json_dumps(prod, JSON_COMPACT | JSON_SORT_KEYS),
         *b = json_dumps(served, JSON_COMPACT | JSON_SORT_KEYS);
    if (same)
        step(d, "models", true, t0, "the restored server serves production's registry: %s", a);
    else
        step(d, "models", false, t0, "restored server serves %s, production's registry is %s", b, a);
    free(a);
    free(b);
    json_decref(prod);

    /* One prediction per served model, compared with production's answer. */
    bool prod_http = d->o->prod_url != NULL;
    httpc_url_t prod_at = {0};
    if (prod_http && httpc_parse_url(d->o->prod_url, &prod_at, err, sizeof(err)) < 0) {
        step(d, "predict", false, 0, "%s", err);
        json_decref(served);
        return -EINVAL;
    }
    const char *name;
    json_t *ver;
    size_t checked = 0, failed = 0;
    char detail[2048] = "";
    int64_t t1 = util_mono_ns();
    json_object_foreach(served, name, ver)
    {
        char mdir[PATH_MAX], path[PATH_MAX + 64], merr[512] = "", why[256] = "";
        const char *version = json_string_value(ver);
        model_manifest_t *m = NULL;
        if (!version || backup_path_join(path, sizeof(path), d->target, "models") < 0 ||
            backup_path_join(mdir, sizeof(mdir), path, name) < 0 ||
            backup_path_join(path, sizeof(path), mdir, version) < 0 ||
            model_manifest_load(path, &m, merr, sizeof(merr)) < 0) {
            failed++;
            snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), "%s: %s; ", name, merr);
            continue;
        }
        float *frow = calloc(m->n_features + 1, sizeof(float));
        json_t *features = valid_row(m, frow);
        json_t *req = json_pack("{s:o}", "features", features);
        char *body = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(req);
        json_t *got = NULL, *want = NULL;
        snprintf(path, sizeof(path), "/api/v1/models/%s/predict", name);
        int r = http_json(d, NULL, "POST", path, body, 200, &got, merr, sizeof(merr));
        if (r == 0)
            (*ret_predictions)++;
        if (r == 0 && prod_http) {
            r = http_json(d, &prod_at, "POST", path, body, 200, &want, merr, sizeof(merr));
        } else if (r == 0) {
            char pdir[PATH_MAX];
            snprintf(pdir, sizeof(pdir), "%s/%s/%s", d->s->model_storage_path, name, version);
            model_handle_t *h = NULL;
            r = model_handle_open(pdir, &h, merr, sizeof(merr));
            if (r == 0) {
                float out[256];
                if (model_handle_outputs(h) > ARRAY_SIZE(out) ||
                    (r = model_handle_predict(h, frow, 1, out, merr, sizeof(merr))) == 0)
                    want = json_pack("{s:[o]}", "predictions", model_handle_row_result(h, out));
                model_handle_unref(h);
            }
        }
        if (r == 0) {
            json_t *gr = json_array_get(json_object_get(got, "predictions"), 0);
            json_t *wr = json_array_get(json_object_get(want, "predictions"), 0);
            if (same_result(gr, wr, why, sizeof(why)))
                checked++;
            else {
                failed++;
                snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), "%s: %s; ", name, why);
            }
        } else {
            failed++;
            snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), "%s: %s; ", name, merr);
        }
        json_decref(got);
        json_decref(want);
        free(body);
        free(frow);
        model_manifest_free(m);
    }
    json_decref(served);
    if (failed || checked == 0)
        step(d, "predict", false, t1, "%zu model(s) agree, %zu differ or failed: %s", checked, failed,
             checked + failed ? detail : "no model is served");
    else
        step(d, "predict", true, t1, "%zu model(s): the restored server's prediction equals %s", checked,
             prod_http ? "the production server's" : "the production model files scored in process");
    return failed || !same ? -EIO : 0;
}

static int count_predictions(const char *db, int64_t *ret, char *err, size_t errlen)
{
    store_t *st = NULL;
    int r = store_open(db, &st, err, errlen);
    if (r < 0)
        return r;
    r = store_prediction_count(st, ret);
    store_close(st);
    return r;
}

/* ------------------------------------------------------------------ the drill */

bool backup_drill(const backup_settings_t *s, const backup_key_t *key, const backup_drill_opts_t *o,
                  json_t **ret_report)
{
    drill_t d = {.s = s, .o = o, .server = -1, .notify_fd = -1, .ok = true};
    char started[ISO8601_LEN], err[2048] = "";
    util_iso8601(util_now_ms(), started);
    d.steps = json_array();
    d.report = json_pack("{s:b,s:s,s:{s:i,s:i},s:O}", "ok", 0, "started_at", started, "targets", "rto_s",
                         BACKUP_DRILL_RTO_TARGET_S, "rpo_s", BACKUP_DRILL_RPO_TARGET_S, "steps", d.steps);
    char id[BACKUP_ID_MAX] = "";
    backup_manifest_t *m = NULL;
    int64_t t0;
    int predictions = 0, lockfd = -1;

    /* what drills killed outright left in the work dir (decrypted copies of production) goes
     * first */
    const char *base = o->work_dir                             ? o->work_dir
                       : getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR")
                                                               : "/tmp";
    int stale = remove_stale_work_dirs(base);
    json_object_set_new(d.report, "stale_work_dirs_removed", json_integer(stale));
    if (stale > 0)
        log_warning("dr-drill: removed work directories left by drills that were killed", "{s:s,s:i}",
                    "work_dir", base, "removed", stale);

    /* backup */
    t0 = util_mono_ns();
    if (o->use_latest) {
        /* a missing repository says so (is the volume mounted?), not "no latest backup" */
        if (backup_repo_require(s->backup_path, err, sizeof(err)) < 0 ||
            backup_repo_resolve(s->backup_path, "latest", id, err, sizeof(err)) < 0) {
            step(&d, "backup", false, t0, "%s", err);
            goto done;
        }
        step(&d, "backup", true, t0, "using the latest backup %s", id);
    } else {
        backup_create_opts_t bo = {
            .type = o->type, .env_file = o->env_file, .progress = o->progress, .hold_signals_after_publish = true};
        json_t *sum = NULL;
        int r = backup_create(s, key, &bo, &sum, err, sizeof(err));
        const char *bid = json_string_value(json_object_get(sum, "id"));
        if (bid)
            snprintf(id, sizeof(id), "%s", bid);
        /* the drill's backup is a real one: audited like `aimedres backup` (backup/events.h),
         * and a signal after its publishing waits for that record, as there */
        char aerr[1024] = "";
        int ar = backup_event_backup(s, sum, r, true, aerr, sizeof(aerr));
        backup_interrupt_resume();
        if (r < 0 && r != -EREMOTEIO) {
            step(&d, "backup", false, t0, "%s", err);
            json_decref(sum);
            goto done;
        }
        if (ar < 0)
            step(&d, "backup", false, t0, "%s", aerr);
        else if (r == 0)
            step(&d, "backup", true, t0, "%s backup %s", json_string_value(json_object_get(sum, "type")), id);
        else
            step(&d, "backup", false, t0, "%s backup %s; but: %s",
                 json_string_value(json_object_get(sum, "type")), id, err);
        json_decref(sum);
    }
    char dir[PATH_MAX];
    backup_repo_path(s->backup_path, id, NULL, dir, sizeof(dir));
    if (backup_manifest_load(dir, key, &m, err, sizeof(err)) < 0) {
        step(&d, "backup", false, 0, "%s", err);
        goto done;
    }
    char ts[ISO8601_LEN];
    util_iso8601(m->timestamp_ms, ts);
    json_object_set_new(d.report, "backup",
                        json_pack("{s:s,s:s,s:s,s:I}", "id", m->id, "type", m->type, "timestamp", ts, "files",
                                  (json_int_t)m->n_files));

    /* isolated target */
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof(tmpl), "%s/" WORK_PREFIX "XXXXXX", base);
    if (!mkdtemp(tmpl)) {
        step(&d, "restore", false, 0, "cannot create a temporary directory in %s: %s", base, strerror(errno));
        goto done;
    }
    snprintf(d.target, sizeof(d.target), "%s", tmpl);
    backup_interrupt_add(d.target);
    lockfd = lock_work_dir(d.target, err, sizeof(err));
    if (lockfd < 0) {
        step(&d, "restore", false, 0, "%s", err);
        goto done;
    }
    backup_path_join(d.log, sizeof(d.log), d.target, "server.log");
    json_object_set_new(d.report, "target", json_string(d.target));

    /* restore: RTO starts here, RPO is the backup's age now */
    int64_t rto0 = util_mono_ns();
    double rpo = (double)(util_now_ms() - m->timestamp_ms) / 1000.0;
    /* known now: in the report even when a later step fails */
    json_object_set_new(d.report, "rpo_s", json_real(rpo));
    json_object_set_new(d.report, "rpo_ok", json_boolean(rpo <= BACKUP_DRILL_RPO_TARGET_S));
    backup_restore_opts_t ro = {.target = d.target, .progress = o->progress};
    json_t *rrep = NULL;
    int r = backup_restore(s, key, id, &ro, &rrep, err, sizeof(err));
    /* RESTORE records: the live log (production data restored into a temporary directory)
     * and the restored log, whose chain the audit step verifies at the end */
    char raerr[1024] = "";
    int rar = backup_event_restore(s, id, rrep, r, &ro, true, raerr, sizeof(raerr));
    if (r < 0 || rar < 0) {
        step(&d, "restore", false, rto0, "%s", r < 0 ? err : raerr);
        json_decref(rrep);
        goto done;
    }
    const char *dbdest = json_string_value(json_object_get(json_object_get(rrep, "destinations"), "db"));
    if (dbdest)
        snprintf(d.db_file, sizeof(d.db_file), "%s", dbdest);
    const char *cfgdest = json_string_value(json_object_get(json_object_get(rrep, "destinations"), "config"));
    if (cfgdest)
        snprintf(d.env_file, sizeof(d.env_file), "%s", cfgdest);
    json_t *dbcheck = json_object_get(json_object_get(rrep, "checks"), "database");
    int64_t restored_preds = json_integer_value(json_object_get(dbcheck, "predictions"));
    json_t *rs =
        step(&d, "restore", true, rto0, "%lld files, %lld bytes; integrity_check ok, models verified",
             (long long)json_integer_value(json_object_get(rrep, "files")),
             (long long)json_integer_value(json_object_get(rrep, "bytes")));
    json_object_set_new(rs, "checks", json_deep_copy(json_object_get(rrep, "checks")));
    json_decref(rrep);
    if (!d.db_file[0]) {
        step(&d, "start", false, 0, "the backup holds no database");
        goto done;
    }

    /* start and wait for ready */
    t0 = util_mono_ns();
    if (mint_key(&d, err, sizeof(err)) < 0 || start_server(&d, err, sizeof(err)) < 0) {
        step(&d, "start", false, t0, "%s", err);
        goto done;
    }
    int64_t deadline =
        util_mono_ns() / 1000000 + (o->ready_timeout_s > 0 ? o->ready_timeout_s : 120) * 1000LL;
    if (wait_ready(&d, deadline, err, sizeof(err)) < 0 || wait_status(&d, "/health", deadline, err, sizeof(err)) < 0 ||
        wait_status(&d, "/ready", deadline, err, sizeof(err)) < 0) {
        step(&d, "start", false, t0, "%s", err);
        goto stop;
    }
    double rto = secs_since(rto0);
    step(&d, "start", true, t0, "serving on 127.0.0.1:%d%s, /health and /ready answer 200", d.port,
         d.env_file[0] ? " with the restored env file" : "");
    json_object_set_new(d.report, "rto_s", json_real(rto));
    json_object_set_new(d.report, "rto_ok", json_boolean(rto <= BACKUP_DRILL_RTO_TARGET_S));
    if (rto > BACKUP_DRILL_RTO_TARGET_S || rpo > BACKUP_DRILL_RPO_TARGET_S)
        d.ok = false;

    /* smoke checks */
    check_models_and_predict(&d, &predictions);

stop:
    t0 = util_mono_ns();
    if (d.server > 0) {
        int st = stop_server(&d);
        if (st == 0)
            step(&d, "stop", true, t0, "SIGTERM: exit status 0");
        else if (st == -ETIMEDOUT)
            step(&d, "stop", false, t0, "the server ignored SIGTERM for %d s and was killed",
                 STOP_TIMEOUT_MS / 1000);
        else {
            char tail[1024];
            log_tail(d.log, tail, sizeof(tail));
            step(&d, "stop", false, t0, "exit status %d after SIGTERM; log tail: %s", st, tail);
        }
        if (st == 0) {
            int64_t after = -1;
            t0 = util_mono_ns();
            int64_t want = json_integer_value(json_object_get(m->db, "predictions"));
            if (count_predictions(d.db_file, &after, err, sizeof(err)) < 0)
                step(&d, "records", false, t0, "%s", err);
            else if (restored_preds != want || after != want + predictions)
                step(&d, "records", false, t0,
                     "predictions: snapshot %lld, restored %lld, after %d drill predictions %lld (expected "
                     "%lld)",
                     (long long)want, (long long)restored_preds, predictions, (long long)after,
                     (long long)(want + predictions));
            else
                step(&d, "records", true, t0,
                     "predictions: %lld in the snapshot and in the restored store; %lld after the drill's %d",
                     (long long)want, (long long)after, predictions);
        }
    }

    /* the audit chain of the restored log, including what the drill server appended */
    t0 = util_mono_ns();
    if (!s->audit_log_path) {
        json_object_set_new(step(&d, "audit", true, 0, "skipped: AUDIT_LOG_PATH is not set"), "skipped",
                            json_true());
    } else if (d.server <= 0 && d.target[0]) {
        const char *abase = util_basename(s->audit_log_path);
        char adir[PATH_MAX], alog[PATH_MAX];
        audit_verify_result_t res;
        memset(&res, 0, sizeof(res));
        backup_path_join(adir, sizeof(adir), d.target, "audit");
        if (backup_path_join(alog, sizeof(alog), adir, abase) < 0) {
            step(&d, "audit", false, t0, "path too long");
        } else {
            config_t c = *s->cfg; /* shallow copy, only the log path differs */
            c.audit_log_path = alog;
            int ar = audit_verify(&c, NULL, &res, err, sizeof(err));
            if (ar < 0)
                step(&d, "audit", false, t0, "the audit chain could not be verified: %s", err);
            else if (!res.ok)
                step(&d, "audit", false, t0, "the audit chain does not verify: %s", res.message);
            else
                step(&d, "audit", true, t0,
                     "the restored audit chain verifies: %llu records, %llu checkpoints",
                     (unsigned long long)res.records, (unsigned long long)res.checkpoints);
        }
    }

done:
    if (d.server > 0)
        stop_server(&d);
    if (d.notify_fd >= 0)
        close(d.notify_fd);
    if (d.target[0]) {
        char kept[PATH_MAX];
        if (o->keep) {
            json_object_set_new(d.report, "kept", json_true());
            /* later drills leave a kept directory alone */
            if (backup_path_join(kept, sizeof(kept), d.target, KEPT_NAME) == 0)
                util_write_file_atomic(kept, "kept by dr-drill --keep\n", 24, 0600);
        } else {
            util_rmtree(d.target);
        }
        if (lockfd >= 0)
            close(lockfd);
        backup_interrupt_forget(d.target);
        step(&d, "cleanup", true, 0, o->keep ? "kept %s" : "removed %s", d.target);
    }
    backup_manifest_free(m);
    if (!json_object_get(d.report, "rto_s"))
        d.ok = false;
    json_object_set_new(d.report, "ok", json_boolean(d.ok));
    json_decref(d.steps);
    *ret_report = d.report;
    return d.ok;
}
