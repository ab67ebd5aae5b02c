/* SPDX-License-Identifier: Apache-2.0 */
/* The store front door: turns DATABASE_URL into a backend and forwards every call through
 * the backend's vtable. Backends live beside this file (store/sqlite.c); callers only see
 * store.h. */
#include "store/store.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "store/sqlite.h"

#define ACCEPTED_FORMS "sqlite:///absolute/path.db, sqlite://relative/path.db or a plain file path"

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Resolves url to a SQLite file path (pointer into url). Never echoes anything after the
 * scheme: a URL may carry a password. */
static int sqlite_path_from_url(const char *url, const char **ret_path, char *err, size_t errlen)
{
    if (!url || !*url) {
        snprintf(err, errlen, "DATABASE_URL is empty; use %s", ACCEPTED_FORMS);
        return -EINVAL;
    }
    if (has_prefix(url, "postgresql://") || has_prefix(url, "postgres://")) {
        snprintf(err, errlen, "DATABASE_URL: PostgreSQL backend is not supported yet (use sqlite:///path)");
        return -ENOTSUP;
    }
    const char *path = url;
    if (has_prefix(url, "sqlite://")) {
        path = url + strlen("sqlite://"); /* "sqlite:///abs" -> "/abs", "sqlite://rel" -> "rel" */
        if (!*path) {
            snprintf(err, errlen, "DATABASE_URL: sqlite:// needs a file path; use %s", ACCEPTED_FORMS);
            return -EINVAL;
        }
        if (strchr(path, '?')) {
            snprintf(err, errlen, "DATABASE_URL: query parameters are not supported in sqlite URLs; use %s",
                     ACCEPTED_FORMS);
            return -EINVAL;
        }
    } else {
        const char *sep = strstr(url, "://");
        if (sep || has_prefix(url, "sqlite:")) {
            int scheme_len = sep ? (int)(sep - url) : (int)strlen("sqlite:");
            if (scheme_len > 32)
                scheme_len = 32;
            snprintf(err, errlen, "DATABASE_URL: unsupported scheme \"%.*s\"; use %s", scheme_len, url,
                     ACCEPTED_FORMS);
            return -EINVAL;
        }
    }
    if (strlen(path) >= PATH_MAX) {
        snprintf(err, errlen, "DATABASE_URL: path is longer than %d bytes", PATH_MAX - 1);
        return -ENAMETOOLONG;
    }
    *ret_path = path;
    return 0;
}

int store_url_file_path(const char *url, char *buf, size_t len, char *err, size_t errlen)
{
    const char *path = NULL;
    int rc = sqlite_path_from_url(url, &path, err, errlen);
    if (rc < 0)
        return rc;
    if ((size_t)snprintf(buf, len, "%s", path) >= len) {
        snprintf(err, errlen, "DATABASE_URL: path too long");
        return -ENAMETOOLONG;
    }
    return 0;
}

static int make_parent_dir(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    const char *dir = dirname(buf);
    if (strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0)
        return 0;
    int r = util_mkdir_p(dir, 0750);
    if (r < 0)
        snprintf(err, errlen, "cannot create directory %s for the database: %s", dir, strerror(-r));
    return r;
}

int store_open_flags(const char *url, unsigned flags, store_t **ret, char *err, size_t errlen)
{
    const char *path = NULL;
    int r = sqlite_path_from_url(url, &path, err, errlen);
    if (r < 0)
        return r;
    if (!(flags & STORE_OPEN_NO_UPGRADE)) {
        r = make_parent_dir(path, err, errlen);
        if (r < 0)
            return r;
    }
    return store_sqlite_ops.open(path, flags, ret, err, errlen);
}

int store_open(const char *url, store_t **ret, char *err, size_t errlen)
{
    return store_open_flags(url, 0, ret, err, errlen);
}

void store_close(store_t *s)
{
    if (s)
        s->ops->close(s);
}

int store_ping(store_t *s)
{
    return s->ops->ping(s);
}

int store_ping_write(store_t *s, int wait_ms)
{
    return s->ops->ping_write(s, wait_ms);
}

int store_schema_version(store_t *s, int *ret)
{
    return s->ops->schema_version(s, ret);
}

int store_integrity_check(store_t *s, char *err, size_t errlen)
{
    return s->ops->integrity_check(s, err, errlen);
}

int store_model_version_put(store_t *s, const char *name, const char *version, const char *path,
                            const char *sha256, const char *task, const char *manifest_json, int stable,
                            store_version_put_hook_fn hook, void *arg)
{
    return s->ops->model_version_put(s, name, version, path, sha256, task, manifest_json, stable, hook, arg);
}

int store_model_set_stable(store_t *s, const char *name, const char *version)
{
    return s->ops->model_set_stable(s, name, version);
}

int store_model_list(store_t *s, json_t **ret)
{
    return s->ops->model_list(s, ret);
}

int store_model_get_stable(store_t *s, const char *name, char *ret_version, size_t n)
{
    return s->ops->model_get_stable(s, name, ret_version, n);
}

int store_registry_generation(store_t *s, int64_t *ret)
{
    return s->ops->registry_generation(s, ret);
}

int store_predictions_put(store_t *s, const store_prediction_t *p, size_t n)
{
    return s->ops->predictions_put(s, p, n);
}

int store_prediction_get(store_t *s, const char *id, json_t **ret)
{
    return s->ops->prediction_get(s, id, ret);
}

int store_prediction_count(store_t *s, int64_t *ret)
{
    return s->ops->prediction_count(s, ret);
}
