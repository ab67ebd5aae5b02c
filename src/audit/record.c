/* SPDX-License-Identifier: Apache-2.0 */
/* Audit record format (see record.h): the canonical JSON a record's HMAC covers, the
 * checks a parsed line must pass, the dated calendar arithmetic and the discovery of a
 * log's files. Nothing here logs or keeps state. */
#include "audit/record.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "security/pseudonym.h"

#define MAX_FIELD 1024

int audit_chain_key(const char *secret_key, unsigned char key[AUDIT_KEY_LEN])
{
    static const char label[] = "aimedres/audit-chain/v1";
    if (!secret_key || !*secret_key)
        return -EINVAL;
    unsigned int n = AUDIT_KEY_LEN;
    if (!HMAC(EVP_sha256(), secret_key, (int)strlen(secret_key), (const unsigned char *)label,
              sizeof(label) - 1, key, &n))
        return -EIO;
    return 0;
}

static bool field_ok(const char *s)
{
    return !s || strnlen(s, MAX_FIELD + 1) <= MAX_FIELD;
}

bool audit_pseudonym_valid(const char *s)
{
    if (strlen(s) != PSEUDONYM_LEN - 1 || s[0] != 'p' || s[1] != '_')
        return false;
    for (const char *p = s + 2; *p; p++)
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
            return false;
    return true;
}

int audit_event_validate(const audit_event_t *ev)
{
    /* 64: the longest deployment event, DEPLOYMENT_<EVENT>, runs past 32 (rollout.c); a SIEM
     * message id (RFC 5424 MSGID, at most 32) is "-" for a longer type, which stays in the
     * record's type parameter (siem.c) */
    if (!ev || !ev->type || !*ev->type || strnlen(ev->type, AUDIT_MAX_TYPE + 1) > AUDIT_MAX_TYPE)
        return -EINVAL;
    for (const char *p = ev->type; *p; p++)
        if (!(isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return -EINVAL;
    const char *fields[] = {ev->user,      ev->role,      ev->action,  ev->entity_type,
                            ev->entity_id, ev->source_ip, ev->outcome, ev->request_id};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        if (!field_ok(fields[i]))
            return -EINVAL;
    if (ev->patient_pseudonym && !audit_pseudonym_valid(ev->patient_pseudonym))
        return -EINVAL;
    if (ev->detail && !json_is_object(ev->detail))
        return -EINVAL;
    return 0;
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

json_t *audit_record_build(const audit_event_t *ev, uint64_t seq, int64_t ts_ms, const char *prev_hash)
{
    char ts[ISO8601_LEN];
    util_iso8601(ts_ms, ts);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "v", json_integer(1));
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "prev_hash", json_string(prev_hash));
    set_str(o, "type", ev->type);
    /* FHIR AuditEvent / DICOM: who (agent), role, action, entity, from where, outcome */
    set_str(o, "user", ev->user);
    set_str(o, "role", ev->role);
    set_str(o, "action", ev->action);
    set_str(o, "entity_type", ev->entity_type);
    set_str(o, "entity_id", ev->entity_id);
    set_str(o, "source_ip", ev->source_ip);
    set_str(o, "outcome", ev->outcome);
    set_str(o, "request_id", ev->request_id);
    set_str(o, "patient", ev->patient_pseudonym);
    if (ev->detail)
        json_object_set_new(o, "detail", json_deep_copy(ev->detail));
    return o;
}

/* HMAC-SHA256 with a per-thread context initialised once per key: the one-shot HMAC() of
 * OpenSSL 3 fetches the algorithms on every call, which cost more than the hashing. */
static pthread_key_t mac_tls;
static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *mac_alg;

typedef struct mac_cache {
    unsigned char key[AUDIT_KEY_LEN];
    EVP_MAC_CTX *base; /* initialised with key; re-initialised (same key) per message */
    bool fresh;        /* base was just initialised: no re-init needed */
} mac_cache_t;

static void mac_cache_free(void *p)
{
    mac_cache_t *c = p;
    if (c) {
        EVP_MAC_CTX_free(c->base);
        OPENSSL_cleanse(c->key, sizeof(c->key));
        free(c);
    }
}

static void mac_init_once(void)
{
    pthread_key_create(&mac_tls, mac_cache_free);
    mac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static int hmac_hex(const unsigned char key[AUDIT_KEY_LEN], const char *msg, size_t len,
                    char ret_hash[AUDIT_HASH_HEX])
{
    pthread_once(&mac_once, mac_init_once);
    if (!mac_alg)
        return -EIO;
    mac_cache_t *c = pthread_getspecific(mac_tls);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c || pthread_setspecific(mac_tls, c) != 0) {
            free(c);
            return -ENOMEM;
        }
    }
    if (!c->base || CRYPTO_memcmp(c->key, key, AUDIT_KEY_LEN) != 0) {
        EVP_MAC_CTX_free(c->base);
        c->base = EVP_MAC_CTX_new(mac_alg);
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                               OSSL_PARAM_END};
        if (!c->base || EVP_MAC_init(c->base, key, AUDIT_KEY_LEN, params) != 1) {
            EVP_MAC_CTX_free(c->base);
            c->base = NULL;
            return -EIO;
        }
        memcpy(c->key, key, AUDIT_KEY_LEN);
        c->fresh = true;
    }
    /* re-initialising with a NULL key restarts HMAC from the saved key state: no allocation */
    unsigned char mac[32];
    size_t n = 0;
    int ok = c->fresh ? 1 : EVP_MAC_init(c->base, NULL, 0, NULL);
    c->fresh = false;
    ok = ok == 1 && EVP_MAC_update(c->base, (const unsigned char *)msg, len) == 1 &&
         EVP_MAC_final(c->base, mac, &n, sizeof(mac)) == 1 && n == 32;
    if (!ok) {
        EVP_MAC_CTX_free(c->base); /* start over with the key next time */
        c->base = NULL;
        return -EIO;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        ret_hash[2 * i] = hex[mac[i] >> 4];
        ret_hash[2 * i + 1] = hex[mac[i] & 15];
    }
    ret_hash[64] = '\0';
    return 0;
}

