/* SPDX-License-Identifier: Apache-2.0 */
/* Fast path of the predict body and answer: a strict scanner for the common single-row
 * body and an encoder of row results, both byte- and bit-compatible with the jansson path
 * they shortcut (tests/unit/model/test_rowjson.c and tests/fuzz/fuzz_rowjson.c compare them
 * on generated and mutated bodies). Anything unusual is declined, never guessed. */

/* DESIGN
 *
 * Equivalence: the scanner accepts a strict subset of what json_loadb accepts (whitespace
 * ' ', '\t', '\n', '\r'; jansson's number grammar; strings without escapes made of bytes
 * 0x20..0x7e), and converts numbers as jansson does: a token without '.', 'e' or 'E' is
 * an integer (strtoll, ERANGE refused by jansson, so declined here) whose value the
 * schema uses as (double); any other token goes through strtod (overflow to +-HUGE_VAL
 * refused by jansson, declined here). Most tokens skip both calls: an integer below 2^53
 * is exact, and a mantissa below 2^53 with a decimal exponent within +-22 is one correctly
 * rounded IEEE multiplication or division of two exact doubles (Clinger), which is what
 * strtod returns (needs FLT_EVAL_METHOD 0). Duplicate keys are refused by jansson
 * (JSON_REJECT_DUPLICATES), so declined here, in phase 1, before the model lookup: the
 * jansson path answers 400 for them before it looks for the model. Hence phase 1 success
 * implies jansson parses the body into the same object, and phase 2 applies
 * model_schema_row's decode and range rules to the same doubles, then the same (float)
 * cast. Every decline leaves the answer to the jansson path.
 *
 * Encoding: reals are printed as jansson's jsonp_dtostr prints them ("%.9g", ".0" added
 * when neither '.' nor 'e' appears, '+' and leading zeros dropped from the exponent).
 * For 1e-14 <= |x| < 1e9 the 9 digits come from exact 128-bit integer arithmetic on the
 * binary value, rounded half to even like glibc's printf, without printf; other values
 * go through snprintf. Strings are escaped as jansson's dump_string does without flags. */
#include "model/rowjson.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMBER_TOKEN 64 /* longer numbers are legal JSON but not ours to shortcut */
#define EXACT_MANTISSA (1ull << 53)

/* Powers of ten that a double holds exactly (Clinger's fast path). */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

typedef struct scanner {
    const char *p, *end;
} scanner_t;

