/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres apikey create | list | revoke`: API keys for services and users. create prints
 * the key once, alone on the last line of stdout (scripts take `tail -n1`); only its HMAC
 * is stored, so a lost key cannot be shown again, only revoked and replaced. create and
 * revoke write APIKEY_CREATED / APIKEY_REVOKED audit records (key id, role, the OS user;
 * never the secret) through the audit writer, which shares the chain with a running server
 * under the log's flock (audit/log.c). A broken audit setup refuses the command before it
 * changes anything; a record that cannot be written after a create revokes the new key. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "common/util.h"
#include "security/apikey.h"
#include "security/roles.h"
#include "store/apikeys.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: aimedres apikey <create|list|revoke> [options]\n\n"
            "  create --name NAME --role ROLE [--expires DURATION] [--env-file FILE]\n"
            "         ROLE is one of admin|deployer|clinician|auditor|monitor; DURATION a number and a\n"
            "         unit s, m, h or d (90d, 12h), at most 3650d (default: never). Prints the key once,\n"
            "         alone on the last line of stdout.\n"
            "  list [--json] [--env-file FILE]   key ids, names, roles, dates, status; never secrets\n"
            "  revoke KEY_ID|KEY [--env-file FILE]   the running server refuses it within a second;\n"
            "         a whole key (a leaked one, pasted as it is) revokes its id and is never echoed\n"
            "Keys are sent as X-API-Key: KEY or Authorization: Bearer KEY. The salt is API_KEY_SALT:\n"
            "changing it invalidates every key.\n");
}

#define EXPIRES_MAX_DAYS 3650

/* --expires: digits then exactly one unit s, m, h or d, 1 s..3650 d. A bare number is
 * refused (was seconds, read as days by everyone), and so is anything whose expiry would not
 * be a date we can print (review22: 99999999d wrapped to 1970). 0 or -EINVAL. */
static int parse_expires(const char *s, int64_t *ret_ms)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    int64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > EXPIRES_MAX_DAYS * 86400LL)
            return -EINVAL; /* already too long in any unit; stops overflow */
        v = v * 10 + (s[i] - '0');
    }
    if (i == 0 || s[i] == '\0' || s[i + 1] != '\0' || v < 1)
        return -EINVAL;
    for (size_t u = 0; u < ARRAY_SIZE(units); u++) {
        if (units[u].unit != s[i])
            continue;
        if (v > EXPIRES_MAX_DAYS * 86400000LL / units[u].ms)
            return -EINVAL;
        *ret_ms = v * units[u].ms;
        return 0;
    }
    return -EINVAL;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* Opens the audit trail (NULL when AUDIT_LOG_PATH is unset); 0, or 1 with the reason printed. */
static int open_audit(const config_t *cfg, const char *cmd, audit_log_t **ret)
{
    char err[1024] = "";
    if (audit_log_open(cfg, ret, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres apikey %s: audit: %s\n", cmd, err);
        return 1;
    }
    return 0;
}

/* The APIKEY_CREATED / APIKEY_REVOKED record, durable before the command reports. 0 or <0. */
static int audit_key_event(audit_log_t *a, const char *type, const char *cmd, const store_apikey_t *k)
{
    if (!a)
        return 0;
    char user[128], when[ISO8601_LEN] = "never";
    audit_os_user(user, sizeof(user));
    if (k->expires_ms)
        util_iso8601(k->expires_ms, when);
    json_t *detail = json_pack("{s:s,s:s,s:s,s:s}", "command", cmd, "key_role", k->role, "key_name", k->name,
                               "expires", when);
    audit_event_t ev = {.type = type,
                        .user = user,
                        .role = "cli",
                        .action = strcmp(type, "APIKEY_CREATED") == 0 ? "C" : "U",
                        .entity_type = "api_key",
                        .entity_id = k->key_id,
                        .outcome = "success",
                        .detail = detail};
    int rc = detail ? audit_log_append_sync(a, &ev) : -ENOMEM;
    json_decref(detail);
    return rc;
}

static int run_create(int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},    {"role", required_argument, NULL, 'r'},
        {"expires", required_argument, NULL, 'x'}, {"env-file", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *name = NULL, *role = NULL, *expires = NULL, *env_file = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': name = optarg; break;
        case 'r': role = optarg; break;
        case 'x': expires = optarg; break;
        case 'e': env_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !name || !role) {
        fprintf(stderr, "aimedres apikey create: --name and --role are required\n");
        usage(stderr);
        return 2;
    }
    if (!valid_name(name)) {
        fprintf(stderr, "aimedres apikey create: --name: 1..100 printable characters\n");
        return 2;
    }
    if (!roles_bit(role)) {
        fprintf(stderr, "aimedres apikey create: --role: expected one of %s, got '%s'\n", roles_list(), role);
        return 2;
    }
    int64_t ttl_ms = 0;
    if (expires && parse_expires(expires, &ttl_ms) < 0) {
        fprintf(stderr,
                "aimedres apikey create: --expires: expected a number and a unit s, m, h or d (90d, 12h), "
                "at most %dd, got '%s'\n",
                EXPIRES_MAX_DAYS, expires);
        return 2;
    }
    config_t *cfg = cli_load_config(env_file);
    if (!cfg)
        return 1;
    int rc = 1;
    char id[APIKEY_ID_SIZE] = "", secret[APIKEY_SECRET_SIZE] = "", key[APIKEY_KEY_SIZE] = "";
    audit_log_t *audit = NULL;
    store_t *st = NULL;
    if (open_audit(cfg, "create", &audit) != 0)
        goto out;
    st = cli_open_store(cfg);
    if (!st)
        goto out;
    if (!cfg->api_key_salt)
        fprintf(stderr, "aimedres apikey: warning: API_KEY_SALT is unset (allowed outside production only); "
                        "setting it later invalidates this key\n");
    store_apikey_t rec = {0};
    int r = -EEXIST;
    for (int attempt = 0; attempt < 3 && r == -EEXIST; attempt++) {
        if (apikey_generate(id, secret, key) < 0) {
            fprintf(stderr, "aimedres apikey create: no randomness available\n");
            goto out;
        }
        snprintf(rec.key_id, sizeof(rec.key_id), "%s", id);
        snprintf(rec.name, sizeof(rec.name), "%s", name);
        snprintf(rec.role, sizeof(rec.role), "%s", role);
        apikey_hmac_hex(cfg->api_key_salt, secret, rec.secret_hmac);
        rec.created_ms = util_now_ms();
        rec.expires_ms = ttl_ms ? rec.created_ms + ttl_ms : 0;
        r = store_apikey_insert(st, &rec);
    }
    if (r < 0) {
        fprintf(stderr, "aimedres apikey create: cannot store the key: %s\n",
                r == -ENOTSUP ? "API keys need the SQLite store" : strerror(-r));
        goto out;
    }
    r = audit_key_event(audit, "APIKEY_CREATED", "apikey create", &rec);
    if (r < 0) {
        /* no usable key may exist without its record: withdraw it (shown as revoked in list) */
        int rv = store_apikey_revoke(st, id, util_now_ms());
        fprintf(stderr,
                "aimedres apikey create: cannot write the audit record (%s); key %s %s and not shown\n",
                strerror(-r), id, rv == 0 ? "revoked" : "NOT revoked: revoke it by hand");
        goto out;
    }
    char when[ISO8601_LEN] = "never";
    if (rec.expires_ms)
        util_iso8601(rec.expires_ms, when);
    printf("created API key %s (name %s, role %s, expires %s)\n", id, name, role, when);
    printf("it is shown only once; store it now (the server keeps only its HMAC):\n");
    printf("%s\n", key);
    fflush(stdout);
    rc = 0;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(key, sizeof(key));
    store_close(st);
    audit_log_close(audit);
    config_free(cfg);
    return rc;
}

static const char *status_of(const store_apikey_t *k, int64_t now)
{
    if (k->revoked_ms)
        return "revoked";
    if (k->expires_ms && now >= k->expires_ms)
        return "expired";
    return "active";
}

static int run_list(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"env-file", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *env_file = NULL;
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = true; break;
        case 'e': env_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    config_t *cfg = cli_load_config(env_file);
    if (!cfg)
        return 1;
    int rc = 1;
    store_apikey_t *keys = NULL;
    size_t n = 0;
    store_t *st = cli_open_store(cfg);
    if (!st)
        goto out;
    int r = store_apikey_list(st, &keys, &n);
    if (r < 0) {
        fprintf(stderr, "aimedres apikey list: %s\n", strerror(-r));
        goto out;
    }
    int64_t now = util_now_ms();
    json_t *arr = as_json ? json_array() : NULL;
    if (!as_json)
        printf("%-16s  %-10s  %-8s  %-24s  %-24s  %-24s  %s\n", "KEY_ID", "ROLE", "STATUS", "CREATED",
               "EXPIRES", "LAST_USED", "NAME");
    for (size_t i = 0; i < n; i++) {
        const store_apikey_t *k = &keys[i];
        char created[ISO8601_LEN], exp[ISO8601_LEN] = "never", used[ISO8601_LEN] = "never";
        util_iso8601(k->created_ms, created);
        if (k->expires_ms)
            util_iso8601(k->expires_ms, exp);
        if (k->last_used_ms)
            util_iso8601(k->last_used_ms, used);
        if (as_json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "key_id", k->key_id, "name", k->name, "role",
                                  k->role, "status", status_of(k, now), "created", created, "expires", exp);
            json_object_set_new(o, "last_used", k->last_used_ms ? json_string(used) : json_null());
            if (k->revoked_ms) {
                char rv[ISO8601_LEN];
                util_iso8601(k->revoked_ms, rv);
                json_object_set_new(o, "revoked", json_string(rv));
            }
            json_array_append_new(arr, o);
        } else {
            printf("%-16s  %-10s  %-8s  %-24s  %-24s  %-24s  %s\n", k->key_id, k->role, status_of(k, now),
                   created, exp, used, k->name);
        }
    }
    if (as_json) {
        json_dumpf(arr, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(arr);
    }
    rc = 0;
out:
    free(keys);
    store_close(st);
    config_free(cfg);
    return rc;
}

static int run_revoke(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env-file", required_argument, NULL, 'e'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *env_file = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'e': env_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "aimedres apikey revoke: expected one KEY_ID\n");
        return 2;
    }
    const char *id = argv[optind];
    char parsed[APIKEY_ID_SIZE], secret[APIKEY_SECRET_SIZE];
    if (!apikey_valid_id(id)) {
        /* a whole key pasted (the natural thing when one leaked) revokes its id; the argument is
         * never echoed: it may hold a secret (review58 #9) */
        if (apikey_parse(id, strlen(id), parsed, secret) < 0) {
            OPENSSL_cleanse(secret, sizeof(secret));
            fprintf(stderr, "aimedres apikey revoke: the argument is neither a key id (16 hex characters, as in "
                            "`apikey list`) nor a whole key (amr_<id>_<secret>); it is not shown here\n");
            return 2;
        }
        OPENSSL_cleanse(secret, sizeof(secret));
        id = parsed;
        fprintf(stderr, "aimedres apikey revoke: a whole key was given: revoking its id %s\n", id);
    }
    config_t *cfg = cli_load_config(env_file);
    if (!cfg)
        return 1;
    int rc = 1;
    audit_log_t *audit = NULL;
    store_t *st = NULL;
    if (open_audit(cfg, "revoke", &audit) != 0)
        goto out;
    st = cli_open_store(cfg);
    if (!st)
        goto out;
    store_apikey_t rec = {0};
    int r = store_apikey_get(st, id, &rec);
    if (r == 0)
        r = store_apikey_revoke(st, id, util_now_ms());
    if (r == -ENOENT) {
        fprintf(stderr, "aimedres apikey revoke: no key %s\n", id);
    } else if (r == -EALREADY) {
        printf("API key %s was already revoked\n", id);
        rc = 0;
    } else if (r < 0) {
        fprintf(stderr, "aimedres apikey revoke: %s\n", strerror(-r));
    } else if ((r = audit_key_event(audit, "APIKEY_REVOKED", "apikey revoke", &rec)) < 0) {
        fprintf(stderr, "aimedres apikey revoke: revoked API key %s, but cannot write the audit record: %s\n",
                id, strerror(-r));
    } else {
        printf("revoked API key %s\n", id);
        rc = 0;
    }
out:
    store_close(st);
    audit_log_close(audit);
    config_free(cfg);
    return rc;
}

int cli_apikey(int argc, char **argv)
{
    static const cli_sub_t subs[] = {{"create", run_create}, {"list", run_list}, {"revoke", run_revoke}};
    return cli_dispatch("apikey", subs, ARRAY_SIZE(subs), usage, argc, argv);
}
