/* SPDX-License-Identifier: Apache-2.0 */
/* Scrape-time collectors for the process (CPU seconds, resident memory, open fds, start
 * time) and the host figures the deployment guide's health endpoint shows (CPU, memory
 * and disk percent), read from /proc and statvfs. */
#ifndef AIMEDRES_MONITOR_PROCESS_H
#define AIMEDRES_MONITOR_PROCESS_H

/* Registers the collectors; disk_path is the filesystem reported by host_disk_percent
 * (copied). Call once. */
void process_metrics_register(const char *disk_path);

#endif