static inline void skip_ws(scanner_t *s)
{
    const char *p = s->p;
    while (p < s->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    s->p = p;
}

/* Expects c (after whitespace) and consumes it. */
static inline bool eat(scanner_t *s, char c)
{
    if (s->p < s->end && *s->p == c) { /* the compact form has no whitespace */
        s->p++;
        return true;
    }
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* A string without escapes of bytes 0x20..0x7e; on success *ret and *ret_len span its content. */
static inline bool scan_string(scanner_t *s, const char **ret, size_t *ret_len)
{
    if (!eat(s, '"'))
        return false;
    const char *start = s->p, *p = start, *end = s->end;
    for (;; p++) {
        if (p >= end)
            return false;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
    }
    *ret = start;
    *ret_len = (size_t)(p - start);
    s->p = p + 1;
    return true;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Adds digit c to the mantissa *acc unless it no longer fits the exact range. */
static void accumulate(unsigned long long *acc, bool *exact, char c)
{
    if (*exact && *acc <= (EXACT_MANTISSA - 9) / 10)
        *acc = *acc * 10 + (unsigned long long)(c - '0');
    else
        *exact = false;
}

/* A number, true or false. */
static bool scan_value(scanner_t *s, rowjson_member_t *m)
{
    skip_ws(s);
    const char *start = s->p, *p = s->p, *end = s->end;
    if (p < end && *p == 't') {
        if (end - p < 4 || memcmp(p, "true", 4) != 0)
            return false;
        s->p += 4;
        m->kind = ROWJSON_TRUE;
        m->value = 1.0;
        return true;
    }
    if (p < end && *p == 'f') {
        if (end - p < 5 || memcmp(p, "false", 5) != 0)
            return false;
        s->p += 5;
        m->kind = ROWJSON_FALSE;
        m->value = 0.0;
        return true;
    }
    bool real = false, neg = false, exact = true;
    unsigned long long mant = 0; /* all digits of integer and fraction part, while exact */
    int frac = 0, exp = 0;       /* digits after '.', explicit exponent */
    if (p < end && *p == '-') {
        p++;
        neg = true;
    }
    if (p >= end || !is_digit(*p))
        return false;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return false; /* jansson: leading zero */
    } else {
        while (p < end && is_digit(*p))
            accumulate(&mant, &exact, *p++);
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return false;
        while (p < end && is_digit(*p)) {
            accumulate(&mant, &exact, *p++);
            frac++;
        }
        real = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || !is_digit(*p))
            return false;
        while (p < end && is_digit(*p)) {
            if (exp < 10000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp = -exp;
        real = true;
    }
    size_t n = (size_t)(p - start);
    if (n >= MAX_NUMBER_TOKEN)
        return false;
    /* Exact cases first, equal to strtoll/strtod by construction: an integer below 2^53,
     * and (Clinger) a mantissa below 2^53 times or over an exact power of ten, which IEEE
     * double arithmetic rounds correctly just as strtod does. */
    int e10 = exp - frac;
    if (exact && !real) {
        m->kind = ROWJSON_INT;
        m->value = neg ? (double)-(long long)mant : (double)(long long)mant;
        s->p = p;
        return true;
    }
#if FLT_EVAL_METHOD == 0
    if (exact && e10 >= -22 && e10 <= 22) {
        double x = e10 < 0 ? (double)mant / exact_pow10[-e10] : (double)mant * exact_pow10[e10];
        m->kind = ROWJSON_REAL;
        m->value = neg ? -x : x;
        s->p = p;
        return true;
    }
#endif
    char tok[MAX_NUMBER_TOKEN];
    memcpy(tok, start, n);
    tok[n] = '\0';
    char *tend;
    errno = 0;
    if (real) {
        double x = strtod(tok, &tend);
        if ((x == HUGE_VAL || x == -HUGE_VAL) && errno == ERANGE)
            return false; /* jansson: real number overflow */
        m->kind = ROWJSON_REAL;
        m->value = x;
    } else {
        long long v = strtoll(tok, &tend, 10);
        if (errno == ERANGE)
            return false; /* jansson: too big integer */
        m->kind = ROWJSON_INT;
        m->value = (double)v;
    }
    if (tend != tok + n)
        return false;
    s->p = p;
    return true;
}

static bool same_key(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static bool scan_features(scanner_t *s, rowjson_body_t *b)
{
    if (!eat(s, '{'))
        return false;
    b->n = 0;
    if (eat(s, '}'))
        return true;
    do {
        if (b->n >= ROWJSON_MAX_MEMBERS)
            return false;
        rowjson_member_t *m = &b->members[b->n];
        const char *key;
        size_t key_len;
        if (!scan_string(s, &key, &key_len) || !eat(s, ':') || !scan_value(s, m))
            return false;
        for (size_t i = 0; i < b->n; i++)
            if (same_key(b->members[i].key, b->members[i].key_len, key, key_len))
                return false; /* duplicate: jansson refuses the body */
        m->key = key;
        m->key_len = (unsigned)key_len;
        b->n++;
    } while (eat(s, ','));
    return eat(s, '}');
}

bool rowjson_scan(const char *body, size_t len, rowjson_body_t *ret)
{
    scanner_t s = {.p = body, .end = body + len};
    bool features = false;
    ret->patient_id = ret->version = NULL;
    ret->patient_id_len = ret->version_len = 0;
    ret->n = 0;
    if (!body || !eat(&s, '{'))
        return false;
    do {
        const char *key;
        size_t key_len;
        if (!scan_string(&s, &key, &key_len) || !eat(&s, ':'))
            return false;
        if (same_key(key, key_len, "features", 8)) {
            if (features || !scan_features(&s, ret))
                return false;
            features = true;
        } else if (same_key(key, key_len, "patient_id", 10)) {
            if (ret->patient_id || !scan_string(&s, &ret->patient_id, &ret->patient_id_len))
                return false;
        } else if (same_key(key, key_len, "version", 7)) {
            if (ret->version || !scan_string(&s, &ret->version, &ret->version_len))
                return false;
        } else {
            return false;
        }
    } while (eat(&s, ','));
    if (!eat(&s, '}'))
        return false;
    skip_ws(&s);
    return features && s.p == s.end;
}

/* Index of the feature named key[0..len), trying `hint` first (bodies usually list the
 * features in manifest order); -1 if none. */
static int feature_index(const model_manifest_t *m, const char *key, size_t len, size_t hint)
{
    if (hint < m->n_features) {
        const char *name = m->features[hint].name;
        if (strncmp(name, key, len) == 0 && name[len] == '\0')
            return (int)hint;
    }
    for (size_t i = 0; i < m->n_features; i++) {
        const char *name = m->features[i].name;
        if (strncmp(name, key, len) == 0 && name[len] == '\0')
            return (int)i;
    }
    return -1;
}

/* model_schema_row's decode() on a scanned value. */
static bool decode(const model_feature_t *f, const rowjson_member_t *v, double *ret)
{
    bool number = v->kind == ROWJSON_INT || v->kind == ROWJSON_REAL;
    double x = v->value;
    switch (f->type) {
    case FEATURE_NUMBER:
        if (!number)
            return false;
        *ret = x;
        return true;
    case FEATURE_INTEGER:
        if (v->kind == ROWJSON_INT || (v->kind == ROWJSON_REAL && isfinite(x) && x == floor(x))) {
            *ret = x;
            return true;
        }
        return false;
    case FEATURE_BOOLEAN:
        if (!number || x == 0.0 || x == 1.0) {
            *ret = x; /* true/false carry 1.0/0.0 */
            return true;
        }
        return false;
    }
    return false;
}

bool rowjson_row(const model_manifest_t *m, const rowjson_body_t *b, float *ret_row)
{
    for (size_t i = 0; i < m->n_features; i++)
        ret_row[i] = NAN;
    for (size_t j = 0; j < b->n; j++) {
        const rowjson_member_t *v = &b->members[j];
        int idx = feature_index(m, v->key, v->key_len, j);
        if (idx < 0)
            return false; /* unknown */
        const model_feature_t *f = &m->features[idx];
        double x;
        if (!decode(f, v, &x))
            return false;
        if (!isfinite(x) || fabs(x) > FLT_MAX || (f->has_min && x < f->min) || (f->has_max && x > f->max))
            return false;
        ret_row[idx] = (float)x;
    }
    /* Keys are distinct (phase 1), so each feature was written at most once; a NAN left is
     * a feature the body does not name (decoded values are finite). */
    for (size_t i = 0; i < m->n_features; i++)
        if (m->features[i].required && isnan(ret_row[i]))
            return false;
    return true;
}

/* ---- encoding -------------------------------------------------------------------- */

static bool reserve(rowjson_buf_t *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void rowjson_put(rowjson_buf_t *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void rowjson_put_string(rowjson_buf_t *b, const char *s)
{
    rowjson_put(b, "\"", 1);
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != '\0' && c != '"' && c != '\\' && c >= 0x20)
            continue;
        rowjson_put(b, run, (size_t)(p - run));
        if (c == '\0')
            break;
        char seq[8];
        const char *text = seq;
        switch (c) {
        case '\\': text = "\\\\"; break;
        case '"': text = "\\\""; break;
        case '\b': text = "\\b"; break;
        case '\f': text = "\\f"; break;
        case '\n': text = "\\n"; break;
        case '\r': text = "\\r"; break;
        case '\t': text = "\\t"; break;
        default: snprintf(seq, sizeof(seq), "\\u%04X", (unsigned)c); break;
        }
        rowjson_put(b, text, strlen(text));
        run = p + 1;
    }
    rowjson_put(b, "\"", 1);
}

__extension__ typedef unsigned __int128 u128;

static const uint64_t pow10_u64[] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};

/* jansson's text for x (normal, 1e-14 <= |x| < 1e9) without printf: the 9 significant
 * digits are the exact binary value times a power of ten, rounded half to even as glibc's
 * printf rounds, then laid out by the %g rules and jansson's edits. Returns the length, or
 * -1 when x is outside that range (the caller prints it with snprintf). */
static int fast_real(double x, char *out)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    int biased = (int)((bits >> 52) & 0x7ff);
    if (biased == 0 || biased == 0x7ff)
        return -1; /* zero, subnormal, inf, nan */
    uint64_t mant = (bits & ((1ull << 52) - 1)) | (1ull << 52);
    int sh = 1075 - biased; /* |x| = mant / 2^sh */
    if (sh < 1 || sh > 120)
        return -1;
    int e = (int)floor((double)(biased - 1023) * 0.30102999566398120); /* floor(log10|x|), +-1 */
    uint64_t t = 0;
    u128 n = 0;
    for (int tries = 0;; tries++) {
        int s = 8 - e; /* t = floor(|x| * 10^s) must have 9 digits */
        if (tries == 3 || s < 0 || s > 22)
            return -1;
        u128 p = s <= 19 ? (u128)pow10_u64[s] : (u128)pow10_u64[19] * pow10_u64[s - 19];
        n = (u128)mant * p;
        t = (uint64_t)(n >> sh);
        if (t < 100000000ull)
            e--;
        else if (t >= 1000000000ull)
            e++;
        else
            break;
    }
    u128 rem = n - ((u128)t << sh), half = (u128)1 << (sh - 1);
    if (rem > half || (rem == half && (t & 1)))
        t++;
    if (t == 1000000000ull) {
        t = 100000000ull;
        e++;
        if (e > 8)
            return -1; /* 1e9: %g switches to the exponent form */
    }
    char d[9];
    for (int i = 8; i >= 0; i--) {
        d[i] = (char)('0' + t % 10);
        t /= 10;
    }
    int nd = 9; /* significant digits left after dropping trailing zeros (%g) */
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    char *o = out;
    if (x < 0)
        *o++ = '-';
    if (e < -4) { /* %e form; jansson drops the exponent's leading zeros */
        *o++ = d[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, d + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        *o++ = 'e';
        *o++ = '-';
        if (-e >= 10) /* e is -14..-5 here */
            *o++ = (char)('0' + -e / 10);
        *o++ = (char)('0' + -e % 10);
    } else if (e < 0) { /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > e; i--)
            *o++ = '0';
        memcpy(o, d, (size_t)nd);
        o += nd;
    } else { /* ddd.ddd; jansson adds ".0" to an integral value */
        memcpy(o, d, (size_t)e + 1);
        o += e + 1;
        *o++ = '.';
        if (nd > e + 1) {
            memcpy(o, d + e + 1, (size_t)(nd - e - 1));
            o += nd - e - 1;
        } else {
            *o++ = '0';
        }
    }
    *o = '\0';
    return (int)(o - out);
}

void rowjson_put_real(rowjson_buf_t *b, double x)
{
    if (!isfinite(x)) {
        rowjson_put(b, "null", 4);
        return;
    }
    char buf[100];
    int n = fast_real(x, buf);
    if (n > 0) {
        rowjson_put(b, buf, (size_t)n);
        return;
    }
    n = snprintf(buf, sizeof(buf), "%.9g", x);
    if (n < 0 || (size_t)n >= sizeof(buf) - 3) {
        b->failed = true;
        return;
    }
    size_t len = (size_t)n;
    if (!strchr(buf, '.') && !strchr(buf, 'e')) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    char *start = strchr(buf, 'e');
    if (start) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf) + 1);
            len -= (size_t)(end - start);
        }
    }
    rowjson_put(b, buf, len);
}

