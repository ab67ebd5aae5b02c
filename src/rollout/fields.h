/* SPDX-License-Identifier: Apache-2.0 */
/* The CanaryConfig field list: the one place a rollout knob is declared, with its JSON name,
 * its ROLLOUT_<NAME> setting, its form, its default and its member of rollout_config_t.
 * Expanded by rollout/config.c (parsing, defaults, JSON) and by common/config.c (settings
 * table: --env-file, validation at load, `config check`). Free of other includes on purpose. */
#ifndef AIMEDRES_ROLLOUT_FIELDS_H
#define AIMEDRES_ROLLOUT_FIELDS_H

/* X(json_name, SETTING_SUFFIX, form, default, member of rollout_config_t). The setting is
 * "ROLLOUT_" SETTING_SUFFIX, which must be json_name upper-cased (a unit test checks). */
#define ROLLOUT_CONFIG_FIELDS(X)                                                                             \
    X(shadow_duration, SHADOW_DURATION, DURATION, "24h", shadow_duration_ms)                                 \
    X(canary_stages, CANARY_STAGES, STAGES, "5,10,25,50,100", stages)                                        \
    X(stage_duration, STAGE_DURATION, DURATION, "2h", stage_duration_ms)                                     \
    X(check_interval, CHECK_INTERVAL, INTERVAL, "60s", check_interval_ms)                                    \
    X(rollback_window, ROLLBACK_WINDOW, DURATION, "1h", rollback_window_ms)                                  \
    X(min_accuracy, MIN_ACCURACY, RATIO, "0.85", min_accuracy)                                               \
    X(min_f1_score, MIN_F1_SCORE, RATIO, "0.80", min_f1_score)                                               \
    X(min_auc, MIN_AUC, RATIO, "0.70", min_auc)                                                              \
    X(max_performance_degradation, MAX_PERFORMANCE_DEGRADATION, RATIO, "0.10", max_performance_degradation)  \
    X(max_error_rate, MAX_ERROR_RATE, RATIO, "0.05", max_error_rate)                                         \
    X(max_demographic_disparity, MAX_DEMOGRAPHIC_DISPARITY, RATIO, "0.10", max_demographic_disparity)        \
    X(min_shadow_agreement, MIN_SHADOW_AGREEMENT, RATIO, "0.90", min_shadow_agreement)                       \
    X(latency_floor_ms, LATENCY_FLOOR_MS, NUMBER, "5", latency_floor_ms)                                     \
    X(min_requests, MIN_REQUESTS, INT, "20", min_requests)                                                   \
    X(min_labels, MIN_LABELS, INT, "30", min_labels)                                                         \
    X(sensitive_column, SENSITIVE_COLUMN, STRING, "sex", sensitive_column)                                   \
    X(fairness_gates, FAIRNESS_GATES, BOOL, "true", fairness_gates)                                          \
    X(auto_rollback_enabled, AUTO_ROLLBACK_ENABLED, BOOL, "true", auto_rollback_enabled)                     \
    X(rollback_on_validation_failure, ROLLBACK_ON_VALIDATION_FAILURE, BOOL, "true",                          \
      rollback_on_validation_failure)                                                                        \
    X(auto_promote, AUTO_PROMOTE, BOOL, "false", auto_promote)

/* The expected form of each kind, as error messages and docs state it. */
#define ROLLOUT_FORM_DURATION "a duration like 30s, 5m or 2h (a bare number is seconds)"
#define ROLLOUT_FORM_INTERVAL "a duration of at least 100ms, like 500ms, 5s or 1m"
#define ROLLOUT_FORM_RATIO "a number in [0, 1]"
#define ROLLOUT_FORM_NUMBER "a number >= 0"
#define ROLLOUT_FORM_INT "an integer 0..1000000"
#define ROLLOUT_FORM_BOOL "a boolean (true/false, 1/0, yes/no, on/off)"
#define ROLLOUT_FORM_STAGES "1..16 strictly ascending percentages in (0, 100] ending at 100, like 5,25,100"
#define ROLLOUT_FORM_STRING "a column name of 1..63 characters"
/* ROLLOUT_FAULT_INJECT (tests only) */
#define ROLLOUT_FORM_FAULT "version=V[,error_rate=R in 0..1][,delay_ms=N in 0..60000]"

/* ROLLOUT_F_<json_name>: index of each field, and their count. */
enum {
#define ROLLOUT_FIELD_INDEX(n, N, t, d, m) ROLLOUT_F_##n,
    ROLLOUT_CONFIG_FIELDS(ROLLOUT_FIELD_INDEX)
#undef ROLLOUT_FIELD_INDEX
        ROLLOUT_N_FIELDS
};

/* The hooks common/config.c validates ROLLOUT_* values with at load (rollout/config.c):
 * 0 when text is a valid value of field index (ROLLOUT_F_*), -EINVAL otherwise. */
int rollout_config_check_text(int index, const char *text);
/* 0 when text is a valid ROLLOUT_FAULT_INJECT value, -EINVAL otherwise. */
int rollout_fault_check(const char *text);

#endif
