/* SPDX-License-Identifier: Apache-2.0 */
/* Restore (see restore.h for the sequence and its guarantees). */
#include "backup/restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "audit/audit.h"
#include "backup/fsutil.h"
#include "backup/interrupt.h"
#include "backup/pool.h"
#include "backup/progress.h"
#include "backup/repo.h"
#include "backup/snapshot.h"
#include "backup/verify.h"
#include "common/lockfile.h"
#include "common/util.h"
#include "model/manifest.h"

#define LOCK_WAIT_MS 2000
#define MAX_DEPTH 32

static const struct {
    const char *name;
    unsigned bit;
} components[] = {
    {"db", BACKUP_C_DB},           {"models", BACKUP_C_MODELS}, {"config", BACKUP_C_CONFIG},
    {"results", BACKUP_C_RESULTS}, {"audit", BACKUP_C_AUDIT},
};

static unsigned component_bit(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(components); i++)
        if (strcmp(components[i].name, name) == 0)
            return components[i].bit;
    return 0;
}

int backup_components_parse(const char *list, unsigned *ret, char *err, size_t errlen)
{
    unsigned mask = 0;
    char buf[256];
    if (!list || snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf)) {
        snprintf(err, errlen, "--components: expected a comma list of %s", BACKUP_COMPONENTS);
        return -EINVAL;
    }
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned b = component_bit(tok);
        if (!b) {
            snprintf(err, errlen, "--components: unknown component '%s' (known: %s)", tok, BACKUP_COMPONENTS);
            return -EINVAL;
        }
        mask |= b;
    }
    if (!mask) {
        snprintf(err, errlen, "--components: expected a comma list of %s", BACKUP_COMPONENTS);
        return -EINVAL;
    }
    *ret = mask;
    return 0;
}

/* ------------------------------------------------------------------ areas */

typedef enum { KIND_FILE, KIND_DIR, KIND_FILES } area_kind_t;

typedef struct area {
    const char *name; /* first path component in the manifest */
    const char *component;
    area_kind_t kind;
    bool selected; /* component chosen and present in the backup */
    size_t nfiles;
    uint64_t bytes;
    char dest[PATH_MAX];  /* KIND_FILE: the file; otherwise the directory */
    char stage[PATH_MAX]; /* KIND_FILE: staged file; otherwise staging directory */
    /* KIND_FILES in place: the audit log's file name; every file of that trail in dest that
     * the backup does not hold is set aside too ("" for none, and in a journal's roll-forward,
     * where files already swapped in are no longer staged and must stay) */
    char trail[NAME_MAX + 1];
    bool staged;
} area_t;

enum { A_DB, A_MODELS, A_BASELINE, A_CONFIG, A_RESULTS, A_AUDIT, A_COUNT };

static void areas_init(area_t a[A_COUNT])
{
    memset(a, 0, sizeof(area_t) * A_COUNT);
    a[A_DB] = (area_t){.name = "db", .component = "db", .kind = KIND_FILE};
    a[A_MODELS] = (area_t){.name = "models", .component = "models", .kind = KIND_DIR};
    a[A_BASELINE] = (area_t){.name = "baseline", .component = "models", .kind = KIND_DIR};
    a[A_CONFIG] = (area_t){.name = "config", .component = "config", .kind = KIND_FILE};
    a[A_RESULTS] = (area_t){.name = "results", .component = "results", .kind = KIND_DIR};
    a[A_AUDIT] = (area_t){.name = "audit", .component = "audit", .kind = KIND_FILES};
}

static int area_of(const char *path)
{
    static const char *const names[] = {"db", "models", "baseline", "config", "results", "audit"};
    size_t n = strcspn(path, "/");
    for (int i = 0; i < A_COUNT; i++)
        if (strlen(names[i]) == n && strncmp(path, names[i], n) == 0)
            return i;
    return -1;
}

static const char *rel_of(const char *path)
{
    const char *s = strchr(path, '/');
    return s ? s + 1 : path;
}

/* buf = a + sep + b, absolute, without "." components and repeated or trailing slashes. The
 * stage and set-aside names are built from the last component: "models/" or "models/." put
 * them inside the directory being replaced, where no rename can work (review53 #3, review54
 * #1: a swap stopped halfway, for good); and a relative path in the journal meant another
 * directory to a rerun started elsewhere (review54 #2). ".." stays as written (resolving it
 * lexically could cross a symbolic link) but may not be the last component. 0, or
 * -ENAMETOOLONG, -EINVAL (a last ".."), -errno (getcwd). */
static int setp(char *buf, const char *a, const char *sep, const char *b)
{
    char raw[PATH_MAX], cwd[PATH_MAX] = "";
    int n = snprintf(raw, sizeof(raw), "%s%s%s", a, sep, b);
    if (n < 0 || n >= PATH_MAX)
        return -ENAMETOOLONG;
    if (raw[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        return -errno;
    size_t o = 0;
    const char *parts[2] = {cwd, raw};
    for (int k = 0; k < 2; k++)
        for (const char *p = parts[k]; *p;) {
            while (*p == '/')
                p++;
            size_t len = strcspn(p, "/");
            if (len == 1 && p[0] == '.') {
                p += len;
                continue;
            }
            if (len == 0)
                break;
            if (o + 1 + len >= PATH_MAX)
                return -ENAMETOOLONG;
            buf[o++] = '/';
            memcpy(buf + o, p, len);
            o += len;
            p += len;
        }
    if (o == 0)
        buf[o++] = '/';
    buf[o] = '\0';
    /* room for the stage and set-aside names beside it (stage_names cut a longer one short:
     * review55 #4) */
    if (o > PATH_MAX - NAME_MAX - 64)
        return -ENAMETOOLONG;
    return strcmp(strrchr(buf, '/') + 1, "..") == 0 ? -EINVAL : 0;
}

/* name, in the audit directory, is a file of the trail a restore in place replaces or sets
 * aside: the log, its rotated files and side files ("<log>" or "<log>.*"), not its lock. */
static bool is_trail_file(const area_t *a, const char *name)
{
    size_t tl = strlen(a->trail), nl = strlen(name);
    if (strncmp(name, a->trail, tl) != 0 || (name[tl] != '\0' && name[tl] != '.'))
        return false;
    return !(nl >= 5 && strcmp(name + nl - 5, ".lock") == 0);
}

/* In place, the swap renames each selected area's destination by name: a symbolic link there
 * would be set aside with the restored data put in its place, and its target left as it was,
 * stale, for whatever reads it (review50 #4 for the database, review51 #3 for the others; a
 * link in an area that is not restored does not matter). For the audit trail it is the log
 * file itself: its files are swapped one by one inside the directory. A directory that is
 * "/" or a mount point can not be renamed at all. */
/* path (not followed if a link) is the root of a mount: a volume, or a bind mount of a
 * directory or a file from the same file system, which the device number alone does not show
 * (review56 #1, #2). */
static bool is_mount_point(const char *path)
{
    struct statx sx;
    if (strcmp(path, "/") == 0)
        return true;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) < 0)
        return false;
    if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
        return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    struct stat up; /* a kernel before 5.8: another device than its parent's */
    char parent[PATH_MAX];
    util_dirname(path, parent, sizeof(parent));
    return stat(parent, &up) == 0 && makedev(sx.stx_dev_major, sx.stx_dev_minor) != up.st_dev;
}

/* In place: the symbolic link and mount point checks. With --target (in_place false) only the
 * mount points: a target directory that already holds a volume at, say, models would stop the
 * swap in the same way, with a journal inside the target (review56 #3). The audit area is
 * staged inside its directory, so a volume there is renamed into, never renamed. */
/* A file of the trail in the audit directory that is a mount point (a bind-mounted file),
 * copied to out. Under --target (no trail name) any file of the directory: the backup's
 * files are renamed into it by name (review59 #3). */
static bool trail_file_mounted(const area_t *a, char *out, size_t outlen)
{
    DIR *d = opendir(a->dest);
    struct dirent *de;
    bool found = false;
    while (d && !found && (de = readdir(d)))
        if ((a->trail[0] ? is_trail_file(a, de->d_name)
                         : strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) &&
            snprintf(out, outlen, "%s/%s", a->dest, de->d_name) < (int)outlen)
            found = is_mount_point(out);
    if (d)
        closedir(d);
    return found;
}

