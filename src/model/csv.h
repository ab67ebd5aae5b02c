/* SPDX-License-Identifier: Apache-2.0 */
/* CSV for training data and validation sets: an RFC 4180 reader (header row, quoted
 * fields with "" escapes and embedded newlines, LF or CRLF line ends, optional UTF-8 BOM)
 * with hard caps on everything it accepts, numeric access to columns (empty, "NA" and
 * "nan" mean missing), and a small writer that builds a file in memory and saves it
 * crash-safely. */
#ifndef AIMEDRES_MODEL_CSV_H
#define AIMEDRES_MODEL_CSV_H

#include <stdbool.h>
#include <stddef.h>

#define CSV_MAX_FILE_BYTES ((size_t)64 << 20) /* 64 MiB */
#define CSV_MAX_COLUMNS 4096
#define CSV_MAX_CELLS ((size_t)10000000) /* header included */

/* A parsed table. Every string is NUL-terminated and points into one buffer owned by
 * the table; all of them stay valid until csv_free. */
typedef struct csv_table {
    size_t n_cols;
    size_t n_rows; /* data rows, header excluded; blank lines are skipped */
    char **header; /* n_cols names */
    char **cells;  /* n_rows * n_cols, row-major */
    size_t *lines; /* n_rows: 1-based line number where each data row starts (for errors) */
    char *buf;
} csv_table_t;

/* Parses len bytes of data (need not be NUL-terminated; the caps above apply to len too).
 * Requires a header with unique, non-empty names and the same field count on every row.
 * Returns 0, -EINVAL (malformed; err says "line N: ..."), -EFBIG (a cap was hit) or
 * -ENOMEM. Caller frees *ret with csv_free. */
int csv_parse(const char *data, size_t len, csv_table_t **ret, char *err, size_t errlen);
/* Reads and parses a file (at most CSV_MAX_FILE_BYTES). Errors name the path. */
int csv_read_file(const char *path, csv_table_t **ret, char *err, size_t errlen);
void csv_free(csv_table_t *t);

/* Index of the column named name, or -1. */
int csv_column_index(const csv_table_t *t, const char *name);
/* Borrowed cell text. */
const char *csv_cell(const csv_table_t *t, size_t row, size_t col);

/* True if s means "missing": empty (after trimming blanks), "NA" or "nan" (any case). */
bool csv_is_missing(const char *s);
/* Parses one cell as a finite decimal number (blanks around it allowed; no hex, inf or
 * nan). Returns 0 with *ret set, 1 if the cell is missing (*ret = NAN), -EINVAL if it
 * is not a number. */
int csv_parse_number(const char *s, double *ret);
/* Converts column col into values[n_rows] (NAN for missing). Returns 0, or -EINVAL with
 * *ret_bad_row (0-based data row) set to the first cell that is not a number.
 * ret_missing (optional) receives the number of missing cells. */
int csv_column_numbers(const csv_table_t *t, size_t col, double *values, size_t *ret_missing,
                       size_t *ret_bad_row);

/* In-memory CSV writer. Fields are quoted only when needed (comma, quote, CR, LF, or
 * leading/trailing blank). Errors are sticky: check csv_writer_error or the result of
 * csv_writer_save once at the end. */
typedef struct csv_writer {
    char *buf;
    size_t len, cap;
    bool row_open; /* a field was written on the current row */
    int error;     /* 0 or -ENOMEM / -EFBIG */
} csv_writer_t;

void csv_writer_init(csv_writer_t *w);
void csv_writer_field(csv_writer_t *w, const char *s);
/* Writes v in the shortest form that reads back to the same double (%.15g, else %.17g);
 * NAN is written as an empty field. */
void csv_writer_number(csv_writer_t *w, double v);
/* Writes v with exactly `decimals` digits after the point (deterministic output for
 * generators); NAN is an empty field. */
void csv_writer_fixed(csv_writer_t *w, double v, int decimals);
/* Ends the current row with "\n". */
void csv_writer_end_row(csv_writer_t *w);
int csv_writer_error(const csv_writer_t *w);
/* Saves crash-safely (util_write_file_atomic, mode 0640). 0 or -errno. */
int csv_writer_save(const csv_writer_t *w, const char *path);
/* Hands the buffer to the caller (NUL-terminated; caller frees) and resets the writer.
 * NULL if the writer is in error. */
char *csv_writer_steal(csv_writer_t *w, size_t *ret_len);
void csv_writer_free(csv_writer_t *w);

#endif
