/* SPDX-License-Identifier: Apache-2.0 */
/* Server TLS context; see tls.h. Renegotiation, compression and session tickets are off
 * (tickets would need key rotation across replicas; sessions are cached per process). */
#include "security/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "monitor/metrics.h"

static void ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "unknown error");
    ERR_clear_error();
}

int tls_ctx_new(const char *cert_path, const char *key_path, const char *min_version, SSL_CTX **ret,
                char *err, size_t errlen)
{
    char why[256];
    if (!cert_path || !key_path) {
        snprintf(err, errlen, "TLS_CERT_PATH and TLS_KEY_PATH are required when TLS_ENABLED=true");
        return -EINVAL;
    }
    int floor = TLS1_2_VERSION;
    if (min_version && strcmp(min_version, "1.3") == 0)
        floor = TLS1_3_VERSION;
    else if (min_version && strcmp(min_version, "1.2") != 0) {
        snprintf(err, errlen, "TLS_MIN_VERSION: expected 1.2 or 1.3");
        return -EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create the TLS context");
        return -ENOMEM;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, floor) || !SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) ||
        !SSL_CTX_set_ciphersuites(
            ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256")) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "TLS settings refused: %s", why);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"aimedres", 8);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "TLS_CERT_PATH: cannot load %s: %s", cert_path, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "TLS_KEY_PATH: cannot load %s: %s", key_path, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "TLS_KEY_PATH: the key does not match the certificate in TLS_CERT_PATH");
        goto fail;
    }
    *ret = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -EINVAL;
}

void tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

static int asn1_epoch(const ASN1_TIME *t, int64_t *ret)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -EINVAL;
    *ret = (int64_t)timegm(&tm);
    return 0;
}

int tls_ctx_validity(SSL_CTX *ctx, int64_t *ret_not_before_s, int64_t *ret_not_after_s)
{
    X509 *leaf = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
    if (!leaf || asn1_epoch(X509_get0_notBefore(leaf), ret_not_before_s) < 0 ||
        asn1_epoch(X509_get0_notAfter(leaf), ret_not_after_s) < 0)
        return -EINVAL;
    return 0;
}

tls_validity_t tls_ctx_valid_at(SSL_CTX *ctx, int64_t now_s, int64_t *ret_not_before_s,
                                int64_t *ret_not_after_s)
{
    if (tls_ctx_validity(ctx, ret_not_before_s, ret_not_after_s) < 0)
        return TLS_DATES_UNKNOWN;
    return now_s < *ret_not_before_s ? TLS_NOT_YET : now_s >= *ret_not_after_s ? TLS_EXPIRED : TLS_VALID;
}

int tls_files_stamp(const char *cert_path, const char *key_path, tls_files_stamp_t *ret)
{
    const char *paths[2] = {cert_path, key_path};
    memset(ret, 0, sizeof(*ret));
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (!paths[i] || stat(paths[i], &st) < 0)
            return paths[i] ? -errno : -EINVAL;
        uint64_t *v = ret->v + 4 * i;
        v[0] = (uint64_t)st.st_dev;
        v[1] = (uint64_t)st.st_ino;
        v[2] = (uint64_t)st.st_size;
        v[3] = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    }
    return 0;
}

static _Atomic int64_t served_not_after_s;

static void tls_collector(FILE *out, void *arg)
{
    (void)arg;
    fprintf(out,
            "# HELP tls_certificate_expiry_timestamp_seconds When the certificate the server presents "
            "expires (notAfter).\n"
            "# TYPE tls_certificate_expiry_timestamp_seconds gauge\n"
            "tls_certificate_expiry_timestamp_seconds %lld\n",
            (long long)atomic_load(&served_not_after_s));
}

void tls_metrics_register(int64_t not_after_s)
{
    atomic_store(&served_not_after_s, not_after_s);
    metrics_register_collector(tls_collector, NULL);
}

void tls_metrics_set_expiry(int64_t not_after_s)
{
    atomic_store(&served_not_after_s, not_after_s);
}
