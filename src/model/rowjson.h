/* SPDX-License-Identifier: Apache-2.0 */
/* The predict hot path without a JSON tree: a strict single-pass decoder for the common
 * single-row body {"features":{"name":number,...}} (optional "patient_id" and "version"
 * strings) that either declines or yields exactly what jansson plus model_schema_row
 * yield, and an encoder that writes row results the way json_dumps(JSON_COMPACT |
 * JSON_REAL_PRECISION(9)) writes model_handle_row_result's tree. */
#ifndef AIMEDRES_MODEL_ROWJSON_H
#define AIMEDRES_MODEL_ROWJSON_H

#include <stdbool.h>
#include <stddef.h>

#include "model/manifest.h"

#define ROWJSON_MAX_MEMBERS 256 /* more features than this: the jansson path decodes */

enum { ROWJSON_INT = 1, ROWJSON_REAL, ROWJSON_TRUE, ROWJSON_FALSE };

typedef struct rowjson_member {
    const char *key; /* into the body, not NUL-terminated, no escapes */
    unsigned key_len;
    int kind;     /* ROWJSON_INT | ROWJSON_REAL | ROWJSON_TRUE | ROWJSON_FALSE */
    double value; /* INT: (double) of strtoll's value, as json_number_value gives it */
} rowjson_member_t;

/* What rowjson_scan found; pointers point into the body. */
typedef struct rowjson_body {
    const char *patient_id; /* NULL when absent; raw bytes, printable ASCII, no escapes */
    size_t patient_id_len;
    const char *version; /* NULL when absent; same form */
    size_t version_len;
    size_t n; /* members of "features" */
    rowjson_member_t members[ROWJSON_MAX_MEMBERS];
} rowjson_body_t;

/* Phase 1, before the model is known. True only when body[0..len) is a JSON object that
 * json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts, whose members are
 * "features" (required; an object whose values are numbers, true or false, with unescaped
 * printable ASCII keys) and optionally "patient_id" and "version" (unescaped printable
 * ASCII strings), nothing else. False (declined) for anything else: the caller then runs
 * the jansson path, which produces every error. Allocates nothing. */
bool rowjson_scan(const char *body, size_t len, rowjson_body_t *ret);

/* Phase 2, once the manifest is known. True when the scanned features form a valid row
 * for m (no unknown, missing required, wrong-typed or out-of-range feature): ret_row then
 * holds exactly what model_schema_row would write. False otherwise (declined: ret_row is
 * garbage and model_schema_row on the jansson tree explains the problems). */
bool rowjson_row(const model_manifest_t *m, const rowjson_body_t *b, float *ret_row);

/* A growable output buffer; on allocation failure `failed` is set and writes are dropped. */
typedef struct rowjson_buf {
    char *data; /* malloc'd, NUL-terminated when len > 0 */
    size_t len, cap;
    bool failed;
} rowjson_buf_t;

void rowjson_put(rowjson_buf_t *b, const char *s, size_t n);
/* s as a JSON string, escaped exactly as jansson's dump escapes it (default flags). */
void rowjson_put_string(rowjson_buf_t *b, const char *s);
/* x as json_dumps(json_real(x), JSON_REAL_PRECISION(9)) writes it; null when not finite
 * (model_handle_row_result's rule for non-finite outputs). */
void rowjson_put_real(rowjson_buf_t *b, double x);
/* One row's result, byte-identical to json_dumps(model_handle_row_result(h, out_row),
 * JSON_COMPACT | JSON_REAL_PRECISION(9)) for a handle with manifest m. */
void rowjson_put_result(rowjson_buf_t *b, const model_manifest_t *m, const float *out_row);

#endif
