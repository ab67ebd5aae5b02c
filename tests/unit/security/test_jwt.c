/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for security/jwt: strict base64url, HS256/RS256/ES256 verification with keys
 * made here by OpenSSL, and every rejection: alg none (any case), algorithm confusion (an
 * HS256 token whose HMAC key is the RSA public key PEM), alg/key mismatch, bad signature,
 * expired, not yet valid, wrong iss/aud, unknown kid, crit, size caps, malformed parts;
 * key loading from kid=path lists and directories. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "common/util.h"
#include "security/jwt.h"
#include "security/roles.h"

#define HS_SECRET "an-hs256-secret-that-is-long-enough-0123456789"
#define NOW 1800000000LL

static EVP_PKEY *rsa_key, *ec_key, *rsa_small;
static char rsa_pem[4096], ec_pem[1024];
static char tmpdir[4096];

static void pub_pem(EVP_PKEY *k, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0 && (size_t)n < cap);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
}

static int setup(void **state)
{
    (void)state;
    rsa_key = EVP_RSA_gen(2048);
    ec_key = EVP_EC_gen("P-256");
    rsa_small = EVP_RSA_gen(1024);
    if (!rsa_key || !ec_key || !rsa_small)
        return -1;
    pub_pem(rsa_key, rsa_pem, sizeof(rsa_pem));
    pub_pem(ec_key, ec_pem, sizeof(ec_pem));
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (base && *base) {
        if (util_mkdir_p(base, 0700) < 0)
            return -1;
        snprintf(tmpdir, sizeof(tmpdir), "%s/jwt.XXXXXX", base);
    } else {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/aimedres-jwt.XXXXXX");
    }
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(rsa_small);
    util_rmtree(tmpdir);
    return 0;
}

/* header.payload (base64url) into out; returns its length. */
static size_t signing_input(const char *hdr, const char *pl, char *out)
{
    size_t o = jwt_b64url_encode(hdr, strlen(hdr), out);
    out[o++] = '.';
    o += jwt_b64url_encode(pl, strlen(pl), out + o);
    return o;
}

static void sign_rs256(EVP_PKEY *k, const char *hdr, const char *pl, char *out)
{
    size_t o = signing_input(hdr, pl, out);
    unsigned char sig[512];
    size_t sl = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &sl, (unsigned char *)out, o), 1);
    EVP_MD_CTX_free(md);
    out[o++] = '.';
    jwt_b64url_encode(sig, sl, out + o);
}

/* ES256: OpenSSL signs DER; JWS wants raw r||s (32 bytes each). der=true keeps DER (wrong). */
static void sign_es256(EVP_PKEY *k, const char *hdr, const char *pl, char *out, bool der)
{
    size_t o = signing_input(hdr, pl, out);
    unsigned char sig[128], raw[64] = {0};
    size_t sl = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &sl, (unsigned char *)out, o), 1);
    EVP_MD_CTX_free(md);
    out[o++] = '.';
    if (der) {
        jwt_b64url_encode(sig, sl, out + o);
        return;
    }
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
    assert_non_null(es);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, raw, 32);
    BN_bn2binpad(s, raw + 32, 32);
    ECDSA_SIG_free(es);
    jwt_b64url_encode(raw, sizeof(raw), out + o);
}

static void sign_hs(const char *key, const char *hdr, const char *pl, char *out)
{
    assert_int_equal(jwt_sign_hs256(key, strlen(key), hdr, pl, out, JWT_MAX_TOKEN), 0);
}

static jwt_keyset_t *keyset(bool with_hs)
{
    jwt_keyset_t *ks = NULL;
    char err[256];
    assert_int_equal(jwt_keyset_new(with_hs ? HS_SECRET : NULL, NULL, &ks, err, sizeof(err)), 0);
    assert_int_equal(jwt_keyset_add_pem(ks, "rsa1", rsa_pem, strlen(rsa_pem), err, sizeof(err)), 0);
    assert_int_equal(jwt_keyset_add_pem(ks, "ec1", ec_pem, strlen(ec_pem), err, sizeof(err)), 0);
    return ks;
}

static const jwt_verify_opts_t opts = {NULL, NULL, "roles", 30, NOW};

static int verify(const jwt_keyset_t *ks, const char *tok, const jwt_verify_opts_t *o, jwt_claims_t *c)
{
    char err[128];
    jwt_claims_t tmp;
    return jwt_verify(ks, tok, strlen(tok), o ? o : &opts, c ? c : &tmp, err, sizeof(err));
}

#define PAYLOAD "{\"sub\":\"dr.house\",\"exp\":1800000600,\"roles\":[\"clinician\",\"unknown\"]}"