static int canonical_hash(const json_t *rec, const unsigned char key[AUDIT_KEY_LEN],
                          char ret_hash[AUDIT_HASH_HEX])
{
    json_t *copy = json_copy((json_t *)rec);
    if (!copy)
        return -ENOMEM;
    json_object_del(copy, "hash");
    char *c = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(copy);
    if (!c)
        return -ENOMEM;
    int rc = hmac_hex(key, c, strlen(c), ret_hash);
    free(c);
    return rc;
}

char *audit_record_seal_line(const json_t *rec, const unsigned char key[AUDIT_KEY_LEN],
                             char ret_hash[AUDIT_HASH_HEX], size_t *ret_len)
{
    if (json_object_get(rec, "hash") || json_object_size(rec) == 0)
        return NULL;
    char *c = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (!c)
        return NULL;
    size_t cl = strlen(c);
    char *line = NULL;
    if (hmac_hex(key, c, cl, ret_hash) == 0) {
        /* {"hash":"<64 hex>", + the canonical members + "\n" */
        line = malloc(cl + 80);
        if (line) {
            int p = snprintf(line, 80, "{\"hash\":\"%s\",", ret_hash);
            memcpy(line + p, c + 1, cl - 1);
            line[p + cl - 1] = '\n';
            line[p + cl] = '\0';
            *ret_len = (size_t)p + cl;
        }
    }
    free(c);
    return line;
}

int audit_record_seal(json_t *rec, const unsigned char key[AUDIT_KEY_LEN], char ret_hash[AUDIT_HASH_HEX])
{
    int r = canonical_hash(rec, key, ret_hash);
    if (r < 0)
        return r;
    json_object_set_new(rec, "hash", json_string(ret_hash));
    return 0;
}

