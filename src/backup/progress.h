/* SPDX-License-Identifier: Apache-2.0 */
/* Progress of a long step (bytes done of a total, rate, ETA) redrawn on one stderr line
 * at most 5 times a second, only when stderr is a terminal; silent otherwise so cron and
 * CI logs stay clean (the commands print a JSON summary instead). */
#ifndef AIMEDRES_BACKUP_PROGRESS_H
#define AIMEDRES_BACKUP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

/* backup_progress_add may be called from several threads at once. */
typedef struct backup_progress {
    bool enabled;
    const char *label;    /* borrowed */
    uint64_t total, done; /* done: atomic */
    unsigned passes;      /* each byte of total is added this many times (start sets 1; a step
                           * that writes and then reads back sets 2): shown done = done / passes */
    int64_t start_ns, last_draw_ns;
    int drawing; /* atomic: one thread draws at a time */
    bool drawn;
} backup_progress_t;

/* enabled: draw at all (pass backup_progress_tty()). total may be 0 (unknown). */
void backup_progress_start(backup_progress_t *p, const char *label, uint64_t total, bool enabled);
/* Adds n bytes; usable as a backup_bytes_cb (arg = the progress). */
void backup_progress_add(void *p, uint64_t n);
/* Draws the final line and ends it with a newline (if anything was drawn). */
void backup_progress_finish(backup_progress_t *p);
/* True when stderr is a terminal. */
bool backup_progress_tty(void);
/* Human text only (JSON keeps numbers of bytes and seconds). Buffers of 24 bytes suffice.
 * A measured size in binary units with IEC names, truncated to tenths: "512 B", "1 GiB",
 * "1.4 MiB" (a whole number only when exact). */
void backup_format_bytes(uint64_t n, char *buf, unsigned long len);
/* A configured size, exactly, in the largest binary unit that divides it: "1 GiB" for
 * BACKUP_MIN_FREE=1G, "1536 KiB", "1000 B". */
void backup_format_bytes_exact(uint64_t n, char *buf, unsigned long len);
/* (A configured duration is shown exactly by util_format_duration_ms, as in config check.) */
/* A measured duration: its largest unit that is at least 1 and the next one when not 0,
 * truncated: "1d 4h", "2h 31m", "3m 12s", "1m", "12.3s", "850ms". Negative with a "-". */
void backup_format_duration(int64_t ms, char *buf, unsigned long len);

#endif