static void test_b64url_strict(void **state)
{
    (void)state;
    unsigned char out[16];
    assert_int_equal(jwt_b64url_decode("QQ", 2, out, sizeof(out)), 1);
    assert_int_equal(out[0], 'A');
    assert_int_equal(jwt_b64url_decode("QR", 2, out, sizeof(out)), -EINVAL);   /* stray bits */
    assert_int_equal(jwt_b64url_decode("QQ==", 4, out, sizeof(out)), -EINVAL); /* padding */
    assert_int_equal(jwt_b64url_decode("Q", 1, out, sizeof(out)), -EINVAL);    /* impossible length */
    assert_int_equal(jwt_b64url_decode("a+b/", 4, out, sizeof(out)), -EINVAL); /* standard alphabet */
    assert_int_equal(jwt_b64url_decode("a-b_", 4, out, sizeof(out)), 3);
    assert_int_equal(jwt_b64url_decode("AAAAAAAA", 8, out, 5), -ENOSPC);
    char enc[64];
    unsigned char all[40];
    for (int i = 0; i < 40; i++)
        all[i] = (unsigned char)(i * 37 + 250);
    for (size_t n = 0; n <= 40; n++) {
        size_t el = jwt_b64url_encode(all, n, enc);
        unsigned char back[40];
        assert_int_equal(jwt_b64url_decode(enc, el, back, sizeof(back)), (int)n);
        assert_memory_equal(back, all, n);
    }
}

static void test_valid_tokens(void **state)
{
    (void)state;
    jwt_keyset_t *ks = keyset(true);
    char tok[JWT_MAX_TOKEN];
    jwt_claims_t c;
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, &c), 0);
    assert_string_equal(c.sub, "dr.house");
    assert_int_equal(c.roles, ROLE_CLINICIAN);
    assert_string_equal(c.alg, "HS256");
    assert_string_equal(c.kid, "");

    sign_rs256(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, &c), 0);
    assert_string_equal(c.kid, "rsa1");
    sign_rs256(rsa_key, "{\"alg\":\"RS256\"}", PAYLOAD, tok); /* the only RSA key: kid optional */
    assert_int_equal(verify(ks, tok, NULL, &c), 0);

    sign_es256(ec_key, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", PAYLOAD, tok, false);
    assert_int_equal(verify(ks, tok, NULL, &c), 0);
    assert_string_equal(c.alg, "ES256");

    /* roles as a space-separated string, and from a nested claim */
    sign_hs(
        HS_SECRET, "{\"alg\":\"HS256\"}",
        "{\"sub\":\"a\",\"exp\":1800000600,\"scope\":\"monitor auditor\",\"realm\":{\"roles\":[\"admin\"]}}",
        tok);
    jwt_verify_opts_t o = opts;
    o.roles_claim = "scope";
    assert_int_equal(verify(ks, tok, &o, &c), 0);
    assert_int_equal(c.roles, ROLE_MONITOR | ROLE_AUDITOR);
    o.roles_claim = "realm.roles";
    assert_int_equal(verify(ks, tok, &o, &c), 0);
    assert_int_equal(c.roles, ROLE_ADMIN);
    jwt_keyset_free(ks);
}

