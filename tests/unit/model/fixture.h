/* SPDX-License-Identifier: Apache-2.0 */
/* Test fixtures for the model unit tests: temp directories, small real boosters trained
 * through the XGBoost C API on deterministic data, and manifests describing them.
 * Header-only (static functions) so each test executable stays self-contained. */
#ifndef AIMEDRES_TESTS_MODEL_FIXTURE_H
#define AIMEDRES_TESTS_MODEL_FIXTURE_H

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include "common/util.h"
#include "model/manifest.h"
#include "testutil.h"

#define FX_ROWS 240

/* Tests build paths under short temp dirs; GCC cannot know that. Not every test uses
 * every fixture. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#pragma GCC diagnostic ignored "-Wunused-function"

/* test_tmpdir's directory, malloc'd; aborts when it can not be made. */
static char *fx_tmpdir(const char *tag)
{
    char *path = malloc(4096);
    if (!path || test_tmpdir(path, 4096, tag) < 0) {
        fprintf(stderr, "cannot make a temporary directory for %s: %s\n", tag, strerror(errno));
        abort();
    }
    return path;
}

/* A binary manifest (model "m" version "1", labels no/yes, a placeholder booster sha256)
 * over the features given as a JSON array text; NULL, with the reason on stderr, when the
 * text or the manifest does not parse. */
static model_manifest_t *fx_manifest(const char *features_json)
{
    json_error_t je;
    json_t *features = json_loads(features_json, 0, &je);
    if (!features) {
        fprintf(stderr, "fx_manifest: features: %s\n", je.text);
        return NULL;
    }
    json_t *in = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:o, s:[s,s]}", "format_version", 1,
                           "name", "m", "version", "1", "task", "binary", "booster", "backend", "xgboost",
                           "file", "model.json", "format", "json", "sha256",
                           "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "features",
                           features, "class_labels", "no", "yes");
    model_manifest_t *m = NULL;
    char err[512];
    if (model_manifest_from_json(in, &m, err, sizeof(err)) < 0)
        fprintf(stderr, "fx_manifest: %s\n", err);
    json_decref(in);
    return m;
}

static uint64_t fx_rng = 88172645463325252ull;
static double fx_rand(void) /* xorshift64: deterministic, [0,1) */
{
    fx_rng ^= fx_rng << 13;
    fx_rng ^= fx_rng >> 7;
    fx_rng ^= fx_rng << 17;
    return (double)(fx_rng >> 11) / 9007199254740992.0;
}

/* nrows x nfeat in [0, 10), about 5% missing (NAN) outside column 0. */
static float *fx_data(size_t nrows, size_t nfeat, uint64_t seed)
{
    fx_rng = seed * 2654435761ull + 88172645463325252ull;
    float *x = malloc(nrows * nfeat * sizeof(float));
    for (size_t i = 0; i < nrows * nfeat; i++) {
        x[i] = (float)(fx_rand() * 10.0);
        if (i % nfeat != 0 && fx_rand() < 0.05)
            x[i] = NAN;
    }
    return x;
}

static float fx_v(const float *x, size_t nfeat, size_t i, size_t j)
{
    float v = x[i * nfeat + j];
    return isnan(v) ? 5.0f : v;
}

/* Trains a booster for task on fx_data(seed) and saves it as dir/file (.json or .ubj).
 * objective NULL = the task's usual one. names: also store feature names f0..fn. */
static void fx_train(model_task_t task, const char *objective, size_t nfeat, int rounds, uint64_t seed,
                     bool names, const char *dir, const char *file)
{
    float *x = fx_data(FX_ROWS, nfeat, seed);
    float y[FX_ROWS];
    for (size_t i = 0; i < FX_ROWS; i++) {
        float a = fx_v(x, nfeat, i, 0), b = fx_v(x, nfeat, i, 1 % nfeat);
        if (task == MODEL_TASK_BINARY)
            y[i] = a + b > 10.0f ? 1.0f : 0.0f;
        else if (task == MODEL_TASK_MULTICLASS)
            y[i] = a < 3.3f ? 0.0f : (a < 6.6f ? 1.0f : 2.0f);
        else
            y[i] = 2.0f * a - b + (float)fx_rand();
    }
    DMatrixHandle d;
    BoosterHandle b;
    if (XGDMatrixCreateFromMat(x, FX_ROWS, nfeat, NAN, &d) != 0 ||
        XGDMatrixSetFloatInfo(d, "label", y, FX_ROWS) != 0 || XGBoosterCreate(&d, 1, &b) != 0) {
        fprintf(stderr, "xgboost: %s\n", XGBGetLastError());
        abort();
    }
    if (!objective)
        objective = task == MODEL_TASK_BINARY       ? "binary:logistic"
                    : task == MODEL_TASK_MULTICLASS ? "multi:softprob"
                                                    : "reg:squarederror";
    XGBoosterSetParam(b, "objective", objective);
    if (task == MODEL_TASK_MULTICLASS)
        XGBoosterSetParam(b, "num_class", "3");
    XGBoosterSetParam(b, "max_depth", "3");
    XGBoosterSetParam(b, "eta", "0.3");
    XGBoosterSetParam(b, "nthread", "1");
    XGBoosterSetParam(b, "seed", "1");
    if (names) {
        const char *fn[64];
        char buf[64][8];
        for (size_t j = 0; j < nfeat && j < 64; j++) {
            snprintf(buf[j], sizeof(buf[j]), "f%zu", j);
            fn[j] = buf[j];
        }
        XGBoosterSetStrFeatureInfo(b, "feature_name", fn, nfeat);
    }
    for (int it = 0; it < rounds; it++)
        if (XGBoosterUpdateOneIter(b, it, d) != 0) {
            fprintf(stderr, "xgboost: %s\n", XGBGetLastError());
            abort();
        }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (XGBoosterSaveModel(b, path) != 0) {
        fprintf(stderr, "xgboost save: %s\n", XGBGetLastError());
        abort();
    }
    XGBoosterFree(b);
    XGDMatrixFree(d);
    free(x);
}

