/* SPDX-License-Identifier: Apache-2.0 */
/* Reading the audit log for the API: records in seq order matching a filter, one page at a
 * time. Archives wholly before the time range or the cursor are skipped by their date and
 * last record, so paging through a long history does not re-read all of it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/record.h"

static bool str_eq(const json_t *o, const char *k, const char *want)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && strcmp(v, want) == 0;
}

/* A time of the form ts_like accepts (a record's ts, or a bound), as a key that compares as
 * text in time order: "YYYY-MM-DDTHH:MM:SS.nnnnnnnnn", the parts it lacks as zeros (a cut
 * time is the first instant it names: 2026-11-27T08:31 is 08:31:00.000000000) and the
 * fraction padded to nine digits, so .4181 sorts after .418 (review55 #1). */
#define TS_KEY_LEN 29
static void ts_key(const char *s, char key[TS_KEY_LEN + 1])
{
    memcpy(key, "0000-00-00T00:00:00.000000000", TS_KEY_LEN + 1);
    size_t n = strcspn(s, "Z");
    size_t head = n < 19 ? n : 19; /* date and time of day */
    memcpy(key, s, head);
    if (n > 20 && s[19] == '.') {
        size_t f = n - 20 > 9 ? 9 : n - 20;
        memcpy(key + 20, s + 20, f);
    }
}

static int ts_cmp(const char *ts, const char *bound)
{
    char a[TS_KEY_LEN + 1], b[TS_KEY_LEN + 1];
    ts_key(ts, a);
    ts_key(bound, b);
    return strcmp(a, b);
}

static bool matches(const json_t *rec, const audit_query_t *q)
{
    const char *ts = json_string_value(json_object_get(rec, "ts"));
    if ((uint64_t)json_integer_value(json_object_get(rec, "seq")) <= q->after_seq)
        return false;
    if (!ts)
        return false;
    if (q->from && ts_cmp(ts, q->from) < 0)
        return false;
    if (q->to && ts_cmp(ts, q->to) >= 0)
        return false;
    if (q->type && !str_eq(rec, "type", q->type))
        return false;
    if (q->user && !str_eq(rec, "user", q->user))
        return false;
    if (q->patient_pseudonym && !str_eq(rec, "patient", q->patient_pseudonym))
        return false;
    return true;
}

/* n digits at p whose value is below lim. */
static bool digits(const char *p, int n, int lim)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    return v < lim;
}

/* A UTC time in the records' own form, cut anywhere after the date: YYYY-MM-DD, or that with
 * THH:MM, THH:MM:SS or THH:MM:SS.fraction, each optionally ending in Z. Anything else (an
 * offset such as +01:00, T9:00, Tzz) compared as text gave wrong answers (review54 #4). */
static bool ts_like(const char *s)
{
    int64_t d;
    char date[11];
    size_t n = strlen(s);
    if (n < 10 || n > 40)
        return false;
    memcpy(date, s, 10);
    date[10] = '\0';
    if (audit_date_parse(date, &d) != 0)
        return false;
    if (n == 10)
        return true;
    const char *p = s + 10;
    if (*p++ != 'T' || !digits(p, 2, 24) || p[2] != ':' || !digits(p + 3, 2, 60))
        return false;
    p += 5;
    if (*p == ':') {
        if (!digits(p + 1, 2, 60))
            return false;
        p += 3;
        if (*p == '.') {
            const char *f = ++p;
            while (*p >= '0' && *p <= '9')
                p++;
            if (p == f || p - f > 9)
                return false;
        }
    }
    if (*p == 'Z')
        p++;
    return *p == '\0';
}

/* Every type written with a fixed name: grep for `.type = "`, access_event(), audit_auth()
 * and audit_key_event() callers when adding one. */
const char *const audit_event_types[] = {
    "MODEL_INFERENCE", "MODEL_INFERENCE_NOT_DELIVERED", "FEEDBACK_RECORDED", "DATA_ACCESS",
    "AUTH_SUCCESS",    "AUTH_FAILURE",                  "MODEL_REGISTERED",  "CONFIG_CHANGE",
    "APIKEY_CREATED",  "APIKEY_REVOKED",                "BACKUP",            "RESTORE",
    "AUDIT_VERIFY",    "AUDIT_CHECKPOINT",              "AUDIT_RECOVERED",   "AUDIT_GAP",
    "AUDIT_PRUNE",     NULL};

