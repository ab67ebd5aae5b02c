/* SPDX-License-Identifier: Apache-2.0 */
/* SQL for deployment records and their event timelines (tables from migration 4), and
 * the per-arm accuracy read from prediction feedback (migration 2). Runs on the store's
 * connection through store_sqlite_with_db; writes use BEGIN IMMEDIATE. */
#include "store/deployments.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "store/sqlite.h"

#define MAX_LIST 1000

static int map_rc(sqlite3 *db, int rc)
{
    return store_sqlite_errno(db, rc);
}

typedef struct put_arg {
    const char *id, *model, *version, *strategy, *status;
    bool active;
    char *record;
    int64_t created_ms, now_ms;
} put_arg_t;

static void bind_put(sqlite3_stmt *st, const void *a)
{
    const put_arg_t *p = a;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, p->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, p->strategy, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, p->status, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, p->active ? 1 : 0);
    sqlite3_bind_text(st, 7, p->record, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, p->created_ms);
    sqlite3_bind_int64(st, 9, p->now_ms);
}

static int put_fn(sqlite3 *db, void *a)
{
    return store_sqlite_write(db,
                              "INSERT INTO deployments (id, model, version, strategy, status, active, "
                              "record_json, created_ms, updated_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) "
                              "ON CONFLICT (id) DO UPDATE SET status = excluded.status, active = "
                              "excluded.active, record_json = excluded.record_json, updated_ms = "
                              "excluded.updated_ms",
                              bind_put, a);
}

int store_deployment_put(store_t *st, const char *id, const char *model, const char *version,
                         const char *strategy, const char *status, bool active, const json_t *record,
                         int64_t created_ms)
{
    put_arg_t p = {id, model, version, strategy, status, active, NULL, created_ms, util_now_ms()};
    p.record = json_dumps(record, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!p.record)
        return -ENOMEM;
    int rc = store_sqlite_with_db(st, put_fn, &p);
    free(p.record);
    return rc;
}

typedef struct ev_arg {
    const char *id;
    int64_t at_ms;
    char *event;
} ev_arg_t;

static void bind_ev(sqlite3_stmt *st, const void *a)
{
    const ev_arg_t *e = a;
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e->at_ms);
    sqlite3_bind_text(st, 3, e->event, -1, SQLITE_STATIC);
}

static int ev_fn(sqlite3 *db, void *a)
{
    return store_sqlite_write(db,
                              "INSERT INTO deployment_events (deployment_id, seq, at_ms, event_json) "
                              "SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM deployment_events "
                              "WHERE deployment_id = ?1",
                              bind_ev, a);
}

int store_deployment_event_add(store_t *st, const char *id, int64_t at_ms, const json_t *event)
{
    ev_arg_t e = {id, at_ms, json_dumps(event, JSON_COMPACT)};
    if (!e.event)
        return -ENOMEM;
    int rc = store_sqlite_with_db(st, ev_fn, &e);
    free(e.event);
    return rc;
}

/* Runs fn(db, arg) on the store's connection, fn filling `out` (a new reference; NULL:
 * out of memory). 0 with *ret = out, or the error with out freed. */
static int collect(store_t *st, store_sqlite_fn fn, void *arg, json_t *out, json_t **ret)
{
    if (!out)
        return -ENOMEM;
    int rc = store_sqlite_with_db(st, fn, arg);
    if (rc < 0) {
        json_decref(out);
        return rc;
    }
    *ret = out;
    return 0;
}

typedef struct list_arg {
    const char *status, *model, *id;
    bool active_only, events;
    int limit;
    json_t *out;
} list_arg_t;

static int list_fn(sqlite3 *db, void *a)
{
    list_arg_t *l = a;
    sqlite3_stmt *st = NULL;
    const char *sql =
        l->events
            ? "SELECT event_json FROM deployment_events WHERE deployment_id = ?4 ORDER BY seq"
            : "SELECT record_json FROM deployments WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR "
              "model = ?2) AND (?3 = 0 OR active = 1) AND (?4 IS NULL OR id = ?4) ORDER BY created_ms "
              "DESC, id DESC LIMIT ?5";
    int rc = map_rc(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL));
    if (rc < 0)
        return rc;
    if (!l->events) {
        sqlite3_bind_text(st, 1, l->status, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, l->model, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, l->active_only ? 1 : 0);
        sqlite3_bind_int(st, 5, l->limit);
    }
    sqlite3_bind_text(st, 4, l->id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *txt = (const char *)sqlite3_column_text(st, 0);
        json_t *rec = txt ? json_loads(txt, 0, NULL) : NULL;
        if (rec)
            json_array_append_new(l->out, rec);
    }
    rc = map_rc(db, rc);
    sqlite3_finalize(st);
    return rc;
}

