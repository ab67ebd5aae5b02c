/* SPDX-License-Identifier: Apache-2.0 */
/* Model registry: the in-memory map from model name to loaded handles, reconciled with
 * the store, and model_register, the one path by which a version directory enters
 * MODEL_STORAGE_PATH and the store (shared by the CLI and the API). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "model/registry.h"
#include "model/schema.h"

/* DESIGN
 * - entries: one per model name that has a loaded stable handle, a cached version pin,
 *   or a stable version that failed to load (stable == NULL, stable_err set). Sorted by
 *   name. Guarded by `lock` (rwlock, writer-preferring): readers look up and take a
 *   reference; writers install or remove handles. Nothing slow (loading a booster,
 *   freeing one, querying the store) happens while `lock` is held.
 * - A slot (stable or pin) owns one reference. Replacing a slot installs the new handle
 *   under the write lock and drops the old slot reference after unlocking, so requests
 *   that acquired the old handle keep predicting on it until they unref.
 * - `sync_lock` serialises model_registry_sync (and poll) so two reconciliations never
 *   load the same version twice or race on `generation`. Pins are loaded by acquire
 *   without it; a pin is re-checked under the write lock before insertion.
 * - Pins are capped per model (oldest evicted) so pinned requests cannot grow memory
 *   without bound. */

#define MAX_PINS 8

/* vsnprintf into a caller's error buffer; truncation of long paths is acceptable. */
static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* buf = a/b; -ENAMETOOLONG rather than a silently truncated path. */
static int path_join(char *buf, size_t n, const char *a, const char *b)
{
    int len = snprintf(buf, n, "%s/%s", a, b);
    return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

typedef struct entry {
    char *name;
    model_handle_t *stable;
    int stable_err; /* last load error of the stable version while stable == NULL */
    char *stable_errmsg; /* its text, as logged (paths relative to MODEL_STORAGE_PATH), for /ready */
    char *stable_errver; /* the version that failed */
    model_handle_t *pins[MAX_PINS];
    size_t n_pins;
} entry_t;

struct model_registry {
    store_t *store;
    char *storage_path;
    pthread_rwlock_t lock;
    entry_t **entries;
    size_t n_entries, cap_entries;
    pthread_mutex_t sync_lock;
    int64_t generation;
    bool have_generation;
};

static const char *handle_version(const model_handle_t *h)
{
    return model_handle_manifest(h)->version;
}

int model_registry_new(store_t *store, const char *storage_path, model_registry_t **ret)
{
    model_registry_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->store = store;
    r->storage_path = strdup(storage_path);
    if (!r->storage_path) {
        free(r);
        return -ENOMEM;
    }
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Readers come from every worker thread; without this a busy server starves sync. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&r->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&r->sync_lock, NULL);
    *ret = r;
    return 0;
}

static void entry_free(entry_t *e)
{
    if (!e)
        return;
    model_handle_unref(e->stable);
    for (size_t i = 0; i < e->n_pins; i++)
        model_handle_unref(e->pins[i]);
    free(e->stable_errmsg);
    free(e->stable_errver);
    free(e->name);
    free(e);
}

void model_registry_free(model_registry_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_entries; i++)
        entry_free(r->entries[i]);
    free(r->entries);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->sync_lock);
    free(r->storage_path);
    free(r);
}

