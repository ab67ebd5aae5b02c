/* SPDX-License-Identifier: Apache-2.0 */
/* CSV reader and writer for training data, imports and validation sets. The reader
 * unescapes fields in place inside one private copy of the input, so a table is one
 * buffer plus one pointer array, and every limit is checked before memory grows. */
#include "model/csv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

#define WRITER_MAX_BYTES ((size_t)256 << 20)

/* Growable array of cell pointers and row line numbers. */
typedef struct cellvec {
    char **v;
    size_t n, cap;
    size_t *lines;
    size_t n_lines, cap_lines;
} cellvec_t;

static int cellvec_push(cellvec_t *cv, char *p)
{
    if (cv->n == cv->cap) {
        size_t ncap = cv->cap ? cv->cap * 2 : 256;
        char **nv = realloc(cv->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        cv->v = nv;
        cv->cap = ncap;
    }
    cv->v[cv->n++] = p;
    return 0;
}

static int lines_push(cellvec_t *cv, size_t line)
{
    if (cv->n_lines == cv->cap_lines) {
        size_t ncap = cv->cap_lines ? cv->cap_lines * 2 : 256;
        size_t *nv = realloc(cv->lines, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        cv->lines = nv;
        cv->cap_lines = ncap;
    }
    cv->lines[cv->n_lines++] = line;
    return 0;
}

static char *trim_inplace(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Parses buf[0..len) (buf has len+1 bytes; ownership passes to the table on success and
 * is freed on failure). */
static int parse_owned(char *buf, size_t len, csv_table_t **ret, char *err, size_t errlen)
{
    cellvec_t cv = {0};
    csv_table_t *t = NULL;
    int rc = 0;
    size_t r = 0, w = 0, line = 1;
    size_t n_cols = 0;
    bool have_header = false;

    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF)
        r = 3;
    w = r;

    while (r < len) {
        size_t rec_start = cv.n;
        size_t rec_line = line;
        size_t nfields = 0;
        bool blank = false;
        for (;;) {
            size_t field_start = w;
            bool quoted = false;
            if (r < len && buf[r] == '"') {
                quoted = true;
                size_t qline = line;
                r++;
                for (;;) {
                    if (r >= len) {
                        util_errf(err, errlen, "line %zu: quoted field is not closed", qline);
                        rc = -EINVAL;
                        goto fail;
                    }
                    char c = buf[r];
                    if (c == '\0') {
                        util_errf(err, errlen, "line %zu: NUL byte in data", line);
                        rc = -EINVAL;
                        goto fail;
                    }
                    if (c == '"') {
                        if (r + 1 < len && buf[r + 1] == '"') {
                            buf[w++] = '"';
                            r += 2;
                            continue;
                        }
                        r++;
                        break;
                    }
                    if (c == '\n')
                        line++;
                    buf[w++] = c;
                    r++;
                }
                if (r < len && buf[r] != ',' && buf[r] != '\n' &&
                    !(buf[r] == '\r' && r + 1 < len && buf[r + 1] == '\n') &&
                    !(buf[r] == '\r' && r + 1 == len)) {
                    util_errf(err, errlen, "line %zu: unexpected character after a closing quote", line);
                    rc = -EINVAL;
                    goto fail;
                }
            } else {
                while (r < len) {
                    char c = buf[r];
                    if (c == ',' || c == '\n' || (c == '\r' && (r + 1 == len || buf[r + 1] == '\n')))
                        break;
                    if (c == '\0') {
                        util_errf(err, errlen, "line %zu: NUL byte in data", line);
                        rc = -EINVAL;
                        goto fail;
                    }
                    buf[w++] = c;
                    r++;
                }
            }
            /* Read the separator before terminating the field: w may equal r. */
            char sep = r < len ? buf[r] : '\0';
            bool at_eof = r >= len;
            buf[w++] = '\0';
            nfields++;
            if (nfields > CSV_MAX_COLUMNS) {
                util_errf(err, errlen, "line %zu: more than %d columns", rec_line, CSV_MAX_COLUMNS);
                rc = -EFBIG;
                goto fail;
            }
            if (cv.n + 1 > CSV_MAX_CELLS) {
                util_errf(err, errlen, "line %zu: more than %zu cells in the file", rec_line, CSV_MAX_CELLS);
                rc = -EFBIG;
                goto fail;
            }
            /* header names lose surrounding blanks, unless quoted (" age" is a name) */
            if ((rc = cellvec_push(&cv, have_header || quoted ? buf + field_start : trim_inplace(buf + field_start))) <
                0)
                goto fail;
            if (!at_eof && sep == ',') {
                r++;
                continue;
            }
            if (nfields == 1 && !quoted && buf[field_start] == '\0')
                blank = true;
            if (!at_eof) {
                r += sep == '\r' ? 2 : 1;
                if (r > len)
                    r = len;
                line++;
            }
            break;
        }
        if (blank) {
            cv.n = rec_start; /* skip blank lines */
            continue;
        }
        if (!have_header) {
            n_cols = nfields;
            have_header = true;
            continue;
        }
        if (nfields != n_cols) {
            util_errf(err, errlen, "line %zu: expected %zu fields, found %zu", rec_line, n_cols, nfields);
            rc = -EINVAL;
            goto fail;
        }
        if ((rc = lines_push(&cv, rec_line)) < 0)
            goto fail;
    }
    if (!have_header) {
        util_errf(err, errlen, "empty file: no header row");
        rc = -EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < n_cols; i++) {
        if (cv.v[i][0] == '\0') {
            util_errf(err, errlen, "line 1: column %zu of the header has no name", i + 1);
            rc = -EINVAL;
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(cv.v[i], cv.v[j]) == 0) {
                util_errf(err, errlen, "line 1: duplicate column name '%s'", cv.v[i]);
                rc = -EINVAL;
                goto fail;
            }
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        rc = -ENOMEM;
        goto fail;
    }
    t->n_cols = n_cols;
    t->n_rows = (cv.n - n_cols) / n_cols;
    t->header = cv.v;
    t->cells = cv.v + n_cols;
    t->lines = cv.lines;
    t->buf = buf;
    *ret = t;
    return 0;
fail:
    if (rc == -ENOMEM)
        util_errf(err, errlen, "out of memory");
    free(cv.v);
    free(cv.lines);
    free(buf);
    return rc;
}

int csv_parse(const char *data, size_t len, csv_table_t **ret, char *err, size_t errlen)
{
    if (len > CSV_MAX_FILE_BYTES) {
        util_errf(err, errlen, "larger than %zu MiB", CSV_MAX_FILE_BYTES >> 20);
        return -EFBIG;
    }
    char *buf = malloc(len + 1);
    if (!buf) {
        util_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (len)
        memcpy(buf, data, len);
    buf[len] = '\0';
    return parse_owned(buf, len, ret, err, errlen);
}

int csv_read_file(const char *path, csv_table_t **ret, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = util_read_file(path, CSV_MAX_FILE_BYTES, &buf, &len);
    if (rc == -EFBIG) {
        util_errf(err, errlen, "%s: larger than %zu MiB", path, CSV_MAX_FILE_BYTES >> 20);
        return rc;
    }
    if (rc < 0) {
        util_errf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    char inner[512] = "";
    rc = parse_owned(buf, len, ret, inner, sizeof(inner));
    if (rc < 0)
        util_errf(err, errlen, "%s: %s", path, inner);
    return rc;
}

void csv_free(csv_table_t *t)
{
    if (!t)
        return;
    free(t->header);
    free(t->lines);
    free(t->buf);
    free(t);
}

int csv_column_index(const csv_table_t *t, const char *name)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (strcmp(t->header[i], name) == 0)
            return (int)i;
    return -1;
}

const char *csv_cell(const csv_table_t *t, size_t row, size_t col)
{
    return t->cells[row * t->n_cols + col];
}

/* Bounds of s without surrounding blanks. */
static void trimmed(const char *s, const char **ret_b, size_t *ret_n)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *ret_b = s;
    *ret_n = n;
}

bool csv_is_missing(const char *s)
{
    const char *b;
    size_t n;
    trimmed(s, &b, &n);
    return n == 0 || (n == 2 && strncasecmp(b, "na", 2) == 0) || (n == 3 && strncasecmp(b, "nan", 3) == 0);
}

int csv_parse_number(const char *s, double *ret)
{
    const char *b;
    size_t n;
    trimmed(s, &b, &n);
    if (n == 0 || (n == 2 && strncasecmp(b, "na", 2) == 0) || (n == 3 && strncasecmp(b, "nan", 3) == 0)) {
        *ret = NAN;
        return 1;
    }
    if (n > 64)
        return -EINVAL;
    char tmp[65];
    bool digit = false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (isdigit((unsigned char)c))
            digit = true;
        else if (c != '+' && c != '-' && c != '.' && c != 'e' && c != 'E')
            return -EINVAL;
        tmp[i] = c;
    }
    tmp[n] = '\0';
    if (!digit)
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + n || !isfinite(v) || (errno == ERANGE && fabs(v) > 1.0))
        return -EINVAL;
    *ret = v;
    return 0;
}

