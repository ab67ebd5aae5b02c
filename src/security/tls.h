/* SPDX-License-Identifier: Apache-2.0 */
/* Native TLS for the HTTP server (TLS_ENABLED): one server SSL_CTX built from
 * TLS_CERT_PATH / TLS_KEY_PATH with TLS_MIN_VERSION (1.2 or 1.3) and modern ciphers only
 * (TLS 1.2: ECDHE key exchange with AEAD ciphers; TLS 1.3: its AEAD suites). The server
 * wraps every accepted connection in an SSL bufferevent sharing this context. */
#ifndef AIMEDRES_SECURITY_TLS_H
#define AIMEDRES_SECURITY_TLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ssl_ctx_st SSL_CTX;

/* The TLS 1.2 cipher list we allow (OpenSSL names). */
#define TLS_CIPHERS_12                                                                                       \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"               \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Builds the server context: loads the certificate chain and the private key, checks they
 * match, sets protocol floor ("1.2" or "1.3"; NULL = 1.2) and ciphers. -errno with the
 * reason in err. Caller frees with tls_ctx_free. */
int tls_ctx_new(const char *cert_path, const char *key_path, const char *min_version, SSL_CTX **ret,
                char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/* The validity window of the context's certificate (the leaf), in Unix seconds: 0, or
 * -EINVAL when it has none or its dates do not parse. */
int tls_ctx_validity(SSL_CTX *ctx, int64_t *ret_not_before_s, int64_t *ret_not_after_s);
/* Whether clients take the certificate at now_s: TLS_VALID, TLS_NOT_YET (before notBefore),
 * TLS_EXPIRED, or TLS_DATES_UNKNOWN; the dates in *ret_* when known. */
typedef enum { TLS_VALID, TLS_NOT_YET, TLS_EXPIRED, TLS_DATES_UNKNOWN } tls_validity_t;
tls_validity_t tls_ctx_valid_at(SSL_CTX *ctx, int64_t now_s, int64_t *ret_not_before_s,
                                int64_t *ret_not_after_s);

/* What identifies the certificate and key files' contents without reading them (device,
 * inode, size, modification time, following symlinks: a Kubernetes secret or certbot's
 * renewal replaces the files or their links). Two equal stamps: nothing changed. */
typedef struct tls_files_stamp {
    uint64_t v[8];
} tls_files_stamp_t;
/* 0, or -errno when either file cannot be examined. */
int tls_files_stamp(const char *cert_path, const char *key_path, tls_files_stamp_t *ret);

/* Exports tls_certificate_expiry_timestamp_seconds (the served certificate's notAfter) on
 * /metrics; tls_metrics_set_expiry updates it when the certificate is replaced. */
void tls_metrics_register(int64_t not_after_s);
void tls_metrics_set_expiry(int64_t not_after_s);

#endif
