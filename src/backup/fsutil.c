/* SPDX-License-Identifier: Apache-2.0 */
/* Path and message formatting helpers for the backup modules (see fsutil.h). */
#include "backup/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/util.h"

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
    if (!realpath(path, p)) {
        /* not created yet: resolve its nearest existing ancestor and append the rest */
        char abs[PATH_MAX], head[PATH_MAX], cwd[PATH_MAX];
        int len = path[0] == '/'             ? snprintf(abs, sizeof(abs), "%s", path)
                  : getcwd(cwd, sizeof(cwd)) ? snprintf(abs, sizeof(abs), "%s/%s", cwd, path)
                                             : -1;
        if (len < 0 || len >= (int)sizeof(abs))
            return false;
        memcpy(head, abs, (size_t)len + 1);
        char *slash;
        for (;;) { /* ends at "/" at the latest, which exists */
            slash = strrchr(head, '/');
            if (slash == head) {
                snprintf(p, sizeof(p), "/");
                break;
            }
            *slash = '\0';
            if (realpath(head, p))
                break;
        }
        const char *rest = abs + (slash - head); /* "/name..." after the existing part */
        if (strcmp(p, "/") == 0)
            rest++;
        if (strlen(p) + strlen(rest) >= sizeof(p))
            return false;
        strcat(p, rest);
    }
    size_t n = strlen(r);
    return strncmp(p, r, n) == 0 && (p[n] == '\0' || p[n] == '/' || (n == 1 && r[0] == '/'));
}

int backup_db_room(const char *db_path, char *dir, size_t dirlen, uint64_t *ret_db, uint64_t *ret_free)
{
    struct stat st;
    struct statvfs v;
    util_dirname(db_path, dir, dirlen);
    if (stat(db_path, &st) != 0 || statvfs(dir, &v) != 0)
        return -errno;
    *ret_db = (uint64_t)st.st_size;
    *ret_free = (uint64_t)v.f_bavail * v.f_frsize;
    return 0;
}
