/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers every subsystem uses: clocks, ids, hashing, crash-safe files.
 * Nothing here logs; errors are returned as negative errno values. */
#ifndef AIMEDRES_COMMON_UTIL_H
#define AIMEDRES_COMMON_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 37   /* 36 chars + NUL */
#define SHA256_HEX_LEN 65 /* 64 chars + NUL */
#define ISO8601_LEN 32

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Formats a message into a caller's `char *err, size_t errlen` buffer (truncating); does
 * nothing when err is NULL or errlen is 0. */
void util_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Wall clock in milliseconds since the epoch. */
int64_t util_now_ms(void);
/* Monotonic clock in nanoseconds (for latencies). */
int64_t util_mono_ns(void);
/* Locks mu, waiting at most ms milliseconds (on the monotonic clock, so a clock step does not
 * stretch the wait). 0, or ETIMEDOUT (or another pthread error number). */
int util_mutex_lock_within(pthread_mutex_t *mu, int ms);
/* Formats ms-since-epoch as "2026-11-27T07:26:42.123Z" into buf (>= ISO8601_LEN). */
void util_iso8601(int64_t ms, char *buf);

/* RFC 9562 UUIDv7 (time-ordered, 74 random bits from the OS) into buf (>= UUID_STR_LEN). */
void util_uuid7(char *buf);
/* Fills buf with n cryptographically secure random bytes; 0 or -EIO. */
int util_random(void *buf, size_t n);

/* SHA-256 of a whole file as lowercase hex; 0, -errno on I/O failure. Streams in 64 KiB blocks. */
int util_sha256_file(const char *path, char ret_hex[SHA256_HEX_LEN]);
/* SHA-256 of the first n bytes of fd (UINT64_MAX: all of it), read with pread (fd's offset
 * is neither used nor moved); -ENODATA when it holds fewer than n bytes. */
int util_sha256_fd(int fd, uint64_t n, char ret_hex[SHA256_HEX_LEN]);
/* Value of one hexadecimal digit (either case), or -1. */
int util_hexval(char c);
/* SHA-256 of a buffer as lowercase hex. */
void util_sha256_hex(const void *data, size_t n, char ret_hex[SHA256_HEX_LEN]);

/* Reads a whole file (at most max bytes, else -EFBIG) into a NUL-terminated malloc'd buffer.
 * Caller frees *ret_buf. */
int util_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len);
/* Writes all len bytes to fd, resuming after short writes and EINTR; 0 or -errno. */
int util_write_all(int fd, const void *data, size_t len);
/* Crash-safe write: writes to path.tmp.<pid>.<n> (O_EXCL), fsyncs, renames over path, fsyncs the dir.
 * The directory must exist; on failure the temporary file is removed and path is unchanged. */
int util_write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* Copies a file crash-safely (as util_write_file_atomic, streaming). */
int util_copy_file_atomic(const char *src, const char *dst, int mode);
/* mkdir -p with the given mode for created components. */
int util_mkdir_p(const char *path, int mode);
/* rm -rf; used for temporary directories only. */
int util_rmtree(const char *path);
/* fsync a directory. */
int util_fsync_dir(const char *path);
/* The directory part of path into buf: "." when path has no slash, "/" for "/name". */
void util_dirname(const char *path, char *buf, size_t buflen);
/* The last component of path (after its last slash; path itself when it has none). */
const char *util_basename(const char *path);
bool util_path_exists(const char *path);

/* True when s ends in suffix (case-sensitive; a string equal to suffix counts). */
bool util_ends_with(const char *s, const char *suffix);

/* True if s is a safe single path component for model names and versions:
 * 1..128 chars of [A-Za-z0-9._-], not starting with '.' (no traversal, no hidden files). */
bool util_is_safe_name(const char *s);

/* Parses a duration like "30s", "5m", "2h", "1d", "250ms" or plain seconds into ms.
 * 0 or -EINVAL. */
int util_parse_duration_ms(const char *s, int64_t *ret_ms);
/* The inverse: ms in the largest of d, h, m, s, ms that shows it exactly ("12h", "90s",
 * "1500ms", "0s"; a '-' for negative values), as a duration setting is written. */
void util_format_duration_ms(int64_t ms, char *buf, size_t len);
/* A unit suffix and how much one of it is worth, for util_parse_scaled. */
typedef struct util_unit {
    const char *suffix; /* "" for a bare number */
    int64_t scale;
} util_unit_t;
/* Parses decimal digits followed by exactly one of the n suffixes of units (compared
 * ignoring case when ignore_case) into the number times that suffix's scale.
 * 0, -EINVAL (no leading digit, unknown suffix) or -ERANGE (does not fit in int64_t). */
int util_parse_scaled(const char *s, const util_unit_t *units, size_t n, bool ignore_case, int64_t *ret);
/* Strict integer/double/bool parsers: whole string must match; 0 or -EINVAL / -ERANGE. */
int util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);
int util_parse_double(const char *s, double *ret);
int util_parse_bool(const char *s, bool *ret); /* true/false/1/0/yes/no/on/off */

/* Comma-separated lists ("a, b ,c"): yields the next item, surrounding whitespace trimmed
 * (possibly empty), in *item and *len, and advances *cursor; false once the list is done (an
 * empty string is one empty item). Start with *cursor = the string. */
bool util_list_next(const char **cursor, const char **item, size_t *len);

#endif