/* Caller holds lock (read or write). */
static entry_t *find_entry(model_registry_t *r, const char *name, size_t *ret_pos)
{
    size_t lo = 0, hi = r->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->entries[mid]->name, name);
        if (c == 0) {
            if (ret_pos)
                *ret_pos = mid;
            return r->entries[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (ret_pos)
        *ret_pos = lo;
    return NULL;
}

/* Caller holds the write lock. */
static entry_t *get_or_create_entry(model_registry_t *r, const char *name)
{
    size_t pos;
    entry_t *e = find_entry(r, name, &pos);
    if (e)
        return e;
    if (r->n_entries == r->cap_entries) {
        size_t ncap = r->cap_entries ? r->cap_entries * 2 : 8;
        entry_t **n = realloc(r->entries, ncap * sizeof(*n));
        if (!n)
            return NULL;
        r->entries = n;
        r->cap_entries = ncap;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->name = strdup(name);
    if (!e->name) {
        free(e);
        return NULL;
    }
    memmove(r->entries + pos + 1, r->entries + pos, (r->n_entries - pos) * sizeof(*r->entries));
    r->entries[pos] = e;
    r->n_entries++;
    return e;
}

/* Caller holds the write lock; the entry is returned to be freed after unlocking. */
static entry_t *remove_entry_if_empty(model_registry_t *r, entry_t *e)
{
    if (e->stable || e->n_pins || e->stable_err)
        return NULL;
    size_t pos;
    if (find_entry(r, e->name, &pos) != e)
        return NULL;
    memmove(r->entries + pos, r->entries + pos + 1, (r->n_entries - pos - 1) * sizeof(*r->entries));
    r->n_entries--;
    return e;
}

void model_version_dir(const char *storage_path, const char *name, const char *version, const char *stored_path,
                       char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s/%s", storage_path, name, version);
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
        return;
    if (stored_path && *stored_path)
        snprintf(buf, n, "%s", stored_path);
}

const char *model_registry_storage_path(const model_registry_t *r)
{
    return r->storage_path;
}

static void version_dir(const model_registry_t *r, const char *name, const char *version,
                        const char *store_path, char *buf, size_t n)
{
    model_version_dir(r->storage_path, name, version, store_path, buf, n);
}

static const char *row_str(const json_t *row, const char *key)
{
    return json_string_value(json_object_get(row, key));
}

/* A load error for /ready (unauthenticated) and the request log: msg with the version's
 * directory written as <name>/<version> and every other "<MODEL_STORAGE_PATH>/" taken out, so
 * that it names the artifact (imptest/1.0.0/model.ubj) without disclosing where the store
 * lives, also when the directory is the path recorded at registration (MODEL_STORAGE_PATH
 * spelled otherwise, or the version's directory missing: review70 #2). NULL when out of
 * memory. Caller frees. */
static char *relative_message(const model_registry_t *r, const char *msg, const char *name, const char *version,
                              const char *store_path)
{
    char dir[PATH_MAX], rel[2 * 129];
    version_dir(r, name, version, store_path, dir, sizeof(dir));
    snprintf(rel, sizeof(rel), "%s/%s", name, version);
    const char *base = r->storage_path;
    size_t dl = strlen(dir), rl = strlen(rel), bl = strlen(base);
    char *out = malloc(strlen(msg) + 1 + (strlen(msg) / (dl ? dl : 1) + 1) * rl), *o = out;
    if (!out)
        return NULL;
    while (*msg) {
        if (dl && strncmp(msg, dir, dl) == 0 && (msg[dl] == '/' || msg[dl] == '\0' || msg[dl] == ' ' ||
                                                 msg[dl] == ':' || msg[dl] == ',')) {
            memcpy(o, rel, rl);
            o += rl;
            msg += dl;
        } else if (bl && strncmp(msg, base, bl) == 0 && msg[bl] == '/') {
            msg += bl + 1;
        } else {
            *o++ = *msg++;
        }
    }
    *o = '\0';
    return out;
}

int model_registry_open_version(model_registry_t *r, const json_t *row, model_handle_t **ret, char *err,
                                size_t errlen)
{
    char dir[PATH_MAX];
    const char *name = row_str(row, "name"), *version = row_str(row, "version"),
               *sha = row_str(row, "sha256");
    if (!name || !version || !util_is_safe_name(name) || !util_is_safe_name(version)) {
        errf(err, errlen, "store row has an invalid name or version");
        return -EINVAL;
    }
    version_dir(r, name, version, row_str(row, "path"), dir, sizeof(dir));
    model_handle_t *h = NULL;
    int rc = model_handle_open(dir, &h, err, errlen);
    if (rc < 0)
        return rc;
    const model_manifest_t *m = model_handle_manifest(h);
    if (strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0) {
        errf(err, errlen, "%s holds %s/%s, not the registered %s/%s", dir, m->name, m->version, name,
             version);
        model_handle_unref(h);
        return -EINVAL;
    }
    if (sha && strcmp(sha, m->booster_sha256) != 0) {
        errf(err, errlen, "booster sha256 %s differs from the registered %s", m->booster_sha256, sha);
        model_handle_unref(h);
        return -EBADMSG;
    }
    *ret = h;
    return 0;
}

static int open_version(model_registry_t *r, const json_t *row, model_handle_t **ret, char *err,
                        size_t errlen)
{
    return model_registry_open_version(r, row, ret, err, errlen);
}

static bool row_registered(const json_t *list, const char *name, const char *version)
{
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        const char *n = row_str(row, "name"), *v = row_str(row, "version");
        if (n && v && strcmp(n, name) == 0 && (!version || strcmp(v, version) == 0))
            return true;
    }
    return false;
}

static const json_t *stable_row(const json_t *list, const char *name)
{
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        const char *n = row_str(row, "name");
        if (n && strcmp(n, name) == 0 && json_is_true(json_object_get(row, "stable")))
            return row;
    }
    return NULL;
}

