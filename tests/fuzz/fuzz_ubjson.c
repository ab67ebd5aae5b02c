/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the UBJSON decoder that checks a .ubj booster before libxgboost reads it
 * (model_ubjson_decode), then the tree checks on what it decoded (model_trees_check_doc).
 * A decoded document must serialise as JSON. */
#include "fuzz_common.h"
#include "model/trees.h"
#include "model/ubjson.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    json_t *doc = model_ubjson_decode(data, size, err, sizeof(err));
    if (!doc)
        return 0;
    char *text = json_dumps(doc, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        abort();
    free(text);
    (void)model_trees_check_doc(doc, 0, 0, err, sizeof(err));
    json_decref(doc);
    return 0;
}
