/* SPDX-License-Identifier: Apache-2.0 */
/* Backup encryption: the key schedule and a streaming "compress with zstd, then encrypt
 * with AES-256-GCM" file format with chunked authentication, so a file of any size is
 * written and read in bounded memory and any bit flip, truncation, reordering or file
 * swap is detected. The stream format is documented in docs/backup.md.
 *
 * Stream = header (32 bytes) then chunks; a chunk is
 *   u32 be length | u8 flags (bit 0 = final) | ciphertext[length] | GCM tag[16]
 * where the ciphertext is a piece of the zstd frame of the plaintext. Chunk i uses the
 * nonce (file nonce XOR be64(i) in its last 8 bytes) and authenticates, as AAD, the
 * header, the caller's binding string (backup id + stored name) and (i, final). So a
 * chunk moved, dropped at the end, or copied from another file or backup fails. */
#ifndef AIMEDRES_BACKUP_CRYPTO_H
#define AIMEDRES_BACKUP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define BACKUP_KEY_BYTES 32
#define BACKUP_NONCE_BYTES 12
#define BACKUP_TAG_BYTES 16
#define BACKUP_FINGERPRINT_LEN 33 /* 32 hex chars + NUL */
#define BACKUP_STREAM_HEADER_BYTES 32
#define BACKUP_CHUNK_DEFAULT (1u << 20)
#define BACKUP_CHUNK_MAX (16u << 20)

/* Keys derived from the 32-byte master key by HMAC-SHA256 with fixed labels; the master
 * itself is not kept. The fingerprint (HMAC of a third label, 128 bits in hex) is what
 * manifests record, so a wrong key is recognised before anything is decrypted. */
typedef struct backup_key {
    uint8_t enc[BACKUP_KEY_BYTES]; /* AES-256-GCM key of the file streams */
    uint8_t mac[BACKUP_KEY_BYTES]; /* HMAC-SHA256 key of manifests */
    char fingerprint[BACKUP_FINGERPRINT_LEN];
} backup_key_t;

void backup_key_derive(const uint8_t master[BACKUP_KEY_BYTES], backup_key_t *ret);
/* Overwrites the key material (OPENSSL_cleanse). */
void backup_key_wipe(backup_key_t *k);

/* HMAC-SHA256 of data under the manifest key, as lowercase hex. */
void backup_key_mac_hex(const backup_key_t *k, const void *data, size_t n, char ret_hex[SHA256_HEX_LEN]);

typedef void (*backup_bytes_cb)(void *arg, uint64_t n);

typedef struct backup_stream_opts {
    const char *binding;      /* authenticated context, "<backup id>/<stored name>"; required */
    int level;                /* zstd level for encrypt (1..19; 0 = 3) */
    size_t chunk_size;        /* compressed bytes per chunk for encrypt (0 = BACKUP_CHUNK_DEFAULT) */
    uint64_t max_plain;       /* decrypt: fail with -EFBIG beyond this many plaintext bytes (0 = none) */
    bool exact;               /* encrypt: read exactly exact_size bytes from in_fd's offset, not to EOF
                                 (a cut of a growing file); -ENODATA when the input ends sooner */
    uint64_t exact_size;
    backup_bytes_cb progress; /* called with plaintext bytes read (encrypt) / written (decrypt) */
    void *progress_arg;
} backup_stream_opts_t;

typedef struct backup_stream_result {
    uint64_t plain_size;
    uint64_t stored_size;
    uint64_t chunks;
    char sha256[SHA256_HEX_LEN]; /* of the plaintext */
    uint8_t nonce[BACKUP_NONCE_BYTES];
} backup_stream_result_t;

/* Reads in_fd to EOF and writes the encrypted stream to out_fd (no fsync: the caller
 * decides). A fresh random nonce per call. 0, -errno on I/O errors, -EIO for a crypto
 * library failure; err explains. */
int backup_stream_encrypt(const backup_key_t *key, int in_fd, int out_fd, const backup_stream_opts_t *o,
                          backup_stream_result_t *ret, char *err, size_t errlen);

/* Reads the encrypted stream from in_fd, authenticates every chunk and writes the plaintext
 * to out_fd (-1: discard, i.e. verify only). expect_nonce (may be NULL) must equal the
 * header's nonce. Plaintext is only written after its chunk authenticated, but a caller
 * restoring must still discard out_fd's file on any error (earlier chunks were written).
 * Errors (err names the chunk):
 *   -EBADMSG  a chunk failed authentication: modified, reordered, from another file or
 *             backup (binding), or a different key; also a nonce other than expected
 *   -ENODATA  the stream ends before its final chunk (truncated)
 *   -EPROTO   not a backup stream (magic, version), a chunk length over the header's
 *             chunk size, data after the final chunk, or a zstd frame that does not decode
 *   -EFBIG    more plaintext than o->max_plain
 *   -errno    I/O error */
int backup_stream_decrypt(const backup_key_t *key, int in_fd, int out_fd, const backup_stream_opts_t *o,
                          const uint8_t *expect_nonce, backup_stream_result_t *ret, char *err, size_t errlen);

/* Hex helpers (lowercase). from_hex: 0 or -EINVAL for wrong length / non-hex. */
void backup_hex(const uint8_t *p, size_t n, char *out);
int backup_from_hex(const char *s, uint8_t *out, size_t n);

#endif
