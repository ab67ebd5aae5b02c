/* SPDX-License-Identifier: Apache-2.0 */
/* SQLite backend of the store: the registry of model versions and the prediction records
 * in one WAL database file, schema kept by versioned migrations. This is the only file
 * that speaks SQL to SQLite; everything else goes through store.h. */

/* DESIGN
 *
 * Connection: one sqlite3 handle per store_t, opened SQLITE_OPEN_NOMUTEX and guarded by
 * `mu` instead: every op holds `mu` from its first to its last SQLite call (including
 * sqlite3_errmsg), so HTTP workers, the recorder thread and the registry poller may
 * share a store_t. Other processes (the CLI registering a model while the server runs)
 * use their own connection; SQLite's file locks plus busy_timeout (5 s) arbitrate.
 *
 * Durability: journal_mode=WAL, synchronous=FULL: a commit returns only after the WAL
 * is fsynced, which is what lets the recorder acknowledge a prediction.
 *
 * Writes: every write is one BEGIN IMMEDIATE transaction, taking the write lock up
 * front, so a writer never fails half way with SQLITE_BUSY on lock upgrade. Registry
 * writes bump registry_meta.generation in the same transaction; a poller in another
 * process sees the new registry and the new generation atomically.
 *
 * Schema: `migrations[]` is append-only. Migration i+1 is migrations[i]; each runs in
 * its own transaction together with its schema_migrations row, so a crash leaves the
 * database at a whole version. The version is re-read after the write lock is taken,
 * so two processes opening a fresh database at once do not both apply a migration. A
 * database whose version is higher than ARRAY_SIZE(migrations) comes from a newer
 * binary and is refused rather than misread.
 *
 * Statements: prepared once per connection on first use (SQLITE_PREPARE_PERSISTENT),
 * reset and unbound after every use; the prediction insert is the hot path. */
#include "store/sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/lockfile.h"
#include "common/log.h"
#include "common/util.h"

#define BUSY_TIMEOUT_MS 5000
#define PING_WRITE_BUSY_MS 100 /* store_ping_write: a readiness probe waits this long at most */
#define APPLICATION_ID 0x41694d52 /* "AiMR" in the database header */
#define DB_FILE_MODE 0640         /* predictions may hold PHI: no world access */

/* Append new migrations at the end; never edit one that has shipped. */
static const char *const migrations[] = {
    /* 1: model registry and prediction records */
    "CREATE TABLE model_versions ("
    "  name TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  task TEXT NOT NULL,"
    "  manifest_json TEXT NOT NULL,"
    "  registered_at TEXT NOT NULL,"
    "  PRIMARY KEY (name, version));"
    "CREATE TABLE model_stable ("
    "  name TEXT PRIMARY KEY,"
    "  version TEXT NOT NULL,"
    "  updated_at TEXT NOT NULL,"
    "  FOREIGN KEY (name, version) REFERENCES model_versions (name, version));"
    "CREATE TABLE registry_meta ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  generation INTEGER NOT NULL);"
    "INSERT INTO registry_meta (id, generation) VALUES (1, 0);"
    "CREATE TABLE predictions ("
    "  id TEXT PRIMARY KEY,"
    "  created_ms INTEGER NOT NULL,"
    "  model TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  arm TEXT NOT NULL,"
    "  request_id TEXT,"
    "  patient_pseudonym TEXT,"
    "  outputs_json TEXT NOT NULL,"
    "  inputs_json TEXT,"
    "  n_rows INTEGER NOT NULL,"
    "  latency_ms REAL NOT NULL,"
    "  status INTEGER NOT NULL);"
    "CREATE INDEX predictions_model_created ON predictions (model, created_ms);"
    "CREATE INDEX predictions_patient ON predictions (patient_pseudonym);",
    /* 2: ground-truth labels that arrive after the prediction (monitoring) */
    "CREATE TABLE feedback ("
    "  prediction_id TEXT NOT NULL REFERENCES predictions (id),"
    "  row_index INTEGER NOT NULL DEFAULT 0,"
    "  label_json TEXT NOT NULL,"
    "  received_ms INTEGER NOT NULL,"
    "  source TEXT,"
    "  PRIMARY KEY (prediction_id, row_index));"
    "CREATE INDEX feedback_received ON feedback (received_ms);",
    /* 3: API keys: only an HMAC of the secret part is stored */
    "CREATE TABLE api_keys ("
    "  key_id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  secret_hmac TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER,"
    "  revoked_ms INTEGER,"
    "  last_used_ms INTEGER);",
    /* 4: deployments (rollouts) and their event timeline */
    "CREATE TABLE deployments ("
    "  id TEXT PRIMARY KEY,"
    "  model TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  strategy TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  active INTEGER NOT NULL,"
    "  record_json TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX deployments_one_active ON deployments (model) WHERE active = 1;"
    "CREATE TABLE deployment_events ("
    "  deployment_id TEXT NOT NULL REFERENCES deployments (id),"
    "  seq INTEGER NOT NULL,"
    "  at_ms INTEGER NOT NULL,"
    "  event_json TEXT NOT NULL,"
    "  PRIMARY KEY (deployment_id, seq));",
    /* 5 (predict4): fewer b-tree pages written per prediction commit (each costs a WAL
     * frame and its checksum). The patient index holds only rows that name a patient;
     * lookups by pseudonym (patient_pseudonym = ?) imply IS NOT NULL and still use it. The
     * (model, created_ms) index had no query: the UUIDv7 primary key is already in time
     * order, so a time range is a key range. */
    "DROP INDEX predictions_patient;"
    "CREATE INDEX predictions_patient ON predictions (patient_pseudonym) "
    "WHERE patient_pseudonym IS NOT NULL;"
    "DROP INDEX predictions_model_created;",
    /* 6: the predictions table keyed by its id alone (WITHOUT ROWID) and no patient index.
     * A rowid table kept a second b-tree for the TEXT primary key, so each record was
     * written twice; the patient index had no query (nothing looks predictions up by
     * pseudonym) and, its keys being random, was most of a backup's integrity_check (3.4 s
     * -> 0.55 s for 900k rows, file 252 -> 184 MB; docs/benchmarks.md). SQLite's
     * documented table rebuild: migrate() runs it with foreign keys off and checks them
     * before the commit (feedback references predictions (id)). */
    "CREATE TABLE predictions_v6 ("
    "  id TEXT NOT NULL PRIMARY KEY,"
    "  created_ms INTEGER NOT NULL,"
    "  model TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  arm TEXT NOT NULL,"
    "  request_id TEXT,"
    "  patient_pseudonym TEXT,"
    "  outputs_json TEXT NOT NULL,"
    "  inputs_json TEXT,"
    "  n_rows INTEGER NOT NULL,"
    "  latency_ms REAL NOT NULL,"
    "  status INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO predictions_v6 (id, created_ms, model, version, arm, request_id, patient_pseudonym,"
    "  outputs_json, inputs_json, n_rows, latency_ms, status)"
    "  SELECT id, created_ms, model, version, arm, request_id, patient_pseudonym,"
    "  outputs_json, inputs_json, n_rows, latency_ms, status FROM predictions ORDER BY id;"
    "DROP TABLE predictions;"
    "ALTER TABLE predictions_v6 RENAME TO predictions;",
};

enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_PING,
    Q_SCHEMA_VERSION,
    Q_MIGRATION_DONE,
    Q_FOREIGN_TABLES,
    Q_MV_SHA,
    Q_MV_INSERT,
    Q_GEN_BUMP,
    Q_GEN_GET,
    Q_STABLE_SET,
    Q_STABLE_GET,
    Q_MODEL_LIST,
    Q_PRED_INSERT,
    Q_PRED_GET,
    Q_PRED_COUNT,
    Q_COUNT_
};

static const char *const queries[Q_COUNT_] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_PING] = "SELECT 1",
    [Q_SCHEMA_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    [Q_MIGRATION_DONE] = "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
    [Q_FOREIGN_TABLES] = "SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
                         "AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations'",
    [Q_MV_SHA] = "SELECT sha256 FROM model_versions WHERE name = ?1 AND version = ?2",
    [Q_MV_INSERT] = "INSERT INTO model_versions (name, version, path, sha256, task, manifest_json, "
                    "registered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_GEN_BUMP] = "UPDATE registry_meta SET generation = generation + 1 WHERE id = 1",
    [Q_GEN_GET] = "SELECT generation FROM registry_meta WHERE id = 1",
    [Q_STABLE_SET] = "INSERT INTO model_stable (name, version, updated_at) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                     "updated_at = excluded.updated_at WHERE version != excluded.version",
    [Q_STABLE_GET] = "SELECT version FROM model_stable WHERE name = ?1",
    [Q_MODEL_LIST] = "SELECT v.name, v.version, v.path, v.sha256, v.task, v.registered_at, "
                     "s.version IS NOT NULL FROM model_versions v LEFT JOIN model_stable s "
                     "ON s.name = v.name AND s.version = v.version "
                     "ORDER BY v.name, v.registered_at, v.rowid",
    [Q_PRED_INSERT] = "INSERT INTO predictions (id, created_ms, model, version, arm, request_id, "
                      "patient_pseudonym, outputs_json, inputs_json, n_rows, latency_ms, status) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [Q_PRED_GET] = "SELECT id, created_ms, model, version, arm, request_id, patient_pseudonym, "
                   "outputs_json, inputs_json, n_rows, latency_ms, status FROM predictions WHERE id = ?1",
    [Q_PRED_COUNT] = "SELECT count(*) FROM predictions",
};

/* A read-only connection beside the writer's, opened on first use under its mutex. A WAL
 * reader waits neither for the writer nor for another process's write lock. */
typedef struct reader {
    pthread_mutex_t mu;
    sqlite3 *db;
    bool off;    /* no second connection for this store (in memory, a URI): the writer's serves */
    bool failed; /* the last open failed (logged once; tried again at the next use) */
} reader_t;

typedef struct sqlite_store {
    store_t base; /* first member: a store_t * is a sqlite_store_t * */
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *stmts[Q_COUNT_];
    /* two readers: long reads (store_sqlite_with_reader: feedback windows, rollout latency)
     * and the registry's short ones (its generation, the model list), which serve's main
     * thread and the request workers make and which must not queue behind a long read
     * (review69 #1) nor behind the writer (review67 #1) */
    reader_t longr, regr;
    char *path;
    bool probe_failing; /* the last write probe failed (under mu): its log says so once */
    bool put_failing;   /* the last prediction batch failed (under mu): likewise (the recorder
                         * logs the outage's end) */
} sqlite_store_t;

static sqlite_store_t *from_base(store_t *s)
{
    return (sqlite_store_t *)s;
}

