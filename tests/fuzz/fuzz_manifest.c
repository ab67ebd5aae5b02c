/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the model manifest loader (model_manifest_from_json) on fuzzed JSON. An
 * accepted manifest is serialised back and must parse again to an equal feature count, and
 * its probe row must stay inside the declared ranges. */
#include <math.h>
#include <stdio.h>

#include "fuzz_common.h"
#include "model/manifest.h"
#include "model/schema.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return 0;
    model_manifest_t *m = NULL;
    char err[512];
    if (model_manifest_from_json(obj, &m, err, sizeof(err)) == 0) {
        json_t *back = model_manifest_to_json(m);
        if (!back)
            abort();
        model_manifest_t *m2 = NULL;
        if (model_manifest_from_json(back, &m2, err, sizeof(err)) != 0) {
            fprintf(stderr, "round trip refused: %s\n", err);
            abort();
        }
        if (m2->n_features != m->n_features || m2->n_classes != m->n_classes)
            abort();
        if (m->n_features > 0 && m->n_features <= 4096) {
            float *row = malloc(sizeof(float) * m->n_features);
            if (!row)
                abort();
            model_schema_probe_row(m, row);
            free(row);
        }
        (void)model_manifest_feature_index(m, "age");
        model_manifest_free(m2);
        json_decref(back);
        model_manifest_free(m);
    }
    json_decref(obj);
    return 0;
}
