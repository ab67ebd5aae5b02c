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

void backup_format_bytes(uint64_t n, char *buf, unsigned long len)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void draw(backup_progress_t *p, int64_t now, bool final)
{
    char done[24], total[24], rate[24], eta[32] = "";
    uint64_t d = __atomic_load_n(&p->done, __ATOMIC_RELAXED);
    double secs = (double)(now - p->start_ns) / 1e9;
    double bps = secs > 0 ? (double)d / secs : 0;
    backup_format_bytes(d, done, sizeof(done));
    backup_format_bytes(p->total, total, sizeof(total));
    backup_format_bytes((uint64_t)bps, rate, sizeof(rate));
    if (!final && p->total > d && bps > 0) {
        double left = (double)(p->total - d) / bps;
        snprintf(eta, sizeof(eta), "  ETA %dm%02ds", (int)left / 60, (int)left % 60);
    } else if (final) {
        snprintf(eta, sizeof(eta), "  in %.1fs", secs);
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
