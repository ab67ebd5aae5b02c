/* SPDX-License-Identifier: Apache-2.0 */
/* Feature validation: the gate between an untrusted JSON object and a model input row.
 * Every problem is reported (manifest order, then unknown keys in object order), and no
 * message ever repeats a submitted value: request bodies carry PHI. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/schema.h"

static void add_error(json_t *errors, const char *feature, const char *problem, const char *message)
{
    if (!errors)
        return;
    json_array_append_new(
        errors, json_pack("{s:s, s:s, s:s}", "feature", feature, "problem", problem, "message", message));
}

static const char *expected_type(feature_type_t t)
{
    switch (t) {
    case FEATURE_NUMBER: return "expected a number";
    case FEATURE_INTEGER: return "expected an integer";
    case FEATURE_BOOLEAN: return "expected a boolean (true/false or 0/1)";
    }
    return "unexpected type";
}

/* Decodes v according to the feature type; false if the JSON type does not fit. */
static bool decode(const model_feature_t *f, const json_t *v, double *ret)
{
    switch (f->type) {
    case FEATURE_NUMBER:
        if (!json_is_number(v))
            return false;
        *ret = json_number_value(v);
        return true;
    case FEATURE_INTEGER:
        if (json_is_integer(v)) {
            *ret = (double)json_integer_value(v);
            return true;
        }
        if (json_is_real(v)) {
            double x = json_real_value(v);
            if (isfinite(x) && x == floor(x)) {
                *ret = x;
                return true;
            }
        }
        return false;
    case FEATURE_BOOLEAN:
        if (json_is_boolean(v)) {
            *ret = json_is_true(v) ? 1.0 : 0.0;
            return true;
        }
        if (json_is_number(v)) {
            double x = json_number_value(v);
            if (x == 0.0 || x == 1.0) {
                *ret = x;
                return true;
            }
        }
        return false;
    }
    return false;
}

static void range_message(const model_feature_t *f, char *buf, size_t n)
{
    if (f->has_min && f->has_max)
        snprintf(buf, n, "must be between %.15g and %.15g", f->min, f->max);
    else if (f->has_min)
        snprintf(buf, n, "must be at least %.15g", f->min);
    else if (f->has_max)
        snprintf(buf, n, "must be at most %.15g", f->max);
    else
        snprintf(buf, n, "must be a finite number within single precision range (|x| <= %.7g)",
                 (double)FLT_MAX);
}

int model_schema_row(const model_manifest_t *m, const json_t *features, float *ret_row, json_t *errors)
{
    size_t problems = 0;
    if (!json_is_object(features)) {
        add_error(errors, "", "wrong_type", "features must be a JSON object");
        return -EINVAL;
    }
    size_t present = 0;
    for (size_t i = 0; i < m->n_features; i++) {
        const model_feature_t *f = &m->features[i];
        const json_t *v = json_object_get(features, f->name);
        ret_row[i] = NAN;
        if (v)
            present++;
        if (!v || json_is_null(v)) {
            if (f->required) {
                add_error(errors, f->name, "missing", "required feature is missing");
                problems++;
            }
            continue;
        }
        double x;
        if (!decode(f, v, &x)) {
            add_error(errors, f->name, "wrong_type", expected_type(f->type));
            problems++;
            continue;
        }
        /* NaN cannot come from JSON, but a value beyond float range would become inf
         * (which XGBoost would not treat as missing): out of range too. */
        if (!isfinite(x) || fabs(x) > FLT_MAX || (f->has_min && x < f->min) || (f->has_max && x > f->max)) {
            char msg[160];
            range_message(f, msg, sizeof(msg));
            add_error(errors, f->name, "out_of_range", msg);
            problems++;
            continue;
        }
        ret_row[i] = (float)x;
    }
    /* Unknown keys: only scan when the object holds more keys than the schema matched. */
    if (json_object_size(features) > present) {
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)features, key, value)
        {
            if (model_manifest_feature_index(m, key) < 0) {
                add_error(errors, key, "unknown", "unknown feature (not in the model's schema)");
                problems++;
            }
        }
    }
    return problems ? -EINVAL : 0;
}

void model_schema_probe_row(const model_manifest_t *m, float *ret_row)
{
    for (size_t i = 0; i < m->n_features; i++) {
        const model_feature_t *f = &m->features[i];
        double x;
        if (f->type == FEATURE_BOOLEAN) {
            x = 0;
            if (f->has_min && x < f->min)
                x = 1;
        } else if (f->has_min && f->has_max) {
            x = f->min + (f->max - f->min) / 2;
        } else if (f->has_min) {
            x = f->min;
        } else if (f->has_max) {
            x = f->max;
        } else {
            x = 0;
        }
        if (f->type == FEATURE_INTEGER) {
            x = floor(x);
            if (f->has_min && x < f->min)
                x = ceil(f->min);
        }
        ret_row[i] = (float)x;
    }
}
