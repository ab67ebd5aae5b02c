/* SPDX-License-Identifier: Apache-2.0 */
/* The authorizer; see security.h.
 *
 * DESIGN: order of checks for a protected route: lockout of the peer address (429), the
 * per-address rate limit (429), the credential (401 when missing or invalid; an invalid
 * one counts towards lockout), the per-principal rate limit (429), the role (403). Public
 * routes (role NULL) skip all of it. API keys are looked up in the store at most once per
 * SECURITY_KEY_CACHE_MS per key id: a striped cache (64 stripes x 64 slots, each stripe
 * with its own mutex) keeps the store mutex off the hot path while revocation by another
 * process still lands within half a second. Unknown key ids are never cached (lockout
 * bounds how often one address can make us look). Nothing here logs a credential. The
 * "address" is the client address (security/clientaddr.h): the TCP peer, or the address a
 * trusted proxy (TRUSTED_PROXIES) forwarded in X-Forwarded-For. */
#include "security/security.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "audit/audit.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor/metrics.h"
#include "security/apikey.h"
#include "security/clientaddr.h"
#include "security/jwt.h"
#include "security/lockout.h"
#include "security/ratelimit.h"
#include "security/roles.h"
#include "store/apikeys.h"

#define CACHE_STRIPES 64
#define CACHE_SLOTS 64
#define TOUCH_EVERY_MS 60000

typedef struct cached_key {
    store_apikey_t rec; /* rec.key_id[0] == 0: free */
    int64_t fetched_ms; /* monotonic */
    int64_t touched_ms; /* wall clock of our last last_used_ms write */
} cached_key_t;

typedef struct cache_stripe {
    pthread_mutex_t mu;
    cached_key_t slots[CACHE_SLOTS];
} cache_stripe_t;

/* auth_requests_total{outcome}: one series per outcome, slots made once at start. */
enum outcome {
    OUT_SUCCESS,
    OUT_UNAUTHORIZED,
    OUT_FORBIDDEN,
    OUT_RATE_LIMITED,
    OUT_LOCKED_OUT,
    OUT_LOCKOUTS,
    N_OUT
};
static const char *const outcome_labels[N_OUT] = {
    "outcome=\"success\"",      "outcome=\"unauthorized\"", "outcome=\"forbidden\"",
    "outcome=\"rate_limited\"", "outcome=\"locked_out\"",   NULL,
};

struct security {
    uint32_t slots[N_OUT];
    const config_t *cfg;
    store_t *store;
    jwt_keyset_t *keys;
    ratelimit_t *per_key, *per_ip, *success_audit;
    lockout_t *lockout;
    cache_stripe_t cache[CACHE_STRIPES];
};

static int64_t mono_ms(void)
{
    return util_mono_ns() / 1000000;
}

static void count(const security_t *sec, enum outcome o)
{
    if (sec->slots[o] != UINT32_MAX)
        metrics_counter_add(sec->slots[o], 1);
}