int store_sqlite_with_db(store_t *st, store_sqlite_fn fn, void *arg)
{
    if (!st || st->ops != &store_sqlite_ops)
        return -ENOTSUP;
    sqlite_store_t *s = from_base(st);
    pthread_mutex_lock(&s->mu);
    int rc = fn(s->db, arg);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* fn on rd's connection (opened now if need be), else on the writer's under its mutex. */
static int with_reader(sqlite_store_t *s, reader_t *rd, store_sqlite_fn fn, void *arg)
{
    pthread_mutex_lock(&rd->mu);
    if (!rd->db && !rd->off) {
        int rc = sqlite3_open_v2(s->path, &rd->db,
                                 SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE, NULL);
        if (rc != SQLITE_OK) {
            if (!rd->failed)
                log_msg(LOG_WARNING, "store: no second connection for reads; they share the writer's until one opens",
                        "{s:s}", "error", rd->db ? sqlite3_errmsg(rd->db) : sqlite3_errstr(rc));
            sqlite3_close_v2(rd->db);
            rd->db = NULL;
            rd->failed = true;
        } else {
            rd->failed = false;
            sqlite3_extended_result_codes(rd->db, 1);
            sqlite3_busy_timeout(rd->db, BUSY_TIMEOUT_MS);
        }
    }
    if (!rd->db) {
        pthread_mutex_unlock(&rd->mu);
        return store_sqlite_with_db(&s->base, fn, arg);
    }
    int rc = fn(rd->db, arg);
    pthread_mutex_unlock(&rd->mu);
    return rc;
}

int store_sqlite_with_reader(store_t *st, store_sqlite_fn fn, void *arg)
{
    if (!st || st->ops != &store_sqlite_ops)
        return -ENOTSUP;
    sqlite_store_t *s = from_base(st);
    return with_reader(s, &s->longr, fn, arg);
}

/* Maps a SQLite (extended) result code to a negative errno. */
static int map_rc(sqlite3 *db, int rc);

int store_sqlite_errno(sqlite3 *db, int rc)
{
    return map_rc(db, rc);
}

int store_sqlite_write(sqlite3 *db, const char *sql, void (*bind)(sqlite3_stmt *st, const void *arg),
                       const void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = map_rc(db, sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL));
    if (rc < 0)
        return rc;
    rc = map_rc(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL));
    if (rc == 0) {
        bind(st, arg);
        rc = map_rc(db, sqlite3_step(st));
    }
    sqlite3_finalize(st);
    if (rc == 0)
        rc = map_rc(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL));
    if (rc < 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int map_rc(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_PERM:
    case SQLITE_AUTH: return -EACCES;
    case SQLITE_TOOBIG: return -E2BIG;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE: return -EINVAL;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
            return -EEXIST;
        return -EINVAL;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR: {
        int e = db ? sqlite3_system_errno(db) : 0;
        return e > 0 ? -e : -EIO;
    }
    default: return -EIO;
    }
}

/* Logs an unexpected SQLite failure (operation name, code and SQLite's message, which
 * names tables and columns but never values) and returns the mapped errno. Caller holds mu. */
static int db_fail(sqlite_store_t *s, const char *op, int rc)
{
    int r = map_rc(s->db, rc);
    log_msg((rc & 0xff) == SQLITE_BUSY ? LOG_WARNING : LOG_ERROR, "store: sqlite error", "{s:s, s:i, s:s}",
            "op", op, "code", rc, "error", sqlite3_errmsg(s->db));
    return r;
}

/* The cached statement for q, prepared on first use; NULL on failure (*ret_rc set). */
static sqlite3_stmt *stmt(sqlite_store_t *s, int q, int *ret_rc)
{
    if (!s->stmts[q]) {
        int rc = sqlite3_prepare_v3(s->db, queries[q], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[q], NULL);
        if (rc != SQLITE_OK) {
            *ret_rc = rc;
            return NULL;
        }
    }
    return s->stmts[q];
}

static void release(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Runs a statement that returns no rows (BEGIN, COMMIT, UPDATE ...). SQLite result code. */
static int run(sqlite_store_t *s, int q)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = stmt(s, q, &rc);
    if (!st)
        return rc;
    rc = sqlite3_step(st);
    release(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Runs a one-row, one-integer query (count, version). SQLite result code. */
static int query_int64(sqlite_store_t *s, int q, int64_t *ret)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = stmt(s, q, &rc);
    if (!st)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_NOTFOUND;
    }
    release(st);
    return rc;
}

/* Ends a write transaction that failed part way; harmless if none is open. */
static void rollback(sqlite_store_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        run(s, Q_ROLLBACK);
}

static int commit(sqlite_store_t *s)
{
    int rc = run(s, Q_COMMIT);
    if (rc != SQLITE_OK)
        rollback(s);
    return rc;
}

/* query_int64 under mu: 0 with *ret set, or the mapped errno (logged as op). */
static int locked_int64(sqlite_store_t *s, int q, const char *op, int64_t *ret)
{
    int64_t v = 0;
    pthread_mutex_lock(&s->mu);
    int rc = query_int64(s, q, &v);
    int r = rc == SQLITE_OK ? 0 : db_fail(s, op, rc);
    pthread_mutex_unlock(&s->mu);
    if (r == 0)
        *ret = v;
    return r;
}

/* Steps the one-key lookup q with key bound to ?1: 0 with the row in *ret_st, -ENOENT, or
 * the mapped errno (logged as op). Once *ret_st is set the caller releases it. Caller holds mu. */
static int lookup(sqlite_store_t *s, int q, const char *key, const char *op, sqlite3_stmt **ret_st)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = stmt(s, q, &rc);
    if (!st)
        return db_fail(s, op, rc);
    *ret_st = st;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? -ENOENT : db_fail(s, op, rc);
}

