/* SPDX-License-Identifier: Apache-2.0 */
/* UBJSON (Draft 12, as XGBoost writes it) -> jansson; see ubjson.h. Big-endian numbers;
 * containers may be typed and counted ("[$d#L<n>" then n float32s), object keys are
 * length-prefixed without a 'S' marker. */
#include "model/ubjson.h"

#include "model/trees.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *p, *start, *end;
    char *err;
    size_t errlen;
    size_t values, max_values;
} ubj_t;

static json_t *fail(ubj_t *u, const char *what)
{
    snprintf(u->err, u->errlen, "UBJSON malformed at byte %zu: %s", (size_t)(u->p - u->start), what);
    return NULL;
}

/* Over the limit of keys and values (MODEL_BOOSTER_MAX_VALUES; jansson takes about 40 bytes
 * for each, review50 #2): a size limit, not a malformed file. */
static json_t *too_large(ubj_t *u)
{
    snprintf(u->err, u->errlen, "%s", MODEL_BOOSTER_TOO_LARGE);
    return NULL;
}

static size_t left(const ubj_t *u)
{
    return (size_t)(u->end - u->p);
}

static uint64_t be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* An integer of the given type marker: 1 and *ret, or 0 (not an integer type, or cut short). */
static int int_of(ubj_t *u, unsigned char t, int64_t *ret)
{
    size_t n = t == 'i' || t == 'U' ? 1 : t == 'I' ? 2 : t == 'l' ? 4 : t == 'L' ? 8 : 0;
    if (n == 0 || left(u) < n)
        return 0;
    uint64_t v = be(u->p, n);
    u->p += n;
    *ret = t == 'i' ? (int8_t)v : t == 'U' ? (int64_t)(uint8_t)v : t == 'I' ? (int16_t)v
                                : t == 'l' ? (int32_t)v : (int64_t)v;
    return 1;
}

/* A length or count: an integer with its own marker, >= 0. */
static int length(ubj_t *u, int64_t *ret)
{
    if (left(u) < 1)
        return 0;
    unsigned char t = *u->p++;
    return int_of(u, t, ret) && *ret >= 0;
}

static json_t *string(ubj_t *u)
{
    int64_t n;
    if (!length(u, &n) || (uint64_t)n > left(u))
        return fail(u, "a string longer than the data");
    if (memchr(u->p, '\0', (size_t)n))
        return fail(u, "a string with a NUL byte"); /* a key would be cut there (review50 #1) */
    json_t *s = json_stringn((const char *)u->p, (size_t)n); /* NULL: not UTF-8 */
    u->p += n;
    return s ? s : fail(u, "a string that is not UTF-8");
}

static json_t *real(double d)
{
    return isfinite(d) ? json_real(d) : json_null();
}

static json_t *value(ubj_t *u, unsigned char t, int depth);

/* The bytes one element of a typed container takes at least (0: not allowed as a type). */
static size_t elem_min(unsigned char t)
{
    switch (t) {
    case 'i': case 'U': case 'C': return 1;
    case 'I': return 2;
    case 'l': case 'd': return 4;
    case 'L': case 'D': return 8;
    case 'S': case 'H': case '[': case '{': return 2;
    default: return 0; /* Z, T, F, N take no bytes: a count of them could be anything */
    }
}

/* After '[' or '{': the optional "$type" and "#count". count < 0: none (ends at ']' / '}'). */
static int header(ubj_t *u, unsigned char *type, int64_t *count)
{
    *type = 0;
    *count = -1;
    if (left(u) >= 2 && u->p[0] == '$') {
        *type = u->p[1];
        u->p += 2;
        if (elem_min(*type) == 0 || left(u) < 1 || u->p[0] != '#')
            return 0;
    }
    if (left(u) >= 1 && u->p[0] == '#') {
        u->p++;
        if (!length(u, count))
            return 0;
        /* every element takes bytes: a count the data can not hold is refused before anything
         * is allocated for it */
        size_t min = *type ? elem_min(*type) : 1;
        if ((uint64_t)*count > left(u) / min)
            return 0;
    }
    return 1;
}

/* The next element's type: the container's, or its own marker. 0: cut short. */
static unsigned char elem_type(ubj_t *u, unsigned char type)
{
    if (type)
        return type;
    return left(u) >= 1 ? *u->p++ : 0;
}

/* In a container without a count: skips no-ops; 1 at its end marker (consumed), 0 at an
 * element, -1 cut short. */
