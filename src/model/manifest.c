/* SPDX-License-Identifier: Apache-2.0 */
/* Model manifest: parsing with field-by-field validation, serialisation (the exact
 * inverse, unknown top-level keys preserved) and crash-safe saving of manifest.json.
 * The JSON layout is documented in docs/model-format.md. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/manifest.h"

#define MANIFEST_MAX_BYTES (16u * 1024 * 1024)
#define MAX_FEATURES 10000
#define MAX_FEATURE_NAME 128
#define MAX_BINS 10000
#define MAX_CLASSES 4096
#define MAX_LABEL_LEN 128
#define MAX_TEXT_LEN 65536

static const char *const known_keys[] = {
    "format_version", "name",    "version",  "task",         "description", "synthetic", "created_at",
    "label",          "booster", "features", "class_labels", "threshold",   "metrics",
};

const char *model_task_name(model_task_t t)
{
    switch (t) {
    case MODEL_TASK_BINARY: return "binary";
    case MODEL_TASK_MULTICLASS: return "multiclass";
    case MODEL_TASK_REGRESSION: return "regression";
    }
    return "unknown";
}

int model_task_parse(const char *s, model_task_t *ret)
{
    if (!s)
        return -EINVAL;
    for (int t = MODEL_TASK_BINARY; t <= MODEL_TASK_REGRESSION; t++)
        if (strcmp(s, model_task_name((model_task_t)t)) == 0) {
            *ret = (model_task_t)t;
            return 0;
        }
    return -EINVAL;
}

const char *feature_type_name(feature_type_t t)
{
    switch (t) {
    case FEATURE_NUMBER: return "number";
    case FEATURE_INTEGER: return "integer";
    case FEATURE_BOOLEAN: return "boolean";
    }
    return "unknown";
}

int feature_type_parse(const char *s, feature_type_t *ret)
{
    if (!s)
        return -EINVAL;
    for (int t = FEATURE_NUMBER; t <= FEATURE_BOOLEAN; t++)
        if (strcmp(s, feature_type_name((feature_type_t)t)) == 0) {
            *ret = (feature_type_t)t;
            return 0;
        }
    return -EINVAL;
}

int model_manifest_feature_index(const model_manifest_t *m, const char *name)
{
    if (!m || !name)
        return -1;
    for (size_t i = 0; i < m->n_features; i++)
        if (strcmp(m->features[i].name, name) == 0)
            return (int)i;
    return -1;
}

void model_manifest_free(model_manifest_t *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->version);
    free(m->description);
    free(m->created_at);
    free(m->label);
    free(m->backend);
    free(m->booster_file);
    free(m->booster_format);
    for (size_t i = 0; i < m->n_features; i++) {
        model_feature_t *f = &m->features[i];
        free(f->name);
        free(f->unit);
        free(f->description);
        free(f->bin_edges);
        free(f->bin_probs);
    }
    free(m->features);
    for (size_t i = 0; i < m->n_classes; i++)
        free(m->class_labels[i]);
    free(m->class_labels);
    json_decref(m->training_metrics);
    json_decref(m->holdout_metrics);
    json_decref(m->extra);
    free(m);
}

/* ---- parsing helpers: each fills err with "<path>: <problem>" and returns -EINVAL ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Copies an optional string (absent or null -> NULL). */
static int opt_string(const json_t *obj, const char *key, const char *path, size_t maxlen, char **ret,
                      char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    *ret = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, "%s%s: expected a string", path, key);
    if (json_string_length(v) > maxlen)
        return fail(err, errlen, "%s%s: longer than %zu bytes", path, key, maxlen);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, errlen, "%s%s: contains a NUL character", path, key);
    *ret = strdup(json_string_value(v));
    return *ret ? 0 : -ENOMEM;
}

static int req_string(const json_t *obj, const char *key, const char *path, size_t maxlen, char **ret,
                      char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return fail(err, errlen, "%s%s: required", path, key);
    int r = opt_string(obj, key, path, maxlen, ret, err, errlen);
    if (r == 0 && (*ret)[0] == '\0') {
        free(*ret);
        *ret = NULL;
        return fail(err, errlen, "%s%s: must not be empty", path, key);
    }
    return r;
}