/* Text of a one-row PRAGMA into buf. SQLite result code. */
static int pragma_text(sqlite_store_t *s, const char *sql, char *buf, size_t n)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, n, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        buf[0] = '\0';
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static void now_iso(char buf[ISO8601_LEN])
{
    util_iso8601(util_now_ms(), buf);
}

/* ---- open, migrations, close ---------------------------------------------------- */

/* Appends up to `max_rows` rows of a diagnostic PRAGMA to err; returns rows seen. */
static int collect_pragma(sqlite_store_t *s, const char *sql, int max_rows, char *err, size_t errlen,
                          int *ret_rc)
{
    sqlite3_stmt *st = NULL;
    int rows = 0;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (rows++ >= max_rows)
                continue;
            size_t used = strlen(err);
            if (used + 1 >= errlen)
                continue;
            char line[512] = "";
            int ncol = sqlite3_column_count(st);
            for (int c = 0; c < ncol; c++) {
                const unsigned char *t = sqlite3_column_text(st, c);
                size_t l = strlen(line);
                snprintf(line + l, sizeof(line) - l, "%s%s", c ? " " : "", t ? (const char *)t : "NULL");
            }
            snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", line);
        }
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    *ret_rc = rc;
    return rows;
}

/* What to add to a failed migration's message for the causes an operator can act on. */
static const char *migration_hint(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
        return " (another process holds the store's write lock: a server, or another aimedres command "
               "upgrading the store, which can take minutes for a large one; stop the server before "
               "upgrading, and retry when the other command has finished)";
    case SQLITE_FULL:
        return " (an upgrade that rebuilds a table needs free space of about 2.5 times the database file; "
               "nothing was changed: free some and start again; docs/operations.md)";
    default:
        return "";
    }
}

/* PRAGMA foreign_key_check: the number of broken references, up to 10 of them in fk. */
static int fk_violations(sqlite_store_t *s, char *fk, size_t fklen, int *ret_rc)
{
    fk[0] = '\0';
    return collect_pragma(s, "PRAGMA foreign_key_check", 10, fk, fklen, ret_rc);
}

/* Applies pending migrations, one transaction each. Caller holds mu (or owns s alone). */
static int migrate(sqlite_store_t *s, const char *path, unsigned flags, char *err, size_t errlen)
{
    const int known = (int)ARRAY_SIZE(migrations);
    for (;;) {
        int rc = run(s, Q_BEGIN);
        if (rc != SQLITE_OK)
            goto fail_rc;
        rc = sqlite3_exec(s->db,
                          "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto fail_rc;
        int64_t current = 0;
        rc = query_int64(s, Q_SCHEMA_VERSION, &current);
        if (rc != SQLITE_OK)
            goto fail_rc;
        if (current > known) {
            rollback(s);
            snprintf(err, errlen,
                     "database %s has schema version %lld but this aimedres knows only up to %d: "
                     "it was written by a newer aimedres; upgrade, or restore a backup made by this version",
                     path, (long long)current, known);
            return -EPROTO;
        }
        if (current < known && (flags & STORE_OPEN_NO_UPGRADE)) {
            rollback(s);
            snprintf(err, errlen,
                     current == 0 ? "database %s holds no aimedres store (schema version %lld); not created here"
                                  : "database %s has schema version %lld, older than this aimedres's %d; not "
                                    "upgraded here (upgrading: docs/operations.md)",
                     path, (long long)current, known);
            return -ESTALE;
        }
        if (current > 0 && current < known) {
            /* an upgrade: never under a running server (the older one would go on writing to
             * tables it no longer knows); serve itself holds the lock when it migrates */
            char lock[4200];
            lockfile_path_for_db(path, lock, sizeof(lock));
            long holder = lockfile_holder(lock);
            int held = lockfile_is_held(lock);
            if ((held < 0 || held == 1) && holder != (long)getpid()) {
                rollback(s);
                char why[2 * sizeof(lock) + 320], who[64] = "";
                if (held < 0) /* can not tell (a symlink loop, a file system without flock) */
                    snprintf(why, sizeof(why),
                             "can not tell whether a server is running on it (%s: %s): stop every server on it, "
                             "make %s a regular file or remove it, then start the new one",
                             lock, strerror(-held), lock);
                else {
                    if (holder > 0) /* 0: the holder wrote no pid (not an aimedres) */
                        snprintf(who, sizeof(who), "pid %ld, ", holder);
                    snprintf(why, sizeof(why),
                             "a server (%sholding %s) is running on it: stop that server first, then start the new one",
                             who, lock);
                }
                snprintf(err, errlen,
                         "database %s has schema version %lld and this aimedres would upgrade it to %d, but %s "
                         "(upgrading: docs/operations.md)",
                         path, (long long)current, known, why);
                return -EBUSY;
            }
        }
        if (current == known) {
            rc = commit(s); /* commits the schema_migrations table itself on a fresh database */
            if (rc != SQLITE_OK)
                goto fail_rc;
            return 0;
        }
        if (current == 0) {
            /* A fresh aimedres database has no tables yet; do not add ours to someone else's. */
            int64_t foreign = 0;
            rc = query_int64(s, Q_FOREIGN_TABLES, &foreign);
            if (rc != SQLITE_OK)
                goto fail_rc;
            if (foreign > 0) {
                rollback(s);
                snprintf(err, errlen,
                         "database %s already holds %lld tables of another application; "
                         "refusing to add the aimedres schema to it",
                         path, (long long)foreign);
                return -EEXIST;
            }
            char sql[64];
            snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", APPLICATION_ID);
            rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
            if (rc != SQLITE_OK)
                goto fail_rc;
        }
        /* foreign keys are off while migrations run (a table rebuild drops the parent of
         * a reference): the rows must satisfy them before anything commits, and references
         * that were broken before are named as such, not blamed on the migration */
        char fk[1024];
        int before = current > 0 ? fk_violations(s, fk, sizeof(fk), &rc) : 0;
        if (rc != SQLITE_OK)
            goto fail_rc;
        if (before > 0) {
            snprintf(err, errlen,
                     "database %s: %d row(s) already reference a missing row (table rowid parent fkid: %s), "
                     "so migration %lld was not applied and nothing was changed; see them with `sqlite3 %s "
                     "'PRAGMA foreign_key_check'`, repair or delete them, then start again",
                     path, before, fk, (long long)current + 1, path);
            rollback(s);
            return -EPROTO;
        }
        rc = sqlite3_exec(s->db, migrations[current], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            int r = map_rc(s->db, rc);
            snprintf(err, errlen, "database %s: migration %lld failed: %s%s", path, (long long)current + 1,
                     sqlite3_errmsg(s->db), migration_hint(rc));
            rollback(s);
            return r;
        }
        int rows = fk_violations(s, fk, sizeof(fk), &rc);
        if (rc != SQLITE_OK)
            goto fail_rc;
        if (rows > 0) {
            snprintf(err, errlen,
                     "database %s: migration %lld would break %d foreign key reference(s) "
                     "(table rowid parent fkid): %s; nothing was changed",
                     path, (long long)current + 1, rows, fk);
            rollback(s);
            return -EPROTO;
        }
        int rc2 = SQLITE_OK;
        sqlite3_stmt *st = stmt(s, Q_MIGRATION_DONE, &rc2);
        if (!st) {
            rc = rc2;
            goto fail_rc;
        }
        char ts[ISO8601_LEN];
        now_iso(ts);
        sqlite3_bind_int64(st, 1, current + 1);
        sqlite3_bind_text(st, 2, ts, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        release(st);
        if (rc != SQLITE_DONE)
            goto fail_rc;
        rc = commit(s);
        if (rc != SQLITE_OK)
            goto fail_rc;
        continue;

    fail_rc:;
        int r = map_rc(s->db, rc);
        snprintf(err, errlen, "database %s: schema migration: %s%s", path, sqlite3_errmsg(s->db),
                 migration_hint(rc));
        rollback(s);
        return r;
    }
}

static void sqlite_close(store_t *base)
{
    sqlite_store_t *s = from_base(base);
    if (!s)
        return;
    for (int i = 0; i < Q_COUNT_; i++)
        sqlite3_finalize(s->stmts[i]);
    /* the reader first: the writer's close is then the last, which checkpoints the WAL into
     * the database and removes it, so a stopped store is one file (a read-only connection can
     * not checkpoint, and closed last it left every record since the last checkpoint in the
     * WAL alone: review47 #1) */
    if (s->longr.db)
        sqlite3_close_v2(s->longr.db);
    if (s->regr.db)
        sqlite3_close_v2(s->regr.db);
    if (s->db)
        sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->longr.mu);
    pthread_mutex_destroy(&s->regr.mu);
    free(s->path);
    free(s);
}

/* Creates the file with DB_FILE_MODE if absent: SQLite would use 0644, and it gives the
 * -wal and -shm files the mode of the database file. */
static int create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, DB_FILE_MODE);
    if (fd < 0)
        return errno == EEXIST ? 0 : -errno;
    close(fd);
    return 0;
}

