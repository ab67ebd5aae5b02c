/* SPDX-License-Identifier: Apache-2.0 */
/* Structured JSON logs: one object per line to stderr or LOG_FILE.
 * Never pass feature values or patient identifiers: log pseudonyms and counts only. */
#ifndef AIMEDRES_COMMON_LOG_H
#define AIMEDRES_COMMON_LOG_H

#include <jansson.h>
#include <stdbool.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARNING = 2, LOG_ERROR = 3, LOG_CRITICAL = 4 } log_level_t;

/* Opens the sink (NULL or "" = stderr; else appended file). 0 or -errno. */
int log_init(log_level_t min_level, const char *file);
void log_set_level(log_level_t min_level);
/* Reopens the LOG_FILE given to log_init by name (after logrotate moved it; serve does it on
 * SIGHUP); nothing when logging to stderr. 0 or -errno (the old file then stays in use). */
int log_reopen(void);
/* Parses DEBUG|INFO|WARNING|ERROR|CRITICAL (case-insensitive); 0 or -EINVAL. */
int log_level_parse(const char *s, log_level_t *ret);
const char *log_level_name(log_level_t level);
bool log_enabled(log_level_t level);

/* Writes {"ts":..., "level":..., "msg": msg, <fields>}. fields_fmt is a jansson json_pack
 * format for an object ("{s:s, s:i}") or NULL. Thread-safe; one write(2) per line. */
void log_msg(log_level_t level, const char *msg, const char *fields_fmt, ...);
/* Same with a ready object; steals the reference to fields (may be NULL). */
void log_json(log_level_t level, const char *msg, json_t *fields);

/* The per-request access line {"ts","level":"INFO","msg":"request","request_id","method",
 * "route","status","duration_ms"}, formatted without building a JSON object (the hot
 * path: it would otherwise cost as much as a /health answer). Same sink and semantics as
 * log_msg; values that would need JSON escaping fall back to log_msg. */
void log_request(const char *request_id, const char *method, const char *route, int status,
                 double duration_ms);

/* Batching of the calling thread's request lines, for event-loop threads: after
 * log_thread_batch(true), log_request appends to a per-thread buffer that goes out in one
 * write(2) at log_thread_flush() (the loop calls it after each round of callbacks, so an
 * idle server writes each line at once and a busy one writes a round's lines together),
 * when the buffer fills, or before any other line this thread logs (order is kept).
 * log_thread_batch(false) flushes and turns batching off. */
void log_thread_batch(bool on);
void log_thread_flush(void);

/* Times the sink's writeback was started early since log_init/log_reopen: every 4 MiB
 * written to a regular file (never for a pipe or terminal), so a busy server's log does not
 * pile up 30 s of dirty pages that then stall the store's fdatasync. For tests. */
unsigned long log_writeback_kicks(void);

#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warning(msg, ...) log_msg(LOG_WARNING, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)

#endif