/* Collects handles to drop after unlocking. */
typedef struct drop_list {
    model_handle_t **h;
    size_t n, cap;
} drop_list_t;

static void drop_add(drop_list_t *d, model_handle_t *h)
{
    if (!h)
        return;
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 16;
        model_handle_t **n = realloc(d->h, ncap * sizeof(*n));
        if (!n) {
            /* Leaking a reference beats a use-after-free; cannot happen in practice. */
            return;
        }
        d->h = n;
        d->cap = ncap;
    }
    d->h[d->n++] = h;
}

static void drop_all(drop_list_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        model_handle_unref(d->h[i]);
    free(d->h);
    d->h = NULL;
    d->n = d->cap = 0;
}

static int sync_locked(model_registry_t *r)
{
    int64_t gen = 0;
    bool have_gen = store_registry_generation(r->store, &gen) == 0;
    json_t *list = NULL;
    int rc = store_model_list(r->store, &list);
    if (rc < 0) {
        log_error("model registry: cannot list models", "{s:i}", "errno", -rc);
        return rc;
    }
    int changes = 0;
    char err[1024];
    drop_list_t drops = {0};

    /* 1. Load each model's stable version where it is not the one serving. */
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        if (!json_is_true(json_object_get(row, "stable")))
            continue;
        const char *name = row_str(row, "name"), *version = row_str(row, "version");
        if (!name || !version)
            continue;
        pthread_rwlock_rdlock(&r->lock);
        entry_t *e = find_entry(r, name, NULL);
        bool same = e && e->stable && strcmp(handle_version(e->stable), version) == 0;
        pthread_rwlock_unlock(&r->lock);
        if (same)
            continue;
        model_handle_t *h = NULL;
        err[0] = '\0';
        rc = open_version(r, row, &h, err, sizeof(err));
        /* made before taking the lock: nothing slow under it */
        char *msg = rc < 0 && err[0] ? relative_message(r, err, name, version, row_str(row, "path")) : NULL;
        pthread_rwlock_wrlock(&r->lock);
        e = get_or_create_entry(r, name);
        if (rc == 0 && e) {
            drop_add(&drops, e->stable);
            e->stable = h;
            e->stable_err = 0;
            free(e->stable_errmsg);
            e->stable_errmsg = NULL;
            changes++;
        } else if (e && !e->stable) {
            /* registered, so never "unknown": a missing directory (the models volume not
             * mounted) is a model that does not load, 503, not a 404 (review70 #1) */
            e->stable_err = rc == -ENOENT ? -EIO : rc < 0 ? rc : -ENOMEM;
            free(e->stable_errmsg);
            e->stable_errmsg = msg;
            msg = NULL;
            free(e->stable_errver);
            e->stable_errver = strdup(version);
        }
        pthread_rwlock_unlock(&r->lock);
        free(msg);
        if (rc == 0 && !e)
            model_handle_unref(h);
        if (rc == 0 && e)
            log_info("model loaded", "{s:s, s:s}", "model", name, "version", version);
        else
            log_error("model failed to load; previous version (if any) keeps serving", "{s:s, s:s, s:s}",
                      "model", name, "version", version, "error", err[0] ? err : "out of memory");
    }

    /* 2. Drop what the store no longer has: models without a stable version, unregistered
     *    pins. */
    pthread_rwlock_wrlock(&r->lock);
    for (size_t k = 0; k < r->n_entries;) {
        entry_t *e = r->entries[k];
        const json_t *srow = stable_row(list, e->name);
        if (!srow && (e->stable || e->stable_err)) {
            drop_add(&drops, e->stable);
            e->stable = NULL;
            e->stable_err = 0;
            free(e->stable_errmsg);
            e->stable_errmsg = NULL;
            changes++;
            log_info("model unloaded", "{s:s}", "model", e->name);
        }
        size_t kept = 0;
        for (size_t p = 0; p < e->n_pins; p++) {
            if (row_registered(list, e->name, handle_version(e->pins[p])))
                e->pins[kept++] = e->pins[p];
            else
                drop_add(&drops, e->pins[p]);
        }
        e->n_pins = kept;
        entry_t *gone = remove_entry_if_empty(r, e);
        if (gone)
            entry_free(gone); /* holds no handles: cheap */
        else
            k++;
    }
    if (have_gen) {
        r->generation = gen;
        r->have_generation = true;
    }
    pthread_rwlock_unlock(&r->lock);
    drop_all(&drops);
    json_decref(list);
    return changes;
}