void rowjson_put_result(rowjson_buf_t *b, const model_manifest_t *m, const float *out_row)
{
    if (m->task == MODEL_TASK_REGRESSION) {
        rowjson_put(b, "{\"value\":", 9);
        rowjson_put_real(b, out_row[0]);
        rowjson_put(b, "}", 1);
        return;
    }
    size_t best = 0;
    if (m->task == MODEL_TASK_BINARY) {
        double p = out_row[0];
        best = p >= m->threshold ? 1 : 0;
    } else {
        for (size_t i = 0; i < m->n_classes; i++)
            if (out_row[i] > out_row[best]) /* first maximum wins ties, as in runtime.c */
                best = i;
    }
    rowjson_put(b, "{\"label\":", 9);
    rowjson_put_string(b, m->class_labels[best]);
    rowjson_put(b, ",\"probabilities\":{", 18);
    if (m->task == MODEL_TASK_BINARY) {
        double p = out_row[0];
        rowjson_put_string(b, m->class_labels[0]);
        rowjson_put(b, ":", 1);
        rowjson_put_real(b, 1.0 - p);
        rowjson_put(b, ",", 1);
        rowjson_put_string(b, m->class_labels[1]);
        rowjson_put(b, ":", 1);
        rowjson_put_real(b, p);
    } else {
        for (size_t i = 0; i < m->n_classes; i++) {
            if (i)
                rowjson_put(b, ",", 1);
            rowjson_put_string(b, m->class_labels[i]);
            rowjson_put(b, ":", 1);
            rowjson_put_real(b, out_row[i]);
        }
    }
    rowjson_put(b, "}}", 2);
}
