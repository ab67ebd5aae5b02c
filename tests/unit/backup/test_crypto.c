/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for backup/crypto and backup/keys: the zstd + AES-256-GCM chunked stream round
 * trips byte-identically (empty, one chunk, many chunks, incompressible and compressible),
 * and each kind of tampering gives its specific error: a flipped bit (-EBADMSG), a stream
 * cut at or inside a chunk (-ENODATA), two chunks swapped (-EBADMSG), a wrong key or
 * binding (-EBADMSG), a replaced nonce (-EBADMSG), garbage and trailing data (-EPROTO).
 * Also the key decoding (raw, hex, base64) and the key file permission check. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/crypto.h"
#include "backup/keys.h"
#include "common/util.h"
#include "testutil.h"

#define SMALL_CHUNK 4096
#define HDR BACKUP_STREAM_HEADER_BYTES

static char tmpdir[2048];
static backup_key_t key, other_key;

static int setup(void **state)
{
    (void)state;
    if (test_tmpdir(tmpdir, sizeof(tmpdir), "backup-crypto") < 0)
        return -1;
    uint8_t m1[32], m2[32];
    for (int i = 0; i < 32; i++) {
        m1[i] = (uint8_t)i;
        m2[i] = (uint8_t)(i + 1);
    }
    backup_key_derive(m1, &key);
    backup_key_derive(m2, &other_key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(tmpdir);
    return 0;
}

/* Writes n bytes of test data: random (incompressible) or repetitive text. */
static void make_file(const char *path, size_t n, bool random_data)
{
    uint8_t *buf = malloc(n + 1);
    assert_non_null(buf);
    if (random_data) {
        assert_int_equal(util_random(buf, n), 0);
    } else {
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)("patient record score 0.123456 model v1\n"[i % 39]);
    }
    assert_int_equal(util_write_file_atomic(path, buf, n, 0600), 0);
    free(buf);
}

static void path_of(char *buf, const char *name)
{
    snprintf(buf, 4096, "%s/%s", tmpdir, name);
}

static int encrypt_file(const char *in, const char *out, size_t chunk, backup_stream_result_t *res)
{
    int ifd = open(in, O_RDONLY | O_CLOEXEC);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(ifd >= 0 && ofd >= 0);
    backup_stream_opts_t o = {.binding = "20261127T000000Z/data/000001", .chunk_size = chunk};
    char err[256] = "";
    int r = backup_stream_encrypt(&key, ifd, ofd, &o, res, err, sizeof(err));
    close(ifd);
    close(ofd);
    return r;
}

static int decrypt_file(const backup_key_t *k, const char *in, const char *out, const char *binding,
                        const uint8_t *nonce, backup_stream_result_t *res, char *err, size_t errlen)
{
    int ifd = open(in, O_RDONLY | O_CLOEXEC);
    assert_true(ifd >= 0);
    int ofd = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    backup_stream_opts_t o = {.binding = binding ? binding : "20261127T000000Z/data/000001"};
    int r = backup_stream_decrypt(k, ifd, ofd, &o, nonce, res, err, errlen);
    close(ifd);
    if (ofd >= 0)
        close(ofd);
    return r;
}

static bool same_files(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    assert_int_equal(util_read_file(a, 64u << 20, &x, &lx), 0);
    assert_int_equal(util_read_file(b, 64u << 20, &y, &ly), 0);
    bool same = lx == ly && memcmp(x, y, lx) == 0;
    free(x);
    free(y);
    return same;
}

static void round_trip(size_t n, bool random_data, size_t chunk, uint64_t min_chunks)
{
    char plain[4096], enc[4096], back[4096], err[256] = "", sha[SHA256_HEX_LEN];
    path_of(plain, "plain");
    path_of(enc, "enc");
    path_of(back, "back");
    make_file(plain, n, random_data);
    backup_stream_result_t e, d;
    assert_int_equal(encrypt_file(plain, enc, chunk, &e), 0);
    assert_int_equal(e.plain_size, n);
    assert_true(e.chunks >= min_chunks);
    assert_int_equal(util_sha256_file(plain, sha), 0);
    assert_string_equal(e.sha256, sha);
    struct stat st;
    assert_int_equal(stat(enc, &st), 0);
    assert_int_equal((uint64_t)st.st_size, e.stored_size);
    int r = decrypt_file(&key, enc, back, NULL, e.nonce, &d, err, sizeof(err));
    if (r != 0)
        fail_msg("decrypt: %s", err);
    assert_int_equal(d.plain_size, n);
    assert_int_equal(d.chunks, e.chunks);
    assert_int_equal(d.stored_size, e.stored_size);
    assert_string_equal(d.sha256, sha);
    assert_true(same_files(plain, back));
}

static void test_round_trip_empty(void **state)
{
    (void)state;
    round_trip(0, false, 0, 1);
}

