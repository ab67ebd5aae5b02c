/* SPDX-License-Identifier: Apache-2.0 */
/* JSON Web Tokens (RFC 7519) verified with OpenSSL directly: HS256 under JWT_SECRET_KEY,
 * RS256 and ES256 under configured public keys. The algorithm is pinned by the key: the
 * key is chosen first (by kid, or the single key of the header's algorithm when there is
 * no kid), then the header's alg must be the key's algorithm, so "none" and algorithm
 * confusion (an HS256 token whose HMAC key is an RSA public key PEM) can never verify.
 * Also base64url (RFC 4648 §5) without padding, decoded strictly. */
#ifndef AIMEDRES_SECURITY_JWT_H
#define AIMEDRES_SECURITY_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_TOKEN 8192 /* bytes; longer tokens are refused before any decoding */

/* Encodes n bytes as unpadded base64url into out (room for 4*ceil(n/3)+1); returns length. */
size_t jwt_b64url_encode(const void *data, size_t n, char *out);
/* Strict decode: only [A-Za-z0-9_-], no padding, no stray bits. Returns the decoded
 * length, or -EINVAL (malformed) / -ENOSPC (over cap). */
int jwt_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap);

/* HMAC-SHA256 with the MAC implementation fetched once per process (OpenSSL 3's one-shot
 * HMAC() looks the algorithm up on every call, which costs more than the MAC itself).
 * Thread-safe. 0, or -EIO if OpenSSL fails. */
int jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n, unsigned char out[32]);

typedef struct jwt_keyset jwt_keyset_t;

/* Creates a key set. hs_secret (may be NULL) is the HS256 key, used for tokens without a
 * kid. public_keys (may be NULL) is "kid=path[,kid=path...]" or a directory whose *.pem
 * files are keys named by their file name without .pem. Each PEM must hold an RSA (>= 2048
 * bits; RS256) or P-256 EC (ES256) public key. On error returns -errno with the reason in
 * err. Caller frees with jwt_keyset_free. */
int jwt_keyset_new(const char *hs_secret, const char *public_keys, jwt_keyset_t **ret, char *err,
                   size_t errlen);
/* Adds one public key from PEM text under kid (also used by tests). */
int jwt_keyset_add_pem(jwt_keyset_t *ks, const char *kid, const char *pem, size_t len, char *err,
                       size_t errlen);
size_t jwt_keyset_count(const jwt_keyset_t *ks); /* public keys + the HS256 secret */
void jwt_keyset_free(jwt_keyset_t *ks);

typedef struct jwt_verify_opts {
    const char *issuer;      /* required "iss" when not NULL */
    const char *audience;    /* required in "aud" (string or array) when not NULL */
    const char *roles_claim; /* claim name, dots for nesting ("realm_access.roles") */
    int leeway_s;            /* clock skew allowed on exp and nbf */
    int64_t now_s;           /* wall clock, seconds since the epoch */
} jwt_verify_opts_t;

typedef struct jwt_claims {
    char sub[128];  /* "sub" (required) */
    unsigned roles; /* role bits (security/roles.h) of the known names in the roles claim */
    int64_t exp;    /* "exp" (required) */
    char kid[64];   /* the key that verified it ("" = the HS256 secret) */
    char alg[8];    /* HS256 | RS256 | ES256 */
    bool signed_ok; /* the signature verified: set even when a later check (exp, nbf, iss,
                     * aud, claims) refuses the token, which then is genuine but not valid */
} jwt_claims_t;

/* Verifies token (len bytes, need not be NUL-terminated). Returns 0 and fills *ret, or:
 * -EBADMSG malformed (structure, base64url, JSON, missing/mistyped claims, size caps);
 * -EPERM   algorithm refused (none, unknown, or not the key's algorithm; crit headers);
 * -ENOKEY  no key for the token (unknown kid, no HS256 secret configured);
 * -EACCES  bad signature;
 * -EKEYEXPIRED expired (exp + leeway <= now);
 * -EAGAIN  not yet valid (nbf - leeway > now);
 * -EKEYREJECTED wrong issuer or audience.
 * err (may be NULL) gets a short reason safe to show the client (never key material). */
int jwt_verify(const jwt_keyset_t *ks, const char *token, size_t len, const jwt_verify_opts_t *opts,
               jwt_claims_t *ret, char *err, size_t errlen);

/* Signs an HS256 token over header and payload JSON text (for tests and tooling); out
 * must hold JWT_MAX_TOKEN bytes. 0 or -ENOSPC. */
int jwt_sign_hs256(const void *key, size_t keylen, const char *header_json, const char *payload_json,
                   char *out, size_t outlen);

#endif