static int refuse_unswappable(const area_t a[A_COUNT], const backup_settings_t *s, bool in_place, char *err,
                              size_t errlen)
{
    static const char *const hint[A_COUNT] = {
        [A_DB] = "point DATABASE_URL at the real file",
        [A_MODELS] = "point MODEL_STORAGE_PATH at the real directory",
        [A_BASELINE] = "make DATA_DIR/baseline the real directory", /* DATA_DIR itself may be a link */
        [A_CONFIG] = "pass --config-dest the real file (where the backed-up env file goes)",
        [A_RESULTS] = "point RESULTS_PATH at the real directory",
        [A_AUDIT] = "point AUDIT_LOG_PATH at the real file",
    };
    for (int i = 0; i < A_COUNT; i++) {
        const char *p = i == A_AUDIT && in_place ? s->audit_log_path : a[i].dest;
        struct stat st;
        char mounted[PATH_MAX + 256];
        if (!a[i].selected || !p)
            continue;
        if (!in_place) {
            /* the audit directory itself may be a volume: its files are renamed into it */
            if (i == A_AUDIT && !trail_file_mounted(&a[i], mounted, sizeof(mounted)))
                continue;
            if (i == A_AUDIT)
                p = mounted;
            if (is_mount_point(p)) {
                snprintf(err, errlen,
                         "refusing to restore: %s is %s; the restore puts the %s in place by renaming, which %s: "
                         "choose a --target directory without volumes inside it",
                         p, strcmp(p, "/") ? "a mount point" : "the root directory", a[i].name,
                         strcmp(p, "/") ? "a mount point does not allow" : "the root does not allow");
                return -EINVAL;
            }
            continue;
        }
        if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) {
            snprintf(err, errlen,
                     "refusing to restore: %s is a symbolic link; a restore in place replaces files by name and "
                     "would leave the link's target as it was: %s (or restore with --target)",
                     p, hint[i]);
            return -EINVAL;
        }
        /* what is swapped by renaming (a directory, the database, the env file, the audit log)
         * can not be "/" or a mount point: EBUSY, and a journal no rerun could finish
         * (review55 #3, review56 #1 and #2); for the trail, each of its files (review57 #2) */
        if (i == A_AUDIT && trail_file_mounted(&a[i], mounted, sizeof(mounted)))
            p = mounted;
        if (is_mount_point(p)) {
            /* no setting names the env file's place: --config-dest does (review57 #3) */
            snprintf(err, errlen,
                     "refusing to restore: %s is %s; a restore in place replaces it by renaming, which %s: %s, "
                     "or restore with --target and copy the files",
                     p, strcmp(p, "/") ? "a mount point" : "the root directory",
                     strcmp(p, "/") ? "a mount point does not allow" : "the root does not allow",
                     i == A_CONFIG ? "pass --config-dest a file inside the volume, leave config out "
                                     "(--components)"
                                   : "point the setting inside the volume");
            return -EINVAL;
        }
    }
    return 0;
}

#define RESTORE_DB_PATH_MAX CONFIG_SQLITE_PATH_MAX

/* Fills dest of every selected area. */
static int resolve_areas(const backup_settings_t *s, const backup_manifest_t *m,
                         const backup_restore_opts_t *o, area_t a[A_COUNT], char *err, size_t errlen)
{
    areas_init(a);
    unsigned want = o->components ? o->components : BACKUP_C_ALL;
    for (size_t i = 0; i < m->n_files; i++) {
        int ai = area_of(m->files[i].path);
        if (ai < 0) {
            snprintf(err, errlen, "manifest: unknown area in %s", m->files[i].path);
            return -EPROTO;
        }
        if (!(want & component_bit(a[ai].component)))
            continue;
        a[ai].selected = true;
        a[ai].nfiles++;
        a[ai].bytes += m->files[i].size;
    }
    if (a[A_DB].nfiles > 1 || a[A_CONFIG].nfiles > 1) {
        snprintf(err, errlen, "manifest: more than one database or env file");
        return -EPROTO;
    }
    const char *dbfile = NULL, *cfgfile = NULL;
    for (size_t i = 0; i < m->n_files; i++) {
        int ai = area_of(m->files[i].path);
        if (ai == A_DB)
            dbfile = rel_of(m->files[i].path);
        if (ai == A_CONFIG)
            cfgfile = rel_of(m->files[i].path);
    }
    if (!dbfile)
        dbfile = util_basename(s->db_path);
    /* each destination in turn: the first one refused is named (review57 #4) */
    int r = 0, bad = -1;
#define SETP(i, base, sep, rel)                                                                                        \
    do {                                                                                                               \
        if (r == 0 && (r = setp(a[i].dest, base, sep, rel)) < 0)                                                       \
            bad = i;                                                                                                   \
    } while (0)
    if (o->target) {
        SETP(A_DB, o->target, "/", dbfile);
        SETP(A_MODELS, o->target, "/", "models");
        SETP(A_BASELINE, o->target, "/", "data/baseline");
        SETP(A_RESULTS, o->target, "/", "data/results");
        SETP(A_AUDIT, o->target, "/", "audit");
        SETP(A_CONFIG, o->target, "/config/", cfgfile ? cfgfile : "aimedres.env");
    } else {
        SETP(A_DB, s->db_path, "", "");
        SETP(A_MODELS, s->model_storage_path, "", "");
        SETP(A_BASELINE, s->data_dir, "/", "baseline");
        SETP(A_RESULTS, s->results_path, "", "");
        if (a[A_AUDIT].selected) {
            if (!s->audit_log_path) {
                snprintf(err, errlen,
                         "the backup holds audit files but AUDIT_LOG_PATH is not set: set it, restore with "
                         "--target, "
                         "or leave audit out of --components");
                return -EINVAL;
            }
            char dir[PATH_MAX];
            util_dirname(s->audit_log_path, dir, sizeof(dir));
            SETP(A_AUDIT, dir, "", "");
            snprintf(a[A_AUDIT].trail, sizeof(a[A_AUDIT].trail), "%s", util_basename(s->audit_log_path));
        }
        if (a[A_CONFIG].selected) {
            const char *src = json_string_value(json_object_get(m->source, "config"));
            const char *dst = o->config_dest ? o->config_dest : src;
            if (!dst) {
                snprintf(err, errlen,
                         "the backup holds an env file but not where it came from: pass --config-dest FILE");
                return -EINVAL;
            }
            SETP(A_CONFIG, dst, "", "");
        }
    }
#undef SETP
    /* SQLite opens the database (and its staged copy, "<dest>.restore-<pid>") by a path of at
     * most 512 bytes: a longer one failed the restored data's check, as if the backup were
     * damaged (review59 #4) */
    if (r == 0 && a[A_DB].selected && strlen(a[A_DB].dest) > RESTORE_DB_PATH_MAX) {
        snprintf(err, errlen,
                 "the destination of the database (DATABASE_URL) is too long: at most %d characters once made "
                 "absolute%s (SQLite opens it, and its staged copy, by a path of at most 512 bytes)",
                 RESTORE_DB_PATH_MAX, o->target ? ", --target DIR and the file name inside it" : "");
        return -ENAMETOOLONG;
    }
    if (r < 0) {
        static const char *const what[A_COUNT] = {
            [A_DB] = "the database (DATABASE_URL)",      [A_MODELS] = "the model storage (MODEL_STORAGE_PATH)",
            [A_BASELINE] = "the baseline (DATA_DIR)",   [A_RESULTS] = "the results (RESULTS_PATH)",
            [A_AUDIT] = "the audit trail's directory", [A_CONFIG] = "the env file",
        };
        if (r == -EINVAL)
            snprintf(err, errlen, "the destination of %s ends in \"..\": name the directory itself", what[bad]);
        else if (r == -ENAMETOOLONG)
            snprintf(err, errlen,
                     "the destination of %s is too long: at most %d characters once made absolute%s (the restore "
                     "stages beside it)",
                     what[bad], PATH_MAX - NAME_MAX - 64, o->target ? ", --target DIR and the name inside it" : "");
        else
            snprintf(err, errlen, "the destination of %s: %s", what[bad], strerror(-r));
        return r;
    }
    return 0;
}

int backup_restore_plan(const backup_settings_t *s, const backup_manifest_t *m,
                        const backup_restore_opts_t *o, json_t **ret, char *err, size_t errlen)
{
    area_t a[A_COUNT];
    int r = resolve_areas(s, m, o, a, err, errlen);
    if (r < 0)
        return r;
    char ts[ISO8601_LEN];
    util_iso8601(m->timestamp_ms, ts);
    json_t *dest = json_object(), *comps = json_array();
    size_t files = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < A_COUNT; i++) {
        if (!a[i].selected)
            continue;
        json_object_set_new(dest, a[i].name, json_string(a[i].dest));
        files += a[i].nfiles;
        bytes += a[i].bytes;
    }
    for (size_t i = 0; i < ARRAY_SIZE(components); i++)
        for (int k = 0; k < A_COUNT; k++)
            if (a[k].selected && strcmp(a[k].component, components[i].name) == 0) {
                json_array_append_new(comps, json_string(components[i].name));
                break;
            }
    *ret =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:o}", "id", m->id, "type", m->type, "timestamp", ts, "files",
                  (json_int_t)files, "bytes", (json_int_t)bytes, "components", comps, "destinations", dest);
    return *ret ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------ staging */

/* Directories restore created, so a refused restore can remove them again (rmdir: only
 * the empty ones go). */
typedef struct dirlog {
    char *paths[64];
    size_t n;
} dirlog_t;

/* mkdir -p, recording each directory it creates in log (may be NULL). */
static int mkdir_tracked(dirlog_t *log, const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0750) == 0) {
            if (log && log->n < ARRAY_SIZE(log->paths))
                log->paths[log->n++] = strdup(buf);
        } else if (errno != EEXIST) {
            return -errno;
        }
        *p = c;
        if (!c)
            break;
    }
    return 0;
}

static void dirlog_rollback(dirlog_t *log)
{
    while (log->n > 0) {
        char *p = log->paths[--log->n];
        rmdir(p);
        free(p);
    }
}

static void dirlog_free(dirlog_t *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->paths[i]);
    log->n = 0;
}

static int mkdirs_for(dirlog_t *log, const char *file)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", file) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return mkdir_tracked(log, dir);
}

