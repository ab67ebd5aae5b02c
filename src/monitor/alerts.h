/* SPDX-License-Identifier: Apache-2.0 */
/* Alert state: which alerts fire, since when, and which resolved recently. The monitor
 * loop evaluates its rules every interval and reports each rule's outcome here; this
 * module keeps the history and renders it for the API and for Alertmanager.
 *
 * DESIGN
 * - An alert's identity is (alertname, severity, model, version): as with Prometheus
 *   rules, the warning and the critical rule of one condition are separate alerts and
 *   both fire above the critical threshold (Alertmanager's inhibit rule hides the
 *   warning). States: (absent) -> FIRING when a rule becomes true (startsAt = now);
 *   FIRING -> RESOLVED when it becomes false (endsAt = now); a RESOLVED record is kept
 *   for the retention time and never changes again; a rule true again later starts a new
 *   FIRING record. Only the monitor loop moves states; readers (API) take the mutex.
 * - At most ALERTS_MAX records; when full the oldest resolved one is dropped. */
#ifndef AIMEDRES_MONITOR_ALERTS_H
#define AIMEDRES_MONITOR_ALERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define ALERTS_MAX 1024

typedef enum { ALERT_WARNING = 1, ALERT_CRITICAL = 2 } alert_severity_t;
typedef enum { ALERT_UNCHANGED = 0, ALERT_FIRED, ALERT_RESOLVED } alert_transition_t;

/* One rule's identity and texts; strings borrowed for the call. version may be NULL. */
typedef struct alert_spec {
    const char *name;
    alert_severity_t severity;
    const char *category;
    const char *model;
    const char *version;
    const char *summary;
    const char *description;
} alert_spec_t;

typedef struct alerts alerts_t;

/* resolved_retention_ms: how long resolved alerts stay listed (and re-sent). */
int alerts_new(int64_t resolved_retention_ms, alerts_t **ret);
void alerts_free(alerts_t *a);
/* The "instance" label every alert carries (the server's host:port), so that the alerts of
 * several servers sharing one Alertmanager neither resolve nor inhibit one another. */
void alerts_set_instance(alerts_t *a, const char *instance);

/* Reports the rule's outcome at now_ms; value/threshold are shown with the alert (the
 * texts of a firing alert follow the latest evaluation). Returns the transition. */
alert_transition_t alerts_update(alerts_t *a, const alert_spec_t *s, bool active, double value,
                                 double threshold, int64_t now_ms);

/* Highest severity firing for model (0 = none). */
int alerts_model_severity(alerts_t *a, const char *model);
/* {"critical": n, "warning": n} of firing alerts of model. New reference. */
json_t *alerts_model_counts(alerts_t *a, const char *model);
/* {"active":[...], "resolved":[...]} (newest first); model NULL = all. Drops resolved
 * records older than the retention. New reference. */
json_t *alerts_list_json(alerts_t *a, const char *model, int64_t now_ms);
/* Alertmanager v2 POST /api/v2/alerts body: every firing alert with endsAt = now +
 * firing_valid_ms (Alertmanager resolves it itself if we stop sending) and every
 * resolved one within the retention with its endsAt. generator_url: our base URL
 * ("http://host:port") or NULL; each alert links to its /api/v1/monitoring/{model}. NULL when there is
 * nothing to send. New reference. */
json_t *alerts_alertmanager_payload(alerts_t *a, int64_t now_ms, int64_t firing_valid_ms,
                                    const char *generator_url);
/* One alert in the Alertmanager label/annotation shape, for a transition just reported
 * (the webhook receiver): the record of spec's identity, newest. NULL if none. */
json_t *alerts_spec_json(alerts_t *a, const alert_spec_t *s, int64_t now_ms);

const char *alert_severity_name(alert_severity_t s);

#endif