/* Optional finite number; absent or null leaves *has false. */
static int opt_number(const json_t *obj, const char *key, const char *path, bool *has, double *ret, char *err,
                      size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    *has = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, errlen, "%s%s: expected a number", path, key);
    double x = json_number_value(v);
    if (!isfinite(x))
        return fail(err, errlen, "%s%s: expected a finite number", path, key);
    *has = true;
    *ret = x;
    return 0;
}

static int opt_bool(const json_t *obj, const char *key, const char *path, bool dflt, bool *ret, char *err,
                    size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(err, errlen, "%s%s: expected true or false", path, key);
    *ret = json_is_true(v);
    return 0;
}

/* Names of features: printable, no control characters, 1..128 bytes. */
static bool valid_feature_name(const char *s, size_t len)
{
    if (len == 0 || len > MAX_FEATURE_NAME || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool valid_sha256_hex(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

static int parse_number_array(const json_t *arr, const char *path, size_t max, double **ret, size_t *ret_n,
                              char *err, size_t errlen)
{
    *ret = NULL;
    *ret_n = 0;
    if (!json_is_array(arr))
        return fail(err, errlen, "%s: expected an array of numbers", path);
    size_t n = json_array_size(arr);
    if (n > max)
        return fail(err, errlen, "%s: more than %zu entries", path, max);
    if (n == 0)
        return 0;
    double *a = calloc(n, sizeof(double));
    if (!a)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            free(a);
            return fail(err, errlen, "%s[%zu]: expected a finite number", path, i);
        }
        a[i] = json_number_value(v);
    }
    *ret = a;
    *ret_n = n;
    return 0;
}

static int parse_baseline(const json_t *b, model_feature_t *f, const char *path, char *err, size_t errlen)
{
    char sub[96];
    int r;
    if (!json_is_object(b))
        return fail(err, errlen, "%sbaseline: expected an object", path);
    double *edges = NULL, *probs = NULL;
    size_t ne = 0, np = 0;
    const json_t *je = json_object_get(b, "edges"), *jp = json_object_get(b, "probs");
    if ((je && !json_is_null(je)) || (jp && !json_is_null(jp))) {
        snprintf(sub, sizeof(sub), "%sbaseline.edges", path);
        r = parse_number_array(je, sub, MAX_BINS + 1, &edges, &ne, err, errlen);
        if (r < 0)
            goto fail;
        snprintf(sub, sizeof(sub), "%sbaseline.probs", path);
        r = parse_number_array(jp, sub, MAX_BINS, &probs, &np, err, errlen);
        if (r < 0)
            goto fail;
    }
    if (ne == 1) {
        r = fail(err, errlen, "%sbaseline.edges: need at least 2 edges (or none)", path);
        goto fail;
    }
    if (ne != 0 && np != ne - 1) {
        r = fail(err, errlen, "%sbaseline.probs: expected %zu entries (one per bin between edges), got %zu",
                 path, ne - 1, np);
        goto fail;
    }
    if (ne == 0 && np != 0) {
        r = fail(err, errlen, "%sbaseline.edges: required with probs", path);
        goto fail;
    }
    for (size_t i = 1; i < ne; i++)
        if (!(edges[i] > edges[i - 1])) {
            r = fail(err, errlen, "%sbaseline.edges[%zu]: edges must be strictly ascending", path, i);
            goto fail;
        }
    double sum = 0;
    for (size_t i = 0; i < np; i++) {
        if (probs[i] < 0 || probs[i] > 1) {
            r = fail(err, errlen, "%sbaseline.probs[%zu]: must be between 0 and 1", path, i);
            goto fail;
        }
        sum += probs[i];
    }
    if (np > 0 && fabs(sum - 1.0) > 1e-6) {
        r = fail(err, errlen, "%sbaseline.probs: must sum to 1 (sum is %.9g)", path, sum);
        goto fail;
    }
    bool has;
    double x = 0;
    r = opt_number(b, "mean", path, &has, &x, err, errlen);
    if (r < 0) {
        r = fail(err, errlen, "%sbaseline.mean: expected a finite number", path);
        goto fail;
    }
    f->mean = has ? x : 0;
    r = opt_number(b, "std", path, &has, &x, err, errlen);
    if (r < 0 || (has && x < 0)) {
        r = fail(err, errlen, "%sbaseline.std: expected a non-negative number", path);
        goto fail;
    }
    f->std = has ? x : 0;
    f->n_bins = ne ? ne - 1 : 0;
    f->bin_edges = edges;
    f->bin_probs = probs;
    return 0;
fail:
    free(edges);
    free(probs);
    return r;
}

static int parse_feature(const json_t *jf, size_t idx, model_feature_t *f, char *err, size_t errlen)
{
    char path[48];
    int r;
    snprintf(path, sizeof(path), "features[%zu].", idx);
    if (!json_is_object(jf))
        return fail(err, errlen, "features[%zu]: expected an object", idx);
    const json_t *jn = json_object_get(jf, "name");
    if (!jn || json_is_null(jn))
        return fail(err, errlen, "%sname: required", path);
    if (!json_is_string(jn) || !valid_feature_name(json_string_value(jn), json_string_length(jn)))
        return fail(err, errlen, "%sname: expected a string of 1..%d printable characters", path,
                    MAX_FEATURE_NAME);
    f->name = strdup(json_string_value(jn));
    if (!f->name)
        return -ENOMEM;
    const json_t *jt = json_object_get(jf, "type");
    if (!jt || json_is_null(jt))
        return fail(err, errlen, "%stype: required", path);
    if (feature_type_parse(json_string_value(jt), &f->type) < 0)
        return fail(err, errlen, "%stype: expected \"number\", \"integer\" or \"boolean\"", path);
    if ((r = opt_string(jf, "unit", path, MAX_LABEL_LEN, &f->unit, err, errlen)) < 0)
        return r;
    if ((r = opt_string(jf, "description", path, MAX_TEXT_LEN, &f->description, err, errlen)) < 0)
        return r;
    if ((r = opt_bool(jf, "required", path, true, &f->required, err, errlen)) < 0)
        return r;
    if ((r = opt_number(jf, "min", path, &f->has_min, &f->min, err, errlen)) < 0)
        return r;
    if ((r = opt_number(jf, "max", path, &f->has_max, &f->max, err, errlen)) < 0)
        return r;
    if (f->has_min && f->has_max && f->min > f->max)
        return fail(err, errlen, "%smax: must be >= min", path);
    const json_t *jb = json_object_get(jf, "baseline");
    if (jb && !json_is_null(jb) && (r = parse_baseline(jb, f, path, err, errlen)) < 0)
        return r;
    return 0;
}

static int parse_booster(const json_t *b, model_manifest_t *m, char *err, size_t errlen)
{
    int r;
    if (!b || json_is_null(b))
        return fail(err, errlen, "booster: required");
    if (!json_is_object(b))
        return fail(err, errlen, "booster: expected an object");
    if ((r = req_string(b, "backend", "booster.", 32, &m->backend, err, errlen)) < 0)
        return r;
    if (strcmp(m->backend, "xgboost") != 0)
        return fail(err, errlen, "booster.backend: unsupported backend (expected \"xgboost\")");
    if ((r = req_string(b, "file", "booster.", 128, &m->booster_file, err, errlen)) < 0)
        return r;
    if (!util_is_safe_name(m->booster_file))
        return fail(err, errlen,
                    "booster.file: must be a plain file name of [A-Za-z0-9._-], not starting with '.'");
    if ((r = req_string(b, "format", "booster.", 8, &m->booster_format, err, errlen)) < 0)
        return r;
    if (strcmp(m->booster_format, "json") != 0 && strcmp(m->booster_format, "ubj") != 0)
        return fail(err, errlen, "booster.format: expected \"json\" or \"ubj\"");
    if (!has_suffix(m->booster_file, strcmp(m->booster_format, "json") == 0 ? ".json" : ".ubj"))
        return fail(err, errlen, "booster.file: must end in .%s to match booster.format", m->booster_format);
    const json_t *js = json_object_get(b, "sha256");
    if (!js || json_is_null(js))
        return fail(err, errlen, "booster.sha256: required");
    if (!json_is_string(js) || !valid_sha256_hex(json_string_value(js)))
        return fail(err, errlen, "booster.sha256: expected 64 lowercase hex characters");
    memcpy(m->booster_sha256, json_string_value(js), SHA256_HEX_LEN);
    return 0;
}

static int parse_class_labels(const json_t *obj, model_manifest_t *m, char *err, size_t errlen)
{
    const json_t *jl = json_object_get(obj, "class_labels");
    size_t n = 0;
    if (jl && !json_is_null(jl)) {
        if (!json_is_array(jl))
            return fail(err, errlen, "class_labels: expected an array of strings");
        n = json_array_size(jl);
    }
    switch (m->task) {
    case MODEL_TASK_BINARY:
        if (n != 2)
            return fail(err, errlen, "class_labels: a binary model needs exactly 2 labels, got %zu", n);
        break;
    case MODEL_TASK_MULTICLASS:
        if (n < 3)
            return fail(err, errlen, "class_labels: a multiclass model needs at least 3 labels, got %zu", n);
        if (n > MAX_CLASSES)
            return fail(err, errlen, "class_labels: more than %d labels", MAX_CLASSES);
        break;
    case MODEL_TASK_REGRESSION:
        if (n != 0)
            return fail(err, errlen, "class_labels: a regression model has no class labels");
        break;
    }
    if (n == 0)
        return 0;
    m->class_labels = calloc(n, sizeof(char *));
    if (!m->class_labels)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(jl, i);
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_LABEL_LEN ||
            strlen(json_string_value(v)) != json_string_length(v))
            return fail(err, errlen, "class_labels[%zu]: expected a string of 1..%d characters", i,
                        MAX_LABEL_LEN);
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->class_labels[j], json_string_value(v)) == 0)
                return fail(err, errlen, "class_labels[%zu]: duplicate label", i);
        m->class_labels[i] = strdup(json_string_value(v));
        if (!m->class_labels[i])
            return -ENOMEM;
        m->n_classes = i + 1;
    }
    return 0;
}

