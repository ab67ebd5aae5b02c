/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers every subsystem uses: clocks, UUIDv7 ids, SHA-256, crash-safe file writes
 * and strict parsers. Nothing here logs; every failure is a negative errno value so callers
 * decide how to report it. */
#include "common/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define IO_BLOCK (64 * 1024)

void util_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int util_mutex_lock_within(pthread_mutex_t *mu, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = ts.tv_nsec + (int64_t)ms * 1000000;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &ts);
}

/* Timestamps are formatted many times a second (each request line, each answer): the
 * "YYYY-mm-ddTHH:MM:SS" part is kept per thread and redone only when the second changes. */
void util_iso8601(int64_t ms, char *buf)
{
    static _Thread_local int64_t cached_sec = INT64_MIN;
    static _Thread_local char prefix[19]; /* YYYY-mm-ddTHH:MM:SS, without NUL */
    int64_t sec = ms / 1000;
    int64_t rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        sec -= 1;
    }
    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        char tmp[ISO8601_LEN];
        if (!gmtime_r(&t, &tm) || strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm) != sizeof(prefix)) {
            snprintf(buf, ISO8601_LEN, "1970-01-01T00:00:00.000Z"); /* out of the 4-digit years */
            return;
        }
        memcpy(prefix, tmp, sizeof(prefix));
        cached_sec = sec;
    }
    memcpy(buf, prefix, sizeof(prefix));
    buf[19] = '.';
    buf[20] = (char)('0' + rem / 100);
    buf[21] = (char)('0' + rem / 10 % 10);
    buf[22] = (char)('0' + rem % 10);
    buf[23] = 'Z';
    buf[24] = '\0';
}

int util_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -EIO;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Ids are minted per request: their random bits come from the kernel in 640-byte draws
 * kept per thread (64 ids a getrandom(2) call instead of one). Still the kernel's CSPRNG;
 * secrets and keys keep calling util_random directly. */
static void id_random(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[640];
    static _Thread_local size_t left;
    if (left < n) {
        if (util_random(pool, sizeof(pool)) < 0)
            abort(); /* no entropy from the kernel: ids would collide, refuse to continue */
        left = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - left, n);
    memset(pool + sizeof(pool) - left, 0, n); /* a used draw never serves twice */
    left -= n;
}

void util_uuid7(char *buf)
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)util_now_ms();
    id_random(b + 6, 10);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f)); /* version 7 */
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f)); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    char *o = buf;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 0x0f];
    }
    *o = '\0';
}

static void to_hex(const unsigned char *md, unsigned len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

int util_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void util_sha256_hex(const void *data, size_t n, char ret_hex[SHA256_HEX_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        abort(); /* OpenSSL cannot compute SHA-256: nothing sensible to return */
    to_hex(md, len, ret_hex);
}

#define TO_EOF UINT64_MAX

/* Reads fd from offset 0 (pread: its file offset is neither used nor moved) in IO_BLOCK
 * pieces, up to limit bytes (TO_EOF: to its end), and hands each to fn; 0, or the first
 * error (-errno from pread, -ENOMEM, -ENODATA when fd ends before limit, or what fn
 * returned). */
static int for_each_block(int fd, uint64_t limit, int (*fn)(void *arg, const void *data, size_t n), void *arg)
{
    unsigned char *block = malloc(IO_BLOCK);
    if (!block)
        return -ENOMEM;
    int r = 0;
    for (uint64_t off = 0; off < limit;) {
        size_t want = limit - off < IO_BLOCK ? (size_t)(limit - off) : IO_BLOCK;
        ssize_t n = pread(fd, block, want, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0) {
            r = limit == TO_EOF ? 0 : -ENODATA;
            break;
        }
        if ((r = fn(arg, block, (size_t)n)) < 0)
            break;
        off += (uint64_t)n;
    }
    free(block);
    return r;
}

static int digest_block(void *ctx, const void *data, size_t n)
{
    return EVP_DigestUpdate(ctx, data, n) == 1 ? 0 : -EIO;
}

int util_sha256_file(const char *path, char ret_hex[SHA256_HEX_LEN])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = util_sha256_fd(fd, TO_EOF, ret_hex);
    close(fd);
    return r;
}

int util_sha256_fd(int fd, uint64_t n, char ret_hex[SHA256_HEX_LEN])
{
    int r = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        r = -ENOMEM;
        goto fail;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        r = -EIO;
        goto fail;
    }
    if ((r = for_each_block(fd, n, digest_block, ctx)) < 0)
        goto fail;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32) {
        r = -EIO;
        goto fail;
    }
    to_hex(md, len, ret_hex);
fail:
    EVP_MD_CTX_free(ctx);
    return r;
}

int util_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len)
{
    int r;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                r = -EFBIG;
                goto fail;
            }
            size_t ncap = cap ? cap * 2 : 4096;
            if (ncap > max + 1)
                ncap = max + 1; /* one byte past max detects an oversized file */
            if (ncap <= len) {
                r = -EFBIG;
                goto fail;
            }
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                r = -ENOMEM;
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            r = -EFBIG;
            goto fail;
        }
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf) {
            r = -ENOMEM;
            goto fail;
        }
    }
    buf[len] = '\0';
    close(fd);
    *ret_buf = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
fail:
    free(buf);
    close(fd);
    return r;
}

