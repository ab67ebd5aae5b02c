/* SPDX-License-Identifier: Apache-2.0 */
/* Model manifest: everything the server needs to know about one model version besides
 * the booster itself: schema (ordered features with type, unit, valid range, required),
 * task, class labels, decision threshold, metrics, drift baselines, booster sha256.
 * Stored as manifest.json beside the booster in MODEL_STORAGE_PATH/<name>/<version>/.
 * docs/model-format.md documents the JSON. */
#ifndef AIMEDRES_MODEL_MANIFEST_H
#define AIMEDRES_MODEL_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

#define MODEL_MANIFEST_FILE "manifest.json"
#define MODEL_FORMAT_VERSION 1

typedef enum { MODEL_TASK_BINARY = 0, MODEL_TASK_MULTICLASS, MODEL_TASK_REGRESSION } model_task_t;
typedef enum { FEATURE_NUMBER = 0, FEATURE_INTEGER, FEATURE_BOOLEAN } feature_type_t;

typedef struct model_feature {
    char *name;
    feature_type_t type;
    char *unit;        /* may be NULL */
    char *description; /* may be NULL */
    bool required;
    bool has_min, has_max;
    double min, max; /* valid range, inclusive */
    /* Drift baseline: n_bins+1 ascending edges (quantiles of the training data, first =
     * -inf-ish observed min, last = observed max) and the training share in each bin
     * (sums to 1). n_bins == 0 when no baseline. */
    size_t n_bins;
    double *bin_edges; /* n_bins + 1 */
    double *bin_probs; /* n_bins */
    double mean, std;  /* training mean and standard deviation */
} model_feature_t;

typedef struct model_manifest {
    int format_version;
    char *name;
    char *version;
    model_task_t task;
    char *description;
    bool synthetic;   /* trained on synthetic data: not for clinical use */
    char *created_at; /* ISO 8601 */
    char *label;      /* name of the label column in training/validation data */

    char *backend;        /* "xgboost" */
    char *booster_file;   /* file name inside the version directory, e.g. "model.json" */
    char *booster_format; /* "json" | "ubj" */
    char booster_sha256[SHA256_HEX_LEN];

    size_t n_features;
    model_feature_t *features;

    size_t n_classes;    /* 2 for binary, k for multiclass, 0 for regression */
    char **class_labels; /* n_classes strings */
    double threshold;    /* binary decision threshold on P(class 1), default 0.5 */

    json_t *training_metrics; /* owned; object, may be empty */
    json_t *holdout_metrics;  /* owned; object: accuracy,f1,auc | rmse,r2, n_rows */
    json_t *extra;            /* owned; unknown top-level keys kept for round trips */
} model_manifest_t;

/* Parses and validates a manifest object. On failure returns -EINVAL and a message
 * naming the field ("features[3].max: expected a number"). Caller frees *ret. */
int model_manifest_from_json(const json_t *obj, model_manifest_t **ret, char *err, size_t errlen);
/* True for a model name the HTTP API needs for itself ("list": GET /api/v1/models/list would
 * hide the model's own page). Refused by the manifest parser and by `model train/import`. */
bool model_name_reserved(const char *name);
#define MODEL_NAME_RESERVED_MSG "'list' is reserved (GET /api/v1/models/list is the list of models)"
/* Loads dir/manifest.json or a manifest file path. */
int model_manifest_load(const char *path, model_manifest_t **ret, char *err, size_t errlen);
/* New reference; the full manifest as JSON (inverse of from_json). */
json_t *model_manifest_to_json(const model_manifest_t *m);
/* Writes crash-safely (aside, fsync, rename). */
int model_manifest_save(const model_manifest_t *m, const char *path);
void model_manifest_free(model_manifest_t *m);

const char *model_task_name(model_task_t t);
int model_task_parse(const char *s, model_task_t *ret);
const char *feature_type_name(feature_type_t t);
int feature_type_parse(const char *s, feature_type_t *ret);
/* Index of feature name, or -1. */
int model_manifest_feature_index(const model_manifest_t *m, const char *name);

#endif