/* ---- the writer's fast path: records formatted ahead of time ----
 *
 * The canonical members of a record, in the key order json_dumps(JSON_SORT_KEYS) uses, are
 *   a: action detail entity_id entity_type outcome patient | prev_hash |
 *   b: request_id role | seq | c: source_ip | ts | d: type user v
 * The submitter formats a..d once (directly, without a JSON tree; strings escaped exactly as
 * jansson escapes them with JSON_ENSURE_ASCII, falling back to jansson for a string that holds
 * a non-ASCII byte); the writer splices in prev_hash, seq and ts and computes the HMAC. */

/* A growable output buffer that starts on the stack. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool heap, failed;
    char stack[2048];
} sbuf_t;

static void sb_init(sbuf_t *b)
{
    b->p = b->stack;
    b->len = 0;
    b->cap = sizeof(b->stack);
    b->heap = b->failed = false;
}

static bool sb_reserve(sbuf_t *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more <= b->cap)
        return true;
    size_t nc = (b->len + more) * 2;
    char *np = b->heap ? realloc(b->p, nc) : malloc(nc);
    if (!np) {
        b->failed = true;
        return false;
    }
    if (!b->heap)
        memcpy(np, b->p, b->len);
    b->p = np;
    b->cap = nc;
    b->heap = true;
    return true;
}

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (sb_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void sb_free(sbuf_t *b)
{
    if (b->heap)
        free(b->p);
}

/* Appends the escaped body of s (no quotes) the way jansson dumps a string with
 * JSON_ENSURE_ASCII (no slash escape). 0, or 1 when jansson refuses the string (invalid
 * UTF-8; nothing appended). One pass over ASCII; a non-ASCII byte hands the whole string to
 * jansson's own encoder (\uXXXX, surrogate pairs, UTF-8 validation). */
