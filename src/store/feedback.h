/* SPDX-License-Identifier: Apache-2.0 */
/* Ground-truth labels that arrive after a prediction (table `feedback`, migration 2):
 * checked against the prediction they label and the model version that made it, stored
 * idempotently, and read back joined with the predictions for rolling accuracy. SQLite
 * only for now (-ENOTSUP on other backends). Labels are stored canonically: the class
 * label string for classification (an integer index is translated), a number for
 * regression, so "1" and "demented" given for the same row are the same label. */
#ifndef AIMEDRES_STORE_FEEDBACK_H
#define AIMEDRES_STORE_FEEDBACK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef enum {
    FEEDBACK_STORED = 0, /* new label written */
    FEEDBACK_DUPLICATE,  /* the same label was already stored: nothing written */
    FEEDBACK_CONFLICT,   /* another label is stored for this prediction row */
    FEEDBACK_NOT_FOUND,  /* no such prediction */
    FEEDBACK_INVALID,    /* row out of range or label of the wrong type/value */
} store_feedback_outcome_t;

typedef struct store_feedback_item {
    const char *prediction_id; /* borrowed */
    int row;                   /* row of a batch prediction, 0 for single ones */
    const json_t *label;       /* borrowed */
    /* filled by store_feedback_submit: */
    store_feedback_outcome_t outcome;
    char message[224]; /* why, for CONFLICT / NOT_FOUND / INVALID (never echoes the label) */
} store_feedback_item_t;

/* Checks every item (prediction exists, row < its n_rows, label fits its model version)
 * and, only if every item is STORED or DUPLICATE, writes the new ones in one durable
 * transaction; otherwise nothing is written. source: who sent it (principal) or NULL.
 * Returns 0 (see the outcomes) or -errno for a database failure (err explains). */
int store_feedback_submit(store_t *s, store_feedback_item_t *items, size_t n, const char *source,
                          int64_t now_ms, char *err, size_t errlen);

/* Labels received at or after since_ms, newest first, at most max: a new array of
 * [model, version, predicted, label] where predicted is the output row's "label" (string)
 * or "value" (number) and label the stored canonical label. */
int store_feedback_window(store_t *s, int64_t since_ms, size_t max, json_t **ret);

/* The registered manifest of name/version as JSON (new reference); -ENOENT. */
int store_feedback_manifest(store_t *s, const char *name, const char *version, json_t **ret);

#endif
