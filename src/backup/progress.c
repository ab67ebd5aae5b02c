/* SPDX-License-Identifier: Apache-2.0 */
/* Terminal progress line for backup, verify and restore. See progress.h. */
#include "backup/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "common/util.h"

#define REDRAW_NS 200000000LL

bool backup_progress_tty(void)
{
    return isatty(STDERR_FILENO) == 1;
}

/* Sizes are shown in binary units with their IEC names, as the settings are parsed
 * (BACKUP_MIN_FREE=1G is 2^30 bytes, shown "1 GiB"), and never overstated: a measured size
 * is truncated, not rounded, to one decimal, so "1.0 GiB free" is never less than 1 GiB. */
static const char *const iec_units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};

void backup_format_bytes(uint64_t n, char *buf, unsigned long len)
{
    int u = 0;
    uint64_t unit = 1;
    while (u < 6 && n / unit >= 1024) {
        unit <<= 10;
        u++;
    }
    uint64_t whole = n / unit, rest = n % unit;
    if (rest == 0)
        snprintf(buf, len, "%llu %s", (unsigned long long)whole, iec_units[u]);
    else /* tenths, truncated; rest < unit <= 2^60, so rest * 10 does not overflow */
        snprintf(buf, len, "%llu.%llu %s", (unsigned long long)whole, (unsigned long long)(rest * 10 / unit),
                 iec_units[u]);
}

void backup_format_bytes_exact(uint64_t n, char *buf, unsigned long len)
{
    int u = 0;
    while (u < 6 && n != 0 && n % 1024 == 0) {
        n /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu %s", (unsigned long long)n, iec_units[u]);
}

void backup_format_duration(int64_t ms, char *buf, unsigned long len)
{
    const char *sign = ms < 0 ? "-" : "";
    unsigned long long a = ms < 0 ? (unsigned long long)0 - (unsigned long long)ms : (unsigned long long)ms;
    /* the largest unit that is at least 1, then the next one down when it is not 0 */
    static const struct {
        unsigned long long ms;
        const char *name;
    } u[] = {{86400000ULL, "d"}, {3600000ULL, "h"}, {60000ULL, "m"}};
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        if (a < u[i].ms)
            continue;
        unsigned long long hi = a / u[i].ms, lo = a % u[i].ms;
        unsigned long long next = i + 1 < sizeof(u) / sizeof(u[0]) ? u[i + 1].ms : 1000ULL;
        const char *lname = i + 1 < sizeof(u) / sizeof(u[0]) ? u[i + 1].name : "s";
        if (lo / next == 0)
            snprintf(buf, len, "%s%llu%s", sign, hi, u[i].name);
        else
            snprintf(buf, len, "%s%llu%s %llu%s", sign, hi, u[i].name, lo / next, lname);
        return;
    }
    if (a >= 1000 && a % 1000 == 0)
        snprintf(buf, len, "%s%llus", sign, a / 1000);
    else if (a >= 1000)
        snprintf(buf, len, "%s%llu.%llus", sign, a / 1000, a % 1000 / 100); /* tenths, truncated */
    else
        snprintf(buf, len, "%s%llums", sign, a);
}

static void draw(backup_progress_t *p, int64_t now, bool final)
{
    char done[24], total[24], rate[24], eta[32] = "";
    uint64_t d = __atomic_load_n(&p->done, __ATOMIC_RELAXED) / (p->passes ? p->passes : 1);
    if (p->total && d > p->total)
        d = p->total; /* work beyond the plan (a damaged reference stored afresh) */
    double secs = (double)(now - p->start_ns) / 1e9;
    double bps = secs > 0 ? (double)d / secs : 0;
    backup_format_bytes(d, done, sizeof(done));
    backup_format_bytes(p->total, total, sizeof(total));
    backup_format_bytes((uint64_t)bps, rate, sizeof(rate));
    if (!final && p->total > d && bps > 0) {
        char t[24];
        backup_format_duration((int64_t)((double)(p->total - d) / bps) * 1000, t, sizeof(t));
        snprintf(eta, sizeof(eta), "  ETA %s", t);
    } else if (final) {
        char t[24];
        backup_format_duration((now - p->start_ns) / 1000000, t, sizeof(t));
        snprintf(eta, sizeof(eta), "  in %s", t);
    }
    int pct = p->total ? (int)(100.0 * (double)d / (double)p->total) : 0;
    fprintf(stderr, "\r\033[K%s: %s / %s (%d%%)  %s/s%s", p->label, done, total, pct > 100 ? 100 : pct, rate,
            eta);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
    p->drawn = true;
}

void backup_progress_start(backup_progress_t *p, const char *label, uint64_t total, bool enabled)
{
    p->enabled = enabled;
    p->label = label;
    p->total = total;
    p->passes = 1;
    p->done = 0;
    p->start_ns = util_mono_ns();
    p->last_draw_ns = 0;
    p->drawing = 0;
    p->drawn = false;
}

void backup_progress_add(void *arg, uint64_t n)
{
    backup_progress_t *p = arg;
    if (!p)
        return;
    __atomic_fetch_add(&p->done, n, __ATOMIC_RELAXED);
    if (!p->enabled)
        return;
    int64_t now = util_mono_ns();
    if (now - __atomic_load_n(&p->last_draw_ns, __ATOMIC_RELAXED) < REDRAW_NS)
        return;
    if (__atomic_exchange_n(&p->drawing, 1, __ATOMIC_ACQUIRE) == 0) {
        p->last_draw_ns = now;
        draw(p, now, false);
        __atomic_store_n(&p->drawing, 0, __ATOMIC_RELEASE);
    }
}

void backup_progress_finish(backup_progress_t *p)
{
    if (p->enabled && (p->drawn || p->total > 0))
        draw(p, util_mono_ns(), true);
}