static int parse_metrics(const json_t *obj, model_manifest_t *m, char *err, size_t errlen)
{
    const json_t *jm = json_object_get(obj, "metrics");
    const json_t *tr = NULL, *ho = NULL;
    if (jm && !json_is_null(jm)) {
        if (!json_is_object(jm))
            return fail(err, errlen, "metrics: expected an object");
        tr = json_object_get(jm, "training");
        ho = json_object_get(jm, "holdout");
        if (tr && !json_is_null(tr) && !json_is_object(tr))
            return fail(err, errlen, "metrics.training: expected an object");
        if (ho && !json_is_null(ho) && !json_is_object(ho))
            return fail(err, errlen, "metrics.holdout: expected an object");
    }
    m->training_metrics = json_is_object(tr) ? json_deep_copy(tr) : json_object();
    m->holdout_metrics = json_is_object(ho) ? json_deep_copy(ho) : json_object();
    return m->training_metrics && m->holdout_metrics ? 0 : -ENOMEM;
}

bool model_name_reserved(const char *name)
{
    return name && strcmp(name, "list") == 0;
}

int model_manifest_from_json(const json_t *obj, model_manifest_t **ret, char *err, size_t errlen)
{
    int r;
    if (!json_is_object(obj))
        return fail(err, errlen, "manifest: expected a JSON object");
    model_manifest_t *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;

    const json_t *jv = json_object_get(obj, "format_version");
    if (!jv) {
        r = fail(err, errlen, "format_version: required");
        goto fail;
    }
    if (!json_is_integer(jv) || json_integer_value(jv) != MODEL_FORMAT_VERSION) {
        r = fail(err, errlen, "format_version: expected %d", MODEL_FORMAT_VERSION);
        goto fail;
    }
    m->format_version = MODEL_FORMAT_VERSION;

    if ((r = req_string(obj, "name", "", 128, &m->name, err, errlen)) < 0)
        goto fail;
    if (!util_is_safe_name(m->name)) {
        r = fail(err, errlen, "name: expected 1..128 characters of [A-Za-z0-9._-], not starting with '.'");
        goto fail;
    }
    if (model_name_reserved(m->name)) {
        r = fail(err, errlen, "name: %s", MODEL_NAME_RESERVED_MSG);
        goto fail;
    }
    if ((r = req_string(obj, "version", "", 128, &m->version, err, errlen)) < 0)
        goto fail;
    if (!util_is_safe_name(m->version)) {
        r = fail(err, errlen, "version: expected 1..128 characters of [A-Za-z0-9._-], not starting with '.'");
        goto fail;
    }
    const json_t *jt = json_object_get(obj, "task");
    if (!jt || json_is_null(jt)) {
        r = fail(err, errlen, "task: required");
        goto fail;
    }
    if (model_task_parse(json_string_value(jt), &m->task) < 0) {
        r = fail(err, errlen, "task: expected \"binary\", \"multiclass\" or \"regression\"");
        goto fail;
    }
    if ((r = opt_string(obj, "description", "", MAX_TEXT_LEN, &m->description, err, errlen)) < 0)
        goto fail;
    if ((r = opt_bool(obj, "synthetic", "", false, &m->synthetic, err, errlen)) < 0)
        goto fail;
    if ((r = opt_string(obj, "created_at", "", 64, &m->created_at, err, errlen)) < 0)
        goto fail;
    if ((r = opt_string(obj, "label", "", MAX_TEXT_LEN, &m->label, err, errlen)) < 0)
        goto fail;
    if ((r = parse_booster(json_object_get(obj, "booster"), m, err, errlen)) < 0)
        goto fail;

    const json_t *jf = json_object_get(obj, "features");
    if (!jf || json_is_null(jf)) {
        r = fail(err, errlen, "features: required");
        goto fail;
    }
    if (!json_is_array(jf) || json_array_size(jf) == 0) {
        r = fail(err, errlen, "features: expected a non-empty array");
        goto fail;
    }
    if (json_array_size(jf) > MAX_FEATURES) {
        r = fail(err, errlen, "features: more than %d features", MAX_FEATURES);
        goto fail;
    }
    m->features = calloc(json_array_size(jf), sizeof(model_feature_t));
    if (!m->features) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(jf); i++) {
        m->n_features = i + 1; /* so free() sees the partly filled entry */
        if ((r = parse_feature(json_array_get(jf, i), i, &m->features[i], err, errlen)) < 0)
            goto fail;
    }
    /* Unique names: a hash set of the names seen so far would be O(n); n is capped, and
     * a JSON object (jansson's hash table) does the job without more code. */
    json_t *seen = json_object();
    if (!seen) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < m->n_features; i++) {
        if (json_object_get(seen, m->features[i].name)) {
            json_decref(seen);
            r = fail(err, errlen, "features[%zu].name: duplicate feature name", i);
            goto fail;
        }
        json_object_set_new(seen, m->features[i].name, json_true());
    }
    json_decref(seen);

    if ((r = parse_class_labels(obj, m, err, errlen)) < 0)
        goto fail;
    bool has_threshold;
    if ((r = opt_number(obj, "threshold", "", &has_threshold, &m->threshold, err, errlen)) < 0)
        goto fail;
    if (!has_threshold)
        m->threshold = 0.5;
    if (!(m->threshold > 0 && m->threshold < 1)) {
        r = fail(err, errlen, "threshold: must be strictly between 0 and 1");
        goto fail;
    }
    if ((r = parse_metrics(obj, m, err, errlen)) < 0)
        goto fail;

    m->extra = json_object();
    if (!m->extra) {
        r = -ENOMEM;
        goto fail;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(known_keys); i++)
            if (strcmp(key, known_keys[i]) == 0)
                known = true;
        if (!known && json_object_set_new(m->extra, key, json_deep_copy(value)) < 0) {
            r = -ENOMEM;
            goto fail;
        }
    }
    *ret = m;
    return 0;
