/* SPDX-License-Identifier: Apache-2.0 */
/* Role names and the satisfies() matrix; see roles.h and docs/security.md. */
#include "security/roles.h"

#include <stddef.h>
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
