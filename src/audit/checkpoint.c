/* SPDX-License-Identifier: Apache-2.0 */
/* Ed25519 checkpoints over the audit chain (see checkpoint.h) and key generation. The
 * signed message is a fixed label plus seq, hash and ts, one per line, so a signature can
 * not be replayed for another position or another purpose. */
#include "audit/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"

static int signed_message(uint64_t seq, const char *hash, const char *ts, char *buf, size_t len)
{
    int n =
        snprintf(buf, len, "aimedres/audit-checkpoint/v1\n%llu\n%s\n%s", (unsigned long long)seq, hash, ts);
    return n < 0 || (size_t)n >= len ? -EINVAL : n;
}

static int load_key(const char *path, bool private_key, EVP_PKEY **ret, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    EVP_PKEY *k =
        private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!k && !private_key) {
        /* a private key file also carries the public key */
        rewind(f);
        ERR_clear_error();
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    }
    fclose(f);
    ERR_clear_error();
    if (!k) {
        snprintf(err, errlen, "%s: not a PEM %s key", path, private_key ? "private" : "public");
        return -EINVAL;
    }
    if (EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        snprintf(err, errlen, "%s: not an Ed25519 key (generate one with `aimedres audit keygen`)", path);
        return -EINVAL;
    }
    *ret = k;
    return 0;
}

int audit_ckpt_load_private(const char *path, EVP_PKEY **ret, char *err, size_t errlen)
{
    return load_key(path, true, ret, err, errlen);
}

int audit_ckpt_load_public(const char *path, EVP_PKEY **ret, char *err, size_t errlen)
{
    return load_key(path, false, ret, err, errlen);
}

int audit_ckpt_sign(EVP_PKEY *key, uint64_t seq, const char *hash, const char *ts, char **ret_line,
                    size_t *ret_len)
{
    char msg[256];
    int mlen = signed_message(seq, hash, ts, msg, sizeof(msg));
    if (mlen < 0)
        return mlen;
    unsigned char sig[64];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)msg, (size_t)mlen) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (!ok)
        return -EIO;
    char b64[128];
    EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
    json_t *o = json_pack("{s:I,s:s,s:s,s:s}", "seq", (json_int_t)seq, "hash", hash, "ts", ts, "sig", b64);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!s)
        return -ENOMEM;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return -ENOMEM;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *ret_line = line;
    *ret_len = n + 1;
    return 0;
}

bool audit_ckpt_verify(EVP_PKEY *key, const json_t *ck)
{
    json_t *seq = json_object_get(ck, "seq");
    const char *hash = json_string_value(json_object_get(ck, "hash"));
    const char *ts = json_string_value(json_object_get(ck, "ts"));
    const char *b64 = json_string_value(json_object_get(ck, "sig"));
    if (!json_is_integer(seq) || json_integer_value(seq) < 1 || !hash || !ts || !b64 || strlen(b64) != 88)
        return false;
    char msg[256];
    int mlen = signed_message((uint64_t)json_integer_value(seq), hash, ts, msg, sizeof(msg));
    if (mlen < 0)
        return false;
    unsigned char sig[66];
    int n = EVP_DecodeBlock(sig, (const unsigned char *)b64, 88);
    if (n != 66) /* 64 bytes + 2 bytes of '=' padding decoded as zeros */
        return false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) == 1 &&
              EVP_DigestVerify(md, sig, 64, (const unsigned char *)msg, (size_t)mlen) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

static int write_pem(const char *path, int mode, EVP_PKEY *k, bool private_key, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    int ok = private_key ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) : PEM_write_PUBKEY(f, k);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    fclose(f);
    if (!ok) {
        unlink(path);
        snprintf(err, errlen, "cannot write %s", path);
        return -EIO;
    }
    return 0;
}

int audit_keygen(const char *private_path, const char *public_path, char *err, size_t errlen)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!c || EVP_PKEY_keygen_init(c) != 1 || EVP_PKEY_keygen(c, &k) != 1) {
        EVP_PKEY_CTX_free(c);
        snprintf(err, errlen, "Ed25519 key generation failed");
        return -EIO;
    }
    EVP_PKEY_CTX_free(c);
    int rc = write_pem(private_path, 0600, k, true, err, errlen);
    if (rc == 0) {
        rc = write_pem(public_path, 0644, k, false, err, errlen);
        if (rc < 0)
            unlink(private_path);
    }
    EVP_PKEY_free(k);
    return rc;
}
