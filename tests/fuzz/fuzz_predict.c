/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: predict bodies through feature validation, the path every
 * POST /api/v1/models/{name}/predict body takes before a model sees it: json_loadb with the
 * flags src/api/predict.c uses, the body shape checks, then model_schema_row for each row
 * against a fixed manifest built at init; the error list is serialised as the reply would be. */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "fuzz_common.h"
#include "model/manifest.h"
#include "model/schema.h"

#define MAX_BATCH 256 /* MAX_BATCH_SIZE default */

static model_manifest_t *manifest;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    manifest = fuzz_fixed_manifest("fuzz_predict");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return 0;
    if (!json_is_object(root))
        goto out;
    json_t *features = json_object_get(root, "features");
    json_t *instances = json_object_get(root, "instances");
    size_t n_rows = 1;
    if ((features == NULL) == (instances == NULL))
        goto out;
    if (features && !json_is_object(features))
        goto out;
    if (instances) {
        if (!json_is_array(instances) || json_array_size(instances) == 0 ||
            json_array_size(instances) > MAX_BATCH)
            goto out;
        n_rows = json_array_size(instances);
    }
    size_t nf = manifest->n_features;
    float *rows = malloc(sizeof(float) * nf * n_rows);
    json_t *errors = json_array();
    if (!rows || !errors)
        abort();
    for (size_t i = 0; i < n_rows; i++) {
        json_t *row = features ? features : json_array_get(instances, i);
        if (!json_is_object(row))
            continue;
        size_t before = json_array_size(errors);
        int rc = model_schema_row(manifest, row, rows + i * nf, errors);
        if (rc == 0 && json_array_size(errors) != before)
            abort(); /* "valid" must not append problems */
        if (rc != 0 && (rc != -EINVAL || json_array_size(errors) == before))
            abort(); /* -EINVAL must explain itself */
        if (rc == 0) {
            for (size_t f = 0; f < nf; f++) {
                float v = rows[i * nf + f];
                const model_feature_t *mf = &manifest->features[f];
                if (isnan(v)) {
                    if (mf->required)
                        abort(); /* a required feature was accepted as absent */
                    continue;
                }
                if (!isfinite(v) || (mf->has_min && v < (float)mf->min) ||
                    (mf->has_max && v > (float)mf->max))
                    abort(); /* an out-of-range or infinite value got through */
            }
        }
    }
    char *dump = json_dumps(errors, JSON_COMPACT);
    free(dump);
    json_decref(errors);
    free(rows);
out:
    json_decref(root);
    return 0;
}