int security_new(const config_t *cfg, store_t *store, security_t **ret, char *err, size_t errlen)
{
    security_t *sec = calloc(1, sizeof(*sec));
    if (!sec)
        return -ENOMEM;
    sec->cfg = cfg;
    sec->store = store;
    for (int i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_init(&sec->cache[i].mu, NULL);
    metric_family_t *fam =
        metrics_family("auth_requests_total", "Requests to protected routes by authentication outcome.",
                       METRIC_COUNTER, NULL, 0);
    metric_family_t *lfam = metrics_family(
        "auth_lockouts_total", "Client addresses locked out after repeated authentication failures.",
        METRIC_COUNTER, NULL, 0);
    for (int i = 0; i < N_OUT; i++)
        sec->slots[i] = i == OUT_LOCKOUTS ? (lfam ? metrics_series(lfam, "") : UINT32_MAX)
                                          : (fam ? metrics_series(fam, outcome_labels[i]) : UINT32_MAX);
    int rc = jwt_keyset_new(cfg->jwt_secret_key, cfg->jwt_public_keys, &sec->keys, err, errlen);
    if (rc < 0)
        goto fail;
    ratelimit_spec_t spec;
    if ((rc = ratelimit_parse_spec(cfg->rate_limit_per_key, &spec)) < 0 ||
        (rc = ratelimit_new(&spec, &sec->per_key)) < 0) {
        snprintf(err, errlen, "RATE_LIMIT_PER_KEY: invalid");
        goto fail;
    }
    if ((rc = ratelimit_parse_spec(cfg->rate_limit_per_ip, &spec)) < 0 ||
        (rc = ratelimit_new(&spec, &sec->per_ip)) < 0) {
        snprintf(err, errlen, "RATE_LIMIT_PER_IP: invalid");
        goto fail;
    }
    /* AUTH_SUCCESS is audited at most once a minute per principal. */
    spec = (ratelimit_spec_t){1.0 / 60.0, 1.0};
    if ((rc = ratelimit_new(&spec, &sec->success_audit)) < 0)
        goto fail;
    if ((rc = lockout_new(cfg->auth_lockout_threshold, (int64_t)cfg->auth_lockout_window_s * 1000,
                          (int64_t)cfg->auth_lockout_duration_s * 1000, &sec->lockout)) < 0)
        goto fail;
    if (!cfg->api_key_salt || !*cfg->api_key_salt)
        log_msg(LOG_WARNING, "API_KEY_SALT unset: API key hashes use an empty salt (development only)", NULL);
    *ret = sec;
    return 0;
fail:
    security_free(sec);
    return rc;
}

void security_free(security_t *sec)
{
    if (!sec)
        return;
    jwt_keyset_free(sec->keys);
    ratelimit_free(sec->per_key);
    ratelimit_free(sec->per_ip);
    ratelimit_free(sec->success_audit);
    lockout_free(sec->lockout);
    for (int i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_destroy(&sec->cache[i].mu);
    free(sec);
}

/* ---------- API key lookup (cached) ---------- */

static unsigned id_hash(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h;
}

/* The cache slot a key id maps to, and its stripe (whose mutex guards it). */
static cached_key_t *slot_of(security_t *sec, const char *key_id, cache_stripe_t **ret_stripe)
{
    unsigned h = id_hash(key_id);
    *ret_stripe = &sec->cache[h % CACHE_STRIPES];
    return &(*ret_stripe)->slots[(h / CACHE_STRIPES) % CACHE_SLOTS];
}

/* Whether a use of the key would be due for writing down now (the slot's stripe held). */
static bool touch_due(const cached_key_t *slot, const char *key_id, int64_t wall)
{
    return strcmp(slot->rec.key_id, key_id) != 0 || wall - slot->touched_ms >= TOUCH_EVERY_MS;
}

/* Copies the key's record into *ret: from the cache when fresh, else from the store; and
 * whether a use would be due for writing down (note_key_used: asked in the same lock, so
 * the common request takes the stripe once). 0, -ENOENT (unknown id) or -errno (store
 * trouble). */
static int lookup_key(security_t *sec, const char *key_id, store_apikey_t *ret, bool *ret_touch_due)
{
    cache_stripe_t *st;
    cached_key_t *slot = slot_of(sec, key_id, &st);
    int64_t now = mono_ms(), wall = util_now_ms();
    pthread_mutex_lock(&st->mu);
    if (strcmp(slot->rec.key_id, key_id) == 0 && now - slot->fetched_ms < SECURITY_KEY_CACHE_MS) {
        *ret = slot->rec;
        *ret_touch_due = touch_due(slot, key_id, wall);
        pthread_mutex_unlock(&st->mu);
        return 0;
    }
    pthread_mutex_unlock(&st->mu);

    store_apikey_t rec;
    int rc = store_apikey_get(sec->store, key_id, &rec);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->mu);
    int64_t touched = strcmp(slot->rec.key_id, key_id) == 0 ? slot->touched_ms : 0;
    slot->rec = rec;
    slot->fetched_ms = now;
    slot->touched_ms = touched > rec.last_used_ms ? touched : rec.last_used_ms;
    *ret_touch_due = touch_due(slot, key_id, wall);
    pthread_mutex_unlock(&st->mu);
    *ret = rec;
    return 0;
}

/* A key was used: its secret matched and it is active. Its last use is written at most every
 * TOUCH_EVERY_MS, and only then: a wrong-secret guess at a known id, or a revoked or expired
 * key, does not make a key look used (review58 #8). Best effort: last use is informative. */
static void note_key_used(security_t *sec, const char *key_id)
{
    cache_stripe_t *st;
    cached_key_t *slot = slot_of(sec, key_id, &st);
    int64_t wall = util_now_ms();
    bool touch = false;
    pthread_mutex_lock(&st->mu);
    if (touch_due(slot, key_id, wall)) { /* still: another thread may have written it meanwhile */
        touch = true;
        if (strcmp(slot->rec.key_id, key_id) == 0)
            slot->touched_ms = wall;
    }
    pthread_mutex_unlock(&st->mu);
    if (touch)
        store_apikey_touch(sec->store, key_id, wall);
}

/* ---------- replies and audit ---------- */

typedef struct attempt {
    const char *credential; /* "api_key" | "jwt" | NULL (none presented) */
    char key_id[24];        /* API key id (public part), "" otherwise */
    char key_name[128];     /* the key's name (informative: names are not unique), "" otherwise */
    char user[128];
    unsigned roles;
    char reason[128];
    bool genuine; /* the credential proved authentic (though refused): not counted for lockout */
    uint64_t not_recorded; /* like records left out by the once-a-minute bound since the last one */
} attempt_t;

static void audit_auth(http_ctx_t *ctx, api_app_t *app, const char *type, const attempt_t *at,
                       const char *action, const char *outcome)
{
    if (!app->audit)
        return;
    json_t *detail = json_pack("{s:s,s:s}", "method", router_method_name(http_ctx_route(ctx)->methods),
                               "reason", at->reason[0] ? at->reason : outcome);
    if (detail && at->credential)
        json_object_set_new(detail, "credential", json_string(at->credential));
    if (detail && at->key_id[0])
        json_object_set_new(detail, "key_id", json_string(at->key_id));
    if (detail && at->key_name[0])
        json_object_set_new(detail, "key_name", json_string(at->key_name));
    if (detail && at->not_recorded)
        json_object_set_new(detail, "not_recorded", json_integer((json_int_t)at->not_recorded));
    audit_event_t ev = {
        .type = type,
        .user = at->user[0] ? at->user : NULL,
        /* the role the request was admitted under, or refused with (security_authorize) */
        .role = http_ctx_role(ctx) ? http_ctx_role(ctx) : roles_primary(at->roles),
        .action = action,
        .entity_type = "route",
        .entity_id = http_ctx_route(ctx)->pattern,
        .source_ip = http_ctx_peer(ctx),
        .outcome = outcome,
        .request_id = http_ctx_request_id(ctx),
        .detail = detail,
    };
    int rc = audit_log_submit(app->audit, &ev, NULL, NULL);
    if (rc < 0)
        log_msg(LOG_ERROR, "audit event refused", "{s:s,s:i}", "type", type, "error", rc);
    json_decref(detail);
}

/* True when a bounded record (at most one a minute per key) is due now; at->not_recorded
 * then says how many like it were left out since the last one. */
static bool audit_due(security_t *sec, const char *key, attempt_t *at)
{
    int ignored;
    return ratelimit_take_counted(sec->success_audit, key, mono_ms(), &ignored, &at->not_recorded) == 0;
}

static void reply_429(http_ctx_t *ctx, const char *code, int retry_after, const char *what)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", retry_after < 1 ? 1 : retry_after);
    http_ctx_add_header(ctx, "Retry-After", ra);
    http_reply_error(ctx, 429, code, json_pack("{s:i}", "retry_after_s", retry_after), "%s; retry after %s s",
                     what, ra);
}

