/* SPDX-License-Identifier: Apache-2.0 */
/* Alert records and their renderings; see alerts.h for the state machine. */
#include "monitor/alerts.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef struct record {
    char *name, *category, *model, *version, *summary, *description;
    alert_severity_t severity;
    bool firing;
    int64_t starts_ms, ends_ms;
    double value, threshold;
    char id[UUID_STR_LEN];
} record_t;

struct alerts {
    pthread_mutex_t mu;
    char instance[300]; /* the "instance" label ("" for none): alerts_set_instance */
    int64_t retention_ms;
    record_t *recs[ALERTS_MAX];
    size_t n;
};

const char *alert_severity_name(alert_severity_t s)
{
    return s == ALERT_CRITICAL ? "critical" : "warning";
}

void alerts_set_instance(alerts_t *a, const char *instance)
{
    pthread_mutex_lock(&a->mu);
    snprintf(a->instance, sizeof(a->instance), "%s", instance ? instance : "");
    pthread_mutex_unlock(&a->mu);
}

int alerts_new(int64_t resolved_retention_ms, alerts_t **ret)
{
    alerts_t *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->retention_ms = resolved_retention_ms;
    *ret = a;
    return 0;
}

static void record_free(record_t *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->category);
    free(r->model);
    free(r->version);
    free(r->summary);
    free(r->description);
    free(r);
}

void alerts_free(alerts_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        record_free(a->recs[i]);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static bool streq(const char *x, const char *y)
{
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

static bool same_identity(const record_t *r, const alert_spec_t *s)
{
    return r->severity == s->severity && streq(r->name, s->name) && streq(r->model, s->model) &&
           streq(r->version, s->version);
}

static void set_text(char **field, const char *v)
{
    if (streq(*field, v))
        return;
    char *copy = v ? strdup(v) : NULL;
    if (v && !copy)
        return; /* keep the old text rather than lose it */
    free(*field);
    *field = copy;
}

/* Removes record i (order kept: newest last). */
static void remove_at(alerts_t *a, size_t i)
{
    record_free(a->recs[i]);
    memmove(&a->recs[i], &a->recs[i + 1], (a->n - i - 1) * sizeof(a->recs[0]));
    a->n--;
}

static void prune(alerts_t *a, int64_t now_ms)
{
    for (size_t i = 0; i < a->n;) {
        if (!a->recs[i]->firing && now_ms - a->recs[i]->ends_ms > a->retention_ms)
            remove_at(a, i);
        else
            i++;
    }
}

alert_transition_t alerts_update(alerts_t *a, const alert_spec_t *s, bool active, double value,
                                 double threshold, int64_t now_ms)
{
    alert_transition_t t = ALERT_UNCHANGED;
    pthread_mutex_lock(&a->mu);
    record_t *cur = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->recs[i]->firing && same_identity(a->recs[i], s)) {
            cur = a->recs[i];
            break;
        }
    if (cur) {
        cur->value = value;
        cur->threshold = threshold;
        set_text(&cur->summary, s->summary);
        set_text(&cur->description, s->description);
        if (!active) {
            cur->firing = false;
            cur->ends_ms = now_ms;
            t = ALERT_RESOLVED;
        }
        goto out;
    }
    if (!active)
        goto out;
    prune(a, now_ms);
    if (a->n == ALERTS_MAX) {
        size_t i = 0;
        while (i < a->n && a->recs[i]->firing)
            i++;
        if (i == a->n)
            goto out; /* ALERTS_MAX alerts firing at once: keep what we have */
        remove_at(a, i);
    }
    record_t *r = calloc(1, sizeof(*r));
    if (!r)
        goto out;
    r->name = strdup(s->name);
    r->category = strdup(s->category);
    r->model = s->model ? strdup(s->model) : NULL;
    r->version = s->version ? strdup(s->version) : NULL;
    r->summary = s->summary ? strdup(s->summary) : NULL;
    r->description = s->description ? strdup(s->description) : NULL;
    if (!r->name || !r->category) {
        record_free(r);
        goto out;
    }
    r->severity = s->severity;
    r->firing = true;
    r->starts_ms = now_ms;
    r->value = value;
    r->threshold = threshold;
    util_uuid7(r->id);
    a->recs[a->n++] = r;
    t = ALERT_FIRED;
out:
    pthread_mutex_unlock(&a->mu);
    return t;
}

int alerts_model_severity(alerts_t *a, const char *model)
{
    int worst = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++)
        if (a->recs[i]->firing && streq(a->recs[i]->model, model) && (int)a->recs[i]->severity > worst)
            worst = (int)a->recs[i]->severity;
    pthread_mutex_unlock(&a->mu);
    return worst;
}

