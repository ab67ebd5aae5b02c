/* SPDX-License-Identifier: Apache-2.0 */
/* Training and import: turn a CSV of labelled rows into a registered model version.
 * model_train fits an XGBoost booster through the C API on a seeded, stratified split
 * and scores the holdout; model_import takes a booster trained elsewhere and checks it
 * against the data. Both infer the feature schema and drift baselines from the data,
 * write manifest.json next to the booster in a temporary version directory, hand that
 * directory to model_register (which verifies and copies it into
 * MODEL_STORAGE_PATH/<name>/<version>/), and write the validation rows to
 * <DATA_DIR>/baseline/<name>_validation.csv. docs/model-format.md describes the result. */
#ifndef AIMEDRES_MODEL_TRAIN_H
#define AIMEDRES_MODEL_TRAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define MODEL_TRAIN_DEFAULT_ROUNDS 100
#define MODEL_TRAIN_MAX_ROUNDS 100000
#define MODEL_TRAIN_DEFAULT_SEED 42
#define MODEL_TRAIN_DEFAULT_VALIDATION_FRACTION 0.2
#define MODEL_TRAIN_MAX_CLASSES 20   /* label inference: at most this many integer classes */
#define MODEL_TRAIN_MIN_ROWS 10      /* train and import refuse data with fewer rows */
#define MODEL_TRAIN_MIN_CLASS_ROWS 2 /* train: each class in both the training and holdout split */

/* All pointers are borrowed for the duration of the call. */
typedef struct model_train_opts {
    /* Train and import. */
    const char *data_path;   /* CSV with a header row (required) */
    const char *label;       /* label column (required) */
    const char *name;        /* model name, a safe path component (required) */
    const char *version;     /* version, a safe path component (required) */
    const char *const *drop; /* columns to ignore */
    size_t n_drop;
    const char *units;        /* "feature=unit,feature=unit" or NULL */
    const char *schema_path;  /* sidecar schema; NULL = "<data_path>.schema.json" if present */
    const char *class_labels; /* "a,b,..." (one per class) or NULL = "0","1",... */
    double threshold;         /* binary decision threshold in (0,1), default 0.5 */
    const char *description;  /* NULL = generated */
    bool synthetic;           /* data is synthetic: manifest synthetic=true */
    bool set_stable;          /* make this version stable even if another one is */
    const char *storage_path; /* MODEL_STORAGE_PATH (required) */
    const char *data_dir;     /* DATA_DIR (required): baseline/<name>_validation.csv */
    store_t *store;           /* registry store (required) */
    const struct model_register_hook *register_hook; /* NULL or model_register_hooked's hook */

    /* Train only. */
    const char *task;          /* "binary" | "multiclass" | "regression", NULL = infer */
    const char *const *params; /* XGBoost parameters "key=value", applied over the defaults */
    size_t n_params;
    int rounds;                 /* boosting rounds, default 100 */
    uint64_t seed;              /* split and XGBoost seed, default 42 */
    double validation_fraction; /* share held out per class, default 0.2, in (0, 0.9] */

    /* Import only. */
    const char *booster_path; /* .json or .ubj file saved by XGBoost (required) */
    bool all_rounds;          /* serve every round of an early-stopped booster (see model_import) */
} model_train_opts_t;

/* Fills the defaults above; every pointer NULL. */
void model_train_opts_init(model_train_opts_t *o);

/* Trains, registers and writes the validation CSV. On success *ret_summary (optional) is
 * {"name","version","task","n_train","n_validation","features":[..],"metrics":{"training",
 * "holdout"},"path","sha256","stable","validation_csv","warnings":[..]} (new reference);
 * warnings are sentences about data that trained but is probably a mistake (a constant
 * column), for the caller to show.
 * Data rules: at least MODEL_TRAIN_MIN_ROWS rows; classification labels are the class
 * indices 0..K-1 with every class present and at least MODEL_TRAIN_MIN_CLASS_ROWS rows in
 * each; every --param must be one XGBoost uses (checked by XGBoost's validate_parameters on
 * the first round, before anything is written).
 * Errors: -EINVAL (an option is wrong: malformed, unknown, or naming a column, feature or
 * parameter that does not apply; the CLI's usage error), -EBADMSG (the data cannot make this
 * model: CSV, labels, sidecar schema, booster vs data), -EEXIST (name/version already
 * registered), -EIO (XGBoost or registration failed), -ENOMEM, or -errno from the file
 * system. Every error is explained in err. Nothing is registered and no file is left behind
 * on failure. */
int model_train(const model_train_opts_t *opts, json_t **ret_summary, char *err, size_t errlen);

/* Imports opts->booster_path with the schema, baselines and holdout metrics taken from
 * opts->data_path (all of it is the holdout: metrics.holdout.source = "import data").
 * The booster's feature count and (if stored) feature names must match the CSV's
 * feature columns in order; the task comes from the booster's objective. The booster
 * file is copied byte for byte. A booster whose trees are malformed (model_xgboost_check),
 * or that was saved after early stopping with rounds beyond best_iteration (unless
 * opts->all_rounds), is refused with -EBADMSG. Same summary and errors as model_train
 * (n_train = 0). */
int model_import(const model_train_opts_t *opts, json_t **ret_summary, char *err, size_t errlen);

/* True if name/version is already in the store (0/1), or -errno. */
int model_train_is_registered(store_t *store, const char *name, const char *version);

#endif
