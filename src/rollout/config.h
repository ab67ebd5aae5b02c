/* SPDX-License-Identifier: Apache-2.0 */
/* CanaryConfig: the knobs of one deployment (seed guide §1.3) with their defaults,
 * overridable by the ROLLOUT_* settings of the configuration (common/config.c, so also from
 * --env-file) and per deployment (API body, CLI flags). The field list is rollout/fields.h.
 * Durations are given as "30s", "5m", "2h" or plain seconds. */
#ifndef AIMEDRES_ROLLOUT_CONFIG_H
#define AIMEDRES_ROLLOUT_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rollout/fields.h"

#define ROLLOUT_MAX_STAGES 16

typedef struct rollout_config {
    int64_t shadow_duration_ms;          /* 24h */
    double stages[ROLLOUT_MAX_STAGES];   /* ascending percentages, last one 100 */
    size_t n_stages;                     /* [5,10,25,50,100] */
    int64_t stage_duration_ms;           /* 2h (also the blue/green watch window) */
    int64_t check_interval_ms;           /* 60s */
    int64_t rollback_window_ms;          /* 1h: previous stable kept loaded after promotion */
    double min_accuracy;                 /* 0.85 */
    double min_f1_score;                 /* 0.80 */
    double min_auc;                      /* 0.70 */
    double max_performance_degradation;  /* 0.10 */
    double max_error_rate;               /* 0.05 */
    double max_demographic_disparity;    /* 0.10 */
    double min_shadow_agreement;         /* 0.90 */
    double latency_floor_ms;             /* 5.0: a p95 below this counts as this (timer noise) */
    int min_requests;                    /* 20: per-arm requests before error/latency gates apply */
    int min_labels;                      /* 30: feedback labels before the live accuracy gate */
    char sensitive_column[64];           /* "sex" */
    bool fairness_gates;                 /* true; false: the disparity gates are not run (recorded) */
    bool auto_rollback_enabled;          /* true */
    bool rollback_on_validation_failure; /* true */
    bool auto_promote;                   /* false */
} rollout_config_t;

/* `config check` and `serve` warn with this when ROLLOUT_FAIRNESS_GATES is false: the default
 * then turns the disparity gates off for every deployment that does not set it (review54 #5). */
#define ROLLOUT_FAIRNESS_OFF_WARNING                                                                         \
    "ROLLOUT_FAIRNESS_GATES=false: the demographic-disparity gates are off for every deployment that "    \
    "does not set fairness_gates itself"
/* Whether values (config_t.rollout) set ROLLOUT_FAIRNESS_GATES to false. */
bool rollout_settings_fairness_off(const char *const values[ROLLOUT_N_FIELDS]);

/* The built-in defaults (the defaults column of rollout/fields.h). */
void rollout_config_defaults(rollout_config_t *c);
/* Defaults, then values[i] (borrowed; NULL or "" = keep the default) for each field
 * ROLLOUT_F_*: config_t.rollout of the loaded configuration. -EINVAL with err naming the
 * setting (ROLLOUT_STAGE_DURATION: expected ...). */
int rollout_config_from_settings(rollout_config_t *c, const char *const values[ROLLOUT_N_FIELDS], char *err,
                                 size_t errlen);
/* Setting name of field index ("ROLLOUT_STAGE_DURATION") and its JSON name
 * ("stage_duration"); static strings, NULL past the end. */
const char *rollout_config_setting_name(size_t index);
const char *rollout_config_field_name(size_t index);

/* Test fault injection (ROLLOUT_FAULT_INJECT=version=V,error_rate=R,delay_ms=N): requests
 * served by the candidate arm of version V fail with probability R and/or sleep N ms. */
typedef struct rollout_fault {
    char version[129]; /* "" = off */
    double error_rate;
    int delay_ms;
} rollout_fault_t;
/* Parses text (NULL or "" = off: *ret zeroed). -EINVAL with err explaining. */
int rollout_fault_parse(const char *text, rollout_fault_t *ret, char *err, size_t errlen);
/* Applies the fields present in obj onto c. Unknown fields and bad values are refused:
 * -EINVAL with *ret_field set to the field's name (static string) and err explaining. */
int rollout_config_apply_json(rollout_config_t *c, const json_t *obj, const char **ret_field, char *err,
                              size_t errlen);
/* New reference: every field, durations as strings ("30s") and *_ms numbers. */
json_t *rollout_config_to_json(const rollout_config_t *c);
/* Formats ms as a compact duration ("90s", "2h", "1500ms"). */
void rollout_format_duration(int64_t ms, char *buf, size_t n);

#endif
