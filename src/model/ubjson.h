/* SPDX-License-Identifier: Apache-2.0 */
/* UBJSON, as XGBoost writes a booster (`save_model("x.ubj")`), decoded into jansson so that a
 * .ubj booster gets the same checks as a .json one before libxgboost reads it (review49 #3:
 * corrupt UBJSON crashed or hung libxgboost's loader). */
#ifndef AIMEDRES_MODEL_UBJSON_H
#define AIMEDRES_MODEL_UBJSON_H

#include <jansson.h>
#include <stddef.h>

/* The document in buf[len], or NULL with err saying where it is malformed. Every length and
 * count is checked against the bytes left, containers nest at most 64 deep, and a NaN or an
 * infinity becomes null (as the JSON path reads XGBoost's NaN). */
json_t *model_ubjson_decode(const unsigned char *buf, size_t len, char *err, size_t errlen);
/* The same with max_values keys and values at most (model_ubjson_decode: MODEL_BOOSTER_MAX_VALUES,
 * model/trees.h); over it, NULL with err MODEL_BOOSTER_TOO_LARGE. */
json_t *model_ubjson_decode_limit(const unsigned char *buf, size_t len, size_t max_values, char *err,
                                  size_t errlen);

#endif
