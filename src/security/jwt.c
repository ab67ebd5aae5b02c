/* SPDX-License-Identifier: Apache-2.0 */
/* JWT verification with OpenSSL (no libjwt: Debian's 1.10 accepts algorithm confusion and
 * alg=none with a NULL key); see jwt.h for the rules and the error codes.
 *
 * DESIGN: the key is chosen before anything about the signature is believed, and the key
 * alone decides the algorithm: the HS256 secret has no kid; every public key has a kid and
 * is RS256 (RSA >= 2048 bits) or ES256 (P-256) by its type. The signature is checked
 * before any claim is read. Every decoded part has a cap. Keys are read-only after
 * loading, so worker threads share the key set without locks. */
#include "security/jwt.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "security/roles.h"

#define MAX_KEYS 64
#define HEADER_CAP 1024
#define PAYLOAD_CAP 6144
#define SIG_CAP 1024
#define PEM_CAP (64 * 1024)

enum alg { ALG_HS256 = 1, ALG_RS256, ALG_ES256 };

typedef struct pubkey {
    char kid[64];
    enum alg alg;
    EVP_PKEY *pkey;
} pubkey_t;

struct jwt_keyset {
    unsigned char *hs;
    size_t hs_len;
    pubkey_t keys[MAX_KEYS];
    size_t n;
};

/* ---------- HMAC-SHA256 ---------- */

static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void fetch_hmac(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n, unsigned char out[32])
{
    pthread_once(&hmac_once, fetch_hmac);
    if (!hmac_impl)
        return -EIO;
    static const unsigned char empty = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_END};
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);
    size_t ol = 0;
    int ok = ctx && EVP_MAC_init(ctx, keylen ? key : &empty, keylen, params) == 1 &&
             EVP_MAC_update(ctx, data, n) == 1 && EVP_MAC_final(ctx, out, &ol, 32) == 1 && ol == 32;
    EVP_MAC_CTX_free(ctx);
    return ok ? 0 : -EIO;
}

/* ---------- base64url ---------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t jwt_b64url_encode(const void *data, size_t n, char *out)
{
    const unsigned char *p = data;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int jwt_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -EINVAL;
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (need > cap)
        return -ENOSPC;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical: leftover bits must be zero */
        return -EINVAL;
    return (int)o;
}

/* ---------- key set ---------- */

static int classify(EVP_PKEY *pkey, enum alg *ret, char *err, size_t errlen)
{
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_RSA) {
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            snprintf(err, errlen, "RSA key shorter than 2048 bits");
            return -EINVAL;
        }
        *ret = ALG_RS256;
        return 0;
    }
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t gl = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &gl) ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            snprintf(err, errlen, "EC key is not on P-256 (ES256)");
            return -EINVAL;
        }
        *ret = ALG_ES256;
        return 0;
    }
    snprintf(err, errlen, "unsupported key type (RSA or P-256 EC public keys only)");
    return -EINVAL;
}

