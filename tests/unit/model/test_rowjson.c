/* SPDX-License-Identifier: Apache-2.0 */
/* Differential tests for model/rowjson.c against the jansson path it shortcuts: generated
 * predict bodies (valid, invalid and randomly mutated) must either be declined or decode to
 * exactly what json_loadb + model_schema_row give (same object, bit-identical row); encoded
 * reals, strings and row results must equal json_dumps of the jansson trees byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka must come after the headers above
#include <cmocka.h>
#include <float.h>

#include "fixture.h"
#include "model/rowjson.h"
#include "model/runtime.h"
#include "model/schema.h"

#define NF 7

static model_manifest_t *m;
static char *tmp;

/* age: integer [0,120] required; sex: boolean required; mmse: number [0,30] required;
 * bmi: number >= 10 optional; score: number, no range, optional; cap: integer <= 5.5
 * optional; flag: boolean optional. */
static const char *const names[NF] = {"age", "sex", "mmse", "bmi", "score", "cap", "flag"};

static int setup(void **state)
{
    (void)state;
    tmp = fx_tmpdir("rowjson");
    m = fx_manifest("[{\"name\": \"age\", \"type\": \"integer\", \"required\": true, \"min\": 0, \"max\": 120},"
                    " {\"name\": \"sex\", \"type\": \"boolean\", \"required\": true},"
                    " {\"name\": \"mmse\", \"type\": \"number\", \"required\": true, \"min\": 0.0, \"max\": 30.0},"
                    " {\"name\": \"bmi\", \"type\": \"number\", \"required\": false, \"min\": 10},"
                    " {\"name\": \"score\", \"type\": \"number\", \"required\": false},"
                    " {\"name\": \"cap\", \"type\": \"integer\", \"required\": false, \"max\": 5.5},"
                    " {\"name\": \"flag\", \"type\": \"boolean\", \"required\": false}]");
    return m ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    model_manifest_free(m);
    util_rmtree(tmp);
    free(tmp);
    return 0;
}

/* ---- generated bodies ---------------------------------------------------------------- */

typedef struct gen {
    char buf[8192];
    size_t len;
} gen_t;

static unsigned rnd(unsigned n)
{
    return (unsigned)(fx_rand() * n);
}

static void put(gen_t *g, const char *s)
{
    size_t n = strlen(s);
    if (g->len + n < sizeof(g->buf)) {
        memcpy(g->buf + g->len, s, n);
        g->len += n;
    }
}

static void ws(gen_t *g, bool clean)
{
    static const char *const forms[] = {"", "", "", " ", "\n", "\t", "\r\n  ", "  "};
    if (!clean)
        put(g, forms[rnd(8)]);
}

