/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the predict fast path (src/model/rowjson.c) against the jansson path it
 * shortcuts. For every input, rowjson_scan either declines or json_loadb (the flags
 * src/api/predict.c uses) accepts the same object; rowjson_row then either declines exactly
 * when model_schema_row reports a problem or yields bit-identical rows. The first 8 bytes,
 * read as a double, also check the real encoder against json_dumps. Any difference aborts. */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "fuzz_common.h"
#include "model/manifest.h"
#include "model/rowjson.h"
#include "model/schema.h"

static model_manifest_t *manifest;
static rowjson_body_t body;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    manifest = fuzz_fixed_manifest("fuzz_rowjson");
    if (manifest->n_features > 16)
        abort();
    return 0;
}

static void same_string(const json_t *j, const char *s, size_t len)
{
    if ((j != NULL) != (s != NULL))
        abort();
    if (j &&
        (!json_is_string(j) || json_string_length(j) != len || memcmp(json_string_value(j), s, len) != 0))
        abort();
}

static bool same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

static void check_real(const uint8_t *data, size_t size)
{
    double x;
    if (size < sizeof(x))
        return;
    memcpy(&x, data, sizeof(x));
    if (!isfinite(x))
        return;
    json_t *j = json_real(x);
    char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
    rowjson_buf_t b = {0};
    rowjson_put_real(&b, x);
    if (!want || b.failed || strcmp(want, b.data) != 0)
        abort();
    free(want);
    free(b.data);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_real(data, size);
    bool scanned = rowjson_scan((const char *)data, size, &body);
    if (!scanned)
        return 0; /* declined: the jansson path answers */
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root || !json_is_object(root))
        abort(); /* the scan accepted what jansson refuses */
    json_t *features = json_object_get(root, "features");
    if (!json_is_object(features) || json_object_size(features) != body.n)
        abort();
    if (json_object_size(root) != 1 + (body.patient_id != NULL) + (body.version != NULL))
        abort();
    same_string(json_object_get(root, "patient_id"), body.patient_id, body.patient_id_len);
    same_string(json_object_get(root, "version"), body.version, body.version_len);
    for (size_t i = 0; i < body.n; i++) {
        const rowjson_member_t *v = &body.members[i];
        json_t *jv = json_object_getn(features, v->key, v->key_len);
        bool ok = false;
        switch (v->kind) {
        case ROWJSON_INT:
            ok = json_is_integer(jv) && same_bits(v->value, (double)json_integer_value(jv));
            break;
        case ROWJSON_REAL: ok = json_is_real(jv) && same_bits(v->value, json_real_value(jv)); break;
        case ROWJSON_TRUE: ok = json_is_true(jv); break;
        case ROWJSON_FALSE: ok = json_is_false(jv); break;
        }
        if (!ok)
            abort();
    }
    float fast[16], ref[16];
    json_t *errors = json_array();
    int rc = model_schema_row(manifest, features, ref, errors);
    bool row = rowjson_row(manifest, &body, fast);
    if (row != (rc == 0))
        abort(); /* declined a valid row, or accepted one with problems */
    if (row && memcmp(fast, ref, sizeof(float) * manifest->n_features) != 0)
        abort(); /* a different row */
    json_decref(errors);
    json_decref(root);
    return 0;
}
