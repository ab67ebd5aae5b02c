/* SPDX-License-Identifier: Apache-2.0 */
/* CanaryConfig parsing: one field table drives the defaults, the environment overrides,
 * the JSON body of POST /api/v1/deployments and the JSON echoed in deployment records,
 * so a field can not be accepted in one place and forgotten in another. */
#include "rollout/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef enum { F_DURATION, F_RATIO, F_NUMBER, F_INT, F_BOOL, F_STAGES, F_STRING } ftype_t;

typedef struct field {
    const char *name;
    ftype_t type;
    size_t off;
} field_t;

#define FLD(n, t)                                                                                            \
    {                                                                                                        \
#n, t, offsetof(rollout_config_t, n)                                                                 \
    }
static const field_t fields[] = {
    {"shadow_duration", F_DURATION, offsetof(rollout_config_t, shadow_duration_ms)},
    {"canary_stages", F_STAGES, 0},
    {"stage_duration", F_DURATION, offsetof(rollout_config_t, stage_duration_ms)},
    {"check_interval", F_DURATION, offsetof(rollout_config_t, check_interval_ms)},
    {"rollback_window", F_DURATION, offsetof(rollout_config_t, rollback_window_ms)},
    FLD(min_accuracy, F_RATIO),
    FLD(min_f1_score, F_RATIO),
    FLD(min_auc, F_RATIO),
    FLD(max_performance_degradation, F_RATIO),
    FLD(max_error_rate, F_RATIO),
    FLD(max_demographic_disparity, F_RATIO),
    FLD(min_shadow_agreement, F_RATIO),
    FLD(latency_floor_ms, F_NUMBER),
    FLD(min_requests, F_INT),
    FLD(min_labels, F_INT),
    FLD(sensitive_column, F_STRING),
    FLD(auto_rollback_enabled, F_BOOL),
    FLD(rollback_on_validation_failure, F_BOOL),
    FLD(auto_promote, F_BOOL),
};

void rollout_config_defaults(rollout_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->shadow_duration_ms = 24LL * 3600 * 1000;
    static const double st[] = {5, 10, 25, 50, 100};
    memcpy(c->stages, st, sizeof(st));
    c->n_stages = ARRAY_SIZE(st);
    c->stage_duration_ms = 2LL * 3600 * 1000;
    c->check_interval_ms = 60 * 1000;
    c->rollback_window_ms = 3600 * 1000;
    c->min_accuracy = 0.85;
    c->min_f1_score = 0.80;
    c->min_auc = 0.70;
    c->max_performance_degradation = 0.10;
    c->max_error_rate = 0.05;
    c->max_demographic_disparity = 0.10;
    c->min_shadow_agreement = 0.90;
    c->latency_floor_ms = 5.0;
    c->min_requests = 20;
    c->min_labels = 30;
    snprintf(c->sensitive_column, sizeof(c->sensitive_column), "sex");
    c->auto_rollback_enabled = true;
    c->rollback_on_validation_failure = true;
    c->auto_promote = false;
}

/* "5,10,25,50,100" or a JSON array: strictly ascending, in (0, 100], ending at 100. */
static int set_stages(rollout_config_t *c, const double *v, size_t n, char *err, size_t errlen)
{
    if (n == 0 || n > ROLLOUT_MAX_STAGES) {
        snprintf(err, errlen, "expected 1..%d stage percentages", ROLLOUT_MAX_STAGES);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] > 0 && v[i] <= 100) || (i > 0 && v[i] <= v[i - 1])) {
            snprintf(err, errlen, "stage percentages must be strictly ascending within (0, 100]");
            return -EINVAL;
        }
    }
    if (v[n - 1] != 100) {
        snprintf(err, errlen, "the last stage must be 100 (the candidate then becomes stable)");
        return -EINVAL;
    }
    memcpy(c->stages, v, n * sizeof(*v));
    c->n_stages = n;
    return 0;
}

static int parse_stage_list(rollout_config_t *c, const char *s, char *err, size_t errlen)
{
    double v[ROLLOUT_MAX_STAGES + 1];
    size_t n = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n > ROLLOUT_MAX_STAGES || util_parse_double(tok, &v[n]) < 0) {
            snprintf(err, errlen, "expected a comma list of percentages like 5,25,100");
            return -EINVAL;
        }
        n++;
    }
    return set_stages(c, v, n, err, errlen);
}

