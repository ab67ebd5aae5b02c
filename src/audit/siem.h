/* SPDX-License-Identifier: Apache-2.0 */
/* SIEM forwarding: a thread that follows the audit log files with a persisted cursor and
 * sends every record as an RFC 5424 syslog message to SYSLOG_SERVER over UDP (RFC 5426),
 * TCP with octet counting (RFC 6587), TLS (RFC 5425), or RELP over TCP or TLS (relp.h: the
 * receiver answers each record). Started by `serve` only. */
#ifndef AIMEDRES_AUDIT_SIEM_H
#define AIMEDRES_AUDIT_SIEM_H

#include <jansson.h>
#include <stddef.h>

#include "common/config.h"

typedef struct audit_siem audit_siem_t;

/* Starts the forwarder when cfg->siem_integration_enabled and cfg->audit_log_path are set;
 * otherwise returns 0 with *ret = NULL. Only one forwarder per log runs at a time (flock on
 * <log>.siem-lock; a second one waits for the lock). The cursor (<log>.siem-cursor: file
 * inode, byte offset and seq of the last record delivered) is written crash-safely when the
 * receiver confirms records: over RELP by answering them 200, over TCP/TLS by ending its side
 * of a connection the forwarder ended (syslog has no acknowledgement), so after an outage of the receiver or of aimedres the forwarder
 * resumes where delivery stopped. Delivery is at least once for TCP/TLS (records of an
 * unconfirmed connection are sent again: receivers can de-duplicate on seq and hash), best
 * effort for UDP. Registers the audit_siem_* metrics.
 * Caller stops it with audit_siem_stop. 0 or -errno with the reason in err. */
int audit_siem_start(const config_t *cfg, audit_siem_t **ret, char *err, size_t errlen);
/* What audit_siem_start would refuse in the settings (SYSLOG_SERVER, the TLS CA it loads),
 * without opening or connecting anything: for `config check`. 0 or -errno with err set.
 * Both check and start nothing without AUDIT_LOG_PATH (there is no trail to forward):
 * `config check` and `serve` then warn with AUDIT_SIEM_WITHOUT_TRAIL. */
int audit_siem_settings_check(const config_t *cfg, char *err, size_t errlen);
#define AUDIT_SIEM_WITHOUT_TRAIL                                                                             \
    "SIEM_INTEGRATION_ENABLED=true has no effect: it forwards the audit trail, and AUDIT_LOG_PATH is unset " \
    "(no trail: nothing is forwarded; SYSLOG_SERVER is not required and the SYSLOG_* certificate files are not loaded)"

/* Stops the thread after the batch in flight (bounded by the socket timeouts). NULL-safe. */
void audit_siem_stop(audit_siem_t *s);

/* The RFC 5424 message for one audit record (no framing, no trailing newline): PRI from
 * facility and the outcome (6 informational for success, 4 warning otherwise), the record's
 * ts, hostname (or "-"), APP-NAME "aimedres", PROCID "-", MSGID = type, one SD-ELEMENT
 * [audit@32473 ...] with the event fields (PARAM-VALUE escaped per RFC 5424 §6.3.3) and the
 * record's JSON line as MSG. malloc'd into *ret. 0 or -EINVAL/-ENOMEM. */
int audit_siem_format(const json_t *rec, int facility, const char *hostname, char **ret, size_t *ret_len);
/* Escapes '"', '\\' and ']' with a backslash into out (always NUL-terminated); returns the
 * length the escaped text needs (excluding NUL), like snprintf. */
size_t audit_siem_escape(const char *in, char *out, size_t outlen);
/* RFC 6587 octet counting: "<len> <msg>". malloc'd. */
char *audit_siem_frame(const char *msg, size_t len, size_t *ret_len);

#endif