static int at_end(ubj_t *u, unsigned char end)
{
    while (left(u) >= 1 && u->p[0] == 'N')
        u->p++;
    if (left(u) < 1)
        return -1;
    if (u->p[0] != end)
        return 0;
    u->p++;
    return 1;
}

static json_t *array(ubj_t *u, int depth)
{
    unsigned char type;
    int64_t count;
    if (!header(u, &type, &count))
        return fail(u, "an array with a bad type or count");
    json_t *a = json_array();
    if (!a)
        return fail(u, "out of memory");
    for (int64_t i = 0; count < 0 || i < count; i++) {
        int e = count < 0 ? at_end(u, ']') : 0;
        if (e == 1)
            return a;
        unsigned char t = e == 0 ? elem_type(u, type) : 0;
        json_t *v = t ? value(u, t, depth + 1) : NULL;
        if (!v || json_array_append_new(a, v) != 0) {
            json_decref(a);
            return v || !t ? fail(u, "an array cut short") : NULL;
        }
    }
    return a;
}

static json_t *object(ubj_t *u, int depth)
{
    unsigned char type;
    int64_t count;
    if (!header(u, &type, &count))
        return fail(u, "an object with a bad type or count");
    json_t *o = json_object();
    if (!o)
        return fail(u, "out of memory");
    for (int64_t i = 0; count < 0 || i < count; i++) {
        int e = count < 0 ? at_end(u, '}') : 0;
        if (e == 1)
            return o;
        /* keys count too (review51 #4: 4M keys took 418 MB) */
        if (e == 0 && ++u->values > u->max_values) {
            json_decref(o);
            return too_large(u);
        }
        json_t *k = e == 0 ? string(u) : NULL;
        if (k && json_object_get(o, json_string_value(k))) {
            /* jansson would keep the last value and libxgboost reads the first: the check would
             * not see what is loaded (review50 #1) */
            json_decref(k);
            json_decref(o);
            return fail(u, "a key given twice in one object");
        }
        unsigned char t = k ? elem_type(u, type) : 0;
        json_t *v = t ? value(u, t, depth + 1) : NULL;
        if (!v || json_object_set_new(o, json_string_value(k), v) != 0) {
            json_decref(k);
            json_decref(o);
            return v || (k && !t) || e < 0 ? fail(u, "an object cut short") : NULL;
        }
        json_decref(k);
    }
    return o;
}

static json_t *value(ubj_t *u, unsigned char t, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(u, "containers nested too deep");
    u->values += t == '[' || t == '{' ? MODEL_BOOSTER_CONTAINER_WEIGHT : 1;
    if (u->values > u->max_values)
        return too_large(u);
    int64_t i;
    switch (t) {
    case 'Z': return json_null();
    case 'T': return json_true();
    case 'F': return json_false();
    case 'i': case 'U': case 'I': case 'l': case 'L':
        return int_of(u, t, &i) ? json_integer(i) : fail(u, "an integer cut short");
    case 'd': {
        if (left(u) < 4)
            return fail(u, "a float cut short");
        uint32_t b = (uint32_t)be(u->p, 4);
        float f;
        memcpy(&f, &b, 4);
        u->p += 4;
        return real(f);
    }
    case 'D': {
        if (left(u) < 8)
            return fail(u, "a double cut short");
        uint64_t b = be(u->p, 8);
        double d;
        memcpy(&d, &b, 8);
        u->p += 8;
        return real(d);
    }
    case 'C':
        if (left(u) < 1)
            return fail(u, "a char cut short");
    {
        json_t *c = json_stringn((const char *)u->p++, 1);
        return c ? c : fail(u, "a char that is not ASCII");
    }
    case 'S': case 'H': return string(u);
    case '[': return array(u, depth);
    case '{': return object(u, depth);
    default: return fail(u, "an unknown type marker");
    }
}

json_t *model_ubjson_decode(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    return model_ubjson_decode_limit(buf, len, MODEL_BOOSTER_MAX_VALUES, err, errlen);
}

json_t *model_ubjson_decode_limit(const unsigned char *buf, size_t len, size_t max_values, char *err,
                                  size_t errlen)
{
    ubj_t u = {.p = buf, .start = buf, .end = buf + len, .err = err, .errlen = errlen, .max_values = max_values};
    if (len < 1) {
        snprintf(err, errlen, "UBJSON malformed: empty");
        return NULL;
    }
    unsigned char t = *u.p++;
    json_t *doc = value(&u, t, 0);
    if (doc && left(&u) > 0) {
        json_decref(doc);
        return fail(&u, "bytes after the document");
    }
    return doc;
}
