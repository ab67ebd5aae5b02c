/* SPDX-License-Identifier: Apache-2.0 */
/* BACKUP and RESTORE audit records (see events.h for when each is written and where). */
#include "backup/events.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "backup/fsutil.h"

const char *backup_event_actor(void)
{
    /* the effective uid's name, not $USER (which the caller controls); the same actor the
     * audit module's other CLI records carry (audit3's audit_os_user) */
    static _Thread_local char buf[64];
    struct passwd pw, *res = NULL;
    char pbuf[1024];
    if (getpwuid_r(geteuid(), &pw, pbuf, sizeof(pbuf), &res) == 0 && res && res->pw_name[0])
        snprintf(buf, sizeof(buf), "%s", res->pw_name);
    else
        snprintf(buf, sizeof(buf), "uid:%ld", (long)geteuid());
    return buf;
}

/* Opens the log at path (the configuration otherwise unchanged), appends ev durably, closes. */
static int append_to(const backup_settings_t *s, const char *path, const audit_event_t *ev, char *err,
                     size_t errlen)
{
    if (!s->cfg) {
        backup_errf(err, errlen, "audit: no configuration");
        return -EINVAL;
    }
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        backup_errf(err, errlen, "audit: path too long");
        return -ENAMETOOLONG;
    }
    config_t c = *s->cfg; /* shallow copy: only the log path differs; nothing is freed */
    c.audit_log_path = buf;
    audit_log_t *a = NULL;
    char aerr[512] = "";
    int r = audit_log_open(&c, &a, aerr, sizeof(aerr));
    if (r == 0)
        r = audit_log_append_sync(a, ev);
    audit_log_close(a);
    if (r < 0)
        backup_errf(err, errlen, "cannot write the %s audit record to %s: %s", ev->type, path,
                    aerr[0] ? aerr : strerror(-r));
    return r;
}

int backup_event_backup(const backup_settings_t *s, const json_t *summary, int rc, bool drill, char *err,
                        size_t errlen)
{
    if (!s->audit_log_path || !*s->audit_log_path)
        return 0;
    const char *id = json_string_value(json_object_get(summary, "id"));
    json_t *comps = json_array();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(summary, "components"), k, v)
        json_array_append_new(comps, json_string(k));
    json_t *parent = json_object_get(summary, "parent");
    json_t *detail = json_pack("{s:s?,s:O?,s:o,s:I,s:I,s:I,s:b}", "type",
                               json_string_value(json_object_get(summary, "type")), "parent",
                               json_is_string(parent) ? parent : NULL, "components", comps, "files",
                               json_integer_value(json_object_get(summary, "files")), "total_bytes",
                               json_integer_value(json_object_get(summary, "total_bytes")), "stored_bytes",
                               json_integer_value(json_object_get(summary, "stored_bytes")), "drill", drill);
    if (!detail)
        return -ENOMEM;
    json_t *off = json_object_get(summary, "offsite");
    if (json_is_true(json_object_get(off, "configured")))
        json_object_set_new(detail, "offsite", json_boolean(json_is_true(json_object_get(off, "ok"))));
    if (rc < 0 && json_is_string(json_object_get(summary, "error")))
        json_object_set(detail, "error", json_object_get(summary, "error"));
    audit_event_t ev = {.type = "BACKUP",
                        .user = backup_event_actor(),
                        .role = "cli",
                        .action = "C",
                        .entity_type = "backup",
                        .entity_id = id,
                        .outcome = rc == 0 ? "success" : "failure",
                        .detail = detail};
    int r = append_to(s, s->audit_log_path, &ev, err, errlen);
    json_decref(detail);
    return r;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (strcmp(a, b) == 0)
        return true;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int backup_event_restore(const backup_settings_t *s, const char *id, const json_t *report, int rc,
                         const backup_restore_opts_t *o, bool drill, char *err, size_t errlen)
{
    json_t *detail =
        json_pack("{s:o,s:b,s:O?,s:I,s:I,s:b}", "target", o->target ? json_string(o->target) : json_null(),
                  "in_place", o->target == NULL, "components", json_object_get(report, "components"), "files",
                  json_integer_value(json_object_get(report, "files")), "bytes",
                  json_integer_value(json_object_get(report, "bytes")), "drill", drill);
    if (!detail)
        return -ENOMEM;
    if (rc < 0 && json_is_string(json_object_get(report, "error")))
        json_object_set(detail, "error", json_object_get(report, "error"));
    audit_event_t ev = {.type = "RESTORE",
                        .user = backup_event_actor(),
                        .role = "cli",
                        .action = o->target ? "C" : "U",
                        .entity_type = "backup",
                        .entity_id = id,
                        .outcome = rc == 0 ? "success" : "failure",
                        .detail = detail};
    int first = 0;
    const char *live = s->audit_log_path && *s->audit_log_path ? s->audit_log_path : NULL;
    const char *restored = rc == 0 ? json_string_value(json_object_get(report, "audit_log")) : NULL;
    /* the restored log first: it is the one whose chain the restore just checked */
    if (restored) {
        json_object_set_new(detail, "log", json_string("restored"));
        first = append_to(s, restored, &ev, err, errlen);
    }
    if (live && !(restored && same_file(live, restored))) {
        json_object_set_new(detail, "log", json_string("live"));
        char lerr[1024] = "";
        int r = append_to(s, live, &ev, lerr, sizeof(lerr));
        if (r < 0 && first == 0) {
            first = r;
            backup_errf(err, errlen, "%s", lerr);
        }
    }
    json_decref(detail);
    return first;
}