static void test_alg_none(void **state)
{
    (void)state;
    jwt_keyset_t *ks = keyset(true);
    const char *variants[] = {"none", "None", "NONE", "nOnE", "HS512", "RS384", "PS256", "EdDSA", ""};
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        char hdr[64], tok[JWT_MAX_TOKEN];
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\"}", variants[i]);
        size_t o = signing_input(hdr, PAYLOAD, tok);
        strcpy(tok + o, "."); /* unsigned: empty signature */
        assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM);
        /* ... and with a valid HS256 signature attached, still refused for its alg */
        sign_hs(HS_SECRET, hdr, PAYLOAD, tok);
        assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM);
    }
    /* alg missing or not a string */
    char tok[JWT_MAX_TOKEN];
    sign_hs(HS_SECRET, "{\"typ\":\"JWT\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    sign_hs(HS_SECRET, "{\"alg\":null}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    jwt_keyset_free(ks);
}

/* The classic confusion attack: the attacker knows the RSA public key and "signs" an HS256
 * token with its PEM text as the HMAC secret. */
static void test_algorithm_confusion(void **state)
{
    (void)state;
    char tok[JWT_MAX_TOKEN];
    jwt_keyset_t *ks = keyset(true);
    sign_hs(rsa_pem, "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM); /* key rsa1 is RS256 only */
    sign_hs(ec_pem, "{\"alg\":\"HS256\",\"kid\":\"ec1\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM);
    sign_hs(rsa_pem, "{\"alg\":\"HS256\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EACCES); /* checked against JWT_SECRET_KEY */
    jwt_keyset_free(ks);

    ks = keyset(false); /* no HS256 secret at all */
    sign_hs(rsa_pem, "{\"alg\":\"HS256\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -ENOKEY);
    /* the other direction: RS256 header on the EC key, ES256 on the RSA key */
    sign_rs256(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"ec1\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM);
    sign_es256(ec_key, "{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", PAYLOAD, tok, false);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM);
    jwt_keyset_free(ks);
}

static void test_bad_signatures(void **state)
{
    (void)state;
    jwt_keyset_t *ks = keyset(true);
    char tok[JWT_MAX_TOKEN];
    sign_hs("another-secret-another-secret-0000", "{\"alg\":\"HS256\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EACCES);

    /* a valid RS256 token with its payload swapped for a more generous one */
    sign_rs256(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", PAYLOAD, tok);
    char forged[JWT_MAX_TOKEN];
    const char *evil = "{\"sub\":\"dr.house\",\"exp\":1800000600,\"roles\":[\"admin\"]}";
    size_t o = signing_input("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", evil, forged);
    snprintf(forged + o, sizeof(forged) - o, "%s", strrchr(tok, '.'));
    assert_int_equal(verify(ks, forged, NULL, NULL), -EACCES);

    /* ES256 with a DER signature (not JOSE r||s), and signed by another EC key */
    sign_es256(ec_key, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", PAYLOAD, tok, true);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EACCES);
    EVP_PKEY *other = EVP_EC_gen("P-256");
    sign_es256(other, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", PAYLOAD, tok, false);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EACCES);
    EVP_PKEY_free(other);

    /* one flipped bit in an HS256 signature */
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\"}", PAYLOAD, tok);
    char *last = tok + strlen(tok) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(verify(ks, tok, NULL, NULL), -EACCES);
    jwt_keyset_free(ks);
}

static void test_time_and_audience(void **state)
{
    (void)state;
    jwt_keyset_t *ks = keyset(true);
    char tok[JWT_MAX_TOKEN];
    const char *hdr = "{\"alg\":\"HS256\"}";
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\",\"exp\":1799999000,\"roles\":[\"admin\"]}", tok);
    jwt_claims_t c;
    assert_int_equal(verify(ks, tok, NULL, &c), -EKEYEXPIRED);
    assert_true(c.signed_ok); /* genuine, only expired: not counted for lockout */
    assert_string_equal(c.sub, "a"); /* review58 #7: and its subject is known, for its audit record */
    sign_hs("another-secret-another-secret-0000", hdr, "{\"sub\":\"a\",\"exp\":1799999000}", tok);
    assert_int_equal(verify(ks, tok, NULL, &c), -EACCES);
    assert_false(c.signed_ok);
    assert_string_equal(c.sub, ""); /* a forgery names nobody */
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\",\"exp\":1799999980,\"roles\":[\"admin\"]}", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), 0); /* 20 s late: inside the 30 s leeway */
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\",\"exp\":1800000600,\"nbf\":1800000300}", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EAGAIN);
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\",\"exp\":1800000600,\"nbf\":1800000010}", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), 0);
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\"}", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG); /* exp is required */
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\",\"exp\":\"soon\"}", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    sign_hs(HS_SECRET, hdr, "{\"exp\":1800000600}", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG); /* sub is required */

    jwt_verify_opts_t o = opts;
    o.issuer = "https://idp.hospital.example";
    o.audience = "aimedres";
    sign_hs(
        HS_SECRET, hdr,
        "{\"sub\":\"a\",\"exp\":1800000600,\"iss\":\"https://idp.hospital.example\",\"aud\":\"aimedres\"}",
        tok);
    assert_int_equal(verify(ks, tok, &o, NULL), 0);
    sign_hs(HS_SECRET, hdr,
            "{\"sub\":\"a\",\"exp\":1800000600,\"iss\":\"https://"
            "idp.hospital.example\",\"aud\":[\"x\",\"aimedres\"]}",
            tok);
    assert_int_equal(verify(ks, tok, &o, NULL), 0);
    sign_hs(HS_SECRET, hdr,
            "{\"sub\":\"a\",\"exp\":1800000600,\"iss\":\"https://evil.example\",\"aud\":\"aimedres\"}", tok);
    assert_int_equal(verify(ks, tok, &o, NULL), -EKEYREJECTED);
    sign_hs(HS_SECRET, hdr,
            "{\"sub\":\"a\",\"exp\":1800000600,\"iss\":\"https://idp.hospital.example\",\"aud\":\"other\"}",
            tok);
    assert_int_equal(verify(ks, tok, &o, NULL), -EKEYREJECTED);
    sign_hs(HS_SECRET, hdr, "{\"sub\":\"a\",\"exp\":1800000600,\"iss\":\"https://idp.hospital.example\"}",
            tok);
    assert_int_equal(verify(ks, tok, &o, NULL), -EKEYREJECTED);
    jwt_keyset_free(ks);
}

static void test_malformed(void **state)
{
    (void)state;
    jwt_keyset_t *ks = keyset(true);
    char tok[JWT_MAX_TOKEN];
    const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "..", "e30.e30.", "!!.e30.AAAA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(ks, bad[i], NULL, NULL), -EBADMSG);
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\",\"kid\":\"nobody\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -ENOKEY);
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EPERM);
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\",\"alg\":\"none\"}", PAYLOAD, tok); /* duplicate member */
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    sign_hs(HS_SECRET, "[\"HS256\"]", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\"}", "not json", tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    /* over the size cap before any decoding */
    char *big = malloc(JWT_MAX_TOKEN + 2);
    memset(big, 'A', JWT_MAX_TOKEN + 1);
    big[10] = '.';
    big[20] = '.';
    big[JWT_MAX_TOKEN + 1] = '\0';
    assert_int_equal(verify(ks, big, NULL, NULL), -EBADMSG);
    free(big);
    /* a padded signature segment */
    sign_hs(HS_SECRET, "{\"alg\":\"HS256\"}", PAYLOAD, tok);
    strcat(tok, "=");
    assert_int_equal(verify(ks, tok, NULL, NULL), -EBADMSG);
    jwt_keyset_free(ks);
}