static int sb_json_string(sbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s), start = b->len;
    if (!sb_reserve(b, n * 6 + 2))
        return 0;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        if (c >= 0x80) {
            b->len = start;
            json_t *v = json_string(s);
            if (!v)
                return 1;
            const size_t flags = JSON_ENCODE_ANY | JSON_ENSURE_ASCII | JSON_COMPACT;
            size_t need = json_dumpb(v, NULL, 0, flags);
            if (need == 0)
                b->failed = true;
            else if (sb_reserve(b, need))
                b->len += json_dumpb(v, b->p + b->len, need, flags);
            json_decref(v);
            return 0;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

/* ,"key": (the comma unless first in its group); key is a literal. */
static void put_key(sbuf_t *b, size_t group_start, const char *key, size_t klen)
{
    if (!sb_reserve(b, klen + 4))
        return;
    char *o = b->p + b->len;
    if (b->len > group_start)
        *o++ = ',';
    *o++ = '"';
    memcpy(o, key, klen);
    o += klen;
    *o++ = '"';
    *o++ = ':';
    b->len = (size_t)(o - b->p);
}

/* ,"key":"value"; NULL value: nothing. A value jansson refuses (invalid UTF-8) is left out,
 * as json_object_set_new(o, k, json_string(v)) does. */
static void add_str_n(sbuf_t *b, size_t group_start, const char *key, size_t klen, const char *v)
{
    if (!v)
        return;
    size_t mark = b->len;
    put_key(b, group_start, key, klen);
    if (sb_json_string(b, v) == 1)
        b->len = mark;
}
#define add_str(b, g, key, v) add_str_n(b, g, key, sizeof(key) - 1, v)

/* Decimal digits of v into buf (at least 21 bytes); returns the length. */
static size_t fmt_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static size_t fmt_i64(char *buf, int64_t v)
{
    if (v >= 0)
        return fmt_u64(buf, (uint64_t)v);
    buf[0] = '-';
    return 1 + fmt_u64(buf + 1, (uint64_t)0 - (uint64_t)v);
}

static void add_raw(sbuf_t *b, size_t group_start, const char *key, const char *raw, size_t rawlen)
{
    put_key(b, group_start, key, strlen(key));
    sb_put(b, raw, rawlen);
}

static void add_json(sbuf_t *b, size_t group_start, const char *key, const json_t *v)
{
    if (!v)
        return;
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY;
    add_raw(b, group_start, key, "", 0);
    if (!sb_reserve(b, 256))
        return;
    /* one pass when it fits in the room left (the usual case), else a second with room */
    size_t need = json_dumpb(v, b->p + b->len, b->cap - b->len, flags);
    if (need > b->cap - b->len && sb_reserve(b, need))
        need = json_dumpb(v, b->p + b->len, need, flags);
    if (need == 0)
        b->failed = true;
    else if (!b->failed)
        b->len += need;
}

/* The detail of a MODEL_INFERENCE record: {"arm","model","prediction_id","rows","version"}
 * (sorted), as json_pack would build it; NULL members left out. */
static void add_inference_detail(sbuf_t *b, size_t group_start, const audit_inference_t *inf)
{
    add_raw(b, group_start, "detail", "{", 1);
    size_t obj = b->len;
    add_str(b, obj, "arm", inf->arm);
    add_str(b, obj, "model", inf->model);
    add_str(b, obj, "prediction_id", inf->prediction_id);
    char num[24];
    add_raw(b, obj, "rows", num, fmt_i64(num, inf->rows));
    add_str(b, obj, "version", inf->version);
    sb_put(b, "}", 1);
}

/* Formats ev (or, when inf is set, the MODEL_INFERENCE record it describes) into one
 * allocation of head bytes (for the caller) followed by the audit_prepared_t. */
static void *prepare(const audit_event_t *ev, const audit_inference_t *inf, const char *entity_id,
                     size_t head, audit_prepared_t **ret)
{
    sbuf_t b;
    sb_init(&b);
    uint32_t seg[4];
    size_t g = 0;
    /* a */
    add_str(&b, g, "action", ev->action);
    if (inf)
        add_inference_detail(&b, g, inf);
    else
        add_json(&b, g, "detail", ev->detail);
    add_str(&b, g, "entity_id", entity_id);
    add_str(&b, g, "entity_type", ev->entity_type);
    add_str(&b, g, "outcome", ev->outcome);
    add_str(&b, g, "patient", ev->patient_pseudonym);
    seg[0] = (uint32_t)(b.len - g);
    /* b */
    g = b.len;
    add_str(&b, g, "request_id", ev->request_id);
    add_str(&b, g, "role", ev->role);
    seg[1] = (uint32_t)(b.len - g);
    /* c */
    g = b.len;
    add_str(&b, g, "source_ip", ev->source_ip);
    seg[2] = (uint32_t)(b.len - g);
    /* d */
    g = b.len;
    add_str(&b, g, "type", ev->type);
    add_str(&b, g, "user", ev->user);
    add_raw(&b, g, "v", "1", 1);
    seg[3] = (uint32_t)(b.len - g);
    void *mem = NULL;
    head = (head + 15) & ~(size_t)15;
    if (!b.failed && b.len < UINT32_MAX && (mem = malloc(head + sizeof(audit_prepared_t) + b.len))) {
        audit_prepared_t *p = (audit_prepared_t *)((char *)mem + head);
        memcpy(p->seg, seg, sizeof(seg));
        p->len = (uint32_t)b.len;
        memcpy(p->text, b.p, b.len);
        *ret = p;
    }
    sb_free(&b);
    return mem;
}

void *audit_record_prepare_in(const audit_event_t *ev, size_t head, audit_prepared_t **ret)
{
    return prepare(ev, NULL, ev->entity_id, head, ret);
}

void *audit_inference_prepare_in(const audit_inference_t *inf, size_t head, audit_prepared_t **ret)
{
    char entity[2 * MAX_FIELD + 2];
    audit_event_t ev = {0};
    audit_inference_event(inf, &ev);
    const char *m = inf->model ? inf->model : "", *v = inf->version ? inf->version : "";
    size_t ml = strnlen(m, MAX_FIELD), vl = strnlen(v, MAX_FIELD); /* validated: at most MAX_FIELD */
    memcpy(entity, m, ml);
    entity[ml] = '/';
    memcpy(entity + ml + 1, v, vl);
    entity[ml + 1 + vl] = '\0';
    return prepare(&ev, inf, entity, head, ret);
}

void audit_inference_event(const audit_inference_t *inf, audit_event_t *ev)
{
    *ev = (audit_event_t){
        .type = "MODEL_INFERENCE",
        .user = inf->user,
        .role = inf->role,
        .action = "E",
        .entity_type = "model",
        .source_ip = inf->source_ip,
        .outcome = "success",
        .request_id = inf->request_id,
        .patient_pseudonym = inf->patient_pseudonym,
    };
}

int audit_inference_validate(const audit_inference_t *inf)
{
    audit_event_t ev;
    audit_inference_event(inf, &ev);
    if (!inf->model || !inf->version || !field_ok(inf->model) || !field_ok(inf->version) ||
        !field_ok(inf->arm) || !field_ok(inf->prediction_id))
        return -EINVAL;
    return audit_event_validate(&ev);
}

audit_prepared_t *audit_record_prepare(const audit_event_t *ev)
{
    audit_prepared_t *p = NULL;
    return audit_record_prepare_in(ev, 0, &p) ? p : NULL;
}

void audit_prepared_free(audit_prepared_t *p)
{
    free(p); /* prepared with head 0: the record starts its allocation */
}

size_t audit_prepared_size(const audit_prepared_t *p)
{
    return p->len;
}

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

size_t audit_prepared_seal_into(const audit_prepared_t *p, uint64_t seq, const char *ts,
                                const char *prev_hash, const unsigned char key[AUDIT_KEY_LEN],
                                char ret_hash[AUDIT_HASH_HEX], char *out)
{
    /* out: {"hash":"<64 hex>" then, from offset 74, the canonical form whose leading '{'
     * becomes the ',' after the hash member */
    const char *a = p->text, *b = a + p->seg[0], *c = b + p->seg[1], *d = c + p->seg[2];
    char *canon = out + 74, *o = canon;
    char num[24];
    size_t nl = fmt_u64(num, seq);
    *o++ = '{';
    o = put(o, a, p->seg[0]);
    if (p->seg[0])
        *o++ = ',';
    o = put(o, "\"prev_hash\":\"", 13);
    o = put(o, prev_hash, 64);
    *o++ = '"';
    if (p->seg[1]) {
        *o++ = ',';
        o = put(o, b, p->seg[1]);
    }
    o = put(o, ",\"seq\":", 7);
    o = put(o, num, nl);
    if (p->seg[2]) {
        *o++ = ',';
        o = put(o, c, p->seg[2]);
    }
    o = put(o, ",\"ts\":\"", 7);
    o = put(o, ts, strlen(ts));
    o = put(o, "\",", 2);
    o = put(o, d, p->seg[3]);
    *o++ = '}';
    size_t n = (size_t)(o - canon);
    if (hmac_hex(key, canon, n, ret_hash) < 0)
        return 0;
    memcpy(out, "{\"hash\":\"", 9);
    memcpy(out + 9, ret_hash, 64);
    out[73] = '"';
    out[74] = ',';
    *o++ = '\n';
    return (size_t)(o - out);
}

char *audit_prepared_seal(const audit_prepared_t *p, uint64_t seq, int64_t ts_ms, const char *prev_hash,
                          const unsigned char key[AUDIT_KEY_LEN], char ret_hash[AUDIT_HASH_HEX],
                          size_t *ret_len)
{
    char ts[ISO8601_LEN];
    util_iso8601(ts_ms, ts);
    char *line = malloc(AUDIT_PREPARED_LINE_MAX(p) + 1);
    if (!line)
        return NULL;
    size_t n = audit_prepared_seal_into(p, seq, ts, prev_hash, key, ret_hash, line);
    if (n == 0) {
        free(line);
        return NULL;
    }
    line[n] = '\0';
    *ret_len = n;
    return line;
}

char *audit_record_line(const json_t *rec, size_t *ret_len)
{
    char *s = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *ret_len = n + 1;
    return line;
}

bool audit_record_hash_ok(const json_t *rec, const unsigned char key[AUDIT_KEY_LEN])
{
    const char *have = json_string_value(json_object_get(rec, "hash"));
    char want[AUDIT_HASH_HEX];
    if (!have || strlen(have) != 64 || canonical_hash(rec, key, want) < 0)
        return false;
    return CRYPTO_memcmp(have, want, 64) == 0;
}

static bool is_hex64(const json_t *v)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return false;
    return true;
}