int util_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* no progress: never loop on it */
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Directory part of path ("." when there is no slash) into buf. */
void util_dirname(const char *path, char *buf, size_t buflen)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, buflen, ".");
    else if (slash == path)
        snprintf(buf, buflen, "/");
    else
        snprintf(buf, buflen, "%.*s", (int)(slash - path), path);
}

const char *util_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int util_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (fsync(fd) < 0 && errno != EINVAL)
        r = -errno;
    close(fd);
    return r;
}

/* Opens a fresh temporary sibling of path; its name goes to tmp. */
static int open_tmp(const char *path, int mode, char *tmp, size_t tmplen)
{
    static atomic_uint counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned c = atomic_fetch_add(&counter, 1);
        int n = snprintf(tmp, tmplen, "%s.tmp.%ld.%u", path, (long)getpid(), c);
        if (n < 0 || (size_t)n >= tmplen)
            return -ENAMETOOLONG;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

/* fsyncs and closes fd, renames tmp over path and fsyncs the directory; unlinks tmp on failure. */
static int commit_tmp(int fd, const char *tmp, const char *path)
{
    int r = 0;
    if (fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    char dir[PATH_MAX];
    util_dirname(path, dir, sizeof(dir));
    return util_fsync_dir(dir);
}

int util_write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
    char tmp[PATH_MAX];
    int fd = open_tmp(path, mode, tmp, sizeof(tmp));
    if (fd < 0)
        return fd;
    int r = util_write_all(fd, data, len);
    if (r < 0) {
        close(fd);
        unlink(tmp);
        return r;
    }
    return commit_tmp(fd, tmp, path);
}

static int write_block(void *fd, const void *data, size_t n)
{
    return util_write_all(*(int *)fd, data, n);
}

int util_copy_file_atomic(const char *src, const char *dst, int mode)
{
    char tmp[PATH_MAX];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open_tmp(dst, mode, tmp, sizeof(tmp));
    if (out < 0) {
        close(in);
        return out;
    }
    int r = for_each_block(in, TO_EOF, write_block, &out);
    close(in);
    if (r < 0) {
        close(out);
        unlink(tmp);
        return r;
    }
    return commit_tmp(out, tmp, dst);
}

int util_mkdir_p(const char *path, int mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0)
        return -EINVAL;
    if (len >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, (mode_t)mode) < 0) {
        if (errno != EEXIST)
            return -errno;
        struct stat st;
        if (stat(buf, &st) < 0)
            return -errno;
        if (!S_ISDIR(st.st_mode))
            return -ENOTDIR;
    }
    return 0;
}

static int rmtree_at(int dirfd, const char *name, int depth)
{
    if (depth > 256)
        return -ELOOP;
    if (unlinkat(dirfd, name, 0) == 0)
        return 0;
    if (errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int rr = rmtree_at(fd, de->d_name, depth + 1);
        if (rr < 0 && r == 0)
            r = rr;
    }
    closedir(d);
    if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        r = -errno;
    return r;
}

int util_rmtree(const char *path)
{
    if (!path || !*path || strcmp(path, "/") == 0)
        return -EINVAL;
    return rmtree_at(AT_FDCWD, path, 0);
}

bool util_path_exists(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0;
}

bool util_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool util_is_safe_name(const char *s)
{
    if (!s || !*s || s[0] == '.')
        return false;
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= 128)
            return false;
        if (!(isascii(c) && (isalnum(c) || c == '.' || c == '_' || c == '-')))
            return false;
    }
    return true;
}

int util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
    if (!s || !*s || isspace((unsigned char)s[0]))
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *ret = (int64_t)v;
    return 0;
}

int util_parse_double(const char *s, double *ret)
{
    if (!s || !*s || isspace((unsigned char)s[0]))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE || !isfinite(v))
        return -ERANGE;
    *ret = v;
    return 0;
}

int util_parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

int util_parse_scaled(const char *s, const util_unit_t *units, size_t n, bool ignore_case, int64_t *ret)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    for (size_t i = 0; i < n; i++) {
        if ((ignore_case ? strcasecmp(end, units[i].suffix) : strcmp(end, units[i].suffix)) != 0)
            continue;
        if (v > (unsigned long long)(INT64_MAX / units[i].scale))
            return -ERANGE;
        *ret = (int64_t)v * units[i].scale;
        return 0;
    }
    return -EINVAL;
}

int util_parse_duration_ms(const char *s, int64_t *ret_ms)
{
    static const util_unit_t units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                                        {"h", 3600000}, {"d", 86400000}, {"", 1000}};
    return util_parse_scaled(s, units, ARRAY_SIZE(units), false, ret_ms);
}

void util_format_duration_ms(int64_t ms, char *buf, size_t len)
{
    static const struct {
        uint64_t ms;
        const char *name;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    const char *sign = ms < 0 ? "-" : "";
    uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    size_t u = 0;
    while (a != 0 && a % units[u].ms != 0)
        u++;
    snprintf(buf, len, "%s%llu%s", sign, (unsigned long long)(a / units[u].ms), a ? units[u].name : "s");
}

bool util_list_next(const char **cursor, const char **item, size_t *len)
{
    const char *p = *cursor;
    if (!p)
        return false;
    const char *end = p + strcspn(p, ",");
    const char *a = p, *b = end;
    while (a < b && isspace((unsigned char)*a))
        a++;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    *item = a;
    *len = (size_t)(b - a);
    *cursor = *end ? end + 1 : NULL;
    return true;
}
