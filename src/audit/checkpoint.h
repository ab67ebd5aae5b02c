/* SPDX-License-Identifier: Apache-2.0 */
/* Signed checkpoints: {seq, hash, ts, sig} lines in <log>.checkpoints, an Ed25519 signature
 * (OpenSSL EVP_PKEY_ED25519) over the chain position. Whoever rewrites or truncates the log
 * without the signing key cannot produce a matching checkpoint. */
#ifndef AIMEDRES_AUDIT_CHECKPOINT_H
#define AIMEDRES_AUDIT_CHECKPOINT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Load an Ed25519 key from a PEM file (private: PKCS#8; public: SubjectPublicKeyInfo).
 * A private key also serves as a verify key. 0 or -errno/-EINVAL with the reason in err. */
int audit_ckpt_load_private(const char *path, EVP_PKEY **ret, char *err, size_t errlen);
int audit_ckpt_load_public(const char *path, EVP_PKEY **ret, char *err, size_t errlen);

/* The checkpoint line (with '\n', malloc'd) for the chain position seq/hash at ts. */
int audit_ckpt_sign(EVP_PKEY *key, uint64_t seq, const char *hash, const char *ts, char **ret_line,
                    size_t *ret_len);
/* True when ck (a parsed checkpoint line) carries a valid signature under key. */
bool audit_ckpt_verify(EVP_PKEY *key, const json_t *ck);

#endif