int store_deployment_list(store_t *st, const char *status, const char *model, bool active_only, int limit,
                          json_t **ret)
{
    list_arg_t l = {status,      model, NULL,
                    active_only, false, limit <= 0 || limit > MAX_LIST ? MAX_LIST : limit,
                    json_array()};
    return collect(st, list_fn, &l, l.out, ret);
}

int store_deployment_get(store_t *st, const char *id, json_t **ret)
{
    list_arg_t l = {NULL, NULL, id, false, false, 1, json_array()};
    json_t *found = NULL;
    int rc = collect(st, list_fn, &l, l.out, &found);
    if (rc < 0)
        return rc;
    if (json_array_size(found) == 0)
        rc = -ENOENT;
    else
        *ret = json_incref(json_array_get(found, 0));
    json_decref(found);
    return rc;
}

int store_deployment_events(store_t *st, const char *id, json_t **ret)
{
    list_arg_t l = {NULL, NULL, id, false, true, 0, json_array()};
    return collect(st, list_fn, &l, l.out, ret);
}

typedef struct fb_arg {
    const char *model;
    int64_t since_ms;
    const char *const *class_labels;
    size_t n_classes;
    json_t *out;
} fb_arg_t;

/* The feedback label as a class name (text), or NULL. */
static const char *feedback_label(const fb_arg_t *f, const json_t *lab, char *buf, size_t n)
{
    if (json_is_object(lab))
        lab = json_object_get(lab, "label");
    if (json_is_string(lab))
        return json_string_value(lab);
    if (json_is_integer(lab) || json_is_boolean(lab)) {
        json_int_t v = json_is_boolean(lab) ? json_is_true(lab) : json_integer_value(lab);
        if (f->class_labels && v >= 0 && (size_t)v < f->n_classes)
            return f->class_labels[v];
        snprintf(buf, n, "%lld", (long long)v);
        return buf;
    }
    return NULL;
}

/* The smallest id (a UUIDv7 prefix: its 48-bit millisecond time) of a prediction made at or
 * after since_ms. The id's time is taken just before created_ms: the range starts 1 s earlier.
 * Predictions are keyed by id alone, so "id >= floor" reads only the time range's rows. */
static void id_floor(int64_t since_ms, char buf[16])
{
    uint64_t lo = since_ms > 1000 ? (uint64_t)(since_ms - 1000) : 0;
    snprintf(buf, 16, "%08llx-%04llx", (unsigned long long)((lo >> 16) & 0xffffffffULL),
             (unsigned long long)(lo & 0xffffULL));
}

/* The labelled predictions of the model since since_ms: the key range of their time (not a
 * scan of the whole table), newest first, at most the newest 100000 labels. */
static int fb_fn(sqlite3 *db, void *a)
{
    fb_arg_t *f = a;
    sqlite3_stmt *st = NULL;
    char id_lo[16];
    id_floor(f->since_ms, id_lo);
    int rc = map_rc(db, sqlite3_prepare_v2(db,
                                       "SELECT p.arm, p.version, p.outputs_json, f.row_index, f.label_json "
                                       "FROM predictions p JOIN feedback f ON f.prediction_id = p.id "
                                       "WHERE p.id >= ?3 AND p.model = ?1 AND p.created_ms >= ?2 "
                                       "ORDER BY p.id DESC LIMIT 100000",
                                       -1, &st, NULL));
    if (rc < 0)
        return rc;
    sqlite3_bind_text(st, 1, f->model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, f->since_ms);
    sqlite3_bind_text(st, 3, id_lo, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *arm = (const char *)sqlite3_column_text(st, 0);
        const char *ver = (const char *)sqlite3_column_text(st, 1);
        const char *outs = (const char *)sqlite3_column_text(st, 2);
        int row = sqlite3_column_int(st, 3);
        const char *labs = (const char *)sqlite3_column_text(st, 4);
        if (!arm || !ver || !outs || !labs)
            continue;
        json_t *o = json_loads(outs, 0, NULL), *l = json_loads(labs, JSON_DECODE_ANY, NULL);
        json_t *pred = json_object_get(json_array_get(o, (size_t)row), "label");
        char buf[32];
        const char *truth = feedback_label(f, l, buf, sizeof(buf));
        if (json_is_string(pred) && truth) {
            json_t *ao = json_object_get(f->out, arm);
            if (!ao) {
                ao = json_object();
                json_object_set_new(f->out, arm, ao);
            }
            json_t *vo = json_object_get(ao, ver);
            if (!vo) {
                vo = json_pack("{s:i,s:i}", "labels", 0, "correct", 0);
                json_object_set_new(ao, ver, vo);
            }
            json_object_set_new(vo, "labels",
                                json_integer(json_integer_value(json_object_get(vo, "labels")) + 1));
            if (strcmp(json_string_value(pred), truth) == 0)
                json_object_set_new(vo, "correct",
                                    json_integer(json_integer_value(json_object_get(vo, "correct")) + 1));
        }
        json_decref(o);
        json_decref(l);
    }
    rc = map_rc(db, rc);
    sqlite3_finalize(st);
    return rc;
}

