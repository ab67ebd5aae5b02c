/* SPDX-License-Identifier: Apache-2.0 */
/* Feature validation: turns one untrusted JSON object of features into a model input row
 * in manifest order, or explains every problem. This is the gate for all predict bodies. */
#ifndef AIMEDRES_MODEL_SCHEMA_H
#define AIMEDRES_MODEL_SCHEMA_H

#include <jansson.h>

#include "model/manifest.h"

/* Fills ret_row (m->n_features floats; NAN for an absent optional feature).
 * For each problem appends {"feature": name, "problem": "missing"|"wrong_type"|
 * "out_of_range"|"unknown", "message": "..."} to errors (a JSON array; messages name
 * the expected type or range but never echo the submitted value, which may be PHI).
 * Returns 0 when valid, -EINVAL when at least one problem was appended.
 * number: JSON integer or real; integer: JSON integer (or real with integral value);
 * boolean: true/false (or 0/1); null counts as absent. */
int model_schema_row(const model_manifest_t *m, const json_t *features, float *ret_row, json_t *errors);

/* A valid row from the schema alone (midpoint of each range, 0 for booleans) used by
 * registration to check that the booster predicts. */
void model_schema_probe_row(const model_manifest_t *m, float *ret_row);

#endif
