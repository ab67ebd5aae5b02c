/* SPDX-License-Identifier: Apache-2.0 */
/* Compiled trees: a gbtree booster's trees flattened into arrays and walked in C, so a
 * one-row prediction costs a few hundred instructions instead of libxgboost's per-call
 * JSON parsing of the array interface. Only what XGBoost's CPU predictor does for plain
 * numeric trees is reproduced (same float32 comparisons, accumulation order and output
 * transform); anything else (dart, gblinear, categorical splits, other objectives) is
 * refused with -ENOTSUP and the caller keeps using libxgboost. model/xgboost.c compares the
 * two on probe rows at load and uses these only when every output is bit-identical. */
#ifndef AIMEDRES_MODEL_TREES_H
#define AIMEDRES_MODEL_TREES_H

#include <jansson.h>
#include <stddef.h>

typedef struct model_trees model_trees_t;

/* The keys and values a booster document (JSON or UBJSON) may hold: jansson takes about 40
 * bytes for each, so this bounds the memory of checking a booster near 1.5 GB (review50 #2,
 * review51 #4). A booster of 2000 trees of depth 6 holds about 2.5 million; this allows about
 * 3 million tree nodes. A larger document is refused with MODEL_BOOSTER_TOO_LARGE (-E2BIG).
 * An array or object counts as MODEL_BOOSTER_CONTAINER_WEIGHT values: jansson takes about
 * 230 bytes for an empty object (review53 #5: 4M empty objects, 8 MB, took 926 MB), while a
 * booster holds about 14 containers per tree. */
#define MODEL_BOOSTER_MAX_VALUES (32u << 20)
#define MODEL_BOOSTER_CONTAINER_WEIGHT 6
#define MODEL_BOOSTER_TOO_LARGE                                                                                  \
    "the booster is too large for this server: it holds more than 33554432 JSON keys and values (about 3 "   \
    "million tree nodes); the limit bounds the memory its check takes"

/* Builds the evaluator from the booster's model JSON (XGBoosterSaveModelToBuffer with
 * format json). outputs: 1 (binary:logistic, reg:squarederror, reg:logistic...) or the
 * class count (multi:softprob). 0, -ENOTSUP (not a model this evaluator reproduces; err
 * says why) or -EINVAL/-E2BIG/-ENOMEM. */
int model_trees_from_json(const char *json, size_t len, size_t n_features, size_t outputs,
                          model_trees_t **ret, char *err, size_t errlen);

/* Checks what libxgboost trusts without checking, before it predicts with the booster:
 * every tree's nodes form a tree (children inside it, no loop, no shared child), every split
 * tests a feature the booster has, every tree adds to an existing output, a linear booster
 * has its weight count. Covers gbtree, dart and gblinear JSON. n_features 0: a file not yet
 * loaded, whose learner_model_param gives them (outputs: num_class, else 1). 0, or -EINVAL with the reason
 * (a corrupt artifact, which libxgboost would read out of bounds), -E2BIG (over
 * MODEL_BOOSTER_MAX_VALUES), or -ENOMEM. */
int model_trees_check(const char *json, size_t len, size_t n_features, size_t outputs, char *err, size_t errlen);
/* model_trees_check of a parsed document (a UBJSON booster decoded by model_ubjson_decode). */
int model_trees_check_doc(const json_t *root, size_t n_features, size_t outputs, char *err, size_t errlen);

/* rows: nrows x n_features row-major, NAN = missing. out: nrows * outputs. Thread-safe
 * (reads only). */
void model_trees_predict(const model_trees_t *t, const float *rows, size_t nrows, float *out);

/* Probe rows for the load-time comparison: for each row and feature a split threshold of
 * that feature, its neighbouring floats, a value outside every threshold or NAN, chosen by a
 * deterministic generator. rows must hold nrows x n_features floats. */
void model_trees_probe_rows(const model_trees_t *t, float *rows, size_t nrows);

void model_trees_free(model_trees_t *t);

#endif