int store_deployment_feedback_accuracy(store_t *st, const char *model, int64_t since_ms,
                                       const char *const *class_labels, size_t n_classes, json_t **ret)
{
    fb_arg_t f = {model, since_ms, class_labels, n_classes, json_object()};
    return collect(st, fb_fn, &f, f.out, ret);
}

/* ---- answered predictions of one version on one arm in a time range -------------------- */

/* The rows both queries below read: ?1 model, ?2..?3 created_ms range, ?4 version, ?5 arm,
 * ?6 the id floor of ?2 (id_floor), which makes the scan a key range of the table. */
#define ANSWERED_WHERE                                                                                     \
    "WHERE id >= ?6 AND model = ?1 AND created_ms >= ?2 AND created_ms < ?3 AND version = ?4 AND arm = ?5 " \
    "AND status = 200"

static void bind_answered(sqlite3_stmt *st, const char *model, const char *version, const char *arm,
                          int64_t since_ms, int64_t until_ms, char id_lo[16])
{
    id_floor(since_ms, id_lo);
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since_ms);
    sqlite3_bind_int64(st, 3, until_ms);
    sqlite3_bind_text(st, 4, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, arm, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, id_lo, -1, SQLITE_STATIC);
}

/* recorded request latency */

#define MAX_LAT_ROWS 50000

typedef struct lat_arg {
    const char *model, *version, *arm;
    int64_t since_ms, until_ms;
    int limit;
    double *v;
    long n;
} lat_arg_t;

static int lat_fn(sqlite3 *db, void *a)
{
    lat_arg_t *l = a;
    sqlite3_stmt *st = NULL;
    int rc = map_rc(db, sqlite3_prepare_v2(db,
                                           "SELECT latency_ms FROM predictions " ANSWERED_WHERE
                                           " ORDER BY created_ms DESC LIMIT ?7",
                                           -1, &st, NULL));
    if (rc < 0)
        return rc;
    char id_lo[16];
    bind_answered(st, l->model, l->version, l->arm, l->since_ms, l->until_ms, id_lo);
    sqlite3_bind_int(st, 7, l->limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && l->n < l->limit)
        l->v[l->n++] = sqlite3_column_double(st, 0);
    rc = map_rc(db, rc == SQLITE_ROW ? SQLITE_DONE : rc);
    sqlite3_finalize(st);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int store_deployment_latency_p95(store_t *st, const char *model, const char *version, const char *arm,
                                 int64_t since_ms, int64_t until_ms, int limit, double *p95_ret, long *n_ret)
{
    *p95_ret = NAN;
    *n_ret = 0;
    if (limit <= 0)
        limit = 5000;
    if (limit > MAX_LAT_ROWS)
        limit = MAX_LAT_ROWS;
    lat_arg_t l = {model, version, arm, since_ms, until_ms, limit, malloc(sizeof(double) * (size_t)limit), 0};
    if (!l.v)
        return -ENOMEM;
    int rc = store_sqlite_with_reader(st, lat_fn, &l);
    if (rc == 0 && l.n > 0) {
        qsort(l.v, (size_t)l.n, sizeof(double), cmp_double);
        long rank = (long)ceil(0.95 * (double)l.n); /* nearest rank, 1-based */
        *p95_ret = l.v[(rank < 1 ? 1 : rank) - 1];
        *n_ret = l.n;
    }
    free(l.v);
    return rc;
}

/* count (a restart rebuilds evidence) */

typedef struct count_arg {
    const char *model, *version, *arm;
    int64_t since_ms, until_ms;
    long n;
} count_arg_t;

static int count_fn(sqlite3 *db, void *a)
{
    count_arg_t *c = a;
    sqlite3_stmt *st = NULL;
    int rc = map_rc(
        db, sqlite3_prepare_v2(db, "SELECT count(*) FROM predictions " ANSWERED_WHERE, -1, &st, NULL));
    if (rc < 0)
        return rc;
    char id_lo[16];
    bind_answered(st, c->model, c->version, c->arm, c->since_ms, c->until_ms, id_lo);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        c->n = (long)sqlite3_column_int64(st, 0);
        rc = SQLITE_DONE;
    }
    rc = map_rc(db, rc);
    sqlite3_finalize(st);
    return rc;
}

int store_deployment_count_answered(store_t *st, const char *model, const char *version, const char *arm,
                                    int64_t since_ms, int64_t until_ms, long *n_ret)
{
    *n_ret = 0;
    count_arg_t c = {model, version, arm, since_ms, until_ms, 0};
    int rc = store_sqlite_with_reader(st, count_fn, &c);
    if (rc == 0)
        *n_ret = c.n;
    return rc;
}
