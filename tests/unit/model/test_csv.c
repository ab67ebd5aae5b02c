/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for model/csv.c: RFC 4180 parsing (quotes, CRLF, BOM, blank lines), every
 * malformed-input error with its line number, the hard caps (file size, columns,
 * cells), numeric cells (missing tokens, strictness), and the writer (quoting, number
 * round trips, fixed precision, crash-safe save read back by the parser). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "model/csv.h"
#include "testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static char tmp[4096];

static int setup(void **state)
{
    (void)state;
    return test_tmpdir(tmp, sizeof(tmp), "csv");
}

static int teardown(void **state)
{
    (void)state;
    util_rmtree(tmp);
    return 0;
}

static csv_table_t *parse_ok(const char *s)
{
    csv_table_t *t = NULL;
    char err[256] = "";
    int rc = csv_parse(s, strlen(s), &t, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "unexpected parse error: %s\n", err);
    assert_int_equal(rc, 0);
    return t;
}

static int parse_err(const char *s, size_t len, char *err, size_t errlen)
{
    csv_table_t *t = NULL;
    int rc = csv_parse(s, len, &t, err, errlen);
    assert_null(t);
    return rc;
}

static void test_basic(void **state)
{
    (void)state;
    csv_table_t *t = parse_ok("a,b,c\n1,2,3\n4,5,6\n");
    assert_int_equal(t->n_cols, 3);
    assert_int_equal(t->n_rows, 2);
    assert_string_equal(t->header[0], "a");
    assert_string_equal(t->header[2], "c");
    assert_string_equal(csv_cell(t, 0, 0), "1");
    assert_string_equal(csv_cell(t, 1, 2), "6");
    assert_int_equal(csv_column_index(t, "b"), 1);
    assert_int_equal(csv_column_index(t, "zz"), -1);
    assert_int_equal(t->lines[0], 2);
    assert_int_equal(t->lines[1], 3);
    csv_free(t);
}

static void test_quotes_crlf_bom(void **state)
{
    (void)state;
    /* BOM, CRLF, a quoted comma, an escaped quote, an embedded CRLF, an empty quoted
     * field, blank lines to skip, and no final line end. */
    const char *s = "\xEF\xBB\xBF"
                    "name, note ,x\r\n"
                    "\"Smith, J\",\"said \"\"hi\"\"\",1\r\n"
                    "\r\n"
                    "\"multi\r\nline\",\"\",2\r\n"
                    "\n"
                    "plain,quote\"inside,3";
    csv_table_t *t = parse_ok(s);
    assert_int_equal(t->n_cols, 3);
    assert_int_equal(t->n_rows, 3);
    assert_string_equal(t->header[0], "name");
    assert_string_equal(t->header[1], "note"); /* header names are trimmed */
    assert_string_equal(csv_cell(t, 0, 0), "Smith, J");
    assert_string_equal(csv_cell(t, 0, 1), "said \"hi\"");
    assert_string_equal(csv_cell(t, 1, 0), "multi\r\nline");
    assert_string_equal(csv_cell(t, 1, 1), "");
    assert_string_equal(csv_cell(t, 2, 1), "quote\"inside");
    assert_string_equal(csv_cell(t, 2, 2), "3");
    assert_int_equal(t->lines[0], 2);
    assert_int_equal(t->lines[1], 4); /* after a blank line */
    assert_int_equal(t->lines[2], 7); /* the quoted CRLF counted as a line */
    csv_free(t);

    /* A quoted header name keeps its blanks (it may be a booster's feature name). */
    t = parse_ok("\" age\",\"bmi \", c \n1,2,3\n");
    assert_string_equal(t->header[0], " age");
    assert_string_equal(t->header[1], "bmi ");
    assert_string_equal(t->header[2], "c");
    csv_free(t);

    /* Trailing empty field and a header-only file. */
    t = parse_ok("a,b\n1,\n");
    assert_string_equal(csv_cell(t, 0, 1), "");
    csv_free(t);
    t = parse_ok("a,b\n");
    assert_int_equal(t->n_rows, 0);
    csv_free(t);
}