/* Where an area is staged: the directory and the name prefix before the pid. A file's copy
 * is "<dest>.restore-<pid>", a directory's ".<name>.restore-<pid>" beside it, the audit
 * files' ".restore-<pid>/" inside the audit directory. */
static void stage_location(const area_t *a, char dir[PATH_MAX], char prefix[NAME_MAX + 16])
{
    const char *slash = strrchr(a->dest, '/');
    if (a->kind == KIND_FILES) {
        snprintf(dir, PATH_MAX, "%s", a->dest);
        snprintf(prefix, NAME_MAX + 16, ".restore-");
        return;
    }
    if (slash && slash != a->dest)
        snprintf(dir, PATH_MAX, "%.*s", (int)(slash - a->dest), a->dest);
    else
        snprintf(dir, PATH_MAX, "%s", slash ? "/" : ".");
    snprintf(prefix, NAME_MAX + 16, a->kind == KIND_FILE ? "%.200s.restore-" : ".%.200s.restore-",
             slash ? slash + 1 : a->dest);
}

static void stage_names(area_t *a, long pid)
{
    char dir[PATH_MAX], prefix[NAME_MAX + 16];
    stage_location(a, dir, prefix);
    snprintf(a->stage, PATH_MAX, "%.*s%s%s%ld", PATH_MAX - NAME_MAX - 64, dir, strcmp(dir, "/") ? "/" : "",
             prefix, pid);
}

/* Removes in dir the staging entries "<prefix><pid>[-wal|-shm|-journal]" of restores that
 * died without cleaning up (kill -9, power cut): decrypted patient data nothing else would
 * ever remove. Only entries of processes that no longer exist; each removed path is added
 * to `removed`. Called with the destination's data lock held. */
static void remove_stale_stages(const char *dir, const char *prefix, json_t *removed)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t pl = strlen(prefix);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, pl) != 0)
            continue;
        char *end;
        const char *digits = de->d_name + pl;
        long pid = strtol(digits, &end, 10);
        if (end == digits || *digits == '-' || *digits == '+' || pid <= 0 || pid == (long)getpid())
            continue;
        if (*end && strcmp(end, "-wal") != 0 && strcmp(end, "-shm") != 0 && strcmp(end, "-journal") != 0)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* that process still runs (or is not ours to judge) */
        char p[PATH_MAX + 300];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) < 0)
            continue;
        if ((S_ISDIR(st.st_mode) ? util_rmtree(p) : (unlink(p) < 0 ? -errno : 0)) == 0)
            json_array_append_new(removed, json_string(p));
    }
    closedir(d);
}

/* The stale staging entries of every selected area (stage_location). */
static void remove_stale_areas(const area_t a[A_COUNT], json_t *removed)
{
    for (int i = 0; i < A_COUNT; i++) {
        if (!a[i].selected)
            continue;
        char dir[PATH_MAX], prefix[NAME_MAX + 16];
        stage_location(&a[i], dir, prefix);
        remove_stale_stages(dir, prefix, removed);
    }
}

static void unstage(area_t a[A_COUNT])
{
    for (int i = 0; i < A_COUNT; i++) {
        if (!a[i].staged)
            continue;
        if (a[i].kind == KIND_FILE) {
            char p[PATH_MAX + 8];
            unlink(a[i].stage);
            snprintf(p, sizeof(p), "%s-wal", a[i].stage);
            unlink(p);
            snprintf(p, sizeof(p), "%s-shm", a[i].stage);
            unlink(p);
        } else {
            util_rmtree(a[i].stage);
        }
        a[i].staged = false;
        backup_interrupt_forget(a[i].stage);
    }
}

static int restore_file(const char *repo, const backup_file_t *f, const char *dst, const backup_key_t *key,
                        backup_progress_t *prog, char *err, size_t errlen)
{
    if (backup_interrupt_cleaning()) { /* its staging area is being removed: recreate nothing */
        backup_errf(err, errlen, "interrupted");
        return -ECANCELED;
    }
    int r = mkdirs_for(NULL, dst);
    if (r < 0) {
        backup_errf(err, errlen, "cannot create the directory of %s: %s", dst, strerror(-r));
        return r;
    }
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        backup_errf(err, errlen, "%s: %s", dst, strerror(errno));
        return r;
    }
    r = backup_file_decrypt(repo, f, NULL, key, fd, prog, err, errlen);
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
        backup_errf(err, errlen, "fsync %s: %s", dst, strerror(errno));
    }
    if (r == 0) {
        struct timespec times[2] = {
            {0, UTIME_OMIT}, {(time_t)(f->mtime_ns / 1000000000LL), (long)(f->mtime_ns % 1000000000LL)}};
        fchmod(fd, f->mode & 0777);
        futimens(fd, times);
    }
    if (close(fd) < 0 && r == 0) {
        r = -errno;
        backup_errf(err, errlen, "close %s: %s", dst, strerror(errno));
    }
    if (r < 0)
        unlink(dst);
    return r;
}

/* ------------------------------------------------------------------ checks */

static bool dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every <name>/<version>/manifest.json under dir: load it and check the booster's sha256. */
static json_t *check_models(const char *dir, int *failures)
{
    json_t *bad = json_array();
    size_t checked = 0;
    DIR *d = opendir(dir);
    if (!d)
        return json_pack("{s:s,s:I,s:o}", "status", "ok", "checked", (json_int_t)0, "bad", bad);
    struct dirent *de, *ve;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char ndir[PATH_MAX];
        DIR *vd = backup_path_join(ndir, sizeof(ndir), dir, de->d_name) < 0 ? NULL : opendir(ndir);
        if (!vd)
            continue;
        while ((ve = readdir(vd))) {
            if (ve->d_name[0] == '.')
                continue;
            char vdir[PATH_MAX], mpath[PATH_MAX], booster[PATH_MAX], merr[512] = "", sha[SHA256_HEX_LEN];
            if (backup_path_join(vdir, sizeof(vdir), ndir, ve->d_name) < 0 ||
                backup_path_join(mpath, sizeof(mpath), vdir, MODEL_MANIFEST_FILE) < 0 ||
                !util_path_exists(mpath))
                continue;
            model_manifest_t *mm = NULL;
            checked++;
            if (model_manifest_load(mpath, &mm, merr, sizeof(merr)) < 0) {
                json_array_append_new(bad, json_pack("{s:s,s:s,s:s}", "model", de->d_name, "version",
                                                     ve->d_name, "error", merr));
                continue;
            }
            int r = backup_path_join(booster, sizeof(booster), vdir, mm->booster_file);
            if (r == 0)
                r = util_sha256_file(booster, sha);
            if (r < 0 || strcmp(sha, mm->booster_sha256) != 0) {
                char why[256];
                backup_errf(why, sizeof(why), "booster %s %s", mm->booster_file,
                            r < 0 ? "is unreadable" : "sha256 differs from the manifest");
                json_array_append_new(bad, json_pack("{s:s,s:s,s:s}", "model", de->d_name, "version",
                                                     ve->d_name, "error", why));
            }
            model_manifest_free(mm);
        }
        closedir(vd);
    }
    closedir(d);
    *failures += (int)json_array_size(bad);
    return json_pack("{s:s,s:I,s:o}", "status", json_array_size(bad) ? "fail" : "ok", "checked",
                     (json_int_t)checked, "bad", bad);
}

/* The integrity_check result the backup recorded for exactly these bytes: "ok", "failed"
 * (*why = its error) or NULL when there is none (older backups, or the check did not run). */
static const char *recorded_integrity(const backup_manifest_t *m, const backup_file_t *f, const char **why)
{
    json_t *ic = m->db ? json_object_get(m->db, "integrity") : NULL;
    const char *result = json_string_value(json_object_get(ic, "result"));
    const char *sha = json_string_value(json_object_get(ic, "sha256"));
    const char *pragma = json_string_value(json_object_get(ic, "pragma"));
    if (!result || !sha || !pragma || strcmp(pragma, "integrity_check") != 0 || strcmp(sha, f->sha256) != 0)
        return NULL;
    *why = json_string_value(json_object_get(ic, "error"));
    return strcmp(result, "ok") == 0 ? "ok" : "failed";
}

/* integrity_check and record count of the staged database (run by the worker that
 * restored it, while the others go on decrypting). By default the check is the backup's
 * own: PRAGMA integrity_check ran on the snapshot at backup time and the authenticated
 * manifest records its result with the snapshot's sha256, which the restored file was just
 * proven to have; full (--full-db-check, or a backup without that record) runs the PRAGMA
 * again on the restored file. */
