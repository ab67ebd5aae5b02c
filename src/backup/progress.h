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
/* "12.3 MB" style into buf (>= 16 bytes). */
void backup_format_bytes(uint64_t n, char *buf, unsigned long len);

#endif
