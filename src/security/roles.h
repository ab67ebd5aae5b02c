/* SPDX-License-Identifier: Apache-2.0 */
/* Roles and the access matrix (docs/security.md). A principal holds a set of roles (an
 * API key has one, a JWT may carry several); a route names the minimum role it needs:
 * NULL = public, "read" = any authenticated principal with at least one role, otherwise
 * that role, and admin satisfies everything. An unknown route role admits only admin. */
#ifndef AIMEDRES_SECURITY_ROLES_H
#define AIMEDRES_SECURITY_ROLES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ROLE_ADMIN = 1u << 0,
    ROLE_DEPLOYER = 1u << 1,
    ROLE_CLINICIAN = 1u << 2,
    ROLE_AUDITOR = 1u << 3,
    ROLE_MONITOR = 1u << 4,
} role_bit_t;

#define ROLES_READ "read"

/* The bit of a role name ("admin", "clinician"...), or 0 for an unknown name. */
unsigned roles_bit(const char *name);
/* The name of the most privileged role in mask (admin first), or NULL for 0. */
const char *roles_primary(unsigned mask);
/* The role of mask that grants a route requiring `required` (the required role itself when
 * held, else admin; for "read" and public routes the most privileged held), or NULL when
 * none does. What a request is recorded under (review58 #5: the first of several roles in a
 * fixed order was recorded, not the one that granted the access). */
const char *roles_granting(unsigned mask, const char *required);
/* The names of every role in mask, comma-separated ("" for none), into buf. */
const char *roles_names(unsigned mask, char *buf, size_t n);
/* True if a principal holding mask may call a route requiring `required`. */
bool roles_satisfies(unsigned mask, const char *required);
/* "admin|deployer|clinician|auditor|monitor", for messages. */
const char *roles_list(void);

#endif
