/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres verify --url URL`: post-deployment verification (seed guide §1.6) against a
 * running server: health, at least one model loaded, the API smoke tests, the error rate
 * from the server's own request counters and its resource use. `aimedres smoke --url
 * URL` runs the smoke tests alone. Exit status 0 when every check passes, else 1. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "common/httpc.h"

#define TIMEOUT_MS 15000

typedef struct report {
    int passed, failed, warned;
    cli_target_t *t;
} report_t;

static void line(report_t *r, int ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line(report_t *r, int ok, const char *what, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    printf("  [%s] %-28s %s\n", ok > 0 ? "PASS" : ok == 0 ? "FAIL" : "WARN", what, detail);
    if (ok > 0)
        r->passed++;
    else if (ok == 0)
        r->failed++;
    else
        r->warned++;
}

static int req(report_t *r, const char *method, const char *path, const char *body,
               httpc_response_t *resp, char *err, size_t n)
{
    return httpc_request(&r->t->url, method, path, body, &r->t->opts, resp, err, n);
}

/* "status N: <the error message of the JSON error body>" of an answer that was not 200, in buf. */
static const char *unexpected(const httpc_response_t *resp, char *buf, size_t n)
{
    json_t *j = resp->body ? json_loads(resp->body, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(buf, n, "status %d%s%.200s", resp->status, msg ? ": " : "", msg ? msg : "");
    json_decref(j);
    return buf;
}

/* A value inside the feature's declared range (the middle; integers rounded). */
static json_t *feature_value(const json_t *f)
{
    const char *type = json_string_value(json_object_get(f, "type"));
    double lo = json_number_value(json_object_get(f, "min")),
           hi = json_number_value(json_object_get(f, "max"));
    if (type && strcmp(type, "boolean") == 0)
        return json_integer(0);
    double v = json_is_number(json_object_get(f, "min")) && json_is_number(json_object_get(f, "max"))
                   ? (lo + hi) / 2
               : json_is_number(json_object_get(f, "min")) ? lo
               : json_is_number(json_object_get(f, "max")) ? hi
                                                           : 0;
    if (type && strcmp(type, "integer") == 0)
        return json_integer((json_int_t)llround(v));
    return json_real(v);
}

static void smoke(report_t *r)
{
    httpc_response_t resp;
    char err[512];
    static const char *const gets[] = {"/health", "/ready", "/api/v1", "/api/v1/models/list"};
    json_t *models = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(gets); i++) {
        if (req(r, "GET", gets[i], NULL, &resp, err, sizeof(err)) < 0) {
            line(r, 0, gets[i], "%s", err);
            continue;
        }
        line(r, resp.status == 200, gets[i], "HTTP %d in %.1f ms", resp.status, resp.elapsed_ms);
        if (i == 3 && resp.status == 200) {
            json_t *j = httpc_json(&resp);
            models = json_incref(json_object_get(j, "models"));
            json_decref(j);
        }
        httpc_response_free(&resp);
    }
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (!name || !util_is_safe_name(name))
            continue;
        char path[512], what[64];
        snprintf(path, sizeof(path), "/api/v1/models/%s", name);
        snprintf(what, sizeof(what), "predict %.20s", name);
        if (req(r, "GET", path, NULL, &resp, err, sizeof(err)) < 0 || resp.status != 200) {
            line(r, 0, what, "GET %s: %s", path, resp.body ? unexpected(&resp, err, sizeof(err)) : err);
            httpc_response_free(&resp);
            continue;
        }
        json_t *detail = httpc_json(&resp);
        httpc_response_free(&resp);
        json_t *feats = json_object();
        size_t k;
        json_t *f;
        json_array_foreach(json_object_get(detail, "schema"), k, f)
        {
            const char *fn = json_string_value(json_object_get(f, "name"));
            if (fn)
                json_object_set_new(feats, fn, feature_value(f));
        }
        json_decref(detail);
        json_t *body = json_pack("{s:o}", "features", feats);
        char *payload = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        snprintf(path, sizeof(path), "/api/v1/models/%s/predict", name);
        if (req(r, "POST", path, payload, &resp, err, sizeof(err)) < 0) {
            line(r, 0, what, "%s", err);
        } else {
            json_t *j = httpc_json(&resp);
            line(r, resp.status == 200 && json_object_get(j, "prediction") != NULL, what,
                 "HTTP %d in %.1f ms%s%s", resp.status, resp.elapsed_ms,
                 json_string_value(json_object_get(j, "version")) ? ", version " : "",
                 json_string_value(json_object_get(j, "version"))
                     ? json_string_value(json_object_get(j, "version"))
                     : "");
            json_decref(j);
            httpc_response_free(&resp);
        }
        free(payload);
        /* the API refuses a malformed request with 422, not a crash or a 500 */
        snprintf(what, sizeof(what), "reject bad input %.14s", name);
        if (req(r, "POST", path, "{\"features\":{\"no_such_feature\":1}}", &resp, err, sizeof(err)) < 0) {
            line(r, 0, what, "%s", err);
        } else {
            line(r, resp.status == 422, what, "HTTP %d (want 422)", resp.status);
            httpc_response_free(&resp);
        }
    }
    json_decref(models);
}

/* Sums the samples of a metric family in Prometheus text; filter (optional) must occur
 * in the label set. */
static double metric_sum(const char *text, const char *name, const char *filter, bool *found)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || (p[nl] != '{' && p[nl] != ' '))
            continue;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char l[1024];
        snprintf(l, sizeof(l), "%.*s", (int)(len < sizeof(l) ? len : sizeof(l) - 1), p);
        if (filter && !strstr(l, filter))
            continue;
        const char *sp = strrchr(l, ' ');
        if (sp) {
            sum += atof(sp + 1);
            *found = true;
        }
    }
    return sum;
}

static void server_figures(report_t *r, double max_error_rate)
{
    httpc_response_t resp;
    char err[512];
    if (req(r, "GET", "/metrics", NULL, &resp, err, sizeof(err)) < 0 || resp.status != 200) {
        line(r, 0, "metrics", "GET /metrics: %s", resp.body ? unexpected(&resp, err, sizeof(err)) : err);
        httpc_response_free(&resp);
        return;
    }
    bool f1 = false, f2 = false, f3 = false;
    double total = metric_sum(resp.body, "http_requests_total", NULL, &f1);
    double e5 = 0;
    for (int s = 500; s < 600; s++) {
        char flt[32];
        snprintf(flt, sizeof(flt), "status=\"%d\"", s);
        e5 += metric_sum(resp.body, "http_requests_total", flt, &f2);
    }
    double rate = total > 0 ? e5 / total : 0;
    line(r, f1 ? rate <= max_error_rate : -1, "error rate (server counters)",
         "%.0f of %.0f requests answered 5xx since start (%.2f%%, limit %.2f%%)", e5, total, rate * 100,
         max_error_rate * 100);
    double rss = metric_sum(resp.body, "process_resident_memory_bytes", NULL, &f3);
    bool f4 = false, f5 = false;
    double fds = metric_sum(resp.body, "process_open_fds", NULL, &f4);
    double cpu = metric_sum(resp.body, "process_cpu_seconds_total", NULL, &f5);
    line(r, f3 ? 1 : -1, "resource use", "RSS %.1f MiB, open fds %.0f, CPU %.1f s", rss / 1048576.0, fds,
         cpu);
    httpc_response_free(&resp);
}

static int run(int argc, char **argv, bool full)
{
    static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
                                         {"env-file", required_argument, NULL, 'f'},
                                         {"max-error-rate", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *url = NULL, *env_file = NULL;
    double max_err = 0.05;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'f': env_file = optarg; break;
        case 'e':
            if (util_parse_double(optarg, &max_err) < 0 || max_err < 0 || max_err > 1) {
                fprintf(stderr, "aimedres: --max-error-rate expects a number in [0, 1]\n");
                return 2;
            }
            break;
        case 'h':
            printf("usage: aimedres %s [--url URL] [--env-file FILE]%s\n\n%s\n"
                   "  --url URL    the server (default http://$HOST:$PORT, https:// when TLS_ENABLED=true;\n"
                   "               HOST and PORT default to 127.0.0.1 and 8080)\n"
                   "  --env-file FILE  read HOST, PORT, TLS_ENABLED, TLS_CERT_PATH from the server's env file\n"
                   "               (the environment overrides it)\n%s"
                   "https: trusted are the CAs in AIMEDRES_CA_FILE; else, with TLS_ENABLED=true, the server's\n"
                   "own certificate (TLS_CERT_PATH: the server must present exactly it); else the system's CAs.\n",
                   full ? "verify" : "smoke", full ? " [--max-error-rate X]" : "",
                   full ? "Post-deployment verification: health, models loaded, API smoke tests, the error\n"
                          "rate from the server's counters (default limit 0.05) and resource use.\n"
                          "Exit 0 when every check passes, 1 otherwise. Key: AIMEDRES_API_KEY (it reads\n"
                          "/metrics and predicts, so with AUTH_ENABLED an admin key)."
                        : "API smoke tests: health, readiness, index, model list, one valid and one\n"
                          "invalid prediction per model. Exit 0 when all pass. Key: AIMEDRES_API_KEY.",
                   full ? "  --max-error-rate X  the highest error rate (0..1) the server's counters may show\n"
                        : "");
            return 0;
        default: return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aimedres: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    static cli_target_t target;
    if (cli_target(full ? "verify" : "smoke", env_file, url, TIMEOUT_MS, &target) != 0)
        return 2;
    report_t r = {.t = &target};
    printf("%s of %s\n", full ? "Post-deployment verification" : "API smoke tests", target.url_text);
    if (full) {
        httpc_response_t resp;
        char err[512];
        printf("1. Health\n");
        if (req(&r, "GET", "/health", NULL, &resp, err, sizeof(err)) < 0)
            line(&r, 0, "health", "%s", err);
        else
            line(&r, resp.status == 200, "health", "HTTP %d", resp.status);
        httpc_response_free(&resp);
        if (r.failed) {
            printf("Verification FAILED: the server does not answer\n");
            return 1;
        }
        printf("2. Models\n");
        if (req(&r, "GET", "/api/v1/models/list", NULL, &resp, err, sizeof(err)) < 0) {
            line(&r, 0, "models loaded", "%s", err);
        } else {
            json_t *j = httpc_json(&resp);
            size_t n = json_array_size(json_object_get(j, "models"));
            line(&r, resp.status == 200 && n >= 1, "models loaded", "%zu model(s) serving (HTTP %d)", n,
                 resp.status);
            json_decref(j);
        }
        httpc_response_free(&resp);
        printf("3. API smoke tests\n");
    }
    smoke(&r);
    if (full) {
        printf("4. Error rate and 5. resource use\n");
        server_figures(&r, max_err);
    }
    printf("%s: %d passed, %d failed, %d warnings\n", r.failed ? "FAILED" : "OK", r.passed, r.failed,
           r.warned);
    return r.failed ? 1 : 0;
}

int cli_verify(int argc, char **argv)
{
    return run(argc, argv, true);
}

int cli_smoke(int argc, char **argv)
{
    return run(argc, argv, false);
}