json_t *audit_record_parse(const char *line, size_t len)
{
    if (len == 0 || len > AUDIT_MAX_LINE)
        return NULL;
    json_error_t jerr;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return NULL;
    json_t *seq = json_object_get(o, "seq");
    if (!json_is_object(o) || !json_is_integer(seq) || json_integer_value(seq) < 1 ||
        !is_hex64(json_object_get(o, "prev_hash")) || !is_hex64(json_object_get(o, "hash")) ||
        !json_is_string(json_object_get(o, "ts")) || !json_is_string(json_object_get(o, "type"))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- calendar (Howard Hinnant's days_from_civil / civil_from_days) ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int audit_date_parse(const char *s, int64_t *ret_days)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -EINVAL;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return -EINVAL;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1)
        return -EINVAL;
    int max = mdays[m - 1] + (m == 2 && is_leap(y));
    if (d > max)
        return -EINVAL;
    *ret_days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return 0;
}

void audit_date_format(int64_t z, char buf[11])
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    char tmp[48];
    snprintf(tmp, sizeof(tmp), "%04d-%02u-%02u", (int)(y < 0 ? 0 : y > 9999 ? 9999 : y), m % 100, d % 100);
    memcpy(buf, tmp, 10);
    buf[10] = '\0';
}

/* ---- files ---- */

void audit_path_checkpoints(const char *log_path, char *buf, size_t len)
{
    snprintf(buf, len, "%s.checkpoints", log_path);
}

void audit_path_lock(const char *log_path, char *buf, size_t len)
{
    snprintf(buf, len, "%s.lock", log_path);
}

void audit_path_cursor(const char *log_path, char *buf, size_t len)
{
    snprintf(buf, len, "%s.siem-cursor", log_path);
}

/* Chain order: by date, then by the suffix as a number ("….2" before "….10"). */
static int cmp_files(const void *a, const void *b)
{
    const audit_file_t *x = a, *y = b;
    if (x->date_days != y->date_days)
        return x->date_days < y->date_days ? -1 : 1;
    return (x->part > y->part) - (x->part < y->part);
}

void audit_files_free(audit_file_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i].path);
    free(f);
}