static int fail_401(http_ctx_t *ctx, api_app_t *app, security_t *sec, attempt_t *at)
{
    const char *peer = http_ctx_peer(ctx);
    bool presented = at->credential != NULL;
    /* only a guess counts towards lockout: a genuine credential that is no longer valid (a
     * revoked or expired key with its right secret, a correctly signed JWT that expired) is
     * a client to update, not an attack, and must not lock out everyone at its address */
    bool locked = presented && !at->genuine && lockout_fail(sec->lockout, peer, mono_ms());
    /* Invalid credentials are bounded by lockout; anonymous requests are not, so they are
     * audited at most once a minute per address (the log line and the counter see all). */
    char anon[96];
    snprintf(anon, sizeof(anon), "anon:%s", peer);
    /* Genuine refusals are not bounded by lockout either (a revoked key's holder could
     * otherwise fill the trail at the per-address rate): audited at most once a minute per
     * key id (API key) or address (JWT), like anonymous requests */
    char refused[128];
    snprintf(refused, sizeof(refused), "refused:%s:%s", at->credential ? at->credential : "",
             at->key_id[0] ? at->key_id : peer);
    const char *bounded = !presented ? anon : at->genuine ? refused : NULL;
    if (!bounded || audit_due(sec, bounded, at))
        audit_auth(ctx, app, "AUTH_FAILURE", at, "authenticate", "failure");
    count(sec, OUT_UNAUTHORIZED);
    if (locked) {
        count(sec, OUT_LOCKOUTS);
        attempt_t lk = *at;
        lk.not_recorded = 0;
        snprintf(lk.reason, sizeof(lk.reason), "address locked out after repeated failures");
        audit_auth(ctx, app, "AUTH_FAILURE", &lk, "lockout", "failure");
        log_msg(LOG_WARNING, "address locked out after repeated authentication failures", "{s:s,s:i}", "peer",
                peer, "duration_s", sec->cfg->auth_lockout_duration_s);
    }
    http_ctx_add_header(ctx, "WWW-Authenticate",
                        presented ? "Bearer realm=\"aimedres\", error=\"invalid_token\""
                                  : "Bearer realm=\"aimedres\"");
    http_reply_error(ctx, 401, "unauthorized", NULL, "%s",
                     presented ? at->reason
                               : "authentication required: send X-API-Key or Authorization: Bearer");
    return 1;
}