/* Reference predictions through the DMatrix path of a separately loaded booster. */
static float *fx_reference(const char *booster_path, const float *x, size_t nrows, size_t nfeat,
                           size_t *ret_len)
{
    DMatrixHandle d;
    BoosterHandle b;
    bst_ulong len = 0;
    const float *res = NULL;
    if (XGDMatrixCreateFromMat(x, nrows, nfeat, NAN, &d) != 0 || XGBoosterCreate(NULL, 0, &b) != 0 ||
        XGBoosterLoadModel(b, booster_path) != 0 || XGBoosterPredict(b, d, 0, 0, 0, &len, &res) != 0) {
        fprintf(stderr, "xgboost reference: %s\n", XGBGetLastError());
        abort();
    }
    float *out = malloc(len * sizeof(float));
    memcpy(out, res, len * sizeof(float));
    XGBoosterFree(b);
    XGDMatrixFree(d);
    *ret_len = (size_t)len;
    return out;
}

/* A valid manifest object for dir/file (sha computed from the file). Features f0..fn-1,
 * numbers in [0, 10] (ranges wide enough for fx_data), all optional. */
static json_t *fx_manifest_json(const char *name, const char *version, model_task_t task, size_t nfeat,
                                const char *dir, const char *file)
{
    char sha[SHA256_HEX_LEN] = "";
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (util_sha256_file(path, sha) < 0)
        memset(sha, 'a', 64), sha[64] = '\0';
    json_t *features = json_array();
    for (size_t j = 0; j < nfeat; j++) {
        char fname[16];
        snprintf(fname, sizeof(fname), "f%zu", j);
        json_array_append_new(features,
                              json_pack("{s:s, s:s, s:s, s:b, s:f, s:f, s:{s:[f,f,f], s:[f,f], s:f, s:f}}",
                                        "name", fname, "type", "number", "unit", "mg", "required", 0, "min",
                                        0.0, "max", 10.0, "baseline", "edges", 0.0, 5.0, 10.0, "probs", 0.5,
                                        0.5, "mean", 5.0, "std", 2.9));
    }
    json_t *labels = task == MODEL_TASK_BINARY       ? json_pack("[s,s]", "neg", "pos")
                     : task == MODEL_TASK_MULTICLASS ? json_pack("[s,s,s]", "low", "mid", "high")
                                                     : json_array();
    const char *ext = strrchr(file, '.');
    return json_pack("{s:i, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:o, s:o, s:f, "
                     "s:{s:{}, s:{s:f}}}",
                     "format_version", 1, "name", name, "version", version, "task", model_task_name(task),
                     "description", "unit test model", "synthetic", 1, "created_at", "2024-01-01T00:00:00Z",
                     "label", "y", "booster", "backend", "xgboost", "file", file, "format",
                     ext && strcmp(ext, ".ubj") == 0 ? "ubj" : "json", "sha256", sha, "features", features,
                     "class_labels", labels, "threshold", 0.5, "metrics", "training", "holdout", "accuracy",
                     0.9);
}

static void fx_write_json(const json_t *o, const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (json_dump_file(o, path, JSON_INDENT(2)) != 0)
        abort();
}

/* A complete version directory: booster + manifest. Returns the directory (caller frees). */
static char *fx_version_dir(const char *parent, const char *name, const char *version, model_task_t task,
                            size_t nfeat, uint64_t seed)
{
    char *dir = malloc(4096);
    snprintf(dir, 4096, "%s/%s-%s", parent, name, version);
    util_mkdir_p(dir, 0755);
    fx_train(task, NULL, nfeat, 4, seed, false, dir, "model.json");
    json_t *m = fx_manifest_json(name, version, task, nfeat, dir, "model.json");
    fx_write_json(m, dir, MODEL_MANIFEST_FILE);
    json_decref(m);
    return dir;
}

#endif
