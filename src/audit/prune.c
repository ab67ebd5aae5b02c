/* SPDX-License-Identifier: Apache-2.0 */
/* Retention: `audit prune` removes rotated archives older than AUDIT_LOG_RETENTION_DAYS
 * (calendar days, UTC). Rotation never deletes; the active file and the checkpoints are
 * never removed here. `audit prune` (cli/audit.c) records an AUDIT_PRUNE event naming the
 * first seq kept and its prev_hash before calling this, so the verifier accepts a chain that
 * starts there and nowhere else after seq 1. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "common/util.h"

bool audit_file_expired(const audit_file_t *f, int retention_days, int64_t today_days)
{
    return f->date_days >= 0 && today_days - f->date_days > retention_days;
}

static bool listed(const json_t *names, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) if (json_is_string(v) && strcmp(json_string_value(v), name) == 0) return true;
    return false;
}

int audit_prune(const char *log_path, int retention_days, int64_t today_days, const json_t *planned,
                json_t *removed, char *err, size_t errlen)
{
    if (retention_days < 1) {
        snprintf(err, errlen, "retention must be at least 1 day");
        return -EINVAL;
    }
    audit_file_t *files;
    size_t n;
    int rc = audit_files_list(log_path, &files, &n);
    if (rc < 0) {
        snprintf(err, errlen, "cannot list %s: %s", log_path, strerror(-rc));
        return rc;
    }
    int count = 0;
    /* an archive dated D holds records up to D; it may go once D is more than retention_days
     * before today */
    for (size_t i = 0; i < n; i++) {
        if (!audit_file_expired(&files[i], retention_days, today_days) ||
            (planned && !listed(planned, util_basename(files[i].path))))
            continue;
        if (unlink(files[i].path) < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot remove %s: %s", files[i].path, strerror(errno));
            break;
        }
        count++;
        if (removed)
            json_array_append_new(removed, json_string(util_basename(files[i].path)));
    }
    if (count > 0) {
        char dir[4200];
        util_dirname(log_path, dir, sizeof(dir));
        util_fsync_dir(dir);
    }
    audit_files_free(files, n);
    return rc < 0 ? rc : count;
}
