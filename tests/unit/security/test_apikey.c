/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for security/apikey and store/apikeys: key format (prefix, hex id, 43
 * base64url characters of 32 random bytes), strict parsing, HMAC under the salt (RFC 4231
 * vector), the constant-time matcher, and the api_keys table (insert, get, list, revoke,
 * touch) on a real SQLite store. */
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

#include "common/util.h"
#include "security/apikey.h"
#include "store/apikeys.h"
#include "store/store.h"

static char tmpdir[4096];

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (base && *base) {
        if (util_mkdir_p(base, 0700) < 0)
            return -1;
        snprintf(tmpdir, sizeof(tmpdir), "%s/apikey.XXXXXX", base);
    } else {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/aimedres-apikey.XXXXXX");
    }
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(tmpdir);
    return 0;
}

static void test_generate_and_parse(void **state)
{
    (void)state;
    char id[APIKEY_ID_SIZE], sec[APIKEY_SECRET_SIZE], key[APIKEY_KEY_SIZE];
    char id2[APIKEY_ID_SIZE], sec2[APIKEY_SECRET_SIZE], key2[APIKEY_KEY_SIZE];
    assert_int_equal(apikey_generate(id, sec, key), 0);
    assert_int_equal(apikey_generate(id2, sec2, key2), 0);
    assert_int_equal(strlen(key), APIKEY_KEY_SIZE - 1);
    assert_int_equal(strncmp(key, "amr_", 4), 0);
    assert_true(apikey_valid_id(id));
    assert_int_equal(strlen(sec), 43);
    assert_string_not_equal(key, key2);
    assert_string_not_equal(id, id2);
    for (const char *p = key; *p; p++) /* URL-safe characters only */
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *p));

    char pid[APIKEY_ID_SIZE], psec[APIKEY_SECRET_SIZE];
    assert_int_equal(apikey_parse(key, strlen(key), pid, psec), 0);
    assert_string_equal(pid, id);
    assert_string_equal(psec, sec);

    char bad[128];
    snprintf(bad, sizeof(bad), "%s", key);
    bad[0] = 'A'; /* prefix */
    assert_int_equal(apikey_parse(bad, strlen(bad), pid, psec), -EINVAL);
    snprintf(bad, sizeof(bad), "%s", key);
    bad[5] = 'G'; /* id not hex */
    assert_int_equal(apikey_parse(bad, strlen(bad), pid, psec), -EINVAL);
    snprintf(bad, sizeof(bad), "%s", key);
    bad[strlen(bad) - 1] = '='; /* not base64url */
    assert_int_equal(apikey_parse(bad, strlen(bad), pid, psec), -EINVAL);
    assert_int_equal(apikey_parse(key, strlen(key) - 1, pid, psec), -EINVAL); /* short */
    snprintf(bad, sizeof(bad), "%sA", key);
    assert_int_equal(apikey_parse(bad, strlen(bad), pid, psec), -EINVAL); /* long */
    snprintf(bad, sizeof(bad), "%s", key);
    bad[20] = '-'; /* separator */
    assert_int_equal(apikey_parse(bad, strlen(bad), pid, psec), -EINVAL);
    assert_false(apikey_valid_id("0123456789ABCDEF"));
    assert_false(apikey_valid_id("0123456789abcde"));
    assert_true(apikey_valid_id("0123456789abcdef"));
}

static void test_hmac(void **state)
{
    (void)state;
    /* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?" */
    char hex[APIKEY_HMAC_HEX_SIZE];
    apikey_hmac_hex("Jefe", "what do ya want for nothing?", hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_true(apikey_secret_matches("Jefe", "what do ya want for nothing?", hex));
    assert_false(apikey_secret_matches("jefe", "what do ya want for nothing?", hex)); /* other salt */
    assert_false(apikey_secret_matches("Jefe", "what do ya want for nothing!", hex));
    char upper[APIKEY_HMAC_HEX_SIZE];
    snprintf(upper, sizeof(upper), "%s", hex);
    upper[0] = 'B'; /* not our hex form */
    assert_false(apikey_secret_matches("Jefe", "what do ya want for nothing?", upper));
    assert_false(apikey_secret_matches("Jefe", "what do ya want for nothing?", "5bdc"));
    assert_false(apikey_secret_matches("Jefe", "what do ya want for nothing?", NULL));
    /* NULL salt = empty salt */
    char a[APIKEY_HMAC_HEX_SIZE], b[APIKEY_HMAC_HEX_SIZE];
    apikey_hmac_hex(NULL, "s", a);
    apikey_hmac_hex("", "s", b);
    assert_string_equal(a, b);
}

static void test_store(void **state)
{
    (void)state;
    char url[4300], err[512];
    snprintf(url, sizeof(url), "sqlite://%s/keys.db", tmpdir);
    store_t *st = NULL;
    assert_int_equal(store_open(url, &st, err, sizeof(err)), 0);

    store_apikey_t k = {0}, got;
    snprintf(k.key_id, sizeof(k.key_id), "00112233445566aa");
    snprintf(k.name, sizeof(k.name), "ward-7 tablet");
    snprintf(k.role, sizeof(k.role), "clinician");
    apikey_hmac_hex("salt", "secret", k.secret_hmac);
    k.created_ms = 1000;
    k.expires_ms = 5000;
    assert_int_equal(store_apikey_insert(st, &k), 0);
    assert_int_equal(store_apikey_insert(st, &k), -EEXIST);
    assert_int_equal(store_apikey_get(st, "00112233445566aa", &got), 0);
    assert_string_equal(got.name, "ward-7 tablet");
    assert_string_equal(got.role, "clinician");
    assert_string_equal(got.secret_hmac, k.secret_hmac);
    assert_int_equal(got.expires_ms, 5000);
    assert_int_equal(got.revoked_ms, 0);
    assert_int_equal(store_apikey_get(st, "ffffffffffffffff", &got), -ENOENT);

    snprintf(k.key_id, sizeof(k.key_id), "00112233445566bb");
    k.created_ms = 2000;
    k.expires_ms = 0;
    assert_int_equal(store_apikey_insert(st, &k), 0);
    store_apikey_t *list = NULL;
    size_t n = 0;
    assert_int_equal(store_apikey_list(st, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].key_id, "00112233445566aa");
    assert_int_equal(list[1].expires_ms, 0);
    free(list);

    assert_int_equal(store_apikey_revoke(st, "00112233445566aa", 3000), 0);
    assert_int_equal(store_apikey_revoke(st, "00112233445566aa", 3001), -EALREADY);
    assert_int_equal(store_apikey_revoke(st, "ffffffffffffffff", 3001), -ENOENT);
    assert_int_equal(store_apikey_get(st, "00112233445566aa", &got), 0);
    assert_int_equal(got.revoked_ms, 3000);
    assert_int_equal(store_apikey_touch(st, "00112233445566bb", 4000), 0);
    assert_int_equal(store_apikey_get(st, "00112233445566bb", &got), 0);
    assert_int_equal(got.last_used_ms, 4000);
    assert_int_equal(store_apikey_touch(st, "ffffffffffffffff", 4000), -ENOENT);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_and_parse),
        cmocka_unit_test(test_hmac),
        cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