fail:
    if (r == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    model_manifest_free(m);
    return r;
}

int model_manifest_load(const char *path, model_manifest_t **ret, char *err, size_t errlen)
{
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (snprintf(file, sizeof(file), "%s/%s", path, MODEL_MANIFEST_FILE) >= (int)sizeof(file))
            return fail(err, errlen, "%s: path too long", path);
    } else if (snprintf(file, sizeof(file), "%s", path) >= (int)sizeof(file)) {
        return fail(err, errlen, "path too long");
    }
    char *buf = NULL;
    size_t len = 0;
    int r = util_read_file(file, MANIFEST_MAX_BYTES, &buf, &len);
    if (r == -EFBIG) {
        snprintf(err, errlen, "%s: larger than %u bytes", file, MANIFEST_MAX_BYTES);
        return -EINVAL;
    }
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", file, strerror(-r));
        return r;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root) {
        snprintf(err, errlen, "%s: invalid JSON at line %d column %d: %s", file, jerr.line, jerr.column,
                 jerr.text);
        return -EINVAL;
    }
    char sub[1024] = "";
    r = model_manifest_from_json(root, ret, sub, sizeof(sub));
    json_decref(root);
    if (r < 0)
        snprintf(err, errlen, "%s: %s", file, sub);
    return r;
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* JSON has no NaN or infinity; a non-finite statistic is written as null (= unknown). */
static json_t *real_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *number_array(const double *a, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, real_or_null(a[i]));
    return arr;
}