/* "<base>.YYYY-MM-DD" or "<base>.YYYY-MM-DD.N" (N of 1-9 digits, 1 or more) -> archive date and N
 * (0 without one). */
static bool archive_date(const char *name, const char *base, int64_t *ret_days, unsigned *ret_part)
{
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || name[bl] != '.')
        return false;
    const char *d = name + bl + 1;
    char date[11];
    if (strlen(d) < 10)
        return false;
    memcpy(date, d, 10);
    date[10] = '\0';
    if (audit_date_parse(date, ret_days) < 0)
        return false;
    const char *rest = d + 10;
    *ret_part = 0;
    if (*rest == '\0')
        return true;
    if (*rest != '.' || !rest[1] || strlen(rest + 1) > 9 || rest[1] == '0')
        return false; /* N as rotation writes it: no leading zero (".01" would be ".1"'s twin) */
    for (const char *p = rest + 1; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        *ret_part = *ret_part * 10 + (unsigned)(*p - '0');
    }
    return true;
}

int audit_files_list(const char *log_path, audit_file_t **ret, size_t *ret_n)
{
    char dir[4096], base[1024];
    util_dirname(log_path, dir, sizeof(dir));
    snprintf(base, sizeof(base), "%s", util_basename(log_path));
    DIR *d = opendir(dir);
    if (!d && errno == ENOENT) {
        *ret = NULL; /* no directory yet: an empty log */
        *ret_n = 0;
        return 0;
    }
    if (!d)
        return -errno;
    audit_file_t *files = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t days;
        unsigned part;
        if (!archive_date(de->d_name, base, &days, &part))
            continue;
        /* only regular files hold records: a FIFO named like an archive would block whoever
         * opens it (the writer at rotation, verify, the SIEM forwarder; review46 #3) */
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            audit_file_t *nf = realloc(files, cap * sizeof(*files));
            if (!nf) {
                rc = -ENOMEM;
                goto fail;
            }
            files = nf;
        }
        if (asprintf(&files[n].path, "%s/%s", dir, de->d_name) < 0) {
            rc = -ENOMEM;
            goto fail;
        }
        files[n].date_days = days;
        files[n++].part = part;
    }
    if (n > 1) /* reliability (issue 7): qsort(NULL, 0, ...) is UB (UBSan, fuzz_audit) */
        qsort(files, n, sizeof(*files), cmp_files);
    if (util_path_exists(log_path)) {
        audit_file_t *nf = realloc(files, (n + 1) * sizeof(*files));
        if (!nf) {
            rc = -ENOMEM;
            goto fail;
        }
        files = nf;
        files[n].path = strdup(log_path);
        files[n].date_days = -1;
        files[n].part = 0;
        if (!files[n].path) {
            rc = -ENOMEM;
            goto fail;
        }
        n++;
    }
    closedir(d);
    *ret = files;
    *ret_n = n;
    return 0;
