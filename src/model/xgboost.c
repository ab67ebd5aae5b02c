/* SPDX-License-Identifier: Apache-2.0 */
/* XGBoost prediction backend over libxgboost's C API (1.7): loads JSON/UBJSON boosters,
 * refuses objectives whose output is not a probability or a regression value, and
 * predicts in place from dense float rows. One thread per booster (nthread=1): the
 * server parallelises across requests instead of inside one. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

#include "common/log.h"
#include "common/util.h"
#include "model/runtime.h"
#include "model/trees.h"
#include "model/ubjson.h"

/* DESIGN: concurrency. XGBoost documents prediction (including inplace prediction) as
 * thread safe for tree boosters (gbtree, dart) since 1.4: each call works on a fresh
 * proxy DMatrix and writes its result into a per-thread, per-booster buffer, which we
 * copy out before returning. The one-off lazy Configure() runs in load() through a
 * warm-up prediction, so concurrent calls never race on it. tests/unit/model/
 * test_runtime.c checks 4 threads against single-threaded results. gblinear is not
 * covered by that guarantee, so its calls are serialised with a mutex; it has no inplace
 * prediction either, so it predicts from a DMatrix built per call. */

#define MAX_OUTPUTS 4096 /* classes per row */

typedef struct xgb_state {
    BoosterHandle booster;
    bst_ulong n_features;
    model_task_t task;
    size_t outputs;
    char **names; /* feature names stored in the booster, or NULL */
    size_t n_names;
    bool serialize; /* not a tree booster: one predict at a time */
    pthread_mutex_t lock;
    model_trees_t *trees; /* compiled trees, used when they matched libxgboost at load */
} xgb_state_t;

/* XGBoost errors carry a timestamp, source location and sometimes a stack trace:
 * keep the message, drop the trace. */
void model_xgboost_error(char *err, size_t errlen, const char *what)
{
    const char *msg = XGBGetLastError();
    if (!msg || !*msg)
        msg = "unknown error";
    size_t n = strlen(msg);
    const char *trace = strstr(msg, "Stack trace");
    if (trace)
        n = (size_t)(trace - msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ' || msg[n - 1] == ':'))
        n--;
    if (n > 512)
        n = 512;
    snprintf(err, errlen, "%s: %.*s", what, (int)n, msg);
}

/* XGBoost picks the format by the file name and, for a file of the other format, says only
 * "Expecting: ..." about a byte: the first bytes say which format the file is. */
static int sniff_format(const char *path, bool want_json, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rbe");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    unsigned char b[4096]; /* indented JSON may start with many blanks */
    size_t n = fread(b, 1, sizeof(b), f), i = 0;
    fclose(f);
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
        i++;
    if (i == n) {
        snprintf(err, errlen, n < sizeof(b) ? "%s is empty: not a booster saved by XGBoost"
                                            : "%s starts with 4096 blanks: not a booster saved by XGBoost",
                 path);
        return -EINVAL;
    }
    size_t j = i + 1;
    while (want_json && j < n && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n'))
        j++;
    /* JSON: '{' then '"' (or '}'); UBJSON: '{' then a key length typed i, U, I, l or L */
    bool json_like = b[i] == '{' && j < n && (b[j] == '"' || b[j] == '}');
    bool ubj_like = b[i] == '{' && i + 1 < n && strchr("iUIlL$#", b[i + 1]) && b[i + 1] != '\0';
    if (want_json && !json_like && ubj_like) {
        snprintf(err, errlen, "%s is UBJSON, not JSON: name it .ubj", path);
        return -EINVAL;
    }
    if (!want_json && !ubj_like && json_like) {
        snprintf(err, errlen, "%s is JSON, not UBJSON: name it .json", path);
        return -EINVAL;
    }
    if (!json_like && !ubj_like) {
        snprintf(err, errlen, "%s is not a booster saved by XGBoost (save_model to a .json or .ubj file)", path);
        return -EINVAL;
    }
    return 0;
}

/* A booster is checked before libxgboost parses it: some corrupt trees (categorical
 * segments, parents) crash its loader itself. A UBJSON one is decoded here first (review49
 * #3: corrupt UBJSON crashed or hung the loader, which trusts its counts). */
static int check_file(const char *path, bool json, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int r = util_read_file(path, (size_t)1 << 31, &buf, &len);
    if (r < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-r));
        return r;
    }
    char why[256] = "";
    if (json) {
        r = model_trees_check(buf, len, 0, 0, why, sizeof(why));
    } else {
        json_t *doc = model_ubjson_decode((const unsigned char *)buf, len, why, sizeof(why));
        r = doc ? model_trees_check_doc(doc, 0, 0, why, sizeof(why)) : -EINVAL;
        json_decref(doc);
    }
    free(buf);
    if (!json && r == -EINVAL && strcmp(why, MODEL_BOOSTER_TOO_LARGE) == 0)
        r = -E2BIG;
    if (r == -E2BIG) { /* a size limit, not a malformed file */
        snprintf(err, errlen, "%s", why);
        r = -EINVAL;
    } else if (r == -EINVAL && strncmp(why, "cannot parse", 12) == 0)
        snprintf(err, errlen, "cannot load booster %.256s: %s", path, why); /* truncated, not JSON */
    else if (r == -EINVAL)
        snprintf(err, errlen, "booster is malformed: %s", why);
    else if (r == -ENOTSUP) { /* refused as what it is, not as malformed; a bad booster all the same */
        snprintf(err, errlen, "%s", why);
        r = -EINVAL;
    }
    return r;
}

