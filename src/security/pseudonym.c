/* SPDX-License-Identifier: Apache-2.0 */
/* Patient pseudonyms (HMAC-SHA256, truncated to 120 bits); see pseudonym.h. The key is
 * derived from SECRET_KEY with a fixed label so that SECRET_KEY itself is never used
 * directly as an HMAC key for different purposes. */
#include "security/pseudonym.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "common/util.h"

static unsigned char key[32];

int pseudonym_init(const char *secret_key)
{
    if (secret_key && *secret_key) {
        static const char label[] = "aimedres/patient-pseudonym/v1";
        unsigned int n = sizeof(key);
        if (!HMAC(EVP_sha256(), secret_key, (int)strlen(secret_key), (const unsigned char *)label,
                  sizeof(label) - 1, key, &n))
            return -1;
        return 0;
    }
    return util_random(key, sizeof(key));
}

void pseudonym_of(const char *id, size_t len, char out[PSEUDONYM_LEN])
{
    unsigned char mac[32];
    unsigned int n = sizeof(mac);
    static const char hex[] = "0123456789abcdef";
    HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)id, len, mac, &n);
    out[0] = 'p';
    out[1] = '_';
    for (size_t i = 0; i < 15; i++) {
        out[2 + 2 * i] = hex[mac[i] >> 4];
        out[3 + 2 * i] = hex[mac[i] & 15];
    }
    out[32] = '\0';
}