bool audit_event_type_known(const char *type)
{
    static const char deployment[] = "DEPLOYMENT_";
    for (size_t i = 0; audit_event_types[i]; i++)
        if (strcmp(type, audit_event_types[i]) == 0)
            return true;
    size_t n = strlen(type);
    if (strncmp(type, deployment, sizeof(deployment) - 1) != 0 || n == sizeof(deployment) - 1 ||
        n > AUDIT_MAX_TYPE)
        return false;
    for (const char *p = type + sizeof(deployment) - 1; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

int audit_query_check(const audit_query_t *q, const char *prefix, char *err, size_t errlen)
{
    const char *ts[2] = {q->from, q->to}, *name[2] = {"from", "to"};
    for (size_t i = 0; i < 2; i++) {
        if (ts[i] && !ts_like(ts[i])) {
            snprintf(err, errlen,
                     "%s%s: expected an ISO 8601 UTC time like 2026-11-27T08:00:00Z (or 2026-11-27, "
                     "2026-11-27T08:00; no offset)",
                     prefix, name[i]);
            return -EINVAL;
        }
    }
    if (q->patient_pseudonym && !audit_pseudonym_valid(q->patient_pseudonym)) {
        /* the value is not repeated: it may well be the patient id itself */
        snprintf(err, errlen,
                 "%spatient: expected a pseudonym (p_ and 30 lowercase hex digits), not a patient id; "
                 "`aimedres audit pseudonym` prints the pseudonym of a patient id",
                 prefix);
        return -EINVAL;
    }
    if (q->type && !audit_event_type_known(q->type)) {
        int n = snprintf(err, errlen, "%stype: '%.64s' is not an event type the server writes (", prefix, q->type);
        for (size_t i = 0; audit_event_types[i] && n >= 0 && (size_t)n < errlen; i++)
            n += snprintf(err + n, errlen - (size_t)n, "%s, ", audit_event_types[i]);
        if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, "DEPLOYMENT_<EVENT>)");
        return -EINVAL;
    }
    return 0;
}

/* Last seq of a file, 0 if none or unreadable. */
static uint64_t file_last_seq(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    json_t *rec = NULL;
    off_t valid;
    uint64_t seq = 0;
    if (fstat(fd, &st) == 0 && audit_file_tail(fd, st.st_size, &rec, &valid) == 0 && rec)
        seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
    json_decref(rec);
    close(fd);
    return seq;
}

int audit_query_run(const config_t *cfg, const audit_query_t *q, json_t **ret_records,
                    uint64_t *ret_next_cursor, char *err, size_t errlen)
{
    if (!cfg->audit_log_path) {
        snprintf(err, errlen, "audit is not enabled (AUDIT_LOG_PATH unset)");
        return -ENOENT;
    }
    size_t limit = q->limit == 0 ? 100 : q->limit > 1000 ? 1000 : q->limit;
    int64_t from_days = -1;
    if (q->from && strlen(q->from) >= 10) {
        char d[11];
        memcpy(d, q->from, 10);
        d[10] = '\0';
        if (audit_date_parse(d, &from_days) < 0)
            from_days = -1;
    }
    audit_file_t *files;
    size_t n;
    int rc = audit_files_list(cfg->audit_log_path, &files, &n);
    if (rc < 0) {
        snprintf(err, errlen, "cannot list the audit log files: %s", strerror(-rc));
        return rc;
    }
    json_t *out = json_array();
    uint64_t next = 0;
    bool full = false;
    for (size_t i = 0; i < n && !full; i++) {
        if (files[i].date_days >= 0) {
            if (from_days >= 0 && files[i].date_days < from_days)
                continue;
            if (q->after_seq && file_last_seq(files[i].path) <= q->after_seq)
                continue;
        }
        FILE *f = fopen(files[i].path, "re");
        if (!f)
            continue; /* pruned meanwhile */
        char *line;
        size_t len;
        bool term;
        int r;
        while ((r = audit_read_line(f, &line, &len, &term)) != 0) {
            if (r < 0)
                continue;
            json_t *rec = term ? audit_record_parse(line, len) : NULL;
            free(line);
            if (!rec)
                continue;
            if (matches(rec, q)) {
                if (json_array_size(out) == limit) {
                    next =
                        (uint64_t)json_integer_value(json_object_get(json_array_get(out, limit - 1), "seq"));
                    full = true;
                    json_decref(rec);
                    break;
                }
                json_array_append_new(out, rec);
            } else {
                json_decref(rec);
            }
        }
        fclose(f);
    }
    audit_files_free(files, n);
    *ret_records = out;
    *ret_next_cursor = next;
    return 0;
}
