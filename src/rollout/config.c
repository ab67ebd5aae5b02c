/* SPDX-License-Identifier: Apache-2.0 */
/* CanaryConfig parsing: one field table drives the defaults, the environment overrides,
 * the JSON body of POST /api/v1/deployments and the JSON echoed in deployment records,
 * so a field can not be accepted in one place and forgotten in another. */
#include "rollout/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef enum { F_DURATION, F_INTERVAL, F_RATIO, F_NUMBER, F_INT, F_BOOL, F_STAGES, F_STRING } ftype_t;

typedef struct field {
    const char *name;    /* JSON name */
    const char *setting; /* ROLLOUT_<NAME> */
    ftype_t type;
    size_t off;
    const char *def; /* default, as text */
} field_t;

/* Generated from rollout/fields.h: the one list of fields. */
static const field_t fields[] = {
#define FIELD_ENTRY(n, N, t, d, m) {#n, "ROLLOUT_" #N, F_##t, offsetof(rollout_config_t, m), d},
    ROLLOUT_CONFIG_FIELDS(FIELD_ENTRY)
#undef FIELD_ENTRY
};

_Static_assert(ARRAY_SIZE(fields) == ROLLOUT_N_FIELDS, "fields[] follows rollout/fields.h");

static int set_field(rollout_config_t *c, const field_t *f, const char *text, const json_t *j, char *err,
                     size_t errlen);

bool rollout_settings_fairness_off(const char *const values[ROLLOUT_N_FIELDS])
{
    bool on = true;
    const char *v = values ? values[ROLLOUT_F_fairness_gates] : NULL;
    return v && *v && util_parse_bool(v, &on) == 0 && !on;
}

void rollout_config_defaults(rollout_config_t *c)
{
    memset(c, 0, sizeof(*c));
    char msg[160];
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        set_field(c, &fields[i], fields[i].def, NULL, msg, sizeof(msg)); /* cannot fail: unit-tested */
}

const char *rollout_config_setting_name(size_t index)
{
    return index < ARRAY_SIZE(fields) ? fields[index].setting : NULL;
}

const char *rollout_config_field_name(size_t index)
{
    return index < ARRAY_SIZE(fields) ? fields[index].name : NULL;
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
            snprintf(err, errlen, "expected %s", ROLLOUT_FORM_STAGES);
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
    case F_DURATION:
    case F_INTERVAL: {
        int64_t ms;
        if (!text || util_parse_duration_ms(text, &ms) < 0 || ms < 0 || (f->type == F_INTERVAL && ms < 100)) {
            snprintf(err, errlen, "expected %s",
                     f->type == F_INTERVAL ? ROLLOUT_FORM_INTERVAL : ROLLOUT_FORM_DURATION);
            return -EINVAL;
        }
        *(int64_t *)base = ms;
        return 0;
    }
    case F_RATIO:
    case F_NUMBER: {
        double v;
        if (!text || util_parse_double(text, &v) < 0 || !isfinite(v) || v < 0 ||
            (f->type == F_RATIO && v > 1)) {
            snprintf(err, errlen, "expected %s",
                     f->type == F_RATIO ? ROLLOUT_FORM_RATIO : ROLLOUT_FORM_NUMBER);
            return -EINVAL;
        }
        *(double *)base = v;
        return 0;
    }
    case F_INT: {
        int64_t v;
        if (!text || util_parse_int64(text, 0, 1000000, &v) < 0) {
            snprintf(err, errlen, "expected %s", ROLLOUT_FORM_INT);
            return -EINVAL;
        }
        *(int *)base = (int)v;
        return 0;
    }
    case F_BOOL:
        if (!text || util_parse_bool(text, (bool *)base) < 0) {
            snprintf(err, errlen, "expected %s", ROLLOUT_FORM_BOOL);
            return -EINVAL;
        }
        return 0;
    case F_STRING:
        if (!text || !*text || strlen(text) >= sizeof(c->sensitive_column)) {
            snprintf(err, errlen, "expected %s", ROLLOUT_FORM_STRING);
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

int rollout_config_from_settings(rollout_config_t *c, const char *const values[ROLLOUT_N_FIELDS], char *err,
                                 size_t errlen)
{
    rollout_config_defaults(c);
    for (size_t i = 0; values && i < ARRAY_SIZE(fields); i++) {
        if (!values[i] || !*values[i])
            continue;
        char msg[200];
        if (set_field(c, &fields[i], values[i], NULL, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "%s: %s", fields[i].setting, msg);
            return -EINVAL;
        }
    }
    return 0;
}

int rollout_config_check_text(int index, const char *text)
{
    if (index < 0 || (size_t)index >= ARRAY_SIZE(fields))
        return -EINVAL;
    rollout_config_t scratch;
    memset(&scratch, 0, sizeof(scratch));
    char msg[200];
    return set_field(&scratch, &fields[index], text, NULL, msg, sizeof(msg)) < 0 ? -EINVAL : 0;
}

int rollout_fault_parse(const char *text, rollout_fault_t *ret, char *err, size_t errlen)
{
    rollout_fault_t f;
    memset(&f, 0, sizeof(f));
    if (!text || !*text) {
        *ret = f;
        return 0;
    }
    char buf[256];
    if (strlen(text) >= sizeof(buf))
        goto bad;
    snprintf(buf, sizeof(buf), "%s", text);
    char *save_p = NULL;
    for (char *tok = strtok_r(buf, ",", &save_p); tok; tok = strtok_r(NULL, ",", &save_p)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            goto bad;
        *eq++ = '\0';
        int64_t n;
        if (strcmp(tok, "version") == 0 && util_is_safe_name(eq) && strlen(eq) < sizeof(f.version))
            snprintf(f.version, sizeof(f.version), "%s", eq);
        else if (strcmp(tok, "error_rate") == 0 && util_parse_double(eq, &f.error_rate) == 0 &&
                 f.error_rate >= 0 && f.error_rate <= 1)
            continue;
        else if (strcmp(tok, "delay_ms") == 0 && util_parse_int64(eq, 0, 60000, &n) == 0)
            f.delay_ms = (int)n;
        else
            goto bad;
    }
    if (!f.version[0])
        goto bad;
    *ret = f;
    return 0;
bad:
    snprintf(err, errlen, "expected %s", ROLLOUT_FORM_FAULT);
    return -EINVAL;
}

int rollout_fault_check(const char *text)
{
    rollout_fault_t f;
    char msg[160];
    return rollout_fault_parse(text, &f, msg, sizeof(msg));
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
        case F_INTERVAL:
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
