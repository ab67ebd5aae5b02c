/* SPDX-License-Identifier: Apache-2.0 */
/* Ctrl-C, SIGTERM or SIGHUP in the middle of a backup, a restore or a drill: the data that
 * run was writing (a backup's plaintext snapshot and unfinished directory, a restore's staging
 * areas, the drill's temporary installation) is removed and the
 * drill's server is stopped before the process exits 128+signal, instead of leaving
 * plaintext patient data and an orphan server behind. Staging areas are only ever paths
 * this run created; data moved aside or already swapped into place is never touched. */
#ifndef AIMEDRES_BACKUP_INTERRUPT_H
#define AIMEDRES_BACKUP_INTERRUPT_H

#include <stdbool.h>
#include <sys/types.h>

/* Installs the handlers (SIGINT, SIGTERM, SIGHUP) and the thread that cleans up; once per
 * process, before the work starts. 0 or -errno. */
int backup_interrupt_arm(void);
/* Registers a path (file or directory tree) to remove on interruption; a file's -wal and
 * -shm siblings go with it. No-op when not armed. */
void backup_interrupt_add(const char *path);
/* True once an interruption's cleanup has begun: a worker creates no directory or file any
 * more (it would recreate a staging area just removed). */
bool backup_interrupt_cleaning(void);
/* Forgets a path registered with backup_interrupt_add (done with it, or kept). */
void backup_interrupt_forget(const char *path);
/* The child to SIGTERM on interruption (0: none). */
void backup_interrupt_child(pid_t pid);
/* From here on a signal is only noted: the caller finishes what must not be cut (a published
 * backup's audit record) and then calls backup_interrupt_resume. A second signal acts at once.
 * No-op when not armed. */
void backup_interrupt_defer(void);
/* The signal noted while deferred (0: none): long deferred work, the offsite copy, stops early. */
int backup_interrupt_pending(void);
/* The few renames that must all happen or none (a restore's swap): from here on every signal,
 * a second one too, is only noted (note is printed on the first) and nothing registered is
 * removed, until backup_interrupt_release. Blocks while an interruption's cleanup runs (which
 * ends the process). No-op when not armed. */
void backup_interrupt_hold(const char *note);
/* Ends a hold. state says what is in place now: the message of a later interruption that
 * finds nothing registered to remove (forget the paths now in place first) gives it instead
 * of "nothing to clean up". defer: a signal noted during the hold stays pending as after backup_interrupt_defer
 * (the next one acts at once); otherwise a noted signal ends the process now (128+signal). */
void backup_interrupt_release(bool defer, const char *state);
/* Ends the deferral: a signal noted meanwhile cleans up and ends the process now (128+signal). */
void backup_interrupt_resume(void);

#endif