json_t *alerts_model_counts(alerts_t *a, const char *model)
{
    json_int_t crit = 0, warn = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++)
        if (a->recs[i]->firing && streq(a->recs[i]->model, model))
            a->recs[i]->severity == ALERT_CRITICAL ? crit++ : warn++;
    pthread_mutex_unlock(&a->mu);
    return json_pack("{s:I,s:I}", "critical", crit, "warning", warn);
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *labels_json(const alerts_t *a, const record_t *r)
{
    json_t *l = json_pack("{s:s,s:s,s:s,s:s}", "alertname", r->name, "severity",
                          alert_severity_name(r->severity), "category", r->category, "service", "aimedres");
    if (a->instance[0]) /* one Alertmanager, several servers: each one's alerts stay apart */
        json_object_set_new(l, "instance", json_string(a->instance));
    if (r->model)
        json_object_set_new(l, "model", json_string(r->model));
    if (r->version)
        json_object_set_new(l, "version", json_string(r->version));
    return l;
}

static json_t *annotations_json(const record_t *r)
{
    return json_pack("{s:s,s:s}", "summary", r->summary ? r->summary : r->name, "description",
                     r->description ? r->description : "");
}

static json_t *api_json(const alerts_t *a, const record_t *r)
{
    char starts[ISO8601_LEN], ends[ISO8601_LEN];
    util_iso8601(r->starts_ms, starts);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "id", r->id, "name", r->name,
                          "severity", alert_severity_name(r->severity), "category", r->category, "state",
                          r->firing ? "firing" : "resolved", "starts_at", starts, "value",
                          num_or_null(r->value), "threshold", num_or_null(r->threshold), "labels",
                          labels_json(a, r), "annotations", annotations_json(r));
    json_object_set_new(o, "model", r->model ? json_string(r->model) : json_null());
    json_object_set_new(o, "version", r->version ? json_string(r->version) : json_null());
    if (r->firing) {
        json_object_set_new(o, "ends_at", json_null());
    } else {
        util_iso8601(r->ends_ms, ends);
        json_object_set_new(o, "ends_at", json_string(ends));
    }
    return o;
}

json_t *alerts_list_json(alerts_t *a, const char *model, int64_t now_ms)
{
    json_t *active = json_array(), *resolved = json_array();
    pthread_mutex_lock(&a->mu);
    prune(a, now_ms);
    for (size_t i = a->n; i-- > 0;) {
        const record_t *r = a->recs[i];
        if (model && !streq(r->model, model))
            continue;
        json_array_append_new(r->firing ? active : resolved, api_json(a, r));
    }
    pthread_mutex_unlock(&a->mu);
    return json_pack("{s:o,s:o}", "active", active, "resolved", resolved);
}

static json_t *am_json(const alerts_t *a, const record_t *r, int64_t now_ms, int64_t firing_valid_ms,
                       const char *generator_url)
{
    char starts[ISO8601_LEN], ends[ISO8601_LEN];
    util_iso8601(r->starts_ms, starts);
    util_iso8601(r->firing ? now_ms + firing_valid_ms : r->ends_ms, ends);
    json_t *o = json_pack("{s:o,s:o,s:s,s:s}", "labels", labels_json(a, r), "annotations", annotations_json(r),
                          "startsAt", starts, "endsAt", ends);
    if (generator_url) {
        char url[1024];
        snprintf(url, sizeof(url), "%s/api/v1/%s%s", generator_url, r->model ? "monitoring/" : "alerts",
                 r->model ? r->model : "");
        json_object_set_new(o, "generatorURL", json_string(url));
    }
    return o;
}

json_t *alerts_alertmanager_payload(alerts_t *a, int64_t now_ms, int64_t firing_valid_ms,
                                    const char *generator_url)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&a->mu);
    prune(a, now_ms);
    for (size_t i = 0; i < a->n; i++)
        json_array_append_new(arr, am_json(a, a->recs[i], now_ms, firing_valid_ms, generator_url));
    pthread_mutex_unlock(&a->mu);
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

json_t *alerts_spec_json(alerts_t *a, const alert_spec_t *s, int64_t now_ms)
{
    json_t *o = NULL;
    pthread_mutex_lock(&a->mu);
    for (size_t i = a->n; i-- > 0;)
        if (same_identity(a->recs[i], s)) {
            o = am_json(a, a->recs[i], now_ms, 0, NULL);
            json_object_set_new(o, "status", json_string(a->recs[i]->firing ? "firing" : "resolved"));
            if (a->recs[i]->firing)
                json_object_set_new(o, "endsAt", json_string("0001-01-01T00:00:00Z"));
            break;
        }
    pthread_mutex_unlock(&a->mu);
    return o;
}