static json_t *check_db_integrity(const char *db, const backup_manifest_t *m, const backup_file_t *f,
                                  bool full, bool *ok)
{
    char err[1024] = "";
    *ok = false;
    const char *why = NULL;
    const char *recorded = recorded_integrity(m, f, &why);
    json_t *ic = m->db ? json_object_get(m->db, "integrity") : NULL;
    const char *method;
    if (recorded && strcmp(recorded, "failed") == 0 && !full) {
        return json_pack("{s:s,s:s,s:s,s:s}", "status", "fail", "integrity_check", "failed", "method",
                         "backup-time", "error", why ? why : "integrity_check failed on the snapshot");
    } else if (recorded && !full) {
        method = "backup-time"; /* proof: same sha256 as the checked snapshot */
    } else {
        method = "restore";
        /* on the bytes exactly as restored, before anything opens the file for writing */
        if (backup_db_integrity_check(db, err, sizeof(err)) < 0)
            return json_pack("{s:s,s:s,s:s,s:s}", "status", "fail", "integrity_check", "failed", "method",
                             method, "error", err);
    }
    /* read-only and immutable: the checks never write (or migrate) the restored bytes; a
     * newer aimedres migrates them when it starts on them, as after any upgrade */
    json_t *out;
    int64_t preds = -1, nver = 0;
    int schema = 0;
    json_t *want = m->db ? json_object_get(m->db, "predictions") : NULL;
    if (backup_db_counts(db, &preds, &nver, &schema, err, sizeof(err)) < 0) {
        out = json_pack("{s:s,s:s}", "status", "fail", "error", err);
    } else if (json_is_integer(want) && json_integer_value(want) != preds) {
        out = json_pack("{s:s,s:I,s:I,s:s}", "status", "fail", "predictions", (json_int_t)preds, "expected",
                        json_integer_value(want), "error", "record count differs from the snapshot's");
    } else {
        out = json_pack("{s:s,s:s,s:s,s:I}", "status", "ok", "integrity_check", "ok", "method", method,
                        "predictions", (json_int_t)preds);
        if (strcmp(method, "backup-time") == 0)
            json_object_set_new(out, "proof",
                                json_pack("{s:s,s:O?,s:O?}", "sha256", f->sha256, "sqlite_version",
                                          json_object_get(ic, "sqlite_version"), "seconds_at_backup",
                                          json_object_get(ic, "seconds")));
        *ok = true;
    }
    return out;
}

/* Every version registered in the staged database has its directory in models_dir. */
static json_t *check_registry(const char *db, const char *models_dir, int *failures)
{
    char err[1024] = "";
    json_t *models = NULL;
    if (backup_db_model_versions(db, &models, err, sizeof(err)) < 0) {
        (*failures)++;
        return json_pack("{s:s,s:s}", "status", "fail", "error", err[0] ? err : "cannot list models");
    }
    json_t *missing = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(models, i, row)
    {
        const char *n = json_string_value(json_object_get(row, "name"));
        const char *v = json_string_value(json_object_get(row, "version"));
        char a1[PATH_MAX], a2[PATH_MAX], mpath[PATH_MAX];
        if (!n || !v || backup_path_join(a1, sizeof(a1), models_dir, n) < 0 ||
            backup_path_join(a2, sizeof(a2), a1, v) < 0 ||
            backup_path_join(mpath, sizeof(mpath), a2, MODEL_MANIFEST_FILE) < 0)
            continue;
        if (!util_path_exists(mpath))
            json_array_append_new(missing, json_pack("{s:s,s:s}", "model", n, "version", v));
    }
    *failures += (int)json_array_size(missing);
    json_t *out = json_pack("{s:s,s:I,s:o}", "status", json_array_size(missing) ? "fail" : "ok", "registered",
                            (json_int_t)json_array_size(models), "missing", missing);
    json_decref(models);
    return out;
}

/* The audit chain of the staged audit files (HMAC links, sequence, signed checkpoints),
 * verified by the audit module as `aimedres audit verify` would, with AUDIT_LOG_PATH
 * pointed at the staging area. */
static json_t *check_audit_chain(const backup_settings_t *s, const backup_manifest_t *m,
                                 const char *stage_dir, int *failures)
{
    const char *src = json_string_value(json_object_get(m->source, "audit_log"));
    const char *base = src ? util_basename(src) : NULL;
    char log[PATH_MAX], err[512] = "";
    if (!base || !s->cfg || backup_path_join(log, sizeof(log), stage_dir, base) < 0) {
        (*failures)++;
        return json_pack("{s:s,s:s}", "status", "fail", "error",
                         "the backup does not say which file is the audit log");
    }
    config_t c = *s->cfg; /* shallow copy: only the log path differs; nothing is freed */
    c.audit_log_path = log;
    audit_verify_result_t res;
    memset(&res, 0, sizeof(res));
    int r = audit_verify(&c, NULL, &res, err, sizeof(err));
    if (r < 0 || !res.ok) {
        (*failures)++;
        return json_pack(
            "{s:s,s:s,s:s}", "status", "fail", "error", r < 0 ? err : res.message, "hint",
            "restore without the audit component (--components db,models,config,results) to proceed");
    }
    return json_pack("{s:s,s:I,s:I,s:b}", "status", "ok", "records", (json_int_t)res.records, "checkpoints",
                     (json_int_t)res.checkpoints, "checkpoints_signed", res.checkpoints_signed);
}

/* ------------------------------------------------------------------ parallel decrypt */

typedef struct rjob {
    const char *repo;
    const backup_manifest_t *m;
    area_t *a;
    const backup_key_t *key;
    backup_progress_t *prog;
    char (*errs)[1024]; /* per file: "" = good */
    int *codes;
    bool full_db_check;
    json_t *db_check; /* set by the worker that restored the database */
    bool db_ok;
} rjob_t;

static int restore_one(void *arg, size_t i)
{
    rjob_t *j = arg;
    const backup_file_t *f = &j->m->files[i];
    int ai = area_of(f->path);
    area_t *ar = &j->a[ai];
    if (!ar->selected)
        return 0;
    char dst[PATH_MAX];
    int r = ar->kind == KIND_FILE ? backup_path_cat(dst, sizeof(dst), ar->stage, "")
                                  : backup_path_join(dst, sizeof(dst), ar->stage, rel_of(f->path));
    if (r == 0)
        r = restore_file(j->repo, f, dst, j->key, j->prog, j->errs[i], sizeof(j->errs[i]));
    else
        snprintf(j->errs[i], sizeof(j->errs[i]), "destination path too long");
    if (r < 0) {
        j->codes[i] = r;
        return r;
    }
    if (ai == A_DB)
        j->db_check = check_db_integrity(dst, j->m, f, j->full_db_check, &j->db_ok);
    return 0;
}

/* Another process that has the database (or its WAL) open, as its pid (its name in comm),
 * or 0. The data lock keeps a server out, but not a command (`model train`, `apikey create`)
 * that writes the store while a restore swaps it: it would write into the database set aside
 * (review48 #5). Linux: /proc/<pid>/fd. */
static long store_opened_by(const char *db, char *comm, size_t n)
{
    struct stat want[2];
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof(wal), "%s-wal", db);
    bool have[2] = {stat(db, &want[0]) == 0, stat(wal, &want[1]) == 0};
    DIR *proc = opendir("/proc");
    if (!proc || (!have[0] && !have[1])) {
        if (proc)
            closedir(proc);
        return 0;
    }
    long found = 0, self = (long)getpid();
    struct dirent *de;
    while (!found && (de = readdir(proc))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        char fdd[64];
        snprintf(fdd, sizeof(fdd), "/proc/%ld/fd", pid);
        DIR *fds = opendir(fdd);
        if (!fds)
            continue; /* gone, or not ours to see */
        struct dirent *fe;
        while (!found && (fe = readdir(fds))) {
            struct stat st;
            if (fe->d_name[0] == '.' || fstatat(dirfd(fds), fe->d_name, &st, 0) < 0)
                continue;
            for (int k = 0; k < 2 && !found; k++)
                if (have[k] && st.st_dev == want[k].st_dev && st.st_ino == want[k].st_ino)
                    found = pid;
        }
        closedir(fds);
    }
    closedir(proc);
    comm[0] = '\0';
    if (found) {
        char cp[64];
        snprintf(cp, sizeof(cp), "/proc/%ld/comm", found);
        FILE *f = fopen(cp, "re");
        if (f) {
            if (!fgets(comm, (int)n, f))
                comm[0] = '\0';
            fclose(f);
            comm[strcspn(comm, "\n")] = '\0';
        }
    }
    return found;
}

/* In place, -EBUSY with err when another process has the database open (store_opened_by):
 * checked once the data lock is held, and again just before the swap. */
static int refuse_if_opened(const area_t a[A_COUNT], const backup_restore_opts_t *o, char *err, size_t errlen)
{
    char comm[64];
    long holder = o->target ? 0 : store_opened_by(a[A_DB].dest, comm, sizeof(comm));
    if (holder <= 0)
        return 0;
    snprintf(err, errlen,
             "refusing to restore: process %ld (%s) has the database %s open; let it finish (or stop it) first: "
             "it would go on using the database set aside",
             holder, comm[0] ? comm : "?", a[A_DB].dest);
    return -EBUSY;
}

/* ------------------------------------------------------------------ swap */

/* The files SQLite keeps beside a database and pairs with it by name. */
static const char *const db_sidecars[] = {"-wal", "-shm", "-journal"};

/* The i-th aside name of path for this restore: "<path>.pre-restore-<id>", then "...-1", ... */
static void aside_candidate(const char *path, const char *id, int i, char *aside, size_t n)
{
    if (i == 0)
        snprintf(aside, n, "%s.pre-restore-%s", path, id);
    else
        snprintf(aside, n, "%s.pre-restore-%s-%d", path, id, i);
}