/* Sets one field from text (environment, CLI) or JSON (API). */
static int set_field(rollout_config_t *c, const field_t *f, const char *text, const json_t *j, char *err,
                     size_t errlen)
{
    char *base = (char *)c + f->off;
    char num[64];
    if (j && (json_is_number(j) || json_is_boolean(j)) && f->type != F_STAGES && f->type != F_STRING) {
        if (json_is_boolean(j))
            snprintf(num, sizeof(num), "%s", json_is_true(j) ? "true" : "false");
        else
            snprintf(num, sizeof(num), "%.17g", json_number_value(j));
        text = num;
    } else if (j && json_is_string(j)) {
        text = json_string_value(j);
    } else if (j && f->type != F_STAGES) {
        snprintf(err, errlen, "wrong JSON type");
        return -EINVAL;
    }
    switch (f->type) {
    case F_DURATION: {
        int64_t ms;
        if (util_parse_duration_ms(text, &ms) < 0 || ms < 0) {
            snprintf(err, errlen, "expected a duration like 30s, 5m or 2h (or seconds)");
            return -EINVAL;
        }
        if (f->off == offsetof(rollout_config_t, check_interval_ms) && ms < 100) {
            snprintf(err, errlen, "the check interval must be at least 100ms");
            return -EINVAL;
        }
        *(int64_t *)base = ms;
        return 0;
    }
    case F_RATIO:
    case F_NUMBER: {
        double v;
        if (util_parse_double(text, &v) < 0 || !isfinite(v) || v < 0 || (f->type == F_RATIO && v > 1)) {
            snprintf(err, errlen,
                     f->type == F_RATIO ? "expected a number in [0, 1]" : "expected a number >= 0");
            return -EINVAL;
        }
        *(double *)base = v;
        return 0;
    }
    case F_INT: {
        int64_t v;
        if (util_parse_int64(text, 0, 1000000, &v) < 0) {
            snprintf(err, errlen, "expected an integer 0..1000000");
            return -EINVAL;
        }
        *(int *)base = (int)v;
        return 0;
    }
    case F_BOOL:
        if (util_parse_bool(text, (bool *)base) < 0) {
            snprintf(err, errlen, "expected true or false");
            return -EINVAL;
        }
        return 0;
    case F_STRING:
        if (!text || !*text || strlen(text) >= sizeof(c->sensitive_column)) {
            snprintf(err, errlen, "expected a column name of 1..63 characters");
            return -EINVAL;
        }
        snprintf(c->sensitive_column, sizeof(c->sensitive_column), "%s", text);
        return 0;
    case F_STAGES:
        if (j && json_is_array(j)) {
            double v[ROLLOUT_MAX_STAGES];
            size_t n = json_array_size(j);
            if (n == 0 || n > ROLLOUT_MAX_STAGES) {
                snprintf(err, errlen, "expected 1..%d stage percentages", ROLLOUT_MAX_STAGES);
                return -EINVAL;
            }
            for (size_t i = 0; i < n; i++) {
                if (!json_is_number(json_array_get(j, i))) {
                    snprintf(err, errlen, "stage percentages must be numbers");
                    return -EINVAL;
                }
                v[i] = json_number_value(json_array_get(j, i));
            }
            return set_stages(c, v, n, err, errlen);
        }
        if (!text) {
            snprintf(err, errlen, "expected an array of percentages");
            return -EINVAL;
        }
        return parse_stage_list(c, text, err, errlen);
    }
    return -EINVAL;
}

int rollout_config_from_env(rollout_config_t *c, char *err, size_t errlen)
{
    rollout_config_defaults(c);
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        char var[96];
        snprintf(var, sizeof(var), "ROLLOUT_%s", fields[i].name);
        for (char *p = var; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        const char *v = getenv(var);
        if (!v || !*v)
            continue;
        char msg[200];
        if (set_field(c, &fields[i], v, NULL, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "%s: %s", var, msg);
            return -EINVAL;
        }
    }
    return 0;
}

int rollout_config_apply_json(rollout_config_t *c, const json_t *obj, const char **ret_field, char *err,
                              size_t errlen)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        const field_t *f = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
            if (strcmp(fields[i].name, key) == 0)
                f = &fields[i];
        if (!f) {
            *ret_field = "config";
            snprintf(err, errlen, "unknown config field '%.64s'", key);
            return -EINVAL;
        }
        char msg[200];
        if (set_field(c, f, NULL, val, msg, sizeof(msg)) < 0) {
            *ret_field = f->name;
            snprintf(err, errlen, "%s: %s", f->name, msg);
            return -EINVAL;
        }
    }
    return 0;
}

void rollout_format_duration(int64_t ms, char *buf, size_t n)
{
    if (ms % 3600000 == 0 && ms > 0)
        snprintf(buf, n, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0 && ms > 0)
        snprintf(buf, n, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, n, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, n, "%lldms", (long long)ms);
}

json_t *rollout_config_to_json(const rollout_config_t *c)
{
    json_t *o = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        const field_t *f = &fields[i];
        const char *base = (const char *)c + f->off;
        char d[32];
        switch (f->type) {
        case F_DURATION:
            rollout_format_duration(*(const int64_t *)base, d, sizeof(d));
            json_object_set_new(o, f->name, json_string(d));
            break;
        case F_RATIO:
        case F_NUMBER: json_object_set_new(o, f->name, json_real(*(const double *)base)); break;
        case F_INT: json_object_set_new(o, f->name, json_integer(*(const int *)base)); break;
        case F_BOOL: json_object_set_new(o, f->name, json_boolean(*(const bool *)base)); break;
        case F_STRING: json_object_set_new(o, f->name, json_string(c->sensitive_column)); break;
        case F_STAGES: {
            json_t *a = json_array();
            for (size_t k = 0; k < c->n_stages; k++)
                json_array_append_new(a, json_real(c->stages[k]));
            json_object_set_new(o, f->name, a);
            break;
        }
        }
    }
    return o;
}