int model_registry_sync(model_registry_t *r)
{
    pthread_mutex_lock(&r->sync_lock);
    int rc = sync_locked(r);
    pthread_mutex_unlock(&r->sync_lock);
    return rc;
}

int model_registry_poll(model_registry_t *r)
{
    int64_t gen;
    int rc = store_registry_generation(r->store, &gen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&r->sync_lock);
    if (r->have_generation && gen == r->generation) {
        pthread_mutex_unlock(&r->sync_lock);
        return 0;
    }
    rc = sync_locked(r);
    pthread_mutex_unlock(&r->sync_lock);
    return rc;
}

/* Caller holds lock. New reference to the loaded handle for version (NULL = stable). */
static model_handle_t *lookup(model_registry_t *r, const char *name, const char *version, int *ret_err)
{
    entry_t *e = find_entry(r, name, NULL);
    if (!e) {
        *ret_err = -ENOENT;
        return NULL;
    }
    if (!version) {
        *ret_err = e->stable ? 0 : (e->stable_err ? e->stable_err : -ENOENT);
        return model_handle_ref(e->stable);
    }
    if (e->stable && strcmp(handle_version(e->stable), version) == 0)
        return model_handle_ref(e->stable);
    for (size_t i = 0; i < e->n_pins; i++)
        if (strcmp(handle_version(e->pins[i]), version) == 0)
            return model_handle_ref(e->pins[i]);
    *ret_err = -ENOENT;
    return NULL;
}

model_handle_t *model_registry_acquire(model_registry_t *r, const char *name, const char *version,
                                       int *ret_err)
{
    return model_registry_acquire_why(r, name, version, ret_err, NULL);
}

model_handle_t *model_registry_acquire_why(model_registry_t *r, const char *name, const char *version,
                                           int *ret_err, model_unavailable_t *why)
{
    int err = 0;
    if (!name || !util_is_safe_name(name) || (version && !util_is_safe_name(version))) {
        if (ret_err)
            *ret_err = -ENOENT;
        return NULL;
    }
    pthread_rwlock_rdlock(&r->lock);
    model_handle_t *h = lookup(r, name, version, &err);
    if (!h && !version && why && err != -ENOENT) {
        /* the stable version that failed to load, and why, as logged at load (review67 #6) */
        const entry_t *e = find_entry(r, name, NULL);
        snprintf(why->version, sizeof(why->version), "%s", e && e->stable_errver ? e->stable_errver : "");
        snprintf(why->error, sizeof(why->error), "%s",
                 e && e->stable_errmsg ? e->stable_errmsg : strerror(-err));
    }
    pthread_rwlock_unlock(&r->lock);
    if (h || !version) {
        if (ret_err)
            *ret_err = h ? 0 : err;
        return h;
    }

    /* A pinned version not loaded yet: is it registered? */
    json_t *list = NULL;
    int rc = store_model_list(r->store, &list);
    if (rc < 0) {
        if (ret_err)
            *ret_err = rc;
        return NULL;
    }
    const json_t *row = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *n = row_str(it, "name"), *v = row_str(it, "version");
        if (n && v && strcmp(n, name) == 0 && strcmp(v, version) == 0)
            row = it;
    }
    if (!row) {
        json_decref(list);
        if (ret_err)
            *ret_err = -ENOENT;
        return NULL;
    }
    char msg[1024] = "";
    model_handle_t *loaded = NULL;
    rc = open_version(r, row, &loaded, msg, sizeof(msg));
    char *rel = rc < 0 && why ? relative_message(r, msg, name, version, row_str(row, "path")) : NULL;
    json_decref(list);
    if (rc < 0) {
        log_error("pinned model version failed to load", "{s:s, s:s, s:s}", "model", name, "version", version,
                  "error", msg);
        if (why) { /* review69 #4 */
            snprintf(why->version, sizeof(why->version), "%s", version);
            snprintf(why->error, sizeof(why->error), "%s", rel ? rel : strerror(-rc));
            free(rel);
        }
        if (ret_err)
            *ret_err = rc == -ENOENT ? -EIO : rc; /* registered, so not "unknown" */
        return NULL;
    }

    model_handle_t *evicted = NULL;
    pthread_rwlock_wrlock(&r->lock);
    h = lookup(r, name, version, &err); /* another thread may have loaded it meanwhile */
    if (!h) {
        entry_t *e = get_or_create_entry(r, name);
        if (e) {
            if (e->n_pins == MAX_PINS) {
                evicted = e->pins[0];
                memmove(e->pins, e->pins + 1, (MAX_PINS - 1) * sizeof(*e->pins));
                e->n_pins--;
            }
            e->pins[e->n_pins++] = loaded;
            h = model_handle_ref(loaded);
            loaded = NULL; /* the slot owns it now */
        }
    }
    pthread_rwlock_unlock(&r->lock);
    model_handle_unref(evicted);
    model_handle_unref(loaded);
    if (ret_err)
        *ret_err = h ? 0 : -ENOMEM;
    return h;
}

