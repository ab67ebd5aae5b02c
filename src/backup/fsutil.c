/* SPDX-License-Identifier: Apache-2.0 */
/* Path and message formatting helpers for the backup modules (see fsutil.h). */
#include "backup/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int backup_path_join(char *buf, size_t len, const char *a, const char *b)
{
    int n = snprintf(buf, len, "%s/%s", a, b);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int backup_path_cat(char *buf, size_t len, const char *a, const char *b)
{
    int n = snprintf(buf, len, "%s%s", a, b);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void backup_errf(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

bool backup_path_within(const char *path, const char *root)
{
    char p[PATH_MAX], r[PATH_MAX];
    if (!path || !root || !realpath(root, r))
        return false;
    if (!realpath(path, p)) { /* not created yet: its parent then */
        char parent[PATH_MAX];
        const char *slash = strrchr(path, '/');
        if (!slash || slash == path ||
            snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path) >= (int)sizeof(parent) ||
            !realpath(parent, p) || strlen(p) + strlen(slash) >= sizeof(p))
            return false;
        strcat(p, slash);
    }
    size_t n = strlen(r);
    return strncmp(p, r, n) == 0 && (p[n] == '\0' || p[n] == '/' || (n == 1 && r[0] == '/'));
}