/* ---------- credentials ---------- */

static int check_api_key(security_t *sec, const char *key, size_t n, attempt_t *at, char *rl_key,
                         size_t rl_len)
{
    at->credential = "api_key";
    char id[APIKEY_ID_SIZE], secret[APIKEY_SECRET_SIZE];
    if (apikey_parse(key, n, id, secret) < 0) {
        snprintf(at->reason, sizeof(at->reason), "malformed API key");
        return -EINVAL;
    }
    /* the id guessed is in detail.key_id; user only once the secret matched: a stranger's
     * guesses at a key are not that key's principal (review59) */
    snprintf(at->key_id, sizeof(at->key_id), "%s", id);
    store_apikey_t rec;
    bool due = false;
    int rc = lookup_key(sec, id, &rec, &due);
    if (rc == -ENOENT ||
        (rc == 0 && !apikey_secret_matches(sec->cfg->api_key_salt, secret, rec.secret_hmac))) {
        snprintf(at->reason, sizeof(at->reason), "invalid API key");
        return -EACCES;
    }
    if (rc < 0) {
        snprintf(at->reason, sizeof(at->reason), "key store unavailable");
        return rc;
    }
    /* the principal stays apikey:<id>: names are free text and need not be unique, so two
     * keys (or a key and a JWT subject) named alike were one user in the trail (review58 #3) */
    snprintf(at->key_name, sizeof(at->key_name), "%s", rec.name);
    snprintf(at->user, sizeof(at->user), "apikey:%s", id);
    at->genuine = true; /* the secret matched: what follows is not a guess */
    if (rec.revoked_ms) {
        snprintf(at->reason, sizeof(at->reason), "API key revoked");
        return -EACCES;
    }
    if (rec.expires_ms && util_now_ms() >= rec.expires_ms) {
        snprintf(at->reason, sizeof(at->reason), "API key expired");
        return -EKEYEXPIRED;
    }
    at->roles = roles_bit(rec.role);
    snprintf(rl_key, rl_len, "k:%s", id);
    if (due) /* about once a minute per key: the common request takes the stripe once */
        note_key_used(sec, id);
    return 0;
}

/* An invisible or reordering character (UTF-8 at q): C1 controls, zero-width and bidi
 * marks and overrides, line and paragraph separators, word joiners, the byte-order mark. A
 * subject holding one can display as another (review61 #4: "\u202e1k:yekipa" shows as
 * apikey:k1 in a SIEM). */
static bool invisible(const unsigned char *q)
{
    if (q[0] == 0xc2 && q[1] >= 0x80 && q[1] <= 0x9f)
        return true;
    if (q[0] == 0xe2 && q[1] == 0x80 && ((q[2] >= 0x8b && q[2] <= 0x8f) || (q[2] >= 0xa8 && q[2] <= 0xae)))
        return true;
    if (q[0] == 0xe2 && q[1] == 0x81 && q[2] >= 0xa0 && q[2] <= 0xaf)
        return true;
    return q[0] == 0xef && q[1] == 0xbb && q[2] == 0xbf;
}

