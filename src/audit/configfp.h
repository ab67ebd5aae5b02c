/* SPDX-License-Identifier: Apache-2.0 */
/* CONFIG_CHANGE events: at server start, a per-setting fingerprint of the effective
 * configuration (HMAC-SHA256 under a key derived from SECRET_KEY, so secret values never
 * leave the process) is compared with the one stored at the previous start beside the audit
 * log (<log>.config-state), and one CONFIG_CHANGE record names every setting that changed
 * (non-secret values shown old -> new; secrets, URLs and commands by name only). */
#ifndef AIMEDRES_AUDIT_CONFIGFP_H
#define AIMEDRES_AUDIT_CONFIGFP_H

#include <jansson.h>
#include <stddef.h>

#include "audit/audit.h"
#include "common/config.h"

#define AUDIT_CONFIG_VALUE_MAX 120 /* longest value shown in a record; longer ones are hidden */

/* <log>.config-state */
void audit_path_config_state(const char *log_path, char *buf, size_t len);

/* The fingerprint of cfg as a state object (new reference, NULL on ENOMEM or without
 * SECRET_KEY): {"v":1, "fingerprint": hex, "settings": {NAME: {"h": hex[, "v": shown
 * value]}}, "mac": hex}. "mac" covers the rest, keyed like the fingerprints. */
json_t *audit_config_state(const config_t *cfg);

/* The CONFIG_CHANGE detail comparing cur with prev (either may be NULL; prev NULL = first
 * start; a prev whose mac does not verify under cfg's key is "unverifiable"). New
 * reference, or NULL when nothing changed. */
json_t *audit_config_diff(const config_t *cfg, const json_t *prev, const json_t *cur);

/* What `serve` calls after opening the audit log a: compares with the stored state, appends
 * one durable CONFIG_CHANGE record (user = the OS user running the server) when anything
 * changed or on the first start, then stores the new state (0640, crash-safe). a NULL (audit
 * off): returns 0 and does nothing. ret_changed (may be NULL) gets the number of changed
 * settings (-1 for a baseline). 0 or -errno with the reason in err. */
int audit_config_record(audit_log_t *a, const config_t *cfg, int *ret_changed, char *err, size_t errlen);

#endif
