/* SPDX-License-Identifier: Apache-2.0 */
/* Patient pseudonyms: HMAC-SHA256 of the patient id under a key derived from SECRET_KEY,
 * so logs, audit events and the store can correlate one patient's records without
 * holding the identifier. */
#ifndef AIMEDRES_SECURITY_PSEUDONYM_H
#define AIMEDRES_SECURITY_PSEUDONYM_H

#include <stddef.h>

#define PSEUDONYM_LEN 33   /* "p_" + 30 hex chars + NUL (120 bits) */
#define PATIENT_ID_MAX 256 /* bytes of a patient id the API accepts */

/* Sets the process-wide key. key NULL or empty: a random per-process key is used (only
 * acceptable outside production; pseudonyms then differ across restarts). */
int pseudonym_init(const char *secret_key);
/* Writes the pseudonym of id into out. */
void pseudonym_of(const char *id, size_t len, char out[PSEUDONYM_LEN]);

#endif
