/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers of the backup modules: path joining that reports truncation instead of
 * silently cutting a path, and an error formatter for the err buffers (where cutting a
 * long message short is fine). */
#ifndef AIMEDRES_BACKUP_FSUTIL_H
#define AIMEDRES_BACKUP_FSUTIL_H

#include <stddef.h>

/* buf = a + "/" + b; 0 or -ENAMETOOLONG (buf then holds a truncated path: do not use it). */
int backup_path_join(char *buf, size_t len, const char *a, const char *b);
/* buf = a + b; 0 or -ENAMETOOLONG. */
int backup_path_cat(char *buf, size_t len, const char *a, const char *b);
/* snprintf into an error buffer; long messages are cut. */
void backup_errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