int model_xgboost_load_file(void *booster, const char *path, char *err, size_t errlen)
{
    size_t plen = strlen(path);
    bool json = plen > 5 && strcmp(path + plen - 5, ".json") == 0;
    if (!json && !(plen > 4 && strcmp(path + plen - 4, ".ubj") == 0)) {
        snprintf(err, errlen, "booster file must end in .json or .ubj (XGBoost picks the format by extension)");
        return -EINVAL;
    }
    int r = sniff_format(path, json, err, errlen);
    if (r < 0)
        return r;
    if ((r = check_file(path, json, err, errlen)) < 0)
        return r;
    if (XGBoosterLoadModel(booster, path) != 0) {
        char what[300];
        snprintf(what, sizeof(what), "cannot load booster %.256s", path);
        model_xgboost_error(err, errlen, what);
        return -EINVAL;
    }
    return 0;
}

static const char *const regression_objectives[] = {
    "reg:squarederror", "reg:linear", "reg:squaredlogerror", "reg:pseudohubererror", "reg:absoluteerror",
    "reg:logistic",     "reg:gamma",  "reg:tweedie",         "count:poisson",
};

static bool json_uint_field(const json_t *obj, const char *key, unsigned long long *ret)
{
    /* learner_model_param values are strings in XGBoost's JSON ("3"). */
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *ret = (unsigned long long)json_integer_value(v);
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *ret = x;
    return true;
}

