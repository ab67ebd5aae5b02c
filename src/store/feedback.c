/* SPDX-License-Identifier: Apache-2.0 */
/* Feedback (delayed ground-truth labels) in the SQLite store; see feedback.h. Runs under
 * the store's mutex through store_sqlite_with_db, writes in one BEGIN IMMEDIATE
 * transaction per submission. */
#include "store/feedback.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite.h"

#define MANIFEST_CACHE 8

static int db_err(sqlite3 *db, int rc, char *err, size_t errlen)
{
    if (err)
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_NOMEM: return -ENOMEM;
    default: return -EIO;
    }
}

static json_t *load_manifest(sqlite3 *db, const char *name, const char *version)
{
    sqlite3_stmt *st = NULL;
    json_t *m = NULL;
    if (sqlite3_prepare_v2(db, "SELECT manifest_json FROM model_versions WHERE name = ?1 AND version = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *txt = (const char *)sqlite3_column_text(st, 0);
        if (txt)
            m = json_loads(txt, 0, NULL);
    }
    sqlite3_finalize(st);
    return m;
}

typedef struct submit_arg {
    store_feedback_item_t *items;
    size_t n;
    const char *source;
    int64_t now_ms;
    char *err;
    size_t errlen;
} submit_arg_t;

typedef struct cached {
    char model[256], version[256];
    json_t *manifest; /* NULL if unknown */
} cached_t;

static void set_msg(store_feedback_item_t *it, store_feedback_outcome_t o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_msg(store_feedback_item_t *it, store_feedback_outcome_t o, const char *fmt, ...)
{
    it->outcome = o;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->message, sizeof(it->message), fmt, ap);
    va_end(ap);
}

/* Canonical JSON text of the label for this manifest, or NULL with the item marked
 * INVALID. Caller frees. */
static char *canonical_label(store_feedback_item_t *it, const json_t *manifest)
{
    const char *task = json_string_value(json_object_get(manifest, "task"));
    const json_t *labels = json_object_get(manifest, "class_labels");
    const json_t *l = it->label;
    if (task && strcmp(task, "regression") == 0) {
        if (!json_is_number(l) || !isfinite(json_number_value(l))) {
            set_msg(it, FEEDBACK_INVALID, "label must be a number for the regression model");
            return NULL;
        }
        return json_dumps(l, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    }
    size_t k = json_array_size(labels);
    if (json_is_integer(l)) {
        json_int_t i = json_integer_value(l);
        if (i < 0 || (size_t)i >= k) {
            set_msg(it, FEEDBACK_INVALID, "label index must be 0..%zu (class_labels)", k ? k - 1 : 0);
            return NULL;
        }
        return json_dumps(json_array_get(labels, (size_t)i), JSON_ENCODE_ANY);
    }
    if (json_is_string(l)) {
        for (size_t i = 0; i < k; i++) {
            const char *c = json_string_value(json_array_get(labels, i));
            if (c && strcmp(c, json_string_value(l)) == 0)
                return json_dumps(l, JSON_ENCODE_ANY);
        }
        set_msg(it, FEEDBACK_INVALID, "label is not one of the model's class_labels");
        return NULL;
    }
    set_msg(it, FEEDBACK_INVALID, "label must be one of the class_labels (string) or its index (integer)");
    return NULL;
}

static int submit_fn(sqlite3 *db, void *arg)
{
    submit_arg_t *a = arg;
    sqlite3_stmt *pred = NULL, *fb = NULL, *ins = NULL;
    cached_t cache[MANIFEST_CACHE] = {0};
    size_t ncache = 0, next = 0;
    bool bad = false, in_txn = false;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_err(db, rc, a->err, a->errlen);
    in_txn = true;
    if ((rc = sqlite3_prepare_v2(db, "SELECT model, version, n_rows FROM predictions WHERE id = ?1", -1,
                                 &pred, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(
             db, "SELECT label_json FROM feedback WHERE prediction_id = ?1 AND row_index = ?2", -1, &fb,
             NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(
             db,
             "INSERT INTO feedback (prediction_id, row_index, label_json, received_ms, source) "
             "VALUES (?1, ?2, ?3, ?4, ?5)",
             -1, &ins, NULL)) != SQLITE_OK) {
        rc = db_err(db, rc, a->err, a->errlen);
        goto out;
    }
    for (size_t i = 0; i < a->n; i++) {
        store_feedback_item_t *it = &a->items[i];
        sqlite3_reset(pred);
        sqlite3_bind_text(pred, 1, it->prediction_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(pred);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            rc = db_err(db, rc, a->err, a->errlen);
            goto out;
        }
        if (rc == SQLITE_DONE) {
            set_msg(it, FEEDBACK_NOT_FOUND, "no prediction with id '%.40s'", it->prediction_id);
            bad = true;
            continue;
        }
        const char *model = (const char *)sqlite3_column_text(pred, 0);
        const char *version = (const char *)sqlite3_column_text(pred, 1);
        int n_rows = sqlite3_column_int(pred, 2);
        if (it->row < 0 || it->row >= n_rows) {
            set_msg(it, FEEDBACK_INVALID, "row must be 0..%d for this prediction", n_rows - 1);
            bad = true;
            continue;
        }
        json_t *manifest = NULL;
        for (size_t c = 0; c < ncache; c++)
            if (strcmp(cache[c].model, model) == 0 && strcmp(cache[c].version, version) == 0)
                manifest = cache[c].manifest;
        if (!manifest) {
            cached_t *slot = &cache[next];
            if (ncache < MANIFEST_CACHE)
                ncache++;
            next = (next + 1) % MANIFEST_CACHE;
            json_decref(slot->manifest);
            snprintf(slot->model, sizeof(slot->model), "%s", model);
            snprintf(slot->version, sizeof(slot->version), "%s", version);
            slot->manifest = manifest = load_manifest(db, model, version);
        }
        if (!manifest) {
            set_msg(it, FEEDBACK_INVALID, "the model version of this prediction is no longer registered");
            bad = true;
            continue;
        }
        char *canon = canonical_label(it, manifest);
        if (!canon) {
            bad = true;
            continue;
        }
        sqlite3_reset(fb);
        sqlite3_bind_text(fb, 1, it->prediction_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(fb, 2, it->row);
        rc = sqlite3_step(fb);
        if (rc == SQLITE_ROW) {
            const char *old = (const char *)sqlite3_column_text(fb, 0);
            /* written by an earlier item of this batch, not before it (review46 #7: two labels
             * for one row in a batch were called an attempt to change a stored label) */
            size_t first = i;
            for (size_t j = 0; j < i && first == i; j++)
                if (a->items[j].outcome == FEEDBACK_STORED && a->items[j].row == it->row &&
                    strcmp(a->items[j].prediction_id, it->prediction_id) == 0)
                    first = j;
            if (old && strcmp(old, canon) == 0) {
                set_msg(it, FEEDBACK_DUPLICATE, "this label was already recorded");
            } else if (first < i) {
                set_msg(it, FEEDBACK_INVALID,
                        "prediction '%.40s' row %d is given two different labels in this batch (items %zu and %zu)",
                        it->prediction_id, it->row, first, i);
                bad = true;
            } else {
                set_msg(it, FEEDBACK_CONFLICT,
                        "prediction '%.40s' row %d already has a different label; labels are immutable",
                        it->prediction_id, it->row);
                bad = true;
            }
            free(canon);
            continue;
        }
        if (rc != SQLITE_DONE) {
            free(canon);
            rc = db_err(db, rc, a->err, a->errlen);
            goto out;
        }
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, it->prediction_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(ins, 2, it->row);
        sqlite3_bind_text(ins, 3, canon, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 4, a->now_ms);
        if (a->source)
            sqlite3_bind_text(ins, 5, a->source, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(ins, 5);
        rc = sqlite3_step(ins);
        free(canon);
        if (rc != SQLITE_DONE) {
            rc = db_err(db, rc, a->err, a->errlen);
            goto out;
        }
        set_msg(it, FEEDBACK_STORED, "stored");
    }
    rc = 0;
    if (bad) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        in_txn = false;
    } else {
        int c = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (c != SQLITE_OK)
            rc = db_err(db, c, a->err, a->errlen);
        else
            in_txn = false;
    }
out:
    if (in_txn)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_finalize(pred);
    sqlite3_finalize(fb);
    sqlite3_finalize(ins);
    for (size_t c = 0; c < ncache; c++)
        json_decref(cache[c].manifest);
    return rc;
}

int store_feedback_submit(store_t *s, store_feedback_item_t *items, size_t n, const char *source,
                          int64_t now_ms, char *err, size_t errlen)
{
    submit_arg_t a = {items, n, source, now_ms, err, errlen};
    int rc = store_sqlite_with_db(s, submit_fn, &a);
    if (rc == -ENOTSUP && err)
        snprintf(err, errlen, "feedback needs the SQLite store");
    return rc;
}

typedef struct window_arg {
    int64_t since_ms;
    size_t max;
    json_t *out;
} window_arg_t;

static int window_fn(sqlite3 *db, void *arg)
{
    window_arg_t *a = arg;
    sqlite3_stmt *st = NULL;
    int rc =
        sqlite3_prepare_v2(db,
                           "SELECT p.model, p.version, "
                           "json_extract(p.outputs_json, '$[' || f.row_index || '].label'), "
                           "json_extract(p.outputs_json, '$[' || f.row_index || '].value'), f.label_json "
                           "FROM feedback f JOIN predictions p ON p.id = f.prediction_id "
                           "WHERE f.received_ms >= ?1 ORDER BY f.received_ms DESC LIMIT ?2",
                           -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_err(db, rc, NULL, 0);
    sqlite3_bind_int64(st, 1, a->since_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *pred;
        if (sqlite3_column_type(st, 2) == SQLITE_TEXT)
            pred = json_string((const char *)sqlite3_column_text(st, 2));
        else if (sqlite3_column_type(st, 3) != SQLITE_NULL)
            pred = json_real(sqlite3_column_double(st, 3));
        else
            continue;
        const char *lj = (const char *)sqlite3_column_text(st, 4);
        json_t *label = lj ? json_loads(lj, JSON_DECODE_ANY, NULL) : NULL;
        if (!label || !pred) {
            json_decref(pred);
            json_decref(label);
            continue;
        }
        json_array_append_new(a->out, json_pack("[s,s,o,o]", (const char *)sqlite3_column_text(st, 0),
                                                (const char *)sqlite3_column_text(st, 1), pred, label));
    }
    int out = rc == SQLITE_DONE ? 0 : db_err(db, rc, NULL, 0);
    sqlite3_finalize(st);
    return out;
}

int store_feedback_window(store_t *s, int64_t since_ms, size_t max, json_t **ret)
{
    window_arg_t a = {since_ms, max, json_array()};
    if (!a.out)
        return -ENOMEM;
    int rc = store_sqlite_with_reader(s, window_fn, &a); /* long: the recorder goes on meanwhile */
    if (rc < 0) {
        json_decref(a.out);
        return rc;
    }
    *ret = a.out;
    return 0;
}

typedef struct manifest_arg {
    const char *name, *version;
    json_t *out;
} manifest_arg_t;

static int manifest_fn(sqlite3 *db, void *arg)
{
    manifest_arg_t *a = arg;
    a->out = load_manifest(db, a->name, a->version);
    return a->out ? 0 : -ENOENT;
}

int store_feedback_manifest(store_t *s, const char *name, const char *version, json_t **ret)
{
    manifest_arg_t a = {name, version, NULL};
    int rc = store_sqlite_with_db(s, manifest_fn, &a);
    if (rc == 0)
        *ret = a.out;
    return rc;
}
