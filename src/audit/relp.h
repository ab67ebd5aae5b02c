/* SPDX-License-Identifier: Apache-2.0 */
/* RELP, the Reliable Event Logging Protocol (rsyslog's imrelp/omrelp, librelp): syslog
 * messages over TCP (or TLS) in numbered transactions that the receiver answers one by one,
 * "200 OK" once it has taken the message. The SIEM forwarder uses it (SYSLOG_PROTOCOL=relp or
 * relp-tls) to learn which records the receiver itself took, where plain syslog has no
 * acknowledgement. Frames: "TXNR SP COMMAND SP DATALEN [SP DATA] LF"; TXNR 1..999999999,
 * increasing per session, DATALEN the bytes of DATA. This module only builds and parses frames;
 * siem.c runs the session. */
#ifndef AIMEDRES_AUDIT_RELP_H
#define AIMEDRES_AUDIT_RELP_H

#include <stddef.h>

#define RELP_TXNR_MAX 999999999u
#define RELP_MAX_DATA (1u << 20) /* a frame announcing more is refused as not RELP */

/* The transaction number after t (1 after RELP_TXNR_MAX, as RELP wraps). */
unsigned relp_next_txnr(unsigned t);

/* "TXNR COMMAND DATALEN[ DATA]\n", malloc'd into *ret with its length. 0 or -ENOMEM, -EINVAL
 * for a command that is not 1..32 letters or data over RELP_MAX_DATA. */
int relp_frame(unsigned txnr, const char *command, const char *data, size_t len, char **ret, size_t *ret_len);

typedef struct relp_msg {
    unsigned txnr;
    char command[33];
    int code;         /* of an "rsp": its 3-digit status (200 OK); -1 otherwise */
    const char *data; /* DATA, inside the parsed buffer (not NUL-terminated) */
    size_t data_len;
} relp_msg_t;

/* One frame at the start of buf[0..len): 1 with *m and the bytes it took in *used when a whole
 * frame is there; 0 when more bytes are needed; -EPROTO when the bytes are not a RELP frame. */
int relp_parse(const char *buf, size_t len, relp_msg_t *m, size_t *used);

/* The human-readable text of an rsp (after the code, up to the first LF), for logs:
 * into out, at most outlen-1 bytes, control characters replaced by '?'. */
void relp_rsp_text(const relp_msg_t *m, char *out, size_t outlen);

/* Whether the "commands=" line of an open's rsp offers `command` (comma-separated list). */
int relp_offers(const relp_msg_t *m, const char *command);

#endif
