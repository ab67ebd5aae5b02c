/* SPDX-License-Identifier: Apache-2.0 */
/* Process and host collectors; see process.h. Host CPU percent is the busy share of the last
 * complete fixed interval (HOST_CPU_INTERVAL_S), sampled from /proc/stat by a thread of its
 * own, so every scraper sees the same figure however many there are and however often they
 * scrape (until the first interval completes it is the average since boot). */
#include "monitor/process.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "backup/repo.h"
#include "monitor/metrics.h"

static char *disk_path;
static double start_time_s;

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

static void process_collector(FILE *out, void *arg)
{
    (void)arg;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long utime = 0, stime = 0;
    long rss = 0;
    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        char *p = strrchr(buf, ')'); /* comm may contain spaces */
        if (p &&
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u %*u %ld",
                   &utime, &stime, &rss) != 3)
            utime = stime = 0, rss = 0;
    }
    fprintf(out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
            tck > 0 ? (double)(utime + stime) / (double)tck : 0.0);
    fprintf(out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
            rss * page);
    fprintf(out,
            "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\nprocess_open_fds %d\n",
            count_fds());
    fprintf(out,
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
            start_time_s);
}

#define HOST_CPU_INTERVAL_S 15 /* host_cpu_usage_percent covers the last full interval of this length */

static pthread_mutex_t cpu_lock = PTHREAD_MUTEX_INITIALIZER;
static double cpu_percent = -1; /* under cpu_lock */

/* Reads the aggregate jiffies of /proc/stat: 0, or -1 when unreadable. */
static int read_cpu(unsigned long long *total, unsigned long long *idle)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return -1;
    *idle = v[3] + v[4];
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    return 0;
}

static double busy_percent(unsigned long long dt, unsigned long long di)
{
    return dt ? 100.0 * (double)(dt - (di < dt ? di : dt)) / (double)dt : 0.0;
}

/* Samples /proc/stat every HOST_CPU_INTERVAL_S and publishes the busy percent of the interval
 * just completed. Lives as long as the process (detached; holds no resource between samples). */
static void *cpu_sampler(void *arg)
{
    (void)arg;
    unsigned long long t0 = 0, i0 = 0;
    bool have = read_cpu(&t0, &i0) == 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        next.tv_sec += HOST_CPU_INTERVAL_S;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0)
            ;
        unsigned long long t1, i1;
        if (read_cpu(&t1, &i1) < 0) {
            have = false;
            continue;
        }
        double v = have ? busy_percent(t1 - t0, i1 - i0) : -1;
        t0 = t1;
        i0 = i1;
        have = true;
        if (v < 0)
            continue; /* the interval after an unreadable sample is incomplete: keep the last value */
        pthread_mutex_lock(&cpu_lock);
        cpu_percent = v;
        pthread_mutex_unlock(&cpu_lock);
    }
    return NULL;
}

/* Starts the sampler with every signal blocked (the server's signals belong to its event loop). */
static void start_cpu_sampler(void)
{
    unsigned long long tt, ti; /* until the first interval ends: the average since boot */
    double boot = read_cpu(&tt, &ti) == 0 ? busy_percent(tt, ti) : -1;
    pthread_mutex_lock(&cpu_lock);
    cpu_percent = boot;
    pthread_mutex_unlock(&cpu_lock);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) == 0) { /* without the thread the since-boot average stays */
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        (void)pthread_create(&t, &attr, cpu_sampler, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static double host_cpu_percent(void)
{
    pthread_mutex_lock(&cpu_lock);
    double v = cpu_percent;
    pthread_mutex_unlock(&cpu_lock);
    return v;
}

static double host_memory_percent(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return -1;
    char line[256];
    unsigned long long total = 0, avail = 0, v;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1)
            total = v;
        else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1)
            avail = v;
    }
    fclose(f);
    return total ? 100.0 * (double)(total - avail) / (double)total : -1;
}

static double host_disk_percent(void)
{
    struct statvfs st;
    if (!disk_path || statvfs(disk_path, &st) != 0 || st.f_blocks == 0)
        return -1;
    /* as df does: used / (used + available to unprivileged users) */
    double used = (double)(st.f_blocks - st.f_bfree), avail = (double)st.f_bavail;
    return used + avail > 0 ? 100.0 * used / (used + avail) : -1;
}

static void host_collector(FILE *out, void *arg)
{
    (void)arg;
    fprintf(out,
            "# HELP host_cpu_usage_percent Host CPU busy percent over the last complete %d s interval "
            "(sampled by the server, the same for every scraper).\n"
            "# TYPE host_cpu_usage_percent gauge\nhost_cpu_usage_percent %.2f\n"
            "# HELP host_memory_usage_percent Host memory in use (total - available) percent.\n"
            "# TYPE host_memory_usage_percent gauge\nhost_memory_usage_percent %.2f\n"
            "# HELP host_disk_usage_percent Used percent of the filesystem holding the model storage.\n"
            "# TYPE host_disk_usage_percent gauge\nhost_disk_usage_percent %.2f\n",
            HOST_CPU_INTERVAL_S, host_cpu_percent(), host_memory_percent(), host_disk_percent());
}

void process_metrics_register(const char *path)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    start_time_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    disk_path = path ? strdup(path) : NULL;
    metrics_register_collector(process_collector, NULL);
    metrics_register_collector(host_collector, NULL);
    start_cpu_sampler();
}

/* ---- backups (issue 6): time of the last good backup and its age ---- */

static char *backup_dir;

static void backup_collector(FILE *out, void *arg)
{
    (void)arg;
    int64_t ts_ms = 0;
    char id[64];
    /* backup_latest_info reads the small manifest of `latest` (no key needed); a scrape
     * every few seconds costs one small file read. */
    if (backup_latest_info(backup_dir, &ts_ms, id, sizeof(id)) < 0 || ts_ms <= 0) {
        /* no good backup yet: timestamp 0 (so `time() - ...` is huge and BackupStale fires), no age */
        fprintf(out, "# HELP backup_last_success_timestamp_seconds Time of the latest complete, verified backup "
                     "(0: none yet).\n"
                     "# TYPE backup_last_success_timestamp_seconds gauge\nbackup_last_success_timestamp_seconds 0\n");
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double age = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - (double)ts_ms / 1e3;
    fprintf(out,
            "# HELP backup_last_success_timestamp_seconds Time of the latest complete, verified backup "
            "(0: none yet).\n"
            "# TYPE backup_last_success_timestamp_seconds gauge\nbackup_last_success_timestamp_seconds %.3f\n"
            "# HELP backup_age_seconds Age of the latest complete, verified backup.\n"
            "# TYPE backup_age_seconds gauge\nbackup_age_seconds %.3f\n",
            (double)ts_ms / 1e3, age < 0 ? 0.0 : age);
}

void backup_metrics_register(const char *backup_path)
{
    if (!backup_path || !*backup_path)
        return;
    backup_dir = strdup(backup_path);
    if (backup_dir)
        metrics_register_collector(backup_collector, NULL);
}
