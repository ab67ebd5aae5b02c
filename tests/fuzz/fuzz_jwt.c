/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: JWT parsing and verification (src/security/jwt.h). The first input byte
 * picks the mode: 0..1 verify the rest as a raw token against an HS256 key set; 2 takes
 * "header JSON \n payload JSON", signs it with the key (so the fuzzer reaches the claim
 * checks behind the signature) and verifies it; 3 checks the strict base64url decoder and
 * that encode/decode round-trips. Any crash, overflow, UB or a contract break aborts. */
#include <errno.h>
#include <stdio.h>

#include "fuzz_common.h"
#include "security/jwt.h"

#define SECRET "fuzz-hs256-secret-0123456789abcdef"

static jwt_keyset_t *keys;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    if (jwt_keyset_new(SECRET, NULL, &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_jwt: key set: %s\n", err);
        abort();
    }
    return 0;
}

static void verify(const char *tok, size_t len)
{
    jwt_verify_opts_t o = {.issuer = "https://idp.example",
                           .audience = "aimedres",
                           .roles_claim = "realm_access.roles",
                           .leeway_s = 30,
                           .now_s = 1800000000};
    jwt_claims_t c;
    char err[256];
    int rc = jwt_verify(keys, tok, len, &o, &c, err, sizeof(err));
    if (rc == 0) {
        if (strnlen(c.sub, sizeof(c.sub)) == sizeof(c.sub) || c.sub[0] == '\0')
            abort(); /* a verified token always names its subject */
        if (c.exp + o.leeway_s <= o.now_s)
            abort(); /* expired tokens never verify */
    } else if (rc != -EBADMSG && rc != -EPERM && rc != -ENOKEY && rc != -EACCES && rc != -EKEYEXPIRED &&
               rc != -EAGAIN && rc != -EKEYREJECTED) {
        abort(); /* undocumented result */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 4;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (mode <= 1) {
        char *tok = malloc(n ? n : 1); /* exact size, not NUL-terminated: the API takes a length */
        if (!tok)
            abort();
        if (n)
            memcpy(tok, p, n);
        verify(tok, n);
        free(tok);
    } else if (mode == 2) {
        char *s = fuzz_cstr((const uint8_t *)p, n);
        char *nl = strchr(s, '\n');
        const char *payload = "{}";
        if (nl) {
            *nl = '\0';
            payload = nl + 1;
        }
        if (strlen(s) < 2048 && strlen(payload) < 4096) {
            char *tok = malloc(JWT_MAX_TOKEN);
            if (!tok)
                abort();
            if (jwt_sign_hs256(SECRET, strlen(SECRET), s, payload, tok, JWT_MAX_TOKEN) == 0)
                verify(tok, strlen(tok));
            free(tok);
        }
        free(s);
    } else {
        unsigned char out[4096];
        int dl = jwt_b64url_decode(p, n, out, sizeof(out));
        if (dl >= 0) {
            if ((size_t)dl > sizeof(out))
                abort();
            char *enc = malloc(4 * ((size_t)dl / 3 + 1) + 1);
            if (!enc)
                abort();
            size_t el = jwt_b64url_encode(out, (size_t)dl, enc);
            if (el != n || memcmp(enc, p, n) != 0)
                abort(); /* strict decoding: the only accepted form is the canonical one */
            free(enc);
        } else if (dl != -EINVAL && dl != -ENOSPC) {
            abort();
        }
    }
    return 0;
}
