/* SPDX-License-Identifier: Apache-2.0 */
/* Structured JSON logs: each line is built in memory and emitted with a single write(2), so
 * lines from concurrent threads (or processes appending to the same file) never interleave.
 * Before log_init the sink is stderr at INFO. */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define LOG_LINE_MAX (64 * 1024) /* longer lines are replaced by a truncation notice */

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

static atomic_int min_level = LOG_INFO;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static int sink_fd = STDERR_FILENO;
static char *sink_path; /* LOG_FILE, for log_reopen; NULL for stderr (guarded by sink_lock) */
/* Writeback of a log that is a regular file is started every LOG_WRITEBACK_EVERY bytes. A
 * server logging every request writes megabytes a second; left to the kernel, the dirty
 * pages wait 30 s (vm.dirty_expire_centisecs) and then go out in one burst that the store's
 * fdatasync of its WAL queues behind on ext4: a predict p99 of 188 ms in the 30-40 s window
 * of a loaded run against 7-8 ms before (docs/benchmarks.md). Small early writebacks keep
 * the backlog small. Guarded by sink_lock. */
#define LOG_WRITEBACK_EVERY (4u << 20)
static int sink_regular = -1; /* -1 unknown, 0 pipe/tty/..., 1 regular file */
static size_t sink_unkicked;
static unsigned long sink_kicks;
/* A write that failed or fell short (a full disk): the lines are lost, and a torn line must
 * not swallow the next one (review47 #6). Guarded by sink_lock. */
static bool sink_torn;
static unsigned long sink_dropped;

/* Points the sink at file (NULL or "": stderr); the old file is closed once no writer uses it. */
static int open_sink(const char *file)
{
    int fd = STDERR_FILENO;
    char *path = NULL;
    if (file && *file) {
        fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
            return -errno;
        if (!(path = strdup(file))) {
            close(fd);
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&sink_lock);
    int old = sink_fd;
    char *old_path = sink_path;
    sink_fd = fd;
    sink_path = path;
    sink_regular = -1;
    sink_unkicked = 0;
    sink_kicks = 0;
    sink_torn = false;
    pthread_mutex_unlock(&sink_lock);
    if (old != STDERR_FILENO && old != fd)
        close(old);
    free(old_path);
    return 0;
}

int log_init(log_level_t level, const char *file)
{
    int r = open_sink(file);
    if (r < 0)
        return r;
    log_set_level(level);
    return 0;
}

int log_reopen(void)
{
    pthread_mutex_lock(&sink_lock);
    char *path = sink_path ? strdup(sink_path) : NULL;
    bool to_file = sink_path != NULL;
    pthread_mutex_unlock(&sink_lock);
    if (!to_file)
        return 0;
    if (!path)
        return -ENOMEM;
    int r = open_sink(path);
    free(path);
    return r;
}

void log_set_level(log_level_t level)
{
    if ((int)level < LOG_DEBUG)
        level = LOG_DEBUG;
    if ((int)level > LOG_CRITICAL)
        level = LOG_CRITICAL;
    atomic_store(&min_level, (int)level);
}

int log_level_parse(const char *s, log_level_t *ret)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *ret = (log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(log_level_t level)
{
    if ((int)level < 0 || (size_t)level >= ARRAY_SIZE(level_names))
        return "UNKNOWN";
    return level_names[level];
}

bool log_enabled(log_level_t level)
{
    return (int)level >= atomic_load(&min_level);
}

/* Request lines batched by an event-loop thread (log_thread_batch). Lines are whole in the
 * buffer, so one write of it still never splits a line. */
#define BATCH_BYTES (16 * 1024)
static _Thread_local struct {
    bool on;
    size_t len;
    char buf[BATCH_BYTES];
} batch;

static void write_raw(const char *line, size_t len)
{
    pthread_mutex_lock(&sink_lock);
    /* after a torn line, its end first: the next line starts a line of its own */
    if (sink_torn && write(sink_fd, "\n", 1) == 1)
        sink_torn = false;
    /* One write: a short write on a pipe or full disk drops the tail rather than splitting
     * the line across two writes that another process could interleave with. */
    ssize_t n;
    do {
        n = write(sink_fd, line, len);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len) {
        int e = n < 0 ? errno : ENOSPC;
        if (n > 0)
            sink_torn = true;
        if (sink_dropped++ == 0 && sink_fd != STDERR_FILENO) { /* say it once, where someone may see it */
            char note[160];
            int k = snprintf(note, sizeof(note),
                             "aimedres: log lines are being lost: writing the log file failed (%s)\n", strerror(e));
            if (k > 0 && write(STDERR_FILENO, note, (size_t)k) < 0) {
                /* nowhere left to say it */
            }
        }
    }
    /* The writeback is started outside the lock (it can take milliseconds, and every
     * logging thread would wait), on a duplicate of the descriptor, which a concurrent
     * log_reopen can not close under it. */
    int kick = -1;
    if (n > 0 && (sink_unkicked += (size_t)n) >= LOG_WRITEBACK_EVERY) {
        sink_unkicked = 0;
        if (sink_regular < 0) {
            struct stat st;
            sink_regular = fstat(sink_fd, &st) == 0 && S_ISREG(st.st_mode);
        }
        if (sink_regular && (kick = fcntl(sink_fd, F_DUPFD_CLOEXEC, 3)) >= 0)
            sink_kicks++;
    }
    pthread_mutex_unlock(&sink_lock);
    if (kick >= 0) { /* asynchronous; advisory (errors show up in the writes themselves) */
        sync_file_range(kick, 0, 0, SYNC_FILE_RANGE_WRITE);
        close(kick);
    }
}

unsigned long log_writeback_kicks(void)
{
    pthread_mutex_lock(&sink_lock);
    unsigned long n = sink_kicks;
    pthread_mutex_unlock(&sink_lock);
    return n;
}

void log_thread_flush(void)
{
    if (batch.len) {
        write_raw(batch.buf, batch.len);
        batch.len = 0;
    }
}

void log_thread_batch(bool on)
{
    log_thread_flush();
    batch.on = on;
}

static void write_line(const char *line, size_t len)
{
    log_thread_flush(); /* this thread's earlier request lines first */
    write_raw(line, len);
}

/* A request line: into the thread's batch when batching, else straight out. */
static void write_request_line(const char *line, size_t len)
{
    if (!batch.on) {
        write_line(line, len);
        return;
    }
    if (batch.len + len > sizeof(batch.buf))
        log_thread_flush();
    memcpy(batch.buf + batch.len, line, len);
    batch.len += len;
}

void log_json(log_level_t level, const char *msg, json_t *fields)
{
    if (!log_enabled(level)) {
        json_decref(fields);
        return;
    }
    char ts[ISO8601_LEN];
    util_iso8601(util_now_ms(), ts);
    json_t *obj = json_object();
    if (!obj) {
        json_decref(fields);
        return;
    }
    json_object_set_new(obj, "ts", json_string(ts));
    json_object_set_new(obj, "level", json_string(log_level_name(level)));
    json_object_set_new(obj, "msg", json_string(msg ? msg : ""));
    if (fields && json_is_object(fields)) {
        const char *key;
        json_t *val;
        json_object_foreach(fields, key, val)
        {
            /* The fixed keys stay authoritative: a field cannot spoof ts/level/msg. */
            if (strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "msg") == 0)
                continue;
            json_object_set(obj, key, val);
        }
    }
    json_decref(fields);

    char *text =
        json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6));
    json_decref(obj);
    if (!text)
        return;
    size_t len = strlen(text);
    if (len + 1 > LOG_LINE_MAX) {
        free(text);
        json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "ts", ts, "level", log_level_name(level), "msg",
                              "log line truncated", "length", (json_int_t)len);
        text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!text)
            return;
        len = strlen(text);
    }
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    write_line(line, len + 1);
    free(line);
}

