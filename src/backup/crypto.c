/* SPDX-License-Identifier: Apache-2.0 */
/* Backup key schedule and the zstd + AES-256-GCM chunked stream (see crypto.h for the
 * format). Memory use is a few chunk-sized buffers plus the zstd contexts whatever the
 * file size; nothing here logs. */
#include "backup/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "common/util.h"

#define MAGIC "AIMRBK\x00\x01"
#define MAGIC_LEN 8
#define FORMAT_VERSION 1
#define FLAG_ZSTD 1u
#define CHUNK_FINAL 1u
#define CHUNK_HDR 5 /* u32 length + u8 flags */
#define READ_BLOCK (1u << 20)
#define BINDING_MAX 512
#define WINDOW_LOG_MAX 27 /* refuse zstd frames that would need more than 128 MiB of window */

static const char LABEL_ENC[] = "aimedres-backup v1 stream encryption key";
static const char LABEL_MAC[] = "aimedres-backup v1 manifest authentication key";
static const char LABEL_FPR[] = "aimedres-backup v1 key fingerprint";

void backup_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int backup_from_hex(const char *s, uint8_t *out, size_t n)
{
    if (!s || strlen(s) != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = util_hexval(s[2 * i]), lo = util_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void hmac256(const uint8_t *key, size_t klen, const void *data, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, data, n, out, &len);
}

void backup_key_derive(const uint8_t master[BACKUP_KEY_BYTES], backup_key_t *ret)
{
    uint8_t fpr[32];
    hmac256(master, BACKUP_KEY_BYTES, LABEL_ENC, sizeof(LABEL_ENC) - 1, ret->enc);
    hmac256(master, BACKUP_KEY_BYTES, LABEL_MAC, sizeof(LABEL_MAC) - 1, ret->mac);
    hmac256(master, BACKUP_KEY_BYTES, LABEL_FPR, sizeof(LABEL_FPR) - 1, fpr);
    backup_hex(fpr, 16, ret->fingerprint);
    OPENSSL_cleanse(fpr, sizeof(fpr));
}

void backup_key_wipe(backup_key_t *k)
{
    if (k)
        OPENSSL_cleanse(k, sizeof(*k));
}

void backup_key_mac_hex(const backup_key_t *k, const void *data, size_t n, char ret_hex[SHA256_HEX_LEN])
{
    uint8_t mac[32];
    hmac256(k->mac, sizeof(k->mac), data, n, mac);
    backup_hex(mac, 32, ret_hex);
}

/* ------------------------------------------------------------------ I/O helpers */

/* Starts writeback of everything written so far once another WRITEBACK_EVERY bytes are
 * dirty, so the caller's final fsync finds little left to do and the disk works while
 * the CPU compresses and encrypts. Advisory: errors are ignored (fsync reports them). */
#define WRITEBACK_EVERY (8u << 20)
static void kick_writeback(int fd, uint64_t written, uint64_t *kicked)
{
    if (written - *kicked >= WRITEBACK_EVERY) {
        sync_file_range(fd, (off64_t)*kicked, (off64_t)(written - *kicked), SYNC_FILE_RANGE_WRITE);
        *kicked = written;
    }
}

/* Reads up to n bytes, stopping only at EOF; returns the count or -errno. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* ------------------------------------------------------------------ shared state */

typedef struct stream {
    EVP_CIPHER_CTX *gcm;
    EVP_MD_CTX *plain_md;
    uint8_t header[BACKUP_STREAM_HEADER_BYTES];
    uint8_t nonce[BACKUP_NONCE_BYTES];
    uint8_t aad[BACKUP_STREAM_HEADER_BYTES + 4 + BINDING_MAX + 9];
    size_t aad_prefix; /* header + binding; the chunk index and flags follow */
    uint64_t index;
} stream_t;

static void stream_free(stream_t *s)
{
    EVP_CIPHER_CTX_free(s->gcm);
    EVP_MD_CTX_free(s->plain_md);
}

static int stream_init(stream_t *s, const backup_key_t *key, bool encrypt, const char *binding, char *err,
                       size_t errlen)
{
    memset(s, 0, sizeof(*s));
    size_t blen = binding ? strlen(binding) : 0;
    if (!binding || blen == 0 || blen > BINDING_MAX) {
        snprintf(err, errlen, "stream binding missing or longer than %d bytes", BINDING_MAX);
        return -EINVAL;
    }
    s->gcm = EVP_CIPHER_CTX_new();
    s->plain_md = EVP_MD_CTX_new();
    if (!s->gcm || !s->plain_md)
        goto fail;
    int ok = encrypt ? EVP_EncryptInit_ex(s->gcm, EVP_aes_256_gcm(), NULL, NULL, NULL)
                     : EVP_DecryptInit_ex(s->gcm, EVP_aes_256_gcm(), NULL, NULL, NULL);
    if (ok != 1 || EVP_CIPHER_CTX_ctrl(s->gcm, EVP_CTRL_GCM_SET_IVLEN, BACKUP_NONCE_BYTES, NULL) != 1)
        goto fail;
    ok = encrypt ? EVP_EncryptInit_ex(s->gcm, NULL, NULL, key->enc, NULL)
                 : EVP_DecryptInit_ex(s->gcm, NULL, NULL, key->enc, NULL);
    if (ok != 1 || EVP_DigestInit_ex(s->plain_md, EVP_sha256(), NULL) != 1)
        goto fail;
    put_be32(s->aad + BACKUP_STREAM_HEADER_BYTES, (uint32_t)blen);
    memcpy(s->aad + BACKUP_STREAM_HEADER_BYTES + 4, binding, blen);
    s->aad_prefix = BACKUP_STREAM_HEADER_BYTES + 4 + blen;
    return 0;
fail:
    stream_free(s);
    snprintf(err, errlen, "OpenSSL: cannot set up AES-256-GCM / SHA-256");
    return -EIO;
}

/* Header is known (written or read): put it in front of the AAD. */
static void stream_set_header(stream_t *s)
{
    memcpy(s->aad, s->header, BACKUP_STREAM_HEADER_BYTES);
    memcpy(s->nonce, s->header + 16, BACKUP_NONCE_BYTES);
}

/* Nonce and AAD of chunk s->index. */
static size_t chunk_params(stream_t *s, bool final, uint8_t iv[BACKUP_NONCE_BYTES])
{
    memcpy(iv, s->nonce, BACKUP_NONCE_BYTES);
    uint8_t ctr[8];
    put_be64(ctr, s->index);
    for (int i = 0; i < 8; i++)
        iv[4 + i] ^= ctr[i];
    put_be64(s->aad + s->aad_prefix, s->index);
    s->aad[s->aad_prefix + 8] = final ? 1 : 0;
    return s->aad_prefix + 9;
}

static void digest_hex(EVP_MD_CTX *md, char out[SHA256_HEX_LEN])
{
    uint8_t d[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, d, &n);
    backup_hex(d, 32, out);
}

/* ------------------------------------------------------------------ encrypt */

typedef struct enc {
    stream_t s;
    int out_fd;
    uint8_t *frame; /* CHUNK_HDR + chunk + tag */
    uint64_t stored, kicked;
} enc_t;

static int emit_chunk(enc_t *e, const uint8_t *data, size_t len, bool final, char *err, size_t errlen)
{
    uint8_t iv[BACKUP_NONCE_BYTES];
    size_t aad_len = chunk_params(&e->s, final, iv);
    int outl = 0, outl2 = 0;
    put_be32(e->frame, (uint32_t)len);
    e->frame[4] = final ? CHUNK_FINAL : 0;
    if (EVP_EncryptInit_ex(e->s.gcm, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(e->s.gcm, NULL, &outl, e->s.aad, (int)aad_len) != 1 ||
        (len && EVP_EncryptUpdate(e->s.gcm, e->frame + CHUNK_HDR, &outl, data, (int)len) != 1) ||
        EVP_EncryptFinal_ex(e->s.gcm, e->frame + CHUNK_HDR + (len ? (size_t)outl : 0), &outl2) != 1 ||
        EVP_CIPHER_CTX_ctrl(e->s.gcm, EVP_CTRL_GCM_GET_TAG, BACKUP_TAG_BYTES, e->frame + CHUNK_HDR + len) !=
            1) {
        snprintf(err, errlen, "OpenSSL: AES-256-GCM encryption failed");
        return -EIO;
    }
    size_t total = CHUNK_HDR + len + BACKUP_TAG_BYTES;
    int r = util_write_all(e->out_fd, e->frame, total);
    if (r < 0) {
        snprintf(err, errlen, "write: %s", strerror(-r));
        return r;
    }
    e->stored += total;
    kick_writeback(e->out_fd, e->stored, &e->kicked);
    e->s.index++;
    return 0;
}

int backup_stream_encrypt(const backup_key_t *key, int in_fd, int out_fd, const backup_stream_opts_t *o,
                          backup_stream_result_t *ret, char *err, size_t errlen)
{
    size_t chunk = o->chunk_size ? o->chunk_size : BACKUP_CHUNK_DEFAULT;
    int level = o->level ? o->level : 3;
    if (chunk < 64 || chunk > BACKUP_CHUNK_MAX) {
        snprintf(err, errlen, "chunk size must be 64..%u bytes", BACKUP_CHUNK_MAX);
        return -EINVAL;
    }
    enc_t e;
    int r = stream_init(&e.s, key, true, o->binding, err, errlen);
    if (r < 0)
        return r;
    e.out_fd = out_fd;
    e.stored = 0;
    e.kicked = 0;
    uint8_t *inbuf = malloc(READ_BLOCK);
    uint8_t *cbuf = malloc(chunk);
    e.frame = malloc(CHUNK_HDR + chunk + BACKUP_TAG_BYTES);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    uint64_t plain = 0;
    if (!inbuf || !cbuf || !e.frame || !cctx) {
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0))) {
        r = -EINVAL;
        snprintf(err, errlen, "zstd: bad compression level %d", level);
        goto out;
    }

    memset(e.s.header, 0, sizeof(e.s.header));
    memcpy(e.s.header, MAGIC, MAGIC_LEN);
    put_be32(e.s.header + 8, FORMAT_VERSION);
    put_be32(e.s.header + 12, (uint32_t)chunk);
    if (util_random(e.s.header + 16, BACKUP_NONCE_BYTES) < 0) {
        r = -EIO;
        snprintf(err, errlen, "no randomness for the nonce");
        goto out;
    }
    put_be32(e.s.header + 28, FLAG_ZSTD);
    stream_set_header(&e.s);
    if ((r = util_write_all(out_fd, e.s.header, sizeof(e.s.header))) < 0) {
        snprintf(err, errlen, "write: %s", strerror(-r));
        goto out;
    }
    e.stored = sizeof(e.s.header);

    size_t cfill = 0;
    bool done = false;
    while (!done) {
        size_t want = READ_BLOCK;
        if (o->exact && o->exact_size - plain < want)
            want = (size_t)(o->exact_size - plain);
        ssize_t n = want ? read(in_fd, inbuf, want) : 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            snprintf(err, errlen, "read: %s", strerror(errno));
            goto out;
        }
        if (n == 0 && o->exact && plain < o->exact_size) {
            r = -ENODATA;
            snprintf(err, errlen, "the input ended after %llu of %llu bytes (shortened since it was measured)",
                     (unsigned long long)plain, (unsigned long long)o->exact_size);
            goto out;
        }
        bool eof = n == 0;
        if (n > 0) {
            EVP_DigestUpdate(e.s.plain_md, inbuf, (size_t)n);
            plain += (uint64_t)n;
            if (o->progress)
                o->progress(o->progress_arg, (uint64_t)n);
        }
        ZSTD_inBuffer in = {inbuf, (size_t)n, 0};
        ZSTD_EndDirective mode = eof ? ZSTD_e_end : ZSTD_e_continue;
        for (;;) {
            ZSTD_outBuffer out = {cbuf, chunk, cfill};
            size_t rem = ZSTD_compressStream2(cctx, &out, &in, mode);
            if (ZSTD_isError(rem)) {
                r = -EIO;
                snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(rem));
                goto out;
            }
            cfill = out.pos;
            if (eof && rem == 0) {
                if ((r = emit_chunk(&e, cbuf, cfill, true, err, errlen)) < 0)
                    goto out;
                done = true;
                break;
            }
            if (cfill == chunk) {
                if ((r = emit_chunk(&e, cbuf, cfill, false, err, errlen)) < 0)
                    goto out;
                cfill = 0;
                continue;
            }
            if (!eof && in.pos == in.size)
                break;
        }
    }
    ret->plain_size = plain;
    ret->stored_size = e.stored;
    ret->chunks = e.s.index;
    memcpy(ret->nonce, e.s.nonce, BACKUP_NONCE_BYTES);
    digest_hex(e.s.plain_md, ret->sha256);
    r = 0;