static void write_file(const char *path, const char *text)
{
    assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0644), 0);
}

static void test_keyset_loading(void **state)
{
    (void)state;
    char dir[4200], p1[4300], p2[4300], spec[9000], err[512];
    snprintf(dir, sizeof(dir), "%s/keys", tmpdir);
    assert_int_equal(util_mkdir_p(dir, 0700), 0);
    snprintf(p1, sizeof(p1), "%s/idp-rsa.pem", dir);
    snprintf(p2, sizeof(p2), "%s/idp-ec.pem", dir);
    write_file(p1, rsa_pem);
    write_file(p2, ec_pem);
    jwt_keyset_t *ks = NULL;
    assert_int_equal(jwt_keyset_new(NULL, dir, &ks, err, sizeof(err)), 0);
    assert_int_equal(jwt_keyset_count(ks), 2);
    char tok[JWT_MAX_TOKEN];
    sign_rs256(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"idp-rsa\"}", PAYLOAD, tok);
    assert_int_equal(verify(ks, tok, NULL, NULL), 0);
    jwt_keyset_free(ks);

    snprintf(spec, sizeof(spec), "a=%s, b=%s", p1, p2);
    assert_int_equal(jwt_keyset_new(HS_SECRET, spec, &ks, err, sizeof(err)), 0);
    assert_int_equal(jwt_keyset_count(ks), 3);
    sign_es256(ec_key, "{\"alg\":\"ES256\",\"kid\":\"b\"}", PAYLOAD, tok, false);
    assert_int_equal(verify(ks, tok, NULL, NULL), 0);
    jwt_keyset_free(ks);

    /* refusals name the problem */
    snprintf(spec, sizeof(spec), "a=%s/missing.pem", dir);
    assert_true(jwt_keyset_new(NULL, spec, &ks, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "missing.pem"));
    char small[4096];
    pub_pem(rsa_small, small, sizeof(small));
    snprintf(p1, sizeof(p1), "%s/small.pem", tmpdir);
    write_file(p1, small);
    snprintf(spec, sizeof(spec), "s=%s", p1);
    assert_int_equal(jwt_keyset_new(NULL, spec, &ks, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "2048"));
    snprintf(spec, sizeof(spec), "a=%s,a=%s", p2, p2);
    assert_int_equal(jwt_keyset_new(NULL, spec, &ks, err, sizeof(err)), -EEXIST);
    assert_int_equal(jwt_keyset_new(NULL, "=x", &ks, err, sizeof(err)), -EINVAL);
    write_file(p1, "not a key");
    snprintf(spec, sizeof(spec), "junk=%s", p1);
    assert_int_equal(jwt_keyset_new(NULL, spec, &ks, err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_strict),  cmocka_unit_test(test_valid_tokens),
        cmocka_unit_test(test_alg_none),       cmocka_unit_test(test_algorithm_confusion),
        cmocka_unit_test(test_bad_signatures), cmocka_unit_test(test_time_and_audience),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_keyset_loading),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