static json_t *feature_names_json(const model_manifest_t *m)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < m->n_features; i++)
        json_array_append_new(a, json_string(m->features[i].name));
    return a;
}

json_t *model_registry_list_json(model_registry_t *r)
{
    /* Take references under the lock, build JSON outside it. */
    model_handle_t **hs = NULL;
    size_t n = 0;
    pthread_rwlock_rdlock(&r->lock);
    hs = calloc(r->n_entries ? r->n_entries : 1, sizeof(*hs));
    if (hs)
        for (size_t i = 0; i < r->n_entries; i++)
            if (r->entries[i]->stable)
                hs[n++] = model_handle_ref(r->entries[i]->stable);
    pthread_rwlock_unlock(&r->lock);
    if (!hs)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const model_manifest_t *m = model_handle_manifest(hs[i]);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:{s:i}}", "name", m->name, "version", m->version,
                              "status", "serving", "task", model_task_name(m->task), "features",
                              feature_names_json(m), "traffic", m->version, 100);
        if (arr && o)
            json_array_append_new(arr, o);
        else
            json_decref(o);
        model_handle_unref(hs[i]);
    }
    free(hs);
    return arr;
}

static json_t *schema_json(const model_manifest_t *m)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < m->n_features; i++) {
        const model_feature_t *f = &m->features[i];
        json_t *o =
            json_pack("{s:s, s:s, s:o, s:o, s:b, s:o, s:o}", "name", f->name, "type",
                      feature_type_name(f->type), "unit", f->unit ? json_string(f->unit) : json_null(),
                      "description", f->description ? json_string(f->description) : json_null(), "required",
                      f->required, "min", f->has_min ? json_real(f->min) : json_null(), "max",
                      f->has_max ? json_real(f->max) : json_null());
        if (o)
            json_array_append_new(a, o);
    }
    return a;
}

json_t *model_registry_model_json(model_registry_t *r, const char *name)
{
    if (!name || !util_is_safe_name(name))
        return NULL;
    json_t *list = NULL;
    if (store_model_list(r->store, &list) < 0)
        return NULL;
    json_t *versions = json_array();
    const json_t *last = NULL, *stable = NULL;

    model_handle_t *serving = NULL;
    char **loaded = NULL; /* versions loaded in memory */
    size_t n_loaded = 0;
    pthread_rwlock_rdlock(&r->lock);
    entry_t *e = find_entry(r, name, NULL);
    if (e) {
        serving = model_handle_ref(e->stable);
        loaded = calloc(MAX_PINS + 1, sizeof(char *));
        if (loaded) {
            if (e->stable)
                loaded[n_loaded++] = strdup(handle_version(e->stable));
            for (size_t i = 0; i < e->n_pins; i++)
                loaded[n_loaded++] = strdup(handle_version(e->pins[i]));
        }
    }
    pthread_rwlock_unlock(&r->lock);

    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        const char *n = row_str(row, "name"), *v = row_str(row, "version");
        if (!n || !v || strcmp(n, name) != 0)
            continue;
        bool is_loaded = false;
        for (size_t k = 0; k < n_loaded; k++)
            if (loaded[k] && strcmp(loaded[k], v) == 0)
                is_loaded = true;
        json_array_append_new(
            versions, json_pack("{s:s, s:O, s:O, s:b, s:b}", "version", v, "sha256",
                                json_object_get(row, "sha256") ? json_object_get(row, "sha256") : json_null(),
                                "registered_at",
                                json_object_get(row, "registered_at") ? json_object_get(row, "registered_at")
                                                                      : json_null(),
                                "stable", json_is_true(json_object_get(row, "stable")), "loaded", is_loaded));
        last = row;
        if (json_is_true(json_object_get(row, "stable")))
            stable = row;
    }
    for (size_t k = 0; k < n_loaded; k++)
        free(loaded[k]);
    free(loaded);

    json_t *out = NULL;
    if (!last) { /* not registered */
        json_decref(versions);
        goto done;
    }
    /* Details come from the serving handle, else from the manifest on disk. */
    model_manifest_t *disk = NULL;
    const model_manifest_t *m = serving ? model_handle_manifest(serving) : NULL;
    if (!m) {
        char dir[PATH_MAX], err[512];
        const json_t *src = stable ? stable : last;
        version_dir(r, name, row_str(src, "version"), row_str(src, "path"), dir, sizeof(dir));
        if (model_manifest_load(dir, &disk, err, sizeof(err)) == 0)
            m = disk;
    }
    out = json_pack("{s:s, s:o, s:o}", "name", name, "serving_version",
                    serving ? json_string(handle_version(serving)) : json_null(), "versions", versions);
    if (out && m) {
        json_t *labels = json_array();
        for (size_t k = 0; labels && k < m->n_classes; k++)
            json_array_append_new(labels, json_string(m->class_labels[k]));
        json_object_set_new(out, "manifest_version", json_string(m->version));
        json_object_set_new(out, "schema", schema_json(m));
        json_object_set_new(out, "task", json_string(model_task_name(m->task)));
        json_object_set_new(out, "class_labels", labels);
        json_object_set_new(out, "threshold",
                            m->task == MODEL_TASK_BINARY ? json_real(m->threshold) : json_null());
        json_object_set_new(
            out, "metrics",
            json_pack("{s:O, s:O}", "training", m->training_metrics, "holdout", m->holdout_metrics));
        json_object_set_new(out, "description", m->description ? json_string(m->description) : json_null());
        json_object_set_new(out, "synthetic", json_boolean(m->synthetic));
    }
    model_manifest_free(disk);
