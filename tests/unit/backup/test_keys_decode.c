/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for what backup/keys accepts as key material: a key command's output only as
 * 64 hex digits or the base64 of 32 bytes with at most one trailing newline (32 bytes of an
 * error message are not a key), a key file also as 32 raw bytes unless they are all text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "backup/keys.h"

#define HEX "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define B64 "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=" /* base64 of the same 32 bytes */

static void want_bytes(uint8_t want[32])
{
    for (int i = 0; i < 32; i++)
        want[i] = (uint8_t)(0xa0 + i);
}

static int text(const char *s, uint8_t out[32])
{
    return backup_key_decode_text((const uint8_t *)s, strlen(s), out);
}

static int file(const char *s, uint8_t out[32])
{
    return backup_key_decode_file((const uint8_t *)s, strlen(s), out);
}

static void test_command_output_forms(void **state)
{
    (void)state;
    uint8_t out[32], want[32];
    want_bytes(want);
    const char *good[] = {HEX, HEX "\n", HEX "\r\n", B64, B64 "\n", B64 "\r\n"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        memset(out, 0, sizeof(out));
        assert_int_equal(text(good[i], out), 0);
        assert_memory_equal(out, want, 32);
    }
    /* exactly 32 bytes of text, exit 0: an error message, not a key */
    assert_int_equal(text("kms: AccessDeniedException 4031\n", out), -EINVAL);
    assert_int_equal(text("kms: AccessDeniedException 40312", out), -EINVAL);
    assert_int_equal(backup_key_decode_text(want, 32, out), -EINVAL); /* raw bytes neither */
    const char *bad[] = {" " HEX,
                         HEX " ",
                         HEX "\n\n",
                         "\n" HEX,
                         HEX "0",
                         "0" B64,
                         B64 "=",
                         "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8",
                         "",
                         "\n",
                         "g0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(text(bad[i], out), -EINVAL);
}

static void test_key_file_forms(void **state)
{
    (void)state;
    uint8_t out[32], want[32];
    want_bytes(want);
    assert_int_equal(file("  " HEX "\n\n", out), 0); /* a file keeps its whitespace tolerance */
    assert_memory_equal(out, want, 32);
    assert_int_equal(file(B64 "\n", out), 0);
    assert_memory_equal(out, want, 32);
    assert_int_equal(backup_key_decode_file(want, 32, out), 0); /* 32 random raw bytes */
    assert_memory_equal(out, want, 32);
    /* 32 bytes of printable text (a passphrase) are taken, flagged 1 for a warning: backups
     * made with such a file must stay restorable */
    assert_int_equal(file("correct horse battery staple 123", out), 1);
    assert_memory_equal(out, "correct horse battery staple 123", 32);
    assert_int_equal(file("tooshort", out), -EINVAL);
    /* one byte that is not text makes 32 bytes raw key material again */
    char almost[33] = "correct horse battery staple 12";
    almost[31] = (char)0xff;
    assert_int_equal(backup_key_decode_file((const uint8_t *)almost, 32, out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_output_forms),
        cmocka_unit_test(test_key_file_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
