/* SPDX-License-Identifier: Apache-2.0 */
/* The store: registry of model versions, prediction records (and later deployments,
 * feedback, api keys). A driver interface with one backend per database; the SQLite
 * backend (store/sqlite.c) is the embedded default, PostgreSQL comes next.
 *
 * Threading: a store_t may be used from several threads; the backend serialises
 * access internally. Callers never see SQL. Strings returned inside json_t are
 * owned by the json_t (caller json_decref's it). */
#ifndef AIMEDRES_STORE_STORE_H
#define AIMEDRES_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store_t;

/* One prediction request (possibly a batch of rows). All pointers are borrowed for
 * the duration of the call (store_predictions_put copies what it keeps). */
typedef struct store_prediction {
    const char *id;     /* UUIDv7 prediction id */
    int64_t created_ms; /* epoch ms */
    const char *model;
    const char *version;
    const char *arm; /* "stable" for now; rollouts add canary/shadow */
    const char *request_id;
    const char *patient_pseudonym; /* HMAC pseudonym or NULL; never the raw id */
    const char *outputs_json;      /* JSON array, one element per row */
    const char *inputs_json;       /* JSON array of feature objects, or NULL (PHI; opt-in) */
    int n_rows;
    double latency_ms;
    int status; /* HTTP status answered (200) */
} store_prediction_t;

/* Backend vtable; see store/sqlite.c. */
/* store_model_version_put's stable argument. */
typedef enum {
    STORE_STABLE_KEEP = 0,    /* the stable version stays as it is */
    STORE_STABLE_SET = 1,     /* the version becomes the stable one */
    STORE_STABLE_IF_NONE = 2, /* it does if the model has none (its first version) */
} store_stable_t;
typedef int (*store_version_put_hook_fn)(void *arg, bool make_stable, const char *previous_stable);

typedef struct store_ops {
    const char *name;
    int (*open)(const char *location, unsigned flags, store_t **ret, char *err, size_t errlen);
    void (*close)(store_t *s);
    int (*ping)(store_t *s);
    int (*ping_write)(store_t *s, int wait_ms);
    int (*schema_version)(store_t *s, int *ret);
    int (*integrity_check)(store_t *s, char *err, size_t errlen);
    int (*model_version_put)(store_t *s, const char *name, const char *version, const char *path,
                             const char *sha256, const char *task, const char *manifest_json, int stable,
                             store_version_put_hook_fn hook, void *arg);
    int (*model_set_stable)(store_t *s, const char *name, const char *version);
    int (*model_list)(store_t *s, json_t **ret);
    int (*model_get_stable)(store_t *s, const char *name, char *ret_version, size_t n);
    int (*registry_generation)(store_t *s, int64_t *ret);
    int (*predictions_put)(store_t *s, const store_prediction_t *p, size_t n);
    int (*prediction_get)(store_t *s, const char *id, json_t **ret);
    int (*prediction_count)(store_t *s, int64_t *ret);
} store_ops_t;

/* Common header of every backend's store object (first member). */
struct store {
    const store_ops_t *ops;
};

/* Opens by URL: "sqlite:///abs/path.db", "sqlite://rel/path.db", or a plain path.
 * "postgresql://..." returns -ENOTSUP with "PostgreSQL backend is not supported yet".
 * Creates the database if needed and runs pending migrations. Caller closes *ret. */
int store_open(const char *url, store_t **ret, char *err, size_t errlen);
/* store_open for a reader that must leave the store as it is (the DR drill's look at
 * production): no database is created and no migration runs; a store older than this binary
 * is refused (-ESTALE, saying so), as a missing one is (-ENOENT). */
#define STORE_OPEN_NO_UPGRADE 1u
int store_open_flags(const char *url, unsigned flags, store_t **ret, char *err, size_t errlen);
void store_close(store_t *s);
/* The database file a DATABASE_URL names (sqlite URLs and plain paths), for data locks
 * and backups; -ENOTSUP for server databases (PostgreSQL), -EINVAL for a bad URL, with the
 * reason in err (never echoing anything after the scheme). */
int store_url_file_path(const char *url, char *buf, size_t len, char *err, size_t errlen);

/* 0 if the database answers a trivial query; -EBUSY at once when this process's connection
 * is in use (a write under way: the database is there). */
int store_ping(store_t *s);
/* 0 if a durable write transaction commits (it bumps a counter no data depends on): for
 * readiness while writes are failing (a foreign write lock, a read-only or failing disk),
 * which a read does not see. A probe: -EBUSY when this process's connection stays in use
 * for wait_ms (0: at once, for callers that must not wait behind a write), and after 100 ms
 * when another process holds the write lock. A failure is logged when the probe starts
 * failing, and its recovery once, not every probe. */
int store_ping_write(store_t *s, int wait_ms);
/* Highest applied migration. */
int store_schema_version(store_t *s, int *ret);
/* PRAGMA integrity_check (or the backend's equivalent); 0 if "ok", else -EIO with detail. */
int store_integrity_check(store_t *s, char *err, size_t errlen);

/* Registers (or re-registers, idempotently for the same sha256) a model version; stable
 * (store_stable_t) says whether it also becomes the stable (serving) version, in the same
 * transaction. hook (NULL: none) is called inside that transaction, with the store's write
 * lock held, before anything is written: with whether the version becomes stable and the
 * stable version until now (NULL: none), as no concurrent writer can change them any more
 * (review53 #4); a non-zero return writes nothing and is returned. -EEXIST if name/version
 * exists with a different sha256 (nothing changes). Bumps the registry generation when
 * something changed. */
int store_model_version_put(store_t *s, const char *name, const char *version, const char *path,
                            const char *sha256, const char *task, const char *manifest_json, int stable,
                            store_version_put_hook_fn hook, void *arg);
/* Makes version the stable (serving) version of name; -ENOENT if not registered.
 * Bumps the registry generation. */
int store_model_set_stable(store_t *s, const char *name, const char *version);
/* All registered versions: [{"name","version","path","sha256","task","registered_at"
 * (ISO 8601),"stable":bool}], ordered by name then registration time. */
int store_model_list(store_t *s, json_t **ret);
/* The stable version of name into ret_version; -ENOENT if none. */
int store_model_get_stable(store_t *s, const char *name, char *ret_version, size_t n);
/* A counter that changes whenever the registry changes (any process). */
int store_registry_generation(store_t *s, int64_t *ret);

/* Writes n prediction records in one transaction, durable on return (WAL + fsync). */
int store_predictions_put(store_t *s, const store_prediction_t *p, size_t n);
/* {"id","created_at","model","version","arm","request_id","patient_pseudonym","outputs":[..],
 *  "inputs":[..]|null,"n_rows","latency_ms","status"}; -ENOENT if unknown. */
int store_prediction_get(store_t *s, const char *id, json_t **ret);
int store_prediction_count(store_t *s, int64_t *ret);

#endif