/* Why a token's subject can not name a principal, or NULL: the API keys' namespace (apikey:,
 * in any case and after blanks, or a non-breaking space), or a control character or Unicode
 * invisible character (a subject is written into every record and SIEM line). */
static const char *sub_refused(const char *sub)
{
    for (const unsigned char *q = (const unsigned char *)sub; *q; q++)
        if (*q < 0x20 || *q == 0x7f || invisible(q))
            return "sub claim holds control or invisible characters";
    const char *sp = sub; /* blanks before the namespace: ASCII, no-break and ideographic spaces */
    for (;;) {
        if (*sp == ' ' || *sp == '\t')
            sp++;
        else if ((unsigned char)sp[0] == 0xc2 && (unsigned char)sp[1] == 0xa0)
            sp += 2;
        else if ((unsigned char)sp[0] == 0xe3 && (unsigned char)sp[1] == 0x80 && (unsigned char)sp[2] == 0x80)
            sp += 3;
        else
            break;
    }
    if (strncasecmp(sp, "apikey:", 7) == 0)
        return "sub claim in the API key namespace (apikey:)";
    return NULL;
}

static int check_jwt(security_t *sec, const char *tok, size_t n, attempt_t *at, char *rl_key, size_t rl_len)
{
    at->credential = "jwt";
    const config_t *cfg = sec->cfg;
    jwt_verify_opts_t o = {cfg->jwt_issuer, cfg->jwt_audience, cfg->jwt_roles_claim, cfg->jwt_leeway_s,
                           util_now_ms() / 1000};
    jwt_claims_t c;
    char why[96];
    int rc = jwt_verify(sec->keys, tok, n, &o, &c, why, sizeof(why));
    at->genuine = c.signed_ok;
    const char *bad_sub = c.sub[0] ? sub_refused(c.sub) : NULL;
    if (rc < 0) {
        snprintf(at->reason, sizeof(at->reason), "invalid token: %s", why);
        /* genuine: its record names it (review58 #7), if the subject may name anyone (review60 #1) */
        if (c.signed_ok && c.sub[0] && !bad_sub)
            snprintf(at->user, sizeof(at->user), "%s", c.sub);
        return rc;
    }
    if (bad_sub) {
        snprintf(at->reason, sizeof(at->reason), "invalid token: %s", bad_sub);
        return -EACCES;
    }
    snprintf(at->user, sizeof(at->user), "%s", c.sub);
    at->roles = c.roles;
    snprintf(rl_key, rl_len, "j:%s", c.sub); /* whole: sub is at most 127 bytes */
    return 0;
}

