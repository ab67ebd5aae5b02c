/* SPDX-License-Identifier: Apache-2.0 */
/* Role names and the satisfies() matrix; see roles.h and docs/security.md. */
#include "security/roles.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bit;
} roles[] = {
    {"admin", ROLE_ADMIN},     {"deployer", ROLE_DEPLOYER}, {"clinician", ROLE_CLINICIAN},
    {"auditor", ROLE_AUDITOR}, {"monitor", ROLE_MONITOR},
};

unsigned roles_bit(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}

const char *roles_primary(unsigned mask)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (mask & roles[i].bit)
            return roles[i].name;
    return NULL;
}

const char *roles_granting(unsigned mask, const char *required)
{
    if (!roles_satisfies(mask, required))
        return NULL;
    unsigned bit = required && strcmp(required, ROLES_READ) != 0 ? roles_bit(required) : 0;
    if (bit && (mask & bit))
        return roles_primary(bit);
    return roles_primary(bit ? ROLE_ADMIN : mask);
}

const char *roles_names(unsigned mask, char *buf, size_t n)
{
    size_t o = 0;
    if (n)
        buf[0] = '\0';
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if ((mask & roles[i].bit) && o < n) {
            int w = snprintf(buf + o, n - o, "%s%s", o ? "," : "", roles[i].name);
            o += w > 0 ? (size_t)w : 0;
        }
    return buf;
}

bool roles_satisfies(unsigned mask, const char *required)
{
    if (!required)
        return true;
    if (mask == 0)
        return false;
    if (mask & ROLE_ADMIN)
        return true;
    if (strcmp(required, ROLES_READ) == 0)
        return true;
    unsigned bit = roles_bit(required);
    return bit != 0 && (mask & bit) != 0;
}

const char *roles_list(void)
{
    return "admin|deployer|clinician|auditor|monitor";
}