static void test_round_trip_small(void **state)
{
    (void)state;
    round_trip(1000, false, 0, 1);
}

static void test_round_trip_many_chunks_random(void **state)
{
    (void)state;
    round_trip(300 * 1000, true, SMALL_CHUNK, 70);
}

static void test_round_trip_many_chunks_text(void **state)
{
    (void)state;
    round_trip(3 * 1000 * 1000 + 7, false, 256, 2);
}

static void test_round_trip_default_chunks(void **state)
{
    (void)state;
    round_trip(3u << 20, true, 0, 3); /* > 1 default (1 MiB) chunk */
}

/* Plaintext of a whole number of decompression blocks (1 MiB): the last call that fills the
 * output buffer ends the frame, and the loop must not take the next call's hint for "more". */
static void test_round_trip_exact_mib(void **state)
{
    (void)state;
    round_trip(1u << 20, false, 0, 1);
    round_trip(2u << 20, false, 0, 1);
    round_trip(3u << 20, true, 256 * 1024, 2);
}

static void test_compresses(void **state)
{
    (void)state;
    char plain[4096], enc[4096];
    path_of(plain, "plain");
    path_of(enc, "enc");
    make_file(plain, 1000 * 1000, false);
    backup_stream_result_t e;
    assert_int_equal(encrypt_file(plain, enc, 0, &e), 0);
    assert_true(e.stored_size < 100 * 1000); /* zstd before encryption */
}

static void test_nonce_is_fresh(void **state)
{
    (void)state;
    char plain[4096], enc[4096];
    path_of(plain, "plain");
    path_of(enc, "enc");
    make_file(plain, 100, false);
    backup_stream_result_t a, b;
    assert_int_equal(encrypt_file(plain, enc, 0, &a), 0);
    assert_int_equal(encrypt_file(plain, enc, 0, &b), 0);
    assert_memory_not_equal(a.nonce, b.nonce, BACKUP_NONCE_BYTES);
}

/* ------------------------------------------------------------------ tampering */

/* A stream of random data in SMALL_CHUNK chunks (every chunk but the last is full). */
static void make_stream(backup_stream_result_t *e, char *encpath)
{
    char plain[4096];
    path_of(plain, "plain");
    path_of(encpath, "enc");
    make_file(plain, 40 * 1000, true);
    assert_int_equal(encrypt_file(plain, encpath, SMALL_CHUNK, e), 0);
    assert_true(e->chunks >= 5);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    char *buf = NULL;
    assert_int_equal(util_read_file(path, 64u << 20, &buf, n), 0);
    return (uint8_t *)buf;
}

static void spit(const char *path, const uint8_t *buf, size_t n)
{
    assert_int_equal(util_write_file_atomic(path, buf, n, 0600), 0);
}

static int verify(const backup_key_t *k, const char *path, const char *binding, const uint8_t *nonce,
                  char *err)
{
    backup_stream_result_t d;
    return decrypt_file(k, path, NULL, binding, nonce, &d, err, 256);
}

static size_t frame_size(void)
{
    return 5 + SMALL_CHUNK + BACKUP_TAG_BYTES;
}

static void test_bit_flip(void **state)
{
    (void)state;
    backup_stream_result_t e;
    char enc[4096], err[256];
    make_stream(&e, enc);
    size_t n;
    uint8_t *buf = slurp(enc, &n);
    /* in the ciphertext of chunk 2, in a tag, and in the last byte */
    size_t offsets[] = {HDR + 2 * frame_size() + 100, HDR + frame_size() - 3, n - 1};
    for (size_t i = 0; i < 3; i++) {
        buf[offsets[i]] ^= 0x10;
        spit(enc, buf, n);
        assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EBADMSG);
        assert_non_null(strstr(err, "failed authentication"));
        buf[offsets[i]] ^= 0x10;
    }
    spit(enc, buf, n);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), 0);
    free(buf);
}

static void test_truncation(void **state)
{
    (void)state;
    backup_stream_result_t e;
    char enc[4096], err[256];
    make_stream(&e, enc);
    size_t n;
    uint8_t *buf = slurp(enc, &n);
    /* at a chunk boundary (the final chunk dropped), inside a chunk, inside the header */
    size_t cuts[] = {HDR + 3 * frame_size(), HDR + 2 * frame_size() + 17, HDR - 4, n - 1};
    for (size_t i = 0; i < 4; i++) {
        spit(enc, buf, cuts[i]);
        assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -ENODATA);
        assert_non_null(strstr(err, "truncated"));
    }
    spit(enc, buf, 0);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -ENODATA);
    free(buf);
}

