/* SPDX-License-Identifier: Apache-2.0 */
/* Model runtime: a loaded model version (manifest + backend state) behind a refcounted
 * handle, so a hot reload can swap versions while in-flight requests finish on the
 * handle they took. The backend interface hides XGBoost (model/xgboost.c). */
#ifndef AIMEDRES_MODEL_RUNTIME_H
#define AIMEDRES_MODEL_RUNTIME_H

#include <stddef.h>

#include "model/manifest.h"

/* A prediction backend. predict() must be safe to call from several threads at once on
 * the same state. rows: nrows x ncols row-major floats, NAN = missing. out receives
 * nrows * outputs floats (raw model output: P(class 1) for binary, class probabilities
 * for multiclass, the value for regression). */
typedef struct model_backend {
    const char *name;
    int (*load)(const char *booster_path, void **ret_state, char *err, size_t errlen);
    int (*predict)(void *state, const float *rows, size_t nrows, size_t ncols, float *out, size_t outputs,
                   char *err, size_t errlen);
    /* Number of input features the booster expects (for import/registration checks). */
    int (*num_features)(void *state, size_t *ret);
    /* Feature names stored in the booster, if any (NULL/0 if none). Strings borrowed. */
    int (*feature_names)(void *state, const char ***ret_names, size_t *ret_n);
    void (*free)(void *state);
    /* Task the booster's objective implies and the floats per row predict() writes
     * (1 for binary and regression, k for multiclass). load() refuses objectives whose
     * output is not one of these (e.g. multi:softmax class indices, raw margins). */
    int (*task)(void *state, model_task_t *ret_task, size_t *ret_outputs);
} model_backend_t;

extern const model_backend_t model_backend_xgboost;

/* "<what>: <XGBoost's last error>" into err, without XGBoost's stack trace (for code that
 * calls the XGBoost C API directly: the backend and model training). */
void model_xgboost_error(char *err, size_t errlen, const char *what);
/* Loads a .json or .ubj booster file into a BoosterHandle, first checking that the file is
 * what its name says (an empty file, UBJSON named .json and the like are named as such).
 * 0 or -errno with the reason in err. */
int model_xgboost_load_file(void *booster, const char *path, char *err, size_t errlen);
/* libxgboost loads a booster without checking its trees and then reads wherever a node's
 * indexes point: checks a loaded BoosterHandle (model_trees_check on its model JSON) before
 * anything predicts with it. 0, or -EINVAL with "booster is malformed: <why>" in err. */
int model_xgboost_check(void *booster, size_t n_features, size_t outputs, char *err, size_t errlen);
/* Logs one message of XGBoost's log callback through log.c (a warning when it says WARNING):
 * parameter names and file locations, never data values. For XGBRegisterLogCallback. */
void model_xgboost_log(const char *msg);

typedef struct model_handle model_handle_t;

/* Opens dir (containing manifest.json and the booster): verifies the booster's sha256
 * against the manifest, loads it, checks the feature count. Refcount 1. */
int model_handle_open(const char *dir, model_handle_t **ret, char *err, size_t errlen);
/* Atomic refcounting; the last unref frees. Both accept NULL. */
model_handle_t *model_handle_ref(model_handle_t *h);
void model_handle_unref(model_handle_t *h);

/* Borrowed; valid while the caller holds a reference. */
const model_manifest_t *model_handle_manifest(const model_handle_t *h);
const char *model_handle_dir(const model_handle_t *h);
/* Floats per row in predict's output: 1 (binary, regression) or n_classes. */
size_t model_handle_outputs(const model_handle_t *h);

/* rows: nrows x manifest n_features. out: nrows * model_handle_outputs(h). 0 or -EIO (also
 * when an output is not finite: err names the row). */
int model_handle_predict(model_handle_t *h, const float *rows, size_t nrows, float *out, char *err,
                         size_t errlen);

/* Turns raw outputs of one row into the API's answer: {"label","probabilities":{label:p}}
 * for classification (binary: label is class_labels[p >= threshold]), {"value"} for
 * regression. New reference. */
json_t *model_handle_row_result(const model_handle_t *h, const float *out_row);

#endif
