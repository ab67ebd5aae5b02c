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

static bool is_pseudonym(const char *s)
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
    if (!ev || !ev->type || !*ev->type || strlen(ev->type) > 32)
        return -EINVAL;
    for (const char *p = ev->type; *p; p++)
        if (!(isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return -EINVAL;
    const char *fields[] = {ev->user,      ev->role,      ev->action,  ev->entity_type,
                            ev->entity_id, ev->source_ip, ev->outcome, ev->request_id};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        if (!field_ok(fields[i]))
            return -EINVAL;
    if (ev->patient_pseudonym && !is_pseudonym(ev->patient_pseudonym))
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
    EVP_MAC_CTX *base; /* initialised with key; duplicated per message */
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
    }
    EVP_MAC_CTX *m = EVP_MAC_CTX_dup(c->base);
    unsigned char mac[32];
    size_t n = 0;
    int ok = m && EVP_MAC_update(m, (const unsigned char *)msg, len) == 1 &&
             EVP_MAC_final(m, mac, &n, sizeof(mac)) == 1 && n == 32;
    EVP_MAC_CTX_free(m);
    if (!ok)
        return -EIO;
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

struct audit_prepared {
    char *a, *b, *c, *d; /* member groups around prev_hash, seq and ts; a..c may be "" */
};

/* Appends ,"key":<value as jansson dumps it> to *out. */
static int add_member(char **out, const char *key, json_t *v)
{
    if (!v)
        return 0;
    char *dv = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
    json_decref(v);
    if (!dv)
        return -ENOMEM;
    char *n;
    int r = asprintf(&n, "%s%s\"%s\":%s", *out, **out ? "," : "", key, dv);
    free(dv);
    if (r < 0)
        return -ENOMEM;
    free(*out);
    *out = n;
    return 0;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : NULL;
}

void audit_prepared_free(audit_prepared_t *p)
{
    if (!p)
        return;
    free(p->a);
    free(p->b);
    free(p->c);
    free(p->d);
    free(p);
}

size_t audit_prepared_size(const audit_prepared_t *p)
{
    return strlen(p->a) + strlen(p->b) + strlen(p->c) + strlen(p->d);
}

audit_prepared_t *audit_record_prepare(const audit_event_t *ev)
{
    audit_prepared_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->a = strdup("")) || !(p->b = strdup("")) || !(p->c = strdup("")) || !(p->d = strdup("")))
        goto fail;
    /* strcmp order: action detail entity_id entity_type outcome patient | prev_hash |
     * request_id role | seq | source_ip | ts | type user v */
    if (add_member(&p->a, "action", str_or_null(ev->action)) < 0 ||
        add_member(&p->a, "detail", ev->detail ? json_incref(ev->detail) : NULL) < 0 ||
        add_member(&p->a, "entity_id", str_or_null(ev->entity_id)) < 0 ||
        add_member(&p->a, "entity_type", str_or_null(ev->entity_type)) < 0 ||
        add_member(&p->a, "outcome", str_or_null(ev->outcome)) < 0 ||
        add_member(&p->a, "patient", str_or_null(ev->patient_pseudonym)) < 0 ||
        add_member(&p->b, "request_id", str_or_null(ev->request_id)) < 0 ||
        add_member(&p->b, "role", str_or_null(ev->role)) < 0 ||
        add_member(&p->c, "source_ip", str_or_null(ev->source_ip)) < 0 ||
        add_member(&p->d, "type", str_or_null(ev->type)) < 0 ||
        add_member(&p->d, "user", str_or_null(ev->user)) < 0 || add_member(&p->d, "v", json_integer(1)) < 0)
        goto fail;
    return p;
fail:
    audit_prepared_free(p);
    return NULL;
}

char *audit_prepared_seal(const audit_prepared_t *p, uint64_t seq, int64_t ts_ms, const char *prev_hash,
                          const unsigned char key[AUDIT_KEY_LEN], char ret_hash[AUDIT_HASH_HEX],
                          size_t *ret_len)
{
    char ts[ISO8601_LEN];
    util_iso8601(ts_ms, ts);
    char *canon;
    int n = asprintf(&canon, "{%s%s\"prev_hash\":\"%s\"%s%s,\"seq\":%llu%s%s,\"ts\":\"%s\",%s}", p->a,
                     *p->a ? "," : "", prev_hash, *p->b ? "," : "", p->b, (unsigned long long)seq,
                     *p->c ? "," : "", p->c, ts, p->d);
    if (n < 0)
        return NULL;
    char *line = NULL;
    if (hmac_hex(key, canon, (size_t)n, ret_hash) == 0) {
        line = malloc((size_t)n + 80);
        if (line) {
            int h = snprintf(line, 80, "{\"hash\":\"%s\",", ret_hash);
            memcpy(line + h, canon + 1, (size_t)n - 1);
            line[h + n - 1] = '\n';
            line[h + n] = '\0';
            *ret_len = (size_t)h + (size_t)n;
        }
    }
    free(canon);
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

static int cmp_files(const void *a, const void *b)
{
    return strcmp(((const audit_file_t *)a)->path, ((const audit_file_t *)b)->path);
}

void audit_files_free(audit_file_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i].path);
    free(f);
}

/* "<base>.YYYY-MM-DD" or "<base>.YYYY-MM-DD.N" -> archive date. */
static bool archive_date(const char *name, const char *base, int64_t *ret_days)
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
    if (*rest == '\0')
        return true;
    if (*rest != '.' || !rest[1])
        return false;
    for (const char *p = rest + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

int audit_files_list(const char *log_path, audit_file_t **ret, size_t *ret_n)
{
    char dir[4096], base[1024];
    const char *slash = strrchr(log_path, '/');
    if (slash) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - log_path) ? (int)(slash - log_path) : 1, log_path);
        snprintf(base, sizeof(base), "%s", slash + 1);
    } else {
        snprintf(dir, sizeof(dir), ".");
        snprintf(base, sizeof(base), "%s", log_path);
    }
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
        if (!archive_date(de->d_name, base, &days))
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
        files[n++].date_days = days;
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

int audit_file_tail(int fd, off_t size, json_t **ret_rec, off_t *ret_valid_len)
{
    *ret_rec = NULL;
    *ret_valid_len = 0;
    if (size == 0)
        return 0;
    size_t want = size > (off_t)(2 * AUDIT_MAX_LINE) ? 2 * AUDIT_MAX_LINE : (size_t)size;
    off_t start = size - (off_t)want;
    char *buf = malloc(want);
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