/* The first of "<path>.pre-restore-<id>", "...-1", "...-2"... that does not exist, in
 * aside[n]: what an earlier restore of the same backup set aside is never overwritten. With
 * sidecars (a database), the name must be free with each of db_sidecars appended too, so that
 * the set-aside database and its WAL (or hot journal) stay a pair that SQLite opens with every
 * record the old store had (review47 #1: the WAL went to <db>-wal.pre-restore-<id>, which
 * SQLite never reads with <db>.pre-restore-<id>). */
static int aside_name_for(const char *path, const char *id, bool sidecars, char *aside, size_t n)
{
    struct stat st;
    for (int i = 0; i < 100; i++) {
        aside_candidate(path, id, i, aside, n);
        bool free_ = lstat(aside, &st) < 0 && errno == ENOENT;
        for (size_t k = 0; free_ && sidecars && k < ARRAY_SIZE(db_sidecars); k++) {
            char side[PATH_MAX + 80];
            snprintf(side, sizeof(side), "%s%s", aside, db_sidecars[k]);
            free_ = lstat(side, &st) < 0 && errno == ENOENT;
        }
        if (free_)
            return 0;
    }
    return -EEXIST;
}

static int aside_name(const char *path, const char *id, char *aside, size_t n)
{
    return aside_name_for(path, id, false, aside, n);
}

/* The aside name an interrupted run of this restore already linked the database to (the same
 * file as path), in aside[n]: 1, or 0 when there is none. Its rerun moves the sidecars there
 * too, so that the first pair stays whole (review48 #1: the rerun took the next name, and the
 * name the first run gave kept the database without its WAL). */
static int db_aside_linked(const char *path, const char *id, char *aside, size_t n)
{
    struct stat db, st;
    if (stat(path, &db) < 0)
        return 0;
    for (int i = 0; i < 100; i++) {
        aside_candidate(path, id, i, aside, n);
        if (lstat(aside, &st) < 0)
            return 0; /* names are taken in order: the first free one ends the search */
        if (st.st_dev == db.st_dev && st.st_ino == db.st_ino)
            return 1;
    }
    return 0;
}

/* Renames path to aside, or with keep links it there, so that path itself is only ever
 * replaced by the rename that follows: a file's name is never missing, even when the process
 * dies between the two (the env file a rerun needs; review34). A file system without hard
 * links falls back to the rename. Appends to moved. */
static int move_to_aside(const char *path, const char *aside, bool keep, json_t *moved)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    bool linked = false;
    if (keep && S_ISREG(st.st_mode)) {
        linked = link(path, aside) == 0;
        if (!linked && errno != EPERM && errno != EOPNOTSUPP && errno != EMLINK && errno != EXDEV)
            return -errno;
    }
    if (!linked && rename(path, aside) < 0)
        return -errno;
    json_array_append_new(moved, json_string(aside));
    return 0;
}

/* move_to_aside under aside_name(path). */
static int move_aside(const char *path, const char *id, bool keep, json_t *moved)
{
    char aside[PATH_MAX + 64];
    int r = aside_name(path, id, aside, sizeof(aside));
    return r < 0 ? r : move_to_aside(path, aside, keep, moved);
}

static int parent_fsync(const char *path)
{
    char dir[PATH_MAX];
    util_dirname(path, dir, sizeof(dir));
    return util_fsync_dir(dir);
}

/* Renames the audit file name in a->dest into aside_dir (created on first use), which moved
 * names once. 0 or -errno. */
static int file_aside(const area_t *a, const char *name, const char *aside_dir, json_t *moved)
{
    char from[PATH_MAX + 300], to[PATH_MAX + 400];
    snprintf(from, sizeof(from), "%s/%s", a->dest, name);
    snprintf(to, sizeof(to), "%s/%s", aside_dir, name);
    int r = util_mkdir_p(aside_dir, 0700);
    if (r < 0)
        return r;
    if (rename(from, to) < 0)
        return -errno;
    if (json_array_size(moved) == 0 ||
        strcmp(json_string_value(json_array_get(moved, json_array_size(moved) - 1)), aside_dir) != 0)
        json_array_append_new(moved, json_string(aside_dir));
    return 0;
}

/* The files of the audit trail in a->dest (a->trail, and a->trail followed by '.': its
 * archives, checkpoints, cursor and state files) that the backup does not hold go to
 * aside_dir too: left in place, a checkpoints file or archive written after the backup would
 * mix with the restored trail (a checkpoint past the restored log's end: `verify` fails at
 * once). Lock files stay (they hold no records). 0 or -errno. */
static int set_aside_trail(const area_t *a, const char *aside_dir, json_t *moved)
{
    DIR *d = opendir(a->dest);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        const char *n = de->d_name;
        if (!is_trail_file(a, n))
            continue;
        char staged[PATH_MAX + 300];
        snprintf(staged, sizeof(staged), "%s/%s", a->stage, n);
        if (!util_path_exists(staged)) /* else replaced by the backup's: swap_area sets it aside */
            r = file_aside(a, n, aside_dir, moved);
    }
    closedir(d);
    return r;
}

static int swap_area(area_t *a, const char *id, json_t *moved, char *err, size_t errlen)
{
    int r = 0;
    if (a->kind == KIND_FILE) {
        /* the database's WAL, shm and journal belong to the old file: they move aside with it,
         * under its new name (aside_name_for). The database is linked there first: a rerun
         * after a crash in between takes the next name, and the first pair stays whole. */
        char aside[PATH_MAX + 64];
        if (db_aside_linked(a->dest, id, aside, sizeof(aside)) == 1) {
            json_array_append_new(moved, json_string(aside)); /* linked by the interrupted run */
        } else {
            r = aside_name_for(a->dest, id, true, aside, sizeof(aside));
            if (r == 0)
                r = move_to_aside(a->dest, aside, true, moved);
        }
        for (size_t i = 0; i < ARRAY_SIZE(db_sidecars) && r == 0; i++) {
            char p[PATH_MAX + 16], q[PATH_MAX + 80];
            snprintf(p, sizeof(p), "%s%s", a->dest, db_sidecars[i]);
            snprintf(q, sizeof(q), "%s%s", aside, db_sidecars[i]);
            r = move_to_aside(p, q, false, moved);
        }
        if (r == 0 && rename(a->stage, a->dest) < 0)
            r = -errno;
        if (r == 0) {
            char sw[PATH_MAX + 8], dw[PATH_MAX + 8];
            snprintf(sw, sizeof(sw), "%s-wal", a->stage);
            snprintf(dw, sizeof(dw), "%s-wal", a->dest);
            if (util_path_exists(sw) && rename(sw, dw) < 0)
                r = -errno;
        }
    } else if (a->kind == KIND_DIR) {
        r = move_aside(a->dest, id, false, moved);
        if (r == 0 && rename(a->stage, a->dest) < 0)
            r = -errno;
    } else {
        /* audit: file by file; replaced files go to <dir>/.pre-restore-<id>[-N]/, a directory
         * of this restore's own (the set-aside logs of an earlier one stay as they are) */
        DIR *d = opendir(a->stage);
        if (!d)
            r = -errno;
        struct dirent *de;
        char aside_dir[PATH_MAX + 64], base[PATH_MAX + 8];
        snprintf(base, sizeof(base), "%s/", a->dest);
        if (r == 0)
            r = aside_name(base, id, aside_dir, sizeof(aside_dir));
        if (r == 0 && a->trail[0])
            r = set_aside_trail(a, aside_dir, moved);
        while (r == 0 && d && (de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char from[PATH_MAX + 300], to[PATH_MAX + 300];
            snprintf(from, sizeof(from), "%s/%s", a->stage, de->d_name);
            snprintf(to, sizeof(to), "%s/%s", a->dest, de->d_name);
            if (util_path_exists(to) && (r = file_aside(a, de->d_name, aside_dir, moved)) < 0)
                break;
            if (rename(from, to) < 0)
                r = -errno;
        }
        if (d)
            closedir(d);
        if (r == 0)
            rmdir(a->stage);
        if (r == 0)
            r = util_fsync_dir(a->dest);
    }
    if (r == 0)
        r = parent_fsync(a->dest);
    if (r < 0)
        snprintf(err, errlen, "putting %s in place at %s: %s", a->name, a->dest, strerror(-r));
    else
        a->staged = false;
    return r;
}

/* ------------------------------------------------------------------ journal */

static const char *const kind_names[] = {"file", "dir", "files"};

static void journal_path_of(const char *db_dest, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s", db_dest, BACKUP_RESTORE_JOURNAL_SUFFIX);
}

/* fsync every directory of a staged tree (the files were fsynced as written): after a power
 * cut the journal never names a staging area whose entries did not reach the disk. */
static int fsync_tree(const char *path, int depth)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (depth > MAX_DEPTH)
        return -ELOOP;
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        if (backup_path_join(sub, sizeof(sub), path, de->d_name) < 0)
            r = -ENAMETOOLONG;
        else
            r = fsync_tree(sub, depth + 1);
    }
    closedir(d);
    return r == 0 ? util_fsync_dir(path) : r;
}

/* Where swap_area will set a's destination aside; *any false when nothing is there to set aside. */
static int predicted_aside(const area_t *a, const char *id, char *buf, size_t n, bool *any)
{
    struct stat st;
    *any = false;
    if (a->kind == KIND_FILES) {
        char base[PATH_MAX + 8];
        snprintf(base, sizeof(base), "%s/", a->dest);
        *any = true; /* replaced audit files go there, if any is replaced */
        return aside_name(base, id, buf, n);
    }
    if (lstat(a->dest, &st) < 0)
        return 0;
    *any = true;
    return aside_name(a->dest, id, buf, n);
}

