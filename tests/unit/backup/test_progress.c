/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the human-readable sizes and durations of backup output (backup/progress.h):
 * binary units with IEC names as the settings are parsed (BACKUP_MIN_FREE=1G is "1 GiB", not
 * "1.1 GB"), configured values exact, measured ones truncated (never overstated), and
 * durations in a unit that does not round them to zero (BACKUP_MAX_AGE=1m is "1m", not "0.0 h");
 * configured durations through util_format_duration_ms, the formatter config check uses; and the
 * bar's line for a step that passes over its bytes twice (a backup's write and read-back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/progress.h"
#include "common/util.h"

#define KIB 1024ULL
#define MIB (KIB * KIB)
#define GIB (MIB * KIB)
#define TIB (GIB * KIB)

static const char *bytes(uint64_t n)
{
    static char buf[24];
    backup_format_bytes(n, buf, sizeof(buf));
    return buf;
}

static const char *bytes_exact(uint64_t n)
{
    static char buf[24];
    backup_format_bytes_exact(n, buf, sizeof(buf));
    return buf;
}

static const char *dur(int64_t ms)
{
    static char buf[24];
    backup_format_duration(ms, buf, sizeof(buf));
    return buf;
}

static const char *dur_exact(int64_t ms)
{
    static char buf[24];
    util_format_duration_ms(ms, buf, sizeof(buf));
    return buf;
}

static void test_bytes_measured(void **state)
{
    (void)state;
    assert_string_equal(bytes(0), "0 B");
    assert_string_equal(bytes(1023), "1023 B");
    assert_string_equal(bytes(1024), "1 KiB");
    assert_string_equal(bytes(1536), "1.5 KiB");
    assert_string_equal(bytes(MIB - 1), "1023.9 KiB");      /* truncated: never shown as 1 MiB */
    assert_string_equal(bytes(GIB), "1 GiB");               /* BACKUP_MIN_FREE=1G */
    assert_string_equal(bytes(GIB + 1), "1.0 GiB");         /* a whole number only when exact */
    assert_string_equal(bytes(GIB - 1), "1023.9 MiB");      /* below a 1 GiB limit reads below it */
    assert_string_equal(bytes(1000000000ULL), "953.6 MiB"); /* 10^9 bytes is not "1 GiB" */
    assert_string_equal(bytes(3 * TIB / 2), "1.5 TiB");
    assert_string_equal(bytes(UINT64_MAX), "15.9 EiB");
}

static void test_bytes_configured(void **state)
{
    (void)state;
    assert_string_equal(bytes_exact(0), "0 B");
    assert_string_equal(bytes_exact(GIB), "1 GiB");
    assert_string_equal(bytes_exact(1536 * KIB), "1536 KiB");
    assert_string_equal(bytes_exact(16 * KIB), "16 KiB");
    assert_string_equal(bytes_exact(1000), "1000 B");
    assert_string_equal(bytes_exact(1000000 * GIB), "1000000 GiB");
    assert_string_equal(bytes_exact(1ULL << 50), "1 PiB");
}

static void test_duration_configured(void **state)
{
    (void)state;
    assert_string_equal(dur_exact(60000), "1m"); /* BACKUP_MAX_AGE=1m */
    assert_string_equal(dur_exact(90000), "90s");
    assert_string_equal(dur_exact(12 * 3600000LL), "12h"); /* the default */
    assert_string_equal(dur_exact(36 * 3600000LL), "36h");
    assert_string_equal(dur_exact(86400000LL), "1d");
    assert_string_equal(dur_exact(1000), "1s");
    assert_string_equal(dur_exact(250), "250ms");
    assert_string_equal(dur_exact(0), "0s");
}

static void test_duration_measured(void **state)
{
    (void)state;
    assert_string_equal(dur(0), "0ms");
    assert_string_equal(dur(850), "850ms");
    assert_string_equal(dur(1000), "1s");
    assert_string_equal(dur(12345), "12.3s");
    assert_string_equal(dur(59999), "59.9s");
    assert_string_equal(dur(60000), "1m");
    assert_string_equal(dur(90000), "1m 30s");
    assert_string_equal(dur(192500), "3m 12s");
    assert_string_equal(dur(2 * 3600000LL + 31 * 60000 + 59000), "2h 31m");
    assert_string_equal(dur(12 * 3600000LL), "12h");
    assert_string_equal(dur(28 * 3600000LL), "1d 4h");
    assert_string_equal(dur(3 * 86400000LL), "3d");
    assert_string_equal(dur(-90000), "-1m 30s"); /* a backup from the future: clock skew */
}

/* The line finish draws (stderr captured in a temporary file): "label: done / total (pct%)...". */
static char *final_line(backup_progress_t *p, char *buf, size_t len)
{
    char path[] = "/tmp/aimedres-progress-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    backup_progress_finish(p);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, buf, len - 1, 0);
    close(fd);
    unlink(path);
    buf[n > 0 ? n : 0] = '\0';
    char *cr = strrchr(buf, '\r');
    return cr ? cr + 1 : buf;
}

/* A step that reads every byte twice (backup: stored, then read back) counts both passes:
 * the bar shows the data's bytes and reaches 100% only when the second pass ends. */
static void test_two_passes(void **state)
{
    (void)state;
    backup_progress_t p;
    char buf[512];
    backup_progress_start(&p, "backup x", 4 * MIB, true);
    p.passes = 2;
    backup_progress_add(&p, 4 * MIB); /* the first pass only */
    assert_non_null(strstr(final_line(&p, buf, sizeof(buf)), "backup x: 2 MiB / 4 MiB (50%)"));
    backup_progress_add(&p, 4 * MIB);
    assert_non_null(strstr(final_line(&p, buf, sizeof(buf)), "backup x: 4 MiB / 4 MiB (100%)"));
    backup_progress_add(&p, 1 * MIB); /* work beyond the plan is not shown as more than the total */
    assert_non_null(strstr(final_line(&p, buf, sizeof(buf)), "backup x: 4 MiB / 4 MiB (100%)"));

    backup_progress_start(&p, "verify y", 3 * MIB, true); /* one pass by default */
    backup_progress_add(&p, 3 * MIB);
    assert_non_null(strstr(final_line(&p, buf, sizeof(buf)), "verify y: 3 MiB / 3 MiB (100%)"));

    backup_progress_start(&p, "quiet", 3 * MIB, false); /* not a terminal: nothing drawn */
    backup_progress_add(&p, 3 * MIB);
    assert_string_equal(final_line(&p, buf, sizeof(buf)), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_measured),
        cmocka_unit_test(test_bytes_configured),
        cmocka_unit_test(test_duration_configured),
        cmocka_unit_test(test_duration_measured),
        cmocka_unit_test(test_two_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