static int sqlite_open(const char *path, unsigned open_flags, store_t **ret, char *err, size_t errlen)
{
    bool no_upgrade = open_flags & STORE_OPEN_NO_UPGRADE;
    int r = no_upgrade ? (access(path, F_OK) == 0 ? 0 : -errno) : create_private(path);
    if (r < 0) {
        snprintf(err, errlen, "%s database %s: %s", no_upgrade ? "no" : "cannot create", path, strerror(-r));
        return r;
    }
    sqlite_store_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->base.ops = &store_sqlite_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->longr.mu, NULL);
    pthread_mutex_init(&s->regr.mu, NULL);
    s->path = strdup(path);
    s->longr.off = s->regr.off = !s->path || strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0;

    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        r = map_rc(s->db, rc);
        snprintf(err, errlen, "cannot open database %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

    char val[64];
    rc = pragma_text(s, "PRAGMA application_id", val, sizeof(val));
    if (rc != SQLITE_OK) {
        r = map_rc(s->db, rc);
        snprintf(err, errlen, "cannot read database %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    long app_id = strtol(val, NULL, 10);
    if (app_id != 0 && app_id != APPLICATION_ID) {
        snprintf(err, errlen, "database %s belongs to another application (application_id %ld)", path,
                 app_id);
        r = -EEXIST;
        goto fail;
    }
    rc = pragma_text(s, "PRAGMA journal_mode = WAL", val, sizeof(val));
    if (rc != SQLITE_OK || strcmp(val, "wal") != 0) {
        r = rc != SQLITE_OK ? map_rc(s->db, rc) : -ENOTSUP;
        snprintf(err, errlen, "database %s: cannot enable WAL journal: %s", path,
                 rc != SQLITE_OK ? sqlite3_errmsg(s->db) : val);
        goto fail;
    }
    /* foreign keys are enforced from here on; migrations run without and check them */
    /* secure_delete: freed pages (records a migration moved, anything deleted) are zeroed,
     * so no PHI lingers in free pages of the file or its backups, whatever SQLite's build */
    rc = sqlite3_exec(s->db, "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = OFF",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        r = map_rc(s->db, rc);
        snprintf(err, errlen, "database %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    r = migrate(s, path, open_flags, err, errlen);
    if (r < 0)
        goto fail;
    rc = sqlite3_exec(s->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        r = map_rc(s->db, rc);
        snprintf(err, errlen, "database %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    *ret = &s->base;
    return 0;

fail:
    sqlite_close(&s->base);
    return r;
}

/* ---- ops ------------------------------------------------------------------------ */

static int sqlite_ping(store_t *base)
{
    sqlite_store_t *s = from_base(base);
    if (pthread_mutex_trylock(&s->mu) != 0)
        return -EBUSY; /* in use: it answers (a caller like /ready must not wait behind a write) */
    int rc = run(s, Q_PING);
    int r = rc == SQLITE_OK ? 0 : db_fail(s, "ping", rc);
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* A real write, committed with its sync: the database header's user_version (which nothing
 * else uses) counts the probes. A row rewritten with its own value wrote nothing (SQLite skips
 * an identical cell), so the probe passed on a failing disk (review48 #2). */
static int sqlite_ping_write(store_t *base, int wait_ms)
{
    sqlite_store_t *s = from_base(base);
    /* busy is an answer: readiness (wait_ms 0) must not hold its caller; a rollout step waits
     * a little, since prediction traffic keeps the connection in use most of the time */
    if (wait_ms <= 0 ? pthread_mutex_trylock(&s->mu) != 0 : util_mutex_lock_within(&s->mu, wait_ms) != 0)
        return -EBUSY;
    sqlite3_busy_timeout(s->db, PING_WRITE_BUSY_MS);
    int rc = run(s, Q_BEGIN);
    char val[32] = "", sql[64];
    if (rc == SQLITE_OK)
        rc = pragma_text(s, "PRAGMA user_version", val, sizeof(val));
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %ld", (strtol(val, NULL, 10) + 1) & 0x7fffffffL);
        rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    }
    rc = rc == SQLITE_OK ? commit(s) : (rollback(s), rc);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    int r = 0;
    if (rc != SQLITE_OK) {
        /* probes repeat while the disk is full: one line when they start failing */
        r = s->probe_failing ? map_rc(s->db, rc) : db_fail(s, "ping_write", rc);
        s->probe_failing = true;
    } else if (s->probe_failing) {
        s->probe_failing = false;
        log_msg(LOG_INFO, "store: the write probe commits again", NULL);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

static int sqlite_schema_version(store_t *base, int *ret)
{
    int64_t v = 0;
    int r = locked_int64(from_base(base), Q_SCHEMA_VERSION, "schema_version", &v);
    if (r == 0)
        *ret = (int)v;
    return r;
}

static int sqlite_integrity_check(store_t *base, char *err, size_t errlen)
{
    sqlite_store_t *s = from_base(base);
    char detail[2048] = "";
    int r = 0, rc = SQLITE_OK;
    pthread_mutex_lock(&s->mu);
    int rows = collect_pragma(s, "PRAGMA integrity_check(20)", 20, detail, sizeof(detail), &rc);
    if (rc != SQLITE_OK) {
        r = -EIO;
        snprintf(err, errlen, "integrity check could not run: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    if (!(rows == 1 && strcmp(detail, "ok") == 0)) {
        snprintf(err, errlen, "integrity check failed: %s", detail);
        r = -EIO;
        goto out;
    }
    detail[0] = '\0';
    rows = collect_pragma(s, "PRAGMA foreign_key_check", 20, detail, sizeof(detail), &rc);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "foreign key check could not run: %s", sqlite3_errmsg(s->db));
        r = -EIO;
        goto out;
    }
    if (rows > 0) {
        snprintf(err, errlen, "foreign key check failed (%d rows; table rowid parent fkid): %s", rows,
                 detail);
        r = -EIO;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return r;
}

static bool empty(const char *s)
{
    return !s || !*s;
}

/* Opens the write transaction and steps the lookup of (name, version) in model_versions:
 * SQLITE_ROW (the row is in *ret_st), SQLITE_DONE (absent) or an error code. Once *ret_st
 * is set the caller releases it. Caller holds mu. */
static int begin_find_version(sqlite_store_t *s, const char *name, const char *version, sqlite3_stmt **ret_st)
{
    int rc = run(s, Q_BEGIN);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *st = stmt(s, Q_MV_SHA, &rc);
    if (!st)
        return rc;
    *ret_st = st;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    return sqlite3_step(st);
}

/* Steps the bound registry write st (and releases it); *changed is set when it changed a
 * row. SQLite result code. Caller holds mu. */
static int registry_step(sqlite_store_t *s, sqlite3_stmt *st, bool *changed)
{
    int rc = sqlite3_step(st);
    release(st);
    if (rc != SQLITE_DONE)
        return rc;
    if (sqlite3_changes(s->db) > 0)
        *changed = true;
    return SQLITE_OK;
}

/* Bumps registry_meta.generation when the transaction changed a row (same transaction, see
 * DESIGN) and commits. SQLite result code. Caller holds mu. */
static int registry_commit(sqlite_store_t *s, bool changed)
{
    int rc;
    if (changed && (rc = run(s, Q_GEN_BUMP)) != SQLITE_OK)
        return rc;
    return commit(s);
}

/* Steps the model_stable upsert of (name, version). Caller holds mu, in a transaction. */
static int stable_step(sqlite_store_t *s, const char *name, const char *version, bool *changed)
{
    char ts[ISO8601_LEN];
    now_iso(ts);
    int rc = SQLITE_OK;
    sqlite3_stmt *st = stmt(s, Q_STABLE_SET, &rc);
    if (!st)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ts, -1, SQLITE_STATIC);
    return registry_step(s, st, changed);
}

static int sqlite_model_version_put(store_t *base, const char *name, const char *version, const char *path,
                                    const char *sha256, const char *task, const char *manifest_json, int stable,
                                    store_version_put_hook_fn hook, void *arg)
{
    if (empty(name) || empty(version) || empty(path) || empty(sha256) || empty(task) || !manifest_json ||
        stable < STORE_STABLE_KEEP || stable > STORE_STABLE_IF_NONE)
        return -EINVAL;
    sqlite_store_t *s = from_base(base);
    int r = 0, rc = SQLITE_OK;
    bool changed = false;
    sqlite3_stmt *st = NULL;
    char ts[ISO8601_LEN];
    now_iso(ts);
    pthread_mutex_lock(&s->mu);
    rc = begin_find_version(s, name, version, &st);
    bool exists = rc == SQLITE_ROW;
    if (exists) {
        const unsigned char *have = sqlite3_column_text(st, 0);
        r = have && strcmp((const char *)have, sha256) == 0 ? 0 : -EEXIST;
    }
    release(st);
    if (r < 0) {
        rollback(s); /* nothing changed: no generation bump */
        goto out;
    }
    if (!exists && rc != SQLITE_DONE)
        goto fail_db;
    /* the stable version as this transaction (holding the write lock) sees it */
    char prev[256] = "";
    rc = SQLITE_OK;
    if (!(st = stmt(s, Q_STABLE_GET, &rc)))
        goto fail_db;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int g = sqlite3_step(st);
    if (g == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(prev, sizeof(prev), "%s", (const char *)sqlite3_column_text(st, 0));
    release(st);
    if (g != SQLITE_ROW && g != SQLITE_DONE) {
        rc = g;
        goto fail_db;
    }
    bool make_stable = stable == STORE_STABLE_SET || (stable == STORE_STABLE_IF_NONE && !prev[0]);
    if (hook && (r = hook(arg, make_stable, prev[0] ? prev : NULL)) != 0) {
        rollback(s);
        goto out;
    }
    if (exists && !make_stable) {
        rollback(s); /* nothing to change */
        goto out;
    }
    if (!exists) {
        if (!(st = stmt(s, Q_MV_INSERT, &rc)))
            goto fail_db;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, task, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, manifest_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, ts, -1, SQLITE_STATIC);
        if ((rc = registry_step(s, st, &changed)) != SQLITE_OK)
            goto fail_db;
    }
    /* the version and its serving role in one transaction: both or neither */
    if (make_stable && (rc = stable_step(s, name, version, &changed)) != SQLITE_OK)
        goto fail_db;
    if ((rc = registry_commit(s, changed)) != SQLITE_OK)
        goto fail_db;
    goto out;

fail_db:
    r = db_fail(s, "model_version_put", rc);
    rollback(s);
out:
    pthread_mutex_unlock(&s->mu);
    return r;
}

static int sqlite_model_set_stable(store_t *base, const char *name, const char *version)
{
    if (empty(name) || empty(version))
        return -EINVAL;
    sqlite_store_t *s = from_base(base);
    int r = 0, rc = SQLITE_OK;
    bool changed = false;
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->mu);
    rc = begin_find_version(s, name, version, &st);
    release(st);
    if (rc == SQLITE_DONE) {
        r = -ENOENT;
        rollback(s);
        goto out;
    }
    if (rc != SQLITE_ROW)
        goto fail_db;
    if ((rc = stable_step(s, name, version, &changed)) != SQLITE_OK ||
        (rc = registry_commit(s, changed)) != SQLITE_OK)
        goto fail_db;
    goto out;

fail_db:
    r = db_fail(s, "model_set_stable", rc);
    rollback(s);
out:
    pthread_mutex_unlock(&s->mu);
    return r;
}

static const char *col_text(sqlite3_stmt *st, int c)
{
    return (const char *)sqlite3_column_text(st, c);
}

/* The registry's reads (its generation, the model list) go through a reader connection of their
 * own: `serve`'s main thread polls them every MODEL_POLL_INTERVAL, and on the writer's
 * connection they waited behind a prediction commit that itself waited up to BUSY_TIMEOUT_MS for
 * another process's write lock, holding up a SIGTERM or SIGHUP with them (review67 #1); on the
 * long-read connection they waited behind the monitor's feedback window (review69 #1). */
typedef struct registry_read {
    int q;
    const char *op;
    json_t *arr; /* Q_MODEL_LIST: the rows; else NULL and v holds the one value */
    int64_t v;
} registry_read_t;

static int registry_read_fn(sqlite3 *db, void *arg)
{
    registry_read_t *a = arg;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, queries[a->q], -1, &st, NULL);
    bool found = false;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        found = true;
        if (!a->arr) {
            a->v = sqlite3_column_int64(st, 0);
            rc = SQLITE_DONE;
            break;
        }
        json_t *o = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}", "name", col_text(st, 0), "version",
                              col_text(st, 1), "path", col_text(st, 2), "sha256", col_text(st, 3), "task",
                              col_text(st, 4), "registered_at", col_text(st, 5), "stable",
                              sqlite3_column_int(st, 6) != 0);
        if (!o || json_array_append_new(a->arr, o) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
    }
    if (rc == SQLITE_DONE && !found && !a->arr)
        rc = SQLITE_NOTFOUND;
    int r = 0;
    if (rc != SQLITE_DONE) {
        r = map_rc(db, rc);
        log_msg((rc & 0xff) == SQLITE_BUSY ? LOG_WARNING : LOG_ERROR, "store: sqlite error", "{s:s, s:i, s:s}",
                "op", a->op, "code", rc, "error", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return r;
}

static int sqlite_model_list(store_t *base, json_t **ret)
{
    registry_read_t a = {.q = Q_MODEL_LIST, .op = "model_list", .arr = json_array()};
    if (!a.arr)
        return -ENOMEM;
    int r = with_reader(from_base(base), &from_base(base)->regr, registry_read_fn, &a);
    if (r < 0)
        json_decref(a.arr);
    else
        *ret = a.arr;
    return r;
}

static int sqlite_model_get_stable(store_t *base, const char *name, char *ret_version, size_t n)
{
    if (empty(name))
        return -EINVAL;
    sqlite_store_t *s = from_base(base);
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->mu);
    int r = lookup(s, Q_STABLE_GET, name, "model_get_stable", &st);
    if (r == 0) {
        const char *v = col_text(st, 0);
        size_t len = v ? strlen(v) : 0;
        if (!v)
            r = -EIO;
        else if (len >= n)
            r = -ERANGE;
        else
            memcpy(ret_version, v, len + 1);
    }
    release(st);
    pthread_mutex_unlock(&s->mu);
    return r;
}

static int sqlite_registry_generation(store_t *base, int64_t *ret)
{
    registry_read_t a = {.q = Q_GEN_GET, .op = "registry_generation"};
    int r = with_reader(from_base(base), &from_base(base)->regr, registry_read_fn, &a);
    if (r == 0)
        *ret = a.v;
    return r;
}

static int sqlite_predictions_put(store_t *base, const store_prediction_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (empty(p[i].id) || empty(p[i].model) || empty(p[i].version) || empty(p[i].arm) ||
            !p[i].outputs_json || p[i].n_rows < 0)
            return -EINVAL;
    if (n == 0)
        return 0;
    sqlite_store_t *s = from_base(base);
    int r = 0, rc = SQLITE_OK;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = stmt(s, Q_PRED_INSERT, &rc);
    if (!st)
        goto fail_db;
    if ((rc = run(s, Q_BEGIN)) != SQLITE_OK)
        goto fail_db;
    for (size_t i = 0; i < n; i++) {
        const store_prediction_t *x = &p[i];
        sqlite3_bind_text(st, 1, x->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, x->created_ms);
        sqlite3_bind_text(st, 3, x->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, x->version, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, x->arm, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, x->request_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, x->patient_pseudonym, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, x->outputs_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, x->inputs_json, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 10, x->n_rows);
        sqlite3_bind_double(st, 11, x->latency_ms);
        sqlite3_bind_int(st, 12, x->status);
        rc = sqlite3_step(st);
        release(st);
        if (rc != SQLITE_DONE)
            goto fail_db;
    }
    if ((rc = commit(s)) != SQLITE_OK)
        goto fail_db;
    s->put_failing = false;
    goto out;

fail_db:
    r = s->put_failing ? map_rc(s->db, rc) : db_fail(s, "predictions_put", rc);
    s->put_failing = true;
    rollback(s);
out:
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* Parses a JSON document we stored; NULL text gives JSON null. */
static json_t *stored_json(const char *text)
{
    if (!text)
        return json_null();
    return json_loads(text, JSON_DECODE_ANY, NULL);
}

static int sqlite_prediction_get(store_t *base, const char *id, json_t **ret)
{
    if (empty(id))
        return -EINVAL;
    sqlite_store_t *s = from_base(base);
    sqlite3_stmt *st = NULL;
    json_t *o = NULL;
    pthread_mutex_lock(&s->mu);
    int r = lookup(s, Q_PRED_GET, id, "prediction_get", &st);
    if (r == 0) {
        char created[ISO8601_LEN];
        util_iso8601(sqlite3_column_int64(st, 1), created);
        json_t *outputs = stored_json(col_text(st, 7));
        json_t *inputs = stored_json(col_text(st, 8));
        if (!outputs || !inputs) {
            json_decref(outputs);
            json_decref(inputs);
            r = -EIO; /* not JSON: the row was not written through this API */
        } else {
            o = json_pack("{s:s?, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:o, s:o, s:i, s:f, s:i}", "id",
                          col_text(st, 0), "created_at", created, "model", col_text(st, 2), "version",
                          col_text(st, 3), "arm", col_text(st, 4), "request_id", col_text(st, 5),
                          "patient_pseudonym", col_text(st, 6), "outputs", outputs, "inputs", inputs,
                          "n_rows", sqlite3_column_int(st, 9), "latency_ms", sqlite3_column_double(st, 10),
                          "status", sqlite3_column_int(st, 11));
            if (!o)
                r = -ENOMEM;
        }
    }
    release(st);
    pthread_mutex_unlock(&s->mu);
    if (r == 0)
        *ret = o;
    return r;
}

static int sqlite_prediction_count(store_t *base, int64_t *ret)
{
    return locked_int64(from_base(base), Q_PRED_COUNT, "prediction_count", ret);
}

const store_ops_t store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .ping = sqlite_ping,
    .ping_write = sqlite_ping_write,
    .schema_version = sqlite_schema_version,
    .integrity_check = sqlite_integrity_check,
    .model_version_put = sqlite_model_version_put,
    .model_set_stable = sqlite_model_set_stable,
    .model_list = sqlite_model_list,
    .model_get_stable = sqlite_model_get_stable,
    .registry_generation = sqlite_registry_generation,
    .predictions_put = sqlite_predictions_put,
    .prediction_get = sqlite_prediction_get,
    .prediction_count = sqlite_prediction_count,
};