/* A number token in one of many spellings (some invalid JSON, some out of any range). */
static void number(gen_t *g, bool clean)
{
    char t[96];
    double x = fx_rand() * 200 - 50;
    unsigned form = clean ? rnd(8) : rnd(30);
    switch (form) {
    case 0: snprintf(t, sizeof(t), "%d", (int)(fx_rand() * 30)); break;
    case 1: snprintf(t, sizeof(t), "%.17g", fx_rand() * 30); break;
    case 2: snprintf(t, sizeof(t), "%.3f", fx_rand() * 30); break;
    case 3: snprintf(t, sizeof(t), "%.1f", (double)(int)(fx_rand() * 30)); break; /* integral real */
    case 4: snprintf(t, sizeof(t), "%.6e", fx_rand() * 30); break;
    case 5: snprintf(t, sizeof(t), "%.9g", (double)(float)(fx_rand() * 30)); break;
    case 6: snprintf(t, sizeof(t), "%dE-1", (int)(fx_rand() * 300)); break;
    case 7: snprintf(t, sizeof(t), "0.%03d", (int)(fx_rand() * 1000)); break;
    case 8: snprintf(t, sizeof(t), "%.17g", x); break;
    case 9: snprintf(t, sizeof(t), "%d", (int)x); break;
    case 10: snprintf(t, sizeof(t), "-0"); break;
    case 11: snprintf(t, sizeof(t), "-0.0"); break;
    case 12: snprintf(t, sizeof(t), "1e400"); break;                /* jansson: overflow */
    case 13: snprintf(t, sizeof(t), "-1e-400"); break;              /* underflow: fine */
    case 14: snprintf(t, sizeof(t), "99999999999999999999"); break; /* too big integer */
    case 15: snprintf(t, sizeof(t), "9007199254740993"); break;     /* 2^53 + 1 */
    case 16: snprintf(t, sizeof(t), "12345678901234567.5e-16"); break;
    case 17: snprintf(t, sizeof(t), "01"); break; /* invalid */
    case 18: snprintf(t, sizeof(t), "1."); break; /* invalid */
    case 19: snprintf(t, sizeof(t), ".5"); break; /* invalid */
    case 20: snprintf(t, sizeof(t), "+1"); break; /* invalid */
    case 21: snprintf(t, sizeof(t), "1e+%d", (int)rnd(40)); break;
    case 22: snprintf(t, sizeof(t), "%.25f", fx_rand()); break;
    case 23:
        snprintf(t, sizeof(t), "4.00000000000000000000000000000000000000000000000000000000000001");
        break;
    case 24: snprintf(t, sizeof(t), "%.20g", fx_rand() * 1e-10); break;
    case 25: snprintf(t, sizeof(t), "1E%d", (int)rnd(60) - 30); break;
    case 26: snprintf(t, sizeof(t), "%de%d", (int)rnd(100000), (int)rnd(40) - 20); break;
    case 27: snprintf(t, sizeof(t), "0"); break;
    case 28: snprintf(t, sizeof(t), "1"); break;
    default: snprintf(t, sizeof(t), "3.4028235e38"); break;
    }
    put(g, t);
}

/* A valid value for feature f in one of several spellings. */
static void valid_value(gen_t *g, int f)
{
    static const int lo[NF] = {0, 0, 0, 10, -1000, -100, 0}, hi[NF] = {120, 1, 30, 80, 1000, 5, 1};
    char t[96];
    if (f == 1 || f == 6) {
        static const char *const forms[] = {"true", "false", "0", "1", "1.0", "0e0", "-0", "0.0"};
        put(g, forms[rnd(8)]);
        return;
    }
    if (f == 0 || f == 5) { /* integers */
        int v = lo[f] + (int)rnd((unsigned)(hi[f] - lo[f] + 1));
        switch (rnd(5)) {
        case 0: snprintf(t, sizeof(t), "%d.0", v); break;
        case 1: snprintf(t, sizeof(t), "%de0", v); break;
        case 2: snprintf(t, sizeof(t), v ? "%d00E-2" : "%d", v); break; /* no leading zeros */
        default: snprintf(t, sizeof(t), "%d", v); break;
        }
        put(g, t);
        return;
    }
    double x = lo[f] + fx_rand() * (hi[f] - lo[f]);
    switch (rnd(9)) {
    case 0: snprintf(t, sizeof(t), "%.17g", x); break;
    case 1: snprintf(t, sizeof(t), "%.3f", x); break;
    case 2: snprintf(t, sizeof(t), "%.6e", x); break;
    case 3: snprintf(t, sizeof(t), "%.9g", (double)(float)x); break;
    case 4: snprintf(t, sizeof(t), "%.1f", x); break;
    case 5: snprintf(t, sizeof(t), "%.25g", x); break;
    case 6: snprintf(t, sizeof(t), "%d", (int)x); break;
    case 7: snprintf(t, sizeof(t), "%.12E", x); break;
    default: snprintf(t, sizeof(t), "%.15g", x); break;
    }
    put(g, t);
}

static void value(gen_t *g, bool clean, int feature)
{
    if (clean || rnd(10) < 7) {
        valid_value(g, feature);
        return;
    }
    if (feature == 1 || feature == 6) { /* booleans */
        unsigned r = rnd(6);
        if (r == 0)
            put(g, "true");
        else if (r == 1)
            put(g, "false");
        else if (r == 2)
            put(g, rnd(2) ? "1" : "0");
        else if (r == 3)
            put(g, "null");
        else
            number(g, clean);
        return;
    }
    unsigned r = rnd(6);
    if (r == 1)
        put(g, "null");
    else if (r == 2)
        put(g, "\"12\"");
    else if (r == 3)
        put(g, rnd(2) ? "true" : "false");
    else if (r == 4)
        put(g, rnd(2) ? "{}" : "[1]");
    else
        number(g, clean);
}