done:
    model_handle_unref(serving);
    json_decref(list);
    return out;
}

size_t model_registry_loaded_count(model_registry_t *r)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i]->stable)
            n++;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

void model_registry_each_stable(model_registry_t *r, model_registry_each_fn fn, void *arg)
{
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i]->stable)
            fn(r->entries[i]->name, model_handle_manifest(r->entries[i]->stable)->version, arg);
    pthread_rwlock_unlock(&r->lock);
}

json_t *model_registry_failed_json(model_registry_t *r)
{
    json_t *out = json_array();
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->n_entries; i++) {
        const entry_t *e = r->entries[i];
        if (!e->stable && e->stable_err)
            json_array_append_new(out, json_pack("{s:s,s:s}", "model", e->name, "error",
                                                 e->stable_errmsg ? e->stable_errmsg : strerror(-e->stable_err)));
    }
    pthread_rwlock_unlock(&r->lock);
    return out;
}

/* ---- registration ---- */

/* Same artifact: identical manifest JSON and a booster matching its sha256. */
static int same_artifact(const char *dir, const json_t *manifest_json, const char *booster_file,
                         const char *sha, bool *ret_same)
{
    char path[PATH_MAX], got[SHA256_HEX_LEN];
    *ret_same = false;
    if (path_join(path, sizeof(path), dir, MODEL_MANIFEST_FILE) < 0)
        return -ENAMETOOLONG;
    json_t *other = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    if (!other)
        return 0;
    bool eq = json_equal(other, (json_t *)manifest_json);
    json_decref(other);
    if (!eq)
        return 0;
    if (path_join(path, sizeof(path), dir, booster_file) < 0)
        return -ENAMETOOLONG;
    if (util_sha256_file(path, got) < 0)
        return 0;
    *ret_same = strcmp(got, sha) == 0;
    return 0;
}

static int copy_artifact(const char *src_dir, const char *tmp, const model_manifest_t *m,
                         const json_t *manifest_json, char *err, size_t errlen)
{
    char from[PATH_MAX], to[PATH_MAX];
    int rc;
    if (mkdir(tmp, 0755) < 0) {
        rc = -errno;
        errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return rc;
    }
    const char *files[] = {MODEL_MANIFEST_FILE, m->booster_file};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        if (path_join(from, sizeof(from), src_dir, files[i]) < 0 ||
            path_join(to, sizeof(to), tmp, files[i]) < 0) {
            errf(err, errlen, "path too long");
            return -ENAMETOOLONG;
        }
        rc = util_copy_file_atomic(from, to, 0644);
        if (rc < 0) {
            errf(err, errlen, "cannot copy %s to %s: %s", from, to, strerror(-rc));
            return rc;
        }
    }
    /* The source may have changed since it was validated: check the copies. */
    bool same = false;
    same_artifact(tmp, manifest_json, m->booster_file, m->booster_sha256, &same);
    if (!same) {
        errf(err, errlen, "%s changed while it was being registered", src_dir);
        return -EAGAIN;
    }
    rc = util_fsync_dir(tmp);
    if (rc < 0) {
        errf(err, errlen, "cannot sync %s: %s", tmp, strerror(-rc));
        return rc;
    }
    return 0;
}