static void test_chunk_swap_and_reorder(void **state)
{
    (void)state;
    backup_stream_result_t e;
    char enc[4096], err[256];
    make_stream(&e, enc);
    size_t n, f = frame_size();
    uint8_t *buf = slurp(enc, &n);
    uint8_t *tmp = malloc(f);
    memcpy(tmp, buf + HDR + f, f);
    memcpy(buf + HDR + f, buf + HDR + 2 * f, f);
    memcpy(buf + HDR + 2 * f, tmp, f);
    spit(enc, buf, n);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EBADMSG);
    assert_non_null(strstr(err, "chunk 1"));
    /* a chunk duplicated over the next one */
    uint8_t *orig = slurp(enc, &n);
    memcpy(orig + HDR + 2 * f, orig + HDR + f, f);
    spit(enc, orig, n);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EBADMSG);
    free(orig);
    free(tmp);
    free(buf);
}

static void test_final_flag_and_lengths(void **state)
{
    (void)state;
    backup_stream_result_t e;
    char enc[4096], err[256];
    make_stream(&e, enc);
    size_t n, f = frame_size();
    uint8_t *buf = slurp(enc, &n);
    /* mark chunk 0 final: its flag is authenticated */
    buf[HDR + 4] |= 1;
    spit(enc, buf, n);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EBADMSG);
    buf[HDR + 4] &= (uint8_t)~1u;
    /* a length above the chunk size is refused before reading it */
    buf[HDR] = 0x7f;
    spit(enc, buf, n);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EPROTO);
    buf[HDR] = 0;
    (void)f;
    free(buf);
}

static void test_wrong_key_binding_nonce(void **state)
{
    (void)state;
    backup_stream_result_t e;
    char enc[4096], err[256];
    make_stream(&e, enc);
    assert_int_equal(verify(&other_key, enc, NULL, e.nonce, err), -EBADMSG);
    /* the same bytes presented as another backup's file (swapped between backups) */
    assert_int_equal(verify(&key, enc, "20261128T000000Z/data/000001", e.nonce, err), -EBADMSG);
    assert_int_equal(verify(&key, enc, "20261127T000000Z/data/000002", e.nonce, err), -EBADMSG);
    uint8_t nonce[BACKUP_NONCE_BYTES];
    memcpy(nonce, e.nonce, sizeof(nonce));
    nonce[0] ^= 1;
    assert_int_equal(verify(&key, enc, NULL, nonce, err), -EBADMSG);
    assert_non_null(strstr(err, "nonce"));
    /* a nonce edited in the header itself: the tags no longer match */
    size_t n;
    uint8_t *buf = slurp(enc, &n);
    buf[16] ^= 1;
    spit(enc, buf, n);
    assert_int_equal(verify(&key, enc, NULL, NULL, err), -EBADMSG);
    free(buf);
}

static void test_garbage_and_trailing(void **state)
{
    (void)state;
    backup_stream_result_t e;
    char enc[4096], err[256];
    make_stream(&e, enc);
    size_t n;
    uint8_t *buf = slurp(enc, &n);
    uint8_t *longer = malloc(n + 3);
    memcpy(longer, buf, n);
    memcpy(longer + n, "xyz", 3);
    spit(enc, longer, n + 3);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EPROTO);
    assert_non_null(strstr(err, "after the final chunk"));
    buf[0] = 'X';
    spit(enc, buf, n);
    assert_int_equal(verify(&key, enc, NULL, e.nonce, err), -EPROTO);
    free(longer);
    free(buf);
}

static void test_max_plain(void **state)
{
    (void)state;
    backup_stream_result_t e, d;
    char enc[4096], err[256];
    make_stream(&e, enc);
    int fd = open(enc, O_RDONLY | O_CLOEXEC);
    backup_stream_opts_t o = {.binding = "20261127T000000Z/data/000001", .max_plain = 1000};
    assert_int_equal(backup_stream_decrypt(&key, fd, -1, &o, e.nonce, &d, err, sizeof(err)), -EFBIG);
    close(fd);
}

/* exact: a cut of a growing file (the audit log): exactly exact_size bytes from the
 * descriptor's offset, whatever follows; -ENODATA when the file is shorter now. */