static void test_errors(void **state)
{
    (void)state;
    char err[256];
    const char *s;

    s = "a,b\n1,\"open\n2,3\n";
    assert_int_equal(parse_err(s, strlen(s), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 2: quoted field is not closed"));

    s = "a,b,c\n1,2,3\n4,5\n";
    assert_int_equal(parse_err(s, strlen(s), err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "line 3: expected 3 fields, found 2");

    s = "a,b,a\n1,2,3\n";
    assert_int_equal(parse_err(s, strlen(s), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "duplicate column name 'a'"));

    s = ",b\n1,2\n";
    assert_int_equal(parse_err(s, strlen(s), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "column 1 of the header has no name"));

    s = "a,b\n\"x\"y,2\n";
    assert_int_equal(parse_err(s, strlen(s), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 2: unexpected character after a closing quote"));

    static const char nul[] = "a,b\n1,2\0\n";
    assert_int_equal(parse_err(nul, sizeof(nul) - 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "NUL byte"));

    assert_int_equal(parse_err("", 0, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no header"));
    assert_int_equal(parse_err("\n\n", 2, err, sizeof(err)), -EINVAL);
}

static void test_cap_columns(void **state)
{
    (void)state;
    size_t n = CSV_MAX_COLUMNS + 1;
    char *s = malloc(n * 8 + 2);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(s + len, "%sc%zu", i ? "," : "", i);
    s[len++] = '\n';
    char err[256];
    assert_int_equal(parse_err(s, len, err, sizeof(err)), -EFBIG);
    assert_non_null(strstr(err, "more than 4096 columns"));
    /* Exactly the cap is fine. */
    len = 0;
    for (size_t i = 0; i < CSV_MAX_COLUMNS; i++)
        len += (size_t)sprintf(s + len, "%sc%zu", i ? "," : "", i);
    s[len++] = '\n';
    csv_table_t *t = NULL;
    assert_int_equal(csv_parse(s, len, &t, err, sizeof(err)), 0);
    assert_int_equal(t->n_cols, CSV_MAX_COLUMNS);
    csv_free(t);
    free(s);
}

static void test_cap_cells(void **state)
{
    (void)state;
    /* 2 columns x (header + 5,000,000 rows) = 10,000,002 cells > 10 M, in 20 MB. */
    size_t rows = CSV_MAX_CELLS / 2;
    size_t len = 4 + rows * 4;
    char *s = malloc(len);
    memcpy(s, "a,b\n", 4);
    for (size_t i = 0; i < rows; i++)
        memcpy(s + 4 + i * 4, "1,2\n", 4);
    char err[256];
    assert_int_equal(parse_err(s, len, err, sizeof(err)), -EFBIG);
    assert_non_null(strstr(err, "cells"));
    free(s);
}

static void test_cap_file_size(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/big.csv", tmp);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "a,b\n", 4), 4);
    assert_int_equal(ftruncate(fd, (off_t)CSV_MAX_FILE_BYTES + 1), 0); /* sparse */
    close(fd);
    csv_table_t *t = NULL;
    char err[512];
    assert_int_equal(csv_read_file(path, &t, err, sizeof(err)), -EFBIG);
    assert_null(t);
    assert_non_null(strstr(err, "larger than 64 MiB"));
    assert_non_null(strstr(err, "big.csv"));

    snprintf(path, sizeof(path), "%s/missing.csv", tmp);
    assert_int_equal(csv_read_file(path, &t, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing.csv"));
}

static void test_numbers(void **state)
{
    (void)state;
    double v = 0;
    assert_int_equal(csv_parse_number("1.5", &v), 0);
    assert_true(v == 1.5);
    assert_int_equal(csv_parse_number(" -2e-3 ", &v), 0);
    assert_true(v == -2e-3);
    assert_int_equal(csv_parse_number("+7", &v), 0);
    assert_true(v == 7);
    static const char *const missing[] = {"", "  ", "NA", "na", "nan", "NaN", " NA "};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        v = 0;
        assert_int_equal(csv_parse_number(missing[i], &v), 1);
        assert_true(isnan(v));
        assert_true(csv_is_missing(missing[i]));
    }
    static const char *const bad[] = {"abc",   "0x10", "inf", "-Infinity", "1e400", ".",
                                      "1.2.3", "1,5",  "N/A", "12abc",     "--1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(csv_parse_number(bad[i], &v), -EINVAL);
    assert_false(csv_is_missing("0"));

    csv_table_t *t = parse_ok("x,y\n1,a\n,2\nNA,3\n4.5,b\n");
    double col[4];
    size_t missing_n = 99, bad_row = 99;
    assert_int_equal(csv_column_numbers(t, 0, col, &missing_n, &bad_row), 0);
    assert_int_equal(missing_n, 2);
    assert_true(col[0] == 1 && isnan(col[1]) && isnan(col[2]) && col[3] == 4.5);
    assert_int_equal(csv_column_numbers(t, 1, col, &missing_n, &bad_row), -EINVAL);
    assert_int_equal(bad_row, 0);
    csv_free(t);
}

static void test_writer(void **state)
{
    (void)state;
    csv_writer_t w;
    csv_writer_init(&w);
    csv_writer_field(&w, "plain");
    csv_writer_field(&w, "with,comma");
    csv_writer_field(&w, "say \"x\"");
    csv_writer_field(&w, " padded");
    csv_writer_field(&w, "two\nlines");
    csv_writer_end_row(&w);
    csv_writer_number(&w, 0.1);
    csv_writer_number(&w, 1.0 / 3.0);
    csv_writer_number(&w, NAN);
    csv_writer_fixed(&w, -0.0001, 3);
    csv_writer_fixed(&w, 2.5, 0);
    csv_writer_end_row(&w);
    assert_int_equal(csv_writer_error(&w), 0);
    size_t len = 0;
    char *s = csv_writer_steal(&w, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_string_equal(s, "plain,\"with,comma\",\"say \"\"x\"\"\",\" padded\",\"two\nlines\"\n"
                           "0.1,0.33333333333333331,,0.000,2\n");

    /* Parsing the writer's output gives back the same fields and numbers. */
    csv_table_t *t = parse_ok(s);
    assert_string_equal(t->header[1], "with,comma");
    assert_string_equal(t->header[2], "say \"x\"");
    assert_string_equal(t->header[4], "two\nlines");
    double v;
    assert_int_equal(csv_parse_number(csv_cell(t, 0, 1), &v), 0);
    assert_true(v == 1.0 / 3.0);
    assert_int_equal(csv_parse_number(csv_cell(t, 0, 2), &v), 1);
    csv_free(t);
    free(s);

    /* Crash-safe save, read back from disk. */
    char path[4200];
    snprintf(path, sizeof(path), "%s/out.csv", tmp);
    csv_writer_init(&w);
    csv_writer_field(&w, "a");
    csv_writer_field(&w, "label");
    csv_writer_end_row(&w);
    csv_writer_number(&w, 12.25);
    csv_writer_number(&w, 1);
    csv_writer_end_row(&w);
    assert_int_equal(csv_writer_save(&w, path), 0);
    csv_writer_free(&w);
    char err[256];
    assert_int_equal(csv_read_file(path, &t, err, sizeof(err)), 0);
    assert_int_equal(t->n_rows, 1);
    assert_string_equal(csv_cell(t, 0, 0), "12.25");
    assert_string_equal(csv_cell(t, 0, 1), "1");
    csv_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),     cmocka_unit_test(test_quotes_crlf_bom),
        cmocka_unit_test(test_errors),    cmocka_unit_test(test_cap_columns),
        cmocka_unit_test(test_cap_cells), cmocka_unit_test(test_cap_file_size),
        cmocka_unit_test(test_numbers),   cmocka_unit_test(test_writer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