/* Written (fsynced, with its directory) before the first rename of the swap and removed after
 * the last: while it exists the data is a mix of the backup and what was there, and `serve`,
 * `backup check` and the next restore know it. */
static int journal_write(const char *path, const char *id, const backup_restore_opts_t *o,
                         const area_t a[A_COUNT], char *err, size_t errlen)
{
    char ts[ISO8601_LEN], note[PATH_MAX + 256];
    util_iso8601(util_now_ms(), ts);
    snprintf(note, sizeof(note),
             "while this file exists a restore's swap was cut short: finish it with `aimedres restore %s%s%s "
             "--yes` (it completes these renames first)",
             id, o->target ? " --target " : "", o->target ? o->target : "");
    json_t *areas = json_array();
    json_t *j =
        json_pack("{s:i,s:s,s:I,s:s,s:o,s:o,s:n,s:s}", "format", 1, "id", id, "pid", (json_int_t)getpid(),
                  "started", ts, "target", o->target ? json_string(o->target) : json_null(), "areas", areas,
                  "env_file_aside", "note", note);
    if (!j)
        return -ENOMEM;
    for (int i = 0; i < A_COUNT; i++) {
        if (!a[i].selected)
            continue;
        char aside[PATH_MAX + 64];
        bool any = false;
        int r = predicted_aside(&a[i], id, aside, sizeof(aside), &any);
        if (r < 0) {
            json_decref(j);
            snprintf(err, errlen, "no free name to set %s aside: %s", a[i].dest, strerror(-r));
            return r;
        }
        json_array_append_new(areas, json_pack("{s:s,s:s,s:s,s:s,s:o}", "name", a[i].name, "kind",
                                               kind_names[a[i].kind], "dest", a[i].dest, "stage", a[i].stage,
                                               "aside", any ? json_string(aside) : json_null()));
        if (i == A_CONFIG && any)
            json_object_set_new(j, "env_file_aside", json_string(aside));
    }
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!text)
        return -ENOMEM;
    int r = util_write_file_atomic(path, text, strlen(text), 0600);
    free(text);
    if (r < 0)
        snprintf(err, errlen, "cannot write the restore journal %s: %s", path, strerror(-r));
    return r;
}

static int journal_remove(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return parent_fsync(path);
}

/* A journal entry's stage must be where this code stages that destination (stage_location
 * and a pid): a damaged or forged journal renames nothing else into place. */