out:
    ZSTD_freeCCtx(cctx);
    free(inbuf);
    if (cbuf)
        OPENSSL_cleanse(cbuf, chunk);
    free(cbuf);
    free(e.frame);
    stream_free(&e.s);
    return r;
}

/* ------------------------------------------------------------------ decrypt */

int backup_stream_decrypt(const backup_key_t *key, int in_fd, int out_fd, const backup_stream_opts_t *o,
                          const uint8_t *expect_nonce, backup_stream_result_t *ret, char *err, size_t errlen)
{
    stream_t s;
    int r = stream_init(&s, key, false, o->binding, err, errlen);
    if (r < 0)
        return r;
    uint8_t *frame = NULL, *cbuf = NULL, *obuf = NULL;
    ZSTD_DCtx *dctx = NULL;
    uint64_t plain = 0, stored = 0, kicked = 0;
    size_t zret = 1;

    ssize_t got = read_full(in_fd, s.header, sizeof(s.header));
    if (got < 0) {
        r = (int)got;
        snprintf(err, errlen, "read: %s", strerror(-r));
        goto out;
    }
    if (got < (ssize_t)sizeof(s.header)) {
        size_t cmp = got < MAGIC_LEN ? (size_t)got : MAGIC_LEN;
        if (got > 0 && memcmp(s.header, MAGIC, cmp) != 0) {
            r = -EPROTO;
            snprintf(err, errlen, "not an aimedres backup stream (bad magic)");
        } else {
            r = -ENODATA;
            snprintf(err, errlen, "truncated: the stream header is incomplete (%zd of %d bytes)", got,
                     BACKUP_STREAM_HEADER_BYTES);
        }
        goto out;
    }
    if (memcmp(s.header, MAGIC, MAGIC_LEN) != 0) {
        r = -EPROTO;
        snprintf(err, errlen, "not an aimedres backup stream (bad magic)");
        goto out;
    }
    uint32_t version = get_be32(s.header + 8), chunk = get_be32(s.header + 12),
             flags = get_be32(s.header + 28);
    if (version != FORMAT_VERSION || chunk < 64 || chunk > BACKUP_CHUNK_MAX || flags != FLAG_ZSTD) {
        r = -EPROTO;
        snprintf(err, errlen, "unsupported stream header (version %u, chunk size %u, flags %u)", version,
                 chunk, flags);
        goto out;
    }
    stream_set_header(&s);
    stored = sizeof(s.header);
    if (expect_nonce && CRYPTO_memcmp(expect_nonce, s.nonce, BACKUP_NONCE_BYTES) != 0) {
        r = -EBADMSG;
        snprintf(err, errlen,
                 "the stream's nonce differs from the manifest's: the file was replaced or swapped");
        goto out;
    }

    frame = malloc(CHUNK_HDR + (size_t)chunk + BACKUP_TAG_BYTES);
    cbuf = malloc(chunk);
    obuf = malloc(READ_BLOCK);
    dctx = ZSTD_createDCtx();
    if (!frame || !cbuf || !obuf || !dctx) {
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, WINDOW_LOG_MAX);

    for (;;) {
        got = read_full(in_fd, frame, CHUNK_HDR);
        if (got < 0) {
            r = (int)got;
            snprintf(err, errlen, "read: %s", strerror(-r));
            goto out;
        }
        if (got < CHUNK_HDR) {
            r = -ENODATA;
            if (got == 0)
                snprintf(err, errlen, "truncated: the stream ends after chunk %llu without its final chunk",
                         (unsigned long long)s.index);
            else
                snprintf(err, errlen, "truncated inside the header of chunk %llu",
                         (unsigned long long)s.index);
            goto out;
        }
        uint32_t len = get_be32(frame);
        bool final = (frame[4] & CHUNK_FINAL) != 0;
        if (len > chunk || (frame[4] & ~CHUNK_FINAL)) {
            r = -EPROTO;
            snprintf(err, errlen, "chunk %llu: bad framing (length %u over chunk size %u, or unknown flags)",
                     (unsigned long long)s.index, len, chunk);
            goto out;
        }
        got = read_full(in_fd, frame + CHUNK_HDR, (size_t)len + BACKUP_TAG_BYTES);
        if (got < 0) {
            r = (int)got;
            snprintf(err, errlen, "read: %s", strerror(-r));
            goto out;
        }
        if ((size_t)got < (size_t)len + BACKUP_TAG_BYTES) {
            r = -ENODATA;
            snprintf(err, errlen, "truncated inside chunk %llu", (unsigned long long)s.index);
            goto out;
        }
        size_t total = CHUNK_HDR + (size_t)len + BACKUP_TAG_BYTES;
        stored += total;

        uint8_t iv[BACKUP_NONCE_BYTES];
        size_t aad_len = chunk_params(&s, final, iv);
        int outl = 0, outl2 = 0;
        if (EVP_DecryptInit_ex(s.gcm, NULL, NULL, NULL, iv) != 1 ||
            EVP_DecryptUpdate(s.gcm, NULL, &outl, s.aad, (int)aad_len) != 1 ||
            (len && EVP_DecryptUpdate(s.gcm, cbuf, &outl, frame + CHUNK_HDR, (int)len) != 1) ||
            EVP_CIPHER_CTX_ctrl(s.gcm, EVP_CTRL_GCM_SET_TAG, BACKUP_TAG_BYTES, frame + CHUNK_HDR + len) !=
                1 ||
            EVP_DecryptFinal_ex(s.gcm, cbuf + (len ? (size_t)outl : 0), &outl2) != 1) {
            r = -EBADMSG;
            snprintf(err, errlen,
                     "chunk %llu failed authentication (modified, reordered, taken from another file or "
                     "backup, or encrypted with a different key)",
                     (unsigned long long)s.index);
            goto out;
        }

        ZSTD_inBuffer in = {cbuf, len, 0};
        for (;;) {
            ZSTD_outBuffer zo = {obuf, READ_BLOCK, 0};
            zret = ZSTD_decompressStream(dctx, &zo, &in);
            if (ZSTD_isError(zret)) {
                r = -EPROTO;
                snprintf(err, errlen, "chunk %llu: zstd: %s", (unsigned long long)s.index,
                         ZSTD_getErrorName(zret));
                goto out;
            }
            if (zo.pos) {
                plain += zo.pos;
                if (o->max_plain && plain > o->max_plain) {
                    r = -EFBIG;
                    snprintf(err, errlen, "more plaintext than the %llu bytes expected",
                             (unsigned long long)o->max_plain);
                    goto out;
                }
                EVP_DigestUpdate(s.plain_md, obuf, zo.pos);
                if (out_fd >= 0 && (r = util_write_all(out_fd, obuf, zo.pos)) < 0) {
                    snprintf(err, errlen, "write: %s", strerror(-r));
                    goto out;
                }
                if (out_fd >= 0)
                    kick_writeback(out_fd, plain, &kicked);
                if (o->progress)
                    o->progress(o->progress_arg, zo.pos);
            }
            /* 0: the frame is decoded and flushed; a further call would begin a next frame
             * and answer with that frame's header size, not with "this one is incomplete" */
            if (in.pos == in.size && (zret == 0 || zo.pos < zo.size))
                break;
        }
        s.index++;
        if (final)
            break;
    }
    if (zret != 0) {
        r = -EPROTO;
        snprintf(err, errlen, "the zstd frame is incomplete after the final chunk");
        goto out;
    }
    uint8_t extra;
    got = read_full(in_fd, &extra, 1);
    if (got != 0) {
        r = got < 0 ? (int)got : -EPROTO;
        snprintf(err, errlen, got < 0 ? "read error after the final chunk" : "data after the final chunk");
        goto out;
    }
    ret->plain_size = plain;
    ret->stored_size = stored;
    ret->chunks = s.index;
    memcpy(ret->nonce, s.nonce, BACKUP_NONCE_BYTES);
    digest_hex(s.plain_md, ret->sha256);
    r = 0;
out:
    ZSTD_freeDCtx(dctx);
    free(frame);
    if (cbuf)
        OPENSSL_cleanse(cbuf, chunk);
    free(cbuf);
    if (obuf)
        OPENSSL_cleanse(obuf, READ_BLOCK);
    free(obuf);
    stream_free(&s);
    return r;
}
