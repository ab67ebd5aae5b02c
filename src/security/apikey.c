/* SPDX-License-Identifier: Apache-2.0 */
/* API key generation, parsing and HMAC; see apikey.h. The salt keys an HMAC rather than
 * being prepended to a hash, so a leaked table cannot be brute-forced without the salt,
 * and the secret's 256 random bits make offline guessing pointless anyway. */
#include "security/apikey.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "security/jwt.h"

static const char hexd[] = "0123456789abcdef";

int apikey_generate(char ret_id[APIKEY_ID_SIZE], char ret_secret[APIKEY_SECRET_SIZE],
                    char ret_key[APIKEY_KEY_SIZE])
{
    unsigned char idb[APIKEY_ID_CHARS / 2], sec[32];
    if (util_random(idb, sizeof(idb)) < 0 || util_random(sec, sizeof(sec)) < 0)
        return -EIO;
    for (size_t i = 0; i < sizeof(idb); i++) {
        ret_id[2 * i] = hexd[idb[i] >> 4];
        ret_id[2 * i + 1] = hexd[idb[i] & 15];
    }
    ret_id[APIKEY_ID_CHARS] = '\0';
    jwt_b64url_encode(sec, sizeof(sec), ret_secret);
    OPENSSL_cleanse(sec, sizeof(sec));
    snprintf(ret_key, APIKEY_KEY_SIZE, "%s%s_%s", APIKEY_PREFIX, ret_id, ret_secret);
    return 0;
}

bool apikey_valid_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= APIKEY_ID_CHARS || !((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == APIKEY_ID_CHARS;
}

int apikey_parse(const char *key, size_t n, char ret_id[APIKEY_ID_SIZE], char ret_secret[APIKEY_SECRET_SIZE])
{
    const size_t pl = strlen(APIKEY_PREFIX);
    if (n != APIKEY_KEY_SIZE - 1 || memcmp(key, APIKEY_PREFIX, pl) != 0 || key[pl + APIKEY_ID_CHARS] != '_')
        return -EINVAL;
    char id[APIKEY_ID_SIZE];
    memcpy(id, key + pl, APIKEY_ID_CHARS);
    id[APIKEY_ID_CHARS] = '\0';
    if (!apikey_valid_id(id))
        return -EINVAL;
    const char *sec = key + pl + APIKEY_ID_CHARS + 1;
    unsigned char raw[32];
    if (jwt_b64url_decode(sec, APIKEY_SECRET_CHARS, raw, sizeof(raw)) != 32)
        return -EINVAL;
    OPENSSL_cleanse(raw, sizeof(raw));
    memcpy(ret_id, id, APIKEY_ID_SIZE);
    memcpy(ret_secret, sec, APIKEY_SECRET_CHARS);
    ret_secret[APIKEY_SECRET_CHARS] = '\0';
    return 0;
}

static void hmac_raw(const char *salt, const char *secret, unsigned char mac[32])
{
    const char *k = salt ? salt : "";
    if (jwt_hmac_sha256(k, strlen(k), secret, strlen(secret), mac) < 0)
        util_random(mac, 32); /* OpenSSL failure: a value that matches nothing */
}

void apikey_hmac_hex(const char *salt, const char *secret, char ret_hex[APIKEY_HMAC_HEX_SIZE])
{
    unsigned char mac[32];
    hmac_raw(salt, secret, mac);
    for (size_t i = 0; i < 32; i++) {
        ret_hex[2 * i] = hexd[mac[i] >> 4];
        ret_hex[2 * i + 1] = hexd[mac[i] & 15];
    }
    ret_hex[64] = '\0';
}

static int unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool apikey_secret_matches(const char *salt, const char *secret, const char *stored_hex)
{
    unsigned char want[32], mac[32];
    if (!stored_hex || strlen(stored_hex) != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        int hi = unhex(stored_hex[2 * i]), lo = unhex(stored_hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    hmac_raw(salt, secret, mac);
    bool eq = CRYPTO_memcmp(want, mac, sizeof(mac)) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return eq;
}
