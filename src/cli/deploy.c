/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres deploy canary | blue-green | direct | status | promote | pause | resume |
 * rollback` and `aimedres rollback MODEL [--to VERSION]`. The running server's rollout
 * controller owns every state change, so these commands only talk to its HTTP API
 * (--url, default http[s]://HOST:PORT; the key from AIMEDRES_API_KEY as X-API-Key). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/util.h"
#include "common/httpc.h"

#define TIMEOUT_MS 30000

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres deploy canary|blue-green|direct MODEL VERSION [options]\n"
                 "       aimedres deploy status [ID] [--json]\n"
                 "       aimedres deploy promote ID [--to PERCENT] [--reason TEXT]\n"
                 "       aimedres deploy pause|resume|rollback ID [--reason TEXT]\n\n"
                 "Acts through the running server's API; the server's controller validates, routes,\n"
                 "promotes and rolls back. A new deployment is validated and run by the server after\n"
                 "`deploy` returns: without --wait, exit 0 means it was accepted, and `deploy status ID`\n"
                 "tells how it ends (a failed gate: status failed, rollback_reason names it).\n"
                 "See also `aimedres rollback MODEL` (--help).\n"
                 "options:\n"
                 "  --url URL               server (default http://$HOST:$PORT, https:// when\n"
                 "                          TLS_ENABLED=true; HOST and PORT default to 127.0.0.1, 8080)\n"
                 "  --env-file FILE         read HOST, PORT, TLS_ENABLED, TLS_CERT_PATH from the server's\n"
                 "                          env file (the environment overrides it)\n"
                 "  --auto-promote          advance stages and promote to stable when checks pass\n"
                 "  --stages LIST           canary stages in percent, e.g. 5,25,100\n"
                 "  --stage-duration D      per stage (and the blue/green watch window), e.g. 30s, 2h\n"
                 "  --shadow-duration D     shadow phase before the first stage (0 = none)\n"
                 "  --check-interval D      how often live checks run\n"
                 "  --rollback-window D     how long the previous stable stays loaded after promotion\n"
                 "  --min-accuracy X  --min-f1 X  --min-auc X  --max-error-rate X\n"
                 "  --max-degradation X  --max-disparity X  --sensitive-column COL\n"
                 "  --no-auto-rollback      pause instead of rolling back when a live check fails\n"
                 "  --set FIELD=VALUE       any other CanaryConfig field (repeatable)\n"
                 "  --wait                  wait until the deployment finishes; exit 0 only if stable\n"
                 "  --to PERCENT            promote: to this stage (100: stable)\n"
                 "  --reason TEXT           promote, pause, resume, rollback: recorded with the event\n"
                 "  --json                  print the server's JSON\n"
                 "Credentials: AIMEDRES_API_KEY (role deployer for changes, read for status).\n"
                 "https: trusted are the CAs in AIMEDRES_CA_FILE; else, with TLS_ENABLED=true, the server's\n"
                 "own certificate (TLS_CERT_PATH: the server must present exactly it); else the system's CAs.\n");
}

/* Sends the request; prints transport errors and API errors. Returns the JSON body
 * of a 2xx answer (new reference) or NULL. */
static cli_target_t g_target; /* set once per command by cli_target */

static json_t *call(const char *method, const char *path, json_t *body, int *ret_status)
{
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    httpc_response_t resp;
    char err[512] = "";
    int rc = httpc_request(&g_target.url, method, path, payload, &g_target.opts, &resp, err, sizeof(err));
    free(payload);
    if (ret_status)
        *ret_status = rc < 0 ? 0 : resp.status;
    if (rc < 0) {
        fprintf(stderr, "aimedres: %s\n", err);
        return NULL;
    }
    json_t *j = httpc_json(&resp);
    if (resp.status / 100 == 2 && !j) /* review59 #5: said, not an exit 1 without a word */
        fprintf(stderr, "aimedres: %s %s: HTTP %d, but the answer is not JSON: %.200s\n", method, path,
                resp.status, resp.body);
    if (resp.status / 100 != 2) {
        json_t *e = json_object_get(j, "error");
        fprintf(stderr, "aimedres: %s %s: HTTP %d %s: %s\n", method, path, resp.status,
                json_string_value(json_object_get(e, "code")) ? json_string_value(json_object_get(e, "code"))
                                                              : "",
                json_string_value(json_object_get(e, "message"))
                    ? json_string_value(json_object_get(e, "message"))
                    : resp.body);
        json_decref(j);
        j = NULL;
    }
    httpc_response_free(&resp);
    return j;
}

static void print_record(const json_t *d)
{
    const json_t *stage = json_object_get(d, "current_stage");
    const json_t *stages = json_object_get(json_object_get(d, "config"), "canary_stages");
    printf("Deployment %s\n", json_string_value(json_object_get(d, "deployment_id")));
    printf("  Model: %s %s (strategy %s, previous %s)\n", json_string_value(json_object_get(d, "model")),
           json_string_value(json_object_get(d, "version")),
           json_string_value(json_object_get(d, "strategy")),
           json_string_value(json_object_get(d, "previous_version"))
               ? json_string_value(json_object_get(d, "previous_version"))
               : "-");
    printf("  Mode: %s\n", json_string_value(json_object_get(d, "mode")));
    printf("  Status: %s%s\n", json_string_value(json_object_get(d, "status")),
           json_is_true(json_object_get(d, "awaiting_promotion"))  ? " (stage complete, awaiting promotion)"
           : json_is_true(json_object_get(d, "awaiting_evidence")) ? " (time is up, awaiting min_requests)"
                                                                   : "");
    printf("  Traffic: %g%%\n", json_number_value(json_object_get(d, "traffic_percentage")));
    if (json_is_integer(stage))
        printf("  Stage: %lld of %zu\n", (long long)json_integer_value(stage) + 1, json_array_size(stages));
    printf("  Started: %s\n", json_string_value(json_object_get(d, "started_at")));
    if (json_is_string(json_object_get(d, "completed_at")))
        printf("  Completed: %s\n", json_string_value(json_object_get(d, "completed_at")));
    if (json_is_string(json_object_get(d, "rollback_reason")))
        printf("  Rollback reason: %s\n", json_string_value(json_object_get(d, "rollback_reason")));
    json_t *perf = json_object_get(d, "performance_metrics");
    const char *arm;
    json_t *a;
    json_object_foreach(perf, arm, a)
    {
        if (!json_is_integer(json_object_get(a, "requests")))
            continue;
        json_t *er = json_object_get(a, "error_rate"), *p95 = json_object_get(a, "p95_latency_ms");
        char ers[32] = "n/a", p95s[32] = "n/a"; /* no traffic yet: nothing measured */
        if (json_is_number(er) && isfinite(json_number_value(er)))
            snprintf(ers, sizeof(ers), "%.4f", json_number_value(er));
        if (json_is_number(p95) && isfinite(json_number_value(p95)))
            snprintf(p95s, sizeof(p95s), "%.3f ms", json_number_value(p95));
        printf("  Arm %-7s requests %lld, error rate %s, p95 %s\n", arm,
               (long long)json_integer_value(json_object_get(a, "requests")), ers, p95s);
    }
    printf("\nValidation Tests:\n");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(d, "validation_tests"), i, t)
    {
        json_t *score = json_object_get(t, "score");
        char scs[32] = "n/a";
        if (json_is_number(score) && isfinite(json_number_value(score)))
            snprintf(scs, sizeof(scs), "%.3f", json_number_value(score));
        if (json_is_true(json_object_get(t, "skipped"))) {
            printf("  - %s: SKIPPED (%s)\n", json_string_value(json_object_get(t, "test_name")),
                   json_string_value(json_object_get(t, "reason")));
            continue;
        }
        printf("  - %s: %s (score: %s, threshold: %.3f)\n", json_string_value(json_object_get(t, "test_name")),
               json_is_true(json_object_get(t, "passed")) ? "PASS" : "FAIL", scs,
               json_number_value(json_object_get(t, "threshold")));
    }
    if (json_array_size(json_object_get(d, "validation_tests")) == 0)
        printf("  (none yet)\n");
}

static void emit(const json_t *j, bool as_json)
{
    if (as_json) {
        char *s = json_dumps(j, JSON_INDENT(2));
        printf("%s\n", s ? s : "null");
        free(s);
    } else if (json_object_get(j, "deployment_id")) {
        print_record(j);
    }
}

/* Sets a config field from text: JSON when it parses (numbers, booleans, arrays),
 * a string otherwise. */
static void set_cfg(json_t *cfg, const char *key, const char *val)
{
    json_t *v = json_loads(val, JSON_DECODE_ANY, NULL);
    json_object_set_new(cfg, key, v ? v : json_string(val));
}

int cli_deploy(int argc, char **argv)
{
    enum {
        O_URL = 256,
        O_STAGES,
        O_STAGE_DUR,
        O_SHADOW_DUR,
        O_CHECK,
        O_WINDOW,
        O_MINACC,
        O_MINF1,
        O_MINAUC,
        O_MAXERR,
        O_MAXDEG,
        O_MAXDISP,
        O_SENS,
        O_NOAUTO,
        O_SET,
        O_WAIT,
        O_JSON,
        O_TO,
        O_REASON,
        O_AUTO,
        O_ENV
    };
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},
        {"env-file", required_argument, NULL, O_ENV},
        {"auto-promote", no_argument, NULL, O_AUTO},
        {"stages", required_argument, NULL, O_STAGES},
        {"stage-duration", required_argument, NULL, O_STAGE_DUR},
        {"shadow-duration", required_argument, NULL, O_SHADOW_DUR},
        {"check-interval", required_argument, NULL, O_CHECK},
        {"rollback-window", required_argument, NULL, O_WINDOW},
        {"min-accuracy", required_argument, NULL, O_MINACC},
        {"min-f1", required_argument, NULL, O_MINF1},
        {"min-auc", required_argument, NULL, O_MINAUC},
        {"max-error-rate", required_argument, NULL, O_MAXERR},
        {"max-degradation", required_argument, NULL, O_MAXDEG},
        {"max-disparity", required_argument, NULL, O_MAXDISP},
        {"sensitive-column", required_argument, NULL, O_SENS},
        {"no-auto-rollback", no_argument, NULL, O_NOAUTO},
        {"set", required_argument, NULL, O_SET},
        {"wait", no_argument, NULL, O_WAIT},
        {"json", no_argument, NULL, O_JSON},
        {"to", required_argument, NULL, O_TO},
        {"reason", required_argument, NULL, O_REASON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    const char *url = NULL, *env_file = NULL;
    json_t *cfg = json_object();
    bool wait = false, as_json = false;
    const char *to = NULL, *reason = NULL;
    int rc = 2, c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_URL: url = optarg; break;
        case O_ENV: env_file = optarg; break;
        case O_AUTO: json_object_set_new(cfg, "auto_promote", json_true()); break;
        case O_STAGES: json_object_set_new(cfg, "canary_stages", json_string(optarg)); break;
        case O_STAGE_DUR: json_object_set_new(cfg, "stage_duration", json_string(optarg)); break;
        case O_SHADOW_DUR: json_object_set_new(cfg, "shadow_duration", json_string(optarg)); break;
        case O_CHECK: json_object_set_new(cfg, "check_interval", json_string(optarg)); break;
        case O_WINDOW: json_object_set_new(cfg, "rollback_window", json_string(optarg)); break;
        case O_MINACC: set_cfg(cfg, "min_accuracy", optarg); break;
        case O_MINF1: set_cfg(cfg, "min_f1_score", optarg); break;
        case O_MINAUC: set_cfg(cfg, "min_auc", optarg); break;
        case O_MAXERR: set_cfg(cfg, "max_error_rate", optarg); break;
        case O_MAXDEG: set_cfg(cfg, "max_performance_degradation", optarg); break;
        case O_MAXDISP: set_cfg(cfg, "max_demographic_disparity", optarg); break;
        case O_SENS: json_object_set_new(cfg, "sensitive_column", json_string(optarg)); break;
        case O_NOAUTO: json_object_set_new(cfg, "auto_rollback_enabled", json_false()); break;
        case O_SET: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "aimedres deploy: --set expects FIELD=VALUE\n");
                goto out;
            }
            *eq = '\0';
            set_cfg(cfg, optarg, eq + 1);
            break;
        }
        case O_WAIT: wait = true; break;
        case O_JSON: as_json = true; break;
        case O_TO: to = optarg; break;
        case O_REASON: reason = optarg; break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default: usage(stderr); goto out;
        }
    }
    if (cli_target("deploy", env_file, url, TIMEOUT_MS, &g_target) != 0)
        goto out;
    int npos = argc - optind;
    char **pos = argv + optind;
    json_t *res = NULL;
    char path[512];
    if (strcmp(sub, "canary") == 0 || strcmp(sub, "blue-green") == 0 || strcmp(sub, "direct") == 0) {
        if (npos != 2) {
            fprintf(stderr, "aimedres deploy %s: expected MODEL VERSION\n", sub);
            goto out;
        }
        if (strcmp(sub, "canary") != 0 && !json_object_get(cfg, "shadow_duration"))
            json_object_set_new(cfg, "shadow_duration", json_string("0s"));
        json_t *body = json_pack("{s:s,s:s,s:s,s:O}", "model", pos[0], "version", pos[1], "strategy", sub,
                                 "config", cfg);
        res = call("POST", "/api/v1/deployments", body, NULL);
        json_decref(body);
        if (!res) {
            rc = 1;
            goto out;
        }
        if (!as_json)
            printf("deployment %s started: %s %s (%s)\n",
                   json_string_value(json_object_get(res, "deployment_id")), pos[0], pos[1], sub);
        if (wait) {
            char id[64];
            snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(res, "deployment_id")));
            snprintf(path, sizeof(path), "/api/v1/deployments/%s", id);
            while (res && json_is_true(json_object_get(res, "active"))) {
                struct timespec ts = {0, 250 * 1000000L};
                nanosleep(&ts, NULL);
                json_decref(res);
                res = call("GET", path, NULL, NULL);
            }
            if (!res) {
                rc = 1;
                goto out;
            }
        }
        if (as_json)
            emit(res, true);
        else if (wait)
            print_record(res);
        rc = wait && strcmp(json_string_value(json_object_get(res, "status")), "stable") != 0 ? 1 : 0;
    } else if (strcmp(sub, "status") == 0) {
        if (npos > 1) {
            fprintf(stderr, "aimedres deploy status: expected at most one ID\n");
            goto out;
        }
        if (npos == 1 && !util_is_safe_name(pos[0])) {
            fprintf(stderr, "aimedres deploy status: invalid deployment id\n");
            goto out;
        }
        snprintf(path, sizeof(path), npos ? "/api/v1/deployments/%s" : "/api/v1/deployments/status",
                 npos ? pos[0] : "");
        res = call("GET", path, NULL, NULL);
        if (!res) {
            rc = 1;
            goto out;
        }
        if (as_json || npos) {
            emit(res, as_json);
        } else {
            size_t i;
            json_t *d;
            json_array_foreach(json_object_get(res, "active"), i, d)
            {
                print_record(d);
                printf("\n");
            }
            if (json_array_size(json_object_get(res, "active")) == 0)
                printf("no active deployments\n");
        }
        rc = 0;
    } else if (strcmp(sub, "promote") == 0 || strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0 ||
               strcmp(sub, "rollback") == 0) {
        if (npos != 1 || !util_is_safe_name(pos[0])) {
            fprintf(stderr, "aimedres deploy %s: expected one deployment ID\n", sub);
            goto out;
        }
        json_t *body = json_object();
        if (to) {
            double pct;
            if (util_parse_double(to, &pct) < 0) {
                fprintf(stderr, "aimedres deploy promote: --to expects a percentage\n");
                json_decref(body);
                goto out;
            }
            json_object_set_new(body, "to", json_real(pct));
        }
        if (reason)
            json_object_set_new(body, "reason", json_string(reason));
        snprintf(path, sizeof(path), "/api/v1/deployments/%s/%s", pos[0], sub);
        res = call("POST", path, body, NULL);
        json_decref(body);
        if (!res) {
            rc = 1;
            goto out;
        }
        if (!as_json)
            printf("%s: %s -> status %s, traffic %g%%\n", pos[0], sub,
                   json_string_value(json_object_get(res, "status")),
                   json_number_value(json_object_get(res, "traffic_percentage")));
        else
            emit(res, true);
        rc = 0;
    } else {
        fprintf(stderr, "aimedres deploy: unknown subcommand '%s'\n", sub);
        usage(stderr);
        goto out;
    }
    json_decref(res);
out:
    json_decref(cfg);
    return rc;
}

static void rollback_usage(FILE *out)
{
    fprintf(out, "usage: aimedres rollback MODEL [--to VERSION] [--url URL] [--env-file FILE] [--json]\n\n"
                 "Rolls the model back through the running server's API (POST\n"
                 "/api/v1/models/MODEL/rollback; role deployer): its active deployment, else the\n"
                 "promotion that made its version stable, back to the stable version before it. Refused\n"
                 "(nothing changes) when there is none, or when --to names a version that does not exist,\n"
                 "does not load or never served as stable (deploy it with `deploy direct` instead).\n"
                 "  --to VERSION   make this version, one that served as stable, stable instead\n"
                 "  --url URL      server (default http://$HOST:$PORT, https:// when TLS_ENABLED=true;\n"
                 "                 HOST and PORT default to 127.0.0.1 and 8080)\n"
                 "  --env-file FILE  read HOST, PORT, TLS_ENABLED, TLS_CERT_PATH from the server's env file\n"
                 "  --json         print the server's JSON answer\n"
                 "The API key comes from AIMEDRES_API_KEY when the server has AUTH_ENABLED.\n"
                 "Exit status: 0 rolled back; 1 the server refused or could not be reached; 2 usage.\n");
}

int cli_rollback(int argc, char **argv)
{
    static const struct option opts[] = {{"to", required_argument, NULL, 't'},
                                         {"url", required_argument, NULL, 'u'},
                                         {"env-file", required_argument, NULL, 'e'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *url = NULL, *env_file = NULL;
    const char *to = NULL;
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': to = optarg; break;
        case 'u': url = optarg; break;
        case 'e': env_file = optarg; break;
        case 'j': as_json = true; break;
        case 'h': rollback_usage(stdout); return 0;
        default: rollback_usage(stderr); return 2;
        }
    }
    if (argc - optind != 1) {
        rollback_usage(stderr);
        return 2;
    }
    if (!util_is_safe_name(argv[optind])) {
        fprintf(stderr, "aimedres rollback: invalid model name '%.128s' (letters, digits, '.', '_', '-')\n",
                argv[optind]);
        return 2;
    }
    if (to && !util_is_safe_name(to)) {
        fprintf(stderr,
                "aimedres rollback: --to: invalid version '%.128s' (letters, digits, '.', '_', '-')\n", to);
        return 2;
    }
    if (cli_target("rollback", env_file, url, TIMEOUT_MS, &g_target) != 0)
        return 2;
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/models/%s/rollback", argv[optind]);
    json_t *body = to ? json_pack("{s:s}", "to", to) : json_object();
    json_t *res = call("POST", path, body, NULL);
    json_decref(body);
    if (!res)
        return 1;
    if (as_json)
        emit(res, true);
    else
        printf("%s rolled back: %s -> %s\n", argv[optind], json_string_value(json_object_get(res, "from")),
               json_string_value(json_object_get(res, "to")));
    json_decref(res);
    return 0;
}