int csv_column_numbers(const csv_table_t *t, size_t col, double *values, size_t *ret_missing,
                       size_t *ret_bad_row)
{
    size_t missing = 0;
    for (size_t r = 0; r < t->n_rows; r++) {
        int rc = csv_parse_number(csv_cell(t, r, col), &values[r]);
        if (rc < 0) {
            if (ret_bad_row)
                *ret_bad_row = r;
            return -EINVAL;
        }
        if (rc == 1)
            missing++;
    }
    if (ret_missing)
        *ret_missing = missing;
    return 0;
}

/* ---- writer ---- */

void csv_writer_init(csv_writer_t *w)
{
    memset(w, 0, sizeof(*w));
}

static void put(csv_writer_t *w, const char *s, size_t n)
{
    if (w->error)
        return;
    if (w->len + n + 1 > w->cap) {
        size_t ncap = w->cap ? w->cap : 4096;
        while (w->len + n + 1 > ncap)
            ncap *= 2;
        if (ncap > WRITER_MAX_BYTES) {
            w->error = -EFBIG;
            return;
        }
        char *nb = realloc(w->buf, ncap);
        if (!nb) {
            w->error = -ENOMEM;
            return;
        }
        w->buf = nb;
        w->cap = ncap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void begin_field(csv_writer_t *w)
{
    if (w->row_open)
        put(w, ",", 1);
    w->row_open = true;
}

void csv_writer_field(csv_writer_t *w, const char *s)
{
    begin_field(w);
    size_t n = strlen(s);
    bool quote = n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    if (!quote && strpbrk(s, ",\"\r\n"))
        quote = true;
    if (!quote) {
        put(w, s, n);
        return;
    }
    put(w, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            put(w, "\"\"", 2);
        else
            put(w, p, 1);
    }
    put(w, "\"", 1);
}

void csv_writer_number(csv_writer_t *w, double v)
{
    begin_field(w);
    if (isnan(v))
        return;
    char tmp[40];
    int n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    put(w, tmp, (size_t)n);
}

void csv_writer_fixed(csv_writer_t *w, double v, int decimals)
{
    begin_field(w);
    if (isnan(v))
        return;
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%.*f", decimals, v);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        w->error = w->error ? w->error : -ERANGE;
        return;
    }
    const char *p = tmp;
    if (tmp[0] == '-') { /* "-0.00" -> "0.00" */
        bool zero = true;
        for (const char *q = tmp + 1; *q; q++)
            if (*q != '0' && *q != '.')
                zero = false;
        if (zero) {
            p++;
            n--;
        }
    }
    put(w, p, (size_t)n);
}

void csv_writer_end_row(csv_writer_t *w)
{
    put(w, "\n", 1);
    w->row_open = false;
}

int csv_writer_error(const csv_writer_t *w)
{
    return w->error;
}

int csv_writer_save(const csv_writer_t *w, const char *path)
{
    if (w->error)
        return w->error;
    return util_write_file_atomic(path, w->buf ? w->buf : "", w->len, 0640);
}

char *csv_writer_steal(csv_writer_t *w, size_t *ret_len)
{
    if (w->error) {
        csv_writer_free(w);
        return NULL;
    }
    char *b = w->buf ? w->buf : strdup("");
    if (ret_len)
        *ret_len = w->buf ? w->len : 0;
    csv_writer_init(w);
    return b;
}

void csv_writer_free(csv_writer_t *w)
{
    free(w->buf);
    csv_writer_init(w);
}