/* Probes the booster with a row built from the schema: it must predict finite values,
 * probabilities in [0, 1]. */
static int probe(model_handle_t *h, char *err, size_t errlen)
{
    const model_manifest_t *m = model_handle_manifest(h);
    size_t outputs = model_handle_outputs(h);
    float *row = calloc(m->n_features, sizeof(float));
    float *out = calloc(outputs, sizeof(float));
    int rc = -ENOMEM;
    if (!row || !out) {
        errf(err, errlen, "out of memory");
        goto out;
    }
    model_schema_probe_row(m, row);
    rc = model_handle_predict(h, row, 1, out, err, errlen);
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < outputs; i++) {
        bool bad = out[i] != out[i] || out[i] > 3.4e38f || out[i] < -3.4e38f;
        if (m->task != MODEL_TASK_REGRESSION && (out[i] < 0 || out[i] > 1))
            bad = true;
        if (bad) {
            errf(err, errlen, "booster predicts an invalid value for the probe row (output %zu)", i);
            rc = -EINVAL;
            goto out;
        }
    }
    rc = 0;
out:
    free(row);
    free(out);
    return rc;
}

int model_register(store_t *store, const char *storage_path, const char *src_dir, bool set_stable,
                   json_t **ret_info, char *err, size_t errlen)
{
    return model_register_hooked(store, storage_path, src_dir, set_stable, NULL, ret_info, err, errlen);
}

/* model_register_hook_t's before_commit, called by the store inside its transaction. */
typedef struct {
    const model_register_hook_t *hook;
    const char *name, *version;
    char *err;
    size_t errlen;
    bool refused; /* the hook refused: err is its reason */
} put_hook_t;

static int put_hook(void *arg, bool make_stable, const char *previous_stable)
{
    put_hook_t *ph = arg;
    int rc = ph->hook->before_commit(ph->hook->arg, ph->name, ph->version, make_stable, previous_stable, ph->err,
                                     ph->errlen);
    ph->refused = rc != 0;
    return rc;
}