int jwt_keyset_add_pem(jwt_keyset_t *ks, const char *kid, const char *pem, size_t len, char *err,
                       size_t errlen)
{
    if (!kid || !*kid || strlen(kid) >= sizeof(ks->keys[0].kid)) {
        snprintf(err, errlen, "key id must be 1..63 characters");
        return -EINVAL;
    }
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0) {
            snprintf(err, errlen, "key id '%s' given twice", kid);
            return -EEXIST;
        }
    if (ks->n >= MAX_KEYS) {
        snprintf(err, errlen, "more than %d keys", MAX_KEYS);
        return -E2BIG;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return -ENOMEM;
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (!pkey) {
        (void)BIO_reset(bio);
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x) {
            pkey = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(bio);
    if (!pkey) {
        snprintf(err, errlen, "key '%s': not a PEM public key or certificate", kid);
        return -EINVAL;
    }
    enum alg alg;
    char why[128];
    if (classify(pkey, &alg, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "key '%s': %s", kid, why);
        EVP_PKEY_free(pkey);
        return -EINVAL;
    }
    pubkey_t *k = &ks->keys[ks->n++];
    snprintf(k->kid, sizeof(k->kid), "%s", kid);
    k->alg = alg;
    k->pkey = pkey;
    return 0;
}

static int add_file(jwt_keyset_t *ks, const char *kid, const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = util_read_file(path, PEM_CAP, &buf, &len);
    if (rc < 0) {
        snprintf(err, errlen, "JWT_PUBLIC_KEYS: cannot read %s: %s", path, strerror(-rc));
        return rc;
    }
    char why[256];
    rc = jwt_keyset_add_pem(ks, kid, buf, len, why, sizeof(why));
    free(buf);
    if (rc < 0)
        snprintf(err, errlen, "JWT_PUBLIC_KEYS: %s (%s)", why, path);
    return rc;
}

static int load_list(jwt_keyset_t *ks, const char *spec, char *err, size_t errlen)
{
    const char *p = spec;
    while (*p) {
        size_t n = strcspn(p, ",");
        char item[1200];
        if (n >= sizeof(item)) {
            snprintf(err, errlen, "JWT_PUBLIC_KEYS: entry too long");
            return -EINVAL;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        char *a = item;
        while (*a == ' ')
            a++;
        char *eq = strchr(a, '=');
        if (!eq || eq == a || !eq[1]) {
            snprintf(err, errlen, "JWT_PUBLIC_KEYS: expected kid=path, got '%.80s'", a);
            return -EINVAL;
        }
        *eq = '\0';
        char *end = eq + 1 + strlen(eq + 1);
        while (end > eq + 1 && end[-1] == ' ')
            *--end = '\0';
        int rc = add_file(ks, a, eq + 1, err, errlen);
        if (rc < 0)
            return rc;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int load_dir(jwt_keyset_t *ks, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        snprintf(err, errlen, "JWT_PUBLIC_KEYS: cannot open directory %s: %s (or use kid=path,...)", dir,
                 strerror(e));
        return -e;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n <= 4 || strcmp(de->d_name + n - 4, ".pem") != 0 || de->d_name[0] == '.')
            continue;
        char kid[64], path[4096];
        if (n - 4 >= sizeof(kid)) {
            snprintf(err, errlen, "JWT_PUBLIC_KEYS: key file name too long: %s", de->d_name);
            rc = -EINVAL;
            break;
        }
        snprintf(kid, sizeof(kid), "%.*s", (int)(n - 4), de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if ((rc = add_file(ks, kid, path, err, errlen)) < 0)
            break;
    }
    closedir(d);
    return rc;
}

int jwt_keyset_new(const char *hs_secret, const char *public_keys, jwt_keyset_t **ret, char *err,
                   size_t errlen)
{
    jwt_keyset_t *ks = calloc(1, sizeof(*ks));
    if (!ks)
        return -ENOMEM;
    int rc = 0;
    if (hs_secret && *hs_secret) {
        ks->hs_len = strlen(hs_secret);
        ks->hs = malloc(ks->hs_len);
        if (!ks->hs) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(ks->hs, hs_secret, ks->hs_len);
    }
    if (public_keys && *public_keys) {
        rc = strchr(public_keys, '=') ? load_list(ks, public_keys, err, errlen)
                                      : load_dir(ks, public_keys, err, errlen);
        if (rc < 0)
            goto fail;
    }
    *ret = ks;
    return 0;
fail:
    jwt_keyset_free(ks);
    return rc;
}

size_t jwt_keyset_count(const jwt_keyset_t *ks)
{
    return ks ? ks->n + (ks->hs ? 1 : 0) : 0;
}

void jwt_keyset_free(jwt_keyset_t *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        EVP_PKEY_free(ks->keys[i].pkey);
    if (ks->hs) {
        OPENSSL_cleanse(ks->hs, ks->hs_len);
        free(ks->hs);
    }
    free(ks);
}

/* ---------- verification ---------- */

#define FAIL(code, ...)                                                                                      \
    do {                                                                                                     \
        if (err && errlen)                                                                                   \
            snprintf(err, errlen, __VA_ARGS__);                                                              \
        rc = (code);                                                                                         \
        goto out;                                                                                            \
    } while (0)

static json_t *decode_json(const char *s, size_t n, size_t cap)
{
    unsigned char *buf = malloc(cap);
    if (!buf)
        return NULL;
    int len = jwt_b64url_decode(s, n, buf, cap);
    json_t *j = NULL;
    if (len > 0)
        j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static bool verify_es256(EVP_PKEY *pkey, const unsigned char *sig, size_t siglen, const char *data, size_t n)
{
    if (siglen != 64)
        return false;
    bool ok = false;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int dl = i2d_ECDSA_SIG(es, &der);
    md = EVP_MD_CTX_new();
    if (dl <= 0 || !md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
        goto out;
    ok = EVP_DigestVerify(md, der, (size_t)dl, (const unsigned char *)data, n) == 1;
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok;
}

static bool verify_rs256(EVP_PKEY *pkey, const unsigned char *sig, size_t siglen, const char *data, size_t n)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
              EVP_DigestVerify(md, sig, siglen, (const unsigned char *)data, n) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static bool verify_hs256(const unsigned char *key, size_t keylen, const unsigned char *sig, size_t siglen,
                         const char *data, size_t n)
{
    unsigned char mac[32];
    if (siglen != sizeof(mac) || jwt_hmac_sha256(key, keylen, data, n, mac) < 0)
        return false;
    return CRYPTO_memcmp(mac, sig, sizeof(mac)) == 0;
}

static int number_claim(json_t *payload, const char *name, bool required, int64_t *ret)
{
    json_t *v = json_object_get(payload, name);
    if (!v)
        return required ? -ENOENT : 1;
    if (!json_is_number(v))
        return -EINVAL;
    double d = json_number_value(v);
    if (d < 0 || d > 1e13)
        return -EINVAL;
    *ret = (int64_t)d;
    return 0;
}

static unsigned roles_from(json_t *v)
{
    unsigned mask = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *it;
        json_array_foreach(v, i, it)
        {
            if (i >= 64)
                break;
            if (json_is_string(it))
                mask |= roles_bit(json_string_value(it));
        }
    } else if (json_is_string(v)) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", json_string_value(v));
        char *save = NULL;
        for (char *t = strtok_r(buf, " ,", &save); t; t = strtok_r(NULL, " ,", &save))
            mask |= roles_bit(t);
    }
    return mask;
}

static json_t *claim_path(json_t *obj, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path ? path : "roles");
    char *save = NULL;
    json_t *cur = obj;
    for (char *t = strtok_r(buf, ".", &save); t && cur; t = strtok_r(NULL, ".", &save))
        cur = json_is_object(cur) ? json_object_get(cur, t) : NULL;
    return cur;
}

int jwt_verify(const jwt_keyset_t *ks, const char *token, size_t len, const jwt_verify_opts_t *opts,
               jwt_claims_t *ret, char *err, size_t errlen)
{
    int rc = 0;
    json_t *header = NULL, *payload = NULL;
    unsigned char sig[SIG_CAP];
    if (err && errlen)
        err[0] = '\0';
    memset(ret, 0, sizeof(*ret));
    if (!ks || len == 0 || len > JWT_MAX_TOKEN)
        FAIL(-EBADMSG, "token empty or longer than %d bytes", JWT_MAX_TOKEN);
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        FAIL(-EBADMSG, "not a JWS compact token (three dot-separated parts)");
    header = decode_json(token, (size_t)(d1 - token), HEADER_CAP);
    if (!header)
        FAIL(-EBADMSG, "malformed token header");
    const char *alg_s = json_string_value(json_object_get(header, "alg"));
    if (!alg_s)
        FAIL(-EBADMSG, "token header has no alg");
    if (json_object_get(header, "crit"))
        FAIL(-EPERM, "critical header extensions are not supported");
    enum alg alg = strcmp(alg_s, "HS256") == 0   ? ALG_HS256
                   : strcmp(alg_s, "RS256") == 0 ? ALG_RS256
                   : strcmp(alg_s, "ES256") == 0 ? ALG_ES256
                                                 : 0;
    if (!alg)
        FAIL(-EPERM, "algorithm not accepted");
    json_t *kidj = json_object_get(header, "kid");
    if (kidj && !json_is_string(kidj))
        FAIL(-EBADMSG, "kid must be a string");
    const char *kid = json_string_value(kidj);

    /* Choose the key first; its type decides the algorithm. */
    const pubkey_t *key = NULL;
    bool use_hs = false;
    if (kid) {
        for (size_t i = 0; i < ks->n && !key; i++)
            if (strcmp(ks->keys[i].kid, kid) == 0)
                key = &ks->keys[i];
        if (!key)
            FAIL(-ENOKEY, "unknown key id");
    } else if (alg == ALG_HS256) {
        if (!ks->hs)
            FAIL(-ENOKEY, "no HS256 key configured");
        use_hs = true;
    } else {
        size_t found = 0;
        for (size_t i = 0; i < ks->n; i++)
            if (ks->keys[i].alg == alg) {
                key = &ks->keys[i];
                found++;
            }
        if (found != 1)
            FAIL(-ENOKEY, found ? "several keys: the token needs a kid" : "no key for this algorithm");
    }
    if ((use_hs ? ALG_HS256 : key->alg) != alg)
        FAIL(-EPERM, "algorithm does not match the key");

    int siglen = jwt_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof(sig));
    if (siglen <= 0)
        FAIL(-EBADMSG, "malformed signature");
    size_t signed_len = (size_t)(d2 - token);
    bool ok = use_hs             ? verify_hs256(ks->hs, ks->hs_len, sig, (size_t)siglen, token, signed_len)
              : alg == ALG_RS256 ? verify_rs256(key->pkey, sig, (size_t)siglen, token, signed_len)
                                 : verify_es256(key->pkey, sig, (size_t)siglen, token, signed_len);
    if (!ok)
        FAIL(-EACCES, "bad signature");
    ret->signed_ok = true;

    payload = decode_json(d1 + 1, (size_t)(d2 - d1 - 1), PAYLOAD_CAP);
    if (!payload)
        FAIL(-EBADMSG, "malformed token payload");
    const char *sub = json_string_value(json_object_get(payload, "sub"));
    if (!sub || !*sub || strlen(sub) >= sizeof(ret->sub))
        FAIL(-EBADMSG, "sub claim missing or too long");
    /* known from here on, also for a refusal below (expired, wrong issuer...): a genuine
     * token's subject is what its AUTH_FAILURE record names (review58 #7) */
    snprintf(ret->sub, sizeof(ret->sub), "%s", sub);
    snprintf(ret->kid, sizeof(ret->kid), "%s", key ? key->kid : "");
    int64_t exp = 0, nbf = 0;
    if (number_claim(payload, "exp", true, &exp) != 0)
        FAIL(-EBADMSG, "exp claim missing or not a number");
    int nr = number_claim(payload, "nbf", false, &nbf);
    if (nr < 0)
        FAIL(-EBADMSG, "nbf claim not a number");
    if (exp + opts->leeway_s <= opts->now_s)
        FAIL(-EKEYEXPIRED, "token expired");
    if (nr == 0 && nbf - opts->leeway_s > opts->now_s)
        FAIL(-EAGAIN, "token not yet valid");
    if (opts->issuer) {
        const char *iss = json_string_value(json_object_get(payload, "iss"));
        if (!iss || strcmp(iss, opts->issuer) != 0)
            FAIL(-EKEYREJECTED, "wrong issuer");
    }
    if (opts->audience) {
        json_t *aud = json_object_get(payload, "aud");
        bool match = json_is_string(aud) && strcmp(json_string_value(aud), opts->audience) == 0;
        if (json_is_array(aud)) {
            size_t i;
            json_t *it;
            json_array_foreach(aud, i, it) if (json_is_string(it) &&
                                               strcmp(json_string_value(it), opts->audience) == 0) match =
                true;
        }
        if (!match)
            FAIL(-EKEYREJECTED, "wrong audience");
    }
    ret->roles = roles_from(claim_path(payload, opts->roles_claim));
    ret->exp = exp;
    snprintf(ret->alg, sizeof(ret->alg), "%s", alg_s);
out:
    json_decref(header);
    json_decref(payload);
    return rc;
}

int jwt_sign_hs256(const void *key, size_t keylen, const char *header_json, const char *payload_json,
                   char *out, size_t outlen)
{
    size_t hl = strlen(header_json), pl = strlen(payload_json);
    if ((hl + 2) / 3 * 4 + (pl + 2) / 3 * 4 + 43 + 3 > outlen)
        return -ENOSPC;
    size_t o = jwt_b64url_encode(header_json, hl, out);
    out[o++] = '.';
    o += jwt_b64url_encode(payload_json, pl, out + o);
    unsigned char mac[32];
    if (jwt_hmac_sha256(key, keylen, out, o, mac) < 0)
        return -EIO;
    out[o++] = '.';
    jwt_b64url_encode(mac, sizeof(mac), out + o);
    return 0;
}
