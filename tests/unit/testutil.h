/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka unit tests (header-only: each test is one executable). */
#ifndef AIMEDRES_TESTUTIL_H
#define AIMEDRES_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"

/* A fresh private directory "<base>/<prefix>-XXXXXX" in buf, base being $AIMEDRES_TEST_TMP
 * (set by ctest to the build's tests/tmp) or /tmp. 0, or -1 if it could not be made. */
static inline int test_tmpdir(char *buf, size_t len, const char *prefix)
{
    const char *base = getenv("AIMEDRES_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    util_mkdir_p(base, 0755);
    int n = snprintf(buf, len, "%s/%s-XXXXXX", base, prefix);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

#endif
