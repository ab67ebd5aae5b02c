/* SPDX-License-Identifier: Apache-2.0 */
/* Cleanup of an interrupted backup, restore or drill (see interrupt.h). The signal handler only
 * writes the signal number to a pipe (async-signal-safe); a thread waiting on the pipe does
 * the work with ordinary calls and ends the process. Each path is first renamed aside, so
 * that a worker still writing into it by name fails instead of recreating it, then removed. */
#include "backup/interrupt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_PATHS 16

static int pipe_fds[2] = {-1, -1};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *paths[MAX_PATHS]; /* guarded by mu */
static _Atomic pid_t child;
static atomic_bool armed;
static bool deferred;        /* guarded by mu */
static atomic_int pending;   /* the signal noted while deferred */
static atomic_bool cleaning; /* the cleanup has begun: workers create nothing more */
static bool held;            /* guarded by mu: every signal is only noted (backup_interrupt_hold) */
static char hold_note[256];  /* guarded by mu: printed when a signal is noted during the hold */
static char state_note[512]; /* guarded by mu: what is in place, for the messages after a hold (when
                              * nothing registered is left to remove) */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    ssize_t w = write(pipe_fds[1], &c, 1);
    (void)w;
    errno = saved;
}

static void remove_aside(const char *path)
{
    char aside[PATH_MAX];
    const char *victim = path;
    if (snprintf(aside, sizeof(aside), "%s.interrupted-%ld", path, (long)getpid()) < (int)sizeof(aside) &&
        rename(path, aside) == 0)
        victim = aside;
    struct stat st;
    if (lstat(victim, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        util_rmtree(victim);
        return;
    }
    unlink(victim);
    char side[PATH_MAX];
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

/* With mu held (until _exit: nobody registers anything any more): stops the child, removes
 * the registered paths and ends the process. */
static void finish_locked(int sig)
{
    atomic_store(&cleaning, true);
    pid_t pid = atomic_load(&child);
    if (pid > 0)
        kill(pid, SIGTERM);
    size_t n = 0;
    for (size_t i = 0; i < MAX_PATHS; i++)
        if (paths[i]) {
            remove_aside(paths[i]);
            n++;
        }
    /* A worker past its backup_interrupt_cleaning() check when the flag was set may still
     * create a directory or file under a path just removed (mkdir -p of a staging area):
     * after a moment in which it has done so or failed, remove again. */
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    for (size_t i = 0; i < MAX_PATHS; i++)
        if (paths[i])
            remove_aside(paths[i]);
    /* the state after a hold (what is in place) when nothing else was left to remove; a
     * drill's registered directory is removed as always, and said so */
    if (!n && pid <= 0 && state_note[0])
        fprintf(stderr, "aimedres: interrupted by signal %d: %s\n", sig, state_note);
    else
        fprintf(stderr, "aimedres: interrupted by signal %d: %s%s\n", sig,
                n ? "removed the data this run had written" : "nothing to clean up",
                pid > 0 ? " and stopped the drill server" : "");
    _exit(128 + sig);
}

static void *watcher(void *arg)
{
    (void)arg;
    for (;;) {
        unsigned char sig = 0;
        ssize_t got;
        while ((got = read(pipe_fds[0], &sig, 1)) < 0 && errno == EINTR)
            ;
        if (got != 1)
            return NULL;
        pthread_mutex_lock(&mu);
        if (held) { /* a second signal waits too: the renames must all happen */
            if (atomic_load(&pending) == 0) {
                atomic_store(&pending, sig);
                fprintf(stderr, "aimedres: signal %d: %s\n", sig, hold_note);
            }
            pthread_mutex_unlock(&mu);
            continue;
        }
        if (deferred && atomic_load(&pending) == 0) { /* a second signal does not wait */
            atomic_store(&pending, sig);
            if (state_note[0])
                fprintf(stderr, "aimedres: signal %d: %s; finishing its audit record first\n", sig,
                        state_note);
            else
                fprintf(stderr,
                        "aimedres: signal %d: the backup is published; finishing its audit record first\n",
                        sig);
            pthread_mutex_unlock(&mu);
            continue;
        }
        finish_locked(sig);
    }
}

int backup_interrupt_arm(void)
{
    if (atomic_exchange(&armed, true))
        return 0;
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return -errno;
    pthread_t t;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the watcher itself takes no signal */
    int e = pthread_create(&t, NULL, watcher, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return -e;
    pthread_detach(t);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    return 0;
}

bool backup_interrupt_cleaning(void)
{
    return atomic_load(&cleaning);
}

void backup_interrupt_add(const char *path)
{
    if (!atomic_load(&armed) || !path)
        return;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < MAX_PATHS; i++)
        if (!paths[i]) {
            paths[i] = strdup(path);
            break;
        }
    pthread_mutex_unlock(&mu);
}

void backup_interrupt_forget(const char *path)
{
    if (!atomic_load(&armed) || !path)
        return;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < MAX_PATHS; i++)
        if (paths[i] && strcmp(paths[i], path) == 0) {
            free(paths[i]);
            paths[i] = NULL;
        }
    pthread_mutex_unlock(&mu);
}

void backup_interrupt_defer(void)
{
    if (!atomic_load(&armed))
        return;
    pthread_mutex_lock(&mu); /* after a watcher already at work: it never returns */
    deferred = true;
    pthread_mutex_unlock(&mu);
}

int backup_interrupt_pending(void)
{
    return atomic_load(&pending);
}

void backup_interrupt_resume(void)
{
    if (!atomic_load(&armed))
        return;
    pthread_mutex_lock(&mu);
    deferred = false;
    int sig = atomic_load(&pending);
    if (sig)
        finish_locked(sig);
    pthread_mutex_unlock(&mu);
}

void backup_interrupt_hold(const char *note)
{
    if (!atomic_load(&armed))
        return;
    pthread_mutex_lock(&mu); /* after a watcher already at work: it never returns (nothing renamed) */
    held = true;
    snprintf(hold_note, sizeof(hold_note), "%s", note ? note : "finishing first");
    pthread_mutex_unlock(&mu);
}

void backup_interrupt_release(bool defer, const char *state)
{
    if (!atomic_load(&armed))
        return;
    pthread_mutex_lock(&mu);
    held = false;
    snprintf(state_note, sizeof(state_note), "%s", state ? state : "");
    if (defer)
        deferred = true;
    else if (!deferred && atomic_load(&pending))
        finish_locked(atomic_load(&pending));
    pthread_mutex_unlock(&mu);
}

void backup_interrupt_child(pid_t pid)
{
    atomic_store(&child, pid);
}
