/* SPDX-License-Identifier: Apache-2.0 */
/* Backup manifest: build, serialise with its HMAC, parse and authenticate. See
 * manifest.h. Every path taken from a manifest is checked here (relative, no "..", no
 * empty or hidden components), so restore can join it to a target directory safely. */
#include "backup/manifest.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define FORMAT_NAME "aimedres-backup"
#define MAX_FILES 10000000

bool backup_id_valid(const char *s)
{
    /* 20261127T073651Z or 20261127T073651Z-12 */
    if (!s || strlen(s) < 16 || strlen(s) > 20)
        return false;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        bool ok = i == 8 ? c == 'T' : i == 15 ? c == 'Z' : isdigit((unsigned char)c);
        if (!ok)
            return false;
    }
    if (s[16] == '\0')
        return true;
    if (s[16] != '-' || !s[17] || s[17] == '0')
        return false;
    for (const char *p = s + 17; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return strlen(s + 17) <= 3;
}

int backup_id_compare(const char *a, const char *b)
{
    int c = strncmp(a, b, 16);
    if (c)
        return c;
    long na = a[16] == '-' ? strtol(a + 17, NULL, 10) : 0;
    long nb = b[16] == '-' ? strtol(b + 17, NULL, 10) : 0;
    return (na > nb) - (na < nb);
}

backup_manifest_t *backup_manifest_new(void)
{
    backup_manifest_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->components = json_object();
    m->source = json_object();
    m->notes = json_array();
    if (!m->components || !m->source || !m->notes) {
        backup_manifest_free(m);
        return NULL;
    }
    return m;
}

static void file_clear(backup_file_t *f)
{
    free(f->path);
    free(f->component);
    free(f->stored);
}

void backup_manifest_free(backup_manifest_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_files; i++)
        file_clear(&m->files[i]);
    free(m->files);
    free(m->key_id);
    free(m->tool_version);
    free(m->host);
    json_decref(m->components);
    json_decref(m->source);
    json_decref(m->db);
    json_decref(m->notes);
    free(m);
}

int backup_manifest_add_file(backup_manifest_t *m, const backup_file_t *f)
{
    if (m->n_files % 64 == 0) {
        backup_file_t *nf = realloc(m->files, (m->n_files + 64) * sizeof(*nf));
        if (!nf)
            return -ENOMEM;
        m->files = nf;
    }
    backup_file_t *d = &m->files[m->n_files];
    *d = *f;
    d->path = strdup(f->path);
    d->component = strdup(f->component);
    d->stored = strdup(f->stored);
    if (!d->path || !d->component || !d->stored) {
        file_clear(d);
        return -ENOMEM;
    }
    m->n_files++;
    return 0;
}

const backup_file_t *backup_manifest_find(const backup_manifest_t *m, const char *path)
{
    for (size_t i = 0; i < m->n_files; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    return NULL;
}

/* ------------------------------------------------------------------ serialise */

static json_t *file_json(const backup_file_t *f)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:i,s:s,s:s,s:s,s:I,s:s}", "path", f->path, "component", f->component,
                     "size", (json_int_t)f->size, "mtime_ns", (json_int_t)f->mtime_ns, "mode", (int)f->mode,
                     "sha256", f->sha256, "holder", f->holder, "stored", f->stored, "stored_size",
                     (json_int_t)f->stored_size, "nonce", f->nonce);
}