/* True if s can go inside a JSON string as is: printable ASCII without '"' or '\\'. */
static bool json_plain(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

/* Appenders for log_request; the caller has checked that everything fits. */
static size_t put(char *buf, size_t n, const char *s)
{
    size_t l = strlen(s);
    memcpy(buf + n, s, l);
    return n + l;
}

static size_t put_uint(char *buf, size_t n, unsigned long long v)
{
    char tmp[24];
    size_t l = 0;
    do {
        tmp[l++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (l)
        buf[n++] = tmp[--l];
    return n;
}

void log_request(const char *request_id, const char *method, const char *route, int status,
                 double duration_ms)
{
    if (!log_enabled(LOG_INFO))
        return;
    if (!json_plain(request_id) || !json_plain(method) || !json_plain(route)) {
        /* not expected (ids are sanitised, methods and routes come from tables): the general path escapes */
        log_msg(LOG_INFO, "request", "{s:s,s:s,s:s,s:i,s:f}", "request_id", request_id, "method", method,
                "route", route, "status", status, "duration_ms", duration_ms);
        return;
    }
    char ts[ISO8601_LEN], line[1024];
    util_iso8601(util_now_ms(), ts);
    /* Appended piece by piece rather than by snprintf: this runs once per request. */
    size_t n = 0;
    if (strlen(request_id) + strlen(method) + strlen(route) > sizeof(line) - 256)
        return;
    n = put(line, n, "{\"ts\":\"");
    n = put(line, n, ts);
    n = put(line, n, "\",\"level\":\"INFO\",\"msg\":\"request\",\"request_id\":\"");
    n = put(line, n, request_id);
    n = put(line, n, "\",\"method\":\"");
    n = put(line, n, method);
    n = put(line, n, "\",\"route\":\"");
    n = put(line, n, route);
    n = put(line, n, "\",\"status\":");
    n = put_uint(line, n, (unsigned long long)(status < 0 ? 0 : status));
    n = put(line, n, ",\"duration_ms\":");
    unsigned long long us = duration_ms > 0 ? (unsigned long long)(duration_ms * 1000.0 + 0.5) : 0;
    n = put_uint(line, n, us / 1000);
    line[n++] = '.';
    line[n++] = (char)('0' + us / 100 % 10);
    line[n++] = (char)('0' + us / 10 % 10);
    line[n++] = (char)('0' + us % 10);
    n = put(line, n, "}\n");
    write_request_line(line, n);
}

void log_msg(log_level_t level, const char *msg, const char *fields_fmt, ...)
{
    if (!log_enabled(level))
        return;
    json_t *fields = NULL;
    if (fields_fmt && *fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        json_error_t jerr;
        fields = json_vpack_ex(&jerr, 0, fields_fmt, ap);
        va_end(ap);
        if (!fields)
            fields = json_pack("{s:s}", "log_error", "bad fields format");
    }
    log_json(level, msg, fields);
}
