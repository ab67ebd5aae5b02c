/* SPDX-License-Identifier: Apache-2.0 */
/* Process and host collectors; see process.h. Host CPU percent is measured between two
 * scrapes (the first scrape reports the average since boot), as node_exporter users
 * would compute it with rate(). */
#include "monitor/process.h"

#include <dirent.h>
#include <pthread.h>
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

static pthread_mutex_t cpu_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long last_total, last_idle;

static double host_cpu_percent(void)
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
    unsigned long long idle = v[3] + v[4], total = 0;
    for (int i = 0; i < 8; i++)
        total += v[i];
    pthread_mutex_lock(&cpu_lock);
    unsigned long long dt = total - last_total, di = idle - last_idle;
    last_total = total;
    last_idle = idle;
    pthread_mutex_unlock(&cpu_lock);
    return dt ? 100.0 * (double)(dt - di) / (double)dt : 0.0;
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
            "# HELP host_cpu_usage_percent Host CPU busy percent since the previous scrape.\n"
            "# TYPE host_cpu_usage_percent gauge\nhost_cpu_usage_percent %.2f\n"
            "# HELP host_memory_usage_percent Host memory in use (total - available) percent.\n"
            "# TYPE host_memory_usage_percent gauge\nhost_memory_usage_percent %.2f\n"
            "# HELP host_disk_usage_percent Used percent of the filesystem holding the model storage.\n"
            "# TYPE host_disk_usage_percent gauge\nhost_disk_usage_percent %.2f\n",
            host_cpu_percent(), host_memory_percent(), host_disk_percent());
}

void process_metrics_register(const char *path)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    start_time_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    disk_path = path ? strdup(path) : NULL;
    metrics_register_collector(process_collector, NULL);
    metrics_register_collector(host_collector, NULL);
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