static json_t *to_json(const backup_manifest_t *m)
{
    char ts[ISO8601_LEN];
    util_iso8601(m->timestamp_ms, ts);
    json_t *files = json_array();
    if (!files)
        return NULL;
    for (size_t i = 0; i < m->n_files; i++) {
        json_t *f = file_json(&m->files[i]);
        if (!f || json_array_append_new(files, f) < 0) {
            json_decref(files);
            return NULL;
        }
    }
    json_t *o = json_pack(
        "{s:s,s:i,s:s,s:s,s:s,s:I,s:o,s:{s:s,s:s,s:s,s:s,s:I},s:o,s:s,s:s,s:s,s:O,s:O,s:O,s:O,s:o,s:I,s:I}",
        "format", FORMAT_NAME, "format_version", BACKUP_FORMAT_VERSION, "id", m->id, "type", m->type,
        "timestamp", ts, "timestamp_ms", (json_int_t)m->timestamp_ms, "parent",
        m->parent[0] ? json_string(m->parent) : json_null(), "encryption", "scheme", "AES-256-GCM",
        "compression", "zstd", "stream", "aimedres-chunked-v1", "kdf", "HMAC-SHA256", "chunk_size",
        (json_int_t)BACKUP_CHUNK_DEFAULT, "key_id", m->key_id ? json_string(m->key_id) : json_null(),
        "key_fingerprint", m->key_fingerprint, "tool_version", m->tool_version ? m->tool_version : "", "host",
        m->host ? m->host : "", "components", m->components, "source", m->source, "db",
        m->db ? m->db : json_null(), "notes", m->notes, "files", files, "total_size",
        (json_int_t)m->total_size, "stored_size", (json_int_t)m->stored_here);
    return o;
}

static char *canonical(const json_t *o)
{
    return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
}

char *backup_manifest_dump(const backup_manifest_t *m, const backup_key_t *key)
{
    json_t *o = to_json(m);
    if (!o)
        return NULL;
    char *canon = canonical(o);
    char *out = NULL;
    if (canon) {
        char mac[SHA256_HEX_LEN];
        backup_key_mac_hex(key, canon, strlen(canon), mac);
        free(canon);
        if (json_object_set_new(o, "auth", json_pack("{s:s,s:s}", "alg", "HMAC-SHA256", "mac", mac)) == 0)
            out = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    }
    json_decref(o);
    return out;
}

/* ------------------------------------------------------------------ parse */

static int bad(char *err, size_t errlen, const char *field)
{
    snprintf(err, errlen, "manifest: %s is missing or malformed", field);
    return -EPROTO;
}

/* A relative path of safe components: no "", ".", "..", no leading '.', no control chars. */
static bool safe_relpath(const char *p)
{
    if (!p || !*p || *p == '/' || strlen(p) >= 4096)
        return false;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || s[0] == '.')
            return false;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return false;
        s += n;
        if (*s == '/')
            s++;
        if (e && !*s)
            return false; /* trailing slash */
    }
    return true;
}

