/* SPDX-License-Identifier: Apache-2.0 */
/* Synthetic demo cohorts for the three demo models (Alzheimer's, Parkinson's, ALS).
 * Each generator draws class-conditional features from published summary statistics
 * (docs/demo-data.md cites them) with its own seeded PRNG and writes numbers with fixed
 * precision, so the bytes are identical on every run. The data are SYNTHETIC and not for
 * clinical use; every row carries a sex column (0 = female, 1 = male) and a few optional
 * features have missing values. */
#ifndef AIMEDRES_DEMO_COHORTS_H
#define AIMEDRES_DEMO_COHORTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DEMO_ALZHEIMER = 0, DEMO_PARKINSONS, DEMO_ALS, DEMO_COHORT_COUNT } demo_cohort_id_t;

typedef struct demo_cohort {
    demo_cohort_id_t id;
    const char *model_name;   /* "alzheimer_classifier" */
    const char *file;         /* "alzheimer.csv" (sidecar: file + ".schema.json") */
    const char *label;        /* label column */
    const char *class_labels; /* "nondemented,demented": label 0, label 1 */
    const char *description;  /* manifest description (says synthetic, not for clinical use) */
    size_t n_rows;
    uint64_t seed;
} demo_cohort_t;

/* The three cohorts, indexed by demo_cohort_id_t. */
extern const demo_cohort_t demo_cohorts[DEMO_COHORT_COUNT];

/* Looks a cohort up by model name or file stem ("parkinsons"); NULL if unknown. */
const demo_cohort_t *demo_cohort_find(const char *name);

/* The cohort as CSV (header + n_rows rows, LF line ends). *ret_buf is NUL-terminated and
 * the caller's to free. 0 or -ENOMEM. */
int demo_cohort_csv(const demo_cohort_t *c, char **ret_buf, size_t *ret_len);
/* The sidecar schema (docs/model-format.md: units, descriptions, clinical valid ranges,
 * types) as JSON text ending in a newline. Caller frees. 0 or -ENOMEM. */
int demo_cohort_schema_json(const demo_cohort_t *c, char **ret_buf, size_t *ret_len);

/* Writes every cohort into dir (created if needed): <file> and <file>.schema.json,
 * crash-safely. A file that already holds the same bytes is left alone. *ret_written
 * (optional) counts the files actually (re)written. 0 or -errno with err explained. */
int demo_cohorts_write(const char *dir, int *ret_written, char *err, size_t errlen);

#endif