fail:
    closedir(d);
    audit_files_free(files, n);
    return rc;
}

int audit_read_tail(int fd, off_t size, size_t max, char **ret_buf, size_t *ret_len, off_t *ret_start)
{
    size_t want = size > (off_t)max ? max : (size_t)size;
    off_t start = size - (off_t)want;
    char *buf = malloc(want ? want : 1);
    if (!buf)
        return -ENOMEM;
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, start + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? -errno : -EIO;
            free(buf);
            return e;
        }
        got += (size_t)r;
    }
    *ret_buf = buf;
    *ret_len = want;
    *ret_start = start;
    return 0;
}

int audit_file_tail(int fd, off_t size, json_t **ret_rec, off_t *ret_valid_len)
{
    *ret_rec = NULL;
    *ret_valid_len = 0;
    if (size == 0)
        return 0;
    char *buf;
    size_t want;
    off_t start;
    int rc = audit_read_tail(fd, size, 2 * AUDIT_MAX_LINE, &buf, &want, &start);
    if (rc < 0)
        return rc;
    /* last '\n' ends the last complete line */
    ssize_t end = (ssize_t)want - 1;
    while (end >= 0 && buf[end] != '\n')
        end--;
    if (end < 0) {
        free(buf);
        return start == 0 ? 0 : -EBADMSG; /* no complete line at all, or a line over the cap */
    }
    *ret_valid_len = start + end + 1;
    ssize_t b = end - 1;
    while (b >= 0 && buf[b] != '\n')
        b--;
    if (b < 0 && start > 0) {
        free(buf);
        return -EBADMSG;
    }
    json_t *rec = audit_record_parse(buf + b + 1, (size_t)(end - b - 1));
    free(buf);
    if (!rec)
        return -EBADMSG;
    *ret_rec = rec;
    return 0;
}

int audit_log_last_record(const char *log_path, json_t **ret)
{
    audit_file_t *files;
    size_t n;
    *ret = NULL;
    int rc = audit_files_list(log_path, &files, &n);
    if (rc < 0)
        return rc;
    for (size_t i = n; i-- > 0;) {
        int fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        struct stat st;
        json_t *rec = NULL;
        off_t valid;
        rc = fstat(fd, &st) < 0 ? -errno : audit_file_tail(fd, st.st_size, &rec, &valid);
        close(fd);
        if (rc < 0)
            break;
        if (rec) {
            *ret = rec;
            break;
        }
    }
    audit_files_free(files, n);
    return rc;
}

int audit_read_line(FILE *f, char **ret_line, size_t *ret_len, bool *ret_terminated)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        return 0;
    }
    bool term = n > 0 && line[n - 1] == '\n';
    if (term)
        line[--n] = '\0';
    if ((size_t)n > AUDIT_MAX_LINE) {
        free(line);
        *ret_line = NULL;
        *ret_len = 0;
        *ret_terminated = term;
        return -EFBIG;
    }
    *ret_line = line;
    *ret_len = (size_t)n;
    *ret_terminated = term;
    return 1;
}