static bool is_component(const char *c)
{
    static const char *const names[] = {"db", "models", "config", "results", "audit"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (c && strcmp(c, names[i]) == 0)
            return true;
    return false;
}

static bool is_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

static bool stored_name_ok(const char *s)
{
    if (!s || strncmp(s, "data/", 5) != 0 || !s[5] || strlen(s) > 40)
        return false;
    for (const char *p = s + 5; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static int copy_str(const json_t *o, const char *key, char *buf, size_t n)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (!v || strlen(v) >= n)
        return -1;
    memcpy(buf, v, strlen(v) + 1);
    return 0;
}

static int get_u64(const json_t *o, const char *key, uint64_t *ret)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_file(const json_t *jf, backup_file_t *f, size_t idx, char *err, size_t errlen)
{
    char field[64];
    memset(f, 0, sizeof(*f));
    snprintf(field, sizeof(field), "files[%zu]", idx);
    const char *path = json_string_value(json_object_get(jf, "path"));
    const char *comp = json_string_value(json_object_get(jf, "component"));
    const char *stored = json_string_value(json_object_get(jf, "stored"));
    const char *nonce = json_string_value(json_object_get(jf, "nonce"));
    const char *sha = json_string_value(json_object_get(jf, "sha256"));
    json_t *mt = json_object_get(jf, "mtime_ns"), *mode = json_object_get(jf, "mode");
    if (!json_is_object(jf) || !safe_relpath(path) || !strchr(path, '/') || !is_component(comp) ||
        !stored_name_ok(stored) || !is_hex(nonce, 2 * BACKUP_NONCE_BYTES) || !is_hex(sha, 64) ||
        get_u64(jf, "size", &f->size) < 0 || get_u64(jf, "stored_size", &f->stored_size) < 0 ||
        !json_is_integer(mt) || !json_is_integer(mode) || json_integer_value(mode) < 0 ||
        json_integer_value(mode) > 07777 || copy_str(jf, "holder", f->holder, sizeof(f->holder)) < 0 ||
        !backup_id_valid(f->holder))
        return bad(err, errlen, field);
    f->mtime_ns = json_integer_value(mt);
    f->mode = (uint32_t)json_integer_value(mode);
    memcpy(f->sha256, sha, 65);
    memcpy(f->nonce, nonce, sizeof(f->nonce));
    f->path = strdup(path);
    f->component = strdup(comp);
    f->stored = strdup(stored);
    if (!f->path || !f->component || !f->stored) {
        file_clear(f);
        return -ENOMEM;
    }
    return 0;
}

static char *dup_or_null(const json_t *v)
{
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static int from_json(const json_t *o, backup_manifest_t **ret, char *err, size_t errlen)
{
    const char *fmt = json_string_value(json_object_get(o, "format"));
    if (!fmt || strcmp(fmt, FORMAT_NAME) != 0)
        return bad(err, errlen, "format");
    json_t *fv = json_object_get(o, "format_version");
    if (!json_is_integer(fv) || json_integer_value(fv) != BACKUP_FORMAT_VERSION) {
        snprintf(err, errlen, "manifest: format_version %lld is not supported by this aimedres (expects %d)",
                 json_is_integer(fv) ? (long long)json_integer_value(fv) : -1LL, BACKUP_FORMAT_VERSION);
        return -EPROTO;
    }
    backup_manifest_t *m = backup_manifest_new();
    if (!m)
        return -ENOMEM;
    int r = 0;
    json_t *ts = json_object_get(o, "timestamp_ms");
    json_t *parent = json_object_get(o, "parent");
    json_t *files = json_object_get(o, "files");
    if (copy_str(o, "id", m->id, sizeof(m->id)) < 0 || !backup_id_valid(m->id)) {
        r = bad(err, errlen, "id");
        goto fail;
    }
    if (copy_str(o, "type", m->type, sizeof(m->type)) < 0 ||
        (strcmp(m->type, "full") && strcmp(m->type, "incremental") && strcmp(m->type, "audit-only"))) {
        r = bad(err, errlen, "type");
        goto fail;
    }
    if (!json_is_integer(ts)) {
        r = bad(err, errlen, "timestamp_ms");
        goto fail;
    }
    m->timestamp_ms = json_integer_value(ts);
    if (json_is_string(parent)) {
        if (copy_str(o, "parent", m->parent, sizeof(m->parent)) < 0 || !backup_id_valid(m->parent)) {
            r = bad(err, errlen, "parent");
            goto fail;
        }
    } else if (!json_is_null(parent)) {
        r = bad(err, errlen, "parent");
        goto fail;
    }
    if (copy_str(o, "key_fingerprint", m->key_fingerprint, sizeof(m->key_fingerprint)) < 0) {
        r = bad(err, errlen, "key_fingerprint");
        goto fail;
    }
    m->key_id = dup_or_null(json_object_get(o, "key_id"));
    m->tool_version = dup_or_null(json_object_get(o, "tool_version"));
    m->host = dup_or_null(json_object_get(o, "host"));
    json_t *v;
    if (json_is_object(v = json_object_get(o, "components"))) {
        json_decref(m->components);
        m->components = json_deep_copy(v);
    }
    if (json_is_object(v = json_object_get(o, "source"))) {
        json_decref(m->source);
        m->source = json_deep_copy(v);
    }
    if (json_is_object(v = json_object_get(o, "db")))
        m->db = json_deep_copy(v);
    if (json_is_array(v = json_object_get(o, "notes"))) {
        json_decref(m->notes);
        m->notes = json_deep_copy(v);
    }
    if (get_u64(o, "total_size", &m->total_size) < 0 || get_u64(o, "stored_size", &m->stored_here) < 0) {
        r = bad(err, errlen, "total_size/stored_size");
        goto fail;
    }
    if (!json_is_array(files) || json_array_size(files) > MAX_FILES) {
        r = bad(err, errlen, "files");
        goto fail;
    }
    m->files = calloc(json_array_size(files) + 1, sizeof(*m->files));
    if (!m->files) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(files); i++) {
        if ((r = parse_file(json_array_get(files, i), &m->files[i], i, err, errlen)) < 0)
            goto fail;
        m->n_files++;
    }
    *ret = m;
    return 0;
fail:
    backup_manifest_free(m);
    return r;
}

int backup_manifest_parse(const char *text, size_t len, const backup_key_t *key, backup_manifest_t **ret,
                          char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o || !json_is_object(o)) {
        snprintf(err, errlen, "manifest: not valid JSON (line %d: %s)", jerr.line, jerr.text);
        json_decref(o);
        return -EPROTO;
    }
    int r = 0;
    if (key) {
        const char *fpr = json_string_value(json_object_get(o, "key_fingerprint"));
        const char *id = json_string_value(json_object_get(o, "key_id"));
        if (!fpr) {
            r = bad(err, errlen, "key_fingerprint");
            goto out;
        }
        if (strcmp(fpr, key->fingerprint) != 0) {
            snprintf(err, errlen,
                     "wrong key: this backup was encrypted with the key whose fingerprint is %s%s%s%s, the "
                     "configured "
                     "key's fingerprint is %s",
                     fpr, id ? " (BACKUP_ENCRYPTION_KEY_ID " : "", id ? id : "", id ? ")" : "",
                     key->fingerprint);
            r = -EKEYREJECTED;
            goto out;
        }
        json_t *auth = json_object_get(o, "auth");
        const char *mac = json_string_value(json_object_get(auth, "mac"));
        const char *alg = json_string_value(json_object_get(auth, "alg"));
        if (!mac || !alg || strcmp(alg, "HMAC-SHA256") != 0 || strlen(mac) != 64) {
            snprintf(err, errlen, "manifest: the authentication code is missing or malformed");
            r = -EBADMSG;
            goto out;
        }
        char mac_copy[SHA256_HEX_LEN];
        memcpy(mac_copy, mac, sizeof(mac_copy));
        json_object_del(o, "auth");
        char *canon = canonical(o);
        if (!canon) {
            r = -ENOMEM;
            goto out;
        }
        char want[SHA256_HEX_LEN];
        backup_key_mac_hex(key, canon, strlen(canon), want);
        free(canon);
        if (CRYPTO_memcmp(want, mac_copy, 64) != 0) {
            snprintf(err, errlen, "manifest fails authentication: it was edited or damaged after the backup");
            r = -EBADMSG;
            goto out;
        }
    }
    r = from_json(o, ret, err, errlen);
out:
    json_decref(o);
    return r;
}

int backup_manifest_load(const char *dir, const backup_key_t *key, backup_manifest_t **ret, char *err,
                         size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, BACKUP_MANIFEST_FILE) >= (int)sizeof(path)) {
        snprintf(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    char *text = NULL;
    size_t len = 0;
    int r = util_read_file(path, BACKUP_MANIFEST_MAX, &text, &len);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    r = backup_manifest_parse(text, len, key, ret, err, errlen);
    free(text);
    if (r < 0)
        return r;
    /* The id is authenticated with the rest; the directory name is not. A manifest copied
     * from another backup verifies on its own, so it must also name the directory it is
     * in (<id>, or .<id>.partial while a backup is being written; `latest` resolved). */
    char real[PATH_MAX];
    const char *base = realpath(dir, real) ? strrchr(real, '/') : NULL;
    base = base ? base + 1 : "";
    size_t n = strlen((*ret)->id);
    bool named = strcmp(base, (*ret)->id) == 0 ||
                 (base[0] == '.' && strncmp(base + 1, (*ret)->id, n) == 0 && strcmp(base + 1 + n, ".partial") == 0);
    if (!named) {
        snprintf(err, errlen,
                 "%s: the manifest is that of backup %s, not of this directory (%s): copied or moved from "
                 "another backup",
                 path, (*ret)->id, base);
        backup_manifest_free(*ret);
        *ret = NULL;
        return -EPROTO;
    }
    return 0;
}
