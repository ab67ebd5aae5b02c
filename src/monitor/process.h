/* SPDX-License-Identifier: Apache-2.0 */
/* Scrape-time collectors for the process (CPU seconds, resident memory, open fds, start
 * time) and the host figures the deployment guide's health endpoint shows (CPU, memory
 * and disk percent), read from /proc and statvfs. */
#ifndef AIMEDRES_MONITOR_PROCESS_H
#define AIMEDRES_MONITOR_PROCESS_H

/* Registers the collectors; disk_path is the filesystem reported by host_disk_percent
 * (copied). Call once. */
void process_metrics_register(const char *disk_path);
/* Registers backup_last_success_timestamp_seconds and backup_age_seconds, read from the
 * latest verified backup under backup_path at scrape time (the timestamp is 0 and the age
 * absent until one exists). serve registers them when BACKUP_ENABLED=true. */
void backup_metrics_register(const char *backup_path);

#endif