static bool stage_plausible(const area_t *a)
{
    char dir[PATH_MAX], prefix[NAME_MAX + 16], want[PATH_MAX + NAME_MAX + 16];
    stage_location(a, dir, prefix);
    snprintf(want, sizeof(want), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", prefix);
    size_t n = strlen(want);
    if (strncmp(a->stage, want, n) != 0 || !a->stage[n])
        return false;
    for (const char *p = a->stage + n; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* Reads and checks the journal at path into *ret (the areas in ar[0..*ret_n)): 0, -ENOENT
 * with no journal, -EBADMSG when it is not what a restore writes ("... is damaged: finish by
 * hand ..." in err), or another -errno. ar's strings point into *ret. */
static int journal_load(const char *path, json_t **ret, area_t ar[A_COUNT], size_t *ret_n, char *err,
                        size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int r = util_read_file(path, 1u << 20, &text, &len);
    if (r == -ENOENT)
        return r;
    if (r < 0) {
        snprintf(err, errlen, "cannot read the journal %s of an interrupted restore: %s", path, strerror(-r));
        return r;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    const char *id = json_string_value(json_object_get(j, "id"));
    json_t *areas = json_object_get(j, "areas");
    if (!id || !backup_id_valid(id) || !json_is_array(areas) || json_array_size(areas) > A_COUNT) {
        json_decref(j);
        snprintf(err, errlen,
                 "the journal %s of an interrupted restore is damaged: finish by hand (see docs/backup.md, "
                 "\"Interrupted restore\") or remove it",
                 path);
        return -EBADMSG;
    }
    size_t n = json_array_size(areas);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(areas, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *dest = json_string_value(json_object_get(e, "dest"));
        const char *stage = json_string_value(json_object_get(e, "stage"));
        memset(&ar[i], 0, sizeof(ar[i]));
        int k = -1;
        for (int q = 0; kind && q < 3; q++)
            if (strcmp(kind, kind_names[q]) == 0)
                k = q;
        ar[i].name = name ? name : "?";
        ar[i].kind = (area_kind_t)(k < 0 ? 0 : k);
        /* a journal of an older aimedres may name relative paths: they meant the directory that
         * restore ran in, which a rerun elsewhere would take for its own (review55 #2) */
        if (!name || k < 0 || !dest || !stage || dest[0] != '/' || stage[0] != '/' ||
            setp(ar[i].dest, dest, "", "") < 0 || setp(ar[i].stage, stage, "", "") < 0 ||
            !stage_plausible(&ar[i])) {
            json_decref(j);
            snprintf(err, errlen,
                     "the journal %s of an interrupted restore is damaged (area %zu): finish by hand (see "
                     "docs/backup.md, \"Interrupted restore\") or remove it",
                     path, i);
            return -EBADMSG;
        }
    }
    *ret = j;
    *ret_n = n;
    return 0;
}

/* Finishes the swap a journal describes (renames what is still staged into place, setting
 * aside what is there, as that restore would have) and removes the journal. Signals are held
 * meanwhile. 0 with no journal; the finished restore is described in rep "rolled_forward". */
static int journal_roll_forward(const char *path, json_t *rep, char *err, size_t errlen)
{
    json_t *j = NULL;
    area_t ar[A_COUNT];
    size_t n = 0;
    int r = journal_load(path, &j, ar, &n, err, errlen);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    const char *id = json_string_value(json_object_get(j, "id"));
    json_t *moved = json_array(), *finished = json_array();
    backup_interrupt_hold("finishing the swap of an interrupted restore first (a few renames)");
    r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        struct stat st;
        if (lstat(ar[i].stage, &st) < 0)
            continue; /* renamed into place before the interruption */
        ar[i].selected = ar[i].staged = true;
        if ((r = mkdirs_for(NULL, ar[i].dest)) < 0 ||
            (ar[i].kind == KIND_FILES && (r = mkdir_tracked(NULL, ar[i].dest)) < 0)) {
            snprintf(err, errlen, "cannot create the directory of %s: %s", ar[i].dest, strerror(-r));
            break;
        }
        if ((r = swap_area(&ar[i], id, moved, err, errlen)) == 0)
            json_array_append_new(finished, json_string(ar[i].name));
    }
    if (r == 0 && (r = journal_remove(path)) < 0)
        snprintf(err, errlen, "cannot remove the journal %s: %s", path, strerror(-r));
    char state[512];
    snprintf(state, sizeof(state), "the interrupted restore of %s was finished first (%s)", id,
             r == 0 ? "journal removed" : "not completely: its journal stays");
    backup_interrupt_release(false, state);
    if (r < 0) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "cannot finish the interrupted restore of %s (journal %s): %s", id, path, why);
        json_decref(moved);
        json_decref(finished);
        json_decref(j);
        return r;
    }
    fprintf(stderr,
            "aimedres: finished the swap of the interrupted restore of %s (journal %s): %zu area(s) put in "
            "place, %zu path(s) set aside\n",
            id, path, json_array_size(finished), json_array_size(moved));
    json_object_set_new(rep, "rolled_forward",
                        json_pack("{s:s,s:s,s:o,s:o,s:O}", "id", id, "journal", path, "finished", finished,
                                  "moved_aside", moved, "journal_content", j));
    json_decref(j);
    return 0;
}

int backup_restore_journal_check(const char *db_path, char *err, size_t errlen)
{
    char path[PATH_MAX + 32];
    journal_path_of(db_path, path, sizeof(path));
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    json_t *j = NULL;
    area_t ar[A_COUNT];
    size_t n = 0;
    char why[PATH_MAX + 256];
    int r = journal_load(path, &j, ar, &n, why, sizeof(why));
    if (r == -ENOENT)
        return 0;
    if (r < 0) { /* the restore refuses it too: not the advice to run one */
        snprintf(err, errlen, "a restore was cut short during its swap and %s", why);
        return -EUCLEAN;
    }
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *target = json_string_value(json_object_get(j, "target"));
    const char *env = json_string_value(json_object_get(j, "env_file_aside"));
    json_int_t pid = json_integer_value(json_object_get(j, "pid"));
    bool alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
    snprintf(
        err, errlen,
        "%s: the restore of backup %s %s%s was cut short during its swap (pid %lld%s): the data there is "
        "a mix of the backup and what was there before. Finish it with `aimedres restore %s%s%s --yes` "
        "(same settings and --env-file): it completes the swap first%s%s",
        path, id, target ? "into " : "in place", target ? target : "", (long long)pid,
        alive ? " still runs: is a restore swapping right now?" : ", no longer running", id,
        target ? " --target " : "", target ? target : "",
        env ? ". The env file that was in place is kept at " : "", env ? env : "");
    json_decref(j);
    return -EUCLEAN;
}

/* ------------------------------------------------------------------ restore */

int backup_restore(const backup_settings_t *s, const backup_key_t *key, const char *id,
                   const backup_restore_opts_t *o, json_t **ret_report, char *err, size_t errlen)
{
    int64_t t0 = util_mono_ns();
    json_t *rep = json_pack("{s:b,s:s,s:o,s:[],s:{}}", "ok", 0, "id", id, "target",
                            o->target ? json_string(o->target) : json_null(), "moved_aside", "checks");
    json_t *checks = json_object_get(rep, "checks");
    backup_manifest_t *m = NULL;
    area_t a[A_COUNT];
    areas_init(a);
    int wlock = -1, rlock = -1, dlock = -1, r;
    char dir[PATH_MAX], lockpath[PATH_MAX + 8] = "", jpath[PATH_MAX + 32] = "";
    dirlog_t dirs = {.n = 0};
    bool swapping = false; /* the journal is written: a failure keeps it and the staged data */
    bool lock_created = false;

    /* decrypted data must never land inside the backup storage (unencrypted PHI and secrets
     * beside the encrypted copies, invisible to list and prune) */
    const struct {
        const char *name, *path;
    } repos[] = {{"BACKUP_PATH", s->backup_path}, {"BACKUP_OFFSITE_DIR", s->offsite_dir}};
    for (size_t i = 0; o->target && i < ARRAY_SIZE(repos); i++)
        if (backup_path_within(o->target, repos[i].path)) {
            snprintf(err, errlen,
                     "refusing to restore into %s: it lies inside %s %s, and the decrypted patient data and "
                     "secrets would sit in the backup storage; choose a target outside it",
                     o->target, repos[i].name, repos[i].path);
            r = -EINVAL;
            goto fail;
        }
    /* An in-place restore also holds the repository's write lock (taken first, as prune
     * does): a backup started meanwhile would capture the half-restored state and become
     * latest. A read-only repository (WORM volume, offsite copy) can not be written by a
     * backup either: no lock needed there. */
    if (!o->target) {
        wlock = backup_repo_lock(s->backup_path, BACKUP_LOCK_WRITE, false, LOCK_WAIT_MS, err, errlen);
        if (wlock == -EROFS || wlock == -EACCES)
            wlock = -1;
        else if (wlock < 0) {
            r = wlock;
            goto fail;
        }
    }
    rlock = backup_repo_lock(s->backup_path, BACKUP_LOCK_READ_SHARED, false, LOCK_WAIT_MS, err, errlen);
    if (rlock < 0) {
        r = rlock;
        goto fail;
    }
    /* 1. manifest and stored files */
    if ((r = backup_repo_path(s->backup_path, id, NULL, dir, sizeof(dir))) < 0 ||
        (r = backup_manifest_load(dir, key, &m, err, errlen)) < 0) {
        if (r == -EPROTO)
            r = -EBADMSG;
        goto fail;
    }
    if ((r = resolve_areas(s, m, o, a, err, errlen)) < 0)
        goto fail;
    bool any = false;
    for (int i = 0; i < A_COUNT; i++)
        any |= a[i].selected;
    if (!any) {
        snprintf(err, errlen, "backup %s holds none of the requested components", id);
        r = -ENOENT;
        goto fail;
    }
    json_t *bad = json_array();
    json_object_set_new(rep, "bad", bad);
    for (size_t i = 0; i < m->n_files; i++) {
        const backup_file_t *f = &m->files[i];
        int ai = area_of(f->path);
        if (!a[ai].selected)
            continue;
        char p[PATH_MAX], hm[PATH_MAX];
        struct stat st;
        const char *why = NULL;
        backup_repo_path(s->backup_path, f->holder, BACKUP_MANIFEST_FILE, hm, sizeof(hm));
        backup_repo_path(s->backup_path, f->holder, f->stored, p, sizeof(p));
        if (!util_path_exists(hm))
            why = "the backup holding it is missing (pruned or never copied)";
        else if (stat(p, &st) < 0)
            why = "missing";
        else if ((uint64_t)st.st_size != f->stored_size)
            why = "stored size differs from the manifest (truncated or replaced)";
        if (why)
            json_array_append_new(bad, json_pack("{s:s,s:s,s:s,s:s}", "path", f->path, "holder", f->holder,
                                                 "stored", f->stored, "error", why));
    }
    if (json_array_size(bad)) {
        json_t *first = json_array_get(bad, 0);
        snprintf(err, errlen, "backup %s is damaged: %zu file(s) missing or truncated, first %s: %s", id,
                 json_array_size(bad), json_string_value(json_object_get(first, "path")),
                 json_string_value(json_object_get(first, "error")));
        r = -EBADMSG;
        goto fail;
    }

    /* 2. the destination's data lock */
    if (o->target && (r = mkdir_tracked(&dirs, o->target)) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", o->target, strerror(-r));
        goto fail;
    }
    if ((r = mkdirs_for(&dirs, a[A_DB].dest)) < 0) {
        snprintf(err, errlen, "cannot create the directory of %s: %s", a[A_DB].dest, strerror(-r));
        goto fail;
    }
    lockfile_path_for_db(a[A_DB].dest, lockpath, sizeof(lockpath));
    lock_created = o->target && !util_path_exists(lockpath);
    dlock = lockfile_acquire(lockpath);
    if (dlock < 0) {
        r = dlock == -EWOULDBLOCK ? -EBUSY : dlock;
        if (r == -EBUSY) {
            char pid[32] = "";
            FILE *lf = fopen(lockpath, "re");
            if (lf) {
                if (!fgets(pid, sizeof(pid), lf))
                    pid[0] = '\0';
                fclose(lf);
                pid[strcspn(pid, "\n")] = '\0';
            }
            snprintf(
                err, errlen,
                "refusing to restore: a running server%s%s%s holds the data of %s (lock %s); stop it first",
                pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", a[A_DB].dest, lockpath);
        } else {
            snprintf(err, errlen, "cannot take the data lock %s: %s", lockpath, strerror(-r));
        }
        goto fail;
    }
    if ((r = refuse_if_opened(a, o, err, errlen)) < 0)
        goto fail;
    /* a restore cut short in its swap (kill -9, power cut): finish that first, while its staged
     * (verified) data is still there for the stale-stage removal below to find */
    journal_path_of(a[A_DB].dest, jpath, sizeof(jpath));
    if ((r = journal_roll_forward(jpath, rep, err, errlen)) < 0) {
        if (r != -ENOMEM && r != -ENOSPC && r != -EIO)
            r = -EUCLEAN;
        goto fail;
    }
    /* after the roll-forward: a link in an area this restore replaces does not keep the rerun
     * a journal asks for from finishing the interrupted one (review53 #3) */
    if ((r = refuse_unswappable(a, s, !o->target, err, errlen)) < 0)
        goto fail;

    /* what restores killed before they could clean up left here (decrypted PHI) */
    json_t *stale = json_array();
    remove_stale_areas(a, stale);
    if (json_array_size(stale))
        json_object_set(rep, "removed_stale_stages", stale);
    json_decref(stale);

    /* 3. decrypt into staging areas, verifying every chunk and file */
    int64_t t_decrypt = util_mono_ns();
    long pid = (long)getpid();
    uint64_t total = 0;
    for (int i = 0; i < A_COUNT; i++) {
        if (!a[i].selected)
            continue;
        stage_names(&a[i], pid);
        backup_interrupt_add(a[i].stage); /* before it exists: an interruption may come at once */
        total += a[i].bytes;
        if (a[i].kind != KIND_FILE) {
            util_rmtree(a[i].stage);
            if ((r = mkdirs_for(&dirs, a[i].stage)) < 0 ||
                (r = mkdir(a[i].stage, 0750) < 0 ? -errno : 0) < 0) {
                snprintf(err, errlen, "cannot create %s: %s", a[i].stage, strerror(-r));
                goto fail;
            }
        } else {
            unlink(a[i].stage);
            if ((r = mkdirs_for(&dirs, a[i].stage)) < 0) {
                snprintf(err, errlen, "cannot create the directory of %s: %s", a[i].dest, strerror(-r));
                goto fail;
            }
        }
        a[i].staged = true;
    }
    backup_progress_t prog;
    char label[64];
    snprintf(label, sizeof(label), "restore %s", id);
    backup_progress_start(&prog, label, total, o->progress);
    rjob_t job = {
        .repo = s->backup_path, .m = m, .a = a, .key = key, .prog = &prog, .full_db_check = o->full_db_check};
    job.errs = calloc(m->n_files + 1, sizeof(*job.errs));
    job.codes = calloc(m->n_files + 1, sizeof(*job.codes));
    if (!job.errs || !job.codes) {
        free(job.errs);
        free(job.codes);
        r = -ENOMEM;
        goto fail;
    }
    /* largest first: the database (and its integrity_check) starts at once */
    size_t *order = malloc((m->n_files + 1) * sizeof(*order));
    if (order) {
        for (size_t i = 0; i < m->n_files; i++)
            order[i] = i;
        for (size_t i = 1; i < m->n_files; i++)
            for (size_t k = i; k > 0 && m->files[order[k - 1]].size < m->files[order[k]].size; k--) {
                size_t t = order[k];
                order[k] = order[k - 1];
                order[k - 1] = t;
            }
    }
    r = backup_parallel(m->n_files, order, backup_restore_thread_count(s->threads), restore_one, &job);
    free(order);
    backup_progress_finish(&prog);
    size_t nfiles = 0;
    for (size_t i = 0; i < m->n_files; i++) {
        const backup_file_t *f = &m->files[i];
        if (a[area_of(f->path)].selected && !job.codes[i] && !job.errs[i][0])
            nfiles++;
        if (!job.codes[i])
            continue;
        json_array_append_new(bad, json_pack("{s:s,s:s,s:s,s:s}", "path", f->path, "holder", f->holder,
                                             "stored", f->stored, "error", job.errs[i]));
        if (json_array_size(bad) == 1) {
            bool full = job.codes[i] == -ENOSPC || job.codes[i] == -EDQUOT; /* where it was going (review47 #9) */
            snprintf(err, errlen, "refusing to restore: %s (%s/%s): %s%s%s", f->path, f->holder, f->stored,
                     job.errs[i], full ? ": no room to restore into " : "", full ? a[area_of(f->path)].stage : "");
            r = job.codes[i];
        }
    }
    free(job.errs);
    free(job.codes);
    if (r < 0) {
        json_decref(job.db_check);
        if (r != -ENOSPC && r != -EIO && r != -ENOMEM && r != -EACCES && r != -ENOENT)
            r = -EBADMSG;
        goto fail;
    }

    /* 4. checks on the staged data */
    int64_t t_checks = util_mono_ns();
    int failures = 0;
    const char *models_dir = a[A_MODELS].selected ? a[A_MODELS].stage : a[A_MODELS].dest;
    if (a[A_DB].selected) {
        if (!job.db_ok)
            failures++;
        json_object_set_new(checks, "database",
                            job.db_check ? job.db_check : json_pack("{s:s}", "status", "fail"));
        json_object_set_new(checks, "registry",
                            dir_exists(models_dir) ? check_registry(a[A_DB].stage, models_dir, &failures)
                                                   : json_pack("{s:s,s:s}", "status", "skipped", "reason",
                                                               "no models directory"));
    }
    if (a[A_MODELS].selected)
        json_object_set_new(checks, "models", check_models(a[A_MODELS].stage, &failures));
    json_object_set_new(checks, "audit",
                        a[A_AUDIT].selected ? check_audit_chain(s, m, a[A_AUDIT].stage, &failures)
                                            : json_pack("{s:s,s:s}", "status", "skipped", "reason",
                                                        "no audit files restored"));
    if (failures) {
        /* name each failed check and why, so a terminal user need not rerun with --json */
        int n =
            snprintf(err, errlen, "refusing to restore: %d check(s) failed on the restored data:", failures);
        const char *name;
        json_t *c;
        json_object_foreach(checks, name, c)
        {
            const char *st = json_string_value(json_object_get(c, "status"));
            if (!st || strcmp(st, "fail") != 0 || n < 0 || (size_t)n >= errlen)
                continue;
            json_t *why = json_deep_copy(c);
            json_object_del(why, "status");
            char *text = json_dumps(why, JSON_COMPACT | JSON_SORT_KEYS);
            n += snprintf(err + n, errlen - (size_t)n, " %s %s;", name, text ? text : "");
            free(text);
            json_decref(why);
        }
        r = -EUCLEAN;
        goto fail;
    }

    /* 5. swap in: all or nothing (restore.h, BACKUP_RESTORE_JOURNAL_SUFFIX) */
    int64_t t_swap = util_mono_ns();
    json_t *moved = json_object_get(rep, "moved_aside");
    for (int i = 0; i < A_COUNT; i++) {
        if (!a[i].selected)
            continue;
        if ((r = fsync_tree(a[i].stage, 0)) < 0 || (r = parent_fsync(a[i].stage)) < 0) {
            snprintf(err, errlen, "fsync of the staged %s (%s): %s", a[i].name, a[i].stage, strerror(-r));
            goto fail;
        }
        if ((r = mkdirs_for(NULL, a[i].dest)) < 0 ||
            (a[i].kind == KIND_FILES && (r = mkdir_tracked(NULL, a[i].dest)) < 0)) {
            snprintf(err, errlen, "cannot create the directory of %s: %s", a[i].dest, strerror(-r));
            goto fail;
        }
    }
    if ((r = refuse_if_opened(a, o, err, errlen)) < 0)
        goto fail;
    backup_interrupt_hold("the backup is being swapped into place: finishing that first (a few renames), "
                          "so that nothing is left half replaced");
    if ((r = journal_write(jpath, id, o, a, err, errlen)) < 0) {
        backup_interrupt_release(false, NULL); /* nothing renamed: a noted signal cleans up now */
        goto fail;
    }
    swapping = true;
    const char *failed_area = NULL;
    for (int i = 0; i < A_COUNT && !failed_area; i++) {
        if (a[i].selected && (r = swap_area(&a[i], id, moved, err, errlen)) < 0)
            failed_area = a[i].name;
    }
    if (!failed_area && (r = journal_remove(jpath)) < 0) {
        snprintf(err, errlen, "every area is in place but the journal %s could not be removed: %s", jpath,
                 strerror(-r));
        failed_area = "journal";
    }
    /* what is staged now is in place (or, after a failure, kept for the next restore) */
    for (int i = 0; i < A_COUNT; i++) {
        backup_interrupt_forget(a[i].stage);
        a[i].staged = false;
    }
    char state[PATH_MAX + 256];
    if (failed_area) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", err);
        if (strcmp(failed_area, "journal") == 0)
            snprintf(err, errlen,
                     "%s. `aimedres serve` refuses to start while it exists: rerun `aimedres restore %s%s%s "
                     "--yes` (it finds nothing left to rename and removes it) or remove it",
                     why, id, o->target ? " --target " : "", o->target ? o->target : "");
        else
            snprintf(err, errlen,
                     "the swap stopped at %s: %s. The data is a mix of backup %s and what was there; the "
                     "journal %s and the staged data stay: fix the cause and rerun `aimedres restore %s%s%s "
                     "--yes` to finish",
                     failed_area, why, id, jpath, id, o->target ? " --target " : "",
                     o->target ? o->target : "");
        snprintf(state, sizeof(state), "the swap of backup %s stopped at %s: journal %s stays", id,
                 failed_area, jpath);
        backup_interrupt_release(false, state);
        goto fail;
    }
    snprintf(state, sizeof(state), "backup %s is restored %s%s (every area swapped in)", id,
             o->target ? "into " : "in place", o->target ? o->target : "");
    /* in place: the caller goes on to write the RESTORE audit record (a signal noted meanwhile
     * stays pending); a --target restore (a drill too) ends now on a noted signal */
    backup_interrupt_release(!o->target, state);

    json_t *dest = json_object(), *comps = json_array();
    for (int i = 0; i < A_COUNT; i++)
        if (a[i].selected) {
            json_object_set_new(dest, a[i].name, json_string(a[i].dest));
            bool seen = false;
            for (int k = 0; k < i; k++)
                seen |= a[k].selected && strcmp(a[k].component, a[i].component) == 0;
            if (!seen)
                json_array_append_new(comps, json_string(a[i].component));
        }
    json_object_set_new(rep, "destinations", dest);
    json_object_set_new(rep, "components", comps);
    if (a[A_AUDIT].selected) {
        /* the restored active log (for the RESTORE record: backup/events.h) */
        const char *src = json_string_value(json_object_get(m->source, "audit_log"));
        const char *base = src ? util_basename(src) : NULL;
        char alog[PATH_MAX];
        if (base && backup_path_join(alog, sizeof(alog), a[A_AUDIT].dest, base) == 0 &&
            util_path_exists(alog))
            json_object_set_new(rep, "audit_log", json_string(alog));
    }
    json_object_set_new(rep, "type", json_string(m->type));
    json_object_set_new(rep, "files", json_integer((json_int_t)nfiles));
    json_object_set_new(rep, "bytes", json_integer((json_int_t)total));
    int64_t t_end = util_mono_ns();
    json_object_set_new(rep, "seconds", json_real((double)(t_end - t0) / 1e9));
    /* where the time went: decrypt includes the database check its worker runs */
    json_object_set_new(rep, "phases",
                        json_pack("{s:f,s:f,s:f,s:f}", "prepare", (double)(t_decrypt - t0) / 1e9, "decrypt",
                                  (double)(t_checks - t_decrypt) / 1e9, "checks",
                                  (double)(t_swap - t_checks) / 1e9, "swap", (double)(t_end - t_swap) / 1e9));
    json_object_set_new(rep, "ok", json_true());
    json_object_del(rep, "bad");
    dirlog_free(&dirs);
    lockfile_release(dlock);
    backup_repo_unlock(rlock);
    backup_repo_unlock(wlock);
    backup_manifest_free(m);
    *ret_report = rep;
    return 0;

fail:
    unstage(a);
    /* a refused --target restore leaves no lock file it made (nor, below, the directories) */
    if (dlock >= 0 && !swapping && lock_created)
        unlink(lockpath);
    dirlog_rollback(&dirs);
    lockfile_release(dlock);
    backup_repo_unlock(rlock);
    backup_repo_unlock(wlock);
    backup_manifest_free(m);
    json_object_set_new(rep, "error", json_string(err));
    *ret_report = rep;
    return r < 0 ? r : -EIO;
}