int model_register_hooked(store_t *store, const char *storage_path, const char *src_dir, bool set_stable,
                          const model_register_hook_t *hook, json_t **ret_info, char *err, size_t errlen)
{
    int rc;
    char name_dir[PATH_MAX], dest[PATH_MAX], tmp[PATH_MAX], real_src[PATH_MAX], real_dest[PATH_MAX];
    char msg[1024] = "";
    model_handle_t *h = NULL;
    json_t *manifest_json = NULL, *list = NULL;
    char *manifest_str = NULL;
    bool created_name_dir = false, created_dest = false, tmp_exists = false;

    /* 1. Validate everything before touching storage or the store. */
    rc = model_handle_open(src_dir, &h, msg, sizeof(msg));
    if (rc < 0) {
        errf(err, errlen, "%s", msg);
        goto fail;
    }
    const model_manifest_t *m = model_handle_manifest(h);
    rc = probe(h, msg, sizeof(msg));
    if (rc < 0) {
        errf(err, errlen, "%s", msg);
        goto fail;
    }
    char mpath[PATH_MAX];
    if (path_join(mpath, sizeof(mpath), src_dir, MODEL_MANIFEST_FILE) < 0) {
        errf(err, errlen, "path too long");
        rc = -ENAMETOOLONG;
        goto fail;
    }
    manifest_json = json_load_file(mpath, JSON_REJECT_DUPLICATES, NULL);
    if (!manifest_json) {
        errf(err, errlen, "cannot re-read %s", mpath);
        rc = -EIO;
        goto fail;
    }
    manifest_str = json_dumps(manifest_json, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!manifest_str) {
        rc = -ENOMEM;
        errf(err, errlen, "out of memory");
        goto fail;
    }
    rc = store_model_list(store, &list);
    if (rc < 0) {
        errf(err, errlen, "cannot read the model registry: %s", strerror(-rc));
        goto fail;
    }
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        const char *n = row_str(row, "name"), *v = row_str(row, "version"), *sha = row_str(row, "sha256");
        if (n && v && strcmp(n, m->name) == 0 && strcmp(v, m->version) == 0 && sha &&
            strcmp(sha, m->booster_sha256) != 0) {
            errf(err, errlen, "%s version %s is already registered with a different booster (sha256 %s)",
                 m->name, m->version, sha);
            rc = -EEXIST;
            goto fail;
        }
    }

    /* 2. Place the artifact in storage: aside, then rename. */
    if (snprintf(name_dir, sizeof(name_dir), "%s/%s", storage_path, m->name) >= (int)sizeof(name_dir) ||
        snprintf(dest, sizeof(dest), "%s/%s", name_dir, m->version) >= (int)sizeof(dest) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp-%ld", name_dir, m->version, (long)getpid()) >=
            (int)sizeof(tmp)) {
        errf(err, errlen, "storage path too long");
        rc = -ENAMETOOLONG;
        goto fail;
    }
    bool same_dir =
        realpath(src_dir, real_src) && realpath(dest, real_dest) && strcmp(real_src, real_dest) == 0;
    if (!same_dir) {
        struct stat st;
        if (stat(dest, &st) == 0) {
            bool same = false;
            same_artifact(dest, manifest_json, m->booster_file, m->booster_sha256, &same);
            if (!same) {
                errf(err, errlen, "%s already exists with different content", dest);
                rc = -EEXIST;
                goto fail;
            }
        } else {
            if (!util_path_exists(name_dir)) {
                rc = util_mkdir_p(name_dir, 0755);
                if (rc < 0) {
                    errf(err, errlen, "cannot create %s: %s", name_dir, strerror(-rc));
                    goto fail;
                }
                created_name_dir = true;
            }
            util_rmtree(tmp); /* leftover of a crashed registration by a process with our pid */
            tmp_exists = true;
            rc = copy_artifact(src_dir, tmp, m, manifest_json, msg, sizeof(msg));
            if (rc < 0) {
                errf(err, errlen, "%s", msg);
                goto fail;
            }
            if (rename(tmp, dest) < 0) {
                int e = errno;
                bool same = false;
                /* Another registration of the same artifact won the race: fine. */
                if (e == EEXIST || e == ENOTEMPTY)
                    same_artifact(dest, manifest_json, m->booster_file, m->booster_sha256, &same);
                if (!same) {
                    rc = -e;
                    errf(err, errlen, "cannot move the artifact to %s: %s", dest,
                         e == EEXIST || e == ENOTEMPTY ? "it appeared meanwhile with different content"
                                                       : strerror(e));
                    goto fail;
                }
                util_rmtree(tmp);
                created_name_dir = false;
            } else {
                created_dest = true;
            }
            tmp_exists = false;
            util_fsync_dir(name_dir);
            if (created_name_dir)
                util_fsync_dir(storage_path);
        }
        if (!realpath(dest, real_dest)) {
            rc = -errno;
            errf(err, errlen, "cannot resolve %s: %s", dest, strerror(errno));
            goto fail;
        }
    }

    /* 3. Record it, and make it stable when asked or when nothing serves yet: one store
     * transaction, inside which the hook writes the audit record, seeing what takes effect. */
    put_hook_t ph = {hook, m->name, m->version, err, errlen, false};
    rc = store_model_version_put(store, m->name, m->version, real_dest, m->booster_sha256,
                                 model_task_name(m->task), manifest_str,
                                 set_stable ? STORE_STABLE_SET : STORE_STABLE_IF_NONE,
                                 hook && hook->before_commit ? put_hook : NULL, &ph);
    if (rc != 0 && ph.refused) { /* the hook said why */
        rc = rc < 0 ? rc : -EIO;
        goto fail;
    }
    if (rc < 0) {
        errf(err, errlen, "cannot record %s/%s in the store: %s", m->name, m->version,
             rc == -EEXIST ? "registered with a different booster" : strerror(-rc));
        goto fail;
    }
    created_dest = false; /* registered: keep the directory whatever happens next */
    if (hook && hook->recorded)
        hook->recorded(hook->arg);
    char stable[256];
    if (ret_info) {
        bool is_stable = store_model_get_stable(store, m->name, stable, sizeof(stable)) == 0 &&
                         strcmp(stable, m->version) == 0;
        *ret_info = json_pack("{s:s, s:s, s:s, s:b, s:s}", "name", m->name, "version", m->version, "sha256",
                              m->booster_sha256, "stable", is_stable, "path", real_dest);
    }
    rc = 0;
    goto out;
fail:
    if (tmp_exists)
        util_rmtree(tmp);
    if (created_dest)
        util_rmtree(dest);
    if (created_name_dir)
        rmdir(name_dir);
    if (rc == 0)
        rc = -EIO;
out:
    free(manifest_str);
    json_decref(manifest_json);
    json_decref(list);
    model_handle_unref(h);
    return rc;
}