static void key(gen_t *g, const char *name, bool clean)
{
    put(g, "\"");
    unsigned r = clean ? 0 : rnd(30);
    if (r == 1)
        put(g, "a\\u0067e"); /* "age" escaped */
    else if (r == 2)
        put(g, "\xc3\xa2ge"); /* non-ASCII */
    else if (r == 3)
        put(g, "unknown");
    else if (r == 4)
        put(g, "");
    else
        put(g, name);
    put(g, "\"");
}

static void features(gen_t *g, bool clean)
{
    int order[NF];
    for (int i = 0; i < NF; i++)
        order[i] = i;
    if (!rnd(3)) /* shuffled */
        for (int i = NF - 1; i > 0; i--) {
            int j = (int)rnd((unsigned)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    put(g, "{");
    bool first = true;
    for (int i = 0; i < NF; i++) {
        int f = order[i];
        bool required = f < 3;
        if (clean ? (!required && rnd(3) == 0) : rnd(8) == 0)
            continue;                               /* absent */
        int times = !clean && rnd(25) == 0 ? 2 : 1; /* duplicate */
        for (int k = 0; k < times; k++) {
            if (!first) {
                ws(g, clean);
                put(g, ",");
            }
            first = false;
            ws(g, clean);
            key(g, names[f], clean);
            ws(g, clean);
            put(g, ":");
            ws(g, clean);
            value(g, clean, f);
        }
    }
    ws(g, clean);
    put(g, "}");
}

static void string_value(gen_t *g, bool clean, bool pid)
{
    unsigned r = clean ? 0 : rnd(10);
    if (r == 1) {
        put(g, "\"P\\u00e9\"");
    } else if (r == 2) {
        put(g, "\"\"");
    } else if (r == 3) {
        put(g, "\"");
        for (int i = 0; i < 300; i++)
            put(g, "x");
        put(g, "\"");
    } else if (r == 4) {
        put(g, "12");
    } else if (r == 5) {
        put(g, "\"bad/\xc3\xa9\"");
    } else {
        char t[64];
        snprintf(t, sizeof(t), pid ? "\"patient-%u\"" : "\"%u.0.%u\"", rnd(100000), rnd(10));
        put(g, t);
    }
}

/* One body. clean: always valid JSON of the fast shape with valid features. */
static void body(gen_t *g, bool clean)
{
    g->len = 0;
    ws(g, clean);
    put(g, "{");
    const char *members[5] = {"features", NULL, NULL, NULL, NULL};
    size_t n = 1;
    if (rnd(3) == 0)
        members[n++] = "patient_id";
    if (rnd(4) == 0)
        members[n++] = "version";
    if (!clean && rnd(15) == 0)
        members[n++] = rnd(2) ? "instances" : "extra";
    if (!clean && rnd(20) == 0) {
        members[n] = members[rnd((unsigned)n)]; /* duplicate member */
        n++;
    }
    for (size_t i = n - 1; i > 0 && rnd(2); i--) {
        size_t j = rnd((unsigned)i + 1);
        const char *t = members[i];
        members[i] = members[j];
        members[j] = t;
    }
    if (!clean && rnd(30) == 0)
        n = 0; /* {} */
    for (size_t i = 0; i < n; i++) {
        if (i) {
            ws(g, clean);
            put(g, ",");
        }
        ws(g, clean);
        put(g, "\"");
        put(g, members[i]);
        put(g, "\"");
        ws(g, clean);
        put(g, ":");
        ws(g, clean);
        if (strcmp(members[i], "features") == 0) {
            features(g, clean);
        } else if (strcmp(members[i], "patient_id") == 0) {
            string_value(g, clean, true);
        } else if (strcmp(members[i], "version") == 0) {
            string_value(g, clean, false);
        } else if (strcmp(members[i], "instances") == 0) {
            put(g, "[");
            features(g, clean);
            put(g, "]");
        } else {
            put(g, "1");
        }
    }
    ws(g, clean);
    put(g, "}");
    ws(g, clean);
}

static void mutate(gen_t *g)
{
    static const char alphabet[] = "{}[]:,\"\\ 0123456789.eE+-tfnul\x01\x7f\xc3";
    int edits = 1 + (int)rnd(3);
    for (int e = 0; e < edits && g->len > 0; e++) {
        size_t at = rnd((unsigned)g->len);
        char c = alphabet[rnd(sizeof(alphabet) - 1)];
        switch (rnd(4)) {
        case 0: memmove(g->buf + at, g->buf + at + 1, g->len - at - 1), g->len--; break;
        case 1:
            if (g->len + 1 < sizeof(g->buf)) {
                memmove(g->buf + at + 1, g->buf + at, g->len - at);
                g->buf[at] = c;
                g->len++;
            }
            break;
        case 2: g->buf[at] = c; break;
        default: g->len = at; break;
        }
    }
}

/* ---- the differential check ---------------------------------------------------------- */

typedef struct tally {
    unsigned bodies, scanned, fast, ref_valid;
} tally_t;

static bool bits_equal(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* Checks one body; returns whether the fast path took it all the way. */
static bool check(const char *data, size_t len, tally_t *t)
{
    rowjson_body_t *fb = malloc(sizeof(*fb));
    assert_non_null(fb);
    t->bodies++;
    bool scanned = rowjson_scan(data, len, fb);
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    json_t *features = root && json_is_object(root) ? json_object_get(root, "features") : NULL;
    float ref_row[NF], fast_row[NF];
    int ref_rc = -1;
    json_t *errors = json_array();
    if (features && json_is_object(features) && !json_object_get(root, "instances"))
        ref_rc = model_schema_row(m, features, ref_row, errors);
    bool fast = false;
    if (scanned) {
        t->scanned++;
        /* Phase 1 accepted: jansson must parse the same object. */
        if (!root)
            fail_msg("scan accepted what jansson refuses (%s): %.*s", jerr.text, (int)len, data);
        assert_true(json_is_object(root));
        assert_non_null(features);
        assert_true(json_is_object(features));
        size_t expect_keys = 1 + (fb->patient_id != NULL) + (fb->version != NULL);
        assert_int_equal(json_object_size(root), expect_keys);
        json_t *pid = json_object_get(root, "patient_id"), *ver = json_object_get(root, "version");
        assert_true((pid != NULL) == (fb->patient_id != NULL));
        assert_true((ver != NULL) == (fb->version != NULL));
        if (pid) {
            assert_true(json_is_string(pid));
            assert_int_equal(json_string_length(pid), fb->patient_id_len);
            assert_memory_equal(json_string_value(pid), fb->patient_id, fb->patient_id_len);
        }
        if (ver) {
            assert_true(json_is_string(ver));
            assert_int_equal(json_string_length(ver), fb->version_len);
            assert_memory_equal(json_string_value(ver), fb->version, fb->version_len);
        }
        assert_int_equal(json_object_size(features), fb->n);
        for (size_t j = 0; j < fb->n; j++) {
            const rowjson_member_t *v = &fb->members[j];
            json_t *jv = json_object_getn(features, v->key, v->key_len);
            assert_non_null(jv);
            switch (v->kind) {
            case ROWJSON_INT:
                assert_true(json_is_integer(jv));
                assert_true(bits_equal(v->value, (double)json_integer_value(jv)));
                break;
            case ROWJSON_REAL:
                assert_true(json_is_real(jv));
                if (!bits_equal(v->value, json_real_value(jv)))
                    fail_msg("value %.17g != jansson's %.17g in %.*s", v->value, json_real_value(jv),
                             (int)len, data);
                break;
            case ROWJSON_TRUE: assert_true(json_is_true(jv)); break;
            case ROWJSON_FALSE: assert_true(json_is_false(jv)); break;
            default: fail_msg("member kind %d", v->kind);
            }
        }
        /* Phase 2: valid exactly when model_schema_row finds no problem, same bits. */
        fast = rowjson_row(m, fb, fast_row);
        if (fast != (ref_rc == 0))
            fail_msg("fast row %d but schema rc %d for %.*s", fast, ref_rc, (int)len, data);
        if (fast)
            assert_memory_equal(fast_row, ref_row, sizeof(ref_row));
    }
    if (ref_rc == 0)
        t->ref_valid++;
    if (fast)
        t->fast++;
    json_decref(errors);
    json_decref(root);
    free(fb);
    return fast;
}

static void test_clean_bodies_take_fast_path(void **state)
{
    (void)state;
    fx_rng = 1234567;
    gen_t *g = malloc(sizeof(*g));
    tally_t t = {0};
    for (int i = 0; i < 20000; i++) {
        body(g, true);
        if (!check(g->buf, g->len, &t))
            fail_msg("clean body declined: %.*s", (int)g->len, g->buf);
    }
    assert_int_equal(t.fast, 20000);
    free(g);
}

static void test_generated_bodies_agree(void **state)
{
    (void)state;
    fx_rng = 987654321;
    gen_t *g = malloc(sizeof(*g));
    tally_t t = {0};
    for (int i = 0; i < 100000; i++) {
        body(g, false);
        check(g->buf, g->len, &t);
    }
    print_message("bodies %u, scanned %u, fast %u, valid for jansson+schema %u\n", t.bodies, t.scanned,
                  t.fast, t.ref_valid);
    /* The generator must exercise both outcomes, or this test proves nothing. */
    assert_true(t.fast > t.bodies / 50);
    assert_true(t.scanned > t.fast);
    assert_true(t.bodies - t.scanned > t.bodies / 10);
    free(g);
}

static void test_mutated_bodies_agree(void **state)
{
    (void)state;
    fx_rng = 42;
    gen_t *g = malloc(sizeof(*g));
    tally_t t = {0};
    for (int i = 0; i < 200000; i++) {
        body(g, rnd(2));
        mutate(g);
        check(g->buf, g->len, &t);
    }
    assert_true(t.scanned > 1000);
    assert_true(t.fast > 1000);
    free(g);
}

static void test_fixed_cases(void **state)
{
    (void)state;
    tally_t t = {0};
    static const char *const accept[] = {
        "{\"features\":{\"age\":70,\"sex\":true,\"mmse\":28.5}}",
        " {\r\n\t\"patient_id\" : \"p-1\" , \"features\" : { \"mmse\" : 3e1 , \"sex\" : 0 , \"age\" : 120.0 "
        "} ,"
        " \"version\":\"1.0\" } \n",
        "{\"features\":{\"age\":0,\"sex\":false,\"mmse\":-0.0,\"bmi\":10,\"score\":-3.4028234e38,\"cap\":-7,"
        "\"flag\":1}}",
        "{\"features\":{\"age\":-0,\"sex\":1,\"mmse\":0.1,\"score\":1e-400}}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(accept); i++)
        if (!check(accept[i], strlen(accept[i]), &t))
            fail_msg("declined: %s", accept[i]);
    static const char *const decline[] = {
        "",
        "[]",
        "{}",
        "{\"features\":{\"age\":70,\"sex\":true}}",                                      /* missing */
        "{\"features\":{\"age\":70.5,\"sex\":true,\"mmse\":1}}",                         /* not integral */
        "{\"features\":{\"age\":121,\"sex\":true,\"mmse\":1}}",                          /* out of range */
        "{\"features\":{\"age\":1,\"sex\":2,\"mmse\":1}}",                               /* boolean 2 */
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":1,\"x\":1}}",                    /* unknown */
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":null}}",                         /* null */
        "{\"features\":{\"age\":1,\"age\":1,\"sex\":true,\"mmse\":1}}",                  /* duplicate */
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":1,\"score\":1e39}}",             /* beyond float */
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":1},\"patient_id\":\"\\u0041\"}", /* escape */
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":1},\"features\":{}}",
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":1}} x",
        "{\"features\":{\"age\":1,\"sex\":true,\"mmse\":1}",
        "{\"instances\":[{\"age\":1,\"sex\":true,\"mmse\":1}]}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(decline); i++)
        if (check(decline[i], strlen(decline[i]), &t))
            fail_msg("accepted: %s", decline[i]);
}

/* Random number spellings (digits, point position, exponent, sign) decode to jansson's
 * value bit for bit: the exact fast cases as well as the strtod/strtoll ones. */
static void test_numbers_as_jansson(void **state)
{
    (void)state;
    fx_rng = 2024;
    tally_t t = {0};
    char b[160];
    for (int i = 0; i < 300000; i++) {
        char tok[80];
        size_t n = 0;
        if (rnd(2))
            tok[n++] = '-';
        unsigned digits = 1 + rnd(rnd(2) ? 6 : 24);
        tok[n++] = (char)('1' + rnd(9));
        if (rnd(8) == 0)
            tok[n - 1] = '0', digits = 1;
        for (unsigned d = 1; d < digits; d++)
            tok[n++] = (char)('0' + rnd(10));
        if (rnd(2)) {
            tok[n++] = '.';
            unsigned fd = 1 + rnd(rnd(2) ? 6 : 22);
            for (unsigned d = 0; d < fd; d++)
                tok[n++] = (char)('0' + rnd(10));
        }
        if (rnd(3) == 0)
            n += (size_t)snprintf(tok + n, sizeof(tok) - n, "%s%s%u", rnd(2) ? "e" : "E",
                                  rnd(3) == 0 ? "-" : (rnd(2) ? "+" : ""), rnd(rnd(2) ? 25 : 330));
        tok[n] = '\0';
        int len = snprintf(b, sizeof(b), "{\"features\":{\"score\":%s}}", tok);
        check(b, (size_t)len, &t);
    }
    assert_true(t.scanned > 250000);
}

/* ---- encoding -------------------------------------------------------------------------- */

static void expect_real(double x)
{
    json_t *j = json_real(x);
    char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
    rowjson_buf_t b = {0};
    rowjson_put_real(&b, x);
    assert_false(b.failed);
    if (strcmp(b.data, want) != 0)
        fail_msg("%.17g: got %s, jansson %s", x, b.data, want);
    free(want);
    free(b.data);
    json_decref(j);
}

static void test_reals_as_jansson(void **state)
{
    (void)state;
    static const double fixed[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.5,
                                   1e-5,
                                   1e-4,
                                   9.9999999e-5,
                                   0.0001,
                                   123456789,
                                   1234567890,
                                   999999999.5,
                                   1e9,
                                   1e21,
                                   1e22,
                                   1e23,
                                   1e100,
                                   1e-100,
                                   DBL_MAX,
                                   DBL_MIN,
                                   5e-324,
                                   0.1,
                                   0.2,
                                   0.3,
                                   2.5,
                                   0.125,
                                   100,
                                   1e15,
                                   0.985638797,
                                   0.0143612027,
                                   3.4028234663852886e38,
                                   12.5,
                                   0.403797,
                                   123456789.5,
                                   123456788.5,
                                   0.99999999995,
                                   0.999999999,
                                   9.9999999949999e-5,
                                   99999999.95,
                                   999999999.4,
                                   999999999.5,
                                   1e-14,
                                   9.99999999999e-15,
                                   1e-15,
                                   0.30000000000000004,
                                   1.0000000005,
                                   2.0000000025,
                                   4.5e-10,
                                   1.5,
                                   1234.5};
    for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
        expect_real(fixed[i]);
    fx_rng = 77;
    for (int i = 0; i < 200000; i++) {
        float p = (float)fx_rand();
        expect_real(p);
        expect_real(1.0 - (double)p);
        expect_real(fx_rand() * 1000);
        expect_real(ldexp(fx_rand(), (int)rnd(200) - 100));
        uint64_t bits = ((uint64_t)rnd(1u << 31) << 33) ^ ((uint64_t)rnd(1u << 31) << 2) ^ rnd(4);
        double r;
        memcpy(&r, &bits, sizeof(r));
        if (isfinite(r))
            expect_real(r);
        expect_real((double)(int)(fx_rand() * 2e6 - 1e6) / 1000.0);                     /* latencies */
        expect_real(((double)rnd(1u << 30) + 0.5) * pow(10.0, (double)rnd(30) - 20.0)); /* near ties */
        expect_real((double)rnd(2000000000) / 2.0 / (double)(1u << rnd(20)));           /* exact ties */
    }
    rowjson_buf_t b = {0};
    rowjson_put_real(&b, NAN);
    rowjson_put_real(&b, INFINITY);
    assert_string_equal(b.data, "nullnull");
    free(b.data);
}

static void test_strings_as_jansson(void **state)
{
    (void)state;
    char s[300];
    for (int c = 1; c < 256; c++) {
        snprintf(s, sizeof(s), "a%cb", c);
        if (c >= 0x80) /* jansson needs valid UTF-8: a 2-byte sequence */
            snprintf(s, sizeof(s), "a\xc3%cb", 0x80 | (c & 0x3f));
        json_t *j = json_string(s);
        assert_non_null(j);
        char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
        rowjson_buf_t b = {0};
        rowjson_put_string(&b, s);
        assert_string_equal(b.data, want);
        free(want);
        free(b.data);
        json_decref(j);
    }
}

/* A real booster and manifest with awkward class labels; row results compared with
 * json_dumps(model_handle_row_result(...)). */
static void check_results(model_task_t task, json_t *labels, double threshold)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/res-%d", tmp, (int)task);
    util_mkdir_p(dir, 0755);
    fx_train(task, NULL, 3, 2, 5, false, dir, "model.json");
    json_t *mj = fx_manifest_json("m", "1", task, 3, dir, "model.json");
    if (labels)
        json_object_set_new(mj, "class_labels", labels);
    json_object_set_new(mj, "threshold", json_real(threshold));
    fx_write_json(mj, dir, MODEL_MANIFEST_FILE);
    json_decref(mj);
    char err[1024] = "";
    model_handle_t *h = NULL;
    if (model_handle_open(dir, &h, err, sizeof(err)) < 0)
        fail_msg("open: %s", err);
    const model_manifest_t *hm = model_handle_manifest(h);
    size_t no = model_handle_outputs(h);
    fx_rng = 5;
    for (int i = 0; i < 20000; i++) {
        float out[8];
        for (size_t k = 0; k < no; k++) {
            out[k] = (float)fx_rand();
            unsigned r = rnd(40);
            if (r == 0)
                out[k] = NAN;
            else if (r == 1)
                out[k] = INFINITY;
            else if (r == 2)
                out[k] = (float)threshold;
            else if (r == 3)
                out[k] = k ? out[k - 1] : 0.0f; /* ties */
            else if (r == 4)
                out[k] = (float)(fx_rand() * 1e6 - 5e5);
        }
        json_t *res = model_handle_row_result(h, out);
        assert_non_null(res);
        char *want = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(9));
        rowjson_buf_t b = {0};
        rowjson_put_result(&b, hm, out);
        if (strcmp(b.data, want) != 0)
            fail_msg("got %s, want %s", b.data, want);
        free(want);
        free(b.data);
        json_decref(res);
    }
    model_handle_unref(h);
}

static void test_results_as_jansson(void **state)
{
    (void)state;
    check_results(MODEL_TASK_BINARY, json_pack("[s,s]", "no \"x\"\\", "s\xc3\xad\n\x01"), 0.37);
    check_results(MODEL_TASK_MULTICLASS, json_pack("[s,s,s]", "a/b", "\t", "c"), 0.5);
    check_results(MODEL_TASK_REGRESSION, NULL, 0.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_cases),
        cmocka_unit_test(test_clean_bodies_take_fast_path),
        cmocka_unit_test(test_generated_bodies_agree),
        cmocka_unit_test(test_mutated_bodies_agree),
        cmocka_unit_test(test_numbers_as_jansson),
        cmocka_unit_test(test_reals_as_jansson),
        cmocka_unit_test(test_strings_as_jansson),
        cmocka_unit_test(test_results_as_jansson),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
