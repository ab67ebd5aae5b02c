/* SPDX-License-Identifier: Apache-2.0 */
/* `audit verify`: walks every record of every file of the log in chain order, checking seq
 * continuity, prev_hash links and each HMAC, then the signed checkpoints (signature, the
 * hash of the record they name, and that the log still reaches the highest checkpointed
 * seq). Stops at the first bad record and says exactly which one and what kind of change
 * it looks like. The chain must start at seq 1 (genesis) unless an AUDIT_PRUNE record in it
 * names the first seq kept, and the checkpoints file must reach the last AUDIT_CHECKPOINT
 * record of the chain. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "audit/audit.h"
#include "audit/checkpoint.h"
#include "audit/record.h"
#include "common/util.h"

#define PEEK_MAX 4096 /* lines looked at after a bad record to classify it */

typedef struct ckpt {
    uint64_t seq;
    char hash[AUDIT_HASH_HEX];
} ckpt_t;

typedef struct walk {
    audit_file_t *files;
    size_t nfiles;
    unsigned char key[AUDIT_KEY_LEN];
    audit_verify_result_t *res;
} walk_t;

static void fail_at(audit_verify_result_t *res, const char *file, uint64_t line, uint64_t seq,
                    const char *kind, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void fail_at(audit_verify_result_t *res, const char *file, uint64_t line, uint64_t seq,
                    const char *kind, const char *fmt, ...)
{
    res->ok = false;
    snprintf(res->bad_file, sizeof(res->bad_file), "%s", file ? file : "");
    res->bad_line = line;
    res->bad_seq = seq;
    snprintf(res->bad_kind, sizeof(res->bad_kind), "%s", kind);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
}

/* Parsed records of up to max lines following byte offset off of files[fi] (continuing into
 * the next files). Unparseable lines give NULL entries. */
static size_t peek(const walk_t *w, size_t fi, long off, size_t max, json_t **out)
{
    size_t n = 0;
    for (; fi < w->nfiles && n < max; fi++, off = 0) {
        FILE *f = fopen(w->files[fi].path, "re");
        if (!f)
            break;
        if (fseek(f, off, SEEK_SET) == 0) {
            char *line;
            size_t len;
            bool term;
            int r;
            while (n < max && (r = audit_read_line(f, &line, &len, &term)) != 0) {
                out[n++] = r > 0 && term ? audit_record_parse(line, len) : NULL;
                if (r > 0)
                    free(line);
            }
        }
        fclose(f);
    }
    return n;
}

static uint64_t rec_seq(const json_t *r)
{
    return r ? (uint64_t)json_integer_value(json_object_get(r, "seq")) : 0;
}

static void free_peeked(json_t **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(p[i]);
}

static int load_checkpoints(const config_t *cfg, EVP_PKEY *vk, ckpt_t **ret, size_t *ret_n, bool *ret_exists,
                            audit_verify_result_t *res)
{
    char path[4200];
    audit_path_checkpoints(cfg->audit_log_path, path, sizeof(path));
    *ret = NULL;
    *ret_n = 0;
    *ret_exists = false;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    *ret_exists = true;
    ckpt_t *cks = NULL;
    size_t n = 0, cap = 0;
    char *line;
    size_t len;
    bool term;
    int r;
    uint64_t lineno = 0;
    while ((r = audit_read_line(f, &line, &len, &term)) != 0) {
        lineno++;
        json_t *ck = r > 0 ? json_loadb(line, len, 0, NULL) : NULL;
        if (r > 0)
            free(line);
        if (!term && r > 0 && !ck) {
            res->torn_checkpoint_ignored = true; /* crash while writing it: never acknowledged */
            break;
        }
        json_t *seqv = json_object_get(ck, "seq");
        const char *hash = json_string_value(json_object_get(ck, "hash"));
        if (!ck || !json_is_integer(seqv) || !hash || strlen(hash) != 64) {
            json_decref(ck);
            fail_at(res, path, lineno, 0, "checkpoint", "checkpoint line %llu is malformed",
                    (unsigned long long)lineno);
            break;
        }
        if (vk && !audit_ckpt_verify(vk, ck)) {
            json_int_t seq = json_integer_value(seqv); /* seqv is ck's: read before ck is freed */
            json_decref(ck);
            fail_at(res, path, lineno, (uint64_t)seq, "checkpoint",
                    "checkpoint line %llu (seq %lld): bad signature (forged or made with another key)",
                    (unsigned long long)lineno, (long long)seq);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ckpt_t *nc = realloc(cks, cap * sizeof(*cks));
            if (!nc) {
                json_decref(ck);
                free(cks);
                fclose(f);
                return -ENOMEM;
            }
            cks = nc;
        }
        cks[n].seq = (uint64_t)json_integer_value(seqv);
        snprintf(cks[n].hash, sizeof(cks[n].hash), "%s", hash);
        json_decref(ck);
        /* the writer appends under the log's lock, each checkpoint after the records it covers:
         * seqs never go down (a checkpoint retried after a crash may repeat its seq) */
        if (n > 0 && cks[n].seq < cks[n - 1].seq) {
            fail_at(res, path, lineno, cks[n].seq, "checkpoint",
                    "checkpoint line %llu (seq %llu) comes after a checkpoint of seq %llu: lines reordered or "
                    "copied",
                    (unsigned long long)lineno, (unsigned long long)cks[n].seq,
                    (unsigned long long)cks[n - 1].seq);
            break;
        }
        n++;
    }
    fclose(f);
    *ret = cks;
    *ret_n = n;
    return 0;
}

static int cmp_ckpt(const void *a, const void *b)
{
    uint64_t x = ((const ckpt_t *)a)->seq, y = ((const ckpt_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Classifies a record whose seq is what we expected but whose HMAC is wrong. */
static const char *classify_bad_hash(const walk_t *w, size_t fi, long next_off, uint64_t seq)
{
    json_t *p[1];
    size_t n = peek(w, fi, next_off, 1, p);
    const char *kind = "forged"; /* last record, or the following ones are bad too */
    if (n == 1 && p[0] && rec_seq(p[0]) == seq && audit_record_hash_ok(p[0], w->key))
        kind = "inserted"; /* the genuine record with this seq follows */
    else if (n == 1 && p[0] && audit_record_hash_ok(p[0], w->key))
        kind = "edited"; /* the rest of the chain is intact */
    free_peeked(p, n);
    return kind;
}

static bool seq_follows(const walk_t *w, size_t fi, long off, uint64_t want)
{
    json_t **p = calloc(PEEK_MAX, sizeof(*p));
    if (!p)
        return false;
    size_t n = peek(w, fi, off, PEEK_MAX, p);
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        found = p[i] && rec_seq(p[i]) == want && audit_record_hash_ok(p[i], w->key);
    free_peeked(p, n);
    free(p);
    return found;
}

/* What the walk learns about the head of the chain and the in-chain checkpoint records. */
typedef struct head {
    char file[512]; /* file and line of the first record walked */
    uint64_t line;
    char prev[AUDIT_HASH_HEX]; /* its prev_hash */
    bool explained;            /* an AUDIT_PRUNE record accounts for the records before it */
    bool legacy;               /* an earlier version's AUDIT_PRUNE (names removed archives) does */
    bool active;               /* the first record is in the active file (after every archive) */
    uint64_t pruned_to;        /* highest first_kept_seq named below the first record (0 none) */
    uint64_t ck_seq;           /* highest checkpoint_seq named by an AUDIT_CHECKPOINT record */
    char ck_file[512];         /* where that record is */
    uint64_t ck_line, ck_rec_seq;
    /* every (checkpoint_seq, record seq) the chain names: each must have its line */
    uint64_t (*named)[2];
    size_t n_named, cap_named;
} head_t;

/* Called for every intact record: AUDIT_PRUNE records name the first seq the prune kept and
 * the prev_hash it continues from (cli/audit.c writes them before removing anything);
 * AUDIT_CHECKPOINT records name the seq the writer had just checkpointed. */
static void note_head(head_t *hd, uint64_t first_seq, const char *type, const json_t *rec, const char *path,
                      uint64_t lineno, uint64_t seq)
{
    const json_t *det = json_object_get(rec, "detail");
    if (strcmp(type, "AUDIT_PRUNE") == 0) {
        json_t *fk = json_object_get(det, "first_kept_seq");
        const char *kp = json_string_value(json_object_get(det, "kept_prev_hash"));
        if (!json_is_integer(fk) || json_integer_value(fk) < 1) {
            /* an earlier version's prune record names the archives it removed, not seqs: it
             * accounts for a head that begins a file which sorts after every one of them */
            const json_t *removed = json_object_get(det, "removed");
            const char *base = util_basename(hd->file);
            bool after = hd->line == 1 && json_array_size(removed) > 0;
            size_t i;
            const json_t *it;
            json_array_foreach(removed, i, it)
            {
                const char *r = json_string_value(it);
                after = after && r && (hd->active || strcmp(r, base) < 0);
            }
            hd->legacy |= after;
            return;
        }
        uint64_t k = (uint64_t)json_integer_value(fk);
        if (k > first_seq || (k == first_seq && kp && strcmp(kp, hd->prev) == 0))
            hd->explained = true; /* the prune took at least what is missing (maybe not all it meant to) */
        else if (k < first_seq && k > hd->pruned_to)
            hd->pruned_to = k;
    } else if (strcmp(type, "AUDIT_CHECKPOINT") == 0) {
        json_t *cs = json_object_get(det, "checkpoint_seq");
        if (json_is_integer(cs) && hd->n_named == hd->cap_named) {
            size_t cap = hd->cap_named ? 2 * hd->cap_named : 64;
            uint64_t(*nn)[2] = realloc(hd->named, cap * sizeof(*nn));
            if (nn) {
                hd->named = nn;
                hd->cap_named = cap;
            }
        }
        if (json_is_integer(cs) && hd->n_named < hd->cap_named) {
            hd->named[hd->n_named][0] = (uint64_t)json_integer_value(cs);
            hd->named[hd->n_named++][1] = seq;
        }
        if (json_is_integer(cs) && (uint64_t)json_integer_value(cs) > hd->ck_seq) {
            hd->ck_seq = (uint64_t)json_integer_value(cs);
            snprintf(hd->ck_file, sizeof(hd->ck_file), "%s", path);
            hd->ck_line = lineno;
            hd->ck_rec_seq = seq;
        }
    }
}

/* Without --from the chain starts at seq 1 (genesis prev_hash; checked by the walk) or where
 * an AUDIT_PRUNE record says the retention prune left it. Anything else is a deleted head. */
static void check_head(const head_t *hd, const ckpt_t *cks, size_t ncks,
                       audit_verify_result_t *res)
{
    if (res->first_seq <= 1 || hd->explained)
        return;
    if (hd->legacy) {
        res->legacy_prune_head = true;
        return;
    }
    uint64_t from = hd->pruned_to ? hd->pruned_to : 1;
    char why[160] = "";
    if (ncks > 0 && cks[0].seq < res->first_seq)
        snprintf(why, sizeof(why), "; a signed checkpoint covers seq %llu", (unsigned long long)cks[0].seq);
    fail_at(res, hd->file, hd->line, from, "deleted",
            "the log starts at seq %llu but records %llu..%llu are missing and no AUDIT_PRUNE record "
            "accounts for them%s (head of the log deleted)",
            (unsigned long long)res->first_seq, (unsigned long long)from,
            (unsigned long long)res->first_seq - 1, why);
}

/* The chain's AUDIT_CHECKPOINT records prove checkpoints were written: the checkpoints file
 * must exist and reach the last of them (else it was deleted or cut, which would hide a
 * truncated tail). */
static void check_ckpt_file(const config_t *cfg, const head_t *hd, const ckpt_t *cks, size_t ncks,
                            bool exists, audit_verify_result_t *res)
{
    uint64_t have = ncks > 0 ? cks[ncks - 1].seq : 0;
    char path[4200];
    audit_path_checkpoints(cfg->audit_log_path, path, sizeof(path));
    if (exists && have >= hd->ck_seq) {
        /* and no line the chain names was taken out (cks is sorted by seq) */
        for (size_t i = 0; i < hd->n_named; i++) {
            uint64_t want = hd->named[i][0];
            size_t lo = 0, hi = ncks;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cks[mid].seq < want)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < ncks && cks[lo].seq == want)
                continue;
            fail_at(res, path, 0, want, "checkpoint",
                    "the chain records a checkpoint of seq %llu (AUDIT_CHECKPOINT record seq %llu) but %s has "
                    "no line for it: the line was deleted",
                    (unsigned long long)want, (unsigned long long)hd->named[i][1], path);
            return;
        }
        return;
    }
    if (!exists)
        fail_at(res, path, 0, hd->ck_seq, "checkpoint",
                "%s is missing but the chain records a checkpoint of seq %llu (%s line %llu, seq %llu): the "
                "checkpoints file was deleted",
                path, (unsigned long long)hd->ck_seq, hd->ck_file, (unsigned long long)hd->ck_line,
                (unsigned long long)hd->ck_rec_seq);
    else
        fail_at(
            res, path, (uint64_t)ncks, hd->ck_seq, "checkpoint",
            "the last checkpoint in %s is seq %llu but the chain records a checkpoint of seq %llu (%s line "
            "%llu, seq %llu): the checkpoints file was shortened",
            path, (unsigned long long)have, (unsigned long long)hd->ck_seq, hd->ck_file,
            (unsigned long long)hd->ck_line, (unsigned long long)hd->ck_rec_seq);
}

/* Size and change time of the active log and of the checkpoints file (zeros when absent). */
static void trail_state(const config_t *cfg, struct stat st[2])
{
    char ck[PATH_MAX + 32];
    memset(st, 0, 2 * sizeof(*st));
    if (!cfg->audit_log_path)
        return;
    audit_path_checkpoints(cfg->audit_log_path, ck, sizeof(ck));
    if (stat(cfg->audit_log_path, &st[0]) < 0)
        memset(&st[0], 0, sizeof(st[0]));
    if (stat(ck, &st[1]) < 0)
        memset(&st[1], 0, sizeof(st[1]));
}

static bool same_state(const struct stat a[2], const struct stat b[2])
{
    for (int i = 0; i < 2; i++)
        if (a[i].st_ino != b[i].st_ino || a[i].st_size != b[i].st_size ||
            a[i].st_ctim.tv_sec != b[i].st_ctim.tv_sec || a[i].st_ctim.tv_nsec != b[i].st_ctim.tv_nsec)
            return false;
    return true;
}

static int verify_once(const config_t *cfg, const char *from_date, audit_verify_result_t *res, char *err,
                       size_t errlen);

/* The files are listed and read without the writer's lock: a checkpoint written meanwhile (a
 * line, then its AUDIT_CHECKPOINT record) can make a genuine trail look cut ("checkpoint" or
 * "truncated", review40), a rotation between the listing and the reading can make it look
 * "deleted" (the new active file starts past the records just archived, review45), and a trail
 * file listed can be gone when it is opened (a prune, the moment of a rotation between its
 * rename and the new file: review46 #5; a missing key file is no such thing: review48 #6). A
 * bad result counts only when the log and the checkpoints did not change while it was found;
 * otherwise, and after a vanished trail file, verification runs again, pausing longer each time
 * (5 ms up to 200 ms, 20 runs: about 2.5 s), so that a burst of rotations passes (review46 #6). */
#define VERIFY_RUNS 20
int audit_verify(const config_t *cfg, const char *from_date, audit_verify_result_t *res, char *err,
                 size_t errlen)
{
    int rc = 0;
    long pause_ms = 5;
    for (int run = 0; run < VERIFY_RUNS; run++) {
        struct stat before[2], after[2];
        trail_state(cfg, before);
        rc = verify_once(cfg, from_date, res, err, errlen);
        if ((rc < 0 && rc != -ESTALE) || (rc == 0 && res->ok))
            return rc;
        trail_state(cfg, after);
        if (same_state(before, after) && rc == 0)
            return rc;
        if (run + 1 < VERIFY_RUNS) {
            nanosleep(&(struct timespec){.tv_sec = pause_ms / 1000, .tv_nsec = pause_ms % 1000 * 1000000}, NULL);
            pause_ms = pause_ms < 100 ? pause_ms * 2 : 200;
        }
    }
    return rc == -ESTALE ? -ENOENT : rc;
}

static int verify_once(const config_t *cfg, const char *from_date, audit_verify_result_t *res, char *err,
                       size_t errlen)
{
    memset(res, 0, sizeof(*res));
    res->ok = true;
    walk_t w = {.res = res};
    /* the head (review22): the first record is seq 1 or an AUDIT_PRUNE record accounts for the
     * records before it; the checkpoints file reaches the chain's last AUDIT_CHECKPOINT record
     * and holds every one it names (set before any goto out: freed there) */
    head_t head = {0};
    EVP_PKEY *vk = NULL;
    ckpt_t *cks = NULL;
    size_t ncks = 0;
    int rc = 0;
    int64_t from_days = -1;
    if (!cfg->audit_log_path) {
        snprintf(err, errlen, "AUDIT_LOG_PATH is not set");
        return -EINVAL;
    }
    if (audit_chain_key(cfg->secret_key, w.key) < 0) {
        snprintf(err, errlen, "SECRET_KEY is not set: the audit chain key derives from it");
        return -EINVAL;
    }
    if (from_date && audit_date_parse(from_date, &from_days) < 0) {
        snprintf(err, errlen, "--from: expected a date YYYY-MM-DD, got '%s'", from_date);
        return -EINVAL;
    }
    const char *vkp = cfg->audit_verify_key_path ? cfg->audit_verify_key_path : cfg->audit_signing_key_path;
    if (vkp && (rc = audit_ckpt_load_public(vkp, &vk, err, errlen)) < 0)
        return rc;
    res->checkpoints_signed = vk != NULL;
    if ((rc = audit_files_list(cfg->audit_log_path, &w.files, &w.nfiles)) < 0) {
        snprintf(err, errlen, "cannot list %s: %s", cfg->audit_log_path, strerror(-rc));
        goto out;
    }
    /* no files at all is an empty log: fine unless a checkpoint says records existed */
    bool ck_file = false;
    if ((rc = load_checkpoints(cfg, vk, &cks, &ncks, &ck_file, res)) < 0) {
        snprintf(err, errlen, "cannot read the checkpoints: %s", strerror(-rc));
        goto out;
    }
    if (!res->ok)
        goto out;
    if (ncks > 1) /* reliability (issue 7): qsort(NULL, 0, ...) is UB (UBSan, fuzz_audit) */
        qsort(cks, ncks, sizeof(*cks), cmp_ckpt);

    uint64_t expect = 0; /* 0 = take the first record as the anchor */
    char prev[AUDIT_HASH_HEX] = "";
    size_t ci = 0;
    for (size_t fi = 0; fi < w.nfiles && res->ok; fi++) {
        const char *path = w.files[fi].path;
        if (from_days >= 0 && w.files[fi].date_days >= 0 && w.files[fi].date_days < from_days)
            continue;
        FILE *f = fopen(path, "re");
        if (!f) {
            /* a trail file listed and gone: the trail changed under us (-ESTALE: run again) */
            rc = errno == ENOENT ? -ESTALE : -errno;
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            goto out;
        }
        uint64_t lineno = 0;
        char *line;
        size_t len;
        bool term;
        int r;
        while (res->ok && (r = audit_read_line(f, &line, &len, &term)) != 0) {
            lineno++;
            long next_off = ftell(f);
            uint64_t want = expect ? expect : 0;
            if (r < 0) {
                fail_at(res, path, lineno, want, "malformed", "line %llu is longer than %d bytes",
                        (unsigned long long)lineno, AUDIT_MAX_LINE);
                break;
            }
            if (!term) {
                free(line);
                int c = fgetc(f);
                if (c == EOF && fi == w.nfiles - 1 && w.files[fi].date_days < 0) {
                    res->torn_tail_ignored = true; /* written, never acknowledged; trimmed at next open */
                    break;
                }
                fail_at(res, path, lineno, want, "truncated", "line %llu is cut short (no newline)",
                        (unsigned long long)lineno);
                break;
            }
            json_t *rec = audit_record_parse(line, len);
            free(line);
            if (!rec) {
                fail_at(res, path, lineno, want, "malformed",
                        "line %llu is not an audit record (expected seq %llu)", (unsigned long long)lineno,
                        (unsigned long long)want);
                break;
            }
            uint64_t seq = rec_seq(rec);
            bool hash_ok = audit_record_hash_ok(rec, w.key);
            const char *ph = json_string_value(json_object_get(rec, "prev_hash"));
            const char *h = json_string_value(json_object_get(rec, "hash"));
            if (!expect) {
                expect = seq;
                snprintf(prev, sizeof(prev), "%s", seq == 1 ? AUDIT_GENESIS_HASH : ph);
                res->first_seq = seq;
                snprintf(head.file, sizeof(head.file), "%s", path);
                head.line = lineno;
                head.active = w.files[fi].date_days < 0;
                snprintf(head.prev, sizeof(head.prev), "%s", prev);
            }
            if (hash_ok && seq > expect) {
                bool later = seq_follows(&w, fi, next_off, expect);
                fail_at(res, path, lineno, expect, later ? "reordered" : "deleted",
                        later
                            ? "line %llu: found seq %llu where seq %llu was expected; seq %llu comes later "
                              "(records reordered)"
                            : "line %llu: found seq %llu where seq %llu was expected; records %llu..%llu are "
                              "missing (deleted)",
                        (unsigned long long)lineno, (unsigned long long)seq, (unsigned long long)expect,
                        (unsigned long long)expect, (unsigned long long)(later ? expect : seq - 1));
            } else if (hash_ok && seq < expect) {
                fail_at(res, path, lineno, expect, "inserted",
                        "line %llu: found seq %llu again where seq %llu was expected (record inserted or "
                        "replayed)",
                        (unsigned long long)lineno, (unsigned long long)seq, (unsigned long long)expect);
            } else if (!hash_ok) {
                const char *kind = seq == expect ? classify_bad_hash(&w, fi, next_off, seq)
                                   : seq_follows(&w, fi, next_off, expect) ? "inserted"
                                                                           : "forged";
                fail_at(res, path, lineno, expect, kind,
                        "line %llu (seq %llu): hash does not match the content under the chain key (%s)",
                        (unsigned long long)lineno, (unsigned long long)expect,
                        strcmp(kind, "edited") == 0     ? "record edited after it was written"
                        : strcmp(kind, "inserted") == 0 ? "record inserted that was not written by aimedres"
                        : res->records == 0 /* not one record checks: more likely the wrong key */
                            ? "record forged without the key, or SECRET_KEY is not the key this log was "
                              "written with"
                            : "record forged without the key");
            } else if (strcmp(ph, prev) != 0) {
                fail_at(
                    res, path, lineno, expect, "forged",
                    "line %llu (seq %llu): prev_hash does not link to the previous record (chain spliced)",
                    (unsigned long long)lineno, (unsigned long long)seq);
            } else {
                while (ci < ncks && cks[ci].seq < seq)
                    ci++;
                if (ci < ncks && cks[ci].seq == seq && strcmp(cks[ci].hash, h) != 0)
                    fail_at(res, path, lineno, seq, "forged",
                            "line %llu (seq %llu): differs from the signed checkpoint for this seq (chain "
                            "rewritten)",
                            (unsigned long long)lineno, (unsigned long long)seq);
                else if (ci < ncks && cks[ci].seq == seq)
                    res->checkpoints++;
                const char *type = json_string_value(json_object_get(rec, "type"));
                if (res->ok && type)
                    note_head(&head, res->first_seq, type, rec, path, lineno, seq);
                if (res->ok && type && strcmp(type, "AUDIT_GAP") == 0) {
                    /* the writer's own record of a loss: the chain goes on, the records are gone */
                    const json_t *det = json_object_get(rec, "detail");
                    fail_at(res, path, lineno, seq, "deleted",
                            "line %llu (seq %llu): AUDIT_GAP: the server found records %lld..%lld missing "
                            "from the log files",
                            (unsigned long long)lineno, (unsigned long long)seq,
                            (long long)json_integer_value(json_object_get(det, "missing_from_seq")),
                            (long long)json_integer_value(json_object_get(det, "missing_to_seq")));
                }
            }
            if (res->ok) {
                res->records++;
                res->last_seq = seq;
                snprintf(prev, sizeof(prev), "%s", h);
                expect = seq + 1;
            }
            json_decref(rec);
        }
        fclose(f);
    }
    if (res->ok && ncks > 0 && cks[ncks - 1].seq > res->last_seq) {
        char active[4200];
        snprintf(active, sizeof(active), "%s", cfg->audit_log_path);
        fail_at(res, active, 0, res->last_seq + 1, "truncated",
                "the log ends at seq %llu but a signed checkpoint covers seq %llu: records %llu..%llu are "
                "missing (truncated)",
                (unsigned long long)res->last_seq, (unsigned long long)cks[ncks - 1].seq,
                (unsigned long long)res->last_seq + 1, (unsigned long long)cks[ncks - 1].seq);
    }
    if (res->ok && !from_date && res->records > 0)
        check_head(&head, cks, ncks, res);
    if (res->ok && head.ck_seq > 0)
        check_ckpt_file(cfg, &head, cks, ncks, ck_file, res);
    rc = 0;
out:
    audit_files_free(w.files, w.nfiles);
    free(cks);
    free(head.named);
    EVP_PKEY_free(vk);
    return rc;
}

bool audit_verify_refuse_empty(audit_verify_result_t *res, const char *log_path)
{
    if (!res->ok || res->records > 0)
        return false;
    res->ok = false;
    snprintf(res->bad_kind, sizeof(res->bad_kind), "missing");
    snprintf(res->bad_file, sizeof(res->bad_file), "%s", log_path);
    snprintf(res->message, sizeof(res->message),
             "no audit records at %s: nothing to verify (never written, deleted, or AUDIT_LOG_PATH names the "
             "wrong place)",
             log_path);
    return true;
}

json_t *audit_verify_result_json(const audit_verify_result_t *res)
{
    json_t *o = json_pack("{s:b,s:I,s:I,s:I,s:I,s:b,s:b,s:b}", "ok", res->ok, "records",
                          (json_int_t)res->records, "first_seq", (json_int_t)res->first_seq, "last_seq",
                          (json_int_t)res->last_seq, "checkpoints_checked", (json_int_t)res->checkpoints,
                          "checkpoints_signed", res->checkpoints_signed, "torn_tail_ignored",
                          res->torn_tail_ignored, "legacy_prune_head", res->legacy_prune_head);
    json_object_set_new(o, "torn_checkpoint_ignored", json_boolean(res->torn_checkpoint_ignored));
    if (o && !res->ok)
        json_object_set_new(o, "first_bad",
                            json_pack("{s:s,s:I,s:I,s:s,s:s}", "file", res->bad_file, "line",
                                      (json_int_t)res->bad_line, "seq", (json_int_t)res->bad_seq, "kind",
                                      res->bad_kind, "message", res->message));
    return o;
}