/* Reads objective, num_class and booster kind from the booster's JSON config. */
static int read_config(xgb_state_t *st, char *err, size_t errlen)
{
    bst_ulong len = 0;
    const char *cfg = NULL;
    if (XGBoosterSaveJsonConfig(st->booster, &len, &cfg) != 0) {
        model_xgboost_error(err, errlen, "cannot read booster configuration");
        return -EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(cfg, (size_t)len, 0, &jerr);
    if (!root) {
        snprintf(err, errlen, "cannot parse booster configuration: %s", jerr.text);
        return -EINVAL;
    }
    int r = -EINVAL;
    const json_t *learner = json_object_get(root, "learner");
    const char *objective = json_string_value(json_object_get(json_object_get(learner, "objective"), "name"));
    const char *gbm =
        json_string_value(json_object_get(json_object_get(learner, "gradient_booster"), "name"));
    const json_t *mparam = json_object_get(learner, "learner_model_param");
    if (!objective || !gbm) {
        snprintf(err, errlen, "booster configuration lacks learner.objective or learner.gradient_booster");
        goto out;
    }
    unsigned long long num_class = 0, num_target = 1;
    (void)json_uint_field(mparam, "num_class", &num_class);
    (void)json_uint_field(mparam, "num_target", &num_target);
    if (num_target > 1) {
        snprintf(err, errlen, "multi-output boosters (num_target=%llu) are not supported", num_target);
        goto out;
    }
    if (strcmp(gbm, "gbtree") != 0 && strcmp(gbm, "dart") != 0 && strcmp(gbm, "gblinear") != 0) {
        snprintf(err, errlen, "booster type '%.64s' is not supported (gbtree, dart or gblinear)", gbm);
        goto out;
    }
    st->serialize = strcmp(gbm, "gblinear") == 0;

    if (strcmp(objective, "binary:logistic") == 0) {
        st->task = MODEL_TASK_BINARY;
        st->outputs = 1;
    } else if (strcmp(objective, "multi:softprob") == 0) {
        if (num_class < 2 || num_class > MAX_OUTPUTS) {
            snprintf(err, errlen, "multi:softprob booster with num_class=%llu is not supported", num_class);
            goto out;
        }
        st->task = MODEL_TASK_MULTICLASS;
        st->outputs = (size_t)num_class;
    } else if (strcmp(objective, "multi:softmax") == 0) {
        snprintf(err, errlen,
                 "objective multi:softmax predicts class indices, not probabilities; "
                 "train or save the booster with objective multi:softprob");
        goto out;
    } else {
        bool ok = false;
        for (size_t i = 0; i < ARRAY_SIZE(regression_objectives); i++)
            if (strcmp(objective, regression_objectives[i]) == 0)
                ok = true;
        if (!ok) {
            snprintf(err, errlen,
                     "objective '%.64s' is not supported (binary:logistic, multi:softprob or a reg:* "
                     "regression objective)",
                     objective);
            goto out;
        }
        st->task = MODEL_TASK_REGRESSION;
        st->outputs = 1;
    }
    r = 0;
out:
    json_decref(root);
    return r;
}

static int read_feature_names(xgb_state_t *st, char *err, size_t errlen)
{
    bst_ulong n = 0;
    const char **names = NULL;
    if (XGBoosterGetStrFeatureInfo(st->booster, "feature_name", &n, &names) != 0) {
        model_xgboost_error(err, errlen, "cannot read booster feature names");
        return -EINVAL;
    }
    if (n == 0)
        return 0;
    /* The strings live in XGBoost's thread-local storage: copy them. */
    st->names = calloc((size_t)n, sizeof(char *));
    if (!st->names)
        return -ENOMEM;
    st->n_names = (size_t)n;
    for (size_t i = 0; i < (size_t)n; i++) {
        st->names[i] = strdup(names[i] ? names[i] : "");
        if (!st->names[i])
            return -ENOMEM;
    }
    return 0;
}

static void xgb_free(void *state)
{
    xgb_state_t *st = state;
    if (!st)
        return;
    if (st->booster)
        XGBoosterFree(st->booster);
    model_trees_free(st->trees);
    for (size_t i = 0; i < st->n_names; i++)
        free(st->names[i]);
    free(st->names);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static int predict_raw(xgb_state_t *st, const float *rows, size_t nrows, size_t ncols, float *out,
                       size_t outputs, char *err, size_t errlen)
{
    /* __array_interface__ (version 3) of the caller's row-major float32 matrix. XGBoost's
     * JSON reader accepts NaN, which is how "missing" must be spelled. */
    static const char config[] = "{\"type\":0,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,"
                                 "\"strict_shape\":false,\"cache_id\":0,\"missing\":NaN}";
    char iface[192];
    snprintf(iface, sizeof(iface),
             "{\"data\":[%" PRIuPTR ",true],\"shape\":[%zu,%zu],\"strides\":null,\"typestr\":\"<f4\","
             "\"version\":3}",
             (uintptr_t)rows, nrows, ncols);
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *result = NULL;
    DMatrixHandle dm = NULL;
    int rc;
    if (st->serialize) {
        /* gblinear has no inplace prediction: a DMatrix of the same rows (NaN = missing) */
        pthread_mutex_lock(&st->lock);
        rc = XGDMatrixCreateFromMat(rows, (bst_ulong)nrows, (bst_ulong)ncols, NAN, &dm);
        if (rc == 0)
            rc = XGBoosterPredictFromDMatrix(st->booster, dm, config, &shape, &dim, &result);
    } else {
        rc = XGBoosterPredictFromDense(st->booster, iface, config, NULL, &shape, &dim, &result);
    }
    int r = 0;
    if (rc != 0) {
        model_xgboost_error(err, errlen, "prediction failed");
        r = -EIO;
        goto out;
    }
    size_t total = dim > 0 ? 1 : 0;
    for (bst_ulong i = 0; i < dim; i++)
        total *= (size_t)shape[i];
    if (total != nrows * outputs || !result) {
        snprintf(err, errlen, "booster returned %zu values for %zu rows x %zu outputs", total, nrows,
                 outputs);
        r = -EIO;
        goto out;
    }
    memcpy(out, result, total * sizeof(float));
out:
    if (dm)
        XGDMatrixFree(dm);
    if (st->serialize)
        pthread_mutex_unlock(&st->lock);
    return r;
}

/* XGBoost prints warnings (deprecated parameters, old model formats) straight to stderr,
 * which would break our one-JSON-object-per-line logs: route them through log.c. They
 * carry parameter names and file locations, never data values. */
void model_xgboost_log(const char *msg)
{
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    if (n > 1024)
        n = 1024;
    log_msg(strstr(msg, "WARNING") ? LOG_WARNING : LOG_INFO, "xgboost", "{s:s%}", "detail", msg, n);
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void register_log(void)
{
    XGBRegisterLogCallback(model_xgboost_log);
}

/* Compiles the trees (model/trees.h) and keeps them only if they give bit-identical
 * outputs to libxgboost on PROBE_ROWS rows built around every split threshold, missing
 * values included. Any difference, or a model the compiler does not take, leaves
 * libxgboost in charge; the log says which predictor serves the booster. */
#define PROBE_ROWS 512
static void compile_trees(xgb_state_t *st, const char *booster_path)
{
    const char *base = util_basename(booster_path);
    bst_ulong len = 0;
    const char *json = NULL;
    char why[256] = "";
    model_trees_t *t = NULL;
    float *rows = NULL, *mine = NULL, *theirs = NULL;
    if (XGBoosterSaveModelToBuffer(st->booster, "{\"format\":\"json\"}", &len, &json) != 0) {
        model_xgboost_error(why, sizeof(why), "cannot export the model");
        goto out;
    }
    if (model_trees_from_json(json, (size_t)len, (size_t)st->n_features, st->outputs, &t, why, sizeof(why)) < 0)
        goto out;
    size_t nf = (size_t)st->n_features;
    rows = malloc(PROBE_ROWS * nf * sizeof(float));
    mine = malloc(PROBE_ROWS * st->outputs * sizeof(float));
    theirs = malloc(PROBE_ROWS * st->outputs * sizeof(float));
    if (!rows || !mine || !theirs) {
        snprintf(why, sizeof(why), "out of memory");
        goto out;
    }
    model_trees_probe_rows(t, rows, PROBE_ROWS);
    if (predict_raw(st, rows, PROBE_ROWS, nf, theirs, st->outputs, why, sizeof(why)) < 0)
        goto out;
    model_trees_predict(t, rows, PROBE_ROWS, mine);
    for (size_t i = 0; i < PROBE_ROWS * st->outputs; i++) {
        if (memcmp(&mine[i], &theirs[i], sizeof(float)) != 0) {
            snprintf(why, sizeof(why), "compiled trees differ from libxgboost on probe row %zu (%.9g vs %.9g)",
                     i / st->outputs, (double)mine[i], (double)theirs[i]);
            goto out;
        }
    }
    st->trees = t;
    t = NULL;
out:
    if (st->trees)
        log_msg(LOG_INFO, "booster predictor", "{s:s,s:s,s:i}", "booster", base, "predictor", "compiled trees",
                "probe_rows", PROBE_ROWS);
    else
        log_msg(LOG_INFO, "booster predictor", "{s:s,s:s,s:s}", "booster", base, "predictor", "libxgboost",
                "reason", why);
    model_trees_free(t);
    free(rows);
    free(mine);
    free(theirs);
}

int model_xgboost_check(void *booster, size_t n_features, size_t outputs, char *err, size_t errlen)
{
    bst_ulong len = 0;
    const char *json = NULL;
    if (XGBoosterSaveModelToBuffer(booster, "{\"format\":\"json\"}", &len, &json) != 0) {
        model_xgboost_error(err, errlen, "cannot export the model to check it");
        return -EINVAL;
    }
    char why[256] = "";
    int r = model_trees_check(json, (size_t)len, n_features, outputs, why, sizeof(why));
    if (r == -EINVAL)
        snprintf(err, errlen, "booster is malformed: %s", why);
    else if (r < 0) /* too large (libxgboost's JSON holds a few more values than a .ubj file), ... */
        snprintf(err, errlen, "%s", why[0] ? why : strerror(-r));
    return r;
}

static int xgb_load(const char *booster_path, void **ret_state, char *err, size_t errlen)
{
    int r;
    pthread_once(&log_once, register_log);
    xgb_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    pthread_mutex_init(&st->lock, NULL);
    if (XGBoosterCreate(NULL, 0, &st->booster) != 0) {
        model_xgboost_error(err, errlen, "cannot create booster");
        r = -ENOMEM;
        goto fail;
    }
    r = model_xgboost_load_file(st->booster, booster_path, err, errlen);
    if (r < 0)
        goto fail;
    if (XGBoosterSetParam(st->booster, "nthread", "1") != 0) {
        model_xgboost_error(err, errlen, "cannot set nthread");
        r = -EINVAL;
        goto fail;
    }
    r = read_config(st, err, errlen);
    if (r < 0)
        goto fail;
    if (XGBoosterGetNumFeature(st->booster, &st->n_features) != 0) {
        model_xgboost_error(err, errlen, "cannot read booster feature count");
        r = -EINVAL;
        goto fail;
    }
    if (st->n_features == 0 || st->n_features > 1000000) {
        snprintf(err, errlen, "booster has an implausible feature count (%" PRIu64 ")",
                 (uint64_t)st->n_features);
        r = -EINVAL;
        goto fail;
    }
    r = read_feature_names(st, err, errlen);
    if (r < 0)
        goto fail;
    r = model_xgboost_check(st->booster, (size_t)st->n_features, st->outputs, err, errlen);
    if (r < 0)
        goto fail;
    /* Warm-up: runs XGBoost's lazy configuration now, single-threaded, and proves the
     * booster predicts. */
    float *row = malloc((size_t)st->n_features * sizeof(float));
    float *out = malloc(st->outputs * sizeof(float));
    if (!row || !out) {
        free(row);
        free(out);
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < (size_t)st->n_features; i++)
        row[i] = NAN;
    r = predict_raw(st, row, 1, (size_t)st->n_features, out, st->outputs, err, errlen);
    free(row);
    free(out);
    if (r < 0)
        goto fail;
    if (!st->serialize)
        compile_trees(st, booster_path);
    *ret_state = st;
    return 0;
fail:
    xgb_free(st);
    return r;
}

static int xgb_predict(void *state, const float *rows, size_t nrows, size_t ncols, float *out, size_t outputs,
                       char *err, size_t errlen)
{
    xgb_state_t *st = state;
    if (ncols != (size_t)st->n_features || outputs != st->outputs) {
        snprintf(err, errlen, "booster expects %zu features and %zu outputs per row, got %zu and %zu",
                 (size_t)st->n_features, st->outputs, ncols, outputs);
        return -EINVAL;
    }
    if (nrows == 0)
        return 0;
    if (st->trees) {
        model_trees_predict(st->trees, rows, nrows, out);
        return 0;
    }
    return predict_raw(st, rows, nrows, ncols, out, outputs, err, errlen);
}

static int xgb_num_features(void *state, size_t *ret)
{
    *ret = (size_t)((xgb_state_t *)state)->n_features;
    return 0;
}

static int xgb_feature_names(void *state, const char ***ret_names, size_t *ret_n)
{
    xgb_state_t *st = state;
    *ret_names = (const char **)st->names;
    *ret_n = st->n_names;
    return 0;
}

static int xgb_task(void *state, model_task_t *ret_task, size_t *ret_outputs)
{
    xgb_state_t *st = state;
    *ret_task = st->task;
    *ret_outputs = st->outputs;
    return 0;
}

const model_backend_t model_backend_xgboost = {
    .name = "xgboost",
    .load = xgb_load,
    .predict = xgb_predict,
    .num_features = xgb_num_features,
    .feature_names = xgb_feature_names,
    .free = xgb_free,
    .task = xgb_task,
};