static json_t *feature_to_json(const model_feature_t *f)
{
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:o, s:b, s:o, s:o}", "name", f->name, "type", feature_type_name(f->type),
                  "unit", string_or_null(f->unit), "description", string_or_null(f->description), "required",
                  f->required, "min", f->has_min ? real_or_null(f->min) : json_null(), "max",
                  f->has_max ? real_or_null(f->max) : json_null());
    if (!o)
        return NULL;
    if (f->n_bins > 0 || f->mean != 0 || f->std != 0) {
        json_t *b = json_pack("{s:o, s:o, s:o, s:o}", "edges",
                              number_array(f->bin_edges, f->n_bins ? f->n_bins + 1 : 0), "probs",
                              number_array(f->bin_probs, f->n_bins), "mean", real_or_null(f->mean), "std",
                              real_or_null(f->std));
        if (!b) {
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "baseline", b);
    }
    return o;
}

json_t *model_manifest_to_json(const model_manifest_t *m)
{
    json_t *features = json_array();
    json_t *labels = json_array();
    if (!features || !labels)
        goto fail;
    for (size_t i = 0; i < m->n_features; i++) {
        json_t *f = feature_to_json(&m->features[i]);
        if (!f || json_array_append_new(features, f) < 0)
            goto fail;
    }
    for (size_t i = 0; i < m->n_classes; i++)
        json_array_append_new(labels, json_string(m->class_labels[i]));
    json_t *o = json_pack(
        "{s:i, s:s, s:s, s:s, s:o, s:b, s:o, s:o, s:{s:s, s:s, s:s, s:s}, s:o, s:o, s:f, s:{s:o, s:o}}",
        "format_version", m->format_version, "name", m->name, "version", m->version, "task",
        model_task_name(m->task), "description", string_or_null(m->description), "synthetic", m->synthetic,
        "created_at", string_or_null(m->created_at), "label", string_or_null(m->label), "booster", "backend",
        m->backend ? m->backend : "xgboost", "file", m->booster_file, "format", m->booster_format, "sha256",
        m->booster_sha256, "features", features, "class_labels", labels, "threshold", m->threshold, "metrics",
        "training", m->training_metrics ? json_incref(m->training_metrics) : json_object(), "holdout",
        m->holdout_metrics ? json_incref(m->holdout_metrics) : json_object());
    if (!o)
        return NULL; /* json_pack consumed features and labels ("o") */
    const char *key;
    json_t *value;
    json_object_foreach(m->extra, key, value)
    {
        if (!json_object_get(o, key))
            json_object_set(o, key, value);
    }
    return o;
fail:
    json_decref(features);
    json_decref(labels);
    return NULL;
}

int model_manifest_save(const model_manifest_t *m, const char *path)
{
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (snprintf(file, sizeof(file), "%s/%s", path, MODEL_MANIFEST_FILE) >= (int)sizeof(file))
            return -ENAMETOOLONG;
    } else if (snprintf(file, sizeof(file), "%s", path) >= (int)sizeof(file)) {
        return -ENAMETOOLONG;
    }
    json_t *o = model_manifest_to_json(m);
    if (!o)
        return -ENOMEM;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!s)
        return -ENOMEM;
    size_t len = strlen(s);
    /* Trailing newline: friendlier to diff and cat. */
    char *t = realloc(s, len + 2);
    if (!t) {
        free(s);
        return -ENOMEM;
    }
    t[len] = '\n';
    t[len + 1] = '\0';
    int r = util_write_file_atomic(file, t, len + 1, 0644);
    free(t);
    return r;
}
