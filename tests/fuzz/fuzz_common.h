/* SPDX-License-Identifier: Apache-2.0 */
/* Shared helpers for the libFuzzer targets: a NUL-terminated copy of the input (most of
 * our parsers take C strings) and the fixed model manifest the predict target validates
 * against. Header-only so each target stays one translation unit. */
#ifndef AIMEDRES_FUZZ_COMMON_H
#define AIMEDRES_FUZZ_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* malloc'd copy of exactly size bytes (at least one allocated), for parsers that take a
 * length: a read past the end is caught. Aborts on OOM. */
static inline char *fuzz_exact_copy(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        abort();
    if (size)
        memcpy(buf, data, size);
    return buf;
}

/* malloc'd copy of data with a trailing NUL; aborts on OOM (the fuzzer's limit applies). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A small manifest with one feature of each type and range shape; the predict target
 * validates fuzzed bodies against it. Kept here so the manifest seed corpus can use it too. */
#define FUZZ_MANIFEST_JSON                                                                                   \
    "{\"format_version\":1,\"name\":\"fuzz_model\",\"version\":\"1.0.0\",\"task\":\"binary\","               \
    "\"description\":\"fuzz\",\"synthetic\":true,\"created_at\":\"2026-01-01T00:00:00Z\","                   \
    "\"label\":\"y\",\"booster\":{\"backend\":\"xgboost\",\"file\":\"model.json\",\"format\":\"json\","      \
    "\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"},"                      \
    "\"features\":["                                                                                         \
    "{\"name\":\"age\",\"type\":\"integer\",\"required\":true,\"min\":0,\"max\":120},"                       \
    "{\"name\":\"sex\",\"type\":\"boolean\",\"required\":true,\"min\":0,\"max\":1},"                         \
    "{\"name\":\"mmse\",\"type\":\"number\",\"required\":true,\"min\":0.0,\"max\":30.0},"                    \
    "{\"name\":\"bmi\",\"type\":\"number\",\"required\":false,\"min\":10.0},"                                \
    "{\"name\":\"score\",\"type\":\"number\",\"required\":false}],"                                          \
    "\"class_labels\":[\"no\",\"yes\"],\"threshold\":0.5}"

/* The manifest of FUZZ_MANIFEST_JSON, parsed once by a target's initialiser; aborts (naming
 * the target) if it is refused, since every input would then be meaningless. */
static inline model_manifest_t *fuzz_fixed_manifest(const char *target)
{
    json_error_t jerr;
    json_t *obj = json_loads(FUZZ_MANIFEST_JSON, 0, &jerr);
    char err[256];
    model_manifest_t *m = NULL;
    if (!obj || model_manifest_from_json(obj, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: fixed manifest refused: %s\n", target, obj ? err : jerr.text);
        abort();
    }
    json_decref(obj);
    return m;
}

#endif