int security_authorize(http_ctx_t *ctx, const http_route_t *route, void *arg)
{
    api_app_t *app = arg;
    security_t *sec = app ? app->security : NULL;
    /* behind a trusted proxy, the client address replaces the peer for everything below and
     * for the handlers' audit records (also with AUTH_ENABLED=false and on public routes) */
    clientaddr_apply(ctx);
    if (!sec || !route->role)
        return 0;
    const char *peer = http_ctx_peer(ctx);
    int retry = 0;
    if (lockout_locked(sec->lockout, peer, mono_ms(), &retry)) {
        count(sec, OUT_LOCKED_OUT);
        reply_429(ctx, "locked_out", retry, "too many failed authentication attempts from this address");
        return 1;
    }
    if (ratelimit_take(sec->per_ip, peer, mono_ms(), &retry) < 0) {
        count(sec, OUT_RATE_LIMITED);
        reply_429(ctx, "rate_limited", retry, "request rate limit for this address exceeded");
        return 1;
    }

    /* One credential field each: with two, a front end and this server could each use a
     * different one (RFC 9110 defines Authorization as a single field; review58 S5). */
    static const char *const singletons[] = {"X-API-Key", "Authorization"};
    for (size_t i = 0; i < ARRAY_SIZE(singletons); i++)
        if (http_ctx_header_count(ctx, singletons[i]) > 1) {
            http_reply_error(ctx, 400, "bad_request", json_pack("{s:s}", "header", singletons[i]),
                             "the %s header is repeated; send one credential", singletons[i]);
            return 1;
        }
    attempt_t at = {0};
    char rl_key[160] = "";
    const char *xkey = http_ctx_header(ctx, "X-API-Key");
    const char *authz = http_ctx_header(ctx, "Authorization");
    int rc;
    if (xkey) {
        rc = check_api_key(sec, xkey, strlen(xkey), &at, rl_key, sizeof(rl_key));
    } else if (authz) {
        /* the scheme, then blanks, then the token; "Bearer" alone (its blank trimmed as
         * optional white space) is a Bearer credential without a token */
        if (strncasecmp(authz, "Bearer", 6) != 0 || (authz[6] != ' ' && authz[6] != '\0')) {
            at.credential = "other";
            snprintf(at.reason, sizeof(at.reason), "unsupported authorization scheme (use Bearer)");
            return fail_401(ctx, app, sec, &at);
        }
        const char *t = authz + 6;
        while (*t == ' ')
            t++;
        size_t n = strlen(t);
        while (n > 0 && t[n - 1] == ' ')
            n--;
        if (n == 0 || n > JWT_MAX_TOKEN) {
            at.credential = "jwt";
            if (n == 0)
                snprintf(at.reason, sizeof(at.reason), "invalid token: empty (Authorization: Bearer <token>)");
            else
                snprintf(at.reason, sizeof(at.reason), "invalid token: longer than %d bytes", JWT_MAX_TOKEN);
            return fail_401(ctx, app, sec, &at);
        }
        rc = strncmp(t, APIKEY_PREFIX, strlen(APIKEY_PREFIX)) == 0
                 ? check_api_key(sec, t, n, &at, rl_key, sizeof(rl_key))
                 : check_jwt(sec, t, n, &at, rl_key, sizeof(rl_key));
    } else {
        snprintf(at.reason, sizeof(at.reason), "no credential");
        return fail_401(ctx, app, sec, &at);
    }
    if (rc < 0 && rc != -EACCES && rc != -EINVAL && rc != -EKEYEXPIRED && at.credential &&
        strcmp(at.credential, "api_key") == 0) {
        /* the key store failed: not the client's fault, and not a reason to lock it out */
        log_msg(LOG_ERROR, "API key lookup failed", "{s:i}", "error", rc);
        http_reply_error(ctx, 503, "unavailable", NULL, "authentication backend unavailable");
        return 1;
    }
    if (rc < 0)
        return fail_401(ctx, app, sec, &at);

    if (ratelimit_take(sec->per_key, rl_key, mono_ms(), &retry) < 0) {
        count(sec, OUT_RATE_LIMITED);
        reply_429(ctx, "rate_limited", retry, "request rate limit for this credential exceeded");
        return 1;
    }
    /* recorded under the role that grants the route; a refusal names every role held */
    char held[96];
    const char *role = roles_granting(at.roles, route->role);
    if (!role && at.roles)
        role = roles_names(at.roles, held, sizeof(held));
    http_ctx_set_principal(ctx, at.user, role);
    if (!roles_satisfies(at.roles, route->role)) {
        snprintf(at.reason, sizeof(at.reason), "role %s does not grant %s", role ? role : "(none)",
                 route->role);
        /* at most once a minute per principal and route: any low-privilege key could otherwise
         * add a durable, SIEM-forwarded record per request at its rate limit (review58 S3) */
        char denied[256];
        snprintf(denied, sizeof(denied), "denied:%s:%s", rl_key, route->pattern);
        if (app->audit && audit_due(sec, denied, &at))
            audit_auth(ctx, app, "AUTH_FAILURE", &at, "authorize", "denied");
        count(sec, OUT_FORBIDDEN);
        bool any = strcmp(route->role, ROLES_READ) == 0; /* any known role: this one has none */
        http_reply_error(ctx, 403, "forbidden",
                         json_pack("{s:s,s:s?}", "required_role", route->role, "role", role),
                         any ? "this endpoint requires a role (one of %s); the credential has none"
                             : "this endpoint requires the %s role (or admin)",
                         any ? roles_list() : route->role);
        return 1;
    }
    count(sec, OUT_SUCCESS);
    if (app->audit && audit_due(sec, rl_key, &at))
        audit_auth(ctx, app, "AUTH_SUCCESS", &at, "authenticate", "success");
    return 0;
}