static void test_exact_size(void **state)
{
    (void)state;
    char plain[4096], enc[4096], err[256] = "";
    path_of(plain, "plain-exact");
    path_of(enc, "enc-exact");
    make_file(plain, 300000, false);
    for (int i = 0; i < 3; i++) {
        uint64_t want = i == 0 ? 0 : i == 1 ? 123457 : 400000;
        int ifd = open(plain, O_RDONLY | O_CLOEXEC);
        int ofd = open(enc, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(ifd >= 0 && ofd >= 0);
        backup_stream_opts_t o = {.binding = "20261127T000000Z/data/000001", .exact = true, .exact_size = want};
        backup_stream_result_t e, d;
        int r = backup_stream_encrypt(&key, ifd, ofd, &o, &e, err, sizeof(err));
        close(ifd);
        close(ofd);
        if (want > 300000) {
            assert_int_equal(r, -ENODATA);
            assert_non_null(strstr(err, "300000 of 400000 bytes"));
            continue;
        }
        assert_int_equal(r, 0);
        assert_int_equal(e.plain_size, want);
        assert_int_equal(decrypt_file(&key, enc, NULL, NULL, e.nonce, &d, err, sizeof(err)), 0);
        assert_int_equal(d.plain_size, want);
        assert_string_equal(d.sha256, e.sha256);
    }
}

/* ------------------------------------------------------------------ keys */

static void test_key_decode(void **state)
{
    (void)state;
    uint8_t out[32], want[32];
    for (int i = 0; i < 32; i++)
        want[i] = (uint8_t)(0xa0 + i);
    char hex[80];
    backup_hex(want, 32, hex);
    strcat(hex, "\n");
    assert_int_equal(backup_key_decode((const uint8_t *)hex, strlen(hex), out), 0);
    assert_memory_equal(out, want, 32);
    const char *b64 = "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=\n"; /* base64 of the same bytes */
    assert_int_equal(backup_key_decode((const uint8_t *)b64, strlen(b64), out), 0);
    assert_memory_equal(out, want, 32);
    assert_int_equal(backup_key_decode(want, 32, out), 0);
    assert_memory_equal(out, want, 32);
    assert_int_equal(backup_key_decode((const uint8_t *)"abcd", 4, out), -EINVAL);
    hex[10] = 'g';
    assert_int_equal(backup_key_decode((const uint8_t *)hex, strlen(hex), out), -EINVAL);
}

static void test_key_fingerprint(void **state)
{
    (void)state;
    uint8_t m[32] = {0};
    backup_key_t a, b;
    backup_key_derive(m, &a);
    backup_key_derive(m, &b);
    assert_string_equal(a.fingerprint, b.fingerprint);
    assert_int_equal(strlen(a.fingerprint), 32);
    assert_string_not_equal(a.fingerprint, key.fingerprint);
    /* sub-keys differ from each other */
    assert_memory_not_equal(a.enc, a.mac, 32);
}

static void test_key_file_and_command(void **state)
{
    (void)state;
    char kf[4096], err[512];
    path_of(kf, "key.hex");
    unlink(kf);
    assert_int_equal(backup_key_generate(kf, err, sizeof(err)), 0);
    assert_int_equal(backup_key_generate(kf, err, sizeof(err)), -EEXIST);
    backup_settings_t s;
    memset(&s, 0, sizeof(s));
    backup_key_t k1, k2;
    assert_int_equal(backup_key_load(&s, &k1, err, sizeof(err)), -ENOKEY);
    s.key_file = kf;
    assert_int_equal(backup_key_load(&s, &k1, err, sizeof(err)), 0);
    chmod(kf, 0644);
    assert_int_equal(backup_key_load(&s, &k2, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    chmod(kf, 0600);
    /* the same key from a command, which sees BACKUP_ENCRYPTION_KEY_ID */
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "test \"$BACKUP_ENCRYPTION_KEY_ID\" = label-1 && cat '%s'", kf);
    s.key_file = NULL;
    s.key_command = cmd;
    s.key_id = "label-1";
    assert_int_equal(backup_key_load(&s, &k2, err, sizeof(err)), 0);
    assert_string_equal(k1.fingerprint, k2.fingerprint);
    s.key_id = "other";
    assert_int_equal(backup_key_load(&s, &k2, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "status"));
    s.key_command = "echo not-a-key";
    assert_int_equal(backup_key_load(&s, &k2, err, sizeof(err)), -EINVAL);
    s.key_file = kf;
    assert_int_equal(backup_key_load(&s, &k2, err, sizeof(err)), -EINVAL); /* both set */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_size),
        cmocka_unit_test(test_round_trip_empty),
        cmocka_unit_test(test_round_trip_small),
        cmocka_unit_test(test_round_trip_many_chunks_random),
        cmocka_unit_test(test_round_trip_many_chunks_text),
        cmocka_unit_test(test_round_trip_default_chunks),
        cmocka_unit_test(test_round_trip_exact_mib),
        cmocka_unit_test(test_compresses),
        cmocka_unit_test(test_nonce_is_fresh),
        cmocka_unit_test(test_bit_flip),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_chunk_swap_and_reorder),
        cmocka_unit_test(test_final_flag_and_lengths),
        cmocka_unit_test(test_wrong_key_binding_nonce),
        cmocka_unit_test(test_garbage_and_trailing),
        cmocka_unit_test(test_max_plain),
        cmocka_unit_test(test_key_decode),
        cmocka_unit_test(test_key_fingerprint),
        cmocka_unit_test(test_key_file_and_command),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
