/* SPDX-License-Identifier: Apache-2.0 */
/* API key format and secret hashing. A key reads "amr_<id>_<secret>": <id> is 16 lowercase
 * hex characters (public; the store's key_id, shown by `apikey list`), <secret> the 43
 * base64url characters of 32 random bytes. Only HMAC-SHA256(API_KEY_SALT, secret) is
 * stored, as hex; comparison is constant-time. */
#ifndef AIMEDRES_SECURITY_APIKEY_H
#define AIMEDRES_SECURITY_APIKEY_H

#include <stdbool.h>
#include <stddef.h>

#define APIKEY_PREFIX "amr_"
#define APIKEY_ID_CHARS 16
#define APIKEY_SECRET_CHARS 43
#define APIKEY_ID_SIZE (APIKEY_ID_CHARS + 1)
#define APIKEY_SECRET_SIZE (APIKEY_SECRET_CHARS + 1)
#define APIKEY_KEY_SIZE (4 + APIKEY_ID_CHARS + 1 + APIKEY_SECRET_CHARS + 1) /* 65 */
#define APIKEY_HMAC_HEX_SIZE 65

/* Generates a fresh key: ret_id gets the id, ret_key the whole key. 0 or -EIO. */
int apikey_generate(char ret_id[APIKEY_ID_SIZE], char ret_secret[APIKEY_SECRET_SIZE],
                    char ret_key[APIKEY_KEY_SIZE]);
/* Splits a presented key (n bytes) into id and secret, checking the exact format.
 * 0 or -EINVAL. */
int apikey_parse(const char *key, size_t n, char ret_id[APIKEY_ID_SIZE], char ret_secret[APIKEY_SECRET_SIZE]);
/* True if s is a well-formed key id (16 lowercase hex). */
bool apikey_valid_id(const char *s);
/* HMAC-SHA256 under salt (NULL = empty) of secret, as lowercase hex. */
void apikey_hmac_hex(const char *salt, const char *secret, char ret_hex[APIKEY_HMAC_HEX_SIZE]);
/* Constant-time check that secret's HMAC under salt equals stored_hex (64 hex chars). */
bool apikey_secret_matches(const char *salt, const char *secret, const char *stored_hex);

#endif
